//! `unpack` of a set of derived types (structs and enums, borrowed and owned fields) in both
//! modes, from arbitrary bytes. Any value that decodes must pack back to a canonical encoding
//! no longer than the bytes it came from, and that encoding must decode to the same value; an
//! error must render. Nothing may panic or allocate beyond the input.
#![no_main]

use bytes::Bytes;
use iproto::Mode;
use libfuzzer_sys::fuzz_target;

#[path = "unpack_derived_checks.rs"]
mod checks;
use checks::{all, check_shared, Owned};

fuzz_target!(|data: &[u8]| {
    all(data, Mode::Fixed);
    all(data, Mode::Ber);
    let shared = Bytes::copy_from_slice(data);
    check_shared::<Owned>(&shared, Mode::Fixed);
    check_shared::<Owned>(&shared, Mode::Ber);
});
