//! Integration tests of the embedded substrate (one binary, see STYLE.md).

mod embedded;
