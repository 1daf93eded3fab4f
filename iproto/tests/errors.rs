//! Decode errors say what failed, where in the value (field path) and at which byte offset;
//! nothing over-allocates on a hostile count (docs/protocol.md, Serialization: strict decoding).

use iproto::{DecodeErrorKind, IprotoPack, IprotoUnpack, Mode};

#[derive(IprotoPack, IprotoUnpack, Debug, PartialEq)]
struct Item {
    id: u32,
    name: String,
}

#[derive(IprotoPack, IprotoUnpack, Debug, PartialEq)]
struct Outer {
    #[iproto(ber)]
    version: u16,
    items: Vec<Item>,
}

#[derive(IprotoPack, IprotoUnpack, Debug, PartialEq)]
struct Wrapper(u8, Outer);

#[derive(IprotoPack, IprotoUnpack, Debug, PartialEq)]
struct Keyword {
    r#type: u16,
}

#[derive(IprotoPack, IprotoUnpack, Debug, PartialEq)]
#[iproto(tag = u8)]
enum Msg {
    #[iproto(tag_value = 1)]
    Put { item: Item },
    #[iproto(tag_value = 2)]
    Del(u32),
}

fn outer_with_bad_third_name() -> (Vec<u8>, usize) {
    let outer = Outer { version: 1, items: (0..3).map(|i| Item { id: i, name: format!("n{i}") }).collect() };
    let mut bytes = iproto::pack(&outer).unwrap();
    // Third item's name: version(1) + count(4) + 2 * (4 + 4 + 2) + id(4) = byte 29 is its length.
    let at = 1 + 4 + 2 * 10 + 4;
    assert_eq!(&bytes[at..at + 4], &[2, 0, 0, 0]);
    bytes[at] = 0xff; // length 255, beyond the input
    (bytes, at)
}

#[test]
fn nested_failure_reports_field_path_and_offset() {
    // A length beyond the remaining input is an error, reported at the length's offset.
    let (bytes, at) = outer_with_bad_third_name();
    let err = iproto::unpack::<Outer>(&bytes).unwrap_err();
    assert_eq!(err.path(), "Outer.items[2].name");
    assert_eq!(err.offset(), at);
    assert!(matches!(err.kind(), DecodeErrorKind::LengthBeyondInput { what: "length", len: 255, .. }));
    assert!(err.to_string().contains("Outer.items[2].name"), "{err}");

    // Outermost type name wins; tuple fields are named by index.
    let mut wrapped = vec![7];
    wrapped.extend(&bytes);
    let err = iproto::unpack::<Wrapper>(&wrapped).unwrap_err();
    assert_eq!(err.path(), "Wrapper.1.items[2].name");
    assert_eq!(err.offset(), at + 1);
}

#[test]
fn raw_identifiers_read_plainly_in_paths() {
    let err = iproto::unpack::<Keyword>(&[1]).unwrap_err();
    assert_eq!(err.path(), "Keyword.type");
}

#[test]
fn short_input_is_an_error_with_offset() {
    // Fixed-width reads of short input are errors, not zero-filled values.
    let err = iproto::unpack::<Item>(&[1, 0, 0]).unwrap_err();
    assert_eq!(err.path(), "Item.id");
    assert_eq!(err.offset(), 0);
    assert!(matches!(err.kind(), DecodeErrorKind::UnexpectedEnd { needed: 4, remaining: 3 }));
}

#[test]
fn unknown_enum_tag() {
    let err = iproto::unpack::<Msg>(&[9, 0, 0, 0, 0]).unwrap_err();
    assert!(matches!(err.kind(), DecodeErrorKind::UnknownTag { tag: 9, ty: "Msg" }), "{err}");
    assert_eq!(err.offset(), 0);
    assert_eq!(err.path(), "Msg");
    // A failing variant field names the variant too.
    let err = iproto::unpack::<Msg>(&[1, 5, 0, 0, 0, 9]).unwrap_err();
    assert_eq!(err.path(), "Msg.Put.item.name");
    assert_eq!(err.offset(), 5);
    assert_eq!(iproto::unpack_exact::<Msg>(&[2, 5, 0, 0, 0]).unwrap(), Msg::Del(5));
}

#[test]
fn trailing_bytes_are_returned_or_rejected() {
    // unpack returns the rest; unpack_exact rejects it.
    let (v, rest) = iproto::unpack::<Msg>(&[2, 5, 0, 0, 0, 0xee]).unwrap();
    assert_eq!((v, rest), (Msg::Del(5), &[0xee][..]));
    let err = iproto::unpack_exact::<Msg>(&[2, 5, 0, 0, 0, 0xee]).unwrap_err();
    assert!(matches!(err.kind(), DecodeErrorKind::TrailingBytes { count: 1 }));
    assert_eq!(err.offset(), 5);
}

#[test]
fn hostile_count_fails_before_allocating() {
    // Count 0xffffffff of u64 on 8 bytes is refused by the count check.
    let mut data = vec![0xff, 0xff, 0xff, 0xff];
    data.extend([0u8; 8]);
    let err = iproto::unpack::<Vec<u64>>(&data).unwrap_err();
    assert!(matches!(err.kind(), DecodeErrorKind::LengthBeyondInput { what: "count", .. }), "{err}");
    let err = iproto::encoding::unpack_mode::<Vec<Item>>(&[0x8f, 0xff, 0xff, 0xff, 0x7f, 0], Mode::Ber).unwrap_err();
    assert!(matches!(err.kind(), DecodeErrorKind::LengthBeyondInput { what: "count", .. }), "{err}");
}
