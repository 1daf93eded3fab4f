//! Serialization of iproto payloads: the [`IprotoPack`] / [`IprotoUnpack`] traits, the two
//! encoding [`Mode`]s and the top-level `pack*` / `unpack*` functions.
//!
//! The byte layout matches go-iproto's `Pack`/`Unpack` and Perl's `pack` (docs/protocol.md, Serialization):
//!
//! * [`Mode::Fixed`]: integers little-endian at their width; strings, byte strings and
//!   sequences carry a `u32` little-endian length or count.
//! * [`Mode::Ber`]: integers, lengths and counts as Perl `pack 'w'` (big-endian base 128).
//!
//! The mode applies to the value it is handed only: sequence elements are always packed in
//! Fixed mode, a struct ignores the mode and uses its fields' own `#[iproto(ber)]` attributes,
//! and `u8`/`i8` are one raw byte in both modes.
//!
//! ```
//! use iproto::{pack, pack_ber, unpack, IprotoPack, IprotoUnpack};
//!
//! #[derive(IprotoPack, IprotoUnpack, Debug, PartialEq)]
//! struct Get<'a> {
//!     space: u32,
//!     #[iproto(ber)]
//!     key: &'a str,
//! }
//!
//! let bytes = pack(&Get { space: 7, key: "hi" }).unwrap();
//! assert_eq!(bytes, [7, 0, 0, 0, 2, b'h', b'i']);
//! let (back, rest) = unpack::<Get>(&bytes).unwrap();
//! assert_eq!(back, Get { space: 7, key: "hi" });
//! assert!(rest.is_empty());
//!
//! assert_eq!(pack_ber(&300u32).unwrap(), [0x82, 0x2c]);
//! ```
//!
//! # Deriving
//!
//! `#[derive(IprotoPack, IprotoUnpack)]` works on named, tuple and unit structs and on enums
//! with a declared tag. Fields are written in declaration order, each in [`Mode::Fixed`] unless
//! its attributes say otherwise; the mode handed to a struct is ignored (go-iproto's rule, so
//! that `pack` and `pack_ber` of a struct give the same bytes). Decode errors name the failing
//! field ([`DecodeError::path`], e.g. `User.addresses[2].city`) and its byte offset.
//!
//! Type parameters get `T: IprotoPack` / `T: IprotoUnpack<'de>` bounds. The unpack impl is
//! generic over the input lifetime, which outlives the type's own lifetimes, so `&'a str` and
//! `&'a [u8]` fields borrow from the input and owned types decode from any input
//! ([`IprotoUnpackOwned`]). `min_size` is the sum of the fields' `min_size`, which bounds
//! sequence counts of derived types by the input length before anything is allocated.
//!
//! | attribute | on | effect |
//! |---|---|---|
//! | `ber` | struct | every field defaults to BER |
//! | `ber` | field | the field is packed in BER (for a sequence: its count; for a struct: nothing, it ignores the mode) |
//! | `fixed` | field | the field is packed in Fixed mode despite a container `ber` |
//! | `elem = ber` | sequence field | the elements are BER too (an extension: go-iproto always packs elements Fixed) |
//! | `skip` | field | not on the wire; `Default::default()` when unpacking |
//! | `with = path` | field | `path::pack(&field, buf, mode)` and `path::unpack(r, mode)` (serde's convention) |
//! | `tag = u8 \| u16 \| u32 \| ber` | enum | required: the tag's encoding (Fixed little-endian, or BER up to `u64`) |
//! | `tag_value = N` | variant | the variant's tag; defaults to its literal discriminant, else the previous tag plus one |
//!
//! Misused attributes (unknown keys, `ber` with `fixed`, `skip` with `with`, duplicate or
//! oversized tags, `tag` on a struct, a missing `tag` on an enum, ...) are compile errors
//! pointing at the attribute, all reported at once.
//!
//! Modes per field, `ber` on a whole struct, and `fixed` to override it:
//!
//! ```
//! use iproto::{IprotoPack, IprotoUnpack};
//!
//! #[derive(IprotoPack, IprotoUnpack, Debug, PartialEq)]
//! #[iproto(ber)]
//! struct Counters {
//!     hits: u32,       // BER (container default)
//!     #[iproto(fixed)]
//!     epoch: u32,      // 4 bytes little-endian
//!     flag: u8,        // u8 is one raw byte in both modes
//! }
//!
//! let c = Counters { hits: 300, epoch: 1, flag: 7 };
//! let bytes = iproto::pack(&c).unwrap();
//! assert_eq!(bytes, [0x82, 0x2c, 1, 0, 0, 0, 7]);
//! assert_eq!(iproto::pack_ber(&c).unwrap(), bytes); // a struct ignores the mode
//! assert_eq!(iproto::unpack_exact::<Counters>(&bytes).unwrap(), c);
//! ```
//!
//! Sequences: `ber` makes the count BER, `elem = ber` the elements:
//!
//! ```
//! use iproto::{IprotoPack, IprotoUnpack};
//!
//! #[derive(IprotoPack, IprotoUnpack, Debug, PartialEq)]
//! struct Lists {
//!     #[iproto(ber)]
//!     a: Vec<u32>,          // BER count, Fixed elements (go-iproto compatible)
//!     #[iproto(ber, elem = ber)]
//!     b: Vec<u32>,          // BER count, BER elements
//!     #[iproto(elem = ber)]
//!     c: Vec<u32>,          // Fixed count, BER elements
//! }
//!
//! let l = Lists { a: vec![200], b: vec![200], c: vec![200] };
//! let bytes = iproto::pack(&l).unwrap();
//! assert_eq!(bytes, [1, 200, 0, 0, 0, 1, 0x81, 0x48, 1, 0, 0, 0, 0x81, 0x48]);
//! assert_eq!(iproto::unpack_exact::<Lists>(&bytes).unwrap(), l);
//! ```
//!
//! `skip` and `with`:
//!
//! ```
//! use iproto::{IprotoPack, IprotoUnpack};
//!
//! /// Seconds since the epoch written as BER, whatever the field's mode.
//! mod ber_secs {
//!     use std::time::{Duration, SystemTime, UNIX_EPOCH};
//!     use iproto::{bytes::BufMut, DecodeError, IprotoPack, IprotoUnpack, Mode, PackError, Reader};
//!
//!     pub fn pack<B: BufMut>(t: &SystemTime, buf: &mut B, _mode: Mode) -> Result<(), PackError> {
//!         let secs = t.duration_since(UNIX_EPOCH).map_err(|e| PackError::Custom(e.into()))?.as_secs();
//!         secs.pack(buf, Mode::Ber)
//!     }
//!
//!     pub fn unpack(r: &mut Reader<'_>, _mode: Mode) -> Result<SystemTime, DecodeError> {
//!         let at = r.position();
//!         let secs = u64::unpack(r, Mode::Ber)?;
//!         UNIX_EPOCH.checked_add(Duration::from_secs(secs)).ok_or_else(|| DecodeError::custom("time out of range", at))
//!     }
//! }
//!
//! #[derive(IprotoPack, IprotoUnpack, Debug, PartialEq)]
//! struct Event {
//!     #[iproto(with = ber_secs)]
//!     at: std::time::SystemTime,
//!     #[iproto(skip)]
//!     seen_locally: bool,
//! }
//!
//! let e = Event { at: std::time::UNIX_EPOCH + std::time::Duration::from_secs(300), seen_locally: true };
//! let bytes = iproto::pack(&e).unwrap();
//! assert_eq!(bytes, [0x82, 0x2c]);
//! let back: Event = iproto::unpack_exact(&bytes).unwrap();
//! assert_eq!(back, Event { seen_locally: false, ..e });
//! ```
//!
//! Enums: the tag, then the variant's fields (which follow the struct field rules):
//!
//! ```
//! use iproto::{DecodeErrorKind, IprotoPack, IprotoUnpack};
//!
//! #[derive(IprotoPack, IprotoUnpack, Debug, PartialEq)]
//! #[iproto(tag = u8)]
//! enum Request<'a> {
//!     Ping,                                      // tag 0
//!     Get { space: u32, #[iproto(ber)] key: &'a str }, // tag 1
//!     #[iproto(tag_value = 10)]
//!     Delete(u32),                               // tag 10
//! }
//!
//! let bytes = iproto::pack(&Request::Get { space: 1, key: "k" }).unwrap();
//! assert_eq!(bytes, [1, 1, 0, 0, 0, 1, b'k']);
//! assert_eq!(iproto::unpack_exact::<Request>(&bytes).unwrap(), Request::Get { space: 1, key: "k" });
//!
//! let err = iproto::unpack_exact::<Request>(&[7]).unwrap_err();
//! assert!(matches!(err.kind(), DecodeErrorKind::UnknownTag { tag: 7, ty: "Request" }));
//! ```

pub mod ber;
mod error;
mod impls;
mod reader;
pub mod seq;
#[cfg(test)]
mod tests;

use bytes::BufMut;

pub use error::{DecodeError, DecodeErrorKind, PackError, PathSegment};
pub use reader::Reader;

/// How a value is encoded: fixed-width little-endian or BER (Perl `pack 'w'`).
///
/// The mode applies to the top-level value only; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// Fixed-width little-endian integers, `u32` length and count prefixes (go-iproto's
    /// default mode).
    #[default]
    Fixed,
    /// Big-endian base-128 integers, lengths and counts (go-iproto's `PackBER`).
    Ber,
}

/// A value that can be written in iproto's binary encoding.
///
/// Derive it with `#[derive(IprotoPack)]` or implement it by hand:
///
/// ```
/// use bytes::BufMut;
/// use iproto::{IprotoPack, Mode, PackError};
///
/// /// A pair of counters written as two BER integers whatever the mode.
/// struct Counters(u64, u64);
///
/// impl IprotoPack for Counters {
///     fn pack<B: BufMut>(&self, buf: &mut B, _mode: Mode) -> Result<(), PackError> {
///         self.0.pack(buf, Mode::Ber)?;
///         self.1.pack(buf, Mode::Ber)
///     }
/// }
///
/// assert_eq!(iproto::pack(&Counters(1, 300)).unwrap(), [0x01, 0x82, 0x2c]);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be packed by iproto: it does not implement `IprotoPack`",
    label = "no iproto encoding for `{Self}`",
    note = "derive it with #[derive(IprotoPack)], or pick a type with a wire form: u64/u32 instead of \
            usize, a fixed-point integer instead of f32/f64, Vec<(K, V)> instead of a map",
    note = "or give the field a codec of your own: #[iproto(with = my_codec)]"
)]
pub trait IprotoPack {
    /// Appends the encoding of `self` in `mode` to `buf`.
    fn pack<B: BufMut>(&self, buf: &mut B, mode: Mode) -> Result<(), PackError>;

    /// A cheap estimate of the encoded size, used to reserve buffer space. May be 0.
    fn size_hint(&self, _mode: Mode) -> usize {
        0
    }

    /// Packs the elements of a sequence (the count is already written), each in `elem_mode`.
    ///
    /// A hook so that byte sequences are copied in one go; the default packs one at a time.
    #[doc(hidden)]
    fn pack_elements<B: BufMut>(items: &[Self], buf: &mut B, elem_mode: Mode) -> Result<(), PackError>
    where
        Self: Sized,
    {
        items.iter().try_for_each(|item| item.pack(buf, elem_mode))
    }
}

/// A value that can be read from iproto's binary encoding, possibly borrowing from the input.
///
/// Types that own their data implement it for every `'de`, so `for<'de> IprotoUnpack<'de>`
/// (see [`IprotoUnpackOwned`]) names "decodable from any buffer", as serde's
/// `DeserializeOwned` does.
///
/// ```
/// use iproto::{DecodeError, IprotoUnpack, Mode, Reader};
///
/// struct Counters(u64, u64);
///
/// impl<'de> IprotoUnpack<'de> for Counters {
///     fn unpack(r: &mut Reader<'de>, _mode: Mode) -> Result<Self, DecodeError> {
///         Ok(Counters(u64::unpack(r, Mode::Ber)?, u64::unpack(r, Mode::Ber)?))
///     }
/// }
///
/// let c: Counters = iproto::unpack_exact(&[0x01, 0x82, 0x2c]).unwrap();
/// assert_eq!((c.0, c.1), (1, 300));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be unpacked by iproto: it does not implement `IprotoUnpack`",
    label = "no iproto decoding for `{Self}`",
    note = "derive it with #[derive(IprotoUnpack)], or pick a type with a wire form: u64/u32 instead of \
            usize, a fixed-point integer instead of f32/f64, Vec<(K, V)> instead of a map",
    note = "or give the field a codec of your own: #[iproto(with = my_codec)]"
)]
pub trait IprotoUnpack<'de>: Sized {
    /// Reads one value in `mode` from `r`.
    fn unpack(r: &mut Reader<'de>, mode: Mode) -> Result<Self, DecodeError>;

    /// The fewest bytes any value of this type occupies in `mode` (0 if unknown).
    ///
    /// Sequence counts are checked against `remaining / min_size` before anything is allocated.
    fn min_size(_mode: Mode) -> usize {
        0
    }

    /// Reads `count` elements of a sequence, each in `elem_mode`.
    ///
    /// A hook so that byte sequences are copied in one go; the default reads one at a time and
    /// adds the element index to the error path.
    #[doc(hidden)]
    fn unpack_elements(r: &mut Reader<'de>, count: usize, elem_mode: Mode) -> Result<Vec<Self>, DecodeError> {
        seq::unpack_each(r, count, elem_mode)
    }
}

/// A type decodable from any input without borrowing: `for<'de> IprotoUnpack<'de>`.
pub trait IprotoUnpackOwned: for<'de> IprotoUnpack<'de> {}
impl<T> IprotoUnpackOwned for T where T: for<'de> IprotoUnpack<'de> {}

/// Packs `value` in [`Mode::Fixed`] into a new buffer (go-iproto's `Pack`).
///
/// ```
/// assert_eq!(iproto::pack(&258u16).unwrap(), [0x02, 0x01]);
/// ```
pub fn pack<T: IprotoPack + ?Sized>(value: &T) -> Result<Vec<u8>, PackError> {
    pack_mode(value, Mode::Fixed)
}

/// Packs `value` in [`Mode::Ber`] into a new buffer (go-iproto's `PackBER`).
///
/// ```
/// assert_eq!(iproto::pack_ber(&128u32).unwrap(), [0x81, 0x00]);
/// ```
pub fn pack_ber<T: IprotoPack + ?Sized>(value: &T) -> Result<Vec<u8>, PackError> {
    pack_mode(value, Mode::Ber)
}

/// Packs `value` in `mode` into a new buffer.
pub fn pack_mode<T: IprotoPack + ?Sized>(value: &T, mode: Mode) -> Result<Vec<u8>, PackError> {
    let mut buf = Vec::with_capacity(value.size_hint(mode));
    value.pack(&mut buf, mode)?;
    Ok(buf)
}

/// Appends `value` in [`Mode::Fixed`] to `buf` (go-iproto's `Append`).
///
/// ```
/// let mut buf = vec![0xaa];
/// iproto::append(&mut buf, &1u16).unwrap();
/// assert_eq!(buf, [0xaa, 0x01, 0x00]);
/// ```
pub fn append<B: BufMut, T: IprotoPack + ?Sized>(buf: &mut B, value: &T) -> Result<(), PackError> {
    value.pack(buf, Mode::Fixed)
}

/// Appends `value` in [`Mode::Ber`] to `buf` (go-iproto's `AppendBER`).
pub fn append_ber<B: BufMut, T: IprotoPack + ?Sized>(buf: &mut B, value: &T) -> Result<(), PackError> {
    value.pack(buf, Mode::Ber)
}

/// Unpacks a `T` in [`Mode::Fixed`] from the front of `data`; returns it and the unread rest.
///
/// ```
/// let (v, rest) = iproto::unpack::<u16>(&[0x02, 0x01, 0xff]).unwrap();
/// assert_eq!((v, rest), (258, &[0xff][..]));
/// ```
pub fn unpack<'de, T: IprotoUnpack<'de>>(data: &'de [u8]) -> Result<(T, &'de [u8]), DecodeError> {
    unpack_mode(data, Mode::Fixed)
}

/// Unpacks a `T` in [`Mode::Ber`] from the front of `data`; returns it and the unread rest.
pub fn unpack_ber<'de, T: IprotoUnpack<'de>>(data: &'de [u8]) -> Result<(T, &'de [u8]), DecodeError> {
    unpack_mode(data, Mode::Ber)
}

/// Unpacks a `T` in [`Mode::Fixed`] that must use all of `data` (trailing bytes are an error).
///
/// ```
/// assert!(iproto::unpack_exact::<u16>(&[1, 0]).is_ok());
/// assert!(iproto::unpack_exact::<u16>(&[1, 0, 0]).is_err());
/// ```
pub fn unpack_exact<'de, T: IprotoUnpack<'de>>(data: &'de [u8]) -> Result<T, DecodeError> {
    Reader::new(data).read_exact(Mode::Fixed)
}

/// Unpacks a `T` in [`Mode::Ber`] that must use all of `data` (trailing bytes are an error).
pub fn unpack_exact_ber<'de, T: IprotoUnpack<'de>>(data: &'de [u8]) -> Result<T, DecodeError> {
    Reader::new(data).read_exact(Mode::Ber)
}

/// Unpacks a `T` in `mode` from the front of `data`; returns it and the unread rest.
pub fn unpack_mode<'de, T: IprotoUnpack<'de>>(data: &'de [u8], mode: Mode) -> Result<(T, &'de [u8]), DecodeError> {
    let mut r = Reader::new(data);
    let value = T::unpack(&mut r, mode)?;
    Ok((value, r.rest()))
}
