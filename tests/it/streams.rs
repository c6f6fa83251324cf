//! The README's streams example, through the facade; an application against a broker process.

use freshet::prelude::*;

#[test]
fn the_readme_streams_example_runs() -> anyhow::Result<()> {
    let builder = StreamsBuilder::new();
    builder
        .stream("input", Consumed::<Option<String>, String>::with(Serdes::string(), Serdes::string()))
        .map_values(|v: &String| v.to_uppercase())
        .to("output", Produced::with(Serdes::string(), Serdes::string()));
    let topology = builder.build()?;
    assert!(topology.describe().contains("Source: KSTREAM-SOURCE-0000000000 (generated name) (topics: [input])"));

    let mut driver = TopologyTestDriver::new(topology)?;
    let input = TestInputTopic::<Option<String>, String>::new("input", StringSerde, StringSerde);
    driver.pipe(&input, Some("k".into()), "hello".into(), 1_000)?;
    let output = TestOutputTopic::<Option<String>, String>::new("output", StringSerde, StringSerde);
    insta::assert_snapshot!(driver.render_output(&output)?, @r#"0@0 t=1000 Some("k") => "HELLO""#);
    Ok(())
}

/// Word count: lines in, a count per word out, through a repartition topic and a RocksDB store.
fn word_count() -> anyhow::Result<Topology> {
    let builder = StreamsBuilder::new();
    builder
        .stream("lines", Consumed::<String, String>::with(Serdes::string(), Serdes::string()))
        .flat_map_values(|l: &String| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .group_by(|_, w| w.clone(), Grouped::with(Serdes::string(), Serdes::string()))
        .count(Materialized::named("counts"))
        .to_stream()
        .to("word-counts", Produced::with(Serdes::string(), Serdes::number()));
    Ok(builder.build()?)
}

/// Reads `topic` from the start until `n` records came, then a moment more.
fn read_counts(rt: &tokio::runtime::Runtime, remote: &Remote, n: usize) -> Vec<(String, i64)> {
    let mut consumer = remote.consumer(ConsumerConfig::default()).unwrap();
    let tps: Vec<TopicPartition> = (0..3).map(|p| TopicPartition::new("word-counts", p)).collect();
    rt.block_on(consumer.assign(tps)).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut quiet_since = std::time::Instant::now();
    while std::time::Instant::now() < deadline {
        let polled = rt.block_on(consumer.poll(std::time::Duration::from_millis(200))).unwrap();
        if !polled.is_empty() {
            quiet_since = std::time::Instant::now();
        }
        for b in polled {
            for r in b.records().unwrap() {
                let word = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
                out.push((word, i64::from_be_bytes(r.value.unwrap()[..].try_into().unwrap())));
            }
        }
        if out.len() >= n && quiet_since.elapsed() > std::time::Duration::from_millis(500) {
            break;
        }
    }
    out
}

#[test]
fn a_streams_application_runs_against_a_broker_process_and_resumes_after_a_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let broker = crate::broker::BrokerProcess::start(&dir.path().join("data"));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let remote = Remote::new(broker.addr.clone());
    let admin = remote.admin()?;
    rt.block_on(admin.create_topic(NewTopic { name: "lines".into(), n_partitions: 3, ..Default::default() }))?;
    let producer = remote.producer()?;
    let lines = |lines: &[(&str, &str)]| -> Vec<ProducerRecord> {
        lines.iter().map(|(k, v)| ProducerRecord::new("lines", Some(k.to_string()), v.to_string())).collect()
    };
    rt.block_on(producer.send(lines(&[("a", "red green"), ("b", "green blue"), ("c", "red red")])))?;

    let mut config = StreamsConfig::new("wc")?;
    config.state_dir = dir.path().join("state");
    config.commit_interval = std::time::Duration::from_millis(100);
    config.num_stream_threads = 2;
    let start = |config: StreamsConfig| -> anyhow::Result<StreamsApp> {
        let substrate = Substrate::remote(&remote, rt.handle().clone())?;
        let mut app = StreamsApp::new(word_count()?, substrate, config, rt.handle().clone())?;
        app.start()?;
        app.wait_until_running(std::time::Duration::from_secs(60))?;
        Ok(app)
    };
    let app = start(config.clone())?;
    let counts = read_counts(&rt, &remote, 6);
    let last: std::collections::BTreeMap<_, _> = counts.iter().cloned().collect();
    assert_eq!(last, [("blue".into(), 1), ("green".into(), 2), ("red".into(), 3)].into_iter().collect());
    // Its internal topics live on the broker.
    for topic in ["wc-counts-repartition", "wc-counts-changelog"] {
        assert_eq!(rt.block_on(admin.describe_topic(topic))?.0.n_partitions, 3, "{topic}");
    }
    app.close()?;

    // Restarted, it resumes from the offsets it committed to the broker: nothing counted twice.
    rt.block_on(producer.send(lines(&[("d", "blue red")])))?;
    let app = start(config)?;
    let counts = read_counts(&rt, &remote, 8);
    assert_eq!(counts.len(), 8, "only the new line's words are counted again: {counts:?}");
    let last: std::collections::BTreeMap<_, _> = counts.iter().cloned().collect();
    assert_eq!(last, [("blue".into(), 2), ("green".into(), 2), ("red".into(), 4)].into_iter().collect());
    app.close()?;
    broker.stop();
    Ok(())
}
