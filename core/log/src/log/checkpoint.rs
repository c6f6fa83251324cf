//! The partition checkpoint file and atomic file replacement.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{Error, IoContext, Result};

const MAGIC: &[u8; 4] = b"FRCP";
const VERSION: u16 = 1;
pub(crate) const FILE_NAME: &str = "partition.checkpoint";

/// What a partition remembers between runs besides its segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    /// The first offset readers may see.
    pub(crate) log_start_offset: i64,
    /// Every segment with a base offset below this was synced with its indexes: only segments from
    /// here on are rescanned after a crash.
    pub(crate) recovery_point: i64,
    /// The high watermark when the checkpoint was written.
    pub(crate) high_watermark: i64,
    /// The first offset compaction has not yet cleaned.
    pub(crate) cleaner_offset: i64,
    /// Leader epochs and the first offset written in each, ascending.
    pub(crate) leader_epochs: Vec<(i32, i64)>,
}

impl Checkpoint {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(46 + 12 * self.leader_epochs.len());
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&VERSION.to_be_bytes());
        for v in [self.log_start_offset, self.recovery_point, self.high_watermark, self.cleaner_offset] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(&(self.leader_epochs.len() as u32).to_be_bytes());
        for (epoch, start) in &self.leader_epochs {
            b.extend_from_slice(&epoch.to_be_bytes());
            b.extend_from_slice(&start.to_be_bytes());
        }
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        b
    }

    pub(crate) fn decode(bytes: &[u8], path: &Path) -> Result<Self> {
        let corrupt = |position: usize, detail: &str| Error::Corrupt {
            path: path.to_owned(),
            position: position as u64,
            detail: detail.to_owned(),
        };
        if bytes.len() < 46 + 4 {
            return Err(corrupt(0, "checkpoint is shorter than its fixed fields"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32c::crc32c(body) != u32::from_be_bytes(crc.try_into().expect("4")) {
            return Err(corrupt(body.len(), "checkpoint CRC-32C mismatch"));
        }
        if &body[0..4] != MAGIC {
            return Err(corrupt(0, "not a Freshet partition checkpoint"));
        }
        let version = u16::from_be_bytes(body[4..6].try_into().expect("2"));
        if version != VERSION {
            return Err(corrupt(4, &format!("checkpoint version {version} is not supported")));
        }
        let i64_at = |at: usize| i64::from_be_bytes(body[at..at + 8].try_into().expect("8"));
        let n = u32::from_be_bytes(body[38..42].try_into().expect("4")) as usize;
        if body.len() != 42 + 12 * n {
            return Err(corrupt(38, "epoch count does not match the file size"));
        }
        let leader_epochs = (0..n)
            .map(|i| {
                let at = 42 + 12 * i;
                (i32::from_be_bytes(body[at..at + 4].try_into().expect("4")), i64_at(at + 4))
            })
            .collect();
        Ok(Checkpoint {
            log_start_offset: i64_at(6),
            recovery_point: i64_at(14),
            high_watermark: i64_at(22),
            cleaner_offset: i64_at(30),
            leader_epochs,
        })
    }

    pub(crate) fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(FILE_NAME);
        match std::fs::read(&path) {
            Ok(bytes) => Self::decode(&bytes, &path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    pub(crate) fn write(&self, dir: &Path) -> Result<()> {
        write_atomically(&dir.join(FILE_NAME), &self.encode())
    }
}

/// Replaces `path` with `bytes` so that after a crash the file holds either the old or the new
/// contents: write a temporary file, sync it, rename it over, sync the directory.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp).at(&tmp)?;
    file.write_all(bytes).at(&tmp)?;
    file.sync_all().at(&tmp)?;
    std::fs::rename(&tmp, path).at(path)?;
    sync_dir(path.parent().expect("a file has a parent directory"))
}

/// Syncs a directory, making the creation, renaming and removal of its entries durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_round_trips_and_detects_damage() {
        let cp = Checkpoint {
            log_start_offset: 5,
            recovery_point: 100,
            high_watermark: 120,
            cleaner_offset: 50,
            leader_epochs: vec![(0, 0), (3, 77)],
        };
        let bytes = cp.encode();
        let path = Path::new("x");
        assert_eq!(Checkpoint::decode(&bytes, path).unwrap(), cp);
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x40;
            assert!(Checkpoint::decode(&damaged, path).is_err(), "flip at byte {i} went unnoticed");
        }
        assert!(Checkpoint::decode(&bytes[..bytes.len() - 1], path).is_err());
    }
}
