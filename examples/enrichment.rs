//! Stream-table enrichment: orders joined with the current customer record, customers read as a
//! table (the latest record per customer id wins; a null deletes). Orders of unknown customers
//! are kept with a placeholder (a left join). Run with `cargo run --example enrichment`.

#![allow(clippy::print_stdout)]

use freshet::prelude::*;
use serde::{Deserialize, Serialize};

/// A customer, as JSON on `customers` (keyed by customer id).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Customer {
    /// Name.
    pub name: String,
    /// Loyalty tier.
    pub tier: String,
}

/// `orders` (customer id => amount in cents) joined with `customers` into `enriched-orders`.
pub fn topology() -> freshet::dsl::Result<Topology> {
    let builder = StreamsBuilder::new();
    let customers = builder.table(
        "customers",
        Consumed::with(Serdes::string(), Serdes::json::<Customer>()),
        Materialized::named("customers-store"),
    );
    builder
        .stream("orders", Consumed::with(Serdes::string(), Serdes::i64()))
        .left_join_table(
            &customers,
            |cents: &i64, customer: Option<&Customer>| match customer {
                Some(c) => format!("{} ({}) spent {}.{:02}", c.name, c.tier, cents / 100, cents % 100),
                None => format!("unknown customer spent {}.{:02}", cents / 100, cents % 100),
            },
            Serdes::i64(),
        )
        .to("enriched-orders", Produced::with(Serdes::string(), Serdes::string()));
    builder.build()
}

/// What the topology makes of a few orders and customer updates, as text.
pub fn demo() -> anyhow::Result<String> {
    let mut driver = TopologyTestDriver::new(topology()?)?;
    let customers = TestInputTopic::new("customers", Serdes::string(), Serdes::json::<Customer>().nullable());
    let orders = TestInputTopic::new("orders", Serdes::string(), Serdes::i64());
    let customer = |name: &str, tier: &str| Some(Customer { name: name.into(), tier: tier.into() });
    driver.pipe(&customers, "c1".into(), customer("Ada", "gold"), 1)?;
    driver.pipe(&orders, "c1".into(), 1_250, 2)?;
    driver.pipe(&orders, "c2".into(), 999, 3)?; // no such customer yet
    driver.pipe(&customers, "c2".into(), customer("Brook", "silver"), 4)?;
    driver.pipe(&orders, "c2".into(), 500, 5)?;
    driver.pipe(&customers, "c1".into(), customer("Ada", "platinum"), 6)?; // an update: later orders see it
    driver.pipe(&orders, "c1".into(), 42_00, 7)?;
    driver.pipe(&customers, "c2".into(), None, 8)?; // deleted
    driver.pipe(&orders, "c2".into(), 100, 9)?;
    let out = TestOutputTopic::new("enriched-orders", Serdes::string(), Serdes::string());
    Ok(driver.render_output(&out)?)
}

#[allow(dead_code)]
fn main() -> anyhow::Result<()> {
    print!("{}", demo()?);
    Ok(())
}
