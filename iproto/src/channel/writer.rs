//! The outgoing side: callers encode their packets straight into one shared buffer (bounded to
//! `write_queue` packets), and one writer task per connection swaps the buffer out and writes
//! it in one go. The writer yields once before taking the buffer, so that callers woken at the
//! same time add their packets to the same batch (SPEC.md section 5: without it, batches
//! collapse to one packet per write).

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::Shared;
use crate::wire::{encode_packet, HEADER_LEN};
use crate::Error;

/// The shared outgoing buffer.
#[derive(Default)]
pub(crate) struct Outbox {
    buf: BytesMut,
    queued: usize,
    /// The writer no longer takes packets (stopped or dropped).
    closed: bool,
}

/// Largest batch buffer kept between writes; bigger ones are freed, so an idle connection
/// holds little memory.
const KEEP_CAPACITY: usize = 8 * 1024;

/// How a packet waits for room in the queue.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait {
    /// Until this deadline, then [`Error::Timeout`].
    Until(Instant),
    /// As long as it takes (replies; the write timeout bounds it).
    Forever,
}

impl Shared {
    /// Queues one packet for the writer, waiting for room as `wait` says.
    pub(crate) async fn enqueue(&self, msg: u32, sync: u32, body: &[u8], wait: Wait) -> Result<(), Error> {
        if body.len() > u32::MAX as usize {
            return Err(Error::BodyTooLarge(body.len()));
        }
        if self.try_enqueue(msg, sync, body)? {
            return Ok(());
        }
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if self.try_enqueue(msg, sync, body)? {
                return Ok(());
            }
            match wait {
                Wait::Until(deadline) => {
                    if tokio::time::timeout_at(deadline, room).await.is_err() {
                        return Err(Error::Timeout);
                    }
                }
                Wait::Forever => room.await,
            }
        }
    }

    /// Adds the packet if there is room; `Ok(false)` if the queue is full.
    #[inline]
    fn try_enqueue(&self, msg: u32, sync: u32, body: &[u8]) -> Result<bool, Error> {
        self.try_push(1, |buf| {
            buf.reserve(HEADER_LEN + body.len());
            encode_packet(buf, msg, sync, body).map_err(Error::from)
        })
    }

    /// Queues `count` already encoded packets at once (the reader's batched replies), waiting
    /// until the queue is not full. The batch may take the queue past its limit: it is bounded
    /// by one read of the socket.
    pub(crate) async fn enqueue_encoded(&self, packets: &[u8], count: usize) -> Result<(), Error> {
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if self.try_push(count, |buf| {
                buf.extend_from_slice(packets);
                Ok(())
            })? {
                return Ok(());
            }
            room.await;
        }
    }

    /// Runs `write` on the outbox if the queue is not full and counts `count` packets.
    #[inline]
    fn try_push(&self, count: usize, write: impl FnOnce(&mut BytesMut) -> Result<(), Error>) -> Result<bool, Error> {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if out.closed {
            return Err(Error::Stopped);
        }
        if out.queued >= self.config.write_queue.max(1) {
            return Ok(false);
        }
        write(&mut out.buf)?;
        out.queued += count;
        drop(out);
        self.wake_writer.notify_one();
        Ok(true)
    }

    /// Refuses further packets and wakes everybody waiting for room.
    pub(crate) fn close_outbox(&self) {
        self.out.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.room.notify_waiters();
        self.changed.notify_waiters();
    }

    pub(crate) fn outbox_closed(&self) -> bool {
        self.out.lock().unwrap_or_else(|e| e.into_inner()).closed
    }
}

/// The writer task. Returns the write half (for hijack) when it stops.
pub(crate) async fn run<W: AsyncWrite + Unpin>(shared: Arc<Shared>, mut w: W) -> W {
    let mut batch = BytesMut::new();
    loop {
        tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => break,
            _ = shared.wake_writer.notified() => {}
        }
        // Let callers that are runnable now add their packets to this batch.
        tokio::task::yield_now().await;
        let (packets, last) = {
            let mut out = shared.out.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::swap(&mut out.buf, &mut batch);
            let packets = std::mem::take(&mut out.queued);
            let last = shared.writer_stop.load(std::sync::atomic::Ordering::SeqCst);
            if last {
                out.closed = true;
            }
            (packets, last)
        };
        // Wake as many waiting senders as there are free slots, not all of them: with
        // thousands of callers waiting, waking everyone per batch is quadratic.
        for _ in 0..packets.min(shared.config.write_queue.max(1)) {
            shared.room.notify_one();
        }
        if !batch.is_empty() {
            let write = async {
                w.write_all(&batch).await?;
                w.flush().await
            };
            let timeout = shared.config.write_timeout;
            let result = tokio::select! {
                biased;
                _ = shared.cancel.cancelled() => break,
                r = tokio::time::timeout(timeout, write) => r,
            };
            match result {
                Ok(Ok(())) => shared.stats.record_write(packets, batch.len()),
                Ok(Err(e)) => {
                    shared.fail(Error::from(e));
                    break;
                }
                Err(_) => {
                    shared.fail(Error::WriteTimeout(timeout));
                    break;
                }
            }
            if batch.capacity() > KEEP_CAPACITY {
                batch = BytesMut::new();
            } else {
                batch.clear();
            }
        }
        if last {
            break;
        }
    }
    shared.close_outbox();
    w
}
