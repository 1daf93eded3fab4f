//! Typed RPC over real TCP channels: per-message `Request` types, `#[service]` clients and
//! servers, the return-code envelope, decode failures in both directions, per-call timeouts,
//! cancellation and (with the `tower` feature) `tower::Service`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use iproto::rpc::{CallError, Context, RemoteError, SenderExt, ServiceError, RC_BAD_REQUEST};
use iproto::{CallOptions, Channel, ChannelConfig, DecodeError, Error, IprotoPack, IprotoUnpack, Mode, PackError};
use iproto::{Reader, Request, ServeMux, Server};
use tokio::sync::{mpsc, Notify};

// ---- the messages ----

#[derive(IprotoPack, IprotoUnpack, Request, Debug, Clone, PartialEq)]
#[request(msg = 0x10, response = Result<Value, KvError>)]
pub struct Get {
    key: String,
}

#[derive(IprotoPack, IprotoUnpack, Debug, Clone, PartialEq)]
pub struct Value {
    data: Bytes,
    #[iproto(ber)]
    version: u32,
}

#[derive(IprotoPack, IprotoUnpack, Request, Debug, Clone, PartialEq)]
#[request(msg = 0x11, response = u32)]
pub struct Put {
    key: String,
    data: Bytes,
}

#[derive(IprotoPack, IprotoUnpack, Request, Debug, Clone, PartialEq)]
#[request(msg = 0x12, notify)]
pub struct Touch {
    key: String,
}

#[derive(IprotoPack, IprotoUnpack, Debug, Clone, PartialEq)]
pub struct Whoami {
    msg: u32,
    sync: u32,
    peer: String,
}

/// The service's own error: code 1 without a body, code 2 with the size limit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KvError {
    #[error("not found")]
    NotFound,
    #[error("too large, limit {limit}")]
    TooLarge { limit: u32 },
}

impl IprotoPack for KvError {
    fn pack<B: bytes::BufMut>(&self, buf: &mut B, mode: Mode) -> Result<(), PackError> {
        match self {
            KvError::NotFound => Ok(()),
            KvError::TooLarge { limit } => limit.pack(buf, mode),
        }
    }
}

impl ServiceError for KvError {
    fn code(&self) -> u32 {
        match self {
            KvError::NotFound => 1,
            KvError::TooLarge { .. } => 2,
        }
    }

    fn decode(code: u32, body: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match code {
            1 => Ok(KvError::NotFound),
            2 => Ok(KvError::TooLarge { limit: u32::unpack(body, Mode::Fixed)? }),
            _ => Err(DecodeError::custom(format!("unknown KvError code {code}"), body.position())),
        }
    }
}

// ---- the service ----

#[iproto::service]
pub trait Kv {
    /// Reads a key.
    #[iproto(msg = 0x10)]
    async fn get(&self, req: Get) -> Result<Value, KvError>;

    /// Stores a value; returns its new version (raw body, no envelope).
    #[iproto(msg = 0x11)]
    async fn put(&self, cx: Context, req: Put) -> u32;

    /// Marks a key as used; one-way.
    #[iproto(msg = 0x12, notify)]
    async fn touch(&self, req: Touch);

    /// Reports what the handler's context says.
    #[iproto(msg = 0x13)]
    async fn whoami(&self, cx: Context, req: ()) -> Whoami;

    /// Waits until the test releases it, then answers.
    #[iproto(msg = 0x14)]
    async fn slow(&self, req: ()) -> u32;
}

#[derive(Default)]
struct Store {
    data: Mutex<Vec<(String, Bytes)>>,
    version: AtomicU32,
    touched: Option<mpsc::UnboundedSender<String>>,
    release: Arc<Notify>,
}

impl Kv for Store {
    async fn get(&self, req: Get) -> Result<Value, KvError> {
        if req.key.len() > 8 {
            return Err(KvError::TooLarge { limit: 8 });
        }
        let data = self.data.lock().unwrap_or_else(|e| e.into_inner());
        let found = data.iter().find(|(k, _)| *k == req.key).map(|(_, v)| v.clone());
        found.map(|data| Value { data, version: self.version.load(Ordering::SeqCst) }).ok_or(KvError::NotFound)
    }

    async fn put(&self, cx: Context, req: Put) -> u32 {
        assert_eq!(cx.msg(), 0x11);
        self.data.lock().unwrap_or_else(|e| e.into_inner()).push((req.key, req.data));
        self.version.fetch_add(1, Ordering::SeqCst) + 1
    }

    async fn touch(&self, req: Touch) {
        if let Some(tx) = &self.touched {
            let _ = tx.send(req.key);
        }
    }

    async fn whoami(&self, cx: Context, _req: ()) -> Whoami {
        Whoami { msg: cx.msg(), sync: cx.sync(), peer: cx.peer_addr().map(|a| a.to_string()).unwrap_or_default() }
    }

    async fn slow(&self, _req: ()) -> u32 {
        self.release.notified().await;
        7
    }
}

/// Serves `mux` on a free TCP port and connects a client channel to it.
async fn serve(mux: ServeMux) -> Channel {
    let server = Server::bind("127.0.0.1:0").await.expect("bind");
    let addr = server.local_addr().to_string();
    tokio::spawn(server.serve(mux));
    Channel::connect(&addr, ChannelConfig::client()).await.expect("connect")
}

fn store() -> (Store, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Store { touched: Some(tx), ..Store::default() }, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_method_round_trips_over_tcp() {
    let (store, mut touched) = store();
    let channel = serve(KvServer::new(store).into_mux()).await;
    let kv = KvClient::new(channel.clone());

    assert_eq!(kv.put(&Put { key: "a".into(), data: Bytes::from_static(b"one") }).await.unwrap(), 1);
    let value = kv.get(&Get { key: "a".into() }).await.unwrap();
    assert_eq!(value, Value { data: Bytes::from_static(b"one"), version: 1 });

    kv.touch(&Touch { key: "a".into() }).await.unwrap();
    assert_eq!(touched.recv().await.as_deref(), Some("a"));

    let me = kv.whoami(&()).await.unwrap();
    assert_eq!(me.msg, 0x13);
    assert_ne!(me.sync, 0);
    assert_eq!(me.peer, channel.local_addr().map(|a| a.to_string()).unwrap_or_default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_method_round_trips_over_a_pool() {
    let (store, mut touched) = store();
    let server = Server::bind("127.0.0.1:0").await.expect("bind");
    let addr = server.local_addr().to_string();
    tokio::spawn(server.serve(KvServer::new(store).into_mux()));
    let pool = iproto::Pool::dial(&addr, iproto::PoolConfig::default()).await.expect("dial");
    let kv = KvClient::new(pool.clone());

    assert_eq!(kv.put(&Put { key: "p".into(), data: Bytes::from_static(b"two") }).await.unwrap(), 1);
    assert_eq!(kv.get(&Get { key: "p".into() }).await.unwrap(), Value { data: Bytes::from_static(b"two"), version: 1 });
    assert_eq!(kv.get(&Get { key: "q".into() }).await.unwrap_err().service(), Some(&KvError::NotFound));
    kv.touch(&Touch { key: "p".into() }).await.unwrap();
    assert_eq!(touched.recv().await.as_deref(), Some("p"));
    let me = kv.whoami(&()).await.unwrap();
    assert_eq!(me.msg, 0x13);
    assert_eq!(pool.request(&Put { key: "r".into(), data: Bytes::new() }).await.unwrap(), 2);

    #[cfg(feature = "tower")]
    {
        use tower::{Service, ServiceExt};
        let mut raw = pool.clone();
        let body = iproto::pack(&Get { key: "p".into() }).unwrap();
        let reply = raw.ready().await.unwrap().call(iproto::rpc::RawCall::new(0x10, body)).await.unwrap();
        assert_eq!(reply[..4], [0, 0, 0, 0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_types_round_trip_with_sender_ext_and_handle_request() {
    let (tx, mut touched) = mpsc::unbounded_channel();
    let mut mux = ServeMux::new();
    mux.handle_request::<Get, _>(|req: Get, _cx: Context| async move {
        match req.key.as_str() {
            "a" => Ok(Value { data: Bytes::from_static(b"x"), version: 3 }),
            _ => Err(KvError::NotFound),
        }
    })
    .unwrap();
    mux.handle_request::<Put, _>(|req: Put, _cx: Context| async move { req.data.len() as u32 }).unwrap();
    mux.handle_notification::<Touch, _>(move |req: Touch, _cx: Context| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(req.key);
        }
    })
    .unwrap();
    assert!(mux.handle_request::<Get, _>(|_: Get, _: Context| async move { Err(KvError::NotFound) }).is_err());

    let channel = serve(mux).await;
    assert_eq!(channel.request(&Get { key: "a".into() }).await.unwrap(), Ok(Value { data: "x".into(), version: 3 }));
    assert_eq!(channel.request(&Get { key: "b".into() }).await.unwrap(), Err(KvError::NotFound));
    let put = Put { key: "k".into(), data: Bytes::from_static(b"12345") };
    assert_eq!(channel.request_with(&put, CallOptions::timeout(Duration::from_secs(2))).await.unwrap(), 5);
    channel.notify_typed(&Touch { key: "t".into() }).await.unwrap();
    assert_eq!(touched.recv().await.as_deref(), Some("t"));

    let client = iproto::rpc::Client::new(channel).with_timeout(Duration::from_secs(2));
    assert_eq!(client.request(&put).await.unwrap(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_error_travels_back_as_the_declared_type_with_its_code() {
    let (store, _touched) = store();
    let channel = serve(KvServer::new(store).into_mux()).await;
    let kv = KvClient::new(channel.clone());

    match kv.get(&Get { key: "missing".into() }).await {
        Err(CallError::Service(e)) => {
            assert_eq!(e, KvError::NotFound);
            assert_eq!(e.code(), 1);
        }
        other => panic!("expected a service error, got {other:?}"),
    }
    let err = kv.get(&Get { key: "much too long".into() }).await.unwrap_err();
    assert_eq!(err.service(), Some(&KvError::TooLarge { limit: 8 }));
    assert!(err.transport().is_none());

    // On the wire: return code 2 (u32 LE), then the body of the error.
    let raw = channel.call(0x10, &iproto::pack(&Get { key: "much too long".into() }).unwrap()).await.unwrap();
    assert_eq!(&raw[..], [2, 0, 0, 0, 8, 0, 0, 0]);
}

/// Two versions of one service: v2 changed the type of `Stat.name`.
mod v1 {
    use iproto::rpc::RemoteError;
    use iproto::{IprotoPack, IprotoUnpack};

    #[derive(IprotoPack, IprotoUnpack, Debug, Clone, PartialEq)]
    pub struct Stat {
        pub size: u32,
        pub name: String,
    }

    #[iproto::service]
    pub trait Files {
        #[iproto(msg = 0x20)]
        async fn stat(&self, path: String) -> Result<Stat, RemoteError>;
        #[iproto(msg = 0x21)]
        async fn count(&self, req: ()) -> u32;
    }
}

mod v2 {
    use iproto::rpc::RemoteError;
    use iproto::{IprotoPack, IprotoUnpack};

    #[derive(IprotoPack, IprotoUnpack, Debug, Clone, PartialEq)]
    pub struct Stat {
        pub size: u32,
        pub name: u8,
    }

    #[iproto::service]
    pub trait Files {
        #[iproto(msg = 0x20)]
        async fn stat(&self, path: String) -> Result<Stat, RemoteError>;
        #[iproto(msg = 0x21)]
        async fn count(&self, req: ()) -> u32;
    }

    pub struct Impl;

    impl Files for Impl {
        async fn stat(&self, path: String) -> Result<Stat, RemoteError> {
            match path.as_str() {
                "/" => Ok(Stat { size: 5, name: 1 }),
                _ => Err(RemoteError::new(0x31, format!("no such file: {path}"))),
            }
        }

        async fn count(&self, _req: ()) -> u32 {
            42
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_field_type_gives_a_typed_decode_error_and_the_connection_stays_usable() {
    let channel = serve(v2::FilesServer::new(v2::Impl).into_mux()).await;
    let files = v1::FilesClient::new(channel.clone());

    match files.stat(&"/".to_string()).await {
        Err(CallError::Decode { msg, error }) => {
            assert_eq!(msg, 0x20);
            assert_eq!(error.path(), "Stat.name");
            assert_eq!(error.offset(), 8);
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    // Errors still come through (their layout did not change), and so do other methods.
    let err = files.stat(&"/x".to_string()).await.unwrap_err();
    assert_eq!(err.service(), Some(&RemoteError::new(0x31, "no such file: /x")));
    assert_eq!(files.count(&()).await.unwrap(), 42);
    assert!(!channel.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_request_gets_the_reserved_code_reply_and_the_connection_stays_usable() {
    let (store, mut touched) = store();
    let channel = serve(KvServer::new(store).into_mux()).await;

    // Raw: a `Get` whose key length runs past the body.
    let raw = channel.call(0x10, &[9, 0, 0, 0, b'a']).await.unwrap();
    assert_eq!(raw[..4], RC_BAD_REQUEST.to_le_bytes());
    let text = String::from_utf8_lossy(&raw[4..]);
    assert!(text.contains("Get.key"), "{text}");

    // Typed: a client whose request type differs (a u8 where a string is expected).
    let wrong: Result<Result<Value, KvError>, CallError> =
        iproto::rpc::call(&channel, 0x10, &7u8, CallOptions::default()).await;
    match wrong {
        Err(CallError::Rejected { msg, code, message }) => {
            assert_eq!((msg, code), (0x10, RC_BAD_REQUEST));
            assert!(message.contains("Get.key"), "{message}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }

    // A one-way message that does not decode is dropped; the next valid one is handled.
    channel.notify(0x12, &[1]).await.unwrap();
    let kv = KvClient::new(channel.clone());
    kv.touch(&Touch { key: "ok".into() }).await.unwrap();
    assert_eq!(touched.recv().await.as_deref(), Some("ok"));

    assert_eq!(kv.put(&Put { key: "a".into(), data: Bytes::new() }).await.unwrap(), 1);
    assert!(!channel.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_call_timeout_and_cancellation_by_drop() {
    let (store, _touched) = store();
    let release = store.release.clone();
    let channel = serve(KvServer::new(store).into_mux()).await;
    let kv = KvClient::new(channel.clone());

    let err = kv.slow_with(&(), CallOptions::timeout(Duration::from_millis(20))).await.unwrap_err();
    assert!(matches!(err, CallError::Transport(Error::Timeout { .. })), "{err:?}");

    // Dropping the call's future forgets it locally.
    {
        let call = kv.slow(&());
        tokio::pin!(call);
        assert!(futures_poll_once(call.as_mut()).await.is_none());
        assert_eq!(channel.stats().pending, 1);
    }
    assert_eq!(channel.stats().pending, 0);

    // Both abandoned handlers finish; the channel keeps working.
    release.notify_waiters();
    let answer = tokio::spawn({
        let kv = kv.clone();
        async move { kv.slow(&()).await }
    });
    // The handlers may not be waiting yet when released: release until the answer comes, for
    // a bounded time.
    let released = async {
        loop {
            release.notify_waiters();
            if answer.is_finished() {
                break;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), released)
        .await
        .expect("the answer after the abandoned handlers were released did not come within 10 s");
    assert_eq!(answer.await.unwrap().unwrap(), 7);
}

/// Polls `fut` once; `Some` if it finished.
async fn futures_poll_once<F: std::future::Future + Unpin>(mut fut: F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut fut).poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

#[cfg(feature = "tower")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_and_typed_client_are_tower_services() {
    use tower::{Service, ServiceBuilder, ServiceExt};

    let (store, _touched) = store();
    let channel = serve(KvServer::new(store).into_mux()).await;

    let mut raw = channel.clone();
    let put = iproto::pack(&Put { key: "a".into(), data: Bytes::from_static(b"v") }).unwrap();
    let reply = raw.ready().await.unwrap().call(iproto::rpc::RawCall::new(0x11, put)).await.unwrap();
    assert_eq!(&reply[..], [1, 0, 0, 0]);

    let mut typed =
        ServiceBuilder::new().timeout(Duration::from_secs(2)).service(iproto::rpc::Client::new(channel.clone()));
    let value = ServiceExt::<Get>::ready(&mut typed).await.unwrap().call(Get { key: "a".into() }).await.unwrap();
    assert_eq!(value, Ok(Value { data: Bytes::from_static(b"v"), version: 1 }));

    let mut short = ServiceBuilder::new().timeout(Duration::from_millis(20)).service(iproto::rpc::Client::new(channel));
    let err = ServiceExt::<Unit>::ready(&mut short).await.unwrap().call(Unit).await.unwrap_err();
    assert!(err.is::<tower::timeout::error::Elapsed>(), "{err}");
}

/// `slow` as a level-one request, for the tower timeout test.
#[cfg(feature = "tower")]
#[derive(IprotoPack, IprotoUnpack, Request, Debug)]
#[request(msg = 0x14, response = u32)]
pub struct Unit;

#[test]
fn remote_error_is_a_tarantool_style_reply() {
    let reply: Result<(), RemoteError> = Err(RemoteError::new(0x0202, "bad"));
    assert_eq!(iproto::pack(&reply).unwrap(), [2, 2, 0, 0, b'b', b'a', b'd']);
    let zero: Result<(), RemoteError> = Err(RemoteError::new(0, "not an error code"));
    assert!(iproto::pack(&zero).is_err());
}

// The typed layer must stay thin: a generated client's call future and a typed handler's
// future stay within a small margin of the raw ones (a future captured by an `async` block and
// awaited there is stored twice, which once made the client's future 2.4x the raw one).
#[tokio::test]
async fn typed_futures_stay_close_to_raw_ones() {
    let (a, _b) = tokio::io::duplex(64);
    let channel = Channel::new(a, ChannelConfig::client());
    let body = iproto::pack(&Get { key: "a".into() }).unwrap();
    let raw = std::mem::size_of_val(&channel.call(0x10, &body));
    let client = KvClient::new(channel.clone());
    let get = Get { key: "a".into() };
    let typed = std::mem::size_of_val(&client.get(&get));
    let raw_body = std::mem::size_of_val(&client.put(&Put { key: "a".into(), data: Bytes::new() }));
    assert!(typed <= raw + 128, "typed call future {typed} bytes, raw {raw}");
    assert!(raw <= 512, "a call future is {raw} bytes: the rare paths belong behind a box");
    assert!(raw_body <= raw + 128, "typed call future (raw body) {raw_body} bytes, raw {raw}");
}

/// A reply that packs part of itself, then fails.
struct HalfPacked;

impl IprotoPack for HalfPacked {
    fn pack<B: bytes::BufMut>(&self, buf: &mut B, _mode: Mode) -> Result<(), PackError> {
        buf.put_slice(b"partial");
        Err(PackError::Custom("this reply cannot be packed".into()))
    }
}

// A typed handler whose reply fails to pack, whether it answers at once (its reply goes
// straight into the reader's batch) or later (its own buffer): the caller gets the
// RC_BAD_REPLY rejection, nothing half-written reaches the wire, and the connection goes on.
#[tokio::test]
async fn a_reply_that_does_not_pack_is_rejected_cleanly() {
    let mut mux = ServeMux::new();
    mux.handle_typed::<u32, HalfPacked, _>(0x30, |_req: u32, _cx: Context| async { HalfPacked }).unwrap();
    mux.handle_typed::<u32, HalfPacked, _>(0x31, |_req: u32, _cx: Context| async {
        tokio::task::yield_now().await;
        HalfPacked
    })
    .unwrap();
    mux.handle_typed::<u32, u32, _>(0x32, |req: u32, _cx: Context| async move { req + 1 }).unwrap();
    let channel = serve(mux).await;
    for msg in [0x30, 0x31] {
        let err = iproto::rpc::call::<_, u32, u32>(&channel, msg, &1, CallOptions::default()).await.unwrap_err();
        match err {
            CallError::Rejected { code, message, .. } => {
                assert_eq!(code, iproto::rpc::RC_BAD_REPLY, "msg {msg:#x}");
                assert!(message.contains("cannot be packed"), "{message}");
            }
            other => panic!("msg {msg:#x}: {other:?}"),
        }
        let next: u32 = iproto::rpc::call(&channel, 0x32, &41u32, CallOptions::default()).await.unwrap();
        assert_eq!(next, 42, "the connection is still in step after msg {msg:#x}");
    }
}
