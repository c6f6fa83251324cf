//! Word count, the classic: lines in, a running count per word out. Words are re-keyed, so the
//! topology repartitions them by word before counting (see `describe()`). Run with
//! `cargo run --example word_count`; it runs the topology in the test driver on a few lines.

#![allow(clippy::print_stdout)]

use freshet::prelude::*;

/// Lines of `text-lines` (key: anything) to `word-counts` (word => count).
pub fn topology() -> freshet::dsl::Result<Topology> {
    let builder = StreamsBuilder::new();
    builder
        .stream("text-lines", Consumed::with(Serdes::string().nullable(), Serdes::string()))
        .flat_map_values(|line: &String| line.split_whitespace().map(str::to_lowercase).collect::<Vec<_>>())
        .group_by(|_, word| word.clone(), Grouped::with(Serdes::string(), Serdes::string()))
        .count(Materialized::named("word-counts-store"))
        .to_stream()
        .to("word-counts", Produced::with(Serdes::string(), Serdes::i64().nullable()));
    builder.build()
}

/// The topology's description and what it makes of a few lines, as text.
pub fn demo() -> anyhow::Result<String> {
    let topology = topology()?;
    let mut text = topology.describe();
    let mut driver = TopologyTestDriver::new(topology)?;
    let lines = TestInputTopic::new("text-lines", Serdes::string().nullable(), Serdes::string());
    for (i, line) in ["all streams lead to kafka", "hello kafka streams", "join kafka summit"].iter().enumerate() {
        driver.pipe(&lines, None, line.to_string(), 1_000 * (i as i64 + 1))?;
    }
    let counts = TestOutputTopic::new("word-counts", Serdes::string(), Serdes::i64().nullable());
    text.push_str("\nword-counts:\n");
    text.push_str(&driver.render_output(&counts)?);
    Ok(text)
}

#[allow(dead_code)]
fn main() -> anyhow::Result<()> {
    print!("{}", demo()?);
    Ok(())
}
