//! The streams examples in `examples/`, run as tests: their output is held as snapshots.

// Each example is a program of its own, and some include others by path (the broker example runs
// the embedded one's word count); included here as well, they are compiled more than once.
#![allow(clippy::duplicate_mod)]

#[path = "../../examples/word_count.rs"]
#[allow(unreachable_pub)]
mod word_count;

#[path = "../../examples/page_views.rs"]
#[allow(unreachable_pub)]
mod page_views;

#[path = "../../examples/enrichment.rs"]
#[allow(unreachable_pub)]
mod enrichment;

#[path = "../../examples/word_count_app.rs"]
#[allow(unreachable_pub, dead_code)]
mod word_count_app;

#[cfg(feature = "remote")]
#[path = "../../examples/word_count_broker.rs"]
#[allow(unreachable_pub, dead_code)]
mod word_count_broker;

/// Each word of the examples' lines with its number of uses.
fn expected_counts() -> std::collections::BTreeMap<String, i64> {
    let mut counts = std::collections::BTreeMap::new();
    for word in word_count_app::LINES.iter().flat_map(|line| line.split_whitespace()) {
        *counts.entry(word.to_string()).or_default() += 1;
    }
    assert_eq!(counts["kafka"], 3, "the lines are what the examples count");
    counts
}

#[test]
fn word_count_app_example_counts_on_the_embedded_log() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(word_count_app::demo(dir.path()).unwrap(), expected_counts());
}

#[cfg(feature = "remote")]
#[test]
fn word_count_broker_example_counts_through_a_broker() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(word_count_broker::demo(dir.path()).unwrap(), expected_counts());
}

#[test]
fn word_count_example() {
    insta::assert_snapshot!("word_count_example", word_count::demo().unwrap());
}

#[test]
fn page_views_example() {
    insta::assert_snapshot!("page_views_example", page_views::demo().unwrap());
}

#[test]
fn enrichment_example() {
    insta::assert_snapshot!("enrichment_example", enrichment::demo().unwrap());
}
