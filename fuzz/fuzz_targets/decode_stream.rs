//! The packet decoder fed an arbitrary byte stream in arbitrary chunkings: whatever the
//! chunking, it yields the same packets and the same verdict as decoding the stream in one go,
//! the packets re-encode to exactly the bytes consumed, and a hostile length never makes the
//! buffer grow beyond the bytes actually fed.
//!
//! Input layout: byte 0 picks the size limit, bytes 1..3 seed the chunk sizes, the rest is the
//! stream.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "decode_stream_checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    checks::check(data);
});
