//! The embedded [`Producer`] and [`TransactionalProducer`]: records encoded straight into record
//! batches and appended.

use super::*;

/// The embedded [`Producer`], and [`TransactionalProducer`] when made by
/// [`Embedded::transactional_producer`].
#[derive(Debug)]
pub struct EmbeddedProducer {
    pub(super) log: Log,
    pub(super) round_robin: AtomicU32,
    pub(super) txn: Option<Arc<EmbeddedTxn>>,
}

/// A transactional producer's identity and its open transaction.
#[derive(Debug)]
pub(super) struct EmbeddedTxn {
    pub(super) transactions: Transactions,
    pub(super) id: String,
    pub(super) producer_id: i64,
    pub(super) epoch: i16,
    pub(super) local: Mutex<TxnLocal>,
}

#[derive(Debug, Default)]
pub(super) struct TxnLocal {
    pub(super) open: bool,
    /// Whether the coordinator knows of the open transaction (a partition or offsets were added):
    /// a transaction with nothing in it ends without it.
    pub(super) enlisted: bool,
    /// Partitions added to the open transaction.
    pub(super) partitions: std::collections::HashSet<TopicPartition>,
    /// The next sequence number per partition.
    pub(super) sequences: HashMap<TopicPartition, i32>,
}

impl EmbeddedProducer {
    /// Appends `batches` to one partition, in order; returns where each landed.
    pub(super) async fn append_in_order(
        &self,
        topic: &str,
        partition: u32,
        batches: Vec<Bytes>,
    ) -> Result<Vec<freshet_log::AppendInfo>> {
        // `join_all` polls the appends first in order, and the log queues appends in the order
        // they are first polled, so the batches land in order.
        let appends = batches.into_iter().map(|batch| self.log.append(topic, partition, bytes::BytesMut::from(batch)));
        futures::future::join_all(appends).await.into_iter().collect()
    }

    pub(super) fn n_partitions(&self, topic: &str) -> Result<u32> {
        Ok(self.log.describe_topic(topic)?.n_partitions)
    }

    /// A batch builder for `n` records to one partition: a transactional producer's carry its
    /// producer id, epoch and the partition's next sequence.
    pub(super) fn builder(&self, topic: &str, partition: u32, n: usize, capacity: usize) -> BatchBuilder {
        let builder = BatchBuilder::with_capacity(capacity);
        let Some(txn) = &self.txn else { return builder };
        let mut local = txn.local.lock().expect("transaction lock");
        let next = local.sequences.entry(TopicPartition::new(topic, partition)).or_insert(0);
        let sequence = *next;
        *next = next.wrapping_add(n as i32).max(0);
        builder.producer(txn.producer_id, txn.epoch, sequence).transactional()
    }

    /// For a transactional producer: checks a transaction is open and adds the partitions it has
    /// not written yet to it.
    pub(super) async fn enlist(&self, partitions: impl Iterator<Item = (&str, u32)>) -> Result<()> {
        let Some(txn) = &self.txn else { return Ok(()) };
        let new: Vec<TopicPartition> = {
            let local = txn.local.lock().expect("transaction lock");
            if !local.open {
                return Err(Error::Transaction(format!(
                    "transactional id {:?}: a send outside a transaction (begin one first)",
                    txn.id
                )));
            }
            partitions.map(|(t, p)| TopicPartition::new(t, p)).filter(|tp| !local.partitions.contains(tp)).collect()
        };
        if new.is_empty() {
            return Ok(());
        }
        txn.transactions.add_partitions(&txn.id, txn.producer_id, txn.epoch, &new).await?;
        let mut local = txn.local.lock().expect("transaction lock");
        local.partitions.extend(new);
        local.enlisted = true;
        Ok(())
    }

    pub(super) fn txn(&self) -> Result<&Arc<EmbeddedTxn>> {
        self.txn.as_ref().ok_or_else(|| Error::Transaction("this producer has no transactional id".into()))
    }

    /// Ends the open transaction.
    pub(super) async fn end(&self, commit: bool) -> Result<()> {
        let txn = self.txn()?;
        let enlisted = {
            let local = txn.local.lock().expect("transaction lock");
            if !local.open {
                return Err(Error::Transaction(format!("transactional id {:?} has no open transaction", txn.id)));
            }
            local.enlisted
        };
        let ended =
            if enlisted { txn.transactions.end(&txn.id, txn.producer_id, txn.epoch, commit).await } else { Ok(()) };
        let mut local = txn.local.lock().expect("transaction lock");
        local.open = false;
        local.enlisted = false;
        local.partitions.clear();
        Ok(ended?)
    }
}

#[async_trait]
impl TransactionalProducer for EmbeddedProducer {
    fn begin(&self) -> Result<()> {
        let txn = self.txn()?;
        let mut local = txn.local.lock().expect("transaction lock");
        if local.open {
            return Err(Error::Transaction(format!("transactional id {:?} already has a transaction open", txn.id)));
        }
        local.open = true;
        Ok(())
    }

    async fn send_offsets(
        &self,
        offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
        group: &GroupMetadata,
    ) -> Result<()> {
        let txn = self.txn()?;
        if !txn.local.lock().expect("transaction lock").open {
            return Err(Error::Transaction(format!("transactional id {:?} has no open transaction", txn.id)));
        }
        let t = &txn.transactions;
        t.add_offsets(&txn.id, txn.producer_id, txn.epoch, &group.group_id).await?;
        t.commit_offsets(&txn.id, txn.producer_id, txn.epoch, &group.group_id, &offsets).await?;
        txn.local.lock().expect("transaction lock").enlisted = true;
        Ok(())
    }

    async fn commit(&self) -> Result<()> {
        self.end(true).await
    }

    async fn abort(&self) -> Result<()> {
        self.end(false).await
    }
}

/// Splits records of estimated `sizes` (in order) into runs of at most [`BATCH_BYTES`] (a larger
/// record is a run of its own): the record ranges of the batches to build.
pub(super) fn batch_runs(sizes: impl Iterator<Item = usize>) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    let (mut start, mut end, mut n_bytes) = (0, 0, 0);
    for size in sizes {
        if end > start && n_bytes + size > BATCH_BYTES {
            runs.push(start..end);
            (start, n_bytes) = (end, 0);
        }
        n_bytes += size;
        end += 1;
    }
    if end > start {
        runs.push(start..end);
    }
    runs
}

#[async_trait]
impl Producer for EmbeddedProducer {
    async fn send(&self, records: Vec<ProducerRecord>) -> Result<Vec<RecordMetadata>> {
        // One batch per partition, records in the order given; batches go out concurrently.
        // Keys borrow the records' topic names: no allocation per record.
        let mut by_partition: BTreeMap<(&str, u32), Vec<usize>> = BTreeMap::new();
        let mut n_partitions: HashMap<&str, u32> = HashMap::new();
        for (i, record) in records.iter().enumerate() {
            let n = match n_partitions.get(record.topic.as_str()) {
                Some(n) => *n,
                None => {
                    let n = self.n_partitions(&record.topic)?;
                    n_partitions.insert(&record.topic, n);
                    n
                }
            };
            let partition = match (record.partition, &record.key) {
                (Some(p), _) if p < n => p,
                (Some(p), _) => {
                    return Err(Error::UnknownPartition { topic: record.topic.clone(), n_partitions: n, partition: p })
                }
                (None, Some(key)) => partition_for_key(key, n),
                (None, None) => self.round_robin.fetch_add(1, Ordering::Relaxed) % n,
            };
            by_partition.entry((&record.topic, partition)).or_default().push(i);
        }
        self.enlist(by_partition.keys().copied()).await?;
        let now = self.log.clock().now_ms();
        let mut sends = Vec::new();
        for ((topic, partition), indexes) in by_partition {
            // Batches of at most about BATCH_BYTES, so a large send stays under max.message.bytes.
            let runs = batch_runs(indexes.iter().map(|&i| estimate(&records[i])));
            let batches = runs
                .iter()
                .map(|run| {
                    let mut builder = self.builder(topic, partition, run.len(), run.len() * 64);
                    for &i in &indexes[run.clone()] {
                        let r = &records[i];
                        builder.push(r.key.as_deref(), r.value.as_deref(), &r.headers, r.timestamp.unwrap_or(now));
                    }
                    builder.finish()
                })
                .collect();
            sends.push(async move {
                let infos = self.append_in_order(topic, partition, batches).await?;
                Ok::<_, Error>((topic, partition, indexes, runs, infos))
            });
        }
        let mut out: Vec<Option<RecordMetadata>> = vec![None; records.len()];
        for result in futures::future::join_all(sends).await {
            let (topic, partition, indexes, runs, infos) = result?;
            for (run, info) in runs.into_iter().zip(infos) {
                for (k, &i) in indexes[run].iter().enumerate() {
                    out[i] = Some(RecordMetadata {
                        topic: topic.to_string(),
                        partition,
                        offset: info.base_offset + k as i64,
                        timestamp: info.log_append_time.unwrap_or(records[i].timestamp.unwrap_or(now)),
                    });
                }
            }
        }
        Ok(out.into_iter().map(|m| m.expect("every record was sent")).collect())
    }

    async fn send_to_partition(
        &self,
        tp: &TopicPartition,
        records: &[(Bytes, Option<Bytes>)],
        timestamp: i64,
    ) -> Result<Option<(i64, i64)>> {
        let n = self.n_partitions(&tp.topic)?;
        if tp.partition >= n {
            return Err(Error::UnknownPartition { topic: tp.topic.clone(), n_partitions: n, partition: tp.partition });
        }
        if records.is_empty() {
            return Ok(None);
        }
        self.enlist(std::iter::once((tp.topic.as_str(), tp.partition))).await?;
        let size = |(k, v): &(Bytes, Option<Bytes>)| k.len() + v.as_ref().map_or(0, Bytes::len) + RECORD_FRAMING_BYTES;
        let runs = batch_runs(records.iter().map(size));
        let batches = runs
            .iter()
            .map(|run| {
                let n_bytes = records[run.clone()].iter().map(size).sum();
                let mut builder = self.builder(&tp.topic, tp.partition, run.len(), n_bytes);
                for (k, v) in &records[run.clone()] {
                    builder.push(Some(k), v.as_deref(), &[], timestamp);
                }
                builder.finish()
            })
            .collect();
        let infos = self.append_in_order(&tp.topic, tp.partition, batches).await?;
        let first = infos.first().expect("one batch at least").base_offset;
        let last =
            infos.last().expect("one batch at least").base_offset + runs.last().map_or(0, |r| r.len() as i64) - 1;
        Ok(Some((first, last)))
    }
}

/// Record bytes per batch a send builds, by estimate: within the default `max.message.bytes`.
/// Estimates err high ([`RECORD_FRAMING_BYTES`] per record, where varints take at most 32), so a
/// batch stays within the default 1048588 even with the 61-byte batch header.
pub(super) const BATCH_BYTES: usize = 1_000_000;

/// Bytes a record's framing (length, attributes, deltas, field lengths) takes at most, rounded up.
pub(super) const RECORD_FRAMING_BYTES: usize = 40;

pub(super) fn estimate(r: &ProducerRecord) -> usize {
    let headers: usize = r.headers.iter().map(|h| h.key.len() + h.value.as_ref().map_or(0, |v| v.len()) + 10).sum();
    r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len()) + headers + RECORD_FRAMING_BYTES
}
