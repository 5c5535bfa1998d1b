//! rafka-protocol: the Kafka wire protocol without sockets.
//!
//! [`Connection`] turns bytes read from a peer into decoded requests and responses into
//! bytes to write, in request order. [`versions`] is the table of what Rafka serves and the
//! ApiVersions advertisement. Message bodies come from the `kafka-protocol` crate.
//! Nothing here awaits, reads a clock or touches a socket.

pub mod connection;
pub mod frame;
pub mod guard;
pub mod legacy;
pub mod response;
pub mod sasl;
pub mod versions;

pub use connection::{Connection, DecodedRequest, ProtocolError};
pub use frame::{FrameDecoder, FrameError};
pub use kafka_protocol;
pub use response::{
    encode_response_chunks, encode_response_chunks_with, region_placeholder, EncodedResponse,
    FetchRegions,
};
