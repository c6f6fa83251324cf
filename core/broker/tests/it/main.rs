//! Integration tests of the broker, driven by the remote substrate over loopback (one binary, see
//! STYLE.md).

mod limits;
mod remote;
