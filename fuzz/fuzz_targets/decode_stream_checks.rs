//! The `decode_stream` target's checks, shared with the test that writes its seeds
//! (`tests/fuzz_seeds.rs`), which runs them on each seed and asserts the outcome it was built
//! for (packets, a size-limit rejection, a truncation at EOF).

use bytes::BytesMut;
use iproto::{FrameError, Packet, PacketCodec, HEADER_LEN};
use tokio_util::codec::{Decoder, Encoder};

/// What a decoder made of a whole stream.
#[derive(Debug, PartialEq)]
pub struct Outcome {
    pub packets: Vec<Packet>,
    /// The body length of the packet rejected by the size limit, if one was.
    pub too_large: Option<u32>,
    /// Bytes left undecoded at the end (0 after a size-limit error: how much of the stream
    /// was fed by then depends on the chunking).
    pub leftover: usize,
}

fn size_limit(selector: u8) -> u32 {
    match selector {
        0xff => u32::MAX,
        0xfe => iproto::wire::DEFAULT_SIZE_LIMIT,
        n => u32::from(n) * 3,
    }
}

/// Chunk sizes from a small xorshift generator: mostly tiny (1-byte trickles, split headers),
/// sometimes large.
struct Chunks(u32);

impl Chunks {
    fn next(&mut self) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        match self.0 % 8 {
            0 => 1,
            1..=5 => 1 + (self.0 >> 8) as usize % (2 * HEADER_LEN),
            _ => 1 + (self.0 >> 8) as usize % 512,
        }
    }
}

fn decode_all(codec: &mut PacketCodec, buf: &mut BytesMut, out: &mut Outcome) -> bool {
    loop {
        match codec.decode(buf) {
            Ok(Some(p)) => {
                assert_eq!(p.header.len as usize, p.body.len(), "header len must match the body");
                assert!(p.header.len <= codec.size_limit());
                out.packets.push(p);
            }
            Ok(None) => return true,
            Err(FrameError::TooLarge { len, limit }) => {
                assert_eq!(limit, codec.size_limit());
                assert!(len > limit, "TooLarge with len {len} within limit {limit}");
                out.too_large = Some(len);
                return false;
            }
            Err(e) => panic!("decode of an in-memory buffer failed with {e}"),
        }
    }
}

fn run(limit: u32, seed: u32, stream: &[u8], chunked: bool) -> Outcome {
    let mut codec = PacketCodec::with_size_limit(limit);
    let mut out = Outcome { packets: Vec::new(), too_large: None, leftover: 0 };
    let mut buf = BytesMut::new();
    let mut chunks = Chunks(seed | 1);
    let mut fed = 0;
    while fed < stream.len() {
        let n = if chunked { chunks.next().min(stream.len() - fed) } else { stream.len() };
        buf.extend_from_slice(&stream[fed..fed + n]);
        fed += n;
        let go_on = decode_all(&mut codec, &mut buf, &mut out);
        // Never reserve what a header claims: the buffer is bounded by the bytes fed.
        assert!(buf.capacity() <= 4 * fed + 64, "buffer of {} for {fed} bytes fed", buf.capacity());
        if !go_on {
            break;
        }
    }
    if out.too_large.is_none() {
        out.leftover = buf.len();
        match codec.decode_eof(&mut buf) {
            Ok(None) => assert!(buf.is_empty()),
            Err(FrameError::Truncated { have, need }) => {
                assert_eq!(have, out.leftover);
                assert!(have > 0 && have < need, "truncated {have} of {need}");
            }
            other => panic!("decode_eof after draining gave {other:?}"),
        }
    }
    out
}

/// Runs the target's checks on `data`; `None` if it is too short to hold a stream.
pub fn check(data: &[u8]) -> Option<Outcome> {
    let [selector, s0, s1, stream @ ..] = data else { return None };
    let limit = size_limit(*selector);
    let seed = u32::from(*s0) << 8 | u32::from(*s1);
    let whole = run(limit, seed, stream, false);
    let chunked = run(limit, seed, stream, true);
    assert_eq!(whole, chunked, "chunking changed the decoded packets");

    // The packets re-encode to exactly the prefix of the stream they were decoded from.
    let mut again = BytesMut::new();
    for p in &whole.packets {
        PacketCodec::new().encode(p, &mut again).expect("encode a decoded packet");
    }
    assert_eq!(&again[..], &stream[..again.len()]);
    if whole.too_large.is_none() {
        assert_eq!(again.len() + whole.leftover, stream.len());
    }
    Some(whole)
}
