//! The `--pack` / `--unpack` spec language: a line of words such as `u32:7 ber:300 str:"hi"`
//! that describes a payload field by field. Parsing never panics (it is fuzzed); encoding and
//! decoding go through the library's `IprotoPack` / `IprotoUnpack` impls.
//!
//! Words (fixed-width little-endian unless `ber`):
//!
//! | word | wire form | value syntax |
//! |---|---|---|
//! | `u8 u16 u32 u64 i8 i16 i32 i64` | fixed width | decimal or `0x` hex, `-` for signed |
//! | `ber` | BER (Perl `pack 'w'`) u64 | decimal or `0x` hex |
//! | `str` | u32 length + bytes | `"quoted"` with `\" \\ \n \r \t \0 \xNN` escapes |
//! | `berstr` | BER length + bytes | as `str` |
//! | `bytes` | u32 length + bytes | hex digits |
//! | `raw` | bytes, no length | hex digits; in an unpack spec `raw` takes the rest, `raw:N` N bytes |
//!
//! ```
//! use iproto_cli::spec::{parse_pack_spec, parse_unpack_spec};
//!
//! let body = parse_pack_spec(r#"u32:7 ber:300 str:"hi""#).unwrap().encode();
//! assert_eq!(body, [7, 0, 0, 0, 0x82, 0x2c, 2, 0, 0, 0, b'h', b'i']);
//!
//! let decoded = parse_unpack_spec("u32 ber str").unwrap().decode(&body).unwrap();
//! let lines: Vec<String> = decoded.values.iter().map(|v| v.to_string()).collect();
//! assert_eq!(lines, ["u32 7", "ber 300", "str \"hi\""]);
//! ```

use std::fmt;

use iproto::encoding::{ber, DecodeError, IprotoPack, IprotoUnpack, Mode, Reader};

/// The type of one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One byte.
    U8,
    /// Fixed little-endian u16.
    U16,
    /// Fixed little-endian u32.
    U32,
    /// Fixed little-endian u64.
    U64,
    /// One byte, two's complement.
    I8,
    /// Fixed little-endian i16.
    I16,
    /// Fixed little-endian i32.
    I32,
    /// Fixed little-endian i64.
    I64,
    /// BER-encoded u64.
    Ber,
    /// u32 length, then the bytes.
    Str,
    /// BER length, then the bytes.
    BerStr,
    /// u32 length, then the bytes (shown as hex).
    Bytes,
    /// Bytes without a length: in an unpack spec, `None` takes the rest of the input.
    Raw(Option<usize>),
}

impl Kind {
    /// The spec word for this kind.
    pub fn word(self) -> &'static str {
        match self {
            Kind::U8 => "u8",
            Kind::U16 => "u16",
            Kind::U32 => "u32",
            Kind::U64 => "u64",
            Kind::I8 => "i8",
            Kind::I16 => "i16",
            Kind::I32 => "i32",
            Kind::I64 => "i64",
            Kind::Ber => "ber",
            Kind::Str => "str",
            Kind::BerStr => "berstr",
            Kind::Bytes => "bytes",
            Kind::Raw(_) => "raw",
        }
    }

    fn from_word(word: &str) -> Option<Kind> {
        Some(match word {
            "u8" => Kind::U8,
            "u16" => Kind::U16,
            "u32" => Kind::U32,
            "u64" => Kind::U64,
            "i8" => Kind::I8,
            "i16" => Kind::I16,
            "i32" => Kind::I32,
            "i64" => Kind::I64,
            "ber" => Kind::Ber,
            "str" => Kind::Str,
            "berstr" => Kind::BerStr,
            "bytes" => Kind::Bytes,
            "raw" => Kind::Raw(None),
            _ => return None,
        })
    }
}

/// One field with its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `u8`
    U8(u8),
    /// `u16`
    U16(u16),
    /// `u32`
    U32(u32),
    /// `u64`
    U64(u64),
    /// `i8`
    I8(i8),
    /// `i16`
    I16(i16),
    /// `i32`
    I32(i32),
    /// `i64`
    I64(i64),
    /// `ber`
    Ber(u64),
    /// `str` (not necessarily UTF-8 when decoded from the wire)
    Str(Vec<u8>),
    /// `berstr`
    BerStr(Vec<u8>),
    /// `bytes`
    Bytes(Vec<u8>),
    /// `raw`
    Raw(Vec<u8>),
}

impl Value {
    /// The spec word of this value.
    pub fn word(&self) -> &'static str {
        match self {
            Value::U8(_) => "u8",
            Value::U16(_) => "u16",
            Value::U32(_) => "u32",
            Value::U64(_) => "u64",
            Value::I8(_) => "i8",
            Value::I16(_) => "i16",
            Value::I32(_) => "i32",
            Value::I64(_) => "i64",
            Value::Ber(_) => "ber",
            Value::Str(_) => "str",
            Value::BerStr(_) => "berstr",
            Value::Bytes(_) => "bytes",
            Value::Raw(_) => "raw",
        }
    }

    /// Appends the wire form of the value to `buf`, through the library's pack impls.
    pub fn encode_into(&self, buf: &mut Vec<u8>) {
        // Packing into a Vec cannot fail: lengths here come from in-memory buffers far below
        // u32::MAX (spec strings are command-line arguments).
        let r = match self {
            Value::U8(v) => v.pack(buf, Mode::Fixed),
            Value::U16(v) => v.pack(buf, Mode::Fixed),
            Value::U32(v) => v.pack(buf, Mode::Fixed),
            Value::U64(v) => v.pack(buf, Mode::Fixed),
            Value::I8(v) => v.pack(buf, Mode::Fixed),
            Value::I16(v) => v.pack(buf, Mode::Fixed),
            Value::I32(v) => v.pack(buf, Mode::Fixed),
            Value::I64(v) => v.pack(buf, Mode::Fixed),
            Value::Ber(v) => {
                ber::put(buf, *v);
                Ok(())
            }
            Value::Str(b) | Value::Bytes(b) => b.as_slice().pack(buf, Mode::Fixed),
            Value::BerStr(b) => b.as_slice().pack(buf, Mode::Ber),
            Value::Raw(b) => {
                buf.extend_from_slice(b);
                Ok(())
            }
        };
        debug_assert!(r.is_ok(), "packing into a Vec failed: {r:?}");
    }

    /// The value as it is written after `word:` in a pack spec, so that
    /// `format!("{}:{}", v.word(), v.spec_value())` parses back to `v`.
    pub fn spec_value(&self) -> String {
        match self {
            Value::U8(v) => v.to_string(),
            Value::U16(v) => v.to_string(),
            Value::U32(v) => v.to_string(),
            Value::U64(v) => v.to_string(),
            Value::I8(v) => v.to_string(),
            Value::I16(v) => v.to_string(),
            Value::I32(v) => v.to_string(),
            Value::I64(v) => v.to_string(),
            Value::Ber(v) => v.to_string(),
            Value::Str(b) | Value::BerStr(b) => quote(b),
            Value::Bytes(b) | Value::Raw(b) => hex::encode(b),
        }
    }
}

/// `word value`, the line `iproto decode` prints, e.g. `u32 7` or `str "hello"`.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self.spec_value();
        if value.is_empty() {
            f.write_str(self.word())
        } else {
            write!(f, "{} {}", self.word(), value)
        }
    }
}

/// Quotes bytes as a spec string: printable ASCII as is, `"` and `\` escaped, the rest as
/// `\n`, `\r`, `\t`, `\0` or `\xNN`. Valid UTF-8 beyond ASCII is kept as is.
pub fn quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\0' => out.push_str("\\0"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push('"');
    out
}

/// A parsed `--pack` spec: the fields of a payload with their values.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PackSpec {
    /// The fields, in order.
    pub values: Vec<Value>,
}

impl PackSpec {
    /// The payload bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        for v in &self.values {
            v.encode_into(&mut buf);
        }
        buf
    }
}

/// A parsed `--unpack` spec: the field types to read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnpackSpec {
    /// The field types, in order.
    pub kinds: Vec<Kind>,
}

/// The result of decoding a payload with an [`UnpackSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// One value per spec word.
    pub values: Vec<Value>,
    /// Bytes left after the last word.
    pub rest: Vec<u8>,
}

impl UnpackSpec {
    /// Decodes `data` field by field through the library's unpack impls.
    pub fn decode(&self, data: &[u8]) -> Result<Decoded, SpecError> {
        let mut r = Reader::new(data);
        let mut values = Vec::with_capacity(self.kinds.len());
        for (index, &kind) in self.kinds.iter().enumerate() {
            let v = decode_one(&mut r, kind).map_err(|source| SpecError::Decode {
                index: index + 1,
                word: kind.word(),
                source,
            })?;
            values.push(v);
        }
        Ok(Decoded { values, rest: r.rest().to_vec() })
    }
}

fn decode_one(r: &mut Reader<'_>, kind: Kind) -> Result<Value, DecodeError> {
    Ok(match kind {
        Kind::U8 => Value::U8(u8::unpack(r, Mode::Fixed)?),
        Kind::U16 => Value::U16(u16::unpack(r, Mode::Fixed)?),
        Kind::U32 => Value::U32(u32::unpack(r, Mode::Fixed)?),
        Kind::U64 => Value::U64(u64::unpack(r, Mode::Fixed)?),
        Kind::I8 => Value::I8(i8::unpack(r, Mode::Fixed)?),
        Kind::I16 => Value::I16(i16::unpack(r, Mode::Fixed)?),
        Kind::I32 => Value::I32(i32::unpack(r, Mode::Fixed)?),
        Kind::I64 => Value::I64(i64::unpack(r, Mode::Fixed)?),
        Kind::Ber => Value::Ber(u64::unpack(r, Mode::Ber)?),
        Kind::Str => Value::Str(<&[u8]>::unpack(r, Mode::Fixed)?.to_vec()),
        Kind::BerStr => Value::BerStr(<&[u8]>::unpack(r, Mode::Ber)?.to_vec()),
        Kind::Bytes => Value::Bytes(<&[u8]>::unpack(r, Mode::Fixed)?.to_vec()),
        Kind::Raw(None) => Value::Raw(r.take(r.remaining())?.to_vec()),
        Kind::Raw(Some(n)) => Value::Raw(r.take(n)?.to_vec()),
    })
}

/// Why a spec could not be parsed or a payload not decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// A word that is not in the language.
    #[error(
        "unknown spec word {word:?} at column {column} (known: u8 u16 u32 u64 i8 i16 i32 i64 ber str berstr bytes raw)"
    )]
    UnknownWord {
        /// The word.
        word: String,
        /// 1-based column of its start.
        column: usize,
    },
    /// A pack-spec word without `:value`.
    #[error("spec word {word:?} at column {column} needs a value, as in {word}:{example}")]
    MissingValue {
        /// The word.
        word: &'static str,
        /// 1-based column.
        column: usize,
        /// An example value.
        example: &'static str,
    },
    /// An unpack-spec word with a value.
    #[error("spec word {word:?} at column {column} takes no value in an unpack spec")]
    UnexpectedValue {
        /// The word.
        word: &'static str,
        /// 1-based column.
        column: usize,
    },
    /// A value that is not valid for its word.
    #[error("bad value {value:?} for {word} at column {column}: {reason}")]
    BadValue {
        /// The word.
        word: &'static str,
        /// The value text.
        value: String,
        /// 1-based column of the value.
        column: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A quoted string without its closing quote.
    #[error("unterminated string starting at column {column}")]
    UnterminatedString {
        /// 1-based column of the opening quote.
        column: usize,
    },
    /// Something other than a space after a word or value.
    #[error("unexpected character {found:?} at column {column}")]
    UnexpectedChar {
        /// The character.
        found: char,
        /// 1-based column.
        column: usize,
    },
    /// `raw` without a length that is not the last word of an unpack spec.
    #[error("raw without a length takes the rest of the input, so it must be the last word (or use raw:N)")]
    RawNotLast,
    /// A payload did not decode with the spec.
    #[error("field {index} ({word}): {source}")]
    Decode {
        /// 1-based index of the word.
        index: usize,
        /// The word.
        word: &'static str,
        /// The library's decode error.
        source: DecodeError,
    },
}

/// One lexed word: `word` or `word:value`, with 1-based columns.
struct Token<'a> {
    word: &'a str,
    column: usize,
    value: Option<(TokenValue<'a>, usize)>,
}

enum TokenValue<'a> {
    Bare(&'a str),
    Quoted(Vec<u8>),
}

impl TokenValue<'_> {
    fn text(&self) -> String {
        match self {
            TokenValue::Bare(s) => (*s).to_owned(),
            TokenValue::Quoted(b) => quote(b),
        }
    }
}

/// Splits a spec into tokens: words separated by whitespace, a quoted value may hold spaces.
fn lex(spec: &str) -> Result<Vec<Token<'_>>, SpecError> {
    let mut tokens = Vec::new();
    let mut chars = spec.char_indices().peekable();
    let column = |byte: usize| spec[..byte].chars().count() + 1;
    loop {
        while chars.next_if(|&(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = chars.peek() else { break };
        while chars.next_if(|&(_, c)| !c.is_whitespace() && c != ':' && c != '"').is_some() {}
        let end = chars.peek().map_or(spec.len(), |&(i, _)| i);
        let word = &spec[start..end];
        if word.is_empty() {
            // A value marker or quote with no word before it.
            let (i, c) = chars.peek().copied().unwrap_or((start, ' '));
            return Err(SpecError::UnexpectedChar { found: c, column: column(i) });
        }
        let mut value = None;
        if chars.next_if(|&(_, c)| c == ':').is_some() {
            let vstart = chars.peek().map_or(spec.len(), |&(i, _)| i);
            if chars.next_if(|&(_, c)| c == '"').is_some() {
                let mut bytes = Vec::new();
                let mut closed = false;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => {
                            let Some((_, e)) = chars.next() else { break };
                            match e {
                                '"' => bytes.push(b'"'),
                                '\\' => bytes.push(b'\\'),
                                'n' => bytes.push(b'\n'),
                                'r' => bytes.push(b'\r'),
                                't' => bytes.push(b'\t'),
                                '0' => bytes.push(0),
                                'x' => {
                                    let hi = chars.next().and_then(|(_, c)| c.to_digit(16));
                                    let lo = chars.next().and_then(|(_, c)| c.to_digit(16));
                                    match (hi, lo) {
                                        (Some(hi), Some(lo)) => bytes.push((hi * 16 + lo) as u8),
                                        _ => {
                                            return Err(SpecError::BadValue {
                                                word: "str",
                                                value: spec[vstart..].to_owned(),
                                                column: column(i),
                                                reason: "\\x needs two hex digits".into(),
                                            })
                                        }
                                    }
                                }
                                other => {
                                    return Err(SpecError::BadValue {
                                        word: "str",
                                        value: spec[vstart..].to_owned(),
                                        column: column(i),
                                        reason: format!("unknown escape \\{other}"),
                                    })
                                }
                            }
                        }
                        c => {
                            let mut buf = [0u8; 4];
                            bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                    }
                }
                if !closed {
                    return Err(SpecError::UnterminatedString { column: column(vstart) });
                }
                value = Some((TokenValue::Quoted(bytes), column(vstart)));
            } else {
                while chars.next_if(|&(_, c)| !c.is_whitespace() && c != '"').is_some() {}
                let vend = chars.peek().map_or(spec.len(), |&(i, _)| i);
                value = Some((TokenValue::Bare(&spec[vstart..vend]), column(vstart)));
            }
        }
        if let Some(&(i, c)) = chars.peek() {
            if !c.is_whitespace() {
                return Err(SpecError::UnexpectedChar { found: c, column: column(i) });
            }
        }
        tokens.push(Token { word, column: column(start), value });
    }
    Ok(tokens)
}

fn kind_of(token: &Token<'_>) -> Result<Kind, SpecError> {
    Kind::from_word(token.word)
        .ok_or_else(|| SpecError::UnknownWord { word: token.word.to_owned(), column: token.column })
}

/// Parses a `--pack` spec such as `u32:7 ber:300 str:"hello" bytes:0a0b`.
///
/// An empty spec is an empty payload. Never panics, whatever the input.
pub fn parse_pack_spec(spec: &str) -> Result<PackSpec, SpecError> {
    let mut values = Vec::new();
    for token in lex(spec)? {
        let kind = kind_of(&token)?;
        let Some((value, vcol)) = &token.value else {
            return Err(SpecError::MissingValue { word: kind.word(), column: token.column, example: example(kind) });
        };
        let bad =
            |reason: String| SpecError::BadValue { word: kind.word(), value: value.text(), column: *vcol, reason };
        let v = match (kind, value) {
            (Kind::Str, TokenValue::Quoted(b)) => Value::Str(b.clone()),
            (Kind::BerStr, TokenValue::Quoted(b)) => Value::BerStr(b.clone()),
            (_, TokenValue::Quoted(_)) => return Err(bad("only str and berstr take a quoted value".into())),
            (kind, TokenValue::Bare(text)) => parse_bare(kind, text).map_err(bad)?,
        };
        values.push(v);
    }
    Ok(PackSpec { values })
}

fn example(kind: Kind) -> &'static str {
    match kind {
        Kind::Str | Kind::BerStr => "\"hello\"",
        Kind::Bytes | Kind::Raw(_) => "0a0b",
        Kind::I8 | Kind::I16 | Kind::I32 | Kind::I64 => "-7",
        _ => "7",
    }
}

fn parse_bare(kind: Kind, text: &str) -> Result<Value, String> {
    Ok(match kind {
        Kind::U8 => Value::U8(parse_int(text)?),
        Kind::U16 => Value::U16(parse_int(text)?),
        Kind::U32 => Value::U32(parse_int(text)?),
        Kind::U64 => Value::U64(parse_int(text)?),
        Kind::I8 => Value::I8(parse_int(text)?),
        Kind::I16 => Value::I16(parse_int(text)?),
        Kind::I32 => Value::I32(parse_int(text)?),
        Kind::I64 => Value::I64(parse_int(text)?),
        Kind::Ber => Value::Ber(parse_int(text)?),
        Kind::Bytes => Value::Bytes(crate::hexdump::parse_hex(text).map_err(|e| e.to_string())?),
        Kind::Raw(_) => Value::Raw(crate::hexdump::parse_hex(text).map_err(|e| e.to_string())?),
        Kind::Str | Kind::BerStr => return Err("strings are quoted, as in str:\"hello\"".into()),
    })
}

/// Parses a decimal or `0x` hex integer (with `-` for signed types) that must fit `T`.
fn parse_int<T: TryFrom<i128>>(text: &str) -> Result<T, String> {
    let (neg, digits) = match text.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, text),
    };
    let magnitude = match digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => digits.parse::<u64>(),
    }
    .map_err(|e| format!("not an integer ({e})"))?;
    let v = if neg { -i128::from(magnitude) } else { i128::from(magnitude) };
    T::try_from(v).map_err(|_| "out of range for the type".to_owned())
}

/// Parses an `--unpack` spec such as `u32 ber str raw`.
///
/// Words take no values, except `raw:N` (N bytes); a plain `raw` takes the rest of the input
/// and must come last. Never panics, whatever the input.
pub fn parse_unpack_spec(spec: &str) -> Result<UnpackSpec, SpecError> {
    let tokens = lex(spec)?;
    let mut kinds = Vec::with_capacity(tokens.len());
    for token in &tokens {
        let kind = match (kind_of(token)?, &token.value) {
            (kind, None) => kind,
            (Kind::Raw(_), Some((TokenValue::Bare(n), vcol))) => match n.parse::<usize>() {
                Ok(n) => Kind::Raw(Some(n)),
                Err(e) => {
                    return Err(SpecError::BadValue {
                        word: "raw",
                        value: (*n).to_owned(),
                        column: *vcol,
                        reason: format!("raw:N needs a byte count ({e})"),
                    })
                }
            },
            (kind, Some(_)) => return Err(SpecError::UnexpectedValue { word: kind.word(), column: token.column }),
        };
        kinds.push(kind);
    }
    if kinds[..kinds.len().saturating_sub(1)].contains(&Kind::Raw(None)) {
        return Err(SpecError::RawNotLast);
    }
    Ok(UnpackSpec { kinds })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pack(spec: &str) -> String {
        hex::encode(parse_pack_spec(spec).unwrap().encode())
    }

    #[test]
    fn packs_each_word() {
        assert_eq!(pack("u8:255 i8:-1"), "ffff");
        assert_eq!(pack("u16:258 i16:-1234"), "02012efb");
        assert_eq!(pack("i32:-1234567890"), "2efd69b6");
        assert_eq!(pack("i64:-1234567890123456"), "404575c32a9dfbff");
        assert_eq!(pack("u32:0x0102 u64:1"), "020100000100000000000000");
        assert_eq!(pack("ber:300 ber:0 ber:18446744073709551615"), "822c0081ffffffffffffffff7f");
        assert_eq!(pack(r#"str:"   ""#), "03000000202020");
        assert_eq!(pack(r#"berstr:"  ""#), "022020");
        assert_eq!(pack("bytes:0a0b raw:cafe"), "020000000a0bcafe");
        assert_eq!(pack(""), "");
        assert_eq!(pack("  u8:1\t u8:2 "), "0102");
    }

    #[test]
    fn string_escapes() {
        let spec = parse_pack_spec(r#"str:"a \"b\" \\ \n\x00\x7f é""#).unwrap();
        assert_eq!(spec.values, [Value::Str("a \"b\" \\ \n\0\x7f é".as_bytes().to_vec())]);
        assert_eq!(quote(b"a\"\\\n\xff"), r#""a\"\\\n\xff""#);
    }

    #[test]
    fn bad_specs_say_why() {
        let err = |s: &str| parse_pack_spec(s).unwrap_err().to_string();
        assert!(err("u33:1").contains("unknown spec word \"u33\""));
        assert!(err("u32").contains("needs a value"));
        assert!(err("u8:256").contains("out of range"));
        assert!(err("i8:-129").contains("out of range"));
        assert!(err("u32:-1").contains("out of range"));
        assert!(err("u32:abc").contains("not an integer"));
        assert!(err("str:hello").contains("quoted"));
        assert!(err("u32:\"1\"").contains("only str"));
        assert!(err("bytes:0g").contains("bad value"));
        assert!(err("str:\"abc").contains("unterminated"));
        assert!(err("str:\"a\\q\"").contains("unknown escape"));
        assert!(err("str:\"a\"b").contains("unexpected character 'b'"));
        assert!(err(":7").contains("unexpected character ':'"));
        let uerr = |s: &str| parse_unpack_spec(s).unwrap_err().to_string();
        assert!(uerr("u32:7").contains("takes no value"));
        assert!(uerr("raw u32").contains("last word"));
        assert!(uerr("raw:x").contains("byte count"));
    }

    #[test]
    fn decodes_with_rest_and_errors() {
        let spec = parse_unpack_spec("u16 raw:1").unwrap();
        let d = spec.decode(&[1, 0, 9, 7, 7]).unwrap();
        assert_eq!(d.values, [Value::U16(1), Value::Raw(vec![9])]);
        assert_eq!(d.rest, [7, 7]);
        let e = parse_unpack_spec("u8 u32").unwrap().decode(&[1, 2]).unwrap_err();
        assert!(matches!(e, SpecError::Decode { index: 2, word: "u32", .. }), "{e}");
        let e = parse_unpack_spec("str").unwrap().decode(&[9, 0, 0, 0, b'a']).unwrap_err();
        assert!(e.to_string().contains("length 9 exceeds"), "{e}");
        let d = parse_unpack_spec("raw").unwrap().decode(&[1, 2]).unwrap();
        assert_eq!((d.values, d.rest), (vec![Value::Raw(vec![1, 2])], vec![]));
    }

    #[test]
    fn display_lines() {
        let d = parse_unpack_spec("u32 i8 str bytes").unwrap();
        let body = parse_pack_spec(r#"u32:7 i8:-2 str:"hi" bytes:"#).unwrap().encode();
        let lines: Vec<String> = d.decode(&body).unwrap().values.iter().map(ToString::to_string).collect();
        assert_eq!(lines, ["u32 7", "i8 -2", "str \"hi\"", "bytes"]);
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let bytes = || proptest::collection::vec(any::<u8>(), 0..16);
        prop_oneof![
            any::<u8>().prop_map(Value::U8),
            any::<u16>().prop_map(Value::U16),
            any::<u32>().prop_map(Value::U32),
            any::<u64>().prop_map(Value::U64),
            any::<i8>().prop_map(Value::I8),
            any::<i16>().prop_map(Value::I16),
            any::<i32>().prop_map(Value::I32),
            any::<i64>().prop_map(Value::I64),
            any::<u64>().prop_map(Value::Ber),
            bytes().prop_map(Value::Str),
            bytes().prop_map(Value::BerStr),
            bytes().prop_map(Value::Bytes),
        ]
    }

    fn unpack_kind(v: &Value) -> Kind {
        match v {
            Value::Raw(_) => Kind::Raw(None),
            other => Kind::from_word(other.word()).unwrap(),
        }
    }

    proptest! {
        #[test]
        fn pack_unpack_round_trip(values in proptest::collection::vec(arb_value(), 0..8), tail in proptest::collection::vec(any::<u8>(), 0..8)) {
            let mut values = values;
            values.push(Value::Raw(tail));
            let text: Vec<String> = values.iter().map(|v| format!("{}:{}", v.word(), v.spec_value())).collect();
            let pack_spec = parse_pack_spec(&text.join(" ")).unwrap();
            prop_assert_eq!(&pack_spec.values, &values);
            let words: Vec<&str> = values.iter().map(|v| unpack_kind(v).word()).collect();
            let unpack_spec = parse_unpack_spec(&words.join(" ")).unwrap();
            let decoded = unpack_spec.decode(&pack_spec.encode()).unwrap();
            prop_assert_eq!(decoded.values, values);
            prop_assert!(decoded.rest.is_empty());
        }

        #[test]
        fn parsers_never_panic(s in "\\PC*") {
            let _ = parse_pack_spec(&s);
            let _ = parse_unpack_spec(&s);
        }

        #[test]
        fn parsers_never_panic_on_spec_like_input(s in "([a-z0-9]{0,6}(:(\"([^\"\\\\]|\\\\.){0,5}\"?|[0-9a-fx-]{0,6}))?[ \t]?){0,6}") {
            let _ = parse_pack_spec(&s);
            if let Ok(spec) = parse_unpack_spec(&s) {
                let _ = spec.decode(s.as_bytes());
            }
        }
    }
}
