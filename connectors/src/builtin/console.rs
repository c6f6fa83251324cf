//! Two sinks for trying pipelines out: `StdoutSink` prints each record's value (and, if asked,
//! its key) as a line on standard output; `BlackholeSink` takes records and drops them, to
//! measure what everything before the sink costs.

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

use crate::config::{Config, ConfigDef, ConfigKey, ConfigType, Importance, Props};
use crate::connector::{Connector, SinkConnector, SinkTask};
use crate::data::Value;
use crate::error::{ConnectError, Result};
use crate::record::{SinkOffsets, SinkRecord};

fn stdout_config_def() -> ConfigDef {
    ConfigDef::new()
        .define(ConfigKey::optional(
            "print.key",
            ConfigType::Boolean,
            Some("false"),
            Importance::Medium,
            "Print each record's key before its value.",
        ))
        .define(ConfigKey::optional(
            "key.separator",
            ConfigType::String,
            Some("\t"),
            Importance::Low,
            "What separates the key from the value with print.key.",
        ))
}

/// Prints records on standard output.
#[derive(Debug, Default)]
pub struct StdoutSink {
    props: Props,
}

#[async_trait]
impl Connector for StdoutSink {
    fn config_def(&self) -> ConfigDef {
        stdout_config_def()
    }

    async fn start(&mut self, config: &Config) -> Result<()> {
        self.props = config.originals().clone();
        Ok(())
    }

    fn task_configs(&self, max_tasks: usize) -> Result<Vec<Props>> {
        Ok(vec![self.props.clone(); max_tasks.max(1)])
    }
}

impl SinkConnector for StdoutSink {
    fn task(&self) -> Box<dyn SinkTask> {
        Box::new(StdoutSinkTask::default())
    }
}

/// The stdout sink's task.
#[derive(Debug, Default)]
struct StdoutSinkTask {
    key_separator: Option<String>,
    out: Vec<u8>,
}

fn push_value(out: &mut Vec<u8>, value: &Value) {
    use std::io::Write as _;
    match value {
        Value::String(s) => out.extend_from_slice(s.as_bytes()),
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

#[async_trait]
impl SinkTask for StdoutSinkTask {
    async fn start(&mut self, config: &Config) -> Result<()> {
        let config = stdout_config_def().parse(config.props())?;
        if config.boolean("print.key", false)? {
            self.key_separator = Some(config.props().get("key.separator").cloned().unwrap_or_else(|| "\t".into()));
        }
        Ok(())
    }

    async fn put(&mut self, records: &[SinkRecord]) -> Result<()> {
        self.out.clear();
        for r in records {
            if let Some(sep) = &self.key_separator {
                push_value(&mut self.out, &r.record.key);
                self.out.extend_from_slice(sep.as_bytes());
            }
            push_value(&mut self.out, &r.record.value);
            self.out.push(b'\n');
        }
        let mut stdout = tokio::io::stdout();
        stdout.write_all(&self.out).await.map_err(|e| ConnectError::io("writing to standard output", e))?;
        stdout.flush().await.map_err(|e| ConnectError::io("writing to standard output", e))
    }
}

/// Drops every record.
#[derive(Debug, Default)]
pub struct BlackholeSink;

#[async_trait]
impl Connector for BlackholeSink {
    fn config_def(&self) -> ConfigDef {
        ConfigDef::new()
    }

    async fn start(&mut self, _config: &Config) -> Result<()> {
        Ok(())
    }

    fn task_configs(&self, max_tasks: usize) -> Result<Vec<Props>> {
        Ok(vec![Props::new(); max_tasks.max(1)])
    }
}

impl SinkConnector for BlackholeSink {
    fn task(&self) -> Box<dyn SinkTask> {
        Box::new(BlackholeSinkTask)
    }
}

/// The blackhole sink's task.
#[derive(Debug)]
struct BlackholeSinkTask;

#[async_trait]
impl SinkTask for BlackholeSinkTask {
    async fn start(&mut self, _config: &Config) -> Result<()> {
        Ok(())
    }

    async fn put(&mut self, _records: &[SinkRecord]) -> Result<()> {
        Ok(())
    }

    async fn flush(&mut self, _offsets: &SinkOffsets) -> Result<()> {
        Ok(())
    }
}
