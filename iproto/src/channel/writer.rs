//! The writer task: one per connection. It waits until the outbox has packets, yields so that
//! callers woken at the same time add theirs to the same batch (without it, batches collapse
//! to one packet per write; a second time when that was quick and the batch grew), then swaps
//! the outbox's buffer out and writes it in one go, bounded by the write timeout.
//!
//! On sockets the reader may also write a batch of replies itself
//! ([`Outbox::write_direct`](super::outbox::Outbox::write_direct)) when the writer is idle
//! and nothing is queued: that saves a wake-up and a task hand-off per read on the server side, which is
//! what the lean yardstick server does. [`WriteHalf`] is the write half both share.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncWrite;

use super::shared::Shared;
use crate::Error;

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
        crate::lock::lock(&self.io)
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

/// A second turn for the callers before the writer takes a batch, when the first brought
/// packets and was short. One turn was not enough: at 1 x 64 against the lean server,
/// `iproto bench` wrote 22 packets per `send` and spent 1.08 us of CPU per call; with the
/// second turn it is 62 packets per `send` and 0.90 us. On a busy runtime (4 x 256) a turn is
/// long, and waiting for a second one raised p99 from 291 to 410 us: a turn that took longer
/// than this is not repeated (there, p99 290 us, and still +10% calls/s). A lone caller waits
/// one turn only (its batch does not grow).
const SECOND_TURN_WITHIN: Duration = Duration::from_micros(20);

/// The writer task. Returns the write half (for hijack) when it stops.
pub(crate) async fn run<W: AsyncWrite + Unpin>(shared: Arc<Shared>, half: Arc<WriteHalf<W>>) -> W {
    let mut batch = BytesMut::new();
    loop {
        tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => break,
            _ = shared.outbox.wake_writer.notified() => {}
        }
        // Let callers that are runnable now add their packets to this batch; once more if
        // they did and that was quick (see SECOND_TURN_WITHIN).
        let queued = shared.outbox.open_batch();
        let turn = Instant::now();
        tokio::task::yield_now().await;
        if shared.outbox.open_batch() != queued && turn.elapsed() < SECOND_TURN_WITHIN {
            tokio::task::yield_now().await;
        }
        let last = shared.writer_stop.load(SeqCst);
        let packets = shared.outbox.take(&mut batch, last);
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
            shared.outbox.written();
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
