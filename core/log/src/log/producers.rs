//! Producer state of one partition, as Kafka's producer-state manager keeps it: for each producer
//! id its epoch and its latest batches' sequence numbers (so a retry is recognized and answered
//! with its original offsets, a gap or an old epoch refused), and the partition's transactions
//! (see [`Txns`]).
//!
//! The state follows from the partition's batches alone, in offset order, so a follower that
//! stores the leader's batches arrives at the same state. It is written to a snapshot file
//! (`<offset>.snapshot`, the state after every batch below `offset`) when a segment rolls and when
//! the partition closes; opening a partition loads the latest snapshot at or below its log end and
//! replays the batch headers after it, instead of scanning the partition from its start.

use std::collections::{HashMap, VecDeque};
use std::path::Path;

use super::segment::BatchHeader;
use super::txn::{Marker, Txns};
use crate::batch::BatchView;
use crate::error::{Error, Result};

/// How many of each producer's latest batches are remembered, as Kafka does: a retry of any of
/// them is answered with its original offsets (a producer has at most five requests in flight).
pub(crate) const REMEMBERED_BATCHES: usize = 5;

/// Snapshot files kept per partition (the newest ones): a truncation below the newest (a
/// follower's, after a leader change) rebuilds from an older one.
pub(crate) const SNAPSHOTS_KEPT: usize = 4;

/// The suffix of a snapshot file's name.
pub(crate) const SNAPSHOT_SUFFIX: &str = ".snapshot";

const MAGIC: &[u8; 4] = b"FRPS";
const VERSION: u16 = 1;

/// What producer state needs to know of a stored batch: its header fields and, for a control
/// batch, its marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchFacts {
    pub(crate) base_offset: i64,
    pub(crate) last_offset: i64,
    pub(crate) producer_id: i64,
    pub(crate) epoch: i16,
    pub(crate) base_sequence: i32,
    pub(crate) max_timestamp: i64,
    pub(crate) transactional: bool,
    /// The marker of a control batch.
    pub(crate) marker: Option<Marker>,
}

impl BatchFacts {
    /// The facts of a batch to be stored at `base_offset` (its header may not carry it yet).
    pub(crate) fn of(view: &BatchView<'_>, base_offset: i64) -> Result<Self> {
        Ok(BatchFacts {
            base_offset,
            last_offset: base_offset + i64::from(view.last_offset_delta()),
            producer_id: view.producer_id(),
            epoch: view.producer_epoch(),
            base_sequence: view.base_sequence(),
            max_timestamp: view.max_timestamp(),
            transactional: view.is_transactional(),
            marker: if view.is_control() { Some(Marker::of(view)?) } else { None },
        })
    }

    /// The facts of a stored batch read from its header (`marker` read from the batch for a
    /// control batch).
    pub(crate) fn of_header(header: &BatchHeader, marker: Option<Marker>) -> Self {
        BatchFacts {
            base_offset: header.base_offset,
            last_offset: header.last_offset,
            producer_id: header.producer_id,
            epoch: header.producer_epoch,
            base_sequence: header.base_sequence,
            max_timestamp: header.max_timestamp,
            transactional: header.is_transactional(),
            marker,
        }
    }

    /// The last sequence number of the batch: sequences wrap from `i32::MAX` to 0, as Kafka's.
    fn last_sequence(&self) -> i32 {
        increment_sequence(self.base_sequence, (self.last_offset - self.base_offset) as i32)
    }
}

/// `sequence + by`, wrapping from `i32::MAX` to 0.
fn increment_sequence(sequence: i32, by: i32) -> i32 {
    if sequence > i32::MAX - by {
        by - (i32::MAX - sequence) - 1
    } else {
        sequence + by
    }
}

/// One remembered batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Remembered {
    first_sequence: i32,
    last_sequence: i32,
    base_offset: i64,
    last_offset: i64,
}

/// One producer's state in a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Producer {
    epoch: i16,
    /// The latest batches of this epoch, oldest first.
    batches: VecDeque<Remembered>,
    /// The latest batch's max timestamp: the producer expires `producer.id.expiration.ms` after it.
    last_timestamp: i64,
}

/// A producer as [`crate::Partition::producers`] describes it (Kafka's DescribeProducers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerInfo {
    /// The producer id.
    pub producer_id: i64,
    /// Its latest epoch.
    pub epoch: i16,
    /// The sequence number of its latest batch, -1 when none of this epoch is stored.
    pub last_sequence: i32,
    /// The max timestamp of its latest batch.
    pub last_timestamp: i64,
    /// The first offset of its open transaction in this partition.
    pub current_txn_start_offset: Option<i64>,
}

/// What checking a batch against producer state decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checked {
    /// A new batch: store it.
    Append,
    /// A retry of a batch stored at `base_offset..=last_offset`: answer with those, store nothing.
    Duplicate { base_offset: i64, last_offset: i64 },
}

/// The producer state of one partition.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ProducerState {
    producers: HashMap<i64, Producer>,
    /// Open and aborted transactions.
    pub(crate) txns: Txns,
}

impl ProducerState {
    /// Checks a batch about to be appended: an old epoch is refused (`ProducerFenced` for a
    /// transactional producer, `InvalidProducerEpoch` for a marker), a retry of a remembered batch is a duplicate, a sequence that does
    /// not follow the producer's latest is refused. Batches without a producer id pass.
    pub(crate) fn check(&self, batch: &BatchFacts) -> Result<Checked> {
        if batch.producer_id < 0 {
            return Ok(Checked::Append);
        }
        let pid = batch.producer_id;
        // A producer not known here may start at any sequence, as in Kafka: its state may have
        // expired, or the records that held it been deleted by retention.
        let Some(known) = self.producers.get(&pid) else { return Ok(Checked::Append) };
        if batch.marker.is_some() {
            // A marker from a coordinator that has not seen the newer epoch written here.
            if batch.epoch < known.epoch {
                return Err(Error::InvalidProducerEpoch(format!(
                    "producer {pid}: a transaction marker of epoch {} where epoch {} has written",
                    batch.epoch, known.epoch
                )));
            }
            return Ok(Checked::Append);
        }
        if batch.epoch < known.epoch {
            return Err(if batch.transactional {
                Error::ProducerFenced(format!(
                    "producer {pid} at epoch {}: epoch {} took over its transactional id",
                    batch.epoch, known.epoch
                ))
            } else {
                Error::InvalidProducerEpoch(format!(
                    "producer {pid}: epoch {} is older than {}",
                    batch.epoch, known.epoch
                ))
            });
        }
        if batch.base_sequence < 0 {
            return Ok(Checked::Append);
        }
        let first = batch.base_sequence;
        if batch.epoch > known.epoch {
            return if first == 0 {
                Ok(Checked::Append)
            } else {
                Err(Error::OutOfOrderSequence(format!(
                    "producer {pid}: its new epoch {} starts at sequence {first}, not 0",
                    batch.epoch
                )))
            };
        }
        let last = batch.last_sequence();
        if let Some(stored) = known.batches.iter().find(|b| b.first_sequence == first && b.last_sequence == last) {
            return Ok(Checked::Duplicate { base_offset: stored.base_offset, last_offset: stored.last_offset });
        }
        // With no batch of this epoch stored (a marker bumped it), the next one starts at 0.
        let expected = known.batches.back().map_or(0, |b| increment_sequence(b.last_sequence, 1));
        if first == expected {
            return Ok(Checked::Append);
        }
        let oldest = known.batches.front().map_or(0, |b| b.first_sequence);
        if first < oldest && first < expected {
            return Err(Error::DuplicateSequence(format!(
                "producer {pid}: sequence {first} is older than the {REMEMBERED_BATCHES} batches remembered (from {oldest})"
            )));
        }
        Err(Error::OutOfOrderSequence(format!("producer {pid}: sequence {first} where {expected} was expected")))
    }

    /// Accounts for a batch stored at `batch.base_offset`. `max_producers` bounds the producers
    /// remembered: past it, the one idle longest without an open transaction is forgotten.
    pub(crate) fn apply(&mut self, batch: &BatchFacts, max_producers: usize) {
        if batch.producer_id < 0 {
            return;
        }
        let pid = batch.producer_id;
        if !self.producers.contains_key(&pid) && self.producers.len() >= max_producers {
            self.evict_one();
        }
        let producer = self.producers.entry(pid).or_insert_with(|| Producer {
            epoch: batch.epoch,
            batches: VecDeque::new(),
            last_timestamp: batch.max_timestamp,
        });
        if batch.epoch > producer.epoch {
            producer.epoch = batch.epoch;
            producer.batches.clear();
        } else if batch.epoch < producer.epoch && batch.marker.is_none() {
            // Only a replayed log can hold this (a check refuses it on append); keep the newer epoch.
            tracing::warn!(
                producer = pid,
                epoch = batch.epoch,
                known = producer.epoch,
                "a stored batch of an older epoch"
            );
        }
        producer.last_timestamp = producer.last_timestamp.max(batch.max_timestamp);
        if batch.marker.is_none() && batch.base_sequence >= 0 && batch.epoch == producer.epoch {
            producer.batches.push_back(Remembered {
                first_sequence: batch.base_sequence,
                last_sequence: batch.last_sequence(),
                base_offset: batch.base_offset,
                last_offset: batch.last_offset,
            });
            if producer.batches.len() > REMEMBERED_BATCHES {
                producer.batches.pop_front();
            }
        }
        if batch.transactional {
            self.txns.apply(batch);
        }
    }

    /// Forgets the producer idle longest that has no open transaction.
    fn evict_one(&mut self) {
        let idle = self
            .producers
            .iter()
            .filter(|(pid, _)| !self.txns.is_open(**pid))
            .min_by_key(|(_, p)| p.last_timestamp)
            .map(|(pid, _)| *pid);
        if let Some(pid) = idle {
            tracing::debug!(producer = pid, "producer state full; the producer idle longest is forgotten");
            self.producers.remove(&pid);
        }
    }

    /// Forgets producers without an open transaction whose latest batch is older than
    /// `now - expiration_ms` (Kafka's `producer.id.expiration.ms`). Returns how many.
    pub(crate) fn expire(&mut self, now: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        let txns = &self.txns;
        self.producers.retain(|pid, p| txns.is_open(*pid) || now.saturating_sub(p.last_timestamp) < expiration_ms);
        before - self.producers.len()
    }

    /// How many producers are remembered.
    pub(crate) fn len(&self) -> usize {
        self.producers.len()
    }

    /// Every producer, by id.
    pub(crate) fn describe(&self) -> Vec<ProducerInfo> {
        let mut all: Vec<ProducerInfo> = self
            .producers
            .iter()
            .map(|(&producer_id, p)| ProducerInfo {
                producer_id,
                epoch: p.epoch,
                last_sequence: p.batches.back().map_or(-1, |b| b.last_sequence),
                last_timestamp: p.last_timestamp,
                current_txn_start_offset: self.txns.open_since(producer_id),
            })
            .collect();
        all.sort_by_key(|p| p.producer_id);
        all
    }

    /// The snapshot file of the state after every batch below `offset`: magic, version, CRC-32C of
    /// what follows, then the offset, the producers, and the transactions.
    pub(crate) fn encode(&self, offset: i64) -> Vec<u8> {
        let mut body = Vec::with_capacity(64 + self.producers.len() * (19 + REMEMBERED_BATCHES * 24));
        body.extend_from_slice(&offset.to_be_bytes());
        let mut pids: Vec<&i64> = self.producers.keys().collect();
        pids.sort_unstable();
        body.extend_from_slice(&(pids.len() as u32).to_be_bytes());
        for pid in pids {
            let p = &self.producers[pid];
            body.extend_from_slice(&pid.to_be_bytes());
            body.extend_from_slice(&p.epoch.to_be_bytes());
            body.extend_from_slice(&p.last_timestamp.to_be_bytes());
            body.push(p.batches.len() as u8);
            for b in &p.batches {
                body.extend_from_slice(&b.first_sequence.to_be_bytes());
                body.extend_from_slice(&b.last_sequence.to_be_bytes());
                body.extend_from_slice(&b.base_offset.to_be_bytes());
                body.extend_from_slice(&b.last_offset.to_be_bytes());
            }
        }
        self.txns.encode(&mut body);
        let mut out = Vec::with_capacity(10 + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Reads a snapshot file back: `(offset, state)`.
    pub(crate) fn decode(bytes: &[u8], path: &Path) -> Result<(i64, Self)> {
        let corrupt = |position: usize, detail: String| Error::Corrupt {
            path: path.to_owned(),
            position: position as u64,
            detail: format!("producer snapshot: {detail}"),
        };
        if bytes.len() < 10 || &bytes[0..4] != MAGIC {
            return Err(corrupt(0, "not a Freshet producer snapshot".into()));
        }
        let version = u16::from_be_bytes([bytes[4], bytes[5]]);
        if version != VERSION {
            return Err(corrupt(4, format!("version {version} is not supported")));
        }
        let body = &bytes[10..];
        if crc32c::crc32c(body) != u32::from_be_bytes(bytes[6..10].try_into().expect("4")) {
            return Err(corrupt(6, "CRC-32C mismatch".into()));
        }
        let mut r = Reader { bytes: body, at: 0 };
        let parse = |r: &mut Reader<'_>| -> Option<(i64, ProducerState)> {
            let offset = r.i64()?;
            let mut state = ProducerState::default();
            for _ in 0..r.u32()? {
                let pid = r.i64()?;
                let epoch = r.i16()?;
                let last_timestamp = r.i64()?;
                let n = usize::from(r.u8()?);
                let mut batches = VecDeque::with_capacity(n);
                for _ in 0..n {
                    batches.push_back(Remembered {
                        first_sequence: r.i32()?,
                        last_sequence: r.i32()?,
                        base_offset: r.i64()?,
                        last_offset: r.i64()?,
                    });
                }
                state.producers.insert(pid, Producer { epoch, batches, last_timestamp });
            }
            state.txns = Txns::decode(r)?;
            Some((offset, state))
        };
        let parsed = parse(&mut r).ok_or_else(|| corrupt(10 + r.at, "truncated".into()))?;
        if r.at != body.len() {
            return Err(corrupt(10 + r.at, format!("{} bytes after the end", body.len() - r.at)));
        }
        Ok(parsed)
    }
}

/// Reads big-endian fields, `None` past the end.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(slice)
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    pub(crate) fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    pub(crate) fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    pub(crate) fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pid: i64, epoch: i16, sequence: i32, n: i64, offset: i64) -> BatchFacts {
        BatchFacts {
            base_offset: offset,
            last_offset: offset + n - 1,
            producer_id: pid,
            epoch,
            base_sequence: sequence,
            max_timestamp: 1_000 + offset,
            transactional: false,
            marker: None,
        }
    }

    fn txn_data(pid: i64, epoch: i16, offset: i64) -> BatchFacts {
        BatchFacts { transactional: true, base_sequence: -1, ..data(pid, epoch, -1, 1, offset) }
    }

    fn marker(m: Marker, pid: i64, epoch: i16, offset: i64) -> BatchFacts {
        BatchFacts { marker: Some(m), ..txn_data(pid, epoch, offset) }
    }

    /// Checks, then applies when new: the log's append in miniature.
    fn append(state: &mut ProducerState, batch: BatchFacts) -> Result<Checked> {
        let checked = state.check(&batch)?;
        if checked == Checked::Append {
            state.apply(&batch, usize::MAX);
        }
        Ok(checked)
    }

    #[test]
    fn retries_are_duplicates_and_gaps_and_old_epochs_are_refused() {
        let mut s = ProducerState::default();
        assert_eq!(append(&mut s, data(7, 0, 0, 3, 0)).unwrap(), Checked::Append);
        assert_eq!(append(&mut s, data(7, 0, 3, 2, 3)).unwrap(), Checked::Append);
        assert_eq!(
            append(&mut s, data(7, 0, 0, 3, 99)).unwrap(),
            Checked::Duplicate { base_offset: 0, last_offset: 2 },
            "a retry is answered with the offsets it was stored at"
        );
        let gap = append(&mut s, data(7, 0, 9, 1, 5)).unwrap_err();
        assert!(matches!(&gap, Error::OutOfOrderSequence(m) if m.contains("sequence 9 where 5")), "{gap}");
        assert_eq!(
            append(&mut s, data(8, 0, 4, 1, 5)).unwrap(),
            Checked::Append,
            "an unknown producer starts anywhere"
        );
        assert_eq!(append(&mut s, data(7, 1, 0, 1, 6)).unwrap(), Checked::Append, "a new epoch starts over at 0");
        let old = append(&mut s, data(7, 0, 5, 1, 7)).unwrap_err();
        assert!(matches!(old, Error::InvalidProducerEpoch(_)), "{old}");
        let bad_start = append(&mut s, data(7, 2, 3, 1, 7)).unwrap_err();
        assert!(matches!(bad_start, Error::OutOfOrderSequence(_)), "{bad_start}");
        for i in 1..=6 {
            append(&mut s, data(7, 1, i, 1, 6 + i64::from(i))).unwrap();
        }
        let forgotten = append(&mut s, data(7, 1, 1, 1, 20)).unwrap_err();
        assert!(matches!(forgotten, Error::DuplicateSequence(_)), "older than the five remembered: {forgotten}");
    }

    #[test]
    fn sequences_wrap_from_the_largest_to_zero() {
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        let mut s = ProducerState::default();
        append(&mut s, data(1, 0, i32::MAX - 1, 2, 0)).unwrap();
        assert_eq!(append(&mut s, data(1, 0, 0, 1, 2)).unwrap(), Checked::Append);
    }

    #[test]
    fn a_fenced_epoch_is_refused_after_a_marker_bumped_it() {
        let mut t = ProducerState::default();
        t.apply(&marker(Marker::Abort, 7, 3, 0), usize::MAX);
        let err = t.check(&txn_data(7, 2, 1)).unwrap_err();
        assert!(matches!(&err, Error::ProducerFenced(m) if m.contains("epoch 3 took over")), "{err}");
        assert!(t.check(&txn_data(7, 3, 1)).is_ok());
    }

    #[test]
    fn producers_expire_and_are_bounded_but_never_with_an_open_transaction() {
        let mut s = ProducerState::default();
        s.apply(&txn_data(1, 0, 0), 2);
        s.apply(&data(2, 0, 0, 1, 1), 2);
        s.apply(&data(3, 0, 0, 1, 2), 2);
        assert_eq!(s.describe().iter().map(|p| p.producer_id).collect::<Vec<_>>(), [1, 3], "2 was idle longest");
        assert_eq!(s.expire(1_000_000, 10), 1, "3 expires; 1 has a transaction open");
        assert_eq!(s.describe()[0].current_txn_start_offset, Some(0));
    }

    #[test]
    fn a_snapshot_round_trips_and_damage_is_detected() {
        let mut s = ProducerState::default();
        for b in [
            data(1, 0, 0, 3, 0),
            txn_data(2, 4, 3),
            data(1, 0, 3, 1, 4),
            marker(Marker::Abort, 2, 4, 5),
            txn_data(9, 0, 6),
        ] {
            s.apply(&b, usize::MAX);
        }
        let bytes = s.encode(7);
        let path = Path::new("x.snapshot");
        let (offset, back) = ProducerState::decode(&bytes, path).unwrap();
        assert_eq!((offset, &back), (7, &s));
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x08;
            assert!(ProducerState::decode(&damaged, path).is_err(), "a flip at byte {i} went unnoticed");
        }
        assert!(ProducerState::decode(&bytes[..bytes.len() - 1], path).is_err());
    }
}
