//! The worker's keys and the keys every connector takes, with Kafka Connect's names and defaults.

use crate::config::{split_list, ConfigDef, ConfigKey, ConfigType, ConfigValue, Importance, Props, Validator};
use crate::connector::ConnectorType;

/// The worker's keys (Kafka's `WorkerConfig`, `StandaloneConfig`, `DistributedConfig`).
pub fn worker_config_def() -> ConfigDef {
    use ConfigType::*;
    use Importance::*;
    ConfigDef::new()
        .define(ConfigKey::optional(
            "bootstrap.servers",
            List,
            None,
            High,
            "The cluster the worker runs on. Without it, the worker runs on the embedded log of its data directory.",
        ))
        .define(ConfigKey::optional("group.id", String, None, High, "The group of workers a distributed worker joins."))
        .define(ConfigKey::optional(
            "listeners",
            List,
            Some("http://:8083"),
            Low,
            "Where the REST API listens: a list of http://host:port (port 0 picks a free one).",
        ))
        .define(ConfigKey::optional(
            "rest.advertised.host.name",
            String,
            None,
            Low,
            "The host name other workers and clients reach this worker at.",
        ))
        .define(ConfigKey::optional(
            "rest.advertised.port",
            Int,
            None,
            Low,
            "The port other workers and clients reach this worker at.",
        ))
        .define(ConfigKey::optional(
            "key.converter",
            Class,
            Some("org.apache.kafka.connect.json.JsonConverter"),
            High,
            "The converter of record keys, for connectors that do not name their own.",
        ))
        .define(ConfigKey::optional(
            "value.converter",
            Class,
            Some("org.apache.kafka.connect.json.JsonConverter"),
            High,
            "The converter of record values, for connectors that do not name their own.",
        ))
        .define(ConfigKey::optional(
            "header.converter",
            Class,
            Some("org.apache.kafka.connect.storage.SimpleHeaderConverter"),
            Low,
            "The converter of header values, for connectors that do not name their own.",
        ))
        .define(ConfigKey::optional(
            "offset.storage.topic",
            String,
            Some("connect-offsets"),
            High,
            "The topic source connectors' offsets are kept in.",
        ))
        .define(
            ConfigKey::optional(
                "offset.storage.partitions",
                Int,
                Some("25"),
                Low,
                "Partitions of the offsets topic when the worker creates it.",
            )
            .validated(Validator::AtLeast(1.0)),
        )
        .define(ConfigKey::optional(
            "offset.storage.replication.factor",
            Short,
            Some("-1"),
            Low,
            "Replication factor of the offsets topic (-1: the cluster's default).",
        ))
        .define(ConfigKey::optional(
            "offset.storage.file.filename",
            String,
            None,
            Low,
            "Standalone: a file to keep source offsets in instead of the offsets topic.",
        ))
        .define(ConfigKey::optional(
            "config.storage.topic",
            String,
            Some("connect-configs"),
            High,
            "The topic connector configs are kept in (distributed).",
        ))
        .define(ConfigKey::optional(
            "status.storage.topic",
            String,
            Some("connect-status"),
            High,
            "The topic connector and task statuses are kept in (distributed).",
        ))
        .define(
            ConfigKey::optional(
                "status.storage.partitions",
                Int,
                Some("5"),
                Low,
                "Partitions of the status topic when the worker creates it (distributed).",
            )
            .validated(Validator::AtLeast(1.0)),
        )
        .define(ConfigKey::optional(
            "config.storage.replication.factor",
            Short,
            Some("-1"),
            Low,
            "Replication factor of the config topic (-1: the cluster's default; distributed).",
        ))
        .define(ConfigKey::optional(
            "status.storage.replication.factor",
            Short,
            Some("-1"),
            Low,
            "Replication factor of the status topic (-1: the cluster's default; distributed).",
        ))
        .define(
            ConfigKey::optional(
                "session.timeout.ms",
                Int,
                Some("10000"),
                High,
                "How long a distributed worker may go without a heartbeat before the group drops it and shares its work out.",
            )
            .validated(Validator::AtLeast(1.0)),
        )
        .define(
            ConfigKey::optional(
                "heartbeat.interval.ms",
                Int,
                Some("3000"),
                High,
                "How often a distributed worker heartbeats to its group (a third of the session timeout or less).",
            )
            .validated(Validator::AtLeast(1.0)),
        )
        .define(
            ConfigKey::optional(
                "rebalance.timeout.ms",
                Int,
                Some("60000"),
                Medium,
                "How long the group waits for every worker to rejoin a rebalance.",
            )
            .validated(Validator::AtLeast(1.0)),
        )
        .define(
            ConfigKey::optional(
                "scheduled.rebalance.max.delay.ms",
                Int,
                Some("300000"),
                Low,
                "How long the work of a worker that left the group waits for it to come back before it is shared out.",
            )
            .validated(Validator::AtLeast(0.0)),
        )
        .define(
            ConfigKey::optional(
                "offset.flush.interval.ms",
                Long,
                Some("60000"),
                Low,
                "How often source offsets are stored and sink offsets committed.",
            )
            .validated(Validator::AtLeast(1.0)),
        )
        .define(ConfigKey::optional(
            "offset.flush.timeout.ms",
            Long,
            Some("5000"),
            Low,
            "How long storing offsets may take before the attempt is given up and tried at the next interval.",
        ))
        .define(ConfigKey::optional(
            "task.shutdown.graceful.timeout.ms",
            Long,
            Some("5000"),
            Low,
            "How long a stopping task is waited for before it is abandoned.",
        ))
        .define(ConfigKey::optional("plugin.path", List, None, Low, "Ignored: Freshet's plugins are compiled in."))
        .define(
            ConfigKey::optional(
                "exactly.once.source.support",
                String,
                Some("disabled"),
                High,
                "enabled: source tasks write records and their offsets in one transaction (the substrate must \
                 have transactions); disabled (or preparing): at least once.",
            )
            .validated(Validator::one_of(&["disabled", "preparing", "enabled"])),
        )
}

const COMMON: &str = "Common";
const TRANSFORMS: &str = "Transforms";
const PREDICATES: &str = "Predicates";
const ERRORS: &str = "Error Handling";

/// The keys every connector takes (Kafka's `ConnectorConfig`, with `SinkConnectorConfig`'s
/// `topics` and `topics.regex` for sinks).
pub fn connector_config_def(kind: Option<ConnectorType>) -> ConfigDef {
    use ConfigType::*;
    use Importance::*;
    let mut def = ConfigDef::new()
        .define(
            ConfigKey::required("name", String, High, "Globally unique name to use for this connector.")
                .validated(Validator::NonEmpty)
                .in_group(COMMON),
        )
        .define(
            ConfigKey::required(
                "connector.class",
                String,
                High,
                "Name of the class for this connector: its full class or an alias (FileStreamSource).",
            )
            .in_group(COMMON),
        )
        .define(
            ConfigKey::optional(
                "tasks.max",
                Int,
                Some("1"),
                High,
                "Maximum number of tasks to use for this connector.",
            )
            .validated(Validator::AtLeast(1.0))
            .in_group(COMMON),
        )
        .define(
            ConfigKey::optional("key.converter", Class, None, Low, "Converter of keys; the worker's when not set.")
                .in_group(COMMON),
        )
        .define(
            ConfigKey::optional("value.converter", Class, None, Low, "Converter of values; the worker's when not set.")
                .in_group(COMMON),
        )
        .define(
            ConfigKey::optional(
                "header.converter",
                Class,
                None,
                Low,
                "Converter of headers; the worker's when not set.",
            )
            .in_group(COMMON),
        )
        .define(
            ConfigKey::optional(
                "transforms",
                List,
                Some(""),
                Low,
                "Aliases for the transformations to be applied to records.",
            )
            .in_group(TRANSFORMS),
        )
        .define(
            ConfigKey::optional(
                "predicates",
                List,
                Some(""),
                Low,
                "Aliases for the predicates used by transformations.",
            )
            .in_group(PREDICATES),
        )
        .define(
            ConfigKey::optional(
                "config.action.reload",
                String,
                Some("restart"),
                Low,
                "What to do when external config providers change: none or restart.",
            )
            .validated(Validator::one_of(&["none", "restart"]))
            .in_group(COMMON),
        )
        .define(
            ConfigKey::optional(
                "errors.retry.timeout",
                Long,
                Some("0"),
                Medium,
                "How long a failed operation is retried, in ms (-1: forever, 0: not at all).",
            )
            .in_group(ERRORS),
        )
        .define(
            ConfigKey::optional(
                "errors.retry.delay.max.ms",
                Long,
                Some("60000"),
                Medium,
                "The longest wait between retries.",
            )
            .in_group(ERRORS),
        )
        .define(
            ConfigKey::optional(
                "errors.tolerance",
                String,
                Some("none"),
                Medium,
                "none: an error fails the task; all: records that fail are skipped.",
            )
            .validated(Validator::one_of(&["none", "all"]))
            .in_group(ERRORS),
        )
        .define(
            ConfigKey::optional(
                "errors.log.enable",
                Boolean,
                Some("false"),
                Medium,
                "Log each failed operation and record.",
            )
            .in_group(ERRORS),
        )
        .define(
            ConfigKey::optional(
                "errors.log.include.messages",
                Boolean,
                Some("false"),
                Medium,
                "Include the failed record in the log.",
            )
            .in_group(ERRORS),
        );
    def = def
        .define(
            ConfigKey::optional(
                "tasks.max.enforce",
                Boolean,
                Some("true"),
                Low,
                "Fail a connector that asks for more tasks than tasks.max (false: run them all, with a warning).",
            )
            .in_group(COMMON),
        )
        .define(
            ConfigKey::optional(
                "connector.plugin.version",
                String,
                Some(env!("CARGO_PKG_VERSION")),
                Low,
                "The version of the connector plugin (plugins are compiled in: one version each).",
            )
            .in_group(COMMON),
        );
    def = def
        .define(
            ConfigKey::optional(
                "errors.task.restart.max",
                Int,
                Some("10"),
                Medium,
                "How many times in a row a failed task is restarted, after a backoff, before it stays FAILED \
                 (0: never, as Kafka; -1: always).",
            )
            .in_group(ERRORS),
        )
        .define(
            ConfigKey::optional(
                "errors.task.restart.backoff.max.ms",
                Long,
                Some("60000"),
                Medium,
                "The longest wait before a failed task is restarted (the first is a second, then doubling).",
            )
            .in_group(ERRORS),
        );
    for converter in ["key.converter", "value.converter", "header.converter"] {
        def = def.define(
            ConfigKey::optional(
                format!("{converter}.plugin.version"),
                String,
                None,
                Low,
                "The version of the converter plugin (plugins are compiled in: one version each).",
            )
            .in_group(COMMON),
        );
    }
    match kind {
        Some(ConnectorType::Sink) => {
            def = def
                .define(
                    ConfigKey::optional(
                        "topics",
                        List,
                        Some(""),
                        High,
                        "List of topics to consume, separated by commas.",
                    )
                    .in_group(COMMON),
                )
                .define(
                    ConfigKey::optional(
                        "topics.regex",
                        String,
                        Some(""),
                        High,
                        "Regular expression giving topics to consume.",
                    )
                    .in_group(COMMON),
                )
                .define(
                    ConfigKey::optional(
                        "errors.deadletterqueue.topic.name",
                        String,
                        Some(""),
                        Medium,
                        "The topic records that fail are written to (with errors.tolerance=all).",
                    )
                    .in_group(ERRORS),
                )
                .define(
                    ConfigKey::optional(
                        "errors.deadletterqueue.topic.replication.factor",
                        Short,
                        Some("3"),
                        Medium,
                        "Replication factor of the dead-letter topic when it is created.",
                    )
                    .in_group(ERRORS),
                )
                .define(
                    ConfigKey::optional(
                        "errors.deadletterqueue.context.headers.enable",
                        Boolean,
                        Some("false"),
                        Medium,
                        "Add __connect.errors.* headers saying where and why a record failed.",
                    )
                    .in_group(ERRORS),
                );
        }
        Some(ConnectorType::Source) => {
            def = def
                .define(
                    ConfigKey::optional(
                        "errors.deadletterqueue.topic.name",
                        String,
                        Some(""),
                        Medium,
                        "The topic records that fail conversion or a transform are written to (with \
                         errors.tolerance=all), as the source polled them.",
                    )
                    .in_group(ERRORS),
                )
                .define(
                    ConfigKey::optional(
                        "errors.deadletterqueue.context.headers.enable",
                        Boolean,
                        Some("false"),
                        Medium,
                        "Add __connect.errors.* headers saying where and why a record failed.",
                    )
                    .in_group(ERRORS),
                )
                .define(
                    ConfigKey::optional(
                        "topic.creation.groups",
                        List,
                        Some(""),
                        Low,
                        "Groups of configurations for topics created by source connectors.",
                    )
                    .in_group("Topic Creation"),
                )
                .define(
                    ConfigKey::optional(
                        "exactly.once.support",
                        String,
                        Some("requested"),
                        Medium,
                        "Whether the connector must support exactly-once delivery: requested or required.",
                    )
                    .validated(Validator::one_of(&["requested", "required"]))
                    .in_group("Exactly Once Support"),
                )
                .define(
                    ConfigKey::optional(
                        "transaction.boundary",
                        String,
                        Some("poll"),
                        Medium,
                        "Where transactions of an exactly-once source end: poll, interval or connector.",
                    )
                    .validated(Validator::one_of(&["poll", "interval", "connector"]))
                    .in_group("Exactly Once Support"),
                )
                .define(
                    ConfigKey::optional(
                        "transaction.boundary.interval.ms",
                        Long,
                        None,
                        Low,
                        "With transaction.boundary=interval, how long a transaction lasts.",
                    )
                    .in_group("Exactly Once Support"),
                )
                .define(
                    ConfigKey::optional(
                        "offsets.storage.topic",
                        String,
                        None,
                        Low,
                        "A topic of this connector's own for its source offsets.",
                    )
                    .in_group("Offsets Topic"),
                );
        }
        None => {}
    }
    def
}

/// Checks beyond the types: a sink names its topics one way, a bad regex, a topic that is also
/// the dead-letter topic.
pub fn check_connector_keys(kind: ConnectorType, props: &Props) -> Vec<ConfigValue> {
    let mut out = Vec::new();
    if kind != ConnectorType::Sink {
        return out;
    }
    let topics = props.get("topics").map(|t| split_list(t)).unwrap_or_default();
    let regex = props.get("topics.regex").map(|r| r.trim()).filter(|r| !r.is_empty());
    let error = |name: &str, message: &str| ConfigValue {
        name: name.into(),
        value: props.get(name).cloned(),
        errors: vec![message.into()],
        password: false,
    };
    match (topics.is_empty(), regex) {
        (true, None) => out.push(error("topics", "Must configure one of topics or topics.regex")),
        (false, Some(_)) => {
            out.push(error("topics", "topics and topics.regex are mutually exclusive options, but both are set."))
        }
        (true, Some(r)) => {
            if let Err(e) = regex::Regex::new(r) {
                out.push(error("topics.regex", &format!("Invalid regular expression: {e}")));
            }
        }
        _ => {}
    }
    out
}
