//! Who acts, and as whom: the `Caller` of a request (its principal, its request id, and the
//! identity it asks to impersonate on clusters), and the rules for impersonation.

use std::collections::BTreeMap;

use crate::auth::Principal;

/// Bounds on an impersonation block, so a request cannot make kubegql send huge headers.
pub const MAX_GROUPS: usize = 32;
pub const MAX_EXTRA_KEYS: usize = 16;
pub const MAX_EXTRA_VALUES: usize = 16;
pub const MAX_VALUE_LEN: usize = 256;

/// An identity to act as on a cluster: Kubernetes' `Impersonate-*` headers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Impersonation {
    pub user: String,
    pub groups: Vec<String>,
    pub uid: Option<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImpersonationError {
    /// The caller may not impersonate at all.
    #[error("impersonation refused: {0}")]
    NotAllowed(String),
    /// The block breaks a bound or a header rule.
    #[error("impersonation: {0}")]
    Invalid(String),
}

fn invalid(message: String) -> ImpersonationError {
    ImpersonationError::Invalid(message)
}

fn check_value(what: &str, value: &str) -> Result<(), ImpersonationError> {
    if value.is_empty() || value.len() > MAX_VALUE_LEN {
        return Err(invalid(format!("{what} must be 1 to {MAX_VALUE_LEN} characters")));
    }
    // Header values: visible ASCII and spaces only, never line breaks.
    if !value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
        return Err(invalid(format!("{what} has characters a header cannot carry")));
    }
    Ok(())
}

impl Impersonation {
    /// Checks the block against the bounds and header rules.
    pub fn validate(&self) -> Result<(), ImpersonationError> {
        check_value("user", &self.user)?;
        if self.groups.len() > MAX_GROUPS {
            return Err(invalid(format!("at most {MAX_GROUPS} groups")));
        }
        for group in &self.groups {
            check_value("a group", group)?;
        }
        if let Some(uid) = &self.uid {
            check_value("uid", uid)?;
        }
        if self.extra.len() > MAX_EXTRA_KEYS {
            return Err(invalid(format!("at most {MAX_EXTRA_KEYS} extra keys")));
        }
        for (key, values) in &self.extra {
            check_value("an extra key", key)?;
            if values.len() > MAX_EXTRA_VALUES {
                return Err(invalid(format!("at most {MAX_EXTRA_VALUES} values per extra key")));
            }
            for value in values {
                check_value("an extra value", value)?;
            }
        }
        if (self.uid.is_some() || !self.groups.is_empty() || !self.extra.is_empty()) && self.user.is_empty() {
            return Err(invalid("groups, uid and extra need a user".into()));
        }
        Ok(())
    }

    /// The identity a cluster set to impersonate its callers sees for `principal`: a user name
    /// that carries the tenant (`kubegql:<tenant>:<name>`, so that principals of the same name in
    /// two tenants never act as one Kubernetes user; neither part may hold a `:`), and groups
    /// naming its tenant and role (prefixed, so they never collide with Kubernetes' own
    /// `system:` groups).
    pub fn of_principal(principal: &Principal) -> Impersonation {
        Impersonation {
            user: format!("kubegql:{}:{}", principal.tenant, principal.name),
            groups: vec![
                format!("kubegql:tenant:{}", principal.tenant),
                format!("kubegql:role:{}", principal.role.as_str().to_lowercase()),
            ],
            uid: None,
            extra: BTreeMap::new(),
        }
    }

    /// A stable text naming this identity: the client cache key and the audit record.
    pub fn canonical(&self) -> String {
        // JSON, so that no value can pass for a separator: ["a,b"] and ["a", "b"] differ.
        let mut groups = self.groups.clone();
        groups.sort();
        groups.dedup();
        serde_json::json!({ "user": self.user, "groups": groups, "uid": self.uid, "extra": self.extra }).to_string()
    }

    /// Applies the identity to a kube client configuration.
    pub fn apply_to(&self, config: &mut kube::Config) {
        config.auth_info.impersonate = Some(self.user.clone());
        config.auth_info.impersonate_groups = (!self.groups.is_empty()).then(|| self.groups.clone());
        config.auth_info.impersonate_uid = self.uid.clone();
        config.auth_info.impersonate_user_extra =
            (!self.extra.is_empty()).then(|| self.extra.clone().into_iter().collect());
    }
}

/// The one who makes a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    /// The identity asked for with `Impersonate-*` request headers (ADMIN only).
    pub impersonation: Option<Impersonation>,
    pub request_id: String,
}

impl Caller {
    pub fn tenant(&self) -> &str {
        &self.principal.tenant
    }

    /// The identity to use on a cluster: the requested impersonation (ADMIN only), else the
    /// caller itself when the cluster is set to impersonate callers (a person signed in with
    /// single sign-on as themself, when so configured), else the cluster's own.
    pub fn cluster_identity(&self, impersonate_caller: bool) -> Result<Option<Impersonation>, ImpersonationError> {
        if let Some(requested) = &self.impersonation {
            if crate::authz::may_impersonate(&self.principal).is_err() {
                return Err(ImpersonationError::NotAllowed(format!(
                    "only ADMIN principals may impersonate; {} has {}",
                    self.principal.name,
                    self.principal.role.as_str()
                )));
            }
            requested.validate()?;
            return Ok(Some(requested.clone()));
        }
        Ok(impersonate_caller
            .then(|| self.principal.person.clone().unwrap_or_else(|| Impersonation::of_principal(&self.principal))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;
    use crate::auth::tests::principal;

    fn caller(role: Role, impersonation: Option<Impersonation>) -> Caller {
        Caller { principal: principal(role), impersonation, request_id: "r".into() }
    }

    #[test]
    fn only_admins_impersonate() {
        let asked = Impersonation { user: "limited".into(), ..Default::default() };
        assert!(caller(Role::Operator, Some(asked.clone())).cluster_identity(false).is_err());
        assert!(caller(Role::Viewer, Some(asked.clone())).cluster_identity(true).is_err());
        assert_eq!(caller(Role::Admin, Some(asked.clone())).cluster_identity(false).unwrap(), Some(asked));
    }

    #[test]
    fn clusters_may_impersonate_their_callers() {
        assert_eq!(caller(Role::Viewer, None).cluster_identity(false).unwrap(), None);
        let me = caller(Role::Operator, None).cluster_identity(true).unwrap().unwrap();
        assert_eq!(me.user, "kubegql:blue:jane");
        assert_eq!(me.groups, vec!["kubegql:tenant:blue", "kubegql:role:operator"]);
    }

    #[test]
    fn bounds_and_header_safety() {
        let base = Impersonation { user: "u".into(), ..Default::default() };
        assert!(base.validate().is_ok());
        let smuggled = Impersonation { user: "u\r\nImpersonate-Group: system:masters".into(), ..Default::default() };
        assert!(smuggled.validate().is_err());
        let many = Impersonation { groups: (0..33).map(|i| format!("g{i}")).collect(), ..base.clone() };
        assert!(many.validate().is_err());
        let huge_extra =
            Impersonation { extra: (0..17).map(|i| (format!("k{i}"), vec!["v".into()])).collect(), ..base.clone() };
        assert!(huge_extra.validate().is_err());
        let long = Impersonation { user: "x".repeat(257), ..Default::default() };
        assert!(long.validate().is_err());
    }

    #[test]
    fn canonical_form_ignores_group_order() {
        let a = Impersonation { user: "u".into(), groups: vec!["a".into(), "b".into()], ..Default::default() };
        let b = Impersonation { user: "u".into(), groups: vec!["b".into(), "a".into()], ..Default::default() };
        assert_eq!(a.canonical(), b.canonical());
        assert_ne!(a.canonical(), Impersonation { user: "v".into(), ..Default::default() }.canonical());
        // Values cannot pass for separators.
        let joined = Impersonation { user: "u".into(), groups: vec!["a,b".into()], ..Default::default() };
        assert_ne!(a.canonical(), joined.canonical());
        let extra = |pairs: &[(&str, &[&str])]| Impersonation {
            user: "u".into(),
            extra: pairs.iter().map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())).collect(),
            ..Default::default()
        };
        assert_ne!(extra(&[("k", &["a", "b"])]).canonical(), extra(&[("k", &["a,b"])]).canonical());
        assert_ne!(extra(&[("k", &["v&x=y"])]).canonical(), extra(&[("k", &["v"]), ("x", &["y"])]).canonical());
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn value() -> impl Strategy<Value = String> {
        prop_oneof!["[ -~]{0,20}", "(?s).{0,20}", "[a-z:]{1,8}"]
    }

    proptest! {
        #![proptest_config(crate::property_config())]

        #[test]
        fn an_identity_that_validates_can_be_sent_as_headers(
            user in value(),
            groups in prop::collection::vec(value(), 0..4),
            uid in prop::option::of(value()),
            extra in prop::collection::btree_map(value(), prop::collection::vec(value(), 0..3), 0..3),
        ) {
            let identity = Impersonation { user, groups, uid, extra };
            if identity.validate().is_ok() {
                let values = std::iter::once(&identity.user)
                    .chain(&identity.groups)
                    .chain(identity.uid.iter())
                    .chain(identity.extra.keys())
                    .chain(identity.extra.values().flatten());
                for v in values {
                    prop_assert!(http::HeaderValue::from_str(v).is_ok(), "{:?}", v);
                }
                let mut config = kube::Config::new("https://127.0.0.1:1".parse().unwrap());
                identity.apply_to(&mut config);
                prop_assert_eq!(config.auth_info.impersonate.as_deref(), Some(identity.user.as_str()));
            }
        }
    }
}
