//! A test-only TCP proxy that injects faults between a client and a server: every write split
//! into 1-byte pieces, a delay before each forwarded chunk, stalled reads, a cut at a chosen
//! byte offset in either direction, a corrupted length field, and killing every open
//! connection at once. Counters are published on a `watch` channel so that tests await events
//! instead of sleeping.
#![allow(dead_code)] // shared by several test binaries; each uses part of it

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A direction of traffic through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Client to server (requests).
    ToServer,
    /// Server to client (replies).
    ToClient,
}

/// The faults applied to connections opened while they are set.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Write every byte on its own (both directions).
    pub split: bool,
    /// Wait this long before forwarding each chunk (both directions).
    pub delay: Option<Duration>,
    /// Close the connection (both sides) once this many bytes went in this direction.
    pub cut: Option<(Dir, u64)>,
    /// Replace the length field of the packet with this index (0-based) in this direction.
    pub corrupt_len: Option<Corrupt>,
}

/// A length field to overwrite.
#[derive(Debug, Clone, Copy)]
pub struct Corrupt {
    /// Which stream.
    pub dir: Dir,
    /// Index of the packet in that stream, from 0.
    pub packet: u64,
    /// The length written instead.
    pub len: u32,
}

/// What the proxy did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Client connections accepted.
    pub accepted: u64,
    /// Connections open now.
    pub open: u64,
    /// Connections closed by a `cut` fault.
    pub cuts: u64,
    /// Length fields overwritten.
    pub corrupted: u64,
    /// Connections closed by [`Proxy::kill_all`].
    pub killed: u64,
    /// Bytes forwarded to the server and to the client.
    pub to_server: u64,
    pub to_client: u64,
}

struct Shared {
    upstream: SocketAddr,
    faults: Mutex<Faults>,
    stalled: watch::Sender<bool>,
    /// Cancelled by `kill_all`, then replaced; each connection holds a child of it.
    kill: Mutex<CancellationToken>,
    stats: watch::Sender<ProxyStats>,
}

/// The proxy; dropping it stops accepting and closes every connection.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
    root: CancellationToken,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub async fn start(upstream: &str) -> Proxy {
        let upstream: SocketAddr = upstream.parse().expect("upstream is ip:port");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let root = CancellationToken::new();
        let shared = Arc::new(Shared {
            upstream,
            faults: Mutex::default(),
            stalled: watch::channel(false).0,
            kill: Mutex::new(root.child_token()),
            stats: watch::channel(ProxyStats::default()).0,
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Proxy { addr, shared, accept, root }
    }

    /// The address clients dial.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Sets the faults for connections opened from now on.
    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults.lock().unwrap() = faults;
    }

    /// Stops (true) or resumes (false) reading on every connection, open or future.
    pub fn stall(&self, on: bool) {
        self.shared.stalled.send_replace(on);
    }

    /// Closes every open connection now.
    pub fn kill_all(&self) {
        let mut kill = self.shared.kill.lock().unwrap();
        kill.cancel();
        *kill = self.root.child_token();
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ProxyStats {
        *self.shared.stats.borrow()
    }

    /// Waits until the counters satisfy `cond` (at most `limit`), and returns them.
    pub async fn wait_for(&self, limit: Duration, cond: impl FnMut(&ProxyStats) -> bool) -> ProxyStats {
        let mut rx = self.shared.stats.subscribe();
        let waited = tokio::time::timeout(limit, rx.wait_for(cond)).await;
        let stats = *self.shared.stats.borrow();
        assert!(waited.is_ok(), "proxy did not reach the expected state within {limit:?}: {stats:?}");
        stats
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.root.cancel();
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while let Ok((client, _)) = listener.accept().await {
        let faults = shared.faults.lock().unwrap().clone();
        let token = shared.kill.lock().unwrap().child_token();
        shared.stats.send_modify(|s| {
            s.accepted += 1;
            s.open += 1;
        });
        tokio::spawn(connection(client, faults, token, shared.clone()));
    }
}

/// How one connection ended.
enum End {
    /// Both directions reached EOF or an error.
    Done,
    Cut,
    Killed,
}

async fn connection(client: TcpStream, faults: Faults, token: CancellationToken, shared: Arc<Shared>) {
    let end = match TcpStream::connect(shared.upstream).await {
        Ok(server) => {
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            let conn = token.child_token();
            let up = pump(Dir::ToServer, cr, sw, &faults, &conn, &shared);
            let down = pump(Dir::ToClient, sr, cw, &faults, &conn, &shared);
            tokio::select! {
                biased;
                _ = token.cancelled() => End::Killed,
                (a, b) = async { tokio::join!(up, down) } => {
                    if a || b { End::Cut } else { End::Done }
                }
            }
        }
        Err(_) => End::Done,
    };
    shared.stats.send_modify(|s| {
        s.open -= 1;
        match end {
            End::Cut => s.cuts += 1,
            End::Killed => s.killed += 1,
            End::Done => {}
        }
    });
}

/// Forwards one direction until EOF, an error or a cut; returns whether it cut. A cut cancels
/// `conn`, which stops the other direction too, and both sockets are dropped (closed).
async fn pump(
    dir: Dir,
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    faults: &Faults,
    conn: &CancellationToken,
    shared: &Shared,
) -> bool {
    let mut stalled = shared.stalled.subscribe();
    let cut_at = faults.cut.filter(|(d, _)| *d == dir).map(|(_, at)| at);
    let mut framer = faults.corrupt_len.filter(|c| c.dir == dir).map(Framer::new);
    let mut forwarded = 0u64;
    let mut buf = vec![0u8; 16 * 1024];
    let work = async {
        loop {
            if stalled.wait_for(|s| !*s).await.is_err() {
                return false;
            }
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return false;
                }
                Ok(n) => n,
            };
            // A read that was already waiting when the stall began is held back too.
            if stalled.wait_for(|s| !*s).await.is_err() {
                return false;
            }
            let mut chunk = &buf[..n];
            let mut cut = false;
            if let Some(at) = cut_at {
                let room = at.saturating_sub(forwarded);
                if (chunk.len() as u64) >= room {
                    chunk = &chunk[..room as usize];
                    cut = true;
                }
            }
            let rewritten;
            if let Some(f) = framer.as_mut() {
                let (out, hits) = f.feed(chunk);
                if hits > 0 {
                    shared.stats.send_modify(|s| s.corrupted += hits);
                }
                rewritten = out;
                chunk = &rewritten;
            }
            if let Some(d) = faults.delay {
                tokio::time::sleep(d).await; // the injected fault, not synchronisation
            }
            let written = if faults.split { write_bytewise(&mut to, chunk).await } else { to.write_all(chunk).await };
            if written.is_err() {
                return false;
            }
            forwarded += chunk.len() as u64;
            shared.stats.send_modify(|s| match dir {
                Dir::ToServer => s.to_server += chunk.len() as u64,
                Dir::ToClient => s.to_client += chunk.len() as u64,
            });
            if cut {
                return true;
            }
        }
    };
    tokio::select! {
        _ = conn.cancelled() => false,
        cut = work => {
            if cut {
                conn.cancel();
            }
            cut
        }
    }
}

async fn write_bytewise(to: &mut OwnedWriteHalf, chunk: &[u8]) -> std::io::Result<()> {
    for b in chunk {
        to.write_all(std::slice::from_ref(b)).await?;
        to.flush().await?;
    }
    Ok(())
}

/// Follows packet boundaries in one stream and overwrites one packet's length field. Header
/// bytes are held back until the whole header has arrived, so a header split across reads is
/// rewritten too. After the overwrite the stream is passed through untouched.
struct Framer {
    target: Corrupt,
    index: u64,
    header: Vec<u8>,
    body_left: u64,
    done: bool,
}

impl Framer {
    fn new(target: Corrupt) -> Framer {
        Framer { target, index: 0, header: Vec::with_capacity(12), body_left: 0, done: false }
    }

    /// The bytes to forward for `chunk`, and how many length fields were overwritten.
    fn feed(&mut self, mut chunk: &[u8]) -> (Vec<u8>, u64) {
        let mut out = Vec::with_capacity(chunk.len() + 12);
        let mut hits = 0;
        while !chunk.is_empty() {
            if self.done {
                out.extend_from_slice(chunk);
                break;
            }
            if self.body_left > 0 {
                let n = (self.body_left as usize).min(chunk.len());
                out.extend_from_slice(&chunk[..n]);
                self.body_left -= n as u64;
                chunk = &chunk[n..];
                continue;
            }
            let n = (12 - self.header.len()).min(chunk.len());
            self.header.extend_from_slice(&chunk[..n]);
            chunk = &chunk[n..];
            if self.header.len() == 12 {
                self.body_left = u64::from(u32::from_le_bytes(self.header[4..8].try_into().unwrap()));
                if self.index == self.target.packet {
                    self.header[4..8].copy_from_slice(&self.target.len.to_le_bytes());
                    hits += 1;
                    self.done = true;
                }
                self.index += 1;
                out.append(&mut self.header);
            }
        }
        (out, hits)
    }
}
