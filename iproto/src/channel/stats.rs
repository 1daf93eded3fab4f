//! Channel counters as 64-bit atomics: no 4 GiB death.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of a channel's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelStats {
    /// Calls started.
    pub calls: u64,
    /// Calls that ended with an error (timeout, cancelled, stopped, dropped).
    pub canceled: u64,
    /// Notifications started, our own pings included.
    pub notifications: u64,
    /// Prepared packets that could not be queued.
    pub packets_dropped: u64,
    /// Packets read.
    pub packets_received: u64,
    /// Bytes read.
    pub bytes_received: u64,
    /// Packets written.
    pub packets_sent: u64,
    /// Bytes written.
    pub bytes_sent: u64,
    /// Calls waiting for a reply now.
    pub pending: u64,
    /// Replies that arrived after their call timed out or was cancelled, dropped.
    pub late_replies: u64,
    /// Requests passed to the handler.
    pub requests: u64,
    /// Handler invocations that panicked.
    pub handler_panics: u64,
    /// Write batches (one write to the transport each).
    pub writes: u64,
}

impl ChannelStats {
    /// Adds every counter of `other` to `self` (go-iproto's `ChannelStats.Add`).
    pub fn add(&mut self, other: &ChannelStats) {
        self.calls += other.calls;
        self.canceled += other.canceled;
        self.notifications += other.notifications;
        self.packets_dropped += other.packets_dropped;
        self.packets_received += other.packets_received;
        self.bytes_received += other.bytes_received;
        self.packets_sent += other.packets_sent;
        self.bytes_sent += other.bytes_sent;
        self.pending += other.pending;
        self.late_replies += other.late_replies;
        self.requests += other.requests;
        self.handler_panics += other.handler_panics;
        self.writes += other.writes;
    }
}

/// The counters, grouped by who writes them, each group on its own cache lines: the
/// threads making calls, the reader and the writer then never bounce one line between them.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub callers: CallerCounters,
    pub reader: ReaderCounters,
    pub writer: WriterCounters,
}

/// Counted by callers (calls themselves are counted under the channel's lock).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct CallerCounters {
    pub calls: AtomicU64,
    pub canceled: AtomicU64,
    pub notifications: AtomicU64,
    pub packets_dropped: AtomicU64,
}

/// Counted by the reader. All but `handler_panics` (which handler tasks count too) have the
/// reader task as their only writer, which adds to them with [`Counters::add_owned`].
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct ReaderCounters {
    pub packets_received: AtomicU64,
    pub bytes_received: AtomicU64,
    pub late_replies: AtomicU64,
    pub requests: AtomicU64,
    pub handler_panics: AtomicU64,
}

/// Counted by the writer (and by the reader's direct writes).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct WriterCounters {
    pub packets_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub writes: AtomicU64,
}

impl Counters {
    #[inline]
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// Adds `n` to a counter whose only writer is the calling task: a plain load and store,
    /// not a locked read-modify-write (the server's reader counts every request).
    #[inline]
    pub fn add_owned(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
    }

    pub fn snapshot(&self, pending: u64) -> ChannelStats {
        let (c, r, w) = (&self.callers, &self.reader, &self.writer);
        ChannelStats {
            calls: c.calls.load(Relaxed),
            canceled: c.canceled.load(Relaxed),
            notifications: c.notifications.load(Relaxed),
            packets_dropped: c.packets_dropped.load(Relaxed),
            packets_received: r.packets_received.load(Relaxed),
            bytes_received: r.bytes_received.load(Relaxed),
            packets_sent: w.packets_sent.load(Relaxed),
            bytes_sent: w.bytes_sent.load(Relaxed),
            pending,
            late_replies: r.late_replies.load(Relaxed),
            requests: r.requests.load(Relaxed),
            handler_panics: r.handler_panics.load(Relaxed),
            writes: w.writes.load(Relaxed),
        }
    }

    #[inline]
    pub fn record_write(&self, packets: usize, bytes: usize) {
        let w = &self.writer;
        w.packets_sent.fetch_add(packets as u64, Relaxed);
        w.bytes_sent.fetch_add(bytes as u64, Relaxed);
        w.writes.fetch_add(1, Relaxed);
    }
}
