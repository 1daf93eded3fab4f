//! [`Pool`]: a set of channels to one address. Round-robin over the
//! online channels, a single-flight background redial with exponential backoff and jitter
//! (go-iproto: linear), an optional rate limit, graceful shutdown and summed statistics.
//!
//! Differences from go-iproto, on purpose:
//! * redial backoff is exponential with jitter, capped by `max_redial_interval` (go: linear);
//! * a throttled dial makes a waiting caller wait for the throttle window instead of failing
//!   with `ErrThrottled`, and joining a running dial is never throttled;
//! * a call retries at most once on another channel, and the retry takes no second rate-limit
//!   token;
//! * statistics of a closed channel are saved when it has closed, not when it left the online
//!   list, so nothing it counted while finishing is lost;
//! * concurrent calls join the batch another call just started on a channel, up to the
//!   channel's `write_queue`, before moving round-robin to the next one, so a burst of calls
//!   costs one write instead of one per connection (`strict_round_robin` turns it off).

mod budget;
mod config;
mod dial;
mod limit;
mod online;

pub use config::{ConnectFuture, Connector, PoolConfig, RateLimit};

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::ExponentialBuilder;
use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::budget::Budget;
use self::dial::DialState;
use self::limit::Limiter;
use self::online::Online;
pub(crate) use self::online::Pick;
use crate::channel::{CallOptions, Channel, ChannelStats, Sender};
use crate::error::{PoolError, TimeoutStage};
use crate::lock::lock;
use crate::net::{Endpoint, Transport};
use crate::wire::Packet;
use crate::Error;

/// A pool's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// The sum of every channel's counters, the closed ones included.
    pub channels: ChannelStats,
    /// Connect attempts, successful or not.
    pub dial_count: u64,
    /// Failed connect attempts.
    pub dial_errors: u64,
    /// Calls that waited for a channel and gave up ([`PoolError::NoChannel`]).
    pub wait_errors: u64,
    /// Channels online now.
    pub online: usize,
}

/// A set of up to `size` channels to one address, used round-robin, redialed in the
/// background. Implements [`Sender`], so typed clients work over a pool or a channel alike.
/// Cheap to clone; dropping the last clone closes every channel.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), iproto::Error> {
/// use iproto::pool::{Pool, PoolConfig};
/// use iproto::{Channel, Packet, Server};
///
/// let server = Server::bind("127.0.0.1:0").await?;
/// let addr = server.local_addr().to_string();
/// tokio::spawn(server.serve(|p: Packet, _ch: Channel| async move { Some(p.body) }));
///
/// let pool = Pool::dial(&addr, PoolConfig { size: 2, ..Default::default() }).await?;
/// assert_eq!(&pool.call(7, b"hi").await?[..], b"hi");
/// pool.shutdown().await;
/// # Ok(()) }
/// ```
pub struct Pool {
    inner: Arc<Inner>,
}

impl Clone for Pool {
    fn clone(&self) -> Self {
        self.inner.handles.fetch_add(1, SeqCst);
        Pool { inner: self.inner.clone() }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if self.inner.handles.fetch_sub(1, SeqCst) == 1 {
            self.inner.stop();
            for channel in self.inner.live() {
                channel.close();
            }
        }
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("addr", &self.inner.addr)
            .field("online", &self.inner.online.len())
            .field("stopped", &self.inner.stopped.load(SeqCst))
            .finish()
    }
}

/// Every channel not yet closed (online or finishing), and the counters of closed ones.
#[derive(Default)]
struct Registry {
    live: HashMap<u64, Channel>,
    saved: ChannelStats,
}

struct Inner {
    addr: String,
    config: PoolConfig,
    backoff: ExponentialBuilder,
    online: Online,
    next_id: AtomicU64,
    stopped: AtomicBool,
    /// Bumped whenever a waiting caller might find a channel: stored, removed, a dial routine
    /// ended, the pool stopped.
    events: watch::Sender<u64>,
    dial: Mutex<DialState>,
    stop_dial: CancellationToken,
    registry: Mutex<Registry>,
    limiter: Option<Limiter>,
    dial_count: AtomicU64,
    dial_errors: AtomicU64,
    /// The last connect attempt's error; cleared when one succeeds.
    last_dial_error: Mutex<Option<Error>>,
    wait_errors: AtomicU64,
    handles: AtomicUsize,
}

impl Pool {
    /// A pool that has dialed nothing yet; the first call (or [`init`](Self::init)) dials.
    /// `addr` is `host:port` or `unix:/path` (any string with a custom connector).
    pub fn new(addr: &str, config: PoolConfig) -> Result<Pool, Error> {
        if config.connector.is_none() {
            Endpoint::parse(addr)?;
        }
        let limiter = config.rate_limit.and_then(Limiter::new);
        let size = config.size.max(1);
        let inner = Inner {
            addr: addr.to_owned(),
            backoff: config.backoff(),
            config: PoolConfig { size, ..config },
            online: Online::new(),
            next_id: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            events: watch::Sender::new(0),
            dial: Mutex::new(DialState::new()),
            stop_dial: CancellationToken::new(),
            registry: Mutex::default(),
            limiter,
            dial_count: AtomicU64::new(0),
            dial_errors: AtomicU64::new(0),
            last_dial_error: Mutex::new(None),
            wait_errors: AtomicU64::new(0),
            handles: AtomicUsize::new(1),
        };
        Ok(Pool { inner: Arc::new(inner) })
    }

    /// [`new`](Self::new) + [`init`](Self::init): fails (and closes the pool) when no
    /// connection could be made within the connect timeout, with the last attempt's error.
    pub async fn dial(addr: &str, config: PoolConfig) -> Result<Pool, Error> {
        let pool = Pool::new(addr, config)?;
        match pool.init().await {
            Ok(()) => Ok(pool),
            Err(e) => {
                pool.close().await;
                Err(e)
            }
        }
    }

    /// Brings one channel online, retrying with backoff for up to the connect timeout.
    /// The rest of the pool grows in the background as calls come in.
    pub async fn init(&self) -> Result<(), Error> {
        self.inner.connect(1).await
    }

    /// Brings `size` channels online, dialing them at once, within the connect timeout.
    pub async fn init_all(&self) -> Result<(), Error> {
        self.inner.connect(self.inner.config.size).await
    }

    /// The next online channel, round-robin: waits up to the connect timeout for a dial
    /// when none is online, or fails at once with [`PoolError::Cutoff`] with `fail_on_cutoff`.
    /// Takes a rate-limit token.
    pub async fn next_channel(&self) -> Result<Channel, Error> {
        let mut budget = Budget::new(0, None, self.inner.config.channel.request_timeout);
        self.inner.admit(&mut budget).await?;
        Ok(self.inner.acquire(&mut budget).await?.channel().clone())
    }

    /// Adds a connected channel to the online list:
    /// [`PoolError::PoolFull`] when `size` channels are online, [`Error::Stopped`] after shutdown;
    /// on error the channel is closed.
    pub fn store(&self, channel: Channel) -> Result<(), Error> {
        self.inner.store(channel)
    }

    /// Waits until at least one channel is online, up to `timeout` ([`PoolError::NoChannel`]);
    /// starts a dial if none runs. A readiness check that takes no rate-limit token and
    /// ignores `fail_on_cutoff`.
    pub async fn wait_online(&self, timeout: Duration) -> Result<(), Error> {
        let inner = &self.inner;
        let mut events = inner.events.subscribe();
        let deadline = Instant::now() + timeout;
        loop {
            events.borrow_and_update();
            if inner.pick()?.is_some() {
                return Ok(());
            }
            inner.dial_background();
            if tokio::time::timeout_at(deadline, events.changed()).await.is_err() {
                return Err(PoolError::NoChannel.into());
            }
        }
    }

    /// A receiver whose value changes each time a channel joins or leaves the online list,
    /// a dial ends or the pool stops: await `changed()` on it instead of polling
    /// [`online`](Self::online).
    ///
    /// ```no_run
    /// # async fn f(pool: iproto::Pool) {
    /// let mut changes = pool.changes();
    /// // Subscribed before the check, so a change in between is not missed.
    /// while !pool.online().is_empty() {
    ///     if changes.changed().await.is_err() {
    ///         break;
    ///     }
    /// }
    /// # }
    /// ```
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.events.subscribe()
    }

    /// The online channels now.
    pub fn online(&self) -> Vec<Channel> {
        self.inner.online.members().into_iter().map(|m| m.channel).collect()
    }

    /// The address the pool dials.
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// The pool's configuration.
    pub fn config(&self) -> &PoolConfig {
        &self.inner.config
    }

    /// Whether the pool was shut down or closed.
    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.load(SeqCst)
    }

    /// Counters: every channel's (closed ones included) plus the pool's own.
    pub fn stats(&self) -> PoolStats {
        let inner = &self.inner;
        let channels = {
            let reg = lock(&inner.registry);
            let mut sum = reg.saved;
            for channel in reg.live.values() {
                sum.add(&channel.stats());
            }
            sum
        };
        PoolStats {
            channels,
            dial_count: inner.dial_count.load(Relaxed),
            dial_errors: inner.dial_errors.load(Relaxed),
            wait_errors: inner.wait_errors.load(Relaxed),
            online: inner.online.len(),
        }
    }

    /// Graceful shutdown: stops dialing and new calls, shuts every channel down at once
    /// (each waits for its calls, exchanges 0xff01, bounded by its shutdown timeout) and waits
    /// for all of them. A second call waits for the first.
    pub async fn shutdown(&self) {
        let first = self.inner.stop();
        let live = self.inner.live();
        if first {
            futures_util::future::join_all(live.iter().map(|c| c.shutdown())).await;
        } else {
            futures_util::future::join_all(live.iter().map(|c| c.closed())).await;
        }
    }

    /// Closes every channel at once; pending calls fail with [`Error::Dropped`]. Waits
    /// until their tasks have stopped. Idempotent.
    pub async fn close(&self) {
        self.inner.stop();
        let live = self.inner.live();
        for channel in &live {
            channel.close();
        }
        futures_util::future::join_all(live.iter().map(|c| c.closed())).await;
    }
}

/// Managing the pool's connections while the pool stays open: each channel that leaves is
/// redialed in the background (unless `disable_pre_dial`), as after any lost connection.
impl Pool {
    /// Closes every online channel at once, without the shutdown handshake and without
    /// waiting: their pending calls fail with [`Error::Dropped`], and new connections are
    /// dialed. Use it after a failover or a DNS change, when the old connections lead to the
    /// wrong server.
    pub fn drop_connections(&self) {
        for channel in self.online() {
            channel.close();
        }
    }

    /// Shuts every online channel down gracefully (each waits for its calls and exchanges
    /// 0xff01) and waits for all of them; the pool redials.
    pub async fn shutdown_connections(&self) {
        let online = self.online();
        futures_util::future::join_all(online.iter().map(|c| c.shutdown())).await;
    }

    /// Takes every online channel's connection out of the pool, in turn, with
    /// [`Channel::hijack`]: the transport and the bytes read but not consumed. Channels that
    /// cannot be hijacked (already stopping) are skipped. The pool redials; the caller owns the
    /// returned connections.
    pub async fn hijack(&self) -> Vec<(Box<dyn Transport>, Bytes)> {
        let mut taken = Vec::new();
        for channel in self.online() {
            match channel.hijack().await {
                Ok(parts) => taken.push(parts),
                Err(e) => tracing::debug!(addr = %self.inner.addr, error = %e, "pool channel not hijacked"),
            }
        }
        taken
    }
}

impl Inner {
    fn live(&self) -> Vec<Channel> {
        lock(&self.registry).live.values().cloned().collect()
    }

    fn bump(&self) {
        self.events.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Marks the pool stopped, empties the online list and cancels dialing; returns whether
    /// this call stopped it.
    fn stop(&self) -> bool {
        let first = !self.stopped.swap(true, SeqCst);
        self.online.update(|list| (!std::mem::take(list).is_empty(), ()));
        self.stop_dial.cancel();
        self.bump();
        first
    }
}

impl Pool {
    /// Sends a request on the next channel and waits for its reply; retries once on another
    /// channel when the chosen one stopped before the request left.
    ///
    /// One deadline bounds the whole call: the timeout (`opts.timeout`, else the channel's
    /// request timeout) covers the rate-limit wait, the wait for a channel and the request,
    /// and [`Error::Timeout`]'s stage says which ran out.
    ///
    /// Both return the call's own future with no wrapper around it (see
    /// [`Channel::call_with`]): what a task making calls holds, per caller.
    pub fn call_with<'s, 'b>(
        &'s self,
        msg: u32,
        body: &'b [u8],
        opts: CallOptions,
    ) -> impl Future<Output = Result<Bytes, Error>> + Send + use<'s, 'b> {
        self.call_until(msg, body, opts, None)
    }

    /// The channel a call takes at once when nothing has to wait (no rate limit, a channel
    /// online): the fast path of [`call_until`](Self::call_until) and of a cluster's calls.
    pub(crate) fn ready(&self) -> Option<Pick> {
        self.inner.ready()
    }

    /// [`call_with`](Self::call_with) whose one deadline the caller started already.
    #[allow(clippy::manual_async_fn)] // see the comment on the block
    pub(crate) fn call_until<'s, 'b>(
        &'s self,
        msg: u32,
        body: &'b [u8],
        opts: CallOptions,
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<Bytes, Error>> + Send + use<'s, 'b> {
        // A block, not an `async fn` (see `on_next_channel`). The fast path is the channel's
        // own call future with a pick beside it: when no rate limit applies and a channel is
        // online, nothing waits, so the budget's bookkeeping is not needed. Everything else
        // (a token, a wait for a channel, the second try) is the boxed general path.
        async move {
            let e = match self.ready() {
                Some(pick) => match pick.channel().call_until(msg, body, opts, deadline).await {
                    Err(e) => e,
                    reply => return reply,
                },
                None => return Box::pin(self.call_waiting(msg, body, opts, deadline, 2)).await,
            };
            self.second_try(e, msg, body, opts, deadline).await
        }
    }

    /// After a first try on [`ready`](Self::ready)'s channel failed with `e`: when that
    /// channel had stopped before the request left, the pool's second try on another (the
    /// general path, boxed); else `e`.
    pub(crate) async fn second_try(
        &self,
        e: Error,
        msg: u32,
        body: &[u8],
        opts: CallOptions,
        deadline: Option<Instant>,
    ) -> Result<Bytes, Error> {
        if channel_stopped(&e) {
            Box::pin(self.call_waiting(msg, body, opts, deadline, 1)).await
        } else {
            Err(e)
        }
    }

    /// [`call_until`](Self::call_until) through the general path (rate limit, the wait for
    /// a channel) under one budget, in up to `tries` tries (1 after a fast first try that
    /// found its channel stopped).
    async fn call_waiting(
        &self,
        msg: u32,
        body: &[u8],
        opts: CallOptions,
        deadline: Option<Instant>,
        tries: u8,
    ) -> Result<Bytes, Error> {
        let budget = Budget::new(msg, opts.timeout, self.inner.config.channel.request_timeout).until(deadline);
        self.on_next_channel(budget, tries, move |pick, timeout, started| async move {
            pick.channel().call_until(msg, body, CallOptions { timeout, ..opts }, started).await
        })
        .await
    }

    /// [`call_with`](Self::call_with) with default options.
    pub fn call<'s, 'b>(
        &'s self,
        msg: u32,
        body: &'b [u8],
    ) -> impl Future<Output = Result<Bytes, Error>> + Send + use<'s, 'b> {
        self.call_with(msg, body, CallOptions::default())
    }

    /// Sends a notification on the next channel (retried once like calls), all of it within
    /// the channel's notify timeout.
    pub async fn notify(&self, msg: u32, body: &[u8]) -> Result<(), Error> {
        let budget = Budget::new(msg, None, self.inner.config.channel.notify_timeout);
        self.on_next_channel(budget, 2, |pick, timeout, _| async move {
            pick.channel().notify_within(msg, body, timeout).await
        })
        .await
    }

    /// Sends a packet as is on the next channel (retried once like calls); waiting for a
    /// token or a channel is bounded by the request timeout.
    pub async fn send(&self, packet: Packet) -> Result<(), Error> {
        let budget = Budget::new(packet.header.msg, None, self.inner.config.channel.request_timeout);
        let packet = &packet;
        self.on_next_channel(budget, 2, |pick, timeout, _| async move {
            let sent = pick.channel().send(packet.clone());
            match timeout {
                None => sent.await,
                Some(t) => tokio::time::timeout(t, sent)
                    .await
                    .unwrap_or_else(|_| Err(Error::timeout(packet.header.msg, t, TimeoutStage::Queue))),
            }
        })
        .await
    }

    /// Takes a rate-limit token, then runs `op` on the next channel with the time left of the
    /// budget (`None`: the channel's default, from the caller's start when it gave one); with
    /// `tries` 2, once more on another channel if that one had stopped before sending.
    #[allow(clippy::manual_async_fn)] // see the comment on the block
    fn on_next_channel<'a, T, F, Fut>(
        &'a self,
        mut budget: Budget,
        tries: u8,
        op: F,
    ) -> impl Future<Output = Result<T, Error>> + use<'a, T, F, Fut>
    where
        F: Fn(Pick, Option<Duration>, Option<Instant>) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        // A block, not an `async fn`: the arguments stay where they were captured instead of
        // being copied once more into the future. The waits (a rate-limit token, a channel)
        // and the second try are boxed, so a call that needs none of them carries only the
        // channel's future: a pool call's future was 880 bytes against the channel's 320,
        // moved and allocated per call by everyone who spawns or boxes it.
        async move {
            let inner = &self.inner;
            if inner.limiter.is_some() {
                Box::pin(inner.admit(&mut budget)).await?;
            }
            let pick = match inner.pick()? {
                Some(pick) => pick,
                None => Box::pin(inner.wait_for_channel(&mut budget)).await?,
            };
            let timeout = budget.remaining()?;
            let first = op(pick, timeout, budget.started()).await;
            let result = match first {
                Err(e) if tries > 1 && channel_stopped(&e) => {
                    Box::pin(async {
                        let pick = inner.acquire(&mut budget).await?;
                        let timeout = budget.remaining()?;
                        op(pick, timeout, budget.started()).await
                    })
                    .await
                }
                result => result,
            };
            result.map_err(|e| budget.whole(e))
        }
    }
}

/// Whether a call failed because its channel had stopped before the request left: safe to
/// try once more on another channel.
fn channel_stopped(e: &Error) -> bool {
    matches!(e, Error::Stopped | Error::Hijacked)
}

impl Sender for Pool {
    fn call_with(&self, msg: u32, body: &[u8], opts: CallOptions) -> impl Future<Output = Result<Bytes, Error>> + Send {
        Pool::call_with(self, msg, body, opts)
    }

    fn notify(&self, msg: u32, body: &[u8]) -> impl Future<Output = Result<(), Error>> + Send {
        Pool::notify(self, msg, body)
    }

    fn send(&self, packet: Packet) -> impl Future<Output = Result<(), Error>> + Send {
        Pool::send(self, packet)
    }
}
