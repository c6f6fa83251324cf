//! The worker: runs connectors and their tasks on a substrate, as Kafka Connect's standalone
//! worker does. Its methods are what the REST API calls (create, configure, pause, resume, stop,
//! restart, delete, status, offsets); each is answered once done, and errors carry the HTTP status
//! Kafka Connect answers with.
//!
//! Source offsets are kept in the offsets topic (or a file); sink offsets are the consumer group
//! `connect-<name>`'s. Connector configs and statuses live in this worker's memory, as
//! Kafka's standalone worker keeps them: the connector files given at start are the configs.

mod config;
mod errors;
mod exactly_once;
mod local;
mod offsets;
mod sink;
mod source;
mod task;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use freshet_core::{ConsumerConfig, OffsetAndMetadata, Substrate, TopicPartition};
use serde_json::{json, Value as Json};
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;

pub use self::config::{check_connector_keys, connector_config_def, worker_config_def};
pub(crate) use self::offsets::ensure_topic;
use self::offsets::OffsetStore;
pub use self::sink::group_id;
pub use self::task::{State, TargetState, TaskMetrics};
use self::task::{TaskRun, TaskShared};
use crate::config::{Config, ConfigDef, ConfigKey, ConfigType, ConfigValue, Importance, Props};
use crate::connector::{ConnectorType, Instance};
use crate::error::ConnectError;
use crate::plugins::Plugins;
use crate::record::SourceMap;
use crate::transforms::TransformChain;

/// An error as the REST API answers it: an HTTP status and a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The HTTP status (400, 404, 409, 500).
    pub status: u16,
    /// What went wrong.
    pub message: String,
}

impl ApiError {
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError { status: 400, message: message.into() }
    }

    /// 404 for a connector.
    pub fn not_found(connector: &str) -> Self {
        ApiError { status: 404, message: format!("Connector {connector} not found") }
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError { status: 409, message: message.into() }
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError { status: 500, message: message.into() }
    }
}

impl From<ConnectError> for ApiError {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::Config { .. } | ConnectError::Data(_) => ApiError::bad_request(e.to_string()),
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<freshet_core::Error> for ApiError {
    fn from(e: freshet_core::Error) -> Self {
        ApiError::internal(e.to_string())
    }
}

/// A result whose error is an [`ApiError`].
pub type ApiResult<T> = std::result::Result<T, ApiError>;

/// A connector's config and tasks (Kafka's `ConnectorInfo`).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorInfo {
    /// Name.
    pub name: String,
    /// Config.
    pub config: Props,
    /// Task ids.
    pub tasks: Vec<u32>,
    /// Source or sink.
    pub kind: ConnectorType,
}

impl ConnectorInfo {
    /// As the REST API shows it.
    pub fn to_json(&self) -> Json {
        json!({
            "name": self.name,
            "config": self.config,
            "tasks": self.tasks.iter().map(|t| json!({"connector": self.name, "task": t})).collect::<Vec<_>>(),
            "type": self.kind.name(),
        })
    }
}

/// A task the worker runs.
#[derive(Debug)]
struct TaskHandle {
    id: u32,
    config: Props,
    shared: Arc<TaskShared>,
    target: watch::Sender<TargetState>,
    join: JoinHandle<()>,
}

/// A connector the worker knows.
#[derive(Debug)]
struct Entry {
    config: Props,
    kind: ConnectorType,
    target: TargetState,
    state: State,
    trace: Option<String>,
    instance: Option<Instance>,
    tasks: Vec<TaskHandle>,
    /// The plugin's version, as statuses show it.
    version: String,
    /// Whether the connector itself is this worker's to run (a distributed worker may run only
    /// some of its tasks).
    owned: bool,
}

impl Entry {
    /// A connector known to this worker, not running yet.
    fn new(config: Props, kind: ConnectorType, target: TargetState, version: String, owned: bool) -> Entry {
        Entry {
            config,
            kind,
            target,
            state: State::Unassigned,
            trace: None,
            instance: None,
            tasks: Vec::new(),
            version,
            owned,
        }
    }
}

/// A worker running connectors on a substrate.
#[derive(Debug, Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    substrate: Arc<dyn Substrate>,
    config: Config,
    plugins: Plugins,
    worker_id: String,
    offsets: Arc<OffsetStore>,
    /// Changes happen one at a time, as Kafka's herder makes them.
    connectors: Mutex<BTreeMap<String, Entry>>,
    cluster: String,
}

impl Worker {
    /// A worker on `substrate` with the worker config `props`, identified as `worker_id` (its
    /// REST address, `host:port`): reads the stored offsets; runs nothing yet.
    pub async fn start(
        substrate: Arc<dyn Substrate>,
        props: &Props,
        plugins: Plugins,
        worker_id: impl Into<String>,
    ) -> Result<Worker, ConnectError> {
        let config = worker_config_def().parse(props)?;
        let offsets = match config.get("offset.storage.file.filename") {
            Some(file) => OffsetStore::file(file.into()).await?,
            None => {
                let topic = config.string("offset.storage.topic")?;
                OffsetStore::topic(substrate.clone(), topic, config.number("offset.storage.partitions")?).await?
            }
        };
        let cluster = substrate.describe();
        Ok(Worker {
            inner: Arc::new(Inner {
                substrate,
                config,
                plugins,
                worker_id: worker_id.into(),
                offsets: Arc::new(offsets),
                connectors: Mutex::new(BTreeMap::new()),
                cluster,
            }),
        })
    }

    /// The worker's id (`host:port`).
    pub fn id(&self) -> &str {
        &self.inner.worker_id
    }

    /// What `GET /` answers.
    pub fn server_info(&self) -> Json {
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "commit": "freshet",
            "kafka_cluster_id": self.inner.cluster,
        })
    }

    /// The plugins.
    pub fn plugins(&self) -> &Plugins {
        &self.inner.plugins
    }

    /// The connectors' names, sorted.
    pub async fn connectors(&self) -> Vec<String> {
        self.inner.connectors.lock().await.keys().cloned().collect()
    }

    /// A connector's config and tasks.
    pub async fn info(&self, name: &str) -> ApiResult<ConnectorInfo> {
        let connectors = self.inner.connectors.lock().await;
        let entry = connectors.get(name).ok_or_else(|| ApiError::not_found(name))?;
        Ok(info_of(name, entry))
    }

    /// Checks a connector config as `PUT /connector-plugins/{p}/config/validate` does: every key
    /// with its errors (Kafka's `ConfigInfos`).
    pub fn validate(&self, props: &Props) -> ApiResult<Json> {
        let class = props
            .get("connector.class")
            .map(|c| c.trim())
            .filter(|c| !c.is_empty())
            .ok_or_else(|| ApiError::bad_request("Connector config {} contains no connector type".to_string()))?;
        let plugin = self.inner.plugins.connector(class).ok_or_else(|| {
            ApiError::bad_request(format!(
                "Failed to find any class that implements Connector and which name matches {class}, available connectors are: {}",
                self.inner.plugins.connectors().iter().map(|p| p.class.as_str()).collect::<Vec<_>>().join(", ")
            ))
        })?;
        let kind = plugin.kind();
        let instance = plugin.instantiate();
        let common = connector_config_def(Some(kind));
        let own = instance.connector().config_def();
        let mut results: Vec<(ConfigKey, ConfigValue)> = Vec::new();
        let extra: Vec<ConfigValue> =
            check_connector_keys(kind, props).into_iter().chain(instance.connector().validate(props)).collect();
        let def = common.clone().merge(&own);
        for value in def.validate(props) {
            let key = def.key(&value.name).expect("validated keys come from the def").clone();
            results.push((key, value));
        }
        for value in TransformChain::validate(props) {
            let key = ConfigKey::optional(&value.name, ConfigType::String, None, Importance::High, "")
                .in_group(if value.name.starts_with("predicates.") { "Predicates" } else { "Transforms" });
            results.push((key, value));
        }
        for e in extra {
            match results.iter_mut().find(|(_, v)| v.name == e.name) {
                Some((_, v)) => v.errors.extend(e.errors),
                None => {
                    let key = ConfigKey::optional(&e.name, ConfigType::String, None, Importance::High, "");
                    results.push((key, e));
                }
            }
        }
        let error_count: usize = results.iter().map(|(_, v)| v.errors.len()).sum();
        let mut groups: Vec<String> = Vec::new();
        for (k, _) in &results {
            if let Some(g) = &k.group {
                if !groups.contains(g) {
                    groups.push(g.clone());
                }
            }
        }
        Ok(json!({
            "name": plugin.class,
            "error_count": error_count,
            "groups": groups,
            "configs": results.iter().map(|(k, v)| json!({"definition": k.info(), "value": v.info()})).collect::<Vec<_>>(),
        }))
    }

    /// The config problems of `props`, as one message; `None` when it is valid.
    fn invalid(&self, props: &Props) -> ApiResult<Option<String>> {
        let report = self.validate(props)?;
        let count = report["error_count"].as_u64().unwrap_or(0);
        if count == 0 {
            return Ok(None);
        }
        let mut errors = Vec::new();
        for c in report["configs"].as_array().into_iter().flatten() {
            for e in c["value"]["errors"].as_array().into_iter().flatten() {
                errors.push(e.as_str().unwrap_or_default().to_string());
            }
        }
        Ok(Some(format!(
            "Connector configuration is invalid and contains the following {count} error(s):\n{}\nYou can also find the above list of errors at the endpoint `/connector-plugins/{{connectorType}}/config/validate`",
            errors.join("\n")
        )))
    }

    /// A connector config as given for `name`, checked as Kafka Connect checks it before storing
    /// it: the name is valid and matches the config's `name` (added when missing), and the config
    /// validates.
    pub(crate) fn prepare(&self, name: &str, mut config: Props) -> ApiResult<Props> {
        check_name(name)?;
        match config.get("name") {
            Some(n) if n != name => {
                return Err(ApiError::bad_request(format!(
                    "Connector name configuration ({n}) doesn't match connector name in the URL ({name})"
                )))
            }
            Some(_) => {}
            None => {
                config.insert("name".into(), name.into());
            }
        }
        if let Some(message) = self.invalid(&config)? {
            return Err(ApiError::bad_request(message));
        }
        Ok(config)
    }

    /// Creates a connector (`POST /connectors`) and starts it in `initial` state.
    pub async fn create(&self, name: &str, config: Props, initial: TargetState) -> ApiResult<ConnectorInfo> {
        let config = self.prepare(name, config)?;
        let mut connectors = self.inner.connectors.lock().await;
        if connectors.contains_key(name) {
            return Err(ApiError::conflict(format!("Connector {name} already exists")));
        }
        let plugin = self.plugin_of(&config)?;
        let (kind, version) = (plugin.kind(), plugin.instantiate().connector().version());
        let mut entry = Entry::new(config, kind, initial, version, true);
        self.start_connector(name, &mut entry).await;
        let info = info_of(name, &entry);
        connectors.insert(name.to_string(), entry);
        Ok(info)
    }

    /// Replaces a connector's config (`PUT /connectors/{c}/config`), creating it when new:
    /// `(created, info)`.
    pub async fn put_config(&self, name: &str, config: Props) -> ApiResult<(bool, ConnectorInfo)> {
        let config = self.prepare(name, config)?;
        if !self.inner.connectors.lock().await.contains_key(name) {
            return Ok((true, self.create(name, config, TargetState::Started).await?));
        }
        let plugin = self.plugin_of(&config)?;
        let (kind, version) = (plugin.kind(), plugin.instantiate().connector().version());
        let mut connectors = self.inner.connectors.lock().await;
        let entry = connectors.get_mut(name).ok_or_else(|| ApiError::not_found(name))?;
        self.stop_connector(entry).await;
        entry.config = config;
        entry.kind = kind;
        entry.version = version;
        self.start_connector(name, entry).await;
        Ok((false, info_of(name, entry)))
    }

    /// Changes some keys of a connector's config (`PATCH /connectors/{c}/config`; `None`
    /// removes a key).
    pub async fn patch_config(&self, name: &str, patch: BTreeMap<String, Option<String>>) -> ApiResult<ConnectorInfo> {
        let mut config = self.info(name).await?.config;
        for (k, v) in patch {
            match v {
                Some(v) => config.insert(k, v),
                None => config.remove(&k),
            };
        }
        Ok(self.put_config(name, config).await?.1)
    }

    /// Deletes a connector (`DELETE /connectors/{c}`): its tasks are stopped; its offsets stay.
    pub async fn delete(&self, name: &str) -> ApiResult<()> {
        let mut connectors = self.inner.connectors.lock().await;
        let mut entry = connectors.remove(name).ok_or_else(|| ApiError::not_found(name))?;
        self.stop_connector(&mut entry).await;
        Ok(())
    }

    /// Pauses a connector and its tasks.
    pub async fn pause(&self, name: &str) -> ApiResult<()> {
        self.set_target(name, TargetState::Paused).await
    }

    /// Resumes a paused or stopped connector.
    pub async fn resume(&self, name: &str) -> ApiResult<()> {
        self.set_target(name, TargetState::Started).await
    }

    /// Stops a connector: its tasks are shut down (and their offsets stored), so its offsets may
    /// be changed.
    pub async fn stop(&self, name: &str) -> ApiResult<()> {
        self.set_target(name, TargetState::Stopped).await
    }

    async fn set_target(&self, name: &str, target: TargetState) -> ApiResult<()> {
        let mut connectors = self.inner.connectors.lock().await;
        let entry = connectors.get_mut(name).ok_or_else(|| ApiError::not_found(name))?;
        let before = entry.target;
        entry.target = target;
        match (before, target) {
            (a, b) if a == b => {}
            (_, TargetState::Stopped) => self.stop_connector(entry).await,
            (TargetState::Stopped, _) => self.start_connector(name, entry).await,
            (_, target) => {
                for t in &entry.tasks {
                    let _ = t.target.send(target);
                }
                if entry.state != State::Failed {
                    entry.state = if target == TargetState::Paused { State::Paused } else { State::Running };
                }
            }
        }
        Ok(())
    }

    /// Restarts a connector (`POST /connectors/{c}/restart`): the connector alone, or with
    /// `include_tasks` its tasks too; with `only_failed` only what has failed. Returns the status
    /// as it stands once the restart began.
    pub async fn restart(&self, name: &str, include_tasks: bool, only_failed: bool) -> ApiResult<Json> {
        {
            let mut connectors = self.inner.connectors.lock().await;
            let entry = connectors.get_mut(name).ok_or_else(|| ApiError::not_found(name))?;
            let connector_failed = entry.state == State::Failed;
            let restart_connector = !only_failed || connector_failed;
            let failed_tasks: Vec<u32> =
                entry.tasks.iter().filter(|t| t.shared.get().0 == State::Failed).map(|t| t.id).collect();
            if restart_connector && (include_tasks && !only_failed) {
                self.stop_connector(entry).await;
                self.start_connector(name, entry).await;
            } else {
                if restart_connector {
                    self.restart_connector_only(name, entry).await;
                }
                if include_tasks {
                    for id in failed_tasks {
                        self.restart_task_in(name, entry, id).await;
                    }
                }
            }
        }
        self.status(name).await
    }

    /// Restarts one task (`POST /connectors/{c}/tasks/{t}/restart`).
    pub async fn restart_task(&self, name: &str, id: u32) -> ApiResult<()> {
        let mut connectors = self.inner.connectors.lock().await;
        let entry = connectors.get_mut(name).ok_or_else(|| ApiError::not_found(name))?;
        if !entry.tasks.iter().any(|t| t.id == id) {
            return Err(ApiError { status: 404, message: format!("Task {name}-{id} not found") });
        }
        self.restart_task_in(name, entry, id).await;
        Ok(())
    }

    /// A connector's status (`GET /connectors/{c}/status`).
    pub async fn status(&self, name: &str) -> ApiResult<Json> {
        let connectors = self.inner.connectors.lock().await;
        let entry = connectors.get(name).ok_or_else(|| ApiError::not_found(name))?;
        let mut connector =
            json!({"state": entry.state.name(), "worker_id": self.inner.worker_id, "version": entry.version});
        if let Some(trace) = &entry.trace {
            connector["trace"] = json!(trace);
        }
        Ok(json!({
            "name": name,
            "connector": connector,
            "tasks": entry.tasks.iter().map(|t| self.task_json(t, &entry.version)).collect::<Vec<_>>(),
            "type": entry.kind.name(),
        }))
    }

    /// One task's status (`GET /connectors/{c}/tasks/{t}/status`).
    pub async fn task_status(&self, name: &str, id: u32) -> ApiResult<Json> {
        let connectors = self.inner.connectors.lock().await;
        let entry = connectors.get(name).ok_or_else(|| ApiError::not_found(name))?;
        let task = entry
            .tasks
            .iter()
            .find(|t| t.id == id)
            .ok_or_else(|| ApiError { status: 404, message: format!("No status found for task {name}-{id}") })?;
        Ok(self.task_json(task, &entry.version))
    }

    fn task_json(&self, t: &TaskHandle, version: &str) -> Json {
        let (state, trace) = t.shared.get();
        let mut out = json!({"id": t.id, "state": state.name(), "worker_id": self.inner.worker_id, "version": version});
        if let Some(trace) = trace {
            out["trace"] = json!(trace);
        }
        out["metrics"] = t.shared.metrics.to_json();
        out
    }

    /// A connector's tasks and their configs (`GET /connectors/{c}/tasks`).
    pub async fn tasks(&self, name: &str) -> ApiResult<Json> {
        let connectors = self.inner.connectors.lock().await;
        let entry = connectors.get(name).ok_or_else(|| ApiError::not_found(name))?;
        Ok(Json::Array(
            entry.tasks.iter().map(|t| json!({"id": {"connector": name, "task": t.id}, "config": t.config})).collect(),
        ))
    }

    /// A connector's offsets (`GET /connectors/{c}/offsets`), in Kafka Connect's form.
    pub async fn offsets(&self, name: &str) -> ApiResult<Json> {
        let kind = self.info(name).await?.kind;
        self.offsets_of(name, kind).await
    }

    /// The offsets of the connector `name` of `kind`, in Kafka Connect's form.
    pub(crate) async fn offsets_of(&self, name: &str, kind: ConnectorType) -> ApiResult<Json> {
        let offsets = match kind {
            ConnectorType::Source => {
                self.inner.offsets.refresh().await?;
                self.inner
                    .offsets
                    .list(name)
                    .into_iter()
                    .map(|(p, o)| json!({"partition": p, "offset": o}))
                    .collect::<Vec<_>>()
            }
            ConnectorType::Sink => {
                let committed = self.inner.substrate.admin()?.group_offsets(&group_id(name)).await?;
                let offsets: BTreeMap<TopicPartition, i64> =
                    committed.into_iter().filter(|(_, o)| o.offset >= 0).map(|(tp, o)| (tp, o.offset)).collect();
                crate::connector::sink_offsets_json(&offsets)
            }
        };
        Ok(json!({ "offsets": offsets }))
    }

    /// Changes a stopped connector's offsets (`PATCH /connectors/{c}/offsets`): the body's
    /// `offsets`, each a partition and an offset (`null` forgets the partition).
    pub async fn alter_offsets(&self, name: &str, body: &Json) -> ApiResult<Json> {
        self.change_offsets(name, Some(parse_offsets(body)?)).await?;
        Ok(offsets_changed("altered"))
    }

    /// Forgets a stopped connector's offsets (`DELETE /connectors/{c}/offsets`).
    pub async fn reset_offsets(&self, name: &str) -> ApiResult<Json> {
        self.change_offsets(name, None).await?;
        Ok(offsets_changed("reset"))
    }

    /// Alters (`Some`) or resets (`None`) a stopped connector's offsets.
    async fn change_offsets(&self, name: &str, changes: Option<Vec<(SourceMap, Option<SourceMap>)>>) -> ApiResult<()> {
        let connectors = self.inner.connectors.lock().await;
        let entry = connectors.get(name).ok_or_else(|| ApiError::not_found(name))?;
        if entry.target != TargetState::Stopped || !entry.tasks.is_empty() {
            return Err(not_stopped(name));
        }
        self.change_offsets_of(name, entry.kind, &entry.config, changes).await
    }

    /// Alters or resets the offsets of the stopped connector `name` of `kind` and `config`.
    pub(crate) async fn change_offsets_of(
        &self,
        name: &str,
        kind: ConnectorType,
        config: &Props,
        changes: Option<Vec<(SourceMap, Option<SourceMap>)>>,
    ) -> ApiResult<()> {
        match kind {
            ConnectorType::Source => {
                self.inner.offsets.refresh().await?;
                let changes = match changes {
                    Some(c) => c,
                    None => self.inner.offsets.list(name).into_iter().map(|(p, _)| (p, None)).collect(),
                };
                let plugin = self.plugin_of(config)?;
                if let Instance::Source(connector) = plugin.instantiate() {
                    connector.alter_offsets(config, &changes)?;
                }
                self.inner.offsets.write(name, changes).await?;
            }
            ConnectorType::Sink => self.change_sink_offsets(name, changes).await?,
        }
        Ok(())
    }

    async fn change_sink_offsets(
        &self,
        name: &str,
        changes: Option<Vec<(SourceMap, Option<SourceMap>)>>,
    ) -> ApiResult<()> {
        let admin = self.inner.substrate.admin()?;
        let group = group_id(name);
        let Some(changes) = changes else {
            admin.delete_group(&group).await?;
            return Ok(());
        };
        let mut set = BTreeMap::new();
        let mut forget = Vec::new();
        for (partition, offset) in changes {
            let topic = partition.get("kafka_topic").and_then(Json::as_str);
            let number = partition.get("kafka_partition").and_then(Json::as_u64).and_then(|p| u32::try_from(p).ok());
            let (Some(topic), Some(number)) = (topic, number) else {
                return Err(ApiError::bad_request(
                    "Sink connector offsets need a partition with \"kafka_topic\" (a string) and \"kafka_partition\" (a non-negative integer)",
                ));
            };
            let tp = TopicPartition::new(topic, number);
            match offset {
                None => forget.push(tp),
                Some(o) => {
                    let offset = o.get("kafka_offset").and_then(Json::as_i64).filter(|o| *o >= 0).ok_or_else(|| {
                        ApiError::bad_request(
                            "Sink connector offsets need an offset with \"kafka_offset\" (a non-negative integer)",
                        )
                    })?;
                    set.insert(tp, OffsetAndMetadata::new(offset));
                }
            }
        }
        if !forget.is_empty() {
            // The group's other offsets are kept: the group is deleted and they are committed again.
            let mut keep = admin.group_offsets(&group).await?;
            keep.retain(|tp, o| !forget.contains(tp) && !set.contains_key(tp) && o.offset >= 0);
            admin.delete_group(&group).await?;
            set.extend(keep.into_iter().map(|(tp, o)| (tp, OffsetAndMetadata::new(o.offset))));
        }
        if !set.is_empty() {
            let mut consumer =
                self.inner.substrate.consumer(ConsumerConfig { group_id: Some(group), ..ConsumerConfig::default() })?;
            consumer.commit(set).await?;
        }
        Ok(())
    }

    /// Stops every connector and task, storing their offsets.
    pub async fn shutdown(&self) {
        let mut connectors = self.inner.connectors.lock().await;
        for entry in connectors.values_mut() {
            self.stop_connector(entry).await;
        }
        connectors.clear();
    }

    fn plugin_of(&self, config: &Props) -> ApiResult<&crate::connector::ConnectorPlugin> {
        let class = config.get("connector.class").map(String::as_str).unwrap_or_default();
        self.inner
            .plugins
            .connector(class)
            .ok_or_else(|| ApiError::bad_request(format!("no connector plugin is called {class:?}")))
    }

    /// Starts a connector's instance and its tasks, as its target state says; failures leave it
    /// FAILED with the reason.
    async fn start_connector(&self, name: &str, entry: &mut Entry) {
        entry.trace = None;
        if entry.target == TargetState::Stopped {
            entry.state = State::Stopped;
            return;
        }
        match self.start_instance(entry).await {
            Ok(task_configs) => {
                entry.state = if entry.target == TargetState::Paused { State::Paused } else { State::Running };
                for (id, config) in task_configs.into_iter().enumerate() {
                    let handle = self.spawn_task(name, entry, id as u32, config);
                    entry.tasks.push(handle);
                }
            }
            Err(e) => {
                tracing::error!(connector = name, error = %e, "the connector failed to start");
                entry.state = State::Failed;
                entry.trace = Some(format!("{e}\n{e:?}"));
            }
        }
    }

    /// Makes and starts the connector's instance; its task configs.
    async fn start_instance(&self, entry: &mut Entry) -> Result<Vec<Props>, ConnectError> {
        let plugin =
            self.plugin_of(&entry.config).map_err(|e| ConnectError::config("connector.class", "", e.message))?;
        let mut instance = plugin.instantiate();
        let def: ConfigDef = connector_config_def(Some(entry.kind)).merge(&instance.connector().config_def());
        let config = def.parse(&entry.config)?;
        // The connector's own checks (Kafka's `Connector.validate`) hold before it starts, so
        // no connector repeats them in `start`.
        let problem = instance.connector().validate(&entry.config).into_iter().find(|v| !v.errors.is_empty());
        if let Some(p) = problem {
            let error = p.errors.into_iter().next().unwrap_or_default();
            return Err(ConnectError::config(p.name, p.value.unwrap_or_default(), error));
        }
        instance.connector_mut().start(&config).await?;
        let max_tasks: usize = config.number("tasks.max")?;
        let mut task_configs = instance.connector().task_configs(max_tasks)?;
        if task_configs.len() > max_tasks {
            if config.boolean("tasks.max.enforce", true)? {
                return Err(ConnectError::Task(format!(
                    "The connector has generated {} tasks, which is greater than {max_tasks}, the maximum number of \
                     tasks it is configured to create (set tasks.max.enforce=false to allow it)",
                    task_configs.len()
                )));
            }
            tracing::warn!(tasks = task_configs.len(), max_tasks, "the connector generated more tasks than tasks.max");
        }
        // Each task's config names its class, as Kafka's worker adds it.
        let task_class = match plugin.class.strip_suffix("Connector") {
            Some(stem) => format!("{stem}Task"),
            None => format!("{}Task", plugin.class),
        };
        for config in &mut task_configs {
            config.entry("task.class".into()).or_insert_with(|| task_class.clone());
        }
        entry.instance = Some(instance);
        Ok(task_configs)
    }

    /// Restarts the connector's instance alone; its tasks are restarted only if the task configs
    /// it gives changed.
    async fn restart_connector_only(&self, name: &str, entry: &mut Entry) {
        if let Some(mut instance) = entry.instance.take() {
            if let Err(e) = instance.connector_mut().stop().await {
                tracing::warn!(connector = name, error = %e, "the connector failed to stop");
            }
        }
        if entry.target == TargetState::Stopped {
            return;
        }
        entry.trace = None;
        match self.start_instance(entry).await {
            Ok(configs) => {
                entry.state = if entry.target == TargetState::Paused { State::Paused } else { State::Running };
                let same =
                    configs.len() == entry.tasks.len() && configs.iter().zip(&entry.tasks).all(|(c, t)| *c == t.config);
                if !same {
                    self.stop_tasks(entry).await;
                    for (id, config) in configs.into_iter().enumerate() {
                        let handle = self.spawn_task(name, entry, id as u32, config);
                        entry.tasks.push(handle);
                    }
                }
            }
            Err(e) => {
                entry.state = State::Failed;
                entry.trace = Some(format!("{e}\n{e:?}"));
            }
        }
    }

    async fn restart_task_in(&self, name: &str, entry: &mut Entry, id: u32) {
        let Some(index) = entry.tasks.iter().position(|t| t.id == id) else { return };
        let old = entry.tasks.remove(index);
        self.stop_task(old.target, old.join).await;
        let handle = self.spawn_task(name, entry, id, old.config);
        entry.tasks.insert(index, handle);
    }

    /// Stops a connector's tasks and instance.
    async fn stop_connector(&self, entry: &mut Entry) {
        self.stop_tasks(entry).await;
        if let Some(mut instance) = entry.instance.take() {
            if let Err(e) = instance.connector_mut().stop().await {
                tracing::warn!(error = %e, "a connector failed to stop");
            }
        }
        entry.state = if entry.target == TargetState::Stopped { State::Stopped } else { State::Unassigned };
    }

    async fn stop_tasks(&self, entry: &mut Entry) {
        let tasks = std::mem::take(&mut entry.tasks);
        // All are told first, so they stop together.
        for t in &tasks {
            let _ = t.target.send(TargetState::Stopped);
        }
        for t in tasks {
            self.stop_task(t.target, t.join).await;
        }
    }

    /// Waits for a told task to finish, up to `task.shutdown.graceful.timeout.ms`, then abandons it.
    async fn stop_task(&self, target: watch::Sender<TargetState>, mut join: JoinHandle<()>) {
        let _ = target.send(TargetState::Stopped);
        let grace = self.inner.config.number_or("task.shutdown.graceful.timeout.ms", 5000u64).unwrap_or(5000);
        if tokio::time::timeout(Duration::from_millis(grace), &mut join).await.is_err() {
            tracing::warn!("a task did not stop within task.shutdown.graceful.timeout.ms; abandoning it");
            join.abort();
        }
    }

    fn spawn_task(&self, name: &str, entry: &Entry, id: u32, config: Props) -> TaskHandle {
        let (target_tx, target_rx) = watch::channel(entry.target);
        let shared = TaskShared::new();
        let run = TaskRun {
            connector: name.to_string(),
            id,
            task_config: Config::from_props(config.clone()),
            connector_config: Config::from_props(entry.config.clone()),
            worker_config: self.inner.config.clone(),
            substrate: self.inner.substrate.clone(),
            offsets: self.inner.offsets.clone(),
            target: target_rx,
            shared: shared.clone(),
        };
        let join = match self.plugin_of(&entry.config) {
            Ok(plugin) => tokio::spawn(supervise(run, plugin.clone())),
            Err(e) => {
                shared.fail(&ConnectError::Task(e.message));
                tokio::spawn(async {})
            }
        };
        TaskHandle { id, config, shared, target: target_tx, join }
    }
}

/// Runs a task and, when it fails, makes a new one and runs it again after a backoff (1 s,
/// doubling up to `errors.task.restart.backoff.max.ms`), at most `errors.task.restart.max` times
/// in a row (0: never, as Kafka leaves a failed task; -1: always); then it stays FAILED with the
/// trace. A task that ran longer than the longest backoff before failing starts a new count.
async fn supervise(mut run: TaskRun, plugin: crate::connector::ConnectorPlugin) {
    let label = format!("{}-{}", run.connector, run.id);
    let max: i64 = run.connector_config.number_or("errors.task.restart.max", 10).unwrap_or(10);
    let backoff_max = Duration::from_millis(
        run.connector_config.number_or("errors.task.restart.backoff.max.ms", 60_000).unwrap_or(60_000),
    );
    let mut attempts: i64 = 0;
    loop {
        let started = tokio::time::Instant::now();
        // A task is made from an unstarted connector, as Kafka makes it from its class.
        let result = match plugin.instantiate() {
            Instance::Source(c) => source::run(run.clone(), c.task()).await,
            Instance::Sink(c) => sink::run(run.clone(), c.task()).await,
        };
        let error = match result {
            Ok(()) => {
                run.shared.set(State::Unassigned);
                return;
            }
            Err(e) => e,
        };
        if started.elapsed() > backoff_max {
            attempts = 0;
        }
        let stopping = *run.target.borrow() == TargetState::Stopped;
        if stopping || (max >= 0 && attempts >= max) {
            tracing::error!(task = label, error = %error, "the task failed");
            run.shared.fail(&error);
            return;
        }
        attempts += 1;
        let wait = Duration::from_secs(1).saturating_mul(1 << (attempts - 1).min(16)).min(backoff_max);
        tracing::warn!(task = label, error = %error, ?wait, attempt = attempts, "the task failed; restarting it");
        run.shared.restarting(&error);
        run.shared.metrics.restarts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stopped = async {
            while *run.target.borrow_and_update() != TargetState::Stopped {
                if run.target.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped => {
                run.shared.fail(&error);
                return;
            }
        }
    }
}

fn info_of(name: &str, entry: &Entry) -> ConnectorInfo {
    ConnectorInfo {
        name: name.to_string(),
        config: entry.config.clone(),
        tasks: entry.tasks.iter().map(|t| t.id).collect(),
        kind: entry.kind,
    }
}

/// A connector name Kafka Connect accepts: not blank, no ISO control characters.
fn check_name(name: &str) -> ApiResult<()> {
    if name.trim().is_empty() {
        return Err(ApiError::bad_request("Connector name cannot be empty"));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!("Connector name {name:?} contains control characters")));
    }
    Ok(())
}

/// Kafka Connect's refusal of an offsets change while the connector `name` runs.
pub(crate) fn not_stopped(name: &str) -> ApiError {
    ApiError::bad_request(format!(
        "Connectors must be in the STOPPED state before their offsets can be modified. This can be done for the \
         specified connector by issuing a 'PUT' request to the '/connectors/{name}/stop' endpoint"
    ))
}

/// Kafka Connect's answer to a change of offsets (`altered` or `reset`).
pub(crate) fn offsets_changed(how: &str) -> Json {
    json!({"message": format!("The offsets for this connector have been {how} successfully")})
}

/// The `offsets` of a `PATCH /connectors/{c}/offsets` body: each a partition and an offset
/// (`null` forgets the partition).
pub(crate) fn parse_offsets(body: &Json) -> ApiResult<Vec<(SourceMap, Option<SourceMap>)>> {
    let entries = body.get("offsets").and_then(Json::as_array).ok_or_else(|| {
        ApiError::bad_request("Partitions / offsets need to be provided for an alter offsets request")
    })?;
    let mut parsed: Vec<(SourceMap, Option<SourceMap>)> = Vec::new();
    for e in entries {
        let partition = e
            .get("partition")
            .and_then(Json::as_object)
            .ok_or_else(|| ApiError::bad_request("The partition for each offset entry must be a JSON object"))?;
        let offset = match e.get("offset") {
            None | Some(Json::Null) => None,
            Some(Json::Object(o)) => Some(o.clone()),
            Some(_) => return Err(ApiError::bad_request("The offset for each entry must be a JSON object or null")),
        };
        parsed.push((partition.clone(), offset));
    }
    if parsed.is_empty() {
        return Err(ApiError::bad_request("Partitions / offsets need to be provided for an alter offsets request"));
    }
    Ok(parsed)
}
