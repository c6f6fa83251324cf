//! Produce: record batches (or old message sets, converted) appended to the log, which keeps the
//! idempotent producers' state.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::{Encodable, StrBytes};

use freshet_coord::code;
use freshet_log::{AppendInfo, Error};

use futures::future::BoxFuture;

use crate::acl::op;
use crate::dispatch::{Access, Handled, Request, Served};
use crate::errors::error_code;

/// Why a partition's batches were refused: Kafka's error code, a message, and (for
/// INVALID_RECORD) the index in the batch of each record refused, with why.
#[derive(Debug, Clone)]
pub(crate) struct Refused {
    pub(crate) code: i16,
    pub(crate) message: String,
    pub(crate) records: Vec<(i32, String)>,
}

impl Refused {
    fn new(code: i16, message: impl Into<String>) -> Self {
        Refused { code, message: message.into(), records: Vec::new() }
    }
}

impl From<Error> for Refused {
    fn from(e: Error) -> Self {
        let code = error_code(&e);
        match e {
            Error::InvalidRecords { message, records } => Refused { code, message, records },
            e => Refused::new(code, e.to_string()),
        }
    }
}

/// Splits a produce payload into its record batches (each: base offset, length, then `length`
/// bytes).
pub(crate) fn split_batches(mut records: Bytes) -> std::result::Result<Vec<Bytes>, String> {
    let mut batches = Vec::new();
    while !records.is_empty() {
        if records.len() < 12 {
            return Err(format!("{} trailing bytes, shorter than a batch header", records.len()));
        }
        let length = i32::from_be_bytes([records[8], records[9], records[10], records[11]]);
        let total = 12usize.saturating_add(usize::try_from(length).map_err(|_| format!("a batch length of {length}"))?);
        if total > records.len() {
            return Err(format!("a batch of {total} bytes in {} bytes of records", records.len()));
        }
        batches.push(records.split_to(total));
    }
    Ok(batches)
}

/// Why the sender may not produce to `topic`, if it may not: a transactional producer needs
/// WRITE on its transactional id, and every producer WRITE on the topic.
fn denied(access: &Access<'_>, transactional_id: Option<&str>, topic: &str) -> Option<Refused> {
    if let Some(id) = transactional_id {
        if !access.transactional_id(op::WRITE, id) {
            let message = format!("WRITE on transactional id {id:?} is not allowed");
            return Some(Refused::new(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED, message));
        }
    }
    (!access.topic(op::WRITE, topic))
        .then(|| Refused::new(code::TOPIC_AUTHORIZATION_FAILED, format!("WRITE on topic {topic:?} is not allowed")))
}

async fn produce(request: ProduceRequest, version: i16, served: &Served, access: &Access<'_>) -> ProduceResponse {
    // Every partition's batches at once: their appends wait for the disk together (one group
    // commit) instead of one partition after another. Each partition gets one payload per request,
    // so the order within a partition is the client's.
    let mut layout = Vec::with_capacity(request.topic_data.len());
    let mut work = Vec::new();
    let transactional_id = request.transactional_id.as_ref().map(|id| id.0.to_string());
    let acks = Acks::of(request.acks, request.timeout_ms);
    for topic in request.topic_data {
        let topic_name = topic.name.0.to_string();
        layout.push((topic.name, topic_name.clone(), topic.partition_data.len()));
        let denied = denied(access, transactional_id.as_deref(), &topic_name);
        for data in topic.partition_data {
            let (index, records, name) = (data.index, data.records.unwrap_or_default(), topic_name.clone());
            let denied = denied.clone();
            work.push(async move {
                match denied {
                    Some(refused) => (index, Err(refused)),
                    None => (index, produce_partition(&name, index, records, acks, served).await),
                }
            });
        }
    }
    let mut results = futures::future::join_all(work).await.into_iter();
    let mut responses = Vec::with_capacity(layout.len());
    for (name, topic_name, n) in layout {
        let partitions = results
            .by_ref()
            .take(n)
            .map(|(index, result)| {
                let response = PartitionProduceResponse::default().with_index(index).with_log_append_time_ms(-1);
                match result {
                    Ok((base, log_start, append_time)) => response
                        .with_base_offset(base)
                        .with_log_start_offset(log_start)
                        .with_log_append_time_ms(append_time.unwrap_or(-1)),
                    Err(refused) => {
                        tracing::info!(topic = %topic_name, partition = index, message = %refused.message, "produce refused");
                        // Record errors go only where the version has them (v8+).
                        let record_errors = if version >= 8 {
                            refused
                                .records
                                .into_iter()
                                .map(|(batch_index, why)| {
                                    BatchIndexAndErrorMessage::default()
                                        .with_batch_index(batch_index)
                                        .with_batch_index_error_message(Some(StrBytes::from_string(why)))
                                })
                                .collect()
                        } else {
                            Vec::new()
                        };
                        response
                            .with_error_code(refused.code)
                            .with_base_offset(-1)
                            .with_record_errors(record_errors)
                            .with_error_message(Some(StrBytes::from_string(refused.message)))
                    }
                }
            })
            .collect();
        responses.push(TopicProduceResponse::default().with_name(name).with_partition_responses(partitions));
    }
    ProduceResponse::default().with_responses(responses)
}

/// Produce v0-2: each partition's message set was converted to a record batch (or refused); the
/// batches are appended as v3+ batches are, every partition at once.
async fn produce_legacy(
    request: crate::legacy::LegacyProduce,
    served: &Served,
    access: &Access<'_>,
) -> Vec<(String, Vec<crate::legacy::PartitionResult>)> {
    let mut layout = Vec::with_capacity(request.topics.len());
    let mut work = Vec::new();
    let acks = Acks::of(request.acks, request.timeout_ms);
    for (topic, partitions) in request.topics {
        layout.push((topic.clone(), partitions.len()));
        let denied = denied(access, None, &topic);
        for (index, batch) in partitions {
            let name = topic.clone();
            let denied = denied.clone();
            work.push(async move {
                let result = match (denied, batch) {
                    (Some(refused), _) => Err(refused),
                    (None, Ok(batch)) => produce_partition(&name, index, batch, acks, served).await,
                    (None, Err(reason)) => Err(Refused::new(code::CORRUPT_MESSAGE, reason)),
                };
                if let Err(refused) = &result {
                    tracing::info!(topic = %name, partition = index, message = %refused.message, "produce refused");
                }
                (index, result)
            });
        }
    }
    let mut results = futures::future::join_all(work).await.into_iter();
    layout
        .into_iter()
        .map(|(topic, n)| {
            let partitions = results
                .by_ref()
                .take(n)
                .map(|(partition, result)| match result {
                    Ok((base_offset, _, append_time)) => crate::legacy::PartitionResult {
                        partition,
                        error_code: code::NONE,
                        base_offset,
                        log_append_time: append_time.unwrap_or(-1),
                    },
                    Err(refused) => crate::legacy::PartitionResult {
                        partition,
                        error_code: refused.code,
                        base_offset: -1,
                        log_append_time: -1,
                    },
                })
                .collect();
            (topic, partitions)
        })
        .collect()
}

/// What a produce request asks of the replicas: `acks` (-1: every in-sync replica, 1: the
/// leader, 0: no answer) and how long it may wait for them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Acks {
    pub(crate) acks: i16,
    pub(crate) timeout: std::time::Duration,
}

impl Acks {
    fn of(acks: i16, timeout_ms: i32) -> Self {
        Acks { acks, timeout: std::time::Duration::from_millis(timeout_ms.max(0) as u64) }
    }
}

/// Appends one partition's batches: `(base offset, log start offset, append time)` of the first.
/// The log checks an idempotent producer's batches against its sequences: a retry is answered
/// with its original offsets and not stored again; a gap or an old epoch is refused. In a
/// cluster, `acks=all` is refused up front when fewer replicas than `min.insync.replicas` are
/// in sync, and answered once every in-sync replica holds the batches.
pub(crate) async fn produce_partition(
    topic: &str,
    index: i32,
    records: Bytes,
    acks: Acks,
    served: &Served,
) -> std::result::Result<(i64, i64, Option<i64>), Refused> {
    let replicated = match &served.cluster {
        Some(cluster) => {
            // Only the leader appends; a client with old metadata refreshes and goes there.
            cluster.check_leader(topic, index, -1).map_err(|n| {
                let leader = n.leader.map_or_else(|| "no leader".to_owned(), |(l, _)| format!("broker {l} leads it"));
                Refused::new(
                    n.code,
                    format!("broker {} does not lead {topic}-{index}: {leader}", cluster.config.node_id),
                )
            })?;
            cluster.replicas.clone().filter(|_| acks.acks == -1).map(|r| (cluster, r))
        }
        None => None,
    };
    if let Some((cluster, replicas)) = &replicated {
        replicas.check_min_isr(&cluster.image(), topic, index).map_err(|(code, why)| Refused::new(code, why))?;
    }
    let batches = split_batches(records).map_err(|e| Refused::new(code::CORRUPT_MESSAGE, e))?;
    let partition =
        u32::try_from(index).map_err(|_| Refused::new(code::UNKNOWN_TOPIC_OR_PARTITION, "a negative partition"))?;
    let mut first: Option<AppendInfo> = None;
    let mut last: Option<AppendInfo> = None;
    for batch in batches {
        let info = served.log.append(topic, partition, BytesMut::from(&batch[..])).await.map_err(Refused::from)?;
        // The batches of one request are answered together: all in the leadership of the first.
        if first.as_ref().is_some_and(|f| f.leader_epoch != info.leader_epoch) {
            return Err(Refused::new(
                code::NOT_LEADER_OR_FOLLOWER,
                format!("the leadership of {topic}-{index} changed while its batches were appended"),
            ));
        }
        first.get_or_insert(info);
        last = Some(info);
    }
    let (Some(first), Some(last)) = (first, last) else {
        return Err(Refused::new(code::CORRUPT_MESSAGE, "no record batch"));
    };
    if let Some((cluster, replicas)) = &replicated {
        replicas
            .wait_replicated(cluster, topic, index, &last, acks.timeout)
            .await
            .map_err(|(code, why)| Refused::new(code, why))?;
    }
    Ok((first.base_offset, first.log_start_offset, first.log_append_time))
}

/// Produce: from v3 record batches; v0 to v2 carry message sets of formats v0 and v1, which
/// `legacy` converts. acks=0 is answered with nothing.
pub(crate) fn serve(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        if r.version < 3 {
            let version = r.version;
            let request = crate::legacy::decode_produce(std::mem::take(&mut r.body), r.served.log.clock().now_ms())
                .map_err(|e| format!("a malformed Produce v{version} request: {e}"))?;
            let acks = request.acks;
            let results = produce_legacy(request, r.served, &r.access()).await;
            if acks == 0 {
                return Ok(None);
            }
            let (header, header_version) = r.response_header();
            let mut out = BytesMut::new();
            header.encode(&mut out, header_version).map_err(|e| format!("encoding a response header: {e}"))?;
            crate::legacy::encode_produce_response(&mut out, version, &results);
            return Ok(Some(out.freeze()));
        }
        let request: ProduceRequest = r.decode()?;
        let acks = request.acks;
        let response = produce(request, r.version, r.served, &r.access()).await;
        if acks == 0 {
            return Ok(None);
        }
        r.respond(&response)
    })
}
