//! `freshet connect`: a Kafka Connect-style worker running connector pipelines, with its REST API.

use std::sync::Arc;

use freshet::connectors::config::{parse_properties, Props};
use freshet::connectors::worker::TargetState;
use freshet::connectors::{DistributedWorker, Plugins, Worker};

use crate::*;

#[derive(clap::Subcommand)]
pub(crate) enum ConnectCommand {
    /// Run a worker on its own, as Kafka's connect-standalone: the connectors given as files
    /// (Java properties, or JSON: `{"name": .., "config": {..}}` or the config alone) start at
    /// once, and more can be added through the REST API (`listeners`, default
    /// http://:8083). With no `bootstrap.servers` in the worker file (and no `--bootstrap`), the
    /// worker runs on the embedded log of `--data-dir`: a pipeline needs no server.
    Standalone(StandaloneArgs),
    /// Run a worker of a group, as Kafka's connect-distributed: workers with the same `group.id`
    /// share the connectors and tasks, keep configs, statuses and offsets in
    /// `config.storage.topic`, `status.storage.topic` and `offset.storage.topic`, and take over
    /// the work of a worker that stops or dies. Connectors are created through the REST API of
    /// any worker.
    Distributed(DistributedArgs),
}

#[derive(clap::Args)]
pub(crate) struct DistributedArgs {
    /// The worker's properties (Kafka's keys: `bootstrap.servers`, `group.id`, `listeners`,
    /// `config.storage.topic`, `status.storage.topic`, `offset.storage.topic`,
    /// `session.timeout.ms`, `scheduled.rebalance.max.delay.ms`, ...).
    worker: PathBuf,
    #[command(flatten)]
    target: Target,
}

#[derive(clap::Args)]
pub(crate) struct StandaloneArgs {
    /// The worker's properties (Kafka's keys: `bootstrap.servers`, `listeners`,
    /// `key.converter`, `value.converter`, `offset.storage.topic`,
    /// `offset.storage.file.filename`, `offset.flush.interval.ms`, ...).
    worker: PathBuf,
    /// Connector configs to start.
    connectors: Vec<PathBuf>,
    #[command(flatten)]
    target: Target,
}

pub(crate) async fn connect(command: ConnectCommand) -> anyhow::Result<()> {
    match command {
        ConnectCommand::Standalone(args) => standalone(args).await,
        ConnectCommand::Distributed(args) => distributed(args).await,
    }
}

/// The substrate a worker file names (`bootstrap.servers`, unless `--bootstrap` is given), opened.
async fn open_for(props: &Props, mut target: Target) -> anyhow::Result<(Opened, Arc<dyn Substrate>)> {
    if target.bootstrap.is_none() {
        target.bootstrap = props.get("bootstrap.servers").map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    }
    let opened = Opened::open(&target).await?;
    let substrate: Arc<dyn Substrate> = match &opened {
        Opened::Embedded(e) => Arc::new(e.clone()),
        #[cfg(feature = "remote")]
        Opened::Remote(r) => Arc::new(r.clone()),
    };
    Ok((opened, substrate))
}

async fn distributed(args: DistributedArgs) -> anyhow::Result<()> {
    let mut stop = StopSignals::listen()?;
    let props = read_worker(&args.worker)?;
    let (opened, substrate) = open_for(&props, args.target).await?;
    let hosted = HostedWorker::start(substrate, &props, Mode::Distributed, Vec::new())
        .await
        .with_context(|| format!("starting the worker with {}", args.worker.display()))?;
    say(&format!(
        "worker {} of group {} on {}: REST API at http://{}",
        hosted.id,
        props.get("group.id").map(String::as_str).unwrap_or_default(),
        opened_description(&opened),
        hosted.addr
    ));
    stop.wait().await;
    say("stopping: leaving the group, storing offsets");
    hosted.stop().await?;
    opened.close().await
}

/// The worker's id as other workers and statuses name it: `rest.advertised.host.name` and
/// `rest.advertised.port`, or the REST listener's address.
fn advertised_id(props: &Props, addr: std::net::SocketAddr) -> String {
    let host = props.get("rest.advertised.host.name").cloned().unwrap_or_else(|| {
        if addr.ip().is_unspecified() {
            "127.0.0.1".into()
        } else {
            addr.ip().to_string()
        }
    });
    let port = props.get("rest.advertised.port").cloned().unwrap_or_else(|| addr.port().to_string());
    format!("{host}:{port}")
}

async fn standalone(args: StandaloneArgs) -> anyhow::Result<()> {
    let mut stop = StopSignals::listen()?;
    let props = read_worker(&args.worker)?;
    let mut connectors = Vec::new();
    for path in &args.connectors {
        connectors.push(read_connector(path)?);
    }
    let (opened, substrate) = open_for(&props, args.target).await?;
    let hosted = HostedWorker::start(substrate, &props, Mode::Standalone, connectors)
        .await
        .with_context(|| format!("starting the worker with {}", args.worker.display()))?;
    say(&format!("worker {} on {}: REST API at http://{}", hosted.id, opened_description(&opened), hosted.addr));
    stop.wait().await;
    say("stopping: storing offsets");
    hosted.stop().await?;
    opened.close().await
}

/// A worker's properties file.
pub(crate) fn read_worker(path: &std::path::Path) -> anyhow::Result<Props> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(parse_properties(&text))
}

/// Whether a worker runs on its own or as one of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Standalone,
    Distributed,
}

/// The worker behind a REST API.
enum Running {
    Standalone(Worker),
    Distributed(DistributedWorker),
}

/// A worker running with its REST API: in `freshet connect standalone|distributed`, or hosted
/// by `freshet broker` on the log it serves.
pub(crate) struct HostedWorker {
    worker: Running,
    pub(crate) id: String,
    pub(crate) addr: std::net::SocketAddr,
    done: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl HostedWorker {
    /// Starts a worker with `props` on `substrate`, its REST API on the first of its
    /// `listeners`, and (standalone) the `connectors` given as files.
    pub(crate) async fn start(
        substrate: Arc<dyn Substrate>,
        props: &Props,
        mode: Mode,
        connectors: Vec<(PathBuf, String, Props)>,
    ) -> anyhow::Result<HostedWorker> {
        let listener = rest_listener(props).await?;
        let addr = listener.local_addr()?;
        let id = advertised_id(props, addr);
        let (worker, herder): (Running, Arc<dyn freshet::connectors::Herder>) = match mode {
            Mode::Standalone => {
                let worker = Worker::start(substrate, props, Plugins::builtin(), id.clone()).await?;
                for (path, name, config) in connectors {
                    worker
                        .create(&name, config, TargetState::Started)
                        .await
                        .map_err(|e| anyhow::anyhow!("{}: connector {name}: {}", path.display(), e.message))?;
                    say(&format!("connector {name} started ({})", path.display()));
                }
                (Running::Standalone(worker.clone()), Arc::new(worker))
            }
            Mode::Distributed => {
                let worker = DistributedWorker::start(substrate, props, Plugins::builtin(), id.clone()).await?;
                (Running::Distributed(worker.clone()), Arc::new(worker))
            }
        };
        let (done, done_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(freshet::connectors::rest::serve(listener, herder, async move {
            let _ = done_rx.await;
        }));
        Ok(HostedWorker { worker, id, addr, done, server })
    }

    /// Stops the connectors (storing their offsets; a distributed worker leaves its group) and
    /// the REST API.
    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        match &self.worker {
            Running::Standalone(w) => w.shutdown().await,
            Running::Distributed(w) => w.shutdown().await,
        }
        let _ = self.done.send(());
        self.server.await.context("the REST server")?.context("the REST server")
    }
}

fn opened_description(opened: &Opened) -> String {
    match opened {
        Opened::Embedded(e) => e.describe(),
        #[cfg(feature = "remote")]
        Opened::Remote(r) => r.describe(),
    }
}

/// A connector file: `(path, name, config)`.
fn read_connector(path: &std::path::Path) -> anyhow::Result<(PathBuf, String, Props)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let is_json = path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{');
    let config: Props = if is_json {
        let json: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))?;
        let (name, object) = match (json.get("name"), json.get("config")) {
            (name, Some(config)) => (name.and_then(|n| n.as_str()).map(str::to_string), config.clone()),
            (_, None) => (None, json.clone()),
        };
        let object = object
            .as_object()
            .with_context(|| format!("{}: the connector config must be a JSON object", path.display()))?;
        let mut config = Props::new();
        for (k, v) in object {
            let value = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => continue,
                other => other.to_string(),
            };
            config.insert(k.clone(), value);
        }
        if let Some(name) = name {
            config.entry("name".into()).or_insert(name);
        }
        config
    } else {
        parse_properties(&text)
    };
    let name = config
        .get("name")
        .cloned()
        .with_context(|| format!("{}: the connector config has no \"name\"", path.display()))?;
    Ok((path.to_path_buf(), name, config))
}

/// Binds the first of the worker's `listeners` (`http://host:port`; an empty host is every
/// interface).
async fn rest_listener(props: &Props) -> anyhow::Result<tokio::net::TcpListener> {
    let listeners = props.get("listeners").cloned().unwrap_or_else(|| "http://:8083".into());
    let first = listeners.split(',').map(str::trim).find(|l| !l.is_empty()).unwrap_or("http://:8083");
    let address = first
        .strip_prefix("http://")
        .with_context(|| format!("listeners={listeners:?}: only http:// listeners are served"))?;
    let (host, port) =
        address.rsplit_once(':').with_context(|| format!("listeners={listeners:?}: expected http://host:port"))?;
    let host = if host.is_empty() { "0.0.0.0" } else { host.trim_start_matches('[').trim_end_matches(']') };
    let port: u16 = port.parse().with_context(|| format!("listeners={listeners:?}: bad port {port:?}"))?;
    tokio::net::TcpListener::bind((host, port))
        .await
        .with_context(|| format!("listening for the REST API on {host}:{port}"))
}

/// A connect worker's REST API as SQL's connector statements use it (`freshet sql
/// --connect-url`): Freshet's worker or Kafka Connect, both speak it.
#[cfg(feature = "sql")]
#[derive(Debug)]
pub(crate) struct RestConnectors {
    base: String,
    agent: ureq::Agent,
}

#[cfg(feature = "sql")]
impl RestConnectors {
    pub(crate) fn new(url: &str) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(30)))
            .build()
            .into();
        RestConnectors { base: url.trim_end_matches('/').to_string(), agent }
    }

    /// `method path` with a JSON body: the status and the JSON answer (`Null` when empty).
    async fn call(
        &self,
        method: &'static str,
        path: String,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, serde_json::Value), String> {
        let (agent, url) = (self.agent.clone(), format!("{}{path}", self.base));
        tokio::task::spawn_blocking(move || {
            let sent = match (method, body) {
                ("POST", Some(b)) => agent.post(&url).header("Content-Type", "application/json").send(b.to_string()),
                ("PUT", Some(b)) => agent.put(&url).header("Content-Type", "application/json").send(b.to_string()),
                ("DELETE", _) => agent.delete(&url).call(),
                _ => agent.get(&url).call(),
            };
            let mut response = sent.map_err(|e| format!("the connect worker at {url} does not answer: {e}"))?;
            let status = response.status().as_u16();
            let text = response.body_mut().read_to_string().unwrap_or_default();
            let json = if text.trim().is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
            };
            Ok((status, json))
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// The error an answer carries (`{"error_code", "message"}`).
    fn refused(status: u16, body: &serde_json::Value) -> String {
        match body["message"].as_str() {
            Some(message) => message.to_string(),
            None => format!("the connect worker answered {status}: {body}"),
        }
    }
}

#[cfg(feature = "sql")]
#[async_trait::async_trait]
impl freshet::sql::ConnectorAdmin for RestConnectors {
    async fn create(
        &self,
        name: &str,
        kind: &str,
        config: std::collections::BTreeMap<String, String>,
    ) -> Result<(), String> {
        // The class's kind first: a sink created with CREATE SOURCE CONNECTOR is refused.
        let class = config.get("connector.class").cloned().unwrap_or_default();
        let (status, report) = self
            .call("PUT", format!("/connector-plugins/{class}/config/validate"), Some(serde_json::json!(config)))
            .await?;
        if status != 200 {
            return Err(Self::refused(status, &report));
        }
        let full = report["name"].as_str().unwrap_or(&class).to_string();
        let (_, plugins) = self.call("GET", "/connector-plugins".into(), None).await?;
        let actual = plugins
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["class"] == full.as_str())
            .and_then(|p| p["type"].as_str());
        if let Some(actual) = actual.filter(|a| *a != kind) {
            return Err(format!("{class} is a {actual} connector: CREATE {} CONNECTOR", actual.to_uppercase()));
        }
        let body = serde_json::json!({"name": name, "config": config});
        match self.call("POST", "/connectors".into(), Some(body)).await? {
            (201, _) => Ok(()),
            (status, body) => Err(Self::refused(status, &body)),
        }
    }

    async fn list(&self) -> Result<Vec<[String; 4]>, String> {
        let (status, all) = self.call("GET", "/connectors?expand=status&expand=info".into(), None).await?;
        if status != 200 {
            return Err(Self::refused(status, &all));
        }
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        Ok(all
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, c)| {
                [
                    name.clone(),
                    text(&c["info"]["type"]),
                    text(&c["info"]["config"]["connector.class"]),
                    text(&c["status"]["connector"]["state"]),
                ]
            })
            .collect())
    }

    async fn describe(&self, name: &str) -> Result<Vec<(String, String)>, String> {
        let (status, state) = self.call("GET", format!("/connectors/{name}/status"), None).await?;
        if status != 200 {
            return Err(Self::refused(status, &state));
        }
        let (status, info) = self.call("GET", format!("/connectors/{name}"), None).await?;
        if status != 200 {
            return Err(Self::refused(status, &info));
        }
        let text = |v: &serde_json::Value| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
        let mut rows = vec![
            ("name".to_string(), name.to_string()),
            ("class".to_string(), text(&info["config"]["connector.class"])),
            ("type".to_string(), text(&info["type"])),
            ("state".to_string(), text(&state["connector"]["state"])),
            ("worker_id".to_string(), text(&state["connector"]["worker_id"])),
        ];
        for task in state["tasks"].as_array().into_iter().flatten() {
            rows.push((format!("task {}", task["id"]), text(&task["state"])));
            if let Some(trace) = task["trace"].as_str() {
                rows.push((format!("task {} trace", task["id"]), trace.lines().next().unwrap_or_default().to_string()));
            }
        }
        for (k, v) in info["config"].as_object().into_iter().flatten() {
            rows.push((format!("config {k}"), text(v)));
        }
        Ok(rows)
    }

    async fn delete(&self, name: &str) -> Result<bool, String> {
        match self.call("DELETE", format!("/connectors/{name}"), None).await? {
            (204, _) => Ok(true),
            (404, _) => Ok(false),
            (status, body) => Err(Self::refused(status, &body)),
        }
    }
}
