//! Derive macros for `mr-iproto`. Use them through `iproto::{IprotoPack, IprotoUnpack}`.
//!
//! Filled in by the serialization work; see `iproto::pack` for the traits.
