//! A channel's life cycle: the init hook, the shutdown and close callbacks and their order
//! around the 0xff01 exchange (docs/protocol.md, "Shutdown"), the cancellation tokens handlers
//! see, and the handshake's corner cases (both sides at once, a 0xff01 with a body). Channels
//! run over in-memory pipes on tokio's paused clock unless a test needs real sockets.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use iproto::channel::BoxError;
use iproto::{Channel, ChannelConfig, Error, Header, Packet, Server, ServerConfig, MSG_SHUTDOWN};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

/// Awaits `f`, failing with `what` if it takes longer than 30 s (of the paused clock or of
/// real time).
async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// An ordered record of life-cycle events, shared by callbacks on both sides.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, event: impl Into<String>) {
        self.0.lock().unwrap().push(event.into());
    }

    fn events(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// A callback that records `event`.
    fn callback(&self, event: &'static str) -> impl Fn(Channel) -> std::future::Ready<()> + Send + Sync + 'static {
        let log = self.clone();
        move |_ch| {
            log.push(event);
            std::future::ready(())
        }
    }
}

fn echo_config() -> ChannelConfig {
    ChannelConfig::server().with_handler(|p: Packet, _ch: Channel| async move { Some(p.body) })
}

/// Two channels over an in-memory pipe: (client, server).
fn pair(client: ChannelConfig, server: ChannelConfig) -> (Channel, Channel) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    (Channel::new(a, client), Channel::new(b, server))
}

/// The raw other end of a channel.
struct Peer(DuplexStream);

impl Peer {
    /// The next packet, or `None` at EOF.
    async fn read(&mut self) -> Option<Packet> {
        let mut head = [0u8; 12];
        self.0.read_exact(&mut head).await.ok()?;
        let header = Header::from_bytes(&head);
        let mut body = vec![0u8; header.len as usize];
        self.0.read_exact(&mut body).await.ok()?;
        Some(Packet { header, body: body.into() })
    }

    async fn write(&mut self, msg: u32, sync: u32, body: &[u8]) {
        let mut out = Header { msg, len: body.len() as u32, sync }.to_bytes().to_vec();
        out.extend_from_slice(body);
        self.0.write_all(&out).await.expect("peer write");
    }
}

fn raw(config: ChannelConfig) -> (Channel, Peer) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    (Channel::new(a, config), Peer(b))
}

// ---- init hook ----------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn init_hook_makes_a_call_before_the_channel_is_handed_out() {
    let log = Log::default();
    let seen = log.clone();
    let server = ChannelConfig::server().with_handler(move |p: Packet, _ch: Channel| {
        seen.push(format!("request {}", String::from_utf8_lossy(&p.body)));
        async move { Some(Bytes::from_static(b"welcome")) }
    });
    let hook_log = log.clone();
    let client = ChannelConfig::client().with_init(move |ch: Channel| {
        let log = hook_log.clone();
        async move {
            let reply = ch.call(1, b"login").await?;
            log.push(format!("init got {}", String::from_utf8_lossy(&reply)));
            Ok::<(), Error>(())
        }
    });
    let (client, _server) = pair(client, server);
    within("init", client.init()).await.expect("init succeeds");
    assert_eq!(log.events(), ["request login", "init got welcome"]);
    // Once only: a second init does not run the hook again.
    within("second init", client.init()).await.expect("second init");
    assert_eq!(log.events().len(), 2, "the hook ran once: {:?}", log.events());
    assert!(!client.is_stopped());
}

#[tokio::test(start_paused = true)]
async fn init_hook_failure_closes_the_channel_and_is_returned() {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let client = ChannelConfig::client().with_init(move |_ch: Channel| {
        r.fetch_add(1, SeqCst);
        async { Err::<(), BoxError>("login refused".into()) }
    });
    let (client, server) = pair(client, echo_config());
    let err = within("init", client.init()).await.expect_err("init fails");
    assert!(matches!(err, Error::Init(_)), "{err:?}");
    assert_eq!(err.to_string(), "channel init hook failed: login refused");
    within("client closes", client.closed()).await;
    within("server sees EOF", server.closed()).await;
    // The first result stays.
    let again = client.init().await.expect_err("still failed");
    assert_eq!(again.to_string(), err.to_string());
    assert_eq!(runs.load(SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn init_hook_that_hangs_or_panics_fails_within_the_callback_timeout() {
    let hangs = ChannelConfig {
        callback_timeout: Duration::from_secs(2),
        ..ChannelConfig::client().with_init(|_ch: Channel| std::future::pending::<Result<(), Error>>())
    };
    let (client, _server) = pair(hangs, echo_config());
    let start = Instant::now();
    let err = within("init", client.init()).await.expect_err("a hanging init fails");
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(err.to_string(), "channel init hook failed: did not finish within 2s");
    assert!(client.is_closed());

    let panics = ChannelConfig::client().with_init(|_ch: Channel| async { panic!("init bug") as Result<(), Error> });
    let (client, _server) = pair(panics, echo_config());
    let err = within("init", client.init()).await.expect_err("a panicking init fails");
    assert_eq!(err.to_string(), "channel init hook failed: panicked");
    assert!(client.is_closed());
}

#[tokio::test]
async fn init_hook_runs_in_connect_and_on_accepted_channels() {
    let log = Log::default();
    let accepted_log = log.clone();
    let config = ServerConfig {
        channel: ChannelConfig::server().with_init(move |_ch: Channel| {
            accepted_log.push("server init");
            async { Ok::<(), Error>(()) }
        }),
        ..Default::default()
    };
    let server = Server::bind_with("127.0.0.1:0", config).await.expect("bind");
    let addr = server.local_addr().to_string();
    let serving = tokio::spawn(server.serve(|p: Packet, _ch: Channel| async move { Some(p.body) }));
    let client_log = log.clone();
    let client = within(
        "connect",
        Channel::connect(
            &addr,
            ChannelConfig::client().with_init(move |ch: Channel| {
                let log = client_log.clone();
                async move {
                    ch.call(1, b"hello").await?;
                    log.push("client init");
                    Ok::<(), Error>(())
                }
            }),
        ),
    )
    .await
    .expect("connect runs the init hook");
    assert!(log.events().contains(&"client init".to_string()), "{:?}", log.events());
    assert!(log.events().contains(&"server init".to_string()), "{:?}", log.events());

    // A client whose init fails: connect returns the error.
    let failing = ChannelConfig::client().with_init(|_ch: Channel| async { Err::<(), BoxError>("no".into()) });
    let err = within("connect", Channel::connect(&addr, failing)).await.expect_err("init fails");
    assert_eq!(err.to_string(), "channel init hook failed: no");
    client.close();
    serving.abort();
}

#[tokio::test]
async fn init_hook_failure_on_an_accepted_channel_closes_it_and_counts() {
    let config = ServerConfig {
        channel: ChannelConfig::server().with_init(|_ch: Channel| async { Err::<(), BoxError>("bad client".into()) }),
        ..Default::default()
    };
    let server = Server::bind_with("127.0.0.1:0", config).await.expect("bind");
    let addr = server.local_addr().to_string();
    let stats = server.stats_handle();
    let serving = tokio::spawn(server.serve(|p: Packet, _ch: Channel| async move { Some(p.body) }));
    let client = within("connect", Channel::connect(&addr, ChannelConfig::client())).await.expect("connect");
    within("server closes the connection", client.closed()).await;
    within("connection ends", stats.wait_open_at_most(0)).await;
    assert_eq!(stats.get().hook_errors, 1);
    serving.abort();
}

// ---- life-cycle callbacks -----------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn lifecycle_order_initiator_callbacks_then_0xff01_then_responder_callbacks() {
    let log = Log::default();
    let slow = log.clone();
    // The initiator's callback takes a while: the responder must not start its own before.
    let client = ChannelConfig::client()
        .on_shutdown(move |_ch| {
            let log = slow.clone();
            async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                log.push("client on_shutdown");
            }
        })
        .on_close(log.callback("client on_close"));
    let server =
        echo_config().on_shutdown(log.callback("server on_shutdown")).on_close(log.callback("server on_close"));
    let (client, server) = pair(client, server);
    let closed = log.clone();
    server.on_close(move |_ch| {
        closed.push("server on_close (registered)");
        async {}
    });
    within("client shutdown", client.shutdown()).await;
    within("server closes", server.closed()).await;
    // Close callbacks run in the background after closed() resolves.
    let log_done = log.clone();
    within("close callbacks", async {
        while log_done.events().len() < 5 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let events = log.events();
    assert_eq!(events[..2], ["client on_shutdown", "server on_shutdown"], "{events:?}");
    let server_close = events.iter().position(|e| e == "server on_close").expect("server on_close ran");
    let registered = events.iter().position(|e| e == "server on_close (registered)").expect("registered ran");
    assert!(server_close < registered, "config callbacks run before registered ones: {events:?}");
    assert!(events.contains(&"client on_close".to_string()), "{events:?}");
}

#[tokio::test(start_paused = true)]
async fn lifecycle_order_shutdown_callback_finishes_before_0xff01_is_written() {
    let log = Log::default();
    let slow = log.clone();
    let config = ChannelConfig::client().on_shutdown(move |_ch| {
        let log = slow.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            log.push("callback done");
        }
    });
    let (ch, mut peer) = raw(config);
    let shutting = tokio::spawn({
        let ch = ch.clone();
        async move { ch.shutdown().await }
    });
    let start = Instant::now();
    let packet = within("0xff01", peer.read()).await.expect("a packet");
    assert_eq!(packet.header.msg, MSG_SHUTDOWN);
    assert_eq!(log.events(), ["callback done"], "the callback finished before 0xff01 left");
    assert!(start.elapsed() >= Duration::from_secs(3));
    // The shutdown timeout starts after the callbacks: answering now completes it cleanly.
    peer.write(MSG_SHUTDOWN, 0, &[]).await;
    within("shutdown", shutting).await.expect("join");
    assert!(within("EOF", peer.read()).await.is_none());
    assert!(ch.close_reason().is_none());
}

// A shutdown callback that never returns is abandoned after the callback timeout, one that
// panics is skipped: the callbacks after them still run, 0xff01 still goes out, and the close
// callbacks run at the end.
#[tokio::test(start_paused = true)]
async fn lifecycle_order_survives_a_hanging_and_a_panicking_callback() {
    let log = Log::default();
    let closed = Arc::new(Notify::new());
    let config = ChannelConfig { callback_timeout: Duration::from_secs(2), ..ChannelConfig::client() }
        .on_shutdown(|_ch| std::future::pending::<()>())
        .on_shutdown(|_ch| async { panic!("a callback's bug") })
        .on_shutdown(log.callback("third shutdown callback"))
        .on_close(|_ch| std::future::pending::<()>())
        .on_close({
            let (log, closed) = (log.clone(), closed.clone());
            move |_ch| {
                log.push("close callback");
                closed.notify_one();
                std::future::ready(())
            }
        });
    let (ch, mut peer) = raw(config);
    let shutting = tokio::spawn({
        let ch = ch.clone();
        async move { ch.shutdown().await }
    });
    let start = Instant::now();
    let packet = within("0xff01 despite the callbacks", peer.read()).await.expect("a packet");
    assert_eq!(packet.header.msg, MSG_SHUTDOWN);
    assert_eq!(start.elapsed(), Duration::from_secs(2), "the hanging callback was given its 2 s, no more");
    assert_eq!(log.events(), ["third shutdown callback"]);
    peer.write(MSG_SHUTDOWN, 0, &[]).await;
    within("shutdown", shutting).await.expect("the shutdown task did not panic");
    within("close", ch.closed()).await;
    within("the close callback after the hanging one", closed.notified()).await;
    assert_eq!(log.events(), ["third shutdown callback", "close callback"]);
}

#[tokio::test(start_paused = true)]
async fn lifecycle_order_close_runs_on_close_but_no_shutdown_callbacks() {
    let log = Log::default();
    let client = ChannelConfig::client()
        .on_shutdown(log.callback("client on_shutdown"))
        .on_close(log.callback("client on_close"));
    let server =
        echo_config().on_shutdown(log.callback("server on_shutdown")).on_close(log.callback("server on_close"));
    let (client, server) = pair(client, server);
    assert_eq!(&within("call", client.call(1, b"x")).await.expect("call")[..], b"x");
    client.close();
    within("client closes", client.closed()).await;
    within("server sees EOF", server.closed()).await;
    let log_done = log.clone();
    within("both close callbacks", async {
        while log_done.events().len() < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let mut events = log.events();
    events.sort();
    assert_eq!(events, ["client on_close", "server on_close"]);
    // A callback registered after the close runs at once; a shutdown one is ignored.
    let (tx, mut rx) = mpsc::unbounded_channel();
    client.on_close(move |_ch| {
        let _ = tx.send("late on_close");
        async {}
    });
    client.on_shutdown(log.callback("late on_shutdown"));
    assert_eq!(within("late on_close", rx.recv()).await, Some("late on_close"));
    assert!(!log.events().iter().any(|e| e.contains("shutdown")), "{:?}", log.events());
}

#[tokio::test]
async fn lifecycle_order_server_on_shutdown_runs_after_the_clients_and_never_on_an_abrupt_close() {
    let log = Log::default();
    let (closed_tx, mut closed_rx) = mpsc::unbounded_channel();
    let config = ServerConfig::default().on_shutdown(log.callback("server on_shutdown")).on_close(move |_ch| {
        let _ = closed_tx.send(());
        async {}
    });
    let server = Server::bind_with("127.0.0.1:0", config).await.expect("bind");
    let addr = server.local_addr().to_string();
    let serving = tokio::spawn(server.serve(|p: Packet, _ch: Channel| async move { Some(p.body) }));

    let slow = log.clone();
    let client_config = ChannelConfig::client().on_shutdown(move |_ch| {
        let log = slow.clone();
        async move {
            tokio::task::yield_now().await;
            log.push("client on_shutdown");
        }
    });
    let client = within("connect", Channel::connect(&addr, client_config)).await.expect("connect");
    within("call", client.call(1, b"x")).await.expect("call");
    within("client shutdown", client.shutdown()).await;
    within("server on_close", closed_rx.recv()).await.expect("on_close ran");
    assert_eq!(log.events(), ["client on_shutdown", "server on_shutdown"]);

    let abrupt = within("connect", Channel::connect(&addr, ChannelConfig::client())).await.expect("connect");
    within("call", abrupt.call(1, b"x")).await.expect("call");
    abrupt.close();
    within("server on_close", closed_rx.recv()).await.expect("on_close ran");
    assert_eq!(log.events().len(), 2, "no on_shutdown for an abrupt close: {:?}", log.events());
    serving.abort();
}

// ---- cancellation reaching handlers -------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn handler_cancelled_when_the_connection_closes() {
    let (entered_tx, mut entered) = mpsc::unbounded_channel();
    let (gone_tx, mut gone) = mpsc::unbounded_channel();
    let server = ChannelConfig::server().with_handler(move |_p: Packet, ch: Channel| {
        let (entered, gone) = (entered_tx.clone(), gone_tx.clone());
        async move {
            let closed = ch.closed_token();
            let _ = entered.send(());
            tokio::select! {
                _ = closed.cancelled() => { let _ = gone.send("stopped early"); None }
                _ = tokio::time::sleep(Duration::from_secs(3600)) => Some(Bytes::from_static(b"too late")),
            }
        }
    });
    let (client, server) = pair(ChannelConfig::client(), server);
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.call(1, b"long poll").await }
    });
    within("handler starts", entered.recv()).await;
    let start = Instant::now();
    client.close();
    assert_eq!(within("handler sees the close", gone.recv()).await, Some("stopped early"));
    assert_eq!(start.elapsed(), Duration::ZERO, "told at once, not after the handler's hour");
    assert!(matches!(within("call", call).await.expect("join"), Err(Error::Dropped(_))));
    within("server closes", server.closed()).await;
}

#[tokio::test(start_paused = true)]
async fn handler_cancelled_when_shutdown_starts_and_its_early_reply_is_delivered() {
    let entered = Arc::new(Notify::new());
    let e = entered.clone();
    let server = ChannelConfig::server().with_handler(move |_p: Packet, ch: Channel| {
        let e = e.clone();
        async move {
            let stopping = ch.stopping_token();
            e.notify_one();
            tokio::select! {
                _ = stopping.cancelled() => Some(Bytes::from_static(b"shutting down, come back later")),
                _ = tokio::time::sleep(Duration::from_secs(3600)) => Some(Bytes::from_static(b"an hour later")),
            }
        }
    });
    let (client, server) = pair(ChannelConfig::client(), server);
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.call(1, b"long poll").await }
    });
    within("handler starts", entered.notified()).await;
    let start = Instant::now();
    within("server shutdown", server.shutdown()).await;
    let reply = within("call", call).await.expect("join").expect("the early reply arrives");
    assert_eq!(&reply[..], b"shutting down, come back later");
    assert!(start.elapsed() < Duration::from_secs(1), "{:?}", start.elapsed());
    within("client closes", client.closed()).await;
    assert!(server.close_reason().is_none());
}

// ---- handshake corner cases ---------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn simultaneous_shutdown_of_both_sides_completes_without_the_timeout() {
    let log = Log::default();
    let client = ChannelConfig::client().on_shutdown(log.callback("client")).on_close(log.callback("client closed"));
    let server = echo_config().on_shutdown(log.callback("server")).on_close(log.callback("server closed"));
    let (client, server) = pair(client, server);
    within("call", client.call(1, b"x")).await.expect("call");
    let start = Instant::now();
    within("both shutdowns", async { tokio::join!(client.shutdown(), server.shutdown()) }).await;
    assert!(start.elapsed() < client.config().shutdown_timeout, "no deadlock: {:?}", start.elapsed());
    assert!(client.close_reason().is_none() && server.close_reason().is_none());
    let log_done = log.clone();
    within("close callbacks", async {
        while log_done.events().len() < 4 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let mut events = log.events();
    events.sort();
    assert_eq!(events, ["client", "client closed", "server", "server closed"], "each side's callbacks ran once");
}

#[tokio::test(start_paused = true)]
async fn shutdown_packet_with_a_body_or_a_nonzero_sync_is_still_a_shutdown() {
    for (sync, body) in [(7u32, &b"abc"[..]), (0, &b"payload"[..]), (9, &b""[..])] {
        let ran = Log::default();
        let (ch, mut peer) = raw(echo_config().on_shutdown(ran.callback("on_shutdown")));
        peer.write(MSG_SHUTDOWN, sync, body).await;
        within("channel stops", ch.stopping()).await;
        let answer = within("our 0xff01", peer.read()).await.expect("an answer");
        assert_eq!((answer.header.msg, answer.header.sync, answer.body.len()), (MSG_SHUTDOWN, 0, 0));
        assert!(within("EOF", peer.read()).await.is_none(), "the responder closes after answering");
        assert!(within("closed", ch.closed()).await.is_none());
        assert_eq!(ran.events(), ["on_shutdown"], "sync {sync}, body {body:?}");
    }
}

// ---- default ping intervals ---------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn accepted_channels_send_no_pings_by_default() {
    assert_eq!(ServerConfig::default().channel.ping_interval, None);
    let (_ch, mut peer) = raw(ServerConfig::default().channel);
    let quiet = tokio::time::timeout(Duration::from_secs(3600), peer.read()).await;
    assert!(quiet.is_err(), "an accepted channel sent {quiet:?} within an hour");
}

#[tokio::test]
async fn server_hands_accepted_channels_the_server_defaults() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let config = ServerConfig::default().on_accept(move |stream, config: ChannelConfig| {
        let _ = tx.send(config.ping_interval);
        async move { Ok(Channel::from_stream(stream, config)) }
    });
    let server = Server::bind_with("127.0.0.1:0", config).await.expect("bind");
    let addr = server.local_addr().to_string();
    let serving = tokio::spawn(server.serve(|p: Packet, _ch: Channel| async move { Some(p.body) }));
    let client = within("connect", Channel::connect(&addr, ChannelConfig::client())).await.expect("connect");
    assert_eq!(within("accept hook", rx.recv()).await, Some(None), "accepted channels do not ping");
    assert_eq!(client.config().ping_interval, Some(Duration::from_secs(60)), "dialed channels ping every minute");
    client.close();
    serving.abort();
}

#[cfg(unix)]
#[tokio::test]
async fn listen_and_serve_serves_the_handler_on_the_address() {
    let dir = std::env::temp_dir().join(format!("iproto-lifecycle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("listen_and_serve.sock");
    let _ = std::fs::remove_file(&path);
    let addr = format!("unix:{}", path.display());
    let serving = tokio::spawn({
        let addr = addr.clone();
        async move { iproto::listen_and_serve(&addr, |p: Packet, _ch: Channel| async move { Some(p.body) }).await }
    });
    // The socket exists once bound: retry connecting until then.
    let client = within("the server listens", async {
        loop {
            if let Ok(ch) = Channel::connect(&addr, ChannelConfig::client()).await {
                return ch;
            }
            assert!(!serving.is_finished(), "listen_and_serve ended early");
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(&within("call", client.call(5, b"over unix")).await.expect("call")[..], b"over unix");
    client.close();
    serving.abort();
    let _ = std::fs::remove_dir_all(&dir);

    let taken = iproto::listen_and_serve("256.0.0.1:1", |p: Packet, _ch: Channel| async move { Some(p.body) }).await;
    assert!(taken.is_err(), "an unusable address is an error, not a hang");
}
