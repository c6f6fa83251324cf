//! The distributed worker, as Kafka Connect's `connect-distributed` runs: workers sharing a
//! `group.id` form a group and share the connectors and tasks between them, and keep everything
//! a restart needs in the log:
//!
//! * connector configs, target states and task configs in the config topic
//!   ([`configs`], `config.storage.topic`), which every worker follows;
//! * statuses in the status topic ([`status`], `status.storage.topic`), so any worker answers a
//!   status request for any connector;
//! * source offsets in the offsets topic, sink offsets as consumer groups, as standalone.
//!
//! Any worker takes a REST request that changes configs and writes it to the config topic;
//! each worker then compares what it runs with what the topic says: the worker running a
//! connector restarts it with a new config and writes the task configs it makes; a change in the
//! set of connectors or tasks makes the workers rejoin the group, and the leader shares the work
//! out again, moving only what must move ([`assign`]). While a worker rebalances, requests that
//! would change configs are answered 409, as Kafka Connect answers them.
//!
//! Differences from Kafka Connect: any worker writes to the config topic (Kafka forwards writes
//! to the leader); task restarts go through the config topic (`freshet-restart-task-...`)
//! rather than a request to the worker running the task.

mod assign;
mod configs;
mod log;
mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use freshet_core::{GroupMembership, Heartbeat, JoinGroup, Substrate};
use serde_json::{json, Value as Json};
use tokio::sync::{mpsc, watch, Mutex};
use tokio::task::JoinHandle;

use self::assign::{Assignment, Leader, Metadata, Work, PROTOCOL, PROTOCOL_TYPE};
use self::configs::{ConfigEvent, ConfigLog, ConfigState};
use self::status::{Status, StatusLog};
use crate::config::{Config, Props};
use crate::connector::ConnectorType;
use crate::error::{ConnectError, Result};
use crate::herder::Herder;
use crate::plugins::Plugins;
use crate::worker::{ensure_topic, not_stopped, offsets_changed, parse_offsets, worker_config_def};
use crate::worker::{ApiError, ApiResult, ConnectorInfo, State};
use crate::worker::{TargetState, Worker};

/// The message of a change refused while the worker rebalances (Kafka's `RebalanceNeededException`).
const REBALANCING: &str = "Request cannot be completed because a rebalance is expected";

/// A worker of a distributed group.
#[derive(Debug, Clone)]
pub struct DistributedWorker {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    worker: Worker,
    configs: ConfigLog,
    statuses: StatusLog,
    membership: Arc<dyn GroupMembership>,
    group: String,
    /// `host:port`, as statuses name the worker.
    worker_id: String,
    /// `http://host:port`.
    url: String,
    timing: Timing,
    rebalancing: AtomicBool,
    generation: AtomicI32,
    shutdown: watch::Sender<bool>,
    group_loop: Mutex<Option<JoinHandle<()>>>,
}

/// The group's timeouts, from the worker config.
#[derive(Debug, Clone, Copy)]
struct Timing {
    session: Duration,
    heartbeat: Duration,
    rebalance: Duration,
    delay: Duration,
}

impl DistributedWorker {
    /// Starts a worker of the group `group.id` on `substrate` with the worker config `props`,
    /// reachable at `worker_id` (`host:port` of its REST API): creates the internal topics when
    /// missing, reads them, and joins the group, which gives it its share of the work.
    pub async fn start(
        substrate: Arc<dyn Substrate>,
        props: &Props,
        plugins: Plugins,
        worker_id: impl Into<String>,
    ) -> Result<DistributedWorker> {
        let config = worker_config_def().parse(props)?;
        let group = config
            .get("group.id")
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .ok_or_else(|| ConnectError::config("group.id", "", "a distributed worker needs the group it joins"))?
            .to_string();
        if config.get("offset.storage.file.filename").is_some() {
            return Err(ConnectError::config(
                "offset.storage.file.filename",
                config.get("offset.storage.file.filename").unwrap_or_default(),
                "a distributed worker keeps source offsets in offset.storage.topic, shared by the group",
            ));
        }
        let timing = timing(&config)?;
        let config_topic = config.string("config.storage.topic")?;
        let status_topic = config.string("status.storage.topic")?;
        ensure_topic(&*substrate, config_topic, 1, &[("cleanup.policy", "compact")]).await?;
        ensure_topic(
            &*substrate,
            status_topic,
            config.number("status.storage.partitions")?,
            &[("cleanup.policy", "compact")],
        )
        .await?;
        let worker_id = worker_id.into();
        let worker = Worker::start(substrate.clone(), props, plugins, worker_id.clone()).await?;
        let (configs, events) = ConfigLog::start(substrate.clone(), config_topic).await?;
        configs.read_to_end().await?;
        let statuses = StatusLog::start(substrate.clone(), status_topic).await?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            worker,
            configs,
            statuses,
            membership: substrate.membership()?,
            group,
            url: format!("http://{worker_id}"),
            worker_id,
            timing,
            rebalancing: AtomicBool::new(true),
            generation: AtomicI32::new(-1),
            shutdown,
            group_loop: Mutex::new(None),
        });
        let task = tokio::spawn(run(shared.clone(), events, shutdown_rx));
        *shared.group_loop.lock().await = Some(task);
        Ok(DistributedWorker { shared })
    }

    /// The worker's id (`host:port`).
    pub fn id(&self) -> &str {
        &self.shared.worker_id
    }

    /// Whether the worker is between generations (rejoining the group, or not joined yet).
    pub fn rebalancing(&self) -> bool {
        self.shared.rebalancing.load(Ordering::SeqCst)
    }

    /// Leaves the group: stops this worker's connectors and tasks (storing their offsets), so
    /// the others take them over at once.
    pub async fn shutdown(&self) {
        let _ = self.shared.shutdown.send(true);
        if let Some(task) = self.shared.group_loop.lock().await.take() {
            let _ = task.await;
        }
    }

    /// A connector's config as the config topic has it, read to its end.
    async fn current(&self, name: &str) -> ApiResult<(ConfigState, Props)> {
        self.shared.configs.read_to_end().await?;
        let state = self.shared.configs.snapshot();
        let config = state.connectors.get(name).cloned().ok_or_else(|| ApiError::not_found(name))?;
        Ok((state, config))
    }

    /// Refuses a change while the worker rebalances.
    fn check_stable(&self) -> ApiResult<()> {
        if self.rebalancing() {
            return Err(ApiError::conflict(REBALANCING));
        }
        Ok(())
    }

    fn info_of(&self, name: &str, state: &ConfigState, config: &Props) -> ConnectorInfo {
        let kind = self.shared.worker.kind_and_version(config).map_or(ConnectorType::Source, |(k, _)| k);
        let tasks = state.tasks.get(name).map_or(0, Vec::len) as u32;
        ConnectorInfo { name: name.into(), config: config.clone(), tasks: (0..tasks).collect(), kind }
    }

    fn status_json(&self, status: &Status, version: &str) -> Json {
        let mut out = json!({"state": status.state, "worker_id": status.worker_id, "version": version});
        if let Some(trace) = &status.trace {
            out["trace"] = json!(trace);
        }
        out
    }
}

fn timing(config: &Config) -> Result<Timing> {
    let ms = |key: &str| -> Result<Duration> { Ok(Duration::from_millis(config.number::<u64>(key)?)) };
    let t = Timing {
        session: ms("session.timeout.ms")?,
        heartbeat: ms("heartbeat.interval.ms")?,
        rebalance: ms("rebalance.timeout.ms")?,
        delay: ms("scheduled.rebalance.max.delay.ms")?,
    };
    if t.heartbeat >= t.session {
        return Err(ConnectError::config(
            "heartbeat.interval.ms",
            t.heartbeat.as_millis().to_string(),
            "must be lower than session.timeout.ms",
        ));
    }
    Ok(t)
}

/// The work the config topic describes.
fn work_of(state: &ConfigState) -> BTreeSet<Work> {
    let (connectors, tasks) = state.work();
    connectors.into_iter().map(Work::Connector).chain(tasks.into_iter().map(|(c, t)| Work::Task(c, t))).collect()
}

/// What this worker runs, with what it was started from, so a change is seen.
#[derive(Debug, Default)]
struct Running {
    /// Each connector's config and target state when (re)started.
    connectors: BTreeMap<String, (Props, TargetState)>,
    /// Each task's config, its connector's config and target state when (re)started.
    tasks: BTreeMap<(String, u32), (Props, Props, TargetState)>,
}

impl Running {
    fn work(&self) -> BTreeSet<Work> {
        self.connectors
            .keys()
            .map(|c| Work::Connector(c.clone()))
            .chain(self.tasks.keys().map(|(c, t)| Work::Task(c.clone(), *t)))
            .collect()
    }
}

/// Why the steady loop ended.
enum Next {
    Rejoin,
    /// The membership is gone: everything stops and the worker joins afresh.
    Lost,
    Shutdown,
}

/// The group loop: join, apply the assignment, heartbeat and follow config changes until a
/// rebalance; again until shut down.
async fn run(
    shared: Arc<Shared>,
    mut events: mpsc::UnboundedReceiver<ConfigEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut member_id = String::new();
    let mut leader = Leader::default();
    let mut running = Running::default();
    let mut published: BTreeMap<(String, Option<u32>), Status> = BTreeMap::new();
    loop {
        shared.rebalancing.store(true, Ordering::SeqCst);
        let outcome = tokio::select! {
            o = rebalance(&shared, &mut member_id, &mut leader, &mut running) => o,
            _ = shutdown.changed() => break,
        };
        let (generation, assignment) = match outcome {
            Ok(Some(joined)) => joined,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(group = shared.group, error = %e, "joining the group failed; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        shared.generation.store(generation, Ordering::SeqCst);
        publish(&shared, &mut published, &running).await;
        shared.rebalancing.store(false, Ordering::SeqCst);
        if !assignment.revoked.is_empty() {
            // Rejoin at once, so what this worker gave up goes elsewhere.
            continue;
        }
        match steady(
            &shared,
            &member_id,
            generation,
            &assignment,
            &mut events,
            &mut shutdown,
            &mut running,
            &mut published,
        )
        .await
        {
            Next::Rejoin => {}
            Next::Lost => {
                tracing::warn!(
                    group = shared.group,
                    "this worker lost its place in the group; stopping its work and rejoining"
                );
                stop_all(&shared, &mut running).await;
                publish(&shared, &mut published, &running).await;
                member_id.clear();
            }
            Next::Shutdown => break,
        }
    }
    shared.rebalancing.store(true, Ordering::SeqCst);
    stop_all(&shared, &mut running).await;
    publish(&shared, &mut published, &running).await;
    if !member_id.is_empty() {
        if let Err(e) = shared.membership.leave(&shared.group, &member_id).await {
            tracing::warn!(group = shared.group, error = %e, "leaving the group failed");
        }
    }
}

/// One rebalance: join, assign (as leader), sync, and apply the assignment. `None`: the group
/// moved on meanwhile, so the worker joins again.
async fn rebalance(
    shared: &Shared,
    member_id: &mut String,
    leader: &mut Leader,
    running: &mut Running,
) -> Result<Option<(i32, Assignment)>> {
    shared.configs.read_to_end().await?;
    let metadata = Metadata { url: shared.url.clone(), running: running.work() };
    let join = JoinGroup {
        group: shared.group.clone(),
        member_id: member_id.clone(),
        protocol_type: PROTOCOL_TYPE.into(),
        protocols: vec![(PROTOCOL.into(), Bytes::from(serde_json::to_vec(&metadata).expect("metadata is JSON")))],
        session_timeout: shared.timing.session,
        rebalance_timeout: shared.timing.rebalance,
    };
    let joined = match shared.membership.join(&join).await {
        Ok(joined) => joined,
        Err(e) => {
            member_id.clear();
            return Err(e.into());
        }
    };
    *member_id = joined.member_id.clone();
    let assignments = if joined.is_leader() {
        let members: Vec<(String, Metadata)> = joined
            .members
            .iter()
            .map(|(id, bytes)| {
                let metadata = serde_json::from_slice(bytes).unwrap_or_else(|e| {
                    tracing::warn!(member = id, error = %e, "a member's metadata is not Freshet's; it is given work afresh");
                    Metadata::default()
                });
                (id.clone(), metadata)
            })
            .collect();
        shared.configs.read_to_end().await?;
        let all = work_of(&shared.configs.snapshot());
        let now = u64::try_from(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis(),
        )
        .unwrap_or(u64::MAX);
        let delay = u64::try_from(shared.timing.delay.as_millis()).unwrap_or(u64::MAX);
        leader
            .assign(&joined.member_id, &members, &all, now, delay)
            .into_iter()
            .map(|(id, a)| (id, Bytes::from(serde_json::to_vec(&a).expect("assignment is JSON"))))
            .collect()
    } else {
        Vec::new()
    };
    let synced = match shared.membership.sync(&shared.group, &joined, PROTOCOL_TYPE, assignments).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(None),
        Err(e) => {
            member_id.clear();
            return Err(e.into());
        }
    };
    let assignment: Assignment = serde_json::from_slice(&synced)
        .map_err(|e| ConnectError::data(format!("the group leader's assignment is not Freshet's: {e}")))?;
    tracing::info!(
        group = shared.group,
        generation = joined.generation,
        leader = assignment.leader,
        work = ?assignment.work,
        revoked = ?assignment.revoked,
        "joined the group"
    );
    // Stop first what this worker gives up, then run what is its now.
    let gone: Vec<Work> = running.work().into_iter().filter(|w| !assignment.work.contains(w)).collect();
    stop(shared, running, &gone).await;
    shared.configs.read_to_end().await?;
    let state = shared.configs.snapshot();
    reconcile(shared, running, &assignment.work, &state).await;
    Ok(Some((joined.generation, assignment)))
}

/// Between rebalances: heartbeats, statuses, config changes and restarts.
#[allow(clippy::too_many_arguments)]
async fn steady(
    shared: &Shared,
    member_id: &str,
    generation: i32,
    assignment: &Assignment,
    events: &mut mpsc::UnboundedReceiver<ConfigEvent>,
    shutdown: &mut watch::Receiver<bool>,
    running: &mut Running,
    published: &mut BTreeMap<(String, Option<u32>), Status>,
) -> Next {
    // The work changed since the leader shared it out (a connector this worker started wrote
    // its task configs, say): the group shares it out again.
    if work_of(&shared.configs.snapshot()) != assignment.all {
        return Next::Rejoin;
    }
    let basis = &assignment.all;
    let rejoin_at = assignment.delay_ms.map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms));
    let mut last_heartbeat = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(shared.timing.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                match shared.membership.heartbeat(&shared.group, generation, member_id).await {
                    Ok(Heartbeat::Stable) => last_heartbeat = tokio::time::Instant::now(),
                    Ok(Heartbeat::Rebalance) => return Next::Rejoin,
                    Ok(Heartbeat::Lost) => return Next::Lost,
                    Err(e) => {
                        tracing::warn!(group = shared.group, error = %e, "a heartbeat failed");
                        if last_heartbeat.elapsed() > shared.timing.session {
                            return Next::Lost;
                        }
                    }
                }
                publish(shared, published, running).await;
                if rejoin_at.is_some_and(|at| tokio::time::Instant::now() >= at) {
                    return Next::Rejoin;
                }
            }
            event = events.recv() => {
                let Some(event) = event else { return Next::Shutdown };
                let state = shared.configs.snapshot();
                match event {
                    ConfigEvent::Changed => {
                        if work_of(&state) != *basis {
                            return Next::Rejoin;
                        }
                        reconcile(shared, running, &assignment.work, &state).await;
                    }
                    ConfigEvent::Restart { connector, include_tasks, only_failed } => {
                        if running.connectors.contains_key(&connector)
                            && (!only_failed || shared.worker.connector_failed_here(&connector).await)
                        {
                            // Started anew from the same config: forget it, and reconcile starts it.
                            running.connectors.remove(&connector);
                        }
                        if include_tasks {
                            shared.worker.restart_tasks_here(&connector, None, only_failed).await;
                        }
                        reconcile(shared, running, &assignment.work, &state).await;
                    }
                    ConfigEvent::RestartTask { connector, task } => {
                        shared.worker.restart_tasks_here(&connector, Some(task), false).await;
                    }
                }
                publish(shared, published, running).await;
            }
            _ = shutdown.changed() => return Next::Shutdown,
        }
    }
}

/// Brings what runs here in line with `work` and the config topic's `state`: starts what is not
/// running, restarts what runs from an older config, pauses and resumes, stops what is gone.
async fn reconcile(shared: &Shared, running: &mut Running, work: &BTreeSet<Work>, state: &ConfigState) {
    let mut gone = Vec::new();
    for w in work {
        match w {
            Work::Connector(name) => {
                let Some(config) = state.connectors.get(name) else {
                    gone.push(w.clone());
                    continue;
                };
                let target = state.target(name);
                match running.connectors.get(name) {
                    Some((c, t)) if c == config && *t == target => continue,
                    Some((c, t)) if c == config && *t != TargetState::Stopped && target != TargetState::Stopped => {
                        shared.worker.set_target_here(name, target).await;
                    }
                    _ => {
                        let made = shared.worker.run_connector(name, config.clone(), target).await;
                        if let Some(task_configs) = made {
                            if state.tasks.get(name) != Some(&task_configs) {
                                if let Err(e) = shared.configs.put_tasks(name, &task_configs).await {
                                    tracing::error!(connector = name, error = %e, "writing the task configs failed");
                                }
                            }
                        }
                    }
                }
                running.connectors.insert(name.clone(), (config.clone(), target));
            }
            Work::Task(name, id) => {
                let (Some(connector), Some(task)) =
                    (state.connectors.get(name), state.tasks.get(name).and_then(|t| t.get(*id as usize)))
                else {
                    gone.push(w.clone());
                    continue;
                };
                let target = state.target(name);
                let key = (name.clone(), *id);
                match running.tasks.get(&key) {
                    Some((t, c, s)) if t == task && c == connector && *s == target => continue,
                    Some((t, c, _)) if t == task && c == connector && target != TargetState::Stopped => {
                        shared.worker.set_target_here(name, target).await;
                    }
                    _ => shared.worker.run_task(name, *id, task.clone(), connector.clone(), target).await,
                }
                running.tasks.insert(key, (task.clone(), connector.clone(), target));
            }
        }
    }
    let extra: Vec<Work> = running.work().into_iter().filter(|w| !work.contains(w)).collect();
    gone.extend(extra);
    stop(shared, running, &gone).await;
}

/// Stops `work` here.
async fn stop(shared: &Shared, running: &mut Running, work: &[Work]) {
    if work.is_empty() {
        return;
    }
    let mut connectors = Vec::new();
    let mut tasks = Vec::new();
    for w in work {
        match w {
            Work::Connector(c) => {
                running.connectors.remove(c);
                connectors.push(c.clone());
            }
            Work::Task(c, t) => {
                running.tasks.remove(&(c.clone(), *t));
                tasks.push((c.clone(), *t));
            }
        }
    }
    shared.worker.stop_here(&connectors, &tasks).await;
}

async fn stop_all(shared: &Shared, running: &mut Running) {
    let all: Vec<Work> = running.work().into_iter().collect();
    stop(shared, running, &all).await;
}

/// Writes to the status topic what changed here since the last call: the state of what runs,
/// and UNASSIGNED for what stopped (unless another worker has reported it since).
async fn publish(shared: &Shared, published: &mut BTreeMap<(String, Option<u32>), Status>, running: &Running) {
    let generation = shared.generation.load(Ordering::SeqCst);
    let here: BTreeMap<(String, Option<u32>), Status> = shared
        .worker
        .statuses_here()
        .await
        .into_iter()
        .filter(|s| match s.task {
            None => running.connectors.contains_key(&s.connector),
            Some(t) => running.tasks.contains_key(&(s.connector.clone(), t)),
        })
        .map(|s| ((s.connector, s.task), Status::new(s.state, s.trace, &shared.worker_id, generation)))
        .collect();
    let mut writes = Vec::new();
    for (key, status) in &here {
        let same = published.get(key).is_some_and(|p| p.state == status.state && p.trace == status.trace);
        if !same {
            writes.push((key.clone(), Some(status.clone())));
        }
    }
    for key in published.keys().filter(|k| !here.contains_key(*k)) {
        let ours = shared.statuses.get(key).is_none_or(|s| s.worker_id == shared.worker_id);
        if ours {
            writes.push((key.clone(), Some(Status::new(State::Unassigned, None, &shared.worker_id, generation))));
        }
    }
    if writes.is_empty() {
        return;
    }
    match shared.statuses.put(writes).await {
        Ok(()) => *published = here,
        Err(e) => tracing::warn!(error = %e, "writing statuses failed; trying again at the next heartbeat"),
    }
}

#[async_trait]
impl Herder for DistributedWorker {
    fn server_info(&self) -> Json {
        self.shared.worker.server_info()
    }

    fn plugins(&self) -> &Plugins {
        self.shared.worker.plugins()
    }

    fn validate(&self, props: &Props) -> ApiResult<Json> {
        self.shared.worker.validate(props)
    }

    async fn connectors(&self) -> Vec<String> {
        self.shared.configs.snapshot().connectors.into_keys().collect()
    }

    async fn info(&self, name: &str) -> ApiResult<ConnectorInfo> {
        let (state, config) = self.current(name).await?;
        Ok(self.info_of(name, &state, &config))
    }

    async fn create(&self, name: &str, config: Props, initial: TargetState) -> ApiResult<ConnectorInfo> {
        let config = self.shared.worker.prepare(name, config)?;
        self.check_stable()?;
        self.shared.configs.read_to_end().await?;
        if self.shared.configs.snapshot().connectors.contains_key(name) {
            return Err(ApiError::conflict(format!("Connector {name} already exists")));
        }
        let target = (initial != TargetState::Started).then_some(initial);
        self.shared.configs.put_connector(name, &config, target).await?;
        let state = self.shared.configs.snapshot();
        Ok(self.info_of(name, &state, &config))
    }

    async fn put_config(&self, name: &str, config: Props) -> ApiResult<(bool, ConnectorInfo)> {
        let config = self.shared.worker.prepare(name, config)?;
        self.check_stable()?;
        self.shared.configs.read_to_end().await?;
        let created = !self.shared.configs.snapshot().connectors.contains_key(name);
        self.shared.configs.put_connector(name, &config, None).await?;
        let state = self.shared.configs.snapshot();
        Ok((created, self.info_of(name, &state, &config)))
    }

    async fn patch_config(&self, name: &str, patch: BTreeMap<String, Option<String>>) -> ApiResult<ConnectorInfo> {
        let (_, mut config) = self.current(name).await?;
        for (k, v) in patch {
            match v {
                Some(v) => config.insert(k, v),
                None => config.remove(&k),
            };
        }
        Ok(self.put_config(name, config).await?.1)
    }

    async fn delete(&self, name: &str) -> ApiResult<()> {
        self.check_stable()?;
        self.current(name).await?;
        self.shared.configs.delete_connector(name).await?;
        Ok(())
    }

    async fn pause(&self, name: &str) -> ApiResult<()> {
        self.check_stable()?;
        self.current(name).await?;
        Ok(self.shared.configs.put_target(name, TargetState::Paused).await?)
    }

    async fn resume(&self, name: &str) -> ApiResult<()> {
        self.check_stable()?;
        self.current(name).await?;
        Ok(self.shared.configs.put_target(name, TargetState::Started).await?)
    }

    async fn stop(&self, name: &str) -> ApiResult<()> {
        self.check_stable()?;
        self.current(name).await?;
        // As Kafka: the connector's tasks go with their configs.
        self.shared.configs.put_target(name, TargetState::Stopped).await?;
        Ok(self.shared.configs.put_tasks(name, &[]).await?)
    }

    async fn restart(&self, name: &str, include_tasks: bool, only_failed: bool) -> ApiResult<Json> {
        self.check_stable()?;
        let mut status = self.status(name).await?;
        self.shared.configs.request_restart(name, include_tasks, only_failed).await?;
        // The status as the restart begins: what will restart is RESTARTING.
        let restarting = |s: &mut Json| {
            if !only_failed || s["state"] == "FAILED" {
                s["state"] = json!("RESTARTING");
            }
        };
        restarting(&mut status["connector"]);
        if include_tasks {
            for t in status["tasks"].as_array_mut().into_iter().flatten() {
                restarting(t);
            }
        }
        Ok(status)
    }

    async fn restart_task(&self, name: &str, id: u32) -> ApiResult<()> {
        self.check_stable()?;
        let (state, _) = self.current(name).await?;
        if state.tasks.get(name).is_none_or(|t| t.len() <= id as usize) {
            return Err(ApiError { status: 404, message: format!("Task {name}-{id} not found") });
        }
        Ok(self.shared.configs.request_task_restart(name, id).await?)
    }

    async fn status(&self, name: &str) -> ApiResult<Json> {
        let (state, config) = self.current(name).await?;
        let (kind, version) =
            self.shared.worker.kind_and_version(&config).unwrap_or((ConnectorType::Source, String::new()));
        let connector = self.shared.statuses.get(&(name.to_string(), None)).unwrap_or(Status {
            state: State::Unassigned.name().into(),
            trace: None,
            worker_id: String::new(),
            generation: -1,
        });
        let n_tasks = state.tasks.get(name).map_or(0, Vec::len) as u32;
        let mut tasks = Vec::new();
        for id in 0..n_tasks {
            if let Some(s) = self.shared.statuses.get(&(name.to_string(), Some(id))) {
                let mut t = self.status_json(&s, &version);
                t["id"] = json!(id);
                if let Some(metrics) = self.shared.worker.task_metrics_here(name, id).await {
                    t["metrics"] = metrics;
                }
                tasks.push(t);
            }
        }
        Ok(json!({
            "name": name,
            "connector": self.status_json(&connector, &version),
            "tasks": tasks,
            "type": kind.name(),
        }))
    }

    async fn task_status(&self, name: &str, id: u32) -> ApiResult<Json> {
        let status = self.status(name).await?;
        status["tasks"]
            .as_array()
            .and_then(|tasks| tasks.iter().find(|t| t["id"] == json!(id)).cloned())
            .ok_or_else(|| ApiError { status: 404, message: format!("No status found for task {name}-{id}") })
    }

    async fn tasks(&self, name: &str) -> ApiResult<Json> {
        let (state, _) = self.current(name).await?;
        let configs = state.tasks.get(name).cloned().unwrap_or_default();
        Ok(Json::Array(
            configs
                .into_iter()
                .enumerate()
                .map(|(i, c)| json!({"id": {"connector": name, "task": i}, "config": c}))
                .collect(),
        ))
    }

    async fn offsets(&self, name: &str) -> ApiResult<Json> {
        let (_, config) = self.current(name).await?;
        let (kind, _) = self.shared.worker.kind_and_version(&config)?;
        self.shared.worker.offsets_of(name, kind).await
    }

    async fn alter_offsets(&self, name: &str, body: &Json) -> ApiResult<Json> {
        let changes = parse_offsets(body)?;
        self.change_offsets(name, Some(changes)).await?;
        Ok(offsets_changed("altered"))
    }

    async fn reset_offsets(&self, name: &str) -> ApiResult<Json> {
        self.change_offsets(name, None).await?;
        Ok(offsets_changed("reset"))
    }
}

impl DistributedWorker {
    async fn change_offsets(
        &self,
        name: &str,
        changes: Option<Vec<(crate::record::SourceMap, Option<crate::record::SourceMap>)>>,
    ) -> ApiResult<()> {
        self.check_stable()?;
        let (state, config) = self.current(name).await?;
        if state.target(name) != TargetState::Stopped || state.tasks.get(name).is_some_and(|t| !t.is_empty()) {
            return Err(not_stopped(name));
        }
        let (kind, _) = self.shared.worker.kind_and_version(&config)?;
        self.shared.worker.change_offsets_of(name, kind, &config, changes).await
    }
}
