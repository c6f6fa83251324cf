//! Which backend a store lives in.

use std::path::Path;

use crate::bytes::BytesStore;
use crate::error::Result;
use crate::memory::MemoryStore;
#[cfg(feature = "rocksdb")]
use crate::rocks::{RocksMemory, RocksStore};

/// The backend of a store: RocksDB on local disk (sharing one memory budget), or memory.
#[derive(Debug, Clone)]
pub enum Backend {
    /// One RocksDB instance per store (per segment for window and session stores).
    #[cfg(feature = "rocksdb")]
    RocksDb(RocksMemory),
    /// An ordered map, rebuilt from the changelog at every start.
    InMemory,
}

impl Backend {
    /// RocksDB with a process-wide memory limit of `limit_bytes`.
    #[cfg(feature = "rocksdb")]
    pub fn rocksdb(limit_bytes: usize) -> Result<Self> {
        Ok(Backend::RocksDb(RocksMemory::new(limit_bytes)?))
    }

    /// RocksDB with a process-wide memory limit of `limit_bytes`: an error in a build without
    /// the `rocksdb` feature.
    #[cfg(not(feature = "rocksdb"))]
    pub fn rocksdb(limit_bytes: usize) -> Result<Self> {
        Err(crate::error::Error::InvalidConfig {
            key: "state.backend",
            value: format!("rocksdb ({limit_bytes} bytes)"),
            reason:
                "this build of Freshet has no RocksDB; build with the `rocksdb` feature or use the in-memory backend"
                    .into(),
        })
    }

    /// RocksDB with a process-wide memory limit of `limit_bytes` when this build has it, memory
    /// otherwise.
    pub fn best_available(limit_bytes: usize) -> Result<Self> {
        #[cfg(feature = "rocksdb")]
        return Self::rocksdb(limit_bytes);
        #[cfg(not(feature = "rocksdb"))]
        {
            let _ = limit_bytes;
            Ok(Backend::InMemory)
        }
    }

    /// Opens the store `name` at `path` (unused by the in-memory backend).
    #[cfg_attr(not(feature = "rocksdb"), allow(unused_variables))]
    pub fn open(&self, name: &str, path: &Path) -> Result<Box<dyn BytesStore>> {
        Ok(match self {
            #[cfg(feature = "rocksdb")]
            Backend::RocksDb(memory) => Box::new(RocksStore::open(name, path, memory)?),
            Backend::InMemory => Box::new(MemoryStore::new()),
        })
    }

    /// Deletes what `open` created at `path`.
    #[cfg_attr(not(feature = "rocksdb"), allow(unused_variables))]
    pub fn destroy(&self, name: &str, path: &Path, store: Box<dyn BytesStore>) -> Result<()> {
        drop(store);
        match self {
            #[cfg(feature = "rocksdb")]
            Backend::RocksDb(memory) => crate::rocks::destroy_files(name, path, memory),
            Backend::InMemory => Ok(()),
        }
    }

    /// Whether stores keep their data across restarts.
    pub fn persistent(&self) -> bool {
        match self {
            #[cfg(feature = "rocksdb")]
            Backend::RocksDb(_) => true,
            Backend::InMemory => false,
        }
    }
}
