//! freshet-cluster's tests: the controller's decisions, the metadata disk, and the quorum and
//! the replicas under deterministic simulations.

mod controller;
mod disk;
mod replicas;
mod sim;
