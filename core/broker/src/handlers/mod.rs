//! The handlers, one module per family of APIs. Each `serve_*` function decodes its request from
//! a [`Request`](crate::dispatch::Request), runs it against the log and the coordinators, and
//! encodes the response; `dispatch::APIS` names them.

pub(crate) mod configs;
pub(crate) mod fetch;
pub(crate) mod groups;
pub(crate) mod produce;
pub(crate) mod topics;
pub(crate) mod txn;
