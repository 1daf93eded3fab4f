//! Pool behaviour (catalogue section 4, P-1..P-27, and the dialer U-1) against real servers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use iproto::pool::{Pool, PoolConfig, RateLimit};
use iproto::server::ServerStatsHandle;
use iproto::{CallOptions, Channel, ChannelConfig, Error, Packet, Sender, Server, ServerConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const BOUND: Duration = Duration::from_secs(10);

async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(BOUND, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what} did not happen within {BOUND:?}"),
    }
}

async fn echo(p: Packet, _ch: Channel) -> Option<Bytes> {
    Some(p.body)
}

struct Running {
    addr: std::net::SocketAddr,
    stats: ServerStatsHandle,
    stop: oneshot::Sender<()>,
    serving: JoinHandle<Result<(), Error>>,
}

/// Serves `handler` on `listener` until stopped.
fn serve<H: iproto::Handler>(listener: tokio::net::TcpListener, handler: H) -> Running {
    let addr = listener.local_addr().expect("local addr");
    let server = Server::from_tcp(listener, ServerConfig::default()).expect("server");
    let stats = server.stats_handle();
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_with_shutdown(handler, async move {
        let _ = stopped.await;
    }));
    Running { addr, stats, stop, serving }
}

async fn start<H: iproto::Handler>(handler: H) -> Running {
    serve(tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind"), handler)
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        let result = within("server stop", self.serving).await;
        assert!(matches!(result, Ok(Ok(()))), "serve ended with {result:?}");
    }
}

/// A port with nothing listening on it.
async fn refused_addr() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    drop(l);
    addr
}

// P-15, P-16, P-21, U-1: the server restarts on the same port under running pools. While it
// is down, a fail-on-cutoff pool fails at once with Cutoff and a waiting pool fails after its
// connect timeout with NoChannel; both recover without user action once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_survives_a_server_restart_on_the_same_port() {
    let server = start(echo).await;
    let port_addr = server.addr;
    let addr = port_addr.to_string();
    let fast_redial = PoolConfig {
        size: 2,
        redial_interval: Duration::from_millis(5),
        max_redial_interval: Duration::from_millis(40),
        ..Default::default()
    };
    let waiting = Pool::dial(&addr, PoolConfig { connect_timeout: Duration::from_millis(300), ..fast_redial.clone() })
        .await
        .expect("dial waiting pool");
    let cutoff =
        Pool::dial(&addr, PoolConfig { fail_on_cutoff: true, ..fast_redial.clone() }).await.expect("dial cutoff pool");
    waiting.init_all().await.expect("init_all");
    cutoff.init_all().await.expect("init_all");
    assert_eq!(&waiting.call(1, b"before").await.expect("call")[..], b"before");
    assert_eq!(&cutoff.call(1, b"before").await.expect("call")[..], b"before");

    // The server shuts down gracefully: the pools' channels get 0xff01 and leave rotation.
    server.stop().await;
    for pool in [&waiting, &cutoff] {
        for ch in pool.online() {
            within("pool channel closes", ch.closed()).await;
        }
    }
    let err = cutoff.call(1, b"down").await.expect_err("server is down");
    assert!(matches!(err, Error::Cutoff), "{err:?}");
    let started = Instant::now();
    let err = waiting.call(1, b"down").await.expect_err("server is down");
    assert!(matches!(err, Error::NoChannel), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(250), "waited {:?}", started.elapsed());
    let stats = waiting.stats();
    assert!(stats.dial_errors > 0 && stats.wait_errors == 1, "{stats:?}");

    // Back on the same port: the background redial finds it.
    let listener = tokio::net::TcpListener::bind(port_addr).await.expect("rebind the same port");
    let server = serve(listener, echo);
    assert_eq!(&within("call after restart", waiting.call(1, b"after")).await.expect("recovered")[..], b"after");
    within("cutoff pool back online", cutoff.wait_online(BOUND)).await.expect("online again");
    assert_eq!(&cutoff.call(1, b"after").await.expect("recovered")[..], b"after");
    waiting.shutdown().await;
    cutoff.shutdown().await;
    server.stop().await;
}

// P-20: a refused address makes `dial` fail within the connect timeout with the connect error.
#[tokio::test]
async fn dial_to_a_refused_address_fails_within_the_connect_timeout() {
    let addr = refused_addr().await;
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = Pool::dial(&addr, PoolConfig { connect_timeout: timeout, ..Default::default() })
        .await
        .expect_err("nothing listens");
    let took = started.elapsed();
    assert!(took < timeout + Duration::from_millis(500), "took {took:?}");
    match &err {
        Error::Connect { addr: a, source } => {
            assert_eq!(a, &addr);
            assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused);
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
    assert!(err.to_string().contains(&addr), "{err}");
}

// An invalid address is refused before any dial.
#[tokio::test]
async fn invalid_address_is_rejected() {
    assert!(matches!(Pool::new("no-port", PoolConfig::default()), Err(Error::InvalidAddress(_))));
}

/// Starts a server counting requests per client connection; returns it and the counts.
async fn counting_server() -> (Running, Arc<Mutex<HashMap<String, usize>>>) {
    let per_conn: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let counts = per_conn.clone();
    let server = start(move |p: Packet, ch: Channel| {
        let peer = format!("{:?}", ch.peer_addr());
        *counts.lock().unwrap_or_else(|e| e.into_inner()).entry(peer).or_default() += 1;
        async move { Some(p.body) }
    })
    .await;
    (server, per_conn)
}

/// 8 concurrent callers making 50 calls each over a pool of 4; returns the calls per
/// connection, sorted, and the number of writes the pool made.
async fn spread(config: PoolConfig) -> (Vec<usize>, u64) {
    let (server, per_conn) = counting_server().await;
    let pool = Pool::new(&server.addr.to_string(), PoolConfig { size: 4, ..config }).expect("pool");
    pool.init_all().await.expect("init_all");
    assert_eq!(pool.stats().online, 4);
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    pool.call(1, b"rr").await?;
                }
                Ok::<(), Error>(())
            })
        })
        .collect();
    for c in calls {
        c.await.expect("join").expect("calls");
    }
    assert_eq!(server.stats.get().accepted, 4, "no extra connection was made");
    assert_eq!(pool.stats().channels.calls, 400);
    let writes = pool.stats().channels.writes;
    pool.shutdown().await;
    server.stop().await;
    let mut counts: Vec<usize> = per_conn.lock().unwrap_or_else(|e| e.into_inner()).values().copied().collect();
    counts.sort_unstable();
    (counts, writes)
}

// P-15: strict round-robin (go-iproto's pick) spreads concurrent calls exactly evenly.
#[tokio::test]
async fn strict_round_robin_spreads_calls_evenly() {
    let (counts, writes) = spread(PoolConfig { strict_round_robin: true, ..Default::default() }).await;
    assert_eq!(counts, vec![100; 4], "calls per connection");
    assert!(writes >= 200, "each round wakes every connection's writer: {writes} writes");
}

// P-15, our default: calls made in the same instant share a batch on one connection, but the
// batches go round-robin, so every connection still gets its share.
#[tokio::test]
async fn batching_pick_still_uses_every_connection() {
    let (counts, writes) = spread(PoolConfig::default()).await;
    assert!(writes <= 100, "a round of 8 calls shares one write: {writes} writes");
    assert_eq!(counts.len(), 4, "every connection was used: {counts:?}");
    assert_eq!(counts.iter().sum::<usize>(), 400);
    assert!(counts[0] >= 50, "no connection starves: {counts:?}");
}

// P-15: calls made one after another go round-robin exactly, in the default mode too.
#[tokio::test]
async fn sequential_calls_go_round_robin() {
    let (server, per_conn) = counting_server().await;
    let pool = Pool::new(&server.addr.to_string(), PoolConfig { size: 4, ..Default::default() }).expect("pool");
    pool.init_all().await.expect("init_all");
    for _ in 0..100 {
        pool.call(1, b"rr").await.expect("call");
    }
    let counts: Vec<usize> = per_conn.lock().unwrap_or_else(|e| e.into_inner()).values().copied().collect();
    assert_eq!(counts, vec![25; 4], "calls per connection");
    pool.shutdown().await;
    server.stop().await;
}

// P-13 policing: calls over the rate fail with RateLimited. governor keeps its own clock, so
// this measures real time with generous bounds.
#[tokio::test]
async fn policing_rejects_over_the_rate() {
    let server = start(echo).await;
    let config = PoolConfig { rate_limit: Some(RateLimit::policing(10.0, 5)), ..Default::default() };
    let pool = Pool::dial(&server.addr.to_string(), config).await.expect("dial");
    let started = Instant::now();
    let (mut ok, mut limited) = (0u32, 0u32);
    for _ in 0..40 {
        match pool.call(1, b"x").await {
            Ok(_) => ok += 1,
            Err(Error::RateLimited) => limited += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // The burst of 5, plus at most one token per 100 ms that passed.
    let most = 5 + (elapsed * 10.0).ceil() as u32 + 1;
    assert!(ok >= 5 && ok <= most, "ok {ok}, limited {limited}, in {elapsed:.3}s");
    assert_eq!(ok + limited, 40);
    assert!(limited > 0);
    pool.shutdown().await;
    server.stop().await;
}

// P-13 shaping: calls over the rate wait for their token; a wait beyond the call's timeout
// fails at once with RateLimited.
#[tokio::test]
async fn shaping_delays_to_the_rate() {
    let server = start(echo).await;
    let config = PoolConfig { rate_limit: Some(RateLimit::shaping(50.0, 1)), ..Default::default() };
    let pool = Pool::dial(&server.addr.to_string(), config).await.expect("dial");
    let started = Instant::now();
    for _ in 0..11 {
        pool.call(1, b"x").await.expect("shaped call");
    }
    let elapsed = started.elapsed();
    // 1 token at once, then 10 more at 20 ms each.
    assert!(elapsed >= Duration::from_millis(180), "11 calls at 50/s took {elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "11 calls at 50/s took {elapsed:?}");

    let slow = PoolConfig { rate_limit: Some(RateLimit::shaping(1.0, 1)), ..Default::default() };
    let pool = Pool::dial(&server.addr.to_string(), slow).await.expect("dial");
    pool.call(1, b"first").await.expect("first token");
    let started = Instant::now();
    let err = pool.call_with(1, b"second", CallOptions::timeout(Duration::from_millis(50))).await;
    assert!(matches!(err, Err(Error::RateLimited)), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(40), "failed at once, not after waiting");
    server.stop().await;
}

// Burst 0 disables the limit whatever the rate (P-13).
#[tokio::test]
async fn zero_burst_disables_the_limit() {
    let server = start(echo).await;
    let config = PoolConfig { rate_limit: Some(RateLimit::policing(1.0, 0)), ..Default::default() };
    let pool = Pool::dial(&server.addr.to_string(), config).await.expect("dial");
    for _ in 0..20 {
        pool.call(1, b"x").await.expect("unlimited");
    }
    server.stop().await;
}

// P-18: concurrent callers on an empty pool share one dial.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_dial() {
    let server = start(echo).await;
    let dials = Arc::new(AtomicUsize::new(0));
    let d = dials.clone();
    let config = PoolConfig::default().with_connector(move |addr: String| {
        d.fetch_add(1, SeqCst);
        async move { tokio::net::TcpStream::connect(addr).await }
    });
    let pool = Pool::new(&server.addr.to_string(), config).expect("pool");
    let calls: Vec<_> = (0..32u32)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.call(1, &i.to_le_bytes()).await })
        })
        .collect();
    for (i, c) in calls.into_iter().enumerate() {
        let reply = c.await.expect("join").expect("call on a fresh pool");
        assert_eq!(reply[..], (i as u32).to_le_bytes());
    }
    assert_eq!(dials.load(SeqCst), 1);
    let stats = pool.stats();
    assert_eq!((stats.dial_count, stats.online), (1, 1));
    pool.shutdown().await;
    server.stop().await;
}

// P-21 (TestPoolCallAfterDrop): after every channel is closed, the next call redials.
#[tokio::test]
async fn call_after_all_channels_closed_redials() {
    let server = start(echo).await;
    let pool = Pool::dial(&server.addr.to_string(), PoolConfig { size: 2, ..Default::default() }).await.expect("dial");
    pool.init_all().await.expect("init_all");
    let old = pool.online();
    assert_eq!(old.len(), 2);
    for ch in &old {
        ch.close();
        ch.closed().await;
    }
    assert_eq!(&pool.call(1, b"again").await.expect("transparent redial")[..], b"again");
    let new = pool.online();
    assert!(!new.is_empty());
    assert!(new.iter().all(|c| !c.is_stopped()));
    pool.shutdown().await;
    server.stop().await;
}

// P-17, P-30: the online list never exceeds `size`; an extra stored channel is refused.
#[tokio::test]
async fn pool_never_exceeds_its_size() {
    let server = start(echo).await;
    let addr = server.addr.to_string();
    let pool = Pool::new(&addr, PoolConfig { size: 3, ..Default::default() }).expect("pool");
    pool.init_all().await.expect("init_all");
    for _ in 0..10 {
        pool.call(1, b"x").await.expect("call");
    }
    assert_eq!(pool.stats().online, 3);
    let extra = Channel::connect(&addr, ChannelConfig::client()).await.expect("connect");
    assert!(matches!(pool.store(extra.clone()), Err(Error::PoolFull)));
    within("refused channel closed", extra.closed()).await;
    pool.shutdown().await;
    server.stop().await;
}

// P-23 (TestPoolShutdown): shutdown is graceful on every channel and empties the pool; later
// calls fail with Stopped (P-22).
#[tokio::test]
async fn shutdown_is_graceful_and_final() {
    let shutdowns = Arc::new(AtomicUsize::new(0));
    let s = shutdowns.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let config = ServerConfig::default().on_shutdown(move |_ch| {
        s.fetch_add(1, SeqCst);
        async {}
    });
    let server = Server::from_tcp(listener, config).expect("server");
    let stats = server.stats_handle();
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_with_shutdown(echo, async move {
        let _ = stopped.await;
    }));

    let pool = Pool::new(&addr, PoolConfig { size: 4, ..Default::default() }).expect("pool");
    pool.init_all().await.expect("init_all");
    let channels = pool.online();
    assert_eq!(channels.len(), 4);
    pool.shutdown().await;
    assert!(channels.iter().all(|c| c.is_closed()));
    assert!(channels.iter().all(|c| c.close_reason().is_none()), "graceful, not dropped");
    assert_eq!(pool.stats().online, 0);
    assert!(matches!(pool.call(1, b"x").await, Err(Error::Stopped)));
    within("server connections end", stats.wait_open_at_most(0)).await;
    assert_eq!(shutdowns.load(SeqCst), 4);
    pool.close().await;
    let _ = stop.send(());
    assert!(matches!(within("serve returns", serving).await, Ok(Ok(()))));
}

// P-26: stats sum the channels, closed ones included, plus the pool's own counters.
#[tokio::test]
async fn stats_sum_channels_and_dials() {
    let server = start(echo).await;
    let pool = Pool::dial(&server.addr.to_string(), PoolConfig::default()).await.expect("dial");
    for _ in 0..5 {
        pool.call(1, b"abc").await.expect("call");
    }
    pool.notify(2, b"n").await.expect("notify");
    let first = pool.online();
    for ch in &first {
        ch.close();
        ch.closed().await;
    }
    pool.call(1, b"abc").await.expect("call after redial");
    let stats = pool.stats();
    assert_eq!(stats.channels.calls, 6);
    assert_eq!(stats.channels.notices, 1);
    assert!(stats.dial_count >= 2, "{stats:?}");
    assert_eq!(stats.online, 1);
    pool.shutdown().await;
    server.stop().await;
}

// The pool is a `Sender`, so code generic over it works on a pool or a channel.
#[tokio::test]
async fn pool_and_channel_are_both_senders() {
    async fn twice<S: Sender>(s: &S) -> Result<Bytes, Error> {
        s.call(1, b"a").await?;
        s.call(1, b"b").await
    }
    let server = start(echo).await;
    let addr = server.addr.to_string();
    let pool = Pool::dial(&addr, PoolConfig::default()).await.expect("dial");
    let channel = Channel::connect(&addr, ChannelConfig::client()).await.expect("connect");
    assert_eq!(&twice(&pool).await.expect("pool")[..], b"b");
    assert_eq!(&twice(&channel).await.expect("channel")[..], b"b");
    pool.shutdown().await;
    server.stop().await;
}

// P-19, improved: a throttled dial makes the caller wait for the throttle window instead of
// failing with go-iproto's ErrThrottled.
#[tokio::test]
async fn throttled_dial_waits_for_the_window() {
    let server = start(echo).await;
    let dials = Arc::new(AtomicUsize::new(0));
    let d = dials.clone();
    let throttle = Duration::from_millis(200);
    let config = PoolConfig {
        dial_throttle: Some(throttle),
        disable_pre_dial: true,
        connect_timeout: Duration::from_secs(2),
        ..PoolConfig::default()
    }
    .with_connector(move |addr: String| {
        d.fetch_add(1, SeqCst);
        async move { tokio::net::TcpStream::connect(addr).await }
    });
    let pool = Pool::new(&server.addr.to_string(), config).expect("pool");
    let started = Instant::now();
    pool.call(1, b"first").await.expect("first dial");
    for ch in pool.online() {
        ch.close();
        ch.closed().await;
    }
    assert_eq!(&pool.call(1, b"second").await.expect("waits for the throttle window")[..], b"second");
    let took = started.elapsed();
    assert!(took >= throttle - Duration::from_millis(20), "second dial came after {took:?}");
    assert_eq!(dials.load(SeqCst), 2);
    pool.shutdown().await;
    server.stop().await;
}

// P-3: a custom connector can supply any stream; here an in-memory pipe to a channel.
#[tokio::test]
async fn connector_supplies_any_transport() {
    let served = Arc::new(AtomicUsize::new(0));
    let s = served.clone();
    let config = PoolConfig::default().with_connector(move |addr: String| {
        s.fetch_add(1, SeqCst);
        async move {
            assert_eq!(addr, "memory");
            let (ours, theirs) = tokio::io::duplex(64 * 1024);
            let server = Channel::new(theirs, ChannelConfig::server().with_handler(echo));
            // The server side lives as long as the connection.
            tokio::spawn(async move { server.closed().await });
            Ok(ours)
        }
    });
    let pool = Pool::dial("memory", config).await.expect("dial over a pipe");
    assert_eq!(&pool.call(3, b"in memory").await.expect("call")[..], b"in memory");
    assert_eq!(served.load(SeqCst), 1);
    pool.shutdown().await;
}

// Dropping the last pool handle closes its connections (no leaked channels or tasks).
#[tokio::test]
async fn dropping_the_pool_closes_its_connections() {
    let server = start(echo).await;
    let pool = Pool::new(&server.addr.to_string(), PoolConfig { size: 3, ..Default::default() }).expect("pool");
    pool.init_all().await.expect("init_all");
    let clone = pool.clone();
    drop(pool);
    assert_eq!(&clone.call(1, b"still open").await.expect("a clone keeps the pool")[..], b"still open");
    let channels = clone.online();
    drop(clone);
    for ch in &channels {
        within("pool channel closes", ch.closed()).await;
    }
    within("server connections end", server.stats.wait_open_at_most(0)).await;
    server.stop().await;
}
