//! Handlers that answer at once (`Handler::reply_now`, `iproto::immediate`): replies in order
//! and matched by sync, no reply when asked, a panic caught without harm to the connection,
//! and a handler that declines falls back to its future.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iproto::{CallOptions, Channel, ChannelConfig, Error, Handler, Packet, ServerConfig};

#[path = "../../tests/support/fixtures.rs"]
mod fixtures;
use fixtures::{within, Running};

async fn client(server: &Running) -> Channel {
    Channel::connect(&server.addr, ChannelConfig::client()).await.expect("connect")
}

#[tokio::test]
async fn immediate_handler_answers_every_caller_with_its_own_reply() {
    let server = Running::start(
        ServerConfig::default(),
        iproto::immediate(|p: Packet| {
            let mut reply = p.body.to_vec();
            reply.reverse();
            Some(Bytes::from(reply))
        }),
    )
    .await;
    let ch = client(&server).await;
    let calls = (0..64u32).map(|i| {
        let ch = ch.clone();
        async move {
            let body = format!("caller {i:02} says hello");
            let reply = ch.call(7, body.as_bytes()).await.expect("reply");
            let mut expected = body.into_bytes();
            expected.reverse();
            assert_eq!(&reply[..], &expected[..], "caller {i}");
        }
    });
    within("64 immediate calls", futures_util::future::join_all(calls)).await;
    server.stop().await;
}

#[tokio::test]
async fn immediate_panic_is_caught_and_the_connection_goes_on() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let client = Channel::new(a, ChannelConfig { ping_interval: None, ..ChannelConfig::client() });
    let server = Channel::new(
        b,
        ChannelConfig::server().with_handler(iproto::immediate(|p: Packet| {
            assert_ne!(&p.body[..], b"boom", "handler bug");
            p.body
        })),
    );
    let boom = client.call_with(1, b"boom", CallOptions::timeout(Duration::from_millis(200))).await;
    assert!(matches!(boom, Err(Error::Timeout { .. })), "a panic sends no reply: {boom:?}");
    assert_eq!(&client.call(1, b"fine").await.expect("the connection goes on")[..], b"fine");
    assert_eq!(server.stats().handler_panics, 1);
    assert_eq!(server.stats().requests, 2);
    assert!(!server.is_closed());
}

/// Answers at once only bodies starting with `now:`; the others go through its future, which
/// counts them.
struct Picky {
    futures: Arc<AtomicUsize>,
}

impl Handler for Picky {
    type Reply = Option<Bytes>;

    fn handle(&self, packet: Packet, _channel: Channel) -> impl Future<Output = Option<Bytes>> + Send {
        let futures = self.futures.clone();
        async move {
            futures.fetch_add(1, SeqCst);
            tokio::task::yield_now().await; // a real wait: the reply comes from a task
            (&packet.body[..] != b"none").then(|| Bytes::from([&b"later:"[..], &packet.body[..]].concat()))
        }
    }

    fn reply_now(&self, packet: Packet) -> Result<Option<Bytes>, Packet> {
        match packet.body.strip_prefix(b"now:") {
            Some(rest) if rest == b"none" => Ok(None),
            Some(_) => Ok(Some(packet.body)),
            None => Err(packet),
        }
    }
}

#[tokio::test]
async fn a_handler_that_declines_to_answer_now_is_run_as_a_future() {
    let futures = Arc::new(AtomicUsize::new(0));
    let server = Running::start(ServerConfig::default(), Picky { futures: futures.clone() }).await;
    let ch = client(&server).await;
    assert_eq!(&ch.call(1, b"now:fast").await.unwrap()[..], b"now:fast");
    assert_eq!(&ch.call(1, b"slow").await.unwrap()[..], b"later:slow");
    let short = CallOptions::timeout(Duration::from_millis(100));
    assert!(matches!(ch.call_with(1, b"now:none", short).await, Err(Error::Timeout { .. })), "no reply asked");
    assert_eq!(&ch.call(1, b"after").await.unwrap()[..], b"later:after");
    assert_eq!(futures.load(SeqCst), 2, "only the declined requests built a future");
    server.stop().await;
}
