//! A bounded soak through a Pool while a proxy kills its connections at random: one million
//! calls or `IPROTO_SOAK_SECS` seconds (default 10), whichever comes first. Every call ends
//! with its own echo or a typed error (counted by kind); nothing is answered twice; the pool
//! recovers by itself; at the end the process's resident memory has grown by at most
//! [`RSS_GROWTH`] over its figure after warm-up (shrinking is fine: an allocator may hand memory
//! back), and open file descriptors and live tokio tasks have not grown.

#[path = "support/calls.rs"]
mod calls;
#[path = "support/proxy.rs"]
mod proxy;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use calls::{call_once, counting_client, unique_body, EchoServer, Tally};
use iproto::server::ServerConfig;
use iproto::{Pool, PoolConfig};
use proxy::Proxy;

/// Allowed growth of resident memory from warm-up to the end, as a fraction: a leak of a
/// few bytes per call over a million calls exceeds it.
const RSS_GROWTH: f64 = 0.10;
const MAX_CALLS: u64 = 1_000_000;
const CALLERS: usize = 32;
const POOL_SIZE: usize = 2;
const TIMEOUT: Duration = Duration::from_secs(5);
/// Allowance for a connection caught mid-teardown when the figures are taken: a leak of one
/// descriptor or task per killed connection shows up as hundreds.
const FD_SLACK: usize = 4;
const TASK_SLACK: usize = 8;

fn soak_duration() -> Duration {
    let secs = std::env::var("IPROTO_SOAK_SECS").ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or(10);
    Duration::from_secs(secs.max(2))
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("kB")
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("read /proc/self/fd").count()
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current().metrics().num_alive_tasks()
}

/// Resource figures at a quiet moment.
#[derive(Debug, Clone, Copy)]
struct Figures {
    rss_kib: u64,
    fds: usize,
    tasks: usize,
}

/// Brings the rig to a steady state and takes the figures: the pool answers a run of calls,
/// and the proxy and the server have exactly the pool's connections open.
async fn settle(pool: &Pool, proxy: &Proxy, server: &EchoServer, tally: &mut Tally) -> Figures {
    let mut streak = 0;
    let start = tally.total();
    while streak < 200 {
        assert!(tally.total() - start < 10_000, "the pool does not recover: {tally:?}");
        let ok = tally.ok;
        call_once(pool, &unique_body("settle", 24), TIMEOUT, tally).await;
        streak = if tally.ok > ok { streak + 1 } else { 0 };
    }
    let online = pool.online().len();
    proxy.wait_for(calls::GRACE, |s| s.open as usize <= online).await;
    let drained = tokio::time::timeout(calls::GRACE, server.stats.wait_open_at_most(online)).await;
    assert!(drained.is_ok(), "server connections did not drain to {online}: {:?}", server.stats.get());
    Figures { rss_kib: rss_kib(), fds: open_fds(), tasks: alive_tasks() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_through_a_pool_with_random_connection_kills() {
    let duration = soak_duration();
    let warm_up = (duration / 5).max(Duration::from_secs(1));
    let server = EchoServer::start(ServerConfig::default()).await;
    let proxy = Arc::new(Proxy::start(&server.addr).await);
    let (channel, strays) = counting_client(TIMEOUT);
    let config = PoolConfig { channel, size: POOL_SIZE, connect_timeout: TIMEOUT, ..PoolConfig::default() };
    let pool = Pool::dial(&proxy.addr(), config).await.expect("dial the pool");
    pool.init_all().await.expect("fill the pool");

    let started = Arc::new(AtomicU64::new(0));
    let faults = Arc::new(AtomicU64::new(0));
    let run = |until: Instant, tag: &'static str| {
        let stop = Arc::new(AtomicBool::new(false));
        let callers: Vec<_> = (0..CALLERS)
            .map(|w| {
                let (pool, started, stop) = (pool.clone(), started.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut tally = Tally::default();
                    let tag = format!("{tag}/{w}");
                    while !stop.load(Relaxed) && Instant::now() < until && started.fetch_add(1, Relaxed) < MAX_CALLS {
                        call_once(&pool, &unique_body(&tag, 16 + (tally.total() % 64) as usize), TIMEOUT, &mut tally)
                            .await;
                    }
                    stop.store(true, Relaxed);
                    tally
                })
            })
            .collect();
        // Kills at random moments: the injected fault, so its timing is a deliberate delay.
        let killer = {
            let (proxy, faults, stop) = (proxy.clone(), faults.clone(), stop.clone());
            tokio::spawn(async move {
                let mut rng = 0x9e37_79b9u32;
                while !stop.load(Relaxed) && Instant::now() < until {
                    rng ^= rng << 13;
                    rng ^= rng >> 17;
                    rng ^= rng << 5;
                    tokio::time::sleep(Duration::from_millis(20 + u64::from(rng % 280))).await;
                    proxy.kill_all();
                    faults.fetch_add(1, Relaxed);
                }
            })
        };
        async move {
            let mut tally = Tally::default();
            for c in callers {
                tally.add(&c.await.expect("a caller panicked"));
            }
            stop.store(true, Relaxed);
            killer.await.expect("the killer panicked");
            tally
        }
    };

    let begin = Instant::now();
    let mut warm_tally = run(begin + warm_up, "warm-up").await;
    let warm = settle(&pool, &proxy, &server, &mut warm_tally).await;
    let soak_start = Instant::now();
    let mut tally = run(begin + duration, "soak").await;
    let soak_time = soak_start.elapsed();
    let end = settle(&pool, &proxy, &server, &mut tally).await;
    tally.add(&warm_tally);

    let p = proxy.stats();
    let pool_stats = pool.stats();
    println!(
        "soak: {} calls in {:.1} s ({:.0}/s), {} ok, errors by kind {:?}, mismatched {}, overdue {}",
        tally.total(),
        (warm_up + soak_time).as_secs_f64(),
        tally.total() as f64 / begin.elapsed().as_secs_f64(),
        tally.ok,
        tally.errors,
        tally.mismatched,
        tally.overdue
    );
    println!(
        "faults: {} kill rounds, {} connections killed, {} accepted by the proxy, {} pool dials; late replies {}",
        faults.load(Relaxed),
        p.killed,
        p.accepted,
        pool_stats.dial_count,
        pool_stats.channels.late_replies
    );
    println!("after warm-up: {warm:?}; at the end: {end:?}");

    tally.assert_sound("soak");
    assert_eq!(strays.load(Relaxed), 0, "replies that matched no call reached the client");
    assert!(tally.ok > 0 && faults.load(Relaxed) > 0 && p.killed > 0, "the soak did not run: {tally:?} {p:?}");
    let growth = end.rss_kib.saturating_sub(warm.rss_kib) as f64 / warm.rss_kib as f64;
    assert!(
        growth <= RSS_GROWTH,
        "resident memory grew {:.1}% since warm-up (allowed {:.0}%): {warm:?} -> {end:?}",
        growth * 100.0,
        RSS_GROWTH * 100.0
    );
    assert!(end.fds <= warm.fds + FD_SLACK, "open file descriptors grew: {warm:?} -> {end:?}");
    assert!(end.tasks <= warm.tasks + TASK_SLACK, "live tasks grew: {warm:?} -> {end:?}");

    pool.close().await;
    server.stop().await;
}
