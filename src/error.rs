//! The API's error vocabulary: every domain error is mapped once, here, to a GraphQL error whose
//! `extensions.code` a client can switch on. Messages never carry secret values.

use async_graphql::ErrorExtensions;

use crate::auth::AuthError;
use crate::authz::Denied;
use crate::clients::ConnectError;
use crate::clients::connections::AccessError;
use crate::clusters::ClusterError;
use crate::principals::PrincipalError;
use crate::resources::ResourceError;
use crate::store::StoreError;
use crate::watch::WatchError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadUserInput,
    NotFound,
    Forbidden,
    Unauthenticated,
    Conflict,
    ClusterUnreachable,
    CursorExpired,
    RateLimited,
    StoreUnavailable,
    IdentityProviderUnavailable,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadUserInput => "BAD_USER_INPUT",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::ClusterUnreachable => "CLUSTER_UNREACHABLE",
            ErrorCode::CursorExpired => "CURSOR_EXPIRED",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::StoreUnavailable => "STORE_UNAVAILABLE",
            ErrorCode::IdentityProviderUnavailable => "IDENTITY_PROVIDER_UNAVAILABLE",
            ErrorCode::Internal => "INTERNAL",
        }
    }
}

/// What a caller is told while the database is unavailable.
pub const STORE_UNAVAILABLE: &str = "kubegql's database is unavailable: changes are refused until it answers again \
     (reads of known clusters and their resources go on)";

/// An error ready for a client: a code, a message, and optionally the input field at fault.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), field: None }
    }

    pub fn bad_input(field: &str, message: impl Into<String>) -> Self {
        Self { code: ErrorCode::BadUserInput, message: message.into(), field: Some(field.into()) }
    }

    /// An internal failure: the detail goes to the log, the client gets a generic message.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(ErrorCode::Internal, "internal server error")
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(err: ApiError) -> Self {
        let code = err.code.as_str();
        let field = err.field.clone();
        async_graphql::Error::new(err.message).extend_with(|_, ext| {
            ext.set("code", code);
            if let Some(field) = field {
                ext.set("field", field);
            }
        })
    }
}

// Each domain error maps by reference, so a result that keeps its error (an applied document)
// can show it; the owned forms below forward to these.

impl From<&StoreError> for ApiError {
    fn from(err: &StoreError) -> Self {
        match err {
            StoreError::Conflict(msg) => ApiError::new(ErrorCode::Conflict, msg.clone()),
            // The driver's reason goes to the log; the caller learns what it can rely on.
            other if other.is_unavailable() => {
                tracing::warn!(error = %other, "a request needed the database, which is unavailable");
                ApiError::new(ErrorCode::StoreUnavailable, STORE_UNAVAILABLE)
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<&ClusterError> for ApiError {
    fn from(err: &ClusterError) -> Self {
        match err {
            ClusterError::Invalid { field, message } => ApiError::bad_input(field, message.clone()),
            ClusterError::NotFound(_) => ApiError::new(ErrorCode::NotFound, err.to_string()),
            ClusterError::Forbidden(message) => ApiError::new(ErrorCode::Forbidden, message.clone()),
            ClusterError::Store(store) => store.into(),
            // Names the cluster and the key id, never the key or the plaintext.
            ClusterError::Cipher(_) => {
                tracing::error!(error = %err, "credential decryption failed");
                ApiError::new(ErrorCode::Internal, err.to_string())
            }
        }
    }
}

impl From<&AccessError> for ApiError {
    fn from(err: &AccessError) -> Self {
        match err {
            AccessError::Cluster(cluster) => cluster.into(),
            AccessError::Forbidden(message) => ApiError::new(ErrorCode::Forbidden, message.clone()),
            AccessError::Invalid(message) => ApiError::new(ErrorCode::BadUserInput, message.clone()),
            AccessError::Connect { cluster, error } => {
                let code = match error {
                    ConnectError::Forbidden(_) | ConnectError::NotAllowed(_) => ErrorCode::Forbidden,
                    ConnectError::Api { code: 404, .. } => ErrorCode::NotFound,
                    ConnectError::Api { code: 409, .. } => ErrorCode::Conflict,
                    ConnectError::Api { code: 400 | 422, .. } => ErrorCode::BadUserInput,
                    ConnectError::Api { code: 410, .. } => ErrorCode::CursorExpired,
                    ConnectError::Api { code: 429, .. } => ErrorCode::RateLimited,
                    ConnectError::Api { .. } => ErrorCode::Internal,
                    _ => ErrorCode::ClusterUnreachable,
                };
                ApiError::new(code, format!("cluster {cluster}: {error}"))
            }
        }
    }
}

impl From<&ResourceError> for ApiError {
    fn from(err: &ResourceError) -> Self {
        match err {
            ResourceError::Access(access) => access.into(),
            ResourceError::UnknownKind(msg) => ApiError::new(ErrorCode::NotFound, msg.clone()),
            ResourceError::Invalid(msg) => ApiError::new(ErrorCode::BadUserInput, msg.clone()),
            ResourceError::Expired => ApiError::new(ErrorCode::CursorExpired, err.to_string()),
        }
    }
}

impl From<&PrincipalError> for ApiError {
    fn from(err: &PrincipalError) -> Self {
        match err {
            PrincipalError::Invalid(msg) => ApiError::new(ErrorCode::BadUserInput, msg.clone()),
            PrincipalError::NotFound(_) => ApiError::new(ErrorCode::NotFound, err.to_string()),
            PrincipalError::Store(store) => store.into(),
        }
    }
}

impl From<&WatchError> for ApiError {
    fn from(err: &WatchError) -> Self {
        match err {
            WatchError::Invalid(msg) => ApiError::new(ErrorCode::BadUserInput, msg.clone()),
            WatchError::TooMany(msg) => ApiError::new(ErrorCode::RateLimited, msg.clone()),
            WatchError::Ended(msg) => ApiError::new(ErrorCode::Conflict, msg.clone()),
        }
    }
}

impl From<&crate::logs::LogError> for ApiError {
    fn from(err: &crate::logs::LogError) -> Self {
        match err {
            crate::logs::LogError::Invalid(msg) => ApiError::new(ErrorCode::BadUserInput, msg.clone()),
            crate::logs::LogError::TooMany(msg) => ApiError::new(ErrorCode::RateLimited, msg.clone()),
        }
    }
}

impl From<&Denied> for ApiError {
    fn from(err: &Denied) -> Self {
        ApiError::new(ErrorCode::Forbidden, err.to_string())
    }
}

impl From<&AuthError> for ApiError {
    fn from(err: &AuthError) -> Self {
        match err {
            AuthError::Store(store) => store.into(),
            AuthError::Oidc(crate::oidc::OidcError::NoAccess) => ApiError::new(ErrorCode::Forbidden, err.to_string()),
            AuthError::Oidc(crate::oidc::OidcError::Unavailable) => {
                ApiError::new(ErrorCode::IdentityProviderUnavailable, err.to_string())
            }
            other => ApiError::new(ErrorCode::Unauthenticated, other.to_string()),
        }
    }
}

macro_rules! owned_errors {
    ($($error:ty),*) => {$(
        impl From<$error> for ApiError {
            fn from(err: $error) -> Self {
                ApiError::from(&err)
            }
        }
    )*};
}
impl From<&crate::tunnel::TooManyTunnels> for ApiError {
    fn from(err: &crate::tunnel::TooManyTunnels) -> Self {
        ApiError::new(ErrorCode::RateLimited, err.to_string())
    }
}

owned_errors!(
    StoreError,
    ClusterError,
    AccessError,
    ResourceError,
    PrincipalError,
    WatchError,
    crate::logs::LogError,
    Denied,
    AuthError,
    crate::tunnel::TooManyTunnels
);

/// Gives every error of a response a code: errors raised before any resolver ran (parse,
/// validation, depth and complexity limits, argument coercion) are the caller's fault.
pub fn ensure_codes(response: &mut async_graphql::Response, limits: &crate::settings::ApiLimits) {
    for err in &mut response.errors {
        if err.message == "Query is too complex." {
            err.message = format!(
                "the query costs more than the budget of {} (maxQueryComplexity): each field costs 1 each time it is \
                 resolved, a list its items (`first`, default 50) times what they select, podLogs 1 per KiB, and each \
                 call to a cluster 100; ask for fewer items, fewer fields or fewer aliases",
                limits.max_query_complexity
            );
        }
        let has_code = err.extensions.as_ref().is_some_and(|ext| ext.get("code").is_some());
        if !has_code {
            err.extensions.get_or_insert_with(Default::default).set("code", ErrorCode::BadUserInput.as_str());
        }
    }
}
