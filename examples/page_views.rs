//! Windowed page-view counts with emit-final: views per page in one-minute tumbling windows,
//! accepting views up to ten seconds late, and each window's count written once, when the window
//! closes, instead of on every view. Run with `cargo run --example page_views`.

#![allow(clippy::print_stdout)]

use std::time::Duration;

use freshet::prelude::*;

/// `page-views` (user => page) to `page-view-counts` (`page@window-start` => views).
pub fn topology() -> freshet::dsl::Result<Topology> {
    let builder = StreamsBuilder::new();
    builder
        .stream("page-views", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by(|_user, page| page.clone(), Grouped::with(Serdes::string(), Serdes::string()).named("views-by-page"))
        .windowed_by(TimeWindows::of_size_and_grace(Duration::from_secs(60), Duration::from_secs(10)))
        .emit_strategy(EmitStrategy::OnWindowClose)
        .count(Materialized::named("page-view-counts-store"))
        .to_stream()
        .map(|w: &Windowed<String>, n| (format!("{}@{}", w.key, w.start), n.unwrap_or(0)))
        .to("page-view-counts", Produced::with(Serdes::string(), Serdes::i64()));
    builder.build()
}

/// What the topology makes of a few minutes of views, as text.
pub fn demo() -> anyhow::Result<String> {
    let mut driver = TopologyTestDriver::new(topology()?)?;
    let views = TestInputTopic::new("page-views", Serdes::string(), Serdes::string());
    let counts = TestOutputTopic::new("page-view-counts", Serdes::string(), Serdes::i64());
    let mut text = String::new();
    for (user, page, second) in [
        ("ann", "/home", 5),
        ("bob", "/home", 20),
        ("ann", "/cart", 50),
        ("cid", "/home", 65),  // the second minute starts; the first is open for 10 s more
        ("bob", "/cart", 58),  // late but within grace: counted in the first minute
        ("dee", "/home", 71),  // stream time 71 s: the first minute closes and is emitted
        ("eve", "/home", 30),  // too late: dropped
        ("ann", "/home", 140), // the second minute closes
    ] {
        driver.pipe(&views, user.to_string(), page.to_string(), second * 1_000)?;
        text.push_str(&format!("view {page} by {user} at {second}s\n"));
        for r in driver.read_output(&counts)? {
            text.push_str(&format!("  emitted {} => {} views\n", r.record.key, r.record.value));
        }
    }
    text.push_str(&format!("late views dropped: {}\n", driver.late_records()));
    Ok(text)
}

#[allow(dead_code)]
fn main() -> anyhow::Result<()> {
    print!("{}", demo()?);
    Ok(())
}
