//! Integration tests of the state stores (one binary, see STYLE.md).

mod contract;
mod errors;
mod restore;
mod support;
