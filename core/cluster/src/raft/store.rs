//! openraft's storage traits over a [`Disk`]: the log store (entries and vote) and the state
//! machine (the metadata image and its snapshots).

// openraft's traits fix the error type (`StorageError`, large); this module only passes it on.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::{self, Cursor};
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    Entry, EntryPayload, LogId, LogState, RaftLogReader, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::disk::Disk;
use super::{NodeId, Types};
use crate::image::MetadataImage;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

type StoreResult<T> = Result<T, StorageError<NodeId>>;

/// Runs `f` on the disk: on a blocking thread when the disk waits on a device.
async fn io<T: Send + 'static>(
    disk: &Arc<dyn Disk>,
    f: impl FnOnce(&dyn Disk) -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    if disk.blocking() {
        let disk = disk.clone();
        tokio::task::spawn_blocking(move || f(disk.as_ref())).await.map_err(io::Error::other)?
    } else {
        f(disk.as_ref())
    }
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write(&e).into()
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read(&e).into()
}

/// The Raft log and vote: kept whole in memory, written through to the disk.
#[derive(Clone, Debug)]
pub(crate) struct LogStore {
    disk: Arc<dyn Disk>,
    inner: Arc<Mutex<LogInner>>,
}

#[derive(Debug, Default)]
struct LogInner {
    entries: BTreeMap<u64, Entry<Types>>,
    vote: Option<Vote<NodeId>>,
    last_purged: Option<LogId<NodeId>>,
}

impl LogStore {
    /// The log as the disk holds it; `purged` is the snapshot's last entry, if any.
    pub(crate) fn load(
        disk: Arc<dyn Disk>,
        stored: &super::disk::Stored,
        purged: Option<LogId<NodeId>>,
    ) -> io::Result<Self> {
        let mut inner = LogInner { last_purged: purged, ..Default::default() };
        if let Some(v) = &stored.vote {
            inner.vote = Some(serde_json::from_slice(v).map_err(io::Error::other)?);
        }
        for (index, bytes) in &stored.entries {
            let entry: Entry<Types> = serde_json::from_slice(bytes).map_err(io::Error::other)?;
            if purged.is_some_and(|p| *index <= p.index) {
                continue;
            }
            inner.entries.insert(*index, entry);
        }
        Ok(Self { disk, inner: Arc::new(Mutex::new(inner)) })
    }

    fn with<T>(&self, f: impl FnOnce(&mut LogInner) -> T) -> T {
        f(&mut lock(&self.inner))
    }
}

impl RaftLogReader<Types> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> StoreResult<Vec<Entry<Types>>> {
        Ok(self.with(|i| i.entries.range(range).map(|(_, e)| e.clone()).collect()))
    }
}

impl RaftLogStorage<Types> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StoreResult<LogState<Types>> {
        Ok(self.with(|i| {
            let last = i.entries.values().next_back().map(|e| e.log_id).or(i.last_purged);
            LogState { last_purged_log_id: i.last_purged, last_log_id: last }
        }))
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StoreResult<()> {
        let bytes = serde_json::to_vec(vote).map_err(write_err)?;
        io(&self.disk, move |d| d.save_vote(&bytes)).await.map_err(write_err)?;
        self.with(|i| i.vote = Some(*vote));
        Ok(())
    }

    async fn read_vote(&mut self) -> StoreResult<Option<Vote<NodeId>>> {
        Ok(self.with(|i| i.vote))
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<Types>) -> StoreResult<()>
    where
        I: IntoIterator<Item = Entry<Types>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry<Types>> = entries.into_iter().collect();
        let mut framed = Vec::with_capacity(entries.len());
        for e in &entries {
            framed.push((e.log_id.index, serde_json::to_vec(e).map_err(write_err)?));
        }
        let result = io(&self.disk, move |d| d.append(&framed)).await;
        if result.is_ok() {
            self.with(|i| i.entries.extend(entries.into_iter().map(|e| (e.log_id.index, e))));
        }
        let failed = result.as_ref().err().map(|e| io::Error::new(e.kind(), e.to_string()));
        callback.log_io_completed(result);
        failed.map_or(Ok(()), |e| Err(write_err(e)))
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        io(&self.disk, move |d| d.truncate(log_id.index)).await.map_err(write_err)?;
        self.with(|i| i.entries.split_off(&log_id.index));
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        io(&self.disk, move |d| d.purge(log_id.index)).await.map_err(write_err)?;
        self.with(|i| {
            i.entries = i.entries.split_off(&(log_id.index + 1));
            i.last_purged = Some(log_id);
        });
        Ok(())
    }
}

/// A snapshot as stored and sent: the image and where it stands in the log.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct SnapshotFile {
    pub(crate) meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    pub(crate) image: MetadataImage,
}

/// The state machine: the metadata image, published on every applied entry.
#[derive(Debug)]
pub(crate) struct StateMachine {
    disk: Arc<dyn Disk>,
    image: MetadataImage,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, openraft::BasicNode>,
    snapshot: Arc<Mutex<Option<SnapshotFile>>>,
    publish: watch::Sender<Arc<MetadataImage>>,
}

impl std::fmt::Debug for SnapshotFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotFile").field("meta", &self.meta).finish()
    }
}

impl StateMachine {
    /// The state machine at the disk's snapshot (or empty), publishing to `publish`.
    pub(crate) fn load(
        disk: Arc<dyn Disk>,
        stored: &super::disk::Stored,
        publish: watch::Sender<Arc<MetadataImage>>,
    ) -> io::Result<Self> {
        let mut sm = Self {
            disk,
            image: MetadataImage::default(),
            last_applied: None,
            membership: StoredMembership::default(),
            snapshot: Arc::default(),
            publish,
        };
        if let Some(bytes) = &stored.snapshot {
            let file: SnapshotFile = serde_json::from_slice(bytes).map_err(io::Error::other)?;
            sm.restore(file);
        }
        Ok(sm)
    }

    /// The snapshot's last entry, if the state machine starts from one.
    pub(crate) fn snapshot_log_id(&self) -> Option<LogId<NodeId>> {
        lock(&self.snapshot).as_ref().and_then(|s| s.meta.last_log_id)
    }

    fn restore(&mut self, mut file: SnapshotFile) {
        file.image.reindex();
        self.image = file.image.clone();
        self.last_applied = file.meta.last_log_id;
        self.membership = file.meta.last_membership.clone();
        *lock(&self.snapshot) = Some(file);
        self.publish.send_replace(Arc::new(self.image.clone()));
    }

    fn current(&self) -> StoreResult<Option<Snapshot<Types>>> {
        let slot = lock(&self.snapshot);
        let Some(file) = slot.as_ref() else { return Ok(None) };
        let bytes = serde_json::to_vec(file).map_err(read_err)?;
        Ok(Some(Snapshot { meta: file.meta.clone(), snapshot: Box::new(Cursor::new(bytes)) }))
    }
}

/// Builds a snapshot of the image as it stood when the builder was taken.
#[derive(Debug)]
pub(crate) struct SnapshotBuilder {
    disk: Arc<dyn Disk>,
    image: MetadataImage,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, openraft::BasicNode>,
    slot: Arc<Mutex<Option<SnapshotFile>>>,
}

impl RaftSnapshotBuilder<Types> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> StoreResult<Snapshot<Types>> {
        let id = self.last_applied.map_or_else(|| "0-0".to_owned(), |l| format!("{}-{}", l.leader_id, l.index));
        let meta =
            SnapshotMeta { last_log_id: self.last_applied, last_membership: self.membership.clone(), snapshot_id: id };
        let file = SnapshotFile { meta: meta.clone(), image: self.image.clone() };
        let bytes = serde_json::to_vec(&file).map_err(write_err)?;
        let stored = bytes.clone();
        io(&self.disk, move |d| d.save_snapshot(&stored)).await.map_err(write_err)?;
        *lock(&self.slot) = Some(file);
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(bytes)) })
    }
}

impl RaftStateMachine<Types> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> StoreResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, openraft::BasicNode>)> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StoreResult<Vec<u64>>
    where
        I: IntoIterator<Item = Entry<Types>> + Send,
        I::IntoIter: Send,
    {
        let mut replies = Vec::new();
        for entry in entries {
            let index = entry.log_id.index;
            match &entry.payload {
                EntryPayload::Normal(batch) => self.image.apply(index, batch),
                EntryPayload::Blank => self.image.advance(index, b"blank"),
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    self.image.advance(index, format!("{m:?}").as_bytes());
                }
            }
            self.last_applied = Some(entry.log_id);
            replies.push(index);
        }
        self.publish.send_replace(Arc::new(self.image.clone()));
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            disk: self.disk.clone(),
            image: self.image.clone(),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            slot: self.snapshot.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StoreResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StoreResult<()> {
        let bytes = snapshot.into_inner();
        let mut file: SnapshotFile = serde_json::from_slice(&bytes).map_err(read_err)?;
        file.meta = meta.clone();
        let stored = serde_json::to_vec(&file).map_err(write_err)?;
        io(&self.disk, move |d| d.save_snapshot(&stored)).await.map_err(write_err)?;
        self.restore(file);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StoreResult<Option<Snapshot<Types>>> {
        self.current()
    }
}
