//! A private PostgreSQL server for the connectors' tests and benchmarks (feature `testing`).
//!
//! [`Postgres::shared`] starts one server per test process, on a temporary directory and a free
//! loopback port, with `wal_level=logical` (for change capture); each test makes its own
//! database with [`Postgres::database`]. The server's binaries come from Debian's `postgresql`
//! package (`/usr/lib/postgresql/<version>/bin`, or `FRESHET_PG_BIN`), which `./dev test`
//! installs. `initdb` refuses to run as root, so as root the server runs as the `postgres` user.
//!
//! The server is started by a small shell script that holds a pipe from the test process: when
//! the test process ends, however it ends, the pipe closes and the script stops the server and
//! removes its directory, so no server outlives its tests.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::sync::OnceCell;

/// What the server script does: `$1` the binaries, `$2` the port, `$3` `durable` or not.
const SCRIPT: &str = r#"
set -e
dir=$(mktemp -d /tmp/freshet-pg.XXXXXX)
trap 'rm -rf "$dir"' EXIT
"$1/initdb" -D "$dir/data" -A trust -U freshet -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
fast=""
[ "$3" = durable ] || fast="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
"$1/postgres" -D "$dir/data" -p "$2" -k "$dir" -c listen_addresses=127.0.0.1 -c wal_level=logical \
    -c max_wal_senders=20 -c max_replication_slots=20 -c max_connections=200 $fast >"$dir/server.log" 2>&1 &
pid=$!
echo "$dir" >&2
cat >/dev/null || true
kill -INT "$pid" 2>/dev/null || true
wait "$pid" || true
"#;

/// A PostgreSQL server of the tests, stopped when dropped or when the process ends.
#[derive(Debug)]
pub struct Postgres {
    port: u16,
    child: Child,
}

static SHARED: OnceCell<Postgres> = OnceCell::const_new();

impl Postgres {
    /// The process's server, started on first use (fsync off: tests do not crash the server).
    pub async fn shared() -> &'static Postgres {
        SHARED.get_or_init(|| async { Postgres::start(false).await.unwrap_or_else(|e| panic!("{e}")) }).await
    }

    /// A new server; `durable` keeps PostgreSQL's default fsync settings (for benchmarks).
    pub async fn start(durable: bool) -> Result<Postgres, String> {
        let bin = binaries()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("finding a free port: {e}"))?
            .port();
        let args = [bin.display().to_string(), port.to_string(), if durable { "durable" } else { "fast" }.into()];
        let root = is_root();
        let mut command = if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "sh", "-c", SCRIPT, "sh"]);
            c
        } else {
            let mut c = Command::new("sh");
            c.args(["-c", SCRIPT, "sh"]);
            c
        };
        let child = command
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting PostgreSQL's server script: {e}"))?;
        let mut pg = Postgres { port, child };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = pg.child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = pg.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                return Err(format!("PostgreSQL did not start ({status}): {err}"));
            }
            if pg.connect("postgres").await.is_ok() {
                return Ok(pg);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("PostgreSQL did not answer on port {port} within 60 s"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A client of database `db` as the server's superuser, `freshet`.
    pub async fn connect(&self, db: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user("freshet")
            .dbname(db)
            .connect(tokio_postgres::NoTls)
            .await?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// A new, empty database named `name` (dropped first if a test made it before); its JDBC
    /// URL.
    pub async fn database(&self, name: &str) -> String {
        let admin = self.connect("postgres").await.expect("connecting to the test server");
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await.expect("DROP DATABASE");
        admin.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await.expect("CREATE DATABASE");
        self.url(name)
    }

    /// The JDBC URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("jdbc:postgresql://127.0.0.1:{}/{db}?user=freshet", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Closing the script's stdin stops the server.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// The server's binaries: `FRESHET_PG_BIN`, or the newest of Debian's.
fn binaries() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("FRESHET_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).ok_or_else(|| {
        "PostgreSQL's server is not installed (no /usr/lib/postgresql/*/bin/initdb): ./dev test installs it \
         (apt-get install postgresql), or set FRESHET_PG_BIN"
            .to_string()
    })
}
