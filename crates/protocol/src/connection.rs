//! One client connection's protocol state: bytes in, decoded requests out, and the
//! encoding of responses. Sans-IO: the broker owns the socket and the order of writes.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use kafka_protocol::ResponseError;

use crate::frame::{FrameDecoder, FrameError};
use crate::versions;

/// Why a connection must be closed. Kafka closes the connection rather than answering
/// a request it cannot parse, since nothing after it in the stream can be trusted.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// Framing failed.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The API key is not one Rafka serves.
    #[error("unsupported API key {key} (version {version})")]
    UnsupportedApi {
        /// API key.
        key: i16,
        /// Version asked for.
        version: i16,
    },
    /// The version of a served API is outside the served range.
    #[error("unsupported version {version} of {key:?}")]
    UnsupportedVersion {
        /// The API.
        key: ApiKey,
        /// Version asked for.
        version: i16,
    },
    /// The header or body does not decode.
    #[error("malformed {key:?} v{version} request: {reason}")]
    Malformed {
        /// The API.
        key: ApiKey,
        /// Version.
        version: i16,
        /// What the decoder said.
        reason: String,
    },
    /// A response failed to encode (a broker bug, not peer input).
    #[error("cannot encode {key:?} v{version} response: {reason}")]
    Encode {
        /// The API.
        key: ApiKey,
        /// Version.
        version: i16,
        /// What the encoder said.
        reason: String,
    },
}

/// What a response needs to know about its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseMeta {
    /// The API.
    pub api_key: ApiKey,
    /// The request's version; the response uses the same.
    pub api_version: i16,
    /// Echoed back so the client can match the response.
    pub correlation_id: i32,
}

/// A request, header and body decoded.
#[derive(Debug)]
pub struct DecodedRequest {
    /// The request header (client id, correlation id, ...).
    pub header: RequestHeader,
    /// The API.
    pub api_key: ApiKey,
    /// The body.
    pub body: RequestKind,
    /// Size of the frame in bytes.
    pub frame_bytes: usize,
}

impl DecodedRequest {
    /// The metadata its response needs.
    pub fn meta(&self) -> ResponseMeta {
        ResponseMeta {
            api_key: self.api_key,
            api_version: self.header.request_api_version,
            correlation_id: self.header.correlation_id,
        }
    }
}

/// What the connection has for the broker next.
#[derive(Debug)]
pub enum Inbound {
    /// A request to handle.
    Request(Box<DecodedRequest>),
    /// A response the protocol layer answered itself (ApiVersions at an unknown version),
    /// already framed; write it in order.
    Answered(Bytes),
}

/// Protocol state of one connection.
#[derive(Debug)]
pub struct Connection {
    frames: FrameDecoder,
}

impl Connection {
    /// A connection refusing requests larger than `request_bytes_max`.
    pub fn new(request_bytes_max: usize) -> Connection {
        Connection {
            frames: FrameDecoder::new(request_bytes_max),
        }
    }

    /// Buffers bytes read from the peer.
    pub fn receive(&mut self, bytes: &[u8]) {
        self.frames.receive(bytes);
    }

    /// The buffer to read the peer's next bytes into (see [`FrameDecoder::read_buffer`]);
    /// an alternative to [`receive`](Self::receive) that saves a copy.
    pub fn read_buffer(&mut self, min_room: usize) -> &mut bytes::BytesMut {
        self.frames.read_buffer(min_room)
    }

    /// Lets the receive buffers go while the connection waits for its next request, if
    /// nothing is buffered (see [`FrameDecoder::park`]); the next
    /// [`read_buffer`](Self::read_buffer) takes one again.
    pub fn park(&mut self) -> bool {
        self.frames.park()
    }

    /// The size of the request at the front of the buffer once its size prefix is read
    /// (see [`FrameDecoder::front_frame_bytes`]): what reading the rest of it will hold.
    pub fn front_frame_bytes(&self) -> Option<usize> {
        self.frames.front_frame_bytes()
    }

    /// The next frame as a raw SASL token of at most `max_bytes` (after SaslHandshake v0 the
    /// client sends tokens without a request header). An error means: close the connection.
    pub fn next_sasl_token(&mut self, max_bytes: usize) -> Result<Option<Bytes>, ProtocolError> {
        Ok(self.frames.next_raw_frame(max_bytes)?)
    }

    /// The next request, if a whole frame is buffered. An error means: close the connection.
    pub fn next_request(&mut self) -> Result<Option<Inbound>, ProtocolError> {
        let Some(frame) = self.frames.next_frame()? else {
            return Ok(None);
        };
        decode_request(frame).map(Some)
    }
}

/// Decodes one frame (without its size prefix).
pub fn decode_request(frame: Bytes) -> Result<Inbound, ProtocolError> {
    let frame_bytes = frame.len();
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Some(served) = versions::served(key) else {
        return Err(ProtocolError::UnsupportedApi { key, version });
    };
    let api_key = served.key;
    if version < served.served_min || version > served.max {
        if api_key == ApiKey::ApiVersions {
            // KIP-511: answer as v0 with UNSUPPORTED_VERSION and our ranges, so the client
            // can retry with a version we know.
            let body = versions::api_versions_response(Some(ResponseError::UnsupportedVersion));
            let meta = ResponseMeta {
                api_key,
                api_version: 0,
                correlation_id,
            };
            return encode_response(meta, &ResponseKind::ApiVersions(body)).map(Inbound::Answered);
        }
        return Err(ProtocolError::UnsupportedVersion {
            key: api_key,
            version,
        });
    }
    let malformed = |reason: String| ProtocolError::Malformed {
        key: api_key,
        version,
        reason,
    };
    let mut buf = frame;
    let header = RequestHeader::decode(&mut buf, api_key.request_header_version(version))
        .map_err(|e| malformed(format!("header: {e}")))?;
    let body = if crate::legacy::handles(api_key, version) {
        // Versions the codec no longer knows (KIP-896), decoded by hand and bounded.
        crate::legacy::decode_request(api_key, version, buf)
            .map_err(|e| malformed(format!("legacy: {e}")))?
    } else {
        // The codec trusts element counts; prove them first (see `guard`).
        crate::guard::probe(api_key, &buf, version)
            .map_err(|e| malformed(format!("probe: {e}")))?;
        RequestKind::decode(api_key, &mut buf, version).map_err(|e| malformed(e.to_string()))?
    };
    // Kafka ignores bytes after the body, and librdkafka sends some (Metadata v12 with
    // all topics carries 3 padding bytes); refusing them would cut off real clients.
    Ok(Inbound::Request(Box::new(DecodedRequest {
        header,
        api_key,
        body,
        frame_bytes,
    })))
}

/// Encodes a response with its header and size prefix, ready to write.
pub fn encode_response(meta: ResponseMeta, body: &ResponseKind) -> Result<Bytes, ProtocolError> {
    let err = |reason: String| ProtocolError::Encode {
        key: meta.api_key,
        version: meta.api_version,
        reason,
    };
    let mut out = BytesMut::with_capacity(64);
    out.put_i32(0); // size, patched below
    if crate::legacy::handles(meta.api_key, meta.api_version) {
        // Every legacy version answers with response header v0: the correlation id.
        out.put_i32(meta.correlation_id);
        crate::legacy::encode_response_body(meta.api_key, meta.api_version, body, &mut out)
            .map_err(err)?;
        let size = (out.len() - 4) as i32;
        out[..4].copy_from_slice(&size.to_be_bytes());
        return Ok(out.freeze());
    }
    let header = ResponseHeader::default().with_correlation_id(meta.correlation_id);
    // ApiVersions always answers with header v0, even at flexible versions (KIP-511).
    let header_version = meta.api_key.response_header_version(meta.api_version);
    header
        .encode(&mut out, header_version)
        .map_err(|e| err(e.to_string()))?;
    body.encode(&mut out, meta.api_version)
        .map_err(|e| err(e.to_string()))?;
    let size = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&size.to_be_bytes());
    Ok(out.freeze())
}

/// Encodes a request with its header and size prefix (for tests and Rafka's own clients).
pub fn encode_request(header: &RequestHeader, body: &RequestKind) -> Result<Bytes, String> {
    let api_key = ApiKey::try_from(header.request_api_key).map_err(|_| "unknown api key")?;
    let mut out = BytesMut::new();
    out.put_i32(0);
    header
        .encode(
            &mut out,
            api_key.request_header_version(header.request_api_version),
        )
        .map_err(|e| e.to_string())?;
    body.encode(&mut out, header.request_api_version)
        .map_err(|e| e.to_string())?;
    let size = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&size.to_be_bytes());
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;
    use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, MetadataRequest};
    use kafka_protocol::protocol::StrBytes;

    fn request(key: ApiKey, version: i16, body: RequestKind) -> Bytes {
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("test")));
        encode_request(&header, &body).unwrap()
    }

    fn check(bytes: &[u8]) -> Result<Option<Inbound>, ProtocolError> {
        let mut c = Connection::new(1 << 20);
        c.receive(bytes);
        c.next_request()
    }

    #[test]
    fn decodes_a_metadata_request() {
        let bytes = request(
            ApiKey::Metadata,
            12,
            RequestKind::Metadata(MetadataRequest::default()),
        );
        let Some(Inbound::Request(r)) = check(&bytes).unwrap() else {
            panic!("expected a request")
        };
        assert_eq!(r.api_key, ApiKey::Metadata);
        assert_eq!(r.header.correlation_id, 7);
        assert_eq!(r.header.client_id.as_deref(), Some("test"));
    }

    #[test]
    fn unknown_api_versions_version_is_answered_as_v0() {
        let mut bytes = BytesMut::from(
            &request(
                ApiKey::ApiVersions,
                3,
                RequestKind::ApiVersions(ApiVersionsRequest::default()),
            )[..],
        );
        bytes[6..8].copy_from_slice(&99i16.to_be_bytes());
        let Some(Inbound::Answered(resp)) = check(&bytes).unwrap() else {
            panic!("expected an answer")
        };
        let mut body = resp.slice(4..);
        assert_eq!(body.get_i32(), 7, "correlation id in a v0 header");
        let decoded = ApiVersionsResponse::decode(&mut body, 0).unwrap();
        assert_eq!(decoded.error_code, ResponseError::UnsupportedVersion.code());
        assert!(decoded
            .api_keys
            .iter()
            .any(|k| k.api_key == 18 && k.max_version == 4));
    }

    #[test]
    fn unknown_api_and_bad_versions_close() {
        let bytes = request(
            ApiKey::Metadata,
            12,
            RequestKind::Metadata(MetadataRequest::default()),
        );
        let mut unknown = BytesMut::from(&bytes[..]);
        unknown[4..6].copy_from_slice(&999i16.to_be_bytes());
        assert!(matches!(
            check(&unknown),
            Err(ProtocolError::UnsupportedApi { key: 999, .. })
        ));
        let mut old = BytesMut::from(&bytes[..]);
        old[6..8].copy_from_slice(&13i16.to_be_bytes());
        assert!(matches!(
            check(&old),
            Err(ProtocolError::UnsupportedVersion { .. })
        ));
        let mut truncated = BytesMut::from(&bytes[..]);
        truncated.truncate(truncated.len() - 1);
        let size = (truncated.len() - 4) as i32;
        truncated[..4].copy_from_slice(&size.to_be_bytes());
        assert!(matches!(
            check(&truncated),
            Err(ProtocolError::Malformed { .. })
        ));
    }

    #[test]
    fn garbage_is_refused_not_panicked() {
        let mut c = Connection::new(1 << 20);
        let mut bytes = 16i32.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0xff; 16]);
        c.receive(&bytes);
        assert!(c.next_request().is_err());
    }
}
