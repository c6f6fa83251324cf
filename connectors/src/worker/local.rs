//! What a distributed worker asks of the worker that runs things: its share of a group's
//! connectors and tasks, taken on and given up one by one as assignments change.

use super::*;

/// A connector or task this worker runs, and its state, for the status topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalStatus {
    /// The connector.
    pub(crate) connector: String,
    /// The task; `None` for the connector itself.
    pub(crate) task: Option<u32>,
    /// Its state.
    pub(crate) state: State,
    /// Why it failed.
    pub(crate) trace: Option<String>,
}

impl Worker {
    /// Runs the connector `name` here with `config` in `target` state (anew when it ran already):
    /// its task configs; `None` when it is stopped or failed to start (its status says why).
    pub(crate) async fn run_connector(&self, name: &str, config: Props, target: TargetState) -> Option<Vec<Props>> {
        let mut connectors = self.inner.connectors.lock().await;
        let entry = connectors
            .entry(name.to_string())
            .or_insert_with(|| Entry::new(config.clone(), ConnectorType::Source, target, String::new(), true));
        if let Some(mut instance) = entry.instance.take() {
            if let Err(e) = instance.connector_mut().stop().await {
                tracing::warn!(connector = name, error = %e, "the connector failed to stop");
            }
        }
        entry.config = config;
        entry.target = target;
        entry.owned = true;
        entry.trace = None;
        match self.plugin_of(&entry.config) {
            Ok(plugin) => {
                entry.kind = plugin.kind();
                entry.version = plugin.instantiate().connector().version();
            }
            Err(e) => {
                entry.state = State::Failed;
                entry.trace = Some(e.message);
                return None;
            }
        }
        if target == TargetState::Stopped {
            entry.state = State::Stopped;
            return None;
        }
        match self.start_instance(entry).await {
            Ok(configs) => {
                entry.state = if target == TargetState::Paused { State::Paused } else { State::Running };
                Some(configs)
            }
            Err(e) => {
                tracing::error!(connector = name, error = %e, "the connector failed to start");
                entry.state = State::Failed;
                entry.trace = Some(format!("{e}\n{e:?}"));
                None
            }
        }
    }

    /// Runs task `id` of the connector `name` here (anew when it ran already).
    pub(crate) async fn run_task(
        &self,
        name: &str,
        id: u32,
        task_config: Props,
        connector_config: Props,
        target: TargetState,
    ) {
        let mut connectors = self.inner.connectors.lock().await;
        let entry = connectors.entry(name.to_string()).or_insert_with(|| {
            Entry::new(connector_config.clone(), ConnectorType::Source, target, String::new(), false)
        });
        entry.config = connector_config;
        entry.target = target;
        if let Ok(plugin) = self.plugin_of(&entry.config) {
            entry.kind = plugin.kind();
        }
        if let Some(index) = entry.tasks.iter().position(|t| t.id == id) {
            let old = entry.tasks.remove(index);
            self.stop_task(old.target, old.join).await;
        }
        let handle = self.spawn_task(name, entry, id, task_config);
        entry.tasks.push(handle);
        entry.tasks.sort_by_key(|t| t.id);
    }

    /// Stops connectors (their instances) and tasks running here: every task is told first, so
    /// they stop together.
    pub(crate) async fn stop_here(&self, connectors_here: &[String], tasks_here: &[(String, u32)]) {
        let mut connectors = self.inner.connectors.lock().await;
        let mut stopping = Vec::new();
        for (name, id) in tasks_here {
            if let Some(entry) = connectors.get_mut(name) {
                if let Some(index) = entry.tasks.iter().position(|t| t.id == *id) {
                    let task = entry.tasks.remove(index);
                    let _ = task.target.send(TargetState::Stopped);
                    stopping.push(task);
                }
            }
        }
        for task in stopping {
            self.stop_task(task.target, task.join).await;
        }
        for name in connectors_here {
            if let Some(entry) = connectors.get_mut(name) {
                if let Some(mut instance) = entry.instance.take() {
                    if let Err(e) = instance.connector_mut().stop().await {
                        tracing::warn!(connector = name, error = %e, "the connector failed to stop");
                    }
                }
                entry.owned = false;
                entry.state = State::Unassigned;
            }
        }
        connectors.retain(|_, e| e.owned || !e.tasks.is_empty());
    }

    /// Pauses or resumes the connector `name` and its tasks running here.
    pub(crate) async fn set_target_here(&self, name: &str, target: TargetState) {
        let mut connectors = self.inner.connectors.lock().await;
        let Some(entry) = connectors.get_mut(name) else { return };
        entry.target = target;
        for t in &entry.tasks {
            let _ = t.target.send(target);
        }
        if entry.owned && entry.instance.is_some() && entry.state != State::Failed {
            entry.state = if target == TargetState::Paused { State::Paused } else { State::Running };
        }
    }

    /// The state of everything running here.
    pub(crate) async fn statuses_here(&self) -> Vec<LocalStatus> {
        let connectors = self.inner.connectors.lock().await;
        let mut out = Vec::new();
        for (name, entry) in connectors.iter() {
            if entry.owned {
                out.push(LocalStatus {
                    connector: name.clone(),
                    task: None,
                    state: entry.state,
                    trace: entry.trace.clone(),
                });
            }
            for t in &entry.tasks {
                let (state, trace) = t.shared.get();
                out.push(LocalStatus { connector: name.clone(), task: Some(t.id), state, trace });
            }
        }
        out
    }

    /// The metrics of a task running here, as its status shows them.
    pub(crate) async fn task_metrics_here(&self, name: &str, id: u32) -> Option<Json> {
        let connectors = self.inner.connectors.lock().await;
        let task = connectors.get(name)?.tasks.iter().find(|t| t.id == id)?;
        Some(task.shared.metrics.to_json())
    }

    /// Restarts tasks of the connector `name` running here: task `only` or all, with
    /// `only_failed` only the failed ones.
    pub(crate) async fn restart_tasks_here(&self, name: &str, only: Option<u32>, only_failed: bool) {
        let mut connectors = self.inner.connectors.lock().await;
        let Some(entry) = connectors.get_mut(name) else { return };
        let ids: Vec<u32> = entry
            .tasks
            .iter()
            .filter(|t| only.is_none_or(|o| o == t.id) && (!only_failed || t.shared.get().0 == State::Failed))
            .map(|t| t.id)
            .collect();
        for id in ids {
            self.restart_task_in(name, entry, id).await;
        }
    }

    /// Whether the connector `name` runs here and has failed.
    pub(crate) async fn connector_failed_here(&self, name: &str) -> bool {
        let connectors = self.inner.connectors.lock().await;
        connectors.get(name).is_some_and(|e| e.owned && e.state == State::Failed)
    }

    /// The kind and version of the plugin a connector config names.
    pub(crate) fn kind_and_version(&self, config: &Props) -> ApiResult<(ConnectorType, String)> {
        let plugin = self.plugin_of(config)?;
        Ok((plugin.kind(), plugin.instantiate().connector().version()))
    }
}
