//! Streaming the slot: pgoutput's changes as events, a transaction's together at its commit, and
//! the slot confirmed (standby status updates) only past transactions the log acknowledged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::event::{Origin, Text};
use super::pgoutput::{self, Cell, Logical, Stream};
use super::{now_micros, wire, PostgresCdcTask};
use crate::data::{SchemaRef, Struct, Value};
use crate::error::{ConnectError, Result};
use crate::record::{ConnectRecord, SourceAck, SourceMap, SourceRecord};

/// A transaction being read from the stream.
#[derive(Debug)]
pub(super) struct Tx {
    xid: u32,
    commit_micros: i64,
    records: Vec<(SourceRecord, u64)>,
}

impl PostgresCdcTask {
    /// Reads the stream for up to `wait`: whole transactions, at most about `max.batch.size`
    /// events.
    pub(super) async fn stream_poll(&mut self, wait: Duration) -> Result<Vec<SourceRecord>> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut out: Vec<SourceRecord> = Vec::new();
        let mut end_of_last_tx = None;
        loop {
            self.confirm_acknowledged();
            if self.last_status.is_none_or(|t| t.elapsed() >= self.settings().status_every) {
                self.send_status().await?;
            }
            if out.len() >= self.settings().max_batch {
                break;
            }
            let repl = self.repl.as_mut().expect("connected");
            let message = match tokio::time::timeout_at(deadline, repl.next()).await {
                Err(_) => break,
                // A broken stream fails the task: the worker restarts it, and the new task goes on
                // from the slot with a new connection.
                Ok(Err(e)) => return Err(ConnectError::Task(format!("reading the replication stream: {e}"))),
                Ok(Ok(None)) => return Err(ConnectError::Task("the server ended the replication stream".into())),
                Ok(Ok(Some(m))) => m,
            };
            let stream =
                pgoutput::parse(message).map_err(|e| ConnectError::Task(format!("the replication stream: {}", e.0)))?;
            match stream {
                Stream::Keepalive { wal_end, reply } => {
                    // Nothing in flight and nothing being read: the slot may move past WAL
                    // that held nothing for us.
                    if self.unacked.is_empty()
                        && self.tx.is_none()
                        && out.is_empty()
                        && wal_end > self.flushed
                        && self.flushed > 0
                    {
                        self.flushed = wal_end;
                    }
                    if reply {
                        self.send_status().await?;
                    }
                }
                Stream::Wal { start, message } => {
                    if let Some(end) = self.apply(start, message).await? {
                        let tx_records = end.1;
                        if tx_records.is_empty() {
                            if out.is_empty() {
                                self.unacked.push_back((end.0, None));
                            } else {
                                end_of_last_tx = Some(end.0);
                            }
                        } else {
                            out.extend(tx_records);
                            end_of_last_tx = Some(end.0);
                        }
                        if tokio::time::Instant::now() >= deadline {
                            break;
                        }
                    }
                }
            }
        }
        if let Some(end) = end_of_last_tx {
            let (ack, receiver) = SourceAck::new();
            match out.last_mut() {
                Some(last) => {
                    last.ack = Some(ack);
                    self.unacked.push_back((end, Some(receiver)));
                }
                None => self.unacked.push_back((end, None)),
            }
        }
        Ok(out)
    }

    /// Takes a pgoutput message; at a commit, the transaction's end and its events.
    async fn apply(&mut self, lsn: u64, message: Logical) -> Result<Option<(u64, Vec<SourceRecord>)>> {
        match message {
            Logical::Begin { xid, commit_micros, .. } => {
                self.tx = Some(Tx { xid, commit_micros, records: Vec::new() });
            }
            Logical::Relation(rel) => {
                let captured = self.settings().captures(&rel.schema, &rel.name);
                let table = match captured {
                    true => Some(Arc::new(self.table(&rel.schema, &rel.name, Some(&rel)).await?)),
                    false => None,
                };
                self.relations.insert(rel.id, table);
            }
            Logical::Insert { relation, new } => self.change(lsn, relation, "c", None, false, Some(new))?,
            Logical::Update { relation, old, key_only, new } => {
                self.change(lsn, relation, "u", old, key_only, Some(new))?
            }
            Logical::Delete { relation, old, key_only } => {
                self.change(lsn, relation, "d", Some(old), key_only, None)?
            }
            Logical::Truncate | Logical::Other => {}
            Logical::Commit { commit_lsn, end_lsn, .. } => {
                let Some(tx) = self.tx.take() else { return Ok(None) };
                let skip = commit_lsn <= self.resume_after;
                let n = tx.records.len();
                let prev_commit = self.last_commit_lsn;
                self.last_commit_lsn = commit_lsn;
                if skip {
                    return Ok(Some((end_lsn, Vec::new())));
                }
                let records = tx
                    .records
                    .into_iter()
                    .enumerate()
                    .map(|(i, (mut r, event_lsn))| {
                        let mut offset = SourceMap::new();
                        offset.insert("lsn".into(), json!(event_lsn));
                        offset.insert("lsn_proc".into(), json!(event_lsn));
                        offset.insert("lsn_commit".into(), json!(commit_lsn));
                        offset.insert("txId".into(), json!(tx.xid));
                        offset.insert("ts_usec".into(), json!(tx.commit_micros + wire::PG_EPOCH_MICROS));
                        offset.insert("last_in_tx".into(), json!(i + 1 == n));
                        r.source_offset = Some(offset);
                        set_sequence(&mut r, prev_commit, event_lsn);
                        r
                    })
                    .collect();
                return Ok(Some((end_lsn, records)));
            }
        }
        Ok(None)
    }

    /// An insert, update or delete of a relation as an event (and a tombstone after a delete).
    fn change(
        &mut self,
        lsn: u64,
        relation: u32,
        op: &str,
        old: Option<Vec<Cell>>,
        key_only: bool,
        new: Option<Vec<Cell>>,
    ) -> Result<()> {
        let table = match self.relations.get(&relation) {
            Some(Some(t)) => t.clone(),
            Some(None) => return Ok(()),
            None => {
                return Err(ConnectError::Task(format!("the stream changed relation {relation} before describing it")))
            }
        };
        let s = self.settings.as_ref().expect("started");
        let Some(tx) = self.tx.as_mut() else {
            return Err(ConnectError::Task("the stream sent a change outside a transaction".into()));
        };
        let cells = |t: Vec<Cell>| -> Vec<Text> {
            t.into_iter()
                .map(|c| match c {
                    Cell::Null => Text::Null,
                    Cell::Unchanged => Text::Unchanged,
                    Cell::Text(b) => Text::Value(b),
                })
                .collect()
        };
        // A key-only old row (REPLICA IDENTITY DEFAULT) is the key's columns, the rest null.
        let before = old.map(|o| table.row(&cells(o)));
        let after = new.map(|n| table.row(&cells(n)));
        let origin = Origin {
            ts_micros: tx.commit_micros + wire::PG_EPOCH_MICROS,
            snapshot: "false",
            tx_id: Some(i64::from(tx.xid)),
            lsn: Some(lsn),
            sequence: None,
        };
        let record = |key: &Value, value_schema: Option<SchemaRef>, value| SourceRecord {
            source_partition: Some(s.partition()),
            source_offset: None,
            record: ConnectRecord {
                topic: table.topic.clone(),
                kafka_partition: None,
                key_schema: table.key_schema(),
                key: key.clone(),
                value_schema,
                value,
                timestamp: None,
                headers: Vec::new(),
            },
            ack: None,
        };
        let mut emit = |op: &str, before: Option<Struct>, after: Option<Struct>| {
            let key = table.key(after.as_ref().or(before.as_ref()).expect("a row"));
            let value = table.envelope(op, before, after, &origin, now_micros());
            tx.records.push((record(&key, Some(table.envelope_schema()), value), lsn));
            if op == "d" && s.tombstones {
                tx.records.push((record(&key, None, Value::Null), lsn));
            }
        };
        match (op, before, after) {
            // An update of the key: a delete of the old key (and its tombstone), then a create
            // of the new, as Debezium writes it.
            ("u", Some(b), Some(a)) if table.key(&b) != table.key(&a) => {
                emit("d", Some(b), None);
                emit("c", None, Some(a));
            }
            // Debezium gives no before for an update without REPLICA IDENTITY FULL.
            ("u", before, after) => emit("u", if key_only { None } else { before }, after),
            (op, before, after) => emit(op, before, after),
        }
        Ok(())
    }

    /// Moves `flushed` past the transactions whose events the log acknowledged.
    pub(super) fn confirm_acknowledged(&mut self) {
        while let Some((end, ack)) = self.unacked.front_mut() {
            let done = match ack {
                None => true,
                Some(receiver) => matches!(receiver.try_recv(), Ok(Ok(()))),
            };
            if !done {
                break;
            }
            self.flushed = self.flushed.max(*end);
            self.unacked.pop_front();
        }
    }

    pub(super) async fn send_status(&mut self) -> Result<()> {
        self.last_status = Some(Instant::now());
        if self.flushed == 0 {
            return Ok(());
        }
        let flushed = self.flushed;
        if let Some(repl) = self.repl.as_mut() {
            repl.status(flushed)
                .await
                .map_err(|e| ConnectError::Task(format!("telling the server the slot's position: {e}")))?;
        }
        Ok(())
    }
}

/// Debezium's `sequence` (`["<last commit LSN>","<this LSN>"]`) in an event's `source` block.
fn set_sequence(record: &mut SourceRecord, last_commit: u64, lsn: u64) {
    if let Value::Struct(envelope) = &mut record.record.value {
        if let Some(Value::Struct(source)) = envelope.values.get_mut(2) {
            if let Some(slot) = source.values.get_mut(6) {
                *slot = Value::String(format!("[\"{last_commit}\",\"{lsn}\"]"));
            }
        }
    }
}
