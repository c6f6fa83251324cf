//! The [`Producer`] and [`TransactionalProducer`] over librdkafka's producer.

use super::*;

/// The [`Producer`] over librdkafka.
pub struct RemoteProducer {
    pub(super) inner: ThreadedProducer<Deliveries>,
}

impl std::fmt::Debug for RemoteProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteProducer").finish_non_exhaustive()
    }
}

/// The producer's context: librdkafka's delivery reports, each filling its record's slot of the
/// `send` call it belongs to. One call waits once for all its records, rather than a future (and
/// a channel) per record, which cost a third of a passthrough's CPU through a broker.
pub(super) struct Deliveries;

impl ClientContext for Deliveries {}

/// One record's place in a `send` call.
pub(super) struct Slot {
    call: Arc<Call>,
    index: usize,
}

/// A `send` call's records in flight: each record's outcome, how many are still out, and the
/// wake-up for the caller once none are.
struct Call {
    outcomes: Vec<std::sync::OnceLock<Outcome>>,
    remaining: std::sync::atomic::AtomicUsize,
    done: tokio::sync::Notify,
}

type Outcome = std::result::Result<(i32, i64, Option<i64>), KafkaError>;

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<Slot>;

    fn delivery(&self, result: &DeliveryResult<'_>, slot: Box<Slot>) {
        let outcome = match result {
            Ok(m) => Ok((m.partition(), m.offset(), m.timestamp().to_millis())),
            Err((e, _)) => Err(e.clone()),
        };
        let _ = slot.call.outcomes[slot.index].set(outcome);
        if slot.call.remaining.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
            slot.call.done.notify_one();
        }
    }
}

#[async_trait]
impl Producer for RemoteProducer {
    async fn send(&self, records: Vec<ProducerRecord>) -> Result<Vec<RecordMetadata>> {
        let call = Arc::new(Call {
            outcomes: (0..records.len()).map(|_| std::sync::OnceLock::new()).collect(),
            remaining: std::sync::atomic::AtomicUsize::new(records.len()),
            done: tokio::sync::Notify::new(),
        });
        for (index, record) in records.iter().enumerate() {
            let mut attempt = 0u32;
            let mut slot = Box::new(Slot { call: call.clone(), index });
            loop {
                let mut rd = BaseRecord::<[u8], [u8], Box<Slot>>::with_opaque_to(&record.topic, slot);
                if let Some(p) = record.partition {
                    rd = rd.partition(partition_i32(p)?);
                }
                if let Some(k) = &record.key {
                    rd = rd.key(&k[..]);
                }
                if let Some(v) = &record.value {
                    rd = rd.payload(&v[..]);
                }
                if let Some(ts) = record.timestamp {
                    rd = rd.timestamp(ts);
                }
                if !record.headers.is_empty() {
                    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
                    for h in &record.headers {
                        headers = headers.insert(RdHeader { key: &h.key, value: h.value.as_deref() });
                    }
                    rd = rd.headers(headers);
                }
                match self.inner.send(rd) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), rd)) => {
                        // Back pressure: librdkafka's queue is full until deliveries drain it.
                        slot = rd.delivery_opaque;
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(u64::from(attempt.min(20)))).await;
                    }
                    Err((e, _)) => {
                        // The records not sent will never be delivered: stop counting them.
                        return Err(client_error(&format!("sending to {}", record.topic), e));
                    }
                }
            }
        }
        while call.remaining.load(std::sync::atomic::Ordering::Acquire) > 0 {
            let notified = call.done.notified();
            if call.remaining.load(std::sync::atomic::Ordering::Acquire) == 0 {
                break;
            }
            notified.await;
        }
        let mut out = Vec::with_capacity(records.len());
        for (record, outcome) in records.iter().zip(&call.outcomes) {
            match outcome.get() {
                Some(Ok((partition, offset, timestamp))) => out.push(RecordMetadata {
                    topic: record.topic.clone(),
                    partition: u32::try_from(*partition).unwrap_or(0),
                    offset: *offset,
                    timestamp: timestamp.unwrap_or(record.timestamp.unwrap_or(-1)),
                }),
                Some(Err(e)) => return Err(topic_send_error(&record.topic, e.clone())),
                None => return Err(Error::Closed),
            }
        }
        Ok(out)
    }
}

/// How long sending offsets to a transaction may take (Kafka Streams gives it `max.block.ms`;
/// shorter here, as a stuck call holds the stream thread).
const SEND_OFFSETS_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn topic_send_error(topic: &str, e: KafkaError) -> Error {
    match e.rdkafka_error_code() {
        Some(code) => topic_error("sending to", topic, code, None),
        None => Error::Remote(format!("sending to {topic:?}: {e}")),
    }
}

#[async_trait]
impl TransactionalProducer for RemoteProducer {
    fn begin(&self) -> Result<()> {
        self.inner.begin_transaction().map_err(|e| txn_error("beginning a transaction", e))
    }

    async fn send_offsets(
        &self,
        offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
        group: &GroupMetadata,
    ) -> Result<()> {
        let metadata = group
            .native
            .clone()
            .and_then(|n| n.downcast::<rdkafka::consumer::ConsumerGroupMetadata>().ok())
            .ok_or_else(|| {
                Error::Transaction(format!(
                    "group {:?}: offsets sent with a cluster's transaction need that cluster's consumer's group metadata",
                    group.group_id
                ))
            })?;
        let mut tpl = TopicPartitionList::with_capacity(offsets.len());
        for (tp, o) in &offsets {
            tpl.add_partition_offset(&tp.topic, partition_i32(tp.partition)?, Offset::Offset(o.offset))
                .map_err(|e| client_error("listing offsets", e))?;
        }
        // librdkafka does not hold this call to its timeout while it looks for a group
        // coordinator that went away (librdkafka issues 5456 and 5511): it may wait forever. It
        // runs on a thread of its own, given up on a little after its timeout; the producer is
        // then unusable (its transaction API stays busy) and the caller replaces it, which
        // fences it. The thread stays blocked: a runtime's blocking pool would wait for it.
        let inner = self.inner.clone();
        let (done, answer) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("send-offsets".into())
            .spawn(move || {
                let _ = done.send(inner.send_offsets_to_transaction(&tpl, &metadata, SEND_OFFSETS_TIMEOUT));
            })
            .map_err(|e| Error::Internal(format!("starting a thread to send offsets: {e}")))?;
        match tokio::time::timeout(SEND_OFFSETS_TIMEOUT + Duration::from_secs(5), answer).await {
            Ok(Ok(result)) => result.map_err(|e| txn_error("sending offsets to the transaction", e)),
            Ok(Err(_)) => Err(Error::Internal("the thread sending offsets ended without an answer".into())),
            Err(_) => Err(Error::Timeout(format!(
                "sending offsets to the transaction: no answer in {} s (a group coordinator that went away)",
                SEND_OFFSETS_TIMEOUT.as_secs() + 5
            ))),
        }
    }

    async fn commit(&self) -> Result<()> {
        let inner = self.inner.clone();
        blocking(move || inner.commit_transaction(TXN_CALL_TIMEOUT)).await?.map_err(|e| txn_error("committing", e))
    }

    async fn abort(&self) -> Result<()> {
        let inner = self.inner.clone();
        blocking(move || inner.abort_transaction(TXN_CALL_TIMEOUT)).await?.map_err(|e| txn_error("aborting", e))
    }
}
