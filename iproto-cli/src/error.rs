//! [`CliError`]: everything a subcommand can fail with, each shown to the user as one line.

use crate::hexdump::HexError;
use crate::spec::SpecError;

/// Why a subcommand failed. `main` prints it as `iproto: error: ...` and exits non-zero.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// Arguments that clap cannot check on its own.
    #[error("{0}")]
    Usage(String),
    /// A malformed hex body.
    #[error("bad hex: {0}")]
    Hex(#[from] HexError),
    /// A malformed pack or unpack spec, or a payload that does not decode with it.
    #[error("{0}")]
    Spec(#[from] SpecError),
    /// A body file could not be read.
    #[error("cannot read {path}: {source}")]
    ReadFile {
        /// The path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The connection could not be made.
    #[error("cannot connect to {addr}: {}", io_reason(source))]
    Connect {
        /// The address.
        addr: String,
        /// The runtime's error.
        source: iproto::Error,
    },
    /// Connecting took longer than the timeout.
    #[error("cannot connect to {addr}: timed out after {timeout:?}")]
    ConnectTimeout {
        /// The address.
        addr: String,
        /// The timeout.
        timeout: std::time::Duration,
    },
    /// A call failed (timeout, closed connection, ...).
    #[error("call to {addr} failed: {source}")]
    Call {
        /// The address.
        addr: String,
        /// The runtime's error.
        source: iproto::Error,
    },
    /// The server could not listen on the address.
    #[error("cannot listen on {addr}: {}", io_reason(source))]
    Bind {
        /// The address.
        addr: String,
        /// The runtime's error.
        source: iproto::Error,
    },
    /// The server stopped with an error.
    #[error("server on {addr} failed: {source}")]
    Serve {
        /// The address.
        addr: String,
        /// The runtime's error.
        source: iproto::Error,
    },
    /// Every ping failed.
    #[error("no reply from {addr} to {sent} pings")]
    NoPingReply {
        /// The address.
        addr: String,
        /// Pings sent.
        sent: u64,
    },
    /// A server list or `--balance` that does not parse, or a keyed mode without `--key`.
    #[error("{0}")]
    Cluster(#[from] iproto::ClusterError),
    /// Writing the output failed (for example a closed pipe).
    #[error("cannot write output: {0}")]
    Output(#[source] std::io::Error),
}

/// The runtime's error without the address it repeats: its connect errors already name it.
fn io_reason(e: &iproto::Error) -> String {
    match e {
        iproto::Error::Connect { source, .. } | iproto::Error::Listen { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}
