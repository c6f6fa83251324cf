//! `Filter`: drops every record. Used with a predicate (`transforms.drop.predicate=tombstones`),
//! it drops the records that match (or, with `negate=true`, those that do not).

use super::{TransformPlugin, Transformation};
use crate::config::{Config, ConfigDef};
use crate::error::Result;
use crate::record::ConnectRecord;

/// `Filter`.
pub(crate) const FILTER: TransformPlugin = TransformPlugin {
    class: "org.apache.kafka.connect.transforms.Filter",
    aliases: &["Filter"],
    config_def: ConfigDef::new,
    make,
};

fn make(_: &Config) -> Result<Box<dyn Transformation>> {
    Ok(Box::new(Filter))
}

#[derive(Debug)]
struct Filter;

impl Transformation for Filter {
    fn apply(&self, _: ConnectRecord) -> Result<Option<ConnectRecord>> {
        Ok(None)
    }
}
