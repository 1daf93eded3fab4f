//! The client side of typed RPC: typed calls on any [`Sender`] ([`SenderExt`], [`Client`],
//! the [`call`] building blocks used by generated clients) and [`CallError`].

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{Either, FutureExt};

use super::envelope::rejection;
use super::{Notification, Request};
use crate::channel::{CallOptions, Sender};
use crate::encoding::{DecodeError, IprotoPack, IprotoUnpackOwned, Mode, PackError, Reader};
use crate::Error;
#[cfg(doc)]
use {super::RC_BAD_REQUEST, crate::channel::Channel};

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
/// of [`SenderExt::request`]; the request is packed before the returned future is first
/// polled, so it is not borrowed by it.
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
/// [`CallError::Service`] (see [`flatten`]).
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
pub(crate) fn call_flat_encoded<'a, S, T, E>(
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

pub(crate) fn call_encoded<'a, S, Resp>(
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

pub(crate) fn encode<T: IprotoPack + ?Sized>(msg: u32, value: &T) -> Result<Vec<u8>, CallError> {
    crate::encoding::pack(value).map_err(|error| CallError::Pack { msg, error })
}

/// Decodes a reply body strictly (trailing bytes are an error); a rejection by the server
/// becomes [`CallError::Rejected`].
pub fn decode_reply<T: IprotoUnpackOwned>(msg: u32, body: &Bytes) -> Result<T, CallError> {
    Reader::from_bytes(body).read_exact(Mode::Fixed).map_err(|error| match rejection(body) {
        Some((code, message)) => CallError::Rejected { msg, code, message },
        None => CallError::Decode { msg, error },
    })
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
    fn notify_typed<N: Notification>(&self, n: &N) -> impl Future<Output = Result<(), CallError>> + Send + '_ {
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
    pub(super) sender: S,
    pub(super) options: CallOptions,
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
    pub fn notify_typed<N: Notification>(&self, n: &N) -> impl Future<Output = Result<(), CallError>> + Send + '_ {
        notify(&self.sender, N::MSG, n)
    }
}
