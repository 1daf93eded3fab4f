//! Server and ServeMux behaviour over real TCP and Unix connections.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iproto::mux::DuplicateRoute;
use iproto::{CallOptions, Channel, ChannelConfig, Error, Header, Packet, ServeMux, Server, ServerConfig, MSG_PING};
use tokio::sync::{Notify, Semaphore};

/// The fd-leak test counts the whole process's descriptors, so tests in this file run one at
/// a time.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

#[path = "../../tests/support/fixtures.rs"]
mod fixtures;
use fixtures::{echo, refused_addr, within, Running, BOUND};

// A graceful shutdown lets every in-flight request finish and reply.
#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let _serial = serial().await;
    const N: usize = 8;
    let arrived = Arc::new(Semaphore::new(0));
    let release = Arc::new(Semaphore::new(0));
    let (a, r) = (arrived.clone(), release.clone());
    let handler = move |p: Packet, _ch: Channel| {
        let (a, r) = (a.clone(), r.clone());
        async move {
            a.add_permits(1);
            let _ = r.acquire().await.map(|p| p.forget());
            Some(p.body)
        }
    };
    let shutting = Arc::new(Notify::new());
    let sh = shutting.clone();
    let config = ServerConfig::default().on_shutdown(move |_ch| {
        sh.notify_one();
        async {}
    });
    let server = Running::start(config, handler).await;
    let client = Channel::connect(&server.addr, ChannelConfig::client()).await.expect("connect");
    let calls: Vec<_> = (0..N)
        .map(|i| {
            let c = client.clone();
            tokio::spawn(async move { c.call(1, format!("req{i}").as_bytes()).await })
        })
        .collect();
    // Every request is inside the handler before the shutdown starts.
    drop(within("requests arrive", arrived.acquire_many(N as u32)).await);
    let stats = server.stats.clone();
    let stopping = tokio::spawn(server.stop());
    // The server channel has stopped taking calls while the handlers still run.
    within("server channel starts its shutdown", shutting.notified()).await;
    release.add_permits(N);
    for (i, call) in calls.into_iter().enumerate() {
        let reply = within("call", call).await.expect("join");
        assert_eq!(reply.expect("in-flight call replied").as_ref(), format!("req{i}").as_bytes());
    }
    // The client got 0xff01 after the replies and shut down too.
    within("client sees the shutdown", client.stopping()).await;
    within("serve returns", stopping).await.expect("join");
    assert_eq!(stats.get().open, 0);
    assert_eq!(within("client closes", client.closed()).await.map(|e| e.to_string()), None);
}

// Connection limit: extra connections are closed at once and counted.
#[tokio::test]
async fn connection_limit_closes_extra_connections() {
    let _serial = serial().await;
    let server = Running::start(ServerConfig { max_connections: 2, ..Default::default() }, echo).await;
    let mut kept = Vec::new();
    for _ in 0..2 {
        let c = Channel::connect(&server.addr, ChannelConfig::client()).await.expect("connect");
        assert_eq!(&c.call(1, b"x").await.expect("call")[..], b"x");
        kept.push(c);
    }
    let extra = Channel::connect(&server.addr, ChannelConfig::client()).await.expect("tcp connect succeeds");
    within("extra connection closed by the server", extra.closed()).await;
    assert!(extra.call(1, b"x").await.is_err());
    let stats = server.stats.get();
    assert_eq!((stats.accepted, stats.rejected, stats.open), (2, 1, 2));
    // A freed slot is usable again.
    let first = kept.remove(0);
    first.close();
    within("the closed client's tasks ending", first.closed()).await;
    within("slot freed", server.stats.wait_open_at_most(1)).await;
    let again = Channel::connect(&server.addr, ChannelConfig::client()).await.expect("connect");
    assert_eq!(&again.call(1, b"y").await.expect("call after a slot freed")[..], b"y");
    server.stop().await;
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

// 1 000 connections opened and closed leak no descriptors and no tasks; the open count
// returns to 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_connections_leak_nothing() {
    let _serial = serial().await;
    let server = Running::start(ServerConfig::default(), echo).await;
    let metrics = tokio::runtime::Handle::current().metrics();
    // Warm up once so that lazily created runtime resources are not counted as leaks.
    let c = Channel::connect(&server.addr, ChannelConfig::client()).await.expect("connect");
    c.call(1, b"warm").await.expect("call");
    c.close();
    within("the warm-up client's tasks ending", c.closed()).await;
    drop(c);
    within("warm-up connection ends", server.stats.wait_open_at_most(0)).await;
    let (fds_before, tasks_before) = settle(&metrics).await;
    for i in 0..1000u32 {
        let c = Channel::connect(&server.addr, ChannelConfig::client()).await.expect("connect");
        let reply = c.call(1, &i.to_le_bytes()).await.unwrap_or_else(|e| panic!("call {i}: {e:?}"));
        assert_eq!(reply[..], i.to_le_bytes());
        if i.is_multiple_of(2) {
            c.close();
        } else {
            within("a client's graceful shutdown", c.shutdown()).await;
        }
        within("client channel closes", c.closed()).await;
    }
    within("server connections end", server.stats.wait_open_at_most(0)).await;
    let (fds_after, tasks_after) = back_to(&metrics, (fds_before, tasks_before)).await;
    assert_eq!(server.stats.get().accepted, 1001);
    assert!(fds_after <= fds_before, "fd leak: {fds_before} before, {fds_after} after");
    assert!(tasks_after <= tasks_before, "task leak: {tasks_before} before, {tasks_after} after");
    server.stop().await;
}

/// Descriptors and tasks once they stop changing. The last handle of a closed channel drops
/// its socket just after `closed()` resolves, and a finished task is reaped after it last
/// runs: neither has an event to await, so this polls, bounded (2 s).
async fn settle(metrics: &tokio::runtime::RuntimeMetrics) -> (usize, usize) {
    poll_until(metrics, |prev, now| prev == now).await
}

/// Descriptors and tasks once they are back to `bound` (or after 2 s); see [`settle`].
async fn back_to(metrics: &tokio::runtime::RuntimeMetrics, bound: (usize, usize)) -> (usize, usize) {
    poll_until(metrics, |_, now| now.0 <= bound.0 && now.1 <= bound.1).await
}

async fn poll_until(
    metrics: &tokio::runtime::RuntimeMetrics,
    done: impl Fn((usize, usize), (usize, usize)) -> bool,
) -> (usize, usize) {
    let mut prev = (open_fds(), metrics.num_alive_tasks());
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = (open_fds(), metrics.num_alive_tasks());
        if done(prev, now) {
            return now;
        }
        prev = now;
    }
    prev
}

// A failing accept hook closes the connection (rather than leaking it); hooks run per
// connection; on_close sees the closed channel.
#[tokio::test]
async fn accept_hook_and_close_hooks() {
    let _serial = serial().await;
    let accepted = Arc::new(AtomicUsize::new(0));
    let shut = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let closed_event = Arc::new(Notify::new());
    let was_closed = Arc::new(AtomicUsize::new(0));
    let (acc, sh, cl, ev, wc) =
        (accepted.clone(), shut.clone(), closed.clone(), closed_event.clone(), was_closed.clone());
    let config = ServerConfig::default()
        .on_accept(move |stream, config: ChannelConfig| {
            let n = acc.fetch_add(1, SeqCst);
            async move {
                if n == 0 {
                    Err(Error::InvalidAddress("refused by the accept hook".into()))
                } else {
                    Ok(Channel::from_stream(stream, config))
                }
            }
        })
        .on_shutdown(move |_ch| {
            sh.fetch_add(1, SeqCst);
            async {}
        })
        .on_close(move |ch: Channel| {
            let (cl, ev, wc) = (cl.clone(), ev.clone(), wc.clone());
            async move {
                if ch.is_closed() {
                    wc.fetch_add(1, SeqCst);
                }
                cl.fetch_add(1, SeqCst);
                ev.notify_one();
            }
        });
    let server = Running::start(config, echo).await;
    let refused = Channel::connect(&server.addr, ChannelConfig::client()).await.expect("tcp connect");
    within("refused connection closed", refused.closed()).await;
    assert_eq!(server.stats.get().hook_errors, 1);

    let ok = Channel::connect(&server.addr, ChannelConfig::client()).await.expect("connect");
    assert_eq!(&ok.call(1, b"hook").await.expect("call")[..], b"hook");
    ok.close();
    within("on_close runs", closed_event.notified()).await;
    assert_eq!(closed.load(SeqCst), 1);
    assert_eq!(was_closed.load(SeqCst), 1, "on_close sees the channel closed");
    assert_eq!(shut.load(SeqCst), 0, "an abrupt close runs no on_shutdown, only on_close");
    server.stop().await;
}

// Registering a code twice is an error at registration, not a panic.
#[test]
fn mux_duplicate_registration_is_an_error() {
    let mut mux = ServeMux::new();
    mux.handle(0x10, echo).expect("first registration");
    let err = mux.handle(0x10, echo).err();
    assert_eq!(err, Some(DuplicateRoute { code: 0x10 }));
    assert!(err.map(|e| e.to_string()).unwrap_or_default().contains("0x10"));
    mux.handle(0x11, echo).expect("another code");
    let mut codes: Vec<u32> = mux.codes().collect();
    codes.sort_unstable();
    assert_eq!(codes, [0x10, 0x11]);
}

/// A handler type (as opposed to a closure): replies with a fixed body.
struct Fixed(&'static [u8]);

impl iproto::Handler for Fixed {
    type Reply = Option<Bytes>;

    async fn handle(&self, _packet: Packet, _channel: Channel) -> Option<Bytes> {
        Some(Bytes::from_static(self.0))
    }
}

fn routed_mux() -> ServeMux {
    let mut mux = ServeMux::new();
    mux.handle(1, |_p: Packet, _ch: Channel| async { Some(Bytes::from_static(b"one")) }).expect("route 1");
    mux.handle(2, Fixed(b"two")).expect("route 2");
    mux
}

// The mux routes by code; an unknown code gets no reply by default, so the caller times out.
#[tokio::test]
async fn mux_routes_by_code_and_ignores_unknown_codes() {
    let _serial = serial().await;
    let server = Running::start(ServerConfig::default(), routed_mux()).await;
    let c = Channel::connect(&server.addr, ChannelConfig::client()).await.expect("connect");
    assert_eq!(&c.call(1, b"").await.expect("code 1")[..], b"one");
    assert_eq!(&c.call(2, b"").await.expect("code 2")[..], b"two");
    let unknown = c.call_with(3, b"", CallOptions::timeout(Duration::from_millis(100))).await;
    assert!(matches!(unknown, Err(Error::Timeout { .. })), "{unknown:?}");
    // The connection is still fine afterwards.
    assert_eq!(&c.call(1, b"").await.expect("code 1 again")[..], b"one");
    server.stop().await;
}

// Configurable fallback: unknown codes get a user-defined reply.
#[tokio::test]
async fn mux_fallback_replies_to_unknown_codes() {
    let _serial = serial().await;
    let mut mux = routed_mux();
    mux.reply_to_unknown(Bytes::from_static(b"unknown code"));
    let server = Running::start(ServerConfig::default(), mux).await;
    let c = Channel::connect(&server.addr, ChannelConfig::client()).await.expect("connect");
    assert_eq!(&c.call(0x77, b"").await.expect("fallback reply")[..], b"unknown code");
    assert_eq!(&c.call(2, b"").await.expect("code 2")[..], b"two");
    server.stop().await;
}

// A mux as a route or a fallback of another mux, and a route that panics: the mux hands each
// request straight to its route's handler, so these paths have their own test.
#[tokio::test]
async fn nested_muxes_fallback_handlers_and_panicking_routes() {
    let _serial = serial().await;
    let mut inner = routed_mux();
    inner.handle(9, |_p: Packet, _ch: Channel| async { panic!("route 9 panics") as Option<Bytes> }).expect("route 9");
    let mut outer = ServeMux::new();
    outer.handle(0x20, Fixed(b"outer")).expect("route 0x20");
    outer.handle(0x21, routed_mux().reply_to_unknown(Bytes::from_static(b"inner fallback")).clone()).expect("nested");
    outer.fallback(inner);
    let server = Running::start(ServerConfig::default(), outer).await;
    let c = Channel::connect(&server.addr, ChannelConfig::client()).await.expect("connect");
    assert_eq!(&c.call(0x20, b"").await.expect("outer route")[..], b"outer");
    assert_eq!(&c.call(0x21, b"").await.expect("nested mux, unknown code")[..], b"inner fallback");
    assert_eq!(&c.call(2, b"").await.expect("fallback mux, route 2")[..], b"two");
    let panicked = c.call_with(9, b"", CallOptions::timeout(Duration::from_millis(100))).await;
    assert!(matches!(panicked, Err(Error::Timeout { .. })), "a panicking route sends nothing: {panicked:?}");
    assert_eq!(&c.call(1, b"").await.expect("the connection goes on")[..], b"one");
    server.stop().await;
}

/// A socket path of its own for each test of this process.
fn socket_path(name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("iproto-server-test-{}-{name}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

// Unix sockets serve the same way (`unix:/path` addresses).
#[tokio::test]
async fn serves_on_unix_sockets() {
    let _serial = serial().await;
    let path = socket_path("bind");
    let addr = format!("unix:{}", path.display());
    let server = Server::bind(&addr).await.expect("bind unix");
    assert_eq!(server.local_addr().to_string(), addr);
    let server = Running::serve(server, echo);
    let c = Channel::connect(&addr, ChannelConfig::client()).await.expect("connect unix");
    assert_eq!(&c.call(5, b"unix").await.expect("call")[..], b"unix");
    server.stop().await;
    let _ = std::fs::remove_file(&path);
}

// A Unix listener bound by the caller serves too, and the server reports its path.
#[tokio::test]
async fn serves_on_a_unix_listener_it_is_given() {
    let _serial = serial().await;
    let path = socket_path("from-unix");
    let listener = tokio::net::UnixListener::bind(&path).expect("bind a unix listener");
    let server = Server::from_unix(listener, ServerConfig::default());
    let addr = format!("unix:{}", path.display());
    assert_eq!(server.local_addr().to_string(), addr);
    let server = Running::serve(server, echo);
    let c = Channel::connect(&addr, ChannelConfig::client()).await.expect("connect unix");
    assert_eq!(&c.call(5, b"from_unix").await.expect("call")[..], b"from_unix");
    assert_eq!(server.stats.get().accepted, 1);
    server.stop().await;
    let _ = std::fs::remove_file(&path);
}

// `listen_and_serve` binds and serves until dropped; it fails with a typed error on an
// invalid address and on a port already in use, naming the address.
#[tokio::test]
async fn listen_and_serve_binds_serves_and_reports_bind_errors() {
    let _serial = serial().await;
    let err = iproto::listen_and_serve("no-port", echo).await.expect_err("invalid address");
    assert!(matches!(&err, Error::InvalidAddress(a) if a == "no-port"), "{err:?}");

    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let taken_addr = taken.local_addr().expect("addr").to_string();
    let err = iproto::listen_and_serve(&taken_addr, echo).await.expect_err("the port is taken");
    match &err {
        Error::Listen { addr, source } => {
            assert_eq!(addr, &taken_addr);
            assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse, "{source}");
        }
        other => panic!("expected a listen error, got {other:?}"),
    }
    drop(taken);

    let addr = refused_addr();
    let serving = tokio::spawn({
        let addr = addr.clone();
        async move { iproto::listen_and_serve(&addr, echo).await }
    });
    // The pool retries its connect until the server has bound the port.
    let config = iproto::pool::PoolConfig { connect_timeout: BOUND, ..Default::default() };
    let pool = within("a connection to listen_and_serve", iproto::pool::Pool::dial(&addr, config))
        .await
        .expect("listen_and_serve accepts connections");
    assert_eq!(&pool.call(1, b"served").await.expect("call")[..], b"served");
    assert!(!serving.is_finished(), "listen_and_serve serves until dropped");
    pool.shutdown().await;
    serving.abort();
}

/// The 12-byte headers a raw TCP client reads from a server with `config` during `wait` after
/// its connection was served (a ping round trip), until the server closes or the wait ends.
async fn headers_sent_unasked(config: ServerConfig, wait: Duration) -> Vec<Header> {
    use tokio::io::AsyncReadExt;
    let server = Running::start(config, echo).await;
    let mut raw = tokio::net::TcpStream::connect(&server.addr).await.expect("connect");
    let ping = Header { msg: MSG_PING, len: 0, sync: 7 }.to_bytes();
    tokio::io::AsyncWriteExt::write_all(&mut raw, &ping).await.expect("write ping");
    let mut pong = [0u8; 12];
    within("our ping answered", raw.read_exact(&mut pong)).await.expect("read pong");
    assert_eq!(pong, ping);
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(wait, async {
        let mut head = [0u8; 12];
        while raw.read_exact(&mut head).await.is_ok() {
            seen.push(Header::from_bytes(&head));
        }
    })
    .await;
    drop(raw);
    server.stop().await;
    seen
}

// Accepted connections are not pinged by default (clients such as Perl's MR::IProto break on
// a server's ping): nothing arrives unasked in an hour. On the paused clock, with a server
// configured to ping as the control that the wait would see a ping.
#[tokio::test(start_paused = true)]
async fn accepted_connections_are_not_pinged() {
    let _serial = serial().await;
    let mut pinging = ServerConfig::default();
    pinging.channel.ping_interval = Some(Duration::from_secs(60));
    let control = headers_sent_unasked(pinging, Duration::from_secs(90)).await;
    assert_eq!(control.first().map(|h| h.msg), Some(MSG_PING), "the control saw no ping: {control:?}");

    let seen = headers_sent_unasked(ServerConfig::default(), Duration::from_secs(3600)).await;
    assert!(seen.is_empty(), "a default server sent {seen:?} unasked");
}

/// Connects a raw TCP socket, waits until the server has accepted it, stops the server and
/// returns every byte the server sent before closing. The raw peer never answers, so the
/// server waits its (short) shutdown timeout for the peer's 0xff01 before it closes.
async fn bytes_seen_on_shutdown(mut config: ServerConfig) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    config.channel.shutdown_timeout = Duration::from_millis(300);
    let server = Running::start(config, echo).await;
    let mut raw = tokio::net::TcpStream::connect(&server.addr).await.expect("connect");
    // A ping round trip proves the connection is served.
    let ping = [0x00, 0xff, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0];
    tokio::io::AsyncWriteExt::write_all(&mut raw, &ping).await.expect("write ping");
    let mut pong = [0u8; 12];
    within("ping answered", raw.read_exact(&mut pong)).await.expect("read pong");
    assert_eq!(pong, ping);
    let stopping = tokio::spawn(server.stop());
    let mut seen = Vec::new();
    within("server closes", raw.read_to_end(&mut seen)).await.expect("read to EOF");
    within("serve returns", stopping).await.expect("join");
    seen
}

// A server shutdown sends 0xff01 to each client, unless disabled (for peers such as Perl's
// MR::IProto that do not expect it).
#[tokio::test]
async fn shutdown_sends_0xff01_unless_disabled() {
    let _serial = serial().await;
    let seen = bytes_seen_on_shutdown(ServerConfig::default()).await;
    assert_eq!(seen, [0x01, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], "one shutdown packet, sync 0");

    let mut config = ServerConfig::default();
    config.channel.disable_shutdown = true;
    assert_eq!(bytes_seen_on_shutdown(config).await, Vec::<u8>::new());
}

// The drain after the signal has a hard bound even when a handler never finishes.
#[tokio::test]
async fn shutdown_is_bounded_when_a_handler_hangs() {
    let _serial = serial().await;
    let mut config = ServerConfig { shutdown_timeout: Duration::from_millis(200), ..Default::default() };
    config.channel.shutdown_timeout = Duration::from_secs(60);
    let entered = Arc::new(Notify::new());
    let e = entered.clone();
    let server = Running::start(config, move |_p: Packet, _ch: Channel| {
        e.notify_one();
        std::future::pending::<Option<Bytes>>()
    })
    .await;
    let client = Channel::connect(&server.addr, ChannelConfig::client()).await.expect("connect");
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.call(1, b"never answered").await }
    });
    within("handler entered", entered.notified()).await;
    let started = std::time::Instant::now();
    server.stop().await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "drain took {took:?}");
    let result = within("call ends", call).await.expect("join");
    assert!(matches!(result, Err(Error::Dropped(_)) | Err(Error::Timeout { .. })), "{result:?}");
}
