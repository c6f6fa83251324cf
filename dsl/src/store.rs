//! State stores a topology declares. The runtime opens them in each task's
//! `freshet_state::TaskState`; processors reach them through their context.

use std::sync::Arc;

use freshet_state::{StateSerde, StoreOptions, TaskState, WindowOptions};

type AddStore = Arc<dyn Fn(&mut TaskState, &str, StoreOptions) -> freshet_state::Result<()> + Send + Sync>;

/// A store to open in every task of the sub-topology that uses it.
#[derive(Clone)]
pub struct StoreBuilder {
    pub(crate) name: String,
    kind: &'static str,
    options: StoreOptions,
    add: AddStore,
}

impl std::fmt::Debug for StoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreBuilder").field("name", &self.name).field("kind", &self.kind).finish_non_exhaustive()
    }
}

impl StoreBuilder {
    /// A key-value store of `K -> V`, changelogged and cached by default.
    pub fn key_value<K: StateSerde, V: StateSerde>(name: &str) -> Self {
        let add: AddStore = Arc::new(|state, name, options| state.add_kv_store::<K, V>(name, options));
        StoreBuilder { name: name.to_string(), kind: "key-value", options: StoreOptions::default(), add }
    }

    /// A window store of `K -> V` per window.
    pub fn window<K: StateSerde, V: StateSerde>(name: &str, window: WindowOptions) -> Self {
        let add: AddStore = Arc::new(move |state, name, options| state.add_window_store::<K, V>(name, window, options));
        StoreBuilder { name: name.to_string(), kind: "window", options: StoreOptions::default(), add }
    }

    /// A session store of `K -> V` per session, kept `retention_ms` of stream time.
    pub fn session<K: StateSerde + Clone, V: StateSerde>(name: &str, retention_ms: i64) -> Self {
        let add: AddStore =
            Arc::new(move |state, name, options| state.add_session_store::<K, V>(name, retention_ms, options));
        StoreBuilder { name: name.to_string(), kind: "session", options: StoreOptions::default(), add }
    }

    /// A key-value store of the bytes the DSL's operators encode with the user's serdes.
    pub(crate) fn raw_key_value(name: &str) -> Self {
        Self::key_value::<bytes::Bytes, bytes::Bytes>(name)
    }

    /// A window store of encoded keys and values.
    pub(crate) fn raw_window(name: &str, window: WindowOptions) -> Self {
        Self::window::<bytes::Bytes, bytes::Bytes>(name, window)
    }

    /// A session store of encoded keys and values.
    pub(crate) fn raw_session(name: &str, retention_ms: i64) -> Self {
        Self::session::<bytes::Bytes, bytes::Bytes>(name, retention_ms)
    }

    /// Whether writes go to a changelog topic (default on).
    pub fn with_logging(mut self, logging: bool) -> Self {
        self.options.logging = logging;
        self
    }

    /// Whether a record cache sits in front (default on).
    pub fn with_caching(mut self, caching: bool) -> Self {
        self.options.caching = caching;
        self
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `key-value`, `window` or `session`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Logging and caching as declared.
    pub fn options(&self) -> StoreOptions {
        self.options
    }

    /// Opens the store in `state` with `options` (the runtime may override the declared ones,
    /// e.g. the test driver runs without changelogs).
    pub fn open_in(&self, state: &mut TaskState, options: StoreOptions) -> freshet_state::Result<()> {
        (self.add)(state, &self.name, options)
    }
}
