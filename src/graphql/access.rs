//! "May I?" on a cluster: `Cluster.access` and `Cluster.accessRules`.

use async_graphql::{Context, Enum, InputObject, SimpleObject};

use super::{caller, data};
use crate::error::ApiError;
use crate::resources::ResourceService;
use crate::resources::access_review::{AccessCheck, AccessReviews, DecidedBy, MAX_CHECKS};

/// One question: may I `verb` this? (As `kubectl auth can-i` asks it.)
#[derive(InputObject, Debug, Clone)]
pub struct AccessCheckInput {
    /// get, list, watch, create, update, patch, delete, deletecollection, ...
    pub verb: String,
    /// API group; absent or empty for the core group.
    pub group: Option<String>,
    /// The resource's plural (`deployments`), or `*`.
    pub resource: String,
    pub subresource: Option<String>,
    /// Absent for cluster-scoped resources, or for all namespaces.
    pub namespace: Option<String>,
    pub name: Option<String>,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum AccessDecider {
    /// kubegql's role (or the operator's settings) decided; the cluster was not asked.
    Kubegql,
    /// The cluster decided, for the identity kubegql uses for this caller.
    Cluster,
}

/// The answer to one check.
#[derive(SimpleObject, Debug)]
pub struct AccessDecisionOutput {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub allowed: bool,
    /// Said no outright (rather than no rule allowing it).
    pub denied: bool,
    pub decided_by: AccessDecider,
    pub reason: Option<String>,
    /// The cluster could not fully evaluate its rules.
    pub evaluation_error: Option<String>,
}

#[derive(SimpleObject, Debug)]
pub struct ResourceRuleOutput {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
}

#[derive(SimpleObject, Debug)]
pub struct NonResourceRuleOutput {
    pub verbs: Vec<String>,
    pub non_resource_urls: Vec<String>,
}

/// What the cluster lets this caller's identity do in a namespace (`kubectl auth can-i --list`).
/// kubegql's own role still applies on top: a VIEWER may only read, whatever these say.
#[derive(SimpleObject, Debug)]
pub struct AccessRulesOutput {
    pub resource_rules: Vec<ResourceRuleOutput>,
    pub non_resource_rules: Vec<NonResourceRuleOutput>,
    /// The cluster's authorizers could not list every rule (the list is partial).
    pub incomplete: bool,
    pub evaluation_error: Option<String>,
    /// The caller's kubegql role.
    pub role: crate::auth::Role,
}

pub(super) async fn access(
    ctx: &Context<'_>,
    cluster_id: &str,
    checks: Vec<AccessCheckInput>,
) -> async_graphql::Result<Vec<AccessDecisionOutput>> {
    let caller = caller(ctx)?;
    if checks.len() > MAX_CHECKS {
        return Err(ApiError::new(
            crate::error::ErrorCode::BadUserInput,
            format!("at most {MAX_CHECKS} checks at once"),
        )
        .into());
    }
    let asked: Vec<AccessCheck> = checks
        .into_iter()
        .map(|c| AccessCheck {
            verb: c.verb,
            group: c.group.unwrap_or_default(),
            resource: c.resource,
            subresource: c.subresource.filter(|s| !s.is_empty()),
            namespace: c.namespace.filter(|s| !s.is_empty()),
            name: c.name.filter(|s| !s.is_empty()),
        })
        .collect();
    let reviews = data::<AccessReviews>(ctx)?;
    let decisions = data::<ResourceService>(ctx)?
        .access(caller, cluster_id, asked.clone(), reviews)
        .await
        .map_err(ApiError::from)?;
    Ok(asked
        .into_iter()
        .zip(decisions)
        .map(|(check, decision)| AccessDecisionOutput {
            verb: check.verb,
            group: check.group,
            resource: check.resource,
            subresource: check.subresource,
            namespace: check.namespace,
            name: check.name,
            allowed: decision.allowed,
            denied: decision.denied,
            decided_by: match decision.decided_by {
                DecidedBy::Kubegql => AccessDecider::Kubegql,
                DecidedBy::Cluster => AccessDecider::Cluster,
            },
            reason: decision.reason,
            evaluation_error: decision.evaluation_error,
        })
        .collect())
}

pub(super) async fn access_rules(
    ctx: &Context<'_>,
    cluster_id: &str,
    namespace: &str,
) -> async_graphql::Result<AccessRulesOutput> {
    let caller = caller(ctx)?;
    let rules =
        data::<ResourceService>(ctx)?.access_rules(caller, cluster_id, namespace).await.map_err(ApiError::from)?;
    Ok(AccessRulesOutput {
        resource_rules: rules
            .resource_rules
            .into_iter()
            .map(|r| ResourceRuleOutput {
                verbs: r.verbs,
                api_groups: r.api_groups.unwrap_or_default(),
                resources: r.resources.unwrap_or_default(),
                resource_names: r.resource_names.unwrap_or_default(),
            })
            .collect(),
        non_resource_rules: rules
            .non_resource_rules
            .into_iter()
            .map(|r| NonResourceRuleOutput {
                verbs: r.verbs,
                non_resource_urls: r.non_resource_urls.unwrap_or_default(),
            })
            .collect(),
        incomplete: rules.incomplete,
        evaluation_error: rules.evaluation_error,
        role: caller.principal.role,
    })
}
