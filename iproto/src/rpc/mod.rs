//! Typed RPC: message codes tied to request and reply types. Owns the [`Request`] and
//! [`Notification`] traits, typed calls on any [`Sender`] ([`SenderExt`], [`Client`]), typed
//! handlers on [`ServeMux`], the return-code envelope for `Result` replies ([`ServiceError`])
//! and, with the `tower` feature, `tower::Service` impls.
//!
//! Two levels, both generated from plain Rust:
//!
//! * per message: `#[derive(Request)]` with `#[request(msg = 0x10, response = Reply)]` (or
//!   `#[request(msg = 0x12, notify)]` for one-way messages), then
//!   [`sender.request(&req)`](SenderExt::request) and
//!   [`mux.handle_request::<Req, _>(handler)`](ServeMux::handle_request);
//! * per service: [`#[iproto::service]`](crate::service) on a trait generates a client
//!   (`KvClient::new(sender)`) and a server adapter (`KvServer::new(impl).register(&mut mux)`).
//!
//! # A service
//!
//! The trait's `async fn`s become `fn .. -> impl Future + Send` so that handlers run on the
//! multi-threaded runtime; implement them with `async fn`. Each method takes `&self`, an
//! optional [`Context`] and the request; it returns `Result<T, E>` (the envelope below), any
//! other type (sent raw), or nothing with `notify`. The client's methods take the request by
//! reference, return `Result<T, CallError<E>>` and have a `_with` variant taking
//! [`CallOptions`] (per-call timeout). Dropping a call's future cancels it locally; iproto has
//! no cancel frame, so the server still does the work.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use iproto::rpc::{CallError, Context, RemoteError};
//! use iproto::{Channel, ChannelConfig, IprotoPack, IprotoUnpack, Server};
//!
//! #[derive(IprotoPack, IprotoUnpack)]
//! pub struct Get { key: String }
//!
//! #[derive(IprotoPack, IprotoUnpack)]
//! pub struct Touch { key: String }
//!
//! #[iproto::service]
//! pub trait Kv {
//!     /// Reads a key.
//!     #[iproto(msg = 0x10)]
//!     async fn get(&self, req: Get) -> Result<String, RemoteError>;
//!     /// Marks a key as used; nothing comes back.
//!     #[iproto(msg = 0x11, notify)]
//!     async fn touch(&self, cx: Context, req: Touch);
//! }
//!
//! struct Store;
//!
//! impl Kv for Store {
//!     async fn get(&self, req: Get) -> Result<String, RemoteError> {
//!         match req.key.as_str() {
//!             "hello" => Ok("world".into()),
//!             _ => Err(RemoteError::new(0x31, "no such key")),
//!         }
//!     }
//!     async fn touch(&self, cx: Context, _req: Touch) {
//!         assert_eq!(cx.msg(), 0x11);
//!     }
//! }
//!
//! let server = Server::bind("127.0.0.1:0").await?;
//! let addr = server.local_addr().to_string();
//! tokio::spawn(server.serve(KvServer::new(Store).into_mux()));
//!
//! let kv = KvClient::new(Channel::connect(&addr, ChannelConfig::client()).await?);
//! assert_eq!(kv.get(&Get { key: "hello".into() }).await?, "world");
//! match kv.get(&Get { key: "nope".into() }).await {
//!     Err(CallError::Service(e)) => assert_eq!(e.code, 0x31),
//!     other => panic!("{other:?}"),
//! }
//! kv.touch(&Touch { key: "hello".into() }).await?;
//! # Ok(()) }
//! ```
//!
//! # Arguments, borrowed requests, errors
//!
//! A method's arguments after `&self` (a [`Context`] among them, at any position, is not
//! sent) travel as one request body, packed in declaration order as if they were the fields of
//! one struct: `async fn put(&self, key: String, value: Vec<u8>)` sends `key` then `value`. A
//! single argument is packed as itself. Argument types may borrow from the request
//! (`&'a str`, `&'a [u8]`, a struct with a lifetime): the server decodes them from the
//! received buffer without copying. A `Result<T, E>` reply needs `E:` [`ServiceError`]:
//! [`RemoteError`] (a code and a text), or an enum with `#[derive(ServiceError)]` and
//! `#[iproto(code = N)]` on each variant.
//!
//! A request the generated server cannot serve is answered, never left to time out: an
//! unknown code with [`RC_UNKNOWN_MSG`], a body that does not decode with [`RC_BAD_REQUEST`];
//! the client reports both as [`CallError::Rejected`] with the server's text.
//!
//! # Cancellation
//!
//! A handler is told when its connection stops: [`Context::stopping_token`] is cancelled when a
//! graceful shutdown starts (from either side) or the connection closes, and
//! [`Context::closed_token`] when it has closed. A long-waiting handler selects on one and
//! answers early; the early reply is delivered while the shutdown drains.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use iproto::rpc::Context;
//! use iproto::{Channel, ChannelConfig};
//!
//! #[iproto::service]
//! pub trait Feed {
//!     /// Waits for the next item: a long poll.
//!     #[iproto(msg = 0x20)]
//!     async fn next(&self, cx: Context, topic: String) -> String;
//! }
//!
//! struct Hub { entered: Arc<tokio::sync::Notify> }
//!
//! impl Feed for Hub {
//!     async fn next(&self, cx: Context, topic: String) -> String {
//!         let stopping = cx.stopping_token();
//!         self.entered.notify_one();
//!         tokio::select! {
//!             _ = tokio::time::sleep(Duration::from_secs(3600)) => format!("news on {topic}"),
//!             _ = stopping.cancelled() => "server shutting down, ask again".into(),
//!         }
//!     }
//! }
//!
//! let entered = Arc::new(tokio::sync::Notify::new());
//! let hub = Hub { entered: entered.clone() };
//! let (a, b) = tokio::io::duplex(64 * 1024);
//! let server = Channel::new(a, ChannelConfig::server().with_handler(FeedServer::new(hub).into_mux()));
//! let feed = FeedClient::new(Channel::new(b, ChannelConfig::client()));
//!
//! let waiting = tokio::spawn(async move { feed.next(&"rust".to_string()).await });
//! entered.notified().await; // the handler waits
//! server.shutdown().await; // tells it, delivers its early reply, then closes
//! assert_eq!(waiting.await??, "server shutting down, ask again");
//! # Ok(()) }
//! ```
//!
//! # tower
//!
//! With the `tower` cargo feature, [`Channel`] and [`Pool`](crate::Pool) are
//! `tower::Service<RawCall>` and [`Client`]
//! a `tower::Service<R>` for every [`Request`] type `R`, so timeout, retry, load-shedding and
//! metrics layers stack on them.
//!
//! # Wire conventions
//!
//! Bodies are the [`IprotoPack`] encoding of the request and reply types, decoded strictly:
//! trailing bytes are an error, so that a peer with another schema is caught.
//!
//! iproto has no error envelope. A reply of type `Result<T, E>` (with `E:`[`ServiceError`])
//! follows Octopus and Tarantool 1.5: a `u32` little-endian return code, `0` followed by `T`,
//! or the error's non-zero code followed by its body. Any other reply type is sent raw.
//! Return codes `>= 0xffff_ff00` are reserved for this layer: a request that fails to decode
//! on the server is answered with [`RC_BAD_REQUEST`] and the decode error as text (one-way
//! messages are logged and dropped), and the caller gets [`CallError::Rejected`]. With a raw
//! reply type the caller sees the rejection only if the rejection body does not happen to
//! decode as the reply type.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use iproto::rpc::{Context, SenderExt};
//! use iproto::{Channel, ChannelConfig, IprotoPack, IprotoUnpack, Request, ServeMux};
//!
//! #[derive(IprotoPack, IprotoUnpack, Request)]
//! #[request(msg = 0x10, response = Sum)]
//! struct Add { a: u32, b: u32 }
//!
//! #[derive(IprotoPack, IprotoUnpack, Debug, PartialEq)]
//! struct Sum(u64);
//!
//! let mut mux = ServeMux::new();
//! mux.handle_request::<Add, _>(|req: Add, _cx: Context| async move {
//!     Sum(u64::from(req.a) + u64::from(req.b))
//! })?;
//!
//! let (a, b) = tokio::io::duplex(64 * 1024);
//! let _server = Channel::new(a, ChannelConfig::server().with_handler(mux));
//! let client = Channel::new(b, ChannelConfig::client());
//! assert_eq!(client.request(&Add { a: 2, b: 3 }).await?, Sum(5));
//! # Ok(()) }
//! ```

pub(crate) mod client;
mod envelope;
pub(crate) mod server;
#[cfg(feature = "tower")]
mod tower;

pub use client::{call, call_flat, decode_reply, flatten, notify, CallError, Client, SenderExt};
pub use envelope::{RemoteError, ServiceError};
pub use iproto_derive::{service, Request, ServiceError};
pub use server::{Context, TypedHandler};
#[cfg(feature = "tower")]
pub use tower::RawCall;

use crate::encoding::{IprotoPack, IprotoUnpack};
#[cfg(doc)]
use crate::{
    channel::{CallOptions, Channel, Sender},
    mux::ServeMux,
};

/// The return code of a successful `Result` reply.
pub const RC_OK: u32 = 0;
/// Return codes at or above this are reserved for the RPC layer itself.
pub const RC_RESERVED_MIN: u32 = 0xffff_ff00;
/// The server could not decode the request body.
pub const RC_BAD_REQUEST: u32 = 0xffff_ff01;
/// The server could not encode its reply.
pub const RC_BAD_REPLY: u32 = 0xffff_ff02;
/// The server has no handler for the message code (see [`ServeMux::reject_unknown`]).
pub const RC_UNKNOWN_MSG: u32 = 0xffff_ff03;

/// A request type: its message code and the type of its reply. Derive it with
/// `#[derive(Request)]` and `#[request(msg = .., response = ..)]`.
///
/// ```
/// use iproto::{IprotoPack, IprotoUnpack, Request};
///
/// #[derive(IprotoPack, IprotoUnpack, Request)]
/// #[request(msg = 0x10, response = Option<String>)]
/// struct Get { key: String }
///
/// assert_eq!(<Get as iproto::rpc::Request>::MSG, 0x10);
/// ```
pub trait Request: IprotoPack {
    /// The message code; below 0xff00.
    const MSG: u32;
    /// The reply body's type (owned: decoded from any buffer, `Send + 'static` so that calls
    /// can be spawned).
    type Response: for<'de> IprotoUnpack<'de> + Send + 'static;
}

/// A one-way message: sent with `notify`, never answered. Derived by `#[derive(Request)]` with
/// `#[request(msg = .., notify)]`.
///
/// ```
/// use iproto::{IprotoPack, IprotoUnpack, Request};
///
/// #[derive(IprotoPack, IprotoUnpack, Request)]
/// #[request(msg = 0x12, notify)]
/// struct Touch { key: String }
///
/// assert_eq!(<Touch as iproto::rpc::Notification>::MSG, 0x12);
/// ```
pub trait Notification: IprotoPack {
    /// The message code; below 0xff00.
    const MSG: u32;
}
