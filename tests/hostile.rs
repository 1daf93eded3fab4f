//! Hostile peers against the `iproto serve --echo` CLI running as its own process: a header
//! trickled a byte at a time, a 4 GiB length field, endless pings, floods of packets that are
//! no reply anybody waits for, more connections than allowed, and a client that never reads.
//! For each probe the server's resident memory (`/proc/PID/status`, peak included) stays under
//! its warm-up figure plus [`RSS_SLACK_KIB`], and a well-behaved client's calls keep
//! succeeding while the probe runs. The 4 GiB probes also bound the peak *address space*
//! (`VmPeak`), which counts memory reserved but never touched: a buffer allocated for the claimed
//! length shows there even though it never becomes resident.

#[path = "support/calls.rs"]
mod calls;
#[path = "support/server_process.rs"]
mod server_process;

use std::time::Duration;

use calls::{call_once, run_calls, unique_body, Tally};
use iproto::{Channel, ChannelConfig, Header, HEADER_LEN, MSG_PING};
use server_process::ServerProcess;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The stated bound: a probe may grow the server's resident memory by at most this much over
/// its figure after warm-up (a debug build; the claimed lengths and unread replies of the
/// probes are far larger).
const RSS_SLACK_KIB: u64 = 32 * 1024;
/// The bound on the peak address space over its warm-up figure during the 4 GiB probes. Malloc
/// arenas of new threads (64 MiB each) fit in it; one buffer reserved for a 4 GiB claim does not.
const ADDRESS_SLACK_KIB: u64 = 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on anything the server must do by itself (close, answer); generous for loaded CI.
const LIMIT: Duration = Duration::from_secs(30);

fn header(msg: u32, len: u32, sync: u32) -> [u8; HEADER_LEN] {
    Header { msg, len, sync }.to_bytes()
}

/// A well-behaved client calling in a loop until stopped; every call must succeed.
struct Bystander {
    stop: watch::Sender<bool>,
    task: JoinHandle<Tally>,
}

impl Bystander {
    async fn start(addr: &str) -> Bystander {
        let ch = Channel::connect(addr, ChannelConfig::client()).await.expect("bystander connects");
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut tally = Tally::default();
            while !*stopped.borrow_and_update() {
                call_once(&ch, &unique_body("bystander", 32), TIMEOUT, &mut tally).await;
            }
            tally
        });
        Bystander { stop, task }
    }

    async fn finish(self, probe: &str) {
        self.stop.send_replace(true);
        let tally = self.task.await.expect("bystander task");
        tally.assert_sound(probe);
        assert!(tally.ok > 0 && tally.failed() == 0, "{probe}: a well-behaved client failed: {tally:?}");
    }
}

/// Starts the server, warms it up, and returns it with its resident memory after warm-up.
async fn warm_server(extra: &[&str]) -> (ServerProcess, u64) {
    let (server, rss, _) = warm_server_with_address_space(extra).await;
    (server, rss)
}

/// [`warm_server`], also returning the mapped address space after warm-up.
async fn warm_server_with_address_space(extra: &[&str]) -> (ServerProcess, u64, u64) {
    let server = ServerProcess::start(extra);
    let ch = Channel::connect(&server.addr, ChannelConfig::client()).await.expect("warm-up connect");
    let tally = run_calls(&ch, "warm-up", 2000, 16, TIMEOUT).await;
    assert_eq!(tally.ok, 2000, "warm-up: {tally:?}");
    drop(ch);
    let (rss, space) = (server.rss_kib(), server.address_space_kib());
    (server, rss, space)
}

fn assert_address_space(server: &ServerProcess, probe: &str, warm_kib: u64) {
    let peak = server.peak_address_space_kib();
    println!("{probe}: server address space after warm-up {warm_kib} KiB, peak {peak} KiB");
    assert!(
        peak <= warm_kib + ADDRESS_SLACK_KIB,
        "{probe}: server peak address space {peak} KiB exceeds warm-up {warm_kib} KiB + {ADDRESS_SLACK_KIB} KiB: \
         a claimed length was reserved"
    );
}

fn assert_memory(server: &ServerProcess, probe: &str, warm_kib: u64) {
    let (now, peak) = (server.rss_kib(), server.peak_rss_kib());
    println!("{probe}: server RSS after warm-up {warm_kib} KiB, now {now} KiB, peak {peak} KiB");
    assert!(
        peak <= warm_kib + RSS_SLACK_KIB,
        "{probe}: server peak RSS {peak} KiB exceeds warm-up {warm_kib} KiB + {RSS_SLACK_KIB} KiB"
    );
}

/// Reads and discards until the server closes the connection; false if it is still open after
/// `limit`.
async fn closed_by_server(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    let drain = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, drain).await.is_ok()
}

/// Sends a ping with `sync` and reads until its reply; false if the connection closed first.
async fn pinged(stream: &mut TcpStream, sync: u32) -> bool {
    if stream.write_all(&header(MSG_PING, 0, sync)).await.is_err() {
        return false;
    }
    let mut head = [0u8; HEADER_LEN];
    let read = tokio::time::timeout(LIMIT, stream.read_exact(&mut head)).await;
    matches!(read, Ok(Ok(_))) && Header::from_bytes(&head) == Header { msg: MSG_PING, len: 0, sync }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_header_is_closed_by_the_idle_timeout() {
    let (server, warm) = warm_server(&["--idle-timeout", "2s"]).await;
    let bystander = Bystander::start(&server.addr).await;
    let stream = TcpStream::connect(&server.addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (mut r, mut w) = stream.into_split();
    // A header claiming 1 000 bytes, then the body, one byte every 50 ms: it never completes a
    // packet, so the idle timeout closes it although bytes keep coming.
    let mut packet = header(42, 1000, 1).to_vec();
    packet.resize(HEADER_LEN + 1000, b'x');
    let trickle = tokio::spawn(async move {
        let mut sent = 0;
        for b in &packet {
            if w.write_all(std::slice::from_ref(b)).await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(50)).await; // the probe itself
        }
        sent
    });
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(LIMIT, r.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "the trickling connection was not closed: {closed:?}");
    trickle.abort();
    assert!(server.wait_log("inactivity", LIMIT).await, "no logged reason: {:?}", server.log());
    bystander.finish("trickle").await;
    assert_memory(&server, "trickle", warm);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_gib_length_is_rejected_without_allocating() {
    let (server, warm, warm_space) = warm_server_with_address_space(&[]).await;
    let bystander = Bystander::start(&server.addr).await;
    let mut conns = Vec::new();
    for i in 0..20 {
        let mut s = TcpStream::connect(&server.addr).await.expect("connect");
        let mut claim = header(42, u32::MAX, i + 1).to_vec();
        claim.extend_from_slice(&[0xab; 1024]);
        s.write_all(&claim).await.expect("write the claim");
        conns.push(s);
    }
    for s in &mut conns {
        assert!(closed_by_server(s, LIMIT).await, "a 4 GiB claim was not rejected");
    }
    assert!(server.wait_log("exceeds the size limit", LIMIT).await, "no logged reason: {:?}", server.log());
    bystander.finish("4 GiB length").await;
    assert_memory(&server, "4 GiB length", warm);
    assert_address_space(&server, "4 GiB length", warm_space);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_gib_length_within_the_limit_is_not_allocated() {
    // With the limit at its maximum the claim is legal: the server must wait for the body
    // growing its buffer only as bytes arrive.
    let (server, warm, warm_space) = warm_server_with_address_space(&["--size-limit", "4294967295"]).await;
    let bystander = Bystander::start(&server.addr).await;
    let mut conns = Vec::new();
    for i in 0..50 {
        let mut s = TcpStream::connect(&server.addr).await.expect("connect");
        // A ping first: once it is answered the server has read up to the claim.
        assert!(pinged(&mut s, i + 1).await, "ping before the claim");
        let mut claim = header(42, u32::MAX, i + 1).to_vec();
        claim.extend_from_slice(&[0xcd; 4096]);
        s.write_all(&claim).await.expect("write the claim");
        conns.push(s);
    }
    bystander.finish("4 GiB length under the limit").await;
    assert_memory(&server, "4 GiB length under the limit", warm);
    assert_address_space(&server, "4 GiB length under the limit", warm_space);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_pings_are_answered_in_bounded_memory() {
    let (server, warm) = warm_server(&[]).await;
    let bystander = Bystander::start(&server.addr).await;
    let mut s = TcpStream::connect(&server.addr).await.expect("connect");
    let (batches, per_batch) = (200u32, 500u32);
    let mut out = Vec::with_capacity((per_batch as usize) * HEADER_LEN);
    let mut back = vec![0u8; (per_batch as usize) * HEADER_LEN];
    for b in 0..batches {
        out.clear();
        for i in 0..per_batch {
            out.extend_from_slice(&header(MSG_PING, 0, b * per_batch + i + 1));
        }
        s.write_all(&out).await.expect("write pings");
        tokio::time::timeout(LIMIT, s.read_exact(&mut back)).await.expect("ping replies in time").expect("read");
        for (i, reply) in back.chunks_exact(HEADER_LEN).enumerate() {
            let h = Header::from_bytes(reply.try_into().expect("12 bytes"));
            assert_eq!(h, Header { msg: MSG_PING, len: 0, sync: b * per_batch + i as u32 + 1 });
        }
    }
    println!("pings: {} answered", batches * per_batch);
    bystander.finish("endless pings").await;
    assert_memory(&server, "endless pings", warm);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_stray_packets_leave_the_server_serving() {
    let (server, warm) = warm_server(&[]).await;
    let bystander = Bystander::start(&server.addr).await;
    let s = TcpStream::connect(&server.addr).await.expect("connect");
    let (mut r, mut w) = s.into_split();
    // Packets no call waits for: sync-0 notifications, reserved codes other than ping and
    // shutdown, arbitrary syncs, some with bodies. Replies are drained concurrently.
    let drained = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        let marker = header(MSG_PING, 0, 0xdead_beef);
        let mut tail = Vec::new();
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return (total, false),
                Ok(n) => {
                    total += n as u64;
                    tail.extend_from_slice(&buf[..n]);
                    if tail.windows(HEADER_LEN).any(|w| w == marker) {
                        return (total, true);
                    }
                    let keep = tail.len().saturating_sub(HEADER_LEN);
                    tail.drain(..keep);
                }
            }
        }
    });
    let mut rng = 0x1234_5678u32;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        rng
    };
    let mut out = Vec::new();
    let mut sent = 0u64;
    for _ in 0..100 {
        out.clear();
        for _ in 0..500 {
            let x = next();
            let msg = match x % 4 {
                0 => 0xff02 + (x >> 8) % 0xfd,
                _ => x >> 4,
            };
            let sync = if x.is_multiple_of(3) { 0 } else { next() };
            let len = (x >> 20) % 64;
            out.extend_from_slice(&header(msg, len, sync));
            out.resize(out.len() + len as usize, (x >> 3) as u8);
            sent += 1;
        }
        w.write_all(&out).await.expect("write the flood");
    }
    // A ping with a marker sync last: once it is answered the whole flood was processed.
    w.write_all(&header(MSG_PING, 0, 0xdead_beef)).await.expect("write the marker");
    let (bytes, answered) = tokio::time::timeout(LIMIT * 2, drained).await.expect("flood processed in time").unwrap();
    assert!(answered, "the connection closed before the marker ping was answered");
    println!("flood: {sent} packets sent, {bytes} bytes of replies drained");
    bystander.finish("stray flood").await;
    assert_memory(&server, "stray flood", warm);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_maximum_are_closed() {
    let (server, warm) = warm_server(&["--max-conns", "4"]).await;
    let bystander = Bystander::start(&server.addr).await; // connection 1 of 4
    let mut admitted = Vec::new();
    for i in 0..3 {
        // The warm-up connection may not have been released yet: retry until admitted.
        let mut attempts = 0;
        let s = loop {
            let mut s = TcpStream::connect(&server.addr).await.expect("connect");
            if pinged(&mut s, i + 1).await {
                break s;
            }
            attempts += 1;
            assert!(attempts < 1000, "connection {} of 4 is never served", i + 2);
        };
        admitted.push(s);
    }
    let mut refused = Vec::new();
    for _ in 0..40 {
        let addr = server.addr.clone();
        refused.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(&addr).await.expect("the kernel accepts");
            let _ = s.write_all(&header(MSG_PING, 0, 7)).await;
            let closed = closed_by_server(&mut s, LIMIT).await;
            closed
        }));
    }
    for t in refused {
        assert!(t.await.expect("probe task"), "a connection beyond the maximum was served");
    }
    assert!(server.wait_log("connection limit reached", LIMIT).await, "no logged reason: {:?}", server.log());
    for (i, s) in admitted.iter_mut().enumerate() {
        assert!(pinged(s, 100 + i as u32).await, "an admitted connection stopped being served");
    }
    // Once admitted connections go, new ones are served again.
    drop(admitted);
    let mut served = false;
    for attempt in 0..1000 {
        let mut s = TcpStream::connect(&server.addr).await.expect("connect");
        if pinged(&mut s, attempt + 1).await {
            served = true;
            break;
        }
    }
    assert!(served, "no new connection was served after the admitted ones closed");
    bystander.finish("connection limit").await;
    assert_memory(&server, "connection limit", warm);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_never_reads_is_dropped_with_a_reason() {
    let (server, warm) = warm_server(&[]).await;
    let bystander = Bystander::start(&server.addr).await;
    let s = TcpStream::connect(&server.addr).await.expect("connect");
    let (r, mut w) = s.into_split();
    // 64 KiB requests, never reading a reply. The server's queue fills, its write times out
    // (5 s by default) and it drops the connection; our writes then fail.
    let writer = tokio::spawn(async move {
        let mut request = header(42, 64 * 1024, 1).to_vec();
        request.resize(HEADER_LEN + 64 * 1024, 0x5a);
        let mut sent = 0u64;
        while w.write_all(&request).await.is_ok() {
            sent += 1;
        }
        sent
    });
    assert!(server.wait_log("write timed out", LIMIT * 2).await, "no logged reason: {:?}", server.log());
    let sent = tokio::time::timeout(LIMIT, writer).await.expect("our writes fail once dropped").unwrap();
    drop(r);
    println!("never-reading client: {sent} requests of 64 KiB written before the drop");
    bystander.finish("never-reading client").await;
    assert_memory(&server, "never-reading client", warm);
}
