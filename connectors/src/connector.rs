//! Connectors and their tasks, as Kafka Connect shapes them: a connector takes its config and
//! splits the work into task configs; tasks do the work. A source task polls records from
//! outside and the worker writes them to the log, storing each record's source offset once the
//! log has acknowledged it; a sink task is given records the worker read from the log, and the
//! worker commits their offsets only after the task says its writes are durable.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use freshet_core::TopicPartition;

use crate::config::{Config, ConfigDef, ConfigValue, Props};
use crate::error::Result;
use crate::record::{SinkOffsets, SinkRecord, SourceMap, SourceRecord};

/// Whether a connector reads from outside into the log, or from the log out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectorType {
    /// Into the log.
    Source,
    /// Out of the log.
    Sink,
}

impl ConnectorType {
    /// `source` or `sink`, as the REST API writes it.
    pub fn name(self) -> &'static str {
        match self {
            ConnectorType::Source => "source",
            ConnectorType::Sink => "sink",
        }
    }
}

/// What connectors of both kinds do.
#[async_trait]
pub trait Connector: Send + Sync + Debug {
    /// The connector's own keys (the worker adds the common ones: `name`, `tasks.max`, ...).
    fn config_def(&self) -> ConfigDef;

    /// Checks beyond [`Connector::config_def`]'s, one result per key it has something to say
    /// about (Kafka's `Connector.validate`); none by default.
    fn validate(&self, _props: &Props) -> Vec<ConfigValue> {
        Vec::new()
    }

    /// Starts with a config the worker has checked against [`Connector::config_def`] and
    /// [`Connector::validate`].
    async fn start(&mut self, config: &Config) -> Result<()>;

    /// The configs of at most `max_tasks` tasks, one each.
    fn task_configs(&self, max_tasks: usize) -> Result<Vec<Props>>;

    /// Stops.
    async fn stop(&mut self) -> Result<()> {
        Ok(())
    }

    /// The plugin's version.
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_string()
    }
}

/// A source connector.
pub trait SourceConnector: Connector {
    /// A new, unstarted task. The worker asks an unstarted connector for it (as Kafka makes
    /// tasks from their class), so it must not depend on the connector's state.
    fn task(&self) -> Box<dyn SourceTask>;

    /// Checks offsets a user asks to write for it (`PATCH /connectors/{c}/offsets`; `None`
    /// offsets are resets): `Ok(true)` when they are fine, `Ok(false)` when the connector does not
    /// say, an error naming what is wrong (Kafka's `SourceConnector.alterOffsets`).
    fn alter_offsets(&self, _config: &Props, _offsets: &[(SourceMap, Option<SourceMap>)]) -> Result<bool> {
        Ok(false)
    }
}

/// A sink connector.
pub trait SinkConnector: Connector {
    /// A new, unstarted task, made from an unstarted connector (see [`SourceConnector::task`]).
    fn task(&self) -> Box<dyn SinkTask>;
}

/// How a task looks up a source partition's stored offset.
type OffsetLookup = Arc<dyn Fn(&SourceMap) -> Option<SourceMap> + Send + Sync>;

/// What a source task may ask of the worker.
#[derive(Clone)]
pub struct SourceTaskContext {
    offsets: OffsetLookup,
}

impl Debug for SourceTaskContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceTaskContext").finish_non_exhaustive()
    }
}

impl SourceTaskContext {
    /// A context whose offsets come from `offsets`.
    pub fn new(offsets: impl Fn(&SourceMap) -> Option<SourceMap> + Send + Sync + 'static) -> Self {
        SourceTaskContext { offsets: Arc::new(offsets) }
    }

    /// The last offset stored for a source partition of this connector (Kafka's
    /// `OffsetStorageReader.offset`): where to resume.
    pub fn offset(&self, partition: &SourceMap) -> Option<SourceMap> {
        (self.offsets)(partition)
    }
}

/// A task of a source connector.
#[async_trait]
pub trait SourceTask: Send + Debug {
    /// Starts with its task config; `context` gives the offsets to resume from.
    async fn start(&mut self, config: &Config, context: SourceTaskContext) -> Result<()>;

    /// The next records, or none after a short wait (a second at most) when there are none, so
    /// that the worker can pause or stop the task between polls.
    async fn poll(&mut self) -> Result<Vec<SourceRecord>>;

    /// Told after the worker stored the offsets of the records polled so far.
    async fn commit(&mut self) -> Result<()> {
        Ok(())
    }

    /// Stops; no poll follows.
    async fn stop(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Where a sink task sends a record it cannot write (Kafka's `ErrantRecordReporter`).
#[async_trait]
pub trait ErrantRecordReporter: Send + Sync {
    /// Reports `record` as failed with `error`: under the connector's `errors.tolerance=all` it is
    /// logged and written to the dead-letter topic, as the connector's `errors.*` keys say, and
    /// `Ok` returns once that is done; under `errors.tolerance=none` the error that fails the task
    /// comes back.
    async fn report(&self, record: &SinkRecord, error: crate::ConnectError) -> Result<()>;
}

/// What a sink task may ask of the worker (Kafka's `SinkTaskContext`).
#[derive(Clone)]
pub struct SinkTaskContext {
    reporter: Option<Arc<dyn ErrantRecordReporter>>,
}

impl Debug for SinkTaskContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkTaskContext").field("reporter", &self.reporter.is_some()).finish()
    }
}

impl SinkTaskContext {
    /// A context whose failed records go to `reporter`.
    pub fn new(reporter: Arc<dyn ErrantRecordReporter>) -> Self {
        SinkTaskContext { reporter: Some(reporter) }
    }

    /// A context with nowhere to report to, as a task has before the worker initializes it: a
    /// report fails with the error reported.
    pub fn detached() -> Self {
        SinkTaskContext { reporter: None }
    }

    /// Reports a record the task cannot write (see [`ErrantRecordReporter::report`]).
    pub async fn report(&self, record: &SinkRecord, error: crate::ConnectError) -> Result<()> {
        match &self.reporter {
            Some(reporter) => reporter.report(record, error).await,
            None => Err(error),
        }
    }
}

impl Default for SinkTaskContext {
    fn default() -> Self {
        SinkTaskContext::detached()
    }
}

/// A task of a sink connector.
#[async_trait]
pub trait SinkTask: Send + Debug {
    /// Given before [`SinkTask::start`]: what the task may ask of the worker, such as reporting
    /// records it cannot write. Ignored by default.
    fn initialize(&mut self, _context: SinkTaskContext) {}

    /// Starts with its task config.
    async fn start(&mut self, config: &Config) -> Result<()>;

    /// Partitions this task now reads (after a rebalance, or at the start).
    async fn open(&mut self, _partitions: &[TopicPartition]) -> Result<()> {
        Ok(())
    }

    /// Takes records to write. They need not be durable when this returns. A
    /// [`ConnectError::Retriable`](crate::ConnectError::Retriable) failure has the same records
    /// given again after a backoff; any other fails the task.
    async fn put(&mut self, records: &[SinkRecord]) -> Result<()>;

    /// Makes everything put so far durable.
    async fn flush(&mut self, _offsets: &SinkOffsets) -> Result<()> {
        Ok(())
    }

    /// The offsets the worker may commit, given the offsets of everything put so far (Kafka's
    /// `preCommit`): by default it flushes and returns them all. A task that makes writes
    /// durable on its own schedule returns less.
    async fn pre_commit(&mut self, offsets: SinkOffsets) -> Result<SinkOffsets> {
        self.flush(&offsets).await?;
        Ok(offsets)
    }

    /// The worker committed these offsets for the group (after a `pre_commit`): what a restart
    /// reads from. Ignored by default.
    fn committed(&mut self, _committed: &SinkOffsets) {}

    /// Partitions this task no longer reads; their offsets were committed just before.
    async fn close(&mut self, _partitions: &[TopicPartition]) -> Result<()> {
        Ok(())
    }

    /// Stops; nothing follows.
    async fn stop(&mut self) -> Result<()> {
        Ok(())
    }
}

/// How a plugin makes a connector.
#[derive(Clone)]
pub enum MakeConnector {
    /// A source connector.
    Source(Arc<dyn Fn() -> Box<dyn SourceConnector> + Send + Sync>),
    /// A sink connector.
    Sink(Arc<dyn Fn() -> Box<dyn SinkConnector> + Send + Sync>),
}

impl Debug for MakeConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MakeConnector::Source(_) => "Source(..)",
            MakeConnector::Sink(_) => "Sink(..)",
        })
    }
}

/// A connector as the plugin registry knows it.
#[derive(Debug, Clone)]
pub struct ConnectorPlugin {
    /// Its class name: Kafka's for the connectors Kafka has
    /// (`org.apache.kafka.connect.file.FileStreamSourceConnector`).
    pub class: String,
    /// Other names a config may use (`FileStreamSource`, `FileStreamSourceConnector`).
    pub aliases: Vec<String>,
    /// How to make one.
    pub make: MakeConnector,
}

impl ConnectorPlugin {
    /// A source plugin.
    pub fn source(
        class: &str,
        aliases: &[&str],
        make: impl Fn() -> Box<dyn SourceConnector> + Send + Sync + 'static,
    ) -> Self {
        ConnectorPlugin {
            class: class.into(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            make: MakeConnector::Source(Arc::new(make)),
        }
    }

    /// A sink plugin.
    pub fn sink(
        class: &str,
        aliases: &[&str],
        make: impl Fn() -> Box<dyn SinkConnector> + Send + Sync + 'static,
    ) -> Self {
        ConnectorPlugin {
            class: class.into(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            make: MakeConnector::Sink(Arc::new(make)),
        }
    }

    /// Source or sink.
    pub fn kind(&self) -> ConnectorType {
        match self.make {
            MakeConnector::Source(_) => ConnectorType::Source,
            MakeConnector::Sink(_) => ConnectorType::Sink,
        }
    }

    /// Whether `name` is its class or an alias.
    pub fn is_named(&self, name: &str) -> bool {
        self.class == name || self.aliases.iter().any(|a| a == name)
    }

    /// A new connector, as the trait both kinds share.
    pub fn instantiate(&self) -> Instance {
        match &self.make {
            MakeConnector::Source(make) => Instance::Source(make()),
            MakeConnector::Sink(make) => Instance::Sink(make()),
        }
    }
}

/// A connector made by a plugin.
#[derive(Debug)]
pub enum Instance {
    /// A source connector.
    Source(Box<dyn SourceConnector>),
    /// A sink connector.
    Sink(Box<dyn SinkConnector>),
}

impl Instance {
    /// As the trait both kinds share.
    pub fn connector(&self) -> &dyn Connector {
        match self {
            Instance::Source(c) => &**c,
            Instance::Sink(c) => &**c,
        }
    }

    /// As the trait both kinds share, mutably.
    pub fn connector_mut(&mut self) -> &mut dyn Connector {
        match self {
            Instance::Source(c) => &mut **c,
            Instance::Sink(c) => &mut **c,
        }
    }
}

/// Sink offsets keyed as Kafka Connect's REST API shows them.
pub fn sink_offsets_json(offsets: &BTreeMap<TopicPartition, i64>) -> Vec<serde_json::Value> {
    offsets
        .iter()
        .map(|(tp, offset)| {
            serde_json::json!({
                "partition": {"kafka_topic": tp.topic, "kafka_partition": tp.partition},
                "offset": {"kafka_offset": offset},
            })
        })
        .collect()
}
