//! Memory per idle connection: opens N connections to an in-process server (so each counts
//! twice: a client channel and a server channel), lets them settle after one call each, and
//! prints the growth of resident memory per connection pair. Linux only (reads /proc).
//!
//! ```sh
//! cargo run --release -p mr-iproto --example idle_memory -- 2000
//! ```

use iproto::{Channel, ChannelConfig, Packet, Server};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async move {
        let server = Server::bind("127.0.0.1:0").await.expect("bind");
        let addr = server.local_addr().to_string();
        tokio::spawn(server.serve(|p: Packet, _ch: Channel| async move { Some(p.body) }));
        let config = ChannelConfig { ping_interval: None, ..ChannelConfig::client() };
        // Warm up the allocator and runtime with a few connections first.
        let mut warm = Vec::new();
        for _ in 0..16 {
            let ch = Channel::connect(&addr, config.clone()).await.expect("connect");
            ch.call(1, &[0u8; 32]).await.expect("call");
            warm.push(ch);
        }
        let before = rss_kib();
        let mut conns = Vec::with_capacity(n);
        for _ in 0..n {
            let ch = Channel::connect(&addr, config.clone()).await.expect("connect");
            ch.call(1, &[0u8; 32]).await.expect("call");
            conns.push(ch);
        }
        let after = rss_kib();
        let per_pair = (after.saturating_sub(before)) as f64 / n as f64;
        println!(
            "{{\"connections\":{n},\"rss_before_kib\":{before},\"rss_after_kib\":{after},\"kib_per_connection_pair\":{per_pair:.2},\"kib_per_channel\":{:.2}}}",
            per_pair / 2.0
        );
    });
}
