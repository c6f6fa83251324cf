//! How fast Datagen makes events: a rate per task, or Confluent's random wait up to
//! `max.interval`.

use super::*;
/// How a task spaces its records in time. Pure: given the time, it says how many records are
/// due, so tests need not sleep.
#[derive(Debug)]
pub(super) enum Pacer {
    /// As fast as the log takes them.
    Unlimited,
    /// A steady rate: the `n`-th record after `anchor` falls due `n / per_second` seconds after it.
    Rate { per_second: f64, anchor: Instant, n_since_anchor: u64 },
    /// Confluent's `max.interval`: a random wait of up to `max_ms` before each record.
    Jitter { max_ms: u64, next_due: Instant, rng: fastrand::Rng },
}

impl Pacer {
    /// The pace `records.per.second` or `max.interval` sets (at most one is set), from `start`.
    pub(super) fn new(per_second: f64, max_interval_ms: u64, seed: u64, start: Instant) -> Pacer {
        if per_second > 0.0 {
            Pacer::Rate { per_second, anchor: start, n_since_anchor: 0 }
        } else if max_interval_ms > 0 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let next_due = start + Duration::from_millis(rng.u64(0..=max_interval_ms));
            Pacer::Jitter { max_ms: max_interval_ms, next_due, rng }
        } else {
            Pacer::Unlimited
        }
    }

    /// The records a task generates per second on average (`None`: unpaced).
    pub(super) fn mean_rate(&self) -> Option<f64> {
        match self {
            Pacer::Unlimited => None,
            Pacer::Rate { per_second, .. } => Some(*per_second),
            Pacer::Jitter { max_ms, .. } => Some(2000.0 / *max_ms as f64),
        }
    }

    /// When the next record falls due (`None`: now, always).
    pub(super) fn next_due(&self) -> Option<Instant> {
        match self {
            Pacer::Unlimited => None,
            Pacer::Rate { per_second, anchor, n_since_anchor } => {
                Some(*anchor + Duration::from_secs_f64(*n_since_anchor as f64 / per_second))
            }
            Pacer::Jitter { next_due, .. } => Some(*next_due),
        }
    }

    /// Takes the records due at `now`, at most `max`; how many.
    pub(super) fn take(&mut self, now: Instant, max: usize) -> usize {
        if let Some(due) = self.next_due() {
            if now.saturating_duration_since(due) > MAX_BEHIND {
                // Paused or held up: start the pace over rather than make up for the time lost.
                match self {
                    Pacer::Unlimited => {}
                    Pacer::Rate { anchor, n_since_anchor, .. } => (*anchor, *n_since_anchor) = (now, 0),
                    Pacer::Jitter { next_due, .. } => *next_due = now,
                }
            }
        }
        let mut n = 0;
        match self {
            Pacer::Unlimited => n = max,
            Pacer::Rate { per_second, anchor, n_since_anchor } => {
                while n < max && *anchor + Duration::from_secs_f64(*n_since_anchor as f64 / *per_second) <= now {
                    *n_since_anchor += 1;
                    n += 1;
                }
            }
            Pacer::Jitter { max_ms, next_due, rng } => {
                while n < max && *next_due <= now {
                    *next_due += Duration::from_millis(rng.u64(0..=*max_ms));
                    n += 1;
                }
            }
        }
        n
    }
}
