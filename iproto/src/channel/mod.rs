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

mod config;
pub(crate) mod direct;
pub(crate) mod handler;
mod keepalive;
pub(crate) mod pending;
mod reader;
mod shutdown;
mod stats;
mod sweep;
mod writer;

use std::any::Any;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{oneshot, watch, Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use config::{BoxHandler, CallOptions, ChannelConfig};
pub use handler::Handler;
pub use stats::ChannelStats;

use crate::net::{self, Addr, Stream, Transport};
use crate::wire::{encode_packet, Packet, HEADER_LEN, MSG_PING, MSG_RESERVED_MIN};
use crate::Error;
use pending::{key, Pending};
use writer::{Outbox, Wait};

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

/// Life-cycle state, published through a watch channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Stopping,
    Closed,
}

/// The pending calls and the outgoing queue under one lock: a call registers itself and
/// queues its packet with one lock, not two (the lean yardstick takes one per call).
#[derive(Default)]
pub(crate) struct Book {
    pending: Pending,
    out: Outbox,
    /// Calls registered; counted here, under the lock every call takes anyway, instead of
    /// in a counter that the threads making calls would bounce between them.
    calls: u64,
}

/// The [`Book`] lock and the copy of the outbox's packet count the pool reads without it,
/// on the same cache line: both change on every call.
#[repr(C)]
struct BookLock {
    open_batch: AtomicUsize,
    book: Mutex<Book>,
}

/// The pending table behind the [`Book`] lock.
pub(crate) struct PendingRef<'a>(MutexGuard<'a, Book>);

impl Deref for PendingRef<'_> {
    type Target = Pending;
    fn deref(&self) -> &Pending {
        &self.0.pending
    }
}

impl DerefMut for PendingRef<'_> {
    fn deref_mut(&mut self) -> &mut Pending {
        &mut self.0.pending
    }
}

/// Everything the handle and the tasks share.
pub(crate) struct Shared {
    config: ChannelConfig,
    book: BookLock,
    wake_writer: Notify,
    room: Notify,
    /// Fired on every life-cycle event: pending calls emptied, peer shutdown, reader or
    /// writer done, dropped.
    changed: Notify,
    stopped: AtomicBool,
    hijacking: AtomicBool,
    dropped: AtomicBool,
    peer_shutdown: AtomicBool,
    reader_done: AtomicBool,
    writer_stop: AtomicBool,
    reason: OnceLock<Arc<Error>>,
    cancel: CancellationToken,
    state: watch::Sender<State>,
    handler_slots: Arc<Semaphore>,
    stats: stats::Counters,
    ping_sent: Mutex<Option<Instant>>,
    base: Instant,
    last_read_nanos: AtomicU64,
    handles: AtomicUsize,
    hijack_slot: Mutex<Option<(Box<dyn Transport>, Bytes)>>,
    peer: Option<Addr>,
    local: Option<Addr>,
}

impl Shared {
    fn book(&self) -> MutexGuard<'_, Book> {
        self.book.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pending(&self) -> PendingRef<'_> {
        PendingRef(self.book())
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(SeqCst)
    }

    /// Records that a complete packet arrived (idle timer).
    fn touch(&self) {
        let nanos = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_read_nanos.store(nanos, SeqCst);
    }

    fn last_read(&self) -> Instant {
        self.base + Duration::from_nanos(self.last_read_nanos.load(SeqCst))
    }

    /// Marks the channel stopped; returns false if it already was.
    fn begin_stop(&self) -> bool {
        if self.stopped.swap(true, SeqCst) {
            return false;
        }
        self.state.send_if_modified(|s| {
            let open = *s == State::Open;
            if open {
                *s = State::Stopping;
            }
            open
        });
        true
    }

    /// A fatal error: recorded (first one only) and the connection dropped (C-30).
    fn fail(&self, error: Error) {
        if !self.dropped.load(SeqCst) {
            tracing::warn!(error = %error, "iproto channel failed");
        }
        self.close_with(Some(error));
    }

    /// Drops the connection at once (go-iproto's `Drop`): fails every pending call with
    /// [`Error::Dropped`] and stops the tasks. Idempotent.
    fn close_with(&self, reason: Option<Error>) {
        if self.dropped.swap(true, SeqCst) {
            return;
        }
        let reason = reason.map(|e| self.reason.get_or_init(|| Arc::new(e)).clone());
        self.begin_stop();
        self.close_outbox();
        self.cancel.cancel();
        let calls = self.pending().drain();
        for tx in calls {
            let _ = tx.send(Err(Error::Dropped(reason.clone())));
        }
        self.changed.notify_waiters();
    }

    /// A 0xff01 arrived (W-19).
    fn peer_shutdown_received(self: &Arc<Self>) {
        self.peer_shutdown.store(true, SeqCst);
        self.changed.notify_waiters();
        if self.begin_stop() {
            tracing::debug!("peer started a graceful shutdown");
            tokio::spawn(shutdown::run(self.clone()).in_current_span());
        }
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

    /// Connects to `addr` (`host:port` or `unix:/path`) and starts a channel on it.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), iproto::Error> {
    /// let ch = iproto::Channel::connect("127.0.0.1:3301", iproto::ChannelConfig::client()).await?;
    /// let reply = ch.call(0x10, b"key").await?;
    /// # drop(reply); Ok(()) }
    /// ```
    pub async fn connect(addr: &str, config: ChannelConfig) -> Result<Channel, Error> {
        let stream = net::connect(addr, config.nodelay).await?;
        Ok(Channel::from_stream(stream, config))
    }

    /// Starts a channel on a connected stream from [`net::connect`] or an accept loop.
    pub fn from_stream(stream: Stream, config: ChannelConfig) -> Channel {
        match stream {
            Stream::Tcp(s) => Channel::new(s, config),
            #[cfg(unix)]
            Stream::Unix(s) => Channel::new(s, config),
        }
    }

    /// Starts a channel on any transport: TCP, Unix sockets, TLS, in-memory duplex streams.
    /// Must be called inside a tokio runtime.
    pub fn new<T: Transport>(io: T, config: ChannelConfig) -> Channel {
        let boxed: Box<dyn Any + Send> = Box::new(io);
        let boxed = match boxed.downcast::<tokio::net::TcpStream>() {
            Ok(tcp) => {
                let tcp = *tcp;
                if config.nodelay {
                    let _ = tcp.set_nodelay(true);
                }
                let peer = tcp.peer_addr().ok().map(Addr::Tcp);
                let local = tcp.local_addr().ok().map(Addr::Tcp);
                let (r, w) = tcp.into_split();
                return start(r, w, true, config, peer, local, |r, w| match r.reunite(w) {
                    Ok(s) => Box::new(s),
                    Err(e) => Box::new(tokio::io::join(e.0, e.1)),
                });
            }
            Err(other) => other,
        };
        #[cfg(unix)]
        let boxed = match boxed.downcast::<tokio::net::UnixStream>() {
            Ok(unix) => {
                let unix = *unix;
                let name = |a: std::io::Result<tokio::net::unix::SocketAddr>| {
                    a.ok().map(|a| Addr::Unix(a.as_pathname().map(|p| p.to_path_buf())))
                };
                let peer = name(unix.peer_addr());
                let local = name(unix.local_addr());
                let (r, w) = unix.into_split();
                return start(r, w, true, config, peer, local, |r, w| match r.reunite(w) {
                    Ok(s) => Box::new(s),
                    Err(e) => Box::new(tokio::io::join(e.0, e.1)),
                });
            }
            Err(other) => other,
        };
        match boxed.downcast::<T>() {
            Ok(io) => {
                let (r, w) = tokio::io::split(*io);
                start(r, w, false, config, None, None, |r, w| Box::new(r.unsplit(w)))
            }
            Err(_) => unreachable!("the box holds a T"),
        }
    }

    /// Sends a request and waits for its reply body, within the request timeout (C-22).
    ///
    /// Codes >= 0xff00 are refused with [`Error::ReservedCode`]; see
    /// [`CallOptions::allow_reserved`].
    pub fn call<'s, 'b>(
        &'s self,
        msg: u32,
        body: &'b [u8],
    ) -> impl Future<Output = Result<Bytes, Error>> + Send + use<'s, 'b> {
        self.call_with(msg, body, CallOptions::default())
    }

    /// [`call`](Self::call) with per-call options (timeout override, reserved codes).
    ///
    /// Both return the call's own future, with no wrapper around it: a task making calls
    /// holds one, and its size is what many concurrent callers keep in cache.
    pub fn call_with<'s, 'b>(
        &'s self,
        msg: u32,
        body: &'b [u8],
        opts: CallOptions,
    ) -> impl Future<Output = Result<Bytes, Error>> + Send + use<'s, 'b> {
        self.call_inner(msg, body, opts)
    }

    /// Counts a call that ended with an error.
    fn failed(&self, error: Error) -> Error {
        stats::Counters::inc(&self.shared.stats.callers.canceled);
        error
    }

    /// [`call_with`](Self::call_with) owning its body (see [`Sender::call_owned`]).
    pub fn call_owned(
        &self,
        msg: u32,
        body: Vec<u8>,
        opts: CallOptions,
    ) -> impl Future<Output = Result<Bytes, Error>> + Send + '_ {
        self.call_inner(msg, body, opts)
    }

    /// The call, generic over how the body is held (borrowed or owned), so that either way it
    /// is one future.
    async fn call_inner<B: AsRef<[u8]> + Send>(&self, msg: u32, body: B, opts: CallOptions) -> Result<Bytes, Error> {
        let s = &self.shared;
        // Calls refused before registration are counted here; the others under the lock.
        if msg >= MSG_RESERVED_MIN && !opts.allow_reserved {
            stats::Counters::inc(&s.stats.callers.calls);
            return Err(self.failed(Error::ReservedCode(msg)));
        }
        if let Err(e) = self.check_open() {
            stats::Counters::inc(&s.stats.callers.calls);
            return Err(self.failed(e));
        }
        let deadline = Instant::now() + opts.timeout.unwrap_or(s.config.request_timeout);
        let (tx, rx) = oneshot::channel();
        // The default timeout is enforced by the sweep; a per-call one by its own timer.
        let swept = opts.timeout.is_none();
        // Register and, when the queue has room, queue the packet under one lock.
        let (sync, spawn_sweep, queued) = {
            let mut book = s.book();
            let (sync, spawn_sweep) = book.pending.insert(msg, tx, swept.then_some(deadline));
            // The body is borrowed afresh at each use: a slice kept in a local would be stored
            // in the future next to the body.
            let bytes = body.as_ref();
            let queued = if bytes.len() > u32::MAX as usize {
                Err(Error::BodyTooLarge(bytes.len()))
            } else {
                let pushed = s.push_locked(&mut book, 1, HEADER_LEN + bytes.len(), |buf| {
                    buf.reserve(HEADER_LEN + bytes.len());
                    encode_packet(buf, msg, sync, bytes).map_err(Error::from)
                });
                book.calls += 1;
                pushed
            };
            (sync, spawn_sweep, queued)
        };
        if spawn_sweep {
            tokio::spawn(sweep::run(s.clone()));
        }
        let mut guard = PendingGuard { shared: s, key: key(msg, sync), sent: false };
        let wait_for_room = match queued {
            Ok(true) => {
                s.wake_writer.notify_one();
                false
            }
            Ok(false) => true,
            Err(e) => {
                stats::Counters::inc(&s.stats.callers.packets_dropped);
                return Err(self.failed(e));
            }
        };
        if wait_for_room {
            if let Err(e) = s.enqueue(msg, sync, body.as_ref(), Wait::Until(deadline)).await {
                stats::Counters::inc(&s.stats.callers.packets_dropped);
                return Err(self.failed(e));
            }
        }
        guard.sent = true;
        // A per-call timeout's timer is boxed: most calls use the default timeout (the sweep),
        // and the timer would otherwise make every call's future bigger.
        let reply = if swept { Ok(rx.await) } else { Box::pin(tokio::time::timeout_at(deadline, rx)).await };
        match reply {
            Ok(Ok(reply)) => {
                guard.disarm();
                reply.map_err(|e| self.failed(e))
            }
            Ok(Err(_)) => {
                guard.disarm();
                Err(self.failed(Error::Dropped(s.reason.get().cloned())))
            }
            Err(_) => Err(self.failed(Error::Timeout)),
        }
    }

    /// Sends a notification: sync 0, no reply (C-23). Success means queued, not delivered.
    pub async fn notify(&self, msg: u32, body: &[u8]) -> Result<(), Error> {
        let s = &self.shared;
        stats::Counters::inc(&s.stats.callers.notices);
        if msg >= MSG_RESERVED_MIN {
            return Err(Error::ReservedCode(msg));
        }
        self.check_open()?;
        let deadline = Instant::now() + s.config.notice_timeout;
        s.enqueue(msg, 0, body, Wait::Until(deadline)).await.inspect_err(|_| {
            stats::Counters::inc(&s.stats.callers.packets_dropped);
        })
    }

    /// Sends a packet as is: any code, works during shutdown (C-24). Used for replies sent
    /// outside a handler's return value. Fails with [`Error::Stopped`] once the writer is gone
    /// (fixes C-24's silent loss).
    pub async fn send(&self, packet: Packet) -> Result<(), Error> {
        let h = packet.header;
        self.shared.enqueue(h.msg, h.sync, &packet.body, Wait::Forever).await
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

    /// Graceful shutdown (W-18): stop new calls, wait for pending calls and in-flight
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
        self.shared.book.open_batch.load(Relaxed)
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
            let book = self.shared.book();
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

    /// Takes the connection over (C-34): stops new calls, waits for pending calls (bounded by
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
        let taken = s.hijack_slot.lock().unwrap_or_else(|e| e.into_inner()).take();
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

/// Removes a call's pending entry when the call gives up (timeout or cancellation), so that
/// nothing leaks and a late reply is recognised.
struct PendingGuard<'a> {
    shared: &'a Shared,
    key: u64,
    sent: bool,
}

impl PendingGuard<'_> {
    fn disarm(&mut self) {
        self.key = u64::MAX;
    }
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if self.key == u64::MAX {
            return;
        }
        let empty = {
            let mut pending = self.shared.pending();
            if self.sent {
                pending.abandon(self.key);
            } else {
                pending.cancel(self.key);
            }
            pending.is_empty()
        };
        if empty {
            self.shared.changed.notify_waiters();
        }
    }
}

/// Builds the shared state and spawns the tasks over the two halves of a transport.
/// `socket`: the write half needs no flush, so the reader may write replies itself.
fn start<R, W>(
    r: R,
    w: W,
    socket: bool,
    config: ChannelConfig,
    peer: Option<Addr>,
    local: Option<Addr>,
    reunite: fn(R, W) -> Box<dyn Transport>,
) -> Channel
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let slots = config.max_concurrent_requests.clamp(1, Semaphore::MAX_PERMITS);
    let shared = Arc::new(Shared {
        book: BookLock { open_batch: AtomicUsize::new(0), book: Mutex::new(Book::default()) },
        wake_writer: Notify::new(),
        room: Notify::new(),
        changed: Notify::new(),
        stopped: AtomicBool::new(false),
        hijacking: AtomicBool::new(false),
        dropped: AtomicBool::new(false),
        peer_shutdown: AtomicBool::new(false),
        reader_done: AtomicBool::new(false),
        writer_stop: AtomicBool::new(false),
        reason: OnceLock::new(),
        cancel: CancellationToken::new(),
        state: watch::Sender::new(State::Open),
        handler_slots: Arc::new(Semaphore::new(slots)),
        stats: stats::Counters::default(),
        ping_sent: Mutex::new(None),
        base: Instant::now(),
        last_read_nanos: AtomicU64::new(0),
        handles: AtomicUsize::new(0),
        hijack_slot: Mutex::new(None),
        peer,
        local,
        config,
    });
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
                    *supervisor.hijack_slot.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some((reunite(r.half, w), leftover.freeze()));
                }
                // Drop both halves here, so the transport is closed when closed() resolves.
                (_, r, w) => drop((r, w)),
            }
            tracing::debug!("iproto channel closed");
            supervisor.state.send_replace(State::Closed);
        }
        .instrument(span),
    );
    channel
}
