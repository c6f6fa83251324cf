//! The log's side of replication (see `partition/replica.rs` for a partition's): a follower's
//! appends, truncation and restart, a leader's reads to the log end and its bounded high
//! watermark, and the waits of writes that must reach every in-sync replica.

use super::*;

impl Log {
    /// A receiver bumped whenever any partition is written to, visible or not yet: what a leader
    /// answering its followers' fetches waits on.
    pub fn watch_writes(&self) -> watch::Receiver<u64> {
        self.shared.data_written.subscribe()
    }

    /// The first failure of the log's storage, once one happens: an fsync that failed, after
    /// which its partition takes no more appends (what the fsync covered may or may not be on
    /// the disk). A broker with its one log directory failed stops, as Kafka's does, so that the
    /// other replicas take its partitions over.
    pub fn watch_storage_failure(&self) -> watch::Receiver<Option<String>> {
        self.shared.storage_failed.subscribe()
    }

    /// Appends batches exactly as a partition's leader stored them, to this follower's copy (see
    /// [`Partition::append_replicated`](crate::Partition)): they must start at its log end.
    /// Returns the new log end once the log's durability holds for it (with fsync durability,
    /// a follower reports to its leader only what is on its disk).
    pub async fn append_replicated(&self, topic: &str, partition: u32, batches: Bytes) -> Result<i64> {
        let p = self.partition(topic, partition)?;
        let (shared, q) = (self.shared.clone(), p.clone());
        let leo = blocking(move || {
            let (leo, epochs_changed) = q.append_replicated(&batches)?;
            if epochs_changed {
                q.write_checkpoint()?;
            }
            after_write(&shared, &q);
            Ok(leo)
        })
        .await?;
        if p.durability() == Durability::Fsync {
            let mut durable = p.watch_durable();
            let state = *durable.wait_for(|d| d.offset >= leo || d.failed).await.map_err(|_| Error::Closed)?;
            if state.offset < leo {
                return Err(Error::Internal(format!(
                    "the fsync of {topic}-{partition}'s replicated batches up to offset {leo} failed"
                )));
            }
        }
        Ok(leo)
    }

    /// Waits until a partition's high watermark passes `last_offset`: every in-sync replica
    /// holds it (at once for a partition with one copy, after its fsync with fsync durability).
    /// What coordinators wait for before answering, as Kafka's write their topics with
    /// `acks=all`.
    pub async fn wait_replicated(
        &self,
        topic: &str,
        partition: u32,
        last_offset: i64,
        timeout: Duration,
    ) -> Result<()> {
        let p = self.partition(topic, partition)?;
        let mut hw = p.watch_high_watermark();
        let waited = tokio::time::timeout(timeout, hw.wait_for(|hw| *hw > last_offset)).await.map(|r| r.is_ok());
        match waited {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::Closed),
            Err(_) => Err(Error::NotReplicated {
                topic: topic.to_owned(),
                partition,
                offset: last_offset,
                waited_ms: timeout.as_millis() as u64,
            }),
        }
    }

    /// Cuts a follower's copy back to `offset` (below its log start: empties it and starts it
    /// there). Returns the new log end.
    pub async fn truncate_replica(&self, topic: &str, partition: u32, offset: i64) -> Result<i64> {
        let p = self.partition(topic, partition)?;
        blocking(move || p.truncate_to(offset)).await
    }

    /// Empties a follower's copy and starts it again at `offset`: its log ends below its
    /// leader's log start, so nothing it holds can be continued.
    pub async fn restart_replica(&self, topic: &str, partition: u32, offset: i64) -> Result<()> {
        let p = self.partition(topic, partition)?;
        blocking(move || p.restart_at(offset)).await
    }

    /// Bounds a replicated partition's high watermark (see [`Partition::bound_high_watermark`])
    /// and wakes readers when it moved. Returns the high watermark.
    pub fn bound_high_watermark(
        &self,
        topic: &str,
        partition: u32,
        bound: Option<i64>,
        may_lower: bool,
    ) -> Result<i64> {
        let p = self.partition(topic, partition)?;
        let before = p.offsets().1;
        let hw = p.bound_high_watermark(bound, may_lower)?;
        if hw != before {
            self.shared.data_arrived.send_modify(|n| *n += 1);
        }
        Ok(hw)
    }

    /// Reads like [`Log::read`] but up to the log end, not the high watermark: what a leader
    /// sends its followers.
    pub async fn read_replica(&self, topic: &str, partition: u32, offset: i64, limit: ReadLimit) -> Result<Fetched> {
        let partition = self.partition(topic, partition)?;
        blocking(move || fetched(partition.read_to(offset, limit, Isolation::ReadUncommitted, true)?)).await
    }
}
