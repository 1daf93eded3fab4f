//! [`Reply`]: what a handler returns is a value that writes its own body into the outgoing
//! batch — raw [`Bytes`] copied in, a typed reply packed in place — and [`Started`]: a
//! handler's future, boxed once, whose reply writes itself into the reader's batch (or the
//! handler task's buffer) the moment the future finishes, never held in between. Which way a
//! reply is written is decided by its type, nothing else.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use pin_project_lite::pin_project;

use crate::wire::{Header, HEADER_LEN};

/// A handler's answer to one request: writes the reply body itself, so that a reply packs
/// straight into the channel's outgoing batch with no buffer of its own.
///
/// Implemented for [`Bytes`] and `Vec<u8>` (the body as is), `Option<R>` (`None`: no reply) and `()` (no
/// reply); typed handlers return their packed reply.
///
/// ```
/// use bytes::{BufMut, BytesMut};
///
/// /// A counter replied as four little-endian bytes, written in place.
/// struct Count(u32);
///
/// impl iproto::Reply for Count {
///     fn write_body(self, out: &mut BytesMut) -> bool {
///         out.put_u32_le(self.0);
///         true
///     }
/// }
///
/// let config = iproto::ChannelConfig::server()
///     .with_handler(|p: iproto::Packet, _ch: iproto::Channel| async move { Count(p.body.len() as u32) });
/// # drop(config);
/// ```
pub trait Reply: Send {
    /// Appends the reply body to `out` and returns true, or returns false to send no reply
    /// (anything appended is then discarded).
    fn write_body(self, out: &mut BytesMut) -> bool;
}

impl Reply for Bytes {
    #[inline]
    fn write_body(self, out: &mut BytesMut) -> bool {
        out.extend_from_slice(&self);
        true
    }
}

impl Reply for Vec<u8> {
    #[inline]
    fn write_body(self, out: &mut BytesMut) -> bool {
        out.extend_from_slice(&self);
        true
    }
}

impl<R: Reply> Reply for Option<R> {
    #[inline]
    fn write_body(self, out: &mut BytesMut) -> bool {
        self.is_some_and(|r| r.write_body(out))
    }
}

impl Reply for () {
    fn write_body(self, _out: &mut BytesMut) -> bool {
        false
    }
}

/// A panic caught in a handler or in its reply's [`Reply::write_body`].
pub(crate) struct Panicked;

/// Appends the reply packet for `(msg, sync)`: the header, the body `body` writes in place
/// (see [`Reply::write_body`]), then the length patched in. Returns whether a packet was
/// appended. No reply, a body over 4 GiB, or a panic leave `out` as it was.
pub(crate) fn write_packet(
    out: &mut BytesMut,
    msg: u32,
    sync: u32,
    body: impl FnOnce(&mut BytesMut) -> bool,
) -> Result<bool, Panicked> {
    let start = begin_packet(out, msg, sync);
    let written = catch_unwind(AssertUnwindSafe(|| body(out))).map_err(|_| Panicked);
    end_packet(out, start, msg, sync, written)
}

/// Appends the header of a reply packet whose length is patched in by [`end_packet`]; returns
/// where the packet starts.
fn begin_packet(out: &mut BytesMut, msg: u32, sync: u32) -> usize {
    let start = out.len();
    out.reserve(HEADER_LEN + 64);
    out.put_slice(&Header { msg, len: 0, sync }.to_bytes());
    start
}

/// Completes the packet [`begin_packet`] started at `start` if its body was `written`, or takes
/// it back out (no reply, a body over 4 GiB, a panic).
fn end_packet(
    out: &mut BytesMut,
    start: usize,
    msg: u32,
    sync: u32,
    written: Result<bool, Panicked>,
) -> Result<bool, Panicked> {
    let len = out.len() - start - HEADER_LEN;
    match (written, u32::try_from(len)) {
        (Ok(true), Ok(len)) => {
            out[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
            Ok(true)
        }
        (Ok(true), Err(_)) => {
            tracing::warn!(msg, sync, len, "reply body over 4 GiB; not sent");
            out.truncate(start);
            Ok(false)
        }
        (written, _) => {
            out.truncate(start);
            written.map(|_| false)
        }
    }
}

/// A handler's future, boxed: polled until it finishes, when its reply writes itself.
trait Task: Send {
    /// Polls the handler; once it has finished, appends its reply's body to `out` (see
    /// [`Reply::write_body`]) and is ready with whether there was one. Not polled again after.
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut BytesMut) -> Poll<bool>;
}

pin_project! {
    /// A handler's future until it finishes; then nothing (the reply was written at once).
    #[project = SlotProj]
    enum Slot<F> {
        Running { #[pin] future: F },
        Done,
    }
}

impl<F> Task for Slot<F>
where
    F: Future + Send,
    F::Output: Reply + 'static,
{
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut BytesMut) -> Poll<bool> {
        let reply = match self.as_mut().project() {
            SlotProj::Running { future } => std::task::ready!(future.poll(cx)),
            SlotProj::Done => return Poll::Ready(false),
        };
        self.set(Slot::Done);
        Poll::Ready(reply.write_body(out))
    }
}

/// A started handler: its future, boxed once, whose reply is written into the outgoing batch
/// the moment it finishes (see [`Handler::start`](super::Handler::start)).
pub struct Started(Inner);

enum Inner {
    Task(Pin<Box<dyn Task>>),
    /// A reply known at once (a fallback, a rejection): no future, no box.
    Ready(Option<Bytes>),
}

impl Started {
    /// Boxes `future`, whose output is the reply.
    pub fn new<F>(future: F) -> Started
    where
        F: Future + Send + 'static,
        F::Output: Reply + 'static,
    {
        Started::build(move || future)
    }

    /// Boxes the future `make` returns, built in its box's memory rather than moved there.
    pub(crate) fn build<F>(make: impl FnOnce() -> F) -> Started
    where
        F: Future + Send + 'static,
        F::Output: Reply + 'static,
    {
        let slot: Box<std::mem::MaybeUninit<Slot<F>>> = Box::new_uninit();
        let task: Box<Slot<F>> = Box::write(slot, Slot::Running { future: make() });
        Started(Inner::Task(Box::into_pin(task)))
    }

    /// A reply known at once; `None` sends no reply.
    pub fn ready(reply: Option<Bytes>) -> Started {
        Started(Inner::Ready(reply))
    }

    /// Polls the handler; once it has finished (or panicked), appends its reply packet for
    /// `(msg, sync)` to `out` and is ready with whether there was one.
    pub(crate) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        msg: u32,
        sync: u32,
        out: &mut BytesMut,
    ) -> Poll<Result<bool, Panicked>> {
        let start = begin_packet(out, msg, sync);
        match self.poll_body(cx, out) {
            Poll::Ready(written) => Poll::Ready(end_packet(out, start, msg, sync, written)),
            Poll::Pending => {
                out.truncate(start);
                Poll::Pending
            }
        }
    }

    /// Polls the handler; once it has finished (or panicked), appends its reply's body to `out`.
    pub(crate) fn poll_body(&mut self, cx: &mut Context<'_>, out: &mut BytesMut) -> Poll<Result<bool, Panicked>> {
        match &mut self.0 {
            Inner::Task(task) => match catch_unwind(AssertUnwindSafe(|| task.as_mut().poll_write(cx, out))) {
                Ok(Poll::Ready(written)) => Poll::Ready(Ok(written)),
                Ok(Poll::Pending) => Poll::Pending,
                Err(_) => Poll::Ready(Err(Panicked)),
            },
            Inner::Ready(reply) => Poll::Ready(Ok(reply.take().write_body(out))),
        }
    }

    /// Waits until the handler has finished and appends its reply packet for `(msg, sync)`.
    pub(crate) async fn write(&mut self, msg: u32, sync: u32, out: &mut BytesMut) -> Result<bool, Panicked> {
        std::future::poll_fn(|cx| self.poll_write(cx, msg, sync, out)).await
    }
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Started")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Packet, PacketCodec};
    use tokio_util::codec::Decoder;

    fn decode(out: &mut BytesMut) -> Vec<Packet> {
        let mut codec = PacketCodec::default();
        std::iter::from_fn(|| codec.decode(out).expect("whole packets")).collect()
    }

    struct Boom;
    impl Reply for Boom {
        fn write_body(self, out: &mut BytesMut) -> bool {
            out.put_slice(b"partial");
            panic!("pack failed")
        }
    }

    #[test]
    fn a_reply_writes_one_whole_packet_or_nothing() {
        let mut out = BytesMut::from(&b""[..]);
        let mut write = |sync, reply: Box<dyn FnOnce(&mut BytesMut) -> bool>| write_packet(&mut out, 5, sync, reply);
        assert!(matches!(write(7, Box::new(|o| Bytes::from_static(b"hi").write_body(o))), Ok(true)));
        assert!(matches!(write(8, Box::new(|o| None::<Bytes>.write_body(o))), Ok(false)));
        assert!(matches!(write(9, Box::new(|o| ().write_body(o))), Ok(false)));
        assert!(matches!(write(10, Box::new(|o| Boom.write_body(o))), Err(Panicked)));
        let packets = decode(&mut out);
        assert_eq!(packets.len(), 1, "no reply and a panic leave nothing behind");
        assert_eq!((packets[0].header.msg, packets[0].header.sync, &packets[0].body[..]), (5, 7, &b"hi"[..]));
    }

    #[test]
    fn a_started_handler_writes_its_reply_once_when_it_finishes() {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut out = BytesMut::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut started = Started::new(async move {
            rx.await.ok();
            Some(Bytes::from_static(b"late"))
        });
        assert!(started.poll_write(&mut cx, 1, 2, &mut out).is_pending());
        assert!(out.is_empty(), "a pending handler leaves no header behind");
        tx.send(()).unwrap();
        assert!(matches!(started.poll_write(&mut cx, 1, 2, &mut out), Poll::Ready(Ok(true))));
        assert!(matches!(started.poll_write(&mut cx, 1, 2, &mut out), Poll::Ready(Ok(false))), "written once");
        let packets = decode(&mut out);
        assert_eq!((packets.len(), packets[0].header.sync, &packets[0].body[..]), (1, 2, &b"late"[..]));
        let mut panics = Started::new(async {
            panic!("handler failed");
            #[allow(unreachable_code)]
            ()
        });
        assert!(matches!(panics.poll_write(&mut cx, 1, 3, &mut out), Poll::Ready(Err(Panicked))));
        let mut boom = Started::new(async { Boom });
        assert!(matches!(boom.poll_write(&mut cx, 1, 4, &mut out), Poll::Ready(Err(Panicked))));
        assert!(out.is_empty(), "a panic in the handler or in its reply leaves nothing behind");
    }
}
