//! The fuzz seeds (`fuzz/seeds/<target>/`) are written from the current types by this test,
//! which also runs each target's own checks on each seed (`fuzz/fuzz_targets/*_checks.rs`)
//! and asserts the outcome the seed was built for: a value that decodes (so its round trip is
//! checked), a spec that parses, a stream with the intended packets, size-limit rejection or
//! truncation. A seed that drifts from its type fails here, not silently in the fuzzer.
//!
//! `IPROTO_WRITE_SEEDS=1 cargo test --test fuzz_seeds` rewrites the files; without it the test
//! fails when a checked-in seed differs from what it would write, or when a file there is not
//! one of the seeds below.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;
use iproto::encoding::pack_mode;
use iproto::{Header, IprotoPack, Mode, MSG_PING};

#[path = "../fuzz/fuzz_targets/decode_stream_checks.rs"]
mod decode_stream;
#[path = "../fuzz/fuzz_targets/pack_spec_checks.rs"]
mod pack_spec;
#[path = "../fuzz/fuzz_targets/unpack_derived_checks.rs"]
mod unpack_derived;

use unpack_derived::{AllBer, Borrowed, Command, Owned, Pair, Tag32, Tuple, Wide};

/// One seed: its file name and bytes.
type Seeds = BTreeMap<&'static str, Vec<u8>>;

fn packed<T: IprotoPack>(value: &T, mode: Mode) -> Vec<u8> {
    pack_mode(value, mode).expect("a seed value packs")
}

/// `unpack_derived` seeds: each the encoding of one value of the target's types, with the
/// type (as the target names it) and the mode it must decode as; `!Type`: must be rejected.
fn unpack_derived_seeds() -> Vec<(&'static str, &'static str, Mode, Vec<u8>)> {
    let owned = Owned {
        id: 1,
        age: 42,
        delta: -1,
        name: "name".into(),
        tuples: vec![Tuple { space: 1, key: "nabc".into() }, Tuple { space: 300, key: String::new() }],
        note: Some("note".into()),
        flags: [1, 2, 3],
        counters: vec![0, 127, 128, u64::MAX],
        shifts: vec![-1, 0, i16::MAX],
        blob: Bytes::from_static(b"blob"),
        on: true,
    };
    let borrowed =
        Borrowed { key: "key", raw: b"\x00\xff", label: Cow::Borrowed("label"), small: -5, rest: vec!["a", ""] };
    let all_ber = AllBer { a: 5, b: -300, c: 0xdead_beef, s: "x".into(), v: vec![1, 128] };
    // The same value with its first field in a longer-than-needed BER form (0x80 0x80 0x05 for 5):
    // it decodes, and packs back shorter than its input.
    let mut noncanonical = vec![0x80, 0x80];
    noncanonical.extend(packed(&all_ber, Mode::Fixed));
    let mut hostile_count = packed(&vec![Tuple { space: 1, key: "k".into() }], Mode::Fixed);
    hostile_count[..4].copy_from_slice(&u32::MAX.to_le_bytes()); // claims 4 billion tuples
    vec![
        ("owned", "Owned", Mode::Fixed, packed(&owned, Mode::Fixed)),
        ("owned_ber", "Owned", Mode::Ber, packed(&owned, Mode::Ber)),
        ("borrowed", "Borrowed", Mode::Fixed, packed(&borrowed, Mode::Fixed)),
        ("all_ber", "AllBer", Mode::Fixed, packed(&all_ber, Mode::Fixed)),
        ("noncanonical_ber", "AllBer", Mode::Fixed, noncanonical),
        ("pair", "Pair", Mode::Fixed, packed(&Pair(-1_234_567, u64::MAX), Mode::Fixed)),
        ("ping_cmd", "Command", Mode::Fixed, packed(&Command::Ping, Mode::Fixed)),
        ("get_cmd", "Command", Mode::Fixed, packed(&Command::Get { space: 7, key: "key" }, Mode::Fixed)),
        (
            "put_cmd",
            "Command",
            Mode::Fixed,
            packed(&Command::Put(1, vec![Tuple { space: 300, key: "Moscow".into() }]), Mode::Fixed),
        ),
        ("delete_cmd", "Command", Mode::Ber, packed(&Command::Delete(1 << 40), Mode::Ber)),
        ("wide_big", "Wide", Mode::Fixed, packed(&Wide::Big(Some(Pair(-5, 1 << 63))), Mode::Fixed)),
        (
            "tag32_c",
            "Tag32",
            Mode::Fixed,
            packed(&Tag32::C { inner: Wide::Small, tail: vec![vec![1, 2], vec![]] }, Mode::Fixed),
        ),
        ("huge_count", "!Vec<Tuple>", Mode::Fixed, hostile_count),
    ]
}

/// A packet's bytes.
fn packet(msg: u32, sync: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Header { msg, len: body.len() as u32, sync }.to_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// What a `decode_stream` seed must come to: packets decoded, the rejected length, the bytes
/// left undecoded at EOF.
#[derive(Debug, PartialEq)]
struct Expected {
    packets: usize,
    too_large: Option<u32>,
    leftover: usize,
}

/// `decode_stream` seeds: `[size-limit selector, chunk seed (2 bytes), stream...]`.
fn decode_stream_seeds() -> Vec<(&'static str, Vec<u8>, Expected)> {
    let seed = |selector: u8, chunks: u16, parts: &[Vec<u8>]| {
        let mut out = vec![selector];
        out.extend(chunks.to_be_bytes());
        parts.iter().for_each(|p| out.extend(p));
        out
    };
    let ping = packet(MSG_PING, 7, b"");
    let hello = packet(2, 1, b"hello");
    let expected = |packets, too_large, leftover| Expected { packets, too_large, leftover };
    vec![
        // Selector 0x40: a limit of 192 bytes; 0xfe the default limit; 0xff none; 1: 3 bytes.
        ("two_packets", seed(0x40, 0x002a, &[packet(2, 1, b"OK"), packet(MSG_PING, 0, b"")]), expected(2, None, 0)),
        ("ping_trickle", seed(0xfe, 0x0001, &[ping.clone(), ping.clone(), ping]), expected(3, None, 0)),
        ("over_limit", seed(0x01, 0x5555, &[packet(5, 5, b"xxxxxxxxxx")]), expected(0, Some(10), 0)),
        (
            "len_4gib",
            seed(0xff, 0x1234, &[Header { msg: 1, len: u32::MAX, sync: 1 }.to_bytes().to_vec(), b"abc".to_vec()]),
            expected(0, None, 15),
        ),
        ("truncated_body", seed(0x40, 0x9901, &[hello[..14].to_vec()]), expected(0, None, 14)),
        ("truncated_header", seed(0x40, 0x0101, &[hello.clone(), hello[..7].to_vec()]), expected(1, None, 7)),
    ]
}

/// `pack_spec` seeds: specs that parse, over every word and escape.
fn pack_spec_seeds() -> Vec<(&'static str, &'static str)> {
    vec![
        ("basic", r#"u32:7 ber:300 str:"hello""#),
        ("ints", "u8:255 u16:65535 u64:18446744073709551615 i8:-128 i16:-1 i32:-2147483648 i64:-1 u32:0xdeadbeef"),
        ("strings", r#"berstr:"a\x00\"b" bytes:0a0b raw:cafe str:"tab\tcr\rnl\nnul\0bs\\""#),
        ("edges", r#"ber:18446744073709551615 ber:0 str:"" berstr:"\xc3\xa9" bytes: raw:00"#),
    ]
}

fn seeds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("seeds")
}

/// Compares `seeds` with `fuzz/seeds/<target>/`, or writes them there with
/// `IPROTO_WRITE_SEEDS` set.
fn check_files(target: &str, seeds: &Seeds) {
    let dir = seeds_dir().join(target);
    if std::env::var_os("IPROTO_WRITE_SEEDS").is_some() {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).expect("clear the old seeds");
        }
        std::fs::create_dir_all(&dir).expect("create the seed directory");
        for (name, bytes) in seeds {
            std::fs::write(dir.join(name), bytes).expect("write a seed");
        }
        return;
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let written: Vec<String> = seeds.keys().map(|k| k.to_string()).collect();
    assert_eq!(on_disk, written, "fuzz/seeds/{target} holds other files; regenerate with IPROTO_WRITE_SEEDS=1");
    for (name, bytes) in seeds {
        let file = std::fs::read(dir.join(name)).expect("read a seed");
        assert!(
            file == *bytes,
            "fuzz/seeds/{target}/{name} is stale (not what the current types give); regenerate with \
             IPROTO_WRITE_SEEDS=1 cargo test --test fuzz_seeds"
        );
    }
}

#[test]
fn unpack_derived_seeds_decode_as_the_types_they_were_built_for() {
    let mut files = Seeds::new();
    for (name, ty, mode, bytes) in unpack_derived_seeds() {
        // The target runs every type in both modes on every input; nothing may panic.
        let other = if mode == Mode::Fixed { Mode::Ber } else { Mode::Fixed };
        unpack_derived::all(&bytes, other);
        let shared = Bytes::from(bytes.clone());
        unpack_derived::check_shared::<Owned>(&shared, Mode::Fixed);
        unpack_derived::check_shared::<Owned>(&shared, Mode::Ber);
        let decoded = unpack_derived::all(&bytes, mode);
        if let Some(ty) = ty.strip_prefix('!') {
            // A hostile seed: the type it targets must reject it (without allocating what it
            // claims), reaching the target's error checks.
            assert!(!decoded.contains(&ty), "{name} decoded as {ty}");
            let err =
                iproto::encoding::unpack_mode::<Vec<Tuple>>(&bytes, mode).expect_err("4 billion tuples in 12 bytes");
            assert!(err.offset() <= bytes.len(), "{err}");
        } else {
            assert!(decoded.contains(&ty), "{name} does not decode as {ty} ({mode:?}); decoded as {decoded:?}");
            let rest = left_after(ty, &bytes, mode);
            assert_eq!(rest, 0, "{name}: {rest} bytes left after the {ty}");
        }
        files.insert(name, bytes);
    }
    check_files("unpack_derived", &files);
}

/// Decodes `bytes` as the type named `ty`; returns how many bytes are left after it.
fn left_after(ty: &str, bytes: &[u8], mode: Mode) -> usize {
    use iproto::encoding::unpack_mode;
    let rest = match ty {
        "Owned" => unpack_mode::<Owned>(bytes, mode).map(|(_, r)| r.len()),
        "Borrowed" => unpack_mode::<Borrowed>(bytes, mode).map(|(_, r)| r.len()),
        "AllBer" => unpack_mode::<AllBer>(bytes, mode).map(|(_, r)| r.len()),
        "Pair" => unpack_mode::<Pair>(bytes, mode).map(|(_, r)| r.len()),
        "Command" => unpack_mode::<Command>(bytes, mode).map(|(_, r)| r.len()),
        "Wide" => unpack_mode::<Wide>(bytes, mode).map(|(_, r)| r.len()),
        "Tag32" => unpack_mode::<Tag32>(bytes, mode).map(|(_, r)| r.len()),
        other => panic!("no seed type {other}"),
    };
    rest.unwrap_or_else(|e| panic!("{ty}: {e}"))
}

#[test]
fn noncanonical_ber_seed_packs_back_shorter() {
    let (_, _, mode, bytes) =
        unpack_derived_seeds().into_iter().find(|s| s.0 == "noncanonical_ber").expect("the seed exists");
    let (value, rest) = iproto::encoding::unpack_mode::<AllBer>(&bytes, mode).expect("decodes");
    assert!(rest.is_empty());
    assert_eq!(packed(&value, mode).len(), bytes.len() - 2, "the canonical form drops the two padding bytes");
}

#[test]
fn decode_stream_seeds_reach_the_outcome_they_were_built_for() {
    let mut files = Seeds::new();
    for (name, bytes, expected) in decode_stream_seeds() {
        let outcome = decode_stream::check(&bytes).unwrap_or_else(|| panic!("{name} is too short for the target"));
        let got = Expected { packets: outcome.packets.len(), too_large: outcome.too_large, leftover: outcome.leftover };
        assert_eq!(got, expected, "{name}");
        files.insert(name, bytes);
    }
    check_files("decode_stream", &files);
}

#[test]
fn pack_spec_seeds_parse_and_round_trip() {
    let mut files = Seeds::new();
    for (name, text) in pack_spec_seeds() {
        let spec = pack_spec::check(text.as_bytes()).unwrap_or_else(|| panic!("{name}: {text:?} does not parse"));
        assert!(!spec.values.is_empty(), "{name}");
        files.insert(name, text.as_bytes().to_vec());
    }
    check_files("pack_spec", &files);
}
