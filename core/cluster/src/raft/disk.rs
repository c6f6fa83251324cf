//! Where a controller keeps its Raft log, vote and snapshot.
//!
//! Files, not Freshet's partition log: the metadata log must be readable before any partition is
//! opened (the image says which partitions exist), Raft truncates its tail when a new leader
//! overrules it and drops its head after a snapshot, and the vote must be replaced atomically,
//! none of which a partition log does. Metadata is small, so the log is kept whole in memory and
//! the files are its durable copy. [`FileDisk`] is the real one; [`MemDisk`] keeps the same
//! contract in memory for the deterministic simulation, surviving a simulated crash because the
//! simulation keeps it when it drops the node.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What a node finds on its disk at start.
#[derive(Clone, Debug, Default)]
pub struct Stored {
    /// The last vote saved.
    pub vote: Option<Vec<u8>>,
    /// The log entries by index, in order.
    pub entries: Vec<(u64, Vec<u8>)>,
    /// The last snapshot saved.
    pub snapshot: Option<Vec<u8>>,
}

/// Durable storage for one controller. Every write is durable when it returns.
pub trait Disk: Send + Sync + fmt::Debug + 'static {
    /// Everything stored.
    fn load(&self) -> io::Result<Stored>;
    /// Appends entries after the current last one.
    fn append(&self, entries: &[(u64, Vec<u8>)]) -> io::Result<()>;
    /// Drops every entry at index `from` and after.
    fn truncate(&self, from: u64) -> io::Result<()>;
    /// Drops every entry at index `upto` and before.
    fn purge(&self, upto: u64) -> io::Result<()>;
    /// Replaces the vote.
    fn save_vote(&self, vote: &[u8]) -> io::Result<()>;
    /// Replaces the snapshot.
    fn save_snapshot(&self, snapshot: &[u8]) -> io::Result<()>;
    /// Whether calls wait on a device, so they must run off the async worker threads.
    fn blocking(&self) -> bool;
}

/// A controller's files in its metadata directory (`<log.dirs>/__cluster_metadata-0`, as Kafka
/// names it): `raft.log` (entries framed `[length][crc32c][index][entry]`), `quorum-state` (the
/// vote) and `snapshot`, the last two replaced by rename.
pub struct FileDisk {
    dir: PathBuf,
    log: Mutex<LogFile>,
}

struct LogFile {
    file: File,
    /// Byte position of each entry, by index.
    positions: BTreeMap<u64, u64>,
    len: u64,
}

const LOG: &str = "raft.log";
const VOTE: &str = "quorum-state";
const SNAPSHOT: &str = "snapshot";
const HEADER: usize = 4 + 4 + 8;

impl fmt::Debug for FileDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileDisk").field("dir", &self.dir).finish()
    }
}

impl FileDisk {
    /// Opens (creating) the metadata directory `dir`. A torn last entry (a write a crash cut
    /// short, never acknowledged) is cut off; a damaged entry with entries after it is an error
    /// naming the file and byte, because entries after it may have been acknowledged.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        let path = dir.join(LOG);
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (positions, valid) = scan(&path, &bytes)?;
        if valid < bytes.len() as u64 {
            tracing::warn!(path = %path.display(), at = valid, cut = bytes.len() as u64 - valid, "cutting off a torn last entry of the metadata log");
            file.set_len(valid)?;
            file.sync_all()?;
        }
        Ok(Self { dir, log: Mutex::new(LogFile { file, positions, len: valid }) })
    }

    fn replace(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let tmp = self.dir.join(format!("{name}.tmp"));
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, self.dir.join(name))?;
        File::open(&self.dir)?.sync_all()
    }

    fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.dir.join(name)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogFile> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The entries' positions and the length of the valid prefix of a log file's bytes.
fn scan(path: &Path, bytes: &[u8]) -> io::Result<(BTreeMap<u64, u64>, u64)> {
    let mut positions = BTreeMap::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.len() < HEADER {
            break;
        }
        let len = u32::from_be_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        if len < 8 || rest.len() < 8 + len {
            break;
        }
        let crc = u32::from_be_bytes(rest[4..8].try_into().expect("4 bytes"));
        if crc32c::crc32c(&rest[8..8 + len]) != crc {
            if at + 8 + len == bytes.len() {
                break;
            }
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the metadata log {} is damaged at byte {at} (its checksum does not match) and entries follow it; it cannot be repaired by cutting its tail", path.display()),
            ));
        }
        let index = u64::from_be_bytes(rest[8..16].try_into().expect("8 bytes"));
        positions.insert(index, at as u64);
        at += 8 + len;
    }
    Ok((positions, at as u64))
}

fn frame(index: u64, entry: &[u8], out: &mut Vec<u8>) {
    let mut body = Vec::with_capacity(8 + entry.len());
    body.extend_from_slice(&index.to_be_bytes());
    body.extend_from_slice(entry);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
}

impl Disk for FileDisk {
    fn load(&self) -> io::Result<Stored> {
        let mut log = self.lock();
        let mut bytes = Vec::new();
        log.file.seek(SeekFrom::Start(0))?;
        log.file.read_to_end(&mut bytes)?;
        let entries = log
            .positions
            .iter()
            .map(|(index, pos)| {
                let at = *pos as usize;
                let len = u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
                (*index, bytes[at + HEADER..at + 8 + len].to_vec())
            })
            .collect();
        Ok(Stored { vote: self.read(VOTE)?, entries, snapshot: self.read(SNAPSHOT)? })
    }

    fn append(&self, entries: &[(u64, Vec<u8>)]) -> io::Result<()> {
        let mut log = self.lock();
        let mut bytes = Vec::new();
        let mut positions = Vec::with_capacity(entries.len());
        for (index, entry) in entries {
            positions.push((*index, log.len + bytes.len() as u64));
            frame(*index, entry, &mut bytes);
        }
        log.file.write_all(&bytes)?;
        log.file.sync_data()?;
        log.len += bytes.len() as u64;
        log.positions.extend(positions);
        Ok(())
    }

    fn truncate(&self, from: u64) -> io::Result<()> {
        let mut log = self.lock();
        let Some(&pos) = log.positions.range(from..).next().map(|(_, p)| p) else { return Ok(()) };
        log.file.set_len(pos)?;
        log.file.sync_all()?;
        log.len = pos;
        log.positions.split_off(&from);
        Ok(())
    }

    fn purge(&self, upto: u64) -> io::Result<()> {
        let stored = self.load()?;
        let mut bytes = Vec::new();
        let mut positions = BTreeMap::new();
        for (index, entry) in stored.entries.iter().filter(|(i, _)| *i > upto) {
            positions.insert(*index, bytes.len() as u64);
            frame(*index, entry, &mut bytes);
        }
        self.replace(LOG, &bytes)?;
        let mut log = self.lock();
        log.file = OpenOptions::new().read(true).append(true).open(self.dir.join(LOG))?;
        log.positions = positions;
        log.len = bytes.len() as u64;
        Ok(())
    }

    fn save_vote(&self, vote: &[u8]) -> io::Result<()> {
        self.replace(VOTE, vote)
    }

    fn save_snapshot(&self, snapshot: &[u8]) -> io::Result<()> {
        self.replace(SNAPSHOT, snapshot)
    }

    fn blocking(&self) -> bool {
        true
    }
}

/// [`Disk`]'s contract in memory, for the simulation: clones share one store, which outlives
/// the node that writes it.
#[derive(Clone, Debug, Default)]
pub struct MemDisk {
    state: Arc<Mutex<Stored>>,
}

impl MemDisk {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Stored) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Disk for MemDisk {
    fn load(&self) -> io::Result<Stored> {
        Ok(self.with(|s| s.clone()))
    }

    fn append(&self, entries: &[(u64, Vec<u8>)]) -> io::Result<()> {
        self.with(|s| s.entries.extend_from_slice(entries));
        Ok(())
    }

    fn truncate(&self, from: u64) -> io::Result<()> {
        self.with(|s| s.entries.retain(|(i, _)| *i < from));
        Ok(())
    }

    fn purge(&self, upto: u64) -> io::Result<()> {
        self.with(|s| s.entries.retain(|(i, _)| *i > upto));
        Ok(())
    }

    fn save_vote(&self, vote: &[u8]) -> io::Result<()> {
        self.with(|s| s.vote = Some(vote.to_vec()));
        Ok(())
    }

    fn save_snapshot(&self, snapshot: &[u8]) -> io::Result<()> {
        self.with(|s| s.snapshot = Some(snapshot.to_vec()));
        Ok(())
    }

    fn blocking(&self) -> bool {
        false
    }
}
