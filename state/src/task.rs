//! The stores of one task: where they live, their checkpoint, their restore.
//!
//! A task's stores live in `<state dir>/<application id>/<task id>/`, which holds a `.lock` file
//! (an exclusive lock for as long as the task is open, so two processes never share the
//! directory), the [`checkpoint`] file, and `rocksdb/<store>/` for each RocksDB
//! store. Opening a store restores it: from the checkpointed changelog offset when the store is on
//! disk and the checkpoint names it, otherwise from the start of the changelog into an emptied
//! store. [`TaskState::commit`] flushes every store (cache, changelog, backend) and only then
//! writes the checkpoint.

use std::any::Any;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use freshet_core::TopicPartition;

use crate::backend::Backend;
use crate::bytes::BytesStore;
use crate::changelog::{
    changelog_topic, restore, ChangeLogger, ChangelogKind, Changelogs, RestoreListener, RestoreProgress,
};
use crate::checkpoint::{self, Offsets, CHECKPOINT_FILE};
use crate::error::{Error, Result};
use crate::keys::KeySchema;
use crate::kv::KeyValueStore;
use crate::segments::Segments;
use crate::serde::StateSerde;
use crate::session::SessionStore;
use crate::stack::StoreStack;
use crate::window::WindowStore;

/// Where a task keeps its stores and how they reach their changelogs.
#[derive(Clone)]
pub struct TaskConfig {
    /// The state directory of the process.
    pub state_dir: PathBuf,
    /// The application id: changelog topics are `<application id>-<store>-changelog`.
    pub application_id: String,
    /// The task id, e.g. `0_3` (sub-topology 0, partition 3).
    pub task_id: String,
    /// The changelog partition of this task's stores (the task's input partition).
    pub partition: u32,
    /// How many partitions changelog topics must have (the input topics' partition count).
    pub n_partitions: u32,
    /// Where stores live.
    pub backend: Backend,
    /// The record-cache budget of each cached store, in bytes.
    pub cache_bytes_per_store: usize,
    /// Bytes of changelog writes sent in one request (the producer splits it into batches under
    /// `max.message.bytes`); requests go out one after another, so this is also what one
    /// acknowledgement (one fsync, on the embedded log) covers.
    pub changelog_batch_bytes: usize,
    /// Changelog access; `None` runs every store without a changelog.
    pub changelogs: Option<Changelogs>,
    /// Create missing changelog topics (otherwise a missing topic is an error).
    pub create_changelogs: bool,
    /// Told about every restore.
    pub restore_listener: Option<Arc<dyn RestoreListener>>,
    /// The task runs exactly-once: its changelog writes belong to transactions, so between
    /// commits its stores may hold writes a transaction will not commit. The checkpoint is then
    /// removed when the task opens and written only by a clean [`TaskState::close`] (after the
    /// last transaction committed); a crash leaves none, and the stores are rebuilt from their
    /// changelogs, which hold only what committed.
    pub exactly_once: bool,
}

impl std::fmt::Debug for TaskConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskConfig")
            .field("state_dir", &self.state_dir)
            .field("application_id", &self.application_id)
            .field("task_id", &self.task_id)
            .field("partition", &self.partition)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl TaskConfig {
    /// A config with Kafka Streams' defaults: 10 MiB of cache per store, 4 MiB changelog requests,
    /// changelog topics created when missing.
    pub fn new(
        state_dir: impl Into<PathBuf>,
        application_id: &str,
        task_id: &str,
        partition: u32,
        n_partitions: u32,
        backend: Backend,
        changelogs: Option<Changelogs>,
    ) -> Self {
        TaskConfig {
            state_dir: state_dir.into(),
            application_id: application_id.to_string(),
            task_id: task_id.to_string(),
            partition,
            n_partitions,
            backend,
            cache_bytes_per_store: 10 << 20,
            changelog_batch_bytes: 4 << 20,
            changelogs,
            create_changelogs: true,
            restore_listener: None,
            exactly_once: false,
        }
    }
}

/// How one store is layered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Write to a changelog topic and restore from it.
    pub logging: bool,
    /// Put a record cache in front.
    pub caching: bool,
    /// Keep what the cache writes down (evictions and commit flushes) for `take_evicted`, which
    /// the caller must then drain (the streams layer does, to forward them downstream).
    pub report_evicted: bool,
}

impl StoreOptions {
    /// With or without changelog and cache, not reporting evictions.
    pub fn new(logging: bool, caching: bool) -> Self {
        StoreOptions { logging, caching, report_evicted: false }
    }
}

impl Default for StoreOptions {
    /// Changelogged and cached, as Kafka Streams' stores are by default.
    fn default() -> Self {
        StoreOptions::new(true, true)
    }
}

/// The shape of a window store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowOptions {
    /// How long windows are kept, in stream time (window size plus grace, at least).
    pub retention_ms: i64,
    /// Window size (for the window ends returned).
    pub window_size_ms: i64,
    /// Keep every put of a key and window (for joins) instead of the latest.
    pub retain_duplicates: bool,
}

trait AnyStore: Send + std::fmt::Debug {
    fn stack_mut(&mut self) -> &mut StoreStack;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<K: StateSerde, V: StateSerde> AnyStore for KeyValueStore<K, V> {
    fn stack_mut(&mut self) -> &mut StoreStack {
        &mut self.stack
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

impl<K: StateSerde, V: StateSerde> AnyStore for WindowStore<K, V> {
    fn stack_mut(&mut self) -> &mut StoreStack {
        &mut self.stack
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

impl<K: StateSerde + Clone, V: StateSerde> AnyStore for SessionStore<K, V> {
    fn stack_mut(&mut self) -> &mut StoreStack {
        &mut self.stack
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// The open stores of one task (see the module docs).
#[derive(Debug)]
pub struct TaskState {
    config: TaskConfig,
    dir: PathBuf,
    _lock: File,
    checkpoint: Offsets,
    stores: BTreeMap<String, Box<dyn AnyStore>>,
    restores: Vec<RestoreProgress>,
}

impl TaskState {
    /// Opens (creating) the task's directory, locks it and reads its checkpoint.
    pub fn open(config: TaskConfig) -> Result<Self> {
        let dir = config.state_dir.join(&config.application_id).join(&config.task_id);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let lock_path = dir.join(".lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(Error::Locked { path: dir }),
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&lock_path, e)),
        }
        let path = dir.join(CHECKPOINT_FILE);
        let checkpoint = checkpoint::read(&path)?.unwrap_or_default();
        if config.exactly_once {
            // Read, then removed before any uncommitted write can reach a store.
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&path, e)),
                _ => {}
            }
            File::open(&dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(&dir, e))?;
        }
        Ok(TaskState { config, dir, _lock: lock, checkpoint, stores: BTreeMap::new(), restores: Vec::new() })
    }

    /// The task's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The offsets of the last checkpoint read or written.
    pub fn checkpointed(&self) -> &Offsets {
        &self.checkpoint
    }

    /// What each store's restore did when it was opened.
    pub fn restores(&self) -> &[RestoreProgress] {
        &self.restores
    }

    fn store_path(&self, name: &str) -> PathBuf {
        self.dir.join("rocksdb").join(name)
    }

    fn check_name(&self, name: &str) -> Result<()> {
        let valid = !name.is_empty()
            && name.len() <= 200
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            && name != "."
            && name != "..";
        if !valid {
            return Err(Error::InvalidConfig {
                key: "store.name",
                value: name.to_string(),
                reason: "store names are 1 to 200 of [a-zA-Z0-9._-] (they name directories and topics)".into(),
            });
        }
        if self.stores.contains_key(name) {
            return Err(Error::InvalidConfig {
                key: "store.name",
                value: name.to_string(),
                reason: "this task already has a store of that name".into(),
            });
        }
        Ok(())
    }

    /// Opens a store's backend. A changelogged store whose RocksDB files cannot be opened (damaged,
    /// or written by an incompatible version) is deleted and rebuilt from its changelog, as the
    /// changelog is the store's record; the second value says so.
    fn open_backend(
        &self,
        name: &str,
        options: StoreOptions,
        open: impl Fn() -> Result<Box<dyn BytesStore>>,
    ) -> Result<(Box<dyn BytesStore>, bool)> {
        match open() {
            Err(Error::RocksDb { source, path, .. }) if options.logging && self.config.changelogs.is_some() => {
                tracing::warn!(
                    store = name, path = %path.display(), error = %source,
                    "cannot open the store's RocksDB files; deleting them to rebuild the store from its changelog"
                );
                let dir = self.store_path(name);
                match std::fs::remove_dir_all(&dir) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&dir, e)),
                    _ => {}
                }
                Ok((open()?, true))
            }
            other => Ok((other?, false)),
        }
    }

    /// Layers `inner`, ensures and replays the changelog (from its start when `wiped`).
    fn build(
        &mut self,
        name: &str,
        (mut inner, wiped): (Box<dyn BytesStore>, bool),
        kind: ChangelogKind,
        options: StoreOptions,
    ) -> Result<StoreStack> {
        let cache = options.caching.then_some(self.config.cache_bytes_per_store);
        let changelogs = match (&self.config.changelogs, options.logging) {
            (Some(c), true) => c.clone(),
            _ => return Ok(StoreStack::new(name, inner, None, cache, options.report_evicted)),
        };
        let topic = changelog_topic(&self.config.application_id, name);
        changelogs.ensure_topic(name, &topic, self.config.n_partitions, &kind, self.config.create_changelogs)?;
        let tp = TopicPartition::new(topic, self.config.partition);
        let (log_start, end) = changelogs.bounds(name, &tp)?;
        let checkpointed = if wiped { None } else { self.checkpoint.get(&tp) };
        let start = match (inner.persistent(), checkpointed) {
            (true, Some(&offset)) if (log_start..=end).contains(&offset) => offset,
            (true, Some(&offset)) => {
                tracing::warn!(
                    store = name,
                    checkpoint = offset,
                    log_start,
                    end,
                    "checkpointed offset is outside the changelog; restoring the store from the beginning"
                );
                inner.clear()?;
                log_start
            }
            (true, None) => {
                inner.clear()?;
                log_start
            }
            (false, _) => log_start,
        };
        let listener = self.config.restore_listener.as_deref();
        let progress = restore(name, &changelogs, &tp, start, end, &mut *inner, listener)?;
        self.restores.push(progress);
        let mut logger = ChangeLogger::new(name, changelogs, tp, self.config.changelog_batch_bytes);
        logger.set_next_offset(end);
        Ok(StoreStack::new(name, inner, Some(logger), cache, options.report_evicted))
    }

    /// Opens, restores and registers a key-value store.
    pub fn add_kv_store<K: StateSerde, V: StateSerde>(&mut self, name: &str, options: StoreOptions) -> Result<()> {
        self.check_name(name)?;
        let path = self.store_path(name);
        let inner = self.open_backend(name, options, || self.config.backend.open(name, &path))?;
        let stack = self.build(name, inner, ChangelogKind::KeyValue, options)?;
        self.stores.insert(name.to_string(), Box::new(KeyValueStore::<K, V>::new(stack)));
        Ok(())
    }

    fn open_segments(
        &self,
        name: &str,
        options: StoreOptions,
        schema: KeySchema,
        retention_ms: i64,
        interval_ms: i64,
    ) -> Result<(Box<dyn BytesStore>, bool)> {
        let path = self.store_path(name);
        self.open_backend(name, options, || {
            let segments = Segments::open(name, &path, self.config.backend.clone(), schema, retention_ms, interval_ms)?;
            Ok(Box::new(segments) as Box<dyn BytesStore>)
        })
    }

    /// Opens, restores and registers a window store.
    pub fn add_window_store<K: StateSerde, V: StateSerde>(
        &mut self,
        name: &str,
        window: WindowOptions,
        options: StoreOptions,
    ) -> Result<()> {
        self.check_name(name)?;
        let schema = KeySchema::Window { with_seq: window.retain_duplicates };
        let interval = Segments::default_interval_ms(window.retention_ms);
        let inner = self.open_segments(name, options, schema, window.retention_ms, interval)?;
        let kind = ChangelogKind::Windowed { retention_ms: window.retention_ms };
        let stack = self.build(name, inner, kind, options)?;
        let store =
            WindowStore::<K, V>::new(stack, window.retention_ms, window.window_size_ms, window.retain_duplicates);
        self.stores.insert(name.to_string(), Box::new(store));
        Ok(())
    }

    /// Opens, restores and registers a session store keeping sessions `retention_ms` past their end.
    pub fn add_session_store<K: StateSerde + Clone, V: StateSerde>(
        &mut self,
        name: &str,
        retention_ms: i64,
        options: StoreOptions,
    ) -> Result<()> {
        self.check_name(name)?;
        let interval = Segments::default_interval_ms(retention_ms);
        let inner = self.open_segments(name, options, KeySchema::Session, retention_ms, interval)?;
        let stack = self.build(name, inner, ChangelogKind::Windowed { retention_ms }, options)?;
        self.stores.insert(name.to_string(), Box::new(SessionStore::<K, V>::new(stack, retention_ms)));
        Ok(())
    }

    fn store_mut<S: 'static>(&mut self, name: &str, kind: &str) -> Result<&mut S> {
        let store = self.stores.get_mut(name).ok_or_else(|| Error::InvalidConfig {
            key: "store.name",
            value: name.to_string(),
            reason: "this task has no store of that name".into(),
        })?;
        store.as_any_mut().downcast_mut::<S>().ok_or_else(|| Error::InvalidConfig {
            key: "store.name",
            value: name.to_string(),
            reason: format!("the store is not a {kind} of these key and value types"),
        })
    }

    /// A registered key-value store.
    pub fn kv_store<K: StateSerde, V: StateSerde>(&mut self, name: &str) -> Result<&mut KeyValueStore<K, V>> {
        self.store_mut(name, "key-value store")
    }

    /// A registered window store.
    pub fn window_store<K: StateSerde, V: StateSerde>(&mut self, name: &str) -> Result<&mut WindowStore<K, V>> {
        self.store_mut(name, "window store")
    }

    /// A registered session store.
    pub fn session_store<K: StateSerde + Clone, V: StateSerde>(
        &mut self,
        name: &str,
    ) -> Result<&mut SessionStore<K, V>> {
        self.store_mut(name, "session store")
    }

    /// Flushes every store (cache, changelog, backend), then writes the checkpoint (exactly-once:
    /// only remembers it, for [`TaskState::close`]).
    pub fn commit(&mut self) -> Result<()> {
        let mut offsets = self.checkpoint.clone();
        for store in self.stores.values_mut() {
            let stack = store.stack_mut();
            let persistent = stack.inner().persistent();
            if let Some((tp, offset)) = stack.commit()? {
                if persistent {
                    offsets.insert(tp, offset);
                }
            }
        }
        if self.config.exactly_once {
            self.checkpoint = offsets;
        } else if offsets != self.checkpoint || !self.dir.join(CHECKPOINT_FILE).exists() {
            checkpoint::write(&self.dir.join(CHECKPOINT_FILE), &offsets)?;
            self.checkpoint = offsets;
        }
        Ok(())
    }

    /// Brings every changelogged store up to its changelog's current end and checkpoints: how a
    /// standby copy follows its active task without reopening its stores. For a task nothing
    /// processes here. Returns the records applied.
    pub fn catch_up(&mut self) -> Result<u64> {
        let mut applied = 0;
        for store in self.stores.values_mut() {
            if let Some(progress) = store.stack_mut().catch_up()? {
                applied += progress.n_records;
            }
        }
        self.commit()?;
        Ok(applied)
    }

    /// Flushes every store (cache, changelog, backend) without writing the checkpoint: the state a
    /// crash between a flush and its checkpoint leaves behind. For crash tests.
    #[doc(hidden)]
    pub fn flush_without_checkpoint(&mut self) -> Result<()> {
        for store in self.stores.values_mut() {
            store.stack_mut().commit()?;
        }
        Ok(())
    }

    /// Waits until every store's backend has finished its background work (RocksDB compactions),
    /// so that a benchmark reads every store in the same settled state.
    #[doc(hidden)]
    pub fn wait_for_background_work(&mut self) -> Result<()> {
        for store in self.stores.values_mut() {
            store.stack_mut().inner().wait_for_background_work()?;
        }
        Ok(())
    }

    /// The names of the open stores, in order.
    pub fn store_names(&self) -> impl Iterator<Item = &str> {
        self.stores.keys().map(String::as_str)
    }

    /// Commits and closes every store, releasing the directory. Exactly-once, call it only once
    /// the task's last transaction committed: it writes the checkpoint.
    pub fn close(mut self) -> Result<()> {
        self.commit()?;
        if self.config.exactly_once {
            checkpoint::write(&self.dir.join(CHECKPOINT_FILE), &self.checkpoint)?;
        }
        self.stores.clear();
        Ok(())
    }

    /// Closes every store without flushing or checkpointing, releasing the directory: for a task
    /// whose last writes may not have committed (exactly-once, after a failure or a fencing).
    /// Without a checkpoint, the next open rebuilds the stores from their changelogs.
    pub fn close_dirty(mut self) {
        self.stores.clear();
    }
}
