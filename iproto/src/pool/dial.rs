//! Dialing: the single-flight background dial routine, connect attempts with backoff and
//! their deadlines, and bringing channels online for `init`.

use std::io;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;

use backon::BackoffBuilder;
use tokio::time::Instant;

use super::Inner;
use crate::channel::Channel;
use crate::error::PoolError;
use crate::lock::lock;
use crate::Error;

/// Until when a dial routine keeps trying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Deadline {
    At(Instant),
    Never,
}

/// The single-flight dial routine's state.
pub(super) struct DialState {
    running: bool,
    /// Only ever moves later while a routine runs.
    deadline: Deadline,
    last_start: Option<Instant>,
}

impl DialState {
    /// No routine running, none started yet.
    pub(super) fn new() -> Self {
        DialState { running: false, deadline: Deadline::At(Instant::now()), last_start: None }
    }
}

impl Inner {
    /// Starts (or extends) a dial routine that keeps trying for the redial timeout.
    pub(super) fn dial_background(self: &Arc<Self>) {
        let until = match self.config.redial_timeout {
            Some(t) => Deadline::At(Instant::now() + t),
            None => Deadline::Never,
        };
        let _ = self.start_dial(until);
    }

    /// Starts the single-flight dial routine, or joins the running one and extends its
    /// deadline to at least `until`. `Err(when)`: throttled until `when`.
    pub(super) fn start_dial(self: &Arc<Self>, until: Deadline) -> Result<(), Instant> {
        if self.stopped.load(SeqCst) {
            return Ok(());
        }
        let mut state = lock(&self.dial);
        let now = Instant::now();
        if !state.running {
            if let (Some(period), Some(last)) = (self.config.dial_throttle, state.last_start) {
                if now < last + period {
                    return Err(last + period);
                }
            }
            state.last_start = Some(now);
            state.running = true;
            state.deadline = until;
            drop(state);
            tokio::spawn(self.clone().dial_routine());
            return Ok(());
        }
        state.deadline = state.deadline.max(until);
        Ok(())
    }

    pub(super) async fn dial_routine(self: Arc<Self>) {
        let result = self.connect_loop(|| lock(&self.dial).deadline).await;
        match result {
            Ok(channel) => {
                if let Err(e) = self.store(channel) {
                    tracing::debug!(addr = %self.addr, error = %e, "dialed channel not stored");
                }
            }
            Err(Error::Stopped) => {}
            Err(e) => tracing::warn!(addr = %self.addr, error = %e, "iproto pool: giving up redialing"),
        }
        lock(&self.dial).running = false;
        self.bump();
    }

    /// Dials until a connection is made, the deadline passes or the pool stops, with
    /// exponential backoff. Attempts are spaced from start to start.
    pub(super) async fn connect_loop(&self, deadline: impl Fn() -> Deadline) -> Result<Channel, Error> {
        let mut delays = self.backoff.build();
        let mut last_error = None;
        loop {
            let until = deadline();
            let start = Instant::now();
            if until <= Deadline::At(start) {
                return Err(last_error.unwrap_or(PoolError::NoChannel.into()));
            }
            let mut attempt_until = until;
            if let Some(t) = self.config.dial_timeout {
                attempt_until = attempt_until.min(Deadline::At(start + t));
            }
            let attempt = async {
                match attempt_until {
                    Deadline::At(t) => tokio::time::timeout_at(t, self.connect_once())
                        .await
                        .unwrap_or_else(|_| Err(self.connect_error(io::ErrorKind::TimedOut.into()))),
                    Deadline::Never => self.connect_once().await,
                }
            };
            let result = tokio::select! {
                _ = self.stop_dial.cancelled() => return Err(Error::Stopped),
                r = attempt => r,
            };
            self.dial_count.fetch_add(1, Relaxed);
            match result {
                Ok(channel) => {
                    *lock(&self.last_dial_error) = None;
                    return Ok(channel);
                }
                Err(e) => {
                    self.dial_errors.fetch_add(1, Relaxed);
                    tracing::debug!(addr = %self.addr, error = %e, "connect attempt failed");
                    *lock(&self.last_dial_error) = Some(e.clone());
                    last_error = Some(e);
                }
            }
            let cap = self.config.max_redial_interval.max(self.config.redial_interval);
            let delay = delays.next().map_or(cap, |d| d.min(cap));
            let mut next = start + delay;
            if let Deadline::At(t) = deadline() {
                next = next.min(t);
            }
            tokio::select! {
                _ = self.stop_dial.cancelled() => return Err(Error::Stopped),
                _ = tokio::time::sleep_until(next) => {}
            }
        }
    }

    pub(super) fn connect_error(&self, e: io::Error) -> Error {
        Error::Connect { addr: self.addr.clone(), source: Arc::new(e) }
    }

    pub(super) async fn connect_once(&self) -> Result<Channel, Error> {
        match &self.config.connector {
            None => Channel::connect(&self.addr, self.config.channel.clone()).await,
            Some(connector) => {
                let io = connector.connect(&self.addr).await.map_err(|e| self.connect_error(e))?;
                let channel = Channel::new(io, self.config.channel.clone());
                // As `Channel::connect` does: no traffic before the init hook succeeded.
                channel.init().await?;
                Ok(channel)
            }
        }
    }

    /// `init`/`init_all`: dials up to `n` channels at once, each retrying until the
    /// connect timeout; the first error is returned. A full pool counts as success.
    pub(super) async fn connect(self: &Arc<Self>, n: usize) -> Result<(), Error> {
        if self.stopped.load(SeqCst) {
            return Err(Error::Stopped);
        }
        let n = n.min(self.config.size).saturating_sub(self.online.len());
        let deadline = Deadline::At(Instant::now() + self.config.connect_timeout);
        let tasks = (0..n).map(|_| async {
            let channel = self.connect_loop(|| deadline).await?;
            match self.store(channel) {
                Ok(()) | Err(Error::Pool(PoolError::PoolFull)) => Ok(()),
                Err(e) => Err(e),
            }
        });
        futures_util::future::join_all(tasks).await.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn deadlines_order_never_last() {
        let now = Instant::now();
        assert!(Deadline::At(now) < Deadline::At(now + Duration::from_secs(1)));
        assert!(Deadline::At(now + Duration::from_secs(3600)) < Deadline::Never);
    }
}
