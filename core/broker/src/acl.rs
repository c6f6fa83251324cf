//! Access control lists and the authorizer that enforces them, with the semantics of Kafka's
//! `StandardAuthorizer`.
//!
//! An ACL binds a resource pattern (a topic, group, transactional id or the cluster, named
//! literally, by the wildcard `*`, or by a prefix) to an entry: a principal (`User:alice`, or
//! `User:*` for every one), a host (`*` or one address), an operation and a permission (ALLOW or
//! DENY). A request is authorized when no DENY entry matches it and an ALLOW entry does; an
//! ALLOW of READ, WRITE, DELETE or ALTER implies DESCRIBE, and of ALTER_CONFIGS implies
//! DESCRIBE_CONFIGS. A resource no ACL names at all is open to every one only when
//! `allow.everyone.if.no.acl.found` is set; super users pass every check.
//!
//! The ACLs are kept in the compacted internal topic `__freshet_acls` (the key the binding, the
//! value present or a tombstone), appended before a CreateAcls or DeleteAcls is answered, and read
//! back when the broker starts. Without an authorizer (the default, as in Kafka) every request is
//! authorized and the ACL APIs answer SECURITY_DISABLED.
//!
//! Connections are PLAINTEXT and unauthenticated, so every client is `User:ANONYMOUS`, as in Kafka.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock, RwLock};

use freshet_cluster::records::AclEntry;

use freshet_log::batch::BatchBuilder;
use freshet_log::{Error, Log, Result};
use serde::{Deserialize, Serialize};

use crate::cluster::ClusterNode;

/// The principal of an unauthenticated connection.
pub(crate) const ANONYMOUS: &str = "User:ANONYMOUS";

/// The internal topic the ACLs are kept in.
pub const ACLS_TOPIC: &str = "__freshet_acls";

/// The name of the cluster resource.
pub(crate) const CLUSTER_NAME: &str = "kafka-cluster";

/// Resource types (Kafka's `ResourceType` codes).
pub(crate) mod resource {
    pub(crate) const ANY: i8 = 1;
    pub(crate) const TOPIC: i8 = 2;
    pub(crate) const GROUP: i8 = 3;
    pub(crate) const CLUSTER: i8 = 4;
    pub(crate) const TRANSACTIONAL_ID: i8 = 5;
    pub(crate) const DELEGATION_TOKEN: i8 = 6;
    pub(crate) const USER: i8 = 7;
}

/// Pattern types (Kafka's `PatternType` codes).
pub(crate) mod pattern {
    pub(crate) const ANY: i8 = 1;
    pub(crate) const MATCH: i8 = 2;
    pub(crate) const LITERAL: i8 = 3;
    pub(crate) const PREFIXED: i8 = 4;
}

/// Operations (Kafka's `AclOperation` codes; those between that no check here names are 13
/// CREATE_TOKENS and 14 DESCRIBE_TOKENS).
pub(crate) mod op {
    pub(crate) const ANY: i8 = 1;
    pub(crate) const ALL: i8 = 2;
    pub(crate) const READ: i8 = 3;
    pub(crate) const WRITE: i8 = 4;
    pub(crate) const CREATE: i8 = 5;
    pub(crate) const DELETE: i8 = 6;
    pub(crate) const ALTER: i8 = 7;
    pub(crate) const DESCRIBE: i8 = 8;
    pub(crate) const CLUSTER_ACTION: i8 = 9;
    pub(crate) const DESCRIBE_CONFIGS: i8 = 10;
    pub(crate) const ALTER_CONFIGS: i8 = 11;
    pub(crate) const IDEMPOTENT_WRITE: i8 = 12;
    pub(crate) const TWO_PHASE_COMMIT: i8 = 15;
}

/// Permissions (Kafka's `AclPermissionType` codes).
pub(crate) mod permission {
    pub(crate) const ANY: i8 = 1;
    pub(crate) const DENY: i8 = 2;
    pub(crate) const ALLOW: i8 = 3;
}

/// The wildcard: every resource name (literal patterns), every principal's name, every host.
const WILDCARD: &str = "*";

/// One ACL: a resource pattern and an access control entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) struct AclBinding {
    pub(crate) resource_type: i8,
    pub(crate) resource_name: String,
    pub(crate) pattern_type: i8,
    pub(crate) principal: String,
    pub(crate) host: String,
    pub(crate) operation: i8,
    pub(crate) permission: i8,
}

impl From<&AclEntry> for AclBinding {
    fn from(e: &AclEntry) -> Self {
        AclBinding {
            resource_type: e.resource_type,
            resource_name: e.resource_name.clone(),
            pattern_type: e.pattern_type,
            principal: e.principal.clone(),
            host: e.host.clone(),
            operation: e.operation,
            permission: e.permission,
        }
    }
}

impl From<&AclBinding> for AclEntry {
    fn from(b: &AclBinding) -> Self {
        AclEntry {
            resource_type: b.resource_type,
            resource_name: b.resource_name.clone(),
            pattern_type: b.pattern_type,
            principal: b.principal.clone(),
            host: b.host.clone(),
            operation: b.operation,
            permission: b.permission,
        }
    }
}

impl AclBinding {
    /// Why this binding cannot be created, if it cannot (Kafka's checks of a new ACL).
    pub(crate) fn invalid(&self) -> Option<String> {
        let known_resource = matches!(
            self.resource_type,
            resource::TOPIC
                | resource::GROUP
                | resource::CLUSTER
                | resource::TRANSACTIONAL_ID
                | resource::DELEGATION_TOKEN
                | resource::USER
        );
        if !known_resource {
            return Some(format!("invalid resource type {}", self.resource_type));
        }
        if !matches!(self.pattern_type, pattern::LITERAL | pattern::PREFIXED) {
            return Some(format!("invalid pattern type {}: LITERAL or PREFIXED", self.pattern_type));
        }
        if !(op::ALL..=op::TWO_PHASE_COMMIT).contains(&self.operation) {
            return Some(format!("invalid operation {}", self.operation));
        }
        if !matches!(self.permission, permission::ALLOW | permission::DENY) {
            return Some(format!("invalid permission type {}: ALLOW or DENY", self.permission));
        }
        if self.resource_name.is_empty() {
            return Some("resource name should not be empty".into());
        }
        if self.resource_type == resource::CLUSTER && self.resource_name != CLUSTER_NAME {
            return Some(format!("the only valid name for the CLUSTER resource is {CLUSTER_NAME}"));
        }
        if !matches!(self.principal.split_once(':'), Some((kind, name)) if !kind.is_empty() && !name.is_empty()) {
            return Some(format!("invalid principal {:?}: expected Type:name, as User:alice", self.principal));
        }
        if self.host.is_empty() {
            return Some("host should not be empty: * for every host".into());
        }
        None
    }

    /// Whether this binding's pattern names the resource `name` of type `resource_type`.
    fn names(&self, resource_type: i8, name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern_type {
                pattern::LITERAL => self.resource_name == name || self.resource_name == WILDCARD,
                pattern::PREFIXED => name.starts_with(&self.resource_name),
                _ => false,
            }
    }

    /// Whether this binding's entry applies to `principal` connected from `host`.
    fn applies_to(&self, principal: &str, host: &str) -> bool {
        let principal_matches = self.principal == principal
            || self.principal.split_once(':').is_some_and(|(kind, name)| {
                name == WILDCARD && principal.split_once(':').is_some_and(|(k, _)| k == kind)
            });
        principal_matches && (self.host == WILDCARD || self.host == host)
    }

    /// Whether this binding's entry grants (an ALLOW) or refuses (a DENY) `operation`.
    fn covers(&self, operation: i8) -> bool {
        if self.operation == op::ALL || self.operation == operation {
            return true;
        }
        // What an ALLOW implies; a DENY refuses the operation named only.
        self.permission == permission::ALLOW
            && match operation {
                op::DESCRIBE => matches!(self.operation, op::READ | op::WRITE | op::DELETE | op::ALTER),
                op::DESCRIBE_CONFIGS => self.operation == op::ALTER_CONFIGS,
                _ => false,
            }
    }
}

/// A filter over ACLs, as DescribeAcls and DeleteAcls carry it.
#[derive(Debug, Clone)]
pub(crate) struct AclFilter {
    pub(crate) resource_type: i8,
    pub(crate) resource_name: Option<String>,
    pub(crate) pattern_type: i8,
    pub(crate) principal: Option<String>,
    pub(crate) host: Option<String>,
    pub(crate) operation: i8,
    pub(crate) permission: i8,
}

impl AclFilter {
    /// Why this filter is not one, if it is not (an unknown code among its fields).
    pub(crate) fn invalid(&self) -> Option<String> {
        if !(resource::ANY..=resource::USER).contains(&self.resource_type) {
            return Some(format!("invalid resource type filter {}", self.resource_type));
        }
        if !(pattern::ANY..=pattern::PREFIXED).contains(&self.pattern_type) {
            return Some(format!("invalid pattern type filter {}", self.pattern_type));
        }
        if !(op::ANY..=op::TWO_PHASE_COMMIT).contains(&self.operation) {
            return Some(format!("invalid operation filter {}", self.operation));
        }
        if !(permission::ANY..=permission::ALLOW).contains(&self.permission) {
            return Some(format!("invalid permission type filter {}", self.permission));
        }
        None
    }

    /// Whether `acl` passes this filter (Kafka's `AclBindingFilter.matches`).
    pub(crate) fn matches(&self, acl: &AclBinding) -> bool {
        if self.resource_type != resource::ANY && self.resource_type != acl.resource_type {
            return false;
        }
        if !matches!(self.pattern_type, pattern::ANY | pattern::MATCH) && self.pattern_type != acl.pattern_type {
            return false;
        }
        let name_matches = match &self.resource_name {
            None => true,
            Some(name) if self.pattern_type == pattern::MATCH => match acl.pattern_type {
                pattern::LITERAL => acl.resource_name == *name || acl.resource_name == WILDCARD,
                pattern::PREFIXED => name.starts_with(&acl.resource_name),
                _ => false,
            },
            Some(name) => acl.resource_name == *name,
        };
        name_matches
            && self.principal.as_ref().is_none_or(|p| *p == acl.principal)
            && self.host.as_ref().is_none_or(|h| *h == acl.host)
            && (self.operation == op::ANY || self.operation == acl.operation)
            && (self.permission == permission::ANY || self.permission == acl.permission)
    }
}

/// The authorizer's settings (Kafka's broker settings of the same names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizerConfig {
    /// Whether ACLs are enforced (`authorizer.class.name` set).
    pub enabled: bool,
    /// Whether a resource no ACL names is open to every one (`allow.everyone.if.no.acl.found`;
    /// Kafka's default, false, closes it to all but super users).
    pub allow_everyone_if_no_acl_found: bool,
    /// Principals that pass every check (`super.users`, as `User:admin`).
    pub super_users: Vec<String>,
}

/// The ACLs and their enforcement.
#[derive(Debug, Clone)]
pub(crate) struct Authorizer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: AuthorizerConfig,
    log: Log,
    /// In a cluster, the node whose metadata image holds the ACLs (instead of `__freshet_acls`).
    cluster: OnceLock<Arc<ClusterNode>>,
    acls: RwLock<BTreeSet<AclBinding>>,
    /// One change to the stored ACLs at a time, so the set follows the topic's order.
    changes: tokio::sync::Mutex<()>,
}

impl Authorizer {
    pub(crate) fn new(log: Log, config: AuthorizerConfig) -> Self {
        Authorizer {
            inner: Arc::new(Inner {
                config,
                log,
                cluster: OnceLock::new(),
                acls: RwLock::new(BTreeSet::new()),
                changes: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Whether ACLs are enforced.
    pub(crate) fn enabled(&self) -> bool {
        self.inner.config.enabled
    }

    /// Reads the stored ACLs (when enforced).
    pub(crate) async fn load(&self) -> Result<()> {
        if !self.enabled() {
            return Ok(());
        }
        let log = &self.inner.log;
        log.ensure_compacted_topic(ACLS_TOPIC, 1).await?;
        let mut acls = BTreeSet::new();
        log.for_each_record(ACLS_TOPIC, 0, |record| {
            let Some(key) = record.key else { return Ok(()) };
            let acl: AclBinding =
                serde_json::from_slice(key).map_err(|e| Error::Decode(format!("an ACL in {ACLS_TOPIC}: {e}")))?;
            if record.value.is_some() {
                acls.insert(acl);
            } else {
                acls.remove(&acl);
            }
            Ok(())
        })
        .await?;
        tracing::info!(n = acls.len(), "ACLs loaded");
        *self.inner.acls.write().expect("acls lock") = acls;
        Ok(())
    }

    /// In a cluster: the ACLs are the metadata image's, the same on every broker, changed through
    /// the controller; this broker's set follows the image it applies.
    pub(crate) fn follow(&self, cluster: Arc<ClusterNode>) {
        if !self.enabled() {
            return;
        }
        let mut images = cluster.images();
        let _ = self.inner.cluster.set(cluster);
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                let acls: BTreeSet<AclBinding> = images.borrow_and_update().acls.iter().map(AclBinding::from).collect();
                {
                    let Some(inner) = weak.upgrade() else { return };
                    let mut current = inner.acls.write().expect("acls lock");
                    if *current != acls {
                        tracing::info!(n = acls.len(), "ACLs from the cluster's metadata");
                        *current = acls;
                    }
                }
                if images.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    /// Stores `added` and removes `removed`; returns once the change is durable (in a cluster,
    /// committed by the controller and in this broker's set).
    async fn store(&self, added: &[AclBinding], removed: &[AclBinding]) -> Result<()> {
        if added.is_empty() && removed.is_empty() {
            return Ok(());
        }
        if let Some(cluster) = self.inner.cluster.get() {
            let entries = |acls: &[AclBinding]| acls.iter().map(AclEntry::from).collect::<Vec<_>>();
            cluster
                .alter_acls(entries(added), entries(removed))
                .await
                .map_err(|e| Error::Remote(format!("the controller did not change the ACLs: {e}")))?;
            return Ok(());
        }
        let mut builder = BatchBuilder::default();
        let now = self.inner.log.clock().now_ms();
        for (acl, present) in added.iter().map(|a| (a, true)).chain(removed.iter().map(|a| (a, false))) {
            let key = serde_json::to_vec(acl).map_err(|e| Error::Internal(e.to_string()))?;
            builder.push(Some(&key), present.then_some(b"{}".as_slice()), &[], now);
        }
        self.inner.log.append(ACLS_TOPIC, 0, builder.finish()).await?;
        Ok(())
    }

    /// Creates the valid ones of `acls`: for each, `None` or why it was not created.
    pub(crate) async fn create(&self, acls: Vec<AclBinding>) -> Result<Vec<Option<String>>> {
        let _change = self.inner.changes.lock().await;
        let outcomes: Vec<Option<String>> = acls.iter().map(AclBinding::invalid).collect();
        let valid: Vec<AclBinding> =
            acls.iter().zip(&outcomes).filter(|(_, why)| why.is_none()).map(|(a, _)| a.clone()).collect();
        self.store(&valid, &[]).await?;
        self.inner.acls.write().expect("acls lock").extend(valid);
        Ok(outcomes)
    }

    /// The ACLs that pass `filter`.
    pub(crate) fn describe(&self, filter: &AclFilter) -> Vec<AclBinding> {
        self.inner.acls.read().expect("acls lock").iter().filter(|a| filter.matches(a)).cloned().collect()
    }

    /// Deletes the ACLs that pass each filter: for each filter, those deleted.
    pub(crate) async fn delete(&self, filters: &[AclFilter]) -> Result<Vec<Vec<AclBinding>>> {
        let _change = self.inner.changes.lock().await;
        let matched: Vec<Vec<AclBinding>> = filters.iter().map(|f| self.describe(f)).collect();
        let doomed: BTreeSet<AclBinding> = matched.iter().flatten().cloned().collect();
        let doomed: Vec<AclBinding> = doomed.into_iter().collect();
        self.store(&[], &doomed).await?;
        let mut acls = self.inner.acls.write().expect("acls lock");
        for acl in &doomed {
            acls.remove(acl);
        }
        Ok(matched)
    }

    /// Whether `principal`, connected from `host`, may perform `operation` on the resource
    /// `name` of type `resource_type`.
    pub(crate) fn authorize(&self, principal: &str, host: &str, operation: i8, resource_type: i8, name: &str) -> bool {
        let config = &self.inner.config;
        if !config.enabled || config.super_users.iter().any(|s| s == principal) {
            return true;
        }
        let acls = self.inner.acls.read().expect("acls lock");
        let mut named = false;
        let mut allowed = false;
        for acl in acls.iter().filter(|a| a.names(resource_type, name)) {
            named = true;
            if !acl.applies_to(principal, host) || !acl.covers(operation) {
                continue;
            }
            if acl.permission == permission::DENY {
                return false;
            }
            allowed = true;
        }
        allowed || (!named && config.allow_everyone_if_no_acl_found)
    }

    /// Whether `principal` may perform `operation` on some resource of type `resource_type`
    /// (Kafka's `authorizeByResourceType`: how an idempotent producer without IDEMPOTENT_WRITE
    /// on the cluster is let in by WRITE on any topic).
    pub(crate) fn authorize_any(&self, principal: &str, host: &str, operation: i8, resource_type: i8) -> bool {
        let config = &self.inner.config;
        if !config.enabled || config.super_users.iter().any(|s| s == principal) {
            return true;
        }
        let acls = self.inner.acls.read().expect("acls lock");
        let of_type: Vec<&AclBinding> = acls.iter().filter(|a| a.resource_type == resource_type).collect();
        let denied_everywhere = of_type.iter().any(|a| {
            a.permission == permission::DENY
                && a.applies_to(principal, host)
                && a.covers(operation)
                && ((a.pattern_type == pattern::LITERAL && a.resource_name == WILDCARD)
                    || (a.pattern_type == pattern::PREFIXED && a.resource_name.is_empty()))
        });
        if denied_everywhere {
            return false;
        }
        let allowed_somewhere = of_type.iter().any(|a| {
            a.permission == permission::ALLOW
                && a.applies_to(principal, host)
                && a.covers(operation)
                && !of_type.iter().any(|d| {
                    d.permission == permission::DENY
                        && d.applies_to(principal, host)
                        && d.covers(operation)
                        && d.names(resource_type, &a.resource_name)
                        && a.pattern_type == pattern::LITERAL
                })
        });
        allowed_somewhere || (of_type.is_empty() && config.allow_everyone_if_no_acl_found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(resource_type: i8, name: &str, pattern_type: i8, principal: &str, operation: i8, perm: i8) -> AclBinding {
        AclBinding {
            resource_type,
            resource_name: name.into(),
            pattern_type,
            principal: principal.into(),
            host: "*".into(),
            operation,
            permission: perm,
        }
    }

    fn with(acls: &[AclBinding], allow_if_none: bool) -> (Authorizer, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let log = rt.block_on(Log::open(dir.path(), freshet_log::config::LogConfig::default())).unwrap();
        let config = AuthorizerConfig {
            enabled: true,
            allow_everyone_if_no_acl_found: allow_if_none,
            super_users: vec!["User:admin".into()],
        };
        let authorizer = Authorizer::new(log, config);
        authorizer.inner.acls.write().unwrap().extend(acls.iter().cloned());
        (authorizer, dir)
    }

    #[test]
    fn deny_wins_allow_implies_describe_and_unnamed_resources_follow_the_setting() {
        use op::*;
        use resource::*;
        let acls = [
            acl(TOPIC, "orders", pattern::LITERAL, "User:*", READ, permission::ALLOW),
            acl(TOPIC, "orders", pattern::LITERAL, "User:mallory", ALL, permission::DENY),
            acl(TOPIC, "secret-", pattern::PREFIXED, "User:*", ALL, permission::DENY),
            acl(GROUP, "*", pattern::LITERAL, "User:ANONYMOUS", READ, permission::ALLOW),
        ];
        let (a, _dir) = with(&acls, true);
        assert!(a.authorize(ANONYMOUS, "10.0.0.1", READ, TOPIC, "orders"));
        assert!(a.authorize(ANONYMOUS, "10.0.0.1", DESCRIBE, TOPIC, "orders"), "READ implies DESCRIBE");
        assert!(!a.authorize(ANONYMOUS, "10.0.0.1", WRITE, TOPIC, "orders"), "named, not allowed");
        assert!(!a.authorize("User:mallory", "10.0.0.1", READ, TOPIC, "orders"), "DENY wins");
        assert!(!a.authorize(ANONYMOUS, "10.0.0.1", WRITE, TOPIC, "secret-plans"), "prefixed DENY");
        assert!(a.authorize(ANONYMOUS, "10.0.0.1", WRITE, TOPIC, "other"), "no ACL names it: allowed");
        assert!(a.authorize(ANONYMOUS, "10.0.0.1", READ, GROUP, "any-group"), "the wildcard names every group");
        assert!(a.authorize("User:admin", "10.0.0.1", WRITE, TOPIC, "secret-plans"), "a super user");
        let (closed, _dir) = with(&acls, false);
        assert!(!closed.authorize(ANONYMOUS, "10.0.0.1", WRITE, TOPIC, "other"), "Kafka's default: closed");
        assert!(closed.authorize_any(ANONYMOUS, "h", READ, TOPIC));
        assert!(!closed.authorize_any(ANONYMOUS, "h", WRITE, TOPIC));
    }

    #[test]
    fn filters_match_as_kafkas_do() {
        let literal = acl(resource::TOPIC, "orders", pattern::LITERAL, "User:a", op::READ, permission::ALLOW);
        let prefixed = acl(resource::TOPIC, "ord", pattern::PREFIXED, "User:a", op::READ, permission::ALLOW);
        let filter = |name: Option<&str>, pattern_type| AclFilter {
            resource_type: resource::TOPIC,
            resource_name: name.map(Into::into),
            pattern_type,
            principal: None,
            host: None,
            operation: op::ANY,
            permission: permission::ANY,
        };
        let matching = filter(Some("orders"), pattern::MATCH);
        assert!(matching.matches(&literal) && matching.matches(&prefixed));
        let any = filter(Some("orders"), pattern::ANY);
        assert!(any.matches(&literal) && !any.matches(&prefixed));
        assert!(filter(None, pattern::PREFIXED).matches(&prefixed));
        assert!(!filter(None, pattern::PREFIXED).matches(&literal));
        let mut bad = literal.clone();
        bad.resource_type = resource::CLUSTER;
        assert!(bad.invalid().unwrap().contains("kafka-cluster"));
        bad = literal.clone();
        bad.principal = "alice".into();
        assert!(bad.invalid().unwrap().contains("principal"));
        assert!(literal.invalid().is_none());
    }
}
