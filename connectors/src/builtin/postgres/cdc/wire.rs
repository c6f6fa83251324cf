//! A logical replication connection: PostgreSQL's streaming replication protocol on a
//! `replication=database` connection, which tokio-postgres does not speak (it has no CopyBoth
//! mode). Messages are written with postgres-protocol's frontend writers and authenticated with
//! its password, MD5 and SCRAM-SHA-256 code; backend messages are framed here.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
pub(super) const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub(super) struct Target {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) user: String,
    pub(super) password: Option<String>,
    pub(super) dbname: String,
}

/// An error the server sent, or the connection's.
#[derive(Debug, Clone)]
pub(super) struct WireError {
    pub(super) message: String,
    /// The SQLSTATE, when the server sent one.
    pub(super) code: Option<String>,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{} (SQLSTATE {code})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

fn io(what: &str, e: impl std::fmt::Display) -> WireError {
    WireError { message: format!("{what}: {e}"), code: None }
}

type Result<T> = std::result::Result<T, WireError>;

/// A connection in replication mode.
#[derive(Debug)]
pub(super) struct Replication {
    stream: TcpStream,
    /// Bytes read and not yet framed: kept across a cancelled read, so a read with a timeout
    /// loses nothing.
    read: BytesMut,
    write: BytesMut,
}

impl Replication {
    /// Connects, starts up in `replication=database` mode (UTC, ISO dates) and authenticates.
    pub(super) async fn connect(target: &Target) -> Result<Replication> {
        let stream = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| io(&format!("connecting to {}:{}", target.host, target.port), e))?;
        stream.set_nodelay(true).map_err(|e| io("setting TCP_NODELAY", e))?;
        let mut conn = Replication { stream, read: BytesMut::with_capacity(64 << 10), write: BytesMut::new() };
        let params = [
            ("user", target.user.as_str()),
            ("database", target.dbname.as_str()),
            ("replication", "database"),
            ("application_name", "freshet-cdc"),
            ("TimeZone", "UTC"),
            ("DateStyle", "ISO"),
            ("extra_float_digits", "3"),
        ];
        frontend::startup_message(params, &mut conn.write).map_err(|e| io("startup", e))?;
        conn.flush().await?;
        let password = || {
            target.password.clone().ok_or_else(|| WireError {
                message: format!("the server asks a password of {:?} and none is configured", target.user),
                code: None,
            })
        };
        let mut scram: Option<ScramSha256> = None;
        loop {
            let (tag, mut body) = conn.message().await?;
            match tag {
                b'R' => match body.get_i32() {
                    0 => {}
                    3 => {
                        frontend::password_message(password()?.as_bytes(), &mut conn.write)
                            .map_err(|e| io("password", e))?;
                        conn.flush().await?;
                    }
                    5 => {
                        let mut salt = [0u8; 4];
                        body.copy_to_slice(&mut salt);
                        let hash = md5_hash(target.user.as_bytes(), password()?.as_bytes(), salt);
                        frontend::password_message(hash.as_bytes(), &mut conn.write).map_err(|e| io("password", e))?;
                        conn.flush().await?;
                    }
                    10 => {
                        let offered = String::from_utf8_lossy(&body).into_owned();
                        if !offered.split('\0').any(|m| m == "SCRAM-SHA-256") {
                            return Err(io("authenticating", format!("no mechanism Freshet speaks among {offered:?}")));
                        }
                        let s = ScramSha256::new(password()?.as_bytes(), ChannelBinding::unsupported());
                        frontend::sasl_initial_response("SCRAM-SHA-256", s.message(), &mut conn.write)
                            .map_err(|e| io("SCRAM", e))?;
                        conn.flush().await?;
                        scram = Some(s);
                    }
                    11 => {
                        let s = scram.as_mut().ok_or_else(|| io("SCRAM", "a continue before the start"))?;
                        s.update(&body).map_err(|e| io("SCRAM", e))?;
                        frontend::sasl_response(s.message(), &mut conn.write).map_err(|e| io("SCRAM", e))?;
                        conn.flush().await?;
                    }
                    12 => {
                        let s = scram.as_mut().ok_or_else(|| io("SCRAM", "a final before the start"))?;
                        s.finish(&body).map_err(|e| io("SCRAM", e))?;
                    }
                    other => return Err(io("authenticating", format!("method {other} is not one Freshet speaks"))),
                },
                b'E' => return Err(server_error(&body)),
                b'Z' => return Ok(conn),
                // Parameter statuses, the cancel key, notices.
                _ => {}
            }
        }
    }

    async fn flush(&mut self) -> Result<()> {
        self.stream.write_all(&self.write).await.map_err(|e| io("writing to the server", e))?;
        self.write.clear();
        Ok(())
    }

    /// The next whole message: its tag and body. Cancel-safe: a partial message stays buffered.
    pub(super) async fn message(&mut self) -> Result<(u8, Bytes)> {
        loop {
            if self.read.len() >= 5 {
                let len = i32::from_be_bytes([self.read[1], self.read[2], self.read[3], self.read[4]]);
                if len < 4 {
                    return Err(io("reading from the server", format!("a message of length {len}")));
                }
                let total = 1 + len as usize;
                if self.read.len() >= total {
                    let mut frame = self.read.split_to(total).freeze();
                    let tag = frame.get_u8();
                    frame.advance(4);
                    return Ok((tag, frame));
                }
                self.read.reserve(total - self.read.len());
            }
            let n = self.stream.read_buf(&mut self.read).await.map_err(|e| io("reading from the server", e))?;
            if n == 0 {
                return Err(io("reading from the server", "the connection closed"));
            }
        }
    }

    /// Runs a command (a replication command or SQL) by the simple query protocol: its rows, as
    /// text.
    pub(super) async fn query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        frontend::query(sql, &mut self.write).map_err(|e| io("query", e))?;
        self.flush().await?;
        let mut rows = Vec::new();
        let mut failed = None;
        loop {
            let (tag, mut body) = self.message().await?;
            match tag {
                b'D' => {
                    let n = body.get_i16();
                    let mut row = Vec::with_capacity(n.max(0) as usize);
                    for _ in 0..n {
                        let len = body.get_i32();
                        if len < 0 {
                            row.push(None);
                        } else {
                            let text = body.split_to(len as usize);
                            row.push(Some(String::from_utf8_lossy(&text).into_owned()));
                        }
                    }
                    rows.push(row);
                }
                b'E' => failed = Some(server_error(&body)),
                b'Z' => return failed.map_or(Ok(rows), Err),
                _ => {}
            }
        }
    }

    /// Starts streaming `slot` from `lsn` (0: where the slot confirmed) with pgoutput's protocol
    /// 1 for `publication`.
    pub(super) async fn start(&mut self, slot: &str, lsn: u64, publication: &str) -> Result<()> {
        let sql = format!(
            "START_REPLICATION SLOT {} LOGICAL {} (proto_version '1', publication_names {})",
            ident(slot),
            format_lsn(lsn),
            literal(&ident(publication))
        );
        frontend::query(&sql, &mut self.write).map_err(|e| io("START_REPLICATION", e))?;
        self.flush().await?;
        loop {
            let (tag, body) = self.message().await?;
            match tag {
                b'W' => return Ok(()),
                b'E' => {
                    let e = server_error(&body);
                    // The ReadyForQuery after the error.
                    while self.message().await?.0 != b'Z' {}
                    return Err(e);
                }
                _ => {}
            }
        }
    }

    /// The next message of the stream: `None` when the server ended it.
    pub(super) async fn next(&mut self) -> Result<Option<Bytes>> {
        loop {
            let (tag, body) = self.message().await?;
            match tag {
                b'd' => return Ok(Some(body)),
                b'c' | b'C' | b'Z' => return Ok(None),
                b'E' => return Err(server_error(&body)),
                _ => {}
            }
        }
    }

    /// Tells the server everything up to `flushed` is durable downstream (a standby status
    /// update): the slot may confirm it.
    pub(super) async fn status(&mut self, flushed: u64) -> Result<()> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64);
        let mut msg = BytesMut::with_capacity(34);
        msg.put_u8(b'r');
        msg.put_u64(flushed);
        msg.put_u64(flushed);
        msg.put_u64(flushed);
        msg.put_i64(now - PG_EPOCH_MICROS);
        msg.put_u8(0);
        frontend::CopyData::new(msg.freeze()).map_err(|e| io("status", e))?.write(&mut self.write);
        self.flush().await
    }
}

/// An ErrorResponse's message, detail and SQLSTATE.
fn server_error(body: &[u8]) -> WireError {
    let (mut message, mut detail, mut code) = (String::new(), None, None);
    for field in body.split(|b| *b == 0) {
        let Some((&kind, text)) = field.split_first() else { continue };
        let text = String::from_utf8_lossy(text).into_owned();
        match kind {
            b'M' => message = text,
            b'D' => detail = Some(text),
            b'C' => code = Some(text),
            _ => {}
        }
    }
    if let Some(detail) = detail {
        message = format!("{message}; {detail}");
    }
    WireError { message, code }
}

/// An LSN as PostgreSQL writes it (`16/B374D848`).
pub(super) fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// An LSN from PostgreSQL's text.
pub(super) fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// A quoted identifier.
pub(super) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A quoted string literal.
pub(super) fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_are_read_and_written_as_postgresql_does() {
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
        assert_eq!(format_lsn(0), "0/0");
        assert_eq!(parse_lsn("nope"), None);
    }

    #[test]
    fn server_errors_name_their_code_and_detail() {
        let body = b"SERROR\0C42704\0Mreplication slot \"x\" does not exist\0Dsome detail\0\0";
        let e = server_error(body);
        assert_eq!(e.to_string(), "replication slot \"x\" does not exist; some detail (SQLSTATE 42704)");
    }
}
