//! What an address argument names: one server (`host:port`, `unix:/path`) or a cluster in
//! MR::IProto's list form `HOST:PORT[:WEIGHT],...`, and the cluster's side of the
//! subcommands (connecting, keyed bench calls).

use std::time::Duration;

use bytes::Bytes;
use iproto::cluster::{Balance, Cluster, ClusterConfig, ServerList};
use iproto::{CallOptions, ChannelConfig, PoolConfig, Sender};

use crate::bench::{self, ErrorKind};
use crate::error::CliError;
use crate::run::error_kind;

/// One server or a list of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `host:port` or `unix:/path`.
    One(String),
    /// A list (an address with a comma or a weight).
    Many(ServerList),
}

impl Target {
    /// Reads an address argument: a list when it has a comma or a `:WEIGHT`, else one address.
    pub fn parse(addr: &str) -> Result<Target, CliError> {
        let weighted = || ServerList::parse(addr).is_ok_and(|list| list.servers()[0].weight != 1);
        if addr.contains(',') || weighted() {
            Ok(Target::Many(ServerList::parse(addr)?))
        } else {
            Ok(Target::One(addr.to_owned()))
        }
    }

    /// Every server's address (one for [`Target::One`]).
    pub fn addrs(&self) -> Vec<String> {
        match self {
            Target::One(addr) => vec![addr.clone()],
            Target::Many(list) => list.servers().iter().map(|s| s.addr.to_string()).collect(),
        }
    }
}

/// Parses `--balance`.
pub fn parse_balance(text: &str) -> Result<Balance, String> {
    text.parse().map_err(|e: iproto::ClusterError| e.to_string())
}

/// A cluster over `list`: `conns` connections per server, no keepalive pings, calls bounded
/// by `timeout`.
pub async fn connect(list: ServerList, balance: Balance, conns: usize, timeout: Duration) -> Result<Cluster, CliError> {
    let channel = ChannelConfig { request_timeout: timeout, ping_interval: None, ..ChannelConfig::client() };
    let pool =
        PoolConfig { channel, size: conns, connect_timeout: timeout, fail_on_cutoff: true, ..Default::default() };
    let config = ClusterConfig { balance, pool, ..Default::default() };
    let addr = list.to_string();
    Cluster::connect(list, config).await.map_err(|source| CliError::Call { addr, source })
}

/// One call over `cluster`, placed by `key` if given.
pub async fn call(
    cluster: &Cluster,
    key: Option<&str>,
    msg: u32,
    body: &[u8],
    opts: CallOptions,
) -> Result<Bytes, iproto::Error> {
    match key {
        Some(key) => {
            let server = cluster.server_for(Some(key.as_bytes()))?;
            tracing::info!(key, %server, "key placed");
            cluster.by_key(key.as_bytes()).call_with(msg, body, opts).await
        }
        None => cluster.call_with(msg, body, opts).await,
    }
}

/// `iproto bench` over a cluster: unkeyed calls in round-robin, a fresh random key per call
/// in the keyed modes.
pub struct ClusterBench {
    cluster: Cluster,
    keyed: bool,
}

impl ClusterBench {
    /// Bench connection over `cluster`.
    pub fn new(cluster: Cluster) -> Self {
        let keyed = cluster.config().balance.is_keyed();
        ClusterBench { cluster, keyed }
    }
}

impl bench::Connection for ClusterBench {
    async fn call(&self, msg: u32, body: &[u8]) -> Result<Bytes, ErrorKind> {
        let result = if self.keyed {
            let key = fastrand::u64(..).to_le_bytes();
            self.cluster.by_key(&key).call(msg, body).await
        } else {
            self.cluster.call(msg, body).await
        };
        result.map_err(|e| error_kind(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_single_addresses() {
        assert_eq!(Target::parse("127.0.0.1:3301").unwrap(), Target::One("127.0.0.1:3301".into()));
        assert_eq!(Target::parse("unix:/tmp/s").unwrap(), Target::One("unix:/tmp/s".into()));
        let Target::Many(list) = Target::parse("a:1,b:2:3").unwrap() else { panic!("a list") };
        assert_eq!(list.len(), 2);
        assert!(matches!(Target::parse("a:1:5").unwrap(), Target::Many(_)));
        assert!(matches!(Target::parse("a:1,host"), Err(CliError::Cluster(_))));
        assert_eq!(Target::parse("a:1,b:2").unwrap().addrs(), ["a:1", "b:2"]);
        assert!(parse_balance("ketama").is_ok());
        assert!(parse_balance("random").unwrap_err().contains("round-robin"));
    }
}
