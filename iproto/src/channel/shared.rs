//! [`Shared`]: the state the handle and the channel's tasks share — configuration, life-cycle
//! flags and the close reason, the wake-ups between tasks, counters and addresses — and the
//! life-cycle steps on it (stop, fail, close). Pending calls and the outgoing queue are the
//! [`Outbox`]'s.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::ChannelConfig;
use super::hooks::Life;
use super::outbox::Outbox;
use super::stats;
use crate::net::{Addr, Transport};
use crate::Error;

/// Life-cycle state, published through a watch channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Open,
    Stopping,
    Closed,
}

/// Everything the handle and the tasks share.
pub(crate) struct Shared {
    pub(crate) config: ChannelConfig,
    /// Pending calls and the outgoing queue, under one lock.
    pub(crate) outbox: Outbox,
    /// Fired on every life-cycle event: pending calls emptied, peer shutdown, reader or
    /// writer done, dropped.
    pub(crate) changed: Notify,
    pub(crate) stopped: AtomicBool,
    pub(crate) hijacking: AtomicBool,
    pub(crate) dropped: AtomicBool,
    pub(crate) peer_shutdown: AtomicBool,
    pub(crate) reader_done: AtomicBool,
    pub(crate) writer_stop: AtomicBool,
    pub(crate) reason: OnceLock<Arc<Error>>,
    /// Cancelled when the connection is dropped: every task stops.
    pub(crate) cancel: CancellationToken,
    pub(crate) state: watch::Sender<State>,
    pub(crate) handler_slots: Arc<Semaphore>,
    pub(crate) stats: stats::Counters,
    pub(crate) ping_sent: Mutex<Option<Instant>>,
    base: Instant,
    last_read_nanos: AtomicU64,
    pub(crate) handles: AtomicUsize,
    pub(crate) hijack_slot: Mutex<Option<(Box<dyn Transport>, Bytes)>>,
    pub(crate) peer: Option<Addr>,
    pub(crate) local: Option<Addr>,
    /// The init hook's state, the registered callbacks, the stopping token.
    pub(crate) life: Life,
}

impl Shared {
    /// Fresh state for a channel with `config` between `local` and `peer`.
    pub(crate) fn new(config: ChannelConfig, peer: Option<Addr>, local: Option<Addr>) -> Shared {
        let slots = config.max_concurrent_requests.clamp(1, Semaphore::MAX_PERMITS);
        Shared {
            outbox: Outbox::new(config.write_queue, config.write_buffer_size),
            changed: Notify::new(),
            stopped: AtomicBool::new(false),
            hijacking: AtomicBool::new(false),
            dropped: AtomicBool::new(false),
            peer_shutdown: AtomicBool::new(false),
            reader_done: AtomicBool::new(false),
            writer_stop: AtomicBool::new(false),
            reason: OnceLock::new(),
            cancel: CancellationToken::new(),
            state: watch::Sender::new(State::Open),
            handler_slots: Arc::new(Semaphore::new(slots)),
            stats: stats::Counters::default(),
            ping_sent: Mutex::new(None),
            base: Instant::now(),
            last_read_nanos: AtomicU64::new(0),
            handles: AtomicUsize::new(0),
            hijack_slot: Mutex::new(None),
            peer,
            local,
            config,
            life: Life::default(),
        }
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(SeqCst)
    }

    /// Records that a complete packet arrived (idle timer).
    pub(crate) fn touch(&self) {
        let nanos = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        // Relaxed: the idle check only needs a recent value, and a sequentially consistent
        // store is a locked instruction per read batch.
        self.last_read_nanos.store(nanos, Relaxed);
    }

    pub(crate) fn last_read(&self) -> Instant {
        self.base + Duration::from_nanos(self.last_read_nanos.load(Relaxed))
    }

    /// Marks the channel stopped; returns false if it already was.
    pub(crate) fn begin_stop(&self) -> bool {
        if self.stopped.swap(true, SeqCst) {
            return false;
        }
        self.life.stopping.cancel();
        self.state.send_if_modified(|s| {
            let open = *s == State::Open;
            if open {
                *s = State::Stopping;
            }
            open
        });
        true
    }

    /// A fatal error: recorded (first one only) and the connection dropped.
    pub(crate) fn fail(&self, error: Error) {
        if !self.dropped.load(SeqCst) {
            tracing::warn!(error = %error, "iproto channel failed");
        }
        self.close_with(Some(error));
    }

    /// Drops the connection at once (go-iproto's `Drop`): fails every pending call with
    /// [`Error::Dropped`] and stops the tasks. Idempotent.
    pub(crate) fn close_with(&self, reason: Option<Error>) {
        if self.dropped.swap(true, SeqCst) {
            return;
        }
        let reason = reason.map(|e| self.reason.get_or_init(|| Arc::new(e)).clone());
        self.begin_stop();
        self.close_outbox();
        self.cancel.cancel();
        let wakers = self.outbox.pending().fail_all(|| Error::Dropped(reason.clone()));
        for waker in wakers {
            waker.wake();
        }
        self.changed.notify_waiters();
    }

    /// Refuses further packets and wakes everybody waiting for room or for a life-cycle
    /// event.
    pub(crate) fn close_outbox(&self) {
        self.outbox.close();
        self.changed.notify_waiters();
    }
}
