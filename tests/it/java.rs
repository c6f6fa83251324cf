//! Kafka's own Java client (4.4, from Maven Central) against the Freshet broker: the programs of
//! `tests/java`, each run against the Freshet broker and, to prove the scenario itself right,
//! against Apache Kafka's broker started from the same jars; Kafka Streams applications whose output
//! must equal theirs on Kafka; Kafka Connect with its FileStream connectors.

use std::io::Write;

use crate::peer::{java, Kind, Peer};

/// The Java programs, each a whole scenario that prints "ok" when everything in it held.
const SCENARIOS: &[&str] = &["ProducerCodecs", "Transactions", "CooperativeGroup", "AdminClient"];

fn against(kind: Kind, program: &str) {
    let dir = tempfile::tempdir().unwrap();
    let peer = Peer::start(kind, dir.path());
    java(program, &[peer.addr()]);
    peer.stop();
}

#[test]
fn the_java_producer_sends_every_codec_with_keys_null_values_headers_and_timestamps_intact() {
    against(Kind::Freshet, "ProducerCodecs");
}

#[test]
fn java_transactions_commit_offsets_abort_and_fence_with_read_committed_readers() {
    against(Kind::Freshet, "Transactions");
}

#[test]
fn a_java_consumer_group_with_the_cooperative_sticky_assignor_rebalances_incrementally_and_resumes() {
    against(Kind::Freshet, "CooperativeGroup");
}

#[test]
fn the_java_admin_client_manages_topics_configs_offsets_records_and_groups() {
    against(Kind::Freshet, "AdminClient");
}

/// The judge: every scenario passes against Apache Kafka itself, one broker for all of them.
#[test]
fn every_java_scenario_holds_against_apache_kafka_itself() {
    let dir = tempfile::tempdir().unwrap();
    let kafka = Peer::start(Kind::Kafka, dir.path());
    for program in SCENARIOS {
        java(program, &[kafka.addr()]);
    }
    kafka.stop();
}

/// Kafka's command-line tools, run from the jars as their scripts would run them.
#[test]
fn kafkas_command_line_tools_manage_and_move_data_through_the_freshet_broker() {
    use crate::peer::kafka_tool;
    let dir = tempfile::tempdir().unwrap();
    let broker = Peer::start(Kind::Freshet, dir.path());
    let b = broker.addr().to_string();
    let tool = |class: &str, args: &[&str], stdin: &str| {
        let mut all = vec!["--bootstrap-server", b.as_str()];
        all.extend_from_slice(args);
        kafka_tool(class, &all, stdin)
    };
    let topics = "org.apache.kafka.tools.TopicCommand";
    let out =
        tool(topics, &["--create", "--topic", "tools", "--partitions", "3", "--config", "retention.ms=100000"], "");
    assert!(out.contains("Created topic tools."), "{out}");
    let out = tool(topics, &["--describe", "--topic", "tools"], "");
    assert!(out.contains("PartitionCount: 3") && out.contains("retention.ms=100000"), "{out}");
    assert!(out.lines().filter(|l| l.contains("Partition: ") && l.contains("Leader: 0")).count() == 3, "{out}");
    let out = tool(topics, &["--list"], "");
    assert!(out.lines().any(|l| l == "tools"), "{out}");

    let producer_args =
        ["--topic", "tools", "--reader-property", "parse.key=true", "--reader-property", "key.separator=:"];
    tool("org.apache.kafka.tools.ConsoleProducer", &producer_args, "a:1\nb:2\nc:3\nd:4\n");
    let consume = || {
        let out = tool(
            "org.apache.kafka.tools.consumer.ConsoleConsumer",
            &[
                "--topic",
                "tools",
                "--group",
                "tg",
                "--from-beginning",
                "--max-messages",
                "4",
                "--formatter-property",
                "print.key=true",
            ],
            "",
        );
        let mut lines: Vec<String> = out.lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    assert_eq!(consume(), ["a\t1", "b\t2", "c\t3", "d\t4"]);

    let groups = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand";
    let out = tool(groups, &["--describe", "--group", "tg"], "");
    let lag: Vec<&str> = out.lines().filter(|l| l.starts_with("tg ")).collect();
    assert_eq!(lag.len(), 3, "{out}");
    assert!(lag.iter().all(|l| l.split_whitespace().nth(5) == Some("0")), "no lag: {out}");
    let out = tool(groups, &["--reset-offsets", "--to-earliest", "--group", "tg", "--topic", "tools", "--execute"], "");
    assert_eq!(out.lines().filter(|l| l.starts_with("tg ")).count(), 3, "{out}");
    assert_eq!(consume(), ["a\t1", "b\t2", "c\t3", "d\t4"], "read again from the reset offsets");

    let configs = "org.apache.kafka.tools.ConfigCommand";
    let entity = ["--entity-type", "topics", "--entity-name", "tools"];
    let alter =
        [&entity[..], &["--alter", "--add-config", "retention.ms=5000,cleanup.policy=[compact,delete]"]].concat();
    assert!(tool(configs, &alter, "").contains("Completed updating config"));
    let out = tool(configs, &[&entity[..], &["--describe"]].concat(), "");
    assert!(out.contains("cleanup.policy=compact,delete") && out.contains("retention.ms=5000"), "{out}");
    let alter = [&entity[..], &["--alter", "--delete-config", "retention.ms"]].concat();
    tool(configs, &alter, "");
    assert!(!tool(configs, &[&entity[..], &["--describe"]].concat(), "").contains("retention.ms=5000"));

    let out = tool("org.apache.kafka.tools.GetOffsetShell", &["--topic", "tools", "--time", "-1"], "");
    let total: i64 = out.lines().map(|l| l.rsplit(':').next().unwrap().parse::<i64>().unwrap()).sum();
    assert_eq!(total, 4, "{out}");

    let out = kafka_tool(
        "org.apache.kafka.tools.ProducerPerformance",
        &[
            "--topic",
            "perf",
            "--num-records",
            "20000",
            "--record-size",
            "100",
            "--throughput",
            "-1",
            "--producer-props",
            &format!("bootstrap.servers={b}"),
            "acks=all",
        ],
        "",
    );
    assert!(out.contains("20000 records sent"), "{out}");
    let out = tool("org.apache.kafka.tools.ConsumerPerformance", &["--topic", "perf", "--messages", "20000"], "");
    let row = out.lines().last().unwrap_or_default();
    assert_eq!(row.split(", ").nth(4), Some("20000"), "{out}");
    broker.stop();
}

/// Two Kafka Streams applications under exactly_once_v2 (a word count; clicks joined with a
/// table of users, counted per region in windows) give the same output on the Freshet broker as
/// on Apache Kafka's.
#[test]
fn kafka_streams_applications_give_the_same_output_on_freshet_as_on_apache_kafka() {
    let mut outputs = Vec::new();
    for kind in [Kind::Freshet, Kind::Kafka] {
        let dir = tempfile::tempdir().unwrap();
        let peer = Peer::start(kind, dir.path());
        let state = dir.path().join("streams-state");
        let out = java("StreamsApps", &[peer.addr(), state.to_str().unwrap()]);
        peer.stop();
        outputs.push(out);
    }
    assert!(outputs[0].lines().count() > 10, "{}", outputs[0]);
    assert_eq!(outputs[0], outputs[1], "Freshet's output, then Kafka's");
}

/// Kafka Connect standalone, run from its jars, with the FileStream source and sink: a file's
/// lines go through a topic on the Freshet broker into another file, in order; stopped and
/// restarted, it resumes from its offsets (the source's in its offset file, the sink's committed
/// to the broker), so lines added meanwhile arrive once.
#[test]
fn kafka_connect_moves_a_files_lines_through_the_freshet_broker_and_resumes_from_its_offsets() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let broker = Peer::start(Kind::Freshet, dir.path());
    let path = |name: &str| dir.path().join(name).display().to_string();
    let lines = |from: u32, to: u32| (from..=to).map(|i| format!("line-{i}\n")).collect::<String>();
    std::fs::write(path("in.txt"), lines(1, 100)).unwrap();
    let rest = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(
        path("worker.properties"),
        format!(
            "bootstrap.servers={}\n\
             key.converter=org.apache.kafka.connect.storage.StringConverter\n\
             value.converter=org.apache.kafka.connect.storage.StringConverter\n\
             offset.storage.file.filename={}\n\
             offset.flush.interval.ms=500\n\
             listeners=http://127.0.0.1:{rest}\n\
             plugin.discovery=only_scan\n",
            broker.addr(),
            path("offsets")
        ),
    )
    .unwrap();
    std::fs::write(
        path("source.properties"),
        format!(
            "name=file-source\nconnector.class=FileStreamSource\ntasks.max=1\nfile={}\ntopic=connect-lines\n",
            path("in.txt")
        ),
    )
    .unwrap();
    std::fs::write(
        path("sink.properties"),
        format!(
            "name=file-sink\nconnector.class=FileStreamSink\ntasks.max=1\nfile={}\ntopics=connect-lines\n",
            path("out.txt")
        ),
    )
    .unwrap();
    let start = || {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(path("connect.log")).unwrap();
        Command::new("java")
            .arg(crate::peer::log4j_config())
            .args(["-cp", &crate::peer::connect_classpath(), "org.apache.kafka.connect.cli.ConnectStandalone"])
            .args([path("worker.properties"), path("source.properties"), path("sink.properties")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    };
    let wait_for_lines = |n: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        loop {
            let out = std::fs::read_to_string(path("out.txt")).unwrap_or_default();
            if out.lines().count() >= n || std::time::Instant::now() > deadline {
                // A moment more: nothing further may arrive.
                std::thread::sleep(std::time::Duration::from_millis(1500));
                return std::fs::read_to_string(path("out.txt")).unwrap_or_default();
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    let stop = |mut child: std::process::Child| {
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        let status = child.wait().unwrap();
        assert!(status.success() || status.code() == Some(143), "Connect stops cleanly: {status}");
    };
    let connect = start();
    let out = wait_for_lines(100);
    let log = || std::fs::read_to_string(path("connect.log")).unwrap_or_default();
    assert_eq!(out, lines(1, 100), "Connect's log:\n{}", log());
    stop(connect);

    std::fs::OpenOptions::new()
        .append(true)
        .open(path("in.txt"))
        .unwrap()
        .write_all(lines(101, 150).as_bytes())
        .unwrap();
    let connect = start();
    let out = wait_for_lines(150);
    assert_eq!(out, lines(1, 150), "resumed from its offsets, every line once; Connect's log:\n{}", log());
    stop(connect);
    broker.stop();
}

/// Kafka's ACL tool (`kafka-acls.sh`'s class, through the Java admin client) against a broker
/// with the authorizer on and resources open where no ACL names them (Kafka's
/// `allow.everyone.if.no.acl.found=true`): a DENY is enforced for producers and consumers (kcat)
/// and listed, kept across a restart, and lifted when removed.
#[test]
fn acls_set_with_kafkas_tool_are_enforced_listed_kept_across_a_restart_and_removed() {
    use crate::peer::{kafka_tool, run_with_stdin, BrokerProcess};
    use std::process::Command;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broker.properties");
    std::fs::write(
        &config,
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n\
         allow.everyone.if.no.acl.found=true\nsuper.users=User:admin\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let start = || BrokerProcess::start_with(&data, &["--config", config.to_str().unwrap()]);
    // kcat's output and whether it succeeded.
    let kcat = |args: &[&str], stdin: &str| {
        // Bounded: a consumer refused its topic must not wait for it forever.
        let out = run_with_stdin(
            Command::new("timeout").arg("60").arg("kcat").args(args),
            stdin,
            "kcat is installed (./dev test installs it)",
        );
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    };
    let acls = |addr: &str, args: &[&str]| {
        let mut all = vec!["--bootstrap-server", addr];
        all.extend_from_slice(args);
        kafka_tool("org.apache.kafka.tools.AclCommand", &all, "")
    };

    let broker = start();
    let addr = broker.addr.clone();
    for topic in ["open", "guarded", "secret-plans"] {
        let (ok, out) = kcat(&["-b", &addr, "-P", "-t", topic], "before\n");
        assert!(ok, "{topic}: {out}");
    }
    acls(&addr, &["--add", "--deny-principal", "User:*", "--operation", "Write", "--topic", "guarded"]);
    acls(
        &addr,
        &[
            "--add",
            "--deny-principal",
            "User:*",
            "--operation",
            "All",
            "--topic",
            "secret-",
            "--resource-pattern-type",
            "prefixed",
        ],
    );
    let listed = acls(&addr, &["--list"]);
    assert!(
        listed.contains("name=guarded, patternType=LITERAL")
            && listed.contains("name=secret-, patternType=PREFIXED")
            && listed.contains("operation=WRITE, permissionType=DENY"),
        "{listed}"
    );

    let (ok, out) = kcat(&["-b", &addr, "-P", "-t", "guarded"], "refused\n");
    assert!(!ok && out.contains("Topic authorization failed"), "{out}");
    // As in Kafka, a resource some ACL names is no longer open to every one: with no ALLOW for
    // it, reading it is refused too. The prefixed DENY names every `secret-` topic.
    let (ok, out) = kcat(&["-b", &addr, "-C", "-t", "guarded", "-e"], "");
    assert!(!ok && out.contains("Topic authorization failed"), "{out}");
    let (ok, out) = kcat(&["-b", &addr, "-C", "-t", "secret-plans", "-e"], "");
    assert!(!ok && out.contains("Topic authorization failed"), "{out}");
    let (ok, out) = kcat(&["-b", &addr, "-C", "-t", "open", "-e", "-f", "%s\n"], "");
    assert!(ok && out.contains("before"), "{out}");
    // An ALLOW of READ (which implies DESCRIBE) lets it be read again.
    acls(&addr, &["--add", "--allow-principal", "User:ANONYMOUS", "--operation", "Read", "--topic", "guarded"]);
    let (ok, out) = kcat(&["-b", &addr, "-C", "-t", "guarded", "-e", "-f", "%s\n"], "");
    assert!(ok && out.contains("before"), "{out}");
    broker.stop();

    let broker = start();
    let addr = broker.addr.clone();
    let listed = acls(&addr, &["--list", "--topic", "guarded"]);
    assert!(listed.contains("operation=WRITE, permissionType=DENY"), "kept across the restart: {listed}");
    let (ok, out) = kcat(&["-b", &addr, "-P", "-t", "guarded"], "refused\n");
    assert!(!ok && out.contains("Topic authorization failed"), "{out}");
    // Every ACL of the topic removed: open to every one again.
    acls(&addr, &["--remove", "--force", "--topic", "guarded"]);
    let (ok, out) = kcat(&["-b", &addr, "-P", "-t", "guarded"], "after\n");
    assert!(ok, "{out}");
    let (ok, out) = kcat(&["-b", &addr, "-C", "-t", "guarded", "-e", "-f", "%s\n"], "");
    assert!(ok && out.contains("before\nafter"), "{out}");
    broker.stop();
}

/// Every config of an entity (`brokers` or `topics`), as `kafka-configs.sh --describe --all`
/// prints them.
pub(crate) fn describe_configs(addr: &str, entity_type: &str, name: &str) -> String {
    let args = ["--bootstrap-server", addr, "--describe", "--entity-type", entity_type, "--entity-name", name, "--all"];
    crate::peer::kafka_tool("org.apache.kafka.tools.ConfigCommand", &args, "")
}

/// Kafka's config tool (`kafka-configs.sh`'s class) describes the broker's settings, and topic
/// configs whose defaults its config file sets under Kafka's broker names (`log.retention.hours`,
/// `log.segment.bytes`), with where each value comes from; and changes those defaults while the
/// broker runs (dynamic broker configs).
#[test]
fn kafkas_config_tool_describes_the_broker_and_changes_the_defaults_of_topic_configs_while_it_runs() {
    use crate::peer::{kafka_tool, run_with_stdin, BrokerProcess};
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broker.properties");
    std::fs::write(&config, "num.partitions=2\nlog.retention.hours=48\nlog.segment.bytes=2097152\n").unwrap();
    let broker = BrokerProcess::start_with(&dir.path().join("data"), &["--config", config.to_str().unwrap()]);
    let out =
        run_with_stdin(std::process::Command::new("kcat").args(["-b", &broker.addr, "-P", "-t", "t"]), "x\n", "kcat");
    assert!(out.status.success(), "{out:?}");
    let describe = |entity_type: &str, name: &str| describe_configs(&broker.addr, entity_type, name);
    let brokers = describe("brokers", "0");
    for line in [
        "num.partitions=2",
        "log.retention.ms=172800000",
        "log.segment.bytes=2097152",
        "auto.create.topics.enable=true",
    ] {
        assert!(brokers.contains(line), "{line} in:\n{brokers}");
    }
    assert!(
        brokers.contains("num.partitions=2 sensitive=false synonyms={STATIC_BROKER_CONFIG:num.partitions=2}"),
        "{brokers}"
    );
    let topic = describe("topics", "t");
    assert!(topic.contains("retention.ms=172800000 sensitive=false synonyms={STATIC_BROKER_CONFIG"), "{topic}");
    assert!(topic.contains("segment.bytes=2097152"), "{topic}");
    assert!(topic.contains("cleanup.policy=delete sensitive=false synonyms={DEFAULT_CONFIG"), "{topic}");

    // Dynamic broker configs: the cluster's default, then this broker's own over it; every
    // topic without its own value follows; kept across a restart; deleted, the file's again.
    let alter = |target: &[&str], change: &[&str]| {
        let mut args = vec!["--bootstrap-server", broker.addr.as_str(), "--alter", "--entity-type", "brokers"];
        args.extend_from_slice(target);
        args.extend_from_slice(change);
        crate::peer::kafka_tool_output("org.apache.kafka.tools.ConfigCommand", &args, "")
    };
    let out = alter(&["--entity-default"], &["--add-config", "log.retention.ms=3600000"]);
    assert!(out.status.success(), "{out:?}");
    let topic = describe("topics", "t");
    assert!(topic.contains("retention.ms=3600000 sensitive=false synonyms={DYNAMIC_DEFAULT_BROKER_CONFIG"), "{topic}");
    let out = alter(
        &["--entity-name", "0"],
        &["--add-config", "log.retention.ms=7200000,log.cleanup.policy=[delete,compact]"],
    );
    assert!(out.status.success(), "{out:?}");
    let topic = describe("topics", "t");
    assert!(topic.contains("retention.ms=7200000 sensitive=false synonyms={DYNAMIC_BROKER_CONFIG"), "{topic}");
    assert!(topic.contains("cleanup.policy=delete,compact"), "{topic}");
    // A setting that comes from the config file only, and one Freshet does not have.
    let out = alter(&["--entity-name", "0"], &["--add-config", "num.partitions=5"]);
    let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && text.contains("cannot update these configs dynamically: num.partitions"),
        "{text}"
    );
    let out = alter(&["--entity-name", "0"], &["--add-config", "log.segment.bytes=12"]);
    let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && text.contains("segment.bytes"), "a value too small for the topic config: {text}");
    broker.stop();

    let broker = BrokerProcess::start_with(&dir.path().join("data"), &["--config", config.to_str().unwrap()]);
    let describe = |entity_type: &str, name: &str| describe_configs(&broker.addr, entity_type, name);
    let topic = describe("topics", "t");
    assert!(topic.contains("retention.ms=7200000 sensitive=false synonyms={DYNAMIC_BROKER_CONFIG"), "kept: {topic}");
    let brokers = describe("brokers", "0");
    assert!(brokers.contains("log.retention.ms=7200000 sensitive=false synonyms={DYNAMIC_BROKER_CONFIG"), "{brokers}");
    let alter = |target: &[&str], change: &[&str]| {
        let mut args = vec!["--bootstrap-server", broker.addr.as_str(), "--alter", "--entity-type", "brokers"];
        args.extend_from_slice(target);
        args.extend_from_slice(change);
        kafka_tool("org.apache.kafka.tools.ConfigCommand", &args, "")
    };
    alter(&["--entity-name", "0"], &["--delete-config", "log.retention.ms,log.cleanup.policy"]);
    alter(&["--entity-default"], &["--delete-config", "log.retention.ms"]);
    let topic = describe("topics", "t");
    assert!(topic.contains("retention.ms=172800000 sensitive=false synonyms={STATIC_BROKER_CONFIG"), "{topic}");
    assert!(topic.contains("cleanup.policy=delete sensitive=false"), "{topic}");
    broker.stop();
}
