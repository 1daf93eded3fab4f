//! Library behind the `iproto` command: the command line ([`cli`]), the `--pack`/`--unpack`
//! spec language ([`spec`]), hex input and dumps ([`hexdump`]), the load generator of
//! `iproto bench` ([`mod@bench`]), and the thin network layer that runs each subcommand
//! ([`run`], [`serve`]).
#![warn(missing_docs)]

pub mod bench;
pub mod cli;
mod error;
pub mod hexdump;
pub mod run;
pub mod serve;
pub mod spec;
pub mod target;

pub use error::CliError;
