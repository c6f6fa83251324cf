//! `freshet storage`: a data directory's identity, as Kafka's `kafka-storage` tool gives it. A
//! formatted directory holds `meta.properties` (Kafka's layout: `cluster.id`, `node.id`,
//! `directory.id`, `version=1`); a broker formats its directory on first start, and refuses one
//! formatted for another node or cluster, naming both.

use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::*;

/// The file a formatted directory holds.
const META: &str = "meta.properties";

#[derive(clap::Subcommand)]
pub(crate) enum StorageCommand {
    /// Format a data directory for a cluster, as Kafka's `kafka-storage format`: it records the
    /// cluster id and the node id of the broker properties file.
    Format(FormatArgs),
    /// Print a new cluster id.
    RandomUuid,
    /// Show a data directory's cluster id and node id.
    Info(InfoArgs),
}

#[derive(clap::Args)]
pub(crate) struct FormatArgs {
    /// The cluster id (22 characters of base64, as `freshet storage random-uuid` prints).
    #[arg(short = 't', long)]
    cluster_id: String,
    /// The broker properties file (its `node.id` and `log.dirs`).
    #[arg(short = 'c', long)]
    config: PathBuf,
    /// Leave a directory already formatted for this cluster as it is.
    #[arg(short = 'g', long)]
    ignore_formatted: bool,
}

#[derive(clap::Args)]
pub(crate) struct InfoArgs {
    /// The data directory.
    #[arg(long, default_value = "freshet-data")]
    data_dir: PathBuf,
}

/// What `meta.properties` records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) cluster_id: String,
    pub(crate) node_id: i32,
}

pub(crate) async fn storage(command: StorageCommand) -> anyhow::Result<()> {
    match command {
        StorageCommand::RandomUuid => {
            say(&random_cluster_id());
            Ok(())
        }
        StorageCommand::Info(args) => match read_meta(&args.data_dir)? {
            Some(meta) => {
                say(&format!("cluster.id={}\nnode.id={}", meta.cluster_id, meta.node_id));
                Ok(())
            }
            None => anyhow::bail!("{} is not formatted (no {META})", args.data_dir.display()),
        },
        StorageCommand::Format(args) => {
            check_cluster_id(&args.cluster_id)?;
            let settings = crate::broker::BrokerArgs::from_config(args.config.clone())
                .settings()
                .with_context(|| format!("reading {}", args.config.display()))?;
            let dir = settings.data_dir;
            let wanted = Meta { cluster_id: args.cluster_id, node_id: settings.config.node_id };
            match read_meta(&dir)? {
                Some(found) if found.cluster_id != wanted.cluster_id => anyhow::bail!(
                    "{} is formatted for cluster {}, not {}",
                    dir.display(),
                    found.cluster_id,
                    wanted.cluster_id
                ),
                Some(found) if found.node_id != wanted.node_id => anyhow::bail!(
                    "{} is formatted for node {}, not node {} (node.id in {})",
                    dir.display(),
                    found.node_id,
                    wanted.node_id,
                    args.config.display()
                ),
                Some(_) if args.ignore_formatted => {
                    say(&format!("{} is already formatted for this cluster and node", dir.display()));
                    Ok(())
                }
                Some(_) => {
                    anyhow::bail!("{} is already formatted; use --ignore-formatted to leave it as it is", dir.display())
                }
                None => {
                    write_meta(&dir, &wanted)?;
                    say(&format!(
                        "formatted {} for cluster {} as node {}",
                        dir.display(),
                        wanted.cluster_id,
                        wanted.node_id
                    ));
                    Ok(())
                }
            }
        }
    }
}

/// A new cluster id: 16 random bytes in URL-safe base64 without padding (Kafka's `Uuid`), never
/// starting with `-` (which a command line would take for a flag), as Kafka's are made.
pub(crate) fn random_cluster_id() -> String {
    loop {
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes());
        if !id.starts_with('-') {
            return id;
        }
    }
}

/// Whether `id` is a cluster id Kafka's tools accept: 16 bytes in URL-safe base64.
pub(crate) fn check_cluster_id(id: &str) -> anyhow::Result<()> {
    // Lenient as Java's decoder is on the unused bits of the last symbol: Kafka's own example
    // id, MkU3OEVBNTcwNTJENDM2Qk, has some set.
    let lenient = base64::engine::GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone),
    );
    let bytes = lenient.decode(id).map_err(|e| anyhow::anyhow!("cluster id {id:?} is not URL-safe base64: {e}"))?;
    anyhow::ensure!(
        bytes.len() == 16,
        "cluster id {id:?} is {} bytes, not the 16 of a UUID (freshet storage random-uuid prints one)",
        bytes.len()
    );
    Ok(())
}

/// A directory's `meta.properties`, when it has one.
pub(crate) fn read_meta(dir: &Path) -> anyhow::Result<Option<Meta>> {
    let path = dir.join(META);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let props = freshet::connectors::config::parse_properties(&text);
    let cluster_id = props.get("cluster.id").cloned().with_context(|| format!("{}: no cluster.id", path.display()))?;
    let node_id = props
        .get("node.id")
        .with_context(|| format!("{}: no node.id", path.display()))?
        .parse()
        .with_context(|| format!("{}: node.id is not a number", path.display()))?;
    Ok(Some(Meta { cluster_id, node_id }))
}

pub(crate) fn write_meta(dir: &Path, meta: &Meta) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let text = format!(
        "#\n# Written by freshet storage format or a broker's first start\ncluster.id={}\ndirectory.id={}\nnode.id={}\nversion=1\n",
        meta.cluster_id,
        random_cluster_id(),
        meta.node_id
    );
    // Written whole, then renamed: a crash leaves the old file or the new one.
    let tmp = dir.join(format!("{META}.tmp"));
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(META)).with_context(|| format!("writing {}", dir.join(META).display()))?;
    Ok(())
}

/// The identity of the directory a broker with `node_id` starts on: formatted now with a new
/// cluster id when it is not yet (a directory of an earlier version included); refused when
/// formatted for another node.
pub(crate) fn ensure_formatted(dir: &Path, node_id: i32) -> anyhow::Result<Meta> {
    match read_meta(dir)? {
        Some(meta) if meta.node_id != node_id => anyhow::bail!(
            "{} belongs to node {} of cluster {}, not to node {node_id} (node.id); give this node its own directory",
            dir.display(),
            meta.node_id,
            meta.cluster_id
        ),
        Some(meta) => Ok(meta),
        None => {
            let meta = Meta { cluster_id: random_cluster_id(), node_id };
            write_meta(dir, &meta)?;
            tracing::info!(dir = %dir.display(), cluster_id = meta.cluster_id, node_id, "formatted the data directory");
            Ok(meta)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_are_kafkas_and_a_directory_keeps_its_identity() {
        let id = random_cluster_id();
        assert_eq!(id.len(), 22);
        check_cluster_id(&id).unwrap();
        assert!(check_cluster_id("MkU3OEVBNTcwNTJENDM2Qk").is_ok());
        assert!(check_cluster_id("c2hvcnQ").unwrap_err().to_string().contains("is 5 bytes, not the 16"));
        assert!(check_cluster_id("not base64!").is_err());
        let dir = tempfile::tempdir().unwrap();
        let first = ensure_formatted(dir.path(), 3).unwrap();
        assert_eq!(ensure_formatted(dir.path(), 3).unwrap(), first);
        let refused = ensure_formatted(dir.path(), 4).unwrap_err().to_string();
        assert!(refused.contains("node 3") && refused.contains(&first.cluster_id) && refused.contains("node 4"));
    }
}
