//! Frames: the only place that turns bytes into messages and back.
//! A frame is `u32 length (big-endian) | u8 kind | body`, where length counts kind and body.
//! Kinds: 1 control (JSON), 2 data (`u64 stream | u64 seq | payload`), 3 signal
//! (`u64 stream | u8 op | u64 a | u64 b`), the last two for channel streams.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder, FramedRead};

/// Largest frame accepted by default: a 16 MiB payload plus room for headers.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024 + 64 * 1024;

/// Bytes a reader of frames takes from its socket at most at once (`FramedRead::with_capacity`),
/// in the daemon and in clients: a burst of small values (a 16 B value is 37 bytes on the wire)
/// comes in with one read, not one per 8 KiB, tokio-util's default.
pub const READ_BUFFER: usize = 64 * 1024;

/// The next frame already in `reader`'s buffer, decoded there without reading the socket;
/// `None` when no whole frame is buffered. Readers take a burst with it after one read,
/// without polling the stream (and trying the socket) once per frame.
pub fn next_buffered<R>(
    reader: &mut FramedRead<R, FrameCodec>,
) -> Option<Result<Frame, FrameError>> {
    // The codec holds only its limit: a copy decodes the same.
    let mut codec = reader.decoder().clone();
    codec.decode(reader.read_buffer_mut()).transpose()
}

/// Bytes before the body: the length prefix and the kind byte.
pub const HEADER_LEN: usize = 5;

/// What a frame carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A JSON control message (UTF-8).
    Control(Bytes),
    /// Opaque payload bytes on a channel stream: never decoded by a daemon.
    Data {
        /// The stream (request) the payload belongs to.
        id: u64,
        /// On a send stream, the sender's sequence number of the value; on a receive stream,
        /// the channel's id of the delivered value.
        seq: u64,
        /// The payload.
        payload: Bytes,
    },
    /// A small fixed-size control signal on a channel stream (credit, acks, acceptance).
    Signal {
        /// The stream (request) the signal belongs to.
        id: u64,
        /// What it says.
        op: SignalOp,
        /// First argument (meaning depends on `op`).
        a: u64,
        /// Second argument (meaning depends on `op`).
        b: u64,
    },
}

/// Body length of a signal frame: stream, op, a, b.
const SIGNAL_BODY: usize = 8 + 1 + 8 + 8;
/// Bytes of a data frame body before the payload: stream and seq.
pub const DATA_HEAD: usize = 16;

macro_rules! signal_ops {
    ($($(#[$doc:meta])* $name:ident = $value:literal,)*) => {
        /// The signals of channel streams. Client to daemon below 16, daemon to client above.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum SignalOp {
            $($(#[$doc])* $name = $value,)*
        }

        impl SignalOp {
            /// The op with this wire value, if any.
            pub fn from_u8(v: u8) -> Option<Self> {
                match v {
                    $($value => Some(Self::$name),)*
                    _ => None,
                }
            }
        }
    };
}

signal_ops! {
    /// Receive stream: the daemon may deliver `a` more values.
    Credit = 1,
    /// Receive stream: the oldest `a` delivered values were taken by the application; they
    /// leave the channel.
    Ack = 2,
    /// Receive stream: `a` delivered, unacknowledged values go back to the head of the queue,
    /// in order: the newest `a` of the first `b` values delivered on the stream (the client's
    /// count of values received; those delivered after it are still on their way and stay).
    Return = 3,
    /// Receive stream: deliver one value if one is ready now, else answer `Empty`.
    TryRecv = 4,
    /// Receive stream: cancel all outstanding credit.
    Withdraw = 5,
    /// Send stream: the value with seq `a` (sent next) must not wait: refuse it with `Full`
    /// unless it can be accepted (or, at capacity 0, taken by a waiting receiver) now.
    TrySend = 6,
    /// Send stream: withdraw the value with seq `a` if it is still waiting to be accepted.
    CancelSend = 7,
    /// Receive stream: the application waits and every value delivered is taken; `a` is the
    /// client's count of values received (if more were delivered, they are on their way and
    /// the receiver is not starving). Receivers that wait are served before prefetching ones,
    /// and values other receivers hold untaken are recalled for them.
    Waiting = 8,
    /// Receive stream: the answer to `Recall`: like `Return` (`a` values, the newest of the
    /// first `b` delivered), sent even when `a` is 0.
    Recalled = 9,
    /// Send stream: the answer to `Revoke`: every value sent under a reservation is sent
    /// (before this signal); the rest of the reservation is given back.
    Release = 10,
    /// Stdin stream: the input ended after chunk `a` (the number of chunks sent): once every
    /// chunk is written, the worker's stdin is closed (unless the stream keeps it open) and the
    /// stream ends with `done`.
    Eof = 11,
    /// Send stream: the values with seqs `a .. a + b` are accepted. Stdin stream: the chunks
    /// with those seqs are written to the worker's stdin.
    Accepted = 16,
    /// Send stream: the try-send with seq `a` was refused; nothing changed.
    Full = 17,
    /// Send stream: the value with seq `a` was withdrawn; nothing changed.
    Withdrawn = 18,
    /// Send stream: the values with seqs `a .. a + b` failed: the channel is closed.
    Closed = 19,
    /// Send stream: the value with seq `a` is larger than the channel's payload limit `b`.
    TooLarge = 20,
    /// Receive stream: a try-receive found nothing ready.
    Empty = 21,
    /// Receive stream: the channel is closed and drained; outstanding credit is void.
    Drained = 22,
    /// Send stream: room is reserved for every value with seq up to `a`: the owner accepts
    /// those at once whenever they come, even after a close.
    Reserve = 23,
    /// Send stream: give back the reservation (answer `Release`): another sender waits for
    /// room, or the channel closed.
    Revoke = 24,
    /// Receive stream: another receiver waits while this one holds values its application
    /// has not taken: give those back (answer `Recalled`), after acknowledging what was taken.
    Recall = 25,
}

/// Kind byte of a control frame.
pub const KIND_CONTROL: u8 = 1;
/// Kind byte of a data frame.
pub const KIND_DATA: u8 = 2;
/// Kind byte of a signal frame.
pub const KIND_SIGNAL: u8 = 3;

/// Why a byte stream could not be read as frames. Any of these ends the connection.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix is larger than the receiver accepts.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// Largest accepted length.
        max: usize,
    },
    /// A zero length prefix: a frame must at least carry its kind.
    #[error("empty frame (length 0)")]
    Empty,
    /// A kind byte this protocol version does not define.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// A data frame shorter than its stream id and seq.
    #[error("data frame of {0} bytes is too short for its stream id and seq")]
    ShortData(usize),
    /// A signal frame of the wrong size.
    #[error("signal frame of {0} bytes (expected {SIGNAL_BODY})")]
    BadSignal(usize),
    /// A signal op this protocol version does not define.
    #[error("unknown signal op {0}")]
    UnknownSignal(u8),
    /// The stream ended in the middle of a frame.
    #[error("connection closed in the middle of a frame ({0} bytes pending)")]
    Truncated(usize),
    /// The transport failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// tokio-util codec for [`Frame`]s with an enforced maximum size.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max_frame: usize,
}

impl FrameCodec {
    /// A codec that refuses frames longer than `max_frame` bytes (kind + body).
    pub fn new(max_frame: usize) -> Self {
        Self { max_frame }
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME)
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len == 0 {
            return Err(FrameError::Empty);
        }
        if len > self.max_frame {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame,
            });
        }
        if src.len() < 4 + len {
            src.reserve(4 + len - src.len());
            return Ok(None);
        }
        // The fixed fields are read in place; only a payload or a control body is split off
        // the buffer (a signal shares nothing with it).
        let body = &src[HEADER_LEN..4 + len];
        match src[4] {
            KIND_CONTROL => {
                src.advance(HEADER_LEN);
                Ok(Some(Frame::Control(src.split_to(len - 1).freeze())))
            }
            KIND_DATA => {
                if body.len() < DATA_HEAD {
                    return Err(FrameError::ShortData(body.len()));
                }
                let id = be_u64(&body[0..8]);
                let seq = be_u64(&body[8..16]);
                src.advance(HEADER_LEN + DATA_HEAD);
                Ok(Some(Frame::Data {
                    id,
                    seq,
                    payload: src.split_to(len - 1 - DATA_HEAD).freeze(),
                }))
            }
            KIND_SIGNAL => {
                if body.len() != SIGNAL_BODY {
                    return Err(FrameError::BadSignal(body.len()));
                }
                let op = SignalOp::from_u8(body[8]).ok_or(FrameError::UnknownSignal(body[8]))?;
                let frame = Frame::Signal {
                    id: be_u64(&body[0..8]),
                    op,
                    a: be_u64(&body[9..17]),
                    b: be_u64(&body[17..25]),
                };
                src.advance(4 + len);
                Ok(Some(frame))
            }
            other => Err(FrameError::UnknownKind(other)),
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        match self.decode(buf)? {
            Some(frame) => Ok(Some(frame)),
            None if buf.is_empty() => Ok(None),
            None => Err(FrameError::Truncated(buf.len())),
        }
    }
}

/// A big-endian u64 from exactly 8 bytes.
fn be_u64(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(bytes.try_into().expect("8 bytes"))
}

impl Encoder<Frame> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        self.encode_ref(&frame, dst)
    }
}

impl FrameCodec {
    /// Encodes a frame without taking it, so a caller can keep (or retry) it.
    pub fn encode_ref(&self, frame: &Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        let len = match frame {
            Frame::Control(body) => 1 + body.len(),
            Frame::Data { payload, .. } => 1 + DATA_HEAD + payload.len(),
            Frame::Signal { .. } => 1 + SIGNAL_BODY,
        };
        if len > self.max_frame {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame,
            });
        }
        dst.reserve(4 + len);
        // The fixed fields are laid out on the stack and copied in one go.
        let mut head = [0u8; 4 + 1 + SIGNAL_BODY];
        head[..4].copy_from_slice(&(len as u32).to_be_bytes());
        match frame {
            Frame::Control(body) => {
                head[4] = KIND_CONTROL;
                dst.put_slice(&head[..HEADER_LEN]);
                dst.put_slice(body);
            }
            Frame::Data { id, seq, payload } => {
                head[4] = KIND_DATA;
                head[5..13].copy_from_slice(&id.to_be_bytes());
                head[13..21].copy_from_slice(&seq.to_be_bytes());
                dst.put_slice(&head[..HEADER_LEN + DATA_HEAD]);
                dst.put_slice(payload);
            }
            Frame::Signal { id, op, a, b } => {
                head[4] = KIND_SIGNAL;
                head[5..13].copy_from_slice(&id.to_be_bytes());
                head[13] = *op as u8;
                head[14..22].copy_from_slice(&a.to_be_bytes());
                head[22..30].copy_from_slice(&b.to_be_bytes());
                dst.put_slice(&head);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(frame: Frame) -> Frame {
        let mut codec = FrameCodec::new(1024);
        let mut buf = BytesMut::new();
        codec.encode(frame, &mut buf).expect("encode");
        codec
            .decode(&mut buf)
            .expect("decode")
            .expect("whole frame")
    }

    #[test]
    fn control_and_data_round_trip() {
        let c = Frame::Control(Bytes::from_static(b"{\"type\":\"hello\"}"));
        assert_eq!(roundtrip(c.clone()), c);
        let d = Frame::Data {
            id: 7,
            seq: 9,
            payload: Bytes::from_static(b"\x00\x01binary"),
        };
        assert_eq!(roundtrip(d.clone()), d);
        let s = Frame::Signal {
            id: 7,
            op: SignalOp::Accepted,
            a: 3,
            b: u64::MAX,
        };
        assert_eq!(roundtrip(s.clone()), s);
    }

    #[test]
    fn frames_keep_their_wire_layout_and_decode_back_to_back() {
        let mut codec = FrameCodec::new(1024);
        let mut buf = BytesMut::new();
        let data = Frame::Data {
            id: 0x0102,
            seq: 0x0304,
            payload: Bytes::from_static(b"xy"),
        };
        let signal = Frame::Signal {
            id: 5,
            op: SignalOp::Ack,
            a: 6,
            b: 7,
        };
        codec.encode(data.clone(), &mut buf).expect("encode");
        let mut wire = vec![0, 0, 0, 19, KIND_DATA];
        wire.extend_from_slice(&0x0102u64.to_be_bytes());
        wire.extend_from_slice(&0x0304u64.to_be_bytes());
        wire.extend_from_slice(b"xy");
        assert_eq!(&buf[..], &wire[..]);
        codec.encode(signal.clone(), &mut buf).expect("encode");
        let mut wire = vec![0, 0, 0, 26, KIND_SIGNAL];
        wire.extend_from_slice(&5u64.to_be_bytes());
        wire.push(SignalOp::Ack as u8);
        wire.extend_from_slice(&6u64.to_be_bytes());
        wire.extend_from_slice(&7u64.to_be_bytes());
        assert_eq!(&buf[23..], &wire[..]);
        codec.encode(data.clone(), &mut buf).expect("encode");
        assert_eq!(codec.decode(&mut buf).expect("decode"), Some(data.clone()));
        assert_eq!(codec.decode(&mut buf).expect("decode"), Some(signal));
        assert_eq!(codec.decode(&mut buf).expect("decode"), Some(data));
        assert!(buf.is_empty());
        assert_eq!(codec.decode(&mut buf).expect("decode"), None);
    }

    #[test]
    fn partial_input_waits_for_more() {
        let mut codec = FrameCodec::new(1024);
        let mut buf = BytesMut::new();
        codec
            .encode(Frame::Control(Bytes::from_static(b"abc")), &mut buf)
            .expect("encode");
        let mut partial = buf.split_to(5);
        assert!(codec.decode(&mut partial).expect("decode").is_none());
        assert!(matches!(
            codec.decode_eof(&mut partial),
            Err(FrameError::Truncated(5))
        ));
    }

    #[test]
    fn oversized_length_prefix_is_refused_before_buffering() {
        let mut codec = FrameCodec::new(1024);
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 1][..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FrameError::TooLarge { len, max: 1024 }) if len == u32::MAX as usize
        ));
    }

    #[test]
    fn unknown_kind_and_empty_frames_are_errors() {
        let mut codec = FrameCodec::new(1024);
        let mut buf = BytesMut::from(&[0, 0, 0, 1, 9][..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FrameError::UnknownKind(9))
        ));
        let mut buf = BytesMut::from(&[0, 0, 0, 0][..]);
        assert!(matches!(codec.decode(&mut buf), Err(FrameError::Empty)));
        let mut buf = BytesMut::from(&[0, 0, 0, 3, KIND_DATA, 1, 2][..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FrameError::ShortData(2))
        ));
        let mut buf = BytesMut::from(&[0, 0, 0, 3, KIND_SIGNAL, 1, 2][..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FrameError::BadSignal(2))
        ));
        let mut signal = vec![0, 0, 0, 26, KIND_SIGNAL];
        signal.extend_from_slice(&[0; 8]);
        signal.push(99);
        signal.extend_from_slice(&[0; 16]);
        let mut buf = BytesMut::from(&signal[..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FrameError::UnknownSignal(99))
        ));
    }
}
