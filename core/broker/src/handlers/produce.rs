//! Produce, and the idempotent producers' state per partition: each producer's epoch and its
//! latest batches' sequence numbers, so a retry is answered with its original offset and gaps
//! and old epochs are refused (read back from the log after a restart).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    produce_response::PartitionProduceResponse, produce_response::TopicProduceResponse, ProduceRequest, ProduceResponse,
};
use kafka_protocol::protocol::{Encodable, StrBytes};

use freshet_coord::code;
use freshet_log::{Error, Log, OffsetSpec, Result};

use futures::future::BoxFuture;

use crate::dispatch::{Handled, Request, Served};
use crate::errors::error_code;

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

/// How many of each producer's latest batches are remembered per partition, as Kafka does: a
/// retry of any of them is recognized and answered with its original offset.
const REMEMBERED_BATCHES: usize = 5;

/// A producer's epoch and its latest batches: `(first sequence, last sequence, base offset)`.
type ProducerBatches = (i16, std::collections::VecDeque<(i32, i32, i64)>);

/// The idempotent producers' latest batches in one partition, by producer id.
#[derive(Debug, Default)]
struct PartitionProducers {
    loaded: bool,
    producers: std::collections::HashMap<i64, ProducerBatches>,
}

/// Each partition's producers behind its own lock.
type PartitionLocks = std::collections::HashMap<(String, u32), Arc<tokio::sync::Mutex<PartitionProducers>>>;

impl PartitionProducers {
    fn record(&mut self, producer_id: i64, epoch: i16, first: i32, last: i32, base_offset: i64) {
        let entry = self.producers.entry(producer_id).or_insert_with(|| (epoch, Default::default()));
        if epoch != entry.0 {
            *entry = (epoch, Default::default());
        }
        entry.1.push_back((first, last, base_offset));
        if entry.1.len() > REMEMBERED_BATCHES {
            entry.1.pop_front();
        }
    }

    /// `Ok(Some(offset))`: a retry of a batch stored at `offset`; `Ok(None)`: the next batch;
    /// `Err`: refused.
    fn check(
        &self,
        producer_id: i64,
        epoch: i16,
        first: i32,
        last: i32,
    ) -> std::result::Result<Option<i64>, (i16, String)> {
        let Some((known_epoch, batches)) = self.producers.get(&producer_id) else {
            return if first == 0 {
                Ok(None)
            } else {
                Err((
                    code::OUT_OF_ORDER_SEQUENCE_NUMBER,
                    format!("producer {producer_id} starts at sequence {first}, not 0"),
                ))
            };
        };
        if epoch < *known_epoch {
            return Err((
                code::INVALID_PRODUCER_EPOCH,
                format!("producer {producer_id}: epoch {epoch} is older than {known_epoch}"),
            ));
        }
        if epoch > *known_epoch {
            return if first == 0 {
                Ok(None)
            } else {
                Err((
                    code::OUT_OF_ORDER_SEQUENCE_NUMBER,
                    format!("producer {producer_id}: a new epoch starts at {first}, not 0"),
                ))
            };
        }
        if let Some(&(_, _, offset)) = batches.iter().find(|(f, l, _)| *f == first && *l == last) {
            return Ok(Some(offset));
        }
        let expected = batches.back().map_or(0, |(_, l, _)| l.wrapping_add(1).max(0));
        if first == expected {
            return Ok(None);
        }
        let oldest = batches.front().map_or(0, |(f, _, _)| *f);
        if first < oldest && first < expected {
            return Err((
                code::DUPLICATE_SEQUENCE_NUMBER,
                format!("producer {producer_id}: sequence {first} is older than the batches kept"),
            ));
        }
        Err((
            code::OUT_OF_ORDER_SEQUENCE_NUMBER,
            format!("producer {producer_id}: sequence {first} where {expected} was expected"),
        ))
    }
}

/// The idempotent producers' state of every partition, each behind its own lock (appends of
/// idempotent batches to one partition go one at a time, so checks and appends agree).
#[derive(Debug, Clone, Default)]
pub(crate) struct Producers {
    partitions: Arc<std::sync::Mutex<PartitionLocks>>,
}

impl Producers {
    fn of(&self, topic: &str, partition: u32) -> Arc<tokio::sync::Mutex<PartitionProducers>> {
        let mut all = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        all.entry((topic.to_string(), partition)).or_default().clone()
    }
}

/// Reads a partition's idempotent batches back from the log (after a restart, or the first time
/// the partition sees one), so that retries across a restart are still recognized.
async fn load_producers(log: &Log, topic: &str, partition: u32, state: &mut PartitionProducers) -> Result<()> {
    let mut offset = log.list_offset(topic, partition, OffsetSpec::Earliest).await?.map_or(0, |(o, _)| o);
    loop {
        let fetched = log.read(topic, partition, offset, 4 << 20).await?;
        let mut next = offset;
        for batch in freshet_log::batch::Batches::new(&fetched.batches) {
            let batch = batch?;
            // Markers carry no sequence.
            if batch.producer_id() >= 0 && !batch.is_control() {
                let first = batch.base_sequence();
                state.record(
                    batch.producer_id(),
                    batch.producer_epoch(),
                    first,
                    first.wrapping_add(batch.last_offset_delta()),
                    batch.base_offset(),
                );
            }
            next = batch.next_offset();
        }
        if next <= offset || next >= fetched.high_watermark {
            break;
        }
        offset = next;
    }
    state.loaded = true;
    Ok(())
}

async fn produce(request: ProduceRequest, served: &Served) -> ProduceResponse {
    // Every partition's batches at once: their appends wait for the disk together (one group
    // commit) instead of one partition after another. Each partition gets one payload per request,
    // so the order within a partition is the client's.
    let mut layout = Vec::with_capacity(request.topic_data.len());
    let mut work = Vec::new();
    for topic in request.topic_data {
        let topic_name = topic.name.0.to_string();
        layout.push((topic.name, topic_name.clone(), topic.partition_data.len()));
        for data in topic.partition_data {
            let (index, records, name) = (data.index, data.records.unwrap_or_default(), topic_name.clone());
            work.push(async move { (index, produce_partition(&name, index, records, served).await) });
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
                    Err((code, message)) => {
                        tracing::info!(topic = %topic_name, partition = index, %message, "produce refused");
                        response
                            .with_error_code(code)
                            .with_base_offset(-1)
                            .with_error_message(Some(StrBytes::from_string(message)))
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
) -> Vec<(String, Vec<crate::legacy::PartitionResult>)> {
    let mut layout = Vec::with_capacity(request.topics.len());
    let mut work = Vec::new();
    for (topic, partitions) in request.topics {
        layout.push((topic.clone(), partitions.len()));
        for (index, batch) in partitions {
            let name = topic.clone();
            work.push(async move {
                let result = match batch {
                    Ok(batch) => produce_partition(&name, index, batch, served).await,
                    Err(reason) => Err((code::CORRUPT_MESSAGE, reason)),
                };
                if let Err((_, message)) = &result {
                    tracing::info!(topic = %name, partition = index, %message, "produce refused");
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
                    Err((error_code, _)) => {
                        crate::legacy::PartitionResult { partition, error_code, base_offset: -1, log_append_time: -1 }
                    }
                })
                .collect();
            (topic, partitions)
        })
        .collect()
}

/// Appends one partition's batches: `(base offset, log start offset, append time)` of the first.
/// Batches of an idempotent producer are checked against its sequence first: a retry is answered
/// with its original offset and not stored again; a gap or an old epoch is refused.
pub(crate) async fn produce_partition(
    topic: &str,
    index: i32,
    records: Bytes,
    served: &Served,
) -> std::result::Result<(i64, i64, Option<i64>), (i16, String)> {
    let batches = split_batches(records).map_err(|e| (code::CORRUPT_MESSAGE, e))?;
    let partition =
        u32::try_from(index).map_err(|_| (code::UNKNOWN_TOPIC_OR_PARTITION, "a negative partition".to_string()))?;
    let idempotent =
        batches.iter().any(|b| b.len() >= 61 && i64::from_be_bytes(b[43..51].try_into().expect("8 bytes")) >= 0);
    let lock = idempotent.then(|| served.producers.of(topic, partition));
    let mut state = match &lock {
        Some(lock) => Some(lock.lock().await),
        None => None,
    };
    if let Some(state) = state.as_mut() {
        if !state.loaded {
            load_producers(&served.log, topic, partition, state).await.map_err(|e| (error_code(&e), e.to_string()))?;
        }
    }
    let log_error = |e: Error| (error_code(&e), e.to_string());
    let mut first: Option<(i64, i64, Option<i64>)> = None;
    for batch in batches {
        let view = freshet_log::batch::Batches::new(&batch).next().transpose().map_err(log_error)?;
        let producer = view.as_ref().filter(|v| v.producer_id() >= 0).map(|v| {
            let first = v.base_sequence();
            (v.producer_id(), v.producer_epoch(), first, first.wrapping_add(v.last_offset_delta()))
        });
        if let (Some(state), Some((pid, epoch, seq_first, seq_last))) = (state.as_mut(), producer) {
            if let Some(offset) = state.check(pid, epoch, seq_first, seq_last)? {
                tracing::debug!(%topic, partition, producer = pid, sequence = seq_first, "a retried batch is answered with its offset");
                first.get_or_insert((offset, -1, None));
                continue;
            }
        }
        let info = served.log.append(topic, partition, BytesMut::from(&batch[..])).await.map_err(log_error)?;
        if let (Some(state), Some((pid, epoch, seq_first, seq_last))) = (state.as_mut(), producer) {
            state.record(pid, epoch, seq_first, seq_last, info.base_offset);
        }
        first.get_or_insert((info.base_offset, info.log_start_offset, info.log_append_time));
    }
    first.ok_or((code::CORRUPT_MESSAGE, "no record batch".to_string()))
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
            let results = produce_legacy(request, r.served).await;
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
        let response = produce(request, r.served).await;
        if acks == 0 {
            return Ok(None);
        }
        r.respond(&response)
    })
}
