//! What a channel runs in its life cycle, and where it keeps it: the init hook and the
//! shutdown and close callbacks ([`InitHook`], [`Callback`]), as a config holds them, and the
//! channel's own life-cycle state (the callbacks registered on it, the init hook's result, the
//! stopping token). Running them is `life.rs`'s job.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use super::Channel;
use crate::Error;

/// The error type an init hook may fail with: anything convertible to a boxed error
/// (`iproto::Error`, a `CallError`, a `String`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

pub(crate) type HookFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Runs on a new channel before it takes traffic: see [`ChannelConfig::with_init`]
/// (go-iproto's `ChannelConfig.Init`).
///
/// [`ChannelConfig::with_init`]: super::ChannelConfig::with_init
#[derive(Clone)]
pub struct InitHook(Arc<dyn Fn(Channel) -> HookFuture<Result<(), BoxError>> + Send + Sync>);

impl InitHook {
    /// Wraps an async function of the new channel.
    pub fn new<F, Fut, E>(hook: F) -> Self
    where
        F: Fn(Channel) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        InitHook(Arc::new(move |ch| {
            let running = hook(ch);
            Box::pin(async move { running.await.map_err(Into::into) })
        }))
    }

    /// Starts the hook on `channel`.
    pub(crate) fn start(&self, channel: Channel) -> HookFuture<Result<(), BoxError>> {
        (self.0)(channel)
    }
}

impl fmt::Debug for InitHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InitHook")
    }
}

/// A life-cycle callback: an async function of the channel, run on shutdown or on close (see
/// [`ChannelConfig::on_shutdown`] and [`ChannelConfig::on_close`]).
///
/// [`ChannelConfig::on_shutdown`]: super::ChannelConfig::on_shutdown
/// [`ChannelConfig::on_close`]: super::ChannelConfig::on_close
#[derive(Clone)]
pub struct Callback(Arc<dyn Fn(Channel) -> HookFuture<()> + Send + Sync>);

impl Callback {
    /// Wraps an async function of the channel.
    pub fn new<F, Fut>(callback: F) -> Self
    where
        F: Fn(Channel) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Callback(Arc::new(move |ch| Box::pin(callback(ch))))
    }

    /// Starts the callback on `channel`.
    pub(crate) fn start(&self, channel: Channel) -> HookFuture<()> {
        (self.0)(channel)
    }
}

impl fmt::Debug for Callback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Callback")
    }
}

/// Callbacks registered on a running channel, after the config's.
#[derive(Default)]
pub(crate) struct Registered {
    pub(crate) on_shutdown: Vec<Callback>,
    pub(crate) on_close: Vec<Callback>,
    /// The shutdown callbacks ran or were discarded: later ones are ignored.
    pub(crate) shutdown_done: bool,
    /// The close callbacks ran: later ones run at once.
    pub(crate) closed: bool,
}

/// A channel's life-cycle state, part of its shared state.
#[derive(Default)]
pub(crate) struct Life {
    /// Cancelled when the channel stops taking new calls (shutdown started, hijack, close).
    pub(crate) stopping: CancellationToken,
    /// The init hook's result; set once.
    pub(crate) init: OnceCell<Result<(), Error>>,
    /// Held while the init hook or a batch of callbacks runs, so they never overlap.
    pub(crate) running: tokio::sync::Mutex<()>,
    registered: Mutex<Registered>,
}

impl Life {
    /// The callbacks registered on the channel (a lock no panic can wedge).
    pub(crate) fn registered(&self) -> MutexGuard<'_, Registered> {
        crate::lock::lock(&self.registered)
    }
}
