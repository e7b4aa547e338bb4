//! "May I?": what a caller may do on a cluster, for a UI to draw only the buttons that work. Two
//! answers are combined: kubegql's own role (a VIEWER is never allowed to change anything,
//! whatever the cluster says) and the cluster's, asked through SelfSubjectAccessReview under the
//! identity kubegql will really use for this caller (the cluster's stored credentials, or the
//! caller impersonated). Answers are kept a few seconds per identity, in a bounded cache.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec, SelfSubjectRulesReview,
    SelfSubjectRulesReviewSpec,
};
use kube::api::{Api, PostParams};

use super::{ResourceError, ResourceService};
use crate::access::Caller;

/// The most checks one request may ask.
pub const MAX_CHECKS: usize = 50;
/// How long an answer is kept.
const KEPT_FOR: Duration = Duration::from_secs(10);
/// The most answers kept.
const MAX_KEPT: usize = 10_000;

/// One question: may I `verb` this?
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AccessCheck {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

/// Who said no, or that all said yes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecidedBy {
    /// kubegql's role (or its operator's settings) decided; the cluster was not asked.
    Kubegql,
    /// The cluster decided.
    Cluster,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessDecision {
    pub allowed: bool,
    /// The cluster said no outright (not merely "no opinion").
    pub denied: bool,
    pub decided_by: DecidedBy,
    pub reason: Option<String>,
    pub evaluation_error: Option<String>,
}

/// What "may I?" needs besides the cluster: the answers kept, and the tenants whose exec the
/// operator turned off.
#[derive(Debug, Default, Clone)]
pub struct AccessReviews {
    pub cache: Arc<AccessCache>,
    pub exec_disabled_tenants: Arc<Vec<String>>,
}

/// Answers kept per (cluster, identity, check).
#[derive(Debug, Default)]
pub struct AccessCache {
    kept: DashMap<(String, Option<String>, AccessCheck), (Instant, AccessDecision)>,
}

impl AccessCache {
    fn get(&self, key: &(String, Option<String>, AccessCheck)) -> Option<AccessDecision> {
        let entry = self.kept.get(key)?;
        (entry.0.elapsed() < KEPT_FOR).then(|| entry.1.clone())
    }

    fn put(&self, key: (String, Option<String>, AccessCheck), decision: AccessDecision) {
        if self.kept.len() >= MAX_KEPT {
            self.kept.retain(|_, (at, _)| at.elapsed() < KEPT_FOR);
            if self.kept.len() >= MAX_KEPT {
                self.kept.clear();
            }
        }
        self.kept.insert(key, (Instant::now(), decision));
    }

    pub fn len(&self) -> usize {
        self.kept.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }
}

/// The rules the cluster grants the caller's identity in a namespace.
#[derive(Debug, Clone)]
pub struct AccessRules {
    pub resource_rules: Vec<k8s_openapi::api::authorization::v1::ResourceRule>,
    pub non_resource_rules: Vec<k8s_openapi::api::authorization::v1::NonResourceRule>,
    pub incomplete: bool,
    pub evaluation_error: Option<String>,
}

impl ResourceService {
    /// Answers each check for the caller, in order: kubegql's role first, then the cluster.
    pub async fn access(
        &self,
        caller: &Caller,
        cluster_id: &str,
        checks: Vec<AccessCheck>,
        reviews: &AccessReviews,
    ) -> Result<Vec<AccessDecision>, ResourceError> {
        let exec_disabled = reviews.exec_disabled_tenants.contains(&caller.principal.tenant);
        let cache = &reviews.cache;
        if checks.len() > MAX_CHECKS {
            return Err(ResourceError::Invalid(format!("at most {MAX_CHECKS} checks at once")));
        }
        let (row, client) = self.connections.client_for(caller, cluster_id).await?;
        let identity = caller.cluster_identity(row.impersonate_caller).ok().flatten().map(|i| i.canonical());
        let api: Api<SelfSubjectAccessReview> = Api::all(client);
        let mut decisions = Vec::with_capacity(checks.len());
        for check in checks {
            let needed = crate::authz::least_role_for(&check.verb, check.subresource.as_deref());
            if let Err(denied) = crate::authz::require(&caller.principal, needed) {
                decisions.push(AccessDecision {
                    allowed: false,
                    denied: true,
                    decided_by: DecidedBy::Kubegql,
                    reason: Some(format!("kubegql: {denied}")),
                    evaluation_error: None,
                });
                continue;
            }
            if exec_disabled && check.subresource.as_deref() == Some("exec") {
                decisions.push(AccessDecision {
                    allowed: false,
                    denied: true,
                    decided_by: DecidedBy::Kubegql,
                    reason: Some("kubegql: exec is turned off for this tenant by the server's operator".into()),
                    evaluation_error: None,
                });
                continue;
            }
            let key = (row.id.clone(), identity.clone(), check.clone());
            if let Some(kept) = cache.get(&key) {
                decisions.push(kept);
                continue;
            }
            let review = SelfSubjectAccessReview {
                spec: SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(ResourceAttributes {
                        verb: Some(check.verb.clone()),
                        group: Some(check.group.clone()),
                        resource: Some(check.resource.clone()),
                        subresource: check.subresource.clone(),
                        namespace: check.namespace.clone(),
                        name: check.name.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            };
            let answer =
                api.create(&PostParams::default(), &review).await.map_err(|e| Self::api_error(&row.name, e))?;
            let status = answer.status.unwrap_or_default();
            let decision = AccessDecision {
                allowed: status.allowed,
                denied: status.denied.unwrap_or(false),
                decided_by: DecidedBy::Cluster,
                reason: status.reason.filter(|r| !r.is_empty()),
                evaluation_error: status.evaluation_error.filter(|e| !e.is_empty()),
            };
            cache.put(key, decision.clone());
            decisions.push(decision);
        }
        Ok(decisions)
    }

    /// What the cluster lets the caller's identity do in `namespace` (SelfSubjectRulesReview).
    pub async fn access_rules(
        &self,
        caller: &Caller,
        cluster_id: &str,
        namespace: &str,
    ) -> Result<AccessRules, ResourceError> {
        let (row, client) = self.connections.client_for(caller, cluster_id).await?;
        let api: Api<SelfSubjectRulesReview> = Api::all(client);
        let review = SelfSubjectRulesReview {
            spec: SelfSubjectRulesReviewSpec { namespace: Some(namespace.to_owned()) },
            ..Default::default()
        };
        let answer = api.create(&PostParams::default(), &review).await.map_err(|e| Self::api_error(&row.name, e))?;
        let status = answer.status.unwrap_or_default();
        Ok(AccessRules {
            resource_rules: status.resource_rules,
            non_resource_rules: status.non_resource_rules,
            incomplete: status.incomplete,
            evaluation_error: status.evaluation_error.filter(|e| !e.is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_kept_briefly_and_the_cache_stays_bounded() {
        let cache = AccessCache::default();
        let check = |n: usize| AccessCheck {
            verb: "get".into(),
            group: String::new(),
            resource: format!("r{n}"),
            subresource: None,
            namespace: None,
            name: None,
        };
        let decision = AccessDecision {
            allowed: true,
            denied: false,
            decided_by: DecidedBy::Cluster,
            reason: None,
            evaluation_error: None,
        };
        let key = |n: usize, who: Option<&str>| ("c".to_owned(), who.map(str::to_owned), check(n));
        cache.put(key(0, None), decision.clone());
        assert_eq!(cache.get(&key(0, None)), Some(decision.clone()));
        assert_eq!(cache.get(&key(0, Some("alice"))), None, "another identity has its own answers");
        for n in 0..MAX_KEPT + 10 {
            cache.put(key(n, None), decision.clone());
        }
        assert!(cache.len() <= MAX_KEPT, "{}", cache.len());
    }
}
