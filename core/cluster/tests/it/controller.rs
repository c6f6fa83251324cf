//! The controller's decisions on images built record by record.

use std::collections::BTreeMap;

use freshet_cluster::controller::{self, NewTopic, Registration, TopicDefaults};
use freshet_cluster::records::{AclEntry, Endpoint, MetadataRecord, NO_LEADER};
use freshet_cluster::{MetadataBatch, MetadataImage};
use freshet_coord::code;

/// Leaders from the ISR only, Kafka's default.
const CLEAN: controller::Elections = controller::Elections { unclean_default: false };

fn apply(image: &mut MetadataImage, records: Vec<MetadataRecord>) {
    let next = image.offset + 1;
    image.apply(next, &MetadataBatch::new(records));
}

fn registration(id: i32, incarnation: u128, rack: Option<&str>) -> Registration {
    Registration {
        broker_id: id,
        incarnation_id: incarnation,
        cluster_id: "c1".into(),
        endpoints: vec![Endpoint {
            name: "PLAINTEXT".into(),
            host: "h".into(),
            port: 9000 + id as u16,
            security_protocol: "PLAINTEXT".into(),
        }],
        rack: rack.map(str::to_owned),
    }
}

/// An image with `racks.len()` live brokers numbered from 1.
fn cluster(racks: &[Option<&str>]) -> MetadataImage {
    let mut image = MetadataImage::default();
    for (i, rack) in racks.iter().enumerate() {
        let id = i as i32 + 1;
        let (records, _) =
            controller::register_broker(&image, "c1", &registration(id, id as u128, *rack), false, &CLEAN).unwrap();
        apply(&mut image, records);
        let records = controller::unfence_broker(&image, id, &CLEAN);
        apply(&mut image, records);
    }
    image
}

fn create(image: &mut MetadataImage, name: &str, partitions: i32, rf: i16) {
    let topic = NewTopic { name: name.into(), partitions, replication_factor: rf, ..Default::default() };
    let id = 7 + image.topics.len() as u128;
    let (records, _, _) = controller::create_topic(image, &topic, TopicDefaults::default(), id).unwrap();
    apply(image, records);
}

#[test]
fn placement_spreads_leaders_and_replicas_across_brokers() {
    let mut image = cluster(&[None, None, None]);
    create(&mut image, "orders", 6, 3);
    let topic = image.topic("orders").unwrap();
    let mut leads = BTreeMap::new();
    let mut hosts = BTreeMap::new();
    for p in topic.partitions.values() {
        assert_eq!(p.replicas.len(), 3);
        assert_eq!(p.isr, p.replicas);
        assert_eq!(p.leader, p.replicas[0]);
        *leads.entry(p.leader).or_insert(0) += 1;
        for r in &p.replicas {
            *hosts.entry(*r).or_insert(0) += 1;
        }
    }
    assert_eq!(leads, BTreeMap::from([(1, 2), (2, 2), (3, 2)]), "each broker leads two of six partitions");
    assert_eq!(hosts, BTreeMap::from([(1, 6), (2, 6), (3, 6)]));

    let mut image = cluster(&[None, None, None, None]);
    create(&mut image, "wide", 8, 2);
    let followers: BTreeMap<i32, i32> =
        image.topic("wide").unwrap().partitions.values().fold(BTreeMap::new(), |mut m, p| {
            *m.entry(p.replicas[1]).or_insert(0) += 1;
            m
        });
    assert_eq!(followers.values().sum::<i32>(), 8);
    assert!(followers.values().all(|n| *n == 2), "followers spread evenly too: {followers:?}");
}

#[test]
fn placement_puts_replicas_on_different_racks() {
    let mut image = cluster(&[Some("a"), Some("a"), Some("b"), Some("b")]);
    create(&mut image, "racked", 8, 2);
    for (i, p) in &image.topic("racked").unwrap().partitions {
        let racks: Vec<_> = p.replicas.iter().map(|b| image.brokers[b].rack.clone()).collect();
        assert_ne!(racks[0], racks[1], "partition {i} has both replicas on one rack: {:?}", p.replicas);
    }
}

#[test]
fn bad_topic_requests_are_refused_naming_the_problem() {
    let image = cluster(&[None, None]);
    let refuse = |topic: NewTopic| controller::create_topic(&image, &topic, TopicDefaults::default(), 9).unwrap_err();
    let e = refuse(NewTopic { name: "t".into(), partitions: 1, replication_factor: 3, ..Default::default() });
    assert_eq!(e.code, code::INVALID_REPLICATION_FACTOR);
    assert!(e.message.contains("only 2 broker(s) are registered"), "{e}");
    let e = refuse(NewTopic { name: "bad name".into(), partitions: 1, replication_factor: 1, ..Default::default() });
    assert_eq!(e.code, code::INVALID_TOPIC_EXCEPTION);
    let e = refuse(NewTopic { name: "t".into(), partitions: 0, replication_factor: 1, ..Default::default() });
    assert_eq!(e.code, code::INVALID_PARTITIONS);
    let e = refuse(NewTopic {
        name: "t".into(),
        partitions: -1,
        replication_factor: -1,
        assignments: vec![(0, vec![1, 1])],
        ..Default::default()
    });
    assert_eq!(e.code, code::INVALID_REPLICA_ASSIGNMENT);
    assert!(e.message.contains("Duplicate"), "{e}");
    let e = refuse(NewTopic {
        name: "t".into(),
        partitions: -1,
        replication_factor: -1,
        assignments: vec![(0, vec![1, 5])],
        ..Default::default()
    });
    assert!(e.message.contains("broker 5, which is not registered"), "{e}");

    let mut image = image;
    create(&mut image, "t", 1, 1);
    let e = controller::create_topic(
        &image,
        &NewTopic { name: "t".into(), partitions: 1, replication_factor: 1, ..Default::default() },
        TopicDefaults::default(),
        10,
    )
    .unwrap_err();
    assert_eq!(e.code, code::TOPIC_ALREADY_EXISTS);
    assert_eq!(controller::create_partitions(&image, "t", 1, &[]).unwrap_err().code, code::INVALID_PARTITIONS);
    assert_eq!(controller::delete_topic(&image, "nope").unwrap_err().code, code::UNKNOWN_TOPIC_OR_PARTITION);
}

#[test]
fn explicit_assignments_and_growth() {
    let mut image = cluster(&[None, None, None]);
    let topic = NewTopic {
        name: "placed".into(),
        partitions: -1,
        replication_factor: -1,
        assignments: vec![(0, vec![3, 1]), (1, vec![2, 3])],
        ..Default::default()
    };
    let (records, partitions, rf) = controller::create_topic(&image, &topic, TopicDefaults::default(), 11).unwrap();
    assert_eq!((partitions, rf), (2, 2));
    apply(&mut image, records);
    assert_eq!(image.topic("placed").unwrap().partitions[&0].leader, 3);
    let records = controller::create_partitions(&image, "placed", 4, &[]).unwrap();
    apply(&mut image, records);
    let t = image.topic("placed").unwrap();
    assert_eq!(t.partitions.len(), 4);
    assert!(t.partitions.values().all(|p| p.replicas.len() == 2));
    let records = controller::delete_topic(&image, "placed").unwrap();
    apply(&mut image, records);
    assert!(image.topic("placed").is_none());
}

#[test]
fn a_fenced_broker_is_re_led_around_and_leads_again_when_unfenced() {
    let mut image = cluster(&[None, None, None]);
    create(&mut image, "rf2", 3, 2);
    create(&mut image, "rf1", 3, 1);
    let records = controller::fence_broker(&image, 1, &CLEAN);
    apply(&mut image, records);
    assert!(image.brokers[&1].fenced);
    for (topic, i, p) in image.partitions() {
        assert_ne!(p.leader, 1, "{}-{i} still led by the fenced broker", topic.name);
        if topic.name == "rf2" && p.replicas.contains(&1) {
            assert_eq!(p.isr.len(), 1, "the fenced broker left rf2-{i}'s ISR");
            assert_eq!(p.leader_epoch, i32::from(p.replicas[0] == 1), "rf2-{i}: a new leader bumps the epoch");
        }
        if topic.name == "rf1" && p.replicas == [1] {
            assert_eq!(
                (p.leader, p.isr.clone(), p.leader_epoch),
                (NO_LEADER, vec![1], 1),
                "rf1-{i} is offline, waiting for broker 1"
            );
        }
    }
    let records = controller::unfence_broker(&image, 1, &CLEAN);
    apply(&mut image, records);
    for (topic, i, p) in image.partitions() {
        if topic.name == "rf1" && p.replicas == [1] {
            assert_eq!((p.leader, p.leader_epoch), (1, 2), "rf1-{i} led again by its returned broker");
        }
    }
    // The preferred leader of rf2 comes back only by election; first it must be in sync.
    let (topic, partition) = image
        .partitions()
        .find(|(t, _, p)| t.name == "rf2" && p.replicas[0] == 1)
        .map(|(t, i, _)| (t.name.clone(), i))
        .unwrap();
    assert_eq!(
        controller::elect_preferred(&image, &topic, partition).unwrap_err().code,
        code::PREFERRED_LEADER_NOT_AVAILABLE
    );
}

#[test]
fn registration_epochs_incarnations_and_cluster_ids() {
    let image = cluster(&[None, None]);
    let (records, epoch) = controller::register_broker(&image, "c1", &registration(1, 1, None), true, &CLEAN).unwrap();
    assert!(records.is_empty(), "a retried registration changes nothing");
    assert_eq!(epoch, image.brokers[&1].epoch);
    let e = controller::register_broker(&image, "c1", &registration(1, 99, None), true, &CLEAN).unwrap_err();
    assert_eq!(e.code, code::DUPLICATE_BROKER_REGISTRATION);
    let (records, epoch) =
        controller::register_broker(&image, "c1", &registration(1, 99, None), false, &CLEAN).unwrap();
    assert!(epoch > image.brokers[&2].epoch, "a new registration gets a new epoch");
    assert!(matches!(records[0], MetadataRecord::RegisterBroker { .. }));
    let mut other = registration(3, 3, None);
    other.cluster_id = "c2".into();
    let e = controller::register_broker(&image, "c1", &other, false, &CLEAN).unwrap_err();
    assert_eq!(e.code, code::INCONSISTENT_CLUSTER_ID);
    assert!(e.message.contains("c2") && e.message.contains("c1"), "{e}");
    assert_eq!(controller::check_epoch(&image, 1, epoch).unwrap_err().code, code::STALE_BROKER_EPOCH);
    assert_eq!(controller::check_epoch(&image, 7, 1).unwrap_err().code, code::BROKER_ID_NOT_REGISTERED);
}

#[test]
fn acls_are_created_once_deleted_when_present_and_kept_by_a_snapshot() {
    let acl = |topic: &str| AclEntry {
        resource_type: 2,
        resource_name: topic.into(),
        pattern_type: 3,
        principal: "User:*".into(),
        host: "*".into(),
        operation: 4,
        permission: 2,
    };
    let mut image = cluster(&[None]);
    let records = controller::alter_acls(&image, &[acl("a"), acl("a"), acl("b")], &[acl("c")]);
    assert_eq!(records.len(), 2, "a duplicate and an absent deletion make no record: {records:?}");
    apply(&mut image, records);
    assert!(controller::alter_acls(&image, &[acl("a")], &[]).is_empty(), "already there");
    let records = controller::alter_acls(&image, &[], &[acl("a")]);
    assert_eq!(records, [MetadataRecord::RemoveAccessControlEntry(acl("a"))]);
    apply(&mut image, records);
    assert_eq!(image.acls.iter().cloned().collect::<Vec<_>>(), [acl("b")]);
    // A snapshot holds them; one taken before ACLs existed reads with none.
    let restored: MetadataImage = serde_json::from_slice(&serde_json::to_vec(&image).unwrap()).unwrap();
    assert_eq!(restored.acls, image.acls);
    let mut old = serde_json::to_value(&image).unwrap();
    old.as_object_mut().unwrap().remove("acls");
    assert!(serde_json::from_value::<MetadataImage>(old).unwrap().acls.is_empty());
}

#[test]
fn a_leader_changes_its_isr_only_from_the_current_epochs_and_with_eligible_replicas() {
    let mut image = cluster(&[None, None, None]);
    create(&mut image, "orders", 1, 3);
    let topic = image.topic("orders").unwrap();
    let (id, p) = (topic.id, topic.partitions[&0].clone());
    let epoch = |image: &MetadataImage, b: i32| image.brokers[&b].epoch;
    let change = |image: &MetadataImage, isr: Vec<i32>| {
        let p = &image.topic("orders").unwrap().partitions[&0];
        controller::IsrChange {
            broker_id: p.leader,
            broker_epoch: epoch(image, p.leader),
            topic_id: id,
            partition: 0,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr: isr,
        }
    };
    let follower = *p.replicas.iter().find(|b| **b != p.leader).unwrap();
    // A lagging follower out: the partition epoch moves, the leader epoch does not.
    let shrink: Vec<i32> = p.isr.iter().copied().filter(|b| *b != follower).collect();
    let records = controller::alter_partition(&image, &change(&image, shrink.clone())).unwrap();
    apply(&mut image, records);
    let now = &image.topic("orders").unwrap().partitions[&0];
    assert_eq!((now.isr.clone(), now.leader_epoch, now.partition_epoch), (shrink.clone(), 0, 1));
    // The same ISR again changes nothing.
    assert_eq!(controller::alter_partition(&image, &change(&image, shrink.clone())).unwrap(), vec![]);
    // A proposal from a partition epoch that moved on, or a leader epoch that did, is refused.
    let mut stale = change(&image, p.isr.clone());
    stale.partition_epoch = 0;
    assert_eq!(controller::alter_partition(&image, &stale).unwrap_err().code, code::INVALID_UPDATE_VERSION);
    let mut stale = change(&image, p.isr.clone());
    stale.leader_epoch = 5;
    assert_eq!(controller::alter_partition(&image, &stale).unwrap_err().code, code::FENCED_LEADER_EPOCH);
    // Only the leader proposes; the leader stays in; strangers and fenced brokers may not join.
    let mut other = change(&image, p.isr.clone());
    other.broker_id = follower;
    other.broker_epoch = epoch(&image, follower);
    assert_eq!(controller::alter_partition(&image, &other).unwrap_err().code, code::NOT_LEADER_OR_FOLLOWER);
    assert_eq!(
        controller::alter_partition(&image, &change(&image, vec![follower])).unwrap_err().code,
        code::INVALID_REQUEST
    );
    let mut stranger = shrink.clone();
    stranger.push(9);
    assert_eq!(
        controller::alter_partition(&image, &change(&image, stranger)).unwrap_err().code,
        code::INELIGIBLE_REPLICA
    );
    let fenced = controller::fence_broker(&image, follower, &CLEAN);
    apply(&mut image, fenced);
    let mut back = shrink.clone();
    back.push(follower);
    assert_eq!(
        controller::alter_partition(&image, &change(&image, back.clone())).unwrap_err().code,
        code::INELIGIBLE_REPLICA
    );
    // Unfenced and caught up, it rejoins.
    let unfenced = controller::unfence_broker(&image, follower, &CLEAN);
    apply(&mut image, unfenced);
    let records = controller::alter_partition(&image, &change(&image, back.clone())).unwrap();
    apply(&mut image, records);
    assert_eq!(image.topic("orders").unwrap().partitions[&0].isr, back);
    // The leader killed: the new leader comes from the ISR, with a new leader epoch.
    let leader = p.leader;
    let fenced = controller::fence_broker(&image, leader, &CLEAN);
    apply(&mut image, fenced);
    let now = &image.topic("orders").unwrap().partitions[&0];
    assert!(now.leader != leader && back.contains(&now.leader) && now.leader_epoch == 1, "{now:?}");
    assert!(!now.isr.contains(&leader));
}

#[test]
fn a_reassignment_adds_replicas_then_completes_once_they_are_in_sync() {
    let mut image = cluster(&[None, None, None, None]);
    let topic = NewTopic {
        name: "moved".into(),
        assignments: vec![(0, vec![1, 2])],
        partitions: -1,
        replication_factor: -1,
        ..Default::default()
    };
    let (records, _, _) = controller::create_topic(&image, &topic, TopicDefaults::default(), 99).unwrap();
    apply(&mut image, records);
    let p = |image: &MetadataImage| image.topic("moved").unwrap().partitions[&0].clone();
    // Bad targets change nothing.
    let refused =
        |target: Vec<i32>| controller::alter_reassignment(&image, "moved", 0, &Some(target), true).unwrap_err().code;
    assert_eq!(refused(vec![]), code::INVALID_REPLICA_ASSIGNMENT);
    assert_eq!(refused(vec![3, 3]), code::INVALID_REPLICA_ASSIGNMENT);
    assert_eq!(refused(vec![3, 9]), code::INVALID_REPLICA_ASSIGNMENT);
    let err = controller::alter_reassignment(&image, "moved", 0, &Some(vec![3]), false).unwrap_err();
    assert_eq!(err.code, code::INVALID_REPLICATION_FACTOR);
    let err = controller::alter_reassignment(&image, "moved", 0, &None, true).unwrap_err();
    assert_eq!(err.code, code::NO_REASSIGNMENT_IN_PROGRESS);
    // From [1, 2] to [3, 4]: the new replicas are added, the leader stays until they are in sync.
    let records = controller::alter_reassignment(&image, "moved", 0, &Some(vec![3, 4]), true).unwrap();
    apply(&mut image, records);
    let moving = p(&image);
    assert_eq!(moving.replicas, vec![3, 4, 1, 2]);
    assert_eq!((moving.adding_replicas.clone(), moving.removing_replicas.clone()), (vec![3, 4], vec![1, 2]));
    assert_eq!((moving.leader, moving.isr.clone()), (1, vec![1, 2]));
    let isr_change = |image: &MetadataImage, isr: Vec<i32>| {
        let p = p(image);
        controller::IsrChange {
            broker_id: p.leader,
            broker_epoch: image.brokers[&p.leader].epoch,
            topic_id: 99,
            partition: 0,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr: isr,
        }
    };
    // One of them caught up: still moving.
    let records = controller::alter_partition(&image, &isr_change(&image, vec![1, 2, 3])).unwrap();
    assert_eq!(records.len(), 1);
    apply(&mut image, records);
    assert_eq!(p(&image).adding_replicas, vec![3, 4]);
    // Both: the move completes in the same batch, led by the target's first in-sync replica.
    let records = controller::alter_partition(&image, &isr_change(&image, vec![1, 2, 3, 4])).unwrap();
    assert_eq!(records.len(), 2);
    apply(&mut image, records);
    let done = p(&image);
    assert_eq!((done.replicas.clone(), done.isr.clone(), done.leader), (vec![3, 4], vec![3, 4], 3));
    assert!(done.adding_replicas.is_empty() && done.removing_replicas.is_empty());
    assert_eq!(done.leader_epoch, 1);
    // Cancelled half-way, a second move puts the original replicas back.
    let records = controller::alter_reassignment(&image, "moved", 0, &Some(vec![3, 1]), true).unwrap();
    apply(&mut image, records);
    assert_eq!(p(&image).replicas, vec![3, 1, 4]);
    let records = controller::alter_reassignment(&image, "moved", 0, &None, true).unwrap();
    apply(&mut image, records);
    let back = p(&image);
    assert_eq!((back.replicas.clone(), back.isr.clone(), back.leader), (vec![3, 4], vec![3, 4], 3));
    assert!(back.adding_replicas.is_empty() && back.removing_replicas.is_empty());
    // A new order of the same brokers completes at once, and hands leadership over only when
    // the leader leaves.
    let records = controller::alter_reassignment(&image, "moved", 0, &Some(vec![4, 3]), true).unwrap();
    apply(&mut image, records);
    assert_eq!((p(&image).replicas, p(&image).leader), (vec![4, 3], 3));
}

#[test]
fn unclean_elections_only_where_allowed_and_preferred_leaders_come_back() {
    let mut image = cluster(&[None, None, None]);
    let topic = NewTopic {
        name: "u".into(),
        assignments: vec![(0, vec![1, 2, 3])],
        partitions: -1,
        replication_factor: -1,
        ..Default::default()
    };
    let (records, _, _) = controller::create_topic(&image, &topic, TopicDefaults::default(), 42).unwrap();
    apply(&mut image, records);
    let p = |image: &MetadataImage| image.topic("u").unwrap().partitions[&0].clone();
    // Brokers 2 and 3 fall out of the ISR; then the leader dies: no in-sync replica is live.
    for b in [2, 3] {
        let q = p(&image);
        let change = controller::IsrChange {
            broker_id: 1,
            broker_epoch: image.brokers[&1].epoch,
            topic_id: 42,
            partition: 0,
            leader_epoch: q.leader_epoch,
            partition_epoch: q.partition_epoch,
            new_isr: q.isr.iter().copied().filter(|x| *x != b).collect(),
        };
        let records = controller::alter_partition(&image, &change).unwrap();
        apply(&mut image, records);
    }
    assert_eq!(p(&image).isr, vec![1]);
    let mut clean = image.clone();
    let records = controller::fence_broker(&clean, 1, &CLEAN);
    apply(&mut clean, records);
    assert_eq!((p(&clean).leader, p(&clean).isr), (NO_LEADER, vec![1]), "offline, by default");
    // An operator's unclean election (ElectLeaders UNCLEAN) picks a live replica.
    let record = controller::elect_unclean(&clean, "u", 0).unwrap();
    apply(&mut clean, vec![record]);
    let q = p(&clean);
    assert_eq!((q.leader, q.isr.clone(), q.leader_recovering), (2, vec![2], true));
    assert_eq!(controller::elect_unclean(&clean, "u", 0).unwrap_err().code, code::ELECTION_NOT_NEEDED);
    // With the topic allowing it, the fence itself elects from outside the ISR.
    let mut allowed = image.clone();
    apply(
        &mut allowed,
        vec![MetadataRecord::Config {
            resource: freshet_cluster::records::ConfigResource::Topic("u".into()),
            name: "unclean.leader.election.enable".into(),
            value: Some("true".into()),
        }],
    );
    let records = controller::fence_broker(&allowed, 1, &CLEAN);
    apply(&mut allowed, records);
    let q = p(&allowed);
    assert_eq!((q.leader, q.isr.clone(), q.leader_recovering), (2, vec![2], true));
    // The controller's own default does the same for topics that do not say.
    let mut by_default = image.clone();
    let unclean = controller::Elections { unclean_default: true };
    let records = controller::fence_broker(&by_default, 1, &unclean);
    apply(&mut by_default, records);
    assert_eq!(p(&by_default).leader, 2);
    // Broker 1 back, caught up and in sync: leadership goes back to it, the preferred replica.
    let records = controller::unfence_broker(&allowed, 1, &CLEAN);
    apply(&mut allowed, records);
    assert!(controller::rebalance_leaders(&allowed).is_empty(), "not while it is out of sync");
    let q = p(&allowed);
    let change = controller::IsrChange {
        broker_id: 2,
        broker_epoch: allowed.brokers[&2].epoch,
        topic_id: 42,
        partition: 0,
        leader_epoch: q.leader_epoch,
        partition_epoch: q.partition_epoch,
        new_isr: vec![2, 1],
    };
    let records = controller::alter_partition(&allowed, &change).unwrap();
    apply(&mut allowed, records);
    assert!(!p(&allowed).leader_recovering, "followers back in sync end the recovery");
    let records = controller::rebalance_leaders(&allowed);
    assert_eq!(records.len(), 1);
    apply(&mut allowed, records);
    assert_eq!(p(&allowed).leader, 1);
}
