//! The FileStream source and sink, as Kafka ships them: the source turns each line of a file (or
//! standard input) into a record whose value is the line as a string, keeping its place as the
//! byte position after the line (`{"filename": F}` -> `{"position": N}`, Kafka's own offsets, so
//! either worker resumes from the other's); the sink appends each record's value as a line.
//! Unlike Kafka's, the sink's flush makes the lines durable (fsync) before offsets are committed.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, AsyncWriteExt, BufReader, BufWriter};

use crate::config::{split_list, Config, ConfigDef, ConfigKey, ConfigType, ConfigValue, Importance, Props, Validator};
use crate::connector::{Connector, SinkConnector, SinkTask, SourceConnector, SourceTask, SourceTaskContext};
use crate::data::{Schema, Type, Value};
use crate::error::{ConnectError, Result};
use crate::record::{ConnectRecord, SinkOffsets, SinkRecord, SourceMap, SourceRecord};

/// How long a poll waits when there is no new line (Kafka's task waits a second).
const IDLE_WAIT: Duration = Duration::from_millis(200);

/// The source's keys.
fn source_config_def() -> ConfigDef {
    ConfigDef::new()
        .define(ConfigKey::optional(
            "file",
            ConfigType::String,
            None,
            Importance::High,
            "Source filename. If not specified, the standard input will be used",
        ))
        .define(ConfigKey::required("topic", ConfigType::String, Importance::High, "The topic to publish data to"))
        .define(
            ConfigKey::optional(
                "batch.size",
                ConfigType::Int,
                Some("2000"),
                Importance::Low,
                "The maximum number of records the source task can read from the file each time it is polled",
            )
            .validated(Validator::AtLeast(1.0)),
        )
}

/// Kafka's `FileStreamSourceConnector`.
#[derive(Debug, Default)]
pub struct FileStreamSource {
    props: Props,
}

#[async_trait]
impl Connector for FileStreamSource {
    fn config_def(&self) -> ConfigDef {
        source_config_def()
    }

    fn validate(&self, props: &Props) -> Vec<ConfigValue> {
        match props.get("topic").map(|t| split_list(t)) {
            Some(topics) if topics.len() > 1 => vec![ConfigValue {
                name: "topic".into(),
                value: props.get("topic").cloned(),
                errors: vec![
                    "'topic' in FileStreamSourceConnector configuration requires definition of a single topic".into(),
                ],
                password: false,
            }],
            _ => Vec::new(),
        }
    }

    async fn start(&mut self, config: &Config) -> Result<()> {
        self.props = config.originals().clone();
        Ok(())
    }

    fn task_configs(&self, _max_tasks: usize) -> Result<Vec<Props>> {
        // One file, one reader.
        Ok(vec![self.props.clone()])
    }
}

impl SourceConnector for FileStreamSource {
    fn task(&self) -> Box<dyn SourceTask> {
        Box::new(FileStreamSourceTask::default())
    }

    fn alter_offsets(&self, config: &Props, offsets: &[(SourceMap, Option<SourceMap>)]) -> Result<bool> {
        let file = config.get("file").map(|f| f.trim()).filter(|f| !f.is_empty());
        for (partition, offset) in offsets {
            let Some(offset) = offset else { continue };
            match partition.get("filename").and_then(|f| f.as_str()) {
                Some(name) if Some(name) == file || file.is_none() => {}
                Some(name) => {
                    return Err(ConnectError::data(format!(
                        "The partition {{\"filename\":{name:?}}} is not this connector's file {file:?}"
                    )))
                }
                None => {
                    return Err(ConnectError::data(
                        "Partitions are expected to have the key 'filename' with a string value",
                    ))
                }
            }
            match offset.get("position") {
                Some(p) if p.as_i64().is_some_and(|p| p >= 0) => {}
                _ => {
                    return Err(ConnectError::data(
                        "The value for the 'position' key in the offset is expected to be a non-negative Long value",
                    ))
                }
            }
        }
        Ok(true)
    }
}

/// What the source task reads: a file from a position, or standard input.
enum Input {
    File(BufReader<tokio::fs::File>),
    Stdin(BufReader<tokio::io::Stdin>),
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Input::File(_) => "File",
            Input::Stdin(_) => "Stdin",
        })
    }
}

/// The source's task.
#[derive(Debug, Default)]
pub struct FileStreamSourceTask {
    file: Option<String>,
    topic: String,
    batch_size: usize,
    context: Option<SourceTaskContext>,
    input: Option<Input>,
    /// The byte position after the last whole line read.
    position: u64,
    /// A line read without its end yet.
    partial: Vec<u8>,
}

impl FileStreamSourceTask {
    fn partition(&self) -> Option<SourceMap> {
        let file = self.file.as_ref()?;
        let mut map = SourceMap::new();
        map.insert("filename".into(), file.clone().into());
        Some(map)
    }

    /// Opens the input, at the stored position for a file. `None` while the file is missing.
    async fn open(&mut self) -> Result<bool> {
        let Some(file) = self.file.clone() else {
            self.input = Some(Input::Stdin(BufReader::new(tokio::io::stdin())));
            return Ok(true);
        };
        let mut f = match tokio::fs::File::open(&file).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(file, "the FileStream source's file does not exist yet; waiting for it");
                return Ok(false);
            }
            Err(e) => return Err(ConnectError::io(format!("opening {file}"), e)),
        };
        let stored = self.partition().and_then(|p| self.context.as_ref()?.offset(&p));
        if let Some(offset) = stored {
            let position = offset.get("position").and_then(|p| p.as_u64()).ok_or_else(|| {
                ConnectError::data(format!("the stored offset of {file} has no non-negative \"position\": {offset:?}"))
            })?;
            tracing::debug!(file, position, "the FileStream source resumes");
            f.seek(std::io::SeekFrom::Start(position))
                .await
                .map_err(|e| ConnectError::io(format!("seeking in {file}"), e))?;
            self.position = position;
        }
        self.input = Some(Input::File(BufReader::with_capacity(1 << 16, f)));
        Ok(true)
    }
}

#[async_trait]
impl SourceTask for FileStreamSourceTask {
    async fn start(&mut self, config: &Config, context: SourceTaskContext) -> Result<()> {
        let config = source_config_def().parse(config.props())?;
        self.file = config.get("file").map(str::to_string);
        self.topic = config.string("topic")?.to_string();
        self.batch_size = config.number::<usize>("batch.size")?;
        self.context = Some(context);
        Ok(())
    }

    async fn poll(&mut self) -> Result<Vec<SourceRecord>> {
        if self.input.is_none() && !self.open().await? {
            tokio::time::sleep(IDLE_WAIT * 5).await;
            return Ok(Vec::new());
        }
        let mut lines = Vec::new();
        let what = self.file.clone().unwrap_or_else(|| "standard input".into());
        let (ends, eof) = match self.input.as_mut().expect("opened above") {
            Input::File(r) => next_lines(r, &mut self.partial, self.batch_size, &mut lines, false).await,
            Input::Stdin(r) => next_lines(r, &mut self.partial, self.batch_size, &mut lines, true).await,
        }
        .map_err(|e| ConnectError::io(format!("reading {what}"), e))?;
        if lines.is_empty() {
            if eof && self.file.is_none() {
                // Standard input ended: nothing more will come.
                tokio::time::sleep(IDLE_WAIT * 5).await;
            } else {
                tokio::time::sleep(IDLE_WAIT).await;
            }
            return Ok(Vec::new());
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let schema = Schema::primitive(Type::String);
        let partition = self.partition();
        let mut records = Vec::with_capacity(lines.len());
        for (line, end) in lines.into_iter().zip(ends) {
            self.position += end;
            let offset = partition.as_ref().map(|_| {
                let mut map = SourceMap::new();
                map.insert("position".into(), self.position.into());
                map
            });
            let mut record = ConnectRecord::new(self.topic.clone(), Some(schema.clone()), Value::String(line));
            record.timestamp = Some(now);
            records.push(SourceRecord {
                source_partition: partition.clone(),
                source_offset: offset,
                record,
                ack: None,
            });
        }
        Ok(records)
    }
}

/// Reads up to `max` whole lines (ended by `\n`, `\r\n` dropped with it) onto `lines`, a line
/// without its end staying in `partial` for the next call. Returns each line's length in bytes
/// with its end, and whether the input ended.
async fn next_lines<R: tokio::io::AsyncRead + Unpin + Send>(
    reader: &mut BufReader<R>,
    partial: &mut Vec<u8>,
    max: usize,
    lines: &mut Vec<String>,
    interactive: bool,
) -> std::io::Result<(Vec<u64>, bool)> {
    let mut ends = Vec::new();
    while lines.len() < max {
        let n = reader.read_until(b'\n', partial).await?;
        if n == 0 || partial.last() != Some(&b'\n') {
            return Ok((ends, n == 0));
        }
        ends.push(partial.len() as u64);
        partial.pop();
        if partial.last() == Some(&b'\r') {
            partial.pop();
        }
        lines.push(String::from_utf8_lossy(partial).into_owned());
        partial.clear();
        if interactive && reader.buffer().is_empty() {
            // Standard input's buffer is used up: hand over what there is rather than wait on
            // a read that lasts until someone types.
            break;
        }
    }
    Ok((ends, false))
}

/// The sink's keys.
fn sink_config_def() -> ConfigDef {
    ConfigDef::new().define(ConfigKey::optional(
        "file",
        ConfigType::String,
        None,
        Importance::High,
        "Destination filename. If not specified, the standard output will be used",
    ))
}

/// Kafka's `FileStreamSinkConnector`.
#[derive(Debug, Default)]
pub struct FileStreamSink {
    props: Props,
}

#[async_trait]
impl Connector for FileStreamSink {
    fn config_def(&self) -> ConfigDef {
        sink_config_def()
    }

    async fn start(&mut self, config: &Config) -> Result<()> {
        self.props = config.originals().clone();
        Ok(())
    }

    fn task_configs(&self, _max_tasks: usize) -> Result<Vec<Props>> {
        Ok(vec![self.props.clone()])
    }
}

impl SinkConnector for FileStreamSink {
    fn task(&self) -> Box<dyn SinkTask> {
        Box::new(FileStreamSinkTask::default())
    }
}

/// Where the sink writes.
enum Output {
    File(BufWriter<tokio::fs::File>, PathBuf),
    Stdout(BufWriter<tokio::io::Stdout>),
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Output::File(_, path) => write!(f, "File({})", path.display()),
            Output::Stdout(_) => f.write_str("Stdout"),
        }
    }
}

/// The sink's task.
#[derive(Debug, Default)]
pub struct FileStreamSinkTask {
    output: Option<Output>,
    line: Vec<u8>,
}

#[async_trait]
impl SinkTask for FileStreamSinkTask {
    async fn start(&mut self, config: &Config) -> Result<()> {
        self.output = Some(match config.get("file") {
            None => Output::Stdout(BufWriter::new(tokio::io::stdout())),
            Some(file) => {
                let path = PathBuf::from(file);
                let f = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .await
                    .map_err(|e| ConnectError::io(format!("opening {file} to append"), e))?;
                Output::File(BufWriter::with_capacity(1 << 16, f), path)
            }
        });
        Ok(())
    }

    async fn put(&mut self, records: &[SinkRecord]) -> Result<()> {
        use std::io::Write as _;
        self.line.clear();
        for r in records {
            match &r.record.value {
                Value::String(s) => self.line.extend_from_slice(s.as_bytes()),
                other => {
                    let _ = write!(self.line, "{other}");
                }
            }
            self.line.push(b'\n');
        }
        let result = match self.output.as_mut() {
            Some(Output::File(w, _)) => w.write_all(&self.line).await,
            Some(Output::Stdout(w)) => w.write_all(&self.line).await,
            None => return Err(ConnectError::Task("the FileStream sink task was not started".into())),
        };
        result.map_err(|e| ConnectError::io(format!("writing to {:?}", self.output), e))
    }

    async fn flush(&mut self, _offsets: &SinkOffsets) -> Result<()> {
        let what = format!("flushing {:?}", self.output);
        let result = match self.output.as_mut() {
            Some(Output::File(w, _)) => match w.flush().await {
                Ok(()) => w.get_ref().sync_data().await,
                Err(e) => Err(e),
            },
            Some(Output::Stdout(w)) => w.flush().await,
            None => Ok(()),
        };
        result.map_err(|e| ConnectError::io(what, e))
    }

    async fn stop(&mut self) -> Result<()> {
        self.flush(&SinkOffsets::new()).await
    }
}
