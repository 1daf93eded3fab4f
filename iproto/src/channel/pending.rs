//! Calls waiting for their reply, keyed by `(msg, sync)`, the sync allocator (skipping
//! 0 and keys in use) and a bounded memory of recently abandoned calls, so that a
//! late reply is dropped and counted instead of reaching the handler (docs/protocol.md, Matching replies).
//! Calls with the channel's default timeout carry their deadline here, for the sweep
//! (`sweep.rs`) instead of a timer each.
//!
//! The calls live in a table of slots indexed by the low bits of their sync, kept at most half
//! full: since syncs are handed out in sequence, a reply finds its call with one index and one
//! comparison, no hashing (a hash map cost the client about 150 instructions per call). The
//! reply is left in the call's slot and the call's task woken; the call takes it from there
//! ([`poll_reply`](Pending::poll_reply)), so a call allocates no channel of its own (a
//! `oneshot` per call cost about 370 instructions: its allocation, its state machine, its free).

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tokio::time::Instant;

use crate::Error;

/// What a pending call receives.
pub(crate) type CallResult = Result<Bytes, Error>;

/// How many abandoned keys are remembered.
const ABANDONED_CAP: usize = 4096;

/// The pending-call key.
#[inline]
pub(crate) fn key(msg: u32, sync: u32) -> u64 {
    (u64::from(msg) << 32) | u64::from(sync)
}

/// Multiplicative hashing for the u64 keys: they are not attacker-chosen in a way that
/// matters (a peer can only hit keys we allocated), and SipHash costs more than the lookup.
/// Also used for [`ServeMux`](crate::ServeMux)'s routes: the application registers them.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (n ^ (n >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
}

pub(crate) type Build = BuildHasherDefault<KeyHasher>;

/// One call in the table.
struct Call {
    /// Its `(msg, sync)` key.
    key: u64,
    /// When the sweep fails it with [`Error::Timeout`]; `None` if the call keeps its own
    /// timer (a per-call timeout).
    deadline: Option<Instant>,
    state: State,
}

enum State {
    /// Waiting for the reply; the call's waker once it has polled.
    Waiting(Option<Waker>),
    /// Ended (the reply, a timeout, the connection gone): for the call to take.
    Done(CallResult),
}

impl Call {
    /// Ends the call with `result()` if it is waiting: its waker (`None` inside when it has
    /// none yet); `None`, with `result` not called, if it had ended already.
    fn end(&mut self, result: impl FnOnce() -> CallResult) -> Option<Option<Waker>> {
        let State::Waiting(waker) = &mut self.state else { return None };
        let waker = waker.take();
        self.state = State::Done(result());
        Some(waker)
    }
}

/// Smallest slot table, allocated by the first call (a slot is about 90 bytes: an idle
/// channel keeps little).
const MIN_SLOTS: usize = 4;

#[derive(Default)]
pub(crate) struct Pending {
    /// `slots[sync & (len - 1)]`: a power-of-two table at most half full (empty until the
    /// first call).
    slots: Vec<Option<Call>>,
    /// Calls in `slots`, waiting or ended and not yet taken.
    occupied: usize,
    /// Calls waiting for their reply.
    waiting: usize,
    /// Whether the sweep task runs (it ends when no call has a deadline).
    sweeping: bool,
    next_sync: u32,
    abandoned: VecDeque<u64>,
    abandoned_set: HashSet<u64, Build>,
}

impl Pending {
    /// Registers a call with code `msg` and returns its sync: the next counter value that is
    /// not 0, whose slot is free and that was not recently abandoned for that `msg`; and
    /// whether the caller must start the sweep task (the call has a `deadline` for it and
    /// none runs).
    pub fn insert(&mut self, msg: u32, deadline: Option<Instant>, waker: Option<Waker>) -> (u32, bool) {
        if (self.occupied + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        loop {
            self.next_sync = self.next_sync.wrapping_add(1);
            let sync = self.next_sync;
            let slot = &mut self.slots[sync as usize & mask];
            // A slot still taken holds a call older than the table's length in syncs.
            if sync == 0 || slot.is_some() {
                continue;
            }
            let key = key(msg, sync);
            if !self.abandoned_set.is_empty() && self.abandoned_set.contains(&key) {
                continue;
            }
            *slot = Some(Call { key, deadline, state: State::Waiting(waker) });
            self.occupied += 1;
            self.waiting += 1;
            let spawn = deadline.is_some() && !self.sweeping;
            self.sweeping |= spawn;
            return (sync, spawn);
        }
    }

    /// Doubles the table (from empty: `MIN_SLOTS`). Calls keep their place relative to the
    /// wider mask: two syncs apart under the narrower one are apart under the wider one.
    fn grow(&mut self) {
        let len = (self.slots.len() * 2).max(MIN_SLOTS);
        let mut slots: Vec<Option<Call>> = std::iter::repeat_with(|| None).take(len).collect();
        for call in self.slots.drain(..).flatten() {
            let at = call.key as u32 as usize & (len - 1);
            slots[at] = Some(call);
        }
        self.slots = slots;
    }

    /// The call `k`, if it is in the table.
    #[inline]
    fn find(&mut self, k: u64) -> Option<&mut Option<Call>> {
        let mask = self.slots.len().checked_sub(1)?;
        let slot = &mut self.slots[k as u32 as usize & mask];
        slot.as_ref().is_some_and(|c| c.key == k).then_some(slot)
    }

    /// Removes the call `k` from the table; whether it was still waiting.
    fn remove(&mut self, k: u64) -> Option<bool> {
        let call = self.find(k)?.take()?;
        let waiting = matches!(call.state, State::Waiting(_));
        self.waiting -= usize::from(waiting);
        self.vacated();
        Some(waiting)
    }

    /// Counts a slot emptied; an idle table after a burst is given back.
    fn vacated(&mut self) {
        self.occupied -= 1;
        if self.occupied == 0 && self.slots.len() > 8 * MIN_SLOTS {
            self.slots = Vec::new();
        }
    }

    /// Ends the waiting call `k` with `result()`; its waker, to wake once the table is
    /// unlocked (`None` inside when it has none yet). `None`, with `result` not called, if no
    /// call waits for `k`.
    #[inline]
    pub fn complete(&mut self, k: u64, result: impl FnOnce() -> CallResult) -> Option<Option<Waker>> {
        let waker = self.find(k)?.as_mut()?.end(result)?;
        self.waiting -= 1;
        Some(waker)
    }

    /// The call `k`'s result once it has ended, removing it; else registers `cx`'s waker. A
    /// call no longer in the table (it cannot be: only its own guard removes it) reads as
    /// stopped.
    #[inline]
    pub fn poll_reply(&mut self, k: u64, cx: &Context<'_>) -> Poll<CallResult> {
        let Some(slot) = self.find(k) else { return Poll::Ready(Err(Error::Stopped)) };
        if let Some(Call { state: State::Waiting(waker), .. }) = slot {
            if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *waker = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
        let Some(Call { state: State::Done(result), .. }) = slot.take() else {
            return Poll::Ready(Err(Error::Stopped));
        };
        self.vacated();
        Poll::Ready(result)
    }

    /// Ends every waiting call whose deadline is not after `now` with `timeout(msg)`,
    /// remembering its key (its reply would be late) and collecting its waker; returns the
    /// earliest deadline left. With none left, the sweep is marked as ended: the next call
    /// with a deadline starts a new one. A scan of the whole table, but only about once per
    /// timeout period: every deadline is its call's start plus the same timeout.
    pub fn expire(&mut self, now: Instant, timeout: impl Fn(u32) -> Error, wakers: &mut Vec<Waker>) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut due = Vec::new();
        for call in self.slots.iter().flatten() {
            match (call.deadline, &call.state) {
                (Some(d), State::Waiting(_)) if d <= now => due.push(call.key),
                (Some(d), State::Waiting(_)) => next = Some(next.map_or(d, |n| n.min(d))),
                _ => {}
            }
        }
        for k in due {
            if let Some(waker) = self.complete(k, || Err(timeout((k >> 32) as u32))) {
                self.remember_abandoned(k);
                wakers.extend(waker);
            }
        }
        if next.is_none() {
            self.sweeping = false;
        }
        next
    }

    /// Forgets a call that gave up (its own timeout, cancellation); if it was still waiting,
    /// remembers its key so that a late reply is recognised. Returns whether it was waiting.
    pub fn abandon(&mut self, k: u64) -> bool {
        let waiting = self.remove(k) == Some(true);
        if waiting {
            self.remember_abandoned(k);
        }
        waiting
    }

    fn remember_abandoned(&mut self, k: u64) {
        if self.abandoned_set.insert(k) {
            self.abandoned.push_back(k);
            if self.abandoned.len() > ABANDONED_CAP {
                if let Some(old) = self.abandoned.pop_front() {
                    self.abandoned_set.remove(&old);
                }
            }
        }
    }

    /// Forgets a call whose packet was never sent (no late reply can come).
    pub fn cancel(&mut self, k: u64) {
        self.remove(k);
    }

    /// Whether `k` belongs to a recently abandoned call; forgets it if so.
    pub fn take_abandoned(&mut self, k: u64) -> bool {
        if self.abandoned_set.is_empty() || !self.abandoned_set.remove(&k) {
            return false;
        }
        if let Some(pos) = self.abandoned.iter().position(|&x| x == k) {
            self.abandoned.remove(pos);
        }
        true
    }

    /// Ends every waiting call with `error` (the connection is gone) and returns their wakers.
    pub fn fail_all(&mut self, error: impl Fn() -> Error) -> Vec<Waker> {
        let mut wakers = Vec::new();
        for call in self.slots.iter_mut().flatten() {
            wakers.extend(call.end(|| Err(error())).flatten());
        }
        self.waiting = 0;
        wakers
    }

    /// Calls waiting for their reply.
    pub fn len(&self) -> usize {
        self.waiting
    }

    pub fn is_empty(&self) -> bool {
        self.waiting == 0
    }

    /// Whether any recently abandoned call is remembered (its late reply may still come).
    pub fn has_abandoned(&self) -> bool {
        !self.abandoned_set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    /// Completes the call `k` with an empty reply and takes it, as a reply would.
    fn reply(p: &mut Pending, k: u64) -> bool {
        p.complete(k, || Ok(Bytes::new())).is_some() && matches!(p.poll_reply(k, &noop()), Poll::Ready(Ok(_)))
    }

    #[test]
    fn first_sync_is_one_and_per_msg() {
        let mut p = Pending::default();
        assert_eq!(p.insert(42, None, None).0, 1);
        assert_eq!(p.insert(43, None, None).0, 2);
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn sync_skips_zero_and_pending_after_wrap() {
        let mut p = Pending { next_sync: u32::MAX - 1, ..Default::default() };
        assert_eq!(p.insert(7, None, None).0, u32::MAX);
        // wraps: 0 is skipped
        assert_eq!(p.insert(7, None, None).0, 1);
        // a sync still pending is skipped, whatever the msg
        p.next_sync = 0;
        assert_eq!(p.insert(9, None, None).0, 2);
        p.next_sync = 0;
        assert_eq!(p.insert(7, None, None).0, 3, "1 and 2 are pending");
        assert_eq!(p.len(), 4);
    }

    #[test]
    fn calls_are_found_after_the_table_grows_and_it_shrinks_when_idle() {
        let mut p = Pending::default();
        let syncs: Vec<u32> = (0..1000).map(|_| p.insert(3, None, None).0).collect();
        assert_eq!(p.len(), 1000);
        assert!(p.slots.len() >= 2000 && p.slots.len().is_power_of_two(), "at most half full: {}", p.slots.len());
        assert!(!reply(&mut p, key(4, syncs[0])), "another msg's reply does not match");
        for &s in syncs.iter().rev() {
            assert!(reply(&mut p, key(3, s)), "sync {s} found");
        }
        assert!(p.is_empty());
        assert!(p.slots.is_empty(), "an idle channel gives its big table back");
    }

    #[test]
    fn a_long_pending_call_keeps_its_slot_and_its_sync_is_not_reused() {
        let mut p = Pending::default();
        let old = p.insert(1, None, None).0;
        // Thousands of short calls pass while the first one waits.
        for _ in 0..5000 {
            let s = p.insert(1, None, None).0;
            assert_ne!(s, old);
            assert!(reply(&mut p, key(1, s)));
        }
        assert!(reply(&mut p, key(1, old)), "the old call is still found");
    }
    #[test]
    fn abandoned_keys_are_remembered_and_not_reused() {
        let mut p = Pending::default();
        let s = p.insert(5, None, None).0;
        assert!(p.abandon(key(5, s)));
        assert!(p.is_empty());
        p.next_sync = s - 1;
        assert_ne!(p.insert(5, None, None).0, s, "an abandoned key is not handed out again");
        assert!(p.take_abandoned(key(5, s)));
        assert!(!p.take_abandoned(key(5, s)), "each late reply is recognised once");
    }

    #[test]
    fn sweep_expires_due_calls_and_ends_when_none_has_a_deadline() {
        let mut p = Pending::default();
        let t0 = Instant::now();
        let woken = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let waker = Waker::from(std::sync::Arc::new(Count(woken.clone())));
        let (s1, spawn) = p.insert(1, Some(t0), Some(waker));
        assert!(spawn, "the first call with a deadline starts the sweep");
        let (s2, spawn) = p.insert(1, Some(t0 + std::time::Duration::from_secs(1)), None);
        assert!(!spawn, "one sweep at a time");
        let (s3, spawn) = p.insert(1, None, None);
        assert!(!spawn, "a call with its own timer needs no sweep");
        let timeout = |msg| Error::timeout(msg, std::time::Duration::from_secs(1), crate::TimeoutStage::Reply);
        let mut wakers = Vec::new();
        assert_eq!(p.expire(t0, timeout, &mut wakers), Some(t0 + std::time::Duration::from_secs(1)));
        assert_eq!((wakers.len(), p.len()), (1, 2), "the due call ended; its waker is handed back");
        wakers.drain(..).for_each(Waker::wake);
        assert_eq!(woken.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(matches!(p.poll_reply(key(1, s1), &noop()), Poll::Ready(Err(Error::Timeout { msg: 1, .. }))));
        assert!(p.take_abandoned(key(1, s1)), "an expired call's late reply is recognised");
        assert_eq!(p.expire(t0 + std::time::Duration::from_secs(1), timeout, &mut wakers), None);
        assert!(matches!(p.poll_reply(key(1, s2), &noop()), Poll::Ready(Err(Error::Timeout { .. }))));
        assert_eq!(p.len(), 1, "the call with its own timer stays");
        assert!(p.poll_reply(key(1, s3), &noop()).is_pending());
        assert!(p.insert(1, Some(t0), None).1, "the sweep ended: the next call starts one");
    }

    struct Count(std::sync::Arc<std::sync::atomic::AtomicUsize>);

    impl std::task::Wake for Count {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn a_reply_left_in_the_slot_wakes_the_call_that_polled_and_failing_all_ends_the_rest() {
        let mut p = Pending::default();
        let woken = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let waker = Waker::from(std::sync::Arc::new(Count(woken.clone())));
        let (a, _) = p.insert(5, None, None);
        let (b, _) = p.insert(5, None, None);
        let cx = Context::from_waker(&waker);
        assert!(p.poll_reply(key(5, a), &cx).is_pending(), "waiting: the waker is registered");
        let w = p.complete(key(5, a), || Ok(Bytes::from_static(b"r"))).expect("a waits");
        w.expect("a polled, so it has a waker").wake();
        assert_eq!(woken.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(p.complete(key(5, a), || unreachable!("a ended already")).is_none(), "a second reply is not a's");
        assert_eq!(p.len(), 1, "only b waits");
        let wakers = p.fail_all(|| Error::Stopped);
        assert!(wakers.is_empty(), "b never polled");
        assert!(p.is_empty());
        assert!(matches!(p.poll_reply(key(5, a), &noop()), Poll::Ready(Ok(r)) if &r[..] == b"r"), "a keeps its reply");
        assert!(matches!(p.poll_reply(key(5, b), &noop()), Poll::Ready(Err(Error::Stopped))));
        assert!(p.slots.iter().all(Option::is_none), "both taken");
    }

    #[test]
    fn abandoned_memory_is_bounded() {
        let mut p = Pending::default();
        for _ in 0..ABANDONED_CAP * 2 {
            let s = p.insert(1, None, None).0;
            p.abandon(key(1, s));
        }
        assert_eq!(p.abandoned.len(), ABANDONED_CAP);
        assert_eq!(p.abandoned_set.len(), ABANDONED_CAP);
    }

    proptest::proptest! {
        // Against a map of the calls that should be pending: every pending call is found
        // exactly once, taken calls are gone, and no two pending calls share a key.
        #[test]
        fn the_table_matches_a_map_of_pending_calls(ops in proptest::collection::vec((0u8..4, 0u32..3, 0usize..64), 1..400)) {
            let mut p = Pending::default();
            let mut model: Vec<u64> = Vec::new();
            for (op, msg, pick) in ops {
                match op {
                    0 | 1 => {
                        let s = p.insert(msg, None, None).0;
                        let k = key(msg, s);
                        proptest::prop_assert!(s != 0 && !model.contains(&k));
                        model.push(k);
                    }
                    2 if !model.is_empty() => {
                        let k = model.swap_remove(pick % model.len());
                        proptest::prop_assert!(reply(&mut p, k));
                        proptest::prop_assert!(!reply(&mut p, k));
                    }
                    _ if !model.is_empty() => {
                        let k = model.swap_remove(pick % model.len());
                        proptest::prop_assert!(p.abandon(k));
                        proptest::prop_assert!(p.take_abandoned(k));
                    }
                    _ => {}
                }
                proptest::prop_assert_eq!(p.len(), model.len());
            }
            for k in model {
                proptest::prop_assert!(reply(&mut p, k));
            }
            proptest::prop_assert!(p.is_empty());
        }
    }
}
