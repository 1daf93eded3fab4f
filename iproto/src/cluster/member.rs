//! One server of a cluster: its [`Pool`], its health (up, or down and probed in the background
//! with backoff until it answers again) and its counters.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::list::{ServerAddr, ServerSpec};
use crate::error::PoolError;
use crate::lock::lock;
use crate::pool::{Pool, PoolStats};
use crate::shard::Counter;
use crate::Error;

/// Whether a server takes calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// In rotation.
    Up,
    /// Out of rotation after a connect failure or a broken connection; probed until it
    /// answers.
    Down,
}

/// One server's counters and health, from [`Cluster::stats`](super::Cluster::stats).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MemberStats {
    /// The server and its weight.
    pub server: ServerSpec,
    /// Up or down now.
    pub state: MemberState,
    /// Attempts sent to it (retries and hedges included).
    pub calls: u64,
    /// Attempts that failed.
    pub errors: u64,
    /// The last error of an attempt or a probe.
    pub last_error: Option<Error>,
    /// How long it has been down, when it is.
    pub down_for: Option<Duration>,
    /// How many times it went down.
    pub downs: u64,
    /// Its pool's counters.
    pub pool: PoolStats,
}

/// How a down server is probed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Probe {
    pub interval: Duration,
    pub max_interval: Duration,
    pub timeout: Duration,
}

#[derive(Default)]
struct Health {
    last_error: Option<Error>,
    down_since: Option<Instant>,
    downs: u64,
    probing: bool,
}

/// A server of the cluster.
pub(crate) struct Member {
    pub addr: ServerAddr,
    pub pool: Pool,
    down: AtomicBool,
    /// Bumped on every call: per thread shard.
    calls: Counter,
    errors: AtomicU64,
    health: Mutex<Health>,
    probe: Probe,
    /// Cancelled when the member leaves the cluster or the cluster closes: stops its probe.
    pub stop: CancellationToken,
    /// The cluster's health-change counter, bumped when this server goes down or up.
    changes: Arc<watch::Sender<u64>>,
}

/// Errors that say the server cannot be reached now (as opposed to a slow or refusing reply).
pub(crate) fn breaks_server(e: &Error) -> bool {
    matches!(
        e,
        Error::Connect { .. }
            | Error::Pool(PoolError::Cutoff | PoolError::NoChannel | PoolError::DialFailed(_))
            | Error::Dropped(_)
            | Error::PeerClosed { .. }
            | Error::Io(_)
            | Error::PingMissed(_)
            | Error::Idle(_)
            | Error::WriteTimeout(_)
    )
}

impl Member {
    pub fn new(
        addr: ServerAddr,
        pool: Pool,
        probe: Probe,
        stop: CancellationToken,
        changes: Arc<watch::Sender<u64>>,
    ) -> Arc<Member> {
        Arc::new(Member {
            addr,
            pool,
            down: AtomicBool::new(false),
            calls: Counter::new(),
            errors: AtomicU64::new(0),
            health: Mutex::default(),
            probe,
            stop,
            changes,
        })
    }

    pub fn is_up(&self) -> bool {
        !self.down.load(Relaxed)
    }

    /// Counts an attempt about to go out.
    pub fn count_call(&self) {
        self.calls.inc();
    }

    /// Records a failed attempt; takes the server out of rotation (and starts probing it)
    /// when the error says it cannot be reached.
    pub fn failed(self: &Arc<Self>, e: &Error) {
        self.errors.fetch_add(1, Relaxed);
        let mut health = lock(&self.health);
        health.last_error = Some(e.clone());
        if breaks_server(e) && !self.pool.is_stopped() {
            self.go_down(&mut health);
        }
    }

    /// Marks the server down and starts its probe, unless one runs.
    pub fn mark_down(self: &Arc<Self>, e: Error) {
        let mut health = lock(&self.health);
        health.last_error = Some(e);
        self.go_down(&mut health);
    }

    fn go_down(self: &Arc<Self>, health: &mut Health) {
        if !self.down.swap(true, Relaxed) {
            health.downs += 1;
            health.down_since = Some(Instant::now());
            tracing::warn!(server = %self.addr, error = ?health.last_error, "cluster server down");
            self.changes.send_modify(|n| *n += 1);
        }
        if !health.probing {
            health.probing = true;
            tokio::spawn(self.clone().run_probe());
        }
    }

    fn go_up(&self) {
        let mut health = lock(&self.health);
        health.probing = false;
        health.down_since = None;
        if self.down.swap(false, Relaxed) {
            tracing::info!(server = %self.addr, "cluster server up");
            self.changes.send_modify(|n| *n += 1);
        }
    }

    /// Probes with exponentially growing, jittered delays until the pool has a connection
    /// again, the member leaves the cluster or the cluster closes.
    async fn run_probe(self: Arc<Self>) {
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(self.probe.interval)
            .with_max_delay(self.probe.max_interval.max(self.probe.interval))
            .with_jitter()
            .without_max_times()
            .build();
        loop {
            let delay = delays.next().unwrap_or(self.probe.max_interval).min(self.probe.max_interval);
            tokio::select! {
                _ = self.stop.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
            let online = tokio::select! {
                _ = self.stop.cancelled() => break,
                r = self.pool.wait_online(self.probe.timeout) => r,
            };
            match online {
                Ok(()) => return self.go_up(),
                Err(e) => lock(&self.health).last_error = Some(e),
            }
        }
        lock(&self.health).probing = false;
    }

    /// The member's stats; `server` is its entry in the current list.
    pub fn stats(&self, server: ServerSpec) -> MemberStats {
        let health = lock(&self.health);
        MemberStats {
            server,
            state: if self.is_up() { MemberState::Up } else { MemberState::Down },
            calls: self.calls.get(),
            errors: self.errors.load(Relaxed),
            last_error: health.last_error.clone(),
            down_for: health.down_since.filter(|_| !self.is_up()).map(|t| t.elapsed()),
            downs: health.downs,
            pool: self.pool.stats(),
        }
    }
}
