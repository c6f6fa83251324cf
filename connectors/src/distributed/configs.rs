//! The config topic (`config.storage.topic`, one partition, compacted): every connector's config,
//! target state and task configs, with Kafka Connect's record keys and values, so the topic reads
//! the same to either's tools:
//!
//! | key | value |
//! |---|---|
//! | `connector-<name>` | `{"properties": {...}}`; a tombstone deletes the connector |
//! | `target-state-<name>` | `{"state": "PAUSED", "state.v2": "STOPPED"}` |
//! | `task-<name>-<n>` | `{"properties": {...}}` |
//! | `commit-<name>` | `{"tasks": N}`: the task configs written before it take effect together |
//! | `restart-connector-<name>` | `{"include-tasks": true, "only-failed": false}` |
//!
//! Freshet adds `freshet-restart-task-<name>-<n>` (`{}`) for a task's restart; Kafka's workers
//! skip keys they do not know.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use freshet_core::{ConsumerRecord, Substrate, TopicPartition};
use serde_json::{json, Value as Json};
use tokio::sync::mpsc;

use super::log::Follower;
use crate::config::Props;
use crate::error::Result;
use crate::worker::TargetState;

/// What the config topic says, as applied so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ConfigState {
    /// Each connector's config.
    pub(crate) connectors: BTreeMap<String, Props>,
    /// Target states other than STARTED.
    pub(crate) targets: BTreeMap<String, TargetState>,
    /// Each connector's committed task configs.
    pub(crate) tasks: BTreeMap<String, Vec<Props>>,
    /// Task configs written but not committed yet.
    staged: BTreeMap<String, BTreeMap<u32, Props>>,
}

impl ConfigState {
    /// A connector's target state (STARTED unless set otherwise).
    pub(crate) fn target(&self, name: &str) -> TargetState {
        self.targets.get(name).copied().unwrap_or(TargetState::Started)
    }

    /// Every connector and every committed task, the work the group shares.
    pub(crate) fn work(&self) -> (Vec<String>, Vec<(String, u32)>) {
        let connectors = self.connectors.keys().cloned().collect();
        let tasks = self
            .tasks
            .iter()
            .filter(|(name, _)| self.connectors.contains_key(*name))
            .flat_map(|(name, configs)| (0..configs.len() as u32).map(move |i| (name.clone(), i)))
            .collect();
        (connectors, tasks)
    }

    /// Applies one record; `Some` event when it asks something of the workers.
    fn apply(&mut self, key: &str, value: Option<&Json>) -> Option<ConfigEvent> {
        let properties = |v: Option<&Json>| -> Option<Props> {
            let object = v?.get("properties")?.as_object()?;
            Some(object.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        };
        if let Some(name) = key.strip_prefix("connector-") {
            match properties(value) {
                Some(config) => {
                    self.connectors.insert(name.into(), config);
                }
                None if value.is_none() => {
                    self.connectors.remove(name);
                    self.targets.remove(name);
                    self.tasks.remove(name);
                    self.staged.remove(name);
                }
                None => tracing::warn!(key, "skipping a connector config record without properties"),
            }
            return Some(ConfigEvent::Changed);
        }
        if let Some(name) = key.strip_prefix("target-state-") {
            let state = value.and_then(|v| v.get("state.v2").or_else(|| v.get("state"))).and_then(Json::as_str);
            match state {
                Some("PAUSED") => self.targets.insert(name.into(), TargetState::Paused),
                Some("STOPPED") => self.targets.insert(name.into(), TargetState::Stopped),
                _ => self.targets.remove(name),
            };
            return Some(ConfigEvent::Changed);
        }
        if let Some(rest) = key.strip_prefix("task-") {
            let Some((name, id)) = split_task(rest) else {
                tracing::warn!(key, "skipping a task config record whose key names no task");
                return None;
            };
            match properties(value) {
                Some(config) => {
                    self.staged.entry(name.into()).or_default().insert(id, config);
                }
                None => tracing::warn!(key, "skipping a task config record without properties"),
            }
            return None;
        }
        if let Some(name) = key.strip_prefix("commit-") {
            let Some(count) = value.and_then(|v| v.get("tasks")).and_then(Json::as_u64) else {
                tracing::warn!(key, "skipping a task commit record without a task count");
                return None;
            };
            let mut staged = self.staged.remove(name).unwrap_or_default();
            let configs: Option<Vec<Props>> = (0..count as u32).map(|i| staged.remove(&i)).collect();
            match configs {
                Some(configs) => {
                    self.tasks.insert(name.into(), configs);
                }
                None => tracing::error!(
                    connector = name,
                    count,
                    "a task commit names tasks whose configs were not written before it; keeping the earlier ones"
                ),
            }
            return Some(ConfigEvent::Changed);
        }
        if let Some(name) = key.strip_prefix("restart-connector-") {
            let flag = |k: &str| value.and_then(|v| v.get(k)).and_then(Json::as_bool).unwrap_or(false);
            return Some(ConfigEvent::Restart {
                connector: name.into(),
                include_tasks: flag("include-tasks"),
                only_failed: flag("only-failed"),
            });
        }
        if let Some(rest) = key.strip_prefix("freshet-restart-task-") {
            return split_task(rest).map(|(name, id)| ConfigEvent::RestartTask { connector: name.into(), task: id });
        }
        None
    }
}

/// `<name>-<n>` split at its last dash (a connector name may hold dashes).
fn split_task(s: &str) -> Option<(&str, u32)> {
    let (name, id) = s.rsplit_once('-')?;
    Some((name, id.parse().ok()?))
}

/// What a record of the config topic asks of the workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConfigEvent {
    /// Connectors, target states or task configs changed: each worker compares what it runs.
    Changed,
    /// Restart a connector (and its tasks).
    Restart { connector: String, include_tasks: bool, only_failed: bool },
    /// Restart one task.
    RestartTask { connector: String, task: u32 },
}

/// The config topic, followed.
#[derive(Debug)]
pub(crate) struct ConfigLog {
    follower: Follower,
    state: Arc<Mutex<ConfigState>>,
}

impl ConfigLog {
    /// Follows `topic` (which exists); what its records ask comes on the returned channel.
    pub(crate) async fn start(
        substrate: Arc<dyn Substrate>,
        topic: &str,
    ) -> Result<(ConfigLog, mpsc::UnboundedReceiver<ConfigEvent>)> {
        let state = Arc::new(Mutex::new(ConfigState::default()));
        let (events_tx, events) = mpsc::unbounded_channel();
        let applied = state.clone();
        let follower = Follower::start(substrate, topic, move |_: &TopicPartition, record: &ConsumerRecord| {
            let Some(key) = record.key.as_deref().and_then(|k| std::str::from_utf8(k).ok()) else {
                tracing::warn!(offset = record.offset, "skipping a config record without a text key");
                return;
            };
            let value: Option<Json> = match record.value.as_deref().map(serde_json::from_slice) {
                None => None,
                Some(Ok(v)) => Some(v),
                Some(Err(e)) => {
                    tracing::warn!(key, error = %e, "skipping a config record whose value is not JSON");
                    return;
                }
            };
            let event = applied.lock().expect("config state lock").apply(key, value.as_ref());
            if let Some(event) = event {
                let _ = events_tx.send(event);
            }
        })
        .await?;
        Ok((ConfigLog { follower, state }, events))
    }

    /// The state as applied so far.
    pub(crate) fn snapshot(&self) -> ConfigState {
        self.state.lock().expect("config state lock").clone()
    }

    /// Waits until every record written so far has been applied.
    pub(crate) async fn read_to_end(&self) -> Result<()> {
        self.follower.read_to_end().await
    }

    /// Writes a connector's config, with its target state first when one is given.
    pub(crate) async fn put_connector(&self, name: &str, config: &Props, target: Option<TargetState>) -> Result<()> {
        let mut records = Vec::new();
        if let Some(target) = target {
            records.push(target_record(name, target));
        }
        records.push((format!("connector-{name}"), Some(properties(config))));
        self.follower.write(records).await
    }

    /// Deletes a connector (its config and target state).
    pub(crate) async fn delete_connector(&self, name: &str) -> Result<()> {
        self.follower.write(vec![(format!("connector-{name}"), None), (format!("target-state-{name}"), None)]).await
    }

    /// Sets a connector's target state.
    pub(crate) async fn put_target(&self, name: &str, target: TargetState) -> Result<()> {
        self.follower.write(vec![target_record(name, target)]).await
    }

    /// Writes a connector's task configs and the commit that makes them take effect.
    pub(crate) async fn put_tasks(&self, name: &str, configs: &[Props]) -> Result<()> {
        let mut records: Vec<(String, Option<Bytes>)> =
            configs.iter().enumerate().map(|(i, c)| (format!("task-{name}-{i}"), Some(properties(c)))).collect();
        records.push((format!("commit-{name}"), Some(Bytes::from(json!({"tasks": configs.len()}).to_string()))));
        self.follower.write(records).await
    }

    /// Asks the worker running a connector to restart it (and its tasks).
    pub(crate) async fn request_restart(&self, name: &str, include_tasks: bool, only_failed: bool) -> Result<()> {
        let value = json!({"include-tasks": include_tasks, "only-failed": only_failed});
        self.follower.write(vec![(format!("restart-connector-{name}"), Some(Bytes::from(value.to_string())))]).await
    }

    /// Asks the worker running a task to restart it.
    pub(crate) async fn request_task_restart(&self, name: &str, task: u32) -> Result<()> {
        self.follower
            .write(vec![(format!("freshet-restart-task-{name}-{task}"), Some(Bytes::from_static(b"{}")))])
            .await
    }
}

fn properties(config: &Props) -> Bytes {
    Bytes::from(json!({ "properties": config }).to_string())
}

/// Kafka's target state record: `state` for older readers (which know no STOPPED), `state.v2`.
fn target_record(name: &str, target: TargetState) -> (String, Option<Bytes>) {
    let (v1, v2) = match target {
        TargetState::Started => ("STARTED", "STARTED"),
        TargetState::Paused => ("PAUSED", "PAUSED"),
        TargetState::Stopped => ("PAUSED", "STOPPED"),
    };
    (format!("target-state-{name}"), Some(Bytes::from(json!({"state": v1, "state.v2": v2}).to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> Props {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn apply(state: &mut ConfigState, key: &str, value: Option<Json>) -> Option<ConfigEvent> {
        state.apply(key, value.as_ref())
    }

    #[test]
    fn records_apply_as_kafka_connect_reads_them() {
        let mut s = ConfigState::default();
        assert_eq!(apply(&mut s, "connector-a-b", Some(json!({"properties": {"k": "v"}}))), Some(ConfigEvent::Changed));
        assert_eq!(s.connectors["a-b"], props(&[("k", "v")]));
        // Task configs count only once committed, and a commit naming a missing one is ignored.
        apply(&mut s, "task-a-b-0", Some(json!({"properties": {"t": "0"}})));
        apply(&mut s, "task-a-b-1", Some(json!({"properties": {"t": "1"}})));
        assert!(s.tasks.is_empty());
        apply(&mut s, "commit-a-b", Some(json!({"tasks": 2})));
        assert_eq!(s.tasks["a-b"], vec![props(&[("t", "0")]), props(&[("t", "1")])]);
        apply(&mut s, "commit-a-b", Some(json!({"tasks": 3})));
        assert_eq!(s.tasks["a-b"].len(), 2);
        assert_eq!(s.work(), (vec!["a-b".to_string()], vec![("a-b".to_string(), 0), ("a-b".to_string(), 1)]));
        // state.v2 wins over state; a tombstone deletes the connector and what hangs on it.
        apply(&mut s, "target-state-a-b", Some(json!({"state": "PAUSED", "state.v2": "STOPPED"})));
        assert_eq!(s.target("a-b"), TargetState::Stopped);
        apply(&mut s, "target-state-a-b", Some(json!({"state": "PAUSED"})));
        assert_eq!(s.target("a-b"), TargetState::Paused);
        assert_eq!(
            apply(&mut s, "restart-connector-a-b", Some(json!({"include-tasks": true, "only-failed": false}))),
            Some(ConfigEvent::Restart { connector: "a-b".into(), include_tasks: true, only_failed: false })
        );
        assert_eq!(
            apply(&mut s, "freshet-restart-task-a-b-1", Some(json!({}))),
            Some(ConfigEvent::RestartTask { connector: "a-b".into(), task: 1 })
        );
        apply(&mut s, "connector-a-b", None);
        assert_eq!(s, ConfigState::default());
        // Keys Kafka's workers write that Freshet has no use for are skipped.
        assert_eq!(apply(&mut s, "session-key", Some(json!({"key": "x"}))), None);
    }
}
