//! Integration tests of SQL over topics (one binary, see STYLE.md).

mod sql;
