mod app;
mod driver;
#[cfg(feature = "sql")]
mod sql;
mod stateful;
