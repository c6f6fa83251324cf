//! `TimestampRouter`: renames the topic from the original topic and the record's timestamp,
//! for sinks that name tables or indexes by topic (`topic.format=${topic}-${timestamp}`,
//! `timestamp.format=yyyyMMdd`, a Java `SimpleDateFormat` in UTC). A record without a timestamp
//! is an error.

use super::date_format::JavaDateFormat;
use super::operand::{parse, raw_string};
use super::{TransformPlugin, Transformation};
use crate::config::{Config, ConfigDef, ConfigKey, ConfigType, Importance};
use crate::error::{ConnectError, Result};
use crate::record::ConnectRecord;

/// `TimestampRouter`.
pub(crate) const TIMESTAMP_ROUTER: TransformPlugin = TransformPlugin {
    class: "org.apache.kafka.connect.transforms.TimestampRouter",
    aliases: &["TimestampRouter"],
    config_def,
    make,
};

const TOPIC_FORMAT: &str = "topic.format";
const TIMESTAMP_FORMAT: &str = "timestamp.format";

fn config_def() -> ConfigDef {
    ConfigDef::new()
        .define(ConfigKey::optional(
            TOPIC_FORMAT,
            ConfigType::String,
            Some("${topic}-${timestamp}"),
            Importance::High,
            "Format string which can contain <code>${topic}</code> and <code>${timestamp}</code> as placeholders for \
             the topic and timestamp, respectively.",
        ))
        .define(ConfigKey::optional(
            TIMESTAMP_FORMAT,
            ConfigType::String,
            Some("yyyyMMdd"),
            Importance::High,
            "Format string for the timestamp that is compatible with <code>java.text.SimpleDateFormat</code>.",
        ))
}

fn make(config: &Config) -> Result<Box<dyn Transformation>> {
    let config = parse(&config_def(), config)?;
    let pattern = raw_string(&config, TIMESTAMP_FORMAT).unwrap_or_default();
    let timestamp_format =
        JavaDateFormat::new(&pattern).map_err(|e| ConnectError::config(TIMESTAMP_FORMAT, &pattern, e))?;
    Ok(Box::new(TimestampRouter {
        topic_format: raw_string(&config, TOPIC_FORMAT).unwrap_or_default(),
        timestamp_format,
    }))
}

#[derive(Debug)]
struct TimestampRouter {
    topic_format: String,
    timestamp_format: JavaDateFormat,
}

impl Transformation for TimestampRouter {
    fn apply(&self, mut record: ConnectRecord) -> Result<Option<ConnectRecord>> {
        let Some(timestamp) = record.timestamp else {
            let partition = record.kafka_partition.map_or("none".to_string(), |p| p.to_string());
            return Err(ConnectError::data(format!(
                "Timestamp missing on record: topic {:?}, partition {partition}",
                record.topic
            )));
        };
        let formatted = self.timestamp_format.format(timestamp);
        // `${topic}` first, then `${timestamp}` in the result, as Kafka replaces them.
        let topic = self.topic_format.replace("${topic}", &record.topic).replace("${timestamp}", &formatted);
        record.topic = topic;
        Ok(Some(record))
    }
}
