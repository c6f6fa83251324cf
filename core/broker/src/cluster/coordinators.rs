//! Coordinators that move with their partitions.
//!
//! A group's coordinator is the leader of the group's partition of `__consumer_offsets`, a
//! transactional id's the leader of `__transaction_state`'s. When leadership of one of those
//! partitions comes to this broker (a new leader epoch), the state it holds is loaded from this
//! broker's copy, up to its log end, before any request for it is served: until then requests
//! get COORDINATOR_LOAD_IN_PROGRESS, and clients retry, as Kafka's coordinators answer while
//! loading. Copies of the partitions come from replication, so a coordinator whose broker died
//! goes on, with its committed offsets, its groups' members and generations, and its decided
//! transactions, on the broker elected in its place.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use freshet_coord::group::{GroupOffsets, OFFSETS_TOPIC};
use freshet_coord::membership::Coordinator;
use freshet_coord::transactions::{Transactions, TRANSACTION_STATE_TOPIC};

use super::ClusterNode;

/// Loads the coordinators' state of every partition of their topics this broker comes to lead.
pub(crate) async fn follow(
    node: Arc<ClusterNode>,
    offsets: GroupOffsets,
    transactions: Transactions,
    groups: Coordinator,
) {
    let me = node.config.node_id;
    let mut images = node.images();
    loop {
        let image = images.borrow_and_update().clone();
        let mut pending = false;
        let mut led = BTreeMap::new();
        // A restarted broker's first images may still name it leader of what others lead now:
        // only an image with this process's registration counts.
        let registered = node.epoch.borrow().is_some_and(|e| image.brokers.get(&me).is_some_and(|b| b.epoch == e));
        for topic in [OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC].into_iter().filter(|_| registered) {
            let Some(t) = image.topic(topic) else { continue };
            for (index, p) in &t.partitions {
                if p.leader == me {
                    led.insert((topic.to_owned(), *index), p.leader_epoch);
                }
            }
        }
        for ((topic, index), epoch) in &led {
            if node.coordinator_loaded(topic, *index, *epoch) {
                continue;
            }
            let loaded = if topic == OFFSETS_TOPIC {
                load_groups(&offsets, &groups, *index as u32).await
            } else {
                transactions.reload().await
            };
            match loaded {
                Ok(()) => {
                    tracing::info!(topic, partition = index, epoch, "coordinator state loaded: serving it");
                    node.coordinators.lock().expect("coordinators lock").insert((topic.clone(), *index), *epoch);
                }
                Err(error) => {
                    tracing::info!(topic, partition = index, %error, "coordinator state not loaded yet; retrying");
                    pending = true;
                }
            }
        }
        let lost: Vec<(String, i32)> = {
            let mut loaded = node.coordinators.lock().expect("coordinators lock");
            let lost = loaded.keys().filter(|k| !led.contains_key(*k)).cloned().collect();
            loaded.retain(|k, _| led.contains_key(k));
            lost
        };
        for (topic, index) in lost {
            tracing::info!(topic, partition = index, "no longer this partition's coordinator");
            if topic == TRANSACTION_STATE_TOPIC {
                transactions.unload();
            }
        }
        let retry = async {
            if pending {
                tokio::time::sleep(Duration::from_secs(1)).await
            } else {
                std::future::pending::<()>().await
            }
        };
        tokio::select! {
            changed = images.changed() => if changed.is_err() { return },
            _ = retry => {}
        }
    }
}

/// Loads a partition of `__consumer_offsets`: its groups' committed offsets, and their members
/// and generations as last stored.
async fn load_groups(offsets: &GroupOffsets, groups: &Coordinator, partition: u32) -> freshet_log::Result<()> {
    offsets.load_partition(partition).await?;
    for (group, snapshot) in offsets.stored_groups(partition).await? {
        groups.restore(&group, snapshot).await;
    }
    Ok(())
}
