//! Interoperability with go-iproto itself, the library whose API and behaviour we mirror:
//! its client (`go-bench`) against our `Server` and `iproto serve --echo`, our `Channel`,
//! `Pool` and a typed client against its server (`go-echo-server`), the 0xff01 shutdown
//! handshake both ways, pings both ways with an interval on each side, bodies at its size
//! limit and one byte over, and packed bytes both ways (`go-pack-vectors`, `go-pack-bench`,
//! `go-iproto-probe unpack`).
//!
//! The Go programs are built once per run from the shared references (`tests/support/go.rs`).
//! Without Go (`apt-get install -y golang-go golang-golang-x-time-dev`) the peer harness reports
//! these tests as skipped with the reason, or fails them when `CI` is set. Every body a test
//! sends carries its caller and sequence number, so a reply delivered to the wrong call fails.

use std::time::{Duration, Instant};

use iproto::server::{ServerConfig, ServerStatsHandle};
use iproto::wire::FrameError;
use iproto::{Channel, ChannelConfig, Error, IprotoPack, IprotoUnpack, Packet, Pool, PoolConfig, PoolError, Server};
use serde_json::Value;
use tokio::sync::mpsc;

#[path = "support/harness.rs"]
mod harness;

#[path = "support/go.rs"]
mod go;

#[path = "support/server_process.rs"]
mod server_process;

use go::{GoProcess, GO_TIMEOUT};

fn main() {
    let peer = go::peers().map(|peers| eprintln!("go-iproto peers: {}", peers.version));
    harness::run(
        peer,
        vec![
            harness::async_trial("go_client_against_our_server", go_client_against_our_server),
            harness::async_trial("go_client_against_iproto_serve", go_client_against_iproto_serve),
            harness::async_trial("channel_against_go_server", channel_against_go_server),
            harness::async_trial("pool_against_go_server", pool_against_go_server),
            harness::async_trial("typed_client_against_go_server", typed_client_against_go_server),
            harness::async_trial("our_graceful_shutdown_against_go_server", our_graceful_shutdown_against_go_server),
            harness::async_trial("go_server_sigterm_pool_redials", go_server_sigterm_pool_redials),
            harness::async_trial("go_server_sigterm_pool_reports_cutoff", go_server_sigterm_pool_reports_cutoff),
            harness::async_trial("our_pings_answered_by_go_server", our_pings_answered_by_go_server),
            harness::async_trial("go_server_pings_answered_by_channel", go_server_pings_answered_by_channel),
            harness::async_trial("go_client_pings_answered_by_our_server", go_client_pings_answered_by_our_server),
            harness::async_trial("body_at_go_size_limit_and_one_over", body_at_go_size_limit_and_one_over),
            harness::async_trial("go_body_at_our_size_limit_and_one_over", go_body_at_our_size_limit_and_one_over),
            harness::async_trial("pack_bytes_match_go_pack_vectors", pack_bytes_match_go_pack_vectors),
            harness::async_trial("go_unpacks_what_we_pack", go_unpacks_what_we_pack),
        ],
    )
}

/// go-iproto's size limit (`DefaultSizeLimit`, 1e8 bytes), the same default as ours; a body
/// of exactly this many bytes is accepted on both sides.
const GO_SIZE_LIMIT: usize = 100_000_000;

/// A request body unique to (`caller`, `seq`): the pair in the first 8 bytes, then a pattern,
/// with a length that varies with `seq` (8 to 2 055 bytes).
fn body(caller: u32, seq: u32) -> Vec<u8> {
    let len = 8 + (seq as usize * 37 + caller as usize * 11) % 2048;
    let mut b: Vec<u8> = (0..len).map(|i| (i as u32 ^ caller.wrapping_mul(31) ^ seq) as u8).collect();
    b[..4].copy_from_slice(&caller.to_le_bytes());
    b[4..8].copy_from_slice(&seq.to_le_bytes());
    b
}

/// Our echo `Server` on a loopback port, with `config`; returns its address and stats.
async fn our_server(config: ServerConfig) -> (String, ServerStatsHandle) {
    let server = Server::bind_with("127.0.0.1:0", config).await.expect("bind our server");
    let addr = server.local_addr().to_string();
    let stats = server.stats_handle();
    tokio::spawn(server.serve(|p: Packet, _ch: Channel| async move { Some(p.body) }));
    (addr, stats)
}

async fn go_echo_server(args: &[&str]) -> (GoProcess, String) {
    let mut all = vec!["-addr", "127.0.0.1:0"];
    all.extend_from_slice(args);
    GoProcess::server("go-echo-server", &all).await
}

/// Runs go-bench against `addr` with `args` (besides `-addr`) and returns its report.
async fn go_bench(addr: &str, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["-addr", addr];
    all.extend_from_slice(args);
    let (status, report, stderr) = go::run_json("go-bench", &all, GO_TIMEOUT).await;
    eprintln!("go-bench {args:?}: {report}");
    let code = status.code().unwrap_or_else(|| panic!("go-bench killed by a signal; stderr: {stderr:?}"));
    (code, report)
}

fn num(report: &Value, key: &str) -> i64 {
    report[key].as_i64().unwrap_or_else(|| panic!("no integer {key:?} in {report}"))
}

/// go-bench (several connections, concurrent callers, pool and channel modes, graceful
/// shutdown) against `addr`: every call answered with its own body, and go-iproto's 0xff01
/// answered on every connection.
async fn go_bench_suite(addr: &str) {
    for (mode, conns) in [("pool", "4"), ("channels", "3")] {
        let args =
            ["-mode", mode, "-conns", conns, "-concurrency", "48", "-size", "100", "-duration", "0.5", "-graceful"];
        let (code, report) = go_bench(addr, &args).await;
        assert_eq!(code, 0, "go-bench {mode} exited {code}: {report}");
        assert_eq!(num(&report, "errors"), 0, "{report}");
        assert!(num(&report, "calls") > 0, "{report}");
        assert_eq!(
            num(&report, "shutdown_acks"),
            conns.parse::<i64>().unwrap(),
            "0xff01 answered on every connection: {report}"
        );
    }
}

async fn go_client_against_our_server() {
    let (addr, stats) = our_server(ServerConfig::default()).await;
    go_bench_suite(&addr).await;
    assert_eq!(stats.get().accepted, 7, "4 pool and 3 channel connections");
    // Every connection ended by go-iproto's handshake is gone.
    tokio::time::timeout(GO_TIMEOUT, stats.wait_open_at_most(0)).await.expect("the server closes every connection");
}

async fn go_client_against_iproto_serve() {
    let server = server_process::ServerProcess::start(&[]);
    go_bench_suite(&server.addr).await;
    let mut server = server;
    assert!(server.is_running(), "iproto serve survives go-iproto's clients: {:?}", server.log());
}

/// `callers` tasks making `calls` calls each through `call`, every reply checked.
async fn unique_calls<F, Fut>(callers: u32, calls: u32, call: F)
where
    F: Fn(Vec<u8>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<bytes::Bytes, Error>> + Send,
{
    let mut tasks = Vec::new();
    for caller in 0..callers {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            for seq in 0..calls {
                let sent = body(caller, seq);
                let reply = call(sent.clone()).await.unwrap_or_else(|e| panic!("call {caller}/{seq}: {e}"));
                assert!(reply[..] == sent[..], "call {caller}/{seq} got another call's reply");
            }
        }));
    }
    for task in tasks {
        tokio::time::timeout(GO_TIMEOUT, task).await.expect("callers finish").expect("caller panicked");
    }
}

async fn channel_against_go_server() {
    let (go, addr) = go_echo_server(&[]).await;
    let ch = Channel::connect(&addr, ChannelConfig::client()).await.expect("connect");
    let c = ch.clone();
    unique_calls(16, 200, move |b| {
        let c = c.clone();
        async move { c.call(7, &b).await }
    })
    .await;
    assert_eq!(ch.stats().calls, 16 * 200);
    ch.shutdown().await;
    assert!(ch.close_reason().is_none(), "clean close, got {:?}", ch.close_reason());
    assert!(go.stderr().is_empty(), "go-echo-server logged: {:?}", go.stderr());
}

async fn pool_against_go_server() {
    let (_go, addr) = go_echo_server(&[]).await;
    let pool = Pool::dial(&addr, PoolConfig { size: 3, ..PoolConfig::default() }).await.expect("dial");
    pool.init_all().await.expect("three connections");
    let p = pool.clone();
    unique_calls(64, 50, move |b| {
        let p = p.clone();
        async move { p.call(9, &b).await }
    })
    .await;
    let stats = pool.stats();
    assert_eq!((stats.online, stats.channels.calls), (3, 64 * 50), "{stats:?}");
    pool.shutdown().await;
}

/// The `Order` of the pack benchmark (and of go-pack-bench): fixed and BER integers, strings,
/// a sequence and a nested struct with a BER field.
#[derive(IprotoPack, IprotoUnpack, Debug, PartialEq, Clone)]
pub struct Address {
    #[iproto(ber)]
    zip: u32,
    city: String,
}

/// See [`Address`].
#[derive(IprotoPack, IprotoUnpack, Debug, PartialEq, Clone)]
pub struct Order {
    id: u64,
    #[iproto(ber)]
    user: u32,
    #[iproto(ber)]
    qty: u16,
    name: String,
    items: Vec<u32>,
    address: Address,
}

fn order(n: u32) -> Order {
    Order {
        id: 0x0102_0304_0506_0708,
        user: 1_000_000 + n,
        qty: 300,
        name: "a fairly ordinary product name".into(),
        items: (0..16).map(|i| i * 1000).collect(),
        address: Address { zip: 125_167, city: "Moscow".into() },
    }
}

/// A service whose reply is sent raw: against an echo server the reply is the request.
#[iproto::service]
pub trait Orders {
    /// Echoes an order.
    #[iproto(msg = 0x21)]
    async fn place(&self, order: Order) -> Order;
}

async fn typed_client_against_go_server() {
    let (_go, addr) = go_echo_server(&[]).await;
    let client = OrdersClient::new(Channel::connect(&addr, ChannelConfig::client()).await.expect("connect"));
    for n in 0..100 {
        let sent = order(n);
        assert_eq!(client.place(&sent).await.expect("typed call"), sent);
    }
}

/// Our `Channel::shutdown` while 16 callers keep calls in flight: every call either gets its
/// own reply or, once the shutdown began, is refused with `Stopped` (none is lost or dropped),
/// 0xff01 goes both ways and the whole exchange ends well within the shutdown bound.
async fn our_graceful_shutdown_against_go_server() {
    let (_go, addr) = go_echo_server(&[]).await;
    let bound = Duration::from_secs(3);
    let ch = Channel::connect(&addr, ChannelConfig { shutdown_timeout: bound, ..ChannelConfig::client() })
        .await
        .expect("connect");
    let (started_tx, mut started) = mpsc::channel(16);
    let mut callers = Vec::new();
    for caller in 0..16 {
        let (ch, started_tx) = (ch.clone(), started_tx.clone());
        callers.push(tokio::spawn(async move {
            for seq in 0.. {
                let sent = body(caller, seq);
                match ch.call(3, &sent).await {
                    Ok(reply) => assert!(reply[..] == sent[..], "call {caller}/{seq} got another call's reply"),
                    Err(Error::Stopped) => return seq,
                    Err(e) => panic!("call {caller}/{seq} failed during the shutdown: {e}"),
                }
                if seq == 0 {
                    let _ = started_tx.send(()).await;
                }
            }
            unreachable!("the callers stop at the shutdown")
        }));
    }
    for _ in 0..16 {
        tokio::time::timeout(GO_TIMEOUT, started.recv())
            .await
            .expect("every caller got a reply")
            .expect("sender alive");
    }
    let began = Instant::now();
    tokio::time::timeout(GO_TIMEOUT, ch.shutdown()).await.expect("shutdown ends");
    let took = began.elapsed();
    assert!(took < bound, "shutdown took {took:?}, beyond its bound {bound:?}: the peer's 0xff01 did not arrive");
    assert!(ch.close_reason().is_none(), "clean close, got {:?}", ch.close_reason());
    for caller in callers {
        let answered = tokio::time::timeout(GO_TIMEOUT, caller).await.expect("callers end").expect("caller");
        assert!(answered >= 1);
    }
}

/// Starts go-echo-server, connects a pool of two channels, SIGTERMs the server and checks its
/// 0xff01 handshake completed on both (the server exits 0 before its grace period ends).
async fn pool_through_go_sigterm(config: PoolConfig) -> (Pool, String) {
    let (mut go, addr) = go_echo_server(&["-grace", "10s"]).await;
    let pool = Pool::dial(&addr, PoolConfig { size: 2, ..config }).await.expect("dial");
    pool.init_all().await.expect("two connections");
    assert_eq!(&pool.call(1, b"before").await.expect("call before SIGTERM")[..], b"before");
    let began = Instant::now();
    go.terminate();
    let status = go.wait(GO_TIMEOUT).await;
    assert!(status.success(), "go-echo-server exit status {status}");
    let log = go.stderr().join("\n");
    assert!(!log.contains("grace period"), "the handshake did not finish on every channel: {log}");
    assert!(began.elapsed() < Duration::from_secs(10), "the server waited out its grace period");
    let mut changes = pool.changes();
    let gone = async {
        while !pool.online().is_empty() {
            changes.changed().await.expect("the pool is alive");
        }
    };
    tokio::time::timeout(GO_TIMEOUT, gone).await.expect("the pool sees both channels go offline");
    (pool, addr)
}

async fn go_server_sigterm_pool_redials() {
    let config = PoolConfig { connect_timeout: Duration::from_secs(20), ..PoolConfig::default() };
    let (pool, addr) = pool_through_go_sigterm(config).await;
    let dials = pool.stats().dial_count;
    // A new server on the same address: the pool redials in the background.
    let (_go, again) = go_echo_server(&["-addr", &addr]).await;
    assert_eq!(again, addr);
    assert_eq!(&pool.call(1, b"after").await.expect("call after the restart")[..], b"after");
    assert!(pool.stats().dial_count > dials, "{:?}", pool.stats());
}

async fn go_server_sigterm_pool_reports_cutoff() {
    let config = PoolConfig { fail_on_cutoff: true, ..PoolConfig::default() };
    let (pool, _addr) = pool_through_go_sigterm(config).await;
    let began = Instant::now();
    let result = pool.call(1, b"after").await;
    assert!(matches!(result, Err(Error::Pool(PoolError::Cutoff))), "expected the cutoff error, got {result:?}");
    assert!(began.elapsed() < Duration::from_secs(1), "a cutoff fails at once");
}

/// Waits (bounded) until `ch` has received `n` packets.
async fn received_at_least(ch: &Channel, n: u64) {
    let wait = async {
        while ch.stats().packets_received < n && !ch.is_closed() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(GO_TIMEOUT, wait).await.unwrap_or_else(|_| panic!("{n} packets within {GO_TIMEOUT:?}"));
}

/// Our channel pings go-echo-server every 200 ms (go-iproto answers pings itself): without an
/// ack for two intervals our side would close with `PingMissed`.
async fn our_pings_answered_by_go_server() {
    let (_go, addr) = go_echo_server(&[]).await;
    let config = ChannelConfig { ping_interval: Some(Duration::from_millis(200)), ..ChannelConfig::client() };
    let ch = Channel::connect(&addr, config).await.expect("connect");
    let rtt = ch.ping().await.expect("an explicit ping is answered");
    assert!(rtt < GO_TIMEOUT);
    received_at_least(&ch, 6).await;
    assert!(!ch.is_closed(), "closed: {:?}", ch.close_reason());
    assert_eq!(ch.stats().calls, 1, "no call but the explicit ping: the rest were keepalive pings");
    ch.shutdown().await;
    assert!(ch.close_reason().is_none(), "{:?}", ch.close_reason());
}

/// go-iproto's server pings every 200 ms; our client (pinging every 300 ms itself) answers, or
/// go-iproto would drop the connection after two intervals ("ping is missed").
async fn go_server_pings_answered_by_channel() {
    let (_go, addr) = GoProcess::server("go-iproto-probe", &["ping-server", "-interval", "200ms"]).await;
    let config = ChannelConfig { ping_interval: Some(Duration::from_millis(300)), ..ChannelConfig::client() };
    let ch = Channel::connect(&addr, config).await.expect("connect");
    received_at_least(&ch, 10).await;
    assert!(!ch.is_closed(), "closed: {:?}", ch.close_reason());
    assert_eq!(&ch.call(5, b"still here").await.expect("a call after the pings")[..], b"still here");
    ch.shutdown().await;
    assert!(ch.close_reason().is_none(), "{:?}", ch.close_reason());
}

/// A go-iproto client pinging every 200 ms against our server, whose channels ping every
/// 300 ms: both sides' pings are answered and the connection survives.
async fn go_client_pings_answered_by_our_server() {
    let mut config = ServerConfig::default();
    config.channel.ping_interval = Some(Duration::from_millis(300));
    let (closed_tx, mut closed) = mpsc::unbounded_channel();
    let config = config.on_close(move |ch: Channel| {
        let closed_tx = closed_tx.clone();
        async move {
            let _ = closed_tx.send((ch.close_reason(), ch.stats()));
        }
    });
    let (addr, _stats) = our_server(config).await;
    let (status, report, stderr) = go::run_json(
        "go-iproto-probe",
        &["ping-client", "-addr", &addr, "-interval", "200ms", "-pings", "10"],
        GO_TIMEOUT,
    )
    .await;
    assert!(status.success(), "{status}: {stderr:?}");
    assert_eq!(report["closed"], Value::Bool(false), "{report}");
    assert!(num(&report, "received") >= 10, "{report}");
    assert_eq!(report["call_ok"], Value::Bool(true), "{report}");
    let (reason, stats) =
        tokio::time::timeout(GO_TIMEOUT, closed.recv()).await.expect("the server channel closes").unwrap();
    assert!(reason.is_none(), "our server channel closed with {reason:?}");
    // The Go pings and their acks, our pings and theirs, one call, the 0xff01 exchange.
    assert!(stats.packets_sent >= 10 && stats.packets_received >= 10, "{stats:?}");
}

/// A body of go-iproto's size limit crosses both ways; one byte more makes go-iproto drop the
/// connection without a reply, which our call reports at once as the connection's loss.
async fn body_at_go_size_limit_and_one_over() {
    let (go, addr) = go_echo_server(&[]).await;
    let ch = Channel::connect(&addr, ChannelConfig { request_timeout: GO_TIMEOUT, ..ChannelConfig::client() })
        .await
        .expect("connect");
    let mut big = vec![0u8; GO_SIZE_LIMIT];
    big[..8].copy_from_slice(b"at-limit");
    let last = big.len() - 1;
    big[last] = 0x5a;
    let reply = ch.call(2, &big).await.expect("a body at the limit is echoed");
    assert!(reply.len() == big.len() && reply[..] == big[..], "the echo differs ({} bytes)", reply.len());
    drop(reply);

    big.push(0xa5);
    let began = Instant::now();
    let result = ch.call(2, &big).await;
    eprintln!("one byte over go-iproto's limit: {result:?}, channel: {:?}", ch.close_reason());
    assert!(
        matches!(result, Err(Error::Dropped(_) | Error::PeerClosed { .. } | Error::Io(_))),
        "one byte over go-iproto's limit: expected the connection's loss, got {result:?}"
    );
    assert!(began.elapsed() < GO_TIMEOUT, "reported at once, not by the timeout");
    tokio::time::timeout(GO_TIMEOUT, ch.closed()).await.expect("our channel closes");
    let log = go.stderr().join("\n");
    assert!(log.is_empty() || log.contains("size limit"), "go-echo-server: {log}");
}

/// go-iproto's client sending bodies of our size limit (the same 1e8 default) and one byte
/// over: the first are echoed; the second closes the connection before the body is read, and
/// go-iproto reports its calls as failed on a lost connection.
async fn go_body_at_our_size_limit_and_one_over() {
    let (closed_tx, mut closed) = mpsc::unbounded_channel();
    let config = ServerConfig::default().on_close(move |ch: Channel| {
        let closed_tx = closed_tx.clone();
        async move {
            let _ = closed_tx.send(ch.close_reason());
        }
    });
    let (addr, _stats) = our_server(config).await;
    let limit = GO_SIZE_LIMIT.to_string();
    // go-bench fills its body before the clock starts, but a 1e8-byte body takes a while.
    let args = ["-conns", "1", "-concurrency", "1", "-duration", "1", "-timeout", "30s"];
    let (code, report) = go_bench(&addr, &[&args[..], &["-size", &limit]].concat()).await;
    assert_eq!((code, num(&report, "errors")), (0, 0), "{report}");
    assert!(num(&report, "calls") >= 1, "{report}");

    let over = (GO_SIZE_LIMIT + 1).to_string();
    let (code, report) = go_bench(&addr, &[&args[..], &["-size", &over]].concat()).await;
    assert_eq!(code, 2, "go-bench reports errors: {report}");
    assert_eq!(num(&report, "calls"), 0, "{report}");
    let kinds = report["errors_by_kind"].as_object().expect("errors_by_kind");
    assert!(
        kinds.keys().all(|k| k == "dropped_conn" || k == "stopped" || k == "no_channel"),
        "only lost-connection errors: {report}"
    );
    // The first channel closed is the at-limit one (clean); then the over-limit one.
    let mut reasons = Vec::new();
    while let Ok(Some(reason)) = tokio::time::timeout(Duration::from_secs(5), closed.recv()).await {
        reasons.push(reason);
    }
    assert!(
        reasons.iter().any(|r| matches!(
            r.as_deref(),
            Some(Error::Frame(FrameError::TooLarge { len: 100_000_001, limit: 100_000_000 }))
        )),
        "our server closed a connection for the size limit: {reasons:?}"
    );
}

// ---- packed bytes ----

#[derive(IprotoPack, IprotoUnpack, Debug, PartialEq)]
struct Tagged {
    #[iproto(ber)]
    count: u32,
    name: String,
}

#[derive(IprotoPack, IprotoUnpack, Debug, PartialEq)]
struct Nested {
    id: u64,
    inner: Tagged,
    list: Vec<u16>,
}

/// Every value go-pack-vectors prints, built in Rust and packed by us, under its Go name.
fn our_vectors() -> Vec<(String, Vec<u8>)> {
    fn p<T: IprotoPack + ?Sized>(name: &str, v: &T) -> (String, Vec<u8>) {
        (format!("Pack {name}"), iproto::pack(v).expect("pack"))
    }
    fn b<T: IprotoPack + ?Sized>(name: &str, v: &T) -> (String, Vec<u8>) {
        (format!("PackBER {name}"), iproto::pack_ber(v).expect("pack_ber"))
    }
    fn packet(name: &str, msg: u32, sync: u32, body: &[u8]) -> (String, Vec<u8>) {
        let mut out = Vec::new();
        iproto::wire::encode_packet(&mut out, msg, sync, body).expect("encode");
        (format!("packet {name}"), out)
    }
    let mut v = vec![
        p("uint8(0xab)", &0xabu8),
        p("uint16(1024)", &1024u16),
        p("uint32(258)", &258u32),
        p("int32(-1)", &-1i32),
        p("uint64(0x0102030405060708)", &0x0102_0304_0506_0708u64),
        p("string(\"hello\")", "hello"),
        p("string(\"\")", ""),
        p("[]byte{1,2,3}", &[1u8, 2, 3][..]),
        p("[]uint32{1,2}", &vec![1u32, 2]),
        p("uint32(7),string(\"ab\")", &(7u32, "ab")),
        p("struct{Count uint32 \"ber\"; Name string}{258,\"world\"}", &Tagged { count: 258, name: "world".into() }),
        p(
            "struct{ID uint64; Inner{300,\"x\"}; List []uint16{1,65535}}{1,...}",
            &Nested { id: 1, inner: Tagged { count: 300, name: "x".into() }, list: vec![1, 65535] },
        ),
    ];
    for n in [0u32, 5, 127, 128, 255, 16383, 16384, 100_000, u32::MAX] {
        v.push(b(&format!("uint32({n})"), &n));
    }
    v.extend([
        b("uint64(max)", &u64::MAX),
        b("uint16(300)", &300u16),
        b("uint8(200)", &200u8),
        b("string(\"hello\")", "hello"),
        b("[]uint32{1,300}", &vec![1u32, 300]),
        packet("msg=1 sync=7 body=\"ping\"", 1, 7, b"ping"),
        packet("msg=0xff00 sync=0 (ping)", iproto::MSG_PING, 0, b""),
        packet("msg=0xff01 sync=0 (shutdown)", iproto::MSG_SHUTDOWN, 0, b""),
    ]);
    v
}

/// go-pack-vectors' output and go-pack-bench's `Order`, packed by us to the same bytes; a
/// vector we do not build (go-iproto's list grew) fails too.
async fn pack_bytes_match_go_pack_vectors() {
    let (status, lines) = GoProcess::spawn("go-pack-vectors", &[]).finish(GO_TIMEOUT).await;
    assert!(status.success(), "go-pack-vectors: {status}");
    let ours = our_vectors();
    let mut seen = 0;
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        let (name, hex) = (v["name"].as_str().expect("name"), v["hex"].as_str().expect("hex"));
        let (_, bytes) = ours.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no Rust value for {name:?}"));
        assert_eq!(hex::encode(bytes), hex, "{name}");
        seen += 1;
    }
    assert_eq!(seen, ours.len(), "every value we build is printed by go-pack-vectors");

    let (status, report, _) = go::run_json("go-pack-bench", &[], GO_TIMEOUT).await;
    assert!(status.success(), "go-pack-bench: {status}");
    let packed = iproto::pack(&order(0)).expect("pack the Order");
    assert_eq!(hex::encode(&packed), report["hex"].as_str().expect("hex"), "the Order of go-pack-bench");
    assert_eq!(iproto::unpack_exact::<Order>(&packed).expect("unpack"), order(0));
}

/// go-iproto unpacks what we pack for each of those values into the Go value of the same name
/// (`tests/go/probe`), with no byte left over.
async fn go_unpacks_what_we_pack() {
    let mut input = String::new();
    let mut named = our_vectors();
    named.retain(|(name, _)| !name.starts_with("packet "));
    named.push(("Pack Order".into(), iproto::pack(&order(0)).expect("pack the Order")));
    for (name, bytes) in &named {
        input.push_str(&format!("{name}\t{}\n", hex::encode(bytes)));
    }
    let lines = go::run_with_input("go-iproto-probe", &["unpack"], &input, GO_TIMEOUT).await;
    assert_eq!(lines.len(), named.len(), "one verdict per value: {lines:?}");
    let failed: Vec<&String> = lines.iter().filter(|l| !l.contains("\"ok\":true")).collect();
    assert!(failed.is_empty(), "go-iproto could not unpack: {failed:?}");
}
