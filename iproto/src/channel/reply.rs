//! [`Reply`]: what a handler returns is a value that writes its own body into the outgoing
//! batch — raw [`Bytes`] copied in, a typed reply packed in place — and [`Started`]: a
//! handler's future, boxed once, keeping its reply until the reader or the handler's task
//! writes it. Which way a reply is written is decided by its type, nothing else.

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
    let start = out.len();
    out.reserve(HEADER_LEN + 64);
    out.put_slice(&Header { msg, len: 0, sync }.to_bytes());
    let written = catch_unwind(AssertUnwindSafe(|| body(out)));
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
        (Ok(false), _) => {
            out.truncate(start);
            Ok(false)
        }
        (Err(_), _) => {
            out.truncate(start);
            Err(Panicked)
        }
    }
}

/// The handler's future and, once it finished, its reply.
trait Task: Send {
    fn poll_done(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()>;
    /// Writes the reply's body, once; false if there is none (or it was written).
    fn write_body(self: Pin<&mut Self>, out: &mut BytesMut) -> bool;
}

pin_project! {
    /// A handler's future until it finishes, then its reply until written. The reply is taken
    /// out of its own `Option`, which moves the reply alone and not the whole slot (a slot the
    /// size of a typed handler's future is copied with a call to `memcpy`).
    #[project = SlotProj]
    enum Slot<F: Future> {
        Running { #[pin] future: F },
        Done { reply: Option<F::Output> },
    }
}

impl<F> Task for Slot<F>
where
    F: Future + Send,
    F::Output: Reply + 'static,
{
    fn poll_done(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let reply = match self.as_mut().project() {
            SlotProj::Running { future } => std::task::ready!(future.poll(cx)),
            SlotProj::Done { .. } => return Poll::Ready(()),
        };
        self.set(Slot::Done { reply: Some(reply) });
        Poll::Ready(())
    }

    fn write_body(self: Pin<&mut Self>, out: &mut BytesMut) -> bool {
        match self.project() {
            SlotProj::Done { reply } => reply.take().is_some_and(|reply| reply.write_body(out)),
            SlotProj::Running { .. } => false,
        }
    }
}

/// A started handler: its future, boxed once, and the reply it returns kept until written
/// (see [`Handler::start`](super::Handler::start)).
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

    /// Polls the handler; ready once it finished (or panicked).
    pub(crate) fn poll_done(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Panicked>> {
        match &mut self.0 {
            Inner::Task(task) => match catch_unwind(AssertUnwindSafe(|| task.as_mut().poll_done(cx))) {
                Ok(Poll::Ready(())) => Poll::Ready(Ok(())),
                Ok(Poll::Pending) => Poll::Pending,
                Err(_) => Poll::Ready(Err(Panicked)),
            },
            Inner::Ready(_) => Poll::Ready(Ok(())),
        }
    }

    /// Waits until the handler finished.
    pub(crate) async fn done(&mut self) -> Result<(), Panicked> {
        std::future::poll_fn(|cx| self.poll_done(cx)).await
    }

    /// Appends the finished handler's reply packet for `(msg, sync)`; whether there was one.
    pub(crate) fn write(&mut self, msg: u32, sync: u32, out: &mut BytesMut) -> Result<bool, Panicked> {
        write_packet(out, msg, sync, |out| self.write_kept(out))
    }

    fn write_kept(&mut self, out: &mut BytesMut) -> bool {
        match &mut self.0 {
            Inner::Task(task) => task.as_mut().write_body(out),
            Inner::Ready(reply) => reply.take().write_body(out),
        }
    }
}

/// A finished handler's reply, e.g. the chosen route's in a handler that dispatches.
impl Reply for Started {
    fn write_body(mut self, out: &mut BytesMut) -> bool {
        self.write_kept(out)
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
    fn a_started_handler_keeps_its_reply_until_written() {
        let mut started = Started::new(async { Some(Bytes::from_static(b"late")) });
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(matches!(started.poll_done(&mut cx), Poll::Ready(Ok(()))));
        let mut out = BytesMut::new();
        assert!(matches!(started.write(1, 2, &mut out), Ok(true)));
        assert!(matches!(started.write(1, 2, &mut out), Ok(false)), "the reply is written once");
        assert_eq!(&decode(&mut out)[0].body[..], b"late");
        let mut panics = Started::new(async {
            panic!("handler failed");
            #[allow(unreachable_code)]
            ()
        });
        assert!(matches!(panics.poll_done(&mut cx), Poll::Ready(Err(Panicked))));
    }
}
