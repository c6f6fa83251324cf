//! The follower's side of replication: fetching from the leaders.
//!
//! One task per leader broker sends that leader Fetch requests (v12, with this broker's id as
//! the replica id) for every partition this broker follows there, as Kafka's replica fetcher
//! threads do. Each partition's fetch starts at this copy's log end and names the epoch of its
//! last batch:
//!
//! - the batches returned are appended as stored (same offsets, bytes and leader epochs);
//! - a **diverging epoch** in the answer means this copy holds batches the leader does not: it
//!   is cut back to where the epochs agree (the lower of the leader's end of that epoch and its
//!   own), and fetching goes on from there;
//! - an offset below the leader's log start means nothing here can be continued: the copy
//!   starts again, empty, at the leader's log start;
//! - the leader's high watermark becomes this copy's (as far as its log reaches), and its log
//!   start moves this copy's forward.
//!
//! The set of leaders and partitions is the metadata image's, read again on every round.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use freshet_cluster::records::{BrokerId, NO_LEADER};
use freshet_cluster::MetadataImage;
use freshet_coord::code;
use freshet_log::Log;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::task::JoinHandle;

use super::link::Links;
use super::ClusterNode;

/// The Fetch version followers send: the last with topic names, and the first with diverging
/// epochs.
const FETCH_VERSION: i16 = 12;
/// How long a leader holds a follower's fetch when there is nothing new.
const MAX_WAIT_MS: i32 = 500;
/// Bytes per partition per fetch.
const PARTITION_MAX_BYTES: i32 = 1 << 20;

/// A partition this broker follows.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Followed {
    topic: String,
    partition: i32,
    leader_epoch: i32,
}

/// The partitions this broker follows, by leader.
fn followed(image: &MetadataImage, me: BrokerId) -> BTreeMap<BrokerId, Vec<Followed>> {
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

/// Keeps one fetcher per leader this broker follows partitions of. (Which copies are a
/// follower's is set with the image, by [`super::replica::Replicas::on_image`]; a batch that
/// arrives for a copy no longer a follower's is refused by the log.)
pub(super) async fn run(node: Arc<ClusterNode>, log: Log) {
    let me = node.config.node_id;
    let mut images = node.images();
    let mut fetchers: BTreeMap<BrokerId, JoinHandle<()>> = BTreeMap::new();
    loop {
        let image = images.borrow_and_update().clone();
        let by_leader = followed(&image, me);
        fetchers.retain(|leader, task| {
            let keep = by_leader.contains_key(leader) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for leader in by_leader.keys() {
            fetchers.entry(*leader).or_insert_with(|| tokio::spawn(fetch_from(node.clone(), log.clone(), *leader)));
        }
        if images.changed().await.is_err() {
            for task in fetchers.values() {
                task.abort();
            }
            return;
        }
    }
}

/// Fetches from `leader`, for as long as this broker follows partitions there.
async fn fetch_from(node: Arc<ClusterNode>, log: Log, leader: BrokerId) {
    let me = node.config.node_id;
    let links = Links::new(me, Duration::from_millis(MAX_WAIT_MS as u64) + Duration::from_secs(10));
    let mut failures = 0u32;
    loop {
        let image = node.image();
        let Some(partitions) = followed(&image, me).remove(&leader) else { return };
        let Some(address) = image
            .brokers
            .get(&leader)
            .and_then(|b| crate::handlers::cluster::endpoint(&node, b))
            .map(|(h, p)| (h.to_owned(), p as u16))
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let request = request(&log, me, &partitions);
        let response = match links.send(leader, address, FETCH_VERSION, &request).await {
            Ok(r) => r,
            Err(error) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(50) {
                    tracing::info!(leader, %error, "fetching from the leader failed; retrying");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        failures = 0;
        if response.error_code != code::NONE {
            tracing::info!(leader, code = response.error_code, "the leader refused the fetch");
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let mut refused = 0;
        for topic in response.responses {
            let name = topic.topic.0.to_string();
            for p in topic.partitions {
                if !handle(&log, &name, p).await {
                    refused += 1;
                }
            }
        }
        if refused > 0 {
            // The leader's image or ours is behind: give the metadata a moment.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn request(log: &Log, me: BrokerId, partitions: &[Followed]) -> FetchRequest {
    let mut topics: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
    for f in partitions {
        let Ok(p) = log.partition(&f.topic, f.partition as u32) else { continue };
        if !p.is_follower() {
            continue;
        }
        let (start, _, end) = p.offsets();
        topics.entry(&f.topic).or_default().push(
            FetchPartition::default()
                .with_partition(f.partition)
                .with_current_leader_epoch(f.leader_epoch)
                .with_fetch_offset(end)
                .with_last_fetched_epoch(p.latest_epoch())
                .with_log_start_offset(start)
                .with_partition_max_bytes(PARTITION_MAX_BYTES),
        );
    }
    let topics = topics
        .into_iter()
        .map(|(name, partitions)| {
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(name.to_owned())))
                .with_partitions(partitions)
        })
        .collect();
    FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(me))
        .with_max_wait_ms(MAX_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(16 << 20)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(topics)
}

/// Applies one partition's answer; `false` when the leader refused it.
async fn handle(log: &Log, topic: &str, p: PartitionData) -> bool {
    let index = p.partition_index as u32;
    let Ok(partition) = log.partition(topic, index) else { return true };
    let result = match p.error_code {
        code::NONE if p.diverging_epoch.epoch >= 0 => {
            let (epoch, end) = (p.diverging_epoch.epoch, p.diverging_epoch.end_offset);
            let (local_epoch, local_end) = partition.end_offset_for_epoch(epoch);
            let to = if local_epoch >= 0 { end.min(local_end) } else { end.min(partition.offsets().1) };
            tracing::info!(
                topic,
                partition = index,
                epoch,
                leader_end = end,
                to,
                "diverged from the leader: truncating"
            );
            log.truncate_replica(topic, index, to).await.map(drop)
        }
        code::NONE => {
            let records = p.records.unwrap_or_default();
            let appended =
                if records.is_empty() { Ok(()) } else { log.append_replicated(topic, index, records).await.map(drop) };
            match appended {
                Ok(()) => follow_leader_offsets(log, topic, index, p.high_watermark, p.log_start_offset).await,
                Err(e) => Err(e),
            }
        }
        code::OFFSET_OUT_OF_RANGE => {
            let (_, _, end) = partition.offsets();
            if end < p.log_start_offset {
                log.restart_replica(topic, index, p.log_start_offset).await
            } else {
                // Past the leader's log end: what is beyond its high watermark here is not the
                // leader's.
                log.truncate_replica(topic, index, p.high_watermark.max(0)).await.map(drop)
            }
        }
        other => {
            tracing::debug!(topic, partition = index, code = other, "the leader refused a partition's fetch");
            return false;
        }
    };
    if let Err(error) = result {
        tracing::warn!(topic, partition = index, %error, "replicating from the leader failed");
    }
    true
}

/// The leader's high watermark becomes this copy's (as far as its log reaches), and its log
/// start moves this copy's forward.
async fn follow_leader_offsets(log: &Log, topic: &str, index: u32, hw: i64, log_start: i64) -> freshet_log::Result<()> {
    let hw = log.bound_high_watermark(topic, index, Some(hw), true)?;
    if log_start > log.partition(topic, index)?.offsets().0 {
        log.delete_records(topic, index, log_start.min(hw)).await?;
    }
    Ok(())
}
