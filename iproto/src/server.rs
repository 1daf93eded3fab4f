//! [`Server`]: the accept loop with a connection limit, TCP keepalive, accept-error
//! backoff, an accept hook (per-connection config, stream wrapping such as TLS), bounded
//! per-connection hooks, and graceful shutdown of every accepted channel.
//!
//! Differences from go-iproto, on purpose: a failing accept hook closes the connection (go-iproto
//! leaks it); the hook runs in the connection's own task, so a slow one does not stall
//! accepting; the shutdown signal interrupts a blocked accept; shutdown waits for the channels,
//! bounded by [`ServerConfig::shutdown_timeout`].

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::future::BoxFuture;
use tokio::sync::watch;

use crate::channel::{Channel, ChannelConfig, Handler};
use crate::net::{Addr, Endpoint, Stream};
use crate::Error;

/// Turns an accepted stream into a channel: see [`ServerConfig::on_accept`].
pub type AcceptHook = Arc<dyn Fn(Stream, ChannelConfig) -> BoxFuture<'static, Result<Channel, Error>> + Send + Sync>;

/// Runs for one channel: see [`ServerConfig::on_shutdown`] and [`ServerConfig::on_close`].
pub type ChannelHook = Arc<dyn Fn(Channel) -> BoxFuture<'static, ()> + Send + Sync>;

/// Settings of a [`Server`].
///
/// ```
/// use std::time::Duration;
/// use iproto::{Channel, ChannelConfig, ServerConfig};
///
/// let config = ServerConfig { max_connections: 100, ..Default::default() }
///     // Per connection: wrap the stream (TLS would go here) or change the config.
///     .on_accept(|stream: iproto::net::Stream, config: ChannelConfig| async move {
///         Ok(Channel::from_stream(stream, ChannelConfig { request_timeout: Duration::from_secs(1), ..config }))
///     })
///     .on_close(|ch: Channel| async move {
///         tracing::info!(peer = ?ch.peer_addr(), reason = ?ch.close_reason(), "client left");
///     });
/// # drop(config);
/// ```
#[derive(Clone)]
pub struct ServerConfig {
    /// Config of accepted channels; defaults to [`ChannelConfig::server`] (no pings: Perl
    /// MR::IProto clients break on a server's ping). Its handler is replaced by the one given
    /// to [`Server::serve`].
    pub channel: ChannelConfig,
    /// Most connections served at once; extra ones are closed at once and counted.
    /// Default 10 000.
    pub max_connections: usize,
    /// TCP keepalive idle time on accepted sockets (so half-open clients do not hold slots
    /// forever); `None` leaves the OS default. Default 60 s.
    pub tcp_keepalive: Option<Duration>,
    /// Builds each connection's channel (go-iproto's `Accept`); default
    /// [`Channel::from_stream`]. An error is logged and closes the connection.
    pub accept: Option<AcceptHook>,
    /// Runs once when a graceful shutdown of an accepted channel starts (either side's, or
    /// the server's drain), before the channel sends 0xff01 — so a client's own shutdown
    /// callbacks have finished before this one starts. Not run when the connection just
    /// closes. Bounded by the channel's
    /// [`callback_timeout`](ChannelConfig::callback_timeout).
    pub on_shutdown: Option<ChannelHook>,
    /// Runs once when an accepted channel has closed.
    pub on_close: Option<ChannelHook>,
    /// Bound on the accept hook, the channel's init hook and `on_close`. Default 5 s.
    pub hook_timeout: Duration,
    /// Hard bound on [`Server::serve_with_shutdown`]'s drain after the signal: channels still
    /// open then are closed at once. Default 10 s.
    pub shutdown_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            channel: ChannelConfig::server(),
            max_connections: 10_000,
            tcp_keepalive: Some(Duration::from_secs(60)),
            accept: None,
            on_shutdown: None,
            on_close: None,
            hook_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

impl ServerConfig {
    /// Sets the accept hook: gets the accepted stream and the channel config (handler set),
    /// returns the channel, e.g. `Channel::new(Stream::other(tls_stream), config)`.
    pub fn on_accept<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Stream, ChannelConfig) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Channel, Error>> + Send + 'static,
    {
        self.accept = Some(Arc::new(move |s, c| Box::pin(hook(s, c))));
        self
    }

    /// Sets the hook run when a graceful shutdown of a channel starts.
    pub fn on_shutdown<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Channel) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_shutdown = Some(Arc::new(move |c| Box::pin(hook(c))));
        self
    }

    /// Sets the hook run when a channel has closed.
    pub fn on_close<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Channel) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_close = Some(Arc::new(move |c| Box::pin(hook(c))));
        self
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("channel", &self.channel)
            .field("max_connections", &self.max_connections)
            .field("tcp_keepalive", &self.tcp_keepalive)
            .field("accept", &self.accept.is_some())
            .field("on_shutdown", &self.on_shutdown.is_some())
            .field("on_close", &self.on_close.is_some())
            .field("hook_timeout", &self.hook_timeout)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish()
    }
}

/// Counters of a server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Connections accepted and served.
    pub accepted: u64,
    /// Connections closed at once because of the connection limit.
    pub rejected: u64,
    /// Connections open now (accept hooks running included).
    pub open: u64,
    /// Failed `accept` calls (retried with backoff).
    pub accept_errors: u64,
    /// Connections closed because the accept hook or the init hook failed or timed out.
    pub hook_errors: u64,
}

enum Listener {
    Tcp(tokio::net::TcpListener),
    #[cfg(unix)]
    Unix(tokio::net::UnixListener),
}

impl Listener {
    async fn accept(&self) -> std::io::Result<Stream> {
        match self {
            Listener::Tcp(l) => l.accept().await.map(|(s, _)| Stream::Tcp(s)),
            #[cfg(unix)]
            Listener::Unix(l) => l.accept().await.map(|(s, _)| Stream::Unix(s)),
        }
    }
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    channels: HashMap<u64, Channel>,
    /// Serving ended: channels registered from now on are shut down at once.
    stopping: bool,
}

struct Inner {
    registry: Mutex<Registry>,
    /// Connections open, accept hooks in progress included; watched by the drain.
    open: watch::Sender<usize>,
    accepted: AtomicU64,
    rejected: AtomicU64,
    accept_errors: AtomicU64,
    hook_errors: AtomicU64,
}

impl Inner {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        crate::lock::lock(&self.registry)
    }
}

/// One open connection; dropping it frees the slot.
struct Slot(Arc<Inner>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// An iproto server: accepts connections and runs a [`Channel`] with the handler on each.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), iproto::Error> {
/// use iproto::{Channel, ChannelConfig, Packet, Server};
///
/// let server = Server::bind("127.0.0.1:0").await?;
/// let addr = server.local_addr().to_string();
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let serving = tokio::spawn(server.serve_with_shutdown(
///     |p: Packet, _ch: Channel| async move { Some(p.body) },
///     async { let _ = stopped.await; },
/// ));
///
/// let client = Channel::connect(&addr, ChannelConfig::client()).await?;
/// assert_eq!(&client.call(1, b"ping").await?[..], b"ping");
/// let _ = stop.send(());
/// serving.await.unwrap()?;
/// # Ok(()) }
/// ```
pub struct Server {
    listener: Listener,
    local: Addr,
    config: ServerConfig,
    inner: Arc<Inner>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local)
            .field("config", &self.config)
            .field("open", &*self.inner.open.borrow())
            .field("accepted", &self.inner.accepted.load(Relaxed))
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds `addr` (`host:port`, port 0 for any free port, or `unix:/path`) with the default
    /// [`ServerConfig`].
    pub async fn bind(addr: &str) -> Result<Server, Error> {
        Self::bind_with(addr, ServerConfig::default()).await
    }

    /// Binds `addr` with `config`.
    pub async fn bind_with(addr: &str, config: ServerConfig) -> Result<Server, Error> {
        let wrap = |e: std::io::Error| Error::Listen { addr: addr.to_owned(), source: Arc::new(e) };
        match Endpoint::parse(addr)? {
            Endpoint::Tcp(hostport) => {
                let l = tokio::net::TcpListener::bind(hostport.as_str()).await.map_err(wrap)?;
                Self::from_tcp(l, config).map_err(wrap)
            }
            #[cfg(unix)]
            Endpoint::Unix(path) => {
                let l = tokio::net::UnixListener::bind(&path).map_err(wrap)?;
                Ok(Self::new(Listener::Unix(l), Addr::Unix(Some(path)), config))
            }
            #[cfg(not(unix))]
            Endpoint::Unix(_) => Err(Error::InvalidAddress(addr.to_owned())),
        }
    }

    /// Serves on a bound TCP listener.
    pub fn from_tcp(listener: tokio::net::TcpListener, config: ServerConfig) -> std::io::Result<Server> {
        let local = Addr::Tcp(listener.local_addr()?);
        Ok(Self::new(Listener::Tcp(listener), local, config))
    }

    /// Serves on a bound Unix socket listener.
    #[cfg(unix)]
    pub fn from_unix(listener: tokio::net::UnixListener, config: ServerConfig) -> Server {
        let local = Addr::Unix(listener.local_addr().ok().and_then(|a| a.as_pathname().map(|p| p.to_path_buf())));
        Self::new(Listener::Unix(listener), local, config)
    }

    fn new(listener: Listener, local: Addr, config: ServerConfig) -> Server {
        let inner = Arc::new(Inner {
            registry: Mutex::default(),
            open: watch::Sender::new(0),
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            accept_errors: AtomicU64::new(0),
            hook_errors: AtomicU64::new(0),
        });
        Server { listener, local, config, inner }
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> &Addr {
        &self.local
    }

    /// A handle to the server's counters, usable while it serves.
    pub fn stats_handle(&self) -> ServerStatsHandle {
        ServerStatsHandle(self.inner.clone())
    }

    /// Serves forever (accept errors are retried).
    pub async fn serve<H: Handler>(self, handler: H) -> Result<(), Error> {
        self.serve_with_shutdown(handler, std::future::pending()).await
    }

    /// Serves until `signal` resolves, then stops accepting (closing the listener) and shuts
    /// every channel down gracefully (each sends 0xff01 unless disabled and is bounded by its
    /// shutdown timeout); the whole drain is bounded by
    /// [`ServerConfig::shutdown_timeout`], after which what is left is closed.
    pub async fn serve_with_shutdown<H: Handler, F: Future<Output = ()>>(
        self,
        handler: H,
        signal: F,
    ) -> Result<(), Error> {
        let Server { listener, config, inner, .. } = self;
        let config = Arc::new(ServerConfig { channel: config.channel.clone().with_handler(handler), ..config });
        tokio::pin!(signal);
        let mut delays = accept_backoff();
        loop {
            let accepted = tokio::select! {
                biased;
                _ = &mut signal => break,
                a = listener.accept() => a,
            };
            let stream = match accepted {
                Ok(s) => {
                    delays = accept_backoff();
                    s
                }
                Err(e) => {
                    inner.accept_errors.fetch_add(1, Relaxed);
                    let backoff = delays.next().unwrap_or(ACCEPT_BACKOFF_MAX);
                    tracing::warn!(error = %e, ?backoff, "accept failed; retrying");
                    tokio::select! {
                        biased;
                        _ = &mut signal => break,
                        _ = tokio::time::sleep(backoff) => continue,
                    }
                }
            };
            let full = !inner.open.send_if_modified(|n| {
                let room = *n < config.max_connections;
                if room {
                    *n += 1;
                }
                room
            });
            if full {
                inner.rejected.fetch_add(1, Relaxed);
                tracing::warn!(max = config.max_connections, "connection limit reached; closing a new connection");
                drop(stream);
                continue;
            }
            let slot = Slot(inner.clone());
            if let (Some(idle), Stream::Tcp(s)) = (config.tcp_keepalive, &stream) {
                let ka = socket2::TcpKeepalive::new().with_time(idle);
                if let Err(e) = socket2::SockRef::from(s).set_tcp_keepalive(&ka) {
                    tracing::debug!(error = %e, "could not set TCP keepalive");
                }
            }
            inner.accepted.fetch_add(1, Relaxed);
            tokio::spawn(serve_connection(slot, stream, config.clone()));
        }
        drop(listener);
        drain(&inner, config.shutdown_timeout).await;
        Ok(())
    }
}

/// The longest wait after a failed accept.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Waits after consecutive failed accepts: 5 ms, doubling, capped at 1 s (go-iproto's), without
/// jitter; a successful accept starts over.
fn accept_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(5))
        .with_factor(2.0)
        .with_max_delay(ACCEPT_BACKOFF_MAX)
        .without_max_times()
        .build()
}

/// Shuts every channel down and waits until every connection has ended, within `bound`.
async fn drain(inner: &Arc<Inner>, bound: Duration) {
    let channels: Vec<Channel> = {
        let mut reg = inner.registry();
        reg.stopping = true;
        reg.channels.values().cloned().collect()
    };
    tracing::debug!(count = channels.len(), "shutting down accepted channels");
    let graceful = async {
        futures_util::future::join_all(channels.iter().map(|c| c.shutdown())).await;
        let mut open = inner.open.subscribe();
        let _ = open.wait_for(|n| *n == 0).await;
    };
    if tokio::time::timeout(bound, graceful).await.is_err() {
        let left: Vec<Channel> = inner.registry().channels.values().cloned().collect();
        tracing::warn!(?bound, left = left.len(), "server shutdown timeout exceeded; closing connections");
        for channel in left {
            channel.close();
        }
    }
}

/// One connection's life: accept hook, registration, hooks, end.
async fn serve_connection(slot: Slot, stream: Stream, config: Arc<ServerConfig>) {
    let inner = slot.0.clone();
    let channel = match &config.accept {
        None => Channel::from_stream(stream, config.channel.clone()),
        Some(hook) => match tokio::time::timeout(config.hook_timeout, hook(stream, config.channel.clone())).await {
            Ok(Ok(channel)) => channel,
            Ok(Err(e)) => {
                inner.hook_errors.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, "accept hook failed; closing the connection");
                return;
            }
            Err(_) => {
                inner.hook_errors.fetch_add(1, Relaxed);
                tracing::warn!(timeout = ?config.hook_timeout, "accept hook timed out; closing the connection");
                return;
            }
        },
    };
    if let Err(e) = tokio::time::timeout(config.hook_timeout, channel.init())
        .await
        .unwrap_or_else(|_| Err(Error::Init(Arc::new(InitTimedOut(config.hook_timeout)))))
    {
        inner.hook_errors.fetch_add(1, Relaxed);
        tracing::warn!(error = %e, "init hook failed; closing the connection");
        channel.close();
        return;
    }
    if let Some(hook) = &config.on_shutdown {
        let hook = hook.clone();
        channel.on_shutdown(move |ch| hook(ch));
    }
    let (id, stopping) = {
        let mut reg = inner.registry();
        reg.next_id += 1;
        let id = reg.next_id;
        reg.channels.insert(id, channel.clone());
        (id, reg.stopping)
    };
    if stopping {
        let ch = channel.clone();
        tokio::spawn(async move { ch.shutdown().await });
    }
    channel.closed().await;
    inner.registry().channels.remove(&id);
    if let Some(hook) = &config.on_close {
        run_hook(hook, &channel, config.hook_timeout, "on_close").await;
    }
    drop(channel);
    drop(slot);
}

async fn run_hook(hook: &ChannelHook, channel: &Channel, bound: Duration, name: &str) {
    if tokio::time::timeout(bound, hook(channel.clone())).await.is_err() {
        tracing::warn!(hook = name, ?bound, "server hook timed out");
    }
}

/// The init hook of an accepted channel outlasted [`ServerConfig::hook_timeout`].
#[derive(Debug, thiserror::Error)]
#[error("did not finish within {0:?}")]
struct InitTimedOut(Duration);

/// Reads a running server's counters and waits for its connections to end.
#[derive(Clone)]
pub struct ServerStatsHandle(Arc<Inner>);

impl ServerStatsHandle {
    /// A snapshot of the counters.
    pub fn get(&self) -> ServerStats {
        ServerStats {
            accepted: self.0.accepted.load(Relaxed),
            rejected: self.0.rejected.load(Relaxed),
            open: *self.0.open.borrow() as u64,
            accept_errors: self.0.accept_errors.load(Relaxed),
            hook_errors: self.0.hook_errors.load(Relaxed),
        }
    }

    /// Resolves once at most `n` connections are open (their channels closed and hooks run).
    pub async fn wait_open_at_most(&self, n: usize) {
        let mut open = self.0.open.subscribe();
        let _ = open.wait_for(|open| *open <= n).await;
    }
}

/// Binds `addr` and serves `handler` forever (go-iproto's `ListenAndServe`).
///
/// ```no_run
/// # async fn f() -> Result<(), iproto::Error> {
/// iproto::listen_and_serve("127.0.0.1:3301", iproto::ServeMux::new()).await
/// # }
/// ```
pub async fn listen_and_serve<H: Handler>(addr: &str, handler: H) -> Result<(), Error> {
    Server::bind(addr).await?.serve(handler).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_backoff_doubles_from_5ms_to_1s() {
        let seen: Vec<Duration> = accept_backoff().take(10).collect();
        let want = [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000].map(Duration::from_millis);
        // backon computes the doubling in floating point: equal to within a millisecond.
        for (got, want) in seen.iter().zip(want) {
            assert!(got.abs_diff(want) < Duration::from_millis(1), "{seen:?}");
        }
    }
}
