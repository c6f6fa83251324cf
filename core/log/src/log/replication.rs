//! The log's side of replication (see `partition/replica.rs` for a partition's): a follower's
//! appends, truncation and restart, a leader's reads to the log end and its bounded high
//! watermark, and the waits of writes that must reach every in-sync replica.

use super::*;

/// How often a write waiting for its replication looks again at its copy's role.
const ROLE_CHECK: Duration = Duration::from_millis(50);

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

    /// Waits until a partition's high watermark passes the appended batch (`appended`): every
    /// in-sync replica holds it (at once for a partition with one copy, after its fsync with
    /// fsync durability). What coordinators wait for before answering, as Kafka's write their
    /// topics with `acks=all`. Fails with [`Error::NotLeader`] once the copy is a follower's or
    /// leads under another epoch: the batch may have been cut away since, and the high
    /// watermark passing its offset would then say nothing of it.
    pub async fn wait_replicated(
        &self,
        topic: &str,
        partition: u32,
        appended: &AppendInfo,
        timeout: Duration,
    ) -> Result<()> {
        let p = self.partition(topic, partition)?;
        let mut hw = p.watch_high_watermark();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // The role and epoch first: a new leadership's high watermark is about its own log.
            if !p.leads_in(appended.leader_epoch) {
                return Err(Error::NotLeader { topic: topic.to_owned(), partition });
            }
            if *hw.borrow_and_update() > appended.last_offset {
                return Ok(());
            }
            // A role changes without the high watermark moving: looked at again every so often.
            let tick = (tokio::time::Instant::now() + ROLE_CHECK).min(deadline);
            tokio::select! {
                changed = hw.changed() => if changed.is_err() {
                    return Err(Error::Closed);
                },
                _ = tokio::time::sleep_until(tick) => {
                    if tick >= deadline {
                        return Err(Error::NotReplicated {
                            topic: topic.to_owned(),
                            partition,
                            offset: appended.last_offset,
                            waited_ms: timeout.as_millis() as u64,
                        });
                    }
                }
            }
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
