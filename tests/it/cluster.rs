//! A cluster of three `freshet broker` processes, configured with Kafka's KRaft keys and
//! formatted with one cluster id, driven by real clients (confluent-kafka, kafka-python, kcat,
//! Kafka's Java tools) through any broker: groups and transactions whose coordinators are on
//! other brokers than their partitions; brokers and the active controller killed with SIGKILL.

use crate::broker::{kcat, python_clients};
use crate::java::describe_configs;
use crate::peer::{java, kafka_tool, FreshetCluster};
use crate::topic::freshet;

/// The ids of the brokers leading `topic`'s partitions, in partition order, from kcat's listing.
fn leaders(metadata: &str) -> Vec<i32> {
    metadata
        .lines()
        .filter_map(|l| l.trim().strip_prefix("partition "))
        .map(|l| l.split("leader ").nth(1).and_then(|r| r.split(',').next()).unwrap().parse().unwrap())
        .collect()
}

#[test]
fn three_brokers_share_topics_clients_follow_leaders_and_dead_nodes_are_replaced() {
    // ACLs enforced, open where none is set: the cluster's ACLs are its metadata's.
    let acls = "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n\
                allow.everyone.if.no.acl.found=true\n";
    let mut cluster = FreshetCluster::start_with(3, acls);
    // Through broker 2: a topic led by all three, 3,000 records across them, two groups.
    python_clients("cluster.py", &["spread", &cluster.addr(2), "3"]);
    let all = cluster.metadata_until(1, "spread", |m| m.contains("3 brokers"));
    let before = leaders(&all);
    assert_eq!(before.len(), 6, "{all}");

    // Kafka's own tools (the Java client) through broker 3.
    let b3 = cluster.addr(3);
    let tool = |class: &str, args: &[&str], stdin: &str| {
        let mut all = vec!["--bootstrap-server", b3.as_str()];
        all.extend_from_slice(args);
        kafka_tool(class, &all, stdin)
    };
    let topics = "org.apache.kafka.tools.TopicCommand";
    let out = tool(topics, &["--create", "--topic", "java-tools", "--partitions", "3"], "");
    assert!(out.contains("Created topic java-tools."), "{out}");
    let out = tool(topics, &["--describe", "--topic", "java-tools"], "");
    let mut led: Vec<&str> =
        out.lines().filter_map(|l| l.split("Leader: ").nth(1)).filter_map(|l| l.split_whitespace().next()).collect();
    led.sort_unstable();
    assert_eq!(led, ["1", "2", "3"], "each broker leads one partition:\n{out}");
    tool("org.apache.kafka.tools.ConsoleProducer", &["--topic", "java-tools"], "a\nb\nc\nd\ne\nf\n");
    let out = tool(
        "org.apache.kafka.tools.consumer.ConsoleConsumer",
        &["--topic", "java-tools", "--group", "java-readers", "--from-beginning", "--max-messages", "6"],
        "",
    );
    let mut read: Vec<&str> = out.lines().collect();
    read.sort_unstable();
    assert_eq!(read, ["a", "b", "c", "d", "e", "f"]);
    // kafka-log-dirs: each broker holds the one partition it leads (DescribeLogDirs).
    let out = tool(
        "org.apache.kafka.tools.LogDirsCommand",
        &["--describe", "--broker-list", "1,2,3", "--topic-list", "java-tools"],
        "",
    );
    let json = out.lines().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("{out}"));
    let dirs: serde_json::Value = serde_json::from_str(json).unwrap();
    let mut bytes = 0;
    for broker in dirs["brokers"].as_array().unwrap() {
        let partitions = broker["logDirs"][0]["partitions"].as_array().unwrap();
        assert_eq!(partitions.len(), 1, "broker {}: {json}", broker["broker"]);
        bytes += partitions[0]["size"].as_i64().unwrap();
    }
    assert_eq!(dirs["brokers"].as_array().unwrap().len(), 3, "{json}");
    assert!(bytes > 0, "the six records are on disk somewhere: {json}");

    // An ACL set through broker 3 holds on every broker: a topic led by each refuses its writes.
    tool(topics, &["--create", "--topic", "guarded", "--partitions", "3"], "");
    let acl = "org.apache.kafka.tools.AclCommand";
    tool(acl, &["--add", "--deny-principal", "User:*", "--operation", "Write", "--topic", "guarded"], "");
    for node in 1..=3 {
        let listed = kafka_tool(acl, &["--bootstrap-server", &cluster.addr(node), "--list"], "");
        assert!(listed.contains("name=guarded") && listed.contains("operation=WRITE, permissionType=DENY"), "{listed}");
    }
    for partition in ["0", "1", "2"] {
        let out = crate::peer::run_with_stdin(
            std::process::Command::new("timeout").args([
                "30",
                "kcat",
                "-b",
                &cluster.addr(1),
                "-P",
                "-t",
                "guarded",
                "-p",
                partition,
            ]),
            "refused\n",
            "kcat is installed",
        );
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && said.contains("Topic authorization failed"), "partition {partition}: {said}");
    }

    // A dynamic broker config: the cluster's default set through broker 3 reaches every broker;
    // broker 2's own, set through broker 2 (where Kafka's tool sends it), only broker 2.
    let configs = "org.apache.kafka.tools.ConfigCommand";
    let change =
        ["--alter", "--entity-type", "brokers", "--entity-default", "--add-config", "log.retention.ms=3600000"];
    tool(configs, &change, "");
    let own = ["--alter", "--entity-type", "brokers", "--entity-name", "2", "--add-config", "log.retention.ms=7200000"];
    kafka_tool(configs, &[&["--bootstrap-server", cluster.addr(2).as_str()][..], &own[..]].concat(), "");
    for node in 1..=3 {
        let described = describe_configs(&cluster.addr(node), "brokers", &node.to_string());
        let expected = if node == 2 {
            "log.retention.ms=7200000 sensitive=false synonyms={DYNAMIC_BROKER_CONFIG"
        } else {
            "log.retention.ms=3600000 sensitive=false synonyms={DYNAMIC_DEFAULT_BROKER_CONFIG"
        };
        assert!(described.contains(expected), "broker {node}:\n{described}");
    }

    // Transactions over partitions of all three brokers, their offsets committed to a group
    // whose coordinator is not the transactions' coordinator: markers cross brokers.
    python_clients("transactions.py", &[&cluster.addr(1), "ctx", "apart"]);
    // And the Java client's: consume-transform-produce, abort, resume, fencing.
    java("Transactions", &[&cluster.addr(2)]);

    // Broker 3 killed: once its session expires, its partitions (one copy each) have no leader
    // and say so; the others are still written.
    cluster.kill(3);
    // Exactly broker 3's partitions leaderless (a busy machine may briefly fence another broker
    // whose heartbeat came late; that one is unfenced at its next heartbeat).
    let offline = cluster.metadata_until(1, "spread", |m| {
        let now = leaders(m);
        m.contains("2 brokers") && now.len() == 6 && now.iter().zip(&before).all(|(l, b)| (*l == -1) == (*b == 3))
    });
    assert!(offline.contains("Leader not available"), "{offline}");
    // `freshet topic describe` through a live broker: leaders, replicas and ISR, and which
    // partitions are offline.
    let (ok, out, err) = freshet(&["topic", "describe", "spread"], &["--bootstrap".into(), cluster.addr(1)]);
    assert!(ok, "{err}");
    for (p, b) in before.iter().enumerate() {
        let prefix = format!("partition {p}:");
        let line = out.lines().map(str::trim).find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("{out}"));
        let placed = if *b == 3 {
            "offsets unknown, leader none (offline), replicas [3], isr [3]".to_owned()
        } else {
            format!(", leader {b}, replicas [{b}], isr [{b}]")
        };
        assert!(line.contains(&placed), "{line}\n{out}");
    }
    let live = before.iter().position(|l| *l != 3).unwrap().to_string();
    kcat(&["-b", &cluster.addr(1), "-P", "-t", "spread", "-p", &live], "while-3-is-down\n");

    // Back: it leads its partitions again, with their records.
    cluster.nodes[2] = Some(cluster.start_node(3));
    let back = cluster.metadata_until(1, "spread", |m| !m.contains("leader -1") && m.contains("3 brokers"));
    assert_eq!(leaders(&back), before, "{back}");
    python_clients("cluster.py", &["count", &cluster.addr(3), "spread", "3001"]);

    // kafka-metadata-quorum through a broker: the active controller, three voters caught up.
    let controller = cluster.active_controller();
    let quorum = "org.apache.kafka.tools.MetadataQuorumCommand";
    let status = kafka_tool(quorum, &["--bootstrap-server", &cluster.addr(1), "describe", "--status"], "");
    assert!(status.contains(&format!("LeaderId:               {controller}")), "{status}");
    assert!(status.contains("HighWatermark:") && status.contains("CurrentVoters:"), "{status}");
    let replication = kafka_tool(quorum, &["--bootstrap-server", &cluster.addr(2), "describe", "--replication"], "");
    let voters = replication.lines().filter(|l| l.contains("Leader") || l.contains("Follower")).count();
    assert_eq!(voters, 3, "{replication}");

    // The active controller killed: the quorum elects another, which serves a new topic.
    cluster.kill(controller);
    let other = if controller == 1 { 2 } else { 1 };
    python_clients("cluster.py", &["create", &cluster.addr(other), "after-failover"]);
    // Once the dead node's session expires, it is no longer listed.
    let gone = format!("broker {controller} at");
    cluster.metadata_until(other, "after-failover", |m| m.contains("3 partitions") && !m.contains(&gone));
    cluster.nodes[controller - 1] = Some(cluster.start_node(controller));
    cluster.metadata_until(controller, "after-failover", |m| m.contains("3 partitions") && m.contains("3 brokers"));
    cluster.stop();
}
