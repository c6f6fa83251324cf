//! End-to-end tests of the `freshet` package (one binary, see STYLE.md).

mod quickstart;
mod tidy;
