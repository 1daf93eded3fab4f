//! The CLI's `--pack` spec parser fed arbitrary text. A spec that parses must print back (each
//! value as `word:spec_value`) to a spec that parses to the same values, and its payload must
//! decode, through an `--unpack` spec of the same words, to the same values with nothing left.
//! Errors must render. Nothing may panic.
#![no_main]

use iproto_cli::spec::{parse_pack_spec, parse_unpack_spec, Value};
use libfuzzer_sys::fuzz_target;

/// The `--unpack` word that reads `v` back: `raw` needs its length, the rest are the word.
fn unpack_word(v: &Value) -> String {
    match v {
        Value::Raw(b) => format!("raw:{}", b.len()),
        other => other.word().to_owned(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let spec = match parse_pack_spec(text) {
        Ok(spec) => spec,
        Err(e) => {
            let _ = e.to_string();
            return;
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
});
