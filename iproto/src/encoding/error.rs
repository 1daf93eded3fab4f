//! Errors of the serialization layer: [`PackError`] when encoding, [`DecodeError`] (what went
//! wrong, at which byte offset, in which field path) when decoding.

use std::fmt;

/// Why a value could not be packed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackError {
    /// A string, byte string or sequence is longer than a `u32` length prefix can say.
    #[error("length {len} overflows the u32 length prefix")]
    LengthOverflow {
        /// The length that did not fit.
        len: usize,
    },
    /// A custom codec (`#[iproto(with = ..)]` or a hand-written impl) failed.
    #[error(transparent)]
    Custom(Box<dyn std::error::Error + Send + Sync>),
}

/// What went wrong while decoding, without the location (see [`DecodeError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The input ended inside a value.
    #[error("unexpected end of input: need {needed} bytes, {remaining} left")]
    UnexpectedEnd {
        /// Bytes the value needs.
        needed: usize,
        /// Bytes that were left.
        remaining: usize,
    },
    /// A BER integer did not end within the bytes its target type allows.
    #[error("invalid ber-encoded integer: no end within {max_bytes} bytes")]
    BerTooLong {
        /// The most bytes the target type allows (3 for u16, 5 for u32, 10 for u64).
        max_bytes: usize,
    },
    /// A decoded integer does not fit its target type.
    #[error("value {value} overflows {target}")]
    Overflow {
        /// The decoded value (saturated at `u128::MAX` for huge BER input).
        value: u128,
        /// The target type.
        target: &'static str,
    },
    /// A length or count is larger than the input that remains.
    #[error("{what} {len} exceeds the {remaining} bytes left")]
    LengthBeyondInput {
        /// `"length"` or `"count"`.
        what: &'static str,
        /// The declared length or count.
        len: u64,
        /// Bytes that were left after the prefix.
        remaining: usize,
    },
    /// A `String` or `&str` is not valid UTF-8.
    #[error("invalid UTF-8 in string")]
    InvalidUtf8,
    /// A `bool` or `Option` presence byte is neither 0 nor 1.
    #[error("invalid {what} byte {byte:#04x} (expected 0 or 1)")]
    InvalidFlag {
        /// `"bool"` or `"option"`.
        what: &'static str,
        /// The byte found.
        byte: u8,
    },
    /// An enum tag names no variant.
    #[error("unknown tag {tag} for enum {ty}")]
    UnknownTag {
        /// The tag read.
        tag: u64,
        /// The enum type.
        ty: &'static str,
    },
    /// A return code names no variant of a `ServiceError` type.
    #[error("unknown return code {code} for {ty}")]
    UnknownCode {
        /// The code read.
        code: u32,
        /// The error type.
        ty: &'static str,
    },
    /// `unpack_exact` found bytes after the value.
    #[error("{count} trailing bytes after the value")]
    TrailingBytes {
        /// How many bytes were left.
        count: usize,
    },
    /// A custom codec reported an error.
    #[error("{0}")]
    Custom(String),
}

/// One step of the path to the field that failed to decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSegment {
    /// A named field (or the index of a tuple-struct field, as text).
    Field(&'static str),
    /// An element of a sequence.
    Index(usize),
}

/// A decoding failure: what went wrong, at which byte offset of the input, and where in the
/// value (for example `User.addresses[2].city`).
///
/// ```
/// #[derive(iproto::IprotoUnpack, Debug)]
/// struct User { id: u32, name: String }
///
/// let err = iproto::unpack::<User>(&[1, 0, 0, 0, 9, 0]).unwrap_err();
/// assert_eq!(err.offset(), 4);
/// assert_eq!(err.path(), "User.name");
/// assert!(err.to_string().contains("User.name"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct DecodeError(Box<Inner>);

#[derive(Clone, PartialEq, Eq)]
struct Inner {
    kind: DecodeErrorKind,
    offset: usize,
    ty: Option<&'static str>,
    /// Innermost segment first; reversed for display.
    path: Vec<PathSegment>,
}

impl DecodeError {
    /// A new error of `kind` at byte `offset` of the input.
    #[cold]
    pub fn new(kind: DecodeErrorKind, offset: usize) -> Self {
        DecodeError(Box::new(Inner { kind, offset, ty: None, path: Vec::new() }))
    }

    /// A custom error (for hand-written impls and `with` codecs) at byte `offset`.
    #[cold]
    pub fn custom(msg: impl fmt::Display, offset: usize) -> Self {
        Self::new(DecodeErrorKind::Custom(msg.to_string()), offset)
    }

    /// What went wrong.
    pub fn kind(&self) -> &DecodeErrorKind {
        &self.0.kind
    }

    /// The byte offset in the input where the failing read started.
    pub fn offset(&self) -> usize {
        self.0.offset
    }

    /// The field path, outermost type first, for example `User.addresses[2].city`; empty for
    /// a failure outside any struct.
    pub fn path(&self) -> String {
        let mut s = String::new();
        if let Some(ty) = self.0.ty {
            s.push_str(ty);
        }
        for seg in self.0.path.iter().rev() {
            match seg {
                PathSegment::Field(name) => {
                    if !s.is_empty() {
                        s.push('.');
                    }
                    s.push_str(name);
                }
                PathSegment::Index(i) => {
                    s.push('[');
                    s.push_str(&i.to_string());
                    s.push(']');
                }
            }
        }
        s
    }

    /// Adds the field `field` of type `ty` to the path (used by the derive).
    #[cold]
    pub fn in_field(mut self, ty: &'static str, field: &'static str) -> Self {
        self.0.path.push(PathSegment::Field(field));
        self.0.ty = Some(ty);
        self
    }

    /// Adds the sequence index `index` to the path.
    #[cold]
    pub fn in_index(mut self, index: usize) -> Self {
        self.0.path.push(PathSegment::Index(index));
        self
    }

    /// Names the type being decoded when no field did (enum tags, newtypes).
    #[cold]
    pub fn in_type(mut self, ty: &'static str) -> Self {
        self.0.ty = Some(ty);
        self
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "decode error at byte {}", self.0.offset)?;
        let path = self.path();
        if !path.is_empty() {
            write!(f, " in {path}")?;
        }
        write!(f, ": {}", self.0.kind)
    }
}

impl fmt::Debug for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for DecodeError {}
