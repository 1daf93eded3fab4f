//! The reference vectors of docs/protocol.md (Serialization), from go-iproto's pack tests, through
//! the std impls and the derive.

use crate::{pack, pack_ber, unpack, unpack_ber, IprotoPack, IprotoUnpack};

fn hex_of<T: IprotoPack>(v: &T, ber: bool) -> String {
    hex::encode(if ber { pack_ber(v) } else { pack(v) }.expect("pack"))
}

/// Packs in the mode, checks the hex, unpacks back with no remainder.
fn check<T>(v: T, ber: bool, want: &str)
where
    T: IprotoPack + for<'de> IprotoUnpack<'de> + PartialEq + std::fmt::Debug,
{
    assert_eq!(hex_of(&v, ber), want, "pack {v:?} (ber: {ber})");
    let bytes = hex::decode(want).expect("hex");
    let (back, rest) = if ber { unpack_ber::<T>(&bytes) } else { unpack::<T>(&bytes) }.expect("unpack");
    assert_eq!(back, v);
    assert!(rest.is_empty());
}

#[derive(IprotoPack, IprotoUnpack, Debug, PartialEq)]
struct Plain {
    a: u8,
    s: String,
}

#[derive(IprotoPack, IprotoUnpack, Debug, PartialEq)]
struct Tagged {
    #[iproto(ber)]
    a: u32,
    #[iproto(ber)]
    s: String,
}

#[derive(IprotoPack, IprotoUnpack, Debug, PartialEq)]
struct Untagged {
    a: u32,
    s: String,
}

#[test]
fn fixed_golden_vectors() {
    // TestPack / TestUnpack.
    check(258u16, false, "0201");
    check(-1234i16, false, "2efb");
    check(-1234567890i32, false, "2efd69b6");
    check(-1234567890123456i64, false, "404575c32a9dfbff");
    check(String::from("   "), false, "03000000202020");
    check(vec![2u32, 2], false, "020000000200000002000000");
}

#[test]
fn ber_golden_vectors() {
    // go-iproto's BER table: Perl `pack 'w'`.
    let cases = super::ber::tests::GOLDEN;
    for &(v, h) in cases {
        check(v, true, h);
    }
    check(-1i32, true, "8fffffff7f");
}

#[test]
fn struct_golden_vectors() {
    // A struct ignores the mode handed to it; fields use their own attributes.
    for ber in [false, true] {
        check(Plain { a: 15, s: "  ".into() }, ber, "0f020000002020");
        check(Tagged { a: 258, s: "  ".into() }, ber, "8202022020");
    }
    // `pack_ber` of an untagged struct leaves its fields Fixed.
    check(Untagged { a: 5, s: "x".into() }, true, "050000000100000078");
}

#[test]
fn sequence_elements_stay_fixed() {
    // Only the count follows the mode; elements are Fixed.
    check(vec![1u32, 200], true, "0201000000c8000000");
    check(vec![String::from("a")], true, "010100000061");
}

#[test]
fn one_byte_ints_ignore_mode() {
    // `u8`/`i8` are one raw byte in both modes.
    check(200u8, true, "c8");
    check(-1i8, true, "ff");
}
