//! The pool's online set: the channels that take calls, copied per thread so that a pick
//! touches no shared cache line, the round-robin (batching) pick, waiting for a channel, and
//! channels joining and leaving the set.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::budget::Budget;
use super::dial::Deadline;
use super::Inner;
use crate::channel::Channel;
use crate::error::{PoolError, TimeoutStage};
use crate::lock::lock;
use crate::shard::{Padded, PerShard, Published};
use crate::Error;

/// A channel in the online list, with an id to remove it by.
#[derive(Clone)]
pub(super) struct Member {
    pub(super) id: u64,
    pub(super) channel: Channel,
}

/// The channel a call goes to: a snapshot of the online list and an index into it, so that
/// picking costs no channel clone.
pub(crate) struct Pick {
    online: Snapshot,
    index: usize,
}

impl Pick {
    pub(crate) fn channel(&self) -> &Channel {
        &self.online[self.index].channel
    }
}

/// One shard's copy of the online list.
pub(super) type Snapshot = Arc<Padded<Arc<[Member]>>>;

/// The online list: a master copy for writers, published per shard for readers, each shard
/// with its own round-robin counter, so a pick touches no cache line that other threads
/// write. Writers (a channel added or removed) update the master list and republish it.
pub(super) struct Online {
    master: Mutex<Vec<Member>>,
    published: Published<Arc<[Member]>>,
    next: PerShard<AtomicUsize>,
}

impl Online {
    pub(super) fn new() -> Self {
        Online {
            master: Mutex::new(Vec::new()),
            published: Published::new(Arc::from(Vec::new())),
            next: PerShard::new(|| AtomicUsize::new(0)),
        }
    }

    /// The calling thread's copy and its round-robin counter.
    pub(super) fn snapshot(&self) -> (Snapshot, &AtomicUsize) {
        (self.published.load(), self.next.mine())
    }

    pub(super) fn members(&self) -> Vec<Member> {
        lock(&self.master).clone()
    }

    pub(super) fn len(&self) -> usize {
        lock(&self.master).len()
    }

    /// Changes the list under the master lock; republishes it when `change` says it changed.
    pub(super) fn update<R>(&self, change: impl FnOnce(&mut Vec<Member>) -> (bool, R)) -> R {
        let mut master = lock(&self.master);
        let (changed, result) = change(&mut master);
        if changed {
            self.published.store(Arc::from(master.as_slice()));
        }
        result
    }
}

impl Inner {
    /// The channel a call takes at once when nothing has to wait: no rate limit and a
    /// channel online; `None` sends the call down the general path.
    pub(super) fn ready(self: &Arc<Self>) -> Option<Pick> {
        if self.limiter.is_some() {
            return None;
        }
        self.pick().ok().flatten()
    }

    /// Picks the next online channel that still takes calls, without waiting.
    pub(super) fn pick(self: &Arc<Self>) -> Result<Option<Pick>, Error> {
        if self.stopped.load(Relaxed) {
            return Err(Error::Stopped);
        }
        let (online, next) = self.online.snapshot();
        let n = online.len();
        if n > 0 && n < self.config.size {
            self.dial_background();
        }
        for attempt in 0..n {
            let index = if attempt == 0 { self.batching_index(&online, next) } else { next.fetch_add(1, Relaxed) % n };
            let member = &online[index];
            if !member.channel.is_stopped() {
                return Ok(Some(Pick { online, index }));
            }
            self.remove(member.id);
        }
        Ok(None)
    }

    /// Round-robin, except that a call joins the batch the last pick started while that
    /// batch still waits for its writer and is not full (see
    /// [`PoolConfig::strict_round_robin`]).
    pub(super) fn batching_index(&self, online: &[Member], next: &AtomicUsize) -> usize {
        let n = online.len();
        if !self.config.strict_round_robin {
            let current = next.load(Relaxed) % n;
            let open = online[current].channel.open_batch();
            if open > 0 && open < self.config.channel.write_queue {
                return current;
            }
        }
        next.fetch_add(1, Relaxed).wrapping_add(1) % n
    }

    /// A channel to call on, waiting for one as configured when none is online, within the
    /// call's budget.
    pub(super) async fn acquire(self: &Arc<Self>, budget: &mut Budget) -> Result<Pick, Error> {
        match self.pick()? {
            Some(pick) => Ok(pick),
            None => self.wait_for_channel(budget).await,
        }
    }

    /// Waits for a channel until the connect timeout or the call's deadline, whichever comes
    /// first; the error says which: a timeout at [`TimeoutStage::Channel`], or the last dial
    /// error ([`PoolError::DialFailed`], [`PoolError::NoChannel`] if none failed).
    pub(super) async fn wait_for_channel(self: &Arc<Self>, budget: &mut Budget) -> Result<Pick, Error> {
        let mut events = self.events.subscribe();
        let call_deadline = budget.deadline();
        let connect_deadline = Instant::now() + self.config.connect_timeout;
        let deadline = call_deadline.min(connect_deadline);
        let until = if self.config.redial_timeout.is_none() { Deadline::Never } else { Deadline::At(connect_deadline) };
        loop {
            events.borrow_and_update();
            if let Some(pick) = self.pick()? {
                return Ok(pick);
            }
            if self.config.fail_on_cutoff {
                self.dial_background();
                return Err(PoolError::Cutoff.into());
            }
            let wake = match self.start_dial(until) {
                Ok(()) => deadline,
                Err(throttle_opens) => throttle_opens.min(deadline),
            };
            match tokio::time::timeout_at(wake, events.changed()).await {
                Ok(_) => continue,
                Err(_) if wake < deadline => continue,
                Err(_) => {
                    self.wait_errors.fetch_add(1, Relaxed);
                    if call_deadline <= connect_deadline {
                        return Err(budget.expired(TimeoutStage::Channel));
                    }
                    return Err(self.no_channel());
                }
            }
        }
    }

    /// Why no channel came online: the last connect attempt's error while dialing fails.
    pub(super) fn no_channel(&self) -> Error {
        match lock(&self.last_dial_error).clone() {
            Some(e) => PoolError::DialFailed(Arc::new(e)).into(),
            None => PoolError::NoChannel.into(),
        }
    }

    /// Adds `channel` to the online list and watches it.
    pub(super) fn store(self: &Arc<Self>, channel: Channel) -> Result<(), Error> {
        let stored = self.online.update(|list| {
            if self.stopped.load(SeqCst) || channel.is_stopped() {
                (false, Err(Error::Stopped))
            } else if list.len() >= self.config.size {
                (false, Err(PoolError::PoolFull.into()))
            } else {
                let id = self.next_id.fetch_add(1, Relaxed);
                list.push(Member { id, channel: channel.clone() });
                (true, Ok(id))
            }
        });
        let id = match stored {
            Ok(id) => id,
            Err(e) => {
                channel.close();
                return Err(e);
            }
        };
        lock(&self.registry).live.insert(id, channel.clone());
        tokio::spawn(self.clone().watch(id, channel));
        self.bump();
        Ok(())
    }

    /// Takes a channel out of rotation as soon as it stops taking calls, then saves its
    /// counters once it has closed.
    pub(super) async fn watch(self: Arc<Self>, id: u64, channel: Channel) {
        channel.stopping().await;
        self.remove(id);
        channel.closed().await;
        let mut reg = lock(&self.registry);
        if let Some(channel) = reg.live.remove(&id) {
            let stats = channel.stats();
            reg.saved.add(&stats);
        }
    }

    /// Removes channel `id` from the online list; redials unless told not to.
    pub(super) fn remove(self: &Arc<Self>, id: u64) {
        let removed = self.online.update(|list| {
            let before = list.len();
            list.retain(|m| m.id != id);
            let removed = list.len() != before;
            (removed, removed)
        });
        if !removed {
            return;
        }
        self.bump();
        if !self.config.disable_pre_dial && !self.stopped.load(SeqCst) {
            self.dial_background();
        }
    }
}
