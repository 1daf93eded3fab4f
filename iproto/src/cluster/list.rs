//! The server list: MR::IProto's string form `HOST:PORT[:WEIGHT],...` (plus `unix:/path[:WEIGHT]`
//! entries) and a builder; their typed error, [`ClusterError`], is defined with the crate's other errors.

use std::fmt;
use std::str::FromStr;

pub use crate::error::{ClusterError, MAX_WEIGHT};

/// Where one server listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServerAddr {
    /// A TCP server; `host` as written (an IPv6 address without its brackets).
    Tcp {
        /// Host name or IP address.
        host: String,
        /// Port.
        port: u16,
    },
    /// A Unix socket.
    Unix(String),
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerAddr::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            ServerAddr::Tcp { host, port } => write!(f, "{host}:{port}"),
            ServerAddr::Unix(path) => write!(f, "unix:{path}"),
        }
    }
}

/// One server of a list: its address and weight.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerSpec {
    /// Where it listens.
    pub addr: ServerAddr,
    /// Its share of keys and calls, 1 to [`MAX_WEIGHT`]. Default 1.
    pub weight: u32,
}

impl ServerSpec {
    /// A server of weight 1.
    pub fn new(addr: ServerAddr) -> Self {
        ServerSpec { addr, weight: 1 }
    }

    /// `HOST:PORT` of weight 1.
    pub fn tcp(host: impl Into<String>, port: u16) -> Self {
        ServerSpec::new(ServerAddr::Tcp { host: host.into(), port })
    }

    /// This server with another weight (checked when it joins a [`ServerList`]).
    pub fn weight(self, weight: u32) -> Self {
        ServerSpec { weight, ..self }
    }

    /// The text MR::IProto's ketama hashes for this server: host and port run together
    /// (`host . port`); a Unix socket's path.
    pub(crate) fn ketama_name(&self) -> String {
        match &self.addr {
            ServerAddr::Tcp { host, port } => format!("{host}{port}"),
            ServerAddr::Unix(path) => path.clone(),
        }
    }

    /// Parses one entry: `HOST:PORT[:WEIGHT]`, `[V6]:PORT[:WEIGHT]` or `unix:/path[:WEIGHT]`.
    pub fn parse(entry: &str) -> Result<ServerSpec, ClusterError> {
        let entry = entry.trim();
        let bad_weight = |w: &str| ClusterError::BadWeight { entry: entry.to_owned(), weight: w.to_owned() };
        let weight = |w: &str| -> Result<u32, ClusterError> {
            match w.parse::<u32>() {
                Ok(n) if (1..=MAX_WEIGHT).contains(&n) && w.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
                _ => Err(bad_weight(w)),
            }
        };
        if let Some(rest) = entry.strip_prefix("unix:") {
            // A trailing `:DIGITS` is the weight; the rest is the path.
            let (path, w) = match rest.rsplit_once(':') {
                Some((path, w)) if !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()) => (path, Some(w)),
                _ => (rest, None),
            };
            if path.is_empty() {
                return Err(ClusterError::MissingPort { entry: entry.to_owned() });
            }
            let weight = w.map(weight).transpose()?.unwrap_or(1);
            return Ok(ServerSpec { addr: ServerAddr::Unix(path.to_owned()), weight });
        }
        let (host, rest) = if let Some(v6) = entry.strip_prefix('[') {
            match v6.split_once(']') {
                Some((host, rest)) => (host, rest.strip_prefix(':')),
                None => return Err(ClusterError::MissingPort { entry: entry.to_owned() }),
            }
        } else {
            match entry.split_once(':') {
                Some((host, rest)) => (host, Some(rest)),
                None => (entry, None),
            }
        };
        let rest = match rest {
            Some(rest) if !host.is_empty() => rest,
            _ => return Err(ClusterError::MissingPort { entry: entry.to_owned() }),
        };
        let (port, w) = match rest.split_once(':') {
            Some((port, w)) => (port, Some(w)),
            None => (rest, None),
        };
        let port = match port.parse::<u16>() {
            Ok(p) if p != 0 && port.bytes().all(|b| b.is_ascii_digit()) => p,
            _ => return Err(ClusterError::BadPort { entry: entry.to_owned(), port: port.to_owned() }),
        };
        let weight = w.map(weight).transpose()?.unwrap_or(1);
        Ok(ServerSpec { addr: ServerAddr::Tcp { host: host.to_owned(), port }, weight })
    }
}

impl fmt::Display for ServerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.weight {
            1 => write!(f, "{}", self.addr),
            w => write!(f, "{}:{w}", self.addr),
        }
    }
}

/// A checked list of servers: not empty, no duplicates, weights 1 to [`MAX_WEIGHT`]. Its order
/// matters: MR::IProto's `hash-crc32` and `ketama` placements depend on it.
///
/// ```
/// use iproto::cluster::ServerList;
/// let list: ServerList = "10.0.0.1:3301,10.0.0.2:3301:3,unix:/tmp/s".parse()?;
/// assert_eq!(list.len(), 3);
/// assert_eq!(list.servers()[1].weight, 3);
/// assert_eq!(list.to_string(), "10.0.0.1:3301,10.0.0.2:3301:3,unix:/tmp/s");
/// assert!("10.0.0.1".parse::<ServerList>().is_err());
/// # Ok::<(), iproto::cluster::ClusterError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerList {
    servers: Vec<ServerSpec>,
}

impl ServerList {
    /// Checks `servers` into a list.
    pub fn new(servers: Vec<ServerSpec>) -> Result<ServerList, ClusterError> {
        if servers.is_empty() {
            return Err(ClusterError::EmptyList);
        }
        for (i, s) in servers.iter().enumerate() {
            if !(1..=MAX_WEIGHT).contains(&s.weight) {
                return Err(ClusterError::BadWeight { entry: s.addr.to_string(), weight: s.weight.to_string() });
            }
            if let ServerAddr::Tcp { port: 0, .. } = s.addr {
                return Err(ClusterError::BadPort { entry: s.addr.to_string(), port: "0".into() });
            }
            if servers[..i].iter().any(|o| o.addr == s.addr) {
                return Err(ClusterError::Duplicate { addr: s.addr.to_string() });
            }
        }
        Ok(ServerList { servers })
    }

    /// Parses MR::IProto's form `HOST:PORT[:WEIGHT],...`. Trailing commas are ignored (as
    /// Perl's `split` ignores them); an empty entry elsewhere is an error.
    pub fn parse(list: &str) -> Result<ServerList, ClusterError> {
        let entries: Vec<&str> = list.split(',').collect();
        let last = entries.iter().rposition(|e| !e.trim().is_empty()).map_or(0, |i| i + 1);
        let mut servers = Vec::with_capacity(last);
        for (i, entry) in entries[..last].iter().enumerate() {
            if entry.trim().is_empty() {
                return Err(ClusterError::EmptyEntry { position: i + 1 });
            }
            servers.push(ServerSpec::parse(entry)?);
        }
        ServerList::new(servers)
    }

    /// The servers, in list order.
    pub fn servers(&self) -> &[ServerSpec] {
        &self.servers
    }

    /// How many servers.
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// Always false: a list has at least one server.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }
}

impl FromStr for ServerList {
    type Err = ClusterError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ServerList::parse(s)
    }
}

impl fmt::Display for ServerList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.servers.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{s}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_with_default_and_explicit_weights() {
        let list = ServerList::parse("a:1, b:2:5,[::1]:3301:2,unix:/tmp/x:y,unix:/tmp/s:7,").unwrap();
        let got: Vec<String> = list.servers().iter().map(|s| format!("{}/{}", s.addr, s.weight)).collect();
        assert_eq!(got, ["a:1/1", "b:2/5", "[::1]:3301/2", "unix:/tmp/x:y/1", "unix:/tmp/s/7"]);
        assert_eq!(list.to_string(), "a:1,b:2:5,[::1]:3301:2,unix:/tmp/x:y,unix:/tmp/s:7");
        assert_eq!(ServerList::parse(&list.to_string()).unwrap(), list);
    }

    #[test]
    fn bad_lists_are_typed_errors() {
        let err = |s: &str| ServerList::parse(s).unwrap_err();
        assert_eq!(err(""), ClusterError::EmptyList);
        assert_eq!(err(" , "), ClusterError::EmptyList);
        assert_eq!(err("a:1,,b:2"), ClusterError::EmptyEntry { position: 2 });
        assert_eq!(err("host"), ClusterError::MissingPort { entry: "host".into() });
        assert_eq!(err(":80"), ClusterError::MissingPort { entry: ":80".into() });
        assert_eq!(err("unix:"), ClusterError::MissingPort { entry: "unix:".into() });
        assert_eq!(err("[::1]"), ClusterError::MissingPort { entry: "[::1]".into() });
        assert!(matches!(err("host:notaport"), ClusterError::BadPort { port, .. } if port == "notaport"));
        assert!(matches!(err("host:0"), ClusterError::BadPort { .. }));
        assert!(matches!(err("host:70000"), ClusterError::BadPort { .. }));
        assert!(matches!(err("host:+80"), ClusterError::BadPort { .. }));
        assert!(matches!(err("h:1:0"), ClusterError::BadWeight { weight, .. } if weight == "0"));
        assert!(matches!(err("h:1:-1"), ClusterError::BadWeight { .. }));
        assert!(matches!(err("h:1:1001"), ClusterError::BadWeight { .. }));
        assert!(matches!(err("h:1:2:3"), ClusterError::BadWeight { .. }));
        assert!(matches!(err("unix:/s:0"), ClusterError::BadWeight { .. }));
        assert_eq!(err("a:1,b:2,a:1:3"), ClusterError::Duplicate { addr: "a:1".into() });
        let zero = ServerList::new(vec![ServerSpec::tcp("a", 1).weight(0)]).unwrap_err();
        assert!(matches!(zero, ClusterError::BadWeight { .. }));
    }

    #[test]
    fn ketama_names_run_host_and_port_together() {
        assert_eq!(ServerSpec::parse("10.0.0.1:3301:4").unwrap().ketama_name(), "10.0.0.13301");
        assert_eq!(ServerSpec::parse("unix:/tmp/s").unwrap().ketama_name(), "/tmp/s");
    }
}
