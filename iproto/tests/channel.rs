//! Channel behaviour against a raw peer (an in-memory duplex whose other end the test drives
//! byte by byte) and against another Channel.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iproto::{CallOptions, Channel, ChannelConfig, Error, Header, Packet, MSG_PING, MSG_SHUTDOWN};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

#[path = "../../tests/support/fixtures.rs"]
mod fixtures;
use fixtures::{within, yield_until};

/// The raw other end of a channel.
struct Peer(DuplexStream);

impl Peer {
    async fn read(&mut self) -> Packet {
        let mut head = [0u8; 12];
        within("a packet header from the channel", self.0.read_exact(&mut head)).await.expect("peer read header");
        let header = Header::from_bytes(&head);
        let mut body = vec![0u8; header.len as usize];
        within("a packet body from the channel", self.0.read_exact(&mut body)).await.expect("peer read body");
        Packet { header, body: body.into() }
    }

    async fn write(&mut self, msg: u32, sync: u32, body: &[u8]) {
        let mut out = Header { msg, len: body.len() as u32, sync }.to_bytes().to_vec();
        out.extend_from_slice(body);
        within("the channel reading our packet", self.0.write_all(&out)).await.expect("peer write");
    }

    async fn write_raw(&mut self, bytes: &[u8]) {
        within("the channel reading our bytes", self.0.write_all(bytes)).await.expect("peer write");
    }

    /// Reads until EOF, returning the packets seen.
    async fn read_to_eof(&mut self) -> Vec<Packet> {
        let mut all = Vec::new();
        within("the channel closing its end", self.0.read_to_end(&mut all)).await.expect("read to eof");
        let mut out = Vec::new();
        let mut rest = &all[..];
        while rest.len() >= 12 {
            let header = Header::from_bytes(rest[..12].try_into().unwrap());
            let end = 12 + header.len as usize;
            out.push(Packet { header, body: Bytes::copy_from_slice(&rest[12..end]) });
            rest = &rest[end..];
        }
        out
    }
}

/// Starts `ch.call(msg, body)` in its own task.
fn spawn_call(ch: &Channel, msg: u32, body: &'static [u8]) -> tokio::task::JoinHandle<Result<Bytes, Error>> {
    let ch = ch.clone();
    tokio::spawn(async move { ch.call(msg, body).await })
}

/// Starts `ch.shutdown()` in its own task.
fn spawn_shutdown(ch: &Channel) -> tokio::task::JoinHandle<()> {
    let ch = ch.clone();
    tokio::spawn(async move { ch.shutdown().await })
}

fn quiet() -> ChannelConfig {
    ChannelConfig { ping_interval: None, ..ChannelConfig::client() }
}

fn pair(config: ChannelConfig) -> (Channel, Peer) {
    let (a, b) = tokio::io::duplex(1 << 20);
    (Channel::new(a, config), Peer(b))
}

fn echo_config() -> ChannelConfig {
    ChannelConfig::server().with_handler(|p: Packet, _ch: Channel| async move { Some(p.body) })
}

fn channels(client: ChannelConfig, server: ChannelConfig) -> (Channel, Channel) {
    let (a, b) = tokio::io::duplex(1 << 20);
    (Channel::new(a, client), Channel::new(b, server))
}

#[tokio::test]
async fn a_call_gets_its_reply_and_the_first_sync_is_one() {
    let (ch, mut peer) = pair(quiet());
    let call = spawn_call(&ch, 42, b"hi");
    let req = peer.read().await;
    assert_eq!(req.header, Header { msg: 42, len: 2, sync: 1 });
    assert_eq!(&req.body[..], b"hi");
    peer.write(42, 1, b"OK").await;
    assert_eq!(&within("the call", call).await.unwrap().unwrap()[..], b"OK");
    let stats = ch.stats();
    assert_eq!((stats.calls, stats.canceled, stats.pending), (1, 0, 0));
}

#[tokio::test]
async fn replies_are_matched_to_calls_by_code_and_sync() {
    let (client, _server) = channels(quiet(), echo_config());
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let body = i.to_le_bytes();
            let reply = c.call(i % 7, &body).await.unwrap();
            assert_eq!(&reply[..], &body[..], "reply of call {i} went elsewhere");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn ten_thousand_calls_in_flight_all_resolve() {
    const N_CALLS: u32 = 10_000;
    let (client, _server) = channels(quiet(), echo_config());
    let mut set = tokio::task::JoinSet::new();
    for i in 0..N_CALLS {
        let c = client.clone();
        set.spawn(async move { (i, c.call(1, &i.to_le_bytes()).await) });
    }
    let mut n = 0;
    while let Some(res) = set.join_next().await {
        let (i, reply) = res.unwrap();
        assert_eq!(&reply.unwrap()[..], &i.to_le_bytes());
        n += 1;
    }
    assert_eq!(n, N_CALLS);
    assert_eq!(client.stats().pending, 0);
}

#[tokio::test]
async fn a_call_after_close_is_stopped() {
    let (ch, _peer) = pair(quiet());
    ch.close();
    assert!(matches!(ch.call(42, b"").await, Err(Error::Stopped)));
    assert!(within("the channel closing", ch.closed()).await.is_none(), "a local close records no error");
}

#[tokio::test]
async fn reserved_codes_are_refused_unless_allowed() {
    let (ch, mut peer) = pair(quiet());
    assert!(matches!(ch.call(0xff00, b"").await, Err(Error::ReservedCode(0xff00))));
    assert!(matches!(ch.notify(0xff01, b"").await, Err(Error::ReservedCode(0xff01))));
    let opts = CallOptions { allow_reserved: true, timeout: Some(Duration::from_secs(5)), ..Default::default() };
    let call = tokio::spawn({
        let ch = ch.clone();
        async move { ch.call_with(0xff05, b"", opts).await }
    });
    let req = peer.read().await;
    assert_eq!(req.header.msg, 0xff05);
    peer.write(0xff05, req.header.sync, b"x").await;
    assert_eq!(&within("the call", call).await.unwrap().unwrap()[..], b"x");
}

#[tokio::test(start_paused = true)]
async fn a_call_times_out_and_its_late_reply_is_dropped() {
    let handled = Arc::new(AtomicUsize::new(0));
    let h = handled.clone();
    let config = ChannelConfig { request_timeout: Duration::from_millis(10), ..quiet() }.with_handler(
        move |_p: Packet, _ch: Channel| {
            h.fetch_add(1, Ordering::SeqCst);
            async {}
        },
    );
    let (ch, mut peer) = pair(config);
    assert!(matches!(ch.call(7, b"q").await, Err(Error::Timeout { .. })));
    let req = peer.read().await;
    assert_eq!(ch.stats().pending, 0, "the timed-out call left no pending entry");
    // The late reply arrives: dropped and counted, not given to the handler.
    peer.write(7, req.header.sync, b"late").await;
    // A real request after it proves the reader has processed the late reply.
    peer.write(8, 0, b"req").await;
    yield_until("the handler seeing the request after the late reply", 10_000, || handled.load(Ordering::SeqCst) > 0)
        .await;
    assert_eq!(handled.load(Ordering::SeqCst), 1);
    let stats = ch.stats();
    assert_eq!(stats.late_replies, 1);
    assert_eq!(stats.canceled, 1);
}

#[tokio::test(start_paused = true)]
async fn a_per_call_timeout_overrides_the_default() {
    let (ch, _peer) = pair(ChannelConfig { request_timeout: Duration::from_secs(3600), ..quiet() });
    let start = tokio::time::Instant::now();
    let res = ch.call_with(1, b"", CallOptions::timeout(Duration::from_millis(20))).await;
    assert!(matches!(res, Err(Error::Timeout { .. })));
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn dropped_call_future_removes_pending_entry() {
    let (ch, mut peer) = pair(quiet());
    let call = spawn_call(&ch, 3, b"x");
    let req = peer.read().await;
    assert_eq!(ch.stats().pending, 1);
    call.abort();
    let _ = within("the call", call).await;
    assert_eq!(ch.stats().pending, 0, "cancelling the call frees its slot");
    // Its reply later is a late reply.
    peer.write(3, req.header.sync, b"late").await;
    let ok = spawn_call(&ch, 4, b"y");
    let req2 = peer.read().await;
    assert_ne!(req2.header.sync, req.header.sync);
    peer.write(4, req2.header.sync, b"fine").await;
    assert_eq!(&within("the second call", ok).await.unwrap().unwrap()[..], b"fine");
    assert_eq!(ch.stats().late_replies, 1);
}

// Replies to calls that timed out are dropped and counted once each; their syncs are then
// forgotten, so a replay of one reaches the handler as a request.
#[tokio::test]
async fn late_replies_are_counted_once_and_then_forgotten() {
    let handled = Arc::new(AtomicUsize::new(0));
    let h = handled.clone();
    let config = ChannelConfig { request_timeout: Duration::from_millis(1), ..quiet() }.with_handler(
        move |_p: Packet, _ch: Channel| {
            h.fetch_add(1, Ordering::SeqCst);
            async {}
        },
    );
    let (ch, mut peer) = pair(config);
    for i in 0..100 {
        let result = ch.call(9, b"").await;
        assert!(matches!(result, Err(Error::Timeout { .. })), "call {i} ended with {result:?}, not a timeout");
    }
    let mut syncs = Vec::new();
    for _ in 0..100 {
        syncs.push(peer.read().await.header.sync);
    }
    for &s in &syncs {
        peer.write(9, s, b"late").await;
    }
    // Replay the same syncs again: they are no longer remembered, so they reach the handler.
    for &s in &syncs[..3] {
        peer.write(9, s, b"again").await;
    }
    yield_until("the handler seeing the three replays", 10_000, || handled.load(Ordering::SeqCst) >= 3).await;
    assert_eq!(ch.stats().late_replies, 100);
    assert_eq!(handled.load(Ordering::SeqCst), 3);
}

// The memory of timed-out calls is bounded (4096 entries): past it the oldest are forgotten,
// so their late replies reach the handler as requests instead of being counted as late.
#[tokio::test(start_paused = true)]
async fn the_memory_of_timed_out_calls_is_bounded() {
    const REMEMBERED: usize = 4096;
    let handled = Arc::new(AtomicUsize::new(0));
    let h = handled.clone();
    let config = ChannelConfig { request_timeout: Duration::from_millis(1), ..quiet() }.with_handler(
        move |_p: Packet, _ch: Channel| {
            h.fetch_add(1, Ordering::SeqCst);
            async { None::<Bytes> }
        },
    );
    let (ch, mut peer) = pair(config);
    for i in 0..REMEMBERED + 3 {
        let result = ch.call(9, b"").await;
        assert!(matches!(result, Err(Error::Timeout { .. })), "call {i} ended with {result:?}, not a timeout");
    }
    let mut syncs = Vec::new();
    for _ in 0..REMEMBERED + 3 {
        syncs.push(peer.read().await.header.sync);
    }
    for &s in &syncs {
        peer.write(9, s, b"late").await;
    }
    peer.write(10, 0, b"marker").await;
    yield_until("the handler seeing the marker request", 100_000, || handled.load(Ordering::SeqCst) >= 4).await;
    assert_eq!(ch.stats().late_replies, REMEMBERED as u64, "only the newest {REMEMBERED} are remembered");
    assert_eq!(handled.load(Ordering::SeqCst), 3 + 1, "the three oldest, forgotten, and the marker");
}

#[tokio::test(start_paused = true)]
async fn the_idle_timeout_closes_the_channel_with_its_reason() {
    let (ch, _peer) = pair(ChannelConfig { idle_timeout: Some(Duration::from_millis(10)), ..quiet() });
    let reason = within("the channel closing", ch.closed()).await.expect("closed with a reason");
    assert!(matches!(*reason, Error::Idle(_)));
    assert!(reason.to_string().contains("inactivity for 10ms"), "{reason}");
}

#[tokio::test(start_paused = true)]
async fn every_packet_rearms_the_idle_timer() {
    let config = ChannelConfig { idle_timeout: Some(Duration::from_millis(100)), ..quiet() };
    let (ch, mut peer) = pair(config);
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(60)).await;
        peer.write(1, 0, b"").await;
    }
    assert!(!ch.is_closed(), "traffic keeps the channel alive");
    assert!(matches!(*within("the channel closing", ch.closed()).await.unwrap(), Error::Idle(_)));
}

#[tokio::test(start_paused = true)]
async fn pings_every_interval_and_closes_when_a_ping_is_missed() {
    let config = ChannelConfig { ping_interval: Some(Duration::from_secs(1)), ..ChannelConfig::client() };
    let (ch, mut peer) = pair(config);
    let ping = peer.read().await;
    assert_eq!(ping.header, Header { msg: MSG_PING, len: 0, sync: 0 });
    // Answer the first ping (a sync-0 ping while ours is outstanding counts as the answer).
    peer.write(MSG_PING, 0, b"").await;
    let second = peer.read().await;
    assert_eq!(second.header.msg, MSG_PING);
    // Do not answer: the channel dies with a ping-missed error after 2x the interval.
    let reason = within("the channel closing", ch.closed()).await.expect("ping missed");
    assert!(matches!(*reason, Error::PingMissed(d) if d > Duration::from_secs(2)), "{reason}");
    assert!(ch.stats().notifications >= 2);
}

#[tokio::test]
async fn answers_pings_with_their_sync() {
    let (_ch, mut peer) = pair(quiet());
    peer.write(MSG_PING, 77, b"ignored body").await;
    let reply = peer.read().await;
    assert_eq!(reply.header, Header { msg: MSG_PING, len: 0, sync: 77 });
    peer.write(MSG_PING, 0, b"").await;
    assert_eq!(peer.read().await.header, Header { msg: MSG_PING, len: 0, sync: 0 });
}

#[tokio::test(start_paused = true)]
async fn pinging_from_both_sides_keeps_both_alive() {
    // Both ping every 500 ms with a 1 s idle timeout; neither closes.
    let config = ChannelConfig {
        ping_interval: Some(Duration::from_millis(500)),
        idle_timeout: Some(Duration::from_secs(1)),
        ..ChannelConfig::client()
    };
    let (a, b) = channels(config.clone(), config);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!a.is_closed() && !b.is_closed(), "{:?} {:?}", a.close_reason(), b.close_reason());
    // At most one ping in flight per side: no ping storm.
    assert!(a.stats().notifications <= 11, "{}", a.stats().notifications);
}

#[tokio::test]
async fn graceful_shutdown_finishes_pending_calls_then_exchanges_0xff01() {
    let (ch, mut peer) = pair(quiet());
    let call = spawn_call(&ch, 5, b"a");
    let req = peer.read().await;
    let shutdown = spawn_shutdown(&ch);
    within("the channel stopping", ch.stopping()).await;
    assert!(matches!(ch.call(5, b"b").await, Err(Error::Stopped)), "no new calls once stopping");
    // The pending call still completes; only then the shutdown packet is sent.
    peer.write(5, req.header.sync, b"done").await;
    assert_eq!(&within("the call", call).await.unwrap().unwrap()[..], b"done");
    assert_eq!(peer.read().await.header, Header { msg: MSG_SHUTDOWN, len: 0, sync: 0 });
    peer.write(MSG_SHUTDOWN, 0, b"").await;
    within("the shutdown", shutdown).await.unwrap();
    assert!(ch.is_closed());
    assert!(ch.close_reason().is_none());
    assert!(peer.read_to_eof().await.is_empty(), "nothing after the shutdown packet");
}

#[tokio::test]
async fn a_peer_shutdown_is_answered_after_the_in_flight_replies() {
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let release = Arc::new(tokio::sync::Mutex::new(Some(release_rx)));
    let config = ChannelConfig::server().with_handler(move |p: Packet, _ch: Channel| {
        let release = release.clone();
        async move {
            if let Some(rx) = release.lock().await.take() {
                let _ = rx.await;
            }
            Some(p.body)
        }
    });
    let (ch, mut peer) = pair(config);
    peer.write(10, 1, b"slow").await;
    peer.write(MSG_SHUTDOWN, 0, b"").await;
    within("the channel stopping", ch.stopping()).await;
    let _ = release_tx.send(());
    let reply = peer.read().await;
    assert_eq!((reply.header.msg, reply.header.sync, &reply.body[..]), (10, 1, &b"slow"[..]));
    assert_eq!(peer.read().await.header.msg, MSG_SHUTDOWN, "0xff01 answered after the reply");
    assert!(within("the channel closing", ch.closed()).await.is_none());
}

#[tokio::test]
async fn shutdown_between_two_channels() {
    let (client, server) = channels(quiet(), echo_config());
    assert_eq!(&client.call(1, b"x").await.unwrap()[..], b"x");
    within("the shutdown", client.shutdown()).await;
    assert!(within("the channel closing", server.closed()).await.is_none());
    assert!(client.close_reason().is_none());
}

#[tokio::test(start_paused = true)]
async fn shutdown_is_bounded_by_its_timeout() {
    let config = ChannelConfig { shutdown_timeout: Duration::from_millis(50), ..quiet() };
    let (ch, mut peer) = pair(config);
    let call = spawn_call(&ch, 5, b"never answered");
    peer.read().await;
    let start = tokio::time::Instant::now();
    within("the shutdown", ch.shutdown()).await;
    assert!(start.elapsed() <= Duration::from_millis(60));
    assert!(matches!(within("the call", call).await.unwrap(), Err(Error::Dropped(_))));
    // The peer never saw a shutdown packet: the timeout closed the connection first.
    assert!(peer.read_to_eof().await.is_empty());
}

#[tokio::test]
async fn shutdown_twice_returns_together() {
    let (ch, mut peer) = pair(quiet());
    let a = spawn_shutdown(&ch);
    let b = spawn_shutdown(&ch);
    assert_eq!(peer.read().await.header.msg, MSG_SHUTDOWN);
    peer.write(MSG_SHUTDOWN, 0, b"").await;
    within("the first shutdown", a).await.unwrap();
    within("the second shutdown", b).await.unwrap();
    assert!(ch.is_closed());
}

#[tokio::test]
async fn a_peer_closing_mid_header_is_a_truncated_packet() {
    let (ch, mut peer) = pair(quiet());
    peer.write_raw(&[1, 0, 0, 0, 5]).await;
    drop(peer);
    let reason = within("the channel closing", ch.closed()).await.expect("truncated");
    assert!(matches!(*reason, Error::Frame(iproto::FrameError::Truncated { have: 5, need: 12 })), "{reason}");
}

#[tokio::test]
async fn a_peer_closing_after_a_header_is_a_truncated_packet() {
    let (ch, mut peer) = pair(quiet());
    peer.write_raw(&Header { msg: 1, len: 4, sync: 1 }.to_bytes()).await;
    drop(peer);
    let reason = within("the channel closing", ch.closed()).await.expect("truncated");
    assert!(matches!(*reason, Error::Frame(iproto::FrameError::Truncated { have: 12, need: 16 })), "{reason}");
}

#[tokio::test]
async fn a_peer_closing_mid_body_fails_the_pending_calls() {
    let (ch, mut peer) = pair(quiet());
    let call = spawn_call(&ch, 1, b"");
    let req = peer.read().await;
    let mut partial = Header { msg: 1, len: 10, sync: req.header.sync }.to_bytes().to_vec();
    partial.extend_from_slice(b"abc");
    peer.write_raw(&partial).await;
    drop(peer);
    match within("the call", call).await.unwrap() {
        Err(Error::Dropped(Some(reason))) => {
            assert!(matches!(*reason, Error::Frame(iproto::FrameError::Truncated { have: 15, need: 22 })))
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_clean_eof_with_a_pending_call_is_an_error() {
    let (ch, mut peer) = pair(quiet());
    let call = spawn_call(&ch, 1, b"");
    peer.read().await;
    drop(peer);
    assert!(
        matches!(within("the call", call).await.unwrap(), Err(Error::Dropped(Some(r))) if matches!(*r, Error::PeerClosed { pending: 1 }))
    );
}

#[tokio::test]
async fn a_clean_eof_without_calls_is_no_error() {
    let (ch, peer) = pair(quiet());
    drop(peer);
    assert!(within("the channel closing", ch.closed()).await.is_none());
}

#[tokio::test]
async fn an_oversized_packet_closes_the_channel_naming_both_sizes() {
    let (ch, mut peer) = pair(ChannelConfig { size_limit: 100, ..quiet() });
    peer.write_raw(&Header { msg: 1, len: 0xffff_ffff, sync: 1 }.to_bytes()).await;
    let reason = within("the channel closing", ch.closed()).await.expect("size limit");
    assert!(matches!(*reason, Error::Frame(iproto::FrameError::TooLarge { len: 0xffff_ffff, limit: 100 })));
    let text = reason.to_string();
    assert!(text.contains("4294967295") && text.contains("100"), "{text}");
}

#[tokio::test]
async fn handler_panic_is_caught_and_connection_goes_on() {
    let config = ChannelConfig::server().with_handler(|p: Packet, _ch: Channel| async move {
        if &p.body[..] == b"boom" {
            panic!("handler bug");
        }
        Some(p.body)
    });
    let (client, server) = channels(ChannelConfig { request_timeout: Duration::from_millis(200), ..quiet() }, config);
    assert!(matches!(client.call(1, b"boom").await, Err(Error::Timeout { .. })));
    assert_eq!(&client.call(1, b"fine").await.unwrap()[..], b"fine");
    assert_eq!(server.stats().handler_panics, 1);
    assert!(!server.is_closed());
}

// With `max_concurrent_requests: 4`, four handlers run at once and a fifth waits until one
// finishes: the handlers hold until released, so they do overlap, and the peak is exactly 4.
#[tokio::test]
async fn handlers_run_concurrently_up_to_the_limit_and_no_further() {
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let started = Arc::new(tokio::sync::Notify::new());
    let (r, p, gate, s) = (running.clone(), peak.clone(), release.clone(), started.clone());
    let config = ChannelConfig { max_concurrent_requests: 4, ..ChannelConfig::server() }.with_handler(
        move |pk: Packet, _ch: Channel| {
            let (r, p, gate, s) = (r.clone(), p.clone(), gate.clone(), s.clone());
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                s.notify_one();
                gate.acquire().await.expect("the gate stays open").forget();
                r.fetch_sub(1, Ordering::SeqCst);
                Some(pk.body)
            }
        },
    );
    let (client, _server) = channels(quiet(), config);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..64u32 {
        let c = client.clone();
        set.spawn(async move { c.call(1, &i.to_le_bytes()).await.expect("call") });
    }
    while running.load(Ordering::SeqCst) < 4 {
        within("four handlers running at once", started.notified()).await;
    }
    // Everything runnable runs; still only four handlers have started.
    yield_until("the 64 calls written", 10_000, || client.stats().pending == 64).await;
    for _ in 0..1000 {
        tokio::task::yield_now().await;
    }
    assert_eq!(peak.load(Ordering::SeqCst), 4, "a fifth handler started before one finished");
    release.add_permits(64);
    within("all 64 calls answered", async { while set.join_next().await.is_some() {} }).await;
    assert_eq!(peak.load(Ordering::SeqCst), 4, "peak {}", peak.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_never_reads_fills_the_bounded_queue_then_hits_the_write_timeout() {
    // A tiny pipe the peer never drains.
    let (a, _b) = tokio::io::duplex(64);
    let config = ChannelConfig {
        write_queue: 4,
        write_timeout: Duration::from_millis(100),
        notify_timeout: Duration::from_millis(10),
        ..quiet()
    };
    let ch = Channel::new(a, config);
    let body = vec![0u8; 1024];
    let mut results = Vec::new();
    for _ in 0..20 {
        results.push(ch.notify(1, &body).await);
    }
    assert!(
        results.iter().any(|r| matches!(r, Err(Error::Timeout { .. }) | Err(Error::Stopped))),
        "the queue is bounded"
    );
    let reason = within("the channel closing", ch.closed()).await.expect("write timeout");
    assert!(matches!(*reason, Error::WriteTimeout(_)), "{reason}");
    assert!(ch.stats().packets_dropped > 0);
    // Sending after the writer is gone reports an error instead of losing the packet silently.
    assert!(matches!(ch.send(Packet::new(1, 1, "x")).await, Err(Error::Stopped)));
}

#[tokio::test]
async fn dropping_last_handle_closes_connection() {
    let (ch, mut peer) = pair(quiet());
    let clone = ch.clone();
    drop(ch);
    assert!(!clone.is_closed());
    drop(clone);
    assert!(peer.read_to_eof().await.is_empty(), "peer sees EOF");
}

#[tokio::test]
async fn notifications_use_sync_zero() {
    let (ch, mut peer) = pair(quiet());
    ch.notify(33, b"n").await.unwrap();
    assert_eq!(peer.read().await.header, Header { msg: 33, len: 1, sync: 0 });
    assert_eq!(ch.stats().notifications, 1);
}

#[tokio::test]
async fn send_writes_a_packet_as_is_during_shutdown() {
    let (ch, mut peer) = pair(quiet());
    // A pending call holds the shutdown before its 0xff01.
    let call = spawn_call(&ch, 5, b"");
    let req = peer.read().await;
    let sd = spawn_shutdown(&ch);
    within("the channel stopping", ch.stopping()).await;
    assert!(matches!(ch.notify(1, b"").await, Err(Error::Stopped)));
    ch.send(Packet::new(0xff10, 9, "reply")).await.unwrap();
    assert_eq!(peer.read().await.header, Header { msg: 0xff10, len: 5, sync: 9 });
    peer.write(5, req.header.sync, b"").await;
    within("the call", call).await.unwrap().unwrap();
    assert_eq!(peer.read().await.header.msg, MSG_SHUTDOWN);
    peer.write(MSG_SHUTDOWN, 0, b"").await;
    within("the shutdown", sd).await.unwrap();
}

#[tokio::test]
async fn hijack_returns_the_transport_and_the_buffered_packets() {
    let (ch, mut peer) = pair(quiet());
    let call = spawn_call(&ch, 42, b"");
    let req = peer.read().await;
    let hijack = tokio::spawn({
        let ch = ch.clone();
        async move { ch.hijack().await }
    });
    within("the channel stopping", ch.stopping()).await;
    for sync in 0..5 {
        peer.write(21, sync, b"").await;
    }
    peer.write(42, req.header.sync, b"reply").await;
    assert_eq!(&within("the call", call).await.unwrap().unwrap()[..], b"reply");
    // The first bytes of a packet the hijacker will read (a partial packet).
    let partial = Header { msg: 7, len: 0, sync: 9 }.to_bytes();
    peer.write_raw(&partial[..4]).await;
    let (mut io, buffered) = within("the hijack", hijack).await.unwrap().expect("hijack");
    let mut expect = Vec::new();
    for sync in 0..5u32 {
        expect.extend_from_slice(&Header { msg: 21, len: 0, sync }.to_bytes());
    }
    assert!(buffered.starts_with(&expect), "the five packets come back in order: {buffered:?}");
    // buffer ++ rest of the stream reproduces the partial packet.
    let k = buffered.len() - expect.len();
    assert!(k == 0 || k == 4, "{k}");
    peer.write_raw(&partial[4..]).await;
    let mut rest = vec![0u8; 12 - k];
    io.read_exact(&mut rest).await.unwrap();
    let mut joined = buffered[expect.len()..].to_vec();
    joined.extend_from_slice(&rest);
    assert_eq!(joined, partial);
    // The transport still works in the other direction.
    io.write_all(b"ping").await.unwrap();
    let mut got = [0u8; 4];
    peer.0.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"ping");
}

// A channel is hijacked once: a second hijack fails with Hijacked, and so do calls and
// notifications afterwards, which are reported as not sent. A closed channel cannot be
// hijacked at all (Stopped).
#[tokio::test]
async fn a_second_hijack_fails_with_hijacked_and_a_closed_channel_cannot_be_hijacked() {
    let (ch, _peer) = pair(quiet());
    within("the hijack", ch.hijack()).await.expect("the first hijack takes the transport");
    let err = within("the second hijack", ch.hijack()).await.map(drop).expect_err("hijacked already");
    assert!(matches!(err, Error::Hijacked), "{err:?}");
    let err = within("a call after the hijack", ch.call(1, b"x")).await.expect_err("hijacked");
    assert!(matches!(err, Error::Hijacked) && err.is_not_sent(), "{err:?}");
    let err = within("a notification after the hijack", ch.notify(1, b"x")).await.expect_err("hijacked");
    assert!(matches!(err, Error::Hijacked) && err.is_not_sent(), "{err:?}");

    let (closed, _peer) = pair(quiet());
    closed.close();
    let err = within("a hijack after close", closed.hijack()).await.map(drop).expect_err("closed");
    assert!(matches!(err, Error::Stopped) && err.is_not_sent(), "{err:?}");
}

/// TCP_NODELAY of this process's socket bound to `local`, found among its open descriptors.
fn nodelay_of_socket_at(local: std::net::SocketAddr) -> bool {
    use std::os::fd::{BorrowedFd, RawFd};
    for entry in std::fs::read_dir("/proc/self/fd").expect("list /proc/self/fd") {
        let Ok(fd) = entry.expect("a /proc/self/fd entry").file_name().to_string_lossy().parse::<RawFd>() else {
            continue;
        };
        // SAFETY: the descriptor is only borrowed for two queries; one that another test
        // closed meanwhile fails them (EBADF) or names a socket bound elsewhere.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd);
        if socket.local_addr().ok().and_then(|a| a.as_socket()) == Some(local) {
            return socket.nodelay().expect("TCP_NODELAY of a TCP socket");
        }
    }
    panic!("no socket of this process is bound to {local}");
}

// Over TCP a channel calls and pings like over any transport, and its socket has TCP_NODELAY
// exactly when the config asks for it.
#[tokio::test]
async fn works_over_tcp_and_sets_nodelay_as_configured() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        let mut closed = Vec::new();
        for _ in 0..2 {
            let (s, _) = listener.accept().await.unwrap();
            let ch = Channel::new(s, echo_config());
            closed.push(tokio::spawn(async move { ch.closed().await }));
        }
        let mut reasons = Vec::new();
        for c in closed {
            reasons.push(c.await.unwrap());
        }
        reasons
    });
    for nodelay in [true, false] {
        let client = Channel::connect(&addr, ChannelConfig { nodelay, ..quiet() }).await.unwrap();
        assert_eq!(&client.call(1, b"tcp").await.unwrap()[..], b"tcp");
        let Some(iproto::net::Addr::Tcp(local)) = client.local_addr().cloned() else {
            panic!("a TCP channel has a TCP local address: {:?}", client.local_addr())
        };
        assert_eq!(nodelay_of_socket_at(local), nodelay, "TCP_NODELAY with nodelay: {nodelay}");
        assert!(client.peer_addr().is_some());
        assert!(client.ping().await.unwrap() < Duration::from_secs(5));
        within("the shutdown", client.shutdown()).await;
    }
    let reasons = within("the server side closing", server).await.unwrap();
    assert!(reasons.iter().all(Option::is_none), "{reasons:?}");
}

#[tokio::test(start_paused = true)]
async fn disable_shutdown_sends_and_awaits_no_0xff01() {
    let config = ChannelConfig { disable_shutdown: true, shutdown_timeout: Duration::from_secs(5), ..quiet() };
    let (ch, mut peer) = pair(config);
    let start = tokio::time::Instant::now();
    within("the shutdown", ch.shutdown()).await;
    // Waiting for a 0xff01 it never asked for would take the whole timeout.
    assert!(start.elapsed() < Duration::from_secs(1), "{:?}", start.elapsed());
    assert!(peer.read_to_eof().await.is_empty(), "no 0xff01 on the wire");
}
