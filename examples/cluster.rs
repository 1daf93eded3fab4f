//! One client over three servers: keyed calls placed by MR::IProto's ketama, unkeyed calls in
//! round-robin, and one server stopped and started again while calls keep succeeding.
//!
//! ```text
//! cargo run --example cluster
//! ```

use std::time::Duration;

use bytes::Bytes;
use iproto::cluster::{Balance, Cluster, ClusterConfig, MemberState, ServerList};
use iproto::{CallOptions, Channel, Packet, Sender, Server};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A server that answers `NAME|body`, until told to stop.
async fn start(name: &'static str, addr: &str) -> Result<(String, oneshot::Sender<()>, JoinHandle<()>), iproto::Error> {
    let server = Server::bind(addr).await?;
    let addr = server.local_addr().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let handler =
        move |p: Packet, _ch: Channel| async move { Some(Bytes::from([name.as_bytes(), b"|", &p.body[..]].concat())) };
    let task = tokio::spawn(async move {
        let _ = server.serve_with_shutdown(handler, async { drop(stopped.await) }).await;
    });
    Ok((addr, stop, task))
}

fn who(reply: &[u8]) -> String {
    String::from_utf8_lossy(reply.split(|&b| b == b'|').next().unwrap_or_default()).into_owned()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut servers = Vec::new();
    for name in ["a", "b", "c"] {
        servers.push(start(name, "127.0.0.1:0").await?);
    }
    // MR::IProto's list form; "b" has weight 2 (ketama ignores weights, as MR::IProto does).
    let list: ServerList = format!("{},{}:2,{}", servers[0].0, servers[1].0, servers[2].0).parse()?;
    println!("servers: {list}");
    let config = ClusterConfig {
        balance: Balance::Ketama,
        probe_interval: Duration::from_millis(20),
        max_probe_interval: Duration::from_millis(200),
        ..Default::default()
    };
    let keyed = Cluster::connect(list.clone(), config.clone()).await?;
    let unkeyed = Cluster::connect(list, ClusterConfig { balance: Balance::RoundRobin, ..config }).await?;

    // Keyed: each key always reaches the server MR::IProto's ketama places it on.
    for key in ["user:1", "user:2", "user:3", "user:42"] {
        let reply = keyed.by_key(key.as_bytes()).call(1, b"get").await?;
        println!("key {key:8} -> server {} (placed on {})", who(&reply), keyed.server_for(Some(key.as_bytes()))?);
    }
    // Unkeyed: rotation, each server in turn (weights honoured).
    let mut turns = Vec::new();
    for _ in 0..8 {
        turns.push(who(&unkeyed.call(1, b"x").await?));
    }
    println!("round-robin turns: {}", turns.join(" "));

    // Stop "b": calls keep succeeding on the others; idempotent ones may be retried there.
    let (b_addr, stop, task) = servers.remove(1);
    let _ = stop.send(());
    task.await?;
    println!("stopped b at {b_addr}");
    let opts = CallOptions::timeout(Duration::from_secs(2)).idempotent();
    for i in 0..20 {
        let key = format!("user:{i}");
        keyed.by_key(key.as_bytes()).call_with(1, b"get", opts).await?;
        unkeyed.call_with(1, b"x", opts).await?;
    }
    println!("20 keyed and 20 unkeyed calls succeeded with b down: {:?}", unkeyed.stats().servers[1].state);

    // Start "b" again on its address: the background probe brings it back.
    let (_, _stop_b, _task_b) = start("b", &b_addr).await?;
    let back = async {
        while unkeyed.stats().servers[1].state != MemberState::Up || keyed.stats().servers[1].state != MemberState::Up {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), back).await.map_err(|_| "b did not come back within 5 s")?;
    let mut turns = Vec::new();
    for _ in 0..4 {
        turns.push(who(&unkeyed.call(1, b"x").await?));
    }
    println!("b is back: round-robin turns {}", turns.join(" "));

    for s in unkeyed.stats().servers {
        println!("  {}: {:?}, {} calls, {} errors, down {} time(s)", s.server, s.state, s.calls, s.errors, s.downs);
    }
    keyed.shutdown().await;
    unkeyed.shutdown().await;
    Ok(())
}
