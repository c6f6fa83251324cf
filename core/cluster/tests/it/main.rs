//! freshet-cluster's tests: the controller's decisions, the metadata disk, and the quorum under
//! a deterministic simulation.

mod controller;
mod disk;
mod sim;
