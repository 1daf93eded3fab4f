//! A Cluster over real local servers: keyed calls reach the server their balancer names,
//! failover under load (no idempotent call fails, no non-idempotent call runs twice, a
//! restarted server is back in rotation), retries and the one deadline, hedging, fan-out,
//! typed calls through `by_key`, and the list changed under load (nothing lost or misrouted).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use iproto::cluster::{Balance, Cluster, ClusterConfig, MemberState, ServerList};
use iproto::rpc::SenderExt;
use iproto::server::ServerConfig;
use iproto::{CallOptions, Channel, Error, IprotoPack, IprotoUnpack, Packet, Request, Sender, Server, TimeoutStage};
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

/// Message codes the test servers understand.
const ECHO: u32 = 1;
/// Replies after this many milliseconds (u64 LE in the body's first 8 bytes), or at once if
/// the rest of the body names another server.
const SLOW: u32 = 2;
/// Counts the execution of request id (u64 LE body), then closes the connection without a
/// reply when the body's 9th byte is 1.
const COUNTED: u32 = 3;

/// Executions per request id, over every server.
type Executions = Arc<Mutex<HashMap<u64, u32>>>;

/// One test server: replies `name|body`; can be killed (every connection closed at once, the
/// listener closed) and started again on the same address.
struct Node {
    name: String,
    addr: String,
    executions: Executions,
    running: Option<Running>,
}

/// A running node: its stop signal, its open connections and its serving task.
type Running = (oneshot::Sender<()>, Arc<Mutex<Vec<Channel>>>, JoinHandle<()>);

impl Node {
    async fn start(name: &str, executions: &Executions) -> Node {
        let mut node =
            Node { name: name.to_owned(), addr: "127.0.0.1:0".into(), executions: executions.clone(), running: None };
        node.restart().await;
        node
    }

    async fn restart(&mut self) {
        let channels: Arc<Mutex<Vec<Channel>>> = Arc::default();
        let kept = channels.clone();
        let config = ServerConfig::default().on_accept(move |stream, config| {
            let channel = Channel::from_stream(stream, config);
            kept.lock().unwrap().push(channel.clone());
            async move { Ok(channel) }
        });
        let server = Server::bind_with(&self.addr, config).await.expect("test server binds");
        self.addr = server.local_addr().to_string();
        let (name, executions) = (self.name.clone(), self.executions.clone());
        let handler = move |p: Packet, ch: Channel| {
            let (name, executions) = (name.clone(), executions.clone());
            async move { handle(&name, &executions, p, ch).await }
        };
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let _ = server.serve_with_shutdown(handler, async { drop(stopped.await) }).await;
        });
        self.running = Some((stop, channels, task));
    }

    /// Closes every connection at once (replies in flight are lost) and the listener.
    async fn kill(&mut self) {
        let (stop, channels, task) = self.running.take().expect("node is running");
        for channel in channels.lock().unwrap().drain(..) {
            channel.close();
        }
        let _ = stop.send(());
        task.await.expect("server task");
    }
}

async fn handle(name: &str, executions: &Executions, p: Packet, ch: Channel) -> Option<Bytes> {
    match p.header.msg {
        SLOW => {
            let ms = u64::from_le_bytes(p.body[..8].try_into().ok()?);
            let only = &p.body[8..];
            if !only.is_empty() && only != name.as_bytes() {
                return Some(Bytes::from([name.as_bytes(), b"|", &p.body[..]].concat()));
            }
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        COUNTED => {
            let id = u64::from_le_bytes(p.body[..8].try_into().ok()?);
            *executions.lock().unwrap().entry(id).or_default() += 1;
            if p.body.get(8) == Some(&1) {
                ch.close();
                return None;
            }
        }
        _ => {}
    }
    Some(Bytes::from([name.as_bytes(), b"|", &p.body[..]].concat()))
}

fn replier(reply: &[u8]) -> String {
    let end = reply.iter().position(|&b| b == b'|').expect("reply names its server");
    String::from_utf8_lossy(&reply[..end]).into_owned()
}

fn config(balance: Balance) -> ClusterConfig {
    ClusterConfig {
        balance,
        max_attempts: 3,
        probe_interval: Duration::from_millis(20),
        max_probe_interval: Duration::from_millis(200),
        ..Default::default()
    }
}

async fn nodes(n: usize) -> (Vec<Node>, Executions) {
    let executions = Executions::default();
    let mut nodes = Vec::new();
    for i in 0..n {
        nodes.push(Node::start(&format!("n{i}"), &executions).await);
    }
    (nodes, executions)
}

fn list(nodes: &[Node]) -> ServerList {
    nodes.iter().map(|n| n.addr.as_str()).collect::<Vec<_>>().join(",").parse().expect("addresses parse")
}

fn name_of(nodes: &[Node], addr: &str) -> String {
    nodes.iter().find(|n| n.addr == addr).map(|n| n.name.clone()).expect("a listed node")
}

/// Waits up to `limit` for `cond`, polling the cluster's stats; panics naming `what`.
/// Waits, up to `limit`, until `cond` holds: re-checked on each of the cluster's health changes.
async fn wait_for(cluster: &Cluster, limit: Duration, what: &str, cond: impl Fn(&Cluster) -> bool) {
    // Subscribed before the first check: a change in between is not missed.
    let mut changes = cluster.health_changes();
    let waited = tokio::time::timeout(limit, async {
        while !cond(cluster) {
            changes.changed().await.expect("the cluster is alive");
        }
    });
    assert!(waited.await.is_ok(), "timed out after {limit:?} waiting for {what}");
}

#[tokio::test]
async fn keyed_calls_reach_the_server_the_balancer_names() {
    let (nodes, _) = nodes(3).await;
    for balance in [Balance::HashCrc32, Balance::Ketama, Balance::Consistent] {
        let cluster = Cluster::connect(list(&nodes), config(balance.clone())).await.unwrap();
        for k in 0..200 {
            let key = format!("key:{k}");
            let owner = cluster.server_for(Some(key.as_bytes())).unwrap();
            let reply = cluster.by_key(key.as_bytes()).call(ECHO, b"x").await.unwrap();
            assert_eq!(replier(&reply), name_of(&nodes, &owner.addr.to_string()), "{balance:?} {key}");
        }
        let err = cluster.call(ECHO, b"x").await.unwrap_err();
        assert!(matches!(err, Error::Cluster(iproto::ClusterError::KeyRequired { .. })), "{err:?}");
        cluster.shutdown().await;
    }
}

#[tokio::test]
async fn round_robin_spreads_unkeyed_calls_over_every_server() {
    let (nodes, _) = nodes(3).await;
    let cluster = Cluster::connect(list(&nodes), config(Balance::RoundRobin)).await.unwrap();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for _ in 0..30 {
        *seen.entry(replier(&cluster.call(ECHO, b"x").await.unwrap())).or_default() += 1;
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.values().all(|&n| n == 10), "{seen:?}");
    let stats = cluster.stats();
    assert!(stats.servers.iter().all(|s| s.calls == 10 && s.errors == 0 && s.state == MemberState::Up));
}

#[tokio::test]
async fn a_server_that_cannot_be_reached_starts_down_and_keyed_calls_go_around_it() {
    let (mut nodes, _) = nodes(3).await;
    nodes[1].kill().await;
    let cluster = Cluster::connect(list(&nodes), config(Balance::Consistent)).await.unwrap();
    let down = &cluster.stats().servers[1];
    assert_eq!(down.state, MemberState::Down);
    assert!(matches!(down.last_error, Some(Error::Connect { .. })), "{:?}", down.last_error);
    for k in 0..100 {
        let key = format!("key:{k}");
        let reply = cluster.by_key(key.as_bytes()).call(ECHO, b"x").await.unwrap();
        assert_ne!(replier(&reply), "n1");
    }
    nodes[1].restart().await;
    wait_for(&cluster, Duration::from_secs(5), "n1 back up", |c| c.stats().servers[1].state == MemberState::Up).await;
}

#[tokio::test]
async fn a_call_that_may_have_arrived_is_retried_only_when_idempotent() {
    let (nodes, executions) = nodes(2).await;
    let cluster = Cluster::connect(list(&nodes), config(Balance::RoundRobin)).await.unwrap();
    // The server counts the request, then drops the connection: the reply never comes.
    let body = |id: u64| [&id.to_le_bytes()[..], &[1]].concat();
    let err = cluster.call(COUNTED, &body(1)).await.unwrap_err();
    assert!(matches!(err, Error::Dropped(_) | Error::PeerClosed { .. }), "{err:?}");
    assert_eq!(executions.lock().unwrap()[&1], 1, "a non-idempotent call ran once");

    let opts = CallOptions::default().idempotent();
    let err = cluster.call_with(COUNTED, &body(2), opts).await.unwrap_err();
    // Both servers dropped it: tried on each, then no untried server was left.
    assert_eq!(executions.lock().unwrap()[&2], 2, "an idempotent call was retried on the other server: {err:?}");
}

#[tokio::test]
async fn one_deadline_bounds_every_attempt() {
    let (nodes, _) = nodes(3).await;
    let cluster = Cluster::connect(list(&nodes), config(Balance::RoundRobin)).await.unwrap();
    let opts = CallOptions::timeout(Duration::from_millis(150)).idempotent();
    let body = 10_000u64.to_le_bytes();
    let call = cluster.call_with(SLOW, &body, opts);
    let result = tokio::time::timeout(Duration::from_secs(5), call).await.expect("the call ends by its deadline");
    assert!(
        matches!(result, Err(Error::Timeout { msg: SLOW, after, stage: TimeoutStage::Reply }) if after == Duration::from_millis(150)),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_hedged_call_takes_the_first_reply() {
    let (nodes, _) = nodes(2).await;
    let config = ClusterConfig { hedge_after: Some(Duration::from_millis(30)), ..config(Balance::HashCrc32) };
    let cluster = Cluster::connect(list(&nodes), config).await.unwrap();
    let key = (0..)
        .map(|k: u32| k.to_string())
        .find(|k| cluster.server_for(Some(k.as_bytes())).unwrap().addr.to_string() == nodes[0].addr)
        .unwrap();
    // n0 answers after 5 s, n1 at once, so the hedge to n1 wins.
    let opts = CallOptions::timeout(Duration::from_secs(10)).idempotent();
    let body = [&5_000u64.to_le_bytes()[..], b"n0"].concat();
    let keyed = cluster.by_key(key.as_bytes());
    let reply = keyed.call_with(SLOW, &body, opts);
    let reply =
        tokio::time::timeout(Duration::from_secs(4), reply).await.expect("the hedge answers before n0").unwrap();
    assert_eq!(replier(&reply), "n1");
    let stats = cluster.stats();
    assert_eq!((stats.hedges, stats.hedge_wins), (1, 1));
    // Not idempotent: no hedge.
    let reply = cluster.by_key(key.as_bytes()).call_with(SLOW, &0u64.to_le_bytes(), CallOptions::default()).await;
    assert_eq!(replier(&reply.unwrap()), "n0");
    assert_eq!(cluster.stats().hedges, 1);
    cluster.close().await;
}

#[tokio::test]
async fn fan_out_asks_every_server_or_the_servers_of_some_keys() {
    let (nodes, _) = nodes(3).await;
    let cluster = Cluster::connect(list(&nodes), config(Balance::Ketama)).await.unwrap();
    let shards = cluster.fan_out(ECHO, b"all", CallOptions::default()).await;
    let names: Vec<String> = shards.iter().map(|s| replier(s.result.as_ref().unwrap())).collect();
    assert_eq!(names, ["n0", "n1", "n2"]);

    let keys: Vec<String> = (0..50).map(|k| format!("key:{k}")).collect();
    let shards = cluster
        .fan_out_keys(
            &keys,
            ECHO,
            |ks| ks.iter().map(|&k| keys[k].clone()).collect::<Vec<_>>().join(",").into_bytes(),
            CallOptions::default(),
        )
        .await
        .unwrap();
    let mut covered: Vec<usize> = shards.iter().flat_map(|s| s.keys.clone()).collect();
    covered.sort();
    assert_eq!(covered, (0..50).collect::<Vec<_>>(), "every key in exactly one shard");
    for shard in &shards {
        assert_eq!(replier(shard.result.as_ref().unwrap()), name_of(&nodes, &shard.server.addr.to_string()));
        for &k in &shard.keys {
            assert_eq!(cluster.server_for(Some(keys[k].as_bytes())).unwrap(), shard.server);
        }
    }
}

#[derive(IprotoPack, IprotoUnpack, Request)]
#[request(msg = 1, response = Echoed)]
struct Hello {
    word: u32,
}

#[derive(IprotoPack, IprotoUnpack, Debug, PartialEq)]
struct Echoed {
    name: u16,
    bar: u8,
    word: u32,
}

#[tokio::test]
async fn typed_calls_work_over_a_cluster_and_a_keyed_handle() {
    let (nodes, _) = nodes(3).await;
    let cluster = Cluster::connect(list(&nodes), config(Balance::Consistent)).await.unwrap();
    let owner = name_of(&nodes, &cluster.server_for(Some(b"k")).unwrap().addr.to_string());
    let reply = cluster.by_key(b"k").request(&Hello { word: 7 }).await.unwrap();
    assert_eq!(reply, Echoed { name: u16::from_le_bytes(owner.as_bytes().try_into().unwrap()), bar: b'|', word: 7 });

    let rr = Cluster::connect(list(&nodes), config(Balance::RoundRobin)).await.unwrap();
    assert_eq!(rr.request(&Hello { word: 9 }).await.unwrap().word, 9);
}

/// Load for the failover and list-change tests: `workers` tasks calling until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    progress: Arc<Notify>,
    tasks: Vec<JoinHandle<Vec<Outcome>>>,
}

/// One call's outcome.
#[derive(Debug)]
struct Outcome {
    id: u64,
    idempotent: bool,
    key: Option<String>,
    epoch: (u64, u64),
    result: Result<String, Error>,
}

impl Load {
    fn start(cluster: &Cluster, workers: u64, keyed: bool, epoch: &Arc<AtomicU64>) -> Load {
        let (stop, done, progress) =
            (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)), Arc::new(Notify::new()));
        let tasks = (0..workers)
            .map(|w| {
                let (cluster, stop, done, progress, epoch) =
                    (cluster.clone(), stop.clone(), done.clone(), progress.clone(), epoch.clone());
                tokio::spawn(async move {
                    let mut outcomes = Vec::new();
                    let mut n = 0u64;
                    while !stop.load(SeqCst) {
                        let id = w << 32 | n;
                        let idempotent = n.is_multiple_of(2);
                        n += 1;
                        let body = [&id.to_le_bytes()[..], &[0]].concat();
                        let opts = CallOptions { idempotent, ..CallOptions::timeout(Duration::from_secs(5)) };
                        let key = keyed.then(|| format!("key:{}", id % 997));
                        let start = epoch.load(SeqCst);
                        let result = match &key {
                            Some(k) => cluster.by_key(k.as_bytes()).call_with(COUNTED, &body, opts).await,
                            None => cluster.call_with(COUNTED, &body, opts).await,
                        };
                        let result = result.map(|r| replier(&r));
                        outcomes.push(Outcome { id, idempotent, key, epoch: (start, epoch.load(SeqCst)), result });
                        done.fetch_add(1, SeqCst);
                        progress.notify_waiters();
                    }
                    outcomes
                })
            })
            .collect();
        Load { stop, done, progress, tasks }
    }

    /// Waits until `more` further calls have finished (bounded; panics naming the wait).
    async fn wait_calls(&self, more: u64, what: &str) {
        let target = self.done.load(SeqCst) + more;
        let wait = async {
            while self.done.load(SeqCst) < target {
                let notified = self.progress.notified();
                if self.done.load(SeqCst) >= target {
                    break;
                }
                let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), wait).await.unwrap_or_else(|_| panic!("{more} calls {what}"));
    }

    async fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, SeqCst);
        let mut all = Vec::new();
        for task in self.tasks {
            all.extend(task.await.expect("load task"));
        }
        all
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_under_load_loses_no_idempotent_call_and_runs_none_twice() {
    let (mut nodes, executions) = nodes(3).await;
    let cluster = Cluster::connect(list(&nodes), config(Balance::RoundRobin)).await.unwrap();
    let epoch = Arc::new(AtomicU64::new(0));
    let load = Load::start(&cluster, 8, false, &epoch);
    load.wait_calls(300, "before the kill").await;
    nodes[1].kill().await;
    wait_for(&cluster, Duration::from_secs(5), "n1 marked down", |c| c.stats().servers[1].state == MemberState::Down)
        .await;
    load.wait_calls(300, "with n1 down").await;
    let before = executions.lock().unwrap().len();
    nodes[1].restart().await;
    // Back within the probe's capped interval (200 ms) plus a connect; bounded generously.
    wait_for(&cluster, Duration::from_secs(5), "n1 back up", |c| c.stats().servers[1].state == MemberState::Up).await;
    load.wait_calls(300, "after n1 is back").await;
    let outcomes = load.finish().await;

    let executions = executions.lock().unwrap();
    assert!(executions.len() > before, "calls kept being executed");
    let mut failed_non_idempotent = 0;
    let mut by = HashMap::<String, usize>::new();
    for o in &outcomes {
        let runs = executions.get(&o.id).copied().unwrap_or(0);
        match (&o.result, o.idempotent) {
            (Ok(name), _) => {
                *by.entry(name.clone()).or_default() += 1;
                if !o.idempotent {
                    assert_eq!(runs, 1, "a non-idempotent call that succeeded ran once: {o:?}");
                }
            }
            (Err(e), true) => panic!("an idempotent call failed: {e:?} ({o:?})"),
            (Err(e), false) => {
                assert!(runs <= 1, "a failed non-idempotent call ran at most once: {o:?}");
                assert!(matches!(e, Error::Dropped(_) | Error::PeerClosed { .. } | Error::Io(_)), "{e:?}");
                failed_non_idempotent += 1;
            }
        }
    }
    assert!(by.get("n1").copied().unwrap_or(0) > 0, "n1 served calls: {by:?}");
    eprintln!(
        "failover: {} calls, {failed_non_idempotent} non-idempotent calls failed when n1 died, by server {by:?}",
        outcomes.len()
    );
    let stats = cluster.stats();
    assert_eq!(stats.servers[1].downs, 1, "{:?}", stats.servers[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_changed_under_load_loses_and_misroutes_nothing() {
    let (nodes, _) = nodes(4).await;
    let without_n1: ServerList = format!("{},{},{}", nodes[0].addr, nodes[2].addr, nodes[3].addr).parse().unwrap();
    let lists = [list(&nodes[..3]), list(&nodes), without_n1];
    let cluster = Cluster::connect(lists[0].clone(), config(Balance::Consistent)).await.unwrap();
    // Each list's owner of a key, from a cluster-free balancer over it.
    let owner = |epoch: usize, key: &str| {
        let list = &lists[epoch];
        let b = Balance::Consistent.build(list);
        name_of(&nodes, &list.servers()[b.pick(Some(key.as_bytes()), &|_| true).unwrap().unwrap()].addr.to_string())
    };
    let epoch = Arc::new(AtomicU64::new(0));
    let load = Load::start(&cluster, 6, true, &epoch);
    for (next, list) in lists.iter().enumerate().skip(1) {
        load.wait_calls(200, "before a list change").await;
        cluster.update(list.clone()).await.unwrap();
        epoch.store(next as u64, SeqCst);
    }
    load.wait_calls(200, "after the last change").await;
    let outcomes = load.finish().await;
    for o in &outcomes {
        let name = o.result.as_ref().unwrap_or_else(|e| panic!("a call failed during a list change: {e:?} {o:?}"));
        let key = o.key.as_deref().unwrap();
        // A call sees the list of its start, or the next one if a change was under way.
        let last = (o.epoch.1 as usize + 1).min(lists.len() - 1);
        let allowed: Vec<String> = (o.epoch.0 as usize..=last).map(|e| owner(e, key)).collect();
        assert!(allowed.contains(name), "{key} answered by {name}, owners {allowed:?}");
    }
    assert_eq!(cluster.servers(), lists[2]);
    eprintln!("list changes: {} keyed calls, none lost or misrouted", outcomes.len());
}

// A DNS source yields every address the name resolves to, one server each on the given port,
// and then only a changed answer: re-resolving the same answer yields nothing.
#[tokio::test]
async fn dns_source_yields_the_resolved_addresses_and_then_only_changes() {
    use iproto::cluster::{DnsSource, ServerSource};
    let mut source = DnsSource::new("localhost", 3301, Duration::from_millis(20));
    let list = tokio::time::timeout(Duration::from_secs(10), source.next_list())
        .await
        .expect("localhost resolves within 10 s")
        .expect("a DNS source never ends");
    let addrs: Vec<String> = list.servers().iter().map(|s| s.addr.to_string()).collect();
    assert!(!addrs.is_empty(), "{addrs:?}");
    assert!(addrs.iter().any(|a| a == "127.0.0.1:3301"), "localhost is 127.0.0.1: {addrs:?}");
    assert!(list.servers().iter().all(|s| s.weight == 1), "{list}");
    // Ten intervals of the same answer: no new list.
    let again = tokio::time::timeout(Duration::from_millis(200), source.next_list()).await;
    assert!(again.is_err(), "an unchanged answer was yielded again: {again:?}");
}
