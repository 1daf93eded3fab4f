//! [`ServeMux`]: routes incoming requests to handlers by message code.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;

use crate::channel::pending::Build;
use crate::channel::{BoxHandler, Channel, Handler, Started};
pub use crate::error::DuplicateRoute;
use crate::wire::Packet;

/// What happens to a request whose code has no handler.
#[derive(Clone, Default)]
enum Fallback {
    /// Log it and send no reply (go-iproto's behaviour: the caller times out).
    #[default]
    Ignore,
    /// Reply with this body.
    Reply(Bytes),
    /// Pass it to this handler.
    Handler(BoxHandler),
}

/// Routes requests to handlers by message code.
///
/// ```
/// use iproto::{Channel, Packet, ServeMux};
///
/// let mut mux = ServeMux::new();
/// mux.handle(0x10, |p: Packet, _ch: Channel| async move { Some(p.body) }).unwrap();
/// mux.handle(0x11, |_p: Packet, _ch: Channel| async move {}).unwrap();
/// assert!(mux.handle(0x10, |_p: Packet, _ch: Channel| async move {}).is_err());
/// ```
#[derive(Clone, Default)]
pub struct ServeMux {
    /// Keyed with a multiplicative hash, not SipHash: codes are the application's, and the
    /// lookup is on every request.
    routes: HashMap<u32, BoxHandler, Build>,
    fallback: Fallback,
}

impl ServeMux {
    /// An empty mux: every request is ignored.
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes `code` to `handler`; a code registered twice is an error.
    pub fn handle<H: Handler>(&mut self, code: u32, handler: H) -> Result<&mut Self, DuplicateRoute> {
        self.handle_boxed(code, BoxHandler::new(handler))
    }

    /// Routes `code` to an already boxed handler.
    pub fn handle_boxed(&mut self, code: u32, handler: BoxHandler) -> Result<&mut Self, DuplicateRoute> {
        match self.routes.entry(code) {
            std::collections::hash_map::Entry::Occupied(_) => Err(DuplicateRoute { code }),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(handler);
                Ok(self)
            }
        }
    }

    /// Replies to unknown codes with `body` instead of ignoring them.
    pub fn reply_to_unknown(&mut self, body: impl Into<Bytes>) -> &mut Self {
        self.fallback = Fallback::Reply(body.into());
        self
    }

    /// Passes requests with unknown codes to `handler`.
    pub fn fallback<H: Handler>(&mut self, handler: H) -> &mut Self {
        self.fallback = Fallback::Handler(BoxHandler::new(handler));
        self
    }

    /// The handler registered for `code` (go-iproto's `ServeMux.Handler`); `None` for an
    /// unknown code, which the fallback handles.
    ///
    /// ```
    /// use iproto::{Channel, Packet, ServeMux};
    ///
    /// let mut mux = ServeMux::new();
    /// mux.handle(0x10, |p: Packet, _ch: Channel| async move { Some(p.body) }).unwrap();
    /// assert!(mux.handler(0x10).is_some());
    /// assert!(mux.handler(0x11).is_none());
    /// ```
    pub fn handler(&self, code: u32) -> Option<&BoxHandler> {
        self.routes.get(&code)
    }

    /// Whether `code` has a handler.
    pub fn contains(&self, code: u32) -> bool {
        self.routes.contains_key(&code)
    }

    /// The registered codes, in no particular order.
    pub fn codes(&self) -> impl Iterator<Item = u32> + '_ {
        self.routes.keys().copied()
    }
}

impl fmt::Debug for ServeMux {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut codes: Vec<u32> = self.codes().collect();
        codes.sort_unstable();
        let fallback = match &self.fallback {
            Fallback::Ignore => "ignore",
            Fallback::Reply(_) => "reply",
            Fallback::Handler(_) => "handler",
        };
        f.debug_struct("ServeMux").field("codes", &codes).field("fallback", &fallback).finish()
    }
}

impl ServeMux {
    /// Starts handling `packet` with its route's handler: the route's started future itself.
    fn route(&self, packet: Packet, channel: Channel) -> Started {
        match self.routes.get(&packet.header.msg) {
            Some(route) => route.start(packet, channel),
            None => match &self.fallback {
                Fallback::Ignore => {
                    tracing::debug!(msg = packet.header.msg, "no route for message code; no reply");
                    Started::ready(None)
                }
                Fallback::Reply(body) => Started::ready(Some(body.clone())),
                Fallback::Handler(handler) => handler.start(packet, channel),
            },
        }
    }
}

impl Handler for ServeMux {
    type Reply = Started;

    fn handle(&self, packet: Packet, channel: Channel) -> impl Future<Output = Started> + Send {
        let mut started = self.route(packet, channel);
        async move {
            if started.done().await.is_err() {
                panic!("iproto: a ServeMux route's handler panicked");
            }
            started
        }
    }

    /// The route's own started future: one box per request, not one for the mux and one for
    /// the route.
    fn start(self: &Arc<Self>, packet: Packet, channel: Channel) -> Started {
        self.route(packet, channel)
    }
}
