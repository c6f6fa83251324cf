//! `freshet produce`: lines from standard input as records.

use crate::*;

#[derive(clap::Args)]
pub(crate) struct ProduceArgs {
    /// The topic.
    pub(crate) topic: String,
    /// Read the records from this file instead of standard input.
    #[arg(long)]
    pub(crate) file: Option<PathBuf>,
    /// Each line is `key<SEP>value`; without it, each line is a value without key.
    #[arg(long)]
    pub(crate) key_separator: Option<String>,
    /// Each line is a JSON object with `key`, `value` (strings or null) and `headers`
    /// (an object, or a list of `[name, value]` pairs for repeated names).
    #[arg(long)]
    pub(crate) json: bool,
    /// A header added to every record, `name=value` (repeatable).
    #[arg(long = "header", value_name = "NAME=VALUE")]
    pub(crate) headers: Vec<String>,
    #[command(flatten)]
    pub(crate) target: Target,
}

pub(crate) async fn produce(args: ProduceArgs) -> anyhow::Result<()> {
    use std::io::BufRead;
    let input: Box<dyn BufRead> = match &args.file {
        Some(path) => Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
        )),
        None => Box::new(std::io::BufReader::new(std::io::stdin())),
    };
    let common: Vec<Header> = args
        .headers
        .iter()
        .map(|h| match h.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                Ok(Header { key: k.to_string(), value: Some(v.to_string().into_bytes().into()) })
            }
            _ => anyhow::bail!("--header {h:?}: expected name=value"),
        })
        .collect::<anyhow::Result<_>>()?;
    let mut records = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line.context("reading the records")?;
        if line.is_empty() {
            continue;
        }
        let mut record = if args.json {
            json_record(&args.topic, &line).with_context(|| format!("line {}: {line:?}", i + 1))?
        } else {
            match args.key_separator.as_deref().and_then(|sep| line.split_once(sep)) {
                Some((k, v)) => ProducerRecord::new(args.topic.clone(), Some(k.to_string()), v.to_string()),
                None if args.key_separator.is_some() => {
                    anyhow::bail!(
                        "line {}: no key separator {:?} in {line:?}",
                        i + 1,
                        args.key_separator.as_deref().unwrap_or_default()
                    )
                }
                None => ProducerRecord::new(args.topic.clone(), None::<String>, line),
            }
        };
        record.headers.extend(common.iter().cloned());
        records.push(record);
    }
    let opened = Opened::open(&args.target).await?;
    let n = records.len();
    let sent = match opened.producer() {
        Ok(producer) => producer.send(records).await,
        Err(e) => Err(e),
    };
    opened.close().await?;
    let sent = sent?;
    say(&format!("wrote {n} records to {}", args.topic));
    if let (Some(first), Some(last)) = (sent.first(), sent.last()) {
        tracing::debug!(first = first.offset, last = last.offset, "offsets");
    }
    Ok(())
}

/// A record from a JSON line: `{"key": .., "value": .., "headers": {..} | [[name, value], ..]}`.
pub(crate) fn json_record(topic: &str, line: &str) -> anyhow::Result<ProducerRecord> {
    let object: serde_json::Value = serde_json::from_str(line)?;
    let text = |v: Option<&serde_json::Value>| -> anyhow::Result<Option<bytes::Bytes>> {
        match v {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone().into_bytes().into())),
            Some(other) => Ok(Some(other.to_string().into_bytes().into())),
        }
    };
    let mut headers = Vec::new();
    match object.get("headers") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Object(map)) => {
            for (k, v) in map {
                headers.push(Header { key: k.clone(), value: text(Some(v))? });
            }
        }
        Some(serde_json::Value::Array(pairs)) => {
            for pair in pairs {
                match pair.as_array().map(Vec::as_slice) {
                    Some([serde_json::Value::String(k), v]) => {
                        headers.push(Header { key: k.clone(), value: text(Some(v))? })
                    }
                    _ => anyhow::bail!("a header that is not a [name, value] pair: {pair}"),
                }
            }
        }
        Some(other) => anyhow::bail!("headers must be an object or a list of pairs, not {other}"),
    }
    Ok(ProducerRecord {
        topic: topic.to_string(),
        partition: None,
        key: text(object.get("key"))?,
        value: text(object.get("value"))?,
        headers,
        timestamp: object.get("timestamp").and_then(serde_json::Value::as_i64),
    })
}
