//! Where a cluster's list comes from at run time: the [`ServerSource`] trait that
//! [`Cluster::follow`](super::Cluster::follow) applies, a static list, and a DNS name
//! re-resolved periodically with tokio's resolver.

use std::future::Future;
use std::time::Duration;

use super::list::{ServerList, ServerSpec};

/// Yields server lists; [`Cluster::follow`](super::Cluster::follow) applies each one.
pub trait ServerSource: Send + 'static {
    /// Waits for the next list (a changed one); `None` when the source has ended.
    fn next_list(&mut self) -> impl Future<Output = Option<ServerList>> + Send;
}

/// A list that never changes: yields it once, then ends.
#[derive(Debug, Clone)]
pub struct StaticSource(Option<ServerList>);

impl StaticSource {
    /// A source of `list`.
    pub fn new(list: ServerList) -> Self {
        StaticSource(Some(list))
    }
}

impl ServerSource for StaticSource {
    async fn next_list(&mut self) -> Option<ServerList> {
        self.0.take()
    }
}

/// Every address a DNS name resolves to, one server each (weight 1, sorted), re-resolved
/// every `interval`. Yields a list when the answer changes; a failed or empty lookup keeps
/// the last list (a DNS outage does not empty the cluster).
#[derive(Debug, Clone)]
pub struct DnsSource {
    host: String,
    port: u16,
    interval: Duration,
    last: Option<ServerList>,
}

impl DnsSource {
    /// Resolves `host:port` every `interval`.
    pub fn new(host: impl Into<String>, port: u16, interval: Duration) -> Self {
        DnsSource { host: host.into(), port, interval, last: None }
    }

    async fn resolve(&self) -> Option<ServerList> {
        let addrs = match tokio::net::lookup_host((self.host.as_str(), self.port)).await {
            Ok(addrs) => addrs,
            Err(e) => {
                tracing::warn!(host = %self.host, error = %e, "cluster DNS lookup failed; keeping the last list");
                return None;
            }
        };
        let mut addrs: Vec<_> = addrs.collect();
        addrs.sort();
        addrs.dedup();
        let specs = addrs.into_iter().map(|a| ServerSpec::tcp(a.ip().to_string(), a.port())).collect();
        ServerList::new(specs).ok()
    }
}

impl ServerSource for DnsSource {
    async fn next_list(&mut self) -> Option<ServerList> {
        loop {
            if self.last.is_some() {
                tokio::time::sleep(self.interval).await;
            }
            match self.resolve().await {
                Some(list) if self.last.as_ref() != Some(&list) => {
                    self.last = Some(list.clone());
                    return Some(list);
                }
                None if self.last.is_none() => tokio::time::sleep(self.interval).await,
                _ => {}
            }
        }
    }
}
