//! Freshet's state stores.
//!
//! Role: the key-value, window and session stores that stateful operators (aggregations, windows,
//! joins) keep their state in, with a RocksDB backend and an in-memory backend behind the same
//! interfaces, changelogged to topics of the log and restored from them.
//!
//! Boundary: depends on `freshet-core` only (the substrate traits, to write and read changelogs).
//! It knows nothing about topologies, SQL or connectors.
//!
//! # Layers
//!
//! A store is a stack, top to bottom (as in Kafka Streams):
//!
//! 1. a typed interface: [`KeyValueStore`], [`WindowStore`], [`SessionStore`], encoding keys and
//!    values with [`StateSerde`] and window/session keys with [`keys`];
//! 2. an optional write-back record cache with a byte budget, which reports what it
//!    writes down as [`Evicted`];
//! 3. an optional [changelog] layer, which sends writes to the store's changelog topic
//!    and applies them below only once acknowledged;
//! 4. a [`BytesStore`]: `RocksStore` (feature `rocksdb`, on by default), [`MemoryStore`], or [`Segments`] of either for window and
//!    session stores.
//!
//! A [`TaskState`] owns one task's stores, restores them when they are added and writes the
//! task's [checkpoint] after each flush.
//!
//! Every call blocks (RocksDB does I/O, commits wait for the changelog): call stores from a thread
//! that may block, such as a stream thread, never from an async task.

pub mod backend;
pub mod bytes;
pub(crate) mod cache;
pub mod changelog;
pub mod checkpoint;
pub mod error;
pub mod keys;
pub mod kv;
pub mod memory;
#[cfg(feature = "rocksdb")]
pub mod rocks;
pub mod segments;
pub mod serde;
pub mod session;
pub(crate) mod stack;
pub mod task;
pub mod window;

pub use crate::backend::Backend;
pub use crate::bytes::{BytesStore, KvIter, Replay, ScanRange};
pub use crate::changelog::{changelog_topic, ChangelogKind, Changelogs, RestoreListener, RestoreProgress};
pub use crate::error::{Error, Result};
pub use crate::kv::{Evicted, KeyValueStore, TypedIter};
pub use crate::memory::MemoryStore;
#[cfg(feature = "rocksdb")]
pub use crate::rocks::{wait_for_compactions, RocksMemory, RocksStore};
pub use crate::segments::Segments;
pub use crate::serde::{Json, StateSerde};
pub use crate::session::SessionStore;
pub use crate::task::{StoreOptions, TaskConfig, TaskState, WindowOptions};
pub use crate::window::{WindowStore, Windowed};
