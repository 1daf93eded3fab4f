//! [`Handler`]: what a channel does with incoming requests (async closures implement it), and
//! [`BoxHandler`], its type-erased form that configs and mux routes hold.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::BytesMut;

use super::reply::{write_packet, Panicked, Reply, Started};
use super::Channel;
use crate::wire::{Header, Packet};

/// Handles one incoming request: gets the packet and a handle to its channel, returns the
/// [`Reply`]: a body (`Bytes`), `None` or `()` to send no reply (notifications, or requests
/// answered later via [`Channel::send`]), or a value that writes its body itself.
///
/// ```
/// use iproto::{Channel, Packet};
///
/// // An echo handler as an async closure.
/// let echo = |packet: Packet, _channel: Channel| async move { Some(packet.body) };
/// let config = iproto::ChannelConfig::server().with_handler(echo);
/// # drop(config);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an iproto `Handler`",
    label = "a server or channel needs a `Handler` here",
    note = "pass an `async` closure `|packet: Packet, channel: Channel| async move {{ Some(reply) }}`, a `ServeMux`, \
            or the server of an #[iproto::service] trait (`KvServer::new(service)`)"
)]
pub trait Handler: Send + Sync + 'static {
    /// What the handler answers with.
    type Reply: Reply + 'static;

    /// Handles `packet`, received on `channel`.
    fn handle(&self, packet: Packet, channel: Channel) -> impl Future<Output = Self::Reply> + Send;

    /// Starts handling `packet`: the future of [`handle`](Self::handle), boxed once. A
    /// handler that dispatches to others ([`ServeMux`](crate::ServeMux)) overrides it to hand
    /// back the chosen handler's own started future instead of boxing a second one around it.
    ///
    /// Takes the shared handler by reference: a handler whose future needs no handle on it
    /// (an async closure) then touches no reference count shared by every connection.
    fn start(self: &Arc<Self>, packet: Packet, channel: Channel) -> Started
    where
        Self: Sized,
    {
        let this = Arc::clone(self);
        Started::build(move || async move { this.handle(packet, channel).await })
    }

    /// The reply to `packet` computed now, without a future, a task or a channel handle; or
    /// the packet back, to be started as a future. The default hands it back. Override it only
    /// in handlers that never wait ([`immediate`] wraps a plain function in one): the reader
    /// calls it for every request before it starts anything.
    fn reply_now(&self, packet: Packet) -> Result<Self::Reply, Packet> {
        Err(packet)
    }
}

/// A handler for requests answered from the packet alone, without awaiting anything (an echo,
/// a lookup in memory): the reader writes its reply into the outgoing batch at once, with no
/// future, box or channel handle per request. Build it with [`immediate`].
pub struct Immediate<F>(F);

/// Wraps `f` in a [`Handler`] that answers each request at once (see [`Immediate`]).
///
/// ```
/// use iproto::{Packet, Server};
///
/// # async fn f() -> Result<(), iproto::Error> {
/// let server = Server::bind("127.0.0.1:0").await?;
/// // An echo that never waits: no future per request.
/// tokio::spawn(server.serve(iproto::immediate(|packet: Packet| Some(packet.body))));
/// # Ok(()) }
/// ```
pub fn immediate<F, R>(f: F) -> Immediate<F>
where
    F: Fn(Packet) -> R + Send + Sync + 'static,
    R: Reply + 'static,
{
    Immediate(f)
}

impl<F, R> Handler for Immediate<F>
where
    F: Fn(Packet) -> R + Send + Sync + 'static,
    R: Reply + 'static,
{
    type Reply = R;

    fn handle(&self, packet: Packet, _channel: Channel) -> impl Future<Output = R> + Send {
        std::future::ready((self.0)(packet))
    }

    fn reply_now(&self, packet: Packet) -> Result<R, Packet> {
        Ok((self.0)(packet))
    }
}

impl<F> fmt::Debug for Immediate<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Immediate")
    }
}

impl<F, Fut> Handler for F
where
    F: Fn(Packet, Channel) -> Fut + Send + Sync + 'static,
    Fut: Future<Output: Reply + 'static> + Send + 'static,
{
    type Reply = Fut::Output;

    fn handle(&self, packet: Packet, channel: Channel) -> impl Future<Output = Fut::Output> + Send {
        self(packet, channel)
    }

    fn start(self: &Arc<Self>, packet: Packet, channel: Channel) -> Started {
        // The closure's future owns what it needs: no handle on the closure is taken.
        Started::build(|| self.as_ref()(packet, channel))
    }
}

/// Object-safe form of [`Handler`], over the shared handler it starts.
trait DynHandler: Send + Sync + 'static {
    fn start_dyn(&self, packet: Packet, channel: Channel) -> Started;
    fn reply_now_dyn(&self, packet: Packet, out: &mut BytesMut) -> Result<Result<bool, Panicked>, Packet>;
}

/// The handler behind a [`BoxHandler`], shared so that [`Handler::start`] gets its `Arc`.
struct Held<H>(Arc<H>);

impl<H: Handler> DynHandler for Held<H> {
    fn start_dyn(&self, packet: Packet, channel: Channel) -> Started {
        Handler::start(&self.0, packet, channel)
    }

    fn reply_now_dyn(&self, packet: Packet, out: &mut BytesMut) -> Result<Result<bool, Panicked>, Packet> {
        let Header { msg, sync, .. } = packet.header;
        match catch_unwind(AssertUnwindSafe(|| self.0.reply_now(packet))) {
            Ok(Ok(reply)) => Ok(write_packet(out, msg, sync, |out| reply.write_body(out))),
            Ok(Err(packet)) => Err(packet),
            Err(_) => Ok(Err(Panicked)),
        }
    }
}

/// A type-erased, shareable [`Handler`].
#[derive(Clone)]
pub struct BoxHandler(Arc<dyn DynHandler>);

impl BoxHandler {
    /// Erases `handler`'s type.
    pub fn new<H: Handler>(handler: H) -> Self {
        BoxHandler(Arc::new(Held(Arc::new(handler))))
    }

    /// Starts handling `packet` (see [`Handler::start`]).
    pub fn start(&self, packet: Packet, channel: Channel) -> Started {
        self.0.start_dyn(packet, channel)
    }

    /// Appends the reply packet to `packet` to `out` if the handler answers it at once (see
    /// [`Handler::reply_now`]): whether a packet was appended; else the packet back.
    pub(crate) fn reply_now(&self, packet: Packet, out: &mut BytesMut) -> Result<Result<bool, Panicked>, Packet> {
        self.0.reply_now_dyn(packet, out)
    }
}

impl fmt::Debug for BoxHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BoxHandler")
    }
}
