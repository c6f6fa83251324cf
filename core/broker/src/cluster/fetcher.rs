//! The follower's side of replication: fetching from the leaders.
//!
//! One task per leader broker sends that leader Fetch requests (v12, with this broker's id as
//! the replica id) for every partition this broker follows there, as Kafka's replica fetcher
//! threads do. Each partition's fetch starts at this copy's log end and names the epoch of its
//! last batch; what is done with the answer (appended as stored, truncated on a diverging epoch,
//! restarted at the leader's log start, the leader's high watermark taken) is
//! [`freshet_cluster::replication::follower::apply`].
//!
//! The set of leaders and partitions is the metadata image's, read again on every round.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use freshet_cluster::records::BrokerId;
use freshet_cluster::replication::follower::{self, followed, Answer, Followed};
use freshet_coord::code;
use freshet_log::{Fetched, Log};
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
        let Some(at) = follower::position(log, &f.topic, f.partition) else { continue };
        topics.entry(&f.topic).or_default().push(
            FetchPartition::default()
                .with_partition(f.partition)
                .with_current_leader_epoch(f.leader_epoch)
                .with_fetch_offset(at.fetch_offset)
                .with_last_fetched_epoch(at.last_fetched_epoch)
                .with_log_start_offset(at.log_start)
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
    let answer = match p.error_code {
        code::NONE if p.diverging_epoch.epoch >= 0 => Answer::Diverging {
            epoch: p.diverging_epoch.epoch,
            end_offset: p.diverging_epoch.end_offset,
            high_watermark: p.high_watermark,
            log_start: p.log_start_offset,
        },
        code::NONE => Answer::Records(Fetched {
            batches: p.records.unwrap_or_default(),
            high_watermark: p.high_watermark,
            last_stable_offset: p.last_stable_offset,
            aborted: Vec::new(),
            log_start_offset: p.log_start_offset,
        }),
        code::OFFSET_OUT_OF_RANGE => {
            Answer::OutOfRange { log_start: p.log_start_offset, high_watermark: p.high_watermark }
        }
        other => {
            tracing::debug!(topic, partition = index, code = other, "the leader refused a partition's fetch");
            return false;
        }
    };
    if let Err(error) = follower::apply(log, topic, index, answer).await {
        tracing::warn!(topic, partition = index, %error, "replicating from the leader failed");
    }
    true
}
