//! [`Error`]: the one runtime error enum of channels, pools and servers. Cheap to clone, so
//! that one close reason can be handed to every pending call.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::wire::FrameError;

/// A runtime error: what a call, a channel or a pool reports.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The call or notification did not finish within its timeout.
    #[error("timed out")]
    Timeout,
    /// The channel (or pool) is shutting down or closed and takes no new calls.
    #[error("channel is stopped")]
    Stopped,
    /// The channel's connection was hijacked.
    #[error("channel connection hijacked")]
    Hijacked,
    /// The connection was closed while the call was pending; holds the close reason, if any.
    #[error("connection is gone{}", .0.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    Dropped(Option<Arc<Error>>),
    /// The peer sent a body longer than the size limit.
    #[error("packet body of {len} bytes exceeds the size limit of {limit} bytes")]
    SizeLimit {
        /// The length in the header.
        len: u32,
        /// The configured limit.
        limit: u32,
    },
    /// The stream ended inside a packet.
    #[error("truncated packet: stream ended after {have} of {need} bytes")]
    Truncated {
        /// Bytes of the packet received.
        have: usize,
        /// Bytes the packet needed.
        need: usize,
    },
    /// The peer closed the connection while calls were pending.
    #[error("connection closed by peer with {pending} pending call(s)")]
    PeerClosed {
        /// Calls that were waiting for a reply.
        pending: usize,
    },
    /// Our ping was not answered in time.
    #[error("ping is missed for {0:?}")]
    PingMissed(Duration),
    /// No packet arrived for the idle timeout.
    #[error("inactivity for {0:?}")]
    Idle(Duration),
    /// A write did not finish within the write timeout (the peer does not read).
    #[error("write timed out after {0:?}")]
    WriteTimeout(Duration),
    /// A message code at or above 0xff00 was used without opting in.
    #[error("message code {0:#06x} is reserved for control messages")]
    ReservedCode(u32),
    /// An outgoing body does not fit the 32-bit length field.
    #[error("body of {0} bytes does not fit the 32-bit length field")]
    BodyTooLarge(usize),
    /// The address is neither `host:port` nor `unix:/path`.
    #[error("invalid address {0:?}: expected host:port or unix:/path")]
    InvalidAddress(String),
    /// Connecting failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address dialed.
        addr: String,
        /// Why.
        source: Arc<io::Error>,
    },
    /// Binding a listening address failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address to bind.
        addr: String,
        /// Why.
        source: Arc<io::Error>,
    },
    /// The transport failed.
    #[error("i/o error: {0}")]
    Io(Arc<io::Error>),
    /// The pool has no online channel and `fail_on_cutoff` is set.
    #[error("pool is offline")]
    Cutoff,
    /// No pool channel came online within the connect timeout.
    #[error("no channel before timeout")]
    NoChannel,
    /// The pool's rate limit rejected the call (policing).
    #[error("policied due to rate limit")]
    RateLimited,
    /// The pool refused to store another channel.
    #[error("pool is full")]
    PoolFull,
    /// A cluster's server list or balancer refused the call.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
}

impl Error {
    /// Whether the request certainly did not reach the peer, so that retrying elsewhere is safe.
    pub fn is_not_sent(&self) -> bool {
        matches!(self, Error::Stopped | Error::Hijacked | Error::ReservedCode(_) | Error::BodyTooLarge(_))
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(Arc::new(e))
    }
}

impl From<FrameError> for Error {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::TooLarge { len, limit } => Error::SizeLimit { len, limit },
            FrameError::BodyOverflow { len } => Error::BodyTooLarge(len),
            FrameError::Truncated { have, need } => Error::Truncated { have, need },
            FrameError::Io(e) => Error::from(e),
        }
    }
}
