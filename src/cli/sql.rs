//! `freshet sql`: statements from `-e` or standard input, an interactive prompt with history, and
//! the host that runs continuous queries (also used by `freshet broker`).

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use freshet::prelude::*;
use freshet::sql::{render, split_statements, OutputFormat, SqlError, SqlSession};

use crate::{Opened, Target};

#[derive(clap::Args)]
pub(crate) struct SqlArgs {
    #[command(flatten)]
    target: Target,
    /// The statements to run (else standard input is read, or a prompt opens on a terminal).
    #[arg(short = 'e', long = "execute", value_name = "SQL")]
    execute: Option<String>,
    /// How results print.
    #[arg(long, value_enum, default_value = "table")]
    format: SqlOutput,
    /// After the statements, run the continuous queries (and those created later, anywhere)
    /// until Ctrl-C or SIGTERM.
    #[arg(long)]
    serve: bool,
    /// Where hosted queries keep their state stores [default: `<data-dir>-sql-state`, or
    /// `freshet-sql-state` with `--bootstrap`].
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// The connect worker that `CREATE SOURCE|SINK CONNECTOR`, `SHOW CONNECTORS`, `DESCRIBE
    /// CONNECTOR` and `DROP CONNECTOR` go to (ksqlDB's `ksql.connect.url`): `freshet connect
    /// standalone`, `freshet broker --connect` or Kafka Connect.
    #[arg(long, value_name = "URL", default_value = "http://localhost:8083")]
    connect_url: String,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SqlOutput {
    /// An aligned table.
    Table,
    /// One JSON object per row.
    Json,
    /// CSV with a header row.
    Csv,
}

/// Where the queries hosted for a data directory keep their stores: beside it.
pub(crate) fn state_dir_of(data_dir: &Path) -> PathBuf {
    let mut name = data_dir.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "freshet-data".into());
    name.push("-sql-state");
    data_dir.with_file_name(name)
}

/// Runs the continuous queries of a log: a hosting session, following what other sessions create
/// and drop (once a second).
pub(crate) struct QueryHost {
    session: Arc<SqlSession>,
    follow: tokio::task::JoinHandle<()>,
}

impl QueryHost {
    pub(crate) async fn start(
        substrate: Arc<dyn Substrate>,
        state_dir: &Path,
        connect_url: Option<&str>,
    ) -> anyhow::Result<QueryHost> {
        let handle = tokio::runtime::Handle::current();
        let mut session =
            SqlSession::hosting(substrate, handle, state_dir).await.context("starting the continuous SQL queries")?;
        if let Some(url) = connect_url {
            session = session.with_connectors(Arc::new(crate::connect::RestConnectors::new(url)));
        }
        let session = Arc::new(session);
        let following = session.clone();
        let follow = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if let Err(error) = following.refresh().await {
                    tracing::warn!(%error, "reading the SQL declarations");
                }
            }
        });
        Ok(QueryHost { session, follow })
    }

    /// Stops the queries (they resume where they were when a host starts again).
    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        self.follow.abort();
        let _ = self.follow.await;
        let session = self.session;
        tokio::task::spawn_blocking(move || session.close()).await??;
        Ok(())
    }
}

pub(crate) async fn sql(args: SqlArgs) -> anyhow::Result<()> {
    let opened = Opened::open(&args.target).await?;
    let result = run(&args, &opened).await;
    opened.close().await?;
    result
}

async fn run(args: &SqlArgs, opened: &Opened) -> anyhow::Result<()> {
    let substrate: Arc<dyn Substrate> = match opened {
        Opened::Embedded(e) => Arc::new(e.clone()),
        #[cfg(feature = "remote")]
        Opened::Remote(r) => Arc::new(r.clone()),
    };
    let format = match args.format {
        SqlOutput::Table => OutputFormat::Table,
        SqlOutput::Json => OutputFormat::Json,
        SqlOutput::Csv => OutputFormat::Csv,
    };
    let interactive = args.execute.is_none() && std::io::stdin().is_terminal();
    let state_dir = args.state_dir.clone().unwrap_or_else(|| match &args.target.bootstrap {
        Some(_) => PathBuf::from("freshet-sql-state"),
        None => state_dir_of(&args.target.data_dir),
    });
    if interactive || args.serve {
        let host = QueryHost::start(substrate.clone(), &state_dir, Some(&args.connect_url)).await?;
        let result = if interactive { prompt(&host.session, format).await } else { serve(args, &host, format).await };
        host.stop().await?;
        return result;
    }
    let session = SqlSession::new(substrate.clone())
        .await?
        .with_connectors(Arc::new(crate::connect::RestConnectors::new(&args.connect_url)));
    let text = match &args.execute {
        Some(text) => text.clone(),
        None => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("reading statements from standard input")?;
            text
        }
    };
    for statement in split_statements(&text) {
        execute(&session, statement, format).await?;
    }
    Ok(())
}

/// Runs one statement and prints its rows.
async fn execute(session: &SqlSession, statement: &str, format: OutputFormat) -> anyhow::Result<()> {
    let batches =
        session.execute(statement).await.map_err(|e| anyhow::anyhow!("{e}\n{}", in_statement(statement, &e)))?;
    if batches.iter().any(|b| b.num_columns() > 0) {
        let rendered = render(&batches, format)?;
        writeln!(std::io::stdout().lock(), "{}", rendered.trim_end())?;
    }
    Ok(())
}

/// The statement an error is in, marked under the part the error names when its position is
/// known.
fn in_statement(statement: &str, e: &SqlError) -> String {
    const PREFIX: &str = "  in the statement: ";
    let statement = statement.trim_end();
    let mut out = format!("{PREFIX}{statement}");
    let Some((line, first, last)) = e.position() else { return out };
    let Some(text) = statement.lines().nth(line as usize - 1) else { return out };
    let (first, last) = (first as usize, (last as usize).max(first as usize));
    let marks = format!("{}{}", " ".repeat(first - 1), "^".repeat(last - first + 1));
    if statement.lines().count() == 1 {
        out.push_str(&format!("\n{}{marks}", " ".repeat(PREFIX.len())));
    } else {
        out.push_str(&format!("\n  line {line}: {text}\n  {}{marks}", " ".repeat(format!("line {line}: ").len())));
    }
    out
}

async fn serve(args: &SqlArgs, host: &QueryHost, format: OutputFormat) -> anyhow::Result<()> {
    if let Some(text) = &args.execute {
        for statement in split_statements(text) {
            execute(&host.session, statement, format).await?;
        }
    }
    let mut stop = crate::target::StopSignals::listen()?;
    crate::say("Running the continuous queries; Ctrl-C stops them.");
    stop.wait().await;
    Ok(())
}

/// The interactive prompt: statements end with `;`, history is kept in `~/.freshet_sql_history`.
async fn prompt(session: &SqlSession, format: OutputFormat) -> anyhow::Result<()> {
    use rustyline::error::ReadlineError;
    let mut editor = rustyline::DefaultEditor::new()?;
    let history = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".freshet_sql_history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    crate::say(
        "Freshet SQL. Statements end with ';'. Continuous queries run while this prompt is open. 'quit' leaves.",
    );
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() { "freshet> " } else { "      -> " };
        let line = match tokio::task::block_in_place(|| editor.readline(prompt)) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                buffer.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        if buffer.is_empty() && matches!(line.trim().trim_end_matches(';'), "quit" | "exit" | "\\q") {
            break;
        }
        buffer.push_str(&line);
        buffer.push('\n');
        if !buffer.trim_end().ends_with(';') {
            continue;
        }
        let text = std::mem::take(&mut buffer);
        let _ = editor.add_history_entry(text.trim());
        for statement in split_statements(&text) {
            if let Err(e) = execute(session, statement, format).await {
                let _ = writeln!(std::io::stderr().lock(), "error: {e:#}");
            }
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    Ok(())
}
