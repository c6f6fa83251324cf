//! Dynamic broker configs: the defaults of topic configs changed while the broker runs
//! (AlterConfigs or IncrementalAlterConfigs of a BROKER resource, as `kafka-configs.sh --alter
//! --entity-type brokers` sends them), for this broker (resource `0`) or as the cluster's default
//! (resource `""`), the first over the second, both over the config file's.
//!
//! The settings taken are those Kafka names as the defaults of topic configs (`log.retention.ms`,
//! `log.segment.bytes`, `log.cleanup.policy`, `message.max.bytes`, ...: `freshet_log::config::
//! BROKER_SYNONYMS`, with `log.retention.ms` and `log.roll.ms`); every topic without its own value
//! follows a change at once, as in Kafka. The broker's other settings come from its config file
//! and flags only, and a change to one is refused, naming it.
//!
//! The values are kept in the compacted internal topic `__freshet_broker_configs` (key
//! `SCOPE|NAME`, a tombstone when deleted), stored before a change is answered, and applied again
//! when the broker starts. In a cluster they are Config records of the metadata log, as in KRaft:
//! a change goes through the controller, the cluster's default reaches every broker, and each
//! broker applies what the image holds for it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use freshet_cluster::records::ConfigResource;

use freshet_log::batch::BatchBuilder;
use freshet_log::config::BROKER_SYNONYMS;
use freshet_log::{Error, Log, Result};

use crate::cluster::ClusterNode;

/// The internal topic the dynamic configs are kept in.
pub const BROKER_CONFIGS_TOPIC: &str = "__freshet_broker_configs";

/// Where a dynamic config applies: this broker (resource name `0`) or every broker by default
/// (resource name `""`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Scope {
    Broker,
    ClusterDefault,
}

impl Scope {
    /// The scope a BROKER resource names (this broker is `node`), or why it names none here.
    pub(crate) fn of(resource_name: &str, node: i32) -> std::result::Result<Scope, String> {
        match resource_name {
            "" => Ok(Scope::ClusterDefault),
            name if name == node.to_string() => Ok(Scope::Broker),
            other => Err(format!("broker {other} is not this broker ({node})")),
        }
    }

    fn key(self) -> &'static str {
        match self {
            Scope::Broker => "0",
            Scope::ClusterDefault => "",
        }
    }
}

/// The topic config a dynamic broker config `name` sets, if Freshet takes it while running.
pub(crate) fn topic_key_of(name: &str) -> Option<&'static str> {
    match name {
        "log.retention.ms" => Some("retention.ms"),
        "log.roll.ms" => Some("segment.ms"),
        _ => BROKER_SYNONYMS.iter().find(|(b, _)| *b == name).map(|(_, t)| *t),
    }
}

/// The dynamic broker configs.
#[derive(Debug, Clone)]
pub(crate) struct DynamicConfigs {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    log: Log,
    /// In a cluster, the node whose metadata image holds the values (instead of the topic).
    cluster: OnceLock<Arc<ClusterNode>>,
    values: Mutex<BTreeMap<Scope, BTreeMap<String, String>>>,
    /// One change at a time, so the stored values follow the topic's order.
    changes: tokio::sync::Mutex<()>,
}

impl DynamicConfigs {
    pub(crate) fn new(log: Log) -> Self {
        DynamicConfigs {
            inner: Arc::new(Inner {
                log,
                cluster: OnceLock::new(),
                values: Mutex::new(BTreeMap::new()),
                changes: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Reads the stored values and applies them to the log. (The topic is created with the first
    /// change.)
    pub(crate) async fn load(&self) -> Result<()> {
        let log = &self.inner.log;
        if log.describe_topic(BROKER_CONFIGS_TOPIC).is_err() {
            return Ok(());
        }
        let mut values: BTreeMap<Scope, BTreeMap<String, String>> = BTreeMap::new();
        log.for_each_record(BROKER_CONFIGS_TOPIC, 0, |record| {
            let Some(key) = record.key else { return Ok(()) };
            let key = std::str::from_utf8(key)
                .map_err(|_| Error::Decode(format!("a key in {BROKER_CONFIGS_TOPIC} that is not UTF-8")))?;
            let (scope, name) = key.split_once('|').ok_or_else(|| {
                Error::Decode(format!("the key {key:?} in {BROKER_CONFIGS_TOPIC}: expected SCOPE|NAME"))
            })?;
            // Stored under "0" for this broker, whatever its node id.
            let scope = Scope::of(scope, 0).map_err(Error::Decode)?;
            match record.value {
                Some(value) => {
                    let value = String::from_utf8_lossy(value).into_owned();
                    values.entry(scope).or_default().insert(name.to_string(), value);
                }
                None => {
                    values.entry(scope).or_default().remove(name);
                }
            }
            Ok(())
        })
        .await?;
        log.set_dynamic_topic_defaults(Self::topic_defaults(&values)).await?;
        let n: usize = values.values().map(BTreeMap::len).sum();
        if n > 0 {
            tracing::info!(n, "dynamic broker configs applied");
        }
        *self.inner.values.lock().expect("values lock") = values;
        Ok(())
    }

    /// In a cluster: the values are the metadata image's (the cluster's default and this
    /// broker's), applied to the log whenever the image changes them.
    pub(crate) fn follow(&self, cluster: Arc<ClusterNode>) {
        let me = cluster.config.node_id.to_string();
        let mut images = cluster.images();
        let _ = self.inner.cluster.set(cluster);
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                let values: BTreeMap<Scope, BTreeMap<String, String>> = {
                    let image = images.borrow_and_update();
                    let of = |key: &str| image.broker_configs.get(key).cloned().unwrap_or_default();
                    BTreeMap::from([(Scope::ClusterDefault, of("")), (Scope::Broker, of(&me))])
                };
                let Some(inner) = weak.upgrade() else { return };
                let this = DynamicConfigs { inner };
                if let Err(error) = this.apply(values).await {
                    tracing::warn!(%error, "the dynamic broker configs of the cluster's metadata were not applied");
                }
                drop(this);
                if images.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    /// Makes `values` the ones in effect, if they are not already.
    async fn apply(&self, values: BTreeMap<Scope, BTreeMap<String, String>>) -> Result<()> {
        let _change = self.inner.changes.lock().await;
        let mut current = self.inner.values.lock().expect("values lock").clone();
        current.retain(|_, v| !v.is_empty());
        let mut wanted = values.clone();
        wanted.retain(|_, v| !v.is_empty());
        if current == wanted {
            return Ok(());
        }
        self.inner.log.set_dynamic_topic_defaults(Self::topic_defaults(&values)).await?;
        tracing::info!(?values, "dynamic broker configs from the cluster's metadata");
        *self.inner.values.lock().expect("values lock") = values;
        Ok(())
    }

    /// The values set in `scope`, by broker setting name.
    pub(crate) fn get(&self, scope: Scope) -> BTreeMap<String, String> {
        self.inner.values.lock().expect("values lock").get(&scope).cloned().unwrap_or_default()
    }

    /// The topic config defaults `values` set: the cluster's default under this broker's own.
    fn topic_defaults(values: &BTreeMap<Scope, BTreeMap<String, String>>) -> BTreeMap<String, String> {
        let mut defaults = BTreeMap::new();
        for scope in [Scope::ClusterDefault, Scope::Broker] {
            for (name, value) in values.get(&scope).into_iter().flatten() {
                if let Some(key) = topic_key_of(name) {
                    defaults.insert(key.to_string(), value.clone());
                }
            }
        }
        defaults
    }

    /// Makes `wanted` the whole set of `scope`'s values (each name one [`topic_key_of`] knows),
    /// or, with `validate_only`, checks that it could. Returns once the change is stored and
    /// applied.
    pub(crate) async fn replace(
        &self,
        scope: Scope,
        wanted: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<()> {
        let _change = self.inner.changes.lock().await;
        let current = self.get(scope);
        let mut all = self.inner.values.lock().expect("values lock").clone();
        all.insert(scope, wanted.clone());
        let defaults = Self::topic_defaults(&all);
        let log = &self.inner.log;
        // Checked before anything is stored.
        let mut merged = log.config().topic_defaults.clone();
        merged.extend(defaults.clone());
        freshet_log::config::TopicConfig::validate(&merged)?;
        if validate_only {
            return Ok(());
        }
        if let Some(cluster) = self.inner.cluster.get() {
            let mut changes: Vec<(String, Option<String>)> = wanted
                .iter()
                .filter(|(name, value)| current.get(*name) != Some(*value))
                .map(|(name, value)| (name.clone(), Some(value.clone())))
                .collect();
            changes.extend(current.keys().filter(|n| !wanted.contains_key(*n)).map(|n| (n.clone(), None)));
            let id = match scope {
                Scope::Broker => Some(cluster.config.node_id),
                Scope::ClusterDefault => None,
            };
            cluster
                .alter_configs(ConfigResource::Broker(id), changes)
                .await
                .map_err(|e| Error::Remote(format!("the controller did not change the configs: {e}")))?;
            // Answered once this broker's image has it, so that following the image does not
            // bring back the values it replaces.
            let key = id.map(|id| id.to_string()).unwrap_or_default();
            cluster.wait_image(|i| i.broker_configs.get(&key).cloned().unwrap_or_default() == wanted).await;
            log.set_dynamic_topic_defaults(defaults).await?;
            self.inner.values.lock().expect("values lock").insert(scope, wanted);
            return Ok(());
        }
        let mut builder = BatchBuilder::default();
        let now = log.clock().now_ms();
        let mut changed = false;
        for (name, value) in &wanted {
            if current.get(name) != Some(value) {
                builder.push(Some(format!("{}|{name}", scope.key()).as_bytes()), Some(value.as_bytes()), &[], now);
                changed = true;
            }
        }
        for name in current.keys().filter(|n| !wanted.contains_key(*n)) {
            builder.push(Some(format!("{}|{name}", scope.key()).as_bytes()), None, &[], now);
            changed = true;
        }
        if !changed {
            return Ok(());
        }
        log.ensure_compacted_topic(BROKER_CONFIGS_TOPIC, 1).await?;
        log.append(BROKER_CONFIGS_TOPIC, 0, builder.finish()).await?;
        log.set_dynamic_topic_defaults(defaults).await?;
        self.inner.values.lock().expect("values lock").insert(scope, wanted);
        Ok(())
    }
}
