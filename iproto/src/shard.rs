//! Per-thread shards of hot shared state: a value read on every call (a pool's online list, a
//! cluster's topology) is published as one copy per shard, and a counter bumped on every call
//! is kept per shard, so that callers on different threads touch no common cache line. One
//! shared `RwLock`, `Arc` and counter cost the pool about 9% of its calls/s at 4x256, and the
//! cluster's shared topology and counters more.

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

use crate::lock::{read, write};

/// Number of shards; threads beyond this share them.
pub(crate) const SHARDS: usize = 8;

/// The calling thread's shard.
pub(crate) fn index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Relaxed) % SHARDS;
    }
    INDEX.with(|i| *i)
}

/// A value aligned and padded to its own cache lines (two, for the adjacent-line prefetcher).
#[repr(align(128))]
#[derive(Debug, Default)]
pub(crate) struct Padded<T>(pub T);

impl<T> Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// One `T` per shard.
pub(crate) struct PerShard<T> {
    shards: Box<[Padded<T>]>,
}

impl<T> PerShard<T> {
    pub(crate) fn new(make: impl FnMut() -> T) -> Self {
        let mut make = make;
        PerShard { shards: (0..SHARDS).map(|_| Padded(make())).collect() }
    }

    /// The calling thread's.
    pub(crate) fn mine(&self) -> &T {
        &self.shards[index()]
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.shards.iter().map(|s| &s.0)
    }
}

/// A counter bumped per shard and summed when read.
pub(crate) struct Counter(PerShard<AtomicU64>);

impl Counter {
    pub(crate) fn new() -> Self {
        Counter(PerShard::new(|| AtomicU64::new(0)))
    }

    pub(crate) fn inc(&self) {
        self.0.mine().fetch_add(1, Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.iter().map(|c| c.load(Relaxed)).sum()
    }
}

/// A value read by many threads and replaced rarely: each shard holds its own copy, so that
/// a reader's lock and reference count are its shard's alone.
pub(crate) struct Published<T> {
    shards: PerShard<RwLock<Arc<Padded<T>>>>,
}

impl<T: Clone> Published<T> {
    pub(crate) fn new(value: T) -> Self {
        Published { shards: PerShard::new(|| RwLock::new(Arc::new(Padded(value.clone())))) }
    }

    /// The calling thread's copy.
    pub(crate) fn load(&self) -> Arc<Padded<T>> {
        read(self.shards.mine()).clone()
    }

    /// Runs `f` on the calling thread's copy under its shard's read lock, touching no
    /// reference count: for what is done before the next await.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&read(self.shards.mine()).0)
    }

    /// Replaces every shard's copy.
    pub(crate) fn store(&self, value: T) {
        for shard in self.shards.iter() {
            *write(shard) = Arc::new(Padded(value.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_sum_over_threads_and_stores_reach_every_shard() {
        let counter = Arc::new(Counter::new());
        let published = Arc::new(Published::new(1u32));
        let threads: Vec<_> = (0..SHARDS + 3)
            .map(|_| {
                let (counter, published) = (counter.clone(), published.clone());
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        counter.inc();
                    }
                    **published.load()
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), 1);
        }
        assert_eq!(counter.get(), 100 * (SHARDS as u64 + 3));
        published.store(2);
        let seen: Vec<u32> = (0..SHARDS + 1)
            .map(|_| {
                std::thread::spawn({
                    let published = published.clone();
                    move || **published.load()
                })
                .join()
                .unwrap()
            })
            .collect();
        assert!(seen.iter().all(|&v| v == 2), "{seen:?}");
        assert_eq!(std::mem::align_of::<Padded<u8>>(), 128);
    }
}
