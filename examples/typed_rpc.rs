//! A typed key-value service: the server and a client in one process, over TCP.
//!
//! `cargo run --example typed_rpc`

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use iproto::bytes::Bytes;
use iproto::rpc::{CallError, Context, ServiceError};
use iproto::{CallOptions, Channel, ChannelConfig, IprotoPack, IprotoUnpack, Server};

#[derive(IprotoPack, IprotoUnpack, Debug, PartialEq)]
pub struct Value {
    value: Bytes,
    #[iproto(ber)]
    version: u64,
}

/// The service's errors: each travels as its return code, then its fields.
#[derive(ServiceError, Debug, PartialEq)]
pub enum KvError {
    #[iproto(code = 1)]
    NotFound,
    #[iproto(code = 2)]
    ReadOnly { prefix: String },
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvError::NotFound => f.write_str("no such key"),
            KvError::ReadOnly { prefix } => write!(f, "keys under {prefix} are read-only"),
        }
    }
}

/// Every method's arguments travel as one body, in order: `put("a", b"xy")` sends the key as
/// a u32 length and its bytes, then the value the same way.
#[iproto::service]
pub trait Kv {
    /// Reads a key.
    #[iproto(msg = 0x10)]
    async fn get(&self, key: String) -> Result<Value, KvError>;

    /// Writes a key; returns its version. The context may stand anywhere.
    #[iproto(msg = 0x11)]
    async fn put(&self, key: String, value: Bytes, cx: Context) -> Result<u64, KvError>;

    /// Forgets every key; one-way.
    #[iproto(msg = 0x12, notify)]
    async fn clear(&self);
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
    async fn get(&self, key: String) -> Result<Value, KvError> {
        let (value, version) = self.map().get(&key).cloned().ok_or(KvError::NotFound)?;
        Ok(Value { value, version })
    }

    async fn put(&self, key: String, value: Bytes, cx: Context) -> Result<u64, KvError> {
        if key.starts_with('/') {
            return Err(KvError::ReadOnly { prefix: "/".into() });
        }
        println!("put {key:?} from {:?}", cx.peer_addr().map(|a| a.to_string()));
        let mut map = self.map();
        let entry = map.entry(key).or_insert((Bytes::new(), 0));
        *entry = (value, entry.1 + 1);
        Ok(entry.1)
    }

    async fn clear(&self) {
        self.map().clear();
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = Server::bind("127.0.0.1:0").await?;
    let addr = server.local_addr().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // The generated server is a handler: it answers unknown codes and undecodable requests
    // with a rejection, so no call waits for its timeout.
    let serving = tokio::spawn(server.serve_with_shutdown(KvServer::new(Store::default()), async {
        let _ = stopped.await;
    }));

    let kv = KvClient::new(Channel::connect(&addr, ChannelConfig::client()).await?);
    let version = kv.put(&"greeting".into(), &Bytes::from_static(b"hello")).await?;
    let got = kv.get(&"greeting".into()).await?;
    println!("get greeting -> {:?} (version {version})", got.value);
    assert_eq!(got, Value { value: Bytes::from_static(b"hello"), version: 1 });

    // A service error arrives as the declared type, apart from transport failures.
    match kv.get_with(&"missing".into(), CallOptions::timeout(Duration::from_secs(1))).await {
        Err(CallError::Service(e)) => println!("get missing -> service error {} ({e})", e.code()),
        other => return Err(format!("expected NotFound, got {other:?}").into()),
    }
    let denied = kv.put(&"/etc".into(), &Bytes::new()).await;
    assert!(matches!(denied, Err(CallError::Service(KvError::ReadOnly { .. }))));

    // A code the server does not know is rejected at once, not left to time out.
    let unknown = iproto::rpc::call::<_, _, u32>(kv.sender(), 0x99, &(), CallOptions::default()).await;
    println!("unknown code -> {}", unknown.expect_err("code 0x99 has no handler"));

    kv.clear().await?;
    kv.into_sender().shutdown().await;
    let _ = stop.send(());
    serving.await??;
    println!("done");
    Ok(())
}
