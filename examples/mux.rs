//! Routing requests by message code with [`ServeMux`]: a tiny key-value service whose SET, GET
//! and COUNT requests go to three handlers; an unknown code gets the fallback reply.
//!
//! ```text
//! cargo run --example mux
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use iproto::{Channel, ChannelConfig, Packet, ServeMux, Server};

const SET: u32 = 0x10;
const GET: u32 = 0x11;
const COUNT: u32 = 0x12;

type Store = Arc<Mutex<HashMap<String, String>>>;

/// The service: SET takes `(key, value)` and returns a status, GET takes a key and returns
/// `(status, Option<value>)`, COUNT returns the number of keys as a u32. Status 0 is success,
/// 1 a malformed request. Strings carry u32 LE length prefixes.
fn routes(store: Store) -> ServeMux {
    let mut mux = ServeMux::new();
    let set_store = store.clone();
    mux.handle(SET, move |p: Packet, _ch: Channel| {
        let store = set_store.clone();
        async move {
            // A request the peer got wrong is answered with status 1, never a panic.
            let Ok((key, value)) = iproto::unpack_exact::<(String, String)>(&p.body) else {
                return iproto::pack(&1u32).ok();
            };
            store.lock().unwrap().insert(key, value);
            iproto::pack(&0u32).ok()
        }
    })
    .expect("SET registered once");
    let get_store = store.clone();
    mux.handle(GET, move |p: Packet, _ch: Channel| {
        let store = get_store.clone();
        async move {
            // A malformed key is answered with status 1: a request is never left unanswered,
            // which would make the caller wait for its whole timeout.
            let Ok(key) = iproto::unpack_exact::<&str>(&p.body) else {
                return iproto::pack(&(1u32, None::<String>)).ok();
            };
            let value = store.lock().unwrap().get(key).cloned();
            iproto::pack(&(0u32, value)).ok()
        }
    })
    .expect("GET registered once");
    mux.handle(COUNT, move |_p: Packet, _ch: Channel| {
        let store = store.clone();
        async move {
            let count = store.lock().unwrap().len() as u32;
            iproto::pack(&count).ok()
        }
    })
    .expect("COUNT registered once");
    mux.reply_to_unknown(&b"unknown request"[..]);
    mux
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = Server::bind("127.0.0.1:0").await?;
    let addr = server.local_addr().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_with_shutdown(routes(Store::default()), async {
        let _ = stopped.await;
    }));

    let client = Channel::connect(&addr, ChannelConfig::client()).await?;
    for (key, value) in [("language", "Rust"), ("protocol", "iproto")] {
        let status: u32 = iproto::unpack_exact(&client.call(SET, &iproto::pack(&(key, value))?).await?)?;
        println!("SET {key} = {value}: status {status}");
        assert_eq!(status, 0);
    }
    for key in ["protocol", "missing"] {
        let reply = client.call(GET, &iproto::pack(key)?).await?;
        let (status, value): (u32, Option<&str>) = iproto::unpack_exact(&reply)?;
        println!("GET {key}: status {status}, {value:?}");
        assert_eq!((status, value.is_some()), (0, key != "missing"));
    }
    // Three bytes are no string (its length prefix alone is four): status 1, at once.
    let (status, _): (u32, Option<&str>) = iproto::unpack_exact(&client.call(GET, b"bad").await?)?;
    println!("GET with a malformed key: status {status}");
    assert_eq!(status, 1);
    let count: u32 = iproto::unpack_exact(&client.call(COUNT, &[]).await?)?;
    println!("COUNT: {count}");
    assert_eq!(count, 2);
    let reply = client.call(0x99, b"?").await?;
    println!("code 0x99: {:?}", String::from_utf8_lossy(&reply));

    client.shutdown().await;
    let _ = stop.send(());
    serving.await??;
    Ok(())
}
