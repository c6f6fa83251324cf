//! Transactions as one partition sees them: which producers have a transaction open in it, where
//! the earliest of those began (which bounds the last stable offset, the end of what
//! `read_committed` readers may see), and which transactions ended in an abort (so that those
//! readers skip their records).
//!
//! The state follows from the partition's batches alone: a transactional data batch opens (or
//! continues) its producer's transaction, a control batch (a commit or abort marker, written by
//! the transaction coordinator) ends it. It is part of the partition's producer state, saved with
//! it in snapshot files (see `producers`).

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

use super::producers::{BatchFacts, Reader};
use crate::batch::{BatchBuilder, BatchView};
use crate::error::{Error, Result};

/// A transaction that ended in an abort: `read_committed` readers skip the records of
/// `producer_id` from `first_offset` up to its abort marker at `last_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    /// The producer whose records are skipped.
    pub producer_id: i64,
    /// The offset of its first record in this partition's transaction.
    pub first_offset: i64,
    /// The offset of the abort marker.
    pub last_offset: i64,
}

/// Which records a read returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Everything below the high watermark, open and aborted transactions included.
    #[default]
    ReadUncommitted,
    /// Only up to the last stable offset, with the aborted transactions to skip.
    ReadCommitted,
}

/// How much one read returns: whole batches, up to a number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadLimit {
    /// Up to this many bytes, but at least the first batch even when it is larger, so that a
    /// reader is never stuck behind a batch bigger than its limit.
    AtLeastOne(u64),
    /// Up to this many bytes; nothing when the first batch is larger. A fetch over several
    /// partitions reads the partitions after the first non-empty one this way, as Kafka does.
    Strict(u64),
}

/// What a transaction marker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// The transaction's records are discarded.
    Abort,
    /// The transaction's records become visible to `read_committed` readers.
    Commit,
}

impl Marker {
    fn type_code(self) -> i16 {
        match self {
            Marker::Abort => 0,
            Marker::Commit => 1,
        }
    }

    /// The marker a control batch carries (Kafka's control record key: version, type).
    pub fn of(batch: &BatchView<'_>) -> Result<Marker> {
        let mut found = None;
        batch.for_each_record(|record| {
            let key = record.key.ok_or_else(|| Error::InvalidBatch("a control record without a key".into()))?;
            if key.len() < 4 {
                return Err(Error::InvalidBatch(format!("a control record key of {} bytes (4 expected)", key.len())));
            }
            found = Some(match i16::from_be_bytes([key[2], key[3]]) {
                0 => Marker::Abort,
                1 => Marker::Commit,
                other => return Err(Error::InvalidBatch(format!("control record type {other} is not a marker"))),
            });
            Ok(())
        })?;
        found.ok_or_else(|| Error::InvalidBatch("a control batch without a record".into()))
    }

    /// A control batch holding this marker for `producer_id` at `producer_epoch`.
    pub fn batch(self, producer_id: i64, producer_epoch: i16, coordinator_epoch: i32, timestamp: i64) -> Bytes {
        let mut key = [0u8; 4];
        key[2..].copy_from_slice(&self.type_code().to_be_bytes());
        let mut value = [0u8; 6];
        value[2..].copy_from_slice(&coordinator_epoch.to_be_bytes());
        let mut builder = BatchBuilder::with_capacity(128).producer(producer_id, producer_epoch, -1).control();
        builder.push(Some(&key), Some(&value), &[], timestamp);
        builder.finish()
    }
}

/// The transactions of one partition.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Txns {
    /// Producer id to the offset of the first record of its open transaction.
    open: HashMap<i64, i64>,
    /// Transactions whose marker the high watermark has not passed yet: `(first offset, marker
    /// offset)`. Until it has, they still hold the last stable offset back.
    ending: VecDeque<(i64, i64)>,
    /// Aborted transactions, in marker order.
    aborted: VecDeque<AbortedTxn>,
}

impl Txns {
    /// Accounts for a transactional batch (data or marker) stored at `batch.base_offset`.
    pub(crate) fn apply(&mut self, batch: &BatchFacts) {
        let producer = batch.producer_id;
        match batch.marker {
            Some(marker) => {
                if let Some(first) = self.open.remove(&producer) {
                    self.ending.push_back((first, batch.base_offset));
                    if marker == Marker::Abort {
                        self.aborted.push_back(AbortedTxn {
                            producer_id: producer,
                            first_offset: first,
                            last_offset: batch.base_offset,
                        });
                    }
                }
            }
            None => {
                self.open.entry(producer).or_insert(batch.base_offset);
            }
        }
    }

    /// Whether `producer` has a transaction open here.
    pub(crate) fn is_open(&self, producer: i64) -> bool {
        self.open.contains_key(&producer)
    }

    /// The first offset of `producer`'s open transaction.
    pub(crate) fn open_since(&self, producer: i64) -> Option<i64> {
        self.open.get(&producer).copied()
    }

    /// The last stable offset: the high watermark, or the first offset of the earliest transaction
    /// not yet ended below it, whichever is lower.
    pub(crate) fn last_stable_offset(&mut self, high_watermark: i64) -> i64 {
        while self.ending.front().is_some_and(|&(_, marker)| marker < high_watermark) {
            self.ending.pop_front();
        }
        // Markers arrive in offset order, but a later marker may end an earlier transaction.
        let ending = self.ending.iter().map(|&(first, _)| first).min();
        let open = self.open.values().copied().min();
        [Some(high_watermark), ending, open].into_iter().flatten().min().expect("the high watermark")
    }

    /// The aborted transactions with records in `[from, to)`.
    pub(crate) fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.aborted.iter().filter(|a| a.last_offset >= from && a.first_offset < to).copied().collect()
    }

    /// Forgets aborted transactions wholly below the log start offset.
    pub(crate) fn trim(&mut self, log_start_offset: i64) {
        while self.aborted.front().is_some_and(|a| a.last_offset < log_start_offset) {
            self.aborted.pop_front();
        }
    }

    /// Appends the open, ending and aborted transactions to a producer snapshot.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let mut open: Vec<(&i64, &i64)> = self.open.iter().collect();
        open.sort_unstable();
        out.extend_from_slice(&(open.len() as u32).to_be_bytes());
        for (producer, first) in open {
            out.extend_from_slice(&producer.to_be_bytes());
            out.extend_from_slice(&first.to_be_bytes());
        }
        out.extend_from_slice(&(self.ending.len() as u32).to_be_bytes());
        for (first, marker) in &self.ending {
            out.extend_from_slice(&first.to_be_bytes());
            out.extend_from_slice(&marker.to_be_bytes());
        }
        out.extend_from_slice(&(self.aborted.len() as u32).to_be_bytes());
        for a in &self.aborted {
            for v in [a.producer_id, a.first_offset, a.last_offset] {
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
    }

    /// Reads what [`Txns::encode`] wrote; `None` when the bytes end early.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Option<Self> {
        let mut txns = Txns::default();
        for _ in 0..r.u32()? {
            let producer = r.i64()?;
            txns.open.insert(producer, r.i64()?);
        }
        for _ in 0..r.u32()? {
            let first = r.i64()?;
            txns.ending.push_back((first, r.i64()?));
        }
        for _ in 0..r.u32()? {
            txns.aborted.push_back(AbortedTxn { producer_id: r.i64()?, first_offset: r.i64()?, last_offset: r.i64()? });
        }
        Some(txns)
    }
}

/// Filters `read_committed` batches for a consumer: drops control batches and the records of
/// aborted transactions. Feed it the aborted transactions of the read (any order) and then each
/// batch in offset order.
#[derive(Debug, Default)]
pub struct AbortedFilter {
    /// Aborted transactions not yet reached, by first offset (ascending).
    upcoming: Vec<AbortedTxn>,
    /// Producers whose records are being skipped, until their abort marker.
    skipping: HashMap<i64, i64>,
}

impl AbortedFilter {
    /// A filter for one read's aborted transactions.
    pub fn new(mut aborted: Vec<AbortedTxn>) -> Self {
        aborted.sort_by_key(|a| std::cmp::Reverse(a.first_offset));
        AbortedFilter { upcoming: aborted, skipping: HashMap::new() }
    }

    /// Whether the consumer should see this batch's records.
    pub fn keep(&mut self, batch: &BatchView<'_>) -> bool {
        while self.upcoming.last().is_some_and(|a| a.first_offset <= batch.last_offset()) {
            let a = self.upcoming.pop().expect("checked");
            self.skipping.insert(a.producer_id, a.last_offset);
        }
        if batch.is_control() {
            if self.skipping.get(&batch.producer_id()) == Some(&batch.base_offset()) {
                self.skipping.remove(&batch.producer_id());
            }
            return false;
        }
        !(batch.is_transactional() && self.skipping.contains_key(&batch.producer_id()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{assign_in_place, BatchBuilder};
    use bytes::BytesMut;

    fn data(producer: i64, epoch: i16, offset: i64) -> BytesMut {
        let mut b = BatchBuilder::default().producer(producer, epoch, 0).transactional();
        b.push(None, Some(b"v"), &[], 0);
        let mut bytes = BytesMut::from(&b.finish()[..]);
        assign_in_place(&mut bytes, offset, 0, None);
        bytes
    }

    fn marker(m: Marker, producer: i64, epoch: i16, offset: i64) -> BytesMut {
        let mut bytes = BytesMut::from(&m.batch(producer, epoch, 0, 0)[..]);
        assign_in_place(&mut bytes, offset, 0, None);
        bytes
    }

    #[test]
    fn open_transactions_hold_the_last_stable_offset_until_their_marker_is_below_the_high_watermark() {
        let mut t = Txns::default();
        let batches = [data(1, 0, 0), data(2, 0, 1), data(1, 0, 2), marker(Marker::Commit, 1, 0, 3)];
        for (i, b) in batches.iter().enumerate() {
            t.apply(&BatchFacts::of(&BatchView::parse(b).unwrap(), i as i64).unwrap());
        }
        assert_eq!(t.last_stable_offset(3), 0, "the marker is not below the high watermark yet");
        assert_eq!(t.last_stable_offset(4), 1, "producer 2 is still open from offset 1");
        t.apply(&BatchFacts::of(&BatchView::parse(&marker(Marker::Abort, 2, 0, 4)).unwrap(), 4).unwrap());
        assert_eq!(t.last_stable_offset(5), 5);
        assert_eq!(t.aborted_between(0, 5), [AbortedTxn { producer_id: 2, first_offset: 1, last_offset: 4 }]);
        assert_eq!(t.aborted_between(5, 9), []);
        t.trim(5);
        assert_eq!(t.aborted_between(0, 9), []);
    }

    #[test]
    fn the_filter_skips_aborted_records() {
        let batches = [data(1, 0, 0), data(2, 0, 1), marker(Marker::Abort, 1, 0, 2), data(1, 0, 3)];
        let mut f = AbortedFilter::new(vec![AbortedTxn { producer_id: 1, first_offset: 0, last_offset: 2 }]);
        let kept: Vec<bool> = batches.iter().map(|b| f.keep(&BatchView::parse(b).unwrap())).collect();
        assert_eq!(kept, [false, true, false, true], "after its abort marker producer 1 is read again");
    }
}
