//! Who a signed-in person is in kubegql: the operator's rules turn the claims of a verified token
//! (subject, email, groups) into a tenant and a role. The first rule that matches wins; a person
//! no rule matches gets no access at all.

use serde::Deserialize;

use crate::auth::Role;

/// One rule of the operator's configuration. Every condition it names must hold; it must name at
/// least one. Email conditions hold only for an email the issuer says is verified.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// The person is in this group (the groups claim).
    pub group: Option<String>,
    /// The person's verified email is exactly this (compared without case).
    pub email: Option<String>,
    /// The person's verified email is at this domain (compared without case).
    pub email_domain: Option<String>,
    /// The token's subject is exactly this.
    pub subject: Option<String>,
    /// The tenant the person acts in.
    pub tenant: String,
    /// `ADMIN`, `OPERATOR` or `VIEWER`.
    pub role: String,
}

/// A rule, checked: its role parsed, its tenant a valid name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub tenant: String,
    pub role: Role,
}

/// What the rules read of a verified token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub groups: Vec<String>,
}

impl Identity {
    fn verified_email(&self) -> Option<&str> {
        self.email.as_deref().filter(|_| self.email_verified)
    }
}

/// The operator's rules, checked once at start-up.
#[derive(Debug, Clone, Default)]
pub struct Rules(Vec<(Rule, Grant)>);

impl Rules {
    pub fn new(rules: Vec<Rule>) -> Result<Self, String> {
        let mut checked = Vec::with_capacity(rules.len());
        for (n, rule) in rules.into_iter().enumerate() {
            let at = format!("rule {}", n + 1);
            if rule.group.is_none() && rule.email.is_none() && rule.email_domain.is_none() && rule.subject.is_none() {
                return Err(format!("{at} names no condition: give group, email, emailDomain or subject"));
            }
            let role = Role::parse(&rule.role)
                .ok_or_else(|| format!("{at}: role must be ADMIN, OPERATOR or VIEWER, not {:?}", rule.role))?;
            if !crate::principals::valid_name(&rule.tenant) {
                return Err(format!("{at}: {:?} is not a valid tenant name", rule.tenant));
            }
            if let Some(domain) = &rule.email_domain
                && (domain.is_empty() || domain.contains('@'))
            {
                return Err(format!("{at}: emailDomain is a domain such as example.com, not {domain:?}"));
            }
            let grant = Grant { tenant: rule.tenant.clone(), role };
            checked.push((rule, grant));
        }
        Ok(Rules(checked))
    }

    /// The grant of the first rule that matches `identity`, if any.
    pub fn grant(&self, identity: &Identity) -> Option<&Grant> {
        self.0.iter().find(|(rule, _)| matches(rule, identity)).map(|(_, grant)| grant)
    }
}

fn matches(rule: &Rule, who: &Identity) -> bool {
    let email = who.verified_email();
    rule.group.as_ref().is_none_or(|g| who.groups.iter().any(|have| have == g))
        && rule.subject.as_ref().is_none_or(|s| *s == who.subject)
        && rule.email.as_ref().is_none_or(|e| email.is_some_and(|have| have.eq_ignore_ascii_case(e)))
        && rule.email_domain.as_ref().is_none_or(|d| {
            email.and_then(|have| have.rsplit_once('@')).is_some_and(|(_, domain)| domain.eq_ignore_ascii_case(d))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(yaml: &str) -> Rule {
        serde_saphyr::from_str(yaml).expect("a rule")
    }

    fn who(email: &str, verified: bool, groups: &[&str]) -> Identity {
        Identity {
            subject: "sub-1".into(),
            email: Some(email.into()),
            email_verified: verified,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn the_first_matching_rule_wins() {
        let rules = Rules::new(vec![
            rule("{group: platform, tenant: platform, role: ADMIN}"),
            rule("{emailDomain: example.com, tenant: default, role: VIEWER}"),
        ])
        .expect("valid");
        let admin = rules.grant(&who("ann@example.com", true, &["platform", "dev"])).expect("granted");
        assert_eq!((admin.tenant.as_str(), admin.role), ("platform", Role::Admin));
        let viewer = rules.grant(&who("bob@EXAMPLE.com", true, &["dev"])).expect("granted");
        assert_eq!((viewer.tenant.as_str(), viewer.role), ("default", Role::Viewer));
        assert_eq!(rules.grant(&who("eve@example.org", true, &["dev"])), None);
    }

    #[test]
    fn email_conditions_need_a_verified_email() {
        let rules = Rules::new(vec![rule("{email: ann@example.com, tenant: t, role: OPERATOR}")]).expect("valid");
        assert!(rules.grant(&who("ann@example.com", true, &[])).is_some());
        assert_eq!(rules.grant(&who("ann@example.com", false, &[])), None);
        let domain = Rules::new(vec![rule("{emailDomain: example.com, tenant: t, role: VIEWER}")]).expect("valid");
        assert_eq!(domain.grant(&who("ann@example.com", false, &[])), None);
        // The domain is the part after the last '@', whole.
        assert_eq!(domain.grant(&who("ann@evil-example.com", true, &[])), None);
        assert_eq!(domain.grant(&who("ann@example.com@evil.org", true, &[])), None);
    }

    #[test]
    fn every_condition_of_a_rule_must_hold() {
        let rules =
            Rules::new(vec![rule("{group: ops, emailDomain: example.com, tenant: t, role: OPERATOR}")]).expect("valid");
        assert!(rules.grant(&who("a@example.com", true, &["ops"])).is_some());
        assert_eq!(rules.grant(&who("a@example.com", true, &["dev"])), None);
        assert_eq!(rules.grant(&who("a@example.org", true, &["ops"])), None);
        let by_subject = Rules::new(vec![rule("{subject: sub-1, tenant: t, role: VIEWER}")]).expect("valid");
        assert!(by_subject.grant(&who("x@y.z", false, &[])).is_some());
    }

    #[test]
    fn bad_rules_are_refused_at_start() {
        let refused = |yaml: &str| Rules::new(vec![rule(yaml)]).expect_err("refused");
        assert!(refused("{tenant: t, role: ADMIN}").contains("no condition"));
        assert!(refused("{group: g, tenant: t, role: ROOT}").contains("role"));
        assert!(refused("{group: g, tenant: 'a b', role: VIEWER}").contains("tenant"));
        assert!(refused("{emailDomain: '@x.org', tenant: t, role: VIEWER}").contains("emailDomain"));
        assert!(serde_saphyr::from_str::<Rule>("{groups: g, tenant: t, role: VIEWER}").is_err());
    }
}
