//! [`Cluster`]: one client over many servers, one [`Pool`] per server, placing keys where
//! Perl's MR::IProto places them. Lists come in MR::IProto's form (`list`), balancing modes
//! pick a server (`balance`), a server that cannot be reached is taken out of rotation and
//! probed until it answers (`member`), and calls are retried under one deadline (`call`).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), iproto::Error> {
//! use iproto::cluster::{Balance, Cluster, ClusterConfig};
//! use iproto::{Channel, Packet, Sender, Server};
//!
//! let mut addrs = Vec::new();
//! for _ in 0..3 {
//!     let server = Server::bind("127.0.0.1:0").await?;
//!     addrs.push(server.local_addr().to_string());
//!     tokio::spawn(server.serve(|p: Packet, _ch: Channel| async move { Some(p.body) }));
//! }
//! let list = addrs.join(",").parse()?;
//! let cluster = Cluster::connect(list, ClusterConfig { balance: Balance::Ketama, ..Default::default() }).await?;
//! // Keyed: always the server MR::IProto's ketama picks for "user:42".
//! assert_eq!(&cluster.by_key(b"user:42").call(7, b"hi").await?[..], b"hi");
//! assert!(cluster.call(7, b"hi").await.is_err(), "ketama needs a key");
//! cluster.shutdown().await;
//! # Ok(()) }
//! ```

mod balance;
mod call;
mod list;
mod member;
mod source;

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use balance::{Balance, Balancer, BalancerFactory};
pub use call::Shard;
pub use list::{ClusterError, ServerAddr, ServerList, ServerSpec, MAX_WEIGHT};
pub use member::{MemberState, MemberStats};
pub use source::{DnsSource, ServerSource, StaticSource};

use call::Op;
use member::{Member, Probe};

use crate::channel::{CallOptions, Sender};
use crate::pool::{Pool, PoolConfig};
use crate::shard::{Padded, Published};
use crate::wire::Packet;
use crate::Error;

/// Settings of a [`Cluster`].
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// How a server is picked. Default [`Balance::RoundRobin`].
    pub balance: Balance,
    /// Config of each server's pool. Default: [`PoolConfig::default`] with `fail_on_cutoff`,
    /// so that a call to a server with no connection fails at once and goes elsewhere.
    pub pool: PoolConfig,
    /// Attempts per call, the first included (MR::IProto's `max_request_retries`). Default 2.
    pub max_attempts: u32,
    /// Pause between attempts. Default 0 (MR::IProto's default).
    pub retry_delay: Duration,
    /// First delay before probing a server that went down; the delay doubles (with jitter)
    /// up to `max_probe_interval`. Default 100 ms.
    pub probe_interval: Duration,
    /// Cap of the probe delay. Default 5 s.
    pub max_probe_interval: Duration,
    /// For idempotent calls: after this long without a reply, a second attempt goes to
    /// another server and the first reply wins. Default none.
    pub hedge_after: Option<Duration>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            balance: Balance::RoundRobin,
            pool: PoolConfig { fail_on_cutoff: true, ..PoolConfig::default() },
            max_attempts: 2,
            retry_delay: Duration::ZERO,
            probe_interval: Duration::from_millis(100),
            max_probe_interval: Duration::from_secs(5),
            hedge_after: None,
        }
    }
}

/// The servers now: the list, its members (same order) and their balancer.
struct Topology {
    list: ServerList,
    members: Vec<Arc<Member>>,
    balancer: Box<dyn Balancer>,
}

impl Topology {
    /// The server for an attempt: an up server this call has not tried, by the balancer; if
    /// none is up, an untried one that is down (it may be back before its probe noticed).
    fn pick(&self, key: Option<&[u8]>, tried: &[usize]) -> Result<Option<&Arc<Member>>, ClusterError> {
        let fresh = |i: usize| !tried.contains(&member_id(&self.members[i]));
        if let Some(i) = self.balancer.pick(key, &|i| self.members[i].is_up() && fresh(i))? {
            return Ok(Some(&self.members[i]));
        }
        Ok(self.balancer.pick(key, &fresh)?.map(|i| &self.members[i]))
    }

    /// The member whose identity is `id`, if it is still in the list.
    fn member(&self, id: usize) -> Option<&Arc<Member>> {
        self.members.iter().find(|m| member_id(m) == id)
    }
}

/// A member's identity across list changes.
fn member_id(member: &Arc<Member>) -> usize {
    Arc::as_ptr(member) as usize
}

struct Inner {
    config: ClusterConfig,
    /// Read on every call: one copy per thread shard.
    topology: Published<Arc<Topology>>,
    /// Serialises list changes.
    updating: tokio::sync::Mutex<()>,
    stop: CancellationToken,
    /// Bumped whenever a server goes down or comes back up.
    health: Arc<watch::Sender<u64>>,
    hedges: AtomicU64,
    hedge_wins: AtomicU64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One client over a list of servers, one [`Pool`] each; implements [`Sender`] (unkeyed
/// calls), and [`by_key`](Self::by_key) gives a [`Sender`] for keyed calls. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("servers", &self.servers().to_string())
            .field("config", &self.inner.config)
            .finish()
    }
}

/// Cluster-wide counters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClusterStats {
    /// Every server's, in list order.
    pub servers: Vec<MemberStats>,
    /// Second attempts started by hedging.
    pub hedges: u64,
    /// Hedged calls the second attempt won (the first one was dropped).
    pub hedge_wins: u64,
}

impl Cluster {
    /// A cluster over `list`: dials every server at once (each within the pool's connect
    /// timeout). Servers that cannot be reached start down and are probed; fails only when
    /// none can be reached, with the last error.
    pub async fn connect(list: ServerList, config: ClusterConfig) -> Result<Cluster, Error> {
        let stop = CancellationToken::new();
        let health = Arc::new(watch::Sender::new(0));
        let members = Self::make_members(&config, list.servers(), &stop, &health)?;
        let results = futures_util::future::join_all(members.iter().map(|m| m.pool.init())).await;
        let mut last_error = None;
        let mut up = 0;
        for (member, result) in members.iter().zip(results) {
            match result {
                Ok(()) => up += 1,
                Err(e) => {
                    last_error = Some(e.clone());
                    member.mark_down(e);
                }
            }
        }
        if up == 0 {
            stop.cancel();
            for member in &members {
                member.pool.close().await;
            }
            return Err(last_error.unwrap_or(Error::Cluster(ClusterError::NoServer)));
        }
        let balancer = config.balance.build(&list);
        let topology = Topology { list, members, balancer };
        let inner = Inner {
            config,
            topology: Published::new(Arc::new(topology)),
            updating: tokio::sync::Mutex::new(()),
            stop,
            health,
            hedges: AtomicU64::new(0),
            hedge_wins: AtomicU64::new(0),
        };
        Ok(Cluster { inner: Arc::new(inner) })
    }

    fn make_members(
        config: &ClusterConfig,
        specs: &[ServerSpec],
        stop: &CancellationToken,
        health: &Arc<watch::Sender<u64>>,
    ) -> Result<Vec<Arc<Member>>, Error> {
        let probe = Probe {
            interval: config.probe_interval,
            max_interval: config.max_probe_interval,
            timeout: config.pool.connect_timeout,
        };
        specs
            .iter()
            .map(|spec| {
                let pool = Pool::new(&spec.addr.to_string(), config.pool.clone())?;
                Ok(Member::new(spec.addr.clone(), pool, probe, stop.child_token(), health.clone()))
            })
            .collect()
    }

    fn topology(&self) -> Arc<Padded<Arc<Topology>>> {
        self.inner.topology.load()
    }

    /// The configuration.
    pub fn config(&self) -> &ClusterConfig {
        &self.inner.config
    }

    /// The server list now.
    pub fn servers(&self) -> ServerList {
        self.topology().list.clone()
    }

    /// Per-server state and counters, plus the hedging counters.
    pub fn stats(&self) -> ClusterStats {
        let topology = self.topology();
        let servers = topology
            .members
            .iter()
            .zip(topology.list.servers())
            .map(|(member, spec)| member.stats(spec.clone()))
            .collect();
        ClusterStats {
            servers,
            hedges: self.inner.hedges.load(Relaxed),
            hedge_wins: self.inner.hedge_wins.load(Relaxed),
        }
    }

    /// A receiver whose value changes each time a server goes down or comes back up: await
    /// `changed()` on it to react to health changes instead of polling [`stats`](Self::stats).
    ///
    /// ```no_run
    /// # async fn f(cluster: iproto::cluster::Cluster) {
    /// let mut health = cluster.health_changes();
    /// // Subscribed before the check, so a change in between is not missed.
    /// while cluster.stats().servers.iter().any(|s| s.state != iproto::cluster::MemberState::Up) {
    ///     if health.changed().await.is_err() {
    ///         break; // the cluster was dropped
    ///     }
    /// }
    /// # }
    /// ```
    pub fn health_changes(&self) -> watch::Receiver<u64> {
        self.inner.health.subscribe()
    }

    /// The server a call with `key` would go to now (servers down skipped), without calling.
    pub fn server_for(&self, key: Option<&[u8]>) -> Result<ServerSpec, Error> {
        let topology = self.topology();
        let member = topology.pick(key, &[])?.ok_or(ClusterError::NoServer)?;
        let i = topology.members.iter().position(|m| Arc::ptr_eq(m, member)).unwrap_or(0);
        Ok(topology.list.servers()[i].clone())
    }

    /// A [`Sender`] whose calls are placed by `key` (the keyed modes need one).
    pub fn by_key<'a>(&'a self, key: &'a [u8]) -> Keyed<'a> {
        Keyed { cluster: self, key }
    }

    /// Replaces the server list without failing calls in flight: servers still listed keep
    /// their pools and health (a new weight takes effect at once), new ones are dialed
    /// (within the pool's connect timeout; those that fail join down and are probed) before
    /// the new list takes calls, and removed ones finish their calls and shut down in the
    /// background. Calls already running keep the servers they picked.
    pub async fn update(&self, list: ServerList) -> Result<(), Error> {
        let inner = &*self.inner;
        let _serial = inner.updating.lock().await;
        let old = self.topology();
        let mut members = Vec::with_capacity(list.len());
        let mut fresh = Vec::new();
        for spec in list.servers() {
            match old.members.iter().find(|m| m.addr == spec.addr) {
                Some(member) => members.push(member.clone()),
                None => {
                    let specs = std::slice::from_ref(spec);
                    let member = Self::make_members(&inner.config, specs, &inner.stop, &inner.health)?.remove(0);
                    fresh.push(member.clone());
                    members.push(member);
                }
            }
        }
        let results = futures_util::future::join_all(fresh.iter().map(|m| m.pool.init())).await;
        for (member, result) in fresh.iter().zip(results) {
            if let Err(e) = result {
                member.mark_down(e);
            }
        }
        let balancer = inner.config.balance.build(&list);
        let topology = Arc::new(Topology { list, members, balancer });
        inner.topology.store(topology.clone());
        for gone in old.members.iter().filter(|m| !topology.members.iter().any(|n| Arc::ptr_eq(m, n))) {
            gone.stop.cancel();
            let gone = gone.clone();
            tokio::spawn(async move { gone.pool.shutdown().await });
        }
        Ok(())
    }

    /// Follows `source`: applies every list it yields with [`update`](Self::update) until
    /// the source ends or the cluster is dropped.
    pub fn follow<S: ServerSource>(&self, mut source: S) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        let stop = self.inner.stop.clone();
        tokio::spawn(async move {
            loop {
                let list = tokio::select! {
                    _ = stop.cancelled() => return,
                    list = source.next_list() => list,
                };
                let (Some(list), Some(inner)) = (list, weak.upgrade()) else { return };
                if let Err(e) = (Cluster { inner }).update(list).await {
                    tracing::warn!(error = %e, "cluster list update failed");
                }
            }
        })
    }

    /// Graceful shutdown of every server's pool (see [`Pool::shutdown`]); stops probing.
    pub async fn shutdown(&self) {
        self.inner.stop.cancel();
        let topology = self.topology();
        futures_util::future::join_all(topology.members.iter().map(|m| m.pool.shutdown())).await;
    }

    /// Closes every server's pool at once (see [`Pool::close`]); stops probing.
    pub async fn close(&self) {
        self.inner.stop.cancel();
        let topology = self.topology();
        futures_util::future::join_all(topology.members.iter().map(|m| m.pool.close())).await;
    }

    /// An unkeyed call (round-robin or a custom balancer), retried per the config.
    pub fn call_with<'s, 'b>(
        &'s self,
        msg: u32,
        body: &'b [u8],
        opts: CallOptions,
    ) -> impl Future<Output = Result<Bytes, Error>> + Send + use<'s, 'b> {
        self.run(None, Op::Call { msg, body }, opts)
    }

    /// [`call_with`](Self::call_with) with default options.
    pub fn call<'s, 'b>(
        &'s self,
        msg: u32,
        body: &'b [u8],
    ) -> impl Future<Output = Result<Bytes, Error>> + Send + use<'s, 'b> {
        self.call_with(msg, body, CallOptions::default())
    }
}

impl Sender for Cluster {
    fn call_with(&self, msg: u32, body: &[u8], opts: CallOptions) -> impl Future<Output = Result<Bytes, Error>> + Send {
        self.run(None, Op::Call { msg, body }, opts)
    }

    fn notify(&self, msg: u32, body: &[u8]) -> impl Future<Output = Result<(), Error>> + Send {
        self.run_unit(None, Op::Notify { msg, body })
    }

    async fn send(&self, packet: Packet) -> Result<(), Error> {
        self.run_unit(None, Op::Send(&packet)).await
    }
}

/// A [`Sender`] over a [`Cluster`] whose calls are placed by one key: from
/// [`Cluster::by_key`]. Typed clients and [`SenderExt`](crate::SenderExt) work over it.
#[derive(Clone, Copy)]
pub struct Keyed<'a> {
    cluster: &'a Cluster,
    key: &'a [u8],
}

impl fmt::Debug for Keyed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyed").field("key", &self.key).finish_non_exhaustive()
    }
}

impl Sender for Keyed<'_> {
    fn call_with(&self, msg: u32, body: &[u8], opts: CallOptions) -> impl Future<Output = Result<Bytes, Error>> + Send {
        self.cluster.run(Some(self.key), Op::Call { msg, body }, opts)
    }

    fn notify(&self, msg: u32, body: &[u8]) -> impl Future<Output = Result<(), Error>> + Send {
        self.cluster.run_unit(Some(self.key), Op::Notify { msg, body })
    }

    async fn send(&self, packet: Packet) -> Result<(), Error> {
        self.cluster.run_unit(Some(self.key), Op::Send(&packet)).await
    }
}
