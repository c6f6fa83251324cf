//! Freshet's coordinators: the state machines kept in the log's internal topics.
//!
//! Role: [`group`] keeps committed consumer-group offsets in the compacted `__consumer_offsets`
//! topic, in Kafka's own record layout; [`membership`] is the classic group protocol's membership
//! state machine (join, sync, heartbeat, leave, rebalance, session timeouts), which the embedded
//! substrate's consumers and the broker's clients share, exchanging [`consumer_protocol`]
//! subscriptions and assignments; [`transactions`] is
//! the transaction coordinator (state in `__transaction_state`, markers to every partition of a
//! transaction, offsets applied on commit, fencing, timeouts); [`code`] is the one table of Kafka
//! error codes these state machines and the broker answer with.
//!
//! Boundary: the embedded substrate and the broker both drive these, so an application sees the
//! same semantics in one process and over the network. No networking here; time comes from the
//! log's clock.

pub mod code;
pub mod consumer_protocol;
pub mod group;
pub mod membership;
pub mod transactions;
