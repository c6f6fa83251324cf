mod driver;
mod stateful;
