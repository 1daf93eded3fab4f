//! Library behind the `iproto` command: the `--pack`/`--unpack` spec language ([`spec`]), hex
//! input and dumps ([`hexdump`]).
#![warn(missing_docs)]

pub mod hexdump;
pub mod spec;
