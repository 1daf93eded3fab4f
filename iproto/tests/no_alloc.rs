//! Allocation accounting with a counting global allocator (per thread, so parallel tests do not
//! disturb each other): borrowed fields decode without allocating, `Bytes` fields are zero-copy
//! through `Reader::from_bytes`, and hostile counts never allocate up front.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use iproto::{IprotoPack, IprotoUnpack, Mode, Reader};

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn on_alloc(size: usize) {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
    let _ = LIVE.try_with(|live| {
        live.set(live.get() + size);
        let _ = PEAK.try_with(|p| p.set(p.get().max(live.get())));
    });
}

fn on_dealloc(size: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(size)));
}

// SAFETY: forwards to the system allocator; the bookkeeping touches only const thread-locals.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        on_dealloc(layout.size());
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        on_dealloc(layout.size());
        on_alloc(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f`, returning its result, the number of allocations it made and the peak of live bytes
/// above the starting point.
fn measure<R>(f: impl FnOnce() -> R) -> (R, usize, usize) {
    let (a0, live0) = (ALLOCS.with(Cell::get), LIVE.with(Cell::get));
    PEAK.with(|p| p.set(live0));
    let r = f();
    (r, ALLOCS.with(Cell::get) - a0, PEAK.with(Cell::get) - live0)
}

#[derive(IprotoPack, IprotoUnpack, Debug, PartialEq)]
struct Request<'a> {
    space: u32,
    #[iproto(ber)]
    flags: u64,
    key: &'a str,
    #[iproto(ber)]
    value: &'a [u8],
    tail: (u8, i16),
}

#[derive(IprotoPack, IprotoUnpack, Debug, PartialEq)]
struct Blob {
    id: u32,
    data: Bytes,
    #[iproto(ber)]
    more: Bytes,
}

#[test]
fn borrowed_fields_decode_without_allocating() {
    let req = Request { space: 9, flags: 1 << 40, key: "user:42", value: &[1, 2, 3, 4, 5], tail: (1, -2) };
    let bytes = iproto::pack(&req).unwrap();
    let (back, allocs, _) = measure(|| iproto::unpack_exact::<Request>(&bytes));
    assert_eq!(allocs, 0, "unpacking borrowed fields allocated");
    let back = back.unwrap();
    assert_eq!(back, req);
    // The fields point into the input.
    assert!(bytes.as_ptr_range().contains(&back.key.as_ptr()));
}

#[test]
fn bytes_fields_are_zero_copy_through_from_bytes() {
    let blob = Blob { id: 1, data: Bytes::from_static(b"payload"), more: Bytes::from(vec![7u8; 300]) };
    let body = Bytes::from(iproto::pack(&blob).unwrap());
    // A `Bytes` made from a `Vec` allocates its shared header on the first clone, once per
    // buffer (a frame read from the socket is already shared); do that before measuring.
    drop(body.clone());
    let (back, allocs, _) = measure(|| Reader::from_bytes(&body).read_exact::<Blob>(Mode::Fixed));
    assert_eq!(allocs, 0, "Bytes fields were copied");
    let back = back.unwrap();
    assert_eq!(back, blob);
    assert!(body.as_ptr_range().contains(&back.more.as_ptr()));
}

#[test]
fn hostile_count_allocates_nothing() {
    // go-iproto allocated 2^31 elements for `ffffff7f` before failing; here the count
    // is checked against the remaining input first.
    let mut data = vec![0xff, 0xff, 0xff, 0xff];
    data.extend([0u8; 8]);
    let (res, _, peak) = measure(|| iproto::unpack::<Vec<u64>>(&data).map(|_| ()));
    assert!(res.is_err());
    assert!(peak < 1024, "peak allocation {peak} bytes for a rejected count");
}

#[test]
fn plausible_count_of_large_elements_allocates_at_most_about_the_input() {
    // A count that passes the input check (1-byte minimum elements) but whose elements are large
    // in memory: reservation is capped, so peak memory stays near the input size, not count x 24.
    let count = 60_000u32;
    let mut data = count.to_le_bytes().to_vec();
    data.extend(std::iter::repeat_n(1u8, count as usize)); // each Option<String> is Some(..), then runs out
    let (res, _, peak) = measure(|| iproto::unpack::<Vec<Option<String>>>(&data).map(|_| ()));
    assert!(res.is_err());
    assert!(peak <= 128 * 1024, "peak allocation {peak} bytes");
}
