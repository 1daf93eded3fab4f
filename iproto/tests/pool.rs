//! Pool behaviour against real servers and, for the races that decide whether a request may
//! be sent twice, against connections whose peer never reads, driven step by step.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use iproto::net::Stream;
use iproto::pool::{Pool, PoolConfig, RateLimit};
use iproto::{CallOptions, Channel, ChannelConfig, Error, Packet, Sender, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

#[path = "../../tests/support/fixtures.rs"]
mod fixtures;
use fixtures::{echo, refused_addr, within, Running, BOUND};

// The server restarts on the same port under running pools. While it is down, a
// fail-on-cutoff pool fails at once with Cutoff and a waiting pool fails after its connect
// timeout with the refused connect attempt's error; both recover without user action once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_survives_a_server_restart_on_the_same_port() {
    let server = Running::echo().await;
    let addr = server.addr.clone();
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
    assert!(matches!(err, Error::Pool(iproto::PoolError::Cutoff)), "{err:?}");
    let started = Instant::now();
    let err = waiting.call(1, b"down").await.expect_err("server is down");
    // The wait names why: the last connect attempt was refused.
    let Error::Pool(iproto::PoolError::DialFailed(last)) = &err else { panic!("{err:?}") };
    assert!(matches!(**last, Error::Connect { .. }), "{last:?}");
    assert!(err.to_string().starts_with("no channel before timeout: cannot connect to"), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(250), "waited {:?}", started.elapsed());
    let stats = waiting.stats();
    assert!(stats.dial_errors > 0 && stats.wait_errors == 1, "{stats:?}");

    // Back on the same port: the background redial finds it.
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("rebind the same port");
    let server = Running::on(listener, ServerConfig::default(), echo);
    assert_eq!(&within("call after restart", waiting.call(1, b"after")).await.expect("recovered")[..], b"after");
    within("cutoff pool back online", cutoff.wait_online(BOUND)).await.expect("online again");
    assert_eq!(&cutoff.call(1, b"after").await.expect("recovered")[..], b"after");
    waiting.shutdown().await;
    cutoff.shutdown().await;
    server.stop().await;
}

// A refused address makes `dial` fail with the connect error (naming the address) once the
// connect timeout has passed. Real sockets: the bound is generous; the timing itself is pinned
// on the paused clock below.
#[tokio::test]
async fn dial_to_a_refused_address_fails_with_the_connect_error() {
    let addr = refused_addr();
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let dial = Pool::dial(&addr, PoolConfig { connect_timeout: timeout, ..Default::default() });
    let err = within("dial to a refused address giving up", dial).await.expect_err("nothing listens");
    let took = started.elapsed();
    assert!(took >= timeout - Duration::from_millis(50), "gave up after {took:?}, before the connect timeout");
    match &err {
        Error::Connect { addr: a, source } => {
            assert_eq!(a, &addr);
            assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused);
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
    assert!(err.to_string().contains(&addr), "{err}");
}

// Dialing gives up when the connect timeout has passed, not before and not much after: the
// attempts are spaced by the backoff (10 ms doubling, capped at 80 ms here) and the last one
// ends at the deadline. On the paused clock, with a connector that always refuses.
#[tokio::test(start_paused = true)]
async fn dial_gives_up_at_the_connect_timeout() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = attempts.clone();
    let config = PoolConfig {
        connect_timeout: Duration::from_secs(1),
        max_redial_interval: Duration::from_millis(80),
        ..PoolConfig::default()
    }
    .with_connector(move |_addr: String| {
        counted.fetch_add(1, SeqCst);
        std::future::ready(Err::<tokio::io::DuplexStream, _>(io::Error::from(io::ErrorKind::ConnectionRefused)))
    });
    let started = tokio::time::Instant::now();
    let err = Pool::dial("refusing", config).await.expect_err("every attempt is refused");
    let took = started.elapsed();
    assert!(matches!(&err, Error::Connect { addr, .. } if addr == "refusing"), "{err:?}");
    assert!(took >= Duration::from_secs(1) && took <= Duration::from_millis(1001), "gave up after {took:?}");
    // 1 s of attempts spaced by jittered delays that grow from 10 ms to between 40 and 80 ms.
    let n = attempts.load(SeqCst);
    assert!((12..40).contains(&n), "{n} attempts in 1 s");
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
    let server = Running::start(ServerConfig::default(), move |p: Packet, ch: Channel| {
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
    let pool = Pool::new(&server.addr, PoolConfig { size: 4, ..config }).expect("pool");
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

// Strict round-robin (go-iproto's pick) spreads concurrent calls exactly evenly.
#[tokio::test]
async fn strict_round_robin_spreads_calls_evenly() {
    let (counts, writes) = spread(PoolConfig { strict_round_robin: true, ..Default::default() }).await;
    assert_eq!(counts, vec![100; 4], "calls per connection");
    assert!(writes >= 200, "each round wakes every connection's writer: {writes} writes");
}

// The default pick: calls made in the same instant share a batch on one connection, but the
// batches go round-robin, so every connection still gets its share.
#[tokio::test]
async fn batching_pick_still_uses_every_connection() {
    let (counts, writes) = spread(PoolConfig::default()).await;
    assert!(writes <= 100, "a round of 8 calls shares one write: {writes} writes");
    assert_eq!(counts.len(), 4, "every connection was used: {counts:?}");
    assert_eq!(counts.iter().sum::<usize>(), 400);
    assert!(counts[0] >= 50, "no connection starves: {counts:?}");
}

// Calls made one after another go round-robin exactly, in the default mode too.
#[tokio::test]
async fn sequential_calls_go_round_robin() {
    let (server, per_conn) = counting_server().await;
    let pool = Pool::new(&server.addr, PoolConfig { size: 4, ..Default::default() }).expect("pool");
    pool.init_all().await.expect("init_all");
    for _ in 0..100 {
        pool.call(1, b"rr").await.expect("call");
    }
    let counts: Vec<usize> = per_conn.lock().unwrap_or_else(|e| e.into_inner()).values().copied().collect();
    assert_eq!(counts, vec![25; 4], "calls per connection");
    pool.shutdown().await;
    server.stop().await;
}

// Policing: calls over the rate fail with RateLimited. governor keeps its own clock, so
// this measures real time with generous bounds.
#[tokio::test]
async fn policing_rejects_over_the_rate() {
    let server = Running::echo().await;
    let config = PoolConfig { rate_limit: Some(RateLimit::policing(10.0, 5)), ..Default::default() };
    let pool = Pool::dial(&server.addr, config).await.expect("dial");
    let started = Instant::now();
    let (mut ok, mut limited) = (0u32, 0u32);
    for _ in 0..40 {
        match pool.call(1, b"x").await {
            Ok(_) => ok += 1,
            Err(Error::Pool(iproto::PoolError::RateLimited)) => limited += 1,
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

// Shaping: calls over the rate wait for their token; a token that would come after the call's
// deadline fails the call at once with a timeout at the rate-limit stage.
#[tokio::test]
async fn shaping_delays_to_the_rate() {
    let server = Running::echo().await;
    let config = PoolConfig { rate_limit: Some(RateLimit::shaping(50.0, 1)), ..Default::default() };
    let pool = Pool::dial(&server.addr, config).await.expect("dial");
    let started = Instant::now();
    for _ in 0..11 {
        pool.call(1, b"x").await.expect("shaped call");
    }
    let elapsed = started.elapsed();
    // 1 token at once, then 10 more at 20 ms each.
    assert!(elapsed >= Duration::from_millis(180), "11 calls at 50/s took {elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "11 calls at 50/s took {elapsed:?}");

    // One token per 100 s: the second call would wait far beyond its 5 s timeout, so it fails
    // at once rather than after its timeout (well within half of it, however loaded the machine).
    let slow = PoolConfig { rate_limit: Some(RateLimit::shaping(0.01, 1)), ..Default::default() };
    let pool = Pool::dial(&server.addr, slow).await.expect("dial");
    pool.call(1, b"first").await.expect("first token");
    let started = Instant::now();
    let err = pool.call_with(1, b"second", CallOptions::timeout(Duration::from_secs(5))).await;
    assert!(
        matches!(err, Err(Error::Timeout { msg: 1, stage: iproto::TimeoutStage::RateLimit, after }) if after == Duration::from_secs(5)),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(2500), "failed after {:?}, not at once", started.elapsed());
    server.stop().await;
}

// Burst 0 disables the limit whatever the rate.
#[tokio::test]
async fn zero_burst_disables_the_limit() {
    let server = Running::echo().await;
    let config = PoolConfig { rate_limit: Some(RateLimit::policing(1.0, 0)), ..Default::default() };
    let pool = Pool::dial(&server.addr, config).await.expect("dial");
    for _ in 0..20 {
        pool.call(1, b"x").await.expect("unlimited");
    }
    server.stop().await;
}

// Concurrent callers on an empty pool share one dial.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_dial() {
    let server = Running::echo().await;
    let dials = Arc::new(AtomicUsize::new(0));
    let d = dials.clone();
    let config = PoolConfig::default().with_connector(move |addr: String| {
        d.fetch_add(1, SeqCst);
        async move { tokio::net::TcpStream::connect(addr).await }
    });
    let pool = Pool::new(&server.addr, config).expect("pool");
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

// After every channel is closed, the next call redials.
#[tokio::test]
async fn call_after_all_channels_closed_redials() {
    let server = Running::echo().await;
    let pool = Pool::dial(&server.addr, PoolConfig { size: 2, ..Default::default() }).await.expect("dial");
    pool.init_all().await.expect("init_all");
    let old = pool.online();
    assert_eq!(old.len(), 2);
    for ch in &old {
        ch.close();
        within("a closed pool channel's tasks ending", ch.closed()).await;
    }
    assert_eq!(&pool.call(1, b"again").await.expect("transparent redial")[..], b"again");
    let new = pool.online();
    assert!(!new.is_empty());
    assert!(new.iter().all(|c| !c.is_stopped()));
    pool.shutdown().await;
    server.stop().await;
}

// The online list never exceeds `size`; an extra stored channel is refused.
#[tokio::test]
async fn pool_never_exceeds_its_size() {
    let server = Running::echo().await;
    let addr = server.addr.clone();
    let pool = Pool::new(&addr, PoolConfig { size: 3, ..Default::default() }).expect("pool");
    pool.init_all().await.expect("init_all");
    for _ in 0..10 {
        pool.call(1, b"x").await.expect("call");
    }
    assert_eq!(pool.stats().online, 3);
    let extra = Channel::connect(&addr, ChannelConfig::client()).await.expect("connect");
    assert!(matches!(pool.store(extra.clone()), Err(Error::Pool(iproto::PoolError::PoolFull))));
    within("refused channel closed", extra.closed()).await;
    pool.shutdown().await;
    server.stop().await;
}

// Shutdown is graceful on every channel and empties the pool; later calls fail with Stopped.
#[tokio::test]
async fn shutdown_is_graceful_and_final() {
    let shutdowns = Arc::new(AtomicUsize::new(0));
    let s = shutdowns.clone();
    let config = ServerConfig::default().on_shutdown(move |_ch| {
        s.fetch_add(1, SeqCst);
        async {}
    });
    let server = Running::start(config, echo).await;
    let addr = server.addr.clone();

    let pool = Pool::new(&addr, PoolConfig { size: 4, ..Default::default() }).expect("pool");
    pool.init_all().await.expect("init_all");
    let channels = pool.online();
    assert_eq!(channels.len(), 4);
    within("the pool's graceful shutdown", pool.shutdown()).await;
    assert!(channels.iter().all(|c| c.is_closed()));
    assert!(channels.iter().all(|c| c.close_reason().is_none()), "graceful, not dropped");
    assert_eq!(pool.stats().online, 0);
    let err = pool.call(1, b"x").await.expect_err("a shut-down pool takes no calls");
    assert!(matches!(err, Error::Stopped) && err.is_not_sent(), "{err:?}");
    within("server connections end", server.stats.wait_open_at_most(0)).await;
    assert_eq!(shutdowns.load(SeqCst), 4);
    within("closing a shut-down pool", pool.close()).await;
    server.stop().await;
}

// Stats sum the channels, closed ones included, plus the pool's own counters.
#[tokio::test]
async fn stats_sum_channels_and_dials() {
    let server = Running::echo().await;
    let pool = Pool::dial(&server.addr, PoolConfig::default()).await.expect("dial");
    for _ in 0..5 {
        pool.call(1, b"abc").await.expect("call");
    }
    pool.notify(2, b"n").await.expect("notify");
    let first = pool.online();
    for ch in &first {
        ch.close();
        within("a closed pool channel's tasks ending", ch.closed()).await;
    }
    pool.call(1, b"abc").await.expect("call after redial");
    let stats = pool.stats();
    assert_eq!(stats.channels.calls, 6);
    assert_eq!(stats.channels.notifications, 1);
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
    let server = Running::echo().await;
    let addr = server.addr.clone();
    let pool = Pool::dial(&addr, PoolConfig::default()).await.expect("dial");
    let channel = Channel::connect(&addr, ChannelConfig::client()).await.expect("connect");
    assert_eq!(&twice(&pool).await.expect("pool")[..], b"b");
    assert_eq!(&twice(&channel).await.expect("channel")[..], b"b");
    pool.shutdown().await;
    server.stop().await;
}

// A throttled dial makes the caller wait for the throttle window instead of
// failing with go-iproto's ErrThrottled.
#[tokio::test]
async fn throttled_dial_waits_for_the_window() {
    let server = Running::echo().await;
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
    let pool = Pool::new(&server.addr, config).expect("pool");
    let started = Instant::now();
    pool.call(1, b"first").await.expect("first dial");
    for ch in pool.online() {
        ch.close();
        within("a closed pool channel's tasks ending", ch.closed()).await;
    }
    assert_eq!(&pool.call(1, b"second").await.expect("waits for the throttle window")[..], b"second");
    let took = started.elapsed();
    assert!(took >= throttle - Duration::from_millis(20), "second dial came after {took:?}");
    assert_eq!(dials.load(SeqCst), 2);
    pool.shutdown().await;
    server.stop().await;
}

// A custom connector can supply any stream; here an in-memory pipe to a channel.
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
    let server = Running::echo().await;
    let pool = Pool::new(&server.addr, PoolConfig { size: 3, ..Default::default() }).expect("pool");
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

// `init` brings exactly one channel online, whatever the size; the rest grows as calls come
// in. A second `init` with a channel online dials nothing; after shutdown it is refused.
#[tokio::test]
async fn init_brings_one_channel_online_and_calls_grow_the_pool() {
    let server = Running::echo().await;
    let pool = Pool::new(&server.addr, PoolConfig { size: 3, ..Default::default() }).expect("pool");
    assert_eq!(pool.stats().online, 0, "a new pool dials nothing");
    within("init", pool.init()).await.expect("init");
    assert_eq!((pool.stats().online, pool.stats().dial_count), (1, 1));
    within("a second init", pool.init()).await.expect("init again");
    assert_eq!(pool.stats().dial_count, 1, "a second init with a channel online dials nothing");
    // Calls on a pool below its size start background dials until it is full.
    for _ in 0..3 {
        pool.call(1, b"grow").await.expect("call");
    }
    let mut events = 0;
    while pool.stats().online < 3 {
        within("the pool growing to its size", pool.call(1, b"grow")).await.expect("call");
        events += 1;
        assert!(events < 10_000, "the pool did not grow to 3: {:?}", pool.stats());
        tokio::task::yield_now().await;
    }
    assert_eq!(pool.stats().online, 3);
    pool.shutdown().await;
    let err = pool.init().await.expect_err("init after shutdown");
    assert!(matches!(err, Error::Stopped), "{err:?}");
    server.stop().await;
}

// `next_channel` hands out the online channels round-robin, fails at once with Cutoff when
// none is online and `fail_on_cutoff` is set, and takes a rate-limit token like a call.
#[tokio::test]
async fn next_channel_goes_round_robin_and_obeys_cutoff_and_the_rate_limit() {
    let server = Running::echo().await;
    let pool = Pool::new(&server.addr, PoolConfig { size: 2, ..Default::default() }).expect("pool");
    pool.init_all().await.expect("init_all");
    let mut seen = Vec::new();
    for _ in 0..4 {
        let ch = within("next_channel", pool.next_channel()).await.expect("a channel is online");
        assert_eq!(&ch.call(1, b"direct").await.expect("call on the handed-out channel")[..], b"direct");
        seen.push(ch.local_addr().expect("a TCP channel has a local address").to_string());
    }
    assert_ne!(seen[0], seen[1], "two channels in turn: {seen:?}");
    assert_eq!((&seen[0], &seen[1]), (&seen[2], &seen[3]), "round-robin: {seen:?}");
    pool.shutdown().await;

    let cutoff = Pool::new(&refused_addr(), PoolConfig { fail_on_cutoff: true, ..Default::default() }).expect("pool");
    let err = within("next_channel on an offline pool", cutoff.next_channel()).await.expect_err("none online");
    assert!(matches!(err, Error::Pool(iproto::PoolError::Cutoff)), "{err:?}");

    let one_token = PoolConfig { rate_limit: Some(RateLimit::policing(0.001, 1)), ..Default::default() };
    let limited = Pool::dial(&server.addr, one_token).await.expect("dial");
    within("next_channel", limited.next_channel()).await.expect("the first token");
    let err = within("next_channel", limited.next_channel()).await.expect_err("no second token");
    assert!(matches!(err, Error::Pool(iproto::PoolError::RateLimited)), "{err:?}");
    limited.shutdown().await;
    server.stop().await;
}

/// What a [`SilentPeer`] has seen: whether anything tried to write, and the bytes it took.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    write_attempted: bool,
    bytes_taken: usize,
}

/// A connection whose peer never answers: reads never return, and writes either stay pending
/// forever (a peer that stopped reading: the writer is stuck with its batch) or are taken and
/// dropped. The test watches what it has seen.
struct SilentPeer {
    takes_writes: bool,
    seen: watch::Sender<Seen>,
}

impl SilentPeer {
    fn new(takes_writes: bool) -> (SilentPeer, watch::Receiver<Seen>) {
        let (seen, watching) = watch::channel(Seen::default());
        (SilentPeer { takes_writes, seen }, watching)
    }
}

impl AsyncRead for SilentPeer {
    fn poll_read(self: Pin<&mut Self>, _cx: &mut Context<'_>, _buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Poll::Pending // never wakes: the channel's close cancels the reader
    }
}

impl AsyncWrite for SilentPeer {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let takes = self.takes_writes;
        self.seen.send_modify(|s| {
            s.write_attempted = true;
            if takes {
                s.bytes_taken += buf.len();
            }
        });
        if takes {
            Poll::Ready(Ok(buf.len()))
        } else {
            Poll::Pending
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Channels for the retry tests: no pings, a long request timeout, and a queue of one packet
/// (no byte allowance), so that a stuck writer makes the next call wait for room.
fn one_slot_channel() -> ChannelConfig {
    ChannelConfig {
        ping_interval: None,
        request_timeout: Duration::from_secs(3600),
        shutdown_timeout: Duration::from_secs(1),
        write_queue: 1,
        write_buffer_size: 0,
        ..ChannelConfig::client()
    }
}

/// A pool of up to `size` channels that the test stores itself: its connector never
/// completes, so no background dial ever adds one.
fn stored_only_pool(size: usize, rate_limit: Option<RateLimit>) -> Pool {
    let config = PoolConfig { size, rate_limit, channel: one_slot_channel(), ..PoolConfig::default() }
        .with_connector(|_addr: String| std::future::pending::<io::Result<tokio::io::DuplexStream>>());
    Pool::new("stored-only", config).expect("pool")
}

/// A channel to an in-memory echo server; returns it and the server's side, whose
/// `stats().requests` counts what reached it.
fn echo_channel() -> (Channel, Channel) {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let server = Channel::new(theirs, ChannelConfig::server().with_handler(echo));
    (Channel::new(ours, one_slot_channel()), server)
}

/// Polls `f` once, without a waker: it runs up to its first wait, which must come.
fn run_to_first_wait<F: Future + Unpin>(what: &str, f: &mut F) {
    let mut cx = Context::from_waker(Waker::noop());
    assert!(Pin::new(f).poll(&mut cx).is_pending(), "{what} finished instead of waiting");
}

/// A channel over a silent peer whose writer is stuck with `first`'s packet and whose queue
/// holds `second`'s: the next call on it waits for room, not yet sent.
async fn stuck_channel() -> (Channel, watch::Receiver<Seen>) {
    let (peer, mut seen) = SilentPeer::new(false);
    let ch = Channel::new(Stream::other(peer), one_slot_channel());
    let mut first = Box::pin(ch.call(1, b"first"));
    run_to_first_wait("the first call", &mut first);
    within("the writer trying to write the first call", seen.wait_for(|s| s.write_attempted))
        .await
        .expect("the peer is alive");
    let mut second = Box::pin(ch.call(1, b"second"));
    run_to_first_wait("the second call", &mut second);
    // Their packets stay where they are (one in the writer, one in the queue) when the calls
    // are given up, so the channel's only pending call from here on is the next one.
    drop((first, second));
    assert_eq!(ch.stats().pending, 0);
    (ch, seen)
}

// A call the pool put on a channel whose writer was stuck, and which was still waiting for
// room when that channel closed, never reached the wire: the pool sends it once more, on
// another channel. The retry takes no second rate-limit token (there is only one).
#[tokio::test]
async fn a_call_never_sent_before_its_channel_closed_is_retried_on_another() {
    let pool = stored_only_pool(2, Some(RateLimit::policing(0.001, 1)));
    let (stuck, seen) = stuck_channel().await;
    pool.store(stuck.clone()).expect("store the stuck channel");
    let mut call = Box::pin(pool.call(1, b"retried"));
    run_to_first_wait("the pool call on the stuck channel", &mut call);
    assert_eq!(stuck.stats().pending, 1, "the pool's call waits on the stuck channel");

    let (echo, server) = echo_channel();
    pool.store(echo).expect("store the echo channel");
    stuck.close();
    let reply = within("the retried call", call).await.expect("retried on the echo channel");
    assert_eq!(&reply[..], b"retried");
    assert_eq!(server.stats().requests, 1, "the echo server got the call once");
    assert_eq!(seen.borrow().bytes_taken, 0, "nothing reached the stuck channel's peer");
    pool.close().await;
}

// The same when the channel is hijacked (for another protocol) while the call waits for room:
// the hijack stops the channel, the call is refused unsent and the pool sends it elsewhere.
#[tokio::test(start_paused = true)]
async fn a_call_never_sent_before_its_channel_was_hijacked_is_retried_on_another() {
    let pool = stored_only_pool(2, None);
    let (stuck, seen) = stuck_channel().await;
    pool.store(stuck.clone()).expect("store the stuck channel");
    let mut call = Box::pin(pool.call(1, b"retried"));
    run_to_first_wait("the pool call on the stuck channel", &mut call);

    let (echo, server) = echo_channel();
    pool.store(echo).expect("store the echo channel");
    // The hijack waits for the stuck calls up to the shutdown timeout, then takes over.
    let hijack = tokio::spawn({
        let stuck = stuck.clone();
        async move { stuck.hijack().await.map(|_| ()) }
    });
    let reply = within("the retried call", call).await.expect("retried on the echo channel");
    assert_eq!(&reply[..], b"retried");
    assert_eq!(server.stats().requests, 1);
    assert_eq!(seen.borrow().bytes_taken, 0);
    // Past the shutdown timeout the hijack takes the transport anyway.
    within("the hijack", hijack).await.expect("the hijack task").expect("the hijack takes the transport");
    // Calls on the hijacked channel are refused as never sent.
    let err = stuck.call(1, b"after").await.expect_err("the channel is hijacked");
    assert!(matches!(err, Error::Hijacked) && err.is_not_sent(), "{err:?}");
    pool.close().await;
}

// A call that did reach the wire is never sent twice: when its channel closes before the
// reply, the caller gets Dropped (not "not sent"), and the other channel sees nothing.
#[tokio::test]
async fn a_call_already_sent_is_not_retried_when_its_channel_closes() {
    let pool = stored_only_pool(2, None);
    let (peer, mut seen) = SilentPeer::new(true);
    let silent = Channel::new(Stream::other(peer), one_slot_channel());
    pool.store(silent.clone()).expect("store the silent channel");
    let mut call = Box::pin(pool.call(1, b"sent once"));
    run_to_first_wait("the pool call", &mut call);
    let packet = 12 + b"sent once".len();
    within("the call's packet reaching the peer", seen.wait_for(|s| s.bytes_taken >= packet))
        .await
        .expect("the peer is alive");

    let (echo, server) = echo_channel();
    pool.store(echo).expect("store the echo channel");
    silent.close();
    let err = within("the call's failure", call).await.expect_err("the connection closed before the reply");
    assert!(matches!(err, Error::Dropped(_)), "{err:?}");
    assert!(!err.is_not_sent(), "a sent call is not safe to retry: {err:?}");
    assert_eq!(server.stats().requests, 0, "the call was not sent a second time");
    pool.close().await;
}

// The retry happens once: when the second channel also stops before sending, the caller gets
// Stopped even though a third channel is online.
#[tokio::test]
async fn a_call_is_retried_at_most_once() {
    let pool = stored_only_pool(3, None);
    let (a, _) = stuck_channel().await;
    let (b, _) = stuck_channel().await;
    pool.store(a.clone()).expect("store a");
    pool.store(b.clone()).expect("store b");
    let mut call = Box::pin(pool.call(1, b"twice refused"));
    run_to_first_wait("the pool call", &mut call);
    let (first, second) = if a.stats().pending == 1 { (a, b) } else { (b, a) };
    assert_eq!(first.stats().pending, 1, "the call waits on one of the stuck channels");
    first.close();
    run_to_first_wait("the retry", &mut call);
    assert_eq!(second.stats().pending, 1, "the retry waits on the other stuck channel");

    let (echo, server) = echo_channel();
    pool.store(echo).expect("store the echo channel");
    second.close();
    let err = within("the call's failure", call).await.expect_err("both tries were refused");
    assert!(matches!(err, Error::Stopped) && err.is_not_sent(), "{err:?}");
    assert_eq!(server.stats().requests, 0, "no third try");
    pool.close().await;
}
