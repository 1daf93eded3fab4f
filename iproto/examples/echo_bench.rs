//! Loopback echo benchmark of Channel + Server, in the shape of the lean yardstick
//! (`raw-server` / `raw-bench`), so the two can be run side by side:
//!
//! ```sh
//! cargo run --release -p mr-iproto --example echo_bench -- --serve 127.0.0.1:34002
//! cargo run --release -p mr-iproto --example echo_bench -- --addr 127.0.0.1:34002 --conns 1 --concurrency 64
//! ```
//! Prints one JSON line: calls, calls_per_sec, p50_us, p99_us, errors.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use iproto::{Channel, ChannelConfig, Packet, Server};

struct Args {
    addr: Option<String>,
    serve: Option<String>,
    conns: usize,
    concurrency: usize,
    size: usize,
    duration: f64,
    write_queue: Option<usize>,
}

fn parse_args() -> Args {
    let mut a = Args { addr: None, serve: None, conns: 1, concurrency: 64, size: 32, duration: 5.0, write_queue: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => a.addr = Some(value()),
            "--serve" => a.serve = Some(value()),
            "--conns" => a.conns = value().parse().expect("--conns"),
            "--concurrency" => a.concurrency = value().parse().expect("--concurrency"),
            "--size" => a.size = value().parse().expect("--size"),
            "--duration" => a.duration = value().parse().expect("--duration"),
            "--write-queue" => a.write_queue = Some(value().parse().expect("--write-queue")),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

async fn serve(addr: &str) -> String {
    let server = Server::bind(addr).await.expect("bind");
    let local = server.local_addr().to_string();
    tokio::spawn(server.serve(|p: Packet, _ch: Channel| async move { Some(p.body) }));
    local
}

fn main() {
    let a = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async move {
        if let Some(addr) = &a.serve {
            let local = serve(addr).await;
            eprintln!("listening on {local}");
            std::future::pending::<()>().await;
        }
        let addr = match &a.addr {
            Some(addr) => addr.clone(),
            None => serve("127.0.0.1:0").await,
        };
        let mut config = ChannelConfig { ping_interval: None, ..ChannelConfig::client() };
        if let Some(q) = a.write_queue {
            config.write_queue = q;
        }
        let mut conns = Vec::new();
        for _ in 0..a.conns {
            conns.push(Channel::connect(&addr, config.clone()).await.expect("connect"));
        }
        let deadline = Instant::now() + Duration::from_secs_f64(a.duration);
        let mut tasks = Vec::new();
        for id in 0..a.concurrency {
            let ch = conns[id % conns.len()].clone();
            let size = a.size;
            tasks.push(tokio::spawn(async move {
                let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("hist");
                let mut body: Vec<u8> = (0..size).map(|i| (id * 31 + i * 7) as u8).collect();
                let (mut calls, mut errors) = (0u64, 0u64);
                let mut n = 0u32;
                loop {
                    let t0 = Instant::now();
                    if t0 >= deadline {
                        break;
                    }
                    n = n.wrapping_add(1);
                    if size >= 8 {
                        body[..4].copy_from_slice(&(id as u32).to_le_bytes());
                        body[4..8].copy_from_slice(&n.to_le_bytes());
                    }
                    match ch.call(1, &body).await {
                        Ok(reply) if reply[..] == body[..] => {
                            calls += 1;
                            let _ = hist.record((t0.elapsed().as_nanos() as u64).max(1));
                        }
                        _ => errors += 1,
                    }
                }
                (hist, calls, errors)
            }));
        }
        let started = Instant::now();
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("hist");
        let (mut calls, mut errors) = (0u64, 0u64);
        for t in tasks {
            let (h, c, e) = t.await.expect("caller");
            hist.add(h).expect("merge");
            calls += c;
            errors += e;
        }
        let secs = started.elapsed().as_secs_f64();
        let writes: u64 = conns.iter().map(|c| c.stats().writes).sum();
        println!(
            "{{\"calls\":{calls},\"calls_per_sec\":{:.0},\"p50_us\":{:.1},\"p99_us\":{:.1},\"errors\":{errors},\"calls_per_write\":{:.1}}}",
            calls as f64 / secs,
            hist.value_at_quantile(0.5) as f64 / 1000.0,
            hist.value_at_quantile(0.99) as f64 / 1000.0,
            calls as f64 / writes.max(1) as f64,
        );
    });
}
