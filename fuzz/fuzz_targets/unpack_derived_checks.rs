//! The `unpack_derived` target's types and checks, shared with the test that writes its seeds
//! (`tests/fuzz_seeds.rs`): the seeds are built from these very types, and the test runs these
//! very checks on each seed and asserts that it decodes as the type it was built for.
#![allow(dead_code)] // the fuzz target uses the checks, the seed test the types too

use std::borrow::Cow;
use std::fmt::Debug;

use bytes::Bytes;
use iproto::encoding::{pack_mode, unpack_mode};
use iproto::{IprotoPack, IprotoUnpack, Mode, Reader};

#[derive(iproto::IprotoPack, iproto::IprotoUnpack, Debug, PartialEq)]
pub struct Tuple {
    #[iproto(ber)]
    pub space: u32,
    pub key: String,
}

#[derive(iproto::IprotoPack, iproto::IprotoUnpack, Debug, PartialEq)]
pub struct Owned {
    pub id: u64,
    #[iproto(ber)]
    pub age: u16,
    pub delta: i32,
    pub name: String,
    pub tuples: Vec<Tuple>,
    pub note: Option<String>,
    pub flags: [u8; 3],
    #[iproto(ber, elem = ber)]
    pub counters: Vec<u64>,
    #[iproto(elem = ber)]
    pub shifts: Vec<i16>,
    pub blob: Bytes,
    pub on: bool,
}

#[derive(iproto::IprotoPack, iproto::IprotoUnpack, Debug, PartialEq)]
pub struct Borrowed<'a> {
    pub key: &'a str,
    #[iproto(ber)]
    pub raw: &'a [u8],
    pub label: Cow<'a, str>,
    #[iproto(ber)]
    pub small: i8,
    pub rest: Vec<&'a str>,
}

#[derive(iproto::IprotoPack, iproto::IprotoUnpack, Debug, PartialEq)]
#[iproto(ber)]
pub struct AllBer {
    pub a: u16,
    pub b: i64,
    #[iproto(fixed)]
    pub c: u32,
    pub s: String,
    pub v: Vec<u32>,
}

#[derive(iproto::IprotoPack, iproto::IprotoUnpack, Debug, PartialEq)]
pub struct Pair(pub i32, #[iproto(ber)] pub u64);

#[derive(iproto::IprotoPack, iproto::IprotoUnpack, Debug, PartialEq)]
#[iproto(tag = u8)]
pub enum Command<'a> {
    Ping,
    Get {
        space: u32,
        #[iproto(ber)]
        key: &'a str,
    },
    #[iproto(tag_value = 10)]
    Put(u32, Vec<Tuple>),
    Delete(#[iproto(ber)] u64),
}

#[derive(iproto::IprotoPack, iproto::IprotoUnpack, Debug, PartialEq)]
#[iproto(tag = ber)]
pub enum Wide {
    #[iproto(tag_value = 1)]
    Small,
    #[iproto(tag_value = 100000)]
    Big(Option<Pair>),
}

#[derive(iproto::IprotoPack, iproto::IprotoUnpack, Debug, PartialEq)]
#[iproto(tag = u32)]
pub enum Tag32 {
    A(i16),
    B(String),
    #[iproto(tag_value = 0xffff_ffff)]
    C {
        inner: Wide,
        tail: Vec<Vec<u8>>,
    },
}

/// Decodes a `$ty` from the front of `$data` in `$mode` and checks the round trip; adds the
/// type's name to `$decoded` when the value decoded (so the round trip was checked). A macro,
/// not a generic function, so that borrowed types may borrow from the re-packed buffer too.
macro_rules! check {
    ($decoded:expr, $ty:ty, $data:expr, $mode:expr) => {{
        let (data, mode): (&[u8], Mode) = ($data, $mode);
        match unpack_mode::<$ty>(data, mode) {
            Err(e) => {
                assert!(e.offset() <= data.len(), "error offset {} past the input", e.offset());
                let _ = e.to_string();
            }
            Ok((value, rest)) => {
                let used = data.len() - rest.len();
                let packed = pack_mode(&value, mode).expect("a decoded value packs");
                assert!(packed.len() <= used, "{value:?}: canonical {} bytes, input {used}", packed.len());
                let again: $ty = Reader::new(&packed).read_exact(mode).expect("a canonical encoding decodes");
                assert_eq!(again, value);
                // Decoding the consumed prefix alone gives the same value: nothing read past it.
                let exact: $ty = Reader::new(&data[..used]).read_exact(mode).expect("the consumed prefix decodes");
                assert_eq!(exact, value);
                $decoded.push(stringify!($ty));
            }
        }
    }};
}

/// The same through a `Bytes` owner, where `Bytes` fields are zero-copy slices.
pub fn check_shared<T>(data: &Bytes, mode: Mode) -> bool
where
    T: for<'de> IprotoUnpack<'de> + IprotoPack + PartialEq + Debug,
{
    let mut r = Reader::from_bytes(data);
    if let Ok(value) = T::unpack(&mut r, mode) {
        let used = r.position();
        let plain = Reader::new(&data[..used]).read_exact::<T>(mode).expect("the consumed prefix decodes");
        assert_eq!(plain, value, "zero-copy and copying decodes differ");
        return true;
    }
    false
}

/// Runs every check on `data` in `mode`; returns the types whose value decoded (and so whose
/// round trip was checked).
pub fn all(data: &[u8], mode: Mode) -> Vec<&'static str> {
    let mut decoded = Vec::new();
    check!(decoded, Owned, data, mode);
    check!(decoded, Borrowed, data, mode);
    check!(decoded, AllBer, data, mode);
    check!(decoded, Pair, data, mode);
    check!(decoded, Command, data, mode);
    check!(decoded, Wide, data, mode);
    check!(decoded, Tag32, data, mode);
    check!(decoded, Vec<Tuple>, data, mode);
    check!(decoded, Option<Command>, data, mode);
    check!(decoded, (u8, Bytes, Vec<u16>), data, mode);
    decoded
}
