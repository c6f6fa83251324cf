//! The checkpoint file of a task: which changelog offsets its local stores hold.
//!
//! Format (`state/FORMAT.md` has the details): UTF-8 text, one entry per line,
//!
//! ```text
//! freshet-checkpoint 1
//! <topic> <partition> <offset>
//! ...
//! crc32c <8 lowercase hex digits>
//! ```
//!
//! where the CRC-32C covers every byte before the `crc32c` line. `offset` is the first changelog
//! offset the store does *not* hold for sure: a restore starts there. The file is replaced
//! atomically (temporary file, fsync, rename, fsync of the directory), and only after the stores it
//! names are flushed.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use freshet_core::TopicPartition;

use crate::error::{Error, Result};

/// The file name inside a task directory.
pub const CHECKPOINT_FILE: &str = ".checkpoint";
const HEADER: &str = "freshet-checkpoint 1";

/// Changelog partition -> offset to restore from.
pub type Offsets = BTreeMap<TopicPartition, i64>;

/// Reads a checkpoint; `None` when there is none.
pub fn read(path: &Path) -> Result<Option<Offsets>> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    let corrupt = |detail: String| Error::CorruptCheckpoint { path: path.to_path_buf(), detail };
    let text = String::from_utf8(text).map_err(|_| corrupt("not UTF-8 text".into()))?;
    let Some(crc_at) = text.rfind("crc32c ") else { return Err(corrupt("no crc32c line".into())) };
    let (body, crc_line) = text.split_at(crc_at);
    let stored = crc_line
        .trim_end_matches('\n')
        .strip_prefix("crc32c ")
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or_else(|| corrupt(format!("bad crc32c line {:?}", crc_line.trim_end())))?;
    let actual = crc32c::crc32c(body.as_bytes());
    if stored != actual {
        return Err(corrupt(format!("CRC-32C is {actual:08x}, the file says {stored:08x}")));
    }
    let mut lines = body.lines();
    match lines.next() {
        Some(HEADER) => {}
        other => return Err(corrupt(format!("first line is {other:?}, expected {HEADER:?}"))),
    }
    let mut offsets = Offsets::new();
    for (i, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split(' ').collect();
        let parsed = match fields.as_slice() {
            [topic, partition, offset] => {
                partition.parse::<u32>().ok().zip(offset.parse::<i64>().ok()).map(|(p, o)| (topic, p, o))
            }
            _ => None,
        };
        let Some((topic, partition, offset)) = parsed.filter(|(_, _, o)| *o >= 0) else {
            return Err(corrupt(format!("line {} is {line:?}, expected \"<topic> <partition> <offset>\"", i + 2)));
        };
        offsets.insert(TopicPartition::new(*topic, partition), offset);
    }
    Ok(Some(offsets))
}

/// Replaces the checkpoint at `path` with `offsets`, durably.
pub fn write(path: &Path, offsets: &Offsets) -> Result<()> {
    let mut body = format!("{HEADER}\n");
    for (tp, offset) in offsets {
        body.push_str(&format!("{} {} {}\n", tp.topic, tp.partition, offset));
    }
    let crc = crc32c::crc32c(body.as_bytes());
    body.push_str(&format!("crc32c {crc:08x}\n"));
    let tmp: PathBuf = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    file.write_all(body.as_bytes()).map_err(|e| Error::io(&tmp, e))?;
    file.sync_all().map_err(|e| Error::io(&tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(dir, e))?;
    Ok(())
}
