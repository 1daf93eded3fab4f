//! Typed calls (`#[service]` client and server, `Result` envelope) against raw `call` with
//! hand-packed bytes and a hand-written handler, same payload and bytes on the wire, 64
//! concurrent callers on one TCP connection. Target: the typed layer adds at most 5% per call.
//!
//! Client and server run on runtimes of their own (two workers each), as they do in two
//! processes. `RPC_BENCH_SHARED=1` puts both on one two-worker runtime: there the server's
//! reader, which handles a read's requests one after the other, competes with the callers for
//! the same two threads, so server-side costs weigh about twice as much.
//!
//! `cargo bench -p mr-iproto --bench rpc -- --warm-up-time 1 --measurement-time 5`, or
//! `-- --interleaved` for alternating rounds with wall and CPU time per call (the number to
//! quote). `RPC_BENCH_SIDE` changes what the "typed" slot runs, to split the overhead:
//! `client` (typed client, hand-written handler), `server` (hand-packed calls, typed handler),
//! `server-codec` (a hand-written handler using the derived codec), `client-enc` /
//! `client-dec` (one half of the typed client), `raw-stack` (raw calls packed on the stack,
//! no allocation), `aa` (raw in both slots: the bench's own bias).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use criterion::{criterion_group, Criterion};
use iproto::rpc::RemoteError;
use iproto::{Channel, ChannelConfig, IprotoPack, IprotoUnpack, Packet, ServeMux, Server};

mod support;

const CALLERS: u64 = 64;
const MSG: u32 = 0x10;
/// The hand-written handler's code.
const RAW_MSG: u32 = 0x11;
/// A hand-written handler that decodes and packs with the derived codec.
const CODEC_MSG: u32 = 0x12;

async fn codec_handler(p: Packet, _ch: Channel) -> Option<Bytes> {
    let req: Echo = iproto::Reader::from_bytes(&p.body).read_exact(iproto::Mode::Fixed).ok()?;
    let reply: Result<Echo, RemoteError> = Ok(req);
    let mut out = BytesMut::with_capacity(iproto::IprotoPack::size_hint(&reply, iproto::Mode::Fixed));
    iproto::IprotoPack::pack(&reply, &mut out, iproto::Mode::Fixed).ok()?;
    Some(out.freeze())
}
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

/// Asserts that a hand-parsed reply echoes call `id`.
#[inline]
fn check_reply(reply: &Bytes, id: u64) {
    let (back, name) = parse_reply(reply).expect("reply");
    assert_eq!((back, name.len()), (id, NAME.len()));
}

/// Asserts that a decoded reply echoes call `id`.
#[inline]
fn check_echo(back: &Echo, id: u64) {
    assert_eq!((back.id, back.name.len()), (id, NAME.len()));
}

type RawFut = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
type TypedFut = RawFut;

/// Starts serving `mux` on `rt`; returns the address.
fn serve(rt: &tokio::runtime::Runtime, mux: ServeMux) -> String {
    rt.block_on(async {
        let server = Server::bind("127.0.0.1:0").await.expect("bind");
        let addr = server.local_addr().to_string();
        tokio::spawn(server.serve(mux));
        addr
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
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

/// The two callers under test, on one connection to one server.
struct Pair<R, T> {
    rt: tokio::runtime::Runtime,
    /// The server's own runtime (none with `RPC_BENCH_SHARED`), kept alive with the pair.
    _server_rt: Option<tokio::runtime::Runtime>,
    raw: Arc<R>,
    typed: Arc<T>,
}

/// What the "typed" slot runs (`RPC_BENCH_SIDE`, see the module docs).
#[derive(Clone, Copy)]
enum Side {
    /// The generated client against the typed service.
    Typed,
    /// Hand-packed calls to this message code: `aa` (the hand-written handler), `server`
    /// (the typed service), `server-codec` (a handler using the derived codec).
    HandPacked(u32),
    /// `raw-stack`, `client-enc`, `client-dec`, `client`: see the module docs.
    RawStack,
    ClientEnc,
    ClientDec,
    Client,
}

impl Side {
    fn from_env() -> Side {
        match std::env::var("RPC_BENCH_SIDE").unwrap_or_default().as_str() {
            "aa" => Side::HandPacked(RAW_MSG),
            "server" => Side::HandPacked(MSG),
            "server-codec" => Side::HandPacked(CODEC_MSG),
            "raw-stack" => Side::RawStack,
            "client-enc" => Side::ClientEnc,
            "client-dec" => Side::ClientDec,
            "client" => Side::Client,
            "" => Side::Typed,
            other => panic!("unknown RPC_BENCH_SIDE {other:?} (see the module docs)"),
        }
    }
}

fn setup() -> Pair<impl Fn(u64) -> RawFut + Send + Sync + 'static, impl Fn(u64) -> TypedFut + Send + Sync + 'static> {
    let rt = runtime();
    let server_rt = std::env::var_os("RPC_BENCH_SHARED").is_none().then(runtime);
    // One server and one connection for both, so that neither gets the better thread or
    // connection: the typed service answers MSG, the hand-written handler RAW_MSG.
    let mut mux = BenchServer::new(Impl).into_mux();
    mux.handle(RAW_MSG, raw_handler).expect("route");
    mux.handle(CODEC_MSG, codec_handler).expect("route");
    let addr = serve(server_rt.as_ref().unwrap_or(&rt), mux);
    let channel = rt.block_on(Channel::connect(&addr, ChannelConfig::client())).expect("connect");
    // Parsed once: a string match per call would cost the typed slot alone.
    let side = Side::from_env();
    let raw = channel.clone();
    let raw_call = Arc::new(move |id: u64| -> RawFut {
        let ch = raw.clone();
        Box::pin(async move {
            let reply = ch.call(RAW_MSG, &pack_request(id, NAME)).await.expect("call");
            check_reply(&reply, id);
        })
    });
    let typed = BenchClient::new(channel);
    let typed_call = Arc::new(move |id: u64| -> TypedFut {
        let kv = typed.clone();
        match side {
            Side::HandPacked(msg) => Box::pin(async move {
                let reply = kv.sender().call(msg, &pack_request(id, NAME)).await.expect("call");
                check_reply(&reply, id);
            }),
            Side::RawStack => Box::pin(async move {
                let mut body = [0u8; 44];
                body[..8].copy_from_slice(&id.to_le_bytes());
                body[8..12].copy_from_slice(&(NAME.len() as u32).to_le_bytes());
                body[12..].copy_from_slice(NAME);
                let reply = kv.sender().call(RAW_MSG, &body).await.expect("call");
                check_reply(&reply, id);
            }),
            Side::ClientEnc => Box::pin(async move {
                let body = iproto::pack(&Echo { id, name: Bytes::from_static(NAME) }).expect("pack");
                let reply = kv.sender().call(RAW_MSG, &body).await.expect("call");
                check_reply(&reply, id);
            }),
            Side::ClientDec => Box::pin(async move {
                let reply = kv.sender().call(RAW_MSG, &pack_request(id, NAME)).await.expect("call");
                let back: Echo = iproto::rpc::flatten::<Echo, RemoteError>(iproto::rpc::decode_reply(RAW_MSG, &reply))
                    .expect("reply");
                check_echo(&back, id);
            }),
            Side::Client => Box::pin(async move {
                let req = Echo { id, name: Bytes::from_static(NAME) };
                let back = iproto::rpc::call_flat::<_, Echo, Echo, RemoteError>(
                    kv.sender(),
                    RAW_MSG,
                    &req,
                    Default::default(),
                )
                .await
                .expect("call");
                check_echo(&back, id);
            }),
            Side::Typed => Box::pin(async move {
                let back = kv.echo(&Echo { id, name: Bytes::from_static(NAME) }).await.expect("call");
                check_echo(&back, id);
            }),
        }
    });
    Pair { rt, _server_rt: server_rt, raw: raw_call, typed: typed_call }
}

fn bench(c: &mut Criterion) {
    let Pair { rt, _server_rt: _server, raw, typed } = setup();
    let mut g = c.benchmark_group("rpc_64_callers");
    g.bench_function("raw_call", |b| b.iter_custom(|iters| rt.block_on(run(iters, raw.clone()))));
    g.bench_function("typed_call", |b| b.iter_custom(|iters| rt.block_on(run(iters, typed.clone()))));
    g.finish();
}

/// The machine is shared, so sequential criterion runs drift more than 5%: this runs short
/// raw and typed rounds alternately and reports medians of wall time and of CPU time (client
/// and server together) per call, and the median per-round ratios.
fn interleaved() {
    const CALLS: u64 = 64 * 400;
    // RPC_BENCH_ROUNDS: fewer rounds, e.g. under callgrind.
    let rounds = std::env::var("RPC_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(61);
    let Pair { rt, _server_rt: _server, raw, typed } = setup();
    let m = support::interleave(
        rounds,
        CALLS,
        || rt.block_on(run(CALLS, raw.clone())),
        || rt.block_on(run(CALLS, typed.clone())),
    );
    println!("{}", m.line(rounds, CALLS, "raw", "typed"));
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
