//! Replies written straight into the reader's reply batch. While the reader polls a request's
//! handler for the first time, it lends its batch to this thread; a typed handler that
//! finishes within that poll packs its reply packet there instead of into a buffer of its
//! own that the reader would copy and free.

use std::cell::RefCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use bytes::BytesMut;

/// The batch lent for one request.
struct Lent {
    msg: u32,
    sync: u32,
    out: BytesMut,
    written: bool,
}

thread_local! {
    static LENT: RefCell<Option<Lent>> = const { RefCell::new(None) };
}

/// Lends `out` to handlers answering `(msg, sync)` while `poll` runs; returns what `poll`
/// returned and whether a reply packet was written into `out`.
pub(crate) fn lend<T>(out: &mut BytesMut, msg: u32, sync: u32, poll: impl FnOnce() -> T) -> (T, bool) {
    /// Takes the batch back, also if `poll` unwinds.
    struct Back<'a> {
        out: &'a mut BytesMut,
        written: bool,
    }
    impl Back<'_> {
        fn take(&mut self) {
            if let Some(lent) = LENT.with(|l| l.borrow_mut().take()) {
                *self.out = lent.out;
                self.written = lent.written;
            }
        }
    }
    impl Drop for Back<'_> {
        fn drop(&mut self) {
            self.take();
        }
    }
    let batch = std::mem::take(out);
    LENT.with(|l| *l.borrow_mut() = Some(Lent { msg, sync, out: batch, written: false }));
    let mut back = Back { out, written: false };
    let result = poll();
    back.take();
    (result, back.written)
}

/// Writes the reply packet for `(msg, sync)` with `write` if the reader lent its batch for
/// that request on this thread; returns false (nothing done) otherwise. `write` appends one
/// whole packet; if it panics, what it appended is removed.
pub(crate) fn write_reply(msg: u32, sync: u32, write: impl FnOnce(&mut BytesMut)) -> bool {
    LENT.with(|l| {
        let Ok(mut slot) = l.try_borrow_mut() else { return false };
        let Some(lent) = slot.as_mut().filter(|lent| lent.msg == msg && lent.sync == sync && !lent.written) else {
            return false;
        };
        let start = lent.out.len();
        match catch_unwind(AssertUnwindSafe(|| write(&mut lent.out))) {
            Ok(()) => {
                lent.written = true;
                true
            }
            Err(panic) => {
                lent.out.truncate(start);
                drop(slot);
                resume_unwind(panic)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_goes_into_the_lent_batch_only_for_its_request() {
        let mut out = BytesMut::from(&b"earlier"[..]);
        let (r, written) = lend(&mut out, 5, 7, || {
            assert!(!write_reply(5, 8, |b| b.extend_from_slice(b"wrong sync")));
            assert!(write_reply(5, 7, |b| b.extend_from_slice(b"+reply")));
            assert!(!write_reply(5, 7, |b| b.extend_from_slice(b"twice")), "one reply per request");
            42
        });
        assert_eq!((r, written), (42, true));
        assert_eq!(&out[..], b"earlier+reply");
        assert!(!write_reply(5, 7, |_| ()), "nothing is lent outside `lend`");
        let (_, written) = lend(&mut out, 1, 1, || ());
        assert!(!written);
        assert_eq!(&out[..], b"earlier+reply", "the batch comes back untouched");
    }

    #[test]
    fn a_panicking_writer_leaves_the_batch_as_it_was() {
        let mut out = BytesMut::from(&b"kept"[..]);
        let result = catch_unwind(AssertUnwindSafe(|| {
            lend(&mut out, 1, 2, || {
                write_reply(1, 2, |b| {
                    b.extend_from_slice(b"partial");
                    panic!("pack failed");
                })
            })
        }));
        assert!(result.is_err());
        assert_eq!(&out[..], b"kept");
    }
}
