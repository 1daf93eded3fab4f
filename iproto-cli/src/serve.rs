//! `iproto serve` and the embedded echo server of `iproto bench`: an [`iproto::Server`] with an
//! echo or log-only handler, shut down gracefully on Ctrl-C or SIGTERM.

use std::future::Future;

use bytes::Bytes;
use iproto::server::{Server, ServerConfig};
use iproto::{Channel, Handler, Packet};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::cli::ServeArgs;
use crate::error::CliError;

/// Bytes of a body shown in logs; the rest is elided.
const LOGGED_BODY: usize = 64;

/// Runs `iproto serve` until Ctrl-C or SIGTERM. The first line on stdout is
/// `listening on ADDR`.
pub async fn serve(args: ServeArgs) -> Result<(), CliError> {
    let mut config = server_config();
    if let Some(max) = args.max_conns {
        config.max_connections = max;
    }
    config.channel.idle_timeout = args.idle_timeout;
    config.channel.size_limit = args.size_limit;
    config.channel.write_timeout = args.write_timeout;
    config.channel.write_queue = args.write_queue as usize;
    let server = Server::bind_with(&args.addr, config)
        .await
        .map_err(|source| CliError::Bind { addr: args.addr.clone(), source })?;
    let local = server.local_addr().to_string();
    crate::run::out(&format!("listening on {local}\n"))?;
    tracing::info!(addr = %local, echo = args.echo, "serving");
    let stopped = if args.echo {
        server.serve_with_shutdown(Echo, shutdown_signal()).await
    } else {
        server.serve_with_shutdown(log_only, shutdown_signal()).await
    };
    if let Some(path) = args.addr.strip_prefix("unix:") {
        // The socket file is ours; leave no stale file that would block the next bind.
        let _ = std::fs::remove_file(path);
    }
    tracing::info!(addr = %local, "stopped");
    stopped.map_err(|source| CliError::Serve { addr: local, source })
}

/// The server settings of the CLI: the library's defaults. Both handlers answer without
/// waiting, so the reader runs them and writes their replies in its batch.
fn server_config() -> ServerConfig {
    ServerConfig::default()
}

/// The echo handler. It answers in the reader at once ([`Handler::reply_now`]: no future, no
/// channel handle per request), except while packets are logged at debug level, which needs
/// the channel (its peer address).
struct Echo;

impl Handler for Echo {
    type Reply = Option<Bytes>;

    fn handle(&self, packet: Packet, channel: Channel) -> impl Future<Output = Option<Bytes>> + Send {
        if tracing::enabled!(tracing::Level::DEBUG) {
            log_packet(&packet, &channel, tracing::Level::DEBUG);
        }
        std::future::ready(Some(packet.body))
    }

    fn reply_now(&self, packet: Packet) -> Result<Option<Bytes>, Packet> {
        if tracing::enabled!(tracing::Level::DEBUG) {
            return Err(packet);
        }
        Ok(Some(packet.body))
    }
}

async fn log_only(packet: Packet, channel: Channel) -> Option<Bytes> {
    log_packet(&packet, &channel, tracing::Level::INFO);
    None
}

fn log_packet(packet: &Packet, channel: &Channel, level: tracing::Level) {
    let h = packet.header;
    let shown = &packet.body[..packet.body.len().min(LOGGED_BODY)];
    let more = if packet.body.len() > LOGGED_BODY { "..." } else { "" };
    let body = format!("{}{more}", hex::encode(shown));
    let peer = channel.peer_addr().map(ToString::to_string).unwrap_or_default();
    if level == tracing::Level::INFO {
        tracing::info!(%peer, msg = h.msg, sync = h.sync, len = h.len, %body, "request");
    } else {
        tracing::debug!(%peer, msg = h.msg, sync = h.sync, len = h.len, %body, "request");
    }
}

/// Resolves on Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the server");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutting down gracefully");
}

/// An echo server on a free loopback port in this process, for `iproto bench` without an
/// address.
pub struct EmbeddedEcho {
    addr: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), iproto::Error>>,
}

impl EmbeddedEcho {
    /// Binds 127.0.0.1:0 and starts serving.
    pub async fn start() -> Result<EmbeddedEcho, CliError> {
        let bind = "127.0.0.1:0";
        let server = Server::bind_with(bind, server_config())
            .await
            .map_err(|source| CliError::Bind { addr: bind.to_owned(), source })?;
        let addr = server.local_addr().to_string();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve_with_shutdown(Echo, async {
            let _ = stopped.await;
        }));
        Ok(EmbeddedEcho { addr, stop, task })
    }

    /// The address it listens on.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Stops it and waits until its connections are shut down.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "embedded server failed"),
            Err(e) => tracing::warn!(error = %e, "embedded server task failed"),
        }
    }
}
