//! The packet format (docs/protocol.md): a 12-byte little-endian header `msg, len, sync`
//! followed by `len` body bytes, and [`PacketCodec`], its `tokio_util` codec.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Length of the packet header in bytes.
pub const HEADER_LEN: usize = 12;
/// Message code of a ping; answered with the same sync and an empty body.
pub const MSG_PING: u32 = 0xff00;
/// Message code of the graceful-shutdown handshake (go-iproto's convention).
pub const MSG_SHUTDOWN: u32 = 0xff01;
/// Codes at or above this are reserved for control messages.
pub const MSG_RESERVED_MIN: u32 = 0xff00;
/// Default limit on a packet body, in bytes (go-iproto's `SizeLimit`).
pub const DEFAULT_SIZE_LIMIT: u32 = 100_000_000;

/// The 12-byte packet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Header {
    /// Message (method) code.
    pub msg: u32,
    /// Body length in bytes.
    pub len: u32,
    /// Correlation id; 0 for notifications.
    pub sync: u32,
}

impl Header {
    /// Parses a header from its 12 bytes.
    ///
    /// ```
    /// let h = iproto::Header::from_bytes(&[0x2a, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0]);
    /// assert_eq!(h, iproto::Header { msg: 42, len: 2, sync: 1 });
    /// ```
    #[inline]
    pub fn from_bytes(b: &[u8; HEADER_LEN]) -> Header {
        let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Header { msg: word(0), len: word(4), sync: word(8) }
    }

    /// The header's 12 bytes.
    #[inline]
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&self.msg.to_le_bytes());
        out[4..8].copy_from_slice(&self.len.to_le_bytes());
        out[8..12].copy_from_slice(&self.sync.to_le_bytes());
        out
    }
}

/// One packet: header and body. `header.len` always equals `body.len()` for packets this crate
/// produces; when encoding, the length is taken from the body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Packet {
    /// The header.
    pub header: Header,
    /// The body.
    pub body: Bytes,
}

impl Packet {
    /// A packet with the given code, sync and body (`len` derived from the body).
    ///
    /// ```
    /// let p = iproto::Packet::new(42, 1, "OK");
    /// assert_eq!(p.header.len, 2);
    /// ```
    pub fn new(msg: u32, sync: u32, body: impl Into<Bytes>) -> Packet {
        let body = body.into();
        Packet { header: Header { msg, len: body.len() as u32, sync }, body }
    }

    /// The reply to this packet: same `msg` and `sync`, a new body (go-iproto's `ResponseTo`).
    pub fn reply(&self, body: impl Into<Bytes>) -> Packet {
        Packet::new(self.header.msg, self.header.sync, body)
    }
}

/// Errors of the packet layer.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// An incoming body is longer than the size limit.
    #[error("packet body of {len} bytes exceeds the size limit of {limit} bytes")]
    TooLarge {
        /// The length in the header.
        len: u32,
        /// The configured limit.
        limit: u32,
    },
    /// An outgoing body does not fit the 32-bit length field.
    #[error("packet body of {len} bytes does not fit the 32-bit length field")]
    BodyOverflow {
        /// The body length.
        len: usize,
    },
    /// The stream ended inside a packet.
    #[error("truncated packet: stream ended after {have} of {need} bytes")]
    Truncated {
        /// Bytes of the packet received.
        have: usize,
        /// Bytes the packet needs (header, plus body once the header is known).
        need: usize,
    },
    /// The transport failed.
    #[error("i/o error: {0}")]
    Io(std::sync::Arc<std::io::Error>),
}

impl From<std::io::Error> for FrameError {
    fn from(e: std::io::Error) -> Self {
        FrameError::Io(std::sync::Arc::new(e))
    }
}

/// Writes a packet with `msg`, `sync` and `body` into `buf`, `len` taken from the body.
#[inline]
pub fn encode_packet<B: BufMut>(buf: &mut B, msg: u32, sync: u32, body: &[u8]) -> Result<(), FrameError> {
    let len = u32::try_from(body.len()).map_err(|_| FrameError::BodyOverflow { len: body.len() })?;
    buf.put_slice(&Header { msg, len, sync }.to_bytes());
    buf.put_slice(body);
    Ok(())
}

/// A `tokio_util` codec for iproto packets with an incoming size limit.
///
/// The decoder never reserves the length a header claims: the buffer grows only as bytes
/// arrive, so a hostile `len = 0xffffffff` costs nothing.
///
/// ```
/// use bytes::BytesMut;
/// use tokio_util::codec::{Decoder, Encoder};
/// use iproto::{Packet, PacketCodec};
///
/// let mut codec = PacketCodec::new();
/// let mut buf = BytesMut::new();
/// codec.encode(Packet::new(42, 1, "OK"), &mut buf).unwrap();
/// assert_eq!(&buf[..], b"\x2a\0\0\0\x02\0\0\0\x01\0\0\0OK");
/// let p = codec.decode(&mut buf).unwrap().unwrap();
/// assert_eq!(&p.body[..], b"OK");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct PacketCodec {
    size_limit: u32,
}

impl Default for PacketCodec {
    fn default() -> Self {
        PacketCodec { size_limit: DEFAULT_SIZE_LIMIT }
    }
}

impl PacketCodec {
    /// A codec with the default size limit of 100 000 000 bytes.
    pub fn new() -> Self {
        Self::default()
    }

    /// A codec with the given limit on incoming bodies (inclusive).
    pub fn with_size_limit(size_limit: u32) -> Self {
        PacketCodec { size_limit }
    }

    /// The limit on incoming bodies.
    pub fn size_limit(&self) -> u32 {
        self.size_limit
    }

    /// The header of the next packet in `src`, if complete, after checking its length against
    /// the limit. Does not consume anything.
    #[inline]
    pub fn peek_header(&self, src: &[u8]) -> Result<Option<Header>, FrameError> {
        let Some(head) = src.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let header = Header::from_bytes(head);
        if header.len > self.size_limit {
            return Err(FrameError::TooLarge { len: header.len, limit: self.size_limit });
        }
        Ok(Some(header))
    }
}

impl Decoder for PacketCodec {
    type Item = Packet;
    type Error = FrameError;

    #[inline]
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, FrameError> {
        let Some(header) = self.peek_header(src)? else {
            return Ok(None);
        };
        let total = HEADER_LEN + header.len as usize;
        if src.len() < total {
            return Ok(None);
        }
        let mut frame = src.split_to(total);
        frame.advance(HEADER_LEN);
        Ok(Some(Packet { header, body: frame.freeze() }))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, FrameError> {
        match self.decode(src)? {
            Some(p) => Ok(Some(p)),
            None if src.is_empty() => Ok(None),
            None => Err(truncated(src)),
        }
    }
}

/// The truncated-packet error for the partial packet left in `src` at end of stream.
pub(crate) fn truncated(src: &[u8]) -> FrameError {
    let need = match src.first_chunk::<HEADER_LEN>() {
        Some(head) => HEADER_LEN + Header::from_bytes(head).len as usize,
        None => HEADER_LEN,
    };
    FrameError::Truncated { have: src.len(), need }
}

impl Encoder<Packet> for PacketCodec {
    type Error = FrameError;

    fn encode(&mut self, item: Packet, dst: &mut BytesMut) -> Result<(), FrameError> {
        dst.reserve(HEADER_LEN + item.body.len());
        encode_packet(dst, item.header.msg, item.header.sync, &item.body)
    }
}

impl Encoder<&Packet> for PacketCodec {
    type Error = FrameError;

    fn encode(&mut self, item: &Packet, dst: &mut BytesMut) -> Result<(), FrameError> {
        dst.reserve(HEADER_LEN + item.body.len());
        encode_packet(dst, item.header.msg, item.header.sync, &item.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(p: &Packet) -> Vec<u8> {
        let mut buf = BytesMut::new();
        PacketCodec::new().encode(p, &mut buf).unwrap();
        buf.to_vec()
    }

    #[test]
    fn header_layout() {
        // First Call(42, "OK") on a fresh channel.
        assert_eq!(hex::encode(enc(&Packet::new(42, 1, "OK"))), "2a00000002000000010000004f4b");
        assert_eq!(hex::encode(enc(&Packet::new(MSG_PING, 0, ""))), "00ff00000000000000000000");
        assert_eq!(hex::encode(enc(&Packet::new(MSG_SHUTDOWN, 0, ""))), "01ff00000000000000000000");
        // Msg=1, Len=0, Sync=3.
        assert_eq!(hex::encode(enc(&Packet::new(1, 3, ""))), "010000000000000003000000");
    }

    #[test]
    fn encoder_derives_len() {
        // A header claiming the wrong length is ignored; len comes from the body.
        let p = Packet { header: Header { msg: 7, len: 999, sync: 2 }, body: Bytes::from_static(b"abc") };
        assert_eq!(&enc(&p)[4..8], &3u32.to_le_bytes());
    }

    #[test]
    fn size_limit_inclusive() {
        // Len == limit passes, len > limit is an error naming both numbers.
        let mut codec = PacketCodec::with_size_limit(3);
        let mut ok = BytesMut::from(&enc(&Packet::new(1, 1, "abc"))[..]);
        assert_eq!(&codec.decode(&mut ok).unwrap().unwrap().body[..], b"abc");
        let mut big = BytesMut::from(&enc(&Packet::new(1, 1, "abcd"))[..]);
        let err = codec.decode(&mut big).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { len: 4, limit: 3 }));
        assert!(err.to_string().contains('4') && err.to_string().contains('3'));
    }

    #[test]
    fn hostile_length_allocates_nothing() {
        let mut codec = PacketCodec::with_size_limit(u32::MAX);
        let mut buf = BytesMut::from(&Header { msg: 1, len: u32::MAX, sync: 1 }.to_bytes()[..]);
        let cap = buf.capacity();
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert_eq!(buf.capacity(), cap, "decoder must not reserve the claimed length");
    }

    #[test]
    fn eof_inside_packet_is_truncated() {
        let mut codec = PacketCodec::new();
        // Clean EOF at a boundary.
        assert!(codec.decode_eof(&mut BytesMut::new()).unwrap().is_none());
        // Mid-header.
        let mut part = BytesMut::from(&[1u8, 0, 0][..]);
        assert!(matches!(codec.decode_eof(&mut part), Err(FrameError::Truncated { have: 3, need: 12 })));
        // Full header, no body byte (go-iproto calls this a clean EOF).
        let mut head = BytesMut::from(&Header { msg: 1, len: 5, sync: 1 }.to_bytes()[..]);
        assert!(matches!(codec.decode_eof(&mut head), Err(FrameError::Truncated { have: 12, need: 17 })));
    }

    #[test]
    fn back_to_back_packets() {
        let mut codec = PacketCodec::new();
        let mut buf = BytesMut::new();
        for i in 0..3u32 {
            codec.encode(Packet::new(i, i + 1, vec![i as u8; i as usize]), &mut buf).unwrap();
        }
        for i in 0..3u32 {
            let p = codec.decode(&mut buf).unwrap().unwrap();
            assert_eq!(p.header, Header { msg: i, len: i, sync: i + 1 });
            assert_eq!(p.body.len(), i as usize); // Len 0 gives an empty body
        }
        assert!(codec.decode(&mut buf).unwrap().is_none());
    }
}
