//! `freshet groups`: list, describe, delete consumer groups.

use crate::*;

#[derive(Subcommand)]
pub(crate) enum GroupsCommand {
    /// The groups with committed offsets.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// A group's committed offsets, with the partitions' ends and the lag.
    Describe {
        /// The group.
        group: String,
        #[command(flatten)]
        target: Target,
    },
}

pub(crate) async fn groups(command: GroupsCommand) -> anyhow::Result<()> {
    let target = match &command {
        GroupsCommand::List { target } | GroupsCommand::Describe { target, .. } => target,
    };
    let opened = Opened::open(target).await?;
    let admin = opened.admin()?;
    let result = async {
        match command {
            GroupsCommand::List { .. } => {
                for group in admin.list_groups().await? {
                    say(&group);
                }
            }
            GroupsCommand::Describe { group, .. } => {
                let offsets = admin.group_offsets(&group).await?;
                let members = admin.group_members(&group).await?;
                anyhow::ensure!(
                    !offsets.is_empty() || members.is_some(),
                    "group {group:?} has no members and no committed offsets"
                );
                match members {
                    None if opened.is_remote() => say(&format!("group {group}: no members")),
                    None => say(&format!("group {group} (members are known only to a broker serving this log)")),
                    Some(m) => {
                        say(&format!(
                            "group {group}: {}, protocol {:?}, {} members",
                            m.state,
                            m.protocol,
                            m.members.len()
                        ));
                        for member in m.members {
                            let assigned: Vec<String> = member.assignment.iter().map(|tp| tp.to_string()).collect();
                            say(&format!(
                                "  member {} (client {}, {}): {}",
                                member.member_id,
                                member.client_id,
                                member.host,
                                if assigned.is_empty() { "nothing assigned".into() } else { assigned.join(" ") }
                            ));
                        }
                    }
                }
                say("  TOPIC PARTITION COMMITTED END LAG METADATA");
                for (tp, committed) in offsets {
                    let end = admin.list_offset(&tp, OffsetSpec::Latest).await.ok().flatten().map_or(-1, |(o, _)| o);
                    let lag = if end >= 0 { (end - committed.offset).max(0).to_string() } else { "-".into() };
                    say(&format!(
                        "  {} {} {} {} {lag} {:?}",
                        tp.topic, tp.partition, committed.offset, end, committed.metadata
                    ));
                }
            }
        }
        anyhow::Ok(())
    }
    .await;
    opened.close().await?;
    result
}
