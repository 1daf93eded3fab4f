//! Addresses and transports: `host:port` for TCP and `unix:/path` for Unix sockets, written the
//! same way everywhere (Channel, Pool, Server, the CLI).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::Error;

/// Any byte stream a channel can run over: TCP, Unix sockets, TLS streams, in-memory duplexes.
pub trait Transport: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Transport for T {}

/// Where a connection goes or comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Addr {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix socket path (None for an unnamed socket).
    Unix(Option<PathBuf>),
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Tcp(a) => write!(f, "{a}"),
            Addr::Unix(Some(p)) => write!(f, "unix:{}", p.display()),
            Addr::Unix(None) => f.write_str("unix:(unnamed)"),
        }
    }
}

/// A parsed address string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `host:port`, resolved when connecting or binding.
    Tcp(String),
    /// `unix:/path`.
    Unix(PathBuf),
}

impl Endpoint {
    /// Parses `host:port` or `unix:/path`.
    ///
    /// ```
    /// use iproto::net::Endpoint;
    /// assert_eq!(Endpoint::parse("unix:/tmp/s").unwrap(), Endpoint::Unix("/tmp/s".into()));
    /// assert_eq!(Endpoint::parse("localhost:3301").unwrap(), Endpoint::Tcp("localhost:3301".into()));
    /// assert!(Endpoint::parse("nonsense").is_err());
    /// ```
    pub fn parse(addr: &str) -> Result<Endpoint, Error> {
        if let Some(path) = addr.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(Error::InvalidAddress(addr.to_owned()));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        match addr.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(Endpoint::Tcp(addr.to_owned())),
            _ => Err(Error::InvalidAddress(addr.to_owned())),
        }
    }
}

/// A connected stream a channel runs on. TCP and Unix sockets are split into owned halves,
/// and the channel's reader may write replies to them itself; any other [`Transport`] (TLS,
/// in-memory duplexes) runs behind tokio's `split`, all writes going through the writer task,
/// which flushes. `From` impls make every kind a `Stream`, so [`Channel::new`](crate::Channel::new)
/// takes them all.
pub enum Stream {
    /// TCP.
    Tcp(tokio::net::TcpStream),
    /// Unix socket.
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
    /// Any other transport.
    Other(Box<dyn Transport>),
}

impl Stream {
    /// Wraps any other transport, e.g. a TLS stream.
    pub fn other<T: Transport>(io: T) -> Stream {
        Stream::Other(Box::new(io))
    }
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stream::Tcp(s) => f.debug_tuple("Tcp").field(s).finish(),
            #[cfg(unix)]
            Stream::Unix(s) => f.debug_tuple("Unix").field(s).finish(),
            Stream::Other(_) => f.write_str("Other(..)"),
        }
    }
}

impl From<tokio::net::TcpStream> for Stream {
    fn from(s: tokio::net::TcpStream) -> Stream {
        Stream::Tcp(s)
    }
}

#[cfg(unix)]
impl From<tokio::net::UnixStream> for Stream {
    fn from(s: tokio::net::UnixStream) -> Stream {
        Stream::Unix(s)
    }
}

impl From<tokio::io::DuplexStream> for Stream {
    fn from(s: tokio::io::DuplexStream) -> Stream {
        Stream::other(s)
    }
}

impl From<Box<dyn Transport>> for Stream {
    fn from(s: Box<dyn Transport>) -> Stream {
        Stream::Other(s)
    }
}

/// Connects to `addr` (`host:port` or `unix:/path`), setting TCP_NODELAY on TCP streams when
/// `nodelay` is true.
pub async fn connect(addr: &str, nodelay: bool) -> Result<Stream, Error> {
    let wrap = |e: std::io::Error| Error::Connect { addr: addr.to_owned(), source: Arc::new(e) };
    match Endpoint::parse(addr)? {
        Endpoint::Tcp(hostport) => {
            let s = tokio::net::TcpStream::connect(hostport.as_str()).await.map_err(wrap)?;
            s.set_nodelay(nodelay).map_err(wrap)?;
            Ok(Stream::Tcp(s))
        }
        #[cfg(unix)]
        Endpoint::Unix(path) => Ok(Stream::Unix(tokio::net::UnixStream::connect(path).await.map_err(wrap)?)),
        #[cfg(not(unix))]
        Endpoint::Unix(_) => Err(Error::InvalidAddress(addr.to_owned())),
    }
}
