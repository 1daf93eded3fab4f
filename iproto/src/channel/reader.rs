//! The incoming side: one reader task per connection decodes packets and classifies each one
//! (W-12): the reply of a pending call, a late reply of an abandoned call (dropped and
//! counted), a packet for the hijack buffer, a ping, a shutdown, or a request for the handler.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::codec::Decoder;

use super::handler::DynHandler;
use super::pending::key;
use super::stats::Counters;
use super::writer::Wait;
use super::{Channel, Shared};
use crate::wire::{self, Packet, PacketCodec, MSG_PING, MSG_SHUTDOWN};
use crate::Error;

/// Smallest read buffer; an idle connection shrinks back to it.
const MIN_READ: usize = 4 * 1024;
/// Largest read chunk.
const MAX_READ: usize = 64 * 1024;

/// What the reader hands back when it stops: the read half and every byte read but not
/// consumed (hijacked packets first, then unparsed bytes).
pub(crate) struct ReaderOutput<R> {
    pub half: R,
    pub leftover: BytesMut,
}

/// The reader task.
pub(crate) async fn run<R: AsyncRead + Unpin>(shared: Arc<Shared>, mut r: R) -> ReaderOutput<R> {
    let mut codec = PacketCodec::with_size_limit(shared.config.size_limit);
    let mut buf = BytesMut::with_capacity(MIN_READ);
    let mut hijacked = BytesMut::new();
    let result: Result<(), Error> = async {
        loop {
            let mut got = 0u64;
            while let Some(packet) = codec.decode(&mut buf)? {
                got += 1;
                dispatch(&shared, packet, &mut hijacked).await;
            }
            if got > 0 {
                shared.stats.packets_received.fetch_add(got, std::sync::atomic::Ordering::Relaxed);
                shared.touch();
            }
            // Grow in chunks as bytes arrive, never by a length a header claims; shrink an
            // idle buffer back to the minimum.
            let spare = buf.capacity() - buf.len();
            if buf.is_empty() && buf.capacity() > 2 * MAX_READ {
                buf = BytesMut::with_capacity(MIN_READ);
            } else if spare < MIN_READ {
                buf.reserve((buf.len() * 2).clamp(MIN_READ, MAX_READ));
            }
            let n = tokio::select! {
                biased;
                _ = shared.cancel.cancelled() => return Ok(()),
                n = r.read_buf(&mut buf) => n?,
            };
            if n == 0 {
                if !buf.is_empty() {
                    return Err(Error::from(wire::truncated(&buf)));
                }
                let pending = shared.pending().len();
                return if pending > 0 { Err(Error::PeerClosed { pending }) } else { Ok(()) };
            }
            shared.stats.bytes_received.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        }
    }
    .await;
    match result {
        Err(e) => shared.fail(e),
        Ok(()) => shared.close_with(None),
    }
    shared.reader_done.store(true, SeqCst);
    shared.changed.notify_waiters();
    hijacked.unsplit(buf);
    ReaderOutput { half: r, leftover: hijacked }
}

/// Classifies one packet (W-12) and acts on it.
async fn dispatch(shared: &Arc<Shared>, packet: Packet, hijacked: &mut BytesMut) {
    let h = packet.header;
    let k = key(h.msg, h.sync);
    let late = {
        let mut pending = shared.pending();
        if let Some(tx) = pending.take(k) {
            let empty = pending.is_empty();
            drop(pending);
            let _ = tx.send(Ok(packet.body));
            if empty {
                shared.changed.notify_waiters();
            }
            return;
        }
        pending.take_abandoned(k)
    };
    if late {
        // A reply whose call gave up: not a request (SPEC.md section 1, fixes W-12).
        Counters::inc(&shared.stats.late_replies);
        tracing::debug!(msg = h.msg, sync = h.sync, "dropped a late reply");
        return;
    }
    if shared.hijacking.load(SeqCst) {
        // C-35: complete non-reply packets go to the hijack buffer, in order.
        hijacked.reserve(wire::HEADER_LEN + packet.body.len());
        hijacked.put_slice(&h.to_bytes());
        hijacked.put_slice(&packet.body);
        return;
    }
    match h.msg {
        MSG_PING => answer_ping(shared, h.sync).await,
        MSG_SHUTDOWN => shared.peer_shutdown_received(),
        _ => handle_request(shared, packet).await,
    }
}

/// W-16: a received ping clears ours; it is answered with its own sync unless it is a sync-0
/// ping that arrived while ours was outstanding (then it is the peer's ping crossing ours).
async fn answer_ping(shared: &Arc<Shared>, sync: u32) {
    let was_waiting = shared.ping_sent.lock().unwrap_or_else(|e| e.into_inner()).take().is_some();
    if was_waiting && sync == 0 {
        return;
    }
    if let Err(e) = shared.enqueue(MSG_PING, sync, &[], Wait::Forever).await {
        tracing::debug!(error = %e, "could not answer a ping");
    }
}

async fn handle_request(shared: &Arc<Shared>, packet: Packet) {
    if shared.dropped.load(SeqCst) {
        return;
    }
    let Some(handler) = shared.config.handler.as_ref().map(|h| h.0.clone()) else {
        tracing::debug!(msg = packet.header.msg, sync = packet.header.sync, "no handler: request dropped");
        return;
    };
    Counters::inc(&shared.stats.requests);
    if shared.config.inline_handlers {
        serve(shared.clone(), handler, packet).await;
        return;
    }
    // At the concurrency limit the reader waits here: back-pressure to the peer.
    let Ok(permit) = shared.handler_slots.clone().acquire_owned().await else {
        return;
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        serve(shared, handler, packet).await;
        drop(permit);
    });
}

/// Runs the handler, catching a panic, and sends its reply.
async fn serve(shared: Arc<Shared>, handler: Arc<dyn DynHandler>, packet: Packet) {
    let (msg, sync) = (packet.header.msg, packet.header.sync);
    let channel = Channel::from_shared(shared.clone());
    match AssertUnwindSafe(handler.handle_boxed(packet, channel)).catch_unwind().await {
        Ok(Some(body)) => {
            if let Err(e) = shared.enqueue(msg, sync, &body, Wait::Forever).await {
                tracing::debug!(msg, sync, error = %e, "could not send a reply");
            }
        }
        Ok(None) => {}
        Err(_) => {
            Counters::inc(&shared.stats.handler_panics);
            tracing::error!(msg, sync, "request handler panicked; the connection goes on");
        }
    }
}
