//! Typed RPC: message codes tied to request and reply types. Owns the [`Request`] and
//! [`Notice`] traits, typed calls on any [`Sender`] ([`SenderExt`], [`Client`]), typed
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

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::future::{Either, FutureExt};

use crate::channel::{CallOptions, Channel, Handler, Sender};
use crate::mux::{DuplicateRoute, ServeMux};
use crate::net::Addr;
use crate::pack::{DecodeError, IprotoPack, IprotoUnpack, IprotoUnpackOwned, Mode, PackError, Reader};
use crate::wire::{encode_packet, Header, Packet, HEADER_LEN};
use crate::Error;

pub use iproto_derive::{service, Request};

/// The return code of a successful `Result` reply.
pub const RC_OK: u32 = 0;
/// Return codes at or above this are reserved for the RPC layer itself.
pub const RC_RESERVED_MIN: u32 = 0xffff_ff00;
/// The server could not decode the request body.
pub const RC_BAD_REQUEST: u32 = 0xffff_ff01;
/// The server could not encode its reply.
pub const RC_BAD_REPLY: u32 = 0xffff_ff02;

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
/// assert_eq!(<Touch as iproto::rpc::Notice>::MSG, 0x12);
/// ```
pub trait Notice: IprotoPack {
    /// The message code; below 0xff00.
    const MSG: u32;
}

/// An error type sent as the non-zero return code of a `Result` reply, followed by a body
/// (its [`IprotoPack`] encoding).
///
/// ```
/// use iproto::rpc::ServiceError;
/// use iproto::{DecodeError, IprotoPack, Mode, PackError, Reader};
///
/// #[derive(Debug, PartialEq)]
/// enum KvError { NotFound, TooLarge { limit: u32 } }
///
/// impl IprotoPack for KvError {
///     fn pack<B: bytes::BufMut>(&self, buf: &mut B, mode: Mode) -> Result<(), PackError> {
///         match self {
///             KvError::NotFound => Ok(()),
///             KvError::TooLarge { limit } => limit.pack(buf, mode),
///         }
///     }
/// }
///
/// impl ServiceError for KvError {
///     fn code(&self) -> u32 {
///         match self { KvError::NotFound => 1, KvError::TooLarge { .. } => 2 }
///     }
///     fn decode(code: u32, body: &mut Reader<'_>) -> Result<Self, DecodeError> {
///         match code {
///             1 => Ok(KvError::NotFound),
///             2 => Ok(KvError::TooLarge { limit: iproto::IprotoUnpack::unpack(body, Mode::Fixed)? }),
///             _ => Err(DecodeError::custom(format!("unknown KvError code {code}"), body.position())),
///         }
///     }
/// }
///
/// let reply: Result<u32, KvError> = Err(KvError::TooLarge { limit: 9 });
/// assert_eq!(iproto::pack(&reply).unwrap(), [2, 0, 0, 0, 9, 0, 0, 0]);
/// ```
pub trait ServiceError: IprotoPack + Sized {
    /// The return code: non-zero and below [`RC_RESERVED_MIN`].
    fn code(&self) -> u32;

    /// Rebuilds the error from its return code and the rest of the body.
    fn decode(code: u32, body: &mut Reader<'_>) -> Result<Self, DecodeError>;
}

/// A Tarantool 1.5 style error: a return code and a message, the message taking the rest of
/// the body with no length prefix.
///
/// ```
/// use iproto::rpc::RemoteError;
///
/// let reply: Result<(), RemoteError> = Err(RemoteError::new(0x31, "no such space"));
/// let bytes = iproto::pack(&reply).unwrap();
/// assert_eq!(&bytes[..4], [0x31, 0, 0, 0]);
/// assert_eq!(iproto::unpack_exact::<Result<(), RemoteError>>(&bytes).unwrap(), reply);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("error {code:#x}: {message}")]
pub struct RemoteError {
    /// The return code.
    pub code: u32,
    /// The message (invalid UTF-8 replaced).
    pub message: String,
}

impl RemoteError {
    /// An error with `code` and `message`.
    pub fn new(code: u32, message: impl Into<String>) -> Self {
        RemoteError { code, message: message.into() }
    }
}

impl IprotoPack for RemoteError {
    fn pack<B: BufMut>(&self, buf: &mut B, _mode: Mode) -> Result<(), PackError> {
        buf.put_slice(self.message.as_bytes());
        Ok(())
    }

    fn size_hint(&self, _mode: Mode) -> usize {
        self.message.len()
    }
}

impl ServiceError for RemoteError {
    fn code(&self) -> u32 {
        self.code
    }

    fn decode(code: u32, body: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let rest = body.take(body.remaining())?;
        Ok(RemoteError { code, message: String::from_utf8_lossy(rest).into_owned() })
    }
}

/// The return-code envelope (see the [module docs](self)).
impl<T: IprotoPack, E: ServiceError> IprotoPack for Result<T, E> {
    fn pack<B: BufMut>(&self, buf: &mut B, mode: Mode) -> Result<(), PackError> {
        match self {
            Ok(value) => {
                buf.put_u32_le(RC_OK);
                value.pack(buf, mode)
            }
            Err(error) => {
                let code = error.code();
                if code == RC_OK || code >= RC_RESERVED_MIN {
                    return Err(PackError::Custom(Box::new(BadErrorCode(code))));
                }
                buf.put_u32_le(code);
                error.pack(buf, mode)
            }
        }
    }

    fn size_hint(&self, mode: Mode) -> usize {
        4 + match self {
            Ok(value) => value.size_hint(mode),
            Err(error) => error.size_hint(mode),
        }
    }
}

impl<'de, T: IprotoUnpack<'de>, E: ServiceError> IprotoUnpack<'de> for Result<T, E> {
    fn unpack(r: &mut Reader<'de>, mode: Mode) -> Result<Self, DecodeError> {
        let at = r.position();
        match u32::unpack(r, Mode::Fixed)? {
            RC_OK => T::unpack(r, mode).map(Ok),
            code if code >= RC_RESERVED_MIN => Err(DecodeError::custom(format!("reserved return code {code:#x}"), at)),
            code => E::decode(code, r).map(Err),
        }
    }

    fn min_size(_mode: Mode) -> usize {
        4
    }
}

/// An error's code is 0 or reserved, so it cannot be told apart from success or a rejection.
#[derive(Debug, thiserror::Error)]
#[error("service error code {0:#x} is 0 or reserved (>= 0xffff_ff00)")]
struct BadErrorCode(u32);

/// Why a typed call failed. Transport failures, undecodable replies and the service's own
/// errors (`E`) stay apart.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError<E = Infallible> {
    /// The service answered with its error type.
    #[error("service error: {0}")]
    Service(E),
    /// The call failed on the way: timeout, closed connection, stopped channel.
    #[error(transparent)]
    Transport(#[from] Error),
    /// The request could not be encoded.
    #[error("cannot pack message {msg:#x}: {error}")]
    Pack {
        /// The message code.
        msg: u32,
        /// Why.
        #[source]
        error: PackError,
    },
    /// The reply did not decode as the declared type (see [`DecodeError::path`]).
    #[error("reply to message {msg:#x}: {error}")]
    Decode {
        /// The message code.
        msg: u32,
        /// What went wrong and in which field.
        #[source]
        error: DecodeError,
    },
    /// The server could not handle the request and answered with a reserved return code,
    /// such as [`RC_BAD_REQUEST`].
    #[error("message {msg:#x} rejected by the server (code {code:#x}): {message}")]
    Rejected {
        /// The message code.
        msg: u32,
        /// The reserved return code.
        code: u32,
        /// The server's explanation.
        message: String,
    },
}

impl CallError {
    /// Turns an error without a service error into one of any service error type.
    pub fn widen<E>(self) -> CallError<E> {
        match self {
            CallError::Service(never) => match never {},
            CallError::Transport(e) => CallError::Transport(e),
            CallError::Pack { msg, error } => CallError::Pack { msg, error },
            CallError::Decode { msg, error } => CallError::Decode { msg, error },
            CallError::Rejected { msg, code, message } => CallError::Rejected { msg, code, message },
        }
    }
}

impl<E> CallError<E> {
    /// The service's error, if that is what this is.
    pub fn service(&self) -> Option<&E> {
        match self {
            CallError::Service(e) => Some(e),
            _ => None,
        }
    }

    /// The transport error, if that is what this is.
    pub fn transport(&self) -> Option<&Error> {
        match self {
            CallError::Transport(e) => Some(e),
            _ => None,
        }
    }
}

/// Folds the service error of a `Result` reply into [`CallError::Service`].
///
/// ```
/// use iproto::rpc::{flatten, CallError, RemoteError};
///
/// let reply: Result<Result<u32, RemoteError>, CallError> = Ok(Err(RemoteError::new(3, "no")));
/// assert!(matches!(flatten(reply), Err(CallError::Service(e)) if e.code == 3));
/// ```
pub fn flatten<T, E>(reply: Result<Result<T, E>, CallError>) -> Result<T, CallError<E>> {
    match reply {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(CallError::Service(error)),
        Err(error) => Err(error.widen()),
    }
}

/// Packs `req` and calls `msg` on `sender`, decoding the reply as `Resp`. The building block
/// of [`SenderExt::request`] and of generated clients; the request is packed before the
/// returned future is first polled, so it is not borrowed by it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), iproto::rpc::CallError> {
/// use iproto::{CallOptions, Channel, ChannelConfig, Packet};
///
/// let (a, b) = tokio::io::duplex(4096);
/// let _echo = Channel::new(a, ChannelConfig::server().with_handler(|p: Packet, _: Channel| async move { Some(p.body) }));
/// let client = Channel::new(b, ChannelConfig::client());
/// let back: u32 = iproto::rpc::call(&client, 0x10, &7u32, CallOptions::default()).await?;
/// assert_eq!(back, 7);
/// # Ok(()) }
/// ```
pub fn call<'a, S, Req, Resp>(
    sender: &'a S,
    msg: u32,
    req: &Req,
    opts: CallOptions,
) -> impl Future<Output = Result<Resp, CallError>> + Send + 'a
where
    S: Sender + ?Sized,
    Req: IprotoPack + ?Sized,
    Resp: IprotoUnpackOwned + 'a,
{
    // A request that does not pack costs no call future; one that does is held as the bare
    // buffer, which keeps the future small.
    match encode(msg, req) {
        Ok(body) => Either::Left(call_encoded(sender, msg, body, opts)),
        // Mapped, so that the future is `Send` without asking it of `Resp`.
        Err(e) => Either::Right(std::future::ready(e).map(Err)),
    }
}

/// [`call`] for `Result<T, E>` replies, with the service error folded into
/// [`CallError::Service`] (see [`flatten`]). Used by generated clients.
pub fn call_flat<'a, S, Req, T, E>(
    sender: &'a S,
    msg: u32,
    req: &Req,
    opts: CallOptions,
) -> impl Future<Output = Result<T, CallError<E>>> + Send + 'a
where
    S: Sender + ?Sized,
    Req: IprotoPack + ?Sized,
    Result<T, E>: IprotoUnpackOwned + 'a,
    T: Send + 'a,
    E: Send + 'a,
{
    match encode(msg, req) {
        Ok(body) => Either::Left(call_flat_encoded(sender, msg, body, opts)),
        Err(e) => Either::Right(std::future::ready(Err(e.widen()))),
    }
}

/// The call future mapped, not awaited in another `async fn`: [`Sender::call_owned`] keeps the
/// body in the call's own future, so the typed call adds little to it.
fn call_flat_encoded<'a, S, T, E>(
    sender: &'a S,
    msg: u32,
    body: Vec<u8>,
    opts: CallOptions,
) -> impl Future<Output = Result<T, CallError<E>>> + Send + 'a
where
    S: Sender + ?Sized,
    Result<T, E>: IprotoUnpackOwned,
{
    sender.call_owned(msg, body, opts).map(move |reply| match reply {
        Ok(reply) => flatten(decode_reply(msg, &reply)),
        Err(e) => Err(CallError::Transport(e)),
    })
}

fn call_encoded<'a, S, Resp>(
    sender: &'a S,
    msg: u32,
    body: Vec<u8>,
    opts: CallOptions,
) -> impl Future<Output = Result<Resp, CallError>> + Send + 'a
where
    S: Sender + ?Sized,
    Resp: IprotoUnpackOwned,
{
    sender.call_owned(msg, body, opts).map(move |reply| decode_reply(msg, &reply?))
}

/// Packs `req` and sends it as a notification `msg` on `sender` (no reply).
pub fn notify<'a, S, Req>(sender: &'a S, msg: u32, req: &Req) -> impl Future<Output = Result<(), CallError>> + Send + 'a
where
    S: Sender + ?Sized,
    Req: IprotoPack + ?Sized,
{
    let body = encode(msg, req);
    async move { Ok(sender.notify(msg, &body?).await?) }
}

fn encode<T: IprotoPack + ?Sized>(msg: u32, value: &T) -> Result<Vec<u8>, CallError> {
    crate::pack::pack(value).map_err(|error| CallError::Pack { msg, error })
}

/// Decodes a reply body strictly (trailing bytes are an error); a rejection by the server
/// becomes [`CallError::Rejected`].
pub fn decode_reply<T: IprotoUnpackOwned>(msg: u32, body: &Bytes) -> Result<T, CallError> {
    Reader::from_bytes(body).read_exact(Mode::Fixed).map_err(|error| match rejection(body) {
        Some((code, message)) => CallError::Rejected { msg, code, message },
        None => CallError::Decode { msg, error },
    })
}

/// The code and message of a reserved-code reply.
fn rejection(body: &[u8]) -> Option<(u32, String)> {
    let (code, message) = body.split_first_chunk::<4>()?;
    let code = u32::from_le_bytes(*code);
    (code >= RC_RESERVED_MIN).then(|| (code, String::from_utf8_lossy(message).into_owned()))
}

fn rejection_body(code: u32, why: &dyn fmt::Display) -> Bytes {
    let why = why.to_string();
    let mut body = BytesMut::with_capacity(4 + why.len());
    body.put_u32_le(code);
    body.put_slice(why.as_bytes());
    body.freeze()
}

/// Typed calls on every [`Sender`] ([`Channel`], `Pool`).
///
/// ```no_run
/// # async fn f(channel: iproto::Channel) -> Result<(), iproto::rpc::CallError> {
/// use iproto::rpc::SenderExt;
/// # #[derive(iproto::IprotoPack, iproto::IprotoUnpack, iproto::Request)]
/// # #[request(msg = 0x10, response = u32)]
/// # struct Get { key: String }
/// let n: u32 = channel.request(&Get { key: "a".into() }).await?;
/// # drop(n); Ok(()) }
/// ```
pub trait SenderExt: Sender {
    /// Sends `req` as message `R::MSG` and decodes the reply as `R::Response`.
    fn request<R: Request>(&self, req: &R) -> impl Future<Output = Result<R::Response, CallError>> + Send + '_ {
        call(self, R::MSG, req, CallOptions::default())
    }

    /// [`request`](Self::request) with per-call options (timeout override).
    fn request_with<R: Request>(
        &self,
        req: &R,
        opts: CallOptions,
    ) -> impl Future<Output = Result<R::Response, CallError>> + Send + '_ {
        call(self, R::MSG, req, opts)
    }

    /// Sends the one-way message `n` (no reply).
    fn notice<N: Notice>(&self, n: &N) -> impl Future<Output = Result<(), CallError>> + Send + '_ {
        notify(self, N::MSG, n)
    }
}

impl<S: Sender + ?Sized> SenderExt for S {}

/// A typed client over any [`Sender`] with default call options; with the `tower` feature it
/// is a `tower::Service` for every [`Request`] type.
///
/// ```no_run
/// # async fn f(channel: iproto::Channel) -> Result<(), iproto::rpc::CallError> {
/// # #[derive(iproto::IprotoPack, iproto::IprotoUnpack, iproto::Request)]
/// # #[request(msg = 0x10, response = u32)]
/// # struct Get { key: String }
/// use std::time::Duration;
/// let client = iproto::rpc::Client::new(channel).with_timeout(Duration::from_millis(100));
/// let n = client.request(&Get { key: "a".into() }).await?;
/// # drop(n); Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client<S> {
    sender: S,
    options: CallOptions,
}

impl<S: Sender> Client<S> {
    /// A client sending through `sender`.
    pub fn new(sender: S) -> Self {
        Client { sender, options: CallOptions::default() }
    }

    /// Uses `timeout` for every call instead of the sender's default.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.options.timeout = Some(timeout);
        self
    }

    /// The underlying sender.
    pub fn sender(&self) -> &S {
        &self.sender
    }

    /// Sends `req` and decodes its reply.
    pub fn request<R: Request>(&self, req: &R) -> impl Future<Output = Result<R::Response, CallError>> + Send + '_ {
        call(&self.sender, R::MSG, req, self.options)
    }

    /// Sends the one-way message `n`.
    pub fn notice<N: Notice>(&self, n: &N) -> impl Future<Output = Result<(), CallError>> + Send + '_ {
        notify(&self.sender, N::MSG, n)
    }
}

/// What a typed handler learns about the request besides its body.
#[derive(Debug, Clone)]
pub struct Context {
    msg: u32,
    sync: u32,
    channel: Channel,
}

impl Context {
    /// The message code.
    pub fn msg(&self) -> u32 {
        self.msg
    }

    /// The request's sync (0 for one-way messages).
    pub fn sync(&self) -> u32 {
        self.sync
    }

    /// The peer's address, when the transport has one.
    pub fn peer_addr(&self) -> Option<&Addr> {
        self.channel.peer_addr()
    }

    /// The connection the request came on: send notifications back with
    /// [`Channel::notify`] or [`SenderExt::notice`].
    pub fn channel(&self) -> &Channel {
        &self.channel
    }
}

/// A typed handler: takes the decoded request and its [`Context`], returns the reply. Async
/// closures `|req: Req, cx: Context| async move { .. }` implement it.
pub trait TypedHandler<Req, Resp>: Send + Sync + 'static {
    /// Handles one request.
    fn call(&self, req: Req, cx: Context) -> impl Future<Output = Resp> + Send;
}

impl<Req, Resp, F, Fut> TypedHandler<Req, Resp> for F
where
    F: Fn(Req, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Resp> + Send,
{
    fn call(&self, req: Req, cx: Context) -> impl Future<Output = Resp> + Send {
        self(req, cx)
    }
}

/// Adapts a [`TypedHandler`] to [`Handler`]: decodes, runs, packs. `REPLY` is false for
/// one-way messages.
struct Typed<Req, Resp, H, const REPLY: bool> {
    handler: H,
    types: PhantomData<fn(Req) -> Resp>,
}

impl<Req, Resp, H, const REPLY: bool> Handler for Typed<Req, Resp, H, REPLY>
where
    Req: IprotoUnpackOwned + Send + 'static,
    Resp: IprotoPack + 'static,
    H: TypedHandler<Req, Resp>,
{
    fn handle(&self, packet: Packet, channel: Channel) -> impl Future<Output = Option<Bytes>> + Send {
        // Decoded before the future is made, and the handler's future mapped rather than
        // awaited in an `async` block: the request and context then live only in the handler's
        // future, and a request that does not decode costs no future at all.
        let Packet { header, body } = packet;
        let req = Reader::from_bytes(&body).read_exact::<Req>(Mode::Fixed);
        drop(body);
        match req {
            Ok(req) => {
                let cx = Context { msg: header.msg, sync: header.sync, channel };
                Either::Left(self.handler.call(req, cx).map(move |reply| {
                    if !REPLY {
                        return None;
                    }
                    // Finished while the reader polls it: the reply packet goes straight into
                    // the reader's reply batch (no buffer of its own, no copy).
                    let (msg, sync) = (header.msg, header.sync);
                    if crate::channel::direct::write_reply(msg, sync, |out| pack_packet(out, msg, sync, &reply)) {
                        return None;
                    }
                    Some(pack_reply(msg, &reply))
                }))
            }
            Err(error) if REPLY => {
                tracing::debug!(msg = header.msg, %error, "request does not decode; rejected");
                Either::Right(std::future::ready(Some(rejection_body(RC_BAD_REQUEST, &error))))
            }
            Err(error) => {
                tracing::warn!(msg = header.msg, %error, "one-way message does not decode; dropped");
                Either::Right(std::future::ready(None))
            }
        }
    }
}

/// Packs a handler's reply; one that does not pack is answered with a rejection.
/// Appends the whole reply packet: header, then the reply packed in place, then the length
/// patched in; one that does not pack (or is over 4 GiB) is answered with a rejection.
fn pack_packet<Resp: IprotoPack>(out: &mut BytesMut, msg: u32, sync: u32, reply: &Resp) {
    let start = out.len();
    out.reserve(HEADER_LEN + reply.size_hint(Mode::Fixed));
    out.put_slice(&Header { msg, len: 0, sync }.to_bytes());
    let packed = reply.pack(out, Mode::Fixed).and_then(|()| {
        let len = out.len() - start - HEADER_LEN;
        u32::try_from(len).map_err(|_| PackError::LengthOverflow { len })
    });
    match packed {
        Ok(len) => out[start + 4..start + 8].copy_from_slice(&len.to_le_bytes()),
        Err(error) => {
            tracing::warn!(msg, %error, "reply does not pack");
            out.truncate(start);
            let _ = encode_packet(out, msg, sync, &rejection_body(RC_BAD_REPLY, &error));
        }
    }
}

fn pack_reply<Resp: IprotoPack>(msg: u32, reply: &Resp) -> Bytes {
    let mut buf = BytesMut::with_capacity(reply.size_hint(Mode::Fixed));
    match reply.pack(&mut buf, Mode::Fixed) {
        Ok(()) => buf.freeze(),
        Err(error) => {
            tracing::warn!(msg, %error, "reply does not pack");
            rejection_body(RC_BAD_REPLY, &error)
        }
    }
}

/// Typed routes.
impl ServeMux {
    /// Routes `R::MSG` to `handler`, which gets the decoded request and returns the reply.
    ///
    /// ```
    /// use iproto::rpc::Context;
    /// # #[derive(iproto::IprotoPack, iproto::IprotoUnpack, iproto::Request)]
    /// # #[request(msg = 0x10, response = u32)]
    /// # struct Get { key: String }
    /// let mut mux = iproto::ServeMux::new();
    /// mux.handle_request::<Get, _>(|req: Get, _cx: Context| async move { req.key.len() as u32 }).unwrap();
    /// assert!(mux.contains(0x10));
    /// ```
    pub fn handle_request<R, H>(&mut self, handler: H) -> Result<&mut Self, DuplicateRoute>
    where
        R: Request + IprotoUnpackOwned + Send + 'static,
        R::Response: IprotoPack + 'static,
        H: TypedHandler<R, R::Response>,
    {
        self.handle_typed(R::MSG, handler)
    }

    /// Routes the one-way message `N::MSG` to `handler`; nothing is sent back.
    pub fn handle_notice<N, H>(&mut self, handler: H) -> Result<&mut Self, DuplicateRoute>
    where
        N: Notice + IprotoUnpackOwned + Send + 'static,
        H: TypedHandler<N, ()>,
    {
        self.handle_typed_notice(N::MSG, handler)
    }

    /// Routes `msg` to a typed handler, for request types without a [`Request`] impl (used by
    /// [`#[service]`](crate::service)).
    pub fn handle_typed<Req, Resp, H>(&mut self, msg: u32, handler: H) -> Result<&mut Self, DuplicateRoute>
    where
        Req: IprotoUnpackOwned + Send + 'static,
        Resp: IprotoPack + 'static,
        H: TypedHandler<Req, Resp>,
    {
        self.handle(msg, Typed::<Req, Resp, H, true> { handler, types: PhantomData })
    }

    /// Routes the one-way message `msg` to a typed handler.
    pub fn handle_typed_notice<Req, H>(&mut self, msg: u32, handler: H) -> Result<&mut Self, DuplicateRoute>
    where
        Req: IprotoUnpackOwned + Send + 'static,
        H: TypedHandler<Req, ()>,
    {
        self.handle(msg, Typed::<Req, (), H, false> { handler, types: PhantomData })
    }
}

#[cfg(feature = "tower")]
pub use self::tower_impls::RawCall;

#[cfg(feature = "tower")]
mod tower_impls {
    //! `tower::Service` for [`Channel`] and [`Pool`] (raw calls) and [`Client`] (typed calls), so that
    //! timeout, retry, load-shedding and metrics layers stack on them.

    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context as TaskContext, Poll};

    use bytes::Bytes;

    use super::{call_encoded, encode, CallError, Client, Request};
    use crate::channel::{CallOptions, Channel, Sender};
    use crate::{Error, Pool};

    type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

    /// A raw call for `tower::Service<RawCall> for Channel`.
    ///
    /// ```
    /// use tower::{Service, ServiceExt};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), iproto::Error> {
    /// # let (a, b) = tokio::io::duplex(4096);
    /// # let _echo = iproto::Channel::new(a, iproto::ChannelConfig::server()
    /// #     .with_handler(|p: iproto::Packet, _: iproto::Channel| async move { Some(p.body) }));
    /// let mut channel = iproto::Channel::new(b, iproto::ChannelConfig::client());
    /// let reply = channel.ready().await?.call(iproto::rpc::RawCall::new(0x10, "hi")).await?;
    /// assert_eq!(&reply[..], b"hi");
    /// # Ok(()) }
    /// ```
    #[derive(Debug, Clone)]
    pub struct RawCall {
        /// The message code.
        pub msg: u32,
        /// The body.
        pub body: Bytes,
        /// Per-call options.
        pub options: CallOptions,
    }

    impl RawCall {
        /// A call of `msg` with `body` and default options.
        pub fn new(msg: u32, body: impl Into<Bytes>) -> Self {
            RawCall { msg, body: body.into(), options: CallOptions::default() }
        }
    }

    impl tower::Service<RawCall> for Channel {
        type Response = Bytes;
        type Error = Error;
        type Future = BoxFuture<Result<Bytes, Error>>;

        fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Error>> {
            Poll::Ready(if self.is_stopped() { Err(Error::Stopped) } else { Ok(()) })
        }

        fn call(&mut self, req: RawCall) -> Self::Future {
            let channel = self.clone();
            Box::pin(async move { channel.call_with(req.msg, &req.body, req.options).await })
        }
    }

    impl tower::Service<RawCall> for Pool {
        type Response = Bytes;
        type Error = Error;
        type Future = BoxFuture<Result<Bytes, Error>>;

        fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: RawCall) -> Self::Future {
            let pool = self.clone();
            Box::pin(async move { pool.call_with(req.msg, &req.body, req.options).await })
        }
    }

    impl<S, R> tower::Service<R> for Client<S>
    where
        S: Sender + Clone + 'static,
        R: Request,
    {
        type Response = R::Response;
        type Error = CallError;
        type Future = BoxFuture<Result<R::Response, CallError>>;

        fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), CallError>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: R) -> Self::Future {
            let sender = self.sender.clone();
            let options = self.options;
            // Packed here, so that the future does not hold `req`.
            match encode(R::MSG, &req) {
                Ok(body) => Box::pin(async move { call_encoded(&sender, R::MSG, body, options).await }),
                Err(e) => Box::pin(std::future::ready(Err(e))),
            }
        }
    }
}
