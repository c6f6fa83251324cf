//! The word count of `word_count_app.rs` against a broker, reached over the Kafka protocol with
//! librdkafka as any remote cluster is: by default a Freshet broker this program starts on
//! loopback over a log in a temporary directory; with an address (`cargo run --example
//! word_count_broker -- host:port`), any Kafka-protocol cluster, Apache Kafka included.

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::Arc;

use freshet::broker::{Broker, BrokerConfig};
use freshet::prelude::*;

#[path = "word_count_app.rs"]
#[allow(unreachable_pub, dead_code)]
mod word_count_app;

/// The word count on the cluster at `bootstrap`, its state in `state_dir`.
pub fn count_on(
    runtime: &tokio::runtime::Runtime,
    bootstrap: &str,
    state_dir: &std::path::Path,
) -> anyhow::Result<BTreeMap<String, i64>> {
    word_count_app::count_words(runtime, Arc::new(Remote::new(bootstrap)), state_dir)
}

/// The word count through a Freshet broker over a log in `dir`, started on a free loopback port.
pub fn demo(dir: &std::path::Path) -> anyhow::Result<BTreeMap<String, i64>> {
    let runtime = tokio::runtime::Runtime::new()?;
    let log = runtime.block_on(Embedded::open(dir.join("log"), LogConfig::default()))?;
    let config = BrokerConfig { listen: "127.0.0.1:0".parse()?, ..BrokerConfig::default() };
    let broker = runtime.block_on(Broker::start(log.log().clone(), log.group_offsets().clone(), config))?;
    let counts = count_on(&runtime, &broker.local_addr().to_string(), &dir.join("state"));
    runtime.block_on(broker.stop());
    runtime.block_on(log.close())?;
    counts
}

#[allow(dead_code)]
fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let counts = match std::env::args().nth(1) {
        Some(bootstrap) => count_on(&tokio::runtime::Runtime::new()?, &bootstrap, &dir.path().join("state"))?,
        None => demo(dir.path())?,
    };
    for (word, count) in counts {
        println!("{word}: {count}");
    }
    Ok(())
}
