//! `freshet connect`: a Kafka Connect-style worker running connector pipelines, with its REST API.

use std::sync::Arc;

use freshet::connectors::config::{parse_properties, Props};
use freshet::connectors::worker::TargetState;
use freshet::connectors::{Plugins, Worker};

use crate::*;

#[derive(clap::Subcommand)]
pub(crate) enum ConnectCommand {
    /// Run a worker on its own, as Kafka's connect-standalone: the connectors given as files
    /// (Java properties, or JSON: `{"name": .., "config": {..}}` or the config alone) start at
    /// once, and more can be added through the REST API (`listeners`, default
    /// http://:8083). With no `bootstrap.servers` in the worker file (and no `--bootstrap`), the
    /// worker runs on the embedded log of `--data-dir`: a pipeline needs no server.
    Standalone(StandaloneArgs),
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
    }
}

async fn standalone(args: StandaloneArgs) -> anyhow::Result<()> {
    let mut stop = StopSignals::listen()?;
    let props = read_worker(&args.worker)?;
    let mut connectors = Vec::new();
    for path in &args.connectors {
        connectors.push(read_connector(path)?);
    }
    let mut target = args.target;
    if target.bootstrap.is_none() {
        target.bootstrap = props.get("bootstrap.servers").map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    }
    let opened = Opened::open(&target).await?;
    let substrate: Arc<dyn Substrate> = match &opened {
        Opened::Embedded(e) => Arc::new(e.clone()),
        #[cfg(feature = "remote")]
        Opened::Remote(r) => Arc::new(r.clone()),
    };
    let hosted = HostedWorker::start(substrate, &props, connectors)
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

/// A worker running with its REST API: in `freshet connect standalone`, or hosted by `freshet
/// broker` on the log it serves.
pub(crate) struct HostedWorker {
    worker: Worker,
    pub(crate) id: String,
    pub(crate) addr: std::net::SocketAddr,
    done: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl HostedWorker {
    /// Starts a worker with `props` on `substrate`, its REST API on the first of its
    /// `listeners`, and the `connectors` given as files.
    pub(crate) async fn start(
        substrate: Arc<dyn Substrate>,
        props: &Props,
        connectors: Vec<(PathBuf, String, Props)>,
    ) -> anyhow::Result<HostedWorker> {
        let listener = rest_listener(props).await?;
        let addr = listener.local_addr()?;
        let host = props.get("rest.advertised.host.name").cloned().unwrap_or_else(|| {
            if addr.ip().is_unspecified() {
                "127.0.0.1".into()
            } else {
                addr.ip().to_string()
            }
        });
        let port = props.get("rest.advertised.port").cloned().unwrap_or_else(|| addr.port().to_string());
        let id = format!("{host}:{port}");
        let worker = Worker::start(substrate, props, Plugins::builtin(), id.clone()).await?;
        for (path, name, config) in connectors {
            worker
                .create(&name, config, TargetState::Started)
                .await
                .map_err(|e| anyhow::anyhow!("{}: connector {name}: {}", path.display(), e.message))?;
            say(&format!("connector {name} started ({})", path.display()));
        }
        let (done, done_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(freshet::connectors::rest::serve(listener, worker.clone(), async move {
            let _ = done_rx.await;
        }));
        Ok(HostedWorker { worker, id, addr, done, server })
    }

    /// Stops the connectors (storing their offsets) and the REST API.
    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        self.worker.shutdown().await;
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
