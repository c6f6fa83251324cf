//! Kafka's replication protocol for partition data, without the network: the leader's state
//! ([`Leaderships`]: followers' progress, the ISR changes to propose, the high watermark) and
//! the follower's ([`follower`]: what to fetch from where, and what to do with the answer, and
//! the leader's answer to it), and a log following the image ([`reconcile`]).
//!
//! Followers replicate by fetching; the offset a follower's fetch starts at is its log end, so
//! every fetch tells the leader how far that follower is. From it the leader keeps, for each
//! partition it leads:
//!
//! - the **high watermark**: the lowest log end among the in-sync replicas (the leader's own
//!   counts as far as its durability allows), never lowered. While an ISR expansion waits for
//!   the controller, the joining replica already counts, as Kafka's "maximal ISR" has it: once
//!   the controller commits it, it may be elected, and must hold all that was exposed;
//! - the **ISR**: a follower that has not caught up with the leader's log end within
//!   `replica.lag.time.max.ms` is proposed out, one that reached the high watermark (and the
//!   start of the leader's epoch) is proposed in. Proposals go to the controller
//!   (AlterPartition) and count only once committed: the image is the ISR.
//!
//! The broker carries fetches and proposals over its sockets; the simulation tests carry them
//! in memory, under a seeded clock and network, between real logs.

pub mod follower;
mod leader;
mod reconcile;

pub use follower::{Answer, FetchPosition, Followed};
pub use leader::{check_min_isr, decided, Leaderships, NotReplicated, ReplicaMetrics};
pub use reconcile::reconcile;
