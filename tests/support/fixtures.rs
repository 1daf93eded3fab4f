//! What the integration tests share: bounded waits that fail naming what they waited for, an
//! in-process server (echo or any handler) on a free loopback port, and addresses nothing
//! listens on. From `iproto/tests`: `#[path = "../../tests/support/fixtures.rs"] mod fixtures;`.
#![allow(dead_code)] // shared by several test binaries; each uses part of it

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use iproto::server::ServerStatsHandle;
use iproto::{Channel, Error, Handler, Packet, Server, ServerConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a test waits for something that should happen at once. Generous: a loaded 2-core
/// machine must not fail the tests, and a regression still goes red instead of hanging.
pub const BOUND: Duration = Duration::from_secs(10);

/// `f`, or a panic naming `what` if it does not finish within [`BOUND`].
pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    within_for(BOUND, what, f).await
}

/// `f`, or a panic naming `what` if it does not finish within `bound`.
pub async fn within_for<F: Future>(bound: Duration, what: &str, f: F) -> F::Output {
    match tokio::time::timeout(bound, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what} did not happen within {bound:?}"),
    }
}

/// Yields to the scheduler until `cond` holds, at most `max` times, then panics naming `what`.
/// For conditions with no event to await (another task's progress on the same runtime).
pub async fn yield_until(what: &str, max: usize, mut cond: impl FnMut() -> bool) {
    for _ in 0..max {
        if cond() {
            return;
        }
        tokio::task::yield_now().await;
    }
    assert!(cond(), "{what} did not happen within {max} yields");
}

/// The echo handler: replies with the request's body.
pub async fn echo(p: Packet, _ch: Channel) -> Option<Bytes> {
    Some(p.body)
}

/// An in-process server on a loopback port. [`stop`](Self::stop) shuts it down gracefully
/// and checks that `serve` returned `Ok`; dropping it aborts the serving task.
pub struct Running {
    /// `127.0.0.1:port`.
    pub addr: String,
    /// The server's counters.
    pub stats: ServerStatsHandle,
    stop: Option<oneshot::Sender<()>>,
    serving: Option<JoinHandle<Result<(), Error>>>,
}

impl Running {
    /// Serves `handler` with `config` on a free loopback port.
    pub async fn start<H: Handler>(config: ServerConfig, handler: H) -> Running {
        let server = Server::bind_with("127.0.0.1:0", config).await.expect("bind a loopback port");
        Running::serve(server, handler)
    }

    /// An echo server with the default config.
    pub async fn echo() -> Running {
        Running::start(ServerConfig::default(), echo).await
    }

    /// Serves `handler` on `listener` (a port chosen by the test, e.g. to restart on it).
    pub fn on(listener: tokio::net::TcpListener, config: ServerConfig, handler: impl Handler) -> Running {
        Running::serve(Server::from_tcp(listener, config).expect("server from a listener"), handler)
    }

    /// Runs `server` until stopped.
    pub fn serve(server: Server, handler: impl Handler) -> Running {
        let addr = server.local_addr().to_string();
        let stats = server.stats_handle();
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(server.serve_with_shutdown(handler, async move {
            let _ = stopped.await;
        }));
        Running { addr, stats, stop: Some(stop), serving: Some(serving) }
    }

    /// Stops accepting, shuts every connection down gracefully and waits for `serve` to
    /// return `Ok`.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(serving) = self.serving.take() {
            let result = within("the server's serve() returning after stop", serving).await;
            assert!(matches!(result, Ok(Ok(()))), "serve ended with {result:?}");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(serving) = self.serving.take() {
            serving.abort();
        }
    }
}

/// A loopback `host:port` nothing listens on (bound, then released).
pub fn refused_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("local addr").to_string();
    drop(listener);
    addr
}
