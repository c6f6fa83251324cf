//! Partition reassignment (AlterPartitionReassignments), as Kafka's controller carries it out:
//! new replicas join as followers, and the move completes once they are all in sync.

use super::*;

/// What a partition reassignment (AlterPartitionReassignments) asks: new replicas, or `None`
/// to cancel the reassignment in progress.
pub type ReassignmentTarget = Option<Vec<BrokerId>>;

/// Records starting, replacing or cancelling a reassignment of `topic`-`partition`, as Kafka's
/// controller does. The replicas become the target's followed by those leaving; the brokers
/// added copy the partition from its leader as followers, and once every one of them is in
/// the ISR the move completes: the replicas are the target's, the leaving ones drop out of the
/// ISR, and a leader that is leaving hands over to the first in-sync replica of the target.
/// A target with no new broker completes at once. `allow_rf_change` false refuses a target of
/// another size. Cancelling puts the original replicas back.
pub fn alter_reassignment(
    image: &MetadataImage,
    topic: &str,
    partition: i32,
    target: &ReassignmentTarget,
    allow_rf_change: bool,
) -> Result<Vec<MetadataRecord>> {
    let t = image.topic(topic).ok_or_else(|| unknown_topic(topic))?;
    let p = t.partitions.get(&partition).ok_or_else(|| unknown_partition(topic, partition))?;
    let original: Vec<BrokerId> = p.replicas.iter().copied().filter(|b| !p.adding_replicas.contains(b)).collect();
    let Some(target) = target else {
        if p.adding_replicas.is_empty() && p.removing_replicas.is_empty() {
            return Err(ControllerError::new(
                code::NO_REASSIGNMENT_IN_PROGRESS,
                format!("No reassignment of {topic}-{partition} is in progress."),
            ));
        }
        let reverted = PartitionImage {
            replicas: original.clone(),
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
            ..p.clone()
        };
        return Ok(settle(image, t.id, partition, p, &reverted).into_iter().collect());
    };
    let bad = |message: String| Err(ControllerError::new(code::INVALID_REPLICA_ASSIGNMENT, message));
    if target.is_empty() {
        return bad(format!("The replica list of {topic}-{partition} is empty."));
    }
    if target.iter().collect::<BTreeSet<_>>().len() != target.len() {
        return bad(format!(
            "Duplicate brokers not allowed in replica assignment: {target:?} for {topic}-{partition}."
        ));
    }
    if let Some(b) = target.iter().find(|b| !image.brokers.contains_key(b)) {
        return bad(format!("The replica list of {topic}-{partition} names broker {b}, which is not registered."));
    }
    if !allow_rf_change && target.len() != original.len() {
        return Err(ControllerError::new(
            code::INVALID_REPLICATION_FACTOR,
            format!(
                "The replication factor of {topic}-{partition} would change from {} to {}, which the request does not allow.",
                original.len(),
                target.len()
            ),
        ));
    }
    let adding: Vec<BrokerId> = target.iter().copied().filter(|b| !original.contains(b)).collect();
    let removing: Vec<BrokerId> = original.iter().copied().filter(|b| !target.contains(b)).collect();
    let mut replicas = target.clone();
    replicas.extend(removing.iter().copied());
    let moving = PartitionImage {
        replicas,
        adding_replicas: adding,
        removing_replicas: removing,
        // Replicas that an earlier target added and this one does not are out of the ISR.
        isr: p.isr.iter().copied().filter(|b| original.contains(b) || target.contains(b)).collect(),
        ..p.clone()
    };
    let mut records: Vec<MetadataRecord> = Vec::new();
    records.extend(settle(image, t.id, partition, p, &moving));
    records.extend(complete_reassignment(image, t.id, partition, &moving));
    Ok(records)
}

/// The record completing a reassignment whose added replicas are all in `p`'s ISR, if that is
/// where `p` stands: the target's replicas, the ISR within them, a leader among them.
pub(super) fn complete_reassignment(
    image: &MetadataImage,
    topic_id: TopicId,
    partition: i32,
    p: &PartitionImage,
) -> Option<MetadataRecord> {
    if p.adding_replicas.is_empty() && p.removing_replicas.is_empty() {
        return None;
    }
    if !p.adding_replicas.iter().all(|b| p.isr.contains(b)) {
        return None;
    }
    let target: Vec<BrokerId> = p.replicas.iter().copied().filter(|b| !p.removing_replicas.contains(b)).collect();
    let done = PartitionImage {
        replicas: target.clone(),
        isr: p.isr.iter().copied().filter(|b| target.contains(b)).collect(),
        adding_replicas: Vec::new(),
        removing_replicas: Vec::new(),
        ..p.clone()
    };
    if done.isr.is_empty() {
        return None;
    }
    settle(image, topic_id, partition, p, &done)
}

/// The change taking partition `from` to `to` (replicas, ISR, reassignment lists), with a
/// leader among `to`'s live in-sync replicas when the current one is not one of them.
fn settle(
    image: &MetadataImage,
    topic_id: TopicId,
    partition: i32,
    from: &PartitionImage,
    to: &PartitionImage,
) -> Option<MetadataRecord> {
    let isr: Vec<BrokerId> = to.isr.iter().copied().filter(|b| to.replicas.contains(b)).collect();
    let leader = if to.replicas.contains(&from.leader) && isr.contains(&from.leader) {
        from.leader
    } else {
        to.replicas.iter().copied().find(|b| isr.contains(b) && image.is_live(*b)).unwrap_or(NO_LEADER)
    };
    let change = PartitionChange {
        topic_id,
        partition,
        leader: (leader != from.leader).then_some(leader),
        isr: (isr != from.isr).then_some(isr),
        replicas: (to.replicas != from.replicas).then(|| to.replicas.clone()),
        adding_replicas: (to.adding_replicas != from.adding_replicas).then(|| to.adding_replicas.clone()),
        removing_replicas: (to.removing_replicas != from.removing_replicas).then(|| to.removing_replicas.clone()),
        leader_recovering: None,
    };
    let changed = change.leader.is_some()
        || change.isr.is_some()
        || change.replicas.is_some()
        || change.adding_replicas.is_some()
        || change.removing_replicas.is_some();
    changed.then_some(MetadataRecord::PartitionChange(change))
}
