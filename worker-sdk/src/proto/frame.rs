//! Frames: the only place that turns bytes into messages and back.
//! A frame is `u32 length (big-endian) | u8 kind | body`, where length counts kind and body.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Largest frame accepted by default: a 16 MiB payload plus room for headers.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024 + 64 * 1024;

/// Bytes before the body: the length prefix and the kind byte.
pub const HEADER_LEN: usize = 5;

/// What a frame carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A JSON control message (UTF-8).
    Control(Bytes),
    /// Opaque payload bytes tied to a request: never decoded by a daemon.
    Data {
        /// The request the payload belongs to.
        id: u64,
        /// The payload.
        payload: Bytes,
    },
}

/// Kind byte of a control frame.
pub const KIND_CONTROL: u8 = 1;
/// Kind byte of a data frame.
pub const KIND_DATA: u8 = 2;

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
    /// A data frame shorter than its request id.
    #[error("data frame of {0} bytes is too short for its request id")]
    ShortData(usize),
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
        let kind = src[4];
        src.advance(HEADER_LEN);
        let mut body = src.split_to(len - 1).freeze();
        match kind {
            KIND_CONTROL => Ok(Some(Frame::Control(body))),
            KIND_DATA => {
                if body.len() < 8 {
                    return Err(FrameError::ShortData(body.len()));
                }
                let id = body.get_u64();
                Ok(Some(Frame::Data { id, payload: body }))
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

impl Encoder<Frame> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        let (kind, head, body) = match &frame {
            Frame::Control(body) => (KIND_CONTROL, None, body),
            Frame::Data { id, payload } => (KIND_DATA, Some(*id), payload),
        };
        let len = 1 + head.map_or(0, |_| 8) + body.len();
        if len > self.max_frame {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame,
            });
        }
        dst.reserve(4 + len);
        dst.put_u32(len as u32);
        dst.put_u8(kind);
        if let Some(id) = head {
            dst.put_u64(id);
        }
        dst.put_slice(body);
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
            payload: Bytes::from_static(b"\x00\x01binary"),
        };
        assert_eq!(roundtrip(d.clone()), d);
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
    }
}
