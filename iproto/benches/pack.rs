//! Derived pack/unpack against hand-written `BufMut`/slice code producing the same bytes
//! (target: the derive within 1.15x of hand-written code, both ways).
//!
//! `cargo bench -p mr-iproto --bench pack -- --warm-up-time 1 --measurement-time 3`
//!
//! On a shared machine criterion's medians drift with the neighbours' load, so after them the
//! bench also prints derive/hand ratios from interleaved runs (the fastest of 300 rounds of
//! 2000 calls each), which load hardly moves.

use std::hint::black_box;

use bytes::BufMut;
use criterion::{criterion_group, Criterion};
use iproto::encoding::ber;
use iproto::{IprotoPack, IprotoUnpack, Mode, Reader};

// ---- the owned message ----

#[derive(IprotoPack, IprotoUnpack, Debug, PartialEq, Clone)]
struct Address {
    #[iproto(ber)]
    zip: u32,
    city: String,
}

#[derive(IprotoPack, IprotoUnpack, Debug, PartialEq, Clone)]
struct Order {
    id: u64,
    #[iproto(ber)]
    user: u32,
    #[iproto(ber)]
    qty: u16,
    name: String,
    items: Vec<u32>,
    address: Address,
}

fn order() -> Order {
    Order {
        id: 0x0102_0304_0506_0708,
        user: 1_000_000,
        qty: 300,
        name: "a fairly ordinary product name".into(),
        items: (0..16).map(|i| i * 1000).collect(),
        address: Address { zip: 125_167, city: "Moscow".into() },
    }
}

// ---- the borrowed message ----

#[derive(IprotoPack, IprotoUnpack, Debug, PartialEq, Clone)]
struct AddressRef<'a> {
    #[iproto(ber)]
    zip: u32,
    city: &'a str,
}

#[derive(IprotoPack, IprotoUnpack, Debug, PartialEq, Clone)]
struct OrderRef<'a> {
    id: u64,
    #[iproto(ber)]
    user: u32,
    #[iproto(ber)]
    qty: u16,
    name: &'a str,
    #[iproto(ber)]
    blob: &'a [u8],
    address: AddressRef<'a>,
}

fn order_ref(o: &Order) -> OrderRef<'_> {
    OrderRef {
        id: o.id,
        user: o.user,
        qty: o.qty,
        name: &o.name,
        blob: b"sixteen byte key",
        address: AddressRef { zip: o.address.zip, city: &o.address.city },
    }
}

// ---- hand-written equivalents ----

mod hand {
    use super::*;

    pub fn put_str<B: BufMut>(buf: &mut B, s: &[u8]) {
        buf.put_u32_le(s.len() as u32);
        buf.put_slice(s);
    }

    pub fn pack_order<B: BufMut>(o: &Order, buf: &mut B) {
        buf.put_u64_le(o.id);
        ber::put(buf, u64::from(o.user));
        ber::put(buf, u64::from(o.qty));
        put_str(buf, o.name.as_bytes());
        buf.put_u32_le(o.items.len() as u32);
        for x in &o.items {
            buf.put_u32_le(*x);
        }
        ber::put(buf, u64::from(o.address.zip));
        put_str(buf, o.address.city.as_bytes());
    }

    pub fn pack_order_ref<B: BufMut>(o: &OrderRef, buf: &mut B) {
        buf.put_u64_le(o.id);
        ber::put(buf, u64::from(o.user));
        ber::put(buf, u64::from(o.qty));
        put_str(buf, o.name.as_bytes());
        ber::put(buf, o.blob.len() as u64);
        buf.put_slice(o.blob);
        ber::put(buf, u64::from(o.address.zip));
        put_str(buf, o.address.city.as_bytes());
    }

    /// A minimal checked cursor, as one would write by hand.
    pub struct Cur<'a>(pub &'a [u8]);

    impl<'a> Cur<'a> {
        #[inline]
        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            if n > self.0.len() {
                return None;
            }
            let (head, tail) = self.0.split_at(n);
            self.0 = tail;
            Some(head)
        }
        #[inline]
        fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
            let (head, tail) = self.0.split_first_chunk::<N>()?;
            self.0 = tail;
            Some(*head)
        }
        #[inline]
        fn u32(&mut self) -> Option<u32> {
            self.array().map(u32::from_le_bytes)
        }
        #[inline]
        fn u64(&mut self) -> Option<u64> {
            self.array().map(u64::from_le_bytes)
        }
        #[inline]
        fn ber(&mut self, max_bytes: usize, max: u64) -> Option<u64> {
            let mut acc = 0u64;
            for i in 0..max_bytes {
                let b = *self.0.get(i)?;
                acc = (acc << 7) | u64::from(b & 0x7f);
                if b & 0x80 == 0 {
                    self.0 = &self.0[i + 1..];
                    return (acc <= max).then_some(acc);
                }
            }
            None
        }
        #[inline]
        fn str_fixed(&mut self) -> Option<&'a str> {
            let n = self.u32()? as usize;
            std::str::from_utf8(self.take(n)?).ok()
        }
    }

    pub fn unpack_order(data: &[u8]) -> Option<Order> {
        let mut c = Cur(data);
        let id = c.u64()?;
        let user = c.ber(5, u32::MAX.into())? as u32;
        let qty = c.ber(3, u16::MAX.into())? as u16;
        let name = c.str_fixed()?.to_owned();
        let count = c.u32()? as usize;
        if count > c.0.len() / 4 {
            return None;
        }
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            items.push(c.u32()?);
        }
        let zip = c.ber(5, u32::MAX.into())? as u32;
        let city = c.str_fixed()?.to_owned();
        Some(Order { id, user, qty, name, items, address: Address { zip, city } })
    }

    pub fn unpack_order_ref(data: &[u8]) -> Option<OrderRef<'_>> {
        let mut c = Cur(data);
        let id = c.u64()?;
        let user = c.ber(5, u32::MAX.into())? as u32;
        let qty = c.ber(3, u16::MAX.into())? as u16;
        let name = c.str_fixed()?;
        let n = c.ber(5, u32::MAX.into())? as usize;
        let blob = c.take(n)?;
        let zip = c.ber(5, u32::MAX.into())? as u32;
        let city = c.str_fixed()?;
        Some(OrderRef { id, user, qty, name, blob, address: AddressRef { zip, city } })
    }
}

fn bench(c: &mut Criterion) {
    let o = order();
    let r = order_ref(&o);

    // Same bytes both ways, checked once outside the timing loops.
    let derived = iproto::pack(&o).unwrap();
    let mut handmade = Vec::new();
    hand::pack_order(&o, &mut handmade);
    assert_eq!(derived, handmade, "derive and hand-written Order encodings differ");
    assert_eq!(hand::unpack_order(&derived).as_ref(), Some(&o));
    assert_eq!(iproto::unpack_exact::<Order>(&derived).unwrap(), o);
    let derived_ref = iproto::pack(&r).unwrap();
    let mut handmade_ref = Vec::new();
    hand::pack_order_ref(&r, &mut handmade_ref);
    assert_eq!(derived_ref, handmade_ref, "derive and hand-written OrderRef encodings differ");
    assert_eq!(hand::unpack_order_ref(&derived_ref).as_ref(), Some(&r));

    let mut buf = Vec::with_capacity(256);
    c.bench_function("order/pack/derive", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&o).pack(&mut buf, Mode::Fixed).unwrap();
            black_box(&buf);
        })
    });
    c.bench_function("order/pack/hand", |b| {
        b.iter(|| {
            buf.clear();
            hand::pack_order(black_box(&o), &mut buf);
            black_box(&buf);
        })
    });
    c.bench_function("order/unpack/derive", |b| {
        b.iter(|| Order::unpack(&mut Reader::new(black_box(&derived)), Mode::Fixed).unwrap())
    });
    c.bench_function("order/unpack/hand", |b| b.iter(|| hand::unpack_order(black_box(&derived)).unwrap()));

    c.bench_function("borrowed/pack/derive", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&r).pack(&mut buf, Mode::Fixed).unwrap();
            black_box(&buf);
        })
    });
    c.bench_function("borrowed/pack/hand", |b| {
        b.iter(|| {
            buf.clear();
            hand::pack_order_ref(black_box(&r), &mut buf);
            black_box(&buf);
        })
    });
    c.bench_function("borrowed/unpack/derive", |b| {
        b.iter(|| OrderRef::unpack(&mut Reader::new(black_box(&derived_ref)), Mode::Fixed).unwrap())
    });
    c.bench_function("borrowed/unpack/hand", |b| b.iter(|| hand::unpack_order_ref(black_box(&derived_ref)).unwrap()));
}

/// Nanoseconds per call of `f` over `iters` calls.
fn ns_per_call(f: &mut dyn FnMut(), iters: u32) -> f64 {
    let start = std::time::Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed().as_nanos() as f64 / f64::from(iters)
}

/// One benchmarked call.
type Call<'a> = Box<dyn FnMut() + 'a>;

/// A packing closure that owns its buffer.
fn with_buf<'a>(mut f: impl FnMut(&mut Vec<u8>) + 'a) -> Call<'a> {
    let mut buf = Vec::with_capacity(256);
    Box::new(move || {
        buf.clear();
        f(&mut buf);
        black_box(&buf);
    })
}

/// Runs each derive/hand pair alternately and prints the best time of each and their ratio.
fn interleaved_ratios() {
    let o = order();
    let r = order_ref(&o);
    let (owned, borrowed) = (iproto::pack(&o).unwrap(), iproto::pack(&r).unwrap());
    let (o, r, owned, borrowed) = (&o, &r, &owned, &borrowed);
    let mut pairs: Vec<(&str, Call<'_>, Call<'_>)> = vec![
        (
            "order/pack",
            with_buf(move |buf| black_box(o).pack(buf, Mode::Fixed).unwrap()),
            with_buf(move |buf| hand::pack_order(black_box(o), buf)),
        ),
        (
            "order/unpack",
            Box::new(move || {
                black_box(Order::unpack(&mut Reader::new(black_box(owned)), Mode::Fixed).unwrap());
            }),
            Box::new(move || {
                black_box(hand::unpack_order(black_box(owned)).unwrap());
            }),
        ),
        (
            "borrowed/pack",
            with_buf(move |buf| black_box(r).pack(buf, Mode::Fixed).unwrap()),
            with_buf(move |buf| hand::pack_order_ref(black_box(r), buf)),
        ),
        (
            "borrowed/unpack",
            Box::new(move || {
                black_box(OrderRef::unpack(&mut Reader::new(black_box(borrowed)), Mode::Fixed).unwrap());
            }),
            Box::new(move || {
                black_box(hand::unpack_order_ref(black_box(borrowed)).unwrap());
            }),
        ),
    ];
    println!("\ninterleaved, best of 300 rounds x 2000 calls:");
    for (name, derive, handmade) in &mut pairs {
        let (mut best_d, mut best_h) = (f64::MAX, f64::MAX);
        for _ in 0..300 {
            best_d = best_d.min(ns_per_call(derive.as_mut(), 2000));
            best_h = best_h.min(ns_per_call(handmade.as_mut(), 2000));
        }
        println!("{name:16} derive {best_d:6.1} ns  hand {best_h:6.1} ns  ratio {:.3}", best_d / best_h);
    }
}

/// A put request with a 1 KiB value, decoded borrowing from the packet and as owned fields:
/// the copy a borrowed request type (a service argument `&[u8]`) saves.
#[derive(IprotoPack, IprotoUnpack)]
struct PutRef<'a> {
    key: &'a str,
    value: &'a [u8],
}

#[derive(IprotoPack, IprotoUnpack)]
struct PutOwned {
    key: String,
    value: Vec<u8>,
}

/// Decoding a 1 KiB request borrowed and owned, interleaved; prints the best of each.
fn copy_saved() {
    let value = vec![0xa5u8; 1024];
    let bytes = iproto::pack(&PutRef { key: "user:42", value: &value }).unwrap();
    let bytes = &bytes;
    let mut borrowed = move || {
        black_box(PutRef::unpack(&mut Reader::new(black_box(bytes)), Mode::Fixed).unwrap());
    };
    let mut owned = move || {
        black_box(PutOwned::unpack(&mut Reader::new(black_box(bytes)), Mode::Fixed).unwrap());
    };
    let (mut best_b, mut best_o) = (f64::MAX, f64::MAX);
    for _ in 0..300 {
        best_b = best_b.min(ns_per_call(&mut borrowed, 2000));
        best_o = best_o.min(ns_per_call(&mut owned, 2000));
    }
    println!(
        "1KiB put/unpack  borrowed {best_b:6.1} ns  owned {best_o:6.1} ns  saved {:.1} ns per request",
        best_o - best_b
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // Only under `cargo bench`, not when `cargo test --benches` smoke-runs the binary.
    if std::env::args().any(|a| a == "--bench") {
        interleaved_ratios();
        copy_saved();
    }
}
