//! The incoming side: one reader task per connection decodes packets and classifies each one:
//! the reply of a pending call, a late reply of an abandoned call (dropped and
//! counted), a packet for the hijack buffer, a ping, a shutdown, or a request for the handler.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::codec::Decoder;

use super::outbox::Wait;
use super::pending::key;
use super::reply::{Panicked, Started};
use super::shared::Shared;
use super::stats::Counters;
use super::writer::DirectWrite;
use super::{shutdown, Channel};
use crate::wire::{self, Packet, PacketCodec, MSG_PING, MSG_SHUTDOWN};
use crate::Error;

/// Smallest read chunk; a quiet connection shrinks back to it.
const MIN_READ: usize = 1024;
/// Largest read chunk.
const MAX_READ: usize = 64 * 1024;
/// Reads in a row that use under a quarter of their room before the chunk halves.
const SHRINK_AFTER: u32 = 32;

/// What the reader hands back when it stops: the read half and every byte read but not
/// consumed (hijacked packets first, then unparsed bytes).
pub(crate) struct ReaderOutput<R> {
    pub half: R,
    pub leftover: BytesMut,
}

/// Per-read-batch scratch space, reused across reads.
#[derive(Default)]
struct Batch {
    packets: Vec<Packet>,
    others: Vec<Packet>,
    /// The tasks of the calls this read completed, woken once the table is unlocked.
    completions: Vec<std::task::Waker>,
    /// Replies of handlers that answered at once, written to the outbox in one go.
    replies: BytesMut,
    reply_count: usize,
    /// The write half, when the reader may write replies itself (sockets).
    direct: Option<Arc<dyn DirectWrite>>,
}

/// The reader task.
pub(crate) async fn run<R: AsyncRead + Unpin>(
    shared: Arc<Shared>,
    mut r: R,
    direct: Option<Arc<dyn DirectWrite>>,
) -> ReaderOutput<R> {
    let mut codec = PacketCodec::with_size_limit(shared.config.size_limit);
    let mut buf = BytesMut::with_capacity(MIN_READ);
    // How much to make room for before a read; adapts to the traffic.
    let mut chunk = MIN_READ;
    // Reads in a row that used under a quarter of the room they had.
    let mut small_reads = 0u32;
    let mut hijacked = BytesMut::new();
    let mut batch = Batch { direct, ..Batch::default() };
    let result: Result<(), Error> = async {
        loop {
            while let Some(packet) = codec.decode(&mut buf)? {
                batch.packets.push(packet);
            }
            if !batch.packets.is_empty() {
                Counters::add_owned(&shared.stats.reader.packets_received, batch.packets.len() as u64);
                shared.touch();
                process(&shared, &mut batch, &mut hijacked).await;
            }
            // Grow in chunks as bytes arrive, never by a length a header claims; shrink an
            // idle buffer back to the chunk size.
            let spare = buf.capacity() - buf.len();
            if buf.is_empty() && buf.capacity() > 4 * chunk {
                buf = BytesMut::with_capacity(chunk);
            } else if spare < chunk {
                buf.reserve((buf.len() * 2).clamp(chunk, MAX_READ));
            }
            let spare = buf.capacity() - buf.len();
            let n = tokio::select! {
                biased;
                _ = shared.cancel.cancelled() => return Ok(()),
                n = r.read_buf(&mut buf) => n?,
            };
            // A read that filled the space asks for twice as much next time; after
            // `SHRINK_AFTER` reads in a row that used under a quarter, half: busy connections
            // read many replies per syscall (the lean yardstick reads 64 KiB), quiet ones keep
            // small buffers. Shrinking at the first small read made a busy connection's room
            // swing with its batch sizes and cut its batches in two (a third more reads per
            // call than the yardstick at 1 x 64).
            if n >= spare {
                chunk = (chunk * 2).min(MAX_READ);
                small_reads = 0;
            } else if n < spare / 4 {
                small_reads += 1;
                if small_reads >= SHRINK_AFTER {
                    chunk = (chunk / 2).max(MIN_READ);
                    small_reads = 0;
                }
            } else {
                small_reads = 0;
            }
            if n == 0 {
                if !buf.is_empty() {
                    return Err(Error::from(wire::truncated(&buf)));
                }
                let pending = shared.outbox.pending().len();
                return if pending > 0 { Err(Error::PeerClosed { pending }) } else { Ok(()) };
            }
            Counters::add_owned(&shared.stats.reader.bytes_received, n as u64);
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

/// Classifies the packets of one read: replies of pending calls and late replies under
/// one lock of the pending table, then everything else in arrival order.
async fn process(shared: &Arc<Shared>, batch: &mut Batch, hijacked: &mut BytesMut) {
    let mut late = 0u64;
    let emptied = {
        let mut pending = shared.outbox.pending();
        let had_calls = !pending.is_empty();
        if !had_calls && !pending.has_abandoned() && batch.others.is_empty() {
            // No call of ours is pending or was abandoned (a server's connections, mostly):
            // every packet is a request or a control packet, with no lookup each.
            std::mem::swap(&mut batch.packets, &mut batch.others);
        }
        for mut packet in batch.packets.drain(..) {
            let k = key(packet.header.msg, packet.header.sync);
            if let Some(waker) = pending.complete(k, || Ok(std::mem::take(&mut packet.body))) {
                batch.completions.extend(waker);
            } else if pending.take_abandoned(k) {
                late += 1;
                tracing::debug!(msg = packet.header.msg, sync = packet.header.sync, "dropped a late reply");
            } else {
                batch.others.push(packet);
            }
        }
        had_calls && pending.is_empty()
    };
    if late > 0 {
        // Replies whose calls gave up are not requests (docs/protocol.md, Matching replies; go-iproto hands them to the handler).
        // Counted before the calls of the same read complete, so a caller that sees its
        // reply also sees the count.
        Counters::add_owned(&shared.stats.reader.late_replies, late);
    }
    for waker in batch.completions.drain(..) {
        waker.wake();
    }
    if emptied {
        shared.changed.notify_waiters();
    }
    let mut others = std::mem::take(&mut batch.others);
    for packet in others.drain(..) {
        // Most requests are dealt with without awaiting anything; only the rest build the
        // (much larger) future of the general path.
        if let Some(slow) = dispatch_now(shared, packet, hijacked, batch) {
            dispatch(shared, slow, batch).await;
        }
    }
    batch.others = others;
    flush_replies(shared, batch).await;
}

/// Writes the batched replies to the outbox.
async fn flush_replies(shared: &Shared, batch: &mut Batch) {
    if batch.reply_count == 0 {
        return;
    }
    let count = std::mem::take(&mut batch.reply_count);
    if let Some(io) = &batch.direct {
        if shared.outbox.write_direct(&batch.replies, count, &shared.stats, |b| io.try_write(b)) {
            batch.replies.clear();
            return;
        }
    }
    if let Err(e) = shared.outbox.enqueue_encoded(&batch.replies, count).await {
        tracing::debug!(error = %e, "could not send replies");
    }
    batch.replies.clear();
}

/// What [`dispatch_now`] could not finish without awaiting.
enum Slow {
    /// A ping or a shutdown (they first flush the replies gathered so far).
    Control(Packet),
    /// A request whose handler must wait for a concurrency slot: not started yet, or polled
    /// once and pending.
    Request { started: Started, msg: u32, sync: u32, polled: bool },
}

/// Acts on one packet that is not a reply: hijack buffer, ping, shutdown or request, as far
/// as it can without waiting. Returns what is left for [`dispatch`].
fn dispatch_now(shared: &Arc<Shared>, packet: Packet, hijacked: &mut BytesMut, batch: &mut Batch) -> Option<Slow> {
    let h = packet.header;
    if shared.hijacking.load(SeqCst) {
        // Complete non-reply packets go to the hijack buffer, in order.
        hijacked.reserve(wire::HEADER_LEN + packet.body.len());
        hijacked.put_slice(&h.to_bytes());
        hijacked.put_slice(&packet.body);
        return None;
    }
    if h.msg == MSG_PING || h.msg == MSG_SHUTDOWN {
        return Some(Slow::Control(packet));
    }
    if shared.dropped.load(SeqCst) {
        return None;
    }
    let Some(handler) = shared.config.handler.as_ref() else {
        tracing::debug!(msg = h.msg, sync = h.sync, "no handler: request dropped");
        return None;
    };
    Counters::add_owned(&shared.stats.reader.requests, 1);
    // A handler that answers at once writes its reply into the batch: no handle, no future.
    let packet = match handler.reply_now(packet, &mut batch.replies) {
        Ok(written) => {
            batch.reply_count += usize::from(replied(shared, h.msg, h.sync, written));
            return None;
        }
        Err(packet) => packet,
    };
    let channel = Channel::from_shared(shared.clone());
    let mut started = handler.start(packet, channel);
    if shared.handler_slots.available_permits() == 0 {
        // At the concurrency limit the reader waits for a slot before it starts the
        // handler: back-pressure to the peer.
        return Some(Slow::Request { started, msg: h.msg, sync: h.sync, polled: false });
    }
    // Poll the handler once here: one that answers at once (an echo, a cache hit) costs no
    // task hand-off and no slot, and its reply writes itself into the reply batch. One that
    // would wait gets its own task and is polled again there, which registers the real waker.
    match started.poll_done(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(done) => {
            let written = done.and_then(|()| started.write(h.msg, h.sync, &mut batch.replies));
            batch.reply_count += usize::from(replied(shared, h.msg, h.sync, written));
            None
        }
        // A slot is free: the reader is the only one taking them while the channel is open.
        Poll::Pending => match shared.handler_slots.clone().try_acquire_owned() {
            Ok(permit) => {
                spawn_handler(shared, started, h.msg, h.sync, permit);
                None
            }
            Err(_) => Some(Slow::Request { started, msg: h.msg, sync: h.sync, polled: true }),
        },
    }
}

/// The rest of [`dispatch_now`]'s work, which waits.
async fn dispatch(shared: &Arc<Shared>, slow: Slow, batch: &mut Batch) {
    match slow {
        Slow::Control(packet) if packet.header.msg == MSG_PING => {
            flush_replies(shared, batch).await;
            answer_ping(shared, packet.header.sync).await
        }
        Slow::Control(_) => {
            // Replies to earlier requests go out before our own 0xff01.
            flush_replies(shared, batch).await;
            shutdown::peer_started(shared)
        }
        Slow::Request { mut started, msg, sync, polled } => {
            // Replies gathered so far go out before the reader waits.
            flush_replies(shared, batch).await;
            let Ok(permit) = shared.handler_slots.clone().acquire_owned().await else {
                return;
            };
            if !polled {
                if let Poll::Ready(done) = started.poll_done(&mut Context::from_waker(Waker::noop())) {
                    drop(permit);
                    let written = done.and_then(|()| started.write(msg, sync, &mut batch.replies));
                    batch.reply_count += usize::from(replied(shared, msg, sync, written));
                    return;
                }
            }
            spawn_handler(shared, started, msg, sync, permit);
        }
    }
}

/// Runs a handler that has to wait on its own task, holding its concurrency slot; its reply
/// is written into a buffer of its own and queued.
fn spawn_handler(shared: &Arc<Shared>, mut started: Started, msg: u32, sync: u32, permit: OwnedSemaphorePermit) {
    let shared = shared.clone();
    tokio::spawn(async move {
        let mut out = BytesMut::new();
        let written = started.done().await.and_then(|()| started.write(msg, sync, &mut out));
        if replied(&shared, msg, sync, written) {
            if let Err(e) = shared.outbox.enqueue_encoded(&out, 1).await {
                tracing::debug!(msg, sync, error = %e, "could not send a reply");
            }
        }
        drop(permit);
    });
}

/// A received ping clears ours; it is answered with its own sync unless it is a sync-0
/// ping that arrived while ours was outstanding (then it is the peer's ping crossing ours).
async fn answer_ping(shared: &Arc<Shared>, sync: u32) {
    let was_waiting = crate::lock::lock(&shared.ping_sent).take().is_some();
    if was_waiting && sync == 0 {
        return;
    }
    if let Err(e) = shared.outbox.enqueue(MSG_PING, sync, &[], Wait::Forever).await {
        tracing::debug!(error = %e, "could not answer a ping");
    }
}

/// Whether a finished handler wrote a reply packet; counts and logs a panic.
fn replied(shared: &Shared, msg: u32, sync: u32, written: Result<bool, Panicked>) -> bool {
    match written {
        Ok(written) => written,
        Err(Panicked) => {
            Counters::inc(&shared.stats.reader.handler_panics);
            tracing::error!(msg, sync, "request handler panicked; the connection goes on");
            false
        }
    }
}
