//! The partitions a transaction coordinator writes its markers to: its own log's, or, in a
//! cluster, those other brokers lead.

use freshet_log::{Error, Log, Marker, Result};
use futures::future::BoxFuture;

use crate::group::GroupOffsets;

/// The partitions a transaction coordinator reaches: whether one exists, and how its markers are
/// written. A coordinator alone serves its own log ([`LocalParticipants`]); a broker of a
/// cluster writes the markers of partitions other brokers lead on those brokers.
pub trait Participants: Send + Sync + std::fmt::Debug {
    /// Whether `topic` has a partition `partition`.
    fn exists(&self, topic: &str, partition: u32) -> bool;

    /// Writes the marker ending the transaction of `producer_id` at `producer_epoch` to every
    /// partition of `partitions`; `Ok` once all of them hold it. A partition deleted since holds
    /// nothing to mark, and is no error.
    fn write_markers<'a>(
        &'a self,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        partitions: &'a [(String, u32)],
    ) -> BoxFuture<'a, Result<()>>;
}

/// The participants of a transaction in one log: its own partitions.
#[derive(Debug, Clone)]
pub struct LocalParticipants {
    log: Log,
    offsets: GroupOffsets,
}

impl LocalParticipants {
    /// The partitions of `log`, whose consumer-group offsets `offsets` keeps.
    pub fn new(log: Log, offsets: GroupOffsets) -> Self {
        LocalParticipants { log, offsets }
    }

    /// Writes one marker to one partition of this log (Kafka's WriteTxnMarkers, one partition):
    /// on a partition of `__consumer_offsets` the offsets the transaction committed there become
    /// their groups' (or are dropped).
    pub async fn write_marker(
        &self,
        topic: &str,
        partition: u32,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
    ) -> Result<()> {
        let marker = if commit { Marker::Commit } else { Marker::Abort };
        let batch = marker.batch(producer_id, producer_epoch, coordinator_epoch, self.log.clock().now_ms());
        let info = self.log.append(topic, partition, batch).await?;
        self.log.wait_replicated(topic, partition, &info, crate::group::COMMIT_TIMEOUT).await?;
        if topic == crate::group::OFFSETS_TOPIC {
            self.offsets.complete_transaction(partition, producer_id, commit);
        }
        Ok(())
    }

    /// Writes one marker to each of `partitions` of this log, at once; a partition deleted since
    /// holds nothing to mark, and is no error.
    pub async fn write_all(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        partitions: &[(String, u32)],
    ) -> Result<()> {
        let writes = partitions.iter().map(|(topic, partition)| async move {
            match self.write_marker(topic, *partition, producer_id, producer_epoch, coordinator_epoch, commit).await {
                Ok(()) | Err(Error::UnknownTopic(_) | Error::UnknownPartition { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        });
        futures::future::join_all(writes).await.into_iter().collect()
    }
}

impl Participants for LocalParticipants {
    fn exists(&self, topic: &str, partition: u32) -> bool {
        self.log.describe_topic(topic).is_ok_and(|d| partition < d.n_partitions)
    }

    fn write_markers<'a>(
        &'a self,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        partitions: &'a [(String, u32)],
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.write_all(producer_id, producer_epoch, 0, commit, partitions))
    }
}
