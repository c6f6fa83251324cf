//! The stream of a logical replication slot: the CopyData messages of the streaming protocol
//! (`w` WAL data, `k` keepalives) and, inside WAL data, the messages of PostgreSQL's built-in
//! `pgoutput` plugin, protocol version 1 (begin, commit, relation, insert, update, delete,
//! truncate; origin, type and logical messages are passed over).

use bytes::{Buf, Bytes};

/// A message of the replication stream.
#[derive(Debug)]
pub(super) enum Stream {
    /// WAL data: where it starts, and what pgoutput made of it.
    Wal { start: u64, message: Logical },
    /// A keepalive: the server's WAL end, and whether it wants an answer now.
    Keepalive { wal_end: u64, reply: bool },
}

/// A pgoutput message.
#[derive(Debug)]
pub(super) enum Logical {
    Begin {
        commit_micros: i64,
        xid: u32,
    },
    Commit {
        commit_lsn: u64,
        end_lsn: u64,
    },
    Relation(Relation),
    Insert {
        relation: u32,
        new: Tuple,
    },
    /// `old` is the replica identity's columns (`key_only`) or the whole row (REPLICA IDENTITY
    /// FULL), when the update changed them or the identity is full.
    Update {
        relation: u32,
        old: Option<Tuple>,
        key_only: bool,
        new: Tuple,
    },
    Delete {
        relation: u32,
        old: Tuple,
        key_only: bool,
    },
    Truncate,
    /// Origin, type and logical decoding messages: nothing to write.
    Other,
}

/// A table as pgoutput describes it before its first change (and after each change of it).
#[derive(Debug, Clone)]
pub(super) struct Relation {
    pub(super) id: u32,
    pub(super) schema: String,
    pub(super) name: String,
    pub(super) columns: Vec<RelColumn>,
}

/// A column of a relation: whether it is part of the replica identity (the key), its name, type
/// and type modifier.
#[derive(Debug, Clone)]
pub(super) struct RelColumn {
    pub(super) key: bool,
    pub(super) name: String,
    pub(super) type_oid: u32,
    pub(super) type_mod: i32,
}

/// A row: per column, its value as text, null, or unchanged (a TOASTed value an update left).
pub(super) type Tuple = Vec<Cell>;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Cell {
    Null,
    Unchanged,
    Text(Bytes),
}

/// What does not parse: names the message.
#[derive(Debug)]
pub(super) struct Malformed(pub(super) String);

type Result<T> = std::result::Result<T, Malformed>;

fn need(buf: &Bytes, n: usize, what: &str) -> Result<()> {
    if buf.remaining() < n {
        return Err(Malformed(format!("a {what} message ends early")));
    }
    Ok(())
}

fn cstr(buf: &mut Bytes, what: &str) -> Result<String> {
    let end = buf.iter().position(|b| *b == 0).ok_or_else(|| Malformed(format!("a {what} name is not ended")))?;
    let text = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.advance(end + 1);
    Ok(text)
}

/// Parses a CopyData payload of the replication stream.
pub(super) fn parse(mut buf: Bytes) -> Result<Stream> {
    need(&buf, 1, "replication")?;
    match buf.get_u8() {
        b'w' => {
            need(&buf, 24, "WAL data")?;
            let start = buf.get_u64();
            let _end = buf.get_u64();
            let _sent = buf.get_i64();
            Ok(Stream::Wal { start, message: logical(buf)? })
        }
        b'k' => {
            need(&buf, 17, "keepalive")?;
            let wal_end = buf.get_u64();
            let _sent = buf.get_i64();
            Ok(Stream::Keepalive { wal_end, reply: buf.get_u8() == 1 })
        }
        other => Err(Malformed(format!("replication message {:?} is not one of the protocol's", other as char))),
    }
}

fn logical(mut buf: Bytes) -> Result<Logical> {
    need(&buf, 1, "pgoutput")?;
    let tag = buf.get_u8();
    Ok(match tag {
        b'B' => {
            need(&buf, 20, "begin")?;
            let _final_lsn = buf.get_u64();
            Logical::Begin { commit_micros: buf.get_i64(), xid: buf.get_u32() }
        }
        b'C' => {
            need(&buf, 25, "commit")?;
            let _flags = buf.get_u8();
            Logical::Commit { commit_lsn: buf.get_u64(), end_lsn: buf.get_u64() }
        }
        b'R' => {
            need(&buf, 4, "relation")?;
            let id = buf.get_u32();
            let schema = cstr(&mut buf, "relation")?;
            let name = cstr(&mut buf, "relation")?;
            need(&buf, 3, "relation")?;
            let _identity = buf.get_u8();
            let n = buf.get_i16();
            let mut columns = Vec::with_capacity(n.max(0) as usize);
            for _ in 0..n {
                need(&buf, 1, "relation")?;
                let flags = buf.get_u8();
                let name = cstr(&mut buf, "column")?;
                need(&buf, 8, "relation")?;
                columns.push(RelColumn { key: flags & 1 == 1, name, type_oid: buf.get_u32(), type_mod: buf.get_i32() });
            }
            Logical::Relation(Relation { id, schema, name, columns })
        }
        b'I' => {
            need(&buf, 5, "insert")?;
            let relation = buf.get_u32();
            expect(&mut buf, b'N', "insert")?;
            Logical::Insert { relation, new: tuple(&mut buf)? }
        }
        b'U' => {
            need(&buf, 5, "update")?;
            let relation = buf.get_u32();
            let (mut old, mut key_only) = (None, false);
            let mut kind = buf.get_u8();
            if kind == b'K' || kind == b'O' {
                key_only = kind == b'K';
                old = Some(tuple(&mut buf)?);
                need(&buf, 1, "update")?;
                kind = buf.get_u8();
            }
            if kind != b'N' {
                return Err(Malformed(format!("an update's new row is marked {:?}", kind as char)));
            }
            Logical::Update { relation, old, key_only, new: tuple(&mut buf)? }
        }
        b'D' => {
            need(&buf, 5, "delete")?;
            let relation = buf.get_u32();
            let kind = buf.get_u8();
            if kind != b'K' && kind != b'O' {
                return Err(Malformed(format!("a delete's old row is marked {:?}", kind as char)));
            }
            Logical::Delete { relation, old: tuple(&mut buf)?, key_only: kind == b'K' }
        }
        b'T' => {
            // Debezium skips truncates by default (skipped.operations=t).
            Logical::Truncate
        }
        b'O' | b'Y' | b'M' => Logical::Other,
        other => return Err(Malformed(format!("pgoutput message {:?} is not one of protocol 1's", other as char))),
    })
}

fn expect(buf: &mut Bytes, tag: u8, what: &str) -> Result<()> {
    need(buf, 1, what)?;
    match buf.get_u8() {
        t if t == tag => Ok(()),
        t => Err(Malformed(format!("a {what}'s row is marked {:?}", t as char))),
    }
}

fn tuple(buf: &mut Bytes) -> Result<Tuple> {
    need(buf, 2, "row")?;
    let n = buf.get_i16();
    let mut cells = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        need(buf, 1, "row")?;
        cells.push(match buf.get_u8() {
            b'n' => Cell::Null,
            b'u' => Cell::Unchanged,
            b't' | b'b' => {
                need(buf, 4, "row")?;
                let len = buf.get_i32().max(0) as usize;
                need(buf, len, "row")?;
                Cell::Text(buf.split_to(len))
            }
            other => return Err(Malformed(format!("a column value is marked {:?}", other as char))),
        });
    }
    Ok(cells)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};

    fn wal(message: &[u8]) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u8(b'w');
        b.put_u64(0x10);
        b.put_u64(0x20);
        b.put_i64(0);
        b.put_slice(message);
        b.freeze()
    }

    #[test]
    fn relations_and_changes_are_read_as_pgoutput_writes_them() {
        let mut r = BytesMut::new();
        r.put_u8(b'R');
        r.put_u32(16385);
        r.put_slice(b"public\0orders\0");
        r.put_u8(b'd');
        r.put_i16(2);
        r.put_u8(1);
        r.put_slice(b"id\0");
        r.put_u32(23);
        r.put_i32(-1);
        r.put_u8(0);
        r.put_slice(b"name\0");
        r.put_u32(25);
        r.put_i32(-1);
        let Stream::Wal { message: Logical::Relation(rel), .. } = parse(wal(&r)).unwrap() else { panic!() };
        assert_eq!((rel.schema.as_str(), rel.name.as_str(), rel.columns.len()), ("public", "orders", 2));
        assert!(rel.columns[0].key && !rel.columns[1].key);

        let mut u = BytesMut::new();
        u.put_u8(b'U');
        u.put_u32(16385);
        u.put_u8(b'K');
        u.put_i16(2);
        u.put_u8(b't');
        u.put_i32(1);
        u.put_slice(b"7");
        u.put_u8(b'n');
        u.put_u8(b'N');
        u.put_i16(2);
        u.put_u8(b't');
        u.put_i32(1);
        u.put_slice(b"8");
        u.put_u8(b'u');
        let Stream::Wal { message: Logical::Update { old, key_only, new, .. }, .. } = parse(wal(&u)).unwrap() else {
            panic!()
        };
        assert!(key_only);
        assert_eq!(old.unwrap()[0], Cell::Text(Bytes::from_static(b"7")));
        assert_eq!(new, vec![Cell::Text(Bytes::from_static(b"8")), Cell::Unchanged]);
        assert!(parse(wal(b"I\0\0")).unwrap_err().0.contains("insert"));
        assert!(parse(wal(b"Z")).unwrap_err().0.contains("'Z'"));
    }
}
