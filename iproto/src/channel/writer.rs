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
const KEEP_CAPACITY: usize = 64 * 1024;

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
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if out.closed {
            return Err(Error::Stopped);
        }
        if out.queued >= self.config.write_queue.max(1) {
            return Ok(false);
        }
        out.buf.reserve(HEADER_LEN + body.len());
        encode_packet(&mut out.buf, msg, sync, body)?;
        out.queued += 1;
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
        shared.room.notify_waiters();
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
