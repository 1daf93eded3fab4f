//! Calls with unique bodies and their outcomes, for the fault, hostile and soak tests: every
//! call must end within its timeout (plus a grace period) with either the exact echo of its
//! own body or a typed error, which is counted by kind.
#![allow(dead_code)] // shared by several test binaries; each uses part of it

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use iproto::server::{Server, ServerConfig, ServerStatsHandle};
use iproto::{CallOptions, Channel, ChannelConfig, Error, Packet, Sender};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The message code of test calls.
pub const MSG: u32 = 7;
/// Slack on top of a call's own timeout before it counts as overdue. Generous: a loaded
/// 2-core machine must not fail the tests.
pub const GRACE: Duration = Duration::from_secs(20);

/// A short name for each error kind, for the tallies.
pub fn kind(e: &Error) -> &'static str {
    match e {
        Error::Timeout { .. } => "timeout",
        Error::Stopped => "stopped",
        Error::Hijacked => "hijacked",
        Error::Dropped(_) => "dropped",
        Error::Frame(iproto::FrameError::TooLarge { .. }) => "size-limit",
        Error::Frame(iproto::FrameError::Truncated { .. }) => "truncated",
        Error::PeerClosed { .. } => "peer-closed",
        Error::PingMissed(_) => "ping-missed",
        Error::Idle(_) => "idle",
        Error::WriteTimeout(_) => "write-timeout",
        Error::ReservedCode(_) => "reserved-code",
        Error::Frame(iproto::FrameError::BodyOverflow { .. }) => "body-too-large",
        Error::InvalidAddress(_) => "invalid-address",
        Error::Connect { .. } => "connect",
        Error::Io(_) => "io",
        Error::Pool(iproto::PoolError::Cutoff) => "cutoff",
        Error::Pool(iproto::PoolError::NoChannel) => "no-channel",
        Error::Pool(iproto::PoolError::DialFailed(_)) => "dial-failed",
        Error::Pool(iproto::PoolError::RateLimited) => "rate-limited",
        Error::Pool(iproto::PoolError::PoolFull) => "pool-full",
        _ => "other",
    }
}

/// Outcomes of a batch of calls.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Calls answered with their own body.
    pub ok: u64,
    /// Failed calls by error kind.
    pub errors: BTreeMap<&'static str, u64>,
    /// Calls answered with another body: a reply delivered to the wrong caller.
    pub mismatched: u64,
    /// Calls that did not end within their timeout plus [`GRACE`].
    pub overdue: u64,
}

impl Tally {
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn total(&self) -> u64 {
        self.ok + self.failed() + self.mismatched + self.overdue
    }

    pub fn add(&mut self, other: &Tally) {
        self.ok += other.ok;
        self.mismatched += other.mismatched;
        self.overdue += other.overdue;
        for (k, v) in &other.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }

    /// Fails the test on any mismatched or overdue call.
    pub fn assert_sound(&self, what: &str) {
        assert_eq!(self.mismatched, 0, "{what}: replies delivered to the wrong caller: {self:?}");
        assert_eq!(self.overdue, 0, "{what}: calls outlived their timeout: {self:?}");
    }
}

/// One call with body `body` and timeout `timeout`, recorded in `tally`.
pub async fn call_once<S: Sender>(sender: &S, body: &[u8], timeout: Duration, tally: &mut Tally) {
    let call = sender.call_with(MSG, body, CallOptions::timeout(timeout));
    match tokio::time::timeout(timeout + GRACE, call).await {
        Ok(Ok(reply)) if reply[..] == *body => tally.ok += 1,
        Ok(Ok(_)) => tally.mismatched += 1,
        Ok(Err(e)) => *tally.errors.entry(kind(&e)).or_default() += 1,
        Err(_) => tally.overdue += 1,
    }
}

/// A body no other call of the test process uses, `size` bytes long (at least the prefix).
pub fn unique_body(tag: &str, size: usize) -> Vec<u8> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut body = format!("{tag}#{}#", NEXT.fetch_add(1, Relaxed)).into_bytes();
    let mut fill = body.len() as u8;
    while body.len() < size {
        body.push(fill);
        fill = fill.wrapping_mul(31).wrapping_add(7);
    }
    body
}

/// `count` calls spread over `workers` concurrent callers, each with a unique body.
pub async fn run_calls<S>(sender: &S, tag: &str, count: usize, workers: usize, timeout: Duration) -> Tally
where
    S: Sender + Clone + 'static,
{
    let mut tasks = Vec::new();
    for w in 0..workers {
        let sender = sender.clone();
        let tag = format!("{tag}/{w}");
        let n = count / workers + usize::from(w < count % workers);
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            for i in 0..n {
                call_once(&sender, &unique_body(&tag, 16 + i % 48), timeout, &mut tally).await;
            }
            tally
        }));
    }
    let mut total = Tally::default();
    for t in tasks {
        total.add(&t.await.expect("a caller panicked"));
    }
    total
}

/// An in-process echo server on a free loopback port, stopped (gracefully) on drop.
pub struct EchoServer {
    pub addr: String,
    pub stats: ServerStatsHandle,
    stop: Option<oneshot::Sender<()>>,
    serving: Option<JoinHandle<Result<(), Error>>>,
}

impl EchoServer {
    pub async fn start(config: ServerConfig) -> EchoServer {
        let server = Server::bind_with("127.0.0.1:0", config).await.expect("bind the echo server");
        let addr = server.local_addr().to_string();
        let stats = server.stats_handle();
        let (stop, stopped) = oneshot::channel::<()>();
        let serving =
            tokio::spawn(server.serve_with_shutdown(|p: Packet, _ch: Channel| async move { Some(p.body) }, async {
                let _ = stopped.await;
            }));
        EchoServer { addr, stats, stop: Some(stop), serving: Some(serving) }
    }

    /// Stops accepting, shuts every connection down and waits for it.
    pub async fn stop(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        if let Some(serving) = self.serving.take() {
            let result = tokio::time::timeout(GRACE, serving).await;
            assert!(matches!(result, Ok(Ok(Ok(())))), "server did not stop cleanly: {result:?}");
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        if let Some(serving) = self.serving.take() {
            serving.abort();
        }
    }
}

/// A client config whose handler counts packets that matched no call (a reply answered twice,
/// or one for a call that never existed, would land there) instead of dropping them.
pub fn counting_client(timeout: Duration) -> (ChannelConfig, Arc<AtomicU64>) {
    let strays = Arc::new(AtomicU64::new(0));
    let seen = strays.clone();
    let config = ChannelConfig { request_timeout: timeout, ..ChannelConfig::client() }.with_handler(
        move |_p: Packet, _ch: Channel| {
            seen.fetch_add(1, Relaxed);
            async {}
        },
    );
    (config, strays)
}
