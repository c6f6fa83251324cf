//! `StreamsApp::builder`: an application put together step by step, with the tokio runtime
//! taken from the caller's context when none is given.

use super::*;

/// Builds a [`StreamsApp`]: a topology, a substrate, settings and the tokio runtime its futures
/// run on. Settings default to [`StreamsConfig::new`]'s (Kafka Streams' defaults); the runtime to
/// the one the builder is called from.
///
/// ```no_run
/// # use freshet_runtime::StreamsApp;
/// # async fn run(topology: freshet_dsl::Topology, log: freshet_core::Embedded) -> freshet_runtime::Result<()> {
/// let mut app = StreamsApp::builder(topology, log)
///     .application_id("word-count")
///     .num_stream_threads(2)
///     .exactly_once()
///     .build()?;
/// app.start_async().await?;
/// // ...
/// app.close_async().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct StreamsAppBuilder {
    topology: Topology,
    substrate: Arc<dyn Substrate>,
    config: Result<StreamsConfig>,
    runtime: Option<Handle>,
}

impl StreamsAppBuilder {
    pub(super) fn new(topology: Topology, substrate: Arc<dyn Substrate>) -> Self {
        StreamsAppBuilder { topology, substrate, config: StreamsConfig::new("freshet-streams"), runtime: None }
    }

    /// Every setting at once (replacing those set before).
    pub fn config(mut self, config: StreamsConfig) -> Self {
        self.config = Ok(config);
        self
    }

    fn set(mut self, f: impl FnOnce(&mut StreamsConfig)) -> Self {
        if let Ok(config) = &mut self.config {
            f(config);
        }
        self
    }

    /// The application id: its consumer group, the prefix of its internal topics, its directory
    /// under the state directory.
    pub fn application_id(self, id: &str) -> Self {
        let id = id.to_string();
        self.set(|c| c.application_id = id)
    }

    /// Stream threads (tasks are spread over them).
    pub fn num_stream_threads(self, n: usize) -> Self {
        self.set(|c| c.num_stream_threads = n)
    }

    /// Where tasks keep their stores.
    pub fn state_dir(self, dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        self.set(|c| c.state_dir = dir)
    }

    /// How often progress is committed.
    pub fn commit_interval(self, interval: Duration) -> Self {
        self.set(|c| c.commit_interval = interval)
    }

    /// Exactly-once processing: output, changelog writes and input offsets commit together.
    pub fn exactly_once(self) -> Self {
        self.set(|c| c.processing_guarantee = ProcessingGuarantee::ExactlyOnce)
    }

    /// The tokio runtime the application's futures run on (a multi-thread one): by default the
    /// one `build` is called from.
    pub fn runtime(mut self, runtime: Handle) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// The application, not started. Fails on a setting it refuses, when no runtime was given
    /// and `build` is called outside one, or when the substrate cannot make its clients.
    pub fn build(self) -> Result<StreamsApp> {
        let config = self.config?;
        let runtime = match self.runtime {
            Some(runtime) => runtime,
            None => Handle::try_current().map_err(|_| {
                Error::Config(
                    "no tokio runtime: call build from inside one, or give one with StreamsAppBuilder::runtime".into(),
                )
            })?,
        };
        if runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return Err(Error::Config(
                "the tokio runtime must be a multi-thread one: stream threads block on its futures".into(),
            ));
        }
        StreamsApp::new(self.topology, self.substrate, config, runtime)
    }
}

impl StreamsApp {
    /// A builder of an application running `topology` on `substrate`.
    pub fn builder(topology: Topology, substrate: impl Substrate + 'static) -> StreamsAppBuilder {
        StreamsAppBuilder::new(topology, Arc::new(substrate))
    }

    /// [`StreamsApp::start`] from async code: the blocking part runs off the async worker (with
    /// `block_in_place`, so the runtime must be a multi-thread one).
    pub async fn start_async(&mut self) -> Result<()> {
        tokio::task::block_in_place(|| self.start())
    }

    /// [`StreamsApp::wait_until_running`] from async code, without holding a worker.
    pub async fn wait_until_running_async(&self, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.state() {
                StreamsState::Running => return Ok(()),
                StreamsState::Error => {
                    return Err(Error::Failed(self.error().unwrap_or_else(|| "the application failed".into())))
                }
                _ if tokio::time::Instant::now() >= deadline => {
                    return Err(Error::Timeout { waited: timeout, state: self.state() })
                }
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    /// [`StreamsApp::close`] from async code (the threads are joined off the async worker).
    pub async fn close_async(self) -> Result<()> {
        tokio::task::block_in_place(|| self.close())
    }
}
