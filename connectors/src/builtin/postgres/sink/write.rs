//! Writing runs in one transaction: the tables made or evolved, each record checked against its
//! table, the last record per key kept, rows copied into staging tables and merged, and a batch
//! PostgreSQL refuses rewritten row by row. Failures are sorted by SQLSTATE into the rows' data,
//! what may pass, and what fails the task.

use std::collections::HashMap;

use futures::SinkExt;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::plan::{plan, Column, Run};
use super::{Db, InsertMode, Settings};
use crate::builtin::postgres::connection::describe;
use crate::builtin::postgres::copy::{CopyRows, PgType};
use crate::data::{Schema, Value};
use crate::error::ConnectError;
use crate::record::SinkRecord;

/// Why a write failed.
#[derive(Debug)]
pub(super) enum WriteError {
    /// It may pass: the connection was lost, a deadlock, the server is short of something.
    Retry(String),
    /// It will not pass by trying again: the task fails.
    Fatal(String),
}

/// A statement's failure, sorted by what it means for the records.
#[derive(Debug)]
pub(super) enum StatementError {
    /// The rows' data: rewrite row by row, report the rows refused.
    Data(String),
    /// Not the data's fault.
    Write(WriteError),
}

impl From<WriteError> for StatementError {
    fn from(e: WriteError) -> Self {
        StatementError::Write(e)
    }
}

/// Sorts a PostgreSQL error by SQLSTATE: data exceptions (class 22), integrity violations (23)
/// and a column whose type the data cannot take (42804) are the rows' data; a lost connection,
/// a serialization failure or deadlock (40), lack of resources (53) or a server shutting down
/// (57P) may pass; anything else is fatal.
pub(super) fn classify(e: &tokio_postgres::Error, what: &str) -> StatementError {
    let message = format!("{what}: {}", describe(e));
    let Some(db) = e.as_db_error() else {
        return StatementError::Write(WriteError::Retry(message));
    };
    let code = db.code().code();
    if code.starts_with("22") || code.starts_with("23") || *db.code() == SqlState::DATATYPE_MISMATCH {
        StatementError::Data(message)
    } else if code.starts_with("08") || code.starts_with("40") || code.starts_with("53") || code.starts_with("57P") {
        StatementError::Write(WriteError::Retry(message))
    } else {
        StatementError::Write(WriteError::Fatal(message))
    }
}

/// A statement's failure as a write's: data errors outside a row's write are fatal too.
pub(super) fn fail(e: &tokio_postgres::Error, what: &str) -> WriteError {
    match classify(e, what) {
        StatementError::Data(m) => WriteError::Fatal(m),
        StatementError::Write(w) => w,
    }
}

/// What the sink knows of a table: its columns.
#[derive(Debug, Clone)]
pub(super) struct Table {
    pub(super) columns: HashMap<String, TableColumn>,
}

#[derive(Debug, Clone)]
pub(super) struct TableColumn {
    /// As PostgreSQL writes it (`character varying(20)`, `integer`).
    pub(super) type_sql: String,
    pub(super) family: Family,
    /// `pg_type.typname`.
    pub(super) type_name: String,
    pub(super) not_null: bool,
}

/// Kinds of column type, for what a field of each [`PgType`] may fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    Number,
    Text,
    Bool,
    Bytes,
    Time,
    Json,
    Other,
}

impl Family {
    pub(super) fn of(type_name: &str) -> Family {
        match type_name {
            "int2" | "int4" | "int8" | "float4" | "float8" | "numeric" => Family::Number,
            "text" | "varchar" | "bpchar" | "name" | "citext" => Family::Text,
            "bool" => Family::Bool,
            "bytea" => Family::Bytes,
            "date" | "time" | "timetz" | "timestamp" | "timestamptz" => Family::Time,
            "json" | "jsonb" => Family::Json,
            _ => Family::Other,
        }
    }
}

/// How a staged field reaches its column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fit {
    /// As it is (PostgreSQL's assignment casts: `integer` into `bigint`, anything into `text`).
    Assign,
    /// Cast to the column's type (text into `uuid`, `jsonb` into `json`).
    Cast,
    /// It cannot.
    Mismatch,
}

pub(super) fn fit(ty: PgType, family: Family) -> Fit {
    use Family as F;
    match (ty, family) {
        (_, F::Text) if !matches!(ty, PgType::Bytea | PgType::Jsonb) => Fit::Assign,
        // Text parsed as the column's type: a uuid, an enum's label, an ISO date. Not as a number,
        // a boolean or bytes: a text field where the table has one of those is a schema mistake,
        // reported once per record rather than as whatever PostgreSQL fails to parse.
        (PgType::Text, F::Time | F::Json | F::Other) => Fit::Cast,
        (PgType::Bool, F::Bool) | (PgType::Bytea, F::Bytes) => Fit::Assign,
        (PgType::Int2 | PgType::Int4 | PgType::Int8 | PgType::Float4 | PgType::Float8 | PgType::Numeric, F::Number) => {
            Fit::Assign
        }
        (PgType::Date | PgType::Time | PgType::Timestamp, F::Time) => Fit::Assign,
        (PgType::Jsonb, F::Json | F::Text | F::Other) => Fit::Cast,
        (_, F::Other) => Fit::Cast,
        _ => Fit::Mismatch,
    }
}

impl Db {
    /// Writes the records in one transaction; the records that did not fit, with why.
    pub(super) async fn write(
        &mut self,
        settings: &Settings,
        records: &[SinkRecord],
    ) -> std::result::Result<Vec<(usize, String)>, WriteError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            self.client = Some(settings.connection.connect().await.map_err(|e| match e {
                ConnectError::Retriable(m) => WriteError::Retry(m),
                other => WriteError::Fatal(other.to_string()),
            })?);
        }
        let (runs, mut rejected) = plan(settings, records);
        if runs.is_empty() {
            return Ok(rejected);
        }
        let client = self.client.as_ref().expect("connected above");
        client.batch_execute("BEGIN").await.map_err(|e| fail(&e, "BEGIN"))?;
        let mut writer = Writer { settings, client, tables: &mut self.tables, n_stages: &mut self.n_stages };
        let mut result = Ok(());
        for run in &runs {
            result = writer.run(run, records, &mut rejected).await;
            if result.is_err() {
                break;
            }
        }
        if let Err(e) = result {
            let _ = client.batch_execute("ROLLBACK").await;
            self.tables.clear();
            return Err(e);
        }
        if let Err(e) = client.batch_execute("COMMIT").await {
            self.tables.clear();
            return Err(fail(&e, "COMMIT"));
        }
        Ok(rejected)
    }
}

/// Writes runs within a transaction.
pub(super) struct Writer<'a> {
    pub(super) settings: &'a Settings,
    pub(super) client: &'a Client,
    pub(super) tables: &'a mut HashMap<String, Table>,
    pub(super) n_stages: &'a mut u64,
}

/// A row to write: a record, and whether it deletes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Row {
    pub(super) idx: usize,
    pub(super) delete: bool,
}

impl Writer<'_> {
    /// Writes one run: makes or evolves the table, checks each record against it, keeps the last
    /// record per key, and writes the rest; a batch PostgreSQL refuses for its data is rewritten
    /// row by row.
    pub(super) async fn run(
        &mut self,
        run: &Run,
        records: &[SinkRecord],
        rejected: &mut Vec<(usize, String)>,
    ) -> std::result::Result<(), WriteError> {
        let deletes_only = run.value_schema.is_none();
        let Some(table) = self.table(run, deletes_only).await? else {
            // Deletes from a table that does not exist: nothing to delete.
            return Ok(());
        };
        // What each column may take, or why a record with a value for it does not fit.
        let mut casts = Vec::with_capacity(run.columns.len());
        let mut unfit: Vec<Option<String>> = Vec::with_capacity(run.columns.len());
        for c in &run.columns {
            match table.columns.get(&c.name) {
                None => {
                    casts.push(Fit::Assign);
                    unfit.push(Some(format!(
                        "table {} has no column {:?} for the record's field {:?} (set auto.evolve=true to add it)",
                        run.table, c.name, c.name
                    )));
                }
                Some(tc) => {
                    let f = fit(c.ty, tc.family);
                    casts.push(f);
                    unfit.push((f == Fit::Mismatch).then(|| {
                        format!(
                            "column {:?} of table {} is {}, which cannot hold the record's {} field",
                            c.name, run.table, tc.type_sql, c.schema.ty
                        )
                    }));
                }
            }
        }
        // Check each record and keep the last of each key.
        let has_pk = run.columns.iter().any(|c| c.pk);
        let mut rows: Vec<Option<Row>> = Vec::with_capacity(run.records.len());
        let mut by_key: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut key = CopyRows::new();
        'records: for &idx in &run.records {
            let r = &records[idx];
            let delete = r.record.value.is_null();
            for (c, why) in run.columns.iter().zip(&unfit) {
                if delete && !c.pk {
                    continue;
                }
                let value = c.value(r);
                if let (Some(why), Some(v)) = (why, value) {
                    if !v.is_null() || c.pk {
                        rejected.push((idx, why.clone()));
                        continue 'records;
                    }
                }
                if let (Some(tc), Some(v)) = (table.columns.get(&c.name), value) {
                    if let Err(why) = check(&run.table, c, tc, v) {
                        rejected.push((idx, why));
                        continue 'records;
                    }
                }
            }
            if has_pk {
                let mark = key.mark();
                for c in run.columns.iter().filter(|c| c.pk) {
                    if let Err(why) = c.write(&mut key, r) {
                        rejected.push((idx, format!("table {}: {why}", run.table)));
                        key.undo(mark);
                        continue 'records;
                    }
                }
                let k = key.since(mark).to_vec();
                key.undo(mark);
                if let Some(before) = by_key.insert(k, rows.len()) {
                    rows[before] = None;
                }
            }
            rows.push(Some(Row { idx, delete }));
        }
        let rows: Vec<Row> = rows.into_iter().flatten().collect();
        for chunk in rows.chunks(self.settings.batch_size) {
            self.exec("SAVEPOINT freshet_batch").await?;
            match self.write_rows(run, &casts, chunk, records).await {
                Ok(refused) => rejected.extend(refused),
                Err(StatementError::Write(e)) => return Err(e),
                Err(StatementError::Data(_)) => {
                    // Find the rows PostgreSQL refuses, one at a time.
                    self.exec("ROLLBACK TO SAVEPOINT freshet_batch").await?;
                    for row in chunk {
                        self.exec("SAVEPOINT freshet_row").await?;
                        match self.write_rows(run, &casts, std::slice::from_ref(row), records).await {
                            Ok(refused) => rejected.extend(refused),
                            Err(StatementError::Write(e)) => return Err(e),
                            Err(StatementError::Data(why)) => {
                                self.exec("ROLLBACK TO SAVEPOINT freshet_row").await?;
                                let why = self.name_the_column(run, &casts, &records[row.idx], why).await?;
                                rejected.push((row.idx, why));
                            }
                        }
                        self.exec("RELEASE SAVEPOINT freshet_row").await?;
                    }
                }
            }
            self.exec("RELEASE SAVEPOINT freshet_batch").await?;
        }
        Ok(())
    }

    /// PostgreSQL's refusal of a row, with the column named when it is a text field that the
    /// column's type could not parse (PostgreSQL's message names the type and the value only):
    /// each such field is cast again alone, under a savepoint, to find it.
    pub(super) async fn name_the_column(
        &self,
        run: &Run,
        casts: &[Fit],
        record: &SinkRecord,
        why: String,
    ) -> std::result::Result<String, WriteError> {
        let Some(table) = self.tables.get(&run.table) else { return Ok(why) };
        for (c, fit) in run.columns.iter().zip(casts) {
            let (Fit::Cast, Some(Value::String(text)), Some(tc)) = (fit, c.value(record), table.columns.get(&c.name))
            else {
                continue;
            };
            self.exec("SAVEPOINT freshet_probe").await?;
            let probe = format!("SELECT $1::text::{}", tc.type_sql);
            let refused = self.client.query(probe.as_str(), &[text]).await.is_err();
            self.exec(if refused { "ROLLBACK TO SAVEPOINT freshet_probe" } else { "RELEASE SAVEPOINT freshet_probe" })
                .await?;
            if refused {
                return Ok(format!("column {:?} of table {} is {}: {why}", c.name, run.table, tc.type_sql));
            }
        }
        Ok(why)
    }

    /// Runs a statement whose failure fails the write.
    pub(super) async fn exec(&self, sql: &str) -> std::result::Result<(), WriteError> {
        self.client.batch_execute(sql).await.map_err(|e| fail(&e, sql))
    }

    /// The table a run writes to, made or evolved as the config allows; `None` when it does not
    /// exist and only deletes were asked of it.
    pub(super) async fn table(
        &mut self,
        run: &Run,
        deletes_only: bool,
    ) -> std::result::Result<Option<Table>, WriteError> {
        let mut table = match self.tables.get(&run.table) {
            Some(t) => Some(t.clone()),
            None => describe_table(self.client, &run.table).await?,
        };
        if table.is_none() {
            if deletes_only {
                return Ok(None);
            }
            if !self.settings.auto_create {
                return Err(WriteError::Fatal(format!(
                    "table {} does not exist, and auto.create is false (create it, or set auto.create=true)",
                    run.table
                )));
            }
            let s = self.settings;
            let mut defs: Vec<String> = run
                .columns
                .iter()
                .map(|c| {
                    let not_null = if c.pk || !c.schema.optional { " NOT NULL" } else { "" };
                    format!("{} {}{not_null}{}", s.ident(&c.name), c.ty.column_sql(), default_sql(&c.schema))
                })
                .collect();
            let pk: Vec<String> = run.columns.iter().filter(|c| c.pk).map(|c| s.ident(&c.name)).collect();
            if !pk.is_empty() {
                defs.push(format!("PRIMARY KEY ({})", pk.join(", ")));
            }
            let sql = format!("CREATE TABLE IF NOT EXISTS {} ({})", run.table, defs.join(", "));
            tracing::info!(table = run.table, "creating the table (auto.create)");
            self.exec(&sql).await?;
            table = describe_table(self.client, &run.table).await?;
        }
        let mut table = table.ok_or_else(|| WriteError::Fatal(format!("table {} vanished", run.table)))?;
        if self.settings.auto_evolve && !deletes_only {
            let missing: Vec<&Column> = run.columns.iter().filter(|c| !table.columns.contains_key(&c.name)).collect();
            let mut added = false;
            for c in missing {
                if c.pk || (!c.schema.optional && c.schema.default.is_none()) {
                    // Left for the records to be reported: a required field without a default cannot be
                    // added to a table that may have rows already (as the JDBC sink refuses it too).
                    continue;
                }
                let sql = format!(
                    "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}{}",
                    run.table,
                    self.settings.ident(&c.name),
                    c.ty.column_sql(),
                    default_sql(&c.schema)
                );
                tracing::info!(table = run.table, column = c.name, "adding a column (auto.evolve)");
                self.exec(&sql).await?;
                added = true;
            }
            if added {
                table = describe_table(self.client, &run.table)
                    .await?
                    .ok_or_else(|| WriteError::Fatal(format!("table {} vanished", run.table)))?;
            }
        }
        self.tables.insert(run.table.clone(), table.clone());
        Ok(Some(table))
    }

    /// Writes rows through staging tables; records whose values do not encode are refused.
    pub(super) async fn write_rows(
        &mut self,
        run: &Run,
        casts: &[Fit],
        rows: &[Row],
        records: &[SinkRecord],
    ) -> std::result::Result<Vec<(usize, String)>, StatementError> {
        let s = self.settings;
        let mut refused = Vec::new();
        let upserts: Vec<Row> = rows.iter().filter(|r| !r.delete).copied().collect();
        let deletes: Vec<Row> = rows.iter().filter(|r| r.delete).copied().collect();
        if !upserts.is_empty() {
            let columns: Vec<(usize, &Column)> = run
                .columns
                .iter()
                .enumerate()
                .filter(|(i, c)| {
                    self.tables.get(&run.table).is_some_and(|t| t.columns.contains_key(&c.name))
                        && casts[*i] != Fit::Mismatch
                })
                .collect();
            let stage = self.stage(&columns).await?;
            let n = self.copy(&stage, &columns, &upserts, records, &run.table, &mut refused).await?;
            if n > 0 {
                let names: Vec<String> = columns.iter().map(|(_, c)| s.ident(&c.name)).collect();
                let exprs: Vec<String> = columns.iter().map(|(i, c)| self.expr("s", run, c, casts[*i])).collect();
                let sql = match s.insert_mode {
                    InsertMode::Insert => format!(
                        "INSERT INTO {} ({}) SELECT {} FROM {stage} s",
                        run.table,
                        names.join(", "),
                        exprs.join(", ")
                    ),
                    InsertMode::Upsert => {
                        let pk: Vec<&String> =
                            columns.iter().zip(&names).filter(|((_, c), _)| c.pk).map(|(_, n)| n).collect();
                        let set: Vec<String> = columns
                            .iter()
                            .zip(&names)
                            .filter(|((_, c), _)| !c.pk)
                            .map(|(_, n)| format!("{n} = EXCLUDED.{n}"))
                            .collect();
                        let action = if set.is_empty() {
                            "NOTHING".to_string()
                        } else {
                            format!("UPDATE SET {}", set.join(", "))
                        };
                        format!(
                            "INSERT INTO {} AS t ({}) SELECT {} FROM {stage} s ON CONFLICT ({}) DO {action}",
                            run.table,
                            names.join(", "),
                            exprs.join(", "),
                            pk.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ")
                        )
                    }
                    InsertMode::Update => {
                        let set: Vec<String> = columns
                            .iter()
                            .zip(&names)
                            .zip(&exprs)
                            .filter(|(((_, c), _), _)| !c.pk)
                            .map(|((_, n), e)| format!("{n} = {e}"))
                            .collect();
                        if set.is_empty() {
                            String::new()
                        } else {
                            format!(
                                "UPDATE {} AS t SET {} FROM {stage} s WHERE {}",
                                run.table,
                                set.join(", "),
                                self.pk_match(run, &columns, casts)
                            )
                        }
                    }
                };
                if !sql.is_empty() {
                    self.client
                        .batch_execute(&sql)
                        .await
                        .map_err(|e| classify(&e, &format!("writing to {}", run.table)))?;
                }
            }
            self.exec(&format!("DROP TABLE {stage}")).await?;
        }
        if !deletes.is_empty() {
            let columns: Vec<(usize, &Column)> = run.columns.iter().enumerate().filter(|(_, c)| c.pk).collect();
            let stage = self.stage(&columns).await?;
            let n = self.copy(&stage, &columns, &deletes, records, &run.table, &mut refused).await?;
            if n > 0 {
                let sql = format!(
                    "DELETE FROM {} AS t USING {stage} s WHERE {}",
                    run.table,
                    self.pk_match(run, &columns, casts)
                );
                self.client
                    .batch_execute(&sql)
                    .await
                    .map_err(|e| classify(&e, &format!("deleting from {}", run.table)))?;
            }
            self.exec(&format!("DROP TABLE {stage}")).await?;
        }
        Ok(refused)
    }

    /// A staging table for these columns, dropped at commit.
    pub(super) async fn stage(&mut self, columns: &[(usize, &Column)]) -> std::result::Result<String, StatementError> {
        *self.n_stages += 1;
        let stage = format!("freshet_stage_{}", self.n_stages);
        let defs: Vec<String> =
            columns.iter().map(|(_, c)| format!("{} {}", self.settings.ident(&c.name), c.ty.stage_sql())).collect();
        let sql = format!("CREATE TEMPORARY TABLE {stage} ({}) ON COMMIT DROP", defs.join(", "));
        self.exec(&sql).await?;
        Ok(stage)
    }

    /// Copies the rows' columns into `stage`; rows whose values do not encode are refused. How
    /// many rows were copied.
    pub(super) async fn copy(
        &self,
        stage: &str,
        columns: &[(usize, &Column)],
        rows: &[Row],
        records: &[SinkRecord],
        table: &str,
        refused: &mut Vec<(usize, String)>,
    ) -> std::result::Result<usize, StatementError> {
        let mut copy = CopyRows::new();
        'rows: for row in rows {
            let mark = copy.mark();
            copy.row(columns.len());
            for (_, c) in columns {
                if let Err(why) = c.write(&mut copy, &records[row.idx]) {
                    copy.undo(mark);
                    copy.unrow();
                    refused.push((row.idx, format!("table {table}: {why}")));
                    continue 'rows;
                }
            }
        }
        let n = copy.n_rows();
        if n == 0 {
            return Ok(0);
        }
        let names: Vec<String> = columns.iter().map(|(_, c)| self.settings.ident(&c.name)).collect();
        let sql = format!("COPY {stage} ({}) FROM STDIN (FORMAT binary)", names.join(", "));
        let what = format!("copying rows for {table}");
        let sink = self.client.copy_in::<str, bytes::Bytes>(sql.as_str()).await.map_err(|e| classify(&e, &what))?;
        futures::pin_mut!(sink);
        sink.send(copy.finish()).await.map_err(|e| classify(&e, &what))?;
        sink.finish().await.map_err(|e| classify(&e, &what))?;
        Ok(n)
    }

    /// A staged column as the table's column takes it.
    pub(super) fn expr(&self, alias: &str, run: &Run, c: &Column, fit: Fit) -> String {
        let name = format!("{alias}.{}", self.settings.ident(&c.name));
        match (fit, self.tables.get(&run.table).and_then(|t| t.columns.get(&c.name))) {
            (Fit::Cast, Some(tc)) => format!("{name}::{}", tc.type_sql),
            _ => name,
        }
    }

    /// `t.pk = s.pk AND ...`.
    pub(super) fn pk_match(&self, run: &Run, columns: &[(usize, &Column)], casts: &[Fit]) -> String {
        columns
            .iter()
            .filter(|(_, c)| c.pk)
            .map(|(i, c)| format!("t.{} = {}", self.settings.ident(&c.name), self.expr("s", run, c, casts[*i])))
            .collect::<Vec<_>>()
            .join(" AND ")
    }
}

/// Whether a record's value fits a column beyond its type: a null into NOT NULL, an integer out of
/// the column's range.
pub(super) fn check(table: &str, c: &Column, tc: &TableColumn, value: &Value) -> std::result::Result<(), String> {
    if value.is_null() {
        if tc.not_null || c.pk {
            return Err(format!(
                "column {:?} of table {table} is NOT NULL, but the record's {:?} is null",
                c.name, c.name
            ));
        }
        return Ok(());
    }
    let (min, max) = match tc.type_name.as_str() {
        "int2" => (i64::from(i16::MIN), i64::from(i16::MAX)),
        "int4" => (i64::from(i32::MIN), i64::from(i32::MAX)),
        _ => return Ok(()),
    };
    let v = match value {
        Value::Int8(v) => i64::from(*v),
        Value::Int16(v) => i64::from(*v),
        Value::Int32(v) => i64::from(*v),
        Value::Int64(v) => *v,
        _ => return Ok(()),
    };
    {
        if v < min || v > max {
            return Err(format!("column {:?} of table {table} is {}, which cannot hold {v}", c.name, tc.type_sql));
        }
    }
    Ok(())
}

/// ` DEFAULT <literal>` for a schema's default, where it is a number, a boolean or text.
pub(super) fn default_sql(schema: &Schema) -> String {
    match &schema.default {
        Some(Value::Int8(v)) => format!(" DEFAULT {v}"),
        Some(Value::Int16(v)) => format!(" DEFAULT {v}"),
        Some(Value::Int32(v)) if schema.name.is_none() => format!(" DEFAULT {v}"),
        Some(Value::Int64(v)) if schema.name.is_none() => format!(" DEFAULT {v}"),
        Some(Value::Float32(v)) if v.is_finite() => format!(" DEFAULT {v}"),
        Some(Value::Float64(v)) if v.is_finite() => format!(" DEFAULT {v}"),
        Some(Value::Boolean(v)) => format!(" DEFAULT {v}"),
        Some(Value::String(v)) if !v.contains('\0') => format!(" DEFAULT '{}'", v.replace('\'', "''")),
        _ => String::new(),
    }
}

/// A table's columns, or `None` when there is no such table.
pub(super) async fn describe_table(client: &Client, table: &str) -> std::result::Result<Option<Table>, WriteError> {
    const SQL: &str = "SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typname, a.attnotnull \
                       FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
                       WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped";
    let rows = client.query(SQL, &[&table]).await.map_err(|e| fail(&e, &format!("reading the columns of {table}")))?;
    if rows.is_empty() {
        return Ok(None);
    }
    let columns = rows
        .iter()
        .map(|row| {
            let type_name: String = row.get(2);
            (
                row.get::<_, String>(0),
                TableColumn { type_sql: row.get(1), family: Family::of(&type_name), type_name, not_null: row.get(3) },
            )
        })
        .collect();
    Ok(Some(Table { columns }))
}
