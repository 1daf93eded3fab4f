//! An echo server and its client in one process: bind a [`Server`] on a free port, call it
//! from a [`Channel`] (one by one, then concurrently), ping it, and shut both down gracefully.
//!
//! ```text
//! cargo run --example echo
//! ```

use iproto::{Channel, ChannelConfig, Packet, Server};
use tokio::task::JoinSet;

#[tokio::main]
async fn main() -> Result<(), iproto::Error> {
    // The server: every request is answered with its own body.
    let server = Server::bind("127.0.0.1:0").await?;
    let addr = server.local_addr().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_with_shutdown(
        |packet: Packet, _channel: Channel| async move { Some(packet.body) },
        async {
            let _ = stopped.await;
        },
    ));
    println!("echo server listening on {addr}");

    // The client: one connection, shared by every caller (a Channel is a cheap handle).
    let client = Channel::connect(&addr, ChannelConfig::client()).await?;
    for text in ["hello", "iproto", ""] {
        let reply = client.call(1, text.as_bytes()).await?;
        println!("call(1, {text:?}) -> {:?}", String::from_utf8_lossy(&reply));
        assert_eq!(reply, text.as_bytes());
    }

    // Concurrent calls are multiplexed over the one connection and matched by sync.
    let mut calls = JoinSet::new();
    for i in 0..100u32 {
        let client = client.clone();
        calls.spawn(async move {
            let body = i.to_le_bytes();
            let reply = client.call(2, &body).await?;
            assert_eq!(reply, &body[..]);
            Ok::<_, iproto::Error>(())
        });
    }
    while let Some(done) = calls.join_next().await {
        done.expect("caller panicked")?;
    }
    println!("100 concurrent calls answered; round trip of a ping: {:?}", client.ping().await?);

    // Graceful shutdown: the client first, then the server (which would otherwise send 0xff01).
    client.shutdown().await;
    let _ = stop.send(());
    serving.await.expect("server task panicked")?;
    println!("stats: {:?}", client.stats());
    Ok(())
}
