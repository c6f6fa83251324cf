//! The predicates that guard transforms: `TopicNameMatches` (`pattern`, matched against the whole
//! topic), `HasHeaderKey` (`name`: at least one header with that key) and `RecordIsTombstone`
//! (a null value).

use regex::Regex;

use super::operand::{parse, raw_string};
use super::regex_router::compile;
use super::{Predicate, PredicatePlugin};
use crate::config::{Config, ConfigDef, ConfigKey, ConfigType, Importance, Validator};
use crate::error::{ConnectError, Result};
use crate::record::ConnectRecord;

/// `TopicNameMatches`.
pub(crate) const TOPIC_NAME_MATCHES: PredicatePlugin = PredicatePlugin {
    class: "org.apache.kafka.connect.transforms.predicates.TopicNameMatches",
    aliases: &["TopicNameMatches"],
    config_def: topic_name_matches_def,
    make: make_topic_name_matches,
};

/// `HasHeaderKey`.
pub(crate) const HAS_HEADER_KEY: PredicatePlugin = PredicatePlugin {
    class: "org.apache.kafka.connect.transforms.predicates.HasHeaderKey",
    aliases: &["HasHeaderKey"],
    config_def: has_header_key_def,
    make: make_has_header_key,
};

/// `RecordIsTombstone`.
pub(crate) const RECORD_IS_TOMBSTONE: PredicatePlugin = PredicatePlugin {
    class: "org.apache.kafka.connect.transforms.predicates.RecordIsTombstone",
    aliases: &["RecordIsTombstone"],
    config_def: ConfigDef::new,
    make: make_record_is_tombstone,
};

const PATTERN: &str = "pattern";
const NAME: &str = "name";

fn topic_name_matches_def() -> ConfigDef {
    ConfigDef::new().define(
        ConfigKey::required(
            PATTERN,
            ConfigType::String,
            Importance::Medium,
            "A Java regular expression for matching against the name of a record's topic.",
        )
        .validated(Validator::NonEmpty),
    )
}

fn make_topic_name_matches(config: &Config) -> Result<Box<dyn Predicate>> {
    let config = parse(&topic_name_matches_def(), config)?;
    let pattern = raw_string(&config, PATTERN).unwrap_or_default();
    let (whole, _) = compile(&pattern).map_err(|e| {
        ConnectError::config(PATTERN, &pattern, format!("entry must be a Java-compatible regular expression: {e}"))
    })?;
    Ok(Box::new(TopicNameMatches { pattern: whole }))
}

#[derive(Debug)]
struct TopicNameMatches {
    /// The pattern anchored at both ends (Java's `Matcher.matches`).
    pattern: Regex,
}

impl Predicate for TopicNameMatches {
    fn test(&self, record: &ConnectRecord) -> bool {
        self.pattern.is_match(&record.topic)
    }
}

fn has_header_key_def() -> ConfigDef {
    ConfigDef::new().define(
        ConfigKey::required(NAME, ConfigType::String, Importance::Medium, "The header name.")
            .validated(Validator::NonEmpty),
    )
}

fn make_has_header_key(config: &Config) -> Result<Box<dyn Predicate>> {
    let config = parse(&has_header_key_def(), config)?;
    Ok(Box::new(HasHeaderKey { name: raw_string(&config, NAME).unwrap_or_default() }))
}

#[derive(Debug)]
struct HasHeaderKey {
    name: String,
}

impl Predicate for HasHeaderKey {
    fn test(&self, record: &ConnectRecord) -> bool {
        record.headers.iter().any(|h| h.key == self.name)
    }
}

fn make_record_is_tombstone(_: &Config) -> Result<Box<dyn Predicate>> {
    Ok(Box::new(RecordIsTombstone))
}

#[derive(Debug)]
struct RecordIsTombstone;

impl Predicate for RecordIsTombstone {
    fn test(&self, record: &ConnectRecord) -> bool {
        record.value.is_null()
    }
}
