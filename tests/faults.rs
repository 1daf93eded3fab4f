//! Fault injection between a client and an in-process echo server, through the test proxy in
//! `support/proxy.rs`: writes split into 1-byte pieces, delays, stalled reads, cuts at chosen
//! byte offsets in either direction, corrupted length fields, killed connections. Under each
//! fault nothing panics, every call ends within its timeout with its own echo or a typed error,
//! no reply reaches a caller it was not meant for, the server keeps serving a client that goes
//! around the proxy, and a Pool reconnects by itself.

#[path = "support/calls.rs"]
mod calls;
#[path = "support/proxy.rs"]
mod proxy;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use calls::{call_once, counting_client, run_calls, unique_body, EchoServer, Tally, GRACE};
use iproto::server::ServerConfig;
use iproto::{Channel, ChannelConfig, Error, Pool, PoolConfig};
use proxy::{Corrupt, Dir, Faults, Proxy};

const TIMEOUT: Duration = Duration::from_secs(3);

/// A client that does not go through the proxy must keep getting answers.
async fn assert_server_serves_others(server: &EchoServer) {
    let direct = Channel::connect(&server.addr, ChannelConfig::client()).await.expect("direct connect");
    let tally = run_calls(&direct, "bystander", 20, 4, TIMEOUT).await;
    tally.assert_sound("bystander");
    assert_eq!(tally.ok, 20, "the server stopped serving other clients: {tally:?}");
}

/// Runs `count` calls through a fresh channel via `proxy` and returns their tally, the channel
/// and the number of packets that matched no call.
async fn through_proxy(proxy: &Proxy, tag: &str, count: usize, timeout: Duration) -> (Tally, Channel, u64) {
    let (config, strays) = counting_client(timeout);
    let ch = Channel::connect(&proxy.addr(), config).await.expect("connect through the proxy");
    let tally = run_calls(&ch, tag, count, 4, timeout).await;
    tally.assert_sound(tag);
    (tally, ch, strays.load(Relaxed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_byte_writes_and_delays_lose_nothing() {
    let server = EchoServer::start(ServerConfig::default()).await;
    let proxy = Proxy::start(&server.addr).await;
    for (name, faults) in [
        ("split", Faults { split: true, ..Faults::default() }),
        ("delay", Faults { delay: Some(Duration::from_millis(20)), ..Faults::default() }),
        ("split+delay", Faults { split: true, delay: Some(Duration::from_millis(2)), ..Faults::default() }),
    ] {
        proxy.set_faults(faults);
        let (tally, ch, strays) = tokio::join!(
            async { through_proxy(&proxy, name, 40, Duration::from_secs(20)).await },
            assert_server_serves_others(&server),
        )
        .0;
        assert_eq!(tally.ok, 40, "{name}: {tally:?}");
        assert_eq!(strays, 0, "{name}: packets matched no call");
        assert_eq!(ch.stats().late_replies, 0);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_reads_time_out_then_the_channel_recovers() {
    let server = EchoServer::start(ServerConfig::default()).await;
    let proxy = Proxy::start(&server.addr).await;
    let (config, strays) = counting_client(TIMEOUT);
    let ch = Channel::connect(&proxy.addr(), config).await.expect("connect");
    let mut warm = Tally::default();
    call_once(&ch, b"before the stall", TIMEOUT, &mut warm).await;
    assert_eq!(warm.ok, 1);

    proxy.stall(true);
    let stalled = run_calls(&ch, "stalled", 10, 10, Duration::from_millis(200)).await;
    stalled.assert_sound("stalled");
    assert_eq!(stalled.errors.get("timeout"), Some(&10), "{stalled:?}");
    assert_server_serves_others(&server).await;
    proxy.stall(false);

    // The stalled requests reach the server now and their replies come back late. The server
    // answers in order, so once a new call is answered every late reply has arrived; the
    // channel counts late replies after completing the calls of the same read, so a second
    // call (issued after the first completed, hence read later) makes sure they are counted.
    let mut after = Tally::default();
    call_once(&ch, b"after the stall", TIMEOUT, &mut after).await;
    call_once(&ch, b"after the stall, again", TIMEOUT, &mut after).await;
    assert_eq!(after.ok, 2, "{after:?}");
    assert_eq!(ch.stats().late_replies, 10, "late replies must be dropped and counted");
    assert_eq!(strays.load(Relaxed), 0, "a late reply was handed over as a request");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuts_at_byte_offsets_fail_calls_with_typed_errors() {
    let server = EchoServer::start(ServerConfig::default()).await;
    let proxy = Proxy::start(&server.addr).await;
    let mut all = Tally::default();
    let mut cuts = 0;
    // 20 calls move at least 20 * 28 bytes each way, so every offset here cuts.
    for dir in [Dir::ToServer, Dir::ToClient] {
        for at in [0u64, 1, 11, 12, 13, 40, 100, 333] {
            proxy.set_faults(Faults { cut: Some((dir, at)), ..Faults::default() });
            let tag = format!("cut {dir:?}@{at}");
            let (tally, ch, strays) = through_proxy(&proxy, &tag, 20, TIMEOUT).await;
            cuts += 1;
            proxy.wait_for(GRACE, |s| s.cuts >= cuts).await;
            assert!(tally.failed() > 0, "{tag}: a cut connection answered every call: {tally:?}");
            assert_eq!(strays, 0, "{tag}: packets matched no call");
            let closed = tokio::time::timeout(GRACE, ch.closed()).await;
            assert!(closed.is_ok(), "{tag}: the channel did not notice the cut");
            all.add(&tally);
        }
    }
    println!("cuts: {all:?}");
    assert_server_serves_others(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_length_fields_are_rejected() {
    let server = EchoServer::start(ServerConfig::default()).await;
    let proxy = Proxy::start(&server.addr).await;
    let mut corrupted = 0;
    for (dir, len) in [(Dir::ToServer, 0xffff_fff0), (Dir::ToClient, 0xffff_fff0), (Dir::ToServer, 5000)] {
        proxy.set_faults(Faults { corrupt_len: Some(Corrupt { dir, packet: 2, len }), ..Faults::default() });
        let tag = format!("corrupt {dir:?} len={len}");
        let (tally, ch, strays) = through_proxy(&proxy, &tag, 20, Duration::from_secs(1)).await;
        corrupted += 1;
        assert_eq!(proxy.stats().corrupted, corrupted, "{tag}: the fault did not fire");
        assert!(tally.failed() > 0, "{tag}: {tally:?}");
        assert_eq!(strays, 0, "{tag}: packets matched no call");
        if dir == Dir::ToClient {
            // The client itself rejects the length without allocating it.
            let reason = tokio::time::timeout(GRACE, ch.closed()).await.expect("the channel closes");
            assert!(
                matches!(reason.as_deref(), Some(Error::Frame(iproto::FrameError::TooLarge { len: 0xffff_fff0, .. }))),
                "{tag}: close reason {reason:?}"
            );
        }
        drop(ch);
    }
    assert_server_serves_others(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_reconnects_by_itself_after_cuts_and_kills() {
    let server = EchoServer::start(ServerConfig::default()).await;
    let proxy = Proxy::start(&server.addr).await;
    // Every connection is cut after 300 bytes of replies.
    proxy.set_faults(Faults { cut: Some((Dir::ToClient, 300)), ..Faults::default() });
    let (channel, strays) = counting_client(TIMEOUT);
    let config = PoolConfig { channel, connect_timeout: Duration::from_secs(5), ..PoolConfig::default() };
    let pool = Pool::dial(&proxy.addr(), config).await.expect("dial through the proxy");
    let cut = run_calls(&pool, "pool-cut", 200, 4, TIMEOUT).await;
    cut.assert_sound("pool under cuts");
    let stats = proxy.stats();
    assert!(stats.cuts >= 2 && stats.accepted >= 3, "the pool did not reconnect after cuts: {stats:?}");
    assert!(cut.ok > 0 && cut.failed() > 0, "{cut:?}");

    // Faults off, current connections killed: the pool must come back without help.
    proxy.set_faults(Faults::default());
    proxy.kill_all();
    let mut healed = Tally::default();
    let mut streak = 0;
    while streak < 20 && healed.total() < 500 {
        let before = healed.ok;
        call_once(&pool, &unique_body("pool-healed", 24), TIMEOUT, &mut healed).await;
        streak = if healed.ok > before { streak + 1 } else { 0 };
    }
    healed.assert_sound("pool after kill");
    assert_eq!(streak, 20, "the pool did not recover: {healed:?}, {:?}", proxy.stats());
    assert_eq!(strays.load(Relaxed), 0, "packets matched no call");
    println!("pool under cuts: {cut:?}; after kill: {healed:?}; proxy: {:?}", proxy.stats());
    pool.close().await;
    assert_server_serves_others(&server).await;
    server.stop().await;
}
