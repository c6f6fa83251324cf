//! The remote substrate: the substrate traits over librdkafka, for a Freshet broker or any
//! Kafka-protocol cluster.
//!
//! * [`RemoteProducer`] sends through librdkafka's producer with idempotence on and `acks=all`, and
//!   the murmur2 partitioner, so a key lands in the partition the embedded log (and the Java
//!   client) would choose. A full local queue makes a send wait for earlier deliveries.
//! * [`RemoteConsumer`] reads assigned partitions from positions it keeps itself, so `position`,
//!   `seek` and `commit` behave as the embedded consumer's do; or, after `subscribe`, takes part in
//!   its consumer group (the cluster's coordinator, the range assignor) and follows the
//!   assignment the group gives it. librdkafka hands records over one at a time; a poll copies
//!   them into one record batch per run of consecutive offsets, so callers see the same
//!   [`ConsumedBatches`] as from the embedded log.
//! * [`RemoteAdmin`] uses the admin API (topics, configs, partitions, records) and a group-less
//!   consumer for offsets and committed offsets.
//!
//! librdkafka's blocking calls (polls, metadata, offset lookups, synchronous commits) run on
//! tokio's blocking pool, never on an async worker.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic as RdNewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as RdHeader, Headers as _, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};

use crate::substrate::{
    no_group, Admin, AutoOffsetReset, ConsumedBatches, Consumer, ConsumerConfig, GroupChange, GroupMember,
    GroupMembers, GroupMetadata, NewTopic, OffsetAndMetadata, Producer, ProducerRecord, RecordMetadata, Substrate,
    TopicPartition, TransactionalProducer,
};
use freshet_log::batch::{assign_in_place, BatchBuilder, Header};
use freshet_log::config::ConfigEntry;
use freshet_log::{Error, Result};
use freshet_log::{Isolation, OffsetSpec, PartitionDescription, TopicDescription};

/// How long a metadata or offset request to the cluster may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Records one poll hands over at most (besides the byte budget).
const MAX_POLL_RECORDS: usize = 50_000;

/// A Kafka-protocol cluster reached through librdkafka.
///
/// Cheap to clone; clones share the producer and the admin client that [`Substrate`] hands out
/// (each a librdkafka client with its own threads and connections, made at first use).
#[derive(Debug, Clone)]
pub struct Remote {
    bootstrap: String,
    properties: BTreeMap<String, String>,
    shared: Arc<SharedClients>,
}

/// The clients a `Remote` shares between its clones.
#[derive(Default)]
struct SharedClients {
    producer: std::sync::OnceLock<Arc<RemoteProducer>>,
    admin: std::sync::OnceLock<Arc<RemoteAdmin>>,
}

impl std::fmt::Debug for SharedClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedClients")
            .field("producer", &self.producer.get().is_some())
            .field("admin", &self.admin.get().is_some())
            .finish()
    }
}

impl Remote {
    /// A cluster whose brokers include `bootstrap` (`host:port[,host:port...]`).
    pub fn new(bootstrap: impl Into<String>) -> Self {
        Remote { bootstrap: bootstrap.into(), properties: BTreeMap::new(), shared: Arc::default() }
    }

    /// Sets a librdkafka property on every client this substrate creates (it overrides Freshet's
    /// own settings), e.g. `security.protocol` or `client.id`.
    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        // Clients made before were made without it.
        self.shared = Arc::default();
        self
    }

    /// The same cluster and properties without the shared clients: what a client keeps of the
    /// `Remote` that made it, so that no client holds itself alive through the shared ones.
    fn settings(&self) -> Remote {
        Remote { shared: Arc::default(), ..self.clone() }
    }

    /// The bootstrap servers.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        config.set("client.id", "freshet");
        for (k, v) in defaults {
            config.set(*k, *v);
        }
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        config.set_log_level(RDKafkaLogLevel::Warning);
        config
    }

    /// A producer.
    pub fn producer(&self) -> Result<RemoteProducer> {
        let config = self.client_config(&[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            // Kafka's partitioner (murmur2 of the key): the same partition as the embedded log.
            ("partitioner", "murmur2_random"),
            ("linger.ms", "5"),
        ]);
        let inner: FutureProducer = config.create().map_err(|e| client_error("creating a producer", e))?;
        Ok(RemoteProducer { inner })
    }

    /// A transactional producer with `transactional_id`, its transactions aborted by the cluster
    /// when open longer than `timeout`. A transaction an earlier producer with this id left open
    /// is aborted, and that producer fenced.
    pub async fn transactional_producer(&self, transactional_id: &str, timeout: Duration) -> Result<RemoteProducer> {
        let timeout_ms = timeout.as_millis().to_string();
        let mut config = self.client_config(&[
            ("acks", "all"),
            ("partitioner", "murmur2_random"),
            ("linger.ms", "5"),
            ("transaction.timeout.ms", timeout_ms.as_str()),
        ]);
        config.set("transactional.id", transactional_id);
        let inner: FutureProducer = config.create().map_err(|e| client_error("creating a producer", e))?;
        let init = inner.clone();
        blocking(move || init.init_transactions(TXN_CALL_TIMEOUT))
            .await?
            .map_err(|e| txn_error(&format!("initializing transactional id {transactional_id:?}"), e))?;
        Ok(RemoteProducer { inner })
    }

    /// A consumer.
    pub fn consumer(&self, config: ConsumerConfig) -> Result<RemoteConsumer> {
        let reset = match config.auto_offset_reset {
            AutoOffsetReset::Earliest => "earliest",
            AutoOffsetReset::Latest => "latest",
            AutoOffsetReset::None => "error",
        };
        let max_partition = config.max_partition_fetch_bytes.to_string();
        let fetch_max = config.fetch_max_bytes.clamp(1024, 2_147_483_135).to_string();
        let isolation = match config.isolation {
            Isolation::ReadCommitted => "read_committed",
            Isolation::ReadUncommitted => "read_uncommitted",
        };
        let mut settings = vec![
            ("isolation.level", isolation),
            // The end of a partition is reported (see `reached_end`).
            ("enable.partition.eof", "true"),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", reset),
            ("max.partition.fetch.bytes", max_partition.as_str()),
            ("fetch.max.bytes", fetch_max.as_str()),
            // High watermarks for lag come from the client's statistics.
            ("statistics.interval.ms", "1000"),
            ("partition.assignment.strategy", "range"),
            // librdkafka stops fetching a partition whose local queue is full and looks again
            // only after this pause (1 s by default): a consumer draining its queue quickly then
            // waits for data most of the time (a streams application through a broker read 3x
            // slower). The Java consumer has no such pause.
            ("fetch.queue.backoff.ms", "10"),
        ];
        // librdkafka's consumer needs a group even to be assigned partitions by hand: a consumer
        // outside any group gets a private one, which it never joins nor commits to.
        let private_group = format!("freshet-private-{:016x}", random_u64());
        settings.push(("group.id", config.group_id.as_deref().unwrap_or(&private_group)));
        let mut rd_config = self.client_config(&settings);
        if let Some(client_id) = &config.client_id {
            rd_config.set("client.id", client_id);
        }
        let shared = Arc::new(Mutex::new(Shared::default()));
        let inner: BaseConsumer<MemberContext> = rd_config
            .create_with_context(MemberContext { shared: shared.clone() })
            .map_err(|e| client_error("creating a consumer", e))?;
        Ok(RemoteConsumer {
            inner: Arc::new(inner),
            config,
            shared,
            positions: BTreeMap::new(),
            reassign: false,
            subscribed: false,
            generation_held: 0,
            seeks: Default::default(),
            at_end: Default::default(),
        })
    }

    /// The admin interface.
    pub fn admin(&self) -> Result<RemoteAdmin> {
        let admin: AdminClient<DefaultClientContext> =
            self.client_config(&[]).create().map_err(|e| client_error("creating an admin client", e))?;
        // librdkafka asks for offsets at its consumer's isolation level: the high watermark at
        // read_uncommitted, the last stable offset at read_committed.
        let lookup: BaseConsumer = self
            .client_config(&[("enable.auto.commit", "false"), ("isolation.level", "read_uncommitted")])
            .create()
            .map_err(|e| client_error("creating a consumer for offset lookups", e))?;
        let committed_lookup: BaseConsumer = self
            .client_config(&[("enable.auto.commit", "false"), ("isolation.level", "read_committed")])
            .create()
            .map_err(|e| client_error("creating a consumer for offset lookups", e))?;
        Ok(RemoteAdmin {
            remote: self.settings(),
            admin: Arc::new(admin),
            lookup: Arc::new(lookup),
            committed_lookup: Arc::new(committed_lookup),
        })
    }
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher
        .write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    hasher.finish()
}

/// A librdkafka error as Freshet's, saying what was being done.
fn client_error(doing: &str, error: KafkaError) -> Error {
    match error.rdkafka_error_code() {
        Some(code) => code_error(doing, code),
        None => Error::Remote(format!("{doing}: {error}")),
    }
}

/// A Kafka error code as Freshet's error, where Freshet has a matching one.
fn code_error(doing: &str, code: RDKafkaErrorCode) -> Error {
    match code {
        RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch => {
            Error::ProducerFenced(format!("{doing}: {code}"))
        }
        _ => Error::Remote(format!("{doing}: {code} ({})", code as i32)),
    }
}

/// How long a blocking transaction call (init, send offsets, commit, abort) may take.
const TXN_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A transaction call's error: a fenced producer as [`Error::ProducerFenced`].
fn txn_error(doing: &str, error: KafkaError) -> Error {
    match error.rdkafka_error_code().map(|code| code_error(doing, code)) {
        Some(fenced @ Error::ProducerFenced(_)) => fenced,
        _ => Error::Transaction(format!("{doing}: {error}")),
    }
}

/// Errors of a topic operation, which carry the topic name.
fn topic_error(doing: &str, topic: &str, code: RDKafkaErrorCode, message: Option<&str>) -> Error {
    let detail = || message.map(str::to_owned).unwrap_or_else(|| code.to_string());
    match code {
        RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => {
            Error::UnknownTopic(topic.to_string())
        }
        RDKafkaErrorCode::TopicAlreadyExists => Error::TopicExists(topic.to_string()),
        RDKafkaErrorCode::InvalidTopic => Error::InvalidTopicName { name: topic.to_string(), reason: detail() },
        RDKafkaErrorCode::InvalidConfig | RDKafkaErrorCode::InvalidPartitions => {
            Error::Remote(format!("{doing} {topic:?}: {}", detail()))
        }
        RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch => {
            Error::ProducerFenced(format!("{doing} {topic:?}: {}", detail()))
        }
        _ => Error::Remote(format!("{doing} {topic:?}: {} ({})", detail(), code as i32)),
    }
}

/// Runs a blocking librdkafka call on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Internal(format!("a librdkafka call failed: {e}")))
}

fn partition_i32(p: u32) -> Result<i32> {
    i32::try_from(p).map_err(|_| Error::Internal(format!("partition {p} is out of the protocol's range")))
}

#[async_trait]
impl Substrate for Remote {
    fn describe(&self) -> String {
        format!("the cluster at {}", self.bootstrap)
    }

    fn producer(&self) -> Result<Arc<dyn Producer>> {
        if let Some(producer) = self.shared.producer.get() {
            return Ok(producer.clone());
        }
        let made = Arc::new(Remote::producer(self)?);
        // Two threads may race to make it; both use the one that landed.
        Ok(self.shared.producer.get_or_init(|| made).clone())
    }

    fn admin(&self) -> Result<Arc<dyn Admin>> {
        if let Some(admin) = self.shared.admin.get() {
            return Ok(admin.clone());
        }
        let made = Arc::new(Remote::admin(self)?);
        Ok(self.shared.admin.get_or_init(|| made).clone())
    }

    fn consumer(&self, config: ConsumerConfig) -> Result<Box<dyn Consumer>> {
        Ok(Box::new(Remote::consumer(self, config)?))
    }

    async fn transactional_producer(
        &self,
        transactional_id: &str,
        timeout: Duration,
    ) -> Result<Arc<dyn TransactionalProducer>> {
        Ok(Arc::new(Remote::transactional_producer(self, transactional_id, timeout).await?))
    }

    fn clock(&self) -> Arc<dyn freshet_log::clock::Clock> {
        Arc::new(freshet_log::clock::SystemClock)
    }
}

/// The [`Producer`] over librdkafka.
pub struct RemoteProducer {
    inner: FutureProducer,
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

fn topic_send_error(topic: &str, e: KafkaError) -> Error {
    match e.rdkafka_error_code() {
        Some(code) => topic_error("sending to", topic, code, None),
        None => Error::Remote(format!("sending to {topic:?}: {e}")),
    }
}

/// What librdkafka's callbacks tell a [`RemoteConsumer`].
#[derive(Debug, Default)]
struct Shared {
    /// High watermarks from the latest statistics.
    high_watermarks: HashMap<(String, i32), i64>,
    /// Partitions the group assigned (subscribe mode), and a count of assignments seen.
    assigned: Vec<TopicPartition>,
    generation: u64,
    /// Partitions the group revoked, still held until the consumer's next poll gives them up.
    revoking: Option<Vec<TopicPartition>>,
    /// What happened to the assignment since the poll began.
    changes: Vec<GroupChange>,
    /// The consumer is closing: a revocation completes at once.
    closing: bool,
}

/// librdkafka callbacks of a consumer.
struct MemberContext {
    shared: Arc<Mutex<Shared>>,
}

impl ClientContext for MemberContext {
    fn stats(&self, statistics: Statistics) {
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        for (topic, t) in statistics.topics {
            for (partition, p) in t.partitions {
                if partition >= 0 && p.hi_offset >= 0 {
                    shared.high_watermarks.insert((topic.clone(), partition), p.hi_offset);
                }
            }
        }
    }
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements()
        .iter()
        .filter_map(|e| Some(TopicPartition::new(e.topic(), u32::try_from(e.partition()).ok()?)))
        .collect()
}

impl ConsumerContext for MemberContext {
    /// Takes an assignment at once; leaves a revocation pending (librdkafka waits for the
    /// unassign before rejoining the group) until the consumer's next poll, so the caller can
    /// commit the revoked partitions first, as a Kafka consumer does in `onPartitionsRevoked`.
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let partitions = partitions_of(tpl);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let Err(error) = consumer.assign(tpl) {
                    tracing::warn!(%error, "taking the group's assignment failed");
                }
                tracing::info!(partitions = partitions.len(), "the group assigned partitions");
                shared.assigned.clone_from(&partitions);
                shared.generation += 1;
                shared.changes.push(GroupChange::Assigned(partitions));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS if !shared.closing => {
                shared.assigned.clear();
                shared.generation += 1;
                shared.revoking = Some(partitions.clone());
                shared.changes.push(GroupChange::Revoked(partitions));
            }
            _ => {
                if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
                    tracing::warn!(error = ?err, "rebalance failed");
                }
                if let Err(error) = consumer.unassign() {
                    tracing::warn!(%error, "giving up partitions failed");
                }
                shared.assigned.clear();
                shared.generation += 1;
                shared.changes.push(GroupChange::Revoked(partitions));
            }
        }
    }
}

/// The [`Consumer`] over librdkafka.
pub struct RemoteConsumer {
    inner: Arc<BaseConsumer<MemberContext>>,
    config: ConsumerConfig,
    shared: Arc<Mutex<Shared>>,
    /// The next offset to hand over, per assigned partition (after `subscribe`: per partition
    /// read from since the last assignment).
    positions: BTreeMap<TopicPartition, i64>,
    /// Positions were moved by a seek: assign again before the next poll.
    reassign: bool,
    subscribed: bool,
    /// After `subscribe`: the count of assignments the positions follow.
    generation_held: u64,
    /// After `subscribe`: partitions sought since the last poll.
    seeks: std::collections::BTreeSet<TopicPartition>,
    /// Partitions whose end the last poll reached (librdkafka's partition EOF events).
    at_end: std::collections::BTreeSet<TopicPartition>,
}

impl std::fmt::Debug for RemoteConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteConsumer")
            .field("group", &self.config.group_id)
            .field("positions", &self.positions)
            .finish_non_exhaustive()
    }
}

impl RemoteConsumer {
    /// The partitions the group assigned to this member, and the count of assignments seen.
    fn group_assignment(&self) -> (Vec<TopicPartition>, u64) {
        let shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        (shared.assigned.clone(), shared.generation)
    }

    /// After a rebalance, the positions of the partitions assigned now: the group's committed
    /// offsets, or where `auto_offset_reset` says (where librdkafka starts fetching them too).
    /// Completes a revocation the last poll reported first (librdkafka then rejoins the group).
    /// Partitions that records were already handed over from since their assignment keep their
    /// positions.
    async fn follow_group(&mut self) -> Result<()> {
        let revoked = self.shared.lock().unwrap_or_else(|e| e.into_inner()).revoking.take();
        if let Some(revoked) = revoked {
            for tp in &revoked {
                self.positions.remove(tp);
            }
            let consumer = self.inner.clone();
            blocking(move || consumer.unassign()).await?.map_err(|e| client_error("giving up partitions", e))?;
        }
        let (assigned, generation) = self.group_assignment();
        if generation == self.generation_held {
            return Ok(());
        }
        let mut positions = BTreeMap::new();
        let mut unknown = Vec::new();
        for tp in assigned {
            match self.positions.get(&tp) {
                Some(p) => {
                    positions.insert(tp, *p);
                }
                None => unknown.push(tp),
            }
        }
        positions.extend(self.start_positions(unknown).await?);
        self.positions = positions;
        self.generation_held = generation;
        Ok(())
    }

    fn assign_positions(&self) -> Result<()> {
        let mut tpl = TopicPartitionList::with_capacity(self.positions.len());
        for (tp, position) in &self.positions {
            tpl.add_partition_offset(&tp.topic, partition_i32(tp.partition)?, Offset::Offset(*position))
                .map_err(|e| client_error("assigning partitions", e))?;
        }
        self.inner.assign(&tpl).map_err(|e| client_error("assigning partitions", e))
    }

    async fn watermarks(&self, tp: &TopicPartition) -> Result<(i64, i64)> {
        watermarks(self.inner.clone(), tp).await
    }

    /// Where each partition starts: the group's committed offset, or where `auto_offset_reset`
    /// says.
    async fn start_positions(&self, partitions: Vec<TopicPartition>) -> Result<BTreeMap<TopicPartition, i64>> {
        let committed = Consumer::committed(self, &partitions).await?;
        let mut positions = BTreeMap::new();
        for tp in partitions {
            let position = match committed.get(&tp) {
                Some(c) => c.offset,
                None => self.reset_position(&tp).await?,
            };
            positions.insert(tp, position);
        }
        Ok(positions)
    }

    async fn reset_position(&self, tp: &TopicPartition) -> Result<i64> {
        let (low, high) = self.watermarks(tp).await?;
        match self.config.auto_offset_reset {
            AutoOffsetReset::Earliest => Ok(low),
            AutoOffsetReset::Latest => Ok(high),
            AutoOffsetReset::None => Err(Error::InvalidConfig {
                key: "auto.offset.reset".into(),
                value: "none".into(),
                reason: format!("{tp} has no committed offset and the consumer may not pick one"),
            }),
        }
    }
}

async fn watermarks<C: ConsumerContext + 'static>(
    consumer: Arc<BaseConsumer<C>>,
    tp: &TopicPartition,
) -> Result<(i64, i64)> {
    let (topic, partition) = (tp.topic.clone(), partition_i32(tp.partition)?);
    // A client whose metadata predates the topic (or its newest partitions) does not know the
    // partition yet: it refreshes its metadata and asks again, for a few seconds.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (c, t) = (consumer.clone(), topic.clone());
        let result = blocking(move || c.fetch_watermarks(&t, partition, REQUEST_TIMEOUT)).await?;
        match result {
            Ok(w) => return Ok(w),
            Err(e) => match e.rdkafka_error_code() {
                Some(RDKafkaErrorCode::UnknownPartition | RDKafkaErrorCode::UnknownTopic)
                    if tokio::time::Instant::now() < deadline =>
                {
                    let (c, t) = (consumer.clone(), topic.clone());
                    let _ = blocking(move || c.fetch_metadata(Some(&t), REQUEST_TIMEOUT).map(|_| ())).await?;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Some(code) => return Err(topic_error("reading the offsets of", &tp.topic, code, None)),
                None => return Err(Error::Remote(format!("reading the offsets of {tp}: {e}"))),
            },
        }
    }
}

async fn committed<C: ConsumerContext + 'static>(
    consumer: Arc<BaseConsumer<C>>,
    partitions: &[TopicPartition],
) -> Result<BTreeMap<TopicPartition, OffsetAndMetadata>> {
    let mut tpl = TopicPartitionList::with_capacity(partitions.len());
    for tp in partitions {
        tpl.add_partition(&tp.topic, partition_i32(tp.partition)?);
    }
    let tpl = blocking(move || consumer.committed_offsets(tpl, REQUEST_TIMEOUT))
        .await?
        .map_err(|e| client_error("reading committed offsets", e))?;
    let mut out = BTreeMap::new();
    for e in tpl.elements() {
        if let (Offset::Offset(offset), Ok(partition)) = (e.offset(), u32::try_from(e.partition())) {
            let mut committed = OffsetAndMetadata::new(offset);
            committed.metadata = e.metadata().to_string();
            out.insert(TopicPartition::new(e.topic(), partition), committed);
        }
    }
    Ok(out)
}

/// Messages of one partition copied out of librdkafka, as record batches.
struct PartitionRun {
    batches: Vec<Bytes>,
    builder: Option<(BatchBuilder, i64)>,
    next_offset: i64,
    first_offset: i64,
}

impl PartitionRun {
    fn finish_batch(&mut self) {
        if let Some((builder, base_offset)) = self.builder.take() {
            let mut batch = bytes::BytesMut::from(builder.finish());
            assign_in_place(&mut batch, base_offset, -1, None);
            self.batches.push(batch.freeze());
        }
    }
}

#[async_trait]
impl Consumer for RemoteConsumer {
    async fn assign(&mut self, partitions: Vec<TopicPartition>) -> Result<()> {
        self.at_end.clear();
        if self.subscribed {
            self.inner.unsubscribe();
            self.subscribed = false;
        }
        self.positions = self.start_positions(partitions).await?;
        self.assign_positions()?;
        self.reassign = false;
        Ok(())
    }

    async fn seek(&mut self, tp: &TopicPartition, to: OffsetSpec) -> Result<()> {
        self.at_end.remove(tp);
        if !self.positions.contains_key(tp) {
            return Err(Error::Internal(format!("{tp} is not assigned to this consumer")));
        }
        let offset = match to {
            OffsetSpec::Earliest => self.watermarks(tp).await?.0,
            // A consumer's own isolation decides what its end is.
            OffsetSpec::Latest | OffsetSpec::LastStable => self.watermarks(tp).await?.1,
            OffsetSpec::Timestamp(ts) => match offset_for_time(self.inner.clone(), tp, ts).await? {
                Some(offset) => offset,
                None => self.watermarks(tp).await?.1,
            },
        };
        self.seek_to_offset(tp, offset)
    }

    fn seek_to_offset(&mut self, tp: &TopicPartition, offset: i64) -> Result<()> {
        self.at_end.remove(tp);
        match self.positions.get_mut(tp) {
            Some(p) => {
                *p = offset;
                self.reassign = true;
                if self.subscribed {
                    self.seeks.insert(tp.clone());
                }
                Ok(())
            }
            None => Err(Error::Internal(format!("{tp} is not assigned to this consumer"))),
        }
    }

    fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.positions.get(tp).copied()
    }

    async fn poll(&mut self, max_wait: Duration) -> Result<Vec<ConsumedBatches>> {
        if self.reassign && !self.subscribed {
            self.assign_positions()?;
            self.reassign = false;
        }
        if self.subscribed {
            self.shared.lock().unwrap_or_else(|e| e.into_inner()).changes.clear();
            self.follow_group().await?;
            // The group's assignment stays librdkafka's: a seek moves its fetch position.
            let seeks: Vec<(TopicPartition, i64)> = std::mem::take(&mut self.seeks)
                .into_iter()
                .filter_map(|tp| self.positions.get(&tp).map(|p| (tp, *p)))
                .collect();
            if !seeks.is_empty() {
                let consumer = self.inner.clone();
                blocking(move || -> Result<()> {
                    for (tp, offset) in seeks {
                        consumer
                            .seek(&tp.topic, partition_i32(tp.partition)?, Offset::Offset(offset), REQUEST_TIMEOUT)
                            .map_err(|e| client_error(&format!("seeking {tp}"), e))?;
                    }
                    Ok(())
                })
                .await??;
            }
        }
        let consumer = self.inner.clone();
        let budget = self.config.fetch_max_bytes;
        let positions = self.positions.clone();
        let subscribed = self.subscribed;
        let shared = self.shared.clone();
        let runs = blocking(move || -> Result<(BTreeMap<TopicPartition, PartitionRun>, HashMap<i32, bool>)> {
            let mut runs: BTreeMap<TopicPartition, PartitionRun> = BTreeMap::new();
            // Per partition number (librdkafka's end event names no topic): whether its end was
            // the last thing seen of it.
            let mut eofs: HashMap<i32, bool> = HashMap::new();
            let (mut n_bytes, mut n_records) = (0u64, 0usize);
            let mut wait = max_wait;
            while n_bytes < budget && n_records < MAX_POLL_RECORDS {
                let polled = consumer.poll(wait);
                // A revocation returns at once, so the caller commits before the group moves on.
                if subscribed && shared.lock().unwrap_or_else(|e| e.into_inner()).revoking.is_some() {
                    wait = Duration::ZERO;
                    if polled.is_none() {
                        break;
                    }
                }
                let message = match polled {
                    None => break,
                    Some(Ok(m)) => m,
                    Some(Err(KafkaError::PartitionEOF(partition))) => {
                        eofs.insert(partition, true);
                        continue;
                    }
                    // The member went too long without polling: the group has moved on without
                    // it (reported as a revocation); this poll rejoins.
                    Some(Err(e)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::PollExceeded) => {
                        tracing::warn!(error = %e, "this consumer was too slow to poll; rejoining its group");
                        continue;
                    }
                    Some(Err(e)) => return Err(client_error("fetching", e)),
                };
                wait = Duration::ZERO;
                eofs.insert(message.partition(), false);
                let Ok(partition) = u32::try_from(message.partition()) else { continue };
                let tp = TopicPartition::new(message.topic(), partition);
                let offset = message.offset();
                let expected = match positions.get(&tp) {
                    Some(p) => *p,
                    // Assigned by a rebalance during this poll: from where the group says.
                    None if subscribed => i64::MIN,
                    // A message fetched before the partition was unassigned.
                    None => continue,
                };
                if offset < expected {
                    continue;
                }
                let run = runs.entry(tp).or_insert_with(|| PartitionRun {
                    batches: Vec::new(),
                    builder: None,
                    next_offset: offset,
                    first_offset: if expected == i64::MIN { offset } else { expected },
                });
                // A gap (compaction, transaction markers) or a large batch starts a new batch.
                if offset != run.next_offset || run.builder.as_ref().is_some_and(|(b, _)| b.size() >= 1 << 20) {
                    run.finish_batch();
                }
                let headers: Vec<Header> = message
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| Header { key: h.key.to_string(), value: h.value.map(Bytes::copy_from_slice) })
                            .collect()
                    })
                    .unwrap_or_default();
                let timestamp = message.timestamp().to_millis().unwrap_or(-1);
                let (builder, _) = run.builder.get_or_insert_with(|| (BatchBuilder::with_capacity(16 << 10), offset));
                builder.push(message.key(), message.payload(), &headers, timestamp);
                run.next_offset = offset + 1;
                n_bytes += (message.key().map_or(0, <[u8]>::len) + message.payload().map_or(0, <[u8]>::len)) as u64;
                n_records += 1;
            }
            for run in runs.values_mut() {
                run.finish_batch();
            }
            Ok((runs, eofs))
        })
        .await??;
        let (runs, eofs) = runs;
        for tp in runs.keys() {
            self.at_end.remove(tp);
        }
        for (partition, at_end) in eofs {
            // Only where the partition number names one partition of the assignment.
            let mut matching = self.positions.keys().filter(|tp| i64::from(tp.partition) == i64::from(partition));
            if let (Some(tp), None, true) = (matching.next(), matching.next(), at_end) {
                self.at_end.insert(tp.clone());
            }
        }
        let shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::with_capacity(runs.len());
        for (tp, run) in runs {
            self.positions.insert(tp.clone(), run.next_offset);
            let bytes = if run.batches.len() == 1 {
                run.batches.into_iter().next().unwrap_or_default()
            } else {
                Bytes::from(run.batches.concat())
            };
            let key = (tp.topic.clone(), partition_i32(tp.partition)?);
            let high_watermark = shared.high_watermarks.get(&key).copied().unwrap_or(-1).max(run.next_offset);
            out.push(ConsumedBatches { tp, bytes, from_offset: run.first_offset, high_watermark });
        }
        Ok(out)
    }

    async fn commit(&mut self, offsets: BTreeMap<TopicPartition, OffsetAndMetadata>) -> Result<()> {
        if self.config.group_id.is_none() {
            return Err(no_group("commit offsets"));
        }
        if offsets.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::with_capacity(offsets.len());
        for (tp, committed) in &offsets {
            tpl.add_partition_offset(&tp.topic, partition_i32(tp.partition)?, Offset::Offset(committed.offset))
                .map_err(|e| client_error("committing", e))?;
            if !committed.metadata.is_empty() {
                if let Some(mut e) = tpl.find_partition(&tp.topic, partition_i32(tp.partition)?) {
                    e.set_metadata(committed.metadata.clone());
                }
            }
        }
        let consumer = self.inner.clone();
        blocking(move || consumer.commit(&tpl, CommitMode::Sync)).await?.map_err(|e| match e.rdkafka_error_code() {
            Some(
                code @ (RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::RebalanceInProgress
                | RDKafkaErrorCode::UnknownMemberId
                | RDKafkaErrorCode::FencedInstanceId),
            ) => Error::Rebalanced(code.to_string()),
            _ => client_error("committing", e),
        })
    }

    async fn commit_positions(&mut self) -> Result<()> {
        let offsets = self.positions.iter().map(|(tp, p)| (tp.clone(), OffsetAndMetadata::new(*p))).collect();
        self.commit(offsets).await
    }

    async fn committed(&self, partitions: &[TopicPartition]) -> Result<BTreeMap<TopicPartition, OffsetAndMetadata>> {
        match &self.config.group_id {
            Some(_) if !partitions.is_empty() => committed(self.inner.clone(), partitions).await,
            _ => Ok(BTreeMap::new()),
        }
    }

    async fn subscribe(&mut self, topics: Vec<String>) -> Result<()> {
        self.at_end.clear();
        if self.config.group_id.is_none() {
            return Err(no_group("subscribe"));
        }
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        self.inner.subscribe(&topics).map_err(|e| client_error("subscribing", e))?;
        self.subscribed = true;
        self.positions.clear();
        self.generation_held = self.group_assignment().1;
        Ok(())
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        self.positions.keys().cloned().collect()
    }

    fn take_group_changes(&mut self) -> Vec<GroupChange> {
        std::mem::take(&mut self.shared.lock().unwrap_or_else(|e| e.into_inner()).changes)
    }

    // librdkafka's assignment is the reference here (a partition the group just assigned has no
    // position until the next poll); it ignores partitions outside it.
    fn pause(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        self.inner.pause(&tpl_of(partitions)?).map_err(|e| client_error("pausing partitions", e))
    }

    fn resume(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        self.inner.resume(&tpl_of(partitions)?).map_err(|e| client_error("resuming partitions", e))
    }

    fn reached_end(&self, tp: &TopicPartition) -> bool {
        self.at_end.contains(tp)
    }

    fn group_metadata(&self) -> Option<GroupMetadata> {
        let group_id = self.config.group_id.clone()?;
        let native = self.inner.group_metadata()?;
        Some(GroupMetadata { group_id, native: Some(Arc::new(native)) })
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

fn tpl_of(partitions: &[TopicPartition]) -> Result<TopicPartitionList> {
    let mut tpl = TopicPartitionList::with_capacity(partitions.len());
    for tp in partitions {
        tpl.add_partition(&tp.topic, partition_i32(tp.partition)?);
    }
    Ok(tpl)
}

impl Drop for RemoteConsumer {
    fn drop(&mut self) {
        // librdkafka revokes the assignment while closing: it must not wait for a next poll.
        let pending = {
            let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            shared.closing = true;
            shared.revoking.take()
        };
        if pending.is_some() {
            if let Err(error) = self.inner.unassign() {
                tracing::debug!(%error, "giving up partitions while closing");
            }
        }
    }
}

async fn offset_for_time<C: ConsumerContext + 'static>(
    consumer: Arc<BaseConsumer<C>>,
    tp: &TopicPartition,
    timestamp: i64,
) -> Result<Option<i64>> {
    let mut tpl = TopicPartitionList::with_capacity(1);
    tpl.add_partition_offset(&tp.topic, partition_i32(tp.partition)?, Offset::Offset(timestamp))
        .map_err(|e| client_error("looking up an offset by time", e))?;
    let found = blocking(move || consumer.offsets_for_times(tpl, REQUEST_TIMEOUT))
        .await?
        .map_err(|e| client_error(&format!("looking up an offset by time in {tp}"), e))?;
    let element = found.elements().into_iter().next().map(|e| (e.offset(), e.error()));
    match element {
        Some((Offset::Offset(offset), Ok(()))) if offset >= 0 => Ok(Some(offset)),
        Some((_, Err(e))) => Err(client_error(&format!("looking up an offset by time in {tp}"), e)),
        _ => Ok(None),
    }
}

/// The [`Admin`] over librdkafka.
pub struct RemoteAdmin {
    remote: Remote,
    admin: Arc<AdminClient<DefaultClientContext>>,
    lookup: Arc<BaseConsumer>,
    /// Looks offsets up at `read_committed` isolation: its high watermark is the last stable offset.
    committed_lookup: Arc<BaseConsumer>,
}

impl std::fmt::Debug for RemoteAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteAdmin").field("bootstrap", &self.remote.bootstrap).finish_non_exhaustive()
    }
}

fn options() -> AdminOptions {
    AdminOptions::new().request_timeout(Some(REQUEST_TIMEOUT)).operation_timeout(Some(REQUEST_TIMEOUT))
}

/// The result of one topic of an admin operation.
fn topic_result(doing: &str, results: Vec<rdkafka::admin::TopicResult>) -> Result<()> {
    for result in results {
        if let Err((topic, code)) = result {
            return Err(topic_error(doing, &topic, code, None));
        }
    }
    Ok(())
}

impl RemoteAdmin {
    /// Topic name -> partition count, for one topic or all.
    async fn metadata(&self, topic: Option<&str>) -> Result<Vec<(String, u32)>> {
        let lookup = self.lookup.clone();
        let name = topic.map(str::to_owned);
        let metadata = blocking(move || lookup.fetch_metadata(name.as_deref(), REQUEST_TIMEOUT))
            .await?
            .map_err(|e| client_error("reading the cluster's metadata", e))?;
        let mut out = Vec::new();
        for t in metadata.topics() {
            if let Some(error) = t.error() {
                let code = RDKafkaErrorCode::from(error);
                return Err(topic_error("describing", t.name(), code, None));
            }
            out.push((t.name().to_string(), t.partitions().len() as u32));
        }
        Ok(out)
    }

    /// Waits until the cluster's metadata shows `topic` with `n` partitions: a created topic (or
    /// a grown one) reaches every broker's metadata shortly after the request succeeds, and
    /// offset lookups right after would not find it yet.
    async fn await_partitions(&self, topic: &str, n: u32) -> Result<()> {
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        loop {
            match self.metadata(Some(topic)).await {
                Ok(topics) if topics.iter().any(|(t, count)| t == topic && *count >= n) => return Ok(()),
                Ok(_) | Err(Error::UnknownTopic(_)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Ok(_) => return Err(Error::Remote(format!("{topic:?} was created but its metadata never showed it"))),
                Err(e) => return Err(e),
            }
        }
    }

    async fn configs(&self, names: &[String]) -> Result<BTreeMap<String, Vec<ConfigEntry>>> {
        let specifiers: Vec<ResourceSpecifier<'_>> = names.iter().map(|n| ResourceSpecifier::Topic(n)).collect();
        if specifiers.is_empty() {
            return Ok(BTreeMap::new());
        }
        let results = self
            .admin
            .describe_configs(&specifiers, &options())
            .await
            .map_err(|e| client_error("describing configs", e))?;
        let mut out = BTreeMap::new();
        for (name, result) in names.iter().zip(results) {
            let resource = result.map_err(|code| topic_error("describing the configs of", name, code, None))?;
            let entries = resource
                .entries
                .into_iter()
                .map(|e| ConfigEntry {
                    is_default: e.is_default || e.source == ConfigSource::Default,
                    name: e.name,
                    value: e.value.unwrap_or_default(),
                })
                .collect();
            out.insert(name.clone(), entries);
        }
        Ok(out)
    }

    fn describe(name: String, n_partitions: u32, configs: &[ConfigEntry]) -> TopicDescription {
        TopicDescription {
            internal: name.starts_with("__"),
            name,
            // The metadata librdkafka gives does not carry topic ids.
            id: String::new(),
            n_partitions,
            overrides: configs.iter().filter(|c| !c.is_default).map(|c| (c.name.clone(), c.value.clone())).collect(),
        }
    }
}

#[async_trait]
impl Admin for RemoteAdmin {
    async fn create_topic(&self, topic: NewTopic) -> Result<()> {
        let n = i32::try_from(topic.n_partitions).ok().filter(|n| *n > 0).ok_or_else(|| Error::InvalidConfig {
            key: "partitions".into(),
            value: topic.n_partitions.to_string(),
            reason: "a topic needs between 1 and 2^31-1 partitions".into(),
        })?;
        let mut new = RdNewTopic::new(&topic.name, n, TopicReplication::Fixed(-1));
        for (k, v) in &topic.configs {
            new = new.set(k, v);
        }
        let results =
            self.admin.create_topics([&new], &options()).await.map_err(|e| client_error("creating a topic", e))?;
        topic_result("creating", results)?;
        self.await_partitions(&topic.name, topic.n_partitions).await
    }

    async fn delete_topic(&self, name: &str) -> Result<()> {
        let results =
            self.admin.delete_topics(&[name], &options()).await.map_err(|e| client_error("deleting a topic", e))?;
        topic_result("deleting", results)
    }

    async fn list_topics(&self) -> Result<Vec<TopicDescription>> {
        let mut topics = self.metadata(None).await?;
        topics.sort();
        let names: Vec<String> = topics.iter().map(|(n, _)| n.clone()).collect();
        let mut configs = self.configs(&names).await?;
        Ok(topics
            .into_iter()
            .map(|(name, n)| {
                let configs = configs.remove(&name).unwrap_or_default();
                Self::describe(name, n, &configs)
            })
            .collect())
    }

    async fn describe_topic(&self, name: &str) -> Result<(TopicDescription, Vec<PartitionDescription>)> {
        let (_, n) = self
            .metadata(Some(name))
            .await?
            .into_iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| Error::UnknownTopic(name.to_string()))?;
        let configs = self.configs(&[name.to_string()]).await?.remove(name).unwrap_or_default();
        let mut partitions = Vec::with_capacity(n as usize);
        for p in 0..n {
            let (low, high) = watermarks(self.lookup.clone(), &TopicPartition::new(name, p)).await?;
            partitions.push(PartitionDescription {
                partition: p,
                log_start_offset: low,
                high_watermark: high,
                log_end_offset: high,
                // Sizes on disk are the broker's business; the client API does not give them.
                size_bytes: 0,
                n_segments: 0,
            });
        }
        Ok((Self::describe(name.to_string(), n, &configs), partitions))
    }

    async fn describe_configs(&self, name: &str) -> Result<Vec<ConfigEntry>> {
        let mut entries = self.configs(&[name.to_string()]).await?.remove(name).unwrap_or_default();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    async fn alter_configs(&self, name: &str, changes: BTreeMap<String, Option<String>>) -> Result<()> {
        // AlterConfigs replaces a topic's whole set of overrides: start from the current ones.
        let current = self.describe_configs(name).await?;
        let mut overrides: BTreeMap<String, String> =
            current.into_iter().filter(|c| !c.is_default).map(|c| (c.name, c.value)).collect();
        for (k, v) in changes {
            match v {
                Some(v) => overrides.insert(k, v),
                None => overrides.remove(&k),
            };
        }
        let mut alter = AlterConfig::new(ResourceSpecifier::Topic(name));
        for (k, v) in &overrides {
            alter = alter.set(k, v);
        }
        let results =
            self.admin.alter_configs([&alter], &options()).await.map_err(|e| client_error("altering configs", e))?;
        for result in results {
            if let Err((_, code)) = result {
                return Err(topic_error("altering the configs of", name, code, None));
            }
        }
        Ok(())
    }

    async fn create_partitions(&self, name: &str, n_partitions: u32) -> Result<()> {
        let new = NewPartitions::new(name, n_partitions as usize);
        let results = self
            .admin
            .create_partitions([&new], &options())
            .await
            .map_err(|e| client_error("creating partitions", e))?;
        topic_result("adding partitions to", results)?;
        self.await_partitions(name, n_partitions).await
    }

    async fn list_offset(&self, tp: &TopicPartition, spec: OffsetSpec) -> Result<Option<(i64, i64)>> {
        // The timestamp of the record found is not in librdkafka's answer: -1.
        match spec {
            OffsetSpec::Earliest => Ok(Some((watermarks(self.lookup.clone(), tp).await?.0, -1))),
            OffsetSpec::Latest => Ok(Some((watermarks(self.lookup.clone(), tp).await?.1, -1))),
            // librdkafka asks for offsets at its consumer's isolation level.
            OffsetSpec::LastStable => Ok(Some((watermarks(self.committed_lookup.clone(), tp).await?.1, -1))),
            OffsetSpec::Timestamp(ts) => Ok(offset_for_time(self.lookup.clone(), tp, ts).await?.map(|o| (o, -1))),
        }
    }

    async fn delete_records(&self, tp: &TopicPartition, before_offset: i64) -> Result<i64> {
        let mut tpl = TopicPartitionList::with_capacity(1);
        tpl.add_partition_offset(&tp.topic, partition_i32(tp.partition)?, Offset::Offset(before_offset))
            .map_err(|e| client_error("deleting records", e))?;
        let result =
            self.admin.delete_records(&tpl, &options()).await.map_err(|e| client_error("deleting records", e))?;
        let element = result.elements().into_iter().next().map(|e| (e.offset(), e.error()));
        match element {
            Some((Offset::Offset(low), Ok(()))) => Ok(low),
            Some((_, Err(e))) => Err(client_error(&format!("deleting records of {tp}"), e)),
            _ => Err(Error::Remote(format!("deleting records of {tp}: no answer for the partition"))),
        }
    }

    async fn list_groups(&self) -> Result<Vec<String>> {
        let lookup = self.lookup.clone();
        let mut names = blocking(move || {
            let groups = lookup.fetch_group_list(None, REQUEST_TIMEOUT)?;
            Ok::<_, KafkaError>(groups.groups().iter().map(|g| g.name().to_string()).collect::<Vec<_>>())
        })
        .await?
        .map_err(|e| client_error("listing groups", e))?;
        names.sort();
        Ok(names)
    }

    async fn group_offsets(&self, group: &str) -> Result<BTreeMap<TopicPartition, OffsetAndMetadata>> {
        // OffsetFetch for every partition of every topic, as this group.
        let mut partitions = Vec::new();
        for (topic, n) in self.metadata(None).await? {
            partitions.extend((0..n).map(|p| TopicPartition::new(topic.clone(), p)));
        }
        let reader: Arc<BaseConsumer> = Arc::new(
            self.remote
                .client_config(&[("group.id", group), ("enable.auto.commit", "false")])
                .create()
                .map_err(|e| client_error("creating a consumer to read committed offsets", e))?,
        );
        if partitions.is_empty() {
            return Ok(BTreeMap::new());
        }
        committed(reader, &partitions).await
    }

    async fn group_members(&self, group: &str) -> Result<Option<GroupMembers>> {
        let lookup = self.lookup.clone();
        let name = group.to_string();
        let described = blocking(move || {
            let groups = lookup.fetch_group_list(Some(&name), REQUEST_TIMEOUT)?;
            Ok::<_, KafkaError>(groups.groups().iter().find(|g| g.name() == name).map(|g| {
                let members: Vec<(String, String, String, Option<Vec<u8>>)> = g
                    .members()
                    .iter()
                    .map(|m| {
                        let assignment = m.assignment().map(<[u8]>::to_vec);
                        (m.id().to_string(), m.client_id().to_string(), m.client_host().to_string(), assignment)
                    })
                    .collect();
                (g.state().to_string(), g.protocol().to_string(), g.protocol_type().to_string(), members)
            }))
        })
        .await?
        .map_err(|e| client_error(&format!("describing group {group:?}"), e))?;
        let Some((state, protocol, protocol_type, members)) = described else { return Ok(None) };
        if state == "Dead" {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(members.len());
        for (member_id, client_id, host, assignment) in members {
            let assignment = match assignment {
                Some(bytes) if protocol_type == "consumer" && !bytes.is_empty() => decode_assignment(&bytes)
                    .map_err(|e| Error::Remote(format!("member {member_id} of {group:?}: {e}")))?,
                _ => Vec::new(),
            };
            out.push(GroupMember { member_id, client_id, host, assignment });
        }
        Ok(Some(GroupMembers { state, protocol, members: out }))
    }
}

/// The partitions of a consumer-protocol assignment. Its layout (versions 0 to 3, all
/// big-endian, not flexible): `version i16, [topic string, [partition i32]], user_data bytes`;
/// the user data is not read.
fn decode_assignment(bytes: &[u8]) -> std::result::Result<Vec<TopicPartition>, String> {
    struct Reader<'a>(&'a [u8]);
    impl Reader<'_> {
        fn take(&mut self, n: usize, what: &str) -> std::result::Result<&[u8], String> {
            if self.0.len() < n {
                return Err(format!("an assignment cut short in its {what}"));
            }
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            Ok(head)
        }
        fn i16(&mut self, what: &str) -> std::result::Result<i16, String> {
            Ok(i16::from_be_bytes(self.take(2, what)?.try_into().expect("two bytes")))
        }
        fn i32(&mut self, what: &str) -> std::result::Result<i32, String> {
            Ok(i32::from_be_bytes(self.take(4, what)?.try_into().expect("four bytes")))
        }
        /// An array's length; each element takes at least `min_element` bytes, so a length the
        /// bytes left cannot hold is refused before anything is allocated for it.
        fn len(&mut self, min_element: usize, what: &str) -> std::result::Result<usize, String> {
            let n = self.i32(what)?;
            let n = usize::try_from(n.max(0)).expect("a non-negative i32");
            if n.saturating_mul(min_element) > self.0.len() {
                return Err(format!("an assignment whose {what} count {n} exceeds its bytes"));
            }
            Ok(n)
        }
    }
    let mut reader = Reader(bytes);
    let version = reader.i16("version")?;
    if !(0..=3).contains(&version) {
        return Err(format!("a consumer-protocol assignment of version {version} (0 to 3 are known)"));
    }
    let mut out = Vec::new();
    for _ in 0..reader.len(6, "topics")? {
        let name_len = usize::try_from(reader.i16("topic name")?).map_err(|_| "a null topic name".to_string())?;
        let name = std::str::from_utf8(reader.take(name_len, "topic name")?)
            .map_err(|_| "a topic name that is not UTF-8".to_string())?
            .to_string();
        for _ in 0..reader.len(4, "partitions")? {
            let p = reader.i32("partition")?;
            out.push(TopicPartition::new(name.as_str(), u32::try_from(p).map_err(|_| format!("partition {p}"))?));
        }
    }
    Ok(out)
}
