//! The `pack_spec` target's checks, shared with the test that writes its seeds
//! (`tests/fuzz_seeds.rs`), which runs them on each seed and asserts that it parses.

use iproto_cli::spec::{parse_pack_spec, parse_unpack_spec, PackSpec, Value};

/// The `--unpack` word that reads `v` back: `raw` needs its length, the rest are the word.
fn unpack_word(v: &Value) -> String {
    match v {
        Value::Raw(b) => format!("raw:{}", b.len()),
        other => other.word().to_owned(),
    }
}

/// Runs the target's checks on `data`; `Some` with the parsed spec when it parsed (and so its
/// round trips were checked).
pub fn check(data: &[u8]) -> Option<PackSpec> {
    let Ok(text) = std::str::from_utf8(data) else { return None };
    let spec = match parse_pack_spec(text) {
        Ok(spec) => spec,
        Err(e) => {
            let _ = e.to_string();
            return None;
        }
    };
    let printed: Vec<String> = spec.values.iter().map(|v| format!("{}:{}", v.word(), v.spec_value())).collect();
    let printed = printed.join(" ");
    let again = parse_pack_spec(&printed).unwrap_or_else(|e| panic!("{printed:?} from {text:?} does not parse: {e}"));
    assert_eq!(again, spec, "printing {text:?} as {printed:?} changed it");

    let payload = spec.encode();
    let words: Vec<String> = spec.values.iter().map(unpack_word).collect();
    let words = words.join(" ");
    let unpack = parse_unpack_spec(&words).unwrap_or_else(|e| panic!("unpack spec {words:?} does not parse: {e}"));
    let decoded =
        unpack.decode(&payload).unwrap_or_else(|e| panic!("{text:?} packed to {payload:02x?}, decoding failed: {e}"));
    assert_eq!(decoded.values, spec.values, "{text:?} does not decode back");
    assert!(decoded.rest.is_empty());
    Some(spec)
}
