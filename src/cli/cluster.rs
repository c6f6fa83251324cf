//! `freshet cluster`: a local cluster of brokers for trying one out, each node its own
//! `freshet broker` process on loopback ports.

use crate::*;

#[derive(clap::Args)]
pub(crate) struct ClusterArgs {
    /// Brokers to run. The first three are also the controllers of the metadata quorum.
    #[arg(long, default_value_t = 3)]
    pub(crate) brokers: u16,
    /// The nodes' directory: `node-<id>/server.properties` and `node-<id>/data` each. A second
    /// start on the same directory starts the same cluster again.
    #[arg(long, default_value = "freshet-cluster")]
    pub(crate) data_dir: PathBuf,
    /// Broker 1's client port; broker n listens on this + n - 1, and its controller listener
    /// 100 above.
    #[arg(long, default_value_t = 9092)]
    pub(crate) port: u16,
}

/// Writes each node's properties (Kafka's keys, as a user would) unless there already are some,
/// and formats each node's data directory with one cluster id.
fn prepare(args: &ClusterArgs) -> anyhow::Result<(String, Vec<PathBuf>)> {
    anyhow::ensure!(args.brokers >= 1, "--brokers 0: a cluster needs a broker");
    anyhow::ensure!(
        u32::from(args.port) + 100 + u32::from(args.brokers) <= u32::from(u16::MAX),
        "--port {}: the ports of {} brokers and their controllers do not fit below 65536",
        args.port,
        args.brokers
    );
    let controllers = args.brokers.min(3);
    let voters: Vec<String> = (1..=controllers).map(|n| format!("{n}@127.0.0.1:{}", args.port + 100 + n - 1)).collect();
    let dirs: Vec<PathBuf> = (1..=args.brokers).map(|n| args.data_dir.join(format!("node-{n}"))).collect();
    // The cluster's id: the one a node already has, else a new one.
    let mut cluster_id = None;
    for dir in &dirs {
        if let Some(meta) = crate::storage::read_meta(&dir.join("data"))? {
            cluster_id.get_or_insert(meta.cluster_id);
        }
    }
    let cluster_id = cluster_id.unwrap_or_else(crate::storage::random_cluster_id);
    let mut files = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let n = i as u16 + 1;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let file = dir.join("server.properties");
        if !file.exists() {
            let controller = n <= controllers;
            let client = format!("127.0.0.1:{}", args.port + n - 1);
            let listeners = if controller {
                format!("PLAINTEXT://{client},CONTROLLER://127.0.0.1:{}", args.port + 100 + n - 1)
            } else {
                format!("PLAINTEXT://{client}")
            };
            let text = format!(
                "# Node {n} of a local Freshet cluster (written by freshet cluster; edit freely)\n\
                 node.id={n}\n\
                 process.roles={}\n\
                 listeners={listeners}\n\
                 advertised.listeners=PLAINTEXT://{client}\n\
                 controller.listener.names=CONTROLLER\n\
                 listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
                 controller.quorum.voters={}\n\
                 log.dirs={}\n",
                if controller { "broker,controller" } else { "broker" },
                voters.join(","),
                std::path::absolute(dir.join("data"))?.display(),
            );
            std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
        }
        let data = dir.join("data");
        match crate::storage::read_meta(&data)? {
            Some(meta) => anyhow::ensure!(
                meta.cluster_id == cluster_id && meta.node_id == i32::from(n),
                "{} belongs to node {} of cluster {}, not to node {n} of cluster {cluster_id}",
                data.display(),
                meta.node_id,
                meta.cluster_id
            ),
            None => crate::storage::write_meta(
                &data,
                &crate::storage::Meta { cluster_id: cluster_id.clone(), node_id: i32::from(n) },
            )?,
        }
        files.push(file);
    }
    Ok((cluster_id, files))
}

pub(crate) async fn cluster(args: ClusterArgs) -> anyhow::Result<()> {
    let (cluster_id, files) = prepare(&args)?;
    let mut stop = crate::target::StopSignals::listen()?;
    let exe = std::env::current_exe().context("finding the freshet executable")?;
    let mut nodes = Vec::new();
    for file in &files {
        let child = tokio::process::Command::new(&exe)
            .arg("broker")
            .arg("--config")
            .arg(file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting the node of {}", file.display()))?;
        nodes.push(child);
    }
    let bootstrap: Vec<String> = (0..args.brokers).map(|i| format!("127.0.0.1:{}", args.port + i)).collect();
    say(&format!(
        "Freshet cluster {cluster_id}: {} brokers, bootstrap servers {} (data in {}); Ctrl-C stops it",
        args.brokers,
        bootstrap.join(","),
        args.data_dir.display()
    ));
    // Until a stop is asked for or a node exits on its own.
    let exited = {
        let waits = nodes.iter_mut().map(|n| Box::pin(n.wait()));
        tokio::select! {
            _ = stop.wait() => None,
            (status, i, _) = futures::future::select_all(waits) => Some((i, status)),
        }
    };
    if let Some((i, status)) = &exited {
        say(&format!("node {} exited ({status:?}); stopping the others", i + 1));
    }
    // Each node stops cleanly on SIGTERM, as `freshet broker` does.
    for node in &nodes {
        if let Some(pid) = node.id() {
            let _ = tokio::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await;
        }
    }
    for (i, mut node) in nodes.into_iter().enumerate() {
        match tokio::time::timeout(Duration::from_secs(30), node.wait()).await {
            Ok(_) => {}
            Err(_) => {
                say(&format!("node {} did not stop within 30 s; killing it", i + 1));
                let _ = node.kill().await;
            }
        }
    }
    say("Cluster stopped.");
    match exited {
        Some((i, _)) => anyhow::bail!("node {} of the cluster exited on its own", i + 1),
        None => Ok(()),
    }
}
