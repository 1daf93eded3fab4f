//! The outgoing side: callers encode their packets straight into one shared buffer (bounded to
//! `write_queue` packets), and one writer task per connection swaps the buffer out and writes
//! it in one go. The writer yields once before taking the buffer, so that callers woken at the
//! same time add their packets to the same batch (SPEC.md section 5: without it, batches
//! collapse to one packet per write).
//!
//! On sockets the reader may also write a batch of replies itself ([`Shared::write_direct`])
//! when the writer is idle and nothing is queued: that saves a wake-up and a task hand-off per
//! read on the server side, which is what the lean yardstick server does.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use tokio::io::AsyncWrite;
use tokio::time::Instant;

use super::{Book, Shared};
use crate::wire::{encode_packet, HEADER_LEN};
use crate::Error;

/// The shared outgoing buffer.
#[derive(Default)]
pub(crate) struct Outbox {
    buf: BytesMut,
    pub(crate) queued: usize,
    /// The writer no longer takes packets (stopped or dropped).
    closed: bool,
    /// The writer holds a batch it has not finished writing: nobody else may write.
    writing: bool,
}

impl Outbox {
    /// Runs `write` (which adds `len` bytes) on the buffer if the queue has room and counts
    /// `count` packets. There is room while fewer than `write_queue` packets wait, or while
    /// the buffer stays within `write_buffer` bytes: go-iproto's writer holds a 4 KiB batch
    /// besides its 50-packet queue, so small packets never wait for 50 others (C-10, C-12).
    /// The caller wakes the writer once the lock is released.
    #[inline]
    pub(crate) fn try_push(
        &mut self,
        limits: (usize, usize),
        count: usize,
        len: usize,
        write: impl FnOnce(&mut BytesMut) -> Result<(), Error>,
    ) -> Result<bool, Error> {
        if self.closed {
            return Err(Error::Stopped);
        }
        let (write_queue, write_buffer) = limits;
        if self.queued >= write_queue.max(1) && self.buf.len() + len > write_buffer {
            return Ok(false);
        }
        write(&mut self.buf)?;
        self.queued += count;
        Ok(true)
    }
}

/// The write half, shared by the writer task and the reader's direct writes. The lock is
/// never held across an await: each poll of the transport takes it.
pub(crate) struct WriteHalf<W> {
    io: Mutex<Option<W>>,
}

impl<W> WriteHalf<W> {
    pub(crate) fn new(w: W) -> Self {
        WriteHalf { io: Mutex::new(Some(w)) }
    }

    fn io(&self) -> MutexGuard<'_, Option<W>> {
        self.io.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A write that does not wait: as many bytes as the transport takes now.
pub(crate) trait DirectWrite: Send + Sync {
    fn try_write(&self, buf: &[u8]) -> usize;
}

impl<W: AsyncWrite + Unpin + Send> DirectWrite for WriteHalf<W> {
    fn try_write(&self, buf: &[u8]) -> usize {
        let mut io = self.io();
        let Some(w) = io.as_mut() else { return 0 };
        let mut cx = Context::from_waker(Waker::noop());
        let mut done = 0;
        while done < buf.len() {
            match Pin::new(&mut *w).poll_write(&mut cx, &buf[done..]) {
                Poll::Ready(Ok(n)) if n > 0 => done += n,
                // Not ready, or an error the writer task will meet and report.
                _ => break,
            }
        }
        done
    }
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
        // Boxed: the waiting machinery (a notification and a timer) would otherwise make every
        // call's and notification's future several hundred bytes bigger, for a rare path.
        Box::pin(self.enqueue_slow(msg, sync, body, wait)).await
    }

    /// [`enqueue`](Self::enqueue) once the queue was found full.
    async fn enqueue_slow(&self, msg: u32, sync: u32, body: &[u8], wait: Wait) -> Result<(), Error> {
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
        self.try_push(1, HEADER_LEN + body.len(), |buf| {
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
            if self.try_push(count, packets.len(), |buf| {
                buf.extend_from_slice(packets);
                Ok(())
            })? {
                return Ok(());
            }
            room.await;
        }
    }

    /// [`Outbox::try_push`] under a lock the caller holds, keeping the lock-free copy of the
    /// queued count (the pool's batching pick reads it) in step. The caller wakes the writer.
    #[inline]
    pub(crate) fn push_locked(
        &self,
        book: &mut Book,
        count: usize,
        len: usize,
        write: impl FnOnce(&mut BytesMut) -> Result<(), Error>,
    ) -> Result<bool, Error> {
        let pushed = book.out.try_push(self.config.queue_limits(), count, len, write);
        self.book.open_batch.store(book.out.queued, Relaxed);
        pushed
    }

    /// Runs `write` on the outbox if the queue is not full and counts `count` packets.
    #[inline]
    fn try_push(
        &self,
        count: usize,
        len: usize,
        write: impl FnOnce(&mut BytesMut) -> Result<(), Error>,
    ) -> Result<bool, Error> {
        let pushed = self.push_locked(&mut self.book(), count, len, write)?;
        if pushed {
            self.wake_writer.notify_one();
        }
        Ok(pushed)
    }

    /// Refuses further packets and wakes everybody waiting for room.
    pub(crate) fn close_outbox(&self) {
        self.book().out.closed = true;
        self.room.notify_waiters();
        self.changed.notify_waiters();
    }

    /// Writes `count` encoded packets straight to the transport if the writer is idle and
    /// nothing is queued (so order is kept); what the transport does not take now is queued
    /// for the writer. Returns false, having done nothing, when the packets must be queued
    /// the usual way. Only for transports that need no flush (sockets): bytes a TLS stream
    /// buffered here would wait for a flush nobody does.
    pub(crate) fn write_direct(&self, io: &dyn DirectWrite, packets: &[u8], count: usize) -> bool {
        let mut book = self.book();
        let out = &mut book.out;
        if out.closed || out.writing || !out.buf.is_empty() {
            return false;
        }
        let n = io.try_write(packets);
        if n == 0 {
            return false;
        }
        if n == packets.len() {
            drop(book);
            self.stats.record_write(count, n);
            return true;
        }
        // The rest goes first in the queue: the lock has been held since the check.
        out.buf.extend_from_slice(&packets[n..]);
        out.queued += count;
        self.book.open_batch.store(out.queued, Relaxed);
        drop(book);
        self.stats.record_write(0, n);
        self.wake_writer.notify_one();
        true
    }

    pub(crate) fn outbox_closed(&self) -> bool {
        self.book().out.closed
    }
}

/// The writer task. Returns the write half (for hijack) when it stops.
pub(crate) async fn run<W: AsyncWrite + Unpin>(shared: Arc<Shared>, half: Arc<WriteHalf<W>>) -> W {
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
            let mut book = shared.book();
            let out = &mut book.out;
            std::mem::swap(&mut out.buf, &mut batch);
            let packets = std::mem::take(&mut out.queued);
            shared.book.open_batch.store(0, Relaxed);
            let last = shared.writer_stop.load(std::sync::atomic::Ordering::SeqCst);
            if last {
                out.closed = true;
            }
            out.writing = !batch.is_empty();
            (packets, last)
        };
        // Wake as many waiting senders as there are free slots, not all of them: with
        // thousands of callers waiting, waking everyone per batch is quadratic.
        for _ in 0..packets.min(shared.config.write_queue.max(1)) {
            shared.room.notify_one();
        }
        if !batch.is_empty() {
            let write = async {
                let mut done = 0;
                while done < batch.len() {
                    let n = poll_fn(|cx| match half.io().as_mut() {
                        Some(w) => Pin::new(w).poll_write(cx, &batch[done..]),
                        None => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
                    })
                    .await?;
                    if n == 0 {
                        return Err(std::io::ErrorKind::WriteZero.into());
                    }
                    done += n;
                }
                poll_fn(|cx| match half.io().as_mut() {
                    Some(w) => Pin::new(w).poll_flush(cx),
                    None => Poll::Ready(Ok(())),
                })
                .await
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
            shared.book().out.writing = false;
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
    half.io().take().expect("only the writer takes the write half")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(out: &mut Outbox, limits: (usize, usize), len: usize) -> bool {
        out.try_push(limits, 1, len, |buf| {
            buf.extend_from_slice(&vec![0; len]);
            Ok(())
        })
        .expect("open outbox")
    }

    // C-10 / C-12: the queue takes `write_queue` packets of any size, then small packets while
    // the buffer stays within `write_buffer_size` bytes, then nothing until the writer swaps.
    #[test]
    fn queue_holds_write_queue_packets_or_write_buffer_bytes() {
        let mut out = Outbox::default();
        let limits = (2, 200);
        assert!(push(&mut out, limits, 1000), "a big packet fits an empty queue");
        assert!(push(&mut out, limits, 1000), "two packets by count");
        assert!(!push(&mut out, limits, 44), "full by count and by bytes");
        let mut out = Outbox::default();
        for i in 0..4 {
            assert!(push(&mut out, limits, 44), "small packet {i} fits");
        }
        assert!(!push(&mut out, limits, 44), "a fifth would take the buffer past 200 bytes");
        assert_eq!((out.queued, out.buf.len()), (4, 176));
        out.closed = true;
        assert!(matches!(out.try_push(limits, 1, 0, |_| Ok(())), Err(Error::Stopped)));
    }
}
