//! The CLI's `--pack` spec parser fed arbitrary text. A spec that parses must print back (each
//! value as `word:spec_value`) to a spec that parses to the same values, and its payload must
//! decode, through an `--unpack` spec of the same words, to the same values with nothing left.
//! Errors must render. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "pack_spec_checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    checks::check(data);
});
