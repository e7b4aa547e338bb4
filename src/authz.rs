//! The one authorization policy (SECURITY.md): what each role may do. GraphQL fields carry a
//! `graphql::RoleGuard` that asks it; HTTP routes take the `Authenticated` caller (see `http`) and ask `require`; the
//! domain asks `may_impersonate` and `audit_scope`. Tenancy is the other half of the policy:
//! every service looks objects up with the caller's tenant, and another tenant's object is
//! NOT_FOUND, as if it did not exist.

use std::cmp::Ordering;

use crate::auth::{Principal, Role};

impl Role {
    /// VIEWER < OPERATOR < ADMIN: each role may do all that the ones below it may.
    fn rank(self) -> u8 {
        match self {
            Role::Viewer => 0,
            Role::Operator => 1,
            Role::Admin => 2,
        }
    }
}

impl PartialOrd for Role {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Role {
    fn cmp(&self, other: &Self) -> Ordering {
        self.rank().cmp(&other.rank())
    }
}

/// A principal lacks the role an action needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this needs the {} role; {name} has {}", needed.as_str(), has.as_str())]
pub struct Denied {
    pub needed: Role,
    pub name: String,
    pub has: Role,
}

/// Allows `principal` when it holds at least `needed`.
pub fn require(principal: &Principal, needed: Role) -> Result<(), Denied> {
    if principal.role >= needed {
        Ok(())
    } else {
        Err(Denied { needed, name: principal.name.clone(), has: principal.role })
    }
}

/// The least role that may use a Kubernetes `verb` (on `subresource`) through kubegql, as its
/// own fields and endpoints require: reads are a VIEWER's; every change, and every stream into a
/// pod (exec, attach, port-forward, proxy), an OPERATOR's. Used to answer "may I?".
pub fn least_role_for(verb: &str, subresource: Option<&str>) -> Role {
    let reads = matches!(verb, "get" | "list" | "watch");
    let reaches_in = matches!(subresource, Some("exec" | "attach" | "portforward" | "proxy"));
    if reads && !reaches_in { Role::Viewer } else { Role::Operator }
}

/// Only ADMIN may ask to act on a cluster as another identity (`Impersonate-*`).
pub fn may_impersonate(principal: &Principal) -> Result<(), Denied> {
    require(principal, Role::Admin)
}

/// Whose audit records a principal may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditScope {
    /// Every record of its tenant (ADMIN).
    Tenant,
    /// Only its own (OPERATOR).
    Own,
}

/// ADMIN reads its tenant's records, OPERATOR its own; VIEWER none.
pub fn audit_scope(principal: &Principal) -> Result<AuditScope, Denied> {
    require(principal, Role::Operator)?;
    Ok(if principal.role >= Role::Admin { AuditScope::Tenant } else { AuditScope::Own })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::tests::principal;

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        let mut roles = vec![Role::Admin, Role::Viewer, Role::Operator];
        roles.sort();
        assert_eq!(roles, vec![Role::Viewer, Role::Operator, Role::Admin]);
    }

    #[test]
    fn reads_are_a_viewers_and_everything_else_an_operators() {
        for verb in ["get", "list", "watch"] {
            assert_eq!(least_role_for(verb, None), Role::Viewer, "{verb}");
            assert_eq!(least_role_for(verb, Some("log")), Role::Viewer, "{verb} log");
        }
        for verb in ["create", "update", "patch", "delete", "deletecollection", "escalate", "bind", "impersonate"] {
            assert_eq!(least_role_for(verb, None), Role::Operator, "{verb}");
        }
        assert_eq!(least_role_for("get", Some("exec")), Role::Operator);
        assert_eq!(least_role_for("create", Some("portforward")), Role::Operator);
    }

    #[test]
    fn each_role_may_do_what_those_below_it_may() {
        for (has, needed, allowed) in [
            (Role::Viewer, Role::Viewer, true),
            (Role::Viewer, Role::Operator, false),
            (Role::Viewer, Role::Admin, false),
            (Role::Operator, Role::Operator, true),
            (Role::Operator, Role::Admin, false),
            (Role::Admin, Role::Viewer, true),
            (Role::Admin, Role::Admin, true),
        ] {
            assert_eq!(require(&principal(has), needed).is_ok(), allowed, "{has:?} for {needed:?}");
        }
        let denied = require(&principal(Role::Viewer), Role::Admin).unwrap_err();
        assert_eq!(denied.to_string(), "this needs the ADMIN role; jane has VIEWER");
    }

    #[test]
    fn impersonation_and_audit_scopes() {
        assert!(may_impersonate(&principal(Role::Admin)).is_ok());
        assert!(may_impersonate(&principal(Role::Operator)).is_err());
        assert_eq!(audit_scope(&principal(Role::Admin)), Ok(AuditScope::Tenant));
        assert_eq!(audit_scope(&principal(Role::Operator)), Ok(AuditScope::Own));
        assert!(audit_scope(&principal(Role::Viewer)).is_err());
    }
}
