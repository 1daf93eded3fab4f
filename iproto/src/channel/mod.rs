//! [`Channel`]: one iproto connection, used by clients and servers alike. A cheap cloneable
//! handle over a reader task, a batching writer task and a keepalive timer; dropping the last
//! handle closes the connection.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), iproto::Error> {
//! use iproto::{Channel, ChannelConfig, Packet};
//!
//! // Two ends of an in-memory pipe: an echo server and a client.
//! let (a, b) = tokio::io::duplex(64 * 1024);
//! let _server = Channel::new(a, ChannelConfig::server().with_handler(
//!     |p: Packet, _ch: Channel| async move { Some(p.body) },
//! ));
//! let client = Channel::new(b, ChannelConfig::client());
//! let reply = client.call(42, b"hello").await?;
//! assert_eq!(&reply[..], b"hello");
//! client.shutdown().await;
//! # Ok(()) }
//! ```

mod call;
mod config;
mod handler;
mod hooks;
mod keepalive;
mod life;
mod outbox;
pub(crate) mod pending;
mod reader;
mod reply;
mod shared;
mod shutdown;
mod stats;
mod sweep;
mod writer;

use std::future::Future;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tracing::Instrument;

pub use config::{CallOptions, ChannelConfig};
pub use handler::{immediate, BoxHandler, Handler, Immediate};
pub use hooks::{BoxError, Callback, InitHook};
pub use reply::{Reply, Started};
pub use stats::ChannelStats;

use crate::net::{self, Addr, Stream, Transport};
use crate::wire::{Packet, MSG_PING};
use crate::Error;
use outbox::Wait;
use shared::{Shared, State};

/// Sends requests and notifications: implemented by [`Channel`] and by
/// `Pool`, so typed clients work over either (go-iproto's `Sender`).
pub trait Sender: Send + Sync {
    /// Sends a request and waits for its reply, with per-call options.
    fn call_with(&self, msg: u32, body: &[u8], opts: CallOptions) -> impl Future<Output = Result<Bytes, Error>> + Send;

    /// Sends a request and waits for its reply body.
    fn call(&self, msg: u32, body: &[u8]) -> impl Future<Output = Result<Bytes, Error>> + Send {
        self.call_with(msg, body, CallOptions::default())
    }

    /// Sends a notification (sync 0, no reply).
    fn notify(&self, msg: u32, body: &[u8]) -> impl Future<Output = Result<(), Error>> + Send;

    /// Sends a packet as is (replies, control packets): allowed during shutdown.
    fn send(&self, packet: Packet) -> impl Future<Output = Result<(), Error>> + Send;

    /// [`call_with`](Self::call_with) taking the body by value, for callers that packed it
    /// for this call (typed clients): a [`Channel`] keeps it in the call's own future instead
    /// of a second future around it.
    fn call_owned(
        &self,
        msg: u32,
        body: Vec<u8>,
        opts: CallOptions,
    ) -> impl Future<Output = Result<Bytes, Error>> + Send {
        async move { self.call_with(msg, &body, opts).await }
    }
}

/// One iproto connection. Cheap to clone; dropping the last clone closes the connection.
///
/// Calls are matched to replies by `(msg, sync)`. Incoming requests go to the configured
/// [`Handler`], each as its own task (bounded by
/// [`max_concurrent_requests`](ChannelConfig::max_concurrent_requests)).
///
/// Cancelling a call (dropping its future) forgets it locally; iproto has no cancel frame, so
/// the peer still does the work, and its late reply is dropped and counted.
pub struct Channel {
    shared: Arc<Shared>,
}

impl Clone for Channel {
    fn clone(&self) -> Self {
        Channel::from_shared(self.shared.clone())
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        if self.shared.handles.fetch_sub(1, SeqCst) == 1 {
            self.shared.close_with(None);
        }
    }
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("peer", &self.shared.peer)
            .field("local", &self.shared.local)
            .field("stopped", &self.shared.is_stopped())
            .finish()
    }
}

impl Channel {
    fn from_shared(shared: Arc<Shared>) -> Channel {
        shared.handles.fetch_add(1, SeqCst);
        Channel { shared }
    }

    /// Connects to `addr` (`host:port` or `unix:/path`), starts a channel on it and runs the
    /// config's [init hook](ChannelConfig::with_init).
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), iproto::Error> {
    /// let ch = iproto::Channel::connect("127.0.0.1:3301", iproto::ChannelConfig::client()).await?;
    /// let reply = ch.call(0x10, b"key").await?;
    /// # drop(reply); Ok(()) }
    /// ```
    pub async fn connect(addr: &str, config: ChannelConfig) -> Result<Channel, Error> {
        let stream = net::connect(addr, config.nodelay).await?;
        let channel = Channel::from_stream(stream, config);
        channel.init().await?;
        Ok(channel)
    }

    /// Starts a channel on a connected stream from [`net::connect`] or an accept loop; the
    /// same as [`new`](Self::new).
    pub fn from_stream(stream: Stream, config: ChannelConfig) -> Channel {
        Channel::new(stream, config)
    }

    /// Starts a channel on any transport: TCP and Unix sockets, in-memory duplex streams, or
    /// any other [`Transport`] (TLS) wrapped with [`Stream::other`]. Must be called inside a
    /// tokio runtime. The [init hook](ChannelConfig::with_init) is not run: call
    /// [`init`](Self::init) before handing the channel out.
    pub fn new(io: impl Into<Stream>, config: ChannelConfig) -> Channel {
        match io.into() {
            Stream::Tcp(tcp) => {
                if config.nodelay {
                    let _ = tcp.set_nodelay(true);
                }
                let peer = tcp.peer_addr().ok().map(Addr::Tcp);
                let local = tcp.local_addr().ok().map(Addr::Tcp);
                let (r, w) = tcp.into_split();
                start(r, w, true, Shared::new(config, peer, local), |r, w| match r.reunite(w) {
                    Ok(s) => Box::new(s),
                    Err(e) => Box::new(tokio::io::join(e.0, e.1)),
                })
            }
            #[cfg(unix)]
            Stream::Unix(unix) => {
                let name = |a: std::io::Result<tokio::net::unix::SocketAddr>| {
                    a.ok().map(|a| Addr::Unix(a.as_pathname().map(|p| p.to_path_buf())))
                };
                let peer = name(unix.peer_addr());
                let local = name(unix.local_addr());
                let (r, w) = unix.into_split();
                start(r, w, true, Shared::new(config, peer, local), |r, w| match r.reunite(w) {
                    Ok(s) => Box::new(s),
                    Err(e) => Box::new(tokio::io::join(e.0, e.1)),
                })
            }
            Stream::Other(io) => {
                let (r, w) = tokio::io::split(io);
                start(r, w, false, Shared::new(config, None, None), |r, w| Box::new(r.unsplit(w)))
            }
        }
    }

    /// Sends a packet as is: any code, works during shutdown. Used for replies sent
    /// outside a handler's return value. Fails with [`Error::Stopped`] once the writer is gone
    /// (go-iproto reports success and loses the packet).
    pub async fn send(&self, packet: Packet) -> Result<(), Error> {
        let h = packet.header;
        self.shared.outbox.enqueue(h.msg, h.sync, &packet.body, Wait::Forever).await
    }

    /// Sends a ping (0xff00) as a call and returns the round-trip time.
    pub async fn ping(&self) -> Result<Duration, Error> {
        let start = Instant::now();
        self.call_with(MSG_PING, &[], CallOptions { allow_reserved: true, ..Default::default() }).await?;
        Ok(start.elapsed())
    }

    fn check_open(&self) -> Result<(), Error> {
        if self.shared.hijacking.load(SeqCst) {
            Err(Error::Hijacked)
        } else if self.shared.is_stopped() {
            Err(Error::Stopped)
        } else {
            Ok(())
        }
    }

    /// Graceful shutdown: stop new calls, wait for pending calls and in-flight
    /// handlers, exchange 0xff01 with the peer, flush, close. Bounded by the shutdown
    /// timeout. A second call waits for the first to finish.
    pub async fn shutdown(&self) {
        if self.shared.begin_stop() {
            shutdown::run(self.shared.clone()).await;
        }
        self.closed().await;
    }

    /// Closes the connection at once; pending calls fail with [`Error::Dropped`]. Use
    /// [`closed`](Self::closed) to wait until the tasks are gone.
    pub fn close(&self) {
        self.shared.close_with(None);
    }

    /// Resolves when the connection is closed and its tasks have stopped; returns the close
    /// reason (`None` for a local close, a completed shutdown or a clean peer EOF).
    pub async fn closed(&self) -> Option<Arc<Error>> {
        let mut rx = self.shared.state.subscribe();
        let _ = rx.wait_for(|s| *s == State::Closed).await;
        self.close_reason()
    }

    /// Resolves when the channel stops taking new calls (shutdown started or closed).
    pub async fn stopping(&self) {
        let mut rx = self.shared.state.subscribe();
        let _ = rx.wait_for(|s| *s != State::Open).await;
    }

    /// The first fatal error, if the channel died of one.
    pub fn close_reason(&self) -> Option<Arc<Error>> {
        self.shared.reason.get().cloned()
    }

    /// Packets queued for the writer and not yet taken by it: a batch that the next write
    /// will carry. Read without a lock, so only a hint.
    pub(crate) fn open_batch(&self) -> usize {
        self.shared.outbox.open_batch()
    }

    /// Whether the channel takes no new calls (shutdown started, hijacked or closed).
    pub fn is_stopped(&self) -> bool {
        self.shared.is_stopped()
    }

    /// Whether the connection is closed.
    pub fn is_closed(&self) -> bool {
        self.shared.dropped.load(SeqCst)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ChannelStats {
        let (pending, calls) = {
            let book = self.shared.outbox.book();
            (book.pending.len() as u64, book.calls)
        };
        let mut stats = self.shared.stats.snapshot(pending);
        stats.calls += calls;
        stats
    }

    /// The peer's address, when the transport has one.
    pub fn peer_addr(&self) -> Option<&Addr> {
        self.shared.peer.as_ref()
    }

    /// Our address, when the transport has one.
    pub fn local_addr(&self) -> Option<&Addr> {
        self.shared.local.as_ref()
    }

    /// The configuration this channel runs with.
    pub fn config(&self) -> &ChannelConfig {
        &self.shared.config
    }

    /// Takes the connection over: stops new calls, waits for pending calls (bounded by
    /// the shutdown timeout), stops the tasks without closing the transport, and returns it
    /// with every byte read but not consumed: complete non-reply packets received meanwhile,
    /// then any partial packet.
    pub async fn hijack(&self) -> Result<(Box<dyn Transport>, Bytes), Error> {
        let s = &self.shared;
        if s.hijacking.swap(true, SeqCst) {
            return Err(Error::Hijacked);
        }
        if !s.begin_stop() {
            return Err(Error::Stopped);
        }
        shutdown::run(s.clone()).await;
        self.closed().await;
        let taken = crate::lock::lock(&s.hijack_slot).take();
        match (s.reason.get(), taken) {
            (Some(reason), _) => Err(reason.as_ref().clone()),
            (None, Some(parts)) => Ok(parts),
            (None, None) => Err(Error::Stopped),
        }
    }
}

impl Sender for Channel {
    fn call_with(&self, msg: u32, body: &[u8], opts: CallOptions) -> impl Future<Output = Result<Bytes, Error>> + Send {
        Channel::call_with(self, msg, body, opts)
    }

    fn notify(&self, msg: u32, body: &[u8]) -> impl Future<Output = Result<(), Error>> + Send {
        Channel::notify(self, msg, body)
    }

    fn send(&self, packet: Packet) -> impl Future<Output = Result<(), Error>> + Send {
        Channel::send(self, packet)
    }

    fn call_owned(
        &self,
        msg: u32,
        body: Vec<u8>,
        opts: CallOptions,
    ) -> impl Future<Output = Result<Bytes, Error>> + Send {
        Channel::call_owned(self, msg, body, opts)
    }
}

/// Spawns the tasks over the two halves of a transport.
/// `socket`: the write half needs no flush, so the reader may write replies itself.
fn start<R, W>(r: R, w: W, socket: bool, shared: Shared, reunite: fn(R, W) -> Box<dyn Transport>) -> Channel
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let shared = Arc::new(shared);
    // Count the first handle before any task runs: a handler's temporary handle dropped
    // earlier would otherwise take the count from 1 to 0 and close the channel.
    let channel = Channel::from_shared(shared.clone());
    let span = tracing::debug_span!(
        "iproto",
        peer = %shared.peer.as_ref().map(|a| a.to_string()).unwrap_or_default(),
        local = %shared.local.as_ref().map(|a| a.to_string()).unwrap_or_default(),
    );
    let half = Arc::new(writer::WriteHalf::new(w));
    let direct = socket.then(|| half.clone() as Arc<dyn writer::DirectWrite>);
    let reader = tokio::spawn(reader::run(shared.clone(), r, direct).instrument(span.clone()));
    let writer = tokio::spawn(writer::run(shared.clone(), half).instrument(span.clone()));
    if shared.config.effective_ping().is_some() || shared.config.idle_timeout.is_some() {
        tokio::spawn(keepalive::run(shared.clone()).instrument(span.clone()));
    }
    let supervisor = shared.clone();
    tokio::spawn(
        async move {
            let (r, w) = (reader.await, writer.await);
            match (supervisor.hijacking.load(SeqCst), r, w) {
                (true, Ok(r), Ok(w)) => {
                    let leftover: BytesMut = r.leftover;
                    *crate::lock::lock(&supervisor.hijack_slot) = Some((reunite(r.half, w), leftover.freeze()));
                }
                // Drop both halves here, so the transport is closed when closed() resolves.
                (_, r, w) => drop((r, w)),
            }
            tracing::debug!("iproto channel closed");
            supervisor.state.send_replace(State::Closed);
            life::closed(&supervisor).await;
        }
        .instrument(span),
    );
    channel
}
