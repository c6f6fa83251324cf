//! Which backend a store lives in.

use std::path::Path;

use crate::bytes::BytesStore;
use crate::error::Result;
use crate::memory::MemoryStore;
use crate::rocks::{RocksMemory, RocksStore};

/// The backend of a store: RocksDB on local disk (sharing one memory budget), or memory.
#[derive(Debug, Clone)]
pub enum Backend {
    /// One RocksDB instance per store (per segment for window and session stores).
    RocksDb(RocksMemory),
    /// An ordered map, rebuilt from the changelog at every start.
    InMemory,
}

impl Backend {
    /// RocksDB with a process-wide memory limit of `limit_bytes`.
    pub fn rocksdb(limit_bytes: usize) -> Result<Self> {
        Ok(Backend::RocksDb(RocksMemory::new(limit_bytes)?))
    }

    /// Opens the store `name` at `path` (unused by the in-memory backend).
    pub fn open(&self, name: &str, path: &Path) -> Result<Box<dyn BytesStore>> {
        Ok(match self {
            Backend::RocksDb(memory) => Box::new(RocksStore::open(name, path, memory)?),
            Backend::InMemory => Box::new(MemoryStore::new()),
        })
    }

    /// Deletes what `open` created at `path`.
    pub fn destroy(&self, name: &str, path: &Path, store: Box<dyn BytesStore>) -> Result<()> {
        drop(store);
        match self {
            Backend::RocksDb(memory) => {
                rocksdb::DB::destroy(&memory.options(), path).map_err(|source| crate::error::Error::RocksDb {
                    store: name.to_string(),
                    path: path.to_path_buf(),
                    source,
                })?;
                match std::fs::remove_dir_all(path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(crate::error::Error::io(path, e)),
                    _ => Ok(()),
                }
            }
            Backend::InMemory => Ok(()),
        }
    }

    /// Whether stores keep their data across restarts.
    pub fn persistent(&self) -> bool {
        matches!(self, Backend::RocksDb(_))
    }
}
