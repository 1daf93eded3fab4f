//! Derived pack/unpack against hand-written `BufMut`/slice code producing the same bytes
//! (SPEC.md section 5 target: the derive within 1.15x of hand-written, both ways).
//!
//! `cargo bench -p mr-iproto --bench pack -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use bytes::BufMut;
use criterion::{criterion_group, criterion_main, Criterion};
use iproto::pack::ber;
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

criterion_group!(benches, bench);
criterion_main!(benches);
