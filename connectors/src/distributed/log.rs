//! A compacted topic read from its start and then followed, as Kafka Connect's `KafkaBasedLog`
//! keeps its configs and statuses: every record goes through the owner's `apply` in order, and
//! a writer can wait until its own record has been applied, so it reads what it wrote.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use freshet_core::{ConsumerConfig, ConsumerRecord, OffsetSpec, ProducerRecord, Substrate, TopicPartition};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{ConnectError, Result};

/// How long a read to the end, or a wait for one's own write, may take.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A followed topic.
#[derive(Debug)]
pub(crate) struct Follower {
    substrate: Arc<dyn Substrate>,
    topic: String,
    partitions: Vec<TopicPartition>,
    /// The next offset to apply, per partition.
    positions: watch::Receiver<BTreeMap<TopicPartition, i64>>,
    task: JoinHandle<()>,
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Follower {
    /// Follows `topic` (which exists) from its start, handing each record to `apply`.
    pub(crate) async fn start(
        substrate: Arc<dyn Substrate>,
        topic: &str,
        mut apply: impl FnMut(&TopicPartition, &ConsumerRecord) + Send + 'static,
    ) -> Result<Follower> {
        let (_, described) = substrate.admin()?.describe_topic(topic).await?;
        let partitions: Vec<TopicPartition> =
            described.iter().map(|p| TopicPartition::new(topic, p.partition)).collect();
        let mut consumer = substrate.consumer(ConsumerConfig::default())?;
        consumer.assign(partitions.clone()).await?;
        for tp in &partitions {
            consumer.seek(tp, OffsetSpec::Earliest).await?;
        }
        let (positions_tx, positions) = watch::channel(BTreeMap::new());
        let name = topic.to_string();
        let task = tokio::spawn(async move {
            loop {
                match consumer.poll(Duration::from_millis(200)).await {
                    Ok(polled) => {
                        for batches in polled {
                            match batches.records() {
                                Ok(records) => records.iter().for_each(|r| apply(&batches.tp, r)),
                                Err(e) => {
                                    tracing::error!(topic = name, error = %e, "a batch of the topic could not be read")
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(topic = name, error = %e, "reading the topic failed; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
                let now: BTreeMap<TopicPartition, i64> = consumer
                    .assignment()
                    .into_iter()
                    .map(|tp| {
                        let at = consumer.position(&tp).unwrap_or(0);
                        (tp, at)
                    })
                    .collect();
                positions_tx.send_if_modified(|p| {
                    let changed = *p != now;
                    *p = now;
                    changed
                });
                if positions_tx.is_closed() {
                    return;
                }
            }
        });
        Ok(Follower { substrate, topic: topic.into(), partitions, positions, task })
    }

    /// Waits until every record the topic holds now has been applied.
    pub(crate) async fn read_to_end(&self) -> Result<()> {
        let admin = self.substrate.admin()?;
        let mut ends = Vec::new();
        for tp in &self.partitions {
            let end = admin.list_offset(tp, OffsetSpec::Latest).await?.map_or(0, |(o, _)| o);
            ends.push((tp.clone(), end));
        }
        self.wait_for(&ends).await
    }

    /// Waits until the records before these offsets have been applied.
    pub(crate) async fn wait_for(&self, ends: &[(TopicPartition, i64)]) -> Result<()> {
        let mut positions = self.positions.clone();
        let reached =
            |p: &BTreeMap<TopicPartition, i64>| ends.iter().all(|(tp, end)| p.get(tp).is_some_and(|at| at >= end));
        let waited = tokio::time::timeout(READ_TIMEOUT, async { positions.wait_for(reached).await.map(|_| ()) }).await;
        match waited {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(ConnectError::Task(format!("the reader of {} stopped", self.topic))),
            Err(_) => Err(ConnectError::Task(format!(
                "reading {} to its end took longer than {} s",
                self.topic,
                READ_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Writes `records` (key, value; `None` a tombstone) in order and waits until they have been
    /// applied.
    pub(crate) async fn write(&self, records: Vec<(String, Option<Bytes>)>) -> Result<()> {
        let records: Vec<ProducerRecord> = records
            .into_iter()
            .map(|(key, value)| ProducerRecord {
                topic: self.topic.clone(),
                key: Some(Bytes::from(key)),
                value,
                ..ProducerRecord::default()
            })
            .collect();
        let written = self.substrate.producer()?.send(records).await?;
        let mut ends: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        for m in written {
            let end = ends.entry(TopicPartition::new(m.topic.as_str(), m.partition)).or_insert(0);
            *end = (*end).max(m.offset + 1);
        }
        self.wait_for(&ends.into_iter().collect::<Vec<_>>()).await
    }
}
