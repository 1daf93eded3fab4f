//! # iproto
//!
//! A Rust implementation of **iproto**, the compact binary RPC protocol of Mail.ru's services
//! (go-iproto, Perl's MR::IProto, Tarantool 1.5, Octopus), byte-compatible with them.
//!
//! * [`wire`]: the 12-byte header packet format and its `tokio_util` codec.
//! * [`pack`](mod@pack): `#[derive(IprotoPack, IprotoUnpack)]` serialization, fixed-width little-endian
//!   and BER (Perl `pack 'w'`) modes, zero-copy borrowed fields.
//! * [`rpc`]: typed RPC, message codes tied to request and reply types; `#[derive(Request)]`
//!   and [`#[service]`](service) generate clients over any [`Sender`] and [`ServeMux`] routes
//!   (complete example in the [`rpc`] docs and `examples/typed_rpc.rs`).
#![warn(missing_docs)]

pub mod pack;
pub mod wire;

// Lets the derives' `::iproto::...` paths resolve inside this crate's own unit tests.
extern crate self as iproto;

/// The `bytes` crate, for `Bytes` fields and hand-written impls (`BufMut`).
pub use bytes;
pub use iproto_derive::{IprotoPack, IprotoUnpack};
pub use pack::{
    append, append_ber, pack, pack_ber, unpack, unpack_ber, unpack_exact, unpack_exact_ber, DecodeError,
    DecodeErrorKind, IprotoPack, IprotoUnpack, IprotoUnpackOwned, Mode, PackError, Reader,
};
pub use wire::{FrameError, Header, Packet, PacketCodec, HEADER_LEN, MSG_PING, MSG_SHUTDOWN};

pub mod channel;
mod error;
pub mod net;

pub use channel::{BoxHandler, CallOptions, Channel, ChannelConfig, ChannelStats, Handler, Sender};
pub use error::{Error, PoolError, TimeoutStage};
pub mod mux;
pub mod server;

pub use mux::ServeMux;
pub use server::{listen_and_serve, Server, ServerConfig, ServerStats};
pub mod pool;

pub use pool::{Pool, PoolConfig, PoolStats};

pub mod cluster;

pub use cluster::{Balance, Cluster, ClusterConfig, ClusterError, ServerList};

pub mod rpc;

pub use rpc::{service, CallError, Request, SenderExt, ServiceError};
