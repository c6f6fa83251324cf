//! The embedded substrate: the storage engine called in-process, with the same contract as a
//! cluster (consumer groups of the consumers in this process, range assignment, committed offsets,
//! a revocation reported before a partition changes hands, transactions through the transaction
//! coordinator).

mod admin;
mod consumer;
mod members;
mod producer;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use freshet_coord::group::{GroupOffsets, OffsetAndMetadata, TopicPartition};
use freshet_coord::membership::Coordinator;
use freshet_coord::transactions::Transactions;
use freshet_log::batch::{BatchBuilder, Batches};
use freshet_log::config::ConfigEntry;
use freshet_log::partitioner::partition_for_key;
use freshet_log::{AbortedFilter, Error, Log, OffsetSpec, PartitionDescription, Result, TopicDescription};

use crate::substrate::*;

pub use self::admin::EmbeddedAdmin;
pub use self::consumer::EmbeddedConsumer;
use self::members::*;
pub use self::producer::EmbeddedProducer;
use self::producer::*;

/// The embedded substrate: the storage engine in this process.
#[derive(Debug, Clone)]
pub struct Embedded {
    log: Log,
    groups: GroupOffsets,
    coordinator: Coordinator,
    transactions: Transactions,
}

impl Embedded {
    /// Opens the log in `dir` with `config`, and the group offset store on it.
    pub async fn open(dir: impl Into<std::path::PathBuf>, config: crate::config::LogConfig) -> Result<Self> {
        let n_offsets_partitions = config.offsets_topic_partitions;
        let log = Log::open(dir, config).await?;
        let groups = GroupOffsets::open(log.clone(), n_offsets_partitions).await?;
        // Transactions a previous run decided are completed before anyone reads.
        let transactions = Transactions::new(log.clone(), groups.clone());
        transactions.load().await?;
        transactions.start_expiry(Duration::from_secs(1));
        let coordinator = Coordinator::with_clock(log.clock().clone());
        coordinator.start_expiry();
        groups.start_expiry(coordinator.clone());
        Ok(Embedded { log, groups, coordinator, transactions })
    }

    /// The group coordinator of this log's consumer groups: a broker serving the log takes it, so
    /// consumers in this process and the broker's clients are members of the same groups.
    pub fn group_coordinator(&self) -> &Coordinator {
        &self.coordinator
    }

    /// The transaction coordinator.
    pub fn transactions(&self) -> &Transactions {
        &self.transactions
    }

    /// A transactional producer with `transactional_id`, its transactions aborted when open
    /// longer than `timeout`. A transaction an earlier producer with this id left open is aborted,
    /// and that producer fenced.
    pub async fn transactional_producer(&self, transactional_id: &str, timeout: Duration) -> Result<EmbeddedProducer> {
        let (producer_id, epoch) = self.transactions.init_producer_id(transactional_id, timeout).await?;
        let txn = EmbeddedTxn {
            transactions: self.transactions.clone(),
            id: transactional_id.to_owned(),
            producer_id,
            epoch,
            local: Mutex::default(),
        };
        Ok(EmbeddedProducer { txn: Some(Arc::new(txn)), ..self.producer() })
    }

    /// The committed offsets of consumer groups.
    pub fn group_offsets(&self) -> &GroupOffsets {
        &self.groups
    }

    /// The underlying log.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// A producer.
    pub fn producer(&self) -> EmbeddedProducer {
        EmbeddedProducer { log: self.log.clone(), round_robin: AtomicU32::new(0), txn: None }
    }

    /// A consumer.
    pub fn consumer(&self, config: ConsumerConfig) -> EmbeddedConsumer {
        EmbeddedConsumer {
            log: self.log.clone(),
            groups: self.groups.clone(),
            config,
            positions: BTreeMap::new(),
            coordinator: self.coordinator.clone(),
            membership: None,
            changes: Vec::new(),
            paused: Default::default(),
        }
    }

    /// The admin interface.
    pub fn admin(&self) -> EmbeddedAdmin {
        EmbeddedAdmin { log: self.log.clone(), groups: self.groups.clone(), coordinator: self.coordinator.clone() }
    }

    /// Closes the log cleanly.
    pub async fn close(&self) -> Result<()> {
        self.log.close().await
    }
}

#[async_trait]
impl Substrate for Embedded {
    fn describe(&self) -> String {
        format!("the embedded log in {}", self.log.dir().display())
    }

    fn producer(&self) -> Result<Arc<dyn Producer>> {
        Ok(Arc::new(Embedded::producer(self)))
    }

    fn admin(&self) -> Result<Arc<dyn Admin>> {
        Ok(Arc::new(Embedded::admin(self)))
    }

    fn consumer(&self, config: ConsumerConfig) -> Result<Box<dyn Consumer>> {
        Ok(Box::new(Embedded::consumer(self, config)))
    }

    async fn transactional_producer(
        &self,
        transactional_id: &str,
        timeout: Duration,
    ) -> Result<Arc<dyn TransactionalProducer>> {
        Ok(Arc::new(Embedded::transactional_producer(self, transactional_id, timeout).await?))
    }

    fn clock(&self) -> Arc<dyn freshet_log::clock::Clock> {
        self.log.clock().clone()
    }

    fn membership(&self) -> Result<Arc<dyn GroupMembership>> {
        Ok(Arc::new(EmbeddedMembership { coordinator: self.coordinator.clone() }))
    }
}
