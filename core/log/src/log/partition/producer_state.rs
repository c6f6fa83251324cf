//! The partition's producer state on disk: snapshot files written when segments roll and on
//! close, and the state rebuilt on open from the latest snapshot and the batch headers after it.

use super::*;
use crate::log::producers::{ProducerInfo, SNAPSHOTS_KEPT, SNAPSHOT_SUFFIX};
use recovery::{list_dir, parse_base};

fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}{SNAPSHOT_SUFFIX}"))
}

impl Partition {
    /// Rebuilds producer state from the latest readable snapshot at or below the log end and the
    /// batches after it (every batch, when there is none). Snapshots past the log end (a crash cut
    /// the log below them) and unreadable ones are deleted. Returns the batches replayed.
    pub(crate) fn load_producer_state(&self, state: &mut State) -> Result<usize> {
        let leo = state.log_end_offset();
        let mut offsets: Vec<i64> =
            list_dir(&self.dir)?.iter().filter_map(|n| parse_base(n, SNAPSHOT_SUFFIX)).collect();
        offsets.sort_unstable_by(|a, b| b.cmp(a));
        let mut loaded = None;
        for offset in offsets {
            let path = snapshot_path(&self.dir, offset);
            if offset > leo {
                remove_if_exists(&path)?;
                continue;
            }
            let read = std::fs::read(&path).at(&path).and_then(|bytes| ProducerState::decode(&bytes, &path));
            match read {
                Ok((at, producers)) if at == offset => {
                    loaded = Some((offset, producers));
                    break;
                }
                Ok((at, _)) => {
                    tracing::warn!(path = %path.display(), at, "a producer snapshot names another offset than its file; deleted");
                    remove_if_exists(&path)?;
                }
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "an unreadable producer snapshot; deleted");
                    remove_if_exists(&path)?;
                }
            }
        }
        let (from, mut producers) = loaded.unwrap_or((i64::MIN, ProducerState::default()));
        let mut replayed = 0;
        for segment in state.segments.values() {
            if segment.next_offset <= from {
                continue;
            }
            let mut position = if segment.base_offset < from {
                match segment.find(from, segment.size)? {
                    Some(header) => header.position,
                    None => continue,
                }
            } else {
                0
            };
            while let Some(header) = segment.read_header(position, segment.size)? {
                position += header.size;
                if header.base_offset < from || header.producer_id < 0 {
                    continue;
                }
                let marker = if header.is_control() {
                    let bytes = segment.read_batch(&header)?;
                    let corrupt = |e: Error| Error::Corrupt {
                        path: segment.path.clone(),
                        position: header.position,
                        detail: e.to_string(),
                    };
                    let view = BatchView::parse(&bytes).map_err(corrupt)?;
                    Some(Marker::of(&view).map_err(corrupt)?)
                } else {
                    None
                };
                producers.apply(&BatchFacts::of_header(&header, marker), self.max_producers);
                replayed += 1;
            }
        }
        producers.txns.trim(state.log_start_offset);
        state.producers = producers;
        Ok(replayed)
    }

    /// Writes producer snapshots and deletes all but the newest [`SNAPSHOTS_KEPT`]. A snapshot
    /// saves replaying the log on open; one that is lost or torn (its CRC tells) is only work, so
    /// a failure is logged, not returned, and no fsync is spent on them.
    pub(crate) fn write_snapshots(&self, snapshots: Vec<(i64, Vec<u8>)>) {
        if snapshots.is_empty() {
            return;
        }
        let write = || -> Result<()> {
            for (offset, bytes) in &snapshots {
                let path = snapshot_path(&self.dir, *offset);
                let tmp = path.with_extension("snapshot.tmp");
                std::fs::write(&tmp, bytes).at(&tmp)?;
                std::fs::rename(&tmp, &path).at(&path)?;
            }
            let mut offsets: Vec<i64> =
                list_dir(&self.dir)?.iter().filter_map(|n| parse_base(n, SNAPSHOT_SUFFIX)).collect();
            offsets.sort_unstable_by(|a, b| b.cmp(a));
            for offset in offsets.into_iter().skip(SNAPSHOTS_KEPT) {
                remove_if_exists(&snapshot_path(&self.dir, offset))?;
            }
            Ok(())
        };
        if let Err(error) = write() {
            tracing::warn!(topic = %self.topic, partition = self.index, %error, "a producer snapshot was not written");
        }
        self.lock().dir_dirty = true;
    }

    /// Forgets producers idle for `expiration_ms` without an open transaction. Returns how many.
    pub(crate) fn expire_producers(&self, now: i64, expiration_ms: i64) -> usize {
        self.lock().producers.expire(now, expiration_ms)
    }

    /// The producers this partition remembers, by id (Kafka's DescribeProducers).
    pub fn producers(&self) -> Vec<ProducerInfo> {
        self.lock().producers.describe()
    }

    /// How many producers this partition remembers.
    pub fn n_producers(&self) -> usize {
        self.lock().producers.len()
    }
}
