//! Closed-loop echo benchmark of [`iproto::Pool`] against [`iproto::Server`] in the same
//! process (each on its own 2-worker runtime, as the lean yardstick pair runs as two
//! processes), or against any server with `--addr`. Prints one JSON line like `raw-bench`.
//!
//! ```text
//! cargo run --release -p mr-iproto --example pool_bench -- --conns 4 --concurrency 256 --size 32 --duration 5
//! ```

use std::time::{Duration, Instant};

use bytes::Bytes;
use iproto::pool::{Pool, PoolConfig};
use iproto::{Channel, Packet, Server};

struct Args {
    addr: Option<String>,
    listen: Option<String>,
    /// Run the server's handlers on the reader task (not the default), for comparison.
    /// Call the pool's channels directly, round-robin, to see what the pool itself costs.
    direct: bool,
    /// go-iproto's strict per-call round-robin instead of the batching pick.
    strict: bool,
    write_queue: Option<usize>,
    conns: usize,
    concurrency: usize,
    size: usize,
    duration: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: None,
        listen: None,
        direct: false,
        strict: false,
        write_queue: None,
        conns: 4,
        concurrency: 256,
        size: 32,
        duration: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--direct" => {
                args.direct = true;
                continue;
            }
            "--strict-round-robin" => {
                args.strict = true;
                continue;
            }
            _ => {}
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || value.parse::<u64>().map_err(|e| format!("{flag} {value}: {e}"));
        match flag.as_str() {
            "--addr" => args.addr = Some(value.clone()),
            "--listen" => args.listen = Some(value.clone()),
            "--conns" => args.conns = number()? as usize,
            "--write-queue" => args.write_queue = Some(number()? as usize),
            "--concurrency" => args.concurrency = number()? as usize,
            "--size" => args.size = number()? as usize,
            "--duration" => args.duration = number()?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(args)
}

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(2);
        }
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}\nusage: pool_bench [--addr HOST:PORT | --listen HOST:PORT] [--direct] [--strict-round-robin] [--write-queue N] --conns N --concurrency C --size BYTES --duration SECS");
            std::process::exit(2);
        }
    };
    // The in-process server, default configuration, on its own runtime.
    let server_rt = runtime();
    let addr = match &args.addr {
        Some(a) => a.clone(),
        None => server_rt.block_on(async {
            let config = iproto::ServerConfig::default();
            let server = match Server::bind_with(args.listen.as_deref().unwrap_or("127.0.0.1:0"), config).await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("bind: {e}");
                    std::process::exit(2);
                }
            };
            let addr = server.local_addr().to_string();
            tokio::spawn(server.serve(|p: Packet, _ch: Channel| async move { Some(p.body) }));
            addr
        }),
    };
    if args.listen.is_some() {
        // Server only, for an outside client such as raw-bench.
        eprintln!("listening on {addr}");
        server_rt.block_on(std::future::pending::<()>());
    }
    let code = runtime().block_on(run(&args, &addr));
    std::process::exit(code);
}

async fn run(args: &Args, addr: &str) -> i32 {
    let mut config = PoolConfig { size: args.conns, ..Default::default() };
    if let Some(q) = args.write_queue {
        config.channel.write_queue = q;
    }
    config.strict_round_robin = args.strict;
    let pool = match Pool::dial(addr, config).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("dial {addr}: {e}");
            return 2;
        }
    };
    if let Err(e) = pool.init_all().await {
        eprintln!("init_all {addr}: {e}");
        return 2;
    }
    let body = Bytes::from(vec![0x5a; args.size]);
    let channels: std::sync::Arc<[Channel]> = pool.online().into();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let direct = args.direct;
    let start = Instant::now();
    let end = start + Duration::from_secs(args.duration);
    let callers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let pool = pool.clone();
            let body = body.clone();
            let (channels, next) = (channels.clone(), next.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(64 * 1024);
                let mut errors = 0u64;
                let mut t = Instant::now();
                while t < end {
                    let reply = if direct {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % channels.len();
                        channels[i].call(1, &body).await
                    } else {
                        pool.call(1, &body).await
                    };
                    let now = Instant::now();
                    match reply {
                        Ok(reply) if reply == body => latencies.push((now - t).as_micros() as u32),
                        _ => errors += 1,
                    }
                    t = now;
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for caller in callers {
        match caller.await {
            Ok((l, e)) => {
                latencies.extend(l);
                errors += e;
            }
            Err(_) => errors += 1,
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)));
    let stats = pool.stats();
    let calls = latencies.len();
    println!(
        "{{\"calls\":{calls},\"calls_per_sec\":{:.0},\"p50_us\":{},\"p99_us\":{},\"errors\":{errors},\"conns\":{},\
\"concurrency\":{},\"size\":{},\"elapsed_s\":{elapsed:.3},\"calls_per_write\":{:.2},\"addr\":\"{addr}\"}}",
        calls as f64 / elapsed,
        pct(0.5).copied().unwrap_or(0),
        pct(0.99).copied().unwrap_or(0),
        args.conns,
        args.concurrency,
        args.size,
        stats.channels.packets_sent as f64 / stats.channels.writes.max(1) as f64,
    );
    pool.close().await;
    i32::from(errors > 0)
}
