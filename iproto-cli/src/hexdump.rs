//! Hex in and out: [`parse_hex`] reads the bodies users type (`0a0b`, `0a 0b`, `0x0a0b`),
//! [`dump`] prints replies as `xxd`-style lines with offsets and ASCII.

use std::fmt::Write as _;

/// Why a hex string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HexError {
    /// A character that is not a hex digit or whitespace.
    #[error("invalid hex character {found:?} at position {position}")]
    InvalidChar {
        /// The character.
        found: char,
        /// 1-based position in the input.
        position: usize,
    },
    /// An odd number of hex digits.
    #[error("odd number of hex digits ({count}); every byte needs two")]
    OddLength {
        /// Digits seen.
        count: usize,
    },
}

/// Parses hex digits into bytes. Whitespace between digits is ignored, as is one leading
/// `0x`; both cases are accepted.
///
/// ```
/// assert_eq!(iproto_cli::hexdump::parse_hex("0x0a 0B\nff").unwrap(), [0x0a, 0x0b, 0xff]);
/// assert!(iproto_cli::hexdump::parse_hex("abc").is_err());
/// ```
pub fn parse_hex(text: &str) -> Result<Vec<u8>, HexError> {
    let trimmed = text.trim_start();
    let skipped = text.len() - trimmed.len();
    let (body, offset) = match trimmed.strip_prefix("0x").or_else(|| trimmed.strip_prefix("0X")) {
        Some(rest) => (rest, skipped + 2),
        None => (trimmed, skipped),
    };
    let mut out = Vec::with_capacity(body.len() / 2);
    let mut high: Option<u8> = None;
    let mut count = 0;
    for (i, c) in body.char_indices() {
        if c.is_whitespace() {
            continue;
        }
        let Some(d) = c.to_digit(16) else {
            let position = text[..offset + i].chars().count() + 1;
            return Err(HexError::InvalidChar { found: c, position });
        };
        count += 1;
        match high.take() {
            None => high = Some(d as u8),
            Some(h) => out.push(h << 4 | d as u8),
        }
    }
    if high.is_some() {
        return Err(HexError::OddLength { count });
    }
    Ok(out)
}

/// Formats `data` as `xxd`-style lines: offset, 16 bytes in hex, the printable ASCII.
///
/// ```
/// let text = iproto_cli::hexdump::dump(b"OK\x00");
/// assert_eq!(text, "00000000  4f 4b 00                                          |OK.|\n");
/// ```
pub fn dump(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(16) * 78);
    for (line, chunk) in data.chunks(16).enumerate() {
        let _ = write!(out, "{:08x} ", line * 16);
        for i in 0..16 {
            if i == 8 {
                out.push(' ');
            }
            match chunk.get(i) {
                Some(b) => {
                    let _ = write!(out, " {b:02x}");
                }
                None => out.push_str("   "),
            }
        }
        out.push_str("  |");
        out.extend(chunk.iter().map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '.' }));
        out.push_str("|\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse_hex("").unwrap(), Vec::<u8>::new());
        assert_eq!(parse_hex("  0Xdead BEEF ").unwrap(), [0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(parse_hex("0 a").unwrap(), [0x0a]);
    }

    #[test]
    fn rejects_bad_hex_with_position() {
        assert_eq!(parse_hex("0a0g").unwrap_err(), HexError::InvalidChar { found: 'g', position: 4 });
        assert_eq!(parse_hex("0x0é").unwrap_err(), HexError::InvalidChar { found: 'é', position: 4 });
        assert_eq!(parse_hex("0a0").unwrap_err(), HexError::OddLength { count: 3 });
    }

    #[test]
    fn dump_lines() {
        let data: Vec<u8> = (0u8..20).collect();
        let text = dump(&data);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], "00000000  00 01 02 03 04 05 06 07  08 09 0a 0b 0c 0d 0e 0f  |................|");
        assert!(lines[1].starts_with("00000010  10 11 12 13 "));
        assert!(lines[1].ends_with("|....|"));
        assert_eq!(dump(&[]), "");
    }
}
