//! The initial snapshot: the captured tables read, by cursor, in the snapshot the slot exported,
//! as `op: r` events; the last held back until it is known to be the snapshot's last.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;

use super::event::{Origin, Table, Text};
use super::wire::ident;
use super::{now_micros, Phase, PostgresCdcTask};
use crate::data::Value;
use crate::error::Result;
use crate::record::{ConnectRecord, SourceMap, SourceRecord};

/// Rows a snapshot poll fetches.
const SNAPSHOT_FETCH: usize = 2048;

#[derive(Debug)]
pub(super) struct Snapshot {
    /// Tables still to read (the first is being read, by cursor `freshet_snapshot` when open).
    pub(super) tables: VecDeque<Arc<Table>>,
    pub(super) cursor_open: bool,
    pub(super) consistent: u64,
    /// The last event read, held back until it is known whether it is the snapshot's last.
    pub(super) held: Option<SourceRecord>,
}

impl PostgresCdcTask {
    /// The next snapshot events.
    pub(super) async fn snapshot_poll(&mut self) -> Result<Vec<SourceRecord>> {
        let Phase::Snapshot(snap) = &mut self.phase else { unreachable!() };
        let Some(table) = snap.tables.front().cloned() else {
            // Done: the held event is the last, and the stream follows.
            let mut out = Vec::new();
            if let Some(mut last) = snap.held.take() {
                if let Some(offset) = last.source_offset.as_mut() {
                    offset.insert("last_snapshot_record".into(), json!(true));
                }
                set_snapshot_marker(&mut last, "last");
                out.push(last);
            }
            self.sql("ending the snapshot", "COMMIT").await?;
            tracing::info!(server = self.settings().prefix, "snapshot done; streaming changes");
            if self.settings().snapshot_mode == "initial_only" {
                self.phase = Phase::Done;
            } else {
                self.stream().await?;
            }
            return Ok(out);
        };
        let consistent = snap.consistent;
        if !snap.cursor_open {
            let columns: Vec<String> = table.columns.iter().map(|c| ident(&c.name)).collect();
            let sql = format!(
                "DECLARE freshet_snapshot NO SCROLL CURSOR FOR SELECT {} FROM {}.{}",
                columns.join(", "),
                ident(&table.schema),
                ident(&table.name)
            );
            let Phase::Snapshot(snap) = &mut self.phase else { unreachable!() };
            snap.cursor_open = true;
            self.sql(&format!("reading {}.{}", table.schema, table.name), &sql).await?;
        }
        let rows = self
            .sql(
                &format!("reading {}.{}", table.schema, table.name),
                &format!("FETCH {SNAPSHOT_FETCH} FROM freshet_snapshot"),
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        let origin =
            Origin { ts_micros: now_micros(), snapshot: "true", tx_id: None, lsn: Some(consistent), sequence: None };
        let s = self.settings();
        for row in &rows {
            let cells: Vec<Text> = (0..table.columns.len())
                .map(|i| row.get(i).map_or(Text::Null, |t| Text::Value(Bytes::copy_from_slice(t.as_bytes()))))
                .collect();
            let after = table.row(&cells);
            let key = table.key(&after);
            let value = table.envelope("r", None, Some(after), &origin, now_micros());
            let mut offset = SourceMap::new();
            offset.insert("snapshot".into(), json!(true));
            offset.insert("last_snapshot_record".into(), json!(false));
            offset.insert("lsn".into(), json!(consistent));
            offset.insert("ts_usec".into(), json!(origin.ts_micros));
            out.push(SourceRecord {
                source_partition: Some(s.partition()),
                source_offset: Some(offset),
                record: ConnectRecord {
                    topic: table.topic.clone(),
                    kafka_partition: None,
                    key_schema: table.key_schema(),
                    key,
                    value_schema: Some(table.envelope_schema()),
                    value,
                    timestamp: None,
                    headers: Vec::new(),
                },
                ack: None,
            });
        }
        let Phase::Snapshot(snap) = &mut self.phase else { unreachable!() };
        if rows.len() < SNAPSHOT_FETCH {
            snap.tables.pop_front();
            snap.cursor_open = false;
            self.sql("closing the snapshot cursor", "CLOSE freshet_snapshot").await?;
        }
        let Phase::Snapshot(snap) = &mut self.phase else { unreachable!() };
        // Hold the last back: the snapshot's last event says so in its offset.
        if let Some(last) = out.pop() {
            if let Some(held) = snap.held.replace(last) {
                out.insert(0, held);
            }
        }
        Ok(out)
    }
}

/// Debezium's snapshot marker in an event's `source` block.
fn set_snapshot_marker(record: &mut SourceRecord, marker: &'static str) {
    if let Value::Struct(envelope) = &mut record.record.value {
        if let Some(Value::Struct(source)) = envelope.values.get_mut(2) {
            if let Some(slot) = source.values.get_mut(4) {
                *slot = Value::String(marker.into());
            }
        }
    }
}
