//! Typed calls (`#[service]` client and server, `Result` envelope) against raw `call` with
//! hand-packed bytes and a hand-written handler, same payload and bytes on the wire, 64
//! concurrent callers on one TCP connection. Target: the typed layer adds at most 5% per call.
//!
//! `cargo bench -p mr-iproto --bench rpc -- --warm-up-time 1 --measurement-time 5`

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use criterion::{criterion_group, Criterion};
use iproto::rpc::RemoteError;
use iproto::{Channel, ChannelConfig, IprotoPack, IprotoUnpack, Packet, ServeMux, Server};

const CALLERS: u64 = 64;
const MSG: u32 = 0x10;
const NAME: &[u8] = b"a thirty-two byte payload string";

#[derive(IprotoPack, IprotoUnpack, Debug, Clone)]
pub struct Echo {
    id: u64,
    name: Bytes,
}

#[iproto::service]
pub trait Bench {
    #[iproto(msg = 0x10)]
    async fn echo(&self, req: Echo) -> Result<Echo, RemoteError>;
}

struct Impl;

impl Bench for Impl {
    async fn echo(&self, req: Echo) -> Result<Echo, RemoteError> {
        Ok(req)
    }
}

/// Hand-written: `u64 id, u32 len, name` in, `u32 0, u64 id, u32 len, name` out.
fn pack_request(id: u64, name: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(12 + name.len());
    buf.put_u64_le(id);
    buf.put_u32_le(name.len() as u32);
    buf.put_slice(name);
    buf
}

/// Zero-copy, as the derive's `Bytes` fields are.
fn parse_echo(body: &Bytes) -> Option<(u64, Bytes)> {
    let mut head = body.get(..12)?;
    let id = head.get_u64_le();
    let len = head.get_u32_le() as usize;
    (body.len() - 12 == len).then(|| (id, body.slice(12..)))
}

async fn raw_handler(p: Packet, _ch: Channel) -> Option<Bytes> {
    let (id, name) = parse_echo(&p.body)?;
    let mut out = BytesMut::with_capacity(16 + name.len());
    out.put_u32_le(0);
    out.put_u64_le(id);
    out.put_u32_le(name.len() as u32);
    out.put_slice(&name);
    Some(out.freeze())
}

fn parse_reply(body: &Bytes) -> Option<(u64, Bytes)> {
    let code = body.get(..4)?;
    (code == [0, 0, 0, 0]).then(|| parse_echo(&body.slice(4..)))?
}

type RawFut = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
type TypedFut = RawFut;

async fn connect(mux: ServeMux) -> Channel {
    let server = Server::bind("127.0.0.1:0").await.expect("bind");
    let addr = server.local_addr().to_string();
    tokio::spawn(server.serve(mux));
    Channel::connect(&addr, ChannelConfig::client()).await.expect("connect")
}

/// Runs `iters` calls split over 64 callers; returns the wall time.
async fn run<F, Fut>(iters: u64, call: Arc<F>) -> Duration
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let per = iters.div_ceil(CALLERS);
    let start = Instant::now();
    let tasks: Vec<_> = (0..CALLERS)
        .map(|c| {
            let call = call.clone();
            tokio::spawn(async move {
                for i in 0..per {
                    call(c * per + i).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("caller");
    }
    start.elapsed().mul_f64(iters as f64 / (per * CALLERS) as f64)
}

/// The two callers under test, each on its own connection and server.
struct Pair<R, T> {
    rt: tokio::runtime::Runtime,
    raw: Arc<R>,
    typed: Arc<T>,
}

fn setup() -> Pair<impl Fn(u64) -> RawFut + Send + Sync + 'static, impl Fn(u64) -> TypedFut + Send + Sync + 'static> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let raw = rt.block_on(async {
        let mut mux = ServeMux::new();
        mux.handle(MSG, raw_handler).expect("route");
        connect(mux).await
    });
    // RPC_BENCH_SIDE=client: typed client against the raw server; =server: raw calls against
    // the typed server. Splits the typed overhead between the two sides.
    let side = std::env::var("RPC_BENCH_SIDE").unwrap_or_default();
    let typed = rt.block_on(async {
        if side == "client" {
            let mut mux = ServeMux::new();
            mux.handle(MSG, raw_handler).expect("route");
            BenchClient::new(connect(mux).await)
        } else {
            BenchClient::new(connect(BenchServer::new(Impl).into_mux()).await)
        }
    });
    let typed_server_raw_client = (side == "server").then(|| typed.sender().clone());
    // RPC_BENCH_AA=1: the typed slot runs raw calls on its own connection, to measure the
    // bias between the two connections (an A/A run).
    let second_raw = std::env::var_os("RPC_BENCH_AA").map(|_| {
        rt.block_on(async {
            let mut mux = ServeMux::new();
            mux.handle(MSG, raw_handler).expect("route");
            connect(mux).await
        })
    });

    let raw_call = Arc::new(move |id: u64| -> RawFut {
        let ch = raw.clone();
        Box::pin(async move {
            let reply = ch.call(MSG, &pack_request(id, NAME)).await.expect("call");
            let (back, name) = parse_reply(&reply).expect("reply");
            assert_eq!((back, name.len()), (id, NAME.len()));
        })
    });
    let typed_call = Arc::new(move |id: u64| -> TypedFut {
        if let Some(ch) = &second_raw {
            let ch = ch.clone();
            return Box::pin(async move {
                let reply = ch.call(MSG, &pack_request(id, NAME)).await.expect("call");
                assert_eq!(parse_reply(&reply).map(|r| r.0), Some(id));
            });
        }
        if let Some(ch) = &typed_server_raw_client {
            let ch = ch.clone();
            return Box::pin(async move {
                let reply = ch.call(MSG, &pack_request(id, NAME)).await.expect("call");
                assert_eq!(parse_reply(&reply).map(|r| r.0), Some(id));
            });
        }
        let kv = typed.clone();
        Box::pin(async move {
            let back = kv.echo(&Echo { id, name: Bytes::from_static(NAME) }).await.expect("call");
            assert_eq!((back.id, back.name.len()), (id, NAME.len()));
        })
    });

    Pair { rt, raw: raw_call, typed: typed_call }
}

fn bench(c: &mut Criterion) {
    let Pair { rt, raw, typed } = setup();
    let mut g = c.benchmark_group("rpc_64_callers");
    g.bench_function("raw_call", |b| b.iter_custom(|iters| rt.block_on(run(iters, raw.clone()))));
    g.bench_function("typed_call", |b| b.iter_custom(|iters| rt.block_on(run(iters, typed.clone()))));
    g.finish();
}

/// The machine is shared, so sequential criterion runs drift more than 5%: this runs short
/// raw and typed rounds alternately and reports medians and the median per-round ratio.
fn interleaved() {
    const ROUNDS: usize = 61;
    const CALLS: u64 = 64 * 400;
    let Pair { rt, raw, typed } = setup();
    let (mut r, mut t, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (a, b) = if round % 2 == 0 {
            let a = rt.block_on(run(CALLS, raw.clone()));
            (a, rt.block_on(run(CALLS, typed.clone())))
        } else {
            let b = rt.block_on(run(CALLS, typed.clone()));
            (rt.block_on(run(CALLS, raw.clone())), b)
        };
        let per = |d: Duration| d.as_secs_f64() * 1e9 / CALLS as f64;
        r.push(per(a));
        t.push(per(b));
        ratio.push(per(b) / per(a));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "interleaved, {ROUNDS} rounds of {CALLS} calls: raw {:.0} ns/call, typed {:.0} ns/call, median typed/raw {:.3}",
        median(&mut r),
        median(&mut t),
        median(&mut ratio)
    );
}

criterion_group!(benches, bench);

fn main() {
    if std::env::args().any(|a| a == "--interleaved") {
        interleaved();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
