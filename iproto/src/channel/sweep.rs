//! Request timeouts without a timer per call: calls with the channel's default timeout leave
//! their deadline in the pending table, and one sweep task per channel sleeps until the
//! earliest one, then fails the calls that are due with [`Error::Timeout`]. Registering and
//! cancelling a tokio timer per call cost more than the rest of a call's bookkeeping.
//!
//! The task is spawned by the first such call and parks on a `Notify` whenever no call has a
//! deadline, so an idle channel costs nothing; the call that finds it parked wakes it.

use std::sync::Arc;

use tokio::time::Instant;

use super::Shared;
use crate::Error;

/// Runs until the channel closes.
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut expired = Vec::new();
    loop {
        let (next, emptied) = {
            let mut pending = shared.pending();
            let next = pending.expire(Instant::now(), &mut expired);
            (next, !expired.is_empty() && pending.is_empty())
        };
        for tx in expired.drain(..) {
            let _ = tx.send(Err(Error::Timeout));
        }
        if emptied {
            shared.changed.notify_waiters();
        }
        match next {
            Some(deadline) => tokio::select! {
                biased;
                _ = shared.cancel.cancelled() => return,
                _ = tokio::time::sleep_until(deadline) => {}
            },
            // `notify_one` keeps a permit, so a wake-up sent before we get here is not lost.
            None => tokio::select! {
                biased;
                _ = shared.cancel.cancelled() => return,
                _ = shared.wake_sweep.notified() => {}
            },
        }
    }
}
