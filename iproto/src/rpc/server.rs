//! The server side of typed RPC: typed handlers with their [`Context`], the adapters that
//! decode requests (owned, or borrowing from the packet) and pack replies, the typed routes of
//! [`ServeMux`] and its rejection of unknown codes.

use std::future::Future;
use std::marker::PhantomData;

use bytes::{Bytes, BytesMut};
use futures_util::future::{Either, FutureExt};

use super::envelope::rejection_body;
#[cfg(doc)]
use super::SenderExt;
use super::{Notification, Request, RC_BAD_REPLY, RC_BAD_REQUEST, RC_UNKNOWN_MSG};
use crate::channel::{Channel, Handler, Reply};
use crate::mux::{DuplicateRoute, ServeMux};
use crate::net::Addr;
use tokio_util::sync::CancellationToken;

use crate::encoding::{DecodeError, IprotoPack, IprotoUnpackOwned, Mode, Reader};
use crate::wire::{Header, Packet};

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
    /// [`Channel::notify`] or [`SenderExt::notify_typed`].
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Cancelled when the connection stops taking calls: a graceful shutdown started by either
    /// side, or the connection closing. A long-waiting handler selects on it and answers early;
    /// its reply is still delivered while the shutdown drains (see the
    /// [module docs](super#cancellation)).
    pub fn stopping_token(&self) -> CancellationToken {
        self.channel.stopping_token()
    }

    /// Cancelled when the connection has closed: the reply can no longer be delivered, so the
    /// handler may drop its work.
    pub fn closed_token(&self) -> CancellationToken {
        self.channel.closed_token()
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
    Resp: IprotoPack + Send + 'static,
    H: TypedHandler<Req, Resp>,
{
    type Reply = TypedReply<Resp>;

    fn handle(&self, packet: Packet, channel: Channel) -> impl Future<Output = TypedReply<Resp>> + Send {
        // Decoded before the future is made, and the handler's future mapped rather than
        // awaited in an `async` block: the request and context then live only in the handler's
        // future, and a request that does not decode costs no future at all.
        let Packet { header, body } = packet;
        let req = Reader::from_bytes(&body).read_exact::<Req>(Mode::Fixed);
        drop(body);
        let msg = header.msg;
        match req {
            Ok(req) => {
                let cx = Context { msg, sync: header.sync, channel };
                Either::Left(self.handler.call(req, cx).map(move |reply| TypedReply::answer::<REPLY>(msg, reply)))
            }
            Err(error) => Either::Right(std::future::ready(TypedReply::undecodable::<REPLY>(msg, &error))),
        }
    }
}

/// A service method whose arguments borrow from the request body: decodes them from `body`
/// and starts the method, whose future may borrow both. Implemented by `#[iproto::service]`
/// for such methods.
pub trait BorrowedHandler: Send + Sync + 'static {
    /// The method's reply (`()` for one-way messages).
    type Reply: IprotoPack + Send + 'static;

    /// Decodes the arguments from `body` and starts the method.
    fn call<'b>(
        &'b self,
        body: &'b [u8],
        cx: Context,
    ) -> Result<impl Future<Output = Self::Reply> + Send + 'b, DecodeError>;
}

/// Adapts a [`BorrowedHandler`] to [`Handler`]: the packet's body is moved into the request's
/// future, and the arguments decoded there point into it (no copy).
struct Borrowed<H, const REPLY: bool>(H);

impl<H: BorrowedHandler, const REPLY: bool> Handler for Borrowed<H, REPLY> {
    type Reply = TypedReply<H::Reply>;

    fn handle(&self, packet: Packet, channel: Channel) -> impl Future<Output = TypedReply<H::Reply>> + Send {
        let Packet { header, body } = packet;
        let cx = Context { msg: header.msg, sync: header.sync, channel };
        async move {
            match self.0.call(&body, cx) {
                Ok(reply) => TypedReply::answer::<REPLY>(header.msg, reply.await),
                Err(error) => TypedReply::undecodable::<REPLY>(header.msg, &error),
            }
        }
    }
}

/// Routes `msg` on `mux` to a method with borrowed arguments; `REPLY` is false for one-way
/// messages.
pub fn route_borrowed<H: BorrowedHandler, const REPLY: bool>(
    mux: &mut ServeMux,
    msg: u32,
    handler: H,
) -> Result<&mut ServeMux, DuplicateRoute> {
    mux.handle(msg, Borrowed::<H, REPLY>(handler))
}

/// Answers a request for an unrouted code with [`RC_UNKNOWN_MSG`]; a one-way message (sync 0)
/// gets no answer, as nobody waits for one.
struct RejectUnknown;

impl Handler for RejectUnknown {
    type Reply = Option<Bytes>;

    fn handle(&self, packet: Packet, _channel: Channel) -> impl Future<Output = Option<Bytes>> + Send {
        let Header { msg, sync, .. } = packet.header;
        let answer = if sync == 0 {
            tracing::debug!(msg, "one-way message with no route; dropped");
            None
        } else {
            tracing::debug!(msg, "no route for message code; rejected");
            Some(rejection_body(RC_UNKNOWN_MSG, &format_args!("no handler for message code {msg:#x}")))
        };
        std::future::ready(answer)
    }
}

/// A typed handler's answer: the reply, packed in place into the outgoing batch when it is
/// written (no buffer of its own), a rejection, or nothing (one-way messages).
pub(crate) enum TypedReply<Resp> {
    Packed { msg: u32, reply: Resp },
    Rejected(Bytes),
    None,
}

impl<Resp> TypedReply<Resp> {
    /// The handler's `reply`, or nothing for a one-way message.
    fn answer<const REPLY: bool>(msg: u32, reply: Resp) -> Self {
        if REPLY {
            TypedReply::Packed { msg, reply }
        } else {
            TypedReply::None
        }
    }

    /// A request that does not decode is answered with [`RC_BAD_REQUEST`] and the error as
    /// text; a one-way message that does not decode is logged and dropped.
    fn undecodable<const REPLY: bool>(msg: u32, error: &DecodeError) -> Self {
        if REPLY {
            tracing::debug!(msg, %error, "request does not decode; rejected");
            TypedReply::Rejected(rejection_body(RC_BAD_REQUEST, error))
        } else {
            tracing::warn!(msg, %error, "one-way message does not decode; dropped");
            TypedReply::None
        }
    }
}

impl<Resp: IprotoPack + Send> Reply for TypedReply<Resp> {
    fn write_body(self, out: &mut BytesMut) -> bool {
        match self {
            TypedReply::Packed { msg, reply } => {
                // One that does not pack is answered with a rejection.
                let start = out.len();
                out.reserve(reply.size_hint(Mode::Fixed));
                if let Err(error) = reply.pack(out, Mode::Fixed) {
                    tracing::warn!(msg, %error, "reply does not pack");
                    out.truncate(start);
                    out.extend_from_slice(&rejection_body(RC_BAD_REPLY, &error));
                }
                true
            }
            TypedReply::Rejected(body) => body.write_body(out),
            TypedReply::None => false,
        }
    }
}

/// Typed routes.
impl ServeMux {
    /// Answers requests with no route with [`RC_UNKNOWN_MSG`] and the code in words, which a
    /// typed client reports at once as [`CallError::Rejected`](super::CallError::Rejected).
    /// One-way messages with no route are dropped. A plain [`ServeMux`] sends nothing for an
    /// unknown code (go-iproto's behaviour: the caller waits for its timeout); the server of
    /// an `#[iproto::service]` rejects them like this.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use iproto::rpc::{CallError, RC_UNKNOWN_MSG};
    /// use iproto::{CallOptions, Channel, ChannelConfig, ServeMux};
    ///
    /// let mut mux = ServeMux::new();
    /// mux.reject_unknown();
    /// let (a, b) = tokio::io::duplex(4096);
    /// let _server = Channel::new(a, ChannelConfig::server().with_handler(mux));
    /// let client = Channel::new(b, ChannelConfig::client());
    /// let err = iproto::rpc::call::<_, _, u32>(&client, 0x77, &(), CallOptions::default()).await.unwrap_err();
    /// assert!(matches!(err, CallError::Rejected { msg: 0x77, code: RC_UNKNOWN_MSG, .. }), "{err}");
    /// # }
    /// ```
    pub fn reject_unknown(&mut self) -> &mut Self {
        self.fallback(RejectUnknown)
    }

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
        R::Response: IprotoPack + Send + 'static,
        H: TypedHandler<R, R::Response>,
    {
        self.handle_typed(R::MSG, handler)
    }

    /// Routes the one-way message `N::MSG` to `handler`; nothing is sent back.
    pub fn handle_notification<N, H>(&mut self, handler: H) -> Result<&mut Self, DuplicateRoute>
    where
        N: Notification + IprotoUnpackOwned + Send + 'static,
        H: TypedHandler<N, ()>,
    {
        self.handle_typed_notification(N::MSG, handler)
    }

    /// Routes `msg` to a typed handler, for request types without a [`Request`] impl.
    pub fn handle_typed<Req, Resp, H>(&mut self, msg: u32, handler: H) -> Result<&mut Self, DuplicateRoute>
    where
        Req: IprotoUnpackOwned + Send + 'static,
        Resp: IprotoPack + Send + 'static,
        H: TypedHandler<Req, Resp>,
    {
        self.handle(msg, Typed::<Req, Resp, H, true> { handler, types: PhantomData })
    }

    /// Routes the one-way message `msg` to a typed handler.
    pub fn handle_typed_notification<Req, H>(&mut self, msg: u32, handler: H) -> Result<&mut Self, DuplicateRoute>
    where
        Req: IprotoUnpackOwned + Send + 'static,
        H: TypedHandler<Req, ()>,
    {
        self.handle(msg, Typed::<Req, (), H, false> { handler, types: PhantomData })
    }
}
