//! `unpack` of a set of derived types (structs and enums, borrowed and owned fields) in both
//! modes, from arbitrary bytes. Any value that decodes must pack back to a canonical encoding
//! no longer than the bytes it came from, and that encoding must decode to the same value; an
//! error must render. Nothing may panic or allocate beyond the input.
#![no_main]

use std::borrow::Cow;
use std::fmt::Debug;

use bytes::Bytes;
use iproto::pack::{pack_mode, unpack_mode};
use iproto::{IprotoPack, IprotoUnpack, Mode, Reader};
use libfuzzer_sys::fuzz_target;

#[derive(iproto::IprotoPack, iproto::IprotoUnpack, Debug, PartialEq)]
struct Tuple {
    #[iproto(ber)]
    space: u32,
    key: String,
}

#[derive(iproto::IprotoPack, iproto::IprotoUnpack, Debug, PartialEq)]
struct Owned {
    id: u64,
    #[iproto(ber)]
    age: u16,
    delta: i32,
    name: String,
    tuples: Vec<Tuple>,
    note: Option<String>,
    flags: [u8; 3],
    #[iproto(ber, elem = ber)]
    counters: Vec<u64>,
    #[iproto(elem = ber)]
    shifts: Vec<i16>,
    blob: Bytes,
    on: bool,
}

#[derive(iproto::IprotoPack, iproto::IprotoUnpack, Debug, PartialEq)]
struct Borrowed<'a> {
    key: &'a str,
    #[iproto(ber)]
    raw: &'a [u8],
    label: Cow<'a, str>,
    #[iproto(ber)]
    small: i8,
    rest: Vec<&'a str>,
}

#[derive(iproto::IprotoPack, iproto::IprotoUnpack, Debug, PartialEq)]
#[iproto(ber)]
struct AllBer {
    a: u16,
    b: i64,
    #[iproto(fixed)]
    c: u32,
    s: String,
    v: Vec<u32>,
}

#[derive(iproto::IprotoPack, iproto::IprotoUnpack, Debug, PartialEq)]
struct Pair(i32, #[iproto(ber)] u64);

#[derive(iproto::IprotoPack, iproto::IprotoUnpack, Debug, PartialEq)]
#[iproto(tag = u8)]
enum Command<'a> {
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
enum Wide {
    #[iproto(tag_value = 1)]
    Small,
    #[iproto(tag_value = 100000)]
    Big(Option<Pair>),
}

#[derive(iproto::IprotoPack, iproto::IprotoUnpack, Debug, PartialEq)]
#[iproto(tag = u32)]
enum Tag32 {
    A(i16),
    B(String),
    #[iproto(tag_value = 0xffff_ffff)]
    C {
        inner: Wide,
        tail: Vec<Vec<u8>>,
    },
}

/// Decodes a `$ty` from the front of `$data` in `$mode` and checks the round trip. A macro, not
/// a generic function, so that borrowed types may borrow from the re-packed buffer too.
macro_rules! check {
    ($ty:ty, $data:expr, $mode:expr) => {{
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
            }
        }
    }};
}

/// The same through a `Bytes` owner, where `Bytes` fields are zero-copy slices.
fn check_shared<T>(data: &Bytes, mode: Mode)
where
    T: for<'de> IprotoUnpack<'de> + IprotoPack + PartialEq + Debug,
{
    let mut r = Reader::from_bytes(data);
    if let Ok(value) = T::unpack(&mut r, mode) {
        let used = r.position();
        let plain = Reader::new(&data[..used]).read_exact::<T>(mode).expect("the consumed prefix decodes");
        assert_eq!(plain, value, "zero-copy and copying decodes differ");
    }
}

fn all(data: &[u8], mode: Mode) {
    check!(Owned, data, mode);
    check!(Borrowed, data, mode);
    check!(AllBer, data, mode);
    check!(Pair, data, mode);
    check!(Command, data, mode);
    check!(Wide, data, mode);
    check!(Tag32, data, mode);
    check!(Vec<Tuple>, data, mode);
    check!(Option<Command>, data, mode);
    check!((u8, Bytes, Vec<u16>), data, mode);
}

fuzz_target!(|data: &[u8]| {
    all(data, Mode::Fixed);
    all(data, Mode::Ber);
    let shared = Bytes::copy_from_slice(data);
    check_shared::<Owned>(&shared, Mode::Fixed);
    check_shared::<Owned>(&shared, Mode::Ber);
});
