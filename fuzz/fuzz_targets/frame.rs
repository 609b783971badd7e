//! Fuzz target `frame`: arbitrary bytes through `FrameCodec`, the decoder every connection uses.
//! Decoding must never panic; each decoded frame re-encodes to exactly the bytes it came from
//! and decodes back to itself; fed in small chunks, the stream gives the same frames and outcome.
#![no_main]

use bytes::BytesMut;
use circuit_sdk::proto::{Frame, FrameCodec};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

/// Small enough that length prefixes above it (most of the u32 range) are exercised, larger than
/// any input (libFuzzer's 4 KiB), and small because the decoder reserves room for the announced
/// length: at 1 MiB an input with a large prefix ran about nine times slower under ASan.
const MAX_FRAME: usize = 64 * 1024;

/// How a byte stream ended: the frames read, then the error (as text) or the bytes left over.
#[derive(Debug, PartialEq)]
struct Outcome {
    frames: Vec<Frame>,
    end: Result<usize, String>,
}

fuzz_target!(|data: &[u8]| {
    let whole = decode_whole(data);
    for chunk in [1, 3, 64] {
        assert_eq!(decode_chunked(data, chunk), whole, "chunks of {chunk}");
    }
});

/// Decodes `data` in one buffer, checking each frame against its own bytes.
fn decode_whole(data: &[u8]) -> Outcome {
    let mut codec = FrameCodec::new(MAX_FRAME);
    let mut buf = BytesMut::from(data);
    let mut frames = Vec::new();
    loop {
        let start = data.len() - buf.len();
        match codec.decode(&mut buf) {
            Ok(Some(frame)) => {
                let end = data.len() - buf.len();
                check_round_trip(&frame, &data[start..end]);
                frames.push(frame);
            }
            Ok(None) => break,
            Err(e) => {
                return Outcome {
                    frames,
                    end: Err(e.to_string()),
                }
            }
        }
    }
    // The buffer holds less than a frame: end of stream is clean only if it is empty.
    let left = buf.len();
    match codec.decode_eof(&mut buf) {
        Ok(None) => assert_eq!(left, 0, "decode_eof accepted {left} trailing bytes"),
        Ok(Some(frame)) => panic!("decode_eof found a frame decode did not: {frame:?}"),
        Err(e) => assert!(left > 0, "decode_eof failed on an empty buffer: {e}"),
    }
    Outcome {
        frames,
        end: Ok(left),
    }
}

/// Decodes `data` as it would arrive from a socket, `chunk` bytes at a time.
fn decode_chunked(data: &[u8], chunk: usize) -> Outcome {
    let mut codec = FrameCodec::new(MAX_FRAME);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => {
                    return Outcome {
                        frames,
                        end: Err(e.to_string()),
                    }
                }
            }
        }
    }
    Outcome {
        frames,
        end: Ok(buf.len()),
    }
}

/// A decoded frame encodes to the bytes it was decoded from, and those decode to it again.
fn check_round_trip(frame: &Frame, wire: &[u8]) {
    let mut codec = FrameCodec::new(MAX_FRAME);
    let mut out = BytesMut::new();
    codec
        .encode_ref(frame, &mut out)
        .expect("a decoded frame re-encodes");
    assert_eq!(&out[..], wire, "re-encoding differs from the input");
    let again = codec
        .decode(&mut out)
        .expect("re-decode")
        .expect("a whole frame");
    assert_eq!(&again, frame);
    assert!(out.is_empty(), "re-decoding left {} bytes", out.len());
}
