//! RTMP: handshake, chunk stream, messages and the server and client session state machines.
//!
//! The layers, bottom up, one file each:
//! - [`handshake`]: C0/C1/C2 ⇄ S0/S1/S2, simple and complex (HMAC-SHA256 digest) variants;
//! - [`chunk`]: the chunk stream — [`ChunkReader`] reassembles messages from interleaved chunks,
//!   [`ChunkWriter`] and the free functions [`write_fmt0_header`] / [`write_chunked_body`] split
//!   them again (the latter two are the hub's shared fan-out path);
//! - [`message`]: what the payload of each message type means (protocol control, user control,
//!   AMF0/AMF3 commands and data, audio, video, aggregate);
//! - [`session`]: [`ServerSession`], the sans-IO state machine that speaks to ffmpeg, OBS and
//!   SRS's tools the way SRS does;
//! - [`client`]: [`ClientSession`], its counterpart that plays or publishes the way ffmpeg
//!   does (the load tool, edge/forward, tests).
//!
//! Nothing here reads a clock, touches a socket or draws OS randomness: time is passed in, bytes
//! go in and out as buffers, and the handshake's random bytes come from a seeded PRNG.

pub mod chunk;
pub mod client;
pub mod handshake;
pub mod message;
mod rng;
pub mod session;

pub use chunk::{
    CSID_AUDIO, CSID_COMMAND, CSID_DATA, CSID_PROTOCOL_CONTROL, CSID_STREAM, CSID_VIDEO,
    ChunkError, ChunkReader, ChunkReaderConfig, ChunkWriter, MessageHeader, RtmpMessage,
    chunked_body_len, write_chunked_body, write_fmt0_header,
};
pub use client::{
    ClientConfig, ClientError, ClientEvent, ClientMode, ClientOutput, ClientSession, ClientState,
    LiveMode, OutChunkSize, RtmpUrl, SendError, StatusInfo, UrlError,
};
pub use handshake::{ClientHandshake, HandshakeError, HandshakeKind, ServerHandshake};
pub use message::{Command, Message, MessageError, UserControlEvent};
pub use session::{
    ConnectRequest, MediaKind, MediaMessage, PlayRequest, PublishRequest, ServerSession,
    SessionConfig, SessionError, SessionEvent, SessionOutput,
};
