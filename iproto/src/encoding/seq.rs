//! Sequences: a count in the sequence's mode, then the elements, each in Fixed mode unless the
//! caller opts in to BER elements (`#[iproto(elem = ber)]` in the derive).

use bytes::BufMut;

use super::{DecodeError, IprotoPack, IprotoUnpack, Mode, PackError, Reader};

/// Writes `count` as a `u32` length or count prefix in `mode`.
#[inline]
pub fn pack_len<B: BufMut>(buf: &mut B, len: usize, mode: Mode) -> Result<(), PackError> {
    let len32 = u32::try_from(len).map_err(|_| PackError::LengthOverflow { len })?;
    match mode {
        Mode::Fixed => buf.put_u32_le(len32),
        Mode::Ber => super::ber::put(buf, u64::from(len32)),
    }
    Ok(())
}

/// Packs `items` as a sequence: the count in `count_mode`, the elements in `elem_mode`.
#[inline]
pub fn pack<T: IprotoPack, B: BufMut>(
    items: &[T],
    buf: &mut B,
    count_mode: Mode,
    elem_mode: Mode,
) -> Result<(), PackError> {
    pack_len(buf, items.len(), count_mode)?;
    T::pack_elements(items, buf, elem_mode)
}

/// Unpacks a sequence: the count in `count_mode`, the elements in `elem_mode`.
///
/// The count is checked against the remaining input before anything is allocated.
#[inline]
pub fn unpack<'de, T: IprotoUnpack<'de>>(
    r: &mut Reader<'de>,
    count_mode: Mode,
    elem_mode: Mode,
) -> Result<Vec<T>, DecodeError> {
    let count = r.read_count(count_mode, T::min_size(elem_mode))?;
    T::unpack_elements(r, count, elem_mode)
}

/// Reads `count` elements one at a time, each in `elem_mode`, adding the element index to the
/// error path (the default of [`IprotoUnpack::unpack_elements`]).
#[inline]
pub fn unpack_each<'de, T: IprotoUnpack<'de>>(
    r: &mut Reader<'de>,
    count: usize,
    elem_mode: Mode,
) -> Result<Vec<T>, DecodeError> {
    let mut out = Vec::with_capacity(cautious_capacity::<T>(count));
    for i in 0..count {
        out.push(T::unpack(r, elem_mode).map_err(|e| e.in_index(i))?);
    }
    Ok(out)
}

/// How many elements to reserve up front for a sequence of `count`: at most about 64 KiB, so a
/// count that passed the input-size check still cannot make us allocate much more than the
/// input itself.
#[inline]
pub fn cautious_capacity<T>(count: usize) -> usize {
    const MAX_PREALLOC_BYTES: usize = 64 * 1024;
    let size = std::mem::size_of::<T>().max(1);
    count.min(MAX_PREALLOC_BYTES / size)
}
