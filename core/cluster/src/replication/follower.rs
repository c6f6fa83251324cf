//! The follower's side: which partitions it fetches from which leader, from where, and what it
//! does with each answer; and the leader's answer to such a fetch.

use std::collections::BTreeMap;

use freshet_log::{Error, Fetched, Log, ReadLimit};

use crate::records::{BrokerId, NO_LEADER};
use crate::MetadataImage;

/// A partition a broker follows.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Followed {
    /// The partition's topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// Its leader's epoch, as the image has it (a fetch names it, so a stale one is refused).
    pub leader_epoch: i32,
}

/// The partitions broker `me` follows under `image`, by leader.
pub fn followed(image: &MetadataImage, me: BrokerId) -> BTreeMap<BrokerId, Vec<Followed>> {
    let mut by_leader: BTreeMap<BrokerId, Vec<Followed>> = BTreeMap::new();
    for (topic, partition, p) in image.partitions() {
        if p.leader != me && p.leader != NO_LEADER && p.replicas.contains(&me) {
            by_leader.entry(p.leader).or_default().push(Followed {
                topic: topic.name.clone(),
                partition,
                leader_epoch: p.leader_epoch,
            });
        }
    }
    by_leader
}

/// Where a follower's fetch of a partition starts: its copy's log end and the epoch of its last
/// batch, and its log start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPosition {
    /// The copy's log end.
    pub fetch_offset: i64,
    /// The leader epoch of the copy's last batch (-1 when empty).
    pub last_fetched_epoch: i32,
    /// The copy's log start.
    pub log_start: i64,
}

/// Where this broker's fetch of `topic`-`index` starts; `None` unless its copy is a follower's.
pub fn position(log: &Log, topic: &str, index: i32) -> Option<FetchPosition> {
    let p = log.partition(topic, u32::try_from(index).ok()?).ok()?;
    if !p.is_follower() {
        return None;
    }
    let (start, _, end) = p.offsets();
    Some(FetchPosition { fetch_offset: end, last_fetched_epoch: p.latest_epoch(), log_start: start })
}

/// The leader's answer to a follower's fetch of one partition.
#[derive(Debug, Clone)]
pub enum Answer {
    /// Batches from the fetch offset (perhaps none), with the leader's high watermark and log
    /// start.
    Records(Fetched),
    /// The follower's log diverged: the epoch it last fetched ended at `end_offset` here
    /// (`epoch` is the largest of the leader's at or below it), below where it fetched from.
    Diverging {
        /// The leader's epoch.
        epoch: i32,
        /// Where that epoch ended in the leader's log.
        end_offset: i64,
        /// The leader's high watermark.
        high_watermark: i64,
        /// The leader's log start.
        log_start: i64,
    },
    /// The fetch offset is outside the leader's log.
    OutOfRange {
        /// The leader's log start.
        log_start: i64,
        /// The leader's high watermark.
        high_watermark: i64,
    },
}

/// The leader's answer to a follower fetching `topic`-`partition` from `position`: a diverging
/// epoch when the epoch it last fetched ended here below its fetch offset, or is not this
/// leader's (Kafka's `DivergingEpoch`, Fetch v12+); otherwise `noted` runs (the leader takes
/// the fetch offset as the follower's log end, which may move the high watermark) and the
/// batches from the fetch offset up to the log end are read. A fetch offset outside the
/// leader's log is answered out of range and not taken as the follower's progress: a position
/// past the leader's log end is not records the follower holds in common with it.
pub async fn serve(
    log: &Log,
    topic: &str,
    partition: u32,
    position: FetchPosition,
    limit: ReadLimit,
    noted: impl FnOnce(),
) -> freshet_log::Result<Answer> {
    let p = log.partition(topic, partition)?;
    if position.last_fetched_epoch >= 0 {
        let (epoch, end) = p.end_offset_for_epoch(position.last_fetched_epoch);
        if epoch != position.last_fetched_epoch || end < position.fetch_offset {
            let (start, hw, _) = p.offsets();
            return Ok(Answer::Diverging { epoch, end_offset: end, high_watermark: hw, log_start: start });
        }
    }
    let (start, hw, end) = p.offsets();
    if position.fetch_offset < start || position.fetch_offset > end {
        return Ok(Answer::OutOfRange { log_start: start, high_watermark: hw });
    }
    noted();
    match log.read_replica(topic, partition, position.fetch_offset, limit).await {
        Ok(fetched) => Ok(Answer::Records(fetched)),
        Err(Error::OffsetOutOfRange { log_start_offset, .. }) => {
            let hw = log.partition(topic, partition).map_or(-1, |q| q.offsets().1);
            Ok(Answer::OutOfRange { log_start: log_start_offset, high_watermark: hw })
        }
        Err(e) => Err(e),
    }
}

/// Applies the leader's answer to this follower's copy of `topic`-`index`:
///
/// - the batches are appended as stored (same offsets, bytes and leader epochs);
/// - a **diverging epoch** means this copy holds batches the leader does not: it is cut back to
///   where the epochs agree (the lower of the leader's end of that epoch and its own);
/// - an offset below the leader's log start means nothing here can be continued: the copy starts
///   again, empty, at the leader's log start; one past the leader's log end is cut back to the
///   leader's high watermark;
/// - the leader's high watermark becomes this copy's (as far as its log reaches), and its log
///   start moves this copy's forward.
pub async fn apply(log: &Log, topic: &str, index: u32, answer: Answer) -> freshet_log::Result<()> {
    let partition = log.partition(topic, index)?;
    match answer {
        Answer::Diverging { epoch, end_offset, .. } => {
            let (local_epoch, local_end) = partition.end_offset_for_epoch(epoch);
            let to = if local_epoch >= 0 { end_offset.min(local_end) } else { end_offset.min(partition.offsets().1) };
            tracing::info!(
                topic,
                partition = index,
                epoch,
                leader_end = end_offset,
                to,
                "diverged from the leader: truncating"
            );
            log.truncate_replica(topic, index, to).await.map(drop)
        }
        Answer::Records(fetched) => {
            if !fetched.batches.is_empty() {
                log.append_replicated(topic, index, fetched.batches).await?;
            }
            let hw = log.bound_high_watermark(topic, index, Some(fetched.high_watermark), true)?;
            if fetched.log_start_offset > partition.offsets().0 {
                log.delete_records(topic, index, fetched.log_start_offset.min(hw)).await?;
            }
            Ok(())
        }
        Answer::OutOfRange { log_start, high_watermark } => {
            let (_, _, end) = partition.offsets();
            if end < log_start {
                log.restart_replica(topic, index, log_start).await
            } else {
                // Past the leader's log end: what is beyond its high watermark here is not the
                // leader's.
                log.truncate_replica(topic, index, high_watermark.max(0)).await.map(drop)
            }
        }
    }
}
