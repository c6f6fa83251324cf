//! The RocksDB backend.
//!
//! Every store is its own RocksDB instance (a window or session store is one per time segment), as
//! Kafka Streams does: a store can be dropped, wiped or restored without touching the others.
//! Memory has one limit for the whole process: every instance opened with the same
//! [`RocksMemory`] shares one LRU block cache, and memtables are charged to that cache through one
//! write-buffer manager, so the block cache plus memtables stay within the limit the user sets.
//!
//! Every option is set explicitly in [`RocksMemory::options`] rather than left to RocksDB's
//! defaults, which change between releases. The write-ahead log is off: the changelog topic is
//! the store's durable record, and a checkpoint names a store only after [`BytesStore::flush`] has
//! written its memtables to SST files (see `crate::changelog` for why the store then never holds a
//! write the changelog lacks).
//!
//! Restores bypass the memtable: fetched changelog batches are gathered, as they are, in chunks
//! of [`RESTORE_CHUNK_BYTES`]; two threads each decode a chunk, sort it by key (the last write of
//! a key wins, as in the changelog) and write it as an SST file, and the files are ingested in
//! chunk order. Each ingested file is newer than everything before it, so chunk after chunk gives
//! the changelog's order. Compactions and write stalls are off during a restore; RocksDB compacts
//! the files afterwards in the background. A restoring store holds at most four chunks in memory
//! (two being written, one queued, one being gathered), and each thread a sorted copy of one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use rocksdb::{
    BlockBasedOptions, Cache, DBCompactionStyle, DBCompressionType, DBRawIteratorWithThreadMode, FlushOptions,
    LogLevel, Options, ReadOptions, WriteBatch, WriteBufferManager, WriteOptions, DB,
};

use crate::bytes::{BytesStore, KvIter, Replay, ScanRange, Write};
use crate::error::{Error, Result};

/// The memory budget RocksDB stores of a process share: one block cache and one write-buffer
/// budget charged to it.
#[derive(Clone)]
pub struct RocksMemory {
    limit_bytes: usize,
    restore_chunk_bytes: usize,
    cache: Cache,
    write_buffers: WriteBufferManager,
}

impl std::fmt::Debug for RocksMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksMemory")
            .field("limit_bytes", &self.limit_bytes)
            .field("restore_chunk_bytes", &self.restore_chunk_bytes)
            .field("write_buffer_usage", &self.write_buffers.get_usage())
            .finish()
    }
}

/// Level-0 file counts at which RocksDB slows and stops writes (outside restores).
const L0_SLOWDOWN_WRITES_TRIGGER: i32 = 20;
const L0_STOP_WRITES_TRIGGER: i32 = 36;

/// The memtable size of one store: small, because many stores share the budget and a flush at
/// every commit empties them anyway.
const WRITE_BUFFER_BYTES: usize = 16 << 20;

impl RocksMemory {
    /// A budget of `limit_bytes` for the block cache and memtables of every store opened with it
    /// (at least 8 MiB). Half of it at most goes to memtables.
    pub fn new(limit_bytes: usize) -> Result<Self> {
        if limit_bytes < 8 << 20 {
            return Err(Error::InvalidConfig {
                key: "state.memory.bytes",
                value: limit_bytes.to_string(),
                reason: "RocksDB needs at least 8 MiB (8388608 bytes) for its block cache and memtables".into(),
            });
        }
        let cache = Cache::new_lru_cache(limit_bytes);
        let write_buffers =
            WriteBufferManager::new_write_buffer_manager_with_cache(limit_bytes / 2, false, cache.clone());
        Ok(RocksMemory { limit_bytes, restore_chunk_bytes: RESTORE_CHUNK_BYTES, cache, write_buffers })
    }

    /// Sets the bytes of replayed writes gathered into one SST file in a restore (default
    /// [`RESTORE_CHUNK_BYTES`]); a restoring store holds up to four chunks, plus per-record
    /// overhead. At most 1 GiB.
    pub fn with_restore_chunk_bytes(mut self, bytes: usize) -> Self {
        self.restore_chunk_bytes = bytes.clamp(1, 1 << 30);
        self
    }

    /// The limit given.
    pub fn limit_bytes(&self) -> usize {
        self.limit_bytes
    }

    /// Bytes the block cache holds now (memtable reservations included).
    pub fn usage_bytes(&self) -> usize {
        self.cache.get_usage()
    }

    /// The options every Freshet store is opened with.
    pub fn options(&self) -> Options {
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&self.cache);
        table.set_block_size(4 << 10);
        table.set_format_version(5);
        table.set_bloom_filter(10.0, false);
        table.set_whole_key_filtering(true);
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);

        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_block_based_table_factory(&table);
        opts.set_write_buffer_manager(&self.write_buffers);
        opts.set_write_buffer_size(WRITE_BUFFER_BYTES);
        opts.set_max_write_buffer_number(3);
        opts.set_compaction_style(DBCompactionStyle::Level);
        opts.set_level_compaction_dynamic_level_bytes(true);
        opts.set_level_zero_file_num_compaction_trigger(4);
        opts.set_level_zero_slowdown_writes_trigger(L0_SLOWDOWN_WRITES_TRIGGER);
        opts.set_level_zero_stop_writes_trigger(L0_STOP_WRITES_TRIGGER);
        opts.set_target_file_size_base(64 << 20);
        opts.set_max_bytes_for_level_base(256 << 20);
        opts.set_compression_type(DBCompressionType::None);
        opts.set_bottommost_compression_type(DBCompressionType::Zstd);
        opts.set_max_background_jobs(2);
        opts.set_bytes_per_sync(1 << 20);
        opts.set_use_fsync(false);
        opts.set_max_open_files(-1);
        opts.set_max_total_wal_size(0);
        opts.set_log_level(LogLevel::Warn);
        opts.set_keep_log_file_num(2);
        opts.set_max_log_file_size(1 << 20);
        opts.set_stats_dump_period_sec(0);
        opts.set_max_manifest_file_size(64 << 20);
        opts
    }
}

/// Bytes of replayed writes gathered into one SST file during a restore, by default.
pub const RESTORE_CHUNK_BYTES: usize = 32 << 20;

/// Below this, the end of a restore goes through a write batch rather than an SST file.
const RESTORE_SST_MIN_BYTES: usize = 1 << 20;

/// A [`BytesStore`] in its own RocksDB instance.
pub struct RocksStore {
    name: String,
    path: PathBuf,
    options: Options,
    write_options: WriteOptions,
    db: Option<Arc<DB>>,
    restoring: Vec<Replay>,
    restoring_bytes: usize,
    restore_chunk_bytes: usize,
    ingester: Option<Ingester>,
    bulk_loading: bool,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore").field("name", &self.name).field("path", &self.path).finish()
    }
}

impl RocksStore {
    /// Opens (creating if needed) the store `name` in directory `path`.
    pub fn open(name: &str, path: impl Into<PathBuf>, memory: &RocksMemory) -> Result<Self> {
        let path = path.into();
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let options = memory.options();
        let db = open_db(name, &path, &options)?;
        let mut write_options = WriteOptions::default();
        write_options.disable_wal(true);
        write_options.set_sync(false);
        Ok(RocksStore {
            name: name.to_string(),
            path,
            options,
            write_options,
            db: Some(Arc::new(db)),
            restoring: Vec::new(),
            restoring_bytes: 0,
            restore_chunk_bytes: memory.restore_chunk_bytes,
            ingester: None,
            bulk_loading: false,
        })
    }

    fn set_options(&self, options: &[(&str, &str)]) -> Result<()> {
        self.db()?.set_options(options).map_err(|e| self.err(e))
    }

    /// Hands the gathered restore chunk to the ingest threads (started on first use): one sorts
    /// it and writes it as an SST file while this thread gathers the next; files are ingested
    /// strictly in chunk order.
    fn send_restoring(&mut self) -> Result<()> {
        let chunk = std::mem::take(&mut self.restoring);
        self.restoring_bytes = 0;
        if chunk.is_empty() {
            return Ok(());
        }
        if self.ingester.is_none() {
            self.ingester = Some(Ingester::start(self)?);
        }
        let ingester = self.ingester.as_mut().expect("started");
        let n = ingester.next_chunk;
        ingester.next_chunk += 1;
        if ingester.jobs.send((n, chunk)).is_err() {
            // Every thread stopped, on an error: collect it.
            return self.join_ingester();
        }
        Ok(())
    }

    fn join_ingester(&mut self) -> Result<()> {
        match self.ingester.take() {
            Some(ingester) => ingester.join(),
            None => Ok(()),
        }
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db(&self) -> Result<&DB> {
        self.db.as_deref().ok_or_else(|| Error::Closed(self.name.clone()))
    }

    fn err(&self, source: rocksdb::Error) -> Error {
        Error::RocksDb { store: self.name.clone(), path: self.path.clone(), source: Box::new(source) }
    }
}

/// Threads that turn restore chunks into SST files in parallel and ingest them in order.
struct Ingester {
    jobs: std::sync::mpsc::SyncSender<(u64, Vec<Replay>)>,
    threads: Vec<std::thread::JoinHandle<Result<()>>>,
    next_chunk: u64,
}

/// The next chunk to ingest, and whether a thread failed.
type Turn = Arc<(std::sync::Mutex<(u64, bool)>, std::sync::Condvar)>;

impl Ingester {
    fn start(store: &RocksStore) -> Result<Self> {
        let db = store.db.clone().ok_or_else(|| Error::Closed(store.name.clone()))?;
        let mut sst_options = store.options.clone();
        // Restore files are written once and compacted soon after the restore: compressing them
        // or building their bloom filters is wasted work (compaction writes both).
        sst_options.set_compression_type(DBCompressionType::None);
        sst_options.set_bottommost_compression_type(DBCompressionType::None);
        let mut table = BlockBasedOptions::default();
        table.set_block_size(16 << 10);
        table.set_format_version(5);
        sst_options.set_block_based_table_factory(&table);
        let (jobs, receiver) = std::sync::mpsc::sync_channel::<(u64, Vec<Replay>)>(1);
        let receiver = Arc::new(std::sync::Mutex::new(receiver));
        let turn: Turn = Arc::new((std::sync::Mutex::new((0, false)), std::sync::Condvar::new()));
        let mut threads = Vec::new();
        for t in 0..RESTORE_THREADS {
            let (db, sst_options, receiver, turn) = (db.clone(), sst_options.clone(), receiver.clone(), turn.clone());
            let (name, path) = (store.name.clone(), store.path.clone());
            let thread = std::thread::Builder::new()
                .name(format!("freshet-restore-{t}"))
                .spawn(move || {
                    let mut scratch = SstScratch::default();
                    loop {
                        let job = receiver.lock().expect("restore jobs").recv();
                        let Ok((n, chunk)) = job else { return Ok(()) };
                        let sst = path.join(format!("restore-{n}.sst"));
                        let rocks_err = |source: rocksdb::Error| Error::RocksDb {
                            store: name.clone(),
                            path: path.clone(),
                            source: Box::new(source),
                        };
                        let built = write_sst(&sst_options, &sst, chunk, &mut scratch, rocks_err);
                        let (lock, ready) = &*turn;
                        let mut state = lock.lock().expect("restore turn");
                        while state.0 != n && !state.1 {
                            state = ready.wait(state).expect("restore turn");
                        }
                        if state.1 {
                            let _ = std::fs::remove_file(&sst);
                            return Ok(()); // another thread failed and reports it
                        }
                        let result = built.and_then(|()| ingest_sst(&db, &sst).map_err(rocks_err));
                        match result {
                            Ok(()) => state.0 += 1,
                            Err(_) => state.1 = true,
                        }
                        ready.notify_all();
                        drop(state);
                        result?;
                    }
                })
                .map_err(|e| Error::io(&store.path, e))?;
            threads.push(thread);
        }
        Ok(Ingester { jobs, threads, next_chunk: 0 })
    }

    /// Waits for every chunk sent to be ingested; the first error, if any.
    fn join(self) -> Result<()> {
        drop(self.jobs);
        let mut result = Ok(());
        for thread in self.threads {
            let r = thread.join().expect("restore ingest thread panicked");
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}

/// Threads that write restore SST files.
const RESTORE_THREADS: usize = 2;

/// Buffers an ingest thread reuses from chunk to chunk (fresh ones would cost a page fault per
/// page of every chunk).
#[derive(Default)]
struct SstScratch {
    /// Each write's key prefix, key length and value length.
    sizes: Vec<(u64, u32, u32)>,
    /// The writes' keys and values, bucket by bucket.
    arena: Vec<u8>,
    entries: Vec<Entry>,
}

/// Restore chunks are split into `2^BUCKET_BITS` buckets by key (see [`write_sst`]).
const BUCKET_BITS: u32 = 8;
const N_BUCKETS: usize = 1 << BUCKET_BITS;

/// One write of a restore chunk, copied into the chunk's arena.
#[derive(Clone, Copy)]
struct Entry {
    /// The key's first 8 bytes, big-endian, zero-padded: most comparisons end here.
    prefix: u64,
    /// Position in the chunk: a later write of a key wins.
    seq: u32,
    /// Where the key starts in the arena; the value follows it.
    at: u32,
    key_len: u32,
    /// `u32::MAX` for a delete.
    value_len: u32,
}

const DELETE: u32 = u32::MAX;

fn key_prefix(k: &[u8]) -> u64 {
    let mut p = [0u8; 8];
    let n = k.len().min(8);
    p[..n].copy_from_slice(&k[..n]);
    u64::from_be_bytes(p)
}

/// A visitor of replayed writes: key, and value (`None` deletes).
type Visit<'a> = dyn FnMut(&[u8], Option<&[u8]>) + 'a;

/// Sorts a chunk of replayed writes by key (the last write of a key wins) and writes it as an
/// SST file.
///
/// The writes lie in fetched batches all over memory; visiting them in key order directly would
/// miss the CPU caches on nearly every record. Instead they are decoded twice in arrival order
/// (streaming through memory): once to size 256 buckets by the top bits of the key prefix in
/// which the chunk's keys differ, once to copy each write into its bucket (an MSD radix pass:
/// buckets come out in key order). Each bucket, small enough for the CPU's cache, is then read
/// through in order (so the hardware prefetcher brings it in), sorted and written.
fn write_sst(
    sst_options: &Options,
    sst: &Path,
    chunk: Vec<Replay>,
    scratch: &mut SstScratch,
    rocks_err: impl Fn(rocksdb::Error) -> Error,
) -> Result<()> {
    let SstScratch { sizes, arena, entries } = scratch;
    sizes.clear();
    let for_each = |f: &mut Visit<'_>| chunk.iter().try_for_each(|r| r.for_each(&mut *f));
    // Pass 1: each write's prefix and lengths, and the prefixes' range.
    let (mut min, mut max) = (u64::MAX, 0);
    for_each(&mut |k, v| {
        let p = key_prefix(k);
        (min, max) = (min.min(p), max.max(p));
        sizes.push((p, k.len() as u32, v.map_or(DELETE, |v| v.len() as u32)));
    })?;
    // Bits above the highest one in which prefixes differ are the same in all: the 8 bits from
    // it down order the buckets.
    let shift = match min ^ max {
        0 => 0,
        diff => (63 - diff.leading_zeros()).saturating_sub(BUCKET_BITS - 1),
    };
    let bucket = |p: u64| ((p >> shift) & (N_BUCKETS as u64 - 1)) as usize;
    let stored = |value_len: u32| if value_len == DELETE { 0 } else { value_len as usize };
    let mut counts = [0usize; N_BUCKETS + 1];
    let mut bytes = [0usize; N_BUCKETS + 1];
    for &(p, key_len, value_len) in sizes.iter() {
        let b = bucket(p) + 1;
        counts[b] += 1;
        bytes[b] += key_len as usize + stored(value_len);
    }
    for b in 1..=N_BUCKETS {
        counts[b] += counts[b - 1];
        bytes[b] += bytes[b - 1];
    }
    let bucket_starts = counts;
    let bytes_starts = bytes;
    // Pass 2: copy each write into its bucket.
    // Every byte and entry up to these lengths is written below: buffers from earlier chunks are
    // reused as they are (only growing ones are zeroed).
    if arena.len() < bytes[N_BUCKETS] {
        arena.resize(bytes[N_BUCKETS], 0);
    }
    if entries.len() < sizes.len() {
        entries.resize(sizes.len(), Entry { prefix: 0, seq: 0, at: 0, key_len: 0, value_len: 0 });
    }
    let (mut next_entry, mut next_byte) = (counts, bytes);
    let mut seq = 0usize;
    for_each(&mut |k, v| {
        let (prefix, key_len, value_len) = sizes[seq];
        let b = bucket(prefix);
        let at = next_byte[b];
        arena[at..at + k.len()].copy_from_slice(k);
        if let Some(v) = v {
            arena[at + k.len()..at + k.len() + v.len()].copy_from_slice(v);
        }
        next_byte[b] += key_len as usize + stored(value_len);
        entries[next_entry[b]] = Entry { prefix, seq: seq as u32, at: at as u32, key_len, value_len };
        next_entry[b] += 1;
        seq += 1;
    })?;
    drop(chunk);
    let key = |e: &Entry| &arena[e.at as usize..(e.at + e.key_len) as usize];
    let mut writer = rocksdb::SstFileWriter::create(sst_options);
    writer.open(sst).map_err(&rocks_err)?;
    for b in 0..N_BUCKETS {
        let entries = &mut entries[bucket_starts[b]..bucket_starts[b + 1]];
        // Read the bucket's bytes in order first: the hardware prefetcher streams them into
        // cache, where the writes, visited in key order, find them.
        let region = &arena[bytes_starts[b]..bytes_starts[b + 1]];
        std::hint::black_box(region.iter().step_by(64).fold(0u8, |a, &x| a ^ x));
        entries
            .sort_unstable_by(|x, y| x.prefix.cmp(&y.prefix).then_with(|| key(x).cmp(key(y))).then(x.seq.cmp(&y.seq)));
        for (i, e) in entries.iter().enumerate() {
            let k = key(e);
            if entries.get(i + 1).is_some_and(|next| next.prefix == e.prefix && key(next) == k) {
                continue; // a later write of the same key follows
            }
            let written = match e.value_len {
                DELETE => writer.delete(k),
                len => {
                    let from = (e.at + e.key_len) as usize;
                    writer.put(k, &arena[from..from + len as usize])
                }
            };
            written.map_err(&rocks_err)?;
        }
    }
    writer.finish().map_err(rocks_err)
}

/// Waits until `db` has no flush or compaction running or pending.
pub fn wait_for_compactions(db: &DB) -> Result<(), rocksdb::Error> {
    loop {
        let busy = [
            "rocksdb.compaction-pending",
            "rocksdb.num-running-compactions",
            "rocksdb.num-running-flushes",
            "rocksdb.mem-table-flush-pending",
        ]
        .iter()
        .map(|&p| db.property_int_value(p).map(|v| v.unwrap_or(0)))
        .sum::<Result<u64, _>>()?;
        if busy == 0 {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Ingests an SST file: it lands newer than everything in the store.
fn ingest_sst(db: &DB, sst: &Path) -> Result<(), rocksdb::Error> {
    let mut ingest = rocksdb::IngestExternalFileOptions::default();
    ingest.set_move_files(true);
    let result = db.ingest_external_file_opts(&ingest, vec![sst]);
    let _ = std::fs::remove_file(sst);
    result
}

/// Deletes the files of a closed store at `path`.
pub(crate) fn destroy_files(name: &str, path: &Path, memory: &RocksMemory) -> Result<()> {
    DB::destroy(&memory.options(), path).map_err(|source| Error::RocksDb {
        store: name.to_string(),
        path: path.to_path_buf(),
        source: Box::new(source),
    })?;
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

fn open_db(name: &str, path: &Path, options: &Options) -> Result<DB> {
    DB::open(options, path).map_err(|source| {
        let text = source.to_string();
        if text.contains("LOCK") || text.contains("lock hold") {
            Error::Locked { path: path.to_path_buf() }
        } else {
            Error::RocksDb { store: name.to_string(), path: path.to_path_buf(), source: Box::new(source) }
        }
    })
}

impl BytesStore for RocksStore {
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        match self.db()?.get_pinned(key) {
            Ok(v) => Ok(v.map(|v| Bytes::copy_from_slice(&v))),
            Err(e) => Err(self.err(e)),
        }
    }

    fn put(&mut self, key: Bytes, value: Bytes) -> Result<()> {
        self.db()?.put_opt(&key, &value, &self.write_options).map_err(|e| self.err(e))
    }

    fn delete(&mut self, key: Bytes) -> Result<()> {
        self.db()?.delete_opt(&key, &self.write_options).map_err(|e| self.err(e))
    }

    fn write(&mut self, mut writes: Vec<Write>) -> Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        // In key order the memtable inserts each key next to the one before (its skip list keeps
        // the last insert's position), far cheaper than random inserts. The sort is stable, so a
        // key written twice keeps its last write last.
        if !writes.is_sorted_by(|a, b| a.0 <= b.0) {
            writes.sort_by(|a, b| a.0.cmp(&b.0));
        }
        let mut batch = WriteBatch::default();
        for (k, v) in &writes {
            match v {
                Some(v) => batch.put(k, v),
                None => batch.delete(k),
            }
        }
        self.db()?.write_opt(batch, &self.write_options).map_err(|e| self.err(e))
    }

    fn scan(&self, range: &ScanRange) -> Result<KvIter<'_>> {
        let db = self.db()?;
        if range.is_empty() {
            return Ok(Box::new(std::iter::empty()));
        }
        let mut read = ReadOptions::default();
        match &range.to {
            std::ops::Bound::Included(k) => {
                let mut upper = k.to_vec();
                upper.push(0);
                read.set_iterate_upper_bound(upper);
            }
            std::ops::Bound::Excluded(k) => read.set_iterate_upper_bound(k.to_vec()),
            std::ops::Bound::Unbounded => {}
        }
        let mut it = db.raw_iterator_opt(read);
        let skip = match &range.from {
            std::ops::Bound::Included(k) => {
                it.seek(k);
                None
            }
            std::ops::Bound::Excluded(k) => {
                it.seek(k);
                Some(k.clone())
            }
            std::ops::Bound::Unbounded => {
                it.seek_to_first();
                None
            }
        };
        if let Some(k) = skip {
            if it.valid() && it.key() == Some(&k[..]) {
                it.next();
            }
        }
        Ok(Box::new(RocksIter { it, store: self, done: false }))
    }

    fn approximate_len(&self) -> Result<u64> {
        let db = self.db()?;
        Ok(db.property_int_value("rocksdb.estimate-num-keys").map_err(|e| self.err(e))?.unwrap_or(0))
    }

    fn flush(&mut self) -> Result<()> {
        let mut opts = FlushOptions::default();
        opts.set_wait(true);
        self.db()?.flush_opt(&opts).map_err(|e| self.err(e))
    }

    fn clear(&mut self) -> Result<()> {
        self.db()?;
        self.db = None;
        DB::destroy(&self.options, &self.path).map_err(|e| self.err(e))?;
        self.db = Some(Arc::new(open_db(&self.name, &self.path, &self.options)?));
        Ok(())
    }

    fn persistent(&self) -> bool {
        true
    }

    fn wait_for_background_work(&self) -> Result<()> {
        wait_for_compactions(self.db()?).map_err(|e| self.err(e))
    }

    fn restore(&mut self, replay: Replay) -> Result<()> {
        if !self.bulk_loading {
            // Bulk-load mode: ingested files pile up in level 0 without compactions or write
            // stalls until the restore ends; RocksDB compacts them afterwards in the background.
            self.set_options(&[
                ("disable_auto_compactions", "true"),
                ("level0_slowdown_writes_trigger", "100000"),
                ("level0_stop_writes_trigger", "100000"),
            ])?;
            self.bulk_loading = true;
        }
        self.restoring_bytes += replay.bytes.len();
        self.restoring.push(replay);
        if self.restoring_bytes >= self.restore_chunk_bytes {
            self.send_restoring()?;
        }
        Ok(())
    }

    fn finish_restore(&mut self) -> Result<()> {
        // A small remainder goes through a write batch, after every ingested chunk (so it is newer).
        let small = self.restoring_bytes < RESTORE_SST_MIN_BYTES.min(self.restore_chunk_bytes);
        if !small {
            self.send_restoring()?;
        }
        self.join_ingester()?;
        if small {
            self.restoring_bytes = 0;
            let mut writes = Vec::new();
            for replay in std::mem::take(&mut self.restoring) {
                writes.extend(replay.writes()?);
            }
            self.write(writes)?;
        }
        if self.bulk_loading {
            self.bulk_loading = false;
            self.set_options(&[
                ("level0_slowdown_writes_trigger", &L0_SLOWDOWN_WRITES_TRIGGER.to_string()),
                ("level0_stop_writes_trigger", &L0_STOP_WRITES_TRIGGER.to_string()),
                ("disable_auto_compactions", "false"),
            ])?;
        }
        Ok(())
    }
}

struct RocksIter<'a> {
    it: DBRawIteratorWithThreadMode<'a, DB>,
    store: &'a RocksStore,
    done: bool,
}

impl Iterator for RocksIter<'_> {
    type Item = Result<(Bytes, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if let (Some(k), Some(v)) = (self.it.key(), self.it.value()) {
            let entry = (Bytes::copy_from_slice(k), Bytes::copy_from_slice(v));
            self.it.next();
            return Some(Ok(entry));
        }
        self.done = true;
        match self.it.status() {
            Ok(()) => None,
            Err(e) => Some(Err(self.store.err(e))),
        }
    }
}
