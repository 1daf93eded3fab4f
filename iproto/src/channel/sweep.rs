//! Request timeouts without a timer per call: calls with the channel's default timeout leave
//! their deadline in the pending table, and one sweep task per channel sleeps until the
//! earliest one, then fails the calls that are due with [`Error::Timeout`]. Registering and
//! cancelling a tokio timer per call cost more than the rest of a call's bookkeeping.
//!
//! The task is spawned by a call that finds none running, and ends when no call has a
//! deadline, so an idle channel holds no task: at most one spawn per timeout period.

use std::sync::Arc;

use tokio::time::Instant;

use super::shared::Shared;
use crate::error::{Error, TimeoutStage};

/// Runs until the channel closes.
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut wakers = Vec::new();
    let timeout = |msg| Error::timeout(msg, shared.config.request_timeout, TimeoutStage::Reply);
    loop {
        let (next, emptied) = {
            let mut pending = shared.outbox.pending();
            let before = pending.len();
            let next = pending.expire(Instant::now(), timeout, &mut wakers);
            (next, pending.len() < before && pending.is_empty())
        };
        for waker in wakers.drain(..) {
            waker.wake();
        }
        if emptied {
            shared.changed.notify_waiters();
        }
        // With no deadline left the table already says the sweep has ended.
        let Some(deadline) = next else { return };
        tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => return,
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}
