//! Library behind the `iproto` command: the `--pack`/`--unpack` spec language ([`spec`]), hex
//! input and dumps ([`hexdump`]) and the load generator of `iproto bench` ([`bench`]).
#![warn(missing_docs)]

pub mod bench;
pub mod hexdump;
pub mod spec;
