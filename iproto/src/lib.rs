//! # iproto
//!
//! A Rust implementation of **iproto**, the compact binary RPC protocol of Mail.ru's services
//! (go-iproto, Perl's MR::IProto, Tarantool 1.5, Octopus), byte-compatible with them.
//!
//! * [`wire`]: the 12-byte header packet format and its `tokio_util` codec.
//! * [`encoding`]: `#[derive(IprotoPack, IprotoUnpack)]` serialization, fixed-width little-endian
//!   and BER (Perl `pack 'w'`) modes, zero-copy borrowed fields.
//! * [`rpc`]: typed RPC, message codes tied to request and reply types; `#[derive(Request)]`
//!   and [`#[service]`](service) generate clients over any [`Sender`] and [`ServeMux`] routes
//!   (complete example in the [`rpc`] docs and `examples/typed_rpc.rs`).
//! * [`channel`]: one connection ([`Channel`]): calls, notifications, pings, graceful shutdown.
//! * [`server`] and [`mux`]: the accept loop ([`Server`]) and routing by message code
//!   ([`ServeMux`]).
//! * [`pool`] and [`cluster`]: many connections to one address ([`Pool`]) and to many servers
//!   ([`Cluster`], with MR::IProto's balancing).
//! * [`net`]: addresses (`host:port`, `unix:/path`) and transports.
//!
//! The protocol rules this crate implements, and where it differs from go-iproto, are in
//! `docs/protocol.md` of the repository.
#![warn(missing_docs)]

// Lets the derives' `::iproto::...` paths resolve inside this crate's own unit tests.
extern crate self as iproto;

pub mod channel;
pub mod cluster;
pub mod encoding;
mod error;
mod lock;
pub mod mux;
pub mod net;
pub mod pool;
pub mod rpc;
pub mod server;
mod shard;
pub mod wire;

// Support code for the macros' generated code; not public API.
#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

/// The `bytes` crate, for `Bytes` fields and hand-written impls (`BufMut`).
pub use bytes;

pub use channel::{
    immediate, BoxHandler, CallOptions, Channel, ChannelConfig, ChannelStats, Handler, Immediate, Reply, Sender,
    Started,
};
pub use cluster::{Balance, Cluster, ClusterConfig, ClusterError, ServerList};
pub use encoding::{
    append, append_ber, pack, pack_ber, unpack, unpack_ber, unpack_exact, unpack_exact_ber, DecodeError,
    DecodeErrorKind, IprotoPack, IprotoUnpack, IprotoUnpackOwned, Mode, PackError, Reader,
};
pub use error::{Error, PoolError, TimeoutStage};
pub use iproto_derive::{IprotoPack, IprotoUnpack};
pub use mux::{DuplicateRoute, ServeMux};
pub use net::{Addr, Stream, Transport};
pub use pool::{Pool, PoolConfig, PoolStats};
pub use rpc::{service, CallError, Notification, RemoteError, Request, SenderExt, ServiceError};
pub use server::{listen_and_serve, Server, ServerConfig, ServerStats};
pub use wire::{FrameError, Header, Packet, PacketCodec, HEADER_LEN, MSG_PING, MSG_SHUTDOWN};
