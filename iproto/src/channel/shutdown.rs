//! Graceful shutdown and hijack: run the shutdown callbacks, stop new calls, wait for our
//! pending calls and in-flight handlers, exchange 0xff01 with the peer, let the writer flush,
//! then close — all but the callbacks bounded by the shutdown timeout.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use tokio::sync::Notify;
use tokio::time::Instant;

use tracing::Instrument;

use super::outbox::Wait;
use super::shared::Shared;
use crate::wire::MSG_SHUTDOWN;

/// Waits until `cond` holds, re-checking each time `notify` fires.
pub(crate) async fn wait_for(notify: &Notify, mut cond: impl FnMut() -> bool) {
    loop {
        let changed = notify.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if cond() {
            return;
        }
        changed.await;
    }
}

/// A 0xff01 arrived: the peer is shutting down, so we do too.
pub(crate) fn peer_started(shared: &Arc<Shared>) {
    shared.peer_shutdown.store(true, SeqCst);
    shared.changed.notify_waiters();
    if shared.begin_stop() {
        tracing::debug!("peer started a graceful shutdown");
        tokio::spawn(run(shared.clone()).in_current_span());
    }
}

/// Runs the graceful part of a shutdown or hijack, then closes. The caller has already marked
/// the channel stopped. The shutdown callbacks run first, each bounded by the callback
/// timeout, so that the initiator's finish before its 0xff01 leaves and the responder's before
/// its answer; the shutdown timeout starts after them.
pub(crate) async fn run(shared: Arc<Shared>) {
    super::life::shutting_down(&shared).await;
    let timeout = shared.config.shutdown_timeout;
    let deadline = Instant::now() + timeout;
    if tokio::time::timeout_at(deadline, graceful(&shared, deadline)).await.is_err() {
        tracing::warn!(?timeout, "shutdown timeout exceeded; closing");
    }
    shared.close_with(None);
}

async fn graceful(shared: &Shared, deadline: Instant) {
    // Our own calls finish (replies, timeouts or cancellation).
    wait_for(&shared.changed, || shared.outbox.pending().is_empty()).await;
    // Requests we are serving finish and their replies are queued.
    let max = u32::try_from(shared.config.max_concurrent_requests.max(1)).unwrap_or(u32::MAX);
    drop(shared.handler_slots.acquire_many(max).await);
    if !shared.hijacking.load(SeqCst) {
        // Step 5: 0xff01 after everything queued, then wait for the peer's (or its EOF).
        // With `disable_shutdown` no 0xff01 goes out, so none is awaited either: go-iproto
        // waits for the peer's anyway and so always runs into the timeout against
        // peers that never close on their own.
        if !shared.config.disable_shutdown {
            if let Err(e) =
                shared.outbox.enqueue(MSG_SHUTDOWN, 0, &[], Wait::Until(deadline, shared.config.shutdown_timeout)).await
            {
                tracing::debug!(error = %e, "could not send the shutdown packet");
            }
            wait_for(&shared.changed, || {
                shared.peer_shutdown.load(SeqCst) || shared.reader_done.load(SeqCst) || shared.dropped.load(SeqCst)
            })
            .await;
        }
    }
    // Step 6: the writer flushes what is queued and stops.
    shared.writer_stop.store(true, SeqCst);
    shared.outbox.wake_writer.notify_one();
    wait_for(&shared.changed, || shared.outbox.is_closed()).await;
}
