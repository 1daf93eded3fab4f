//! Channel behaviour against a raw peer (an in-memory duplex whose other end the test drives
//! byte by byte) and against another Channel. Catalogue IDs name the behaviour each test pins.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iproto::{CallOptions, Channel, ChannelConfig, Error, Header, Packet, MSG_PING, MSG_SHUTDOWN};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// The raw other end of a channel.
struct Peer(DuplexStream);

impl Peer {
    async fn read(&mut self) -> Packet {
        let mut head = [0u8; 12];
        self.0.read_exact(&mut head).await.expect("peer read header");
        let header = Header::from_bytes(&head);
        let mut body = vec![0u8; header.len as usize];
        self.0.read_exact(&mut body).await.expect("peer read body");
        Packet { header, body: body.into() }
    }

    async fn write(&mut self, msg: u32, sync: u32, body: &[u8]) {
        let mut out = Header { msg, len: body.len() as u32, sync }.to_bytes().to_vec();
        out.extend_from_slice(body);
        self.0.write_all(&out).await.expect("peer write");
    }

    async fn write_raw(&mut self, bytes: &[u8]) {
        self.0.write_all(bytes).await.expect("peer write");
    }

    /// Reads until EOF, returning the packets seen.
    async fn read_to_eof(&mut self) -> Vec<Packet> {
        let mut all = Vec::new();
        self.0.read_to_end(&mut all).await.expect("read to eof");
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
async fn call_gets_reply_with_first_sync_one_w1_w13_c3() {
    let (ch, mut peer) = pair(quiet());
    let call = spawn_call(&ch, 42, b"hi");
    let req = peer.read().await;
    assert_eq!(req.header, Header { msg: 42, len: 2, sync: 1 });
    assert_eq!(&req.body[..], b"hi");
    peer.write(42, 1, b"OK").await;
    assert_eq!(&call.await.unwrap().unwrap()[..], b"OK");
    let stats = ch.stats();
    assert_eq!((stats.calls, stats.canceled, stats.pending), (1, 0, 0));
}

#[tokio::test]
async fn replies_match_by_msg_and_sync_w11() {
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
async fn close_then_call_is_stopped_c4() {
    let (ch, _peer) = pair(quiet());
    ch.close();
    assert!(matches!(ch.call(42, b"").await, Err(Error::Stopped)));
    assert!(ch.closed().await.is_none(), "a local close records no error (C-21)");
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
    assert_eq!(&call.await.unwrap().unwrap()[..], b"x");
}

#[tokio::test(start_paused = true)]
async fn call_times_out_and_late_reply_is_dropped_c2_w12() {
    let handled = Arc::new(AtomicUsize::new(0));
    let h = handled.clone();
    let config = ChannelConfig { request_timeout: Duration::from_millis(10), ..quiet() }.with_handler(
        move |_p: Packet, _ch: Channel| {
            h.fetch_add(1, Ordering::SeqCst);
            async { None }
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
    while handled.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(handled.load(Ordering::SeqCst), 1);
    let stats = ch.stats();
    assert_eq!(stats.late_replies, 1);
    assert_eq!(stats.canceled, 1);
}

#[tokio::test(start_paused = true)]
async fn per_call_timeout_override() {
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
    let _ = call.await;
    assert_eq!(ch.stats().pending, 0, "cancelling the call frees its slot");
    // Its reply later is a late reply.
    peer.write(3, req.header.sync, b"late").await;
    let ok = spawn_call(&ch, 4, b"y");
    let req2 = peer.read().await;
    assert_ne!(req2.header.sync, req.header.sync);
    peer.write(4, req2.header.sync, b"fine").await;
    assert_eq!(&ok.await.unwrap().unwrap()[..], b"fine");
    assert_eq!(ch.stats().late_replies, 1);
}

#[tokio::test]
async fn flood_of_late_replies_is_dropped_and_bounded() {
    let handled = Arc::new(AtomicUsize::new(0));
    let h = handled.clone();
    let config = ChannelConfig { request_timeout: Duration::from_millis(1), ..quiet() }.with_handler(
        move |_p: Packet, _ch: Channel| {
            h.fetch_add(1, Ordering::SeqCst);
            async { None }
        },
    );
    let (ch, mut peer) = pair(config);
    for _ in 0..100 {
        let _ = ch.call(9, b"").await;
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
    while handled.load(Ordering::SeqCst) < 3 {
        tokio::task::yield_now().await;
    }
    assert_eq!(ch.stats().late_replies, 100);
    assert_eq!(handled.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_closes_with_reason_c6() {
    let (ch, _peer) = pair(ChannelConfig { idle_timeout: Some(Duration::from_millis(10)), ..quiet() });
    let reason = ch.closed().await.expect("closed with a reason");
    assert!(matches!(*reason, Error::Idle(_)));
    assert!(reason.to_string().contains("inactivity for 10ms"), "{reason}");
}

#[tokio::test(start_paused = true)]
async fn idle_timer_rearms_on_each_packet_c6() {
    let config = ChannelConfig { idle_timeout: Some(Duration::from_millis(100)), ..quiet() };
    let (ch, mut peer) = pair(config);
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(60)).await;
        peer.write(1, 0, b"").await;
    }
    assert!(!ch.is_closed(), "traffic keeps the channel alive");
    assert!(matches!(*ch.closed().await.unwrap(), Error::Idle(_)));
}

#[tokio::test(start_paused = true)]
async fn pings_every_interval_and_dies_when_missed_w15() {
    let config = ChannelConfig { ping_interval: Some(Duration::from_secs(1)), ..ChannelConfig::client() };
    let (ch, mut peer) = pair(config);
    let ping = peer.read().await;
    assert_eq!(ping.header, Header { msg: MSG_PING, len: 0, sync: 0 });
    // Answer the first ping (W-16: a sync-0 ping while ours is outstanding is the ack).
    peer.write(MSG_PING, 0, b"").await;
    let second = peer.read().await;
    assert_eq!(second.header.msg, MSG_PING);
    // Do not answer: the channel dies with a ping-missed error after 2x the interval.
    let reason = ch.closed().await.expect("ping missed");
    assert!(matches!(*reason, Error::PingMissed(d) if d > Duration::from_secs(2)), "{reason}");
    assert!(ch.stats().notices >= 2);
}

#[tokio::test]
async fn answers_pings_with_their_sync_w16() {
    let (_ch, mut peer) = pair(quiet());
    peer.write(MSG_PING, 77, b"ignored body").await;
    let reply = peer.read().await;
    assert_eq!(reply.header, Header { msg: MSG_PING, len: 0, sync: 77 });
    peer.write(MSG_PING, 0, b"").await;
    assert_eq!(peer.read().await.header, Header { msg: MSG_PING, len: 0, sync: 0 });
}

#[tokio::test(start_paused = true)]
async fn both_sides_ping_keeps_both_alive_w16() {
    // TestChannelPing: both ping every 500 ms with a 1 s idle timeout; neither closes.
    let config = ChannelConfig {
        ping_interval: Some(Duration::from_millis(500)),
        idle_timeout: Some(Duration::from_secs(1)),
        ..ChannelConfig::client()
    };
    let (a, b) = channels(config.clone(), config);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!a.is_closed() && !b.is_closed(), "{:?} {:?}", a.close_reason(), b.close_reason());
    // At most one ping in flight per side: no ping storm.
    assert!(a.stats().notices <= 11, "{}", a.stats().notices);
}

#[tokio::test]
async fn graceful_shutdown_handshake_w18() {
    let (ch, mut peer) = pair(quiet());
    let call = spawn_call(&ch, 5, b"a");
    let req = peer.read().await;
    let shutdown = spawn_shutdown(&ch);
    ch.stopping().await;
    assert!(matches!(ch.call(5, b"b").await, Err(Error::Stopped)), "no new calls once stopping");
    // The pending call still completes; only then the shutdown packet is sent.
    peer.write(5, req.header.sync, b"done").await;
    assert_eq!(&call.await.unwrap().unwrap()[..], b"done");
    assert_eq!(peer.read().await.header, Header { msg: MSG_SHUTDOWN, len: 0, sync: 0 });
    peer.write(MSG_SHUTDOWN, 0, b"").await;
    shutdown.await.unwrap();
    assert!(ch.is_closed());
    assert!(ch.close_reason().is_none());
    assert!(peer.read_to_eof().await.is_empty(), "nothing after the shutdown packet");
}

#[tokio::test]
async fn peer_shutdown_is_answered_after_inflight_replies_w19() {
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
    ch.stopping().await;
    let _ = release_tx.send(());
    let reply = peer.read().await;
    assert_eq!((reply.header.msg, reply.header.sync, &reply.body[..]), (10, 1, &b"slow"[..]));
    assert_eq!(peer.read().await.header.msg, MSG_SHUTDOWN, "0xff01 answered after the reply");
    assert!(ch.closed().await.is_none());
}

#[tokio::test]
async fn shutdown_between_two_channels() {
    let (client, server) = channels(quiet(), echo_config());
    assert_eq!(&client.call(1, b"x").await.unwrap()[..], b"x");
    client.shutdown().await;
    assert!(server.closed().await.is_none());
    assert!(client.close_reason().is_none());
}

#[tokio::test(start_paused = true)]
async fn shutdown_is_bounded_by_timeout_w24() {
    let config = ChannelConfig { shutdown_timeout: Duration::from_millis(50), ..quiet() };
    let (ch, mut peer) = pair(config);
    let call = spawn_call(&ch, 5, b"never answered");
    peer.read().await;
    let start = tokio::time::Instant::now();
    ch.shutdown().await;
    assert!(start.elapsed() <= Duration::from_millis(60));
    assert!(matches!(call.await.unwrap(), Err(Error::Dropped(_))));
    // The peer never saw a shutdown packet (W-24).
    assert!(peer.read_to_eof().await.is_empty());
}

#[tokio::test]
async fn shutdown_twice_returns_together() {
    let (ch, mut peer) = pair(quiet());
    let a = spawn_shutdown(&ch);
    let b = spawn_shutdown(&ch);
    assert_eq!(peer.read().await.header.msg, MSG_SHUTDOWN);
    peer.write(MSG_SHUTDOWN, 0, b"").await;
    a.await.unwrap();
    b.await.unwrap();
    assert!(ch.is_closed());
}

#[tokio::test]
async fn peer_closes_mid_header_is_truncated_w9() {
    let (ch, mut peer) = pair(quiet());
    peer.write_raw(&[1, 0, 0, 0, 5]).await;
    drop(peer);
    let reason = ch.closed().await.expect("truncated");
    assert!(matches!(*reason, Error::Frame(iproto::FrameError::Truncated { have: 5, need: 12 })), "{reason}");
}

#[tokio::test]
async fn peer_closes_after_header_is_truncated_w9() {
    let (ch, mut peer) = pair(quiet());
    peer.write_raw(&Header { msg: 1, len: 4, sync: 1 }.to_bytes()).await;
    drop(peer);
    let reason = ch.closed().await.expect("truncated");
    assert!(matches!(*reason, Error::Frame(iproto::FrameError::Truncated { have: 12, need: 16 })), "{reason}");
}

#[tokio::test]
async fn peer_closes_mid_body_fails_pending_calls_c30() {
    let (ch, mut peer) = pair(quiet());
    let call = spawn_call(&ch, 1, b"");
    let req = peer.read().await;
    let mut partial = Header { msg: 1, len: 10, sync: req.header.sync }.to_bytes().to_vec();
    partial.extend_from_slice(b"abc");
    peer.write_raw(&partial).await;
    drop(peer);
    match call.await.unwrap() {
        Err(Error::Dropped(Some(reason))) => {
            assert!(matches!(*reason, Error::Frame(iproto::FrameError::Truncated { have: 15, need: 22 })))
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn clean_eof_with_pending_call_is_an_error_c30() {
    let (ch, mut peer) = pair(quiet());
    let call = spawn_call(&ch, 1, b"");
    peer.read().await;
    drop(peer);
    assert!(
        matches!(call.await.unwrap(), Err(Error::Dropped(Some(r))) if matches!(*r, Error::PeerClosed { pending: 1 }))
    );
}

#[tokio::test]
async fn clean_eof_without_calls_is_no_error_c21() {
    let (ch, peer) = pair(quiet());
    drop(peer);
    assert!(ch.closed().await.is_none());
}

#[tokio::test]
async fn oversized_packet_closes_with_both_numbers_w8() {
    let (ch, mut peer) = pair(ChannelConfig { size_limit: 100, ..quiet() });
    peer.write_raw(&Header { msg: 1, len: 0xffff_ffff, sync: 1 }.to_bytes()).await;
    let reason = ch.closed().await.expect("size limit");
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

#[tokio::test]
async fn concurrency_limit_makes_the_reader_wait() {
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (r, p) = (running.clone(), peak.clone());
    let config = ChannelConfig { max_concurrent_requests: 4, ..ChannelConfig::server() }.with_handler(
        move |pk: Packet, _ch: Channel| {
            let (r, p) = (r.clone(), p.clone());
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                tokio::task::yield_now().await;
                r.fetch_sub(1, Ordering::SeqCst);
                Some(pk.body)
            }
        },
    );
    let (client, _server) = channels(quiet(), config);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..64u32 {
        let c = client.clone();
        set.spawn(async move { c.call(1, &i.to_le_bytes()).await.unwrap() });
    }
    while set.join_next().await.is_some() {}
    assert!(peak.load(Ordering::SeqCst) <= 4, "peak {}", peak.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn peer_that_never_reads_hits_bounded_queue_and_write_timeout_c10_c11() {
    // A tiny pipe the peer never drains.
    let (a, _b) = tokio::io::duplex(64);
    let config = ChannelConfig {
        write_queue: 4,
        write_timeout: Duration::from_millis(100),
        notice_timeout: Duration::from_millis(10),
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
    let reason = ch.closed().await.expect("write timeout");
    assert!(matches!(*reason, Error::WriteTimeout(_)), "{reason}");
    assert!(ch.stats().packets_dropped > 0);
    // Sending after the writer is gone reports an error (fixes C-24).
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
async fn notifications_use_sync_zero_w4() {
    let (ch, mut peer) = pair(quiet());
    ch.notify(33, b"n").await.unwrap();
    assert_eq!(peer.read().await.header, Header { msg: 33, len: 1, sync: 0 });
    assert_eq!(ch.stats().notices, 1);
}

#[tokio::test]
async fn send_writes_packet_as_is_during_shutdown_c24() {
    let (ch, mut peer) = pair(quiet());
    // A pending call holds the shutdown before its 0xff01.
    let call = spawn_call(&ch, 5, b"");
    let req = peer.read().await;
    let sd = spawn_shutdown(&ch);
    ch.stopping().await;
    assert!(matches!(ch.notify(1, b"").await, Err(Error::Stopped)));
    ch.send(Packet::new(0xff10, 9, "reply")).await.unwrap();
    assert_eq!(peer.read().await.header, Header { msg: 0xff10, len: 5, sync: 9 });
    peer.write(5, req.header.sync, b"").await;
    call.await.unwrap().unwrap();
    assert_eq!(peer.read().await.header.msg, MSG_SHUTDOWN);
    peer.write(MSG_SHUTDOWN, 0, b"").await;
    sd.await.unwrap();
}

#[tokio::test]
async fn hijack_returns_transport_and_buffered_packets_c34_c35() {
    let (ch, mut peer) = pair(quiet());
    let call = spawn_call(&ch, 42, b"");
    let req = peer.read().await;
    let hijack = tokio::spawn({
        let ch = ch.clone();
        async move { ch.hijack().await }
    });
    ch.stopping().await;
    for sync in 0..5 {
        peer.write(21, sync, b"").await;
    }
    peer.write(42, req.header.sync, b"reply").await;
    assert_eq!(&call.await.unwrap().unwrap()[..], b"reply");
    // The first bytes of a packet the hijacker will read (C-35: a partial packet).
    let partial = Header { msg: 7, len: 0, sync: 9 }.to_bytes();
    peer.write_raw(&partial[..4]).await;
    let (mut io, buffered) = hijack.await.unwrap().expect("hijack");
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

#[tokio::test]
async fn hijack_twice_and_after_stop_fail_c34() {
    let (ch, _peer) = pair(quiet());
    ch.close();
    assert!(matches!(ch.hijack().await, Err(Error::Stopped)));
}

#[tokio::test]
async fn works_over_tcp_with_nodelay() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let ch = Channel::new(s, echo_config());
        ch.closed().await
    });
    let client = Channel::connect(&addr, quiet()).await.unwrap();
    assert_eq!(&client.call(1, b"tcp").await.unwrap()[..], b"tcp");
    assert!(client.peer_addr().is_some());
    assert!(client.ping().await.unwrap() < Duration::from_secs(5));
    client.shutdown().await;
    assert!(server.await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn disable_shutdown_sends_and_awaits_no_shutdown_packet_w22() {
    let config = ChannelConfig { disable_shutdown: true, shutdown_timeout: Duration::from_secs(5), ..quiet() };
    let (ch, mut peer) = pair(config);
    let start = tokio::time::Instant::now();
    ch.shutdown().await;
    // go-iproto would wait the whole timeout for a 0xff01 it never asked for.
    assert!(start.elapsed() < Duration::from_secs(1), "{:?}", start.elapsed());
    assert!(peer.read_to_eof().await.is_empty(), "no 0xff01 on the wire");
}
