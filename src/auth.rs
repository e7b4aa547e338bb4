//! Who is calling: API tokens, stored as SHA-256 digests, resolve to a `Principal`.
//!
//! Tokens are 32 random bytes, so a single unsalted SHA-256 is as strong as a slow hash here and
//! keeps per-request verification cheap. The bootstrap admin is created on first start.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dashmap::DashMap;
use secrecy::{ExposeSecret, SecretString};

use crate::store::principals::{ApiTokenRow, PrincipalRow};
use crate::store::{Database, StoreError, now};

pub const TOKEN_PREFIX: &str = "kgq_";
const MIN_TOKEN_LEN: usize = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum Role {
    Admin,
    Operator,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "ADMIN",
            Role::Operator => "OPERATOR",
            Role::Viewer => "VIEWER",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "ADMIN" => Some(Role::Admin),
            "OPERATOR" => Some(Role::Operator),
            "VIEWER" => Some(Role::Viewer),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum PrincipalKind {
    User,
    ServiceAccount,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "USER",
            PrincipalKind::ServiceAccount => "SERVICE_ACCOUNT",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: String,
    pub name: String,
    pub kind: PrincipalKind,
    pub role: Role,
    pub tenant: String,
    pub token_id: String,
    /// A person signed in with single sign-on, as clusters that impersonate their callers see
    /// them (when the sign-on configuration says so): their name and groups from the token.
    pub person: Option<crate::access::Impersonation>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token: send `Authorization: Bearer <token>`")]
    Missing,
    #[error("the bearer token is not valid, expired or revoked")]
    Invalid,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An ID token of the configured issuer that did not verify, or that no rule admits.
    #[error(transparent)]
    Oidc(#[from] crate::oidc::OidcError),
}

impl AuthError {
    /// A credential was presented and does not hold (what counts against an address's budget of
    /// failed authentications); a missing one, an unavailable store or issuer, or a valid
    /// identity no rule admits is not a guess.
    pub fn is_refused_credential(&self) -> bool {
        match self {
            AuthError::Invalid => true,
            AuthError::Oidc(err) => {
                !matches!(err, crate::oidc::OidcError::NoAccess | crate::oidc::OidcError::Unavailable)
            }
            AuthError::Missing | AuthError::Store(_) => false,
        }
    }
}

pub fn token_digest(token: &str) -> String {
    crate::digest::sha256_hex(token.as_bytes())
}

pub fn generate_token() -> SecretString {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    SecretString::from(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// Extracts the token from an `Authorization` header value (`Bearer <token>`).
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// How long a verified token is trusted without asking the database again. Bounds how long a
/// token revoked on another replica keeps working here.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(10);

/// How long a token verified before the database became unavailable keeps working while it is
/// unavailable, unless the operator sets another (`KUBEGQL_STORE_OUTAGE_GRACE_SECS`).
pub const DEFAULT_OUTAGE_GRACE: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Verified {
    principal: Principal,
    at: Instant,
    expires_at: Option<chrono::NaiveDateTime>,
}

impl Verified {
    fn fresh(&self) -> bool {
        self.within(TOKEN_CACHE_TTL)
    }

    /// Verified less than `age` ago, and not expired since.
    fn within(&self, age: Duration) -> bool {
        self.at.elapsed() < age && self.expires_at.is_none_or(|at| at > now())
    }
}

/// Resolves tokens to principals. Verified tokens are remembered (by digest) for
/// `TOKEN_CACHE_TTL`, so a busy UI does not cost a database read per request. While the database
/// is unavailable, a token verified within the outage grace still works (tokens cannot be revoked
/// meanwhile: revoking needs the database), and every other token is refused with
/// `STORE_UNAVAILABLE`: nothing unverified gets in.
#[derive(Debug, Clone)]
pub struct Authenticator {
    db: Database,
    outage_grace: Duration,
    verified: Arc<DashMap<String, Verified>>,
    /// Digests of tokens found unknown (not expired or revoked ones: those are known), and when.
    unknown: Arc<DashMap<String, Instant>>,
    /// The single sign-on issuer, when configured: bearer tokens shaped as JWTs are its ID tokens.
    oidc: Option<Arc<crate::oidc::Oidc>>,
    /// Browser sessions of single sign-on (their signed-out tokens are refused).
    sessions: Arc<crate::oidc::sessions::Sessions>,
}

impl Authenticator {
    pub fn new(db: Database) -> Self {
        Self {
            db,
            outage_grace: DEFAULT_OUTAGE_GRACE,
            verified: Arc::new(DashMap::new()),
            unknown: Arc::new(DashMap::new()),
            oidc: None,
            sessions: Default::default(),
        }
    }

    /// Accepts ID tokens of this issuer beside API tokens.
    pub fn with_oidc(mut self, oidc: Arc<crate::oidc::Oidc>) -> Self {
        self.oidc = Some(oidc);
        self
    }

    pub fn oidc(&self) -> Option<&Arc<crate::oidc::Oidc>> {
        self.oidc.as_ref()
    }

    pub fn sessions(&self) -> &Arc<crate::oidc::sessions::Sessions> {
        &self.sessions
    }

    /// How long a verified token outlives its cache entry while the database is unavailable.
    pub fn with_outage_grace(mut self, grace: Duration) -> Self {
        self.outage_grace = grace;
        self
    }

    /// Forgets every remembered token (after a revocation).
    pub fn forget_all(&self) {
        self.verified.clear();
    }

    pub async fn authenticate(&self, token: Option<&str>) -> Result<Principal, AuthError> {
        let token = token.ok_or(AuthError::Missing)?;
        let digest = token_digest(token);
        let sso = self.oidc.as_ref().filter(|_| crate::oidc::looks_like_jwt(token));
        if sso.is_some() && self.sessions.is_signed_out(&digest) {
            return Err(AuthError::Oidc(crate::oidc::OidcError::SignedOut));
        }
        if let Some(entry) = self.verified.get(&digest)
            && entry.fresh()
        {
            return Ok(entry.principal.clone());
        }
        if let Some(oidc) = sso {
            // An ID token: verified against the issuer's keys, never the database.
            let verified = oidc.authenticate(token).await?;
            let expires_at = Some((verified.expires_at + oidc.clock_skew()).naive_utc());
            self.remember(digest, verified.principal.clone(), expires_at);
            return Ok(verified.principal);
        }
        // A token found unknown a moment ago is unknown still (tokens are made here, at random):
        // asking the database again would let a guesser spend a query per guess.
        if self.unknown.get(&digest).is_some_and(|at| at.elapsed() < TOKEN_CACHE_TTL) {
            return Err(AuthError::Invalid);
        }
        let (principal, expires_at) = match self.lookup(&digest).await {
            Err(AuthError::Invalid) => {
                if self.unknown.len() > 10_000 {
                    self.unknown.retain(|_, at| at.elapsed() < TOKEN_CACHE_TTL);
                }
                if self.unknown.len() <= 10_000 {
                    self.unknown.insert(digest, Instant::now());
                }
                return Err(AuthError::Invalid);
            }
            Err(AuthError::Store(err)) if err.is_unavailable() => {
                return match self.verified.get(&digest) {
                    Some(entry) if entry.within(self.outage_grace) => Ok(entry.principal.clone()),
                    _ => Err(AuthError::Store(err)),
                };
            }
            other => other?,
        };
        self.remember(digest, principal.clone(), expires_at);
        Ok(principal)
    }

    fn remember(&self, digest: String, principal: Principal, expires_at: Option<chrono::NaiveDateTime>) {
        if self.verified.len() > 10_000 {
            // Entries within the outage grace are kept: they are what lets callers in while the
            // database is unavailable.
            let grace = self.outage_grace.max(TOKEN_CACHE_TTL);
            self.verified.retain(|_, v| v.within(grace));
        }
        self.verified.insert(digest, Verified { principal, at: Instant::now(), expires_at });
    }

    async fn lookup(&self, digest: &str) -> Result<(Principal, Option<chrono::NaiveDateTime>), AuthError> {
        let (row, token_id, expires_at) = self.db.principal_by_token(digest, now()).await?.ok_or(AuthError::Invalid)?;
        let role = Role::parse(&row.role).ok_or(AuthError::Invalid)?;
        let kind = if row.kind == "SERVICE_ACCOUNT" { PrincipalKind::ServiceAccount } else { PrincipalKind::User };
        Ok((
            Principal { id: row.id, name: row.name, kind, role, tenant: row.tenant, token_id, person: None },
            expires_at,
        ))
    }
}

/// What start-up did about the first admin.
#[derive(Debug)]
pub enum Bootstrap {
    /// Tokens exist already; nothing was created.
    Existing,
    /// The admin was created with the configured token.
    FromSettings,
    /// The admin was created with this random token, to be shown once.
    Generated(SecretString),
}

/// Creates the `admin` principal and its token when the store has no token at all.
pub async fn bootstrap_admin(db: &Database, configured: Option<&str>) -> Result<Bootstrap, anyhow::Error> {
    if db.count_api_tokens().await? > 0 {
        return Ok(Bootstrap::Existing);
    }
    let (token, outcome) = match configured {
        Some(text) => {
            let text = text.trim();
            if text.len() < MIN_TOKEN_LEN {
                anyhow::bail!("KUBEGQL_BOOTSTRAP_ADMIN_TOKEN must be at least {MIN_TOKEN_LEN} characters");
            }
            (SecretString::from(text.to_owned()), None)
        }
        None => {
            let token = generate_token();
            (token.clone(), Some(token))
        }
    };
    let created_at = now();
    let principal = PrincipalRow {
        id: uuid::Uuid::new_v4().to_string(),
        name: "admin".into(),
        kind: PrincipalKind::User.as_str().into(),
        role: Role::Admin.as_str().into(),
        tenant: "default".into(),
        created_at,
    };
    let token_row = ApiTokenRow {
        id: uuid::Uuid::new_v4().to_string(),
        principal_id: principal.id.clone(),
        name: "bootstrap".into(),
        token_sha256: token_digest(token.expose_secret()),
        created_at,
        expires_at: None,
        revoked_at: None,
    };
    match db.insert_principal_with_token(&principal, &token_row).await {
        Ok(()) => {}
        // Another replica bootstrapped at the same moment: its admin stands.
        Err(StoreError::Conflict(_)) => return Ok(Bootstrap::Existing),
        Err(err) => return Err(err.into()),
    }
    Ok(match outcome {
        Some(token) => Bootstrap::Generated(token),
        None => Bootstrap::FromSettings,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A principal of tenant `blue` with `role`, for the policy's unit tests.
    pub(crate) fn principal(role: Role) -> Principal {
        Principal {
            id: "p".into(),
            name: "jane".into(),
            kind: PrincipalKind::User,
            role,
            tenant: "blue".into(),
            token_id: "t".into(),
            person: None,
        }
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("abc"), None);
    }

    #[test]
    fn generated_tokens_are_distinct_and_prefixed() {
        let a = generate_token();
        let b = generate_token();
        assert!(a.expose_secret().starts_with(TOKEN_PREFIX));
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_eq!(token_digest("x").len(), 64);
    }
}
