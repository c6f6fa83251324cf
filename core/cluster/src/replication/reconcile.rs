//! A broker's log follows the image: the topics it holds replicas of exist locally with their
//! partitions and configs, a topic the image deleted is deleted here, and the copy of a
//! partition moved to other brokers is dropped.
//!
//! Only what the image changed is acted on: a local topic the broker never saw in an image is
//! left alone (a broker must not delete data because of an image it does not understand), and
//! a deletion is carried out only when an image this broker applied had the topic and the next
//! one lacks it (or has a new topic under the name).

use std::collections::BTreeMap;

use freshet_log::{Error, Log};

use crate::records::BrokerId;
use crate::MetadataImage;

/// Makes broker `me`'s log hold what `image` places on it, given the `previous` image it
/// followed.
pub async fn reconcile(log: &Log, me: BrokerId, previous: Option<&MetadataImage>, image: &MetadataImage) {
    if let Some(previous) = previous {
        // A copy a completed reassignment moved away is dropped: it is not a replica any more,
        // and a later move back copies the partition afresh from its leader.
        for (name, old) in &previous.topics {
            let Some(now) = image.topic(name).filter(|t| t.id == old.id) else { continue };
            for (index, p) in &old.partitions {
                let left =
                    p.replicas.contains(&me) && now.partitions.get(index).is_some_and(|q| !q.replicas.contains(&me));
                let Some(partition) = left.then(|| log.partition(name, *index as u32).ok()).flatten() else { continue };
                // It takes nothing any more, not even a produce its broker's stale image let through.
                partition.set_follower(true);
                match log.restart_replica(name, *index as u32, 0).await {
                    Ok(()) => {
                        tracing::info!(topic = %name, partition = index, "no longer a replica: its copy here is dropped")
                    }
                    Err(e) => {
                        tracing::warn!(topic = %name, partition = index, error = %e, "could not drop a moved replica's copy")
                    }
                }
            }
        }
        for (name, old) in &previous.topics {
            if image.topic(name).is_none_or(|t| t.id != old.id) {
                match log.delete_topic(name).await {
                    Ok(()) => tracing::info!(topic = %name, "deleted the local replicas of a deleted topic"),
                    Err(Error::UnknownTopic(_)) => {}
                    Err(e) => {
                        tracing::warn!(topic = %name, error = %e, "could not delete a deleted topic's local replicas")
                    }
                }
            }
        }
    }
    for topic in image.topics.values() {
        if !topic.partitions.values().any(|p| p.replicas.contains(&me)) {
            continue;
        }
        let count = topic.partitions.keys().max().map_or(0, |p| *p + 1) as u32;
        let configs: BTreeMap<String, String> = image.topic_configs.get(&topic.name).cloned().unwrap_or_default();
        let result = match log.describe_topic(&topic.name) {
            Err(Error::UnknownTopic(_)) => log.create_topic(&topic.name, count, configs).await,
            Ok(local) if local.n_partitions < count => log.create_partitions(&topic.name, count).await,
            Ok(_) => {
                let changed = previous.is_some_and(|p| p.topic_configs.get(&topic.name) != Some(&configs));
                if changed {
                    let mut changes: BTreeMap<String, Option<String>> =
                        configs.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect();
                    if let Some(old) = previous.and_then(|p| p.topic_configs.get(&topic.name)) {
                        for key in old.keys().filter(|k| !configs.contains_key(*k)) {
                            changes.insert(key.clone(), None);
                        }
                    }
                    log.alter_topic_config(&topic.name, changes).await
                } else {
                    Ok(())
                }
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(topic = %topic.name, error = %e, "could not make the local log hold the topic's replicas");
        }
    }
}
