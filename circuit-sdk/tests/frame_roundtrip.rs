//! Property tests of `FrameCodec`: frames encoded back to back and fed to the decoder in any
//! chunks come out the same and in order; a truncated stream never yields a wrong frame and fails
//! at end of stream; the size limit holds on both sides.

use bytes::{Bytes, BytesMut};
use circuit_sdk::proto::{Frame, FrameCodec, FrameError, SignalOp};
use proptest::prelude::*;
use tokio_util::codec::Decoder;

/// Large enough for every generated frame.
const MAX_FRAME: usize = 64 * 1024;

/// Every signal op this build defines, found by wire value so a new op is covered unlisted.
fn all_ops() -> Vec<SignalOp> {
    (0..=u8::MAX).filter_map(SignalOp::from_u8).collect()
}

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        bytes(512).prop_map(Frame::Control),
        (any::<u64>(), any::<u64>(), bytes(4096)).prop_map(|(id, seq, payload)| Frame::Data {
            id,
            seq,
            payload
        }),
        (
            any::<u64>(),
            prop::sample::select(all_ops()),
            any::<u64>(),
            any::<u64>()
        )
            .prop_map(|(id, op, a, b)| Frame::Signal { id, op, a, b }),
    ]
}

/// Chunk sizes to cut the stream into, cycled; tiny ones often, so headers get split.
fn chunks() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(prop_oneof![1..8usize, 1..2048usize], 1..16)
}

/// The frames encoded back to back, and where each one's encoding ends.
fn encode_all(frames: &[Frame]) -> (BytesMut, Vec<usize>) {
    let codec = FrameCodec::new(MAX_FRAME);
    let mut buf = BytesMut::new();
    let mut ends = Vec::new();
    for frame in frames {
        codec.encode_ref(frame, &mut buf).expect("encode");
        ends.push(buf.len());
    }
    (buf, ends)
}

/// Every frame `buf` yields until the decoder wants more bytes; errors fail the test.
fn drain(codec: &mut FrameCodec, buf: &mut BytesMut, out: &mut Vec<Frame>) {
    while let Some(frame) = codec.decode(buf).expect("decode") {
        out.push(frame);
    }
}

#[test]
fn every_signal_op_round_trips_its_wire_value() {
    let ops = all_ops();
    // The lowest and highest ops, so the generator's list is not empty nor cut short.
    assert!(ops.contains(&SignalOp::Credit) && ops.contains(&SignalOp::Drained));
    for op in ops {
        assert_eq!(SignalOp::from_u8(op as u8), Some(op));
    }
}

proptest! {
    #[test]
    fn frames_fed_in_chunks_decode_to_the_same_frames(
        frames in prop::collection::vec(frame(), 0..16),
        sizes in chunks(),
    ) {
        let (wire, _) = encode_all(&frames);
        let mut codec = FrameCodec::new(MAX_FRAME);
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        let mut rest = &wire[..];
        for &size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, tail) = rest.split_at(size.min(rest.len()));
            buf.extend_from_slice(piece);
            rest = tail;
            drain(&mut codec, &mut buf, &mut decoded);
        }
        prop_assert_eq!(&decoded, &frames);
        prop_assert!(buf.is_empty());
        prop_assert!(codec.decode_eof(&mut buf).expect("clean end").is_none());
    }

    #[test]
    fn a_truncated_stream_yields_only_its_whole_frames_then_fails_at_eof(
        frames in prop::collection::vec(frame(), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let (wire, ends) = encode_all(&frames);
        let cut = cut.index(wire.len() + 1);
        let whole = ends.iter().filter(|&&end| end <= cut).count();
        let pending = cut - if whole == 0 { 0 } else { ends[whole - 1] };

        let mut codec = FrameCodec::new(MAX_FRAME);
        let mut buf = BytesMut::from(&wire[..cut]);
        let mut decoded = Vec::new();
        drain(&mut codec, &mut buf, &mut decoded);
        prop_assert_eq!(&decoded[..], &frames[..whole]);
        prop_assert_eq!(buf.len(), pending);
        match codec.decode_eof(&mut buf) {
            Ok(None) => prop_assert_eq!(pending, 0),
            Err(FrameError::Truncated(n)) => prop_assert_eq!(n, pending),
            other => prop_assert!(false, "decode_eof with {} pending: {:?}", pending, other),
        }
    }

    #[test]
    fn frames_over_the_limit_are_refused_by_both_sides(
        frame in frame(),
        max in 1..4096usize,
    ) {
        let (wire, _) = encode_all(std::slice::from_ref(&frame));
        let len = wire.len() - 4;
        let small = FrameCodec::new(max);
        let encoded = small.encode_ref(&frame, &mut BytesMut::new());
        let decoded = FrameCodec::new(max).decode(&mut BytesMut::from(&wire[..]));
        if len <= max {
            prop_assert!(encoded.is_ok());
            prop_assert_eq!(decoded.expect("decode"), Some(frame));
        } else {
            let too_large = |e: &FrameError| {
                matches!(e, FrameError::TooLarge { len: l, max: m } if (*l, *m) == (len, max))
            };
            prop_assert!(encoded.as_ref().is_err_and(too_large), "{:?}", encoded);
            // Refused from the length prefix alone, before the body arrives.
            let prefix = FrameCodec::new(max).decode(&mut BytesMut::from(&wire[..4]));
            prop_assert!(prefix.as_ref().is_err_and(too_large), "{:?}", prefix);
            prop_assert!(decoded.as_ref().is_err_and(too_large), "{:?}", decoded);
        }
    }
}
