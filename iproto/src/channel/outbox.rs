//! The outbox: callers encode their packets straight into one shared buffer (bounded to
//! `write_queue` packets or `write_buffer_size` bytes), which the writer task swaps out and
//! writes in one go. The pending calls share its lock ([`Book`]): a call registers itself and
//! queues its packet under one lock, not two (the lean yardstick takes one per call).

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::pending::Pending;
use super::stats::Counters;
use crate::error::{Error, TimeoutStage};
use crate::wire::{encode_packet, FrameError, HEADER_LEN};

/// The outgoing buffer, behind the [`Book`] lock.
#[derive(Default)]
pub(crate) struct Queue {
    pub(crate) buf: BytesMut,
    pub(crate) queued: usize,
    /// The writer no longer takes packets (stopped or dropped).
    pub(crate) closed: bool,
    /// The writer holds a batch it has not finished writing: nobody else may write.
    pub(crate) writing: bool,
}

impl Queue {
    /// Runs `write` (which adds `len` bytes) on the buffer if the queue has room and counts
    /// `count` packets. There is room while fewer than `write_queue` packets wait, or while
    /// the buffer stays within `write_buffer` bytes: go-iproto's writer holds a 4 KiB batch
    /// besides its 50-packet queue, so small packets never wait for 50 others.
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

/// The pending calls and the outgoing queue under one lock.
#[derive(Default)]
pub(crate) struct Book {
    pub(crate) pending: Pending,
    pub(crate) out: Queue,
    /// Calls registered; counted here, under the lock every call takes anyway, instead of
    /// in a counter that the threads making calls would bounce between them.
    pub(crate) calls: u64,
}

/// The pending table behind the [`Book`] lock.
pub(crate) struct PendingRef<'a>(MutexGuard<'a, Book>);

impl Deref for PendingRef<'_> {
    type Target = Pending;
    fn deref(&self) -> &Pending {
        &self.0.pending
    }
}

impl DerefMut for PendingRef<'_> {
    fn deref_mut(&mut self) -> &mut Pending {
        &mut self.0.pending
    }
}

/// How a packet waits for room in the queue.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait {
    /// Until this deadline, then [`Error::Timeout`] naming the bound (the second field).
    Until(Instant, Duration),
    /// As long as it takes (replies; the write timeout bounds it).
    Forever,
}

/// The [`Book`] lock, the wake-ups around it, and the copy of the queued packet count the
/// pool reads without the lock. The count and the lock share a cache line: both change on
/// every call.
#[repr(C)]
pub(crate) struct Outbox {
    open_batch: AtomicUsize,
    book: Mutex<Book>,
    /// `(write_queue, write_buffer_size)`.
    limits: (usize, usize),
    /// Wakes the writer task.
    pub(crate) wake_writer: Notify,
    /// Fired when the writer takes the queue: senders waiting for room retry.
    room: Notify,
}

impl Outbox {
    /// An empty outbox holding up to `write_queue` packets or `write_buffer` bytes.
    pub(crate) fn new(write_queue: usize, write_buffer: usize) -> Outbox {
        Outbox {
            open_batch: AtomicUsize::new(0),
            book: Mutex::new(Book::default()),
            limits: (write_queue.max(1), write_buffer),
            wake_writer: Notify::new(),
            room: Notify::new(),
        }
    }

    pub(crate) fn book(&self) -> MutexGuard<'_, Book> {
        crate::lock::lock(&self.book)
    }

    pub(crate) fn pending(&self) -> PendingRef<'_> {
        PendingRef(self.book())
    }

    /// Packets queued and not yet taken by the writer; read without the lock, so a hint.
    pub(crate) fn open_batch(&self) -> usize {
        self.open_batch.load(Relaxed)
    }

    /// Queues one packet for the writer, waiting for room as `wait` says.
    pub(crate) async fn enqueue(&self, msg: u32, sync: u32, body: &[u8], wait: Wait) -> Result<(), Error> {
        if body.len() > u32::MAX as usize {
            return Err(FrameError::BodyOverflow { len: body.len() }.into());
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
                Wait::Until(deadline, after) => {
                    if tokio::time::timeout_at(deadline, room).await.is_err() {
                        return Err(Error::timeout(msg, after, TimeoutStage::Queue));
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

    /// [`Queue::try_push`] under the lock the caller holds, keeping the lock-free copy of the
    /// queued count (the pool's batching pick reads it) in step. The caller wakes the writer.
    #[inline]
    pub(crate) fn push_locked(
        &self,
        book: &mut Book,
        count: usize,
        len: usize,
        write: impl FnOnce(&mut BytesMut) -> Result<(), Error>,
    ) -> Result<bool, Error> {
        let pushed = book.out.try_push(self.limits, count, len, write);
        self.open_batch.store(book.out.queued, Relaxed);
        pushed
    }

    /// Runs `write` on the queue if it is not full, counts `count` packets and wakes the
    /// writer.
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

    /// Takes the queued packets for the writer: swaps the buffer with `batch` (empty) and
    /// returns how many packets it holds. `last`: the queue takes nothing more.
    pub(crate) fn take(&self, batch: &mut BytesMut, last: bool) -> usize {
        let packets = {
            let mut book = self.book();
            let out = &mut book.out;
            std::mem::swap(&mut out.buf, batch);
            let packets = std::mem::take(&mut out.queued);
            self.open_batch.store(0, Relaxed);
            out.closed |= last;
            out.writing = !batch.is_empty();
            packets
        };
        // Wake as many waiting senders as there are free slots, not all of them: with
        // thousands of callers waiting, waking everyone per batch is quadratic.
        for _ in 0..packets.min(self.limits.0) {
            self.room.notify_one();
        }
        packets
    }

    /// The writer finished writing the batch it took.
    pub(crate) fn written(&self) {
        self.book().out.writing = false;
    }

    /// Refuses further packets and wakes everybody waiting for room.
    pub(crate) fn close(&self) {
        self.book().out.closed = true;
        self.room.notify_waiters();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.book().out.closed
    }

    /// Writes `count` encoded packets with `try_write` (a write that does not wait, returning
    /// how many bytes the transport took) if the writer is idle and nothing is queued, so that
    /// order is kept; what the transport does not take now is queued for the writer. Returns
    /// false, having done nothing, when the packets must be queued the usual way.
    pub(crate) fn write_direct(
        &self,
        packets: &[u8],
        count: usize,
        stats: &Counters,
        try_write: impl FnOnce(&[u8]) -> usize,
    ) -> bool {
        let mut book = self.book();
        let out = &mut book.out;
        if out.closed || out.writing || !out.buf.is_empty() {
            return false;
        }
        let n = try_write(packets);
        if n == 0 {
            return false;
        }
        if n == packets.len() {
            drop(book);
            stats.record_write(count, n);
            return true;
        }
        // The rest goes first in the queue: the lock has been held since the check.
        out.buf.extend_from_slice(&packets[n..]);
        out.queued += count;
        self.open_batch.store(out.queued, Relaxed);
        drop(book);
        stats.record_write(0, n);
        self.wake_writer.notify_one();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(out: &mut Queue, limits: (usize, usize), len: usize) -> bool {
        out.try_push(limits, 1, len, |buf| {
            buf.extend_from_slice(&vec![0; len]);
            Ok(())
        })
        .expect("open outbox")
    }

    // The queue takes `write_queue` packets of any size, then small packets while
    // the buffer stays within `write_buffer_size` bytes, then nothing until the writer swaps.
    #[test]
    fn queue_holds_write_queue_packets_or_write_buffer_bytes() {
        let mut out = Queue::default();
        let limits = (2, 200);
        assert!(push(&mut out, limits, 1000), "a big packet fits an empty queue");
        assert!(push(&mut out, limits, 1000), "two packets by count");
        assert!(!push(&mut out, limits, 44), "full by count and by bytes");
        let mut out = Queue::default();
        for i in 0..4 {
            assert!(push(&mut out, limits, 44), "small packet {i} fits");
        }
        assert!(!push(&mut out, limits, 44), "a fifth would take the buffer past 200 bytes");
        assert_eq!((out.queued, out.buf.len()), (4, 176));
        out.closed = true;
        assert!(matches!(out.try_push(limits, 1, 0, |_| Ok(())), Err(Error::Stopped)));
    }
}
