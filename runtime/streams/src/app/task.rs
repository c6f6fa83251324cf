//! Opening a task: its directory, its stores restored from their changelogs, its task graph.

use super::*;

/// How long a new task waits for its directory while another thread of the process closes it.
pub(super) const TASK_DIRECTORY_WAIT: Duration = Duration::from_secs(60);

/// What opening a task needs: everything of a stream thread but its consumer, so tasks can open
/// (restoring their stores) on a helper thread while the stream thread's consumer keeps polling
/// and so stays in its group.
#[derive(Clone)]
pub(super) struct TaskOpener {
    pub(super) topology: Topology,
    pub(super) changelogs: Changelogs,
    pub(super) globals: Option<Arc<Mutex<TaskState>>>,
    pub(super) config: Arc<StreamsConfig>,
    pub(super) shared: Arc<Shared>,
    pub(super) names: Arc<Names>,
}

impl TaskOpener {
    /// Opens a task; waits while another thread of this process still has its directory open
    /// (it is closing it in the same rebalance). `None` if the application stops meanwhile.
    pub(super) fn open_task_when_free(&self, sub: usize, partition: u32, n: u32) -> Result<Option<RunningTask>> {
        let deadline = Instant::now() + TASK_DIRECTORY_WAIT;
        loop {
            match self.open_task(sub, partition, n) {
                Err(Error::State(freshet_state::Error::Locked { path })) => {
                    if self.shared.shutdown.load(Ordering::SeqCst) {
                        return Ok(None);
                    }
                    if Instant::now() >= deadline {
                        return Err(Error::TaskLocked {
                            task: TaskId::new(sub, partition),
                            path,
                            waited: TASK_DIRECTORY_WAIT,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => return other.map(Some),
            }
        }
    }

    /// Opens a task: its stores (restored from their changelogs), its graph.
    pub(super) fn open_task(&self, sub: usize, partition: u32, n: u32) -> Result<RunningTask> {
        let app = &self.config.application_id;
        let id = TaskId::new(sub, partition);
        let span = tracing::info_span!("task", app = %app, task = %id);
        let _entered = span.enter();
        let stores = self.topology.stores_of(sub);
        let state = if stores.is_empty() {
            None
        } else {
            let mut config = TaskConfig::new(
                &self.config.state_dir,
                app,
                &id.to_string(),
                partition,
                n,
                self.config.backend.clone(),
                Some(self.changelogs.clone()),
            );
            config.cache_bytes_per_store = self.config.cache_bytes_per_store;
            config.restore_listener = self.config.restore_listener.clone();
            config.exactly_once = self.config.processing_guarantee == ProcessingGuarantee::ExactlyOnce;
            let mut state = TaskState::open(config)?;
            for store in stores {
                store.open_in(&mut state, store.options())?;
            }
            self.shared.restores.lock().unwrap_or_else(|e| e.into_inner()).extend(state.restores().iter().cloned());
            Some(state)
        };
        let mut graph = self.topology.build_task(sub);
        let mut ctx = TaskContext::new(sub, partition);
        ctx.wall_clock_ms = self.config.clock.now_ms();
        ctx.state = state;
        ctx.globals = self.globals.clone();
        graph.init(&mut ctx)?;
        let queues = graph
            .source_topics()
            .map(|topic| (TopicPartition::new(self.names.physical(topic), partition), VecDeque::new()))
            .collect();
        let tables =
            graph.source_topics().filter(|t| graph.is_table_source(t)).map(|t| self.names.physical(t)).collect();
        drop(_entered);
        Ok(RunningTask {
            id,
            graph,
            ctx,
            queues,
            tables,
            processed: BTreeMap::new(),
            behind: BTreeMap::new(),
            waiting_since: None,
            reported: (0, 0),
            span,
        })
    }
}
