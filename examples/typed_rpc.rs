//! A typed key-value service: the server and a client in one process, over TCP.
//!
//! `cargo run --example typed_rpc`

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use iproto::bytes::{BufMut, Bytes};
use iproto::rpc::{CallError, Context, ServiceError};
use iproto::{
    CallOptions, Channel, ChannelConfig, DecodeError, IprotoPack, IprotoUnpack, Mode, PackError, Reader, Server,
};

#[derive(IprotoPack, IprotoUnpack, Debug)]
pub struct Get {
    key: String,
}

#[derive(IprotoPack, IprotoUnpack, Debug)]
pub struct Put {
    key: String,
    value: Bytes,
}

#[derive(IprotoPack, IprotoUnpack, Debug, PartialEq)]
pub struct Value {
    value: Bytes,
    #[iproto(ber)]
    version: u64,
}

/// The service's errors; each travels as its return code.
#[derive(Debug, PartialEq)]
pub enum KvError {
    NotFound,
    ReadOnly,
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KvError::NotFound => "no such key",
            KvError::ReadOnly => "the key is read-only",
        })
    }
}

impl IprotoPack for KvError {
    fn pack<B: BufMut>(&self, _buf: &mut B, _mode: Mode) -> Result<(), PackError> {
        Ok(()) // the code says it all
    }
}

impl ServiceError for KvError {
    fn code(&self) -> u32 {
        match self {
            KvError::NotFound => 1,
            KvError::ReadOnly => 2,
        }
    }

    fn decode(code: u32, body: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match code {
            1 => Ok(KvError::NotFound),
            2 => Ok(KvError::ReadOnly),
            _ => Err(DecodeError::custom(format!("unknown KvError code {code}"), body.position())),
        }
    }
}

#[iproto::service]
pub trait Kv {
    /// Reads a key.
    #[iproto(msg = 0x10)]
    async fn get(&self, req: Get) -> Result<Value, KvError>;

    /// Writes a key; returns its version.
    #[iproto(msg = 0x11)]
    async fn put(&self, cx: Context, req: Put) -> Result<u64, KvError>;

    /// Forgets every key; one-way.
    #[iproto(msg = 0x12, notify)]
    async fn clear(&self, req: ());
}

#[derive(Default)]
struct Store {
    map: Mutex<HashMap<String, (Bytes, u64)>>,
}

impl Store {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Bytes, u64)>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Kv for Store {
    async fn get(&self, req: Get) -> Result<Value, KvError> {
        let (value, version) = self.map().get(&req.key).cloned().ok_or(KvError::NotFound)?;
        Ok(Value { value, version })
    }

    async fn put(&self, cx: Context, req: Put) -> Result<u64, KvError> {
        if req.key.starts_with('/') {
            return Err(KvError::ReadOnly);
        }
        println!("put {:?} from {:?}", req.key, cx.peer_addr().map(|a| a.to_string()));
        let mut map = self.map();
        let entry = map.entry(req.key).or_insert((Bytes::new(), 0));
        *entry = (req.value, entry.1 + 1);
        Ok(entry.1)
    }

    async fn clear(&self, _req: ()) {
        self.map().clear();
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = Server::bind("127.0.0.1:0").await?;
    let addr = server.local_addr().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_with_shutdown(KvServer::new(Store::default()).into_mux(), async {
        let _ = stopped.await;
    }));

    let kv = KvClient::new(Channel::connect(&addr, ChannelConfig::client()).await?);
    let version = kv.put(&Put { key: "greeting".into(), value: Bytes::from_static(b"hello") }).await?;
    let got = kv.get(&Get { key: "greeting".into() }).await?;
    println!("get greeting -> {:?} (version {version})", got.value);
    assert_eq!(got, Value { value: Bytes::from_static(b"hello"), version: 1 });

    // A service error arrives as the declared type, apart from transport failures.
    match kv.get_with(&Get { key: "missing".into() }, CallOptions::timeout(Duration::from_secs(1))).await {
        Err(CallError::Service(e)) => println!("get missing -> service error {} ({e})", e.code()),
        other => return Err(format!("expected NotFound, got {other:?}").into()),
    }
    let denied = kv.put(&Put { key: "/etc".into(), value: Bytes::new() }).await;
    assert!(matches!(denied, Err(CallError::Service(KvError::ReadOnly))));

    kv.clear(&()).await?;
    kv.into_sender().shutdown().await;
    let _ = stop.send(());
    serving.await??;
    println!("done");
    Ok(())
}
