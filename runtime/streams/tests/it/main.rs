mod app;
mod driver;
mod stateful;
