//! The README's streams example, through the facade.

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
