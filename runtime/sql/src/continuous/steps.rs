//! Row steps: the processors that evaluate `WHERE`, `HAVING` and `SELECT` expressions, and the raw key serde.

use super::*;

/// What a row step does.
#[derive(Clone)]
pub(super) enum Step {
    /// Keeps rows for which the predicate holds.
    Filter(Arc<Eval>),
    /// New rows from expressions.
    Project(Arc<Vec<Eval>>),
    /// Fills the metadata columns at these positions (partition, offset, timestamp, key).
    Metadata([Option<usize>; 4]),
    /// Sets the record's time to a timestamp column's value plus an offset in ms.
    Time(usize, i64),
}

struct RowStep {
    step: Step,
    /// What the step is, for errors.
    what: Arc<str>,
}

fn process_error(what: &str, e: DataFusionError) -> freshet_dsl::Error {
    freshet_dsl::Error::Process(format!("{what}: {}", e.strip_backtrace()))
}

impl Processor<Row, Row, Row, Row> for RowStep {
    fn process(
        &mut self,
        record: Record<Row, Row>,
        ctx: &mut ProcessorContext<'_, Row, Row>,
    ) -> freshet_dsl::Result<()> {
        match &self.step {
            Step::Filter(predicate) => {
                if predicate.holds(&record.value).map_err(|e| process_error(&self.what, e))? {
                    ctx.forward(record)?;
                }
                Ok(())
            }
            Step::Project(exprs) => {
                let row = exprs.iter().map(|e| e.eval(&record.value)).collect::<Result<Row>>();
                let row = row.map_err(|e| process_error(&self.what, e))?;
                ctx.forward(record.with_value(row))
            }
            Step::Metadata(slots) => {
                let mut record = record;
                let meta = ctx.record_meta().cloned();
                let values = [
                    meta.as_ref().map(|m| ScalarValue::Int32(Some(m.partition as i32))),
                    meta.as_ref().map(|m| ScalarValue::Int64(Some(m.offset))),
                    Some(ScalarValue::TimestampMillisecond(Some(record.timestamp), None)),
                    Some(match record.key.first() {
                        Some(ScalarValue::Binary(Some(b))) => {
                            ScalarValue::Utf8(Some(String::from_utf8_lossy(b).into_owned()))
                        }
                        _ => ScalarValue::Utf8(None),
                    }),
                ];
                for (slot, value) in slots.iter().zip(values) {
                    if let (Some(i), Some(v)) = (slot, value) {
                        record.value[*i] = v;
                    }
                }
                ctx.forward(record)
            }
            Step::Time(at, offset) => match record.value.get(*at) {
                Some(ScalarValue::TimestampMillisecond(Some(t), _)) => {
                    let timestamp = t.saturating_add(*offset);
                    ctx.forward(Record { timestamp, ..record })
                }
                other => Err(freshet_dsl::Error::Process(format!(
                    "{}: column {at} holds {other:?}, not a window's bound",
                    self.what
                ))),
            },
        }
    }
}

pub(super) fn step(stream: &KStream<Row, Row>, step: Step, what: &str, name: &str) -> KStream<Row, Row> {
    let what: Arc<str> = Arc::from(what);
    stream.process(move || RowStep { step: step.clone(), what: what.clone() }).named(name)
}

/// Record keys of a topic: the bytes as they are (a one-value row), so a query that does not
/// re-key writes its input's keys unchanged.
#[derive(Clone, Copy)]
pub(super) struct RawKey;

impl freshet_dsl::Serde<Row> for RawKey {
    fn serialize(&self, key: &Row) -> std::result::Result<Option<bytes::Bytes>, String> {
        match key.as_slice() {
            [ScalarValue::Binary(b)] => Ok(b.clone().map(bytes::Bytes::from)),
            key => Ok(Some(bytes::Bytes::from(row::key_json(key)))),
        }
    }
    fn deserialize(&self, data: Option<&[u8]>) -> std::result::Result<Row, String> {
        Ok(vec![ScalarValue::Binary(data.map(<[u8]>::to_vec))])
    }
    fn name(&self) -> String {
        "Key".into()
    }
}
