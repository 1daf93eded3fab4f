//! [`Reader`]: a cursor over the input being decoded that knows the owning `Bytes`, when there
//! is one, so that `Bytes` fields are zero-copy slices and `&str`/`&[u8]` fields borrow.

use bytes::Bytes;

use super::{ber, DecodeError, DecodeErrorKind, IprotoUnpack, Mode};

/// A cursor over the bytes being decoded.
///
/// ```
/// use iproto::{Mode, Reader, IprotoUnpack};
///
/// let body = bytes::Bytes::from_static(&[3, 0, 0, 0, b'a', b'b', b'c']);
/// let mut r = Reader::from_bytes(&body);
/// let s = bytes::Bytes::unpack(&mut r, Mode::Fixed).unwrap();
/// assert_eq!(&s[..], b"abc"); // a slice of `body`, not a copy
/// assert_eq!(r.remaining(), 0);
/// ```
#[derive(Debug, Clone)]
pub struct Reader<'de> {
    input: &'de [u8],
    pos: usize,
    owner: Option<&'de Bytes>,
}

impl<'de> Reader<'de> {
    /// A reader over a borrowed slice; `Bytes` fields are copied out of it.
    pub fn new(input: &'de [u8]) -> Self {
        Reader { input, pos: 0, owner: None }
    }

    /// A reader over `Bytes`; `Bytes` fields become zero-copy slices of it.
    pub fn from_bytes(input: &'de Bytes) -> Self {
        Reader { input: input.as_ref(), pos: 0, owner: Some(input) }
    }

    /// Bytes consumed so far.
    #[inline]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet consumed.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.input.len() - self.pos
    }

    /// The unread rest of the input.
    #[inline]
    pub fn rest(&self) -> &'de [u8] {
        &self.input[self.pos..]
    }

    /// Decodes one `T` in `mode` and fails if any input is left after it.
    pub fn read_exact<T: IprotoUnpack<'de>>(mut self, mode: Mode) -> Result<T, DecodeError> {
        let value = T::unpack(&mut self, mode)?;
        match self.remaining() {
            0 => Ok(value),
            count => Err(DecodeError::new(DecodeErrorKind::TrailingBytes { count }, self.pos)),
        }
    }

    /// Takes the next `n` bytes.
    #[inline]
    pub fn take(&mut self, n: usize) -> Result<&'de [u8], DecodeError> {
        if n > self.remaining() {
            return Err(self.short(n));
        }
        let out = &self.input[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Takes the next `N` bytes as an array.
    #[inline]
    pub fn take_array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        match self.input.get(self.pos..self.pos + N) {
            Some(s) => {
                self.pos += N;
                // The slice has exactly N bytes.
                let mut out = [0u8; N];
                out.copy_from_slice(s);
                Ok(out)
            }
            None => Err(self.short(N)),
        }
    }

    /// Takes the next `n` bytes as `Bytes`: a zero-copy slice when the reader was made by
    /// [`Reader::from_bytes`], a copy otherwise.
    #[inline]
    pub fn take_bytes(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        let start = self.pos;
        let slice = self.take(n)?;
        Ok(self.share(start, slice))
    }

    /// `slice`, read at `at`, as `Bytes`: a slice of the owner if there is one, else a copy.
    #[inline]
    fn share(&self, at: usize, slice: &'de [u8]) -> Bytes {
        match self.owner {
            // `input` is all of `owner`, so positions in one are positions in the other.
            Some(owner) => owner.slice(at..at + slice.len()),
            None => copy_out(slice),
        }
    }

    /// Reads one byte.
    #[inline]
    pub fn read_u8(&mut self) -> Result<u8, DecodeError> {
        match self.input.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(self.short(1)),
        }
    }

    /// Reads a BER integer that must fit `bits` bits (16, 32 or 64).
    #[inline]
    pub fn read_ber(&mut self, bits: u32, target: &'static str) -> Result<u64, DecodeError> {
        let (value, used) = ber::get(self.rest(), bits, target, self.pos)?;
        self.pos += used;
        Ok(value)
    }

    /// Reads a `u32` length prefix in `mode` and checks that that many bytes remain.
    #[inline]
    pub fn read_len(&mut self, mode: Mode) -> Result<usize, DecodeError> {
        let start = self.pos;
        let len = self.read_prefix(mode)?;
        if len > self.remaining() {
            return Err(self.beyond_input(start, len));
        }
        Ok(len)
    }

    /// Reads a byte string with a `u32` length prefix in `mode` (one bounds check for both).
    #[inline]
    pub fn read_prefixed(&mut self, mode: Mode) -> Result<&'de [u8], DecodeError> {
        let start = self.pos;
        let len = self.read_prefix(mode)?;
        match self.input.get(self.pos..).and_then(|rest| rest.get(..len)) {
            Some(out) => {
                self.pos += len;
                Ok(out)
            }
            None => Err(self.beyond_input(start, len)),
        }
    }

    /// [`read_prefixed`](Self::read_prefixed) as `Bytes`: a zero-copy slice when the reader
    /// was made by [`Reader::from_bytes`], a copy otherwise.
    #[inline]
    pub fn read_prefixed_bytes(&mut self, mode: Mode) -> Result<Bytes, DecodeError> {
        let out = self.read_prefixed(mode)?;
        Ok(self.share(self.pos - out.len(), out))
    }

    /// A length prefix at `start` that claims more than the input holds; the reader goes back
    /// to `start`.
    #[cold]
    fn beyond_input(&mut self, start: usize, len: usize) -> DecodeError {
        self.pos = start;
        DecodeError::new(
            DecodeErrorKind::LengthBeyondInput { what: "length", len: len as u64, remaining: self.remaining() },
            start,
        )
    }

    /// Reads a `u32` element count in `mode` and checks it against the remaining input, given
    /// that every element takes at least `min_elem_size` bytes (0 is treated as 1).
    #[inline]
    pub fn read_count(&mut self, mode: Mode, min_elem_size: usize) -> Result<usize, DecodeError> {
        let start = self.pos;
        let count = self.read_prefix(mode)?;
        let remaining = self.remaining();
        if count > remaining / min_elem_size.max(1) {
            self.pos = start;
            return Err(DecodeError::new(
                DecodeErrorKind::LengthBeyondInput { what: "count", len: count as u64, remaining },
                start,
            ));
        }
        Ok(count)
    }

    #[inline]
    fn read_prefix(&mut self, mode: Mode) -> Result<usize, DecodeError> {
        Ok(match mode {
            Mode::Fixed => u32::from_le_bytes(self.take_array()?) as usize,
            Mode::Ber => self.read_ber(32, "u32")? as usize,
        })
    }

    #[cold]
    fn short(&self, needed: usize) -> DecodeError {
        DecodeError::new(DecodeErrorKind::UnexpectedEnd { needed, remaining: self.remaining() }, self.pos)
    }
}

/// A `Bytes` field read from a borrowed slice: a copy, kept out of line so that the zero-copy
/// path of [`Reader::take_bytes`] and [`Reader::read_prefixed_bytes`] stays small (not
/// `#[cold]`: it is every read of a reader made by [`Reader::new`]).
#[inline(never)]
fn copy_out(slice: &[u8]) -> Bytes {
    Bytes::copy_from_slice(slice)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_taken_from_bytes_share_them_and_from_a_slice_are_copied() {
        let input = Bytes::from_static(b"..abc.");
        let mut r = Reader::from_bytes(&input);
        r.take(2).unwrap();
        let shared = r.take_bytes(3).unwrap();
        assert_eq!(&shared[..], b"abc");
        assert_eq!(shared.as_ptr(), input[2..].as_ptr(), "a slice of the input, not a copy");
        assert_eq!((r.position(), r.remaining()), (5, 1));
        assert!(r.take_bytes(2).is_err(), "past the end");
        assert_eq!(r.position(), 5, "a failed take consumes nothing");

        let mut r = Reader::new(&input[..]);
        r.take(2).unwrap();
        let copied = r.take_bytes(3).unwrap();
        assert_eq!(&copied[..], b"abc");
        assert_ne!(copied.as_ptr(), input[2..].as_ptr());
    }

    #[test]
    fn a_prefixed_string_is_read_with_its_length_or_not_at_all() {
        let input = Bytes::from_static(b"\x03\x00\x00\x00abc\x05\x00\x00\x00de");
        let mut r = Reader::from_bytes(&input);
        let shared = r.read_prefixed_bytes(Mode::Fixed).unwrap();
        assert_eq!(&shared[..], b"abc");
        assert_eq!(shared.as_ptr(), input[4..].as_ptr(), "a slice of the input, not a copy");
        let err = r.read_prefixed_bytes(Mode::Fixed).unwrap_err();
        assert!(matches!(err.kind(), DecodeErrorKind::LengthBeyondInput { len: 5, remaining: 6, .. }), "{err}");
        assert_eq!((r.position(), err.offset()), (7, 7), "a failed read consumes nothing");
        let mut r = Reader::new(&input[7..]);
        assert!(r.read_prefixed(Mode::Fixed).is_err());
        assert_eq!(r.position(), 0);
        let mut r = Reader::new(&input[..7]);
        assert_eq!(r.read_prefixed(Mode::Fixed).unwrap(), b"abc");
        assert_eq!(r.remaining(), 0);
    }
}
