//! [`Error`]: the runtime error of channels, pools and servers. Cheap to clone, so that one
//! close reason can be handed to every pending call. The errors of the layers below are
//! carried as themselves ([`FrameError`], [`PackError`], [`DecodeError`]), the pool's are
//! grouped in [`PoolError`], and `?` converts all of them.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::encoding::{DecodeError, PackError};
use crate::wire::FrameError;

/// A runtime error: what a call, a channel or a pool reports.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The call or notification did not finish within its timeout.
    #[error("message {msg:#x} timed out after {after:?} {stage}")]
    Timeout {
        /// The message code.
        msg: u32,
        /// The bound that ran out.
        after: Duration,
        /// What the call was doing when it ran out.
        stage: TimeoutStage,
    },
    /// The channel (or pool) is shutting down or closed and takes no new calls.
    #[error("channel is stopped")]
    Stopped,
    /// The channel's connection was hijacked.
    #[error("channel connection hijacked")]
    Hijacked,
    /// The connection was closed while the call was pending; holds the close reason, if any.
    #[error("connection is gone{}", .0.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    Dropped(Option<Arc<Error>>),
    /// A packet could not be framed: over the size limit, truncated, or a body too large for
    /// the 32-bit length field.
    #[error(transparent)]
    Frame(FrameError),
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
    /// A channel's init hook failed, timed out or panicked; the channel was closed.
    #[error("channel init hook failed: {0}")]
    Init(Arc<dyn std::error::Error + Send + Sync + 'static>),
    /// A pool could not take the call or the channel.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// A value could not be packed.
    #[error(transparent)]
    Pack(Arc<PackError>),
    /// A body did not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A route was registered twice on a [`ServeMux`](crate::ServeMux).
    #[error(transparent)]
    Route(#[from] DuplicateRoute),
    /// A cluster's server list or balancer refused the call.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// Registering a code twice on a [`ServeMux`](crate::ServeMux) (go-iproto panics; we return this).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("iproto: multiple handlers for message code {code:#x}")]
pub struct DuplicateRoute {
    /// The code registered twice.
    pub code: u32,
}

/// The largest weight a server of a [`Cluster`](crate::Cluster) may have: bounds the points of a
/// `consistent` ring. Defined with [`ClusterError`], whose message states it.
pub const MAX_WEIGHT: u32 = 1000;

/// What is wrong with a [server list](crate::ServerList), or why a balancer could not pick a server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The list names no server.
    #[error("server list is empty")]
    EmptyList,
    /// An entry between two commas is empty.
    #[error("server list entry {position} is empty")]
    EmptyEntry {
        /// 1-based position in the list.
        position: usize,
    },
    /// An entry has no `:PORT`.
    #[error("server {entry:?} has no port: expected HOST:PORT[:WEIGHT] or unix:/path[:WEIGHT]")]
    MissingPort {
        /// The entry as written.
        entry: String,
    },
    /// The port is not a number from 1 to 65535.
    #[error("server {entry:?}: port {port:?} is not a number from 1 to 65535")]
    BadPort {
        /// The entry as written.
        entry: String,
        /// The port as written.
        port: String,
    },
    /// The weight is not a whole number from 1 to [`MAX_WEIGHT`].
    #[error("server {entry:?}: weight {weight:?} is not a whole number from 1 to {MAX_WEIGHT}")]
    BadWeight {
        /// The entry as written.
        entry: String,
        /// The weight as written.
        weight: String,
    },
    /// The same server appears twice.
    #[error("server {addr} is listed twice")]
    Duplicate {
        /// The server's address.
        addr: String,
    },
    /// A keyed balancing mode was used for a call without a key.
    #[error("balancing mode {balance} needs a key: call through Cluster::by_key")]
    KeyRequired {
        /// The mode's name.
        balance: &'static str,
    },
    /// An unknown balancing mode name.
    #[error("unknown balancing mode {0:?}: expected round-robin, hash-crc32, ketama or consistent")]
    UnknownBalance(String),
    /// Every server was tried (or is down) and none took the call.
    #[error("no server of the cluster is available")]
    NoServer,
}

/// What a call was doing when its timeout ran out (see [`Error::Timeout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeoutStage {
    /// Waiting for a rate-limit token.
    RateLimit,
    /// Waiting for a pool channel to come online.
    Channel,
    /// Waiting for room in the write queue.
    Queue,
    /// Waiting for the reply.
    Reply,
}

impl fmt::Display for TimeoutStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutStage::RateLimit => "waiting for the rate limit",
            TimeoutStage::Channel => "waiting for a channel",
            TimeoutStage::Queue => "waiting for room in the write queue",
            TimeoutStage::Reply => "waiting for the reply",
        })
    }
}

/// Why a [`Pool`](crate::Pool) could not take a call or a channel.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// The pool has no online channel and `fail_on_cutoff` is set.
    #[error("pool is offline")]
    Cutoff,
    /// No pool channel came online within the connect timeout, while dialing had not failed
    /// (yet): a connect attempt still running, say.
    #[error("no channel before timeout")]
    NoChannel,
    /// No pool channel came online within the connect timeout, and the last connect attempt
    /// failed with this (a refused connection, an init hook's error, ...).
    #[error("no channel before timeout: {0}")]
    DialFailed(Arc<Error>),
    /// The pool's rate limit rejected the call (policing).
    #[error("policied due to rate limit")]
    RateLimited,
    /// The pool refused to store another channel.
    #[error("pool is full")]
    PoolFull,
}

impl PartialEq for PoolError {
    /// Variants are equal when they are the same; [`DialFailed`](PoolError::DialFailed) errors
    /// when they read the same.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (PoolError::DialFailed(a), PoolError::DialFailed(b)) => a.to_string() == b.to_string(),
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}

impl Error {
    /// Whether the request certainly did not reach the peer, so that retrying elsewhere is safe.
    pub fn is_not_sent(&self) -> bool {
        matches!(
            self,
            Error::Stopped
                | Error::Hijacked
                | Error::ReservedCode(_)
                | Error::Frame(FrameError::BodyOverflow { .. })
                | Error::Pool(_)
                | Error::Pack(_)
                | Error::Timeout { stage: TimeoutStage::RateLimit | TimeoutStage::Channel | TimeoutStage::Queue, .. }
        )
    }

    /// A timeout of message `msg` after `after`, at `stage`.
    pub(crate) fn timeout(msg: u32, after: Duration, stage: TimeoutStage) -> Self {
        Error::Timeout { msg, after, stage }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(Arc::new(e))
    }
}

impl From<FrameError> for Error {
    /// An I/O error under the codec stays an [`Error::Io`]; the rest is [`Error::Frame`].
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Io(e) => Error::Io(e),
            e => Error::Frame(e),
        }
    }
}

impl From<PackError> for Error {
    fn from(e: PackError) -> Self {
        Error::Pack(Arc::new(e))
    }
}
