//! `freshet topic`: create, list, describe, alter, delete topics.

use crate::*;

#[derive(Subcommand)]
pub(crate) enum TopicCommand {
    /// Create a topic.
    Create {
        /// Its name.
        name: String,
        /// Partitions.
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// A config, `key=value` (repeatable), e.g. `retention.ms=3600000`.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// List the topics.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// A topic's partitions (offsets, size, leader, replicas, ISR) and every config with its
    /// value; or, with a filter, only the partitions it selects, of one topic or of all.
    Describe {
        /// Its name (optional with a filter: every topic).
        name: Option<String>,
        /// Only partitions with fewer in-sync replicas than replicas (as kafka-topics).
        #[arg(long)]
        under_replicated_partitions: bool,
        /// Only partitions with fewer in-sync replicas than their `min.insync.replicas`:
        /// `acks=all` writes to them are refused.
        #[arg(long)]
        under_min_isr_partitions: bool,
        /// Only partitions without a leader.
        #[arg(long)]
        unavailable_partitions: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Set or remove topic configs.
    Alter {
        /// Its name.
        name: String,
        /// A config to set, `key=value` (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        /// A config to remove, back to its default (repeatable).
        #[arg(long = "delete-config", value_name = "KEY")]
        delete: Vec<String>,
        /// Grow the topic to this many partitions.
        #[arg(long)]
        partitions: Option<u32>,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a topic.
    Delete {
        /// Its name.
        name: String,
        #[command(flatten)]
        target: Target,
    },
}

/// `key=value` pairs from the command line.
pub(crate) fn parse_configs(configs: &[String]) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    configs
        .iter()
        .map(|c| match c.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => anyhow::bail!("--config {c:?}: expected key=value"),
        })
        .collect()
}

pub(crate) async fn topic(command: TopicCommand) -> anyhow::Result<()> {
    let target = match &command {
        TopicCommand::Create { target, .. }
        | TopicCommand::List { target }
        | TopicCommand::Describe { target, .. }
        | TopicCommand::Alter { target, .. }
        | TopicCommand::Delete { target, .. } => target,
    };
    let opened = Opened::open(target).await?;
    let admin = opened.admin()?;
    let result = async {
        match command {
            TopicCommand::Create { name, partitions, configs, .. } => {
                let configs = parse_configs(&configs)?;
                admin.create_topic(NewTopic { name: name.clone(), n_partitions: partitions, configs }).await?;
                say(&format!("created topic {name} with {partitions} partitions"));
            }
            TopicCommand::List { .. } => {
                for t in admin.list_topics().await?.into_iter().filter(|t| !t.internal) {
                    say(&format!("{}\t{} partitions", t.name, t.n_partitions));
                }
            }
            TopicCommand::Describe {
                name,
                under_replicated_partitions: under,
                under_min_isr_partitions: under_min,
                unavailable_partitions: unavailable,
                ..
            } if under || under_min || unavailable => {
                let names = match name {
                    Some(name) => vec![name],
                    None => admin.list_topics().await?.into_iter().map(|t| t.name).collect(),
                };
                for name in names {
                    let min_isr: usize = admin
                        .describe_configs(&name)
                        .await?
                        .into_iter()
                        .find(|c| c.name == "min.insync.replicas")
                        .and_then(|c| c.value.parse().ok())
                        .unwrap_or(1);
                    for at in admin.placement(&name).await? {
                        let selected = (under && at.isr.len() < at.replicas.len())
                            || (under_min && at.isr.len() < min_isr)
                            || (unavailable && at.leader.is_none());
                        if selected {
                            let leader = at.leader.map_or("none (offline)".to_owned(), |l| l.to_string());
                            say(&format!(
                                "{name}-{}: leader {leader}, replicas {:?}, isr {:?}, min.insync.replicas {min_isr}",
                                at.partition, at.replicas, at.isr
                            ));
                        }
                    }
                }
            }
            TopicCommand::Describe { name, .. } => {
                let name = name.context(
                    "name a topic, or select partitions of every topic with --under-replicated-partitions, \
                     --under-min-isr-partitions or --unavailable-partitions",
                )?;
                let (topic, partitions) = admin.describe_topic(&name).await?;
                let placement = admin.placement(&name).await?;
                let id = if topic.id.is_empty() { String::new() } else { format!(" (id {})", topic.id) };
                say(&format!("topic {}{id}, {} partitions", topic.name, topic.n_partitions));
                for p in partitions {
                    // A cluster does not tell its clients sizes on disk.
                    let size = if opened.is_remote() {
                        String::new()
                    } else {
                        format!(", {} bytes in {} segments", p.size_bytes, p.n_segments)
                    };
                    let offsets = if p.log_end_offset < 0 {
                        "offsets unknown".to_owned()
                    } else {
                        format!("offsets {}..{}", p.log_start_offset, p.log_end_offset)
                    };
                    // Where it is led and copied, as kafka-topics --describe shows it.
                    let placed = placement.iter().find(|at| at.partition == p.partition).map_or(String::new(), |at| {
                        let leader = at.leader.map_or("none (offline)".to_owned(), |l| l.to_string());
                        format!(", leader {leader}, replicas {:?}, isr {:?}", at.replicas, at.isr)
                    });
                    say(&format!("  partition {}: {offsets}{size}{placed}", p.partition));
                }
                for c in admin.describe_configs(&name).await? {
                    say(&format!("  {} = {}{}", c.name, c.value, if c.is_default { " (default)" } else { "" }));
                }
            }
            TopicCommand::Alter { name, configs, delete, partitions, .. } => {
                let mut changes: std::collections::BTreeMap<String, Option<String>> =
                    parse_configs(&configs)?.into_iter().map(|(k, v)| (k, Some(v))).collect();
                changes.extend(delete.into_iter().map(|k| (k, None)));
                if !changes.is_empty() {
                    admin.alter_configs(&name, changes).await?;
                    say(&format!("altered the configs of {name}"));
                }
                if let Some(n) = partitions {
                    admin.create_partitions(&name, n).await?;
                    say(&format!("{name} now has {n} partitions"));
                }
            }
            TopicCommand::Delete { name, .. } => {
                admin.delete_topic(&name).await?;
                say(&format!("deleted topic {name}"));
            }
        }
        anyhow::Ok(())
    }
    .await;
    opened.close().await?;
    result
}
