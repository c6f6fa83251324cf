//! The transaction coordinator: Kafka's transactions over the log.
//!
//! A transactional id names a producer that survives restarts. Its state (producer id, epoch,
//! the partitions and groups in its open transaction) is kept in the compacted
//! `__transaction_state` topic, written before each step is acknowledged, so a coordinator that
//! restarts finishes what it had promised. Ending a transaction stores the decision, then writes
//! a commit or abort marker (a control batch) to every partition in it, and to the partition of
//! `__consumer_offsets` of every group it commits offsets for: those offsets wait there, as a
//! transactional batch, and become the group's with the marker. `read_committed` readers see the
//! transaction's records only after the marker. The markers of partitions on other brokers go
//! through [`Participants`]; once the decision is stored it holds, and markers that cannot be
//! written yet are written again until they are.
//!
//! Fencing: `init_producer_id` bumps the epoch, aborting a transaction the previous incarnation
//! left open, so a "zombie" with the old epoch is refused by the coordinator and by every
//! partition the markers reached. A transaction left open longer than its timeout is aborted the
//! same way.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::group::TopicPartition;
use crate::group::{GroupOffsets, OffsetAndMetadata};
use freshet_log::batch::BatchBuilder;
use freshet_log::Log;
use freshet_log::{Error, Result};

mod participants;

pub use participants::{LocalParticipants, Participants};

/// The topic holding every transactional id's state.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// How long a transactional id with no transaction open is remembered after its last use
/// (Kafka's `transactional.id.expiration.ms`): the bound on the coordinator's table of ids.
pub const TRANSACTIONAL_ID_EXPIRATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The longest transaction timeout accepted (Kafka's `transaction.max.timeout.ms`).
pub const MAX_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Why a transaction operation was refused. Each maps to one Kafka error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A newer epoch took over the transactional id (PRODUCER_FENCED / INVALID_PRODUCER_EPOCH).
    Fenced,
    /// The producer id is not the one the transactional id has (INVALID_PRODUCER_ID_MAPPING).
    UnknownProducer,
    /// The operation does not fit the transaction's state (INVALID_TXN_STATE).
    InvalidState,
    /// The transaction is still being ended; retry (CONCURRENT_TRANSACTIONS).
    Concurrent,
    /// The timeout is out of range (INVALID_TRANSACTION_TIMEOUT).
    InvalidTimeout,
    /// A partition of the transaction does not exist (UNKNOWN_TOPIC_OR_PARTITION).
    UnknownPartition,
    /// The log failed while storing the transaction's state or markers.
    Storage,
    /// This broker stopped leading the coordinator's partition (NOT_COORDINATOR): the client
    /// finds the new coordinator and retries there.
    NotCoordinator,
    /// The transaction's state did not reach the in-sync replicas in time
    /// (COORDINATOR_NOT_AVAILABLE, as Kafka answers): the client retries the same request.
    Unavailable,
    /// The transaction's end is decided and stored, but not every partition holds its marker
    /// yet: it completes in the background; retry (CONCURRENT_TRANSACTIONS).
    MarkersPending,
}

/// A refused transaction operation: why, and a message naming the values involved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnError {
    /// The kind of refusal.
    pub refusal: Refusal,
    /// What was wrong.
    pub message: String,
}

impl std::fmt::Display for TxnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<TxnError> for Error {
    fn from(e: TxnError) -> Self {
        match e.refusal {
            Refusal::Fenced => Error::ProducerFenced(e.message),
            _ => Error::Transaction(e.message),
        }
    }
}

/// A partition's refusal of a transaction's write: a fenced epoch, or the log failing.
impl From<Error> for TxnError {
    fn from(e: Error) -> Self {
        match e {
            Error::ProducerFenced(message) | Error::InvalidProducerEpoch(message) => {
                TxnError { refusal: Refusal::Fenced, message }
            }
            e => storage(e),
        }
    }
}

fn refuse<T>(refusal: Refusal, message: impl Into<String>) -> std::result::Result<T, TxnError> {
    Err(TxnError { refusal, message: message.into() })
}

fn storage(e: Error) -> TxnError {
    let refusal = match e {
        Error::NotLeader { .. } => Refusal::NotCoordinator,
        Error::NotReplicated { .. } | Error::Timeout(_) => Refusal::Unavailable,
        _ => Refusal::Storage,
    };
    TxnError { refusal, message: e.to_string() }
}

/// A transactional id's state, as Kafka names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnPhase {
    /// No transaction has begun since the last one ended (or ever).
    Empty,
    /// A transaction is open: partitions or groups were added to it.
    Ongoing,
    /// Committing: the decision is stored, markers are being written.
    PrepareCommit,
    /// Aborting: the decision is stored, markers are being written.
    PrepareAbort,
    /// The last transaction committed.
    CompleteCommit,
    /// The last transaction aborted.
    CompleteAbort,
}

/// What `__transaction_state` stores for one transactional id (as JSON; see FORMAT.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct TxnRecord {
    producer_id: i64,
    producer_epoch: i16,
    timeout_ms: u64,
    phase: TxnPhase,
    /// The partitions written in the open (or ending) transaction.
    partitions: BTreeSet<(String, u32)>,
    /// The groups whose offsets the transaction commits: their markers go to the groups'
    /// partitions of `__consumer_offsets`, where the offsets wait. (State stored by earlier
    /// versions carried the offsets here; those are applied when such a transaction commits.)
    offsets: BTreeMap<String, Vec<PendingOffset>>,
    /// When the open transaction began (ms since the epoch).
    started_ms: i64,
    /// When this state was stored (ms since the epoch): the id expires
    /// `TRANSACTIONAL_ID_EXPIRATION` after it unless a transaction is open.
    #[serde(default)]
    updated_ms: i64,
}

/// An offset committed in an open transaction. Stores before leader epochs were kept wrote
/// `[topic, partition, offset, metadata]` arrays, which still read (with an unknown epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PendingOffset {
    topic: String,
    partition: u32,
    offset: i64,
    metadata: String,
    #[serde(default = "unknown_epoch")]
    leader_epoch: i32,
}

fn unknown_epoch() -> i32 {
    -1
}

/// The transaction of one transactional id, as `describe` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnDescription {
    /// The transactional id.
    pub transactional_id: String,
    /// Its producer id.
    pub producer_id: i64,
    /// Its current epoch.
    pub producer_epoch: i16,
    /// Its state.
    pub phase: TxnPhase,
    /// The partitions in its open transaction.
    pub partitions: Vec<TopicPartition>,
}

#[derive(Debug)]
struct Entry {
    record: Option<TxnRecord>,
}

/// The transaction coordinator of one log. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Transactions {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    log: Log,
    offsets: GroupOffsets,
    participants: Arc<dyn Participants>,
    entries: SyncMutex<HashMap<String, Arc<Mutex<Entry>>>>,
    loaded: tokio::sync::OnceCell<()>,
}

/// A fresh producer id, unique across restarts: milliseconds since the epoch (`now_ms`, from the
/// log's clock) with a counter.
pub fn new_producer_id(now_ms: i64) -> i64 {
    static NEXT: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    let now = now_ms;
    ((now & ((1 << 46) - 1)) << 16) | (NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & 0xffff)
}

impl Transactions {
    /// Now, by the log's clock.
    fn now_ms(&self) -> i64 {
        self.inner.log.clock().now_ms()
    }

    /// A coordinator over `log`, committing transactional offsets to `offsets`. Its state is read
    /// from `__transaction_state` by [`Transactions::load`] (or at first use).
    pub fn new(log: Log, offsets: GroupOffsets) -> Self {
        let participants = Arc::new(LocalParticipants::new(log.clone(), offsets.clone()));
        Self::with_participants(log, offsets, participants)
    }

    /// Like [`Transactions::new`], reaching the partitions of its transactions through
    /// `participants`.
    pub fn with_participants(log: Log, offsets: GroupOffsets, participants: Arc<dyn Participants>) -> Self {
        Transactions {
            inner: Arc::new(Inner {
                log,
                offsets,
                participants,
                entries: SyncMutex::new(HashMap::new()),
                loaded: tokio::sync::OnceCell::new(),
            }),
        }
    }

    /// Reads every transactional id's state and finishes the transactions a previous run had
    /// decided but not completed. Runs once; later calls return at once.
    pub async fn load(&self) -> Result<()> {
        self.inner.loaded.get_or_try_init(|| self.load_once()).await.map(|_| ())
    }

    /// Loads the state again from `__transaction_state`, in place of what this coordinator
    /// had: it took the topic over (in a cluster, it became its leader), and its copy is now the
    /// transactions' truth. Decided transactions are completed, as after a restart.
    pub async fn reload(&self) -> Result<()> {
        if self.inner.loaded.initialized() {
            self.load_once().await
        } else {
            self.load().await
        }
    }

    /// Forgets the state: this broker no longer coordinates the transactions (another leads
    /// `__transaction_state`), so nothing it remembers may be acted on, and a later
    /// [`Transactions::reload`] reads it afresh.
    pub fn unload(&self) {
        self.inner.entries.lock().expect("entries lock").clear();
    }

    async fn load_once(&self) -> Result<()> {
        let log = &self.inner.log;
        log.ensure_compacted_topic(TRANSACTION_STATE_TOPIC, 1).await?;
        let mut records: HashMap<String, TxnRecord> = HashMap::new();
        log.for_each_stored_batch(TRANSACTION_STATE_TOPIC, 0, |batch| {
            for record in batch.records()? {
                Self::read_record(&mut records, record?)?;
            }
            Ok(())
        })
        .await?;
        let n = records.len();
        {
            let mut entries = self.inner.entries.lock().expect("entries lock");
            entries.clear();
            for (id, record) in records {
                entries.insert(id, Arc::new(Mutex::new(Entry { record: Some(record) })));
            }
        }
        self.complete_loaded().await?;
        tracing::debug!(n, "transaction state loaded");
        Ok(())
    }

    /// Applies one record of `__transaction_state` to the state being loaded.
    fn read_record(records: &mut HashMap<String, TxnRecord>, record: freshet_log::batch::RecordView<'_>) -> Result<()> {
        let Some(key) = record.key else { return Ok(()) };
        let id = String::from_utf8(key.to_vec())
            .map_err(|_| Error::Decode("a transactional id that is not UTF-8".into()))?;
        // A tombstone: the id expired.
        let Some(value) = record.value else {
            records.remove(&id);
            return Ok(());
        };
        let mut state: TxnRecord = serde_json::from_slice(value)
            .map_err(|e| Error::Decode(format!("the state of transactional id {id:?}: {e}")))?;
        if state.updated_ms == 0 {
            // Stored before ids expired: its time is the record's.
            state.updated_ms = record.timestamp;
        }
        records.insert(id, state);
        Ok(())
    }

    /// Carries out the decisions stored before a crash or a change of coordinator.
    async fn complete_loaded(&self) -> Result<()> {
        for (id, entry) in self.all_entries() {
            let mut entry = entry.lock().await;
            let Some(record) = entry.record.clone() else { continue };
            let commit = match record.phase {
                TxnPhase::PrepareCommit => true,
                TxnPhase::PrepareAbort => false,
                _ => continue,
            };
            tracing::info!(transactional_id = %id, commit, "completing a transaction decided before the restart");
            match self.complete(&id, &mut entry, record, commit).await {
                Ok(_) => {}
                // Partitions on brokers not reachable yet: `complete_decided` retries.
                Err(e) if e.refusal == Refusal::MarkersPending => {
                    tracing::warn!(transactional_id = %id, error = %e, "a decided transaction's markers wait")
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn all_entries(&self) -> Vec<(String, Arc<Mutex<Entry>>)> {
        let entries = self.inner.entries.lock().expect("entries lock");
        entries.iter().map(|(id, e)| (id.clone(), e.clone())).collect()
    }

    async fn entry(&self, id: &str) -> std::result::Result<Arc<Mutex<Entry>>, TxnError> {
        self.load().await.map_err(storage)?;
        let mut entries = self.inner.entries.lock().expect("entries lock");
        Ok(entries.entry(id.to_owned()).or_insert_with(|| Arc::new(Mutex::new(Entry { record: None }))).clone())
    }

    /// Stores a transactional id's state; returns once it is durable.
    async fn persist(&self, id: &str, record: &mut TxnRecord) -> std::result::Result<(), TxnError> {
        record.updated_ms = self.now_ms();
        let value = serde_json::to_vec(record).map_err(|e| storage(Error::Internal(e.to_string())))?;
        let mut builder = BatchBuilder::default();
        builder.push(Some(id.as_bytes()), Some(&value), &[], self.now_ms());
        let log = &self.inner.log;
        let info = log.append(TRANSACTION_STATE_TOPIC, 0, builder.finish()).await.map_err(storage)?;
        log.wait_replicated(TRANSACTION_STATE_TOPIC, 0, &info, crate::group::COMMIT_TIMEOUT).await.map_err(storage)?;
        Ok(())
    }

    /// Kafka's InitProducerId with a transactional id: the producer id of `transactional_id`
    /// (a new one the first time) at a new epoch. A transaction the previous epoch left open is
    /// aborted first; the previous epoch is fenced from then on.
    pub async fn init_producer_id(
        &self,
        transactional_id: &str,
        timeout: Duration,
    ) -> std::result::Result<(i64, i16), TxnError> {
        if transactional_id.is_empty() {
            return refuse(Refusal::InvalidState, "an empty transactional id");
        }
        if timeout.is_zero() || timeout > MAX_TRANSACTION_TIMEOUT {
            return refuse(
                Refusal::InvalidTimeout,
                format!(
                    "transaction.timeout.ms = {} is outside 1..={} (transaction.max.timeout.ms)",
                    timeout.as_millis(),
                    MAX_TRANSACTION_TIMEOUT.as_millis()
                ),
            );
        }
        let entry = self.entry(transactional_id).await?;
        let mut entry = entry.lock().await;
        let mut record = match entry.record.clone() {
            None => TxnRecord {
                producer_id: new_producer_id(self.now_ms()),
                producer_epoch: -1,
                timeout_ms: timeout.as_millis() as u64,
                phase: TxnPhase::Empty,
                partitions: BTreeSet::new(),
                offsets: BTreeMap::new(),
                started_ms: 0,
                updated_ms: 0,
            },
            Some(record) => record,
        };
        if matches!(record.phase, TxnPhase::Ongoing | TxnPhase::PrepareAbort | TxnPhase::PrepareCommit) {
            // The previous incarnation's transaction ends here: aborted (or, if it had already been
            // decided, completed as decided), with a bumped epoch that fences it.
            let commit = record.phase == TxnPhase::PrepareCommit;
            if record.phase == TxnPhase::Ongoing {
                record.producer_epoch = record.producer_epoch.saturating_add(1);
                tracing::info!(%transactional_id, epoch = record.producer_epoch, "aborting the open transaction of a fenced producer");
            }
            record = self.complete(transactional_id, &mut entry, record, commit).await?;
        }
        if record.producer_epoch >= i16::MAX - 1 {
            // Epochs ran out: a new producer id starts again at 0.
            record.producer_id = new_producer_id(self.now_ms());
            record.producer_epoch = 0;
        } else {
            record.producer_epoch += 1;
        }
        record.timeout_ms = timeout.as_millis() as u64;
        record.phase = TxnPhase::Empty;
        record.partitions.clear();
        record.offsets.clear();
        self.persist(transactional_id, &mut record).await?;
        let answer = (record.producer_id, record.producer_epoch);
        entry.record = Some(record);
        Ok(answer)
    }

    /// The record of `transactional_id` if `producer_id` at `epoch` may act for it.
    fn current(
        transactional_id: &str,
        entry: &Entry,
        producer_id: i64,
        epoch: i16,
    ) -> std::result::Result<TxnRecord, TxnError> {
        let Some(record) = entry.record.clone() else {
            return refuse(
                Refusal::UnknownProducer,
                format!("transactional id {transactional_id:?} has no producer: call InitProducerId first"),
            );
        };
        if record.producer_id != producer_id {
            return refuse(
                Refusal::UnknownProducer,
                format!(
                    "transactional id {transactional_id:?} belongs to producer {}, not {producer_id}",
                    record.producer_id
                ),
            );
        }
        if epoch != record.producer_epoch {
            return refuse(
                Refusal::Fenced,
                format!(
                    "producer {producer_id} at epoch {epoch} is fenced: transactional id {transactional_id:?} is at epoch {}",
                    record.producer_epoch
                ),
            );
        }
        Ok(record)
    }

    /// Begins the transaction if none is open, for AddPartitionsToTxn and AddOffsetsToTxn.
    fn begin(record: &mut TxnRecord, transactional_id: &str, now_ms: i64) -> std::result::Result<bool, TxnError> {
        match record.phase {
            TxnPhase::Ongoing => Ok(false),
            TxnPhase::Empty | TxnPhase::CompleteCommit | TxnPhase::CompleteAbort => {
                record.phase = TxnPhase::Ongoing;
                record.started_ms = now_ms;
                Ok(true)
            }
            TxnPhase::PrepareCommit | TxnPhase::PrepareAbort => refuse(
                Refusal::Concurrent,
                format!("transactional id {transactional_id:?} is still ending its previous transaction"),
            ),
        }
    }

    /// Kafka's AddPartitionsToTxn: the producer will write to these partitions in its open
    /// transaction (beginning one if none is open).
    pub async fn add_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[TopicPartition],
    ) -> std::result::Result<(), TxnError> {
        let entry = self.entry(transactional_id).await?;
        let mut entry = entry.lock().await;
        let mut record = Self::current(transactional_id, &entry, producer_id, epoch)?;
        if let Some(tp) = partitions.iter().find(|tp| !self.inner.participants.exists(&tp.topic, tp.partition)) {
            return refuse(Refusal::UnknownPartition, format!("{tp} does not exist"));
        }
        let began = Self::begin(&mut record, transactional_id, self.now_ms())?;
        let before = record.partitions.len();
        record.partitions.extend(partitions.iter().map(|tp| (tp.topic.clone(), tp.partition)));
        if began || record.partitions.len() != before {
            self.persist(transactional_id, &mut record).await?;
        }
        entry.record = Some(record);
        Ok(())
    }

    /// Kafka's AddOffsetsToTxn: the transaction will commit offsets for `group`.
    pub async fn add_offsets(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
    ) -> std::result::Result<(), TxnError> {
        if group.is_empty() {
            return refuse(Refusal::InvalidState, "committing offsets in a transaction needs a group id");
        }
        let entry = self.entry(transactional_id).await?;
        let mut entry = entry.lock().await;
        let mut record = Self::current(transactional_id, &entry, producer_id, epoch)?;
        let began = Self::begin(&mut record, transactional_id, self.now_ms())?;
        if began || !record.offsets.contains_key(group) {
            record.offsets.entry(group.to_owned()).or_default();
            self.persist(transactional_id, &mut record).await?;
        }
        entry.record = Some(record);
        Ok(())
    }

    /// Kafka's TxnOffsetCommit, with the group's coordinator in this process: offsets that
    /// `group` commits when (and only if) the transaction commits. The group must have been added
    /// with [`Transactions::add_offsets`]; the offsets wait in `__consumer_offsets`
    /// ([`GroupOffsets::commit_transactional`]).
    pub async fn commit_offsets(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
        offsets: &BTreeMap<TopicPartition, OffsetAndMetadata>,
    ) -> std::result::Result<(), TxnError> {
        let entry = self.entry(transactional_id).await?;
        let entry = entry.lock().await;
        let record = Self::current(transactional_id, &entry, producer_id, epoch)?;
        if record.phase != TxnPhase::Ongoing || !record.offsets.contains_key(group) {
            return refuse(
                Refusal::InvalidState,
                format!("transactional id {transactional_id:?} has not added group {group:?} to an open transaction"),
            );
        }
        // Under the id's lock: the transaction cannot end while its offsets are being stored.
        Ok(self.inner.offsets.commit_transactional(group, producer_id, epoch, offsets).await?)
    }

    /// Kafka's EndTxn: commits or aborts the open transaction. Returns once every partition holds
    /// its marker and, on commit, the group offsets are committed.
    pub async fn end(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> std::result::Result<(), TxnError> {
        let entry = self.entry(transactional_id).await?;
        let mut entry = entry.lock().await;
        let record = Self::current(transactional_id, &entry, producer_id, epoch)?;
        match (record.phase, commit) {
            (TxnPhase::Ongoing, _) => {}
            // A retry of an end decided but not yet complete: its markers are written again.
            (TxnPhase::PrepareCommit, true) | (TxnPhase::PrepareAbort, false) => {}
            // A retry of an end that completed.
            (TxnPhase::CompleteCommit, true) | (TxnPhase::CompleteAbort, false) => return Ok(()),
            // An abort with nothing begun is a no-op, as in Kafka's client.
            (TxnPhase::Empty, false) => return Ok(()),
            (phase, _) => {
                return refuse(
                    Refusal::InvalidState,
                    format!(
                        "transactional id {transactional_id:?} cannot {} in state {phase:?}",
                        if commit { "commit" } else { "abort" }
                    ),
                )
            }
        }
        match self.complete(transactional_id, &mut entry, record, commit).await {
            // The outcome is stored: it holds, and its markers follow (as Kafka answers EndTxn
            // once the decision is durable). The id's next request waits for them.
            Err(e) if e.refusal == Refusal::MarkersPending => {
                tracing::warn!(%transactional_id, error = %e, "transaction decided; its markers are retried");
                Ok(())
            }
            result => result.map(|_| ()),
        }
    }

    /// Stores the decision, writes the markers, applies the offsets of a commit, and stores the
    /// outcome. Returns the completed record.
    async fn complete(
        &self,
        transactional_id: &str,
        entry: &mut Entry,
        mut record: TxnRecord,
        commit: bool,
    ) -> std::result::Result<TxnRecord, TxnError> {
        let prepare = if commit { TxnPhase::PrepareCommit } else { TxnPhase::PrepareAbort };
        if record.phase != prepare {
            record.phase = prepare;
            self.persist(transactional_id, &mut record).await?;
            entry.record = Some(record.clone());
        }
        // The partitions written, and the groups' partitions of `__consumer_offsets`, where
        // their offsets wait for this marker.
        let mut targets: Vec<(String, u32)> = record.partitions.iter().cloned().collect();
        targets.extend(
            record
                .offsets
                .keys()
                .map(|g| (crate::group::OFFSETS_TOPIC.to_owned(), self.inner.offsets.partition_for(g))),
        );
        targets.sort();
        targets.dedup();
        let written =
            self.inner.participants.write_markers(record.producer_id, record.producer_epoch, commit, &targets);
        if let Err(e) = written.await {
            return refuse(
                Refusal::MarkersPending,
                format!(
                    "transactional id {transactional_id:?}: the {} is decided but not every partition holds its marker yet: {e}",
                    if commit { "commit" } else { "abort" }
                ),
            );
        }
        if commit {
            // Offsets stored with the transaction's state by earlier versions.
            for (group, offsets) in record.offsets.iter().filter(|(_, o)| !o.is_empty()) {
                let offsets: BTreeMap<TopicPartition, OffsetAndMetadata> = offsets
                    .iter()
                    .map(|p| {
                        let mut o = OffsetAndMetadata::new(p.offset);
                        o.metadata = p.metadata.clone();
                        o.leader_epoch = p.leader_epoch;
                        (TopicPartition::new(p.topic.clone(), p.partition), o)
                    })
                    .collect();
                self.inner.offsets.commit(group, &offsets).await.map_err(storage)?;
            }
        }
        record.phase = if commit { TxnPhase::CompleteCommit } else { TxnPhase::CompleteAbort };
        record.partitions.clear();
        record.offsets.clear();
        self.persist(transactional_id, &mut record).await?;
        entry.record = Some(record.clone());
        Ok(record)
    }

    /// Writes again the markers of every transaction whose end was decided but whose markers
    /// did not all reach their partitions. Returns how many completed.
    pub async fn complete_decided(&self) -> usize {
        let mut n = 0;
        for (id, entry) in self.all_entries() {
            let Ok(mut entry) = entry.try_lock() else { continue };
            let Some(record) = entry.record.clone() else { continue };
            let commit = match record.phase {
                TxnPhase::PrepareCommit => true,
                TxnPhase::PrepareAbort => false,
                _ => continue,
            };
            match self.complete(&id, &mut entry, record, commit).await {
                Ok(_) => n += 1,
                Err(error) => {
                    tracing::debug!(transactional_id = %id, %error, "a decided transaction is still incomplete")
                }
            }
        }
        n
    }

    /// Aborts, and fences, every transaction open longer than its timeout. Returns how many.
    pub async fn abort_expired(&self, now_ms: i64) -> Result<usize> {
        let mut n = 0;
        for (id, entry) in self.all_entries() {
            let Ok(mut entry) = entry.try_lock() else { continue };
            let Some(mut record) = entry.record.clone() else { continue };
            if record.phase != TxnPhase::Ongoing || now_ms - record.started_ms <= record.timeout_ms as i64 {
                continue;
            }
            record.producer_epoch = record.producer_epoch.saturating_add(1);
            tracing::info!(transactional_id = %id, timeout_ms = record.timeout_ms, "aborting a transaction open past its timeout");
            match self.complete(&id, &mut entry, record, false).await {
                // Decided: its markers are retried by `complete_decided`.
                Ok(_) | Err(TxnError { refusal: Refusal::MarkersPending, .. }) => n += 1,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(n)
    }

    /// Forgets every transactional id without an open transaction whose state was last stored
    /// more than `expiration` before `now_ms` (a tombstone in `__transaction_state`, so it stays
    /// forgotten after a restart). Returns how many.
    pub async fn expire_ids(&self, now_ms: i64, expiration: Duration) -> Result<usize> {
        let mut n = 0;
        for (id, shared) in self.all_entries() {
            let Ok(mut entry) = shared.try_lock() else { continue };
            let Some(record) = &entry.record else { continue };
            let idle = matches!(record.phase, TxnPhase::Empty | TxnPhase::CompleteCommit | TxnPhase::CompleteAbort);
            if !idle || now_ms.saturating_sub(record.updated_ms) <= expiration.as_millis() as i64 {
                continue;
            }
            let mut builder = BatchBuilder::default();
            builder.push(Some(id.as_bytes()), None, &[], now_ms);
            self.inner.log.append(TRANSACTION_STATE_TOPIC, 0, builder.finish()).await?;
            tracing::info!(transactional_id = %id, "transactional id expired (transactional.id.expiration.ms)");
            entry.record = None;
            drop(entry);
            // Requests take an entry from the map under its lock: with no other holder (the map
            // and this loop), none is waiting for it. One that is finds the id forgotten, and
            // starts it anew.
            let mut entries = self.inner.entries.lock().expect("entries lock");
            if Arc::strong_count(&shared) == 2 {
                entries.remove(&id);
            }
            n += 1;
        }
        Ok(n)
    }

    /// Runs [`Transactions::complete_decided`], [`Transactions::abort_expired`] and
    /// [`Transactions::expire_ids`] every `interval`
    /// while the coordinator lives.
    pub fn start_expiry(&self, interval: Duration) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(inner) = weak.upgrade() else { return };
                let this = Transactions { inner };
                this.complete_decided().await;
                if let Err(error) = this.abort_expired(this.now_ms()).await {
                    tracing::warn!(%error, "aborting expired transactions failed");
                }
                if let Err(error) = this.expire_ids(this.now_ms(), TRANSACTIONAL_ID_EXPIRATION).await {
                    tracing::warn!(%error, "expiring transactional ids failed");
                }
            }
        });
    }

    /// Every transactional id's state.
    pub async fn describe(&self) -> Vec<TxnDescription> {
        let mut out = Vec::new();
        for (id, entry) in self.all_entries() {
            let entry = entry.lock().await;
            if let Some(r) = &entry.record {
                out.push(TxnDescription {
                    transactional_id: id,
                    producer_id: r.producer_id,
                    producer_epoch: r.producer_epoch,
                    phase: r.phase,
                    partitions: r.partitions.iter().map(|(t, p)| TopicPartition::new(t.clone(), *p)).collect(),
                });
            }
        }
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        out
    }
}
