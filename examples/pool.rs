//! Concurrent workers over a [`Pool`]: four connections to one server, sixteen workers making
//! calls through it round-robin, and the pool's statistics at the end.
//!
//! ```text
//! cargo run --example pool
//! ```

use std::time::Duration;

use iproto::{Channel, Packet, Pool, PoolConfig, Server};
use tokio::task::JoinSet;

#[tokio::main]
async fn main() -> Result<(), iproto::Error> {
    // A server that doubles the u32 it receives (go-iproto's TestListenDial).
    let server = Server::bind("127.0.0.1:0").await?;
    let addr = server.local_addr().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_with_shutdown(
        |packet: Packet, _channel: Channel| async move {
            // A body that is no u32 is answered with an empty body, which the caller cannot
            // decode as a u32 either: it fails at once instead of waiting for its timeout.
            let Ok(n) = iproto::unpack_exact::<u32>(&packet.body) else {
                return iproto::bytes::Bytes::new();
            };
            iproto::bytes::Bytes::from(iproto::pack(&n.wrapping_mul(2)).expect("a u32 always packs"))
        },
        async {
            let _ = stopped.await;
        },
    ));

    // Four connections, all dialed up front; a dead one is redialed in the background.
    let config = PoolConfig { size: 4, connect_timeout: Duration::from_secs(2), ..PoolConfig::default() };
    let pool = Pool::dial(&addr, config).await?;
    pool.init_all().await?;

    let mut workers = JoinSet::new();
    for worker in 0..16u32 {
        let pool = pool.clone();
        workers.spawn(async move {
            for i in 0..100u32 {
                let n = worker * 1000 + i;
                let body = iproto::pack(&n).expect("a u32 always packs");
                let reply = pool.call(n % 7, &body).await?;
                let doubled: u32 = iproto::unpack_exact(&reply)?;
                assert_eq!(doubled, n * 2, "reply matched to its call");
            }
            Ok::<_, iproto::Error>(())
        });
    }
    while let Some(done) = workers.join_next().await {
        done.expect("worker panicked")?;
    }

    let stats = pool.stats();
    println!(
        "{} calls over {} connections ({} dials, {} dial errors)",
        stats.channels.calls, stats.online, stats.dial_count, stats.dial_errors
    );
    assert_eq!(stats.channels.calls, 1600);

    pool.shutdown().await;
    let _ = stop.send(());
    serving.await.expect("server task")?;
    Ok(())
}
