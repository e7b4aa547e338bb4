//! Single sign-on with an OpenID Connect issuer the operator names (`--oidc-config`).
//!
//! A caller may present, instead of an API token, an ID token of that issuer. It is verified with
//! the `openidconnect` library against the issuer's discovered keys: the signature (asymmetric
//! algorithms the issuer advertises; never `none` or a shared secret), the issuer, the audience
//! (the configured client id, and no audience the operator does not trust), and the expiry with
//! the configured clock skew. A key id the cached key set does not hold makes kubegql fetch the
//! set again (at most once per `JWKS_REFETCH_EVERY`), so keys the issuer rotates in are picked
//! up without a restart. The operator's rules (`rules`) then give the person a tenant and a role.
//!
//! The issuer is the operator's choice and trusted as such; the tokens are not: every byte of one
//! is checked before it is believed, and a token that fails says why in its refusal, never what
//! it held.

pub mod rules;
pub mod sessions;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreGenderClaim, CoreJsonWebKey, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    AdditionalClaims, ClaimsVerificationError, ClientId, IdToken, IdTokenClaims, IdTokenVerifier, IssuerUrl,
    JsonWebKeySet, JwsSigningAlgorithm, Nonce, ProviderMetadataWithLogout, SignatureVerificationError,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::auth::{Principal, PrincipalKind};
use rules::{Identity, Rule, Rules};

/// The least time between two fetches of the issuer's keys caused by a token with an unknown key
/// id: a caller cannot make kubegql hammer the issuer.
pub const JWKS_REFETCH_EVERY: Duration = Duration::from_secs(10);

/// How long a failed discovery is remembered before the issuer is asked again.
const DISCOVERY_RETRY: Duration = Duration::from_secs(5);

/// The operator's single sign-on configuration: a YAML file (see the README, "Single sign-on").
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer URL, exactly as its tokens' `iss` says. HTTPS, or HTTP on a loopback address.
    pub issuer: String,
    /// kubegql's client id at the issuer: a token's `aud` must hold it.
    pub client_id: String,
    /// A file holding the client secret, for a confidential client (browser sign-in).
    pub client_secret_file: Option<PathBuf>,
    /// Other audiences a token may carry beside the client id. Any other makes it refused.
    #[serde(default)]
    pub trusted_audiences: Vec<String>,
    /// A PEM file of CA certificates to trust for the issuer, beside the system's.
    pub ca_file: Option<PathBuf>,
    /// Seconds a token's expiry may be behind the clock (and its issue time ahead of it).
    #[serde(default = "default_skew")]
    pub clock_skew_seconds: u64,
    /// kubegql's public URL of `/auth/callback`, registered at the issuer. Without it the pages
    /// cannot sign in (API callers with ID tokens still can).
    pub redirect_url: Option<String>,
    /// Where the issuer sends the browser after signing out (registered at the issuer).
    pub post_logout_redirect_url: Option<String>,
    /// Scopes the pages ask for when signing in.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Which claims name the person and their groups.
    #[serde(default)]
    pub claims: ClaimNames,
    /// Who gets which tenant and role: the first rule that matches.
    pub rules: Vec<Rule>,
    /// When set, a signed-in person reaches clusters as themself: kubegql impersonates their
    /// username and groups (with these prefixes), so the cluster's RBAC decides per person.
    pub impersonate: Option<ImpersonateConfig>,
}

fn default_skew() -> u64 {
    30
}

fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile", "offline_access"].map(String::from).to_vec()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimNames {
    /// The claim that names the person (`email` is used only when `email_verified` is true;
    /// the subject otherwise).
    #[serde(default = "default_username_claim")]
    pub username: String,
    /// The claim that lists the person's groups (an array of strings, or one string).
    #[serde(default = "default_groups_claim")]
    pub groups: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self { username: default_username_claim(), groups: default_groups_claim() }
    }
}

fn default_username_claim() -> String {
    "email".into()
}

fn default_groups_claim() -> String {
    "groups".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImpersonateConfig {
    /// Put before the username (for example `oidc:`), so that it cannot pose as a cluster's own.
    #[serde(default)]
    pub username_prefix: String,
    /// Put before each group (for example `oidc:`), so that no token can claim `system:masters`.
    #[serde(default)]
    pub groups_prefix: String,
}

/// The claims kubegql reads beyond the standard ones (the groups, by their configured name).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OtherClaims(HashMap<String, serde_json::Value>);

impl AdditionalClaims for OtherClaims {}

type Token = IdToken<OtherClaims, CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm>;
type Claims = IdTokenClaims<OtherClaims, CoreGenderClaim>;

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the token is not a well-formed ID token")]
    Malformed,
    #[error("the token has expired")]
    Expired,
    #[error("the token was issued by another issuer")]
    Issuer,
    #[error("the token is for another audience")]
    Audience,
    #[error("the token's signature does not verify with the issuer's keys")]
    Signature,
    #[error("the token was refused: {0}")]
    Claims(String),
    #[error("no sign-in rule grants this identity access")]
    NoAccess,
    #[error("the token's session was signed out")]
    SignedOut,
    #[error("the identity provider cannot be reached; try again later")]
    Unavailable,
}

/// A token that verified, and who it makes the caller.
#[derive(Debug, Clone)]
pub struct Verified {
    pub principal: Principal,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

struct Provider {
    metadata: ProviderMetadataWithLogout,
    keys: CoreJsonWebKeySet,
    keys_fetched: Instant,
}

/// The configured issuer: its discovered metadata and keys, the rules, and the HTTP client that
/// reaches it.
pub struct Oidc {
    config: OidcConfig,
    issuer: IssuerUrl,
    rules: Rules,
    client_secret: Option<openidconnect::ClientSecret>,
    http: reqwest::Client,
    provider: Mutex<Option<Arc<Provider>>>,
    last_failure: std::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc").field("issuer", &self.config.issuer).finish()
    }
}

impl Oidc {
    /// Reads and checks the configuration file; nothing is fetched yet.
    pub fn from_file(path: &Path) -> anyhow::Result<Oidc> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| anyhow::anyhow!("cannot read the OIDC configuration {}: {err}", path.display()))?;
        let config: OidcConfig = serde_saphyr::from_str(&text)
            .map_err(|err| anyhow::anyhow!("the OIDC configuration {} is not valid: {err}", path.display()))?;
        Oidc::new(config)
    }

    pub fn new(config: OidcConfig) -> anyhow::Result<Oidc> {
        let issuer = IssuerUrl::new(config.issuer.clone())
            .map_err(|err| anyhow::anyhow!("the OIDC issuer {:?} is not a URL: {err}", config.issuer))?;
        check_transport(&config.issuer, "issuer")?;
        if let Some(redirect) = &config.redirect_url {
            check_redirect(redirect)?;
        }
        if let Some(back) = &config.post_logout_redirect_url {
            check_transport(back, "postLogoutRedirectUrl")?;
        }
        if config.client_id.is_empty() {
            anyhow::bail!("the OIDC clientId is empty");
        }
        if !config.scopes.iter().any(|s| s == "openid") {
            anyhow::bail!("the OIDC scopes must include openid");
        }
        let rules = Rules::new(config.rules.clone()).map_err(|err| anyhow::anyhow!("OIDC rules: {err}"))?;
        let client_secret = match &config.client_secret_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|err| anyhow::anyhow!("cannot read the OIDC client secret {}: {err}", path.display()))?;
                Some(openidconnect::ClientSecret::new(text.trim().to_owned()))
            }
            None => None,
        };
        let mut http = reqwest::Client::builder()
            // Following redirects would let an answer send kubegql elsewhere (the library's advice).
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10));
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path)
                .map_err(|err| anyhow::anyhow!("cannot read the OIDC CA file {}: {err}", path.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|err| anyhow::anyhow!("the OIDC CA file {} is not PEM: {err}", path.display()))?
            {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http.build()?;
        Ok(Oidc {
            config,
            issuer,
            rules,
            client_secret,
            http,
            provider: Mutex::new(None),
            last_failure: std::sync::Mutex::new(None),
        })
    }

    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// How far a token's times may be off the clock (at most an hour, whatever the file says).
    pub fn clock_skew(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.config.clock_skew_seconds.min(3600) as i64)
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub(crate) fn client_secret(&self) -> Option<&openidconnect::ClientSecret> {
        self.client_secret.as_ref()
    }

    /// The issuer's metadata and keys, discovered on first use and kept.
    async fn provider(&self) -> Result<Arc<Provider>, OidcError> {
        let mut slot = self.provider.lock().await;
        if let Some(provider) = slot.as_ref() {
            return Ok(Arc::clone(provider));
        }
        if self.last_failure.lock().ok().and_then(|f| *f).is_some_and(|at| at.elapsed() < DISCOVERY_RETRY) {
            return Err(OidcError::Unavailable);
        }
        match ProviderMetadataWithLogout::discover_async(self.issuer.clone(), &self.http).await {
            Ok(metadata) => {
                let keys = metadata.jwks().clone();
                let provider = Arc::new(Provider { metadata, keys, keys_fetched: Instant::now() });
                *slot = Some(Arc::clone(&provider));
                tracing::info!(issuer = %self.config.issuer, "discovered the OIDC issuer");
                Ok(provider)
            }
            Err(err) => {
                tracing::warn!(issuer = %self.config.issuer, error = %err, "OIDC discovery failed");
                if let Ok(mut failure) = self.last_failure.lock() {
                    *failure = Some(Instant::now());
                }
                Err(OidcError::Unavailable)
            }
        }
    }

    /// Fetches the issuer's keys again, unless they were fetched within `JWKS_REFETCH_EVERY`.
    /// Returns the provider to try again with, or `None` when nothing new was fetched.
    async fn refetch_keys(&self, seen: &Arc<Provider>) -> Option<Arc<Provider>> {
        let mut slot = self.provider.lock().await;
        let current = slot.as_ref()?;
        if !Arc::ptr_eq(current, seen) {
            // Another request fetched them meanwhile.
            return Some(Arc::clone(current));
        }
        if current.keys_fetched.elapsed() < JWKS_REFETCH_EVERY {
            return None;
        }
        match CoreJsonWebKeySet::fetch_async(current.metadata.jwks_uri(), &self.http).await {
            Ok(keys) => {
                tracing::info!(issuer = %self.config.issuer, keys = keys.keys().len(), "fetched the OIDC issuer's keys again");
                let provider =
                    Arc::new(Provider { metadata: current.metadata.clone(), keys, keys_fetched: Instant::now() });
                *slot = Some(Arc::clone(&provider));
                Some(provider)
            }
            Err(err) => {
                tracing::warn!(issuer = %self.config.issuer, error = %err, "could not fetch the OIDC issuer's keys");
                None
            }
        }
    }

    pub(crate) async fn metadata(&self) -> Result<ProviderMetadataWithLogout, OidcError> {
        Ok(self.provider().await?.metadata.clone())
    }

    fn verifier<'a>(&'a self, provider: &Provider) -> IdTokenVerifier<'a, CoreJsonWebKey> {
        let skew = self.clock_skew();
        let trusted = self.config.trusted_audiences.clone();
        let algorithms: Vec<CoreJwsSigningAlgorithm> = provider
            .metadata
            .id_token_signing_alg_values_supported()
            .iter()
            .filter(|alg| !alg.uses_shared_secret() && **alg != CoreJwsSigningAlgorithm::None)
            .cloned()
            .collect();
        let keys = JsonWebKeySet::new(provider.keys.keys().clone());
        IdTokenVerifier::new_public_client(ClientId::new(self.config.client_id.clone()), self.issuer.clone(), keys)
            .set_allowed_algs(algorithms)
            .set_other_audience_verifier_fn(move |aud| trusted.iter().any(|t| t == aud.as_str()))
            // Expired means expired by more than the skew.
            .set_time_fn(move || chrono::Utc::now() - skew)
            .set_issue_time_verifier_fn(move |issued| {
                if issued > chrono::Utc::now() + skew {
                    Err("the token's issue time is in the future".into())
                } else {
                    Ok(())
                }
            })
    }

    /// Verifies a bearer token and maps it to a principal.
    pub async fn authenticate(&self, token: &str) -> Result<Verified, OidcError> {
        let claims = self.verified_claims(token, None).await?;
        self.principal(&claims)
    }

    /// The claims of `token` once it verifies; with `nonce`, its nonce must be that one (a token
    /// just received at sign-in).
    pub(crate) async fn verified_claims(&self, token: &str, nonce: Option<&Nonce>) -> Result<Claims, OidcError> {
        let token: Token = token.parse().map_err(|_| OidcError::Malformed)?;
        let provider = self.provider().await?;
        let check = |provider: &Provider| {
            let verifier = self.verifier(provider);
            match nonce {
                Some(nonce) => token.claims(&verifier, nonce).cloned(),
                None => token.claims(&verifier, |_: Option<&Nonce>| Ok(())).cloned(),
            }
        };
        let result = match check(&provider) {
            Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey)) => {
                match self.refetch_keys(&provider).await {
                    Some(again) => check(&again),
                    None => {
                        Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey))
                    }
                }
            }
            other => other,
        };
        result.map_err(|err| match err {
            ClaimsVerificationError::Expired(_) => OidcError::Expired,
            ClaimsVerificationError::InvalidIssuer(_) => OidcError::Issuer,
            ClaimsVerificationError::InvalidAudience(_) => OidcError::Audience,
            ClaimsVerificationError::SignatureVerification(_) => OidcError::Signature,
            ClaimsVerificationError::InvalidNonce(_) => OidcError::Claims("the sign-in's nonce does not match".into()),
            other => {
                tracing::debug!(error = %other, "an ID token was refused");
                OidcError::Claims("its claims do not verify".into())
            }
        })
    }

    /// Who verified claims make the caller, by the operator's rules.
    pub(crate) fn principal(&self, claims: &Claims) -> Result<Verified, OidcError> {
        let identity = self.identity(claims);
        let grant = self.rules.grant(&identity).ok_or(OidcError::NoAccess)?;
        let name = self.username(claims, &identity)?;
        let digest = crate::digest::sha256_hex(format!("{}\n{}", self.config.issuer, identity.subject).as_bytes());
        let mut principal = Principal {
            id: format!("oidc:{}", &digest[..32]),
            name: name.clone(),
            kind: PrincipalKind::User,
            role: grant.role,
            tenant: grant.tenant.clone(),
            token_id: "oidc".into(),
            person: None,
        };
        if let Some(how) = &self.config.impersonate {
            // The person's own groups, then kubegql's tenant and role groups (what a cluster's
            // bindings for kubegql callers name), within the bound a cluster accepts.
            let mut person = crate::access::Impersonation::of_principal(&principal);
            person.user = format!("{}{}", how.username_prefix, name);
            let own = identity.groups.iter().map(|g| format!("{}{g}", how.groups_prefix));
            let mut groups: Vec<String> = own.take(crate::access::MAX_GROUPS - person.groups.len()).collect();
            groups.append(&mut person.groups);
            person.groups = groups;
            person.validate().map_err(|err| OidcError::Claims(format!("its identity cannot be passed on: {err}")))?;
            principal.person = Some(person);
        }
        Ok(Verified { principal, expires_at: claims.expiration() })
    }

    fn identity(&self, claims: &Claims) -> Identity {
        let groups = match claims.additional_claims().0.get(&self.config.claims.groups) {
            Some(serde_json::Value::Array(items)) => {
                items.iter().filter_map(|g| g.as_str()).map(str::to_owned).take(1000).collect()
            }
            Some(serde_json::Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        };
        Identity {
            subject: claims.subject().to_string(),
            email: claims.email().map(|e| e.to_string()),
            email_verified: claims.email_verified() == Some(true),
            groups,
        }
    }

    /// The person's name: the configured claim (a verified email only), else the subject; either
    /// only when it is 1 to 200 visible ASCII characters (it goes into logs, audit records and,
    /// on clusters that impersonate their callers, a header).
    fn username(&self, claims: &Claims, identity: &Identity) -> Result<String, OidcError> {
        let wanted = self.config.claims.username.as_str();
        let name = match wanted {
            "email" => identity.email.clone().filter(|_| identity.email_verified),
            "sub" => None,
            "preferred_username" => claims.preferred_username().map(|u| u.to_string()),
            "name" => claims.name().and_then(|n| n.get(None)).map(|n| n.to_string()),
            other => claims.additional_claims().0.get(other).and_then(|v| v.as_str()).map(str::to_owned),
        };
        let usable = |n: &String| (1..=200).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_graphic());
        match name.filter(usable) {
            Some(name) => Ok(name),
            None if usable(&identity.subject) => Ok(identity.subject.clone()),
            None => Err(OidcError::Claims("its subject is not a usable name".into())),
        }
    }
}

/// Whether a bearer token has the shape of a JWT (three base64url parts); API tokens never do.
pub fn looks_like_jwt(token: &str) -> bool {
    let mut parts = 0;
    for part in token.split('.') {
        parts += 1;
        if part.is_empty() && parts < 3 || !part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return false;
        }
    }
    parts == 3
}

/// Tokens and secrets travel to the issuer only over HTTPS, or over HTTP to a loopback address.
fn check_transport(url: &str, what: &str) -> anyhow::Result<()> {
    let parsed: http::Uri =
        url.parse().map_err(|err| anyhow::anyhow!("the OIDC {what} {url:?} is not a URL: {err}"))?;
    match parsed.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if parsed.host().is_some_and(is_loopback) => Ok(()),
        _ => anyhow::bail!("the OIDC {what} {url:?} must be https:// (http:// only on a loopback address)"),
    }
}

fn check_redirect(url: &str) -> anyhow::Result<()> {
    check_transport(url, "redirectUrl")?;
    let parsed: http::Uri = url.parse()?;
    if parsed.path() != "/auth/callback" {
        anyhow::bail!("the OIDC redirectUrl must end in /auth/callback (kubegql's sign-in callback), not {url:?}");
    }
    Ok(())
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> anyhow::Result<Oidc> {
        Oidc::new(serde_saphyr::from_str(yaml)?)
    }

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"));
        assert!(!looks_like_jwt("kgq_abcdef"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt("a b.c.d"));
        assert!(!looks_like_jwt(".b.c"));
    }

    #[test]
    fn the_issuer_must_be_https_or_loopback() {
        let rules = "rules: [{group: g, tenant: t, role: VIEWER}]";
        assert!(config(&format!("issuer: https://idp.example.com\nclientId: k\n{rules}")).is_ok());
        assert!(config(&format!("issuer: http://127.0.0.1:4444\nclientId: k\n{rules}")).is_ok());
        assert!(config(&format!("issuer: http://[::1]:4444\nclientId: k\n{rules}")).is_ok());
        let err = config(&format!("issuer: http://idp.example.com\nclientId: k\n{rules}")).expect_err("refused");
        assert!(err.to_string().contains("https"), "{err}");
        let err = config(&format!(
            "issuer: https://idp.example.com\nclientId: k\nredirectUrl: https://kubegql.example.com/elsewhere\n{rules}"
        ))
        .expect_err("refused");
        assert!(err.to_string().contains("/auth/callback"), "{err}");
        let err = config(&format!("issuer: https://idp.example.com\nclientId: k\nscopes: [email]\n{rules}"))
            .expect_err("refused");
        assert!(err.to_string().contains("openid"), "{err}");
        let err = config("issuer: https://idp.example.com\nclientId: k\nrules: [{tenant: t, role: VIEWER}]")
            .expect_err("refused");
        assert!(err.to_string().contains("no condition"), "{err}");
        assert!(
            serde_saphyr::from_str::<OidcConfig>(&format!("issuer: x\nclientId: k\nclientSecret: s\n{rules}")).is_err()
        );
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(crate::property_config())]

        #[test]
        fn only_three_base64url_parts_look_like_a_jwt(token in prop_oneof!["(?s).{0,60}", "[A-Za-z0-9_.-]{0,60}"]) {
            let jwt = looks_like_jwt(&token);
            let parts: Vec<&str> = token.split('.').collect();
            if jwt {
                prop_assert_eq!(parts.len(), 3);
                prop_assert!(!parts[0].is_empty() && !parts[1].is_empty());
                prop_assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
            }
            // API tokens are never taken for ID tokens.
            let api_token = [crate::auth::TOKEN_PREFIX, &token.replace('.', "")].concat();
            prop_assert!(!looks_like_jwt(&api_token));
        }
    }
}
