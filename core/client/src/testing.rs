//! The substrate contract: what every implementation of [`Substrate`] keeps, as one suite each
//! runs (feature `testing`). The embedded log runs it in this crate's tests, the remote
//! substrate through a Freshet broker in the broker's; a new implementation runs [`all`].
//!
//! Each check names its topics and groups after `prefix`, so several substrates can run it on one
//! log, and panics with what it found when the substrate breaks the contract.

#![allow(clippy::missing_panics_doc)]

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use freshet_log::batch::Header;
use freshet_log::partitioner::partition_for_key;
use freshet_log::{Error, Isolation, OffsetSpec};

use crate::{
    ConsumedBatches, Consumer, ConsumerConfig, ConsumerRecord, GroupChange, GroupJoined, GroupMembership, Heartbeat,
    JoinGroup, NewTopic, OffsetAndMetadata, ProducerRecord, Substrate, TopicPartition,
};

/// Every check of the contract, in turn, on `s`.
pub async fn all(s: &dyn Substrate, prefix: &str) {
    contract(s, prefix).await;
    pause_and_resume(s, prefix).await;
    group_members_share_and_take_over(s, prefix).await;
    revocation_hands_over_at_the_commit(s, prefix).await;
    consume_transform_produce(s, prefix).await;
    group_membership_with_a_protocol_of_its_own(s, prefix).await;
}

pub fn group(name: &str) -> ConsumerConfig {
    ConsumerConfig { group_id: Some(name.into()), ..ConsumerConfig::default() }
}

/// Polls until `n` records arrived (or 20 s passed), in order per partition.
pub async fn poll_records(consumer: &mut dyn Consumer, n: usize) -> Vec<(TopicPartition, ConsumerRecord)> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while out.len() < n && tokio::time::Instant::now() < deadline {
        for batches in consumer.poll(Duration::from_millis(500)).await.unwrap() {
            out.extend(batches.records().unwrap().into_iter().map(|r| (batches.tp.clone(), r)));
        }
    }
    out
}

/// Commits a member's positions; a commit the group refuses because it is rebalancing is retried
/// after the next poll (at least once: those records may be read again).
pub async fn commit(member: &mut dyn Consumer) {
    match member.commit_positions().await {
        Ok(()) | Err(Error::Rebalanced(_)) => {}
        Err(e) => panic!("{e}"),
    }
}

pub fn text(b: &Option<Bytes>) -> Option<String> {
    b.as_ref().map(|b| String::from_utf8(b.to_vec()).unwrap())
}

/// The substrate contract: what any implementation keeps. Topic names carry `prefix` so both
/// substrates can run it on one log.
pub async fn contract(s: &dyn Substrate, prefix: &str) {
    let topic = format!("{prefix}-orders");

    // Admin: create, refuse a duplicate and a bad name, describe, alter, grow.
    let configs = BTreeMap::from([("retention.ms".to_string(), "3600000".to_string())]);
    s.admin().unwrap().create_topic(NewTopic { name: topic.clone(), n_partitions: 3, configs }).await.unwrap();
    let e =
        s.admin().unwrap().create_topic(NewTopic { name: topic.clone(), n_partitions: 3, ..Default::default() }).await;
    assert!(matches!(e, Err(Error::TopicExists(ref t)) if *t == topic), "{e:?}");
    let e = s
        .admin()
        .unwrap()
        .create_topic(NewTopic { name: "bad/name".into(), n_partitions: 1, ..Default::default() })
        .await;
    assert!(matches!(e, Err(Error::InvalidTopicName { .. })), "{e:?}");
    assert!(matches!(
        s.admin().unwrap().describe_topic(&format!("{prefix}-missing")).await,
        Err(Error::UnknownTopic(_))
    ));
    let (described, partitions) = s.admin().unwrap().describe_topic(&topic).await.unwrap();
    assert_eq!((described.n_partitions, partitions.len()), (3, 3));
    assert_eq!(described.overrides.get("retention.ms").map(String::as_str), Some("3600000"));
    assert!(s.admin().unwrap().list_topics().await.unwrap().iter().any(|t| t.name == topic));
    let changes = BTreeMap::from([
        ("retention.ms".to_string(), None),
        ("cleanup.policy".to_string(), Some("compact,delete".to_string())),
    ]);
    s.admin().unwrap().alter_configs(&topic, changes).await.unwrap();
    let configs: BTreeMap<String, (String, bool)> = s
        .admin()
        .unwrap()
        .describe_configs(&topic)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.name, (c.value, c.is_default)))
        .collect();
    assert_eq!(configs["cleanup.policy"], ("compact,delete".to_string(), false));
    assert!(configs["retention.ms"].1, "retention.ms is back to its default: {:?}", configs["retention.ms"]);
    s.admin().unwrap().create_partitions(&topic, 4).await.unwrap();
    assert_eq!(s.admin().unwrap().describe_topic(&topic).await.unwrap().0.n_partitions, 4);

    // Produce: keys by Kafka's partitioner, null values, repeated headers, timestamps.
    let records: Vec<ProducerRecord> = (0..60)
        .map(|i| ProducerRecord {
            topic: topic.clone(),
            partition: None,
            key: Some(Bytes::from(format!("customer-{}", i % 7))),
            value: if i % 10 == 9 { None } else { Some(Bytes::from(format!("order-{i}"))) },
            headers: vec![
                Header { key: "h".into(), value: Some(Bytes::from(format!("{i}"))) },
                Header { key: "h".into(), value: None },
            ],
            timestamp: Some(1_700_000_000_000 + i),
        })
        .collect();
    let sent = s.producer().unwrap().send(records.clone()).await.unwrap();
    for (record, meta) in records.iter().zip(&sent) {
        assert_eq!(meta.partition, partition_for_key(record.key.as_ref().unwrap(), 4), "{record:?}");
    }

    // Consume everything back, unchanged.
    let all: Vec<TopicPartition> = (0..4).map(|p| TopicPartition::new(topic.clone(), p)).collect();
    let mut consumer = s.consumer(group(&format!("{prefix}-g"))).unwrap();
    consumer.assign(all.clone()).await.unwrap();
    let got = poll_records(consumer.as_mut(), records.len()).await;
    assert_eq!(got.len(), records.len());
    let by_value: BTreeMap<i64, &(TopicPartition, ConsumerRecord)> = got.iter().map(|g| (g.1.timestamp, g)).collect();
    for (record, meta) in records.iter().zip(&sent) {
        let (tp, r) = by_value[&record.timestamp.unwrap()];
        assert_eq!((tp.partition, r.offset), (meta.partition, meta.offset));
        assert_eq!((&r.key, &r.value, &r.headers), (&record.key, &record.value, &record.headers));
    }
    for tp in &all {
        assert_eq!(consumer.position(tp), Some(got.iter().filter(|g| g.0 == *tp).count() as i64));
    }

    // Commit with metadata; a new consumer of the group starts there.
    let tp0 = all[partition_for_key(b"customer-0", 4) as usize].clone();
    let mut offsets = BTreeMap::new();
    offsets.insert(tp0.clone(), OffsetAndMetadata { metadata: "checkpoint-1".into(), ..OffsetAndMetadata::new(2) });
    consumer.commit(offsets).await.unwrap();
    let committed = consumer.committed(std::slice::from_ref(&tp0)).await.unwrap();
    assert_eq!((committed[&tp0].offset, committed[&tp0].metadata.as_str()), (2, "checkpoint-1"));
    drop(consumer);
    let mut again = s.consumer(group(&format!("{prefix}-g"))).unwrap();
    again.assign(vec![tp0.clone()]).await.unwrap();
    assert_eq!(again.position(&tp0), Some(2));
    let resumed = poll_records(again.as_mut(), 1).await;
    assert_eq!(resumed.first().map(|r| r.1.offset), Some(2));

    // Seek into the middle of a batch, to the end, and by time.
    again.seek_to_offset(&tp0, 3).unwrap();
    let from_three = poll_records(again.as_mut(), 1).await;
    assert_eq!(from_three.first().map(|r| r.1.offset), Some(3), "{from_three:?}");
    let at = by_value.values().find(|g| g.0 == tp0 && g.1.offset == 4).unwrap().1.timestamp;
    again.seek(&tp0, OffsetSpec::Timestamp(at)).await.unwrap();
    assert_eq!(again.position(&tp0), Some(4));
    again.seek(&tp0, OffsetSpec::Latest).await.unwrap();
    let end = s.admin().unwrap().list_offset(&tp0, OffsetSpec::Latest).await.unwrap().unwrap().0;
    assert_eq!(again.position(&tp0), Some(end));
    assert!(again.poll(Duration::from_millis(300)).await.unwrap().iter().all(|b| b.records().unwrap().is_empty()));

    // Records before an offset deleted; the log start moves.
    assert_eq!(s.admin().unwrap().delete_records(&tp0, 2).await.unwrap(), 2);
    assert_eq!(s.admin().unwrap().list_offset(&tp0, OffsetSpec::Earliest).await.unwrap().unwrap().0, 2);
    assert!(s.admin().unwrap().list_groups().await.unwrap().contains(&format!("{prefix}-g")));
    assert_eq!(s.admin().unwrap().group_offsets(&format!("{prefix}-g")).await.unwrap()[&tp0].offset, 2);

    // A group without members is deleted, and its offsets with it.
    drop(again);
    let admin = s.admin().unwrap();
    assert!(admin.delete_group(&format!("{prefix}-g")).await.unwrap());
    assert!(admin.group_offsets(&format!("{prefix}-g")).await.unwrap().is_empty());
    assert!(!admin.delete_group(&format!("{prefix}-g")).await.unwrap());

    s.admin().unwrap().delete_topic(&topic).await.unwrap();
    assert!(matches!(s.admin().unwrap().describe_topic(&topic).await, Err(Error::UnknownTopic(_))));
}

/// A paused partition yields nothing while the others go on; resumed, it goes on from where it
/// was.
pub async fn pause_and_resume(s: &dyn Substrate, prefix: &str) {
    let topic = format!("{prefix}-paused");
    s.admin()
        .unwrap()
        .create_topic(NewTopic { name: topic.clone(), n_partitions: 2, ..Default::default() })
        .await
        .unwrap();
    let records: Vec<ProducerRecord> = (0..40)
        .map(|i| {
            let mut r = ProducerRecord::new(topic.clone(), None::<Bytes>, format!("{i}"));
            r.partition = Some(i % 2);
            r
        })
        .collect();
    s.producer().unwrap().send(records).await.unwrap();
    let (p0, p1) = (TopicPartition::new(&topic, 0), TopicPartition::new(&topic, 1));
    let mut consumer = s.consumer(group(&format!("{prefix}-paused"))).unwrap();
    consumer.assign(vec![p0.clone(), p1.clone()]).await.unwrap();
    consumer.pause(std::slice::from_ref(&p0)).unwrap();
    let mut read: BTreeMap<u32, usize> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut quiet_polls = 0;
    while read.get(&1) != Some(&20) || quiet_polls < 3 {
        let polled = consumer.poll(Duration::from_millis(100)).await.unwrap();
        quiet_polls = if polled.is_empty() { quiet_polls + 1 } else { 0 };
        for b in polled {
            *read.entry(b.tp.partition).or_default() += b.records().unwrap().len();
        }
        assert!(tokio::time::Instant::now() < deadline, "{prefix}: {read:?}");
    }
    assert_eq!(read.get(&0), None, "{prefix}: the paused partition yielded records");
    consumer.resume(std::slice::from_ref(&p0)).unwrap();
    while read.get(&0) != Some(&20) {
        for b in consumer.poll(Duration::from_millis(100)).await.unwrap() {
            *read.entry(b.tp.partition).or_default() += b.records().unwrap().len();
        }
        assert!(tokio::time::Instant::now() < deadline, "{prefix}: {read:?}");
    }
    assert_eq!(read, BTreeMap::from([(0, 20), (1, 20)]), "{prefix}");
}

pub async fn group_members_share_and_take_over(s: &dyn Substrate, prefix: &str) {
    let topics = [format!("{prefix}-clicks"), format!("{prefix}-views")];
    for t in &topics {
        s.admin()
            .unwrap()
            .create_topic(NewTopic { name: t.clone(), n_partitions: 4, ..Default::default() })
            .await
            .unwrap();
    }
    let records: Vec<ProducerRecord> = (0..80)
        .flat_map(|i| topics.clone().map(|t| ProducerRecord::new(t, Some(format!("user-{i}")), format!("{i}"))))
        .collect();
    s.producer().unwrap().send(records).await.unwrap();

    let mut members = Vec::new();
    for _ in 0..2 {
        let mut c = s.consumer(group(&format!("{prefix}-sharing"))).unwrap();
        c.subscribe(topics.to_vec()).await.unwrap();
        members.push(c);
    }
    // Both poll (committing what they read) until the group has settled with each member holding
    // half of each topic.
    let mut read: BTreeMap<(String, String), usize> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        for m in members.iter_mut() {
            note(&mut read, m.poll(Duration::from_millis(200)).await.unwrap());
            commit(m.as_mut()).await;
        }
        let assigned: Vec<Vec<TopicPartition>> = members.iter().map(|m| m.assignment()).collect();
        if assigned.iter().all(|a| a.len() == 4) {
            let mut union: Vec<_> = assigned.concat();
            union.sort();
            union.dedup();
            assert_eq!(union.len(), 8, "{assigned:?}");
            // The range assignor keeps co-partitioned topics together: the same partition
            // numbers of both topics on each member.
            for a in &assigned {
                let of = |t: &str| a.iter().filter(|tp| tp.topic == t).map(|tp| tp.partition).collect::<Vec<_>>();
                assert_eq!(of(&topics[0]), of(&topics[1]));
            }
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the group never settled: {assigned:?}");
    }
    let described =
        s.admin().unwrap().group_members(&format!("{prefix}-sharing")).await.unwrap().expect("live members");
    assert_eq!(described.members.len(), 2, "{described:?}");
    assert!(described.members.iter().all(|m| m.assignment.len() == 4), "{described:?}");
    // One member leaves; the other takes all eight partitions over, from the committed offsets,
    // and every record has been read.
    drop(members.pop());
    let mut stayer = members.pop().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while stayer.assignment().len() < 8 || read.len() < 160 {
        note(&mut read, stayer.poll(Duration::from_millis(200)).await.unwrap());
        commit(stayer.as_mut()).await;
        assert!(tokio::time::Instant::now() < deadline, "{:?} after {} records", stayer.assignment(), read.len());
    }
    assert_eq!(read.len(), 160);
    // A member may seek within its assignment, backwards too: it reads those records again.
    let tp = stayer.assignment()[0].clone();
    let end = stayer.position(&tp).unwrap();
    assert!(end > 0, "{tp} has records");
    stayer.seek_to_offset(&tp, 0).unwrap();
    let mut again = 0;
    while again < end {
        for b in stayer.poll(Duration::from_millis(200)).await.unwrap() {
            if b.tp == tp {
                again += b.records().unwrap().len() as i64;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "{prefix}: read {again} of {end} again");
    }
    assert_eq!(again, end);
}

/// A first member reads without committing; a second joins. The first is told its partitions
/// are revoked, commits them then (and only then), and the second starts at that commit: every
/// record is read exactly once, though the first never committed otherwise.
pub async fn revocation_hands_over_at_the_commit(s: &dyn Substrate, prefix: &str) {
    let topic = format!("{prefix}-handover");
    s.admin()
        .unwrap()
        .create_topic(NewTopic { name: topic.clone(), n_partitions: 4, ..Default::default() })
        .await
        .unwrap();
    let producer = s.producer().unwrap();
    let send = |from: usize, to: usize| {
        let records: Vec<ProducerRecord> =
            (from..to).map(|i| ProducerRecord::new(topic.clone(), Some(format!("k{i}")), format!("{i}"))).collect();
        producer.send(records)
    };
    send(0, 200).await.unwrap();
    let config = ConsumerConfig { client_id: Some(format!("{prefix}-first")), ..group(&format!("{prefix}-handover")) };
    let mut first = s.consumer(config).unwrap();
    first.subscribe(vec![topic.clone()]).await.unwrap();
    let mut read: BTreeMap<(String, String), usize> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut first_changes = Vec::new();
    while read.len() < 200 {
        note(&mut read, first.poll(Duration::from_millis(200)).await.unwrap());
        first_changes.extend(first.take_group_changes());
        assert!(tokio::time::Instant::now() < deadline, "the first member read {} records", read.len());
    }
    assert_eq!(first_changes.last(), Some(&GroupChange::Assigned(first.assignment())), "{first_changes:?}");
    assert_eq!(first.assignment().len(), 4);
    let described =
        s.admin().unwrap().group_members(&format!("{prefix}-handover")).await.unwrap().expect("a live member");
    assert_eq!(described.members[0].client_id, format!("{prefix}-first"), "{described:?}");

    let mut second = s.consumer(group(&format!("{prefix}-handover"))).unwrap();
    second.subscribe(vec![topic.clone()]).await.unwrap();
    send(200, 400).await.unwrap();
    let (mut revoked, mut assigned_after) = (Vec::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while first.assignment().len() + second.assignment().len() < 4 || second.assignment().is_empty() || read.len() < 400
    {
        note(&mut read, first.poll(Duration::from_millis(100)).await.unwrap());
        for change in first.take_group_changes() {
            if let GroupChange::Revoked(partitions) = change {
                // The last moment to commit them: the second member has not read them yet.
                first.commit_positions().await.unwrap();
                revoked.extend(partitions);
            }
        }
        note(&mut read, second.poll(Duration::from_millis(100)).await.unwrap());
        for change in second.take_group_changes() {
            if let GroupChange::Assigned(partitions) = change {
                assigned_after.extend(partitions);
            }
        }
        commit(second.as_mut()).await;
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?} and {:?} after {} records",
            first.assignment(),
            second.assignment(),
            read.len()
        );
    }
    assert!(!revoked.is_empty(), "the first member was told before its partitions moved");
    assert!(assigned_after.iter().all(|tp| revoked.contains(tp)), "{assigned_after:?} were revoked from {revoked:?}");
    let twice: Vec<_> = read.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "read twice: {twice:?}");
    assert_eq!(read.len(), 400);
}

fn note(read: &mut BTreeMap<(String, String), usize>, batches: Vec<ConsumedBatches>) {
    for b in batches {
        for r in b.records().unwrap() {
            *read.entry((b.tp.topic.clone(), text(&r.value).unwrap())).or_default() += 1;
        }
    }
}

/// Reads an input, writes what it read to an output and commits the input offsets in one
/// transaction; aborts a second one; leaves a third open until a new producer with the same
/// transactional id fences the first. `read_committed` readers see only the committed output,
/// and the group's offset moves only with the commit.
pub async fn consume_transform_produce(s: &dyn Substrate, prefix: &str) {
    let (input, output) = (format!("{prefix}-txn-in"), format!("{prefix}-txn-out"));
    for (name, n_partitions) in [(&input, 1), (&output, 2)] {
        s.admin()
            .unwrap()
            .create_topic(NewTopic { name: name.clone(), n_partitions, ..Default::default() })
            .await
            .unwrap();
    }
    let records = (0..10).map(|i| ProducerRecord::new(&input, Some(format!("k{i}")), format!("v{i}"))).collect();
    s.producer().unwrap().send(records).await.unwrap();
    let eos = ConsumerConfig { isolation: Isolation::ReadCommitted, ..group(&format!("{prefix}-eos")) };
    let mut consumer = s.consumer(eos).unwrap();
    let tp_in = TopicPartition::new(&input, 0);
    consumer.assign(vec![tp_in.clone()]).await.unwrap();
    let read = poll_records(consumer.as_mut(), 10).await;
    assert_eq!(read.len(), 10);
    let metadata = consumer.group_metadata().expect("a consumer in a group");

    let producer = s.transactional_producer(&format!("{prefix}-app"), Duration::from_secs(60)).await.unwrap();
    producer.begin().unwrap();
    let out: Vec<ProducerRecord> = read
        .iter()
        .map(|(_, r)| ProducerRecord {
            topic: output.clone(),
            key: r.key.clone(),
            value: r.value.clone(),
            ..Default::default()
        })
        .collect();
    producer.send(out).await.unwrap();
    producer.send_offsets(BTreeMap::from([(tp_in.clone(), OffsetAndMetadata::new(10))]), &metadata).await.unwrap();
    producer.commit().await.unwrap();
    producer.begin().unwrap();
    producer.send(vec![ProducerRecord::new(&output, Some("x"), "aborted")]).await.unwrap();
    producer.send_offsets(BTreeMap::from([(tp_in.clone(), OffsetAndMetadata::new(99))]), &metadata).await.unwrap();
    producer.abort().await.unwrap();
    assert_eq!(
        consumer.committed(std::slice::from_ref(&tp_in)).await.unwrap()[&tp_in].offset,
        10,
        "{prefix}: the abort's offsets"
    );

    producer.begin().unwrap();
    producer.send(vec![ProducerRecord::new(&output, Some("x"), "open")]).await.unwrap();
    let committed: Vec<String> = {
        let mut v: Vec<String> = (0..10).map(|i| format!("v{i}")).collect();
        v.sort();
        v
    };
    assert_eq!(
        values(s, &output, Isolation::ReadCommitted, 10).await,
        committed,
        "{prefix}: read_committed with one open"
    );
    assert_eq!(
        values(s, &output, Isolation::ReadUncommitted, 12).await.len(),
        12,
        "{prefix}: read_uncommitted sees every record"
    );

    // A new incarnation fences the old one and aborts its open transaction.
    let next = s.transactional_producer(&format!("{prefix}-app"), Duration::from_secs(60)).await.unwrap();
    let err = async {
        producer.send(vec![ProducerRecord::new(&output, Some("x"), "zombie")]).await?;
        producer.commit().await
    }
    .await
    .unwrap_err();
    assert!(matches!(err, Error::ProducerFenced(_)), "{prefix}: {err}");
    next.begin().unwrap();
    next.send(vec![ProducerRecord::new(&output, Some("x"), "next")]).await.unwrap();
    next.commit().await.unwrap();
    let mut want = committed.clone();
    want.push("next".into());
    want.sort();
    assert_eq!(values(s, &output, Isolation::ReadCommitted, 11).await, want, "{prefix}: after the fencing");
}

/// The sorted values of both partitions of `topic`, as a consumer at `isolation` reads them:
/// `n` of them, then whatever else comes within a second.
async fn values(s: &dyn Substrate, topic: &str, isolation: Isolation, n: usize) -> Vec<String> {
    let mut reader = s.consumer(ConsumerConfig { isolation, ..ConsumerConfig::default() }).unwrap();
    reader.assign((0..2).map(|p| TopicPartition::new(topic, p)).collect()).await.unwrap();
    let mut read = poll_records(reader.as_mut(), n).await;
    for batches in reader.poll(Duration::from_secs(1)).await.unwrap() {
        read.extend(batches.records().unwrap().into_iter().map(|r| (batches.tp.clone(), r)));
    }
    let mut got: Vec<String> = read.iter().filter_map(|(_, r)| text(&r.value)).collect();
    got.sort();
    got
}

/// Members of a group with a protocol of their own (protocol type `connect`, as Kafka Connect's
/// workers use): two join at once and come to one generation with one leader, who sees both
/// members' metadata and hands each an assignment of its own; a third joining, and then the
/// leader leaving, each make the others' heartbeats say a rebalance began, and they rejoin
/// (keeping their ids) into a newer generation; a heartbeat of a stale generation, of a member
/// the group does not know or of one that left is told the member is lost.
///
/// The members behave as Kafka Connect's workers do: each joins, syncs, then heartbeats every
/// 100 ms and rejoins when a rebalance begins. Two members joining at once may still form two
/// generations in turn (a coordinator without an initial rebalance delay may complete the first
/// join before the second member has joined); they then rebalance into one.
pub async fn group_membership_with_a_protocol_of_its_own(s: &dyn Substrate, prefix: &str) {
    let group = format!("{prefix}-membership");
    let membership = s.membership().unwrap();
    let m = &*membership;

    // Two members join at once.
    let members = rebalance(m, &group, vec![("a", None), ("b", None)], 0, prefix).await;
    let first = check_joined(&members, 0, prefix);

    // A third joins: the other two's heartbeats say a rebalance began; they rejoin, and all three
    // are in a newer generation.
    let mut starting: Vec<_> = members.iter().map(|(name, joined)| (*name, Some(joined.clone()))).collect();
    starting.push(("c", None));
    let members = rebalance(m, &group, starting, first, prefix).await;
    let second = check_joined(&members, first, prefix);

    // The leader leaves: the other two rebalance into a newer generation without it.
    let mut members = members;
    let leader = members.iter().position(|(_, joined)| joined.is_leader()).unwrap();
    let (_, left) = members.remove(leader);
    m.leave(&group, &left.member_id).await.unwrap();
    let starting = members.into_iter().map(|(name, joined)| (name, Some(joined))).collect();
    let members = rebalance(m, &group, starting, second, prefix).await;
    let third = check_joined(&members, second, prefix);

    // A stale generation, an unknown member, the member that left: lost. The members of the
    // current generation are not disturbed by them.
    let stayer = &members[0].1;
    let lost =
        [(first, stayer.member_id.as_str()), (third, "freshet-no-such-member"), (third, left.member_id.as_str())];
    for (generation, member_id) in lost {
        let answer = m.heartbeat(&group, generation, member_id).await.unwrap();
        assert_eq!(answer, Heartbeat::Lost, "{prefix}: a heartbeat of {member_id:?} in generation {generation}");
    }
    for (_, joined) in &members {
        let answer = m.heartbeat(&group, joined.generation, &joined.member_id).await.unwrap();
        assert_eq!(answer, Heartbeat::Stable, "{prefix}: {joined:?}");
    }
    for (_, joined) in &members {
        m.leave(&group, &joined.member_id).await.unwrap();
    }
}

/// A join of `group` as member `name` (its metadata names it), with protocol type `connect`.
fn join_request(group: &str, member_id: &str, name: &str) -> JoinGroup {
    JoinGroup {
        group: group.to_string(),
        member_id: member_id.to_string(),
        protocol_type: "connect".into(),
        protocols: vec![("freshet-test".into(), Bytes::from(format!("metadata of {name}")))],
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(10),
    }
}

/// The assignment the leader gives member `member_id`.
fn work_of(member_id: &str) -> Bytes {
    Bytes::from(format!("the work of {member_id}"))
}

/// Runs `members` (each named, new or stable in the generation it joined) at once, as members
/// do, until all of them have synced one generation newer than `after`, whose heartbeats then
/// find the group stable; returns what each joined, in the order given. Members starting stable
/// keep their ids.
async fn rebalance(
    m: &dyn GroupMembership,
    group: &str,
    members: Vec<(&'static str, Option<GroupJoined>)>,
    after: i32,
    prefix: &str,
) -> Vec<(&'static str, GroupJoined)> {
    let synced = std::sync::Mutex::new(BTreeMap::new());
    let n = members.len();
    let runs =
        members.iter().map(|(name, stable)| run_member(m, group, name, stable.clone(), (n, after), &synced, prefix));
    let joined = futures::future::join_all(runs).await;
    for ((name, before), joined) in members.iter().zip(&joined) {
        if let Some(before) = before {
            assert_eq!(joined.member_id, before.member_id, "{prefix}: member {name} keeps its id as it rejoins");
        }
        let answer = m.heartbeat(group, joined.generation, &joined.member_id).await.unwrap();
        assert_eq!(answer, Heartbeat::Stable, "{prefix}: member {name}, settled: {joined:?}");
    }
    members.iter().map(|(name, _)| *name).zip(joined).collect()
}

/// One member of [`rebalance`]: joins (unless `stable` in a generation), syncs (as the leader,
/// giving each member [`work_of`] it) and heartbeats every 100 ms, rejoining when a rebalance
/// begins, until all `n` members have reported (in `synced`) the same generation, newer than
/// `after`.
async fn run_member(
    m: &dyn GroupMembership,
    group: &str,
    name: &'static str,
    mut stable: Option<GroupJoined>,
    (n, after): (usize, i32),
    synced: &std::sync::Mutex<BTreeMap<&'static str, i32>>,
    prefix: &str,
) -> GroupJoined {
    let settled = || {
        let synced = synced.lock().unwrap();
        let mut generations = synced.values();
        synced.len() == n && generations.next().is_some_and(|g| *g > after && generations.all(|o| o == g))
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut member_id = stable.as_ref().map(|j| j.member_id.clone()).unwrap_or_default();
    loop {
        if let Some(joined) = &stable {
            let waiting_since = tokio::time::Instant::now();
            loop {
                if settled() {
                    return joined.clone();
                }
                match m.heartbeat(group, joined.generation, &joined.member_id).await.unwrap() {
                    Heartbeat::Stable => {}
                    Heartbeat::Rebalance => break,
                    Heartbeat::Lost => {
                        panic!("{prefix}: member {name} lost while heartbeating every 100 ms: {joined:?}")
                    }
                }
                assert!(
                    waiting_since.elapsed() < Duration::from_secs(20),
                    "{prefix}: member {name}: no rebalance began in 20 s though the group is not settled: {joined:?}, {:?}",
                    synced.lock().unwrap()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "{prefix}: member {name} never settled: {stable:?}");
        let joined = m.join(&join_request(group, &member_id, name)).await.unwrap();
        member_id.clone_from(&joined.member_id);
        let assignments = if joined.is_leader() {
            joined.members.iter().map(|(id, _)| (id.clone(), work_of(id))).collect()
        } else {
            Vec::new()
        };
        match m.sync(group, &joined, "connect", assignments).await.unwrap() {
            // Another rebalance began: joins again.
            None => stable = None,
            Some(assignment) => {
                assert_eq!(assignment, work_of(&member_id), "{prefix}: member {name}'s own assignment: {joined:?}");
                synced.lock().unwrap().insert(name, joined.generation);
                stable = Some(joined);
            }
        }
    }
}

/// Checks that `members` joined one generation newer than `after`, with one leader among them,
/// who alone sees every member's metadata; returns the generation.
fn check_joined(members: &[(&str, GroupJoined)], after: i32, prefix: &str) -> i32 {
    let generation = members[0].1.generation;
    assert!(generation > after, "{prefix}: generation {generation} after {after}: {members:?}");
    assert!(members.iter().all(|(_, j)| j.generation == generation), "{prefix}: one generation: {members:?}");
    assert!(members.iter().all(|(_, j)| j.protocol == "freshet-test"), "{prefix}: the protocol: {members:?}");
    let mut ids: Vec<&str> = members.iter().map(|(_, j)| j.member_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), members.len(), "{prefix}: distinct member ids: {members:?}");
    let leaders: Vec<&GroupJoined> = members.iter().map(|(_, j)| j).filter(|j| j.is_leader()).collect();
    assert_eq!(leaders.len(), 1, "{prefix}: exactly one leader: {members:?}");
    assert!(members.iter().all(|(_, j)| j.leader == leaders[0].member_id), "{prefix}: one leader: {members:?}");
    let mut expected: Vec<(String, Bytes)> =
        members.iter().map(|(name, j)| (j.member_id.clone(), Bytes::from(format!("metadata of {name}")))).collect();
    expected.sort();
    let mut seen = leaders[0].members.clone();
    seen.sort();
    assert_eq!(seen, expected, "{prefix}: the leader sees every member's metadata");
    for (_, j) in members.iter().filter(|(_, j)| !j.is_leader()) {
        assert!(j.members.is_empty(), "{prefix}: a follower sees no members: {j:?}");
    }
    generation
}
