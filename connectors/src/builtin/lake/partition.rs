//! Where a record's file goes: the partitioners of Kafka Connect's storage sinks (`partition=N`,
//! field values, or a time bucket written with a Joda-style `path.format`), and the record time
//! they and the time-based rolls use.

use std::fmt::Write as _;

use crate::builtin::civil::{civil, days_from_civil};
use crate::config::Config;
use crate::data::Value;
use crate::error::{ConnectError, Result};
use crate::record::SinkRecord;

/// The storage sinks' partitioner classes, by the last part of their names.
const PARTITIONERS: &[&str] =
    &["DefaultPartitioner", "FieldPartitioner", "TimeBasedPartitioner", "HourlyPartitioner", "DailyPartitioner"];

/// Freshet's default layout: a directory per day and hour of the record's time, in UTC.
pub(super) const DEFAULT_PATH_FORMAT: &str = "'dt'=YYYY-MM-dd/'hour'=HH";

/// How a record's directory under its topic is named.
#[derive(Debug, Clone)]
pub(super) enum Partitioner {
    /// `partition=N`, the record's Kafka partition.
    Default,
    /// `name=value` per field of the value.
    Field(Vec<String>),
    /// The record time, floored to `duration_ms` in `zone`, written by `format`.
    Time { format: Vec<Piece>, duration_ms: i64 },
}

/// Where a record's time comes from (`timestamp.extractor`).
#[derive(Debug, Clone)]
pub(super) enum Extractor {
    /// The record's timestamp.
    Record,
    /// A field of the value: a Timestamp, or milliseconds since the epoch.
    RecordField(Vec<String>),
    /// The time the record is written (not repeatable: a record given again after a crash may
    /// land in another directory).
    Wallclock,
}

/// The partitioner, extractor and time zone of a sink's config.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    pub(super) partitioner: Partitioner,
    pub(super) extractor: Extractor,
    /// The zone's offset from UTC, in ms.
    pub(super) zone_ms: i64,
}

impl Layout {
    /// The layout the config's `partitioner.class`, `path.format`, `partition.duration.ms`,
    /// `timezone`, `timestamp.extractor`, `timestamp.field` and `partition.field.name` say.
    pub(super) fn new(config: &Config) -> Result<Layout> {
        let class = config.get("partitioner.class").unwrap_or("TimeBasedPartitioner").trim();
        let short = class.rsplit('.').next().unwrap_or(class);
        if !PARTITIONERS.contains(&short) {
            return Err(ConnectError::config(
                "partitioner.class",
                class,
                format!("not a partitioner Freshet knows (known: {})", PARTITIONERS.join(", ")),
            ));
        }
        let zone_ms = zone_offset(config.get("timezone").unwrap_or("UTC"))?;
        let timed = |path: &str, fixed_duration: Option<i64>| -> Result<Partitioner> {
            let format = parse_format(path).map_err(|e| ConnectError::config("path.format", path, e))?;
            let duration_ms = match (fixed_duration, config.get("partition.duration.ms")) {
                (Some(d), _) => d,
                (None, Some(_)) => config.number::<i64>("partition.duration.ms")?,
                (None, None) => finest_unit(&format),
            };
            if duration_ms <= 0 {
                return Err(ConnectError::config(
                    "partition.duration.ms",
                    duration_ms.to_string(),
                    "a time bucket lasts more than 0 ms",
                ));
            }
            Ok(Partitioner::Time { format, duration_ms })
        };
        let partitioner = match short {
            "DefaultPartitioner" => Partitioner::Default,
            "FieldPartitioner" => {
                let fields = config.list("partition.field.name");
                if fields.is_empty() {
                    return Err(ConnectError::config(
                        "partition.field.name",
                        "",
                        "FieldPartitioner names the value's fields that make the directory",
                    ));
                }
                Partitioner::Field(fields)
            }
            "HourlyPartitioner" => timed("'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH", Some(3_600_000))?,
            "DailyPartitioner" => timed("'year'=YYYY/'month'=MM/'day'=dd", Some(86_400_000))?,
            _ => timed(config.get("path.format").unwrap_or(DEFAULT_PATH_FORMAT), None)?,
        };
        let extractor = match config.get("timestamp.extractor").unwrap_or("Record").trim() {
            "Record" | "RecordTimestamp" => Extractor::Record,
            "Wallclock" => Extractor::Wallclock,
            "RecordField" => {
                let field = config.get("timestamp.field").map(str::trim).unwrap_or("");
                if field.is_empty() {
                    return Err(ConnectError::config(
                        "timestamp.field",
                        "",
                        "timestamp.extractor=RecordField names the field holding the time",
                    ));
                }
                Extractor::RecordField(field.split('.').map(String::from).collect())
            }
            other => {
                return Err(ConnectError::config(
                    "timestamp.extractor",
                    other,
                    "must be Record, RecordField or Wallclock",
                ))
            }
        };
        Ok(Layout { partitioner, extractor, zone_ms })
    }

    /// The record's time in ms since the epoch, as the extractor reads it.
    pub(super) fn time(&self, record: &SinkRecord, now_ms: i64) -> Result<i64> {
        match &self.extractor {
            Extractor::Record => record.record.timestamp.ok_or_else(|| {
                ConnectError::data("the record has no timestamp, and timestamp.extractor=Record partitions by it")
            }),
            Extractor::Wallclock => Ok(now_ms),
            Extractor::RecordField(path) => {
                let value = field(&record.record.value, path).ok_or_else(|| {
                    ConnectError::data(format!("the value has no field {:?} (timestamp.field)", path.join(".")))
                })?;
                match value {
                    Value::Int64(ms) => Ok(*ms),
                    other => Err(ConnectError::data(format!(
                        "field {:?} (timestamp.field) is {}; a time is a Timestamp or milliseconds (int64)",
                        path.join("."),
                        other.kind()
                    ))),
                }
            }
        }
    }

    /// The directory of `record` (of time `time_ms`) under its topic's, as `a=1/b=2`.
    pub(super) fn directory(&self, record: &SinkRecord, time_ms: i64) -> Result<String> {
        match &self.partitioner {
            Partitioner::Default => Ok(format!("partition={}", record.original_partition)),
            Partitioner::Field(fields) => {
                let mut dir = String::new();
                for name in fields {
                    let path: Vec<String> = name.split('.').map(String::from).collect();
                    let value = field(&record.record.value, &path).ok_or_else(|| {
                        ConnectError::data(format!("the value has no field {name:?} (partition.field.name)"))
                    })?;
                    let text = match value {
                        Value::String(s) => s.clone(),
                        Value::Int8(_) | Value::Int16(_) | Value::Int32(_) | Value::Int64(_) | Value::Boolean(_) => {
                            value.to_string()
                        }
                        other => {
                            return Err(ConnectError::data(format!(
                                "field {name:?} (partition.field.name) is {}; a directory is named by a string, \
                                 an integer or a boolean",
                                other.kind()
                            )))
                        }
                    };
                    if !dir.is_empty() {
                        dir.push('/');
                    }
                    let _ = write!(dir, "{name}={}", escape(&text));
                }
                Ok(dir)
            }
            Partitioner::Time { format, duration_ms } => {
                let local = time_ms + self.zone_ms;
                let bucket = local - local.rem_euclid(*duration_ms);
                Ok(render(format, bucket))
            }
        }
    }

    /// Whether the same record always lands in the same directory (not so by the wall clock).
    pub(super) fn repeatable(&self) -> bool {
        !matches!(self.extractor, Extractor::Wallclock)
    }
}

/// The value at a dotted field path of a struct or a schemaless map.
fn field<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut here = value;
    for name in path {
        here = match here {
            Value::Struct(s) => s.get(name)?,
            Value::Map(_) => here.map_get(name)?,
            _ => return None,
        };
    }
    Some(here)
}

/// A field value as a path segment: `/`, `=`, `%` and control characters percent-encoded (as
/// Hive escapes partition values), so a value never makes another directory level.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '/' | '\\' | '=' | '%' | '#' | '*' | '?' | ':' | '"' | '\'' | '[' | ']' | '^' => {
                let _ = write!(out, "%{:02X}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "%{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    if out.is_empty() || out == "." || out == ".." {
        return format!("%{}", out.bytes().map(|b| format!("{b:02X}")).collect::<String>());
    }
    out
}

/// A time zone as an offset: UTC (or GMT, Z) and fixed offsets (`+01:00`, `UTC-05:30`). Named
/// zones need a zone database Freshet does not carry.
fn zone_offset(zone: &str) -> Result<i64> {
    let z = zone.trim();
    let rest = ["UTC", "GMT", "Etc/UTC", "Etc/GMT", "Z"]
        .iter()
        .filter_map(|p| z.strip_prefix(p))
        .min_by_key(|r| r.len())
        .unwrap_or(z);
    if rest.is_empty() {
        return Ok(0);
    }
    let refused = || {
        ConnectError::config(
            "timezone",
            zone,
            "Freshet knows UTC and fixed offsets such as +01:00 or UTC-05:30, not named zones",
        )
    };
    let (sign, hm) = match rest.as_bytes()[0] {
        b'+' => (1, &rest[1..]),
        b'-' => (-1, &rest[1..]),
        _ => return Err(refused()),
    };
    let (h, m) = hm.split_once(':').unwrap_or((hm, "0"));
    let (h, m): (i64, i64) = (h.parse().map_err(|_| refused())?, m.parse().map_err(|_| refused())?);
    if h > 18 || m > 59 {
        return Err(refused());
    }
    Ok(sign * (h * 3_600_000 + m * 60_000))
}

/// A part of a `path.format`: text, or a field of the date and time with its width.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Piece {
    Text(String),
    Field(char, usize),
}

/// The Joda-style pattern letters Freshet writes: year (`y`, `Y`), month (`M`), day of month
/// (`d`), day of year (`D`), hour (`H`), minute (`m`), second (`s`), millisecond (`S`).
const LETTERS: &str = "yYMdDHmsS";

/// Parses a Joda-style pattern: letters are fields, `'...'` is quoted text (`''` a quote),
/// anything else is itself.
pub(super) fn parse_format(pattern: &str) -> std::result::Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            if chars.peek() == Some(&'\'') {
                chars.next();
                text.push('\'');
                continue;
            }
            loop {
                match chars.next() {
                    None => return Err("a quote is not closed".into()),
                    Some('\'') if chars.peek() == Some(&'\'') => {
                        chars.next();
                        text.push('\'');
                    }
                    Some('\'') => break,
                    Some(q) => text.push(q),
                }
            }
        } else if c.is_ascii_alphabetic() {
            if !LETTERS.contains(c) {
                return Err(format!(
                    "pattern letter {c:?} is not one Freshet writes (y, Y, M, d, D, H, m, s, S; quote text as 'text')"
                ));
            }
            let mut width = 1;
            while chars.peek() == Some(&c) {
                chars.next();
                width += 1;
            }
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Field(c, width));
        } else {
            text.push(c);
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    if !pieces.iter().any(|p| matches!(p, Piece::Field(..))) {
        return Err("the pattern has no date or time field".into());
    }
    let shape: String = pieces
        .iter()
        .map(|p| match p {
            Piece::Text(t) => t.as_str(),
            Piece::Field(..) => "0",
        })
        .collect();
    if shape.starts_with('/') || shape.ends_with('/') || shape.contains("//") {
        return Err("the pattern makes an empty directory name".into());
    }
    Ok(pieces)
}

/// The finest unit a pattern writes, in ms: the bucket a record's time falls in.
fn finest_unit(format: &[Piece]) -> i64 {
    format
        .iter()
        .filter_map(|p| match p {
            Piece::Field('S', _) => Some(1),
            Piece::Field('s', _) => Some(1_000),
            Piece::Field('m', _) => Some(60_000),
            Piece::Field('H', _) => Some(3_600_000),
            Piece::Field('d' | 'D', _) => Some(86_400_000),
            // Months and years are not of one length: a day's bucket is written by them.
            Piece::Field(..) => Some(86_400_000),
            Piece::Text(_) => None,
        })
        .min()
        .unwrap_or(3_600_000)
}

/// `ms` since the epoch (already in the zone) written by `format`.
pub(super) fn render(format: &[Piece], ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let of_day = ms.rem_euclid(86_400_000);
    let (year, month, day) = civil(days);
    let day_of_year = days - days_from_civil(year, 1, 1) + 1;
    let mut out = String::new();
    for piece in format {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Field(c, width) => {
                let value = match c {
                    // Joda writes a two-letter year as its last two digits.
                    'y' | 'Y' if *width == 2 => year.rem_euclid(100),
                    'y' | 'Y' => year,
                    'M' => month as i64,
                    'd' => day as i64,
                    'D' => day_of_year,
                    'H' => of_day / 3_600_000,
                    'm' => of_day / 60_000 % 60,
                    's' => of_day / 1_000 % 60,
                    _ => of_day % 1_000,
                };
                let _ = write!(out, "{value:0width$}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_joda_patterns_say() {
        let format = parse_format(DEFAULT_PATH_FORMAT).unwrap();
        // 2026-12-04T13:45:06.789Z
        let ms = 1_796_391_906_789;
        assert_eq!(render(&format, ms), "dt=2026-12-04/hour=13");
        let all = parse_format("'y'=yyyy/yy/M/MM/dd/DDD/HH:mm:ss.SSS/'''x'''").unwrap();
        assert_eq!(render(&all, ms), "y=2026/26/12/12/04/338/13:45:06.789/'x'");
        assert_eq!(render(&format, -1), "dt=1969-12-31/hour=23");
        assert_eq!(render(&parse_format("YYYY-MM-dd").unwrap(), 951_782_400_000), "2000-02-29");
    }

    #[test]
    fn bad_patterns_and_zones_are_refused_naming_the_part() {
        assert!(parse_format("'dt=YYYY").unwrap_err().contains("not closed"));
        assert!(parse_format("YYYY/ww").unwrap_err().contains("'w'"));
        assert!(parse_format("'just text'").unwrap_err().contains("no date"));
        assert_eq!(zone_offset("UTC").unwrap(), 0);
        assert_eq!(zone_offset("+01:00").unwrap(), 3_600_000);
        assert_eq!(zone_offset("UTC-05:30").unwrap(), -(5 * 3_600_000 + 30 * 60_000));
        assert!(zone_offset("Europe/Paris").unwrap_err().to_string().contains("named zones"));
    }

    #[test]
    fn buckets_follow_the_duration_and_the_zone() {
        let config = |pairs: &[(&str, &str)]| {
            Config::from_props(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
        };
        let layout = Layout::new(&config(&[
            ("path.format", "'dt'=YYYY-MM-dd/'hour'=HH/'min'=mm"),
            ("partition.duration.ms", "900000"),
            ("timezone", "+02:00"),
        ]))
        .unwrap();
        let record = SinkRecord {
            record: crate::record::ConnectRecord::new("t", None, Value::Null),
            original_topic: "t".into(),
            original_partition: 3,
            kafka_offset: 0,
        };
        assert_eq!(layout.directory(&record, 1_796_391_906_789).unwrap(), "dt=2026-12-04/hour=15/min=45");
        let default = Layout::new(&config(&[("partitioner.class", "DefaultPartitioner")])).unwrap();
        assert_eq!(default.directory(&record, 0).unwrap(), "partition=3");
        assert!(Layout::new(&config(&[("partitioner.class", "Nope")])).is_err());
        assert!(Layout::new(&config(&[("partitioner.class", "FieldPartitioner")])).is_err());
        assert_eq!(escape("a/b=c%"), "a%2Fb%3Dc%25");
    }
}
