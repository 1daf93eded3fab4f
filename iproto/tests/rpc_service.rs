//! `#[iproto::service]` as a newcomer writes it: several arguments (the body's byte layout
//! pinned down), the `Context` wherever it stands, `Result` aliases, borrowed arguments,
//! `#[derive(ServiceError)]`, the server passed to `serve` directly, and no call left waiting
//! for an unknown code or an undecodable request.

use std::time::Duration;

use bytes::Bytes;
use iproto::rpc::{CallError, Context, RC_BAD_REQUEST, RC_UNKNOWN_MSG};
use iproto::{
    CallOptions, Channel, ChannelConfig, DecodeErrorKind, IprotoPack, IprotoUnpack, Reader, Server, ServiceError,
};

/// Every wait in these tests is bounded by this, and a timeout names what was awaited.
const WAIT: Duration = Duration::from_secs(10);

async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(WAIT, f).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

#[derive(ServiceError, Debug, Clone, PartialEq, thiserror::Error)]
pub enum KvError {
    #[error("no such key")]
    #[iproto(code = 1)]
    NotFound,
    #[error("value of {len} bytes is over the limit of {limit}")]
    #[iproto(code = 2)]
    TooLarge {
        #[iproto(ber)]
        len: u64,
        limit: u32,
    },
    #[error("read-only key {0}")]
    #[iproto(code = 0x31)]
    ReadOnly(String),
}

/// An alias, as applications write them.
pub type KvResult<T> = Result<T, KvError>;

#[derive(IprotoPack, IprotoUnpack, Debug, PartialEq)]
pub struct SearchResult {
    hits: u32,
}

/// A borrowed request: its fields point into the request packet.
#[derive(IprotoPack, IprotoUnpack, Debug)]
pub struct Put<'a> {
    key: &'a str,
    value: &'a [u8],
}

#[iproto::service]
pub trait Kv {
    /// Two arguments: the body is the key's encoding, then the value's.
    #[iproto(msg = 0x10)]
    async fn put(&self, key: String, value: Vec<u8>) -> KvResult<u64>;

    /// The context last.
    #[iproto(msg = 0x11)]
    async fn get(&self, key: String, cx: Context) -> Result<Vec<u8>, KvError>;

    /// The context between the arguments.
    #[iproto(msg = 0x12)]
    async fn span(&self, from: u32, cx: Context, to: u32) -> Vec<u32>;

    /// No arguments: an empty body.
    #[iproto(msg = 0x13)]
    async fn count(&self) -> u32;

    /// Eleven arguments, more than the codec's largest tuple.
    #[iproto(msg = 0x14)]
    #[allow(clippy::too_many_arguments)]
    async fn sum(&self, a: u8, b: u16, c: u32, d: u64, e: u8, f: u16, g: u32, h: u64, i: u8, j: u16, k: u32) -> u64;

    /// A raw reply type whose name ends in `Result`.
    #[iproto(msg = 0x15, raw)]
    async fn search(&self, query: String) -> SearchResult;

    /// Borrowed arguments: a borrowed struct and a `&str`, no copy.
    #[iproto(msg = 0x16)]
    async fn put_borrowed(&self, req: Put<'_>, note: &str) -> KvResult<u64>;

    /// A borrowed one-way message.
    #[iproto(msg = 0x17, notify)]
    async fn log(&self, cx: Context, line: &str);
}

#[derive(Default)]
struct Store {
    logged: std::sync::Mutex<Vec<String>>,
}

impl Kv for Store {
    async fn put(&self, key: String, value: Vec<u8>) -> KvResult<u64> {
        if key.starts_with('/') {
            return Err(KvError::ReadOnly(key));
        }
        if value.len() > 4 {
            return Err(KvError::TooLarge { len: value.len() as u64, limit: 4 });
        }
        Ok(key.len() as u64 * 100 + value.len() as u64)
    }

    async fn get(&self, key: String, cx: Context) -> Result<Vec<u8>, KvError> {
        assert_eq!(cx.msg(), 0x11);
        match key.as_str() {
            "k" => Ok(b"v".to_vec()),
            _ => Err(KvError::NotFound),
        }
    }

    async fn span(&self, from: u32, cx: Context, to: u32) -> Vec<u32> {
        assert_eq!(cx.msg(), 0x12);
        (from..to).collect()
    }

    async fn count(&self) -> u32 {
        42
    }

    async fn sum(&self, a: u8, b: u16, c: u32, d: u64, e: u8, f: u16, g: u32, h: u64, i: u8, j: u16, k: u32) -> u64 {
        [a.into(), b.into(), c.into(), d, e.into(), f.into(), g.into(), h, i.into(), j.into(), k.into()].iter().sum()
    }

    async fn search(&self, query: String) -> SearchResult {
        SearchResult { hits: query.len() as u32 }
    }

    async fn put_borrowed(&self, req: Put<'_>, note: &str) -> KvResult<u64> {
        if req.key.is_empty() {
            return Err(KvError::NotFound);
        }
        Ok((req.key.len() + req.value.len() + note.len()) as u64)
    }

    async fn log(&self, cx: Context, line: &str) {
        assert_eq!(cx.msg(), 0x17);
        self.logged.lock().unwrap_or_else(|e| e.into_inner()).push(line.to_owned());
    }
}

/// Serves a `Store` by passing the generated server to `serve` directly, and connects.
async fn connect() -> KvClient<Channel> {
    let server = Server::bind("127.0.0.1:0").await.expect("bind");
    let addr = server.local_addr().to_string();
    tokio::spawn(server.serve(KvServer::new(Store::default())));
    let config = ChannelConfig { request_timeout: Duration::from_secs(3600), ..ChannelConfig::client() };
    KvClient::new(within("connect", Channel::connect(&addr, config)).await.expect("connect"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_arguments_and_the_context_anywhere_round_trip() {
    let kv = connect().await;
    assert_eq!(within("put", kv.put(&"ab".into(), &vec![1, 2, 3])).await.unwrap(), 203);
    assert_eq!(within("get", kv.get(&"k".into())).await.unwrap(), b"v");
    assert_eq!(within("span", kv.span(&3, &6)).await.unwrap(), [3, 4, 5]);
    assert_eq!(within("count", kv.count()).await.unwrap(), 42);
    let sum = kv.sum(&1, &2, &3, &4, &5, &6, &7, &8, &9, &10, &11);
    assert_eq!(within("sum", sum).await.unwrap(), 66);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_travel_as_their_encodings_in_declaration_order() {
    let kv = connect().await;
    let raw = kv.sender();
    // put("ab", [1, 2, 3]): a u32 length and the key's bytes, then a u32 count and the bytes.
    let body = [2, 0, 0, 0, b'a', b'b', 3, 0, 0, 0, 1, 2, 3];
    assert_eq!(iproto::pack(&(String::from("ab"), vec![1u8, 2, 3])).unwrap(), body);
    let reply = within("raw put", raw.call(0x10, &body)).await.unwrap();
    // The envelope: return code 0, then the u64.
    assert_eq!(&reply[..], [0, 0, 0, 0, 203, 0, 0, 0, 0, 0, 0, 0]);
    // span(3, 6): two u32s; the context is not on the wire.
    let reply = within("raw span", raw.call(0x12, &[3, 0, 0, 0, 6, 0, 0, 0])).await.unwrap();
    assert_eq!(iproto::unpack_exact::<Vec<u32>>(&reply).unwrap(), [3, 4, 5]);
    // count(): an empty body.
    let reply = within("raw count", raw.call(0x13, &[])).await.unwrap();
    assert_eq!(&reply[..], [42, 0, 0, 0]);
    // sum(..): eleven integers back to back, each at its own width.
    let mut body = Vec::new();
    for (i, width) in [1, 2, 4, 8, 1, 2, 4, 8, 1, 2, 4].into_iter().enumerate() {
        body.push(i as u8 + 1);
        body.extend(std::iter::repeat_n(0, width - 1));
    }
    let reply = within("raw sum", raw.call(0x14, &body)).await.unwrap();
    assert_eq!(iproto::unpack_exact::<u64>(&reply).unwrap(), 66);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_alias_folds_the_service_error_and_raw_keeps_a_result_named_type() {
    let kv = connect().await;
    let err: CallError<KvError> = within("put", kv.put(&"/etc".into(), &vec![])).await.unwrap_err();
    assert!(matches!(&err, CallError::Service(KvError::ReadOnly(k)) if k == "/etc"), "{err}");
    let err = within("put", kv.put(&"a".into(), &vec![0; 9])).await.unwrap_err();
    assert_eq!(err.service(), Some(&KvError::TooLarge { len: 9, limit: 4 }));
    let found: SearchResult = within("search", kv.search(&"abc".into())).await.unwrap();
    assert_eq!(found, SearchResult { hits: 3 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn borrowed_arguments_are_decoded_from_the_packet() {
    let kv = connect().await;
    let put = Put { key: "key", value: &[7; 5] };
    assert_eq!(within("put_borrowed", kv.put_borrowed(&put, &"note")).await.unwrap(), 12);
    let empty = Put { key: "", value: &[] };
    let err = within("put_borrowed", kv.put_borrowed(&empty, &"")).await.unwrap_err();
    assert!(matches!(err, CallError::Service(KvError::NotFound)), "{err}");
    // A borrowed request that does not decode is rejected like an owned one.
    let reply = within("raw put_borrowed", kv.sender().call(0x16, &[9, 0, 0, 0, b'x'])).await.unwrap();
    assert_eq!(&reply[..4], RC_BAD_REQUEST.to_le_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_borrowed_one_way_message_reaches_the_handler() {
    let store = std::sync::Arc::new(Store::default());
    let (a, b) = tokio::io::duplex(64 * 1024);
    let _server = Channel::new(a, ChannelConfig::server().with_handler(KvServer::from_arc(store.clone())));
    let kv = KvClient::new(Channel::new(b, ChannelConfig::client()));
    within("log", kv.log(&"hello")).await.unwrap();
    // A call after the notification is answered after the notification was handled.
    assert_eq!(within("count", kv.count()).await.unwrap(), 42);
    assert_eq!(*store.logged.lock().unwrap(), ["hello"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_code_is_rejected_at_once_by_a_typed_server() {
    let kv = connect().await;
    // The channel's timeout is an hour: only the server's answer can end this call.
    let fut = iproto::rpc::call::<_, _, u32>(kv.sender(), 0x99, &(), CallOptions::default());
    let err = within("the rejection of code 0x99", fut).await.unwrap_err();
    match &err {
        CallError::Rejected { msg: 0x99, code: RC_UNKNOWN_MSG, message } => {
            assert!(message.contains("0x99"), "{message}")
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(err.to_string().contains("rejected"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_request_is_rejected_at_once_by_a_typed_server() {
    let kv = connect().await;
    // `get` takes a String: a length of 200 with 1 byte after it does not decode.
    let fut = iproto::rpc::call::<_, _, Result<Vec<u8>, KvError>>(
        kv.sender(),
        0x11,
        &Bytes::from_static(&[200, 0, 0, 0, 1]),
        CallOptions::default(),
    );
    let err = within("the rejection of a bad body", fut).await.unwrap_err();
    assert!(matches!(err, CallError::Rejected { msg: 0x11, code: RC_BAD_REQUEST, .. }), "{err:?}");
}

#[test]
fn a_derived_service_error_packs_its_fields_after_the_code() {
    let reply: KvResult<u64> = Err(KvError::TooLarge { len: 300, limit: 4 });
    assert_eq!(iproto::pack(&reply).unwrap(), [2, 0, 0, 0, 0x82, 0x2c, 4, 0, 0, 0]);
    assert_eq!(iproto::unpack_exact::<KvResult<u64>>(&[2, 0, 0, 0, 0x82, 0x2c, 4, 0, 0, 0]).unwrap(), reply);
    let reply: KvResult<u64> = Err(KvError::ReadOnly("/a".into()));
    let bytes = iproto::pack(&reply).unwrap();
    assert_eq!(bytes, [0x31, 0, 0, 0, 2, 0, 0, 0, b'/', b'a']);
    assert_eq!(iproto::unpack_exact::<KvResult<u64>>(&bytes).unwrap(), reply);
    assert_eq!(KvError::NotFound.code(), 1);
}

#[test]
fn an_unknown_service_error_code_is_a_decode_error() {
    let err = KvError::decode(7, &mut Reader::new(&[])).unwrap_err();
    assert_eq!(err.kind(), &DecodeErrorKind::UnknownCode { code: 7, ty: "KvError" });
    let err = iproto::unpack_exact::<KvResult<u64>>(&[7, 0, 0, 0]).unwrap_err();
    assert!(err.to_string().contains("unknown return code 7 for KvError"), "{err}");
    // A field that does not decode names the variant and the field.
    let err = iproto::unpack_exact::<KvResult<u64>>(&[2, 0, 0, 0, 1]).unwrap_err();
    assert!(err.path().contains("limit"), "{}", err.path());
}

#[test]
fn the_server_debug_names_its_service_and_codes() {
    let server = KvServer::new(Store::default());
    let shown = format!("{server:?}");
    assert!(shown.starts_with("KvServer"), "{shown}");
    assert!(shown.contains("Store") && shown.contains("0x10") && shown.contains("0x17"), "{shown}");
}
