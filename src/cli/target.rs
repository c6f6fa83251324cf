//! What a command works on: a data directory (the embedded log) or, with `--bootstrap`, a
//! cluster; and how commands talk to the terminal.

use crate::*;

/// Where a command works: a data directory's embedded log, or a cluster.
#[derive(clap::Args)]
pub(crate) struct Target {
    /// Data directory of the embedded log.
    #[arg(long, default_value = "freshet-data")]
    pub(crate) data_dir: PathBuf,
    /// Work on a Kafka-protocol cluster instead (a Freshet broker or any Kafka), `host:port[,host:port...]`.
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) bootstrap: Option<String>,
}

/// The log a command opened.
pub(crate) enum Opened {
    Embedded(Embedded),
    #[cfg(feature = "remote")]
    Remote(freshet::core::remote::Remote),
}

impl Opened {
    pub(crate) async fn open(target: &Target) -> anyhow::Result<Opened> {
        match &target.bootstrap {
            None => Ok(Opened::Embedded(open_log(&target.data_dir).await?)),
            #[cfg(feature = "remote")]
            Some(bootstrap) => {
                let remote = freshet::core::remote::Remote::new(bootstrap.clone());
                // Fail early, with the address, when nothing answers there.
                remote.admin()?.list_topics().await.with_context(|| format!("reaching the cluster at {bootstrap}"))?;
                Ok(Opened::Remote(remote))
            }
            #[cfg(not(feature = "remote"))]
            Some(_) => {
                anyhow::bail!("--bootstrap: this freshet was built without the remote substrate (feature \"remote\")")
            }
        }
    }

    pub(crate) fn is_remote(&self) -> bool {
        !matches!(self, Opened::Embedded(_))
    }

    pub(crate) fn admin(&self) -> anyhow::Result<Box<dyn Admin>> {
        Ok(match self {
            Opened::Embedded(e) => Box::new(e.admin()),
            #[cfg(feature = "remote")]
            Opened::Remote(r) => Box::new(r.admin()?),
        })
    }

    pub(crate) fn producer(&self) -> freshet::core::Result<Box<dyn Producer>> {
        Ok(match self {
            Opened::Embedded(e) => Box::new(e.producer()),
            #[cfg(feature = "remote")]
            Opened::Remote(r) => Box::new(r.producer()?),
        })
    }

    pub(crate) fn consumer(&self, config: ConsumerConfig) -> anyhow::Result<Box<dyn Consumer>> {
        Ok(match self {
            Opened::Embedded(e) => Box::new(e.consumer(config)),
            #[cfg(feature = "remote")]
            Opened::Remote(r) => Box::new(r.consumer(config)?),
        })
    }

    pub(crate) async fn close(self) -> anyhow::Result<()> {
        match self {
            Opened::Embedded(e) => Ok(e.close().await?),
            #[cfg(feature = "remote")]
            Opened::Remote(_) => Ok(()),
        }
    }
}

/// Opens the embedded log of a data directory with the default settings.
pub(crate) async fn open_log(data_dir: &std::path::Path) -> anyhow::Result<Embedded> {
    open_log_with(data_dir, LogConfig::default()).await
}

/// Opens the log of a data directory with `config`.
pub(crate) async fn open_log_with(data_dir: &std::path::Path, config: LogConfig) -> anyhow::Result<Embedded> {
    Embedded::open(data_dir, config).await.with_context(|| format!("opening the log in {}", data_dir.display()))
}

/// A `--durability` value: `fsync` (group commit), `interval` (a flush every second) or `none`
/// (the page cache).
pub(crate) fn durability(value: &str) -> anyhow::Result<Durability> {
    Ok(match value {
        "fsync" => Durability::Fsync,
        "interval" => Durability::Interval { flush_interval_ms: 1000 },
        "none" => Durability::OsCache,
        other => anyhow::bail!("--durability {other:?}: expected fsync, interval or none"),
    })
}

/// Prints a line of output; a closed stdout (`freshet dump-log ... | head`) ends the program quietly.
pub(crate) fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        panic!("cannot write to stdout: {e}");
    }
}

/// SIGINT and SIGTERM, listened for from the moment this is made: a signal that comes while a
/// long-running command is still starting is kept, not left to kill the process mid-start.
pub(crate) struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    pub(crate) fn listen() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopSignals { interrupt: signal(SignalKind::interrupt())?, terminate: signal(SignalKind::terminate())? })
    }

    /// Waits for either.
    pub(crate) async fn wait(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
