//! The streams examples in `examples/`, run as tests: their output is held as snapshots.

#[path = "../../examples/word_count.rs"]
#[allow(unreachable_pub)]
mod word_count;

#[path = "../../examples/page_views.rs"]
#[allow(unreachable_pub)]
mod page_views;

#[path = "../../examples/enrichment.rs"]
#[allow(unreachable_pub)]
mod enrichment;

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
