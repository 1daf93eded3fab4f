//! Interoperability with Perl's MR::IProto, the original iproto peer:
//! our [`Channel`] against `MR::IProto::Server`, the `MR::IProto` client (synchronous and
//! AnyEvent) against our [`Server`], and derived packing against Perl `pack` templates sent
//! by MR::IProto.
//!
//! The Perl halves are `tests/interop/*.pl`. Both servers answer a request with the request's
//! code (u32 LE) followed by its body reversed, so each side checks that whole bodies crossed
//! intact. Without a working `perl -MMR::IProto` (or with `IPROTO_PERL` pointing elsewhere) the
//! peer harness (`tests/support/harness.rs`) reports these tests as skipped with the reason, or
//! fails them when `CI` is set. Throughput is printed on stderr, never asserted.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use iproto::{Channel, ChannelConfig, IprotoPack, IprotoUnpack, Packet, ServeMux, Server};
use tokio::sync::mpsc;

#[path = "support/harness.rs"]
mod harness;

/// The Perl modules the scripts load: without them every test is skipped (failed under `CI`).
const PERL_MODULES: [&str; 3] = ["MR::IProto", "MR::IProto::Server", "AnyEvent"];

fn main() {
    let peer = PERL_MODULES
        .iter()
        .try_for_each(|module| harness::perl_module(module))
        .map_err(|why| format!("{why} (install libmr-tarantool-perl)"));
    harness::run(
        peer,
        vec![
            harness::async_trial("channel_against_perl_server", channel_against_perl_server),
            harness::async_trial("pool_against_perl_server", pool_against_perl_server),
            harness::async_trial("perl_sync_client_against_server", perl_sync_client_against_server),
            harness::async_trial("perl_async_client_against_server", perl_async_client_against_server),
            harness::async_trial("throughput_perl_clients_against_server", throughput_perl_clients_against_server),
            harness::async_trial("throughput_channel_against_perl_server", throughput_channel_against_perl_server),
            harness::async_trial("derive_against_perl_pack_templates", derive_against_perl_pack_templates),
        ],
    )
}

const CODES: [u32; 4] = [0, 1, 17, 0xfeff];
const SIZES: [usize; 6] = [0, 1, 5, 1_000, 70_000, 1_000_000];
/// Bound on anything a Perl process is waited for.
const PERL_TIMEOUT: Duration = Duration::from_secs(60);

/// The reply both test servers give: the request's code, then its body reversed.
fn transform(msg: u32, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + body.len());
    out.put_u32_le(msg);
    out.extend(body.iter().rev());
    out.freeze()
}

/// `len` deterministic, non-repeating-looking bytes starting at `seed`'s position.
fn body(seed: usize, len: usize) -> Vec<u8> {
    static NOISE: OnceLock<Vec<u8>> = OnceLock::new();
    let noise = NOISE.get_or_init(|| {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..SIZES[5] + 4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    });
    let start = seed % 4096;
    noise[start..start + len].to_vec()
}

/// A running Perl script: stdout lines arrive on a channel, stderr is collected. Dropping it
/// kills and reaps the process, so no script outlives its test, pass or fail.
struct Perl {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// How a Perl script ended.
struct Exit {
    status: ExitStatus,
    stdout: Vec<String>,
    stderr: String,
}

impl Perl {
    fn spawn(script: &str, args: &[&str]) -> Perl {
        let path = format!("{}/tests/interop/{script}", env!("CARGO_MANIFEST_DIR"));
        let mut child = harness::perl_command()
            .arg(&path)
            .args(args)
            .stdin(Stdio::piped()) // the server script exits when this closes
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {path}: {e}"));
        let (tx, lines) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Perl { child, lines, stderr: Some(stderr) }
    }

    /// The next stdout line; panics if the script ends or stays silent.
    async fn line(&mut self) -> String {
        match tokio::time::timeout(PERL_TIMEOUT, self.lines.recv()).await {
            Ok(Some(line)) => line,
            Ok(None) => panic!("perl ended without the expected line; stderr:\n{}", self.stop_stderr()),
            Err(_) => panic!("perl printed nothing for {PERL_TIMEOUT:?}"),
        }
    }

    /// Waits for the script to exit on its own and returns what it printed.
    async fn exit(mut self) -> Exit {
        let mut stdout = Vec::new();
        let deadline = tokio::time::Instant::now() + PERL_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => stdout.push(line),
                Ok(None) => break,
                Err(_) => panic!("perl did not finish within {PERL_TIMEOUT:?}; printed {stdout:?}"),
            }
        }
        // Stdout is closed: the script is exiting.
        let status = self.child.wait().unwrap();
        let stderr = self.stderr.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
        Exit { status, stdout, stderr }
    }

    fn stop_stderr(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default()
    }
}

impl Drop for Perl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tests/interop/server.pl` and returns it with its `127.0.0.1:port` address.
async fn perl_server() -> (Perl, String) {
    let mut perl = Perl::spawn("server.pl", &[]);
    let line = perl.line().await;
    let port: u16 = line
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("server.pl said {line:?}, expected PORT <n>"));
    (perl, format!("127.0.0.1:{port}"))
}

/// Client settings for MR::IProto::Server. It answers every packet through its handler, so
/// pings get a reply (kept on; the test pings explicitly) and our 0xff01 comes back as a reply
/// of the same code, which completes our shutdown handshake; `disable_shutdown` would leave
/// `shutdown()` waiting for a close the Perl server never initiates.
fn perl_server_client_config() -> ChannelConfig {
    ChannelConfig { request_timeout: Duration::from_secs(20), ..ChannelConfig::client() }
}

async fn call_checked(ch: &Channel, msg: u32, body: &[u8]) {
    let reply = ch.call(msg, body).await.unwrap_or_else(|e| panic!("msg {msg:#x}, {} bytes: {e}", body.len()));
    assert!(reply == transform(msg, body), "msg {msg:#x}, {} bytes: wrong reply of {} bytes", body.len(), reply.len());
}

async fn channel_against_perl_server() {
    let (_perl, addr) = perl_server().await;
    let ch = Channel::connect(&addr, perl_server_client_config()).await.unwrap();

    for msg in CODES {
        for size in SIZES {
            call_checked(&ch, msg, &body(msg as usize, size)).await;
        }
    }

    // 1 000 calls from 32 concurrent callers, codes and sizes mixed.
    let ch = Arc::new(ch);
    let callers: Vec<_> = (0..32)
        .map(|caller| {
            let ch = ch.clone();
            tokio::spawn(async move {
                for i in (caller..1000).step_by(32) {
                    let size = if i % 100 == 0 { SIZES[5] } else { SIZES[i % 5] + i % 7 };
                    call_checked(&ch, CODES[i % 4], &body(i, size)).await;
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.unwrap();
    }

    // The Perl server answers pings as it answers everything.
    ch.ping().await.unwrap();
    let stats = ch.stats();
    assert_eq!(stats.calls, 4 * 6 + 1000 + 1, "{stats:?}");

    let started = Instant::now();
    ch.shutdown().await;
    assert!(ch.close_reason().is_none(), "{:?}", ch.close_reason());
    eprintln!("graceful shutdown against MR::IProto::Server took {:?}", started.elapsed());
}

async fn pool_against_perl_server() {
    let (_perl, addr) = perl_server().await;
    let config = iproto::PoolConfig { size: 4, channel: perl_server_client_config(), ..iproto::PoolConfig::default() };
    let pool = iproto::Pool::dial(&addr, config).await.unwrap();
    pool.init_all().await.unwrap();
    for msg in CODES {
        for size in SIZES {
            let b = body(msg as usize + size, size);
            let reply = pool.call(msg, &b).await.unwrap();
            assert!(reply == transform(msg, &b), "msg {msg:#x}, {size} bytes");
        }
    }
    // 1 000 calls from 32 concurrent callers spread over the four connections.
    let callers: Vec<_> = (0..32)
        .map(|caller| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for i in (caller..1000).step_by(32) {
                    let b = body(i, SIZES[i % 5] + i % 11);
                    let msg = CODES[i % 4];
                    let reply = pool.call(msg, &b).await.unwrap();
                    assert!(reply == transform(msg, &b), "call {i}: wrong reply");
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.unwrap();
    }
    let stats = pool.stats();
    assert_eq!(stats.online, 4);
    assert_eq!(stats.channels.calls, 4 * 6 + 1000, "{stats:?}");
    pool.shutdown().await;
}

type Serving = tokio::task::JoinHandle<Result<(), iproto::Error>>;

/// Our server with the transform handler; returns its port and a stop switch.
async fn rust_server() -> (u16, tokio::sync::oneshot::Sender<()>, Serving) {
    rust_server_with(|p: Packet, _ch: Channel| async move { Some(transform(p.header.msg, &p.body)) }).await
}

async fn rust_server_with(handler: impl iproto::Handler) -> (u16, tokio::sync::oneshot::Sender<()>, Serving) {
    let server = Server::bind("127.0.0.1:0").await.unwrap();
    let port = match server.local_addr() {
        iproto::net::Addr::Tcp(a) => a.port(),
        other => panic!("bound {other}"),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_with_shutdown(handler, async {
        let _ = stopped.await;
    }));
    (port, stop, serving)
}

/// Runs `client.pl` against our server (stopped only after Perl has exited, so that no 0xff01
/// reaches it) and returns the script's output after asserting that it succeeded.
async fn perl_client(args: &[&str]) -> Vec<String> {
    let (port, stop, serving) = rust_server().await;
    let port = port.to_string();
    let mut all = vec![port.as_str()];
    all.extend_from_slice(args);
    let exit = Perl::spawn("client.pl", &all).exit().await;
    assert!(
        exit.status.success(),
        "client.pl {all:?} failed: {}; stdout {:?}; stderr:\n{}",
        exit.status,
        exit.stdout,
        exit.stderr
    );
    stop.send(()).unwrap();
    serving.await.unwrap().unwrap();
    exit.stdout
}

async fn perl_sync_client_against_server() {
    let out = perl_client(&["sync", "check"]).await;
    assert_eq!(out, ["OK 1024 calls"]);
}

async fn perl_async_client_against_server() {
    let out = perl_client(&["async", "check"]).await;
    assert_eq!(out, ["OK 1024 calls"]);
}

/// Parses the `RATE <calls/s>` line of a bench run.
fn rate(out: &[String]) -> f64 {
    out.iter().find_map(|l| l.strip_prefix("RATE ")?.parse().ok()).unwrap_or_else(|| panic!("no RATE line in {out:?}"))
}

async fn throughput_perl_clients_against_server() {
    let sync = rate(&perl_client(&["sync", "bench", "5000"]).await);
    let not_sync = rate(&perl_client(&["async", "bench", "10000"]).await);
    assert!(sync > 0.0 && not_sync > 0.0);
    eprintln!("MR::IProto client -> Rust Server, 32-byte echo: sync {sync:.0} calls/s, async (16 in flight) {not_sync:.0} calls/s");
}

async fn throughput_channel_against_perl_server() {
    const CALLS: usize = 20_000;
    const CALLERS: usize = 64;
    let (_perl, addr) = perl_server().await;
    let ch = Arc::new(Channel::connect(&addr, perl_server_client_config()).await.unwrap());
    let payload = Bytes::from(body(0, 32));
    let expected = transform(17, &payload);
    let started = Instant::now();
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (ch, payload, expected) = (ch.clone(), payload.clone(), expected.clone());
            tokio::spawn(async move {
                for _ in 0..CALLS / CALLERS {
                    assert_eq!(ch.call(17, &payload).await.unwrap(), expected);
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.unwrap();
    }
    let elapsed = started.elapsed();
    let calls = CALLS / CALLERS * CALLERS;
    assert_eq!(ch.stats().calls, calls as u64);
    eprintln!(
        "Rust Channel ({CALLERS} callers) -> MR::IProto::Server, 32-byte echo: {:.0} calls/s",
        calls as f64 / elapsed.as_secs_f64()
    );
}

/// Perl template `L S w/a* w`.
#[derive(IprotoPack, IprotoUnpack, Debug, Clone, PartialEq)]
struct User {
    id: u32,
    flags: u16,
    #[iproto(ber)]
    name: String,
    #[iproto(ber)]
    visits: u64,
}

/// Perl template `w C s< q< L/a* (User) L/L*`: BER, bool, signed, fixed-length bytes, a nested
/// struct and a u32 sequence.
#[derive(IprotoPack, IprotoUnpack, Debug, Clone, PartialEq)]
struct Order {
    #[iproto(ber)]
    id: u32,
    paid: bool,
    delta: i16,
    amount: i64,
    note: Vec<u8>,
    owner: User,
    items: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq)]
enum Record {
    User(User),
    Order(Order),
}

/// The records `records.pl` sends, in order.
fn perl_records() -> Vec<Record> {
    let users = [
        User { id: 1, flags: 0, name: String::new(), visits: 0 },
        User { id: u32::MAX, flags: u16::MAX, name: "Вася".into(), visits: u64::MAX },
        User { id: 258, flags: 7, name: "x".repeat(200), visits: 300 },
    ];
    let mut records: Vec<Record> = users.iter().cloned().map(Record::User).collect();
    records.extend(
        [
            Order { id: 0, paid: false, delta: 0, amount: 0, note: vec![], owner: users[0].clone(), items: vec![] },
            Order {
                id: u32::MAX,
                paid: true,
                delta: -1234,
                amount: -1234567890123456,
                note: b"\x00\xff note".to_vec(),
                owner: users[1].clone(),
                items: vec![2, 200, u32::MAX],
            },
            Order {
                id: 16384,
                paid: true,
                delta: i16::MAX,
                amount: i64::MIN,
                note: vec![b'n'; 70_000],
                owner: users[2].clone(),
                items: (0..1000).collect(),
            },
        ]
        .map(Record::Order),
    );
    records
}

/// Decodes a record with the derive and re-encodes it; `None` if Perl's bytes do not decode
/// exactly.
fn echo_record(msg: u32, body: &[u8]) -> Option<(Record, Vec<u8>)> {
    match msg {
        0x31 => {
            let user: User = iproto::unpack_exact(body).ok()?;
            Some((Record::User(user.clone()), iproto::pack(&user).ok()?))
        }
        0x32 => {
            let order: Order = iproto::unpack_exact(body).ok()?;
            Some((Record::Order(order.clone()), iproto::pack(&order).ok()?))
        }
        _ => None,
    }
}

async fn derive_against_perl_pack_templates() {
    let decoded = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut mux = ServeMux::new();
    for code in [0x31, 0x32] {
        let decoded = decoded.clone();
        mux.handle(code, move |p: Packet, _ch: Channel| {
            let decoded = decoded.clone();
            async move {
                // An empty reply makes the Perl side fail at once, naming the record.
                let Some((record, reply)) = echo_record(p.header.msg, &p.body) else { return Some(Bytes::new()) };
                decoded.lock().unwrap().push(record);
                Some(Bytes::from(reply))
            }
        })
        .unwrap();
    }
    let (port, stop, serving) = rust_server_with(mux).await;
    let exit = Perl::spawn("records.pl", &[&port.to_string()]).exit().await;
    assert!(exit.status.success(), "records.pl failed: {}; stderr:\n{}", exit.status, exit.stderr);
    let records = perl_records();
    assert_eq!(exit.stdout, [format!("OK {} records", records.len())]);
    // What the derive decoded from Perl's bytes is what Perl packed.
    assert_eq!(*decoded.lock().unwrap(), records);
    stop.send(()).unwrap();
    serving.await.unwrap().unwrap();
}
