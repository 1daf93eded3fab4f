//! The call path: a call registers itself in the pending table and queues its packet under
//! one lock, waits for its reply (or the sweep's timeout, or its own timer), and removes its
//! entry if it gives up; notifications only queue.

use std::future::{poll_fn, Future};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::config::CallOptions;
use super::outbox::Wait;
use super::pending::key;
use super::shared::Shared;
use super::{stats, sweep, Channel};
use crate::error::{Error, TimeoutStage};
use crate::wire::{encode_packet, FrameError, HEADER_LEN, MSG_RESERVED_MIN};

impl Channel {
    /// Sends a request and waits for its reply body, within the request timeout.
    ///
    /// Codes >= 0xff00 are refused with [`Error::ReservedCode`]; see
    /// [`CallOptions::allow_reserved`].
    pub fn call<'s, 'b>(
        &'s self,
        msg: u32,
        body: &'b [u8],
    ) -> impl Future<Output = Result<Bytes, Error>> + Send + use<'s, 'b> {
        self.call_with(msg, body, CallOptions::default())
    }

    /// [`call`](Self::call) with per-call options (timeout override, reserved codes).
    ///
    /// Both return the call's own future, with no wrapper around it: a task making calls
    /// holds one, and its size is what many concurrent callers keep in cache.
    pub fn call_with<'s, 'b>(
        &'s self,
        msg: u32,
        body: &'b [u8],
        opts: CallOptions,
    ) -> impl Future<Output = Result<Bytes, Error>> + Send + use<'s, 'b> {
        self.call_inner(msg, body, opts, None)
    }

    /// [`call_with`](Self::call_with) whose timeout started at `deadline - timeout` (a layer
    /// above that read the clock already hands its deadline down instead of a second read).
    pub(crate) fn call_until<'s, 'b>(
        &'s self,
        msg: u32,
        body: &'b [u8],
        opts: CallOptions,
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<Bytes, Error>> + Send + use<'s, 'b> {
        self.call_inner(msg, body, opts, deadline)
    }

    /// Counts a call that ended with an error.
    fn failed(&self, error: Error) -> Error {
        stats::Counters::inc(&self.shared.stats.callers.canceled);
        error
    }

    /// [`call_with`](Self::call_with) owning its body (see [`Sender::call_owned`](super::Sender::call_owned)).
    pub fn call_owned(
        &self,
        msg: u32,
        body: Vec<u8>,
        opts: CallOptions,
    ) -> impl Future<Output = Result<Bytes, Error>> + Send + '_ {
        self.call_inner(msg, body, opts, None)
    }

    /// The call, generic over how the body is held (borrowed or owned), so that either way it
    /// is one future.
    async fn call_inner<B: AsRef<[u8]> + Send>(
        &self,
        msg: u32,
        body: B,
        opts: CallOptions,
        deadline: Option<Instant>,
    ) -> Result<Bytes, Error> {
        let s = &self.shared;
        // Calls refused before registration are counted here; the others under the lock.
        if msg >= MSG_RESERVED_MIN && !opts.allow_reserved {
            stats::Counters::inc(&s.stats.callers.calls);
            return Err(self.failed(Error::ReservedCode(msg)));
        }
        if let Err(e) = self.check_open() {
            stats::Counters::inc(&s.stats.callers.calls);
            return Err(self.failed(e));
        }
        let timeout = opts.timeout.unwrap_or(s.config.request_timeout);
        let deadline = deadline.unwrap_or_else(|| Instant::now() + timeout);
        // The default timeout is enforced by the sweep; a per-call one by its own timer.
        let swept = opts.timeout.is_none();
        // Register (with this task's waker) and, when the queue has room, queue the packet
        // under one lock.
        let (sync, spawn_sweep, queued) = poll_fn(|cx| {
            let mut book = s.outbox.book();
            let (sync, spawn_sweep) = book.pending.insert(msg, swept.then_some(deadline), Some(cx.waker().clone()));
            // The body is borrowed afresh at each use: a slice kept in a local would be stored
            // in the future next to the body.
            let bytes = body.as_ref();
            let queued = if bytes.len() > u32::MAX as usize {
                Err(FrameError::BodyOverflow { len: bytes.len() }.into())
            } else {
                let pushed = s.outbox.push_locked(&mut book, 1, HEADER_LEN + bytes.len(), |buf| {
                    buf.reserve(HEADER_LEN + bytes.len());
                    encode_packet(buf, msg, sync, bytes).map_err(Error::from)
                });
                book.calls += 1;
                pushed
            };
            Poll::Ready((sync, spawn_sweep, queued))
        })
        .await;
        if spawn_sweep {
            tokio::spawn(sweep::run(s.clone()));
        }
        let k = key(msg, sync);
        let mut guard = PendingGuard { shared: s, key: k, sent: false };
        let wait_for_room = match queued {
            Ok(true) => {
                s.outbox.wake_writer.notify_one();
                false
            }
            Ok(false) => true,
            Err(e) => {
                stats::Counters::inc(&s.stats.callers.packets_dropped);
                return Err(self.failed(e));
            }
        };
        if wait_for_room {
            if let Err(e) = s.outbox.enqueue(msg, sync, body.as_ref(), Wait::Until(deadline, timeout)).await {
                stats::Counters::inc(&s.stats.callers.packets_dropped);
                return Err(self.failed(e));
            }
        }
        guard.sent = true;
        // The reply is left in the call's slot and this task woken. Unless the call waited for
        // room, the waker given at registration is this very poll's: the first poll need not
        // look.
        let mut registered = !wait_for_room;
        let reply = poll_fn(|cx| {
            if std::mem::take(&mut registered) {
                return Poll::Pending;
            }
            s.outbox.pending().poll_reply(k, cx)
        });
        // A per-call timeout's timer is boxed: most calls use the default timeout (the sweep),
        // and the timer would otherwise make every call's future bigger.
        let reply = if swept { Ok(reply.await) } else { Box::pin(tokio::time::timeout_at(deadline, reply)).await };
        match reply {
            Ok(reply) => {
                guard.disarm();
                reply.map_err(|e| self.failed(e))
            }
            Err(_) => Err(self.failed(Error::timeout(msg, timeout, TimeoutStage::Reply))),
        }
    }

    /// Sends a notification: sync 0, no reply. Success means queued, not delivered.
    pub async fn notify(&self, msg: u32, body: &[u8]) -> Result<(), Error> {
        self.notify_within(msg, body, None).await
    }

    /// [`notify`](Self::notify) within `timeout` instead of the notify timeout (a pool's
    /// notification, whose deadline started before it had a channel).
    pub(crate) async fn notify_within(&self, msg: u32, body: &[u8], timeout: Option<Duration>) -> Result<(), Error> {
        let s = &self.shared;
        stats::Counters::inc(&s.stats.callers.notifications);
        if msg >= MSG_RESERVED_MIN {
            return Err(Error::ReservedCode(msg));
        }
        self.check_open()?;
        let timeout = timeout.unwrap_or(s.config.notify_timeout);
        s.outbox.enqueue(msg, 0, body, Wait::Until(Instant::now() + timeout, timeout)).await.inspect_err(|_| {
            stats::Counters::inc(&s.stats.callers.packets_dropped);
        })
    }
}

/// Removes a call's pending entry when the call gives up (timeout or cancellation), so that
/// nothing leaks and a late reply is recognised.
struct PendingGuard<'a> {
    shared: &'a Shared,
    key: u64,
    sent: bool,
}

impl PendingGuard<'_> {
    fn disarm(&mut self) {
        self.key = u64::MAX;
    }
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if self.key == u64::MAX {
            return;
        }
        let empty = {
            let mut pending = self.shared.outbox.pending();
            if self.sent {
                pending.abandon(self.key);
            } else {
                pending.cancel(self.key);
            }
            pending.is_empty()
        };
        if empty {
            self.shared.changed.notify_waiters();
        }
    }
}
