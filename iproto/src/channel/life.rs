//! Running a channel's life-cycle hooks (see `hooks.rs`): the init hook before a channel takes
//! traffic, the callbacks when a graceful shutdown starts and when the connection has closed,
//! and the cancellation tokens that tell handlers about either. Every hook is bounded in time and a
//! panicking one is caught, so no hook can hang or kill a connection's shutdown.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

use super::hooks::{BoxError, Callback, Registered};
use super::shared::Shared;
use super::Channel;
use crate::Error;

/// The init hook did not finish within [`callback_timeout`](super::ChannelConfig::callback_timeout).
#[derive(Debug, thiserror::Error)]
#[error("did not finish within {0:?}")]
struct InitTimedOut(Duration);

/// The init hook panicked.
#[derive(Debug, thiserror::Error)]
#[error("panicked")]
struct InitPanicked;

/// Runs `callback` on `channel`, bounded by `bound`, with a panic caught and logged.
async fn run_one(callback: &Callback, channel: Channel, bound: Duration, kind: &'static str) {
    let started = std::panic::catch_unwind(AssertUnwindSafe(|| callback.start(channel)));
    let outcome = match started {
        Ok(running) => tokio::time::timeout(bound, AssertUnwindSafe(running).catch_unwind()).await,
        Err(_) => Ok(Err(Box::new(()) as Box<dyn std::any::Any + Send>)),
    };
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(_)) => tracing::error!(callback = kind, "channel callback panicked; the connection goes on"),
        Err(_) => tracing::warn!(callback = kind, ?bound, "channel callback timed out"),
    }
}

/// Runs the config's callbacks, then the registered ones taken by `take`, one at a time.
async fn run_all(
    shared: &Arc<Shared>,
    from_config: &[Callback],
    take: impl FnOnce(&mut Registered) -> Vec<Callback>,
    kind: &'static str,
) {
    let _serial = shared.life.running.lock().await;
    let bound = shared.config.callback_timeout;
    let registered = take(&mut shared.life.registered());
    for callback in from_config.iter().chain(&registered) {
        run_one(callback, Channel::from_shared(shared.clone()), bound, kind).await;
    }
}

/// Runs the shutdown callbacks, once, unless the channel was closed first (a close discards
/// them, as in go-iproto). Called at the start of a graceful shutdown or hijack, before 0xff01
/// is sent and before the shutdown timeout starts.
pub(crate) async fn shutting_down(shared: &Arc<Shared>) {
    let dropped = shared.dropped.load(std::sync::atomic::Ordering::SeqCst);
    let from_config: &[Callback] = if dropped { &[] } else { &shared.config.on_shutdown };
    run_all(
        shared,
        from_config,
        |r| {
            r.shutdown_done = true;
            if dropped {
                r.on_shutdown.clear();
            }
            std::mem::take(&mut r.on_shutdown)
        },
        "on_shutdown",
    )
    .await;
}

/// Runs the close callbacks once the connection has closed and its tasks have stopped.
pub(crate) async fn closed(shared: &Arc<Shared>) {
    run_all(
        shared,
        &shared.config.on_close,
        |r| {
            r.closed = true;
            r.shutdown_done = true;
            r.on_shutdown.clear();
            std::mem::take(&mut r.on_close)
        },
        "on_close",
    )
    .await;
}

impl Channel {
    /// Runs the config's [init hook](super::ChannelConfig::with_init) on this channel, once:
    /// later calls (and calls made while it runs) return the first call's result. On failure
    /// the channel is closed and the error is [`Error::Init`]; a channel stopped while the
    /// hook ran gives [`Error::Stopped`]. Without a hook it returns `Ok(())` at once.
    ///
    /// [`Channel::connect`], a `Pool`'s dials and a `Server`'s accepted channels run it for
    /// you; call it yourself after [`Channel::new`]. Bounded by
    /// [`callback_timeout`](super::ChannelConfig::callback_timeout).
    pub async fn init(&self) -> Result<(), Error> {
        let s = &self.shared;
        let Some(hook) = s.config.init.clone() else {
            return Ok(());
        };
        s.life
            .init
            .get_or_init(|| async {
                let _serial = s.life.running.lock().await;
                let bound = s.config.callback_timeout;
                let result = match std::panic::catch_unwind(AssertUnwindSafe(|| hook.start(self.clone()))) {
                    Err(_) => Err(Box::new(InitPanicked) as BoxError),
                    Ok(running) => match tokio::time::timeout(bound, AssertUnwindSafe(running).catch_unwind()).await {
                        Ok(Ok(result)) => result,
                        Ok(Err(_)) => Err(Box::new(InitPanicked) as BoxError),
                        Err(_) => Err(Box::new(InitTimedOut(bound)) as BoxError),
                    },
                };
                match result {
                    Err(e) => {
                        tracing::warn!(error = %e, "channel init hook failed; closing");
                        s.close_with(None);
                        Err(Error::Init(Arc::from(e)))
                    }
                    Ok(()) if s.is_stopped() => Err(Error::Stopped),
                    Ok(()) => Ok(()),
                }
            })
            .await
            .clone()
    }

    /// Registers a callback run when a graceful shutdown of this channel starts (either side's,
    /// or a hijack), after the config's; ignored once the channel has stopped. See
    /// [`ChannelConfig::on_shutdown`](super::ChannelConfig::on_shutdown).
    pub fn on_shutdown<F, Fut>(&self, callback: F)
    where
        F: Fn(Channel) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut r = self.shared.life.registered();
        if !r.shutdown_done && !self.shared.is_stopped() {
            r.on_shutdown.push(Callback::new(callback));
        }
    }

    /// Registers a callback run once the connection has closed, after the config's; run at once
    /// (in the background) if it already has. See
    /// [`ChannelConfig::on_close`](super::ChannelConfig::on_close).
    pub fn on_close<F, Fut>(&self, callback: F)
    where
        F: Fn(Channel) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let callback = Callback::new(callback);
        let mut r = self.shared.life.registered();
        if !r.closed {
            r.on_close.push(callback);
            return;
        }
        drop(r);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let _serial = shared.life.running.lock().await;
            run_one(&callback, Channel::from_shared(shared.clone()), shared.config.callback_timeout, "on_close").await;
        });
    }

    /// A token cancelled when this channel stops taking new calls: a graceful shutdown started
    /// by either side, a hijack, or the connection closing. Handlers that wait long (long polls,
    /// subscriptions) select on it to finish early; their replies are still delivered while the
    /// shutdown drains.
    pub fn stopping_token(&self) -> CancellationToken {
        self.shared.life.stopping.clone()
    }

    /// A token cancelled when the connection has closed (or failed): a reply can no longer be
    /// delivered, so a handler may stop its work.
    pub fn closed_token(&self) -> CancellationToken {
        self.shared.cancel.clone()
    }
}
