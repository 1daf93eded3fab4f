//! A pool's life cycle: one deadline bounds a whole call (rate limit, the wait for a channel,
//! the reply) and the error names the stage that ran out; a failed dial or init hook reaches
//! the callers waiting for a channel; connections can be dropped or hijacked while the pool
//! stays open and redials.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iproto::channel::BoxError;
use iproto::pool::{Pool, PoolConfig, RateLimit};
use iproto::{
    CallOptions, Channel, ChannelConfig, Error, Header, Packet, PoolError, TimeoutStage, HEADER_LEN, MSG_PING,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

#[path = "../../tests/support/fixtures.rs"]
mod fixtures;
use fixtures::{refused_addr, within, within_for, Running};

/// A pool whose connections are in-memory pairs with a server channel running `handler`.
fn in_memory_pool<H>(config: PoolConfig, handler: H) -> Pool
where
    H: Fn(Packet, Channel) -> futures_like::Reply + Clone + Send + Sync + 'static,
{
    // The server sides are kept alive here for the pool's lifetime: a channel whose last
    // handle is dropped closes.
    let servers = Arc::new(std::sync::Mutex::new(Vec::new()));
    let config = config.with_connector(move |_addr: String| {
        let (handler, servers) = (handler.clone(), servers.clone());
        async move {
            let (ours, theirs) = tokio::io::duplex(64 * 1024);
            servers.lock().unwrap().push(Channel::new(theirs, ChannelConfig::server().with_handler(handler)));
            Ok::<DuplexStream, io::Error>(ours)
        }
    });
    Pool::new("in-memory", config).expect("pool")
}

/// Handler replies as boxed futures, so that closures with different bodies share a type.
mod futures_like {
    use std::future::Future;
    use std::pin::Pin;

    use bytes::Bytes;

    pub type Reply = Pin<Box<dyn Future<Output = Option<Bytes>> + Send>>;

    pub fn boxed(f: impl Future<Output = Option<Bytes>> + Send + 'static) -> Reply {
        Box::pin(f)
    }
}

/// Echoes after `delay`.
fn slow_echo(delay: Duration) -> impl Fn(Packet, Channel) -> futures_like::Reply + Clone + Send + Sync + 'static {
    move |p: Packet, _ch: Channel| {
        futures_like::boxed(async move {
            tokio::time::sleep(delay).await;
            Some(p.body)
        })
    }
}

fn quiet_channel() -> ChannelConfig {
    ChannelConfig { ping_interval: None, ..ChannelConfig::client() }
}

// A connector that never completes: the call's own 200 ms run out while it waits for a
// channel, long before the 10 s connect timeout, and the error says so.
#[tokio::test(start_paused = true)]
async fn one_deadline_bounds_the_wait_for_a_channel() {
    let config = PoolConfig { connect_timeout: Duration::from_secs(10), ..PoolConfig::default() }
        .with_connector(|_addr: String| std::future::pending::<io::Result<DuplexStream>>());
    let pool = Pool::new("never", config).expect("pool");
    let started = tokio::time::Instant::now();
    let err = pool.call_with(7, b"x", CallOptions::timeout(Duration::from_millis(200))).await.expect_err("no channel");
    assert!(
        matches!(err, Error::Timeout { msg: 7, stage: TimeoutStage::Channel, after } if after == Duration::from_millis(200)),
        "{err:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_millis(200));
    assert!(err.is_not_sent(), "a call that never had a channel was not sent");
    assert_eq!(err.to_string(), "message 0x7 timed out after 200ms waiting for a channel");
    assert_eq!(pool.stats().wait_errors, 1);
}

// Two calls at once under a 4/s limit with a burst of 1: the second waits 250 ms for its token,
// then its request takes 300 ms. Its 400 ms cover both, so it fails at the reply stage,
// reported against the whole 400 ms, where stacked bounds would have let it succeed at 550 ms.
// Real time: the rate limiter keeps its own clock.
#[tokio::test]
async fn one_deadline_covers_the_rate_limit_wait_and_the_reply() {
    let config =
        PoolConfig { channel: quiet_channel(), rate_limit: Some(RateLimit::shaping(4.0, 1)), ..PoolConfig::default() };
    let pool = in_memory_pool(config, slow_echo(Duration::from_millis(300)));
    pool.init().await.expect("init");
    let opts = CallOptions::timeout(Duration::from_millis(400));
    let started = std::time::Instant::now();
    let (first, second) = within(
        "both calls",
        futures_join(pool.call_with(1, b"first", opts), async {
            let r = pool.call_with(2, b"second", opts).await;
            (r, started.elapsed())
        }),
    )
    .await;
    assert_eq!(&first.expect("the first call has its token at once")[..], b"first");
    let (second, at) = second;
    let err = second.expect_err("the second call runs out");
    assert!(
        matches!(err, Error::Timeout { msg: 2, stage: TimeoutStage::Reply, after } if after == Duration::from_millis(400)),
        "{err:?}"
    );
    assert!(at >= Duration::from_millis(400), "failed at {at:?}, before its deadline");
}

async fn futures_join<A: std::future::Future, B: std::future::Future>(a: A, b: B) -> (A::Output, B::Output) {
    tokio::join!(a, b)
}

// With no timeout of its own, a call gets the channel's request timeout as its one deadline.
#[tokio::test(start_paused = true)]
async fn one_deadline_defaults_to_the_request_timeout() {
    let config = PoolConfig {
        channel: ChannelConfig { request_timeout: Duration::from_secs(2), ..quiet_channel() },
        connect_timeout: Duration::from_secs(30),
        ..PoolConfig::default()
    }
    .with_connector(|_addr: String| std::future::pending::<io::Result<DuplexStream>>());
    let pool = Pool::new("never", config).expect("pool");
    let started = tokio::time::Instant::now();
    let err = pool.call(9, b"x").await.expect_err("no channel");
    assert!(matches!(err, Error::Timeout { msg: 9, stage: TimeoutStage::Channel, .. }), "{err:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    // Notifications get the notify timeout (1 s by default) the same way.
    let started = tokio::time::Instant::now();
    let err = pool.notify(9, b"x").await.expect_err("no channel");
    assert!(matches!(err, Error::Timeout { stage: TimeoutStage::Channel, .. }), "{err:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(1));
}

// A dead address: the pool's wait ends at the connect timeout with the refused connect
// attempt's error, not a bare "no channel".
#[tokio::test]
async fn one_deadline_wait_for_a_dead_address_reports_the_refused_dial() {
    let addr = refused_addr();
    let config = PoolConfig { connect_timeout: Duration::from_millis(200), ..PoolConfig::default() };
    let pool = Pool::new(&addr, config).expect("pool");
    let err = within("the call to a dead address", pool.call(1, b"x")).await.expect_err("refused");
    let Error::Pool(PoolError::DialFailed(last)) = &err else { panic!("{err:?}") };
    let Error::Connect { source, .. } = &**last else { panic!("{last:?}") };
    assert_eq!(source.kind(), io::ErrorKind::ConnectionRefused, "{source}");
    assert!(err.to_string().starts_with(&format!("no channel before timeout: cannot connect to {addr}")), "{err}");
    assert!(err.is_not_sent());
    let stats = pool.stats();
    assert!(stats.dial_errors >= 1 && stats.wait_errors == 1, "{stats:?}");
}

// A pool channel whose init hook fails never takes traffic; the failure counts as a failed
// dial and is what the waiting caller gets.
#[tokio::test(start_paused = true)]
async fn init_hook_failure_in_a_pool_reaches_the_waiting_caller() {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let channel = quiet_channel().with_init(move |_ch: Channel| {
        r.fetch_add(1, SeqCst);
        async { Err::<(), BoxError>("login refused".into()) }
    });
    let config = PoolConfig { channel, connect_timeout: Duration::from_millis(500), ..PoolConfig::default() };
    let pool = in_memory_pool(config, slow_echo(Duration::ZERO));
    let err = pool.call(1, b"x").await.expect_err("init hook fails");
    assert_eq!(err.to_string(), "no channel before timeout: channel init hook failed: login refused");
    assert!(pool.online().is_empty());
    let stats = pool.stats();
    assert!(runs.load(SeqCst) >= 2, "the pool retries with backoff: {} runs", runs.load(SeqCst));
    assert_eq!(stats.dial_errors, stats.dial_count, "{stats:?}");
}

// A pool channel whose init hook succeeds is used only afterwards: the hook's own call is the
// first request the server sees.
#[tokio::test]
async fn init_hook_runs_before_a_pool_channel_takes_calls() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let server = Running::start(iproto::ServerConfig::default(), move |p: Packet, _ch: Channel| {
        log.lock().unwrap().push(p.body.clone());
        async move { Some(p.body) }
    })
    .await;
    let channel = quiet_channel().with_init(|ch: Channel| async move {
        ch.call(1, b"login").await?;
        Ok::<(), Error>(())
    });
    let pool = Pool::dial(&server.addr, PoolConfig { channel, ..PoolConfig::default() }).await.expect("dial");
    assert_eq!(&pool.call(1, b"work").await.expect("call")[..], b"work");
    assert_eq!(*seen.lock().unwrap(), [Bytes::from_static(b"login"), Bytes::from_static(b"work")]);
    pool.shutdown().await;
    server.stop().await;
}

// Dropping the connections closes every online channel at once (a call in flight fails with
// Dropped) and the pool, still open, dials new ones for the next calls.
#[tokio::test]
async fn drop_connections_closes_them_now_and_the_pool_redials() {
    let arrived = Arc::new(tokio::sync::Notify::new());
    let signal = arrived.clone();
    let server = Running::start(iproto::ServerConfig::default(), move |p: Packet, _ch: Channel| {
        let signal = signal.clone();
        async move {
            if &p.body[..] == b"hang" {
                signal.notify_one();
                std::future::pending::<()>().await;
            }
            Some(p.body)
        }
    })
    .await;
    let config = PoolConfig { size: 2, channel: quiet_channel(), ..PoolConfig::default() };
    let pool = Pool::dial(&server.addr, config).await.expect("dial");
    pool.init_all().await.expect("init_all");
    let old = pool.online();
    assert_eq!(old.len(), 2);
    let dials = pool.stats().dial_count;

    let hanging = tokio::spawn({
        let pool = pool.clone();
        async move { pool.call(1, b"hang").await }
    });
    within("the hanging call reaches the server", arrived.notified()).await;
    pool.drop_connections();
    for ch in &old {
        within("an old channel closes", ch.closed()).await;
    }
    let err = within("the hanging call ends", hanging).await.expect("task").expect_err("dropped");
    assert!(matches!(err, Error::Dropped(_)), "{err:?}");

    assert_eq!(&within("a call after the drop", pool.call(1, b"again")).await.expect("call")[..], b"again");
    assert!(!pool.is_stopped());
    assert!(pool.stats().dial_count > dials, "new connections were dialed: {:?}", pool.stats());
    assert!(old.iter().all(Channel::is_stopped), "the old channels are closed");
    assert!(!pool.online().is_empty() && pool.online().iter().all(|c| !c.is_stopped()), "new channels serve");
    pool.shutdown().await;
    server.stop().await;
}

// Hijacking takes the live connection out of the pool: a ping written on it by hand is
// answered by the server, and the pool dials a new connection for its next call.
#[tokio::test]
async fn pool_hijack_takes_the_connections_and_the_pool_redials() {
    let server = Running::echo().await;
    let pool =
        Pool::dial(&server.addr, PoolConfig { channel: quiet_channel(), ..PoolConfig::default() }).await.expect("dial");
    assert_eq!(&pool.call(1, b"before").await.expect("call")[..], b"before");
    let mut taken = within("hijack", pool.hijack()).await;
    assert_eq!(taken.len(), 1);
    let (mut io, rest) = taken.pop().expect("one connection");
    assert!(rest.is_empty(), "nothing unread: {rest:?}");

    let ping = Header { msg: MSG_PING, len: 0, sync: 77 };
    io.write_all(&ping.to_bytes()).await.expect("write a ping");
    let mut head = [0u8; HEADER_LEN];
    within("the ping's reply", io.read_exact(&mut head)).await.expect("read the reply");
    assert_eq!(Header::from_bytes(&head), ping, "the server answers on the hijacked connection");

    assert_eq!(&within("a call after the hijack", pool.call(1, b"after")).await.expect("call")[..], b"after");
    assert_eq!(server.stats.get().accepted, 2, "the pool dialed a new connection");
    pool.shutdown().await;
    server.stop().await;
}

/// A connector that refuses every attempt made before `until`, then connects to a fresh
/// in-memory echo server; counts its attempts.
fn refusing_until(until: tokio::time::Instant, attempts: Arc<AtomicUsize>) -> PoolConfig {
    let servers = Arc::new(std::sync::Mutex::new(Vec::new()));
    PoolConfig { channel: quiet_channel(), ..PoolConfig::default() }.with_connector(move |_addr: String| {
        let (attempts, servers) = (attempts.clone(), servers.clone());
        async move {
            attempts.fetch_add(1, SeqCst);
            if tokio::time::Instant::now() < until {
                return Err(io::Error::from(io::ErrorKind::ConnectionRefused));
            }
            let (ours, theirs) = tokio::io::duplex(64 * 1024);
            servers
                .lock()
                .unwrap()
                .push(Channel::new(theirs, ChannelConfig::server().with_handler(slow_echo(Duration::ZERO))));
            Ok::<DuplexStream, io::Error>(ours)
        }
    })
}

// The background redial keeps trying for `redial_timeout` after a call found no channel:
// `None` tries until it succeeds (here two hours later), one hour gives up and stops dialing.
#[tokio::test(start_paused = true)]
async fn redial_timeout_forever_keeps_dialing_and_a_bound_gives_up() {
    let two_hours = Duration::from_secs(2 * 3600);
    for (redial_timeout, comes_online) in [(None, true), (Some(Duration::from_secs(3600)), false)] {
        let attempts = Arc::new(AtomicUsize::new(0));
        let start = tokio::time::Instant::now();
        let config = PoolConfig { redial_timeout, ..refusing_until(start + two_hours, attempts.clone()) };
        let pool = Pool::new("flaky", config).expect("pool");
        let err = pool.call(1, b"x").await.expect_err("refused for now");
        assert!(matches!(err, Error::Pool(PoolError::DialFailed(_))), "{err:?}");
        // Virtual time passing is what this test is about: two hours and a minute of it.
        tokio::time::sleep(two_hours + Duration::from_secs(60)).await;
        assert_eq!(pool.online().len() == 1, comes_online, "redial_timeout {redial_timeout:?}: {:?}", pool.stats());
        if !comes_online {
            let gave_up_at = attempts.load(SeqCst);
            tokio::time::sleep(Duration::from_secs(3600)).await;
            assert_eq!(attempts.load(SeqCst), gave_up_at, "no dialing after giving up");
        }
        pool.close().await;
    }
}

// Each connect attempt is bounded by `dial_timeout`: a connector that hangs is abandoned after
// 100 ms and tried again, so within the 1 s connect timeout several attempts are made, and
// `init` reports a timed-out connect.
#[tokio::test(start_paused = true)]
async fn dial_timeout_bounds_each_connect_attempt() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = attempts.clone();
    let config = PoolConfig {
        dial_timeout: Some(Duration::from_millis(100)),
        connect_timeout: Duration::from_secs(1),
        ..PoolConfig::default()
    }
    .with_connector(move |_addr: String| {
        counted.fetch_add(1, SeqCst);
        std::future::pending::<io::Result<DuplexStream>>()
    });
    let pool = Pool::new("hangs", config).expect("pool");
    let started = tokio::time::Instant::now();
    let err = pool.init().await.expect_err("every attempt hangs");
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    let Error::Connect { source, .. } = &err else { panic!("{err:?}") };
    assert_eq!(source.kind(), io::ErrorKind::TimedOut);
    let n = attempts.load(SeqCst);
    assert!(n >= 4, "attempts of 100 ms each plus backoff within 1 s: {n}");
    assert_eq!(pool.stats().dial_errors as usize, n);
}

// A pool's channels ping every minute by default (the client config); a raw peer sees the
// first ping one minute after the connection opened.
#[tokio::test(start_paused = true)]
async fn dialed_channels_ping_every_minute_by_default() {
    assert_eq!(PoolConfig::default().channel.ping_interval, Some(Duration::from_secs(60)));
    let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
    let channel = Channel::new(ours, PoolConfig::default().channel);
    let started = tokio::time::Instant::now();
    let mut head = [0u8; HEADER_LEN];
    within_for(Duration::from_secs(120), "the first ping", theirs.read_exact(&mut head)).await.expect("a ping");
    let ping = Header::from_bytes(&head);
    assert_eq!((ping.msg, ping.len), (MSG_PING, 0), "{ping:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(60));
    channel.close();
}
