//! How typed values become channel payloads: [`Json`] (the default), [`Binary`] (compact, via
//! postcard) and [`Raw`] (the bytes as they are). The daemon never looks inside.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::ChanError;

/// Turns values of `T` into payload bytes and back.
pub trait Codec<T>: Send + Sync + 'static {
    /// Encodes a value.
    fn encode(&self, value: &T) -> Result<Bytes, ChanError>;
    /// Decodes a payload.
    fn decode(&self, payload: Bytes) -> Result<T, ChanError>;
}

/// JSON via serde_json: readable with `circuit recv`, and what the CLI's `send` writes when
/// its input is JSON.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl<T: Serialize + DeserializeOwned> Codec<T> for Json {
    fn encode(&self, value: &T) -> Result<Bytes, ChanError> {
        serde_json::to_vec(value)
            .map(Bytes::from)
            .map_err(|e| ChanError::Encode(e.to_string()))
    }

    fn decode(&self, payload: Bytes) -> Result<T, ChanError> {
        serde_json::from_slice(&payload).map_err(|e| ChanError::Decode(e.to_string()))
    }
}

/// A compact binary encoding (postcard): smaller and faster than JSON, not self-describing, so
/// both ends must agree on the type.
#[derive(Debug, Clone, Copy, Default)]
pub struct Binary;

impl<T: Serialize + DeserializeOwned> Codec<T> for Binary {
    fn encode(&self, value: &T) -> Result<Bytes, ChanError> {
        postcard::to_stdvec(value)
            .map(Bytes::from)
            .map_err(|e| ChanError::Encode(e.to_string()))
    }

    fn decode(&self, payload: Bytes) -> Result<T, ChanError> {
        postcard::from_bytes(&payload).map_err(|e| ChanError::Decode(e.to_string()))
    }
}

/// The payload bytes themselves, for `Bytes` or `Vec<u8>` values.
#[derive(Debug, Clone, Copy, Default)]
pub struct Raw;

impl Codec<Bytes> for Raw {
    fn encode(&self, value: &Bytes) -> Result<Bytes, ChanError> {
        Ok(value.clone())
    }

    fn decode(&self, payload: Bytes) -> Result<Bytes, ChanError> {
        Ok(payload)
    }
}

impl Codec<Vec<u8>> for Raw {
    fn encode(&self, value: &Vec<u8>) -> Result<Bytes, ChanError> {
        Ok(Bytes::copy_from_slice(value))
    }

    fn decode(&self, payload: Bytes) -> Result<Vec<u8>, ChanError> {
        Ok(payload.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Doc {
        id: u32,
        words: Vec<String>,
    }

    #[test]
    fn codecs_round_trip() {
        let doc = Doc {
            id: 7,
            words: vec!["a".into(), "b".into()],
        };
        let json = Json.encode(&doc).expect("json");
        assert_eq!(Codec::<Doc>::decode(&Json, json).expect("json back"), doc);
        let bin = Binary.encode(&doc).expect("binary");
        assert!(bin.len() < 12, "postcard is compact: {} bytes", bin.len());
        assert_eq!(
            Codec::<Doc>::decode(&Binary, bin).expect("binary back"),
            doc
        );
        let raw = Bytes::from_static(b"\x00\xff");
        let back: Bytes = Raw.decode(Raw.encode(&raw).expect("raw")).expect("raw");
        assert_eq!(back, raw);
        assert!(matches!(
            Codec::<Doc>::decode(&Json, Bytes::from_static(b"{")),
            Err(ChanError::Decode(_))
        ));
    }
}
