//! Integration tests of the coordinators over a real log (one binary, see STYLE.md).

mod groups;
mod support;
mod transactions;
