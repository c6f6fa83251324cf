//! The remote substrate (librdkafka) against a Freshet broker on loopback: the substrate contract
//! (`freshet_core::testing`) checked on it and on the embedded log under the broker, with the
//! same assertions, and what one substrate writes read by the other.

use std::sync::Arc;
use std::time::Duration;

use freshet_broker::{Broker, BrokerConfig};
use freshet_core::config::LogConfig;
use freshet_core::partitioner::partition_for_key;
use freshet_core::remote::Remote;
use freshet_core::testing::{
    consume_transform_produce, contract, group_members_share_and_take_over,
    group_membership_with_a_protocol_of_its_own, pause_and_resume, poll_records, revocation_hands_over_at_the_commit,
    text,
};
use freshet_core::{ConsumerConfig, Embedded, NewTopic, ProducerRecord, Substrate, TopicPartition};

/// A log in a temporary directory, its broker on a free loopback port.
struct Cluster {
    _dir: tempfile::TempDir,
    embedded: Embedded,
    broker: Broker,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            offsets_topic_partitions: 3,
            // Maintenance (retention, compaction) is not what these tests look at.
            maintenance_interval: Duration::from_secs(3600),
            ..LogConfig::default()
        };
        let embedded = Embedded::open(dir.path(), config).await.unwrap();
        let broker_config = BrokerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            auto_create_topics: false,
            ..BrokerConfig::default()
        };
        // The broker's clients and the embedded consumers share one group coordinator.
        let coordinator = embedded.group_coordinator().clone();
        let broker =
            Broker::start_sharing(embedded.log().clone(), embedded.group_offsets().clone(), coordinator, broker_config)
                .await
                .unwrap();
        Cluster { _dir: dir, embedded, broker }
    }

    /// The broker's log as a remote cluster: through librdkafka, over loopback.
    fn remote(&self) -> Remote {
        Remote::new(self.broker.local_addr().to_string())
    }

    /// Both substrates over the one log, each with the prefix its topics and groups carry.
    fn both(&self) -> [(Arc<dyn Substrate>, &'static str); 2] {
        [(Arc::new(self.embedded.clone()), "embedded"), (Arc::new(self.remote()), "remote")]
    }

    async fn stop(self) {
        self.broker.stop().await;
        self.embedded.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_substrates_keep_the_same_contract() {
    let cluster = Cluster::start().await;
    for (s, prefix) in cluster.both() {
        contract(&*s, prefix).await;
    }
    for (s, prefix) in cluster.both() {
        pause_and_resume(&*s, prefix).await;
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_one_substrate_writes_the_other_reads() {
    let cluster = Cluster::start().await;
    let [(embedded, _), (remote, _)] = cluster.both();
    let topic = NewTopic { name: "shared".into(), n_partitions: 2, ..Default::default() };
    remote.admin().unwrap().create_topic(topic).await.unwrap();
    let records =
        |from: usize| (from..from + 50).map(|i| ProducerRecord::new("shared", Some(format!("k{i}")), format!("v{i}")));
    embedded.producer().unwrap().send(records(0).collect()).await.unwrap();
    remote.producer().unwrap().send(records(50).collect()).await.unwrap();
    let tps = vec![TopicPartition::new("shared", 0), TopicPartition::new("shared", 1)];
    for s in [&embedded, &remote] {
        let mut consumer = s.consumer(ConsumerConfig::default()).unwrap();
        consumer.assign(tps.clone()).await.unwrap();
        let got = poll_records(consumer.as_mut(), 100).await;
        let mut values: Vec<String> = got.iter().map(|g| text(&g.1.value).unwrap()).collect();
        values.sort_by_key(|v| v[1..].parse::<u32>().unwrap());
        assert_eq!(values, (0..100).map(|i| format!("v{i}")).collect::<Vec<_>>());
        // Keys land in the same partitions whichever substrate wrote them.
        for (tp, r) in &got {
            assert_eq!(tp.partition, partition_for_key(r.key.as_ref().unwrap(), 2));
        }
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_of_another_protocol_type_join_sync_and_heartbeat_on_both_substrates() {
    let cluster = Cluster::start().await;
    for (s, prefix) in cluster.both() {
        group_membership_with_a_protocol_of_its_own(&*s, prefix).await;
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribed_members_share_partitions_and_take_over_a_leavers_on_both_substrates() {
    let cluster = Cluster::start().await;
    for (s, prefix) in cluster.both() {
        group_members_share_and_take_over(&*s, prefix).await;
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_member_commits_before_its_partitions_move_on_both_substrates() {
    let cluster = Cluster::start().await;
    for (s, prefix) in cluster.both() {
        revocation_hands_over_at_the_commit(&*s, prefix).await;
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_commit_output_and_input_offsets_together_on_both_substrates() {
    let cluster = Cluster::start().await;
    for (s, prefix) in cluster.both() {
        consume_transform_produce(&*s, prefix).await;
    }
    cluster.stop().await;
}

/// A consumer in this process and a Kafka client over the network join one group: the
/// coordinator is one, they exchange Kafka's consumer-protocol subscriptions and assignments, and
/// the group's partitions are dealt between them, every record read once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_consumer_and_a_kafka_client_share_one_group() {
    let cluster = Cluster::start().await;
    let [(embedded, _), (remote, _)] = cluster.both();
    let topic = NewTopic { name: "mixed".into(), n_partitions: 4, ..Default::default() };
    embedded.admin().unwrap().create_topic(topic).await.unwrap();
    let group = |client: &str| ConsumerConfig {
        group_id: Some("mixed-group".into()),
        client_id: Some(client.into()),
        ..ConsumerConfig::default()
    };
    let mut local = embedded.consumer(group("in-process")).unwrap();
    let mut network = remote.consumer(group("over-the-network")).unwrap();
    local.subscribe(vec!["mixed".into()]).await.unwrap();
    network.subscribe(vec!["mixed".into()]).await.unwrap();
    let mut read = std::collections::BTreeMap::<String, usize>::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut sent = false;
    while local.assignment().len() != 2 || network.assignment().len() != 2 || read.len() < 200 {
        if !sent && local.assignment().len() == 2 && network.assignment().len() == 2 {
            // Written once the group has settled, so no record is read before a hand-over.
            let records: Vec<ProducerRecord> =
                (0..200).map(|i| ProducerRecord::new("mixed", Some(format!("k{i}")), format!("v{i}"))).collect();
            embedded.producer().unwrap().send(records).await.unwrap();
            sent = true;
        }
        for consumer in [&mut local, &mut network] {
            for batch in consumer.poll(Duration::from_millis(100)).await.unwrap() {
                for r in batch.records().unwrap() {
                    *read.entry(text(&r.value).unwrap()).or_default() += 1;
                }
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?} and {:?}, {} records read",
            local.assignment(),
            network.assignment(),
            read.len()
        );
    }
    let mut all: Vec<TopicPartition> = local.assignment().into_iter().chain(network.assignment()).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 4, "every partition has one owner");
    assert!(read.values().all(|n| *n == 1), "a record was read twice");
    let described = remote.admin().unwrap().group_members("mixed-group").await.unwrap().unwrap();
    let mut clients: Vec<String> = described.members.iter().map(|m| m.client_id.clone()).collect();
    clients.sort();
    assert_eq!(clients, ["in-process", "over-the-network"]);
    drop((local, network));
    cluster.stop().await;
}

/// A broker whose `group.min.session.timeout.ms` is Kafka's 6 s refuses a shorter session with
/// INVALID_SESSION_TIMEOUT, which the member reads as a config error naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_timeout_outside_the_brokers_bounds_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Embedded::open(dir.path(), LogConfig::default()).await.unwrap();
    let config = BrokerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        group_session_timeouts: Duration::from_secs(6)..=Duration::from_secs(1_800),
        ..BrokerConfig::default()
    };
    let coordinator = embedded.group_coordinator().clone();
    let broker = Broker::start_sharing(embedded.log().clone(), embedded.group_offsets().clone(), coordinator, config)
        .await
        .unwrap();
    let membership = Remote::new(broker.local_addr().to_string()).membership().unwrap();
    let join = |session: u64| freshet_core::JoinGroup {
        group: "bounded".into(),
        member_id: String::new(),
        protocol_type: "connect".into(),
        protocols: vec![("p".into(), bytes::Bytes::from_static(b"m"))],
        session_timeout: Duration::from_secs(session),
        rebalance_timeout: Duration::from_secs(10),
    };
    match membership.join(&join(3)).await {
        Err(freshet_core::Error::InvalidConfig { key, reason, .. }) => {
            assert_eq!(key, "session.timeout.ms");
            assert!(reason.contains("INVALID_SESSION_TIMEOUT"), "{reason}");
        }
        other => panic!("a 3 s session joined: {other:?}"),
    }
    assert!(membership.join(&join(6)).await.is_ok());
    broker.stop().await;
}

/// A group whose only member's session ran out is stored empty, as Kafka's coordinator stores
/// it: restarted, the broker does not bring the member back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_whose_members_expired_stays_empty_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let start = || async {
        let embedded = Embedded::open(dir.path(), LogConfig::default()).await.unwrap();
        let config = BrokerConfig { listen: "127.0.0.1:0".parse().unwrap(), ..BrokerConfig::default() };
        let coordinator = embedded.group_coordinator().clone();
        let broker =
            Broker::start_sharing(embedded.log().clone(), embedded.group_offsets().clone(), coordinator, config)
                .await
                .unwrap();
        (embedded, broker)
    };
    let stored_members = |embedded: Embedded| async move {
        let offsets = embedded.group_offsets();
        let partition = offsets.partition_for("lapsed");
        let stored = offsets.stored_groups(partition).await.unwrap();
        stored.into_iter().find(|(g, _)| g == "lapsed").map(|(_, s)| s.members.len())
    };

    let (embedded, broker) = start().await;
    let membership = Remote::new(broker.local_addr().to_string()).membership().unwrap();
    let join = freshet_core::JoinGroup {
        group: "lapsed".into(),
        member_id: String::new(),
        protocol_type: "connect".into(),
        protocols: vec![("p".into(), bytes::Bytes::from_static(b"m"))],
        session_timeout: Duration::from_secs(1),
        rebalance_timeout: Duration::from_secs(10),
    };
    let joined = membership.join(&join).await.unwrap();
    let assignment = vec![(joined.member_id.clone(), bytes::Bytes::from_static(b"all"))];
    membership.sync("lapsed", &joined, "connect", assignment).await.unwrap();
    assert_eq!(stored_members(embedded.clone()).await, Some(1), "stored with its member once synced");
    // No heartbeat: the session runs out and the group is stored without its member.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while stored_members(embedded.clone()).await != Some(0) {
        assert!(tokio::time::Instant::now() < deadline, "the expired member was never stored as gone");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    broker.stop().await;
    embedded.close().await.unwrap();
    drop(embedded);

    let (embedded, broker) = start().await;
    let admin = Remote::new(broker.local_addr().to_string()).admin().unwrap();
    use freshet_core::Admin;
    let described = admin.group_members("lapsed").await.unwrap().expect("the group is known");
    assert_eq!((described.state.as_str(), described.members.len()), ("Empty", 0), "{described:?}");
    broker.stop().await;
    embedded.close().await.unwrap();
}
