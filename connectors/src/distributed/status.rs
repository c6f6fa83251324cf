//! The status topic (`status.storage.topic`, compacted): each connector's and task's state as
//! the worker running it reports it, with Kafka Connect's keys (`status-connector-<name>`,
//! `status-task-<name>-<n>`) and values (`{"state", "trace", "worker_id", "generation"}`), so
//! any worker answers a status request for any connector.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use freshet_core::{ConsumerRecord, Substrate, TopicPartition};
use serde_json::{json, Value as Json};

use super::log::Follower;
use crate::error::Result;
use crate::worker::State;

/// One status record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    /// `RUNNING`, `FAILED`, ...
    pub(crate) state: String,
    /// Why it failed.
    pub(crate) trace: Option<String>,
    /// The worker reporting it.
    pub(crate) worker_id: String,
    /// The group generation it was reported in.
    pub(crate) generation: i32,
}

impl Status {
    pub(crate) fn new(state: State, trace: Option<String>, worker_id: &str, generation: i32) -> Status {
        Status { state: state.name().into(), trace, worker_id: worker_id.into(), generation }
    }

    fn to_bytes(&self) -> Bytes {
        Bytes::from(
            json!({"state": self.state, "trace": self.trace, "worker_id": self.worker_id, "generation": self.generation})
                .to_string(),
        )
    }

    fn parse(value: &Json) -> Option<Status> {
        Some(Status {
            state: value.get("state")?.as_str()?.to_string(),
            trace: value.get("trace").and_then(Json::as_str).map(str::to_string),
            worker_id: value.get("worker_id")?.as_str()?.to_string(),
            generation: value.get("generation").and_then(Json::as_i64).unwrap_or(0) as i32,
        })
    }
}

/// What a status is of: a connector, or one of its tasks.
pub(crate) type StatusKey = (String, Option<u32>);

fn record_key((connector, task): &StatusKey) -> String {
    match task {
        None => format!("status-connector-{connector}"),
        Some(t) => format!("status-task-{connector}-{t}"),
    }
}

fn parse_key(key: &str) -> Option<StatusKey> {
    if let Some(name) = key.strip_prefix("status-connector-") {
        return Some((name.to_string(), None));
    }
    let (name, id) = key.strip_prefix("status-task-")?.rsplit_once('-')?;
    Some((name.to_string(), Some(id.parse().ok()?)))
}

/// The status topic, followed.
#[derive(Debug)]
pub(crate) struct StatusLog {
    follower: Follower,
    statuses: Arc<Mutex<BTreeMap<StatusKey, Status>>>,
}

impl StatusLog {
    /// Follows `topic` (which exists).
    pub(crate) async fn start(substrate: Arc<dyn Substrate>, topic: &str) -> Result<StatusLog> {
        let statuses: Arc<Mutex<BTreeMap<StatusKey, Status>>> = Arc::default();
        let applied = statuses.clone();
        let follower = Follower::start(substrate, topic, move |_: &TopicPartition, record: &ConsumerRecord| {
            let Some(key) = record.key.as_deref().and_then(|k| std::str::from_utf8(k).ok()).and_then(parse_key) else {
                // `status-topic-...` records (the topics a connector uses) and others.
                return;
            };
            let mut statuses = applied.lock().expect("status lock");
            match record.value.as_deref().map(serde_json::from_slice::<Json>) {
                None => {
                    statuses.remove(&key);
                }
                Some(Ok(value)) => match Status::parse(&value) {
                    Some(status) => {
                        statuses.insert(key, status);
                    }
                    None => tracing::warn!(?key, "skipping a status record of an unknown shape"),
                },
                Some(Err(e)) => tracing::warn!(?key, error = %e, "skipping a status record whose value is not JSON"),
            }
        })
        .await?;
        follower.read_to_end().await?;
        Ok(StatusLog { follower, statuses })
    }

    /// A connector's or task's last reported status.
    pub(crate) fn get(&self, key: &StatusKey) -> Option<Status> {
        self.statuses.lock().expect("status lock").get(key).cloned()
    }

    /// Reports statuses (`None` forgets one).
    pub(crate) async fn put(&self, statuses: Vec<(StatusKey, Option<Status>)>) -> Result<()> {
        if statuses.is_empty() {
            return Ok(());
        }
        self.follower
            .write(statuses.into_iter().map(|(k, s)| (record_key(&k), s.map(|s| s.to_bytes()))).collect())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_have_kafka_connects_shape() {
        assert_eq!(parse_key("status-connector-a-b"), Some(("a-b".into(), None)));
        assert_eq!(parse_key("status-task-a-b-3"), Some(("a-b".into(), Some(3))));
        assert_eq!(parse_key("status-topic-t:a"), None);
        assert_eq!(record_key(&("a-b".into(), Some(3))), "status-task-a-b-3");
        let s = Status::new(State::Failed, Some("boom".into()), "h:8083", 4);
        let value: Json = serde_json::from_slice(&s.to_bytes()).unwrap();
        assert_eq!(value, json!({"state": "FAILED", "trace": "boom", "worker_id": "h:8083", "generation": 4}));
        assert_eq!(Status::parse(&value), Some(s));
    }
}
