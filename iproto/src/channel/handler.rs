//! [`Handler`]: what a channel does with incoming requests. Async closures implement it.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;

use super::Channel;
use crate::wire::Packet;

/// Handles one incoming request: gets the packet and a handle to its channel, returns the reply
/// body, or `None` to send no reply (notifications, or requests answered later via
/// [`Channel::send`]).
///
/// ```
/// use iproto::{Channel, Packet};
///
/// // An echo handler as an async closure.
/// let echo = |packet: Packet, _channel: Channel| async move { Some(packet.body) };
/// let config = iproto::ChannelConfig::server().with_handler(echo);
/// # drop(config);
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Handles `packet`, received on `channel`.
    fn handle(&self, packet: Packet, channel: Channel) -> impl Future<Output = Option<Bytes>> + Send;
}

impl<F, Fut> Handler for F
where
    F: Fn(Packet, Channel) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Option<Bytes>> + Send + 'static,
{
    fn handle(&self, packet: Packet, channel: Channel) -> impl Future<Output = Option<Bytes>> + Send {
        self(packet, channel)
    }
}

/// A boxed handler future.
pub(crate) type BoxFuture = futures_util::future::BoxFuture<'static, Option<Bytes>>;

/// Object-safe form of [`Handler`], so configs and channels are not generic over it.
pub(crate) trait DynHandler: Send + Sync + 'static {
    fn handle_boxed(self: Arc<Self>, packet: Packet, channel: Channel) -> BoxFuture;
}

impl<H: Handler> DynHandler for H {
    fn handle_boxed(self: Arc<Self>, packet: Packet, channel: Channel) -> BoxFuture {
        Box::pin(async move { self.handle(packet, channel).await })
    }
}
