//! The cluster layer's cost per call: the same 32-byte echo calls through one [`Pool`] and
//! through a [`Cluster`] of that one server (same pool config: 4 connections), 256 concurrent
//! callers, client and server in this process on two worker threads. Target: the cluster
//! adds at most 5% per call.
//!
//! `cargo bench -p mr-iproto --bench cluster -- --interleaved` (the number to quote:
//! alternating rounds, medians of wall and CPU time per call and of the ratio), or without
//! the flag for criterion's own runs. `CLUSTER_BENCH_BALANCE=ketama` (or any `--balance`
//! name) measures a keyed mode with a fresh random key per call.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use iproto::cluster::{Balance, Cluster, ClusterConfig};
use iproto::{Channel, Packet, Pool, Sender, Server};

mod support;

const CALLERS: u64 = 256;
const CONNS: usize = 4;
const MSG: u32 = 7;
const BODY: &[u8] = b"a thirty-two byte payload string";

type CallFut = Pin<Box<dyn Future<Output = ()> + Send>>;
type Call = Arc<dyn Fn() -> CallFut + Send + Sync>;

/// Runs `iters` calls split over the callers; returns the wall time.
async fn run(iters: u64, call: Call) -> Duration {
    let per = iters.div_ceil(CALLERS);
    let start = Instant::now();
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let call = call.clone();
            tokio::spawn(async move {
                for _ in 0..per {
                    call().await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("caller");
    }
    start.elapsed().mul_f64(iters as f64 / (per * CALLERS) as f64)
}

struct Setup {
    rt: tokio::runtime::Runtime,
    pool: Call,
    cluster: Call,
}

fn setup() -> Setup {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let balance: Balance = std::env::var("CLUSTER_BENCH_BALANCE")
        .unwrap_or_else(|_| "round-robin".into())
        .parse()
        .expect("CLUSTER_BENCH_BALANCE");
    let keyed = balance.is_keyed();
    let (pool, cluster) = rt.block_on(async {
        let server = Server::bind("127.0.0.1:0").await.expect("bind");
        let addr = server.local_addr().to_string();
        tokio::spawn(server.serve(|p: Packet, _ch: Channel| async move { Some(p.body) }));
        // The cluster's own pool config, for both.
        let config = ClusterConfig { balance, ..Default::default() };
        let config = ClusterConfig { pool: iproto::PoolConfig { size: CONNS, ..config.pool }, ..config };
        let pool = Pool::new(&addr, config.pool.clone()).expect("pool");
        pool.init().await.expect("pool online");
        let cluster = Cluster::connect(addr.parse().expect("list"), config).await.expect("cluster");
        (pool, cluster)
    });
    let pool: Call = Arc::new(move || -> CallFut {
        let pool = pool.clone();
        Box::pin(async move {
            let reply = pool.call(MSG, BODY).await.expect("pool call");
            assert_eq!(reply.len(), BODY.len());
        })
    });
    let cluster: Call = Arc::new(move || -> CallFut {
        let cluster = cluster.clone();
        Box::pin(async move {
            let reply = if keyed {
                let key = fastrand::u64(..).to_le_bytes();
                cluster.by_key(&key).call(MSG, BODY).await
            } else {
                cluster.call(MSG, BODY).await
            };
            assert_eq!(reply.expect("cluster call").len(), BODY.len());
        })
    });
    Setup { rt, pool, cluster }
}

fn bench(c: &mut Criterion) {
    let Setup { rt, pool, cluster } = setup();
    let mut g = c.benchmark_group("cluster_256_callers");
    g.bench_function("pool", |b| b.iter_custom(|iters| rt.block_on(run(iters, pool.clone()))));
    g.bench_function("cluster_of_one", |b| b.iter_custom(|iters| rt.block_on(run(iters, cluster.clone()))));
    g.finish();
}

fn interleaved() {
    const ROUNDS: usize = 41;
    const CALLS: u64 = CALLERS * 200;
    let Setup { rt, pool, cluster } = setup();
    let m = support::interleave(
        ROUNDS,
        CALLS,
        || rt.block_on(run(CALLS, pool.clone())),
        || rt.block_on(run(CALLS, cluster.clone())),
    );
    println!("{}", m.line(ROUNDS, CALLS, "pool", "cluster"));
}

criterion_group!(benches, bench);

/// `--only pool|cluster`: rounds of one variant, for profiling it alone.
fn only(which: &str) {
    let Setup { rt, pool, cluster } = setup();
    let call = if which == "pool" { pool } else { cluster };
    let start = Instant::now();
    let calls = CALLERS * 200 * 40;
    rt.block_on(run(calls, call));
    println!("{which}: {:.0} ns/call", start.elapsed().as_secs_f64() * 1e9 / calls as f64);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--only") {
        only(args.get(i + 1).map_or("cluster", String::as_str));
        return;
    }
    if args.iter().any(|a| a == "--interleaved") {
        interleaved();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
