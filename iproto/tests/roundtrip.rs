//! Property tests: every std impl and every shape of derived type round-trips in both modes,
//! and arbitrary bytes fed to any unpack never panic (short input, overlong lengths and hostile counts are errors, not laxity).

use std::fmt::Debug;

use bytes::Bytes;
use iproto::{encoding::seq, DecodeError, IprotoPack, IprotoUnpack, Mode, PackError, Reader};
use proptest::prelude::*;

fn roundtrip<T>(v: &T, mode: Mode) -> Result<(), TestCaseError>
where
    T: IprotoPack + for<'de> IprotoUnpack<'de> + PartialEq + Debug,
{
    let bytes = iproto::encoding::pack_mode(v, mode).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let (back, rest) =
        iproto::encoding::unpack_mode::<T>(&bytes, mode).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, v);
    prop_assert!(rest.is_empty());
    // min_size is a true lower bound, so sequence count checks never reject valid input.
    prop_assert!(T::min_size(mode) <= bytes.len());
    Ok(())
}

fn both<T>(v: &T) -> Result<(), TestCaseError>
where
    T: IprotoPack + for<'de> IprotoUnpack<'de> + PartialEq + Debug,
{
    roundtrip(v, Mode::Fixed)?;
    roundtrip(v, Mode::Ber)
}

// ---- derived types of every shape ----

#[derive(iproto::IprotoPack, iproto::IprotoUnpack, Debug, PartialEq, Clone)]
struct Address {
    #[iproto(ber)]
    zip: u32,
    city: String,
}

#[derive(iproto::IprotoPack, iproto::IprotoUnpack, Debug, PartialEq, Clone)]
struct User {
    id: u64,
    #[iproto(ber)]
    age: u16,
    name: String,
    addresses: Vec<Address>,
    nick: Option<String>,
    flags: [u8; 4],
    #[iproto(ber, elem = ber)]
    scores: Vec<u32>,
    #[iproto(elem = ber)]
    deltas: Vec<i64>,
    active: bool,
}

#[derive(iproto::IprotoPack, iproto::IprotoUnpack, Debug, PartialEq, Clone)]
struct Pair(i32, #[iproto(ber)] u64);

#[derive(iproto::IprotoPack, iproto::IprotoUnpack, Debug, PartialEq, Clone)]
struct Unit;

#[derive(iproto::IprotoPack, iproto::IprotoUnpack, Debug, PartialEq, Clone)]
#[iproto(ber)]
struct AllBer {
    a: u16,
    b: i32,
    #[iproto(fixed)]
    c: u32,
    s: String,
}

#[derive(iproto::IprotoPack, iproto::IprotoUnpack, Debug, PartialEq, Clone)]
struct Generic<T, U> {
    head: T,
    #[iproto(ber)]
    rest: Vec<U>,
}

#[derive(iproto::IprotoPack, iproto::IprotoUnpack, Debug, PartialEq, Clone)]
struct Borrowed<'a> {
    key: &'a str,
    #[iproto(ber)]
    raw: &'a [u8],
    n: u32,
}

#[derive(iproto::IprotoPack, iproto::IprotoUnpack, Debug, PartialEq, Clone)]
struct Mixed<'a, T> {
    key: &'a str,
    inner: Borrowed<'a>,
    #[iproto(ber)]
    values: Vec<T>,
    either: Either<'a, T>,
}

#[derive(iproto::IprotoPack, iproto::IprotoUnpack, Debug, PartialEq, Clone)]
#[iproto(tag = u8)]
enum Either<'a, T> {
    Left(T),
    Right {
        #[iproto(ber)]
        name: &'a str,
    },
}

#[derive(iproto::IprotoPack, iproto::IprotoUnpack, Debug, PartialEq, Clone)]
struct WithSkip {
    a: u32,
    #[iproto(skip)]
    cache: Option<u64>,
    b: Bytes,
}

/// A `with` codec: a u32 written as BER whatever the field's mode.
mod always_ber {
    use iproto::{bytes::BufMut, DecodeError, IprotoPack, IprotoUnpack, Mode, PackError, Reader};

    pub fn pack<B: BufMut>(v: &u32, buf: &mut B, _mode: Mode) -> Result<(), PackError> {
        v.pack(buf, Mode::Ber)
    }

    pub fn unpack(r: &mut Reader<'_>, _mode: Mode) -> Result<u32, DecodeError> {
        u32::unpack(r, Mode::Ber)
    }
}

#[derive(iproto::IprotoPack, iproto::IprotoUnpack, Debug, PartialEq, Clone)]
struct WithCodec {
    #[iproto(with = always_ber)]
    v: u32,
    tail: u8,
}

#[derive(iproto::IprotoPack, iproto::IprotoUnpack, Debug, PartialEq, Clone)]
#[iproto(tag = u8)]
enum Command {
    Ping,
    Get {
        space: u32,
        #[iproto(ber)]
        key: String,
    },
    #[iproto(tag_value = 10)]
    Put(u32, Vec<Address>),
    Delete(#[iproto(ber)] u64),
}

#[derive(iproto::IprotoPack, iproto::IprotoUnpack, Debug, PartialEq, Clone)]
#[iproto(tag = ber)]
enum Wide {
    Small = 1,
    #[iproto(tag_value = 100000)]
    Big,
}

#[derive(iproto::IprotoPack, iproto::IprotoUnpack, Debug, PartialEq, Clone)]
#[iproto(tag = u16)]
enum Tag16 {
    #[iproto(tag_value = 513)]
    A {
        x: u8,
    },
    B,
}

#[derive(iproto::IprotoPack, iproto::IprotoUnpack, Debug, PartialEq, Clone)]
#[iproto(tag = u32)]
enum Tag32 {
    A(i16),
    B(String),
}

fn address() -> impl Strategy<Value = Address> {
    (any::<u32>(), ".{0,8}").prop_map(|(zip, city)| Address { zip, city })
}

fn user() -> impl Strategy<Value = User> {
    (
        (any::<u64>(), any::<u16>(), ".{0,12}", prop::collection::vec(address(), 0..4)),
        (any::<Option<String>>(), any::<[u8; 4]>(), any::<Vec<u32>>(), any::<Vec<i64>>(), any::<bool>()),
    )
        .prop_map(|((id, age, name, addresses), (nick, flags, scores, deltas, active))| User {
            id,
            age,
            name,
            addresses,
            nick,
            flags,
            scores,
            deltas,
            active,
        })
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        Just(Command::Ping),
        (any::<u32>(), ".{0,8}").prop_map(|(space, key)| Command::Get { space, key }),
        (any::<u32>(), prop::collection::vec(address(), 0..3)).prop_map(|(a, b)| Command::Put(a, b)),
        any::<u64>().prop_map(Command::Delete),
    ]
}

proptest! {
    #[test]
    fn std_ints(a: u8, b: i8, c: u16, d: i16, e: u32, f: i32, g: u64, h: i64, flag: bool) {
        both(&a)?; both(&b)?; both(&c)?; both(&d)?; both(&e)?; both(&f)?; both(&g)?; both(&h)?; both(&flag)?;
    }

    #[test]
    fn std_strings_and_bytes(s: String, v: Vec<u8>) {
        both(&s)?;
        both(&v)?;
        both(&Bytes::from(v.clone()))?;
        both(&Box::new(s.clone()))?;
    }

    #[test]
    fn std_sequences(a: Vec<u32>, b: Vec<i64>, c: Vec<String>, d: Vec<Vec<u8>>, e: Vec<Vec<u16>>) {
        both(&a)?; both(&b)?; both(&c)?; both(&d)?; both(&e)?;
    }

    #[test]
    fn std_options_arrays_tuples(a: Option<u32>, b: Option<String>, c: [u16; 3], d: [u8; 5], e: (u8, u32, String), f: (i64, Vec<u8>)) {
        both(&a)?; both(&b)?; both(&c)?; both(&d)?; both(&e)?; both(&f)?;
        both(&())?;
    }

    #[test]
    fn derived_named_nested(u in user()) {
        both(&u)?;
        both(&vec![u.clone(), u])?;
    }

    #[test]
    fn derived_tuple_unit_allber(a: i32, b: u64, c: u16, d: i32, e: u32, s: String) {
        both(&Pair(a, b))?;
        both(&Unit)?;
        both(&AllBer { a: c, b: d, c: e, s })?;
    }

    #[test]
    fn derived_generic(h: u32, rest: Vec<String>, h2: Option<u8>, rest2: Vec<(u8, u16)>) {
        both(&Generic { head: h, rest })?;
        both(&Generic { head: h2, rest: rest2 })?;
    }

    #[test]
    fn derived_borrowed(key: String, raw: Vec<u8>, n: u32) {
        let v = Borrowed { key: &key, raw: &raw, n };
        for mode in [Mode::Fixed, Mode::Ber] {
            let bytes = iproto::encoding::pack_mode(&v, mode).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back: Borrowed = Reader::new(&bytes).read_exact(mode).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&back, &v);
        }
    }

    #[test]
    fn derived_borrowed_and_generic(key: String, raw: Vec<u8>, values: Vec<u16>, left: bool, n: u16) {
        let inner = Borrowed { key: &key, raw: &raw, n: 1 };
        let either = if left { Either::Left(n) } else { Either::Right { name: &key } };
        let v = Mixed { key: &key, inner, values, either };
        for mode in [Mode::Fixed, Mode::Ber] {
            let bytes = iproto::encoding::pack_mode(&v, mode).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back: Mixed<u16> = Reader::new(&bytes).read_exact(mode).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&back, &v);
        }
    }

    #[test]
    fn derived_skip_and_with(a: u32, cache: u64, b: Vec<u8>, v: u32, tail: u8) {
        let x = WithSkip { a, cache: Some(cache), b: b.into() };
        let bytes = iproto::pack(&x).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(bytes.len(), 4 + 4 + x.b.len());
        let back: WithSkip = iproto::unpack_exact(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back, WithSkip { cache: None, ..x });
        both(&WithCodec { v, tail })?;
    }

    #[test]
    fn derived_enums(c in command(), small: bool, x: u8, i: i16, s: String) {
        both(&c)?;
        both(&if small { Wide::Small } else { Wide::Big })?;
        both(&Tag16::A { x })?;
        both(&Tag16::B)?;
        both(&Tag32::A(i))?;
        both(&Tag32::B(s))?;
    }

    #[test]
    fn elem_ber_packs_elements_in_ber(v: Vec<u32>) {
        // Explicit opt-in: `ber, elem = ber` makes count and elements BER; plain Vec keeps Fixed
        // elements (a sequence's mode applies to its count only).
        let mut buf = Vec::new();
        seq::pack(&v, &mut buf, Mode::Ber, Mode::Ber).map_err(|e: PackError| TestCaseError::fail(e.to_string()))?;
        let mut want = iproto::pack_ber(&(v.len() as u32)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for x in &v {
            want.extend(iproto::pack_ber(x).map_err(|e| TestCaseError::fail(e.to_string()))?);
        }
        prop_assert_eq!(&buf, &want);
        let back: Vec<u32> = seq::unpack(&mut Reader::new(&buf), Mode::Ber, Mode::Ber)
            .map_err(|e: DecodeError| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back, v);
    }
}

/// Feeds `data` to `T`'s unpack in both modes, plain and exact. It must return, not panic.
fn feed<T: for<'de> IprotoUnpack<'de>>(data: &[u8]) {
    for mode in [Mode::Fixed, Mode::Ber] {
        let _ = iproto::encoding::unpack_mode::<T>(data, mode);
        let _ = Reader::new(data).read_exact::<T>(mode);
        let owned = Bytes::copy_from_slice(data);
        let _ = Reader::from_bytes(&owned).read_exact::<T>(mode);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..64)) {
        feed::<u8>(&data); feed::<i8>(&data); feed::<u16>(&data); feed::<i16>(&data);
        feed::<u32>(&data); feed::<i32>(&data); feed::<u64>(&data); feed::<i64>(&data);
        feed::<bool>(&data); feed::<String>(&data); feed::<Vec<u8>>(&data); feed::<Bytes>(&data);
        feed::<Vec<u64>>(&data); feed::<Vec<String>>(&data); feed::<Vec<Vec<u32>>>(&data);
        feed::<Option<u32>>(&data); feed::<[u32; 3]>(&data); feed::<(u8, String)>(&data);
        feed::<User>(&data); feed::<Pair>(&data); feed::<Unit>(&data); feed::<AllBer>(&data);
        feed::<Generic<u32, String>>(&data); feed::<WithSkip>(&data); feed::<WithCodec>(&data);
        feed::<Command>(&data); feed::<Wide>(&data); feed::<Tag16>(&data); feed::<Tag32>(&data);
        for mode in [Mode::Fixed, Mode::Ber] {
            let _ = Reader::new(&data).read_exact::<Borrowed>(mode);
            let _ = Reader::new(&data).read_exact::<&str>(mode);
            let _ = Reader::new(&data).read_exact::<&[u8]>(mode);
        }
    }

    #[test]
    fn valid_prefix_then_garbage_never_panics(u in user(), cut in 0usize..200, junk: Vec<u8>) {
        // Truncations and corruptions of real encodings reach deeper than random bytes.
        let mut bytes = iproto::pack(&u).map_err(|e| TestCaseError::fail(e.to_string()))?;
        bytes.truncate(cut.min(bytes.len()));
        feed::<User>(&bytes);
        bytes.extend(junk);
        feed::<User>(&bytes);
    }
}

#[test]
fn min_size_bounds_counts_of_derived_structs() {
    // A count of 1000 Addresses (min 1 + 4 bytes each) on 100 bytes is refused up front.
    assert_eq!(<Address as IprotoUnpack>::min_size(Mode::Fixed), 5);
    assert_eq!(<User as IprotoUnpack>::min_size(Mode::Fixed), 8 + 1 + 4 + 4 + 1 + 4 + 1 + 4 + 1);
    assert_eq!(<Command as IprotoUnpack>::min_size(Mode::Fixed), 1);
    assert_eq!(<Tag32 as IprotoUnpack>::min_size(Mode::Fixed), 4 + 2);
    let mut data = 1000u32.to_le_bytes().to_vec();
    data.extend([0u8; 100]);
    let err = iproto::unpack::<Vec<Address>>(&data).unwrap_err();
    assert!(matches!(err.kind(), iproto::DecodeErrorKind::LengthBeyondInput { what: "count", len: 1000, .. }), "{err}");
}
