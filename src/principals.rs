//! Managing principals and their API tokens, within a tenant. A new token is returned once; only
//! its digest is stored.

use chrono::NaiveDateTime;
use secrecy::{ExposeSecret, SecretString};

use crate::auth::{Authenticator, PrincipalKind, Role, generate_token, token_digest};
use crate::store::notify::Change;
use crate::store::principals::{ApiTokenRow, PrincipalRow};
use crate::store::{Database, StoreError, now};

#[derive(Debug, thiserror::Error)]
pub enum PrincipalError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The longest a token may be issued for: one year.
pub const MAX_TOKEN_LIFETIME_SECS: i64 = 366 * 24 * 3600;

#[derive(Clone)]
pub struct PrincipalService {
    db: Database,
    auth: Authenticator,
}

pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'@'))
}

impl PrincipalService {
    pub fn new(db: Database, auth: Authenticator) -> Self {
        Self { db, auth }
    }

    pub async fn create(
        &self,
        tenant: &str,
        name: &str,
        kind: PrincipalKind,
        role: Role,
    ) -> Result<PrincipalRow, PrincipalError> {
        if !valid_name(name) {
            return Err(PrincipalError::Invalid(format!(
                "{name:?} is not a valid principal name: 1-63 letters, digits, '-', '.', '_' or '@'"
            )));
        }
        if !valid_name(tenant) {
            return Err(PrincipalError::Invalid(format!("{tenant:?} is not a valid tenant name")));
        }
        let row = PrincipalRow {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.to_owned(),
            kind: kind.as_str().to_owned(),
            role: role.as_str().to_owned(),
            tenant: tenant.to_owned(),
            created_at: now(),
        };
        self.db.insert_principal(&row).await?;
        Ok(row)
    }

    /// A principal of `tenant`; another tenant's principal is not found.
    pub async fn get(&self, tenant: &str, id: &str) -> Result<PrincipalRow, PrincipalError> {
        match self.db.principal(id).await? {
            Some(row) if row.tenant == tenant => Ok(row),
            _ => Err(PrincipalError::NotFound(format!("principal {id}"))),
        }
    }

    pub async fn page(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<PrincipalRow>, PrincipalError> {
        Ok(self.db.principals_page(tenant, after, limit).await?)
    }

    pub async fn tokens(
        &self,
        principal_id: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ApiTokenRow>, PrincipalError> {
        Ok(self.db.api_tokens_page(principal_id, after, limit).await?)
    }

    /// Issues a token for a principal of `tenant`. The secret is in the result only.
    pub async fn issue_token(
        &self,
        tenant: &str,
        principal_id: &str,
        name: &str,
        lifetime_secs: Option<i64>,
    ) -> Result<(SecretString, ApiTokenRow), PrincipalError> {
        let principal = self.get(tenant, principal_id).await?;
        if name.trim().is_empty() || name.len() > 100 {
            return Err(PrincipalError::Invalid("a token name must be 1 to 100 characters".into()));
        }
        let expires_at: Option<NaiveDateTime> = match lifetime_secs {
            None => None,
            Some(secs) if (1..=MAX_TOKEN_LIFETIME_SECS).contains(&secs) => {
                Some(now() + chrono::Duration::seconds(secs))
            }
            Some(secs) => {
                return Err(PrincipalError::Invalid(format!(
                    "expiresInSeconds must be 1 to {MAX_TOKEN_LIFETIME_SECS}, got {secs}"
                )));
            }
        };
        let token = generate_token();
        let row = ApiTokenRow {
            id: uuid::Uuid::new_v4().to_string(),
            principal_id: principal.id,
            name: name.to_owned(),
            token_sha256: token_digest(token.expose_secret()),
            created_at: now(),
            expires_at,
            revoked_at: None,
        };
        self.db.insert_api_token(&row).await?;
        Ok((token, row))
    }

    /// Revokes a token of a principal of `tenant`. Takes effect at once on this server and
    /// within the token cache's lifetime on others.
    pub async fn revoke_token(&self, tenant: &str, token_id: &str) -> Result<ApiTokenRow, PrincipalError> {
        let not_found = || PrincipalError::NotFound(format!("API token {token_id}"));
        let token = self.db.api_token(token_id).await?.ok_or_else(not_found)?;
        self.get(tenant, &token.principal_id).await.map_err(|_| not_found())?;
        self.db.revoke_api_token(token_id, now()).await?;
        self.auth.forget_all();
        if let Err(err) = self.db.announce(&Change::Tokens).await {
            tracing::warn!(error = %err, "could not notify other replicas of a token revocation");
        }
        self.db.api_token(token_id).await?.ok_or_else(not_found)
    }
}
