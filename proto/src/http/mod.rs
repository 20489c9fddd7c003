//! HTTP/1.1 as the data-plane server (port 8080) speaks it: HTTP-FLV, HTTP-TS, HLS, static
//! files and WebSocket-FLV.
//!
//! - [`request`]: a total, bounded request-head parser ([`RequestHead::parse`]) and what the
//!   server asks of a head: Host, keep-alive, Range, If-None-Match, Expect, body framing;
//! - [`path`]: percent-decoding of paths (rejecting encoded NUL, reporting `..` segments) and
//!   query parameters;
//! - [`response`]: the response-head writer and the chunked transfer coding — chunk header and
//!   trailer written separately so the chunk body can be a buffer shared between viewers — and
//!   a bounded chunked decoder;
//! - [`ws`]: the RFC 6455 handshake, the server's frame encoder (header separate from the
//!   shared payload) and a bounded decoder for client frames.
//!
//! Nothing here owns a connection: the server reads bytes into its buffer, asks the parser
//! whether a whole head is there and how long it is (pipelined requests after it stay in the
//! buffer), and writes what these functions produce.

mod base64;
pub mod path;
pub mod request;
pub mod response;
pub mod ws;

pub use path::{DecodedPath, PathError, decode_path, query_param};
pub use request::{ByteRange, Expectation, Header, Limits, RangeError, RequestBody, RequestHead};
pub use response::{
    BodyFraming, CHUNK_END, CONTINUE, ChunkHeader, ChunkedDecoder, LAST_CHUNK, ResponseHead,
    WrittenHead, reason_phrase, write_chunk,
};
pub use ws::{
    CloseFrame, DecodeStep, FrameDecoder, Message, Opcode, WsConfig, WsError, WsHandshakeError,
    WsUpgrade, accept_key,
};

use thiserror::Error;

/// The protocol versions we speak. HTTP/2 is not spoken on the data plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// Why a request head (or a chunked body) was refused. [`HttpError::status`] is the response
/// status the server should send before closing the connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HttpError {
    #[error("request head larger than {0} bytes")]
    HeadTooLarge(usize),
    #[error("more than {0} header fields")]
    TooManyHeaders(usize),
    #[error("request target longer than {0} bytes")]
    UriTooLong(usize),
    #[error("malformed request line: {0}")]
    BadRequestLine(&'static str),
    #[error("malformed header field: {0}")]
    BadHeader(&'static str),
    #[error("HTTP version not supported")]
    UnsupportedVersion,
    #[error("HTTP/1.1 request without a Host header")]
    MissingHost,
    #[error("more than one Host header")]
    DuplicateHost,
    #[error("invalid or conflicting Content-Length")]
    BadContentLength,
    #[error("both Transfer-Encoding and Content-Length")]
    ConflictingFraming,
    #[error("transfer coding other than chunked")]
    UnsupportedTransferEncoding,
    #[error("malformed chunked body: {0}")]
    BadChunk(&'static str),
}

impl HttpError {
    /// The status code to answer with: 431 for oversized heads, 414 for long targets, 505 for
    /// other versions, 501 for unknown transfer codings, 400 for the rest.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::HeadTooLarge(_) | HttpError::TooManyHeaders(_) => 431,
            HttpError::UriTooLong(_) => 414,
            HttpError::UnsupportedVersion => 505,
            HttpError::UnsupportedTransferEncoding => 501,
            _ => 400,
        }
    }
}
