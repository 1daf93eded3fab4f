//! [`IprotoPack`] and [`IprotoUnpack`] for std and `bytes` types: integers, `bool`, strings,
//! byte strings, `Vec<T>`, arrays, tuples, `Box<T>` and `Option<T>`.

use std::borrow::Cow;

use bytes::{BufMut, Bytes};

use super::{ber, seq, DecodeError, DecodeErrorKind, IprotoPack, IprotoUnpack, Mode, PackError, Reader};

// ---- one-byte integers: one raw byte in both modes ----

impl IprotoPack for u8 {
    #[inline]
    fn pack<B: BufMut>(&self, buf: &mut B, _mode: Mode) -> Result<(), PackError> {
        buf.put_u8(*self);
        Ok(())
    }
    fn size_hint(&self, _mode: Mode) -> usize {
        1
    }
    #[inline]
    fn pack_elements<B: BufMut>(items: &[Self], buf: &mut B, _elem_mode: Mode) -> Result<(), PackError> {
        buf.put_slice(items);
        Ok(())
    }
}

impl<'de> IprotoUnpack<'de> for u8 {
    #[inline]
    fn unpack(r: &mut Reader<'de>, _mode: Mode) -> Result<Self, DecodeError> {
        r.read_u8()
    }
    fn min_size(_mode: Mode) -> usize {
        1
    }
    #[inline]
    fn unpack_elements(r: &mut Reader<'de>, count: usize, _elem_mode: Mode) -> Result<Vec<Self>, DecodeError> {
        Ok(r.take(count)?.to_vec())
    }
}

impl IprotoPack for i8 {
    #[inline]
    fn pack<B: BufMut>(&self, buf: &mut B, _mode: Mode) -> Result<(), PackError> {
        buf.put_i8(*self);
        Ok(())
    }
    fn size_hint(&self, _mode: Mode) -> usize {
        1
    }
}

impl<'de> IprotoUnpack<'de> for i8 {
    #[inline]
    fn unpack(r: &mut Reader<'de>, _mode: Mode) -> Result<Self, DecodeError> {
        Ok(r.read_u8()? as i8)
    }
    fn min_size(_mode: Mode) -> usize {
        1
    }
}

// ---- wider integers: little-endian or BER of the unsigned bit pattern ----

macro_rules! int_impl {
    ($($t:ty => $u:ty, $bits:literal, $name:literal;)*) => {$(
        impl IprotoPack for $t {
            // Always inlined so that the mode, a constant at every derived call site, folds away.
            #[inline(always)]
            fn pack<B: BufMut>(&self, buf: &mut B, mode: Mode) -> Result<(), PackError> {
                match mode {
                    Mode::Fixed => buf.put_slice(&self.to_le_bytes()),
                    Mode::Ber => ber::put(buf, u64::from(*self as $u)),
                }
                Ok(())
            }
            fn size_hint(&self, mode: Mode) -> usize {
                match mode {
                    Mode::Fixed => std::mem::size_of::<$t>(),
                    Mode::Ber => ber::encoded_len(u64::from(*self as $u)),
                }
            }
        }

        impl<'de> IprotoUnpack<'de> for $t {
            #[inline(always)]
            fn unpack(r: &mut Reader<'de>, mode: Mode) -> Result<Self, DecodeError> {
                match mode {
                    Mode::Fixed => Ok(<$t>::from_le_bytes(r.take_array()?)),
                    // The value fits $bits bits (checked by read_ber), so the cast is exact.
                    Mode::Ber => Ok(r.read_ber($bits, $name)? as $u as $t),
                }
            }
            fn min_size(mode: Mode) -> usize {
                match mode {
                    Mode::Fixed => std::mem::size_of::<$t>(),
                    Mode::Ber => 1,
                }
            }
            /// Fixed-width elements are taken in one bounds check and converted in bulk.
            #[inline]
            fn unpack_elements(r: &mut Reader<'de>, count: usize, elem_mode: Mode) -> Result<Vec<Self>, DecodeError> {
                const WIDTH: usize = std::mem::size_of::<$t>();
                match (elem_mode, count.checked_mul(WIDTH)) {
                    (Mode::Fixed, Some(len)) if len <= r.remaining() => {
                        let raw = r.take(len)?;
                        Ok(raw
                            .chunks_exact(WIDTH)
                            .map(|c| {
                                let mut le = [0u8; WIDTH];
                                le.copy_from_slice(c);
                                <$t>::from_le_bytes(le)
                            })
                            .collect())
                    }
                    // Too short (reported at the failing element) or BER: one at a time.
                    _ => seq::unpack_each(r, count, elem_mode),
                }
            }
        }
    )*};
}

int_impl! {
    u16 => u16, 16, "u16";
    i16 => u16, 16, "i16";
    u32 => u32, 32, "u32";
    i32 => u32, 32, "i32";
    u64 => u64, 64, "u64";
    i64 => u64, 64, "i64";
}

// ---- bool: one byte 0 or 1 (our extension; go-iproto has none) ----

impl IprotoPack for bool {
    #[inline]
    fn pack<B: BufMut>(&self, buf: &mut B, _mode: Mode) -> Result<(), PackError> {
        buf.put_u8(u8::from(*self));
        Ok(())
    }
    fn size_hint(&self, _mode: Mode) -> usize {
        1
    }
}

impl<'de> IprotoUnpack<'de> for bool {
    #[inline]
    fn unpack(r: &mut Reader<'de>, _mode: Mode) -> Result<Self, DecodeError> {
        let at = r.position();
        match r.read_u8()? {
            0 => Ok(false),
            1 => Ok(true),
            byte => Err(DecodeError::new(DecodeErrorKind::InvalidFlag { what: "bool", byte }, at)),
        }
    }
    fn min_size(_mode: Mode) -> usize {
        1
    }
}

// ---- strings and byte strings: a length in the mode, then the bytes ----

#[inline]
fn pack_raw<B: BufMut>(bytes: &[u8], buf: &mut B, mode: Mode) -> Result<(), PackError> {
    seq::pack_len(buf, bytes.len(), mode)?;
    buf.put_slice(bytes);
    Ok(())
}

#[inline]
fn raw_size_hint(len: usize, mode: Mode) -> usize {
    len + match mode {
        Mode::Fixed => 4,
        Mode::Ber => ber::encoded_len(len as u64),
    }
}

#[inline]
fn prefix_min_size(mode: Mode) -> usize {
    match mode {
        Mode::Fixed => 4,
        Mode::Ber => 1,
    }
}

#[inline(always)]
fn unpack_raw<'de>(r: &mut Reader<'de>, mode: Mode) -> Result<&'de [u8], DecodeError> {
    r.read_prefixed(mode)
}

#[inline(always)]
fn unpack_str<'de>(r: &mut Reader<'de>, mode: Mode) -> Result<&'de str, DecodeError> {
    let at = r.position();
    let raw = unpack_raw(r, mode)?;
    std::str::from_utf8(raw).map_err(|_| DecodeError::new(DecodeErrorKind::InvalidUtf8, at))
}

macro_rules! bytes_like_pack {
    ($($t:ty),*) => {$(
        impl IprotoPack for $t {
            #[inline]
            fn pack<B: BufMut>(&self, buf: &mut B, mode: Mode) -> Result<(), PackError> {
                pack_raw(AsRef::<[u8]>::as_ref(self), buf, mode)
            }
            fn size_hint(&self, mode: Mode) -> usize {
                raw_size_hint(AsRef::<[u8]>::as_ref(self).len(), mode)
            }
        }
    )*};
}

bytes_like_pack!(str, String, Bytes);

impl<'de> IprotoUnpack<'de> for &'de str {
    #[inline]
    fn unpack(r: &mut Reader<'de>, mode: Mode) -> Result<Self, DecodeError> {
        unpack_str(r, mode)
    }
    fn min_size(mode: Mode) -> usize {
        prefix_min_size(mode)
    }
}

impl<'de> IprotoUnpack<'de> for String {
    #[inline]
    fn unpack(r: &mut Reader<'de>, mode: Mode) -> Result<Self, DecodeError> {
        unpack_str(r, mode).map(str::to_owned)
    }
    fn min_size(mode: Mode) -> usize {
        prefix_min_size(mode)
    }
}

impl<'de> IprotoUnpack<'de> for &'de [u8] {
    #[inline]
    fn unpack(r: &mut Reader<'de>, mode: Mode) -> Result<Self, DecodeError> {
        unpack_raw(r, mode)
    }
    fn min_size(mode: Mode) -> usize {
        prefix_min_size(mode)
    }
}

impl<'de> IprotoUnpack<'de> for Bytes {
    #[inline]
    fn unpack(r: &mut Reader<'de>, mode: Mode) -> Result<Self, DecodeError> {
        r.read_prefixed_bytes(mode)
    }
    fn min_size(mode: Mode) -> usize {
        prefix_min_size(mode)
    }
}

impl<T: IprotoPack + ?Sized + ToOwned> IprotoPack for Cow<'_, T> {
    fn pack<B: BufMut>(&self, buf: &mut B, mode: Mode) -> Result<(), PackError> {
        (**self).pack(buf, mode)
    }
    fn size_hint(&self, mode: Mode) -> usize {
        (**self).size_hint(mode)
    }
}

impl<'de> IprotoUnpack<'de> for Cow<'de, str> {
    fn unpack(r: &mut Reader<'de>, mode: Mode) -> Result<Self, DecodeError> {
        unpack_str(r, mode).map(Cow::Borrowed)
    }
    fn min_size(mode: Mode) -> usize {
        prefix_min_size(mode)
    }
}

// ---- sequences: a count in the mode, then elements in Fixed mode ----

impl<T: IprotoPack> IprotoPack for Vec<T> {
    #[inline]
    fn pack<B: BufMut>(&self, buf: &mut B, mode: Mode) -> Result<(), PackError> {
        seq::pack(self, buf, mode, Mode::Fixed)
    }
    fn size_hint(&self, mode: Mode) -> usize {
        self.as_slice().size_hint(mode)
    }
}

impl<T: IprotoPack> IprotoPack for [T] {
    #[inline]
    fn pack<B: BufMut>(&self, buf: &mut B, mode: Mode) -> Result<(), PackError> {
        seq::pack(self, buf, mode, Mode::Fixed)
    }
    fn size_hint(&self, mode: Mode) -> usize {
        let first = self.first().map_or(0, |x| x.size_hint(Mode::Fixed));
        raw_size_hint(first.saturating_mul(self.len()), mode)
    }
}

impl<'de, T: IprotoUnpack<'de>> IprotoUnpack<'de> for Vec<T> {
    #[inline]
    fn unpack(r: &mut Reader<'de>, mode: Mode) -> Result<Self, DecodeError> {
        seq::unpack(r, mode, Mode::Fixed)
    }
    fn min_size(mode: Mode) -> usize {
        prefix_min_size(mode)
    }
}

// ---- arrays: N elements in Fixed mode, no count ----

impl<T: IprotoPack, const N: usize> IprotoPack for [T; N] {
    #[inline]
    fn pack<B: BufMut>(&self, buf: &mut B, _mode: Mode) -> Result<(), PackError> {
        T::pack_elements(self, buf, Mode::Fixed)
    }
    fn size_hint(&self, _mode: Mode) -> usize {
        self.first().map_or(0, |x| x.size_hint(Mode::Fixed)).saturating_mul(N)
    }
}

impl<'de, T: IprotoUnpack<'de>, const N: usize> IprotoUnpack<'de> for [T; N] {
    #[inline]
    fn unpack(r: &mut Reader<'de>, _mode: Mode) -> Result<Self, DecodeError> {
        let min = T::min_size(Mode::Fixed).max(1);
        if N.saturating_mul(min) > r.remaining() {
            return Err(DecodeError::new(
                DecodeErrorKind::UnexpectedEnd { needed: N.saturating_mul(min), remaining: r.remaining() },
                r.position(),
            ));
        }
        let items = T::unpack_elements(r, N, Mode::Fixed)?;
        // unpack_elements returned exactly N items.
        items.try_into().map_err(|_| DecodeError::custom("array length mismatch", r.position()))
    }
    fn min_size(_mode: Mode) -> usize {
        T::min_size(Mode::Fixed).saturating_mul(N)
    }
}

// ---- wrappers ----

impl<T: IprotoPack + ?Sized> IprotoPack for &T {
    #[inline]
    fn pack<B: BufMut>(&self, buf: &mut B, mode: Mode) -> Result<(), PackError> {
        (**self).pack(buf, mode)
    }
    fn size_hint(&self, mode: Mode) -> usize {
        (**self).size_hint(mode)
    }
}

impl<T: IprotoPack + ?Sized> IprotoPack for Box<T> {
    #[inline]
    fn pack<B: BufMut>(&self, buf: &mut B, mode: Mode) -> Result<(), PackError> {
        (**self).pack(buf, mode)
    }
    fn size_hint(&self, mode: Mode) -> usize {
        (**self).size_hint(mode)
    }
}

impl<'de, T: IprotoUnpack<'de>> IprotoUnpack<'de> for Box<T> {
    #[inline]
    fn unpack(r: &mut Reader<'de>, mode: Mode) -> Result<Self, DecodeError> {
        T::unpack(r, mode).map(Box::new)
    }
    fn min_size(mode: Mode) -> usize {
        T::min_size(mode)
    }
}

/// `Option<T>`: a presence byte (0 or 1), then the value in the same mode when present.
impl<T: IprotoPack> IprotoPack for Option<T> {
    #[inline]
    fn pack<B: BufMut>(&self, buf: &mut B, mode: Mode) -> Result<(), PackError> {
        match self {
            None => buf.put_u8(0),
            Some(v) => {
                buf.put_u8(1);
                v.pack(buf, mode)?;
            }
        }
        Ok(())
    }
    fn size_hint(&self, mode: Mode) -> usize {
        1 + self.as_ref().map_or(0, |v| v.size_hint(mode))
    }
}

impl<'de, T: IprotoUnpack<'de>> IprotoUnpack<'de> for Option<T> {
    #[inline]
    fn unpack(r: &mut Reader<'de>, mode: Mode) -> Result<Self, DecodeError> {
        let at = r.position();
        match r.read_u8()? {
            0 => Ok(None),
            1 => T::unpack(r, mode).map(Some),
            byte => Err(DecodeError::new(DecodeErrorKind::InvalidFlag { what: "option", byte }, at)),
        }
    }
    fn min_size(_mode: Mode) -> usize {
        1
    }
}

// ---- tuples: each element in the given mode, like go-iproto's `Pack(a, b, ..)` ----

macro_rules! tuple_impl {
    ($($name:ident . $idx:tt),+) => {
        impl<$($name: IprotoPack),+> IprotoPack for ($($name,)+) {
            #[inline]
            fn pack<B: BufMut>(&self, buf: &mut B, mode: Mode) -> Result<(), PackError> {
                $(self.$idx.pack(buf, mode)?;)+
                Ok(())
            }
            fn size_hint(&self, mode: Mode) -> usize {
                0 $(+ self.$idx.size_hint(mode))+
            }
        }

        impl<'de, $($name: IprotoUnpack<'de>),+> IprotoUnpack<'de> for ($($name,)+) {
            #[inline]
            fn unpack(r: &mut Reader<'de>, mode: Mode) -> Result<Self, DecodeError> {
                Ok(($($name::unpack(r, mode).map_err(|e| e.in_index($idx))?,)+))
            }
            fn min_size(mode: Mode) -> usize {
                0 $(+ $name::min_size(mode))+
            }
        }
    };
}

tuple_impl!(T0.0);
tuple_impl!(T0.0, T1.1);
tuple_impl!(T0.0, T1.1, T2.2);
tuple_impl!(T0.0, T1.1, T2.2, T3.3);
tuple_impl!(T0.0, T1.1, T2.2, T3.3, T4.4);
tuple_impl!(T0.0, T1.1, T2.2, T3.3, T4.4, T5.5);
tuple_impl!(T0.0, T1.1, T2.2, T3.3, T4.4, T5.5, T6.6);
tuple_impl!(T0.0, T1.1, T2.2, T3.3, T4.4, T5.5, T6.6, T7.7);

impl IprotoPack for () {
    fn pack<B: BufMut>(&self, _buf: &mut B, _mode: Mode) -> Result<(), PackError> {
        Ok(())
    }
}

impl<'de> IprotoUnpack<'de> for () {
    fn unpack(_r: &mut Reader<'de>, _mode: Mode) -> Result<Self, DecodeError> {
        Ok(())
    }
}
