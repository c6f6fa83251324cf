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
//! * [`RemoteMembership`] joins groups with a protocol of their own (Kafka Connect's `connect`)
//!   over the group protocol itself, which librdkafka does not expose (see its module).
//!
//! librdkafka's blocking calls (polls, metadata, offset lookups, synchronous commits) run on
//! tokio's blocking pool, never on an async worker.

mod admin;
mod consumer;
mod membership;
mod producer;

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
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};

use crate::substrate::{
    no_group, Admin, AutoOffsetReset, ConsumedBatches, Consumer, ConsumerConfig, GroupChange, GroupMember,
    GroupMembers, GroupMembership, GroupMetadata, NewTopic, OffsetAndMetadata, PartitionPlacement, Producer,
    ProducerRecord, RecordMetadata, Substrate, TopicPartition, TransactionalProducer,
};
use freshet_log::batch::{assign_in_place, BatchBuilder, Header};
use freshet_log::config::ConfigEntry;
use freshet_log::{Error, Result};
use freshet_log::{Isolation, OffsetSpec, PartitionDescription, TopicDescription};

pub use self::admin::RemoteAdmin;
use self::admin::*;
pub use self::consumer::RemoteConsumer;
use self::consumer::*;
pub use self::membership::RemoteMembership;
use self::producer::Deliveries;
pub use self::producer::RemoteProducer;

/// How long a metadata or offset request to the cluster may take.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Records one poll hands over at most (besides the byte budget).
pub(super) const MAX_POLL_RECORDS: usize = 50_000;

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
    membership: std::sync::OnceLock<Arc<RemoteMembership>>,
}

impl std::fmt::Debug for SharedClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedClients")
            .field("producer", &self.producer.get().is_some())
            .field("admin", &self.admin.get().is_some())
            .field("membership", &self.membership.get().is_some())
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
        // librdkafka's `debug` contexts log at debug level: asked for, they are shown.
        let asked = self.properties.iter().any(|(k, _)| k == "debug");
        config.set_log_level(if asked { RDKafkaLogLevel::Debug } else { RDKafkaLogLevel::Warning });
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
        let inner = config.create_with_context(Deliveries).map_err(|e| client_error("creating a producer", e))?;
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
        let inner: ThreadedProducer<Deliveries> =
            config.create_with_context(Deliveries).map_err(|e| client_error("creating a producer", e))?;
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
        // librdkafka fetches ahead into a local queue (64 MiB by default): a consumer asking for
        // small polls keeps a queue of four of them, so its memory follows what it asked for.
        let queued_kb = (config.fetch_max_bytes.saturating_mul(4) / 1024).clamp(1024, 65536).to_string();
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
            ("queued.max.messages.kbytes", queued_kb.as_str()),
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

pub(super) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher
        .write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    hasher.finish()
}

/// Whether a request that failed with `code` may succeed when asked again: a leader or group
/// coordinator not elected, moving, or still loading (as on a cluster just started), a new
/// leader's offsets not yet known, or a request that timed out. Kafka's clients retry these.
pub(super) fn transient(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::NotLeaderForPartition
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::NotCoordinator
            | RDKafkaErrorCode::CoordinatorNotAvailable
            | RDKafkaErrorCode::CoordinatorLoadInProgress
            | RDKafkaErrorCode::OffsetNotAvailable
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::NetworkException
            | RDKafkaErrorCode::OperationTimedOut
    )
}

/// A librdkafka error as Freshet's, saying what was being done.
pub(super) fn client_error(doing: &str, error: KafkaError) -> Error {
    match error.rdkafka_error_code() {
        Some(code) => code_error(doing, code),
        None => Error::Remote(format!("{doing}: {error}")),
    }
}

/// A Kafka error code as Freshet's error, where Freshet has a matching one.
pub(super) fn code_error(doing: &str, code: RDKafkaErrorCode) -> Error {
    match code {
        RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch => {
            Error::ProducerFenced(format!("{doing}: {code}"))
        }
        _ => Error::Remote(format!("{doing}: {code} ({})", code as i32)),
    }
}

/// How long a blocking transaction call (init, send offsets, commit, abort) may take.
pub(super) const TXN_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A transaction call's error: a fenced producer as [`Error::ProducerFenced`].
pub(super) fn txn_error(doing: &str, error: KafkaError) -> Error {
    match error.rdkafka_error_code().map(|code| code_error(doing, code)) {
        Some(fenced @ Error::ProducerFenced(_)) => fenced,
        _ => Error::Transaction(format!("{doing}: {error}")),
    }
}

/// Errors of a topic operation, which carry the topic name.
pub(super) fn topic_error(doing: &str, topic: &str, code: RDKafkaErrorCode, message: Option<&str>) -> Error {
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
        // Not answered in time (a record that waited out `message.timeout.ms` for a leader, a
        // request its broker never answered): worth another try, but not this transaction's.
        RDKafkaErrorCode::MessageTimedOut
        | RDKafkaErrorCode::RequestTimedOut
        | RDKafkaErrorCode::OperationTimedOut
        | RDKafkaErrorCode::PurgeQueue
        | RDKafkaErrorCode::PurgeInflight => Error::Timeout(format!("{doing} {topic:?}: {}", detail())),
        _ => Error::Remote(format!("{doing} {topic:?}: {} ({})", detail(), code as i32)),
    }
}

/// Runs a blocking librdkafka call on the blocking pool.
pub(super) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Internal(format!("a librdkafka call failed: {e}")))
}

pub(super) fn partition_i32(p: u32) -> Result<i32> {
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

    fn membership(&self) -> Result<Arc<dyn GroupMembership>> {
        if let Some(membership) = self.shared.membership.get() {
            return Ok(membership.clone());
        }
        let made = Arc::new(RemoteMembership::new(&self.bootstrap, &self.properties)?);
        Ok(self.shared.membership.get_or_init(|| made).clone())
    }
}
