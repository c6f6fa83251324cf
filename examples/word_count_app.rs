//! Word count run by a `StreamsApp` on the embedded log: lines produced to a topic, the topology
//! of `word_count.rs` run by two stream threads with RocksDB stores and changelogs, the counts
//! read back as any consumer reads them. Run with `cargo run --example word_count_app`; the
//! data lives in a temporary directory.

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use freshet::prelude::*;

#[path = "word_count.rs"]
#[allow(unreachable_pub, dead_code)]
mod word_count;

/// The lines the examples count.
pub const LINES: [&str; 3] = ["all streams lead to kafka", "hello kafka streams", "join kafka summit"];

/// Produces [`LINES`] to `text-lines` (created with 3 partitions), runs the word count on
/// `substrate` until every word's count has arrived in `word-counts`, and returns the counts.
pub fn count_words(
    runtime: &tokio::runtime::Runtime,
    substrate: Arc<dyn Substrate>,
    state_dir: &std::path::Path,
) -> anyhow::Result<BTreeMap<String, i64>> {
    let admin = substrate.admin()?;
    let producer = substrate.producer()?;
    runtime.block_on(admin.create_topic(NewTopic {
        name: "text-lines".into(),
        n_partitions: 3,
        ..Default::default()
    }))?;
    let lines = LINES.iter().map(|line| ProducerRecord::new("text-lines", None::<String>, *line)).collect();
    runtime.block_on(producer.send(lines))?;

    let mut config = StreamsConfig::new("word-count")?;
    config.state_dir = state_dir.to_path_buf();
    config.num_stream_threads = 2;
    config.commit_interval = Duration::from_millis(200);
    let mut app = StreamsApp::new(word_count::topology()?, substrate.clone(), config, runtime.handle().clone())?;
    app.start()?;
    app.wait_until_running(Duration::from_secs(60))?;

    // The last count of each word is its count; every word of LINES ends at its number of uses.
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for word in LINES.iter().flat_map(|line| line.split_whitespace()) {
        *expected.entry(word.to_string()).or_default() += 1;
    }
    let (output, _) = runtime.block_on(admin.describe_topic("word-counts"))?;
    let mut consumer = substrate.consumer(ConsumerConfig::default())?;
    runtime
        .block_on(consumer.assign((0..output.n_partitions).map(|p| TopicPartition::new("word-counts", p)).collect()))?;
    let mut counts = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while counts != expected && Instant::now() < deadline {
        for batches in runtime.block_on(consumer.poll(Duration::from_millis(200)))? {
            for record in batches.records()? {
                let word = String::from_utf8(record.key.unwrap_or_default().to_vec())?;
                let count = i64::from_be_bytes(record.value.as_deref().unwrap_or_default().try_into()?);
                counts.insert(word, count);
            }
        }
    }
    app.close()?;
    Ok(counts)
}

/// The word count on an embedded log in `dir`.
pub fn demo(dir: &std::path::Path) -> anyhow::Result<BTreeMap<String, i64>> {
    // Stream threads block (store I/O); they reach the log's futures through a multi-thread runtime.
    let runtime = tokio::runtime::Runtime::new()?;
    let log = runtime.block_on(Embedded::open(dir.join("log"), LogConfig::default()))?;
    let counts = count_words(&runtime, Arc::new(log.clone()), &dir.join("state"))?;
    runtime.block_on(log.close())?;
    Ok(counts)
}

#[allow(dead_code)]
fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for (word, count) in demo(dir.path())? {
        println!("{word}: {count}");
    }
    Ok(())
}
