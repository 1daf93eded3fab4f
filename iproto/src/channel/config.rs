//! [`ChannelConfig`] with go-iproto's defaults and per-call
//! [`CallOptions`].

use std::fmt;
use std::time::Duration;

use super::handler::{BoxHandler, Handler};
use super::hooks::{BoxError, Callback, InitHook};
use super::Channel;
use crate::wire::DEFAULT_SIZE_LIMIT;

/// Settings of one channel. `ChannelConfig::default()` is [`ChannelConfig::client`].
///
/// ```
/// use std::time::Duration;
/// let config = iproto::ChannelConfig {
///     request_timeout: Duration::from_millis(500),
///     ..iproto::ChannelConfig::client()
/// };
/// assert_eq!(config.write_queue, 50);
/// ```
#[derive(Clone)]
pub struct ChannelConfig {
    /// Budget of one call, queueing included. Default 5 s.
    pub request_timeout: Duration,
    /// How long a notification may wait for room in the write queue. Default 1 s.
    pub notify_timeout: Duration,
    /// Interval of keepalive pings; `None` sends none. Default 1 min for channels we
    /// dial, none on channels a server accepts (MR::IProto clients break on a server's ping).
    pub ping_interval: Option<Duration>,
    /// Close after this long without a complete incoming packet. Default off.
    pub idle_timeout: Option<Duration>,
    /// Bound on graceful shutdown. Default 5 s.
    pub shutdown_timeout: Duration,
    /// Largest incoming body accepted, inclusive. Default 100 000 000.
    pub size_limit: u32,
    /// Packets that may wait for the writer before senders wait. Default 50.
    pub write_queue: usize,
    /// Bytes of packets that may wait for the writer even when `write_queue` packets already
    /// do (go-iproto's writer batches into a buffer of this size besides its queue, so
    /// small packets do not wait for room). The queue holds up to `write_queue` packets or
    /// this many bytes, whichever is more. Default 4 096.
    pub write_buffer_size: usize,
    /// Bound on one write to the socket. Default 5 s.
    pub write_timeout: Duration,
    /// Never send pings even if `ping_interval` is set. Pings are still answered.
    pub disable_ping: bool,
    /// Never send the 0xff01 shutdown packet, e.g. for Octopus peers that use the
    /// code for replication or MR::IProto clients that cannot handle it.
    pub disable_shutdown: bool,
    /// Incoming requests handled at once; at the limit the reader waits. A handler that answers
    /// without waiting runs on the reader, its reply written into the reader's batch, and
    /// holds no slot; one that waits runs on a task of its own. Default 1 024.
    pub max_concurrent_requests: usize,
    /// Set TCP_NODELAY on TCP connections. Default true (without it pipelined calls stall
    /// for ~40 ms).
    pub nodelay: bool,
    /// The handler for incoming requests (go-iproto's `ChannelConfig.Handler`); set it with
    /// [`with_handler`](Self::with_handler). Without one, requests are dropped unanswered.
    pub handler: Option<BoxHandler>,
    /// Runs on each new channel before it takes traffic (go-iproto's `Init`); set it with
    /// [`with_init`](Self::with_init). Default none.
    pub init: Option<InitHook>,
    /// Run, in order, when a graceful shutdown starts (either side's, or a hijack), before
    /// 0xff01 is sent; never on an abrupt close. Add with [`on_shutdown`](Self::on_shutdown).
    pub on_shutdown: Vec<Callback>,
    /// Run, in order, once the connection has closed, whatever closed it. Add with
    /// [`on_close`](Self::on_close).
    pub on_close: Vec<Callback>,
    /// Bound on the init hook and on each callback; one that takes longer is abandoned (the
    /// init hook then fails). Default 5 s.
    pub callback_timeout: Duration,
}

impl ChannelConfig {
    /// Defaults for channels we dial: pings every minute.
    pub fn client() -> Self {
        ChannelConfig {
            request_timeout: Duration::from_secs(5),
            notify_timeout: Duration::from_secs(1),
            ping_interval: Some(Duration::from_secs(60)),
            idle_timeout: None,
            shutdown_timeout: Duration::from_secs(5),
            size_limit: DEFAULT_SIZE_LIMIT,
            write_queue: 50,
            write_buffer_size: 4096,
            write_timeout: Duration::from_secs(5),
            disable_ping: false,
            disable_shutdown: false,
            max_concurrent_requests: 1024,
            nodelay: true,
            handler: None,
            init: None,
            on_shutdown: Vec::new(),
            on_close: Vec::new(),
            callback_timeout: Duration::from_secs(5),
        }
    }

    /// Defaults for channels a server accepts: like [`client`](Self::client) but no pings.
    pub fn server() -> Self {
        ChannelConfig { ping_interval: None, ..Self::client() }
    }

    /// Sets the handler for incoming requests (go-iproto's `ChannelConfig.Handler`).
    ///
    /// ```
    /// let config = iproto::ChannelConfig::server()
    ///     .with_handler(|packet: iproto::Packet, _ch: iproto::Channel| async move { Some(packet.body) });
    /// # drop(config);
    /// ```
    pub fn with_handler<H: Handler>(mut self, handler: H) -> Self {
        self.handler = Some(BoxHandler::new(handler));
        self
    }

    /// Sets the init hook: an async function of each new channel, run after its tasks start
    /// (requests are already handled) and before it is handed out, that may make calls on it —
    /// a login, a handshake, a schema check. A failure closes the channel: [`Channel::connect`]
    /// returns it, a pool counts it as a failed dial and retries with backoff, a server closes
    /// the connection. Bounded by [`callback_timeout`](Self::callback_timeout).
    ///
    /// ```
    /// let config = iproto::ChannelConfig::client().with_init(|ch: iproto::Channel| async move {
    ///     let reply = ch.call(0x01, b"login:secret").await?;
    ///     if &reply[..] != b"ok" {
    ///         return Err(format!("login refused: {reply:?}").into());
    ///     }
    ///     Ok::<(), iproto::channel::BoxError>(())
    /// });
    /// # drop(config);
    /// ```
    pub fn with_init<F, Fut, E>(mut self, hook: F) -> Self
    where
        F: Fn(Channel) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        self.init = Some(InitHook::new(hook));
        self
    }

    /// Adds a callback run when a graceful shutdown starts, before 0xff01 is sent: the
    /// initiator's callbacks finish before it sends 0xff01, the responder's run when that
    /// arrives and finish before it answers. Not run when the connection just closes.
    ///
    /// ```
    /// let config = iproto::ChannelConfig::server()
    ///     .on_shutdown(|ch: iproto::Channel| async move { tracing::info!(peer = ?ch.peer_addr(), "draining") })
    ///     .on_close(|ch: iproto::Channel| async move { tracing::info!(reason = ?ch.close_reason(), "closed") });
    /// # drop(config);
    /// ```
    pub fn on_shutdown<F, Fut>(mut self, callback: F) -> Self
    where
        F: Fn(Channel) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        self.on_shutdown.push(Callback::new(callback));
        self
    }

    /// Adds a callback run once the connection has closed, whatever closed it (after
    /// [`Channel::closed`] resolves).
    pub fn on_close<F, Fut>(mut self, callback: F) -> Self
    where
        F: Fn(Channel) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        self.on_close.push(Callback::new(callback));
        self
    }

    /// Whether a handler is set.
    pub fn has_handler(&self) -> bool {
        self.handler.is_some()
    }

    pub(crate) fn effective_ping(&self) -> Option<Duration> {
        self.ping_interval.filter(|d| !self.disable_ping && !d.is_zero())
    }
}

impl Default for ChannelConfig {
    fn default() -> Self {
        Self::client()
    }
}

impl fmt::Debug for ChannelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelConfig")
            .field("request_timeout", &self.request_timeout)
            .field("notify_timeout", &self.notify_timeout)
            .field("ping_interval", &self.ping_interval)
            .field("idle_timeout", &self.idle_timeout)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("size_limit", &self.size_limit)
            .field("write_queue", &self.write_queue)
            .field("write_buffer_size", &self.write_buffer_size)
            .field("write_timeout", &self.write_timeout)
            .field("disable_ping", &self.disable_ping)
            .field("disable_shutdown", &self.disable_shutdown)
            .field("max_concurrent_requests", &self.max_concurrent_requests)
            .field("nodelay", &self.nodelay)
            .field("handler", &self.handler.is_some())
            .field("init", &self.init.is_some())
            .field("on_shutdown", &self.on_shutdown.len())
            .field("on_close", &self.on_close.len())
            .field("callback_timeout", &self.callback_timeout)
            .finish()
    }
}

/// Per-call options for [`Channel::call_with`](crate::Channel::call_with).
///
/// ```
/// use std::time::Duration;
/// let opts = iproto::CallOptions { timeout: Some(Duration::from_millis(50)), ..Default::default() };
/// # drop(opts);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallOptions {
    /// Overrides the channel's request timeout for this call.
    pub timeout: Option<Duration>,
    /// Allows a reserved code (>= 0xff00); off by default (docs/protocol.md).
    pub allow_reserved: bool,
    /// The request may run twice without harm, so a layer that retries (a cluster) may send
    /// it again after an attempt that may have reached a server. Default false: only attempts
    /// that certainly never left are retried.
    pub idempotent: bool,
}

impl CallOptions {
    /// Options with the given timeout.
    pub fn timeout(timeout: Duration) -> Self {
        CallOptions { timeout: Some(timeout), ..Default::default() }
    }

    /// These options with the call marked idempotent (the `idempotent` field).
    pub fn idempotent(self) -> Self {
        CallOptions { idempotent: true, ..self }
    }
}
