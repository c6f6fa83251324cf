//! The [`Producer`] and [`TransactionalProducer`] over librdkafka's producer.

use super::*;

/// The [`Producer`] over librdkafka.
pub struct RemoteProducer {
    pub(super) inner: FutureProducer,
}

impl std::fmt::Debug for RemoteProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteProducer").finish_non_exhaustive()
    }
}

#[async_trait]
impl Producer for RemoteProducer {
    async fn send(&self, records: Vec<ProducerRecord>) -> Result<Vec<RecordMetadata>> {
        let mut pending = std::collections::VecDeque::with_capacity(records.len());
        // Deliveries already awaited (oldest first) because the local queue was full.
        let mut delivered = Vec::with_capacity(records.len());
        for record in &records {
            let mut attempt = 0u32;
            loop {
                let mut rd = FutureRecord::<[u8], [u8]>::to(&record.topic);
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
                match self.inner.send_result(rd) {
                    Ok(future) => {
                        pending.push_back(future);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        // Back pressure: wait for the oldest delivery, or a moment if none is ours.
                        if let Some(oldest) = pending.pop_front() {
                            delivered.push(oldest.await);
                        } else {
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(u64::from(attempt.min(50)))).await;
                        }
                    }
                    Err((e, _)) => return Err(client_error(&format!("sending to {}", record.topic), e)),
                }
            }
        }
        delivered.extend(futures::future::join_all(pending).await);
        let mut out = Vec::with_capacity(records.len());
        for (record, result) in records.iter().zip(delivered) {
            match result {
                Ok(Ok(delivery)) => out.push(RecordMetadata {
                    topic: record.topic.clone(),
                    partition: u32::try_from(delivery.partition).unwrap_or(0),
                    offset: delivery.offset,
                    timestamp: delivery.timestamp.to_millis().unwrap_or(record.timestamp.unwrap_or(-1)),
                }),
                Ok(Err((e, _))) => return Err(topic_send_error(&record.topic, e)),
                Err(_) => return Err(Error::Closed),
            }
        }
        Ok(out)
    }
}

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
        let inner = self.inner.clone();
        blocking(move || inner.send_offsets_to_transaction(&tpl, &metadata, TXN_CALL_TIMEOUT))
            .await?
            .map_err(|e| txn_error("sending offsets to the transaction", e))
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
