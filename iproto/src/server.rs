//! [`Server`]: the accept loop (V-1), with a connection limit, TCP keepalive, accept-error
//! backoff and graceful shutdown of every accepted channel (V-5).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::channel::{Channel, ChannelConfig, Handler};
use crate::net::{Addr, Endpoint};
use crate::Error;

/// Settings of a [`Server`].
#[derive(Debug, Clone)]
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
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            channel: ChannelConfig::server(),
            max_connections: 10_000,
            tcp_keepalive: Some(Duration::from_secs(60)),
        }
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
    /// Connections open now.
    pub open: u64,
}

enum Listener {
    Tcp(tokio::net::TcpListener),
    #[cfg(unix)]
    Unix(tokio::net::UnixListener),
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    channels: HashMap<u64, Channel>,
}

struct Inner {
    registry: Mutex<Registry>,
    accepted: AtomicU64,
    rejected: AtomicU64,
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
/// # let _ = &client;
/// drop(client);
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

impl Server {
    /// Binds `addr` (`host:port`, port 0 for any free port, or `unix:/path`) with the default
    /// [`ServerConfig`].
    pub async fn bind(addr: &str) -> Result<Server, Error> {
        Self::bind_with(addr, ServerConfig::default()).await
    }

    /// Binds `addr` with `config`.
    pub async fn bind_with(addr: &str, config: ServerConfig) -> Result<Server, Error> {
        let wrap = |e: std::io::Error| Error::Connect { addr: addr.to_owned(), source: Arc::new(e) };
        let (listener, local) = match Endpoint::parse(addr)? {
            Endpoint::Tcp(hostport) => {
                let l = tokio::net::TcpListener::bind(hostport.as_str()).await.map_err(wrap)?;
                let local = Addr::Tcp(l.local_addr().map_err(wrap)?);
                (Listener::Tcp(l), local)
            }
            #[cfg(unix)]
            Endpoint::Unix(path) => {
                let l = tokio::net::UnixListener::bind(&path).map_err(wrap)?;
                (Listener::Unix(l), Addr::Unix(Some(path)))
            }
            #[cfg(not(unix))]
            Endpoint::Unix(_) => return Err(Error::InvalidAddress(addr.to_owned())),
        };
        let inner =
            Arc::new(Inner { registry: Mutex::default(), accepted: AtomicU64::new(0), rejected: AtomicU64::new(0) });
        Ok(Server { listener, local, config, inner })
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> &Addr {
        &self.local
    }

    /// A handle to the server's counters, usable while it serves.
    pub fn stats_handle(&self) -> ServerStatsHandle {
        ServerStatsHandle(self.inner.clone())
    }

    /// Serves until the listener fails.
    pub async fn serve<H: Handler>(self, handler: H) -> Result<(), Error> {
        self.serve_with_shutdown(handler, std::future::pending()).await
    }

    /// Serves until `signal` resolves, then stops accepting and shuts every channel down
    /// gracefully (sending 0xff01 unless disabled), each bounded by the shutdown timeout.
    pub async fn serve_with_shutdown<H: Handler, F: Future<Output = ()>>(
        self,
        handler: H,
        signal: F,
    ) -> Result<(), Error> {
        let Server { listener, config, inner, .. } = self;
        let channel_config = config.channel.clone().with_handler(handler);
        tokio::pin!(signal);
        let mut backoff = Duration::ZERO;
        loop {
            let accepted = tokio::select! {
                biased;
                _ = &mut signal => break,
                a = accept(&listener) => a,
            };
            let stream = match accepted {
                Ok(s) => {
                    backoff = Duration::ZERO;
                    s
                }
                Err(e) => {
                    // V-1: retry accept errors with 5 ms doubling to 1 s.
                    backoff = (backoff * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                    tracing::warn!(error = %e, ?backoff, "accept failed; retrying");
                    tokio::select! {
                        biased;
                        _ = &mut signal => break,
                        _ = tokio::time::sleep(backoff) => continue,
                    }
                }
            };
            if inner.registry.lock().unwrap_or_else(|e| e.into_inner()).channels.len() >= config.max_connections {
                inner.rejected.fetch_add(1, Relaxed);
                tracing::warn!(max = config.max_connections, "connection limit reached; closing a new connection");
                drop(stream);
                continue;
            }
            if let (Some(idle), Stream::Tcp(s)) = (config.tcp_keepalive, &stream) {
                let ka = socket2::TcpKeepalive::new().with_time(idle);
                if let Err(e) = socket2::SockRef::from(s).set_tcp_keepalive(&ka) {
                    tracing::debug!(error = %e, "could not set TCP keepalive");
                }
            }
            inner.accepted.fetch_add(1, Relaxed);
            let channel = Channel::from_stream(stream, channel_config.clone());
            register(&inner, channel);
        }
        drop(listener);
        let channels: Vec<Channel> =
            inner.registry.lock().unwrap_or_else(|e| e.into_inner()).channels.values().cloned().collect();
        tracing::debug!(count = channels.len(), "shutting down accepted channels");
        futures_util::future::join_all(channels.iter().map(|c| c.shutdown())).await;
        Ok(())
    }
}

use crate::net::Stream;

async fn accept(listener: &Listener) -> std::io::Result<Stream> {
    match listener {
        Listener::Tcp(l) => l.accept().await.map(|(s, _)| Stream::Tcp(s)),
        #[cfg(unix)]
        Listener::Unix(l) => l.accept().await.map(|(s, _)| Stream::Unix(s)),
    }
}

/// Keeps a handle to `channel` until it closes, so that shutdown can reach it.
fn register(inner: &Arc<Inner>, channel: Channel) {
    let id = {
        let mut reg = inner.registry.lock().unwrap_or_else(|e| e.into_inner());
        reg.next_id += 1;
        let id = reg.next_id;
        reg.channels.insert(id, channel.clone());
        id
    };
    let inner = inner.clone();
    tokio::spawn(async move {
        channel.closed().await;
        drop(channel);
        inner.registry.lock().unwrap_or_else(|e| e.into_inner()).channels.remove(&id);
    });
}

/// Reads a running server's counters.
#[derive(Clone)]
pub struct ServerStatsHandle(Arc<Inner>);

impl ServerStatsHandle {
    /// A snapshot of the counters.
    pub fn get(&self) -> ServerStats {
        ServerStats {
            accepted: self.0.accepted.load(Relaxed),
            rejected: self.0.rejected.load(Relaxed),
            open: self.0.registry.lock().unwrap_or_else(|e| e.into_inner()).channels.len() as u64,
        }
    }
}

/// Binds `addr` and serves `handler` forever (the seed's `ListenAndServe`).
///
/// ```no_run
/// # async fn f() -> Result<(), iproto::Error> {
/// iproto::listen_and_serve("127.0.0.1:3301", iproto::ServeMux::new()).await
/// # }
/// ```
pub async fn listen_and_serve<H: Handler>(addr: &str, handler: H) -> Result<(), Error> {
    Server::bind(addr).await?.serve(handler).await
}
