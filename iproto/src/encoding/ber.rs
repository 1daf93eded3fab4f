//! BER integers as Perl `pack 'w'`: big-endian base 128, the high bit set on every byte but the
//! last, as few bytes as possible (`0` is `00`). Not LEB128: the byte order is the reverse.

use bytes::BufMut;

use super::{DecodeError, DecodeErrorKind};

/// The most bytes a BER encoding of a `u64` takes.
pub const MAX_LEN: usize = 10;

/// Number of bytes `value` takes in BER.
#[inline]
pub fn encoded_len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Writes `value` in BER.
///
/// ```
/// let mut out = Vec::new();
/// iproto::encoding::ber::put(&mut out, 16384);
/// assert_eq!(out, [0x81, 0x80, 0x00]);
/// ```
#[inline]
pub fn put<B: BufMut>(buf: &mut B, value: u64) {
    if value < 0x80 {
        buf.put_u8(value as u8);
        return;
    }
    let n = encoded_len(value);
    let mut tmp = [0u8; MAX_LEN];
    for (i, slot) in tmp[..n].iter_mut().enumerate() {
        let shift = 7 * (n - 1 - i);
        let group = ((value >> shift) & 0x7f) as u8;
        *slot = if i + 1 == n { group } else { group | 0x80 };
    }
    buf.put_slice(&tmp[..n]);
}

/// Reads a BER integer from the front of `input` that must fit in `bits` bits (16, 32 or 64),
/// using at most `bits / 7 + 1` bytes. Leading `0x80` groups (non-canonical) are accepted.
///
/// Returns the value and the number of bytes used. `offset` is only used for errors.
#[inline]
pub fn get(input: &[u8], bits: u32, target: &'static str, offset: usize) -> Result<(u64, usize), DecodeError> {
    // Fast path: a u64 accumulator that cannot overflow while its top 7 bits are clear. Every
    // unusual outcome (error or a 10-byte u64 near the limit) is left to the exact slow path.
    let max_bytes = (bits / 7 + 1) as usize;
    let mut acc: u64 = 0;
    for (i, &b) in input.iter().take(max_bytes).enumerate() {
        if acc >> 57 != 0 {
            break;
        }
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if bits < 64 && acc >> bits != 0 {
                break;
            }
            return Ok((acc, i + 1));
        }
    }
    get_slow(input, bits, target, offset)
}

/// [`get`] with a 128-bit accumulator, so that overflow errors report the decoded value.
#[cold]
fn get_slow(input: &[u8], bits: u32, target: &'static str, offset: usize) -> Result<(u64, usize), DecodeError> {
    let max_bytes = (bits / 7 + 1) as usize;
    let mut acc: u128 = 0;
    for (i, &b) in input.iter().take(max_bytes).enumerate() {
        acc = (acc << 7) | u128::from(b & 0x7f);
        if b & 0x80 == 0 {
            if acc > (u128::MAX >> (128 - bits)) {
                return Err(DecodeError::new(DecodeErrorKind::Overflow { value: acc, target }, offset));
            }
            return Ok((acc as u64, i + 1));
        }
    }
    if input.len() < max_bytes {
        Err(DecodeError::new(
            DecodeErrorKind::UnexpectedEnd { needed: input.len() + 1, remaining: input.len() },
            offset,
        ))
    } else {
        Err(DecodeError::new(DecodeErrorKind::BerTooLong { max_bytes }, offset))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn enc(v: u64) -> String {
        let mut out = Vec::new();
        put(&mut out, v);
        hex::encode(out)
    }

    /// Perl `pack 'w'` reference vectors (docs/protocol.md, Serialization), shared with the pack tests.
    pub(crate) const GOLDEN: &[(u64, &str)] = &[
        (0, "00"),
        (5, "05"),
        (127, "7f"),
        (128, "8100"),
        (255, "817f"),
        (300, "822c"),
        (16383, "ff7f"),
        (16384, "818000"),
        (100000, "868d20"),
        (u32::MAX as u64, "8fffffff7f"),
        (1 << 63, "81808080808080808000"),
        (u64::MAX, "81ffffffffffffffff7f"),
    ];

    #[test]
    fn ber_golden_vectors() {
        // Perl pack 'w' vectors from docs/protocol.md, Serialization.
        let cases = GOLDEN;
        for &(v, h) in cases {
            assert_eq!(enc(v), h, "encode {v}");
            let bytes = hex::decode(h).unwrap();
            assert_eq!(get(&bytes, 64, "u64", 0).unwrap(), (v, bytes.len()), "decode {h}");
            assert_eq!(encoded_len(v), bytes.len());
        }
    }

    #[test]
    fn ber_limits_of_each_width() {
        // `u16` allows 3 bytes, u32 5, u64 10; overflow of the target width is an error.
        assert!(matches!(
            get(&[0x84, 0x80, 0x00], 16, "u16", 0).unwrap_err().kind(),
            DecodeErrorKind::Overflow { value: 65536, .. }
        ));
        assert!(matches!(
            get(&[0x90, 0x80, 0x80, 0x80, 0x00], 32, "u32", 0).unwrap_err().kind(),
            DecodeErrorKind::Overflow { .. }
        ));
        // 2^64 in ten bytes is rejected instead of silently truncated.
        let two64 = hex::decode("82808080808080808000").unwrap();
        assert!(matches!(get(&two64, 64, "u64", 0).unwrap_err().kind(), DecodeErrorKind::Overflow { .. }));
        assert!(matches!(
            get(&[0xff; 11], 64, "u64", 0).unwrap_err().kind(),
            DecodeErrorKind::BerTooLong { max_bytes: 10 }
        ));
        assert!(matches!(get(&[0x81], 32, "u32", 3).unwrap_err().kind(), DecodeErrorKind::UnexpectedEnd { .. }));
        // Non-canonical leading 0x80 groups are accepted.
        assert_eq!(get(&[0x80, 0x80, 0x01], 16, "u16", 0).unwrap(), (1, 3));
    }

    #[test]
    fn fast_path_agrees_with_slow_path() {
        // The u64 fast path must give the 128-bit path's answer on every input, including
        // 10-byte u64 encodings at and past 2^64.
        let mut inputs: Vec<Vec<u8>> =
            vec![hex::decode("81ffffffffffffffff7f").unwrap(), vec![0x82; 9], vec![0x80; 12]];
        inputs[1].push(0x00);
        for first in [0x80u8, 0x81, 0x82, 0xff] {
            for last in [0x00u8, 0x7f, 0x80] {
                for len in 1..12 {
                    let mut v = vec![first];
                    v.extend(std::iter::repeat_n(0xffu8, len - 1));
                    v.push(last);
                    inputs.push(v);
                }
            }
        }
        for input in &inputs {
            for (bits, target) in [(16, "u16"), (32, "u32"), (64, "u64")] {
                assert_eq!(get(input, bits, target, 0), get_slow(input, bits, target, 0), "{input:02x?} as {target}");
            }
        }
    }
}
