//! Where source connectors' offsets are kept: the offsets topic (`offset.storage.topic`,
//! compacted), with Kafka Connect's record layout, the key `["<connector>",{<partition>}]` and the
//! value `{<offset>}` as JSON (a tombstone forgets a partition), so a worker of either reads the
//! other's; or, for a standalone worker with `offset.storage.file.filename`, a file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use freshet_core::{ConsumerConfig, NewTopic, OffsetSpec, ProducerRecord, Substrate, TopicPartition};
use tokio::sync::Mutex as AsyncMutex;

use crate::error::{ConnectError, Result};
use crate::record::SourceMap;

/// A connector's partition, as its canonical JSON text (keys sorted).
type PartitionKey = String;

/// The offsets of every connector, in memory, kept in step with their store.
#[derive(Debug)]
pub(crate) struct OffsetStore {
    backend: Backend,
    entries: Mutex<BTreeMap<(String, PartitionKey), (SourceMap, SourceMap)>>,
}

enum Backend {
    Topic { substrate: Arc<dyn Substrate>, topic: String, reader: AsyncMutex<Option<Box<dyn freshet_core::Consumer>>> },
    File { path: PathBuf },
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Topic { topic, .. } => write!(f, "Topic({topic})"),
            Backend::File { path } => write!(f, "File({})", path.display()),
        }
    }
}

impl OffsetStore {
    /// The store in `topic`, created (compacted, with `n_partitions`) when missing, read to its end.
    pub(crate) async fn topic(substrate: Arc<dyn Substrate>, topic: &str, n_partitions: u32) -> Result<Self> {
        ensure_topic(&*substrate, topic, n_partitions, &[("cleanup.policy", "compact")]).await?;
        let store = OffsetStore {
            backend: Backend::Topic { substrate, topic: topic.into(), reader: AsyncMutex::new(None) },
            entries: Mutex::new(BTreeMap::new()),
        };
        store.refresh().await?;
        Ok(store)
    }

    /// The store in a file, read when it exists.
    pub(crate) async fn file(path: PathBuf) -> Result<Self> {
        let mut entries = BTreeMap::new();
        match tokio::fs::read(&path).await {
            Ok(bytes) => {
                let stored: Vec<(String, SourceMap, SourceMap)> = serde_json::from_slice(&bytes).map_err(|e| {
                    ConnectError::data(format!(
                        "the offsets file {} is not what this worker writes: {e}",
                        path.display()
                    ))
                })?;
                for (connector, partition, offset) in stored {
                    entries.insert((connector, canonical(&partition)), (partition, offset));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ConnectError::io(format!("reading {}", path.display()), e)),
        }
        Ok(OffsetStore { backend: Backend::File { path }, entries: Mutex::new(entries) })
    }

    /// Reads what others wrote to the topic since the last read, up to its end now.
    pub(crate) async fn refresh(&self) -> Result<()> {
        let Backend::Topic { substrate, topic, reader } = &self.backend else { return Ok(()) };
        let mut reader = reader.lock().await;
        if reader.is_none() {
            let (_, partitions) = substrate.admin()?.describe_topic(topic).await?;
            // Offsets an exactly-once source wrote in a transaction count once it commits.
            let config =
                ConsumerConfig { isolation: freshet_core::Isolation::ReadCommitted, ..ConsumerConfig::default() };
            let mut consumer = substrate.consumer(config)?;
            consumer
                .assign(partitions.iter().map(|p| TopicPartition::new(topic.as_str(), p.partition)).collect())
                .await?;
            *reader = Some(consumer);
        }
        let consumer = reader.as_mut().expect("made above");
        let admin = substrate.admin()?;
        let mut ends = BTreeMap::new();
        for tp in consumer.assignment() {
            let end = admin.list_offset(&tp, OffsetSpec::Latest).await?.map_or(0, |(o, _)| o);
            ends.insert(tp, end);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let behind =
                ends.iter().any(|(tp, end)| consumer.position(tp).unwrap_or(0) < *end && !consumer.reached_end(tp));
            if !behind {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(ConnectError::Task(format!(
                    "reading the offsets topic {topic} to its end took over a minute"
                )));
            }
            for batch in consumer.poll(Duration::from_millis(200)).await? {
                for record in batch.records()? {
                    self.apply(record.key.as_deref(), record.value.as_deref());
                }
            }
        }
    }

    /// One record of the offsets topic applied; records of another shape are skipped with a warning.
    fn apply(&self, key: Option<&[u8]>, value: Option<&[u8]>) {
        let parsed = key.and_then(|k| serde_json::from_slice::<serde_json::Value>(k).ok());
        let Some(serde_json::Value::Array(parts)) = parsed else {
            tracing::warn!(key = ?key.map(String::from_utf8_lossy), "skipping a record of the offsets topic whose key is not [connector, partition]");
            return;
        };
        let (Some(serde_json::Value::String(connector)), Some(serde_json::Value::Object(partition))) =
            (parts.first(), parts.get(1))
        else {
            tracing::warn!(?parts, "skipping a record of the offsets topic whose key is not [connector, partition]");
            return;
        };
        let k = (connector.clone(), canonical(partition));
        let mut entries = self.entries.lock().expect("offsets lock");
        match value.map(serde_json::from_slice::<serde_json::Value>) {
            None | Some(Ok(serde_json::Value::Null)) => {
                entries.remove(&k);
            }
            Some(Ok(serde_json::Value::Object(offset))) => {
                entries.insert(k, (partition.clone(), offset));
            }
            Some(other) => {
                tracing::warn!(?other, "skipping a record of the offsets topic whose value is not an object")
            }
        }
    }

    /// The stored offset of a connector's partition.
    pub(crate) fn get(&self, connector: &str, partition: &SourceMap) -> Option<SourceMap> {
        let entries = self.entries.lock().expect("offsets lock");
        entries.get(&(connector.to_string(), canonical(partition))).map(|(_, o)| o.clone())
    }

    /// Every stored (partition, offset) of a connector.
    pub(crate) fn list(&self, connector: &str) -> Vec<(SourceMap, SourceMap)> {
        let entries = self.entries.lock().expect("offsets lock");
        entries.iter().filter(|((c, _), _)| c == connector).map(|(_, v)| v.clone()).collect()
    }

    /// Stores offsets of a connector (`None`: forget the partition) and resolves once they are
    /// durable.
    pub(crate) async fn write(&self, connector: &str, offsets: Vec<(SourceMap, Option<SourceMap>)>) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        match &self.backend {
            Backend::Topic { substrate, .. } => {
                let records = self.records(connector, &offsets)?;
                substrate.producer()?.send(records).await?;
                self.remember(connector, offsets);
                Ok(())
            }
            Backend::File { path } => {
                self.remember(connector, offsets);
                let all: Vec<(String, SourceMap, SourceMap)> = {
                    let entries = self.entries.lock().expect("offsets lock");
                    entries.iter().map(|((c, _), (p, o))| (c.clone(), p.clone(), o.clone())).collect()
                };
                let bytes = serde_json::to_vec(&all).expect("JSON serializes");
                write_atomically(path.clone(), bytes).await
            }
        }
    }

    /// The records of the offsets topic that store these offsets, for a transaction to write
    /// beside the records they belong to; an error for a store in a file.
    pub(crate) fn records(
        &self,
        connector: &str,
        offsets: &[(SourceMap, Option<SourceMap>)],
    ) -> Result<Vec<ProducerRecord>> {
        let Backend::Topic { topic, .. } = &self.backend else {
            return Err(ConnectError::config(
                "offset.storage.file.filename",
                "",
                "exactly-once sources keep their offsets in the offsets topic, not in a file",
            ));
        };
        Ok(offsets
            .iter()
            .map(|(partition, offset)| ProducerRecord {
                topic: topic.clone(),
                key: Some(Bytes::from(
                    serde_json::to_vec(&serde_json::json!([connector, partition])).expect("JSON serializes"),
                )),
                value: offset.as_ref().map(|o| Bytes::from(serde_json::to_vec(o).expect("JSON serializes"))),
                ..Default::default()
            })
            .collect())
    }

    /// Takes offsets written elsewhere (in a transaction that committed) into memory.
    pub(crate) fn remember(&self, connector: &str, offsets: Vec<(SourceMap, Option<SourceMap>)>) {
        let mut entries = self.entries.lock().expect("offsets lock");
        for (partition, offset) in offsets {
            let k = (connector.to_string(), canonical(&partition));
            match offset {
                Some(o) => entries.insert(k, (partition, o)),
                None => entries.remove(&k),
            };
        }
    }
}

/// A partition's canonical text: `serde_json`'s maps keep their keys sorted.
fn canonical(partition: &SourceMap) -> PartitionKey {
    serde_json::to_string(partition).expect("JSON serializes")
}

/// Replaces a file's contents so that a crash leaves the old or the new, never a mix.
async fn write_atomically(path: PathBuf, bytes: Vec<u8>) -> Result<()> {
    tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok::<_, std::io::Error>(())
    })
    .await
    .map_err(|e| ConnectError::Task(format!("writing the offsets file: {e}")))?
    .map_err(|e| ConnectError::io("writing the offsets file", e))
}

/// Creates a topic unless it exists.
pub(crate) async fn ensure_topic(
    substrate: &dyn Substrate,
    name: &str,
    n_partitions: u32,
    configs: &[(&str, &str)],
) -> Result<()> {
    let admin = substrate.admin()?;
    if admin.describe_topic(name).await.is_ok() {
        return Ok(());
    }
    let topic = NewTopic {
        name: name.into(),
        n_partitions,
        configs: configs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    };
    match admin.create_topic(topic).await {
        Ok(()) | Err(freshet_core::Error::TopicExists(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
