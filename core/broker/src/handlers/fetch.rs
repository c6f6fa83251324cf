//! Fetch, ListOffsets and OffsetForLeaderEpoch: reads of the log, batches served as stored.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::ProducerId;
use kafka_protocol::messages::{
    fetch_response::EpochEndOffset, fetch_response::FetchableTopicResponse, fetch_response::PartitionData,
    list_offsets_response::ListOffsetsPartitionResponse, list_offsets_response::ListOffsetsTopicResponse, BrokerId,
    FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
};

use freshet_cluster::replication::follower::{self, Answer, FetchPosition};
use freshet_coord::code;
use freshet_log::{Error, Isolation, OffsetSpec, ReadLimit};

use futures::future::BoxFuture;

use crate::acl::op;
use crate::dispatch::{Access, Handled, Request, Served};
use crate::errors::error_code;

pub(crate) async fn fetch(request: FetchRequest, served: &Served, access: &Access<'_>) -> FetchResponse {
    let isolation = if request.isolation_level == 1 { Isolation::ReadCommitted } else { Isolation::ReadUncommitted };
    let deadline = tokio::time::Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
    // A follower's fetch (another broker of the cluster replicating): it reads up to the log
    // end, tells the leader how far the follower is, and waits for any write, not only for
    // what consumers may see. It needs CLUSTER_ACTION, as Kafka's.
    let replica = match &served.cluster {
        Some(cluster) if request.replica_id.0 >= 0 => cluster.replicas.clone().map(|r| (request.replica_id.0, r)),
        _ => None,
    };
    let replica_allowed = replica.is_none() || access.cluster(op::CLUSTER_ACTION);
    let mut data = if replica.is_some() { served.log.watch_writes() } else { served.log.watch_data() };
    loop {
        data.borrow_and_update();
        let mut total = 0u64;
        let mut budget = u64::try_from(request.max_bytes).unwrap_or(0);
        let mut topics = Vec::with_capacity(request.topics.len());
        for topic in &request.topics {
            let topic_name = topic.topic.0.to_string();
            let readable = if replica.is_some() { replica_allowed } else { access.topic(op::READ, &topic_name) };
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for p in &topic.partitions {
                let mut out = PartitionData::default()
                    .with_partition_index(p.partition)
                    .with_aborted_transactions(Some(Vec::new()));
                out.preferred_read_replica = BrokerId(-1);
                if !readable {
                    let refusal = if replica.is_some() {
                        code::CLUSTER_AUTHORIZATION_FAILED
                    } else {
                        code::TOPIC_AUTHORIZATION_FAILED
                    };
                    partitions
                        .push(out.with_error_code(refusal).with_high_watermark(-1).with_records(Some(Bytes::new())));
                    continue;
                }
                if let Some(cluster) = &served.cluster {
                    if let Err(n) = cluster.check_leader(&topic_name, p.partition, p.current_leader_epoch) {
                        let mut out =
                            out.with_error_code(n.code).with_high_watermark(-1).with_records(Some(Bytes::new()));
                        if let Some((leader, epoch)) = n.leader {
                            out.current_leader = kafka_protocol::messages::fetch_response::LeaderIdAndEpoch::default()
                                .with_leader_id(BrokerId(leader))
                                .with_leader_epoch(epoch);
                        }
                        partitions.push(out);
                        continue;
                    }
                }
                // Within the partition's and the response's limits, except that the first partition
                // with data returns its first batch even when larger, so a large batch is never
                // stuck (as Kafka does since Fetch v3).
                let max = u64::try_from(p.partition_max_bytes).unwrap_or(0).min(budget);
                let limit = if total == 0 { ReadLimit::AtLeastOne(max) } else { ReadLimit::Strict(max) };
                let read = match (u32::try_from(p.partition), &replica) {
                    (Ok(partition), Some((follower, replicas))) => {
                        let at = FetchPosition {
                            fetch_offset: p.fetch_offset,
                            last_fetched_epoch: p.last_fetched_epoch,
                            log_start: p.log_start_offset,
                        };
                        let noted = || replicas.on_follower_fetch(&topic_name, p.partition, *follower, p.fetch_offset);
                        match follower::serve(&served.log, &topic_name, partition, at, limit, noted).await {
                            Ok(Answer::Records(fetched)) => Ok(fetched),
                            Ok(Answer::Diverging { epoch, end_offset, high_watermark, log_start }) => {
                                out.diverging_epoch =
                                    EpochEndOffset::default().with_epoch(epoch).with_end_offset(end_offset);
                                partitions.push(
                                    out.with_high_watermark(high_watermark)
                                        .with_last_stable_offset(
                                            served
                                                .log
                                                .last_stable_offset(&topic_name, partition)
                                                .unwrap_or(high_watermark),
                                        )
                                        .with_log_start_offset(log_start)
                                        .with_records(Some(Bytes::new())),
                                );
                                continue;
                            }
                            // A follower out of range learns the leader's log start and high
                            // watermark, to start again there or cut back.
                            Ok(Answer::OutOfRange { log_start, high_watermark }) => {
                                partitions.push(
                                    out.with_error_code(code::OFFSET_OUT_OF_RANGE)
                                        .with_high_watermark(high_watermark)
                                        .with_log_start_offset(log_start)
                                        .with_records(Some(Bytes::new())),
                                );
                                continue;
                            }
                            Err(e) => Err(e),
                        }
                    }
                    (Ok(partition), None) => {
                        served.log.read_isolated(&topic_name, partition, p.fetch_offset, limit, isolation).await
                    }
                    (Err(_), _) => {
                        Err(Error::UnknownPartition { topic: topic_name.clone(), n_partitions: 0, partition: 0 })
                    }
                };
                match read {
                    Ok(fetched) => {
                        total += fetched.batches.len() as u64;
                        budget = budget.saturating_sub(fetched.batches.len() as u64);
                        let aborted = fetched
                            .aborted
                            .iter()
                            .map(|a| {
                                kafka_protocol::messages::fetch_response::AbortedTransaction::default()
                                    .with_producer_id(ProducerId(a.producer_id))
                                    .with_first_offset(a.first_offset)
                            })
                            .collect();
                        out = out
                            .with_high_watermark(fetched.high_watermark)
                            .with_last_stable_offset(fetched.last_stable_offset)
                            .with_aborted_transactions(Some(aborted))
                            .with_log_start_offset(fetched.log_start_offset)
                            .with_records(Some(fetched.batches));
                    }
                    Err(e) => {
                        out = out
                            .with_error_code(error_code(&e))
                            .with_high_watermark(-1)
                            .with_log_start_offset(-1)
                            .with_records(Some(Bytes::new()));
                    }
                }
                partitions.push(out);
            }
            topics.push(FetchableTopicResponse::default().with_topic(topic.topic.clone()).with_partitions(partitions));
        }
        let enough = total >= u64::try_from(request.min_bytes).unwrap_or(1).max(1);
        if enough || tokio::time::Instant::now() >= deadline {
            return FetchResponse::default().with_responses(topics);
        }
        match tokio::time::timeout_at(deadline, data.changed()).await {
            Ok(Ok(())) => continue,
            _ => return FetchResponse::default().with_responses(topics),
        }
    }
}

/// Whether a partition this broker leads has its high watermark below the start of its leader
/// epoch: it took over, and its followers have not yet told it how far they are.
fn high_watermark_lags(served: &Served, topic: &str, partition: i32) -> bool {
    let Ok(p) = served.log.partition(topic, partition as u32) else { return false };
    p.offsets().1 < p.latest_epoch_start()
}

async fn list_offsets(request: ListOffsetsRequest, served: &Served, access: &Access<'_>) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let topic_name = topic.name.0.to_string();
        let describable = access.topic(op::DESCRIBE, &topic_name);
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            if !describable {
                partitions.push(
                    ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code::TOPIC_AUTHORIZATION_FAILED)
                        .with_offset(-1)
                        .with_timestamp(-1),
                );
                continue;
            }
            let spec = match p.timestamp {
                -2 => OffsetSpec::Earliest,
                -1 => OffsetSpec::Latest,
                -3 => OffsetSpec::MaxTimestamp,
                t => OffsetSpec::Timestamp(t),
            };
            let out = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
            if let Some(cluster) = &served.cluster {
                if let Err(n) = cluster.check_leader(&topic_name, p.partition_index, p.current_leader_epoch) {
                    partitions.push(out.with_error_code(n.code).with_offset(-1).with_timestamp(-1));
                    continue;
                }
                // As Kafka's leaders (KIP-207): until a new leader's high watermark reaches the
                // start of its epoch, the latest offset it would give a client may be below one
                // the previous leader gave; the client asks again shortly.
                if request.replica_id.0 < 0
                    && spec != OffsetSpec::Earliest
                    && high_watermark_lags(served, &topic_name, p.partition_index)
                {
                    partitions.push(out.with_error_code(code::OFFSET_NOT_AVAILABLE).with_offset(-1).with_timestamp(-1));
                    continue;
                }
            }
            let found = match u32::try_from(p.partition_index) {
                // read_committed consumers end at the last stable offset.
                Ok(partition) if spec == OffsetSpec::Latest && request.isolation_level == 1 => {
                    served.log.last_stable_offset(&topic_name, partition).map(|o| Some((o, -1)))
                }
                Ok(partition) => served.log.list_offset(&topic_name, partition, spec).await,
                Err(_) => Err(Error::UnknownTopic(topic_name.clone())),
            };
            partitions.push(match found {
                Ok(Some((offset, timestamp))) => out.with_offset(offset).with_timestamp(timestamp),
                Ok(None) => out.with_offset(-1).with_timestamp(-1),
                Err(e) => out.with_error_code(error_code(&e)).with_offset(-1).with_timestamp(-1),
            });
        }
        topics.push(ListOffsetsTopicResponse::default().with_name(topic.name).with_partitions(partitions));
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// OffsetForLeaderEpoch: where each asked epoch ended in this leader's log, by Kafka's rule
/// (the current epoch ends at the log end; an older one where the next began, with the largest
/// epoch at or below the one asked). A consumer asks after a leader change, to learn whether
/// the records it read before are still the partition's; a follower, to find where its log
/// parted from its leader's. Consumers need DESCRIBE on the topic, followers CLUSTER_ACTION.
async fn offsets_for_leader_epoch(
    request: OffsetForLeaderEpochRequest,
    served: &Served,
    access: &Access<'_>,
) -> OffsetForLeaderEpochResponse {
    use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
    let replica = request.replica_id.0 >= 0;
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.topic.0.to_string();
        let allowed = if replica { access.cluster(op::CLUSTER_ACTION) } else { access.topic(op::DESCRIBE, &name) };
        let partitions = topic
            .partitions
            .into_iter()
            .map(|p| {
                let out =
                    EpochEndOffset::default().with_partition(p.partition).with_leader_epoch(-1).with_end_offset(-1);
                if !allowed {
                    let refusal =
                        if replica { code::CLUSTER_AUTHORIZATION_FAILED } else { code::TOPIC_AUTHORIZATION_FAILED };
                    return out.with_error_code(refusal);
                }
                if let Some(cluster) = &served.cluster {
                    if let Err(n) = cluster.check_leader(&name, p.partition, p.current_leader_epoch) {
                        return out.with_error_code(n.code);
                    }
                }
                match u32::try_from(p.partition).map(|i| served.log.partition(&name, i)) {
                    Ok(Ok(partition)) => {
                        let (epoch, end) = partition.end_offset_for_epoch(p.leader_epoch);
                        out.with_leader_epoch(epoch).with_end_offset(end)
                    }
                    Ok(Err(e)) => out.with_error_code(error_code(&e)),
                    Err(_) => out.with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION),
                }
            })
            .collect();
        topics.push(OffsetForLeaderTopicResult::default().with_topic(topic.topic).with_partitions(partitions));
    }
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

/// OffsetForLeaderEpoch.
pub(crate) fn serve_offsets_for_leader_epoch(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request = r.decode()?;
        r.respond(&offsets_for_leader_epoch(request, r.served, &r.access()).await)
    })
}

/// Fetch (long-poll with max wait and min bytes; `read_committed` stops at the last stable
/// offset).
pub(crate) fn serve_fetch(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request = r.decode()?;
        r.respond(&fetch(request, r.served, &r.access()).await)
    })
}

/// ListOffsets.
pub(crate) fn serve_list_offsets(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request = r.decode()?;
        r.respond(&list_offsets(request, r.served, &r.access()).await)
    })
}
