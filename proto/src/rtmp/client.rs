//! [`ClientSession`]: the client side of an RTMP connection (player or publisher) as a sans-IO
//! state machine, for the load tool, edge/forward and tests.
//!
//! Same shape as [`ServerSession`](super::ServerSession): bytes from the socket go into
//! [`ClientSession::handle_input`], and [`ClientSession::poll_output`] hands out bytes to send
//! first, then [`ClientEvent`]s in arrival order. [`ClientSession::new`] already queues C0C1.
//!
//! The conversation is ffmpeg's (libavformat/rtmpproto.c), because that is what SRS and every
//! other server are used to; transaction ids count up from 1 the way ffmpeg's `nb_invokes` does,
//! and commands go out on ffmpeg's chunk streams (2 network, 3 system, 8 source, 4 audio and
//! data, 6 video), with ffmpeg's header compression:
//! - after the handshake: `connect` with ffmpeg's command object — `app`, `type: nonprivate`
//!   (publish only), `flashVer`, `tcUrl`, then for players `fpad`, `capabilities`,
//!   `audioCodecs`, `videoCodecs`, `videoFunction`, in that order;
//! - connect `_result` → publish: `releaseStream`, `FCPublish`, `createStream`; play: Window
//!   Acknowledgement Size (the server's own value, echoed), `createStream`, and `FCSubscribe`
//!   when playing [`LiveMode::Live`];
//! - createStream `_result` → publish: `publish(name, "live")`; play: `getStreamLength` (unless
//!   live-only), `play(name, -2000 | -1000 | 0)`, then SetBufferLength;
//! - onBWDone → `_checkbw`; PingRequest → PingResponse; SetChunkSize from the server is echoed
//!   back and adopted by a publisher ([`OutChunkSize::EchoServer`], what ffmpeg does, so against
//!   SRS a publisher sends 60000-byte chunks);
//! - `_result`/`_error` are matched to the command by transaction id; an `_error` for connect,
//!   createStream, publish or play, and any onStatus of level `error`, is a
//!   [`ClientEvent::Rejected`]; errors for releaseStream, FCPublish, `_checkbw`, FCSubscribe and
//!   getStreamLength are ignored, as ffmpeg ignores "Adobe-specific historical artifacts";
//! - onStatus `NetStream.Publish.Start` / `NetStream.Play.Start` start the stream (onFCPublish,
//!   which SRS sends before its verdict, does not); `NetStream.Play.Stop` and
//!   `NetStream.Play.UnpublishNotify` end a play, as they end ffmpeg's;
//! - [`ClientSession::close_stream`]: `FCUnpublish` when publishing, then `deleteStream`.
//!
//! Acknowledgements: once the server sets a window (Window Acknowledgement Size), we acknowledge
//! every half window of bytes received — the rule SRS applies, and what ffmpeg's interval
//! amounts to against SRS — so a server that waits for acknowledgements never stalls.
//!
//! Cost: one play session is built to be one of ~10,000 on one core. Per media message the only
//! allocation is the payload buffer the [`ChunkReader`] fills; audio, video and data messages go
//! straight to events without decoding, aggregates are split in place. A playing session is
//! 568 bytes inline plus about 0.5–0.9 KiB of heap (config strings, the reader's per-chunk-stream
//! state, the event queue), plus whatever partial message the reader is assembling; no output
//! buffer is kept between polls.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use thiserror::Error;

use super::chunk::{
    ChunkError, ChunkReader, ChunkReaderConfig, ChunkWriter, MAX_CHUNK_HEADER_LEN, MessageHeader,
    chunked_body_len,
};
use super::handshake::{ClientHandshake, HandshakeError, HandshakeKind};
use super::message::{Command, Message, MessageError, UserControlEvent, aggregate_parts, type_id};
use super::session::{MediaKind, MediaMessage};
use crate::amf0::Amf0Value;

/// ffmpeg's `RTMP_NETWORK_CHANNEL`: protocol control and user control messages.
const CSID_NETWORK: u32 = 2;
/// ffmpeg's `RTMP_SYSTEM_CHANNEL`: NetConnection commands.
const CSID_SYSTEM: u32 = 3;
/// ffmpeg's `RTMP_AUDIO_CHANNEL`: audio, and also metadata (ffmpeg sends every non-video FLV tag
/// there).
const CSID_AUDIO_AND_DATA: u32 = 4;
/// ffmpeg's `RTMP_VIDEO_CHANNEL`.
const CSID_VIDEO: u32 = 6;
/// ffmpeg's `RTMP_SOURCE_CHANNEL`: NetStream commands (play, publish, getStreamLength).
const CSID_SOURCE: u32 = 8;

/// The window ffmpeg answers a connect with when the server announced none (`server_bw`).
const DEFAULT_WINDOW_ACK_SIZE: u32 = 2_500_000;
/// What ffmpeg 7.1 calls itself when publishing (`FMLE/3.0 (compatible; LIBAVFORMAT_IDENT)`).
pub const FFMPEG_PUBLISH_FLASH_VER: &str = "FMLE/3.0 (compatible; Lavf61.7.100)";
/// What ffmpeg calls itself when playing on Linux (`RTMP_CLIENT_PLATFORM` and version).
pub const FFMPEG_PLAY_FLASH_VER: &str = "LNX 9,0,124,2";
/// The port ffmpeg puts into `tcUrl` when the URL has none.
pub const DEFAULT_PORT: u16 = 1935;
/// Commands awaiting `_result`/`_error` that we remember. A whole conversation sends at most
/// five tracked commands plus one `_checkbw` per onBWDone, and some are never answered (SRS
/// ignores getStreamLength); a server that sends onBWDone in a loop only pushes the oldest out.
const MAX_PENDING_TRANSACTIONS: usize = 8;
/// Event queue capacity kept across polls: enough for the events one typical input produces,
/// so steady play allocates nothing for the queue.
const RETAINED_EVENT_CAPACITY: usize = 16;
/// `"@setDataFrame"` as an AMF0 string: what ffmpeg puts in front of the FLV onMetaData body.
const SET_DATA_FRAME: &[u8] = b"\x02\x00\x0d@setDataFrame";

/// Play or publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientMode {
    Play,
    Publish,
}

/// ffmpeg's `rtmp_live`: what a player asks for; `play`'s start argument is this times 1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LiveMode {
    /// Live if there is a live stream, else recorded (-2000; ffmpeg's default).
    Any,
    /// Live only (-1000); ffmpeg then sends FCSubscribe instead of getStreamLength.
    Live,
    /// Recorded, from the start (0).
    Recorded,
}

impl LiveMode {
    fn play_start(self) -> f64 {
        match self {
            LiveMode::Any => -2000.0,
            LiveMode::Live => -1000.0,
            LiveMode::Recorded => 0.0,
        }
    }
}

/// How a publisher chooses the chunk size of what it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutChunkSize {
    /// Send every SetChunkSize of the server back and adopt its size, as ffmpeg does. Against
    /// SRS (and sluice) that makes 60000-byte chunks.
    EchoServer,
    /// Announce this size right after the handshake, before connect (what OBS/librtmp do with
    /// 4096), and keep it whatever the server says. Clamped to `1..=0x7FFF_FFFF`.
    Fixed(u32),
}

/// Settings of one client connection. [`ClientConfig::play`] and [`ClientConfig::publish`]
/// fill in what ffmpeg would send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// `tcUrl` of connect, e.g. `rtmp://127.0.0.1:1935/live`.
    pub tc_url: String,
    /// `app` of connect, e.g. `live`.
    pub app: String,
    /// The stream name for publish/play, with any `?key=value` parameters.
    pub stream: String,
    pub mode: ClientMode,
    /// Publishing only; players keep sending 128-byte chunks, as ffmpeg does.
    pub chunk_size: OutChunkSize,
    pub handshake: HandshakeKind,
    /// Seeds the handshake's random bytes; vary it per connection.
    pub random_seed: u64,
    /// `flashVer` of connect.
    pub flash_ver: String,
    /// SetBufferLength sent after play (ffmpeg's `rtmp_buffer`, 3000 ms).
    pub buffer_length_ms: u32,
    /// Playing only.
    pub live: LiveMode,
    /// Limits on what the server may make us buffer.
    pub limits: ChunkReaderConfig,
}

impl ClientConfig {
    /// A player the way `ffmpeg -i rtmp://...` plays.
    pub fn play(
        tc_url: impl Into<String>,
        app: impl Into<String>,
        stream: impl Into<String>,
    ) -> Self {
        ClientConfig {
            tc_url: tc_url.into(),
            app: app.into(),
            stream: stream.into(),
            mode: ClientMode::Play,
            chunk_size: OutChunkSize::EchoServer,
            handshake: HandshakeKind::Complex,
            random_seed: 0,
            flash_ver: FFMPEG_PLAY_FLASH_VER.into(),
            buffer_length_ms: 3000,
            live: LiveMode::Any,
            limits: ChunkReaderConfig::default(),
        }
    }

    /// A publisher the way `ffmpeg -f flv rtmp://...` publishes.
    pub fn publish(
        tc_url: impl Into<String>,
        app: impl Into<String>,
        stream: impl Into<String>,
    ) -> Self {
        ClientConfig {
            mode: ClientMode::Publish,
            flash_ver: FFMPEG_PUBLISH_FLASH_VER.into(),
            ..ClientConfig::play(tc_url, app, stream)
        }
    }

    /// [`play`](Self::play) or [`publish`](Self::publish) for a parsed URL.
    pub fn for_url(mode: ClientMode, url: &RtmpUrl) -> Self {
        let (tc_url, app, stream) = (url.tc_url.clone(), url.app.clone(), url.stream.clone());
        match mode {
            ClientMode::Play => ClientConfig::play(tc_url, app, stream),
            ClientMode::Publish => ClientConfig::publish(tc_url, app, stream),
        }
    }
}

/// An `rtmp://host[:port]/app/stream[?params]` URL, split the way ffmpeg splits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpUrl {
    /// Without brackets for IPv6.
    pub host: String,
    pub port: u16,
    /// The first path segment, or the first two when three or more follow (ffmpeg's rule for
    /// application instances: `rtmp://h/app/inst/stream` has app `app/inst`).
    pub app: String,
    /// The rest of the path, query included.
    pub stream: String,
    /// `rtmp://host:port/app`, port always present, as ffmpeg builds it.
    pub tc_url: String,
}

/// Why a string is not an RTMP URL we can use.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("'{0}' does not start with rtmp://")]
    NotRtmp(String),
    #[error("'{0}' has no host")]
    MissingHost(String),
    #[error("'{0}' has a port that is not a number from 0 to 65535")]
    InvalidPort(String),
}

impl RtmpUrl {
    pub fn parse(url: &str) -> Result<RtmpUrl, UrlError> {
        let rest = url
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case("rtmp://"))
            .map(|_| &url[7..])
            .ok_or_else(|| UrlError::NotRtmp(url.into()))?;
        // Like av_url_split, the path starts at the first '/' or '?'.
        let path_start = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(path_start);
        let authority = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        let (host, port) = match authority.strip_prefix('[') {
            Some(bracketed) => {
                let (host, after) = bracketed
                    .split_once(']')
                    .ok_or_else(|| UrlError::MissingHost(url.into()))?;
                (host, after.strip_prefix(':'))
            }
            None => match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        if host.is_empty() {
            return Err(UrlError::MissingHost(url.into()));
        }
        let port = match port {
            Some(port) => port
                .parse::<u16>()
                .map_err(|_| UrlError::InvalidPort(url.into()))?,
            None => DEFAULT_PORT,
        };
        let (app, stream) = split_app_and_stream(path);
        let host_in_url = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        Ok(RtmpUrl {
            tc_url: format!("rtmp://{host_in_url}:{port}/{app}"),
            host: host.to_owned(),
            port,
            app: app.to_owned(),
            stream: stream.to_owned(),
        })
    }
}

/// ffmpeg's split of the URL path (rtmp_open): `/app/stream` → (`app`, `stream`); with two or
/// more slashes after the app the second segment belongs to the app, unless a ':' comes first
/// (`mp4:dir/file` is a stream name).
fn split_app_and_stream(path: &str) -> (&str, &str) {
    let next = path.get(1..).unwrap_or("");
    let Some(slash) = next.find('/') else {
        return ("", next);
    };
    let after = &next[slash + 1..];
    let colon = after.find(':');
    match after.find('/') {
        Some(second) if colon.is_none_or(|colon| colon > second) => {
            let app_end = slash + 1 + second;
            (&next[..app_end], &next[app_end + 1..])
        }
        _ => (&next[..slash], after),
    }
}

/// Why the connection must be closed.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum ClientError {
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("chunk stream: {0}")]
    Chunk(#[from] ChunkError),
    #[error("message type {type_id}: {source}")]
    Message {
        type_id: u8,
        #[source]
        source: MessageError,
    },
    #[error("createStream _result carries no stream id (a number from 0 to 2^32-1)")]
    CreateStreamWithoutId,
}

/// Why [`ClientSession::send_media`] refused a message. The session itself is unaffected.
#[derive(Debug, Clone, Copy, Error, PartialEq, Eq)]
pub enum SendError {
    #[error("media can only be sent while publishing; the session is {0:?}")]
    NotPublishing(ClientState),
    #[error("a message of {0} bytes does not fit RTMP's 24-bit length field")]
    TooLong(usize),
}

/// Where the conversation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientState {
    /// C0C1 sent, waiting for S0S1S2.
    Handshaking,
    /// connect sent.
    Connecting,
    /// connect succeeded; createStream (and for publishers releaseStream, FCPublish) sent.
    CreatingStream,
    /// publish or play sent; waiting for its onStatus.
    Starting,
    Publishing,
    Playing,
    /// The server ended the play (NetStream.Play.Stop or UnpublishNotify).
    Stopped,
    /// connect, createStream, publish or play was refused, or the server reported an error
    /// status. Close the connection.
    Rejected,
    /// [`ClientSession::close_stream`] was called. Close after transmitting.
    Closed,
}

/// What [`ClientSession::poll_output`] hands out.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientOutput {
    /// Bytes to write to the socket, in order.
    Transmit(Bytes),
    Event(ClientEvent),
}

/// Something the caller may want to know.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// The connect `_result` arrived.
    Connected,
    /// onStatus NetStream.Publish.Start: [`ClientSession::send_media`] may be used now.
    Publishing { stream_id: u32 },
    /// onStatus NetStream.Play.Start.
    Playing { stream_id: u32 },
    /// Audio, video or data (AMF0; an AMF3 data message's format byte removed), also the
    /// parts of aggregates, with absolute timestamps. Data includes what servers send on play
    /// such as `|RtmpSampleAccess` and `onMetaData`.
    Media(MediaMessage),
    /// Every onStatus, as sent (boxed: it is rare, and media events stay small).
    Status(Box<StatusInfo>),
    /// connect, createStream, publish or play refused (their `_error` or an error-level
    /// onStatus), or an error status later on; the state is now [`ClientState::Rejected`].
    Rejected { code: String, description: String },
    /// The server ended the play: NetStream.Play.Stop or NetStream.Play.UnpublishNotify.
    Stopped { code: String, description: String },
}

/// The information object of an onStatus (missing fields are empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusInfo {
    /// The message stream it arrived on.
    pub stream_id: u32,
    /// `status`, `warning` or `error`.
    pub level: String,
    pub code: String,
    pub description: String,
}

/// Commands whose `_result`/`_error` we wait for (ffmpeg's tracked methods).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Connect,
    ReleaseStream,
    FcPublish,
    CreateStream,
    CheckBandwidth,
    FcSubscribe,
    GetStreamLength,
    Publish,
    Play,
}

/// The client side of one RTMP connection. See the module docs.
#[derive(Debug)]
pub struct ClientSession {
    config: ClientConfig,
    state: ClientState,
    /// Until S0S1S2 has been read (boxed: 4.6 KiB that every idle session would carry).
    handshake: Option<Box<ClientHandshake>>,
    reader: ChunkReader,
    writer: ChunkWriter,
    out: BytesMut,
    events: VecDeque<ClientEvent>,
    /// The error that ended the session; every later `handle_input` repeats it.
    failed: Option<Box<ClientError>>,
    /// The last transaction id used (ffmpeg's `nb_invokes`).
    last_transaction_id: u32,
    pending: [Option<(u32, Method)>; MAX_PENDING_TRANSACTIONS],
    /// From the createStream `_result`.
    stream_id: Option<u32>,
    server_signature_valid: Option<bool>,
    /// The server's Window Acknowledgement Size (0: none yet).
    server_window: u32,
    bytes_received: u64,
    acked_bytes: u64,
    last_input_at: Instant,
}

impl ClientSession {
    /// Starts a connection: C0C1 is queued for [`poll_output`](Self::poll_output).
    pub fn new(config: ClientConfig, now: Instant) -> Self {
        let mut handshake = Box::new(ClientHandshake::new(config.handshake, config.random_seed));
        let mut out = BytesMut::new();
        while let Some(c0c1) = handshake.poll_transmit() {
            out.extend_from_slice(&c0c1);
        }
        ClientSession {
            reader: ChunkReader::new(config.limits),
            // ffmpeg compresses headers (ff_rtmp_packet_write with prev_pkt); so do we, so that
            // servers see what they see from ffmpeg.
            writer: ChunkWriter::with_header_compression(128),
            state: ClientState::Handshaking,
            handshake: Some(handshake),
            out,
            events: VecDeque::new(),
            failed: None,
            last_transaction_id: 0,
            pending: [None; MAX_PENDING_TRANSACTIONS],
            stream_id: None,
            server_signature_valid: None,
            server_window: 0,
            bytes_received: 0,
            acked_bytes: 0,
            last_input_at: now,
            config,
        }
    }

    /// Feeds bytes read from the socket. An error means the connection must be closed; it is
    /// repeated by every later call.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) -> Result<(), ClientError> {
        if let Some(error) = &self.failed {
            return Err((**error).clone());
        }
        self.last_input_at = now;
        self.bytes_received += data.len() as u64;
        let result = self.process(data);
        if let Err(error) = &result {
            self.failed = Some(Box::new(error.clone()));
        }
        result
    }

    /// Bytes to send first, then events in arrival order; `None` when there is nothing.
    pub fn poll_output(&mut self) -> Option<ClientOutput> {
        if !self.out.is_empty() {
            // The whole buffer goes, spare capacity too: after `split` the emptied BytesMut
            // would keep the allocation alive, a few KiB pinned by every idle player. Players
            // send rarely (an acknowledgement per half window), so a fresh buffer then is cheap.
            return Some(ClientOutput::Transmit(
                std::mem::take(&mut self.out).freeze(),
            ));
        }
        let event = self.events.pop_front();
        if event.is_none() && self.events.capacity() > RETAINED_EVENT_CAPACITY {
            // A burst (a large input with many small messages) must not leave its queue behind.
            self.events.shrink_to(RETAINED_EVENT_CAPACITY);
        }
        event.map(ClientOutput::Event)
    }

    /// Queues an audio, video or data message on the published stream, timestamp absolute in
    /// milliseconds, on ffmpeg's chunk streams (4 audio and data, 6 video).
    ///
    /// The payload is copied into the output buffer, chunked. That is deliberate: a publisher
    /// is one session per stream (the load tool's publisher, a forward, an edge pull's
    /// upstream), so one memcpy per message per stream is noise next to the syscall, and one
    /// contiguous output buffer means one plain write. The copies that multiply — one stream to
    /// many viewers — are on the server's fan-out path, which shares chunked bodies already
    /// ([`write_chunked_body`](super::write_chunked_body)).
    pub fn send_media(
        &mut self,
        kind: MediaKind,
        timestamp: u32,
        payload: &[u8],
    ) -> Result<(), SendError> {
        let stream_id = self.publishing_stream_id(payload.len())?;
        let (csid, type_id) = match kind {
            MediaKind::Audio => (CSID_AUDIO_AND_DATA, type_id::AUDIO),
            MediaKind::Video => (CSID_VIDEO, type_id::VIDEO),
            MediaKind::Data => (CSID_AUDIO_AND_DATA, type_id::AMF0_DATA),
        };
        // One allocation of the right size instead of doubling through a large frame. The
        // extended timestamp is reserved for whether or not compression needs it.
        self.out.reserve(
            MAX_CHUNK_HEADER_LEN
                + chunked_body_len(payload.len(), self.writer.chunk_size(), csid, Some(0)),
        );
        self.writer.write(
            &mut self.out,
            csid,
            &header(type_id, stream_id, timestamp),
            payload,
        );
        Ok(())
    }

    /// Queues metadata the way ffmpeg does: `@setDataFrame` in front of `on_metadata_body`
    /// (the FLV script tag body: `"onMetaData"` and its ECMA array), as a data message at
    /// timestamp 0.
    pub fn send_metadata(&mut self, on_metadata_body: &[u8]) -> Result<(), SendError> {
        let stream_id = self.publishing_stream_id(SET_DATA_FRAME.len() + on_metadata_body.len())?;
        let mut payload = Vec::with_capacity(SET_DATA_FRAME.len() + on_metadata_body.len());
        payload.extend_from_slice(SET_DATA_FRAME);
        payload.extend_from_slice(on_metadata_body);
        self.writer.write(
            &mut self.out,
            CSID_AUDIO_AND_DATA,
            &header(type_id::AMF0_DATA, stream_id, 0),
            &payload,
        );
        Ok(())
    }

    /// Ends the stream as ffmpeg's rtmp_close does: `FCUnpublish(name)` if publishing, then
    /// `deleteStream(id)` if a stream was created. Transmit what [`poll_output`](Self::poll_output)
    /// returns, then close the connection.
    pub fn close_stream(&mut self) {
        if self.state == ClientState::Closed {
            return;
        }
        if self.state == ClientState::Publishing {
            let name = Amf0Value::String(self.config.stream.clone());
            self.send_command(CSID_SYSTEM, 0, "FCUnpublish", None, &[name]);
        }
        if let Some(stream_id) = self.stream_id {
            let id = Amf0Value::Number(f64::from(stream_id));
            self.send_command(CSID_SYSTEM, 0, "deleteStream", None, &[id]);
        }
        self.state = ClientState::Closed;
    }

    pub fn state(&self) -> ClientState {
        self.state
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The message stream createStream gave us.
    pub fn stream_id(&self) -> Option<u32> {
        self.stream_id
    }

    /// The chunk size our messages are split at.
    pub fn out_chunk_size(&self) -> u32 {
        self.writer.chunk_size()
    }

    /// The chunk size the server announced.
    pub fn in_chunk_size(&self) -> u32 {
        self.reader.chunk_size()
    }

    /// All bytes received, handshake included.
    pub fn bytes_received(&self) -> u64 {
        self.bytes_received
    }

    /// When `handle_input` was last called (or the session created), for idle timeouts.
    pub fn last_input_at(&self) -> Instant {
        self.last_input_at
    }

    /// For a complex handshake, whether the server signed S2 with our digest (what ffmpeg
    /// checks; we go on either way, as SRS's client does). `None` for a simple handshake or
    /// before S0S1S2 arrived.
    pub fn server_signature_valid(&self) -> Option<bool> {
        self.server_signature_valid
    }

    fn publishing_stream_id(&self, payload_len: usize) -> Result<u32, SendError> {
        if self.state != ClientState::Publishing {
            return Err(SendError::NotPublishing(self.state));
        }
        if payload_len > 0x00FF_FFFF {
            return Err(SendError::TooLong(payload_len));
        }
        // Publishing is only entered once createStream gave us an id.
        Ok(self.stream_id.unwrap_or(0))
    }

    fn process(&mut self, mut input: &[u8]) -> Result<(), ClientError> {
        if let Some(handshake) = self.handshake.as_mut() {
            let consumed = handshake.handle_input(input)?;
            input = &input[consumed..];
            if !handshake.is_done() {
                return Ok(());
            }
            while let Some(c2) = handshake.poll_transmit() {
                self.out.extend_from_slice(&c2);
            }
            self.server_signature_valid = handshake.server_signature_valid();
            self.handshake = None;
            // Closed while the handshake ran: there is nothing left to ask for.
            if self.state == ClientState::Handshaking {
                self.start_conversation();
            }
        }
        while let Some(message) = self.reader.read_message(&mut input)? {
            self.on_message(message.csid, &message.header, message.payload)?;
        }
        self.acknowledge_if_due();
        Ok(())
    }

    /// Right behind C2, as ffmpeg: connect (after SetChunkSize for a fixed-size publisher).
    fn start_conversation(&mut self) {
        if let (ClientMode::Publish, OutChunkSize::Fixed(size)) =
            (self.config.mode, self.config.chunk_size)
        {
            let size = size.clamp(1, 0x7FFF_FFFF);
            self.send_control(
                CSID_NETWORK,
                type_id::SET_CHUNK_SIZE,
                0,
                &size.to_be_bytes(),
            );
            self.writer.set_chunk_size(size);
        }
        let config = &self.config;
        let mut properties = vec![("app", Amf0Value::from(config.app.as_str()))];
        if config.mode == ClientMode::Publish {
            properties.push(("type", "nonprivate".into()));
        }
        properties.push(("flashVer", config.flash_ver.as_str().into()));
        properties.push(("tcUrl", config.tc_url.as_str().into()));
        if config.mode == ClientMode::Play {
            properties.extend([
                ("fpad", Amf0Value::Boolean(false)),
                ("capabilities", 15.0.into()),
                // Every audio codec but SUPPORT_SND_INTEL and SUPPORT_SND_UNUSED (ffmpeg).
                ("audioCodecs", 4071.0.into()),
                ("videoCodecs", 252.0.into()),
                ("videoFunction", 1.0.into()),
            ]);
        }
        let object = Amf0Value::object(properties);
        self.send_command_with_object(
            CSID_SYSTEM,
            0,
            "connect",
            Some(Method::Connect),
            object,
            &[],
        );
        self.state = ClientState::Connecting;
    }

    fn on_message(
        &mut self,
        csid: u32,
        header: &MessageHeader,
        payload: Bytes,
    ) -> Result<(), ClientError> {
        // Empty messages carry nothing; ffmpeg skips them too.
        if payload.is_empty() {
            return Ok(());
        }
        match header.type_id {
            // The hot path: no decoding, no allocation.
            type_id::AUDIO => self.emit_media(MediaKind::Audio, header, payload),
            type_id::VIDEO => self.emit_media(MediaKind::Video, header, payload),
            type_id::AMF0_DATA => self.emit_media(MediaKind::Data, header, payload),
            type_id::AMF3_DATA => {
                // The format byte is optional in the wild; strip it only when present.
                let payload = if payload[0] == 0 {
                    payload.slice(1..)
                } else {
                    payload
                };
                if !payload.is_empty() {
                    self.emit_media(MediaKind::Data, header, payload);
                }
            }
            type_id::AGGREGATE => self.on_aggregate(header, &payload)?,
            // The reader has applied it (and checked it has 4 bytes). ffmpeg's publisher sends
            // it back, on the chunk and message stream it came on, and adopts it
            // (handle_chunk_size).
            type_id::SET_CHUNK_SIZE
                if self.config.mode == ClientMode::Publish
                    && self.config.chunk_size == OutChunkSize::EchoServer =>
            {
                let size = self.reader.chunk_size();
                self.send_control(
                    csid,
                    type_id::SET_CHUNK_SIZE,
                    header.stream_id,
                    &size.to_be_bytes(),
                );
                self.writer.set_chunk_size(size);
            }
            type_id::WINDOW_ACK_SIZE => match Message::decode(header.type_id, &payload) {
                Ok(Message::WindowAckSize(window)) => self.server_window = window,
                Ok(_) => {}
                Err(source) => {
                    return Err(ClientError::Message {
                        type_id: header.type_id,
                        source,
                    });
                }
            },
            type_id::USER_CONTROL => {
                // Only a ping needs an answer; a malformed event of another kind (some servers
                // send StreamBegin without its stream id) is not worth the connection.
                if let Ok(UserControlEvent::PingRequest { timestamp }) =
                    UserControlEvent::decode(&payload)
                {
                    let mut pong = Vec::with_capacity(6);
                    UserControlEvent::PingResponse { timestamp }.encode(&mut pong);
                    self.send_control(CSID_NETWORK, type_id::USER_CONTROL, 0, &pong);
                }
            }
            type_id::AMF0_COMMAND | type_id::AMF3_COMMAND => {
                match Message::decode(header.type_id, &payload) {
                    Ok(Message::Command { command, .. }) => self.on_command(header, command)?,
                    Ok(_) => {}
                    Err(source) => {
                        return Err(ClientError::Message {
                            type_id: header.type_id,
                            source,
                        });
                    }
                }
            }
            // Abort (applied by the reader), acknowledgements of what we sent, the server's
            // peer bandwidth (ffmpeg answers nothing), shared objects, unknown types.
            _ => {}
        }
        Ok(())
    }

    fn emit_media(&mut self, kind: MediaKind, header: &MessageHeader, payload: Bytes) {
        self.events.push_back(ClientEvent::Media(MediaMessage {
            kind,
            timestamp: header.timestamp,
            stream_id: header.stream_id,
            payload,
        }));
    }

    /// Delivers an aggregate's parts as media, as [`aggregate_parts`] splits them (in place,
    /// timestamps rebased onto the aggregate's). Complete parts before a truncated one are
    /// delivered; the truncation is an error.
    fn on_aggregate(&mut self, header: &MessageHeader, payload: &Bytes) -> Result<(), ClientError> {
        for part in aggregate_parts(header, payload) {
            let part = part.map_err(|source| ClientError::Message {
                type_id: type_id::AGGREGATE,
                source,
            })?;
            let kind = match part.type_id {
                type_id::AUDIO => MediaKind::Audio,
                type_id::VIDEO => MediaKind::Video,
                type_id::AMF0_DATA => MediaKind::Data,
                _ => continue,
            };
            if part.payload.is_empty() {
                continue;
            }
            let part_header = MessageHeader {
                timestamp: part.timestamp,
                ..*header
            };
            self.emit_media(kind, &part_header, part.payload);
        }
        Ok(())
    }

    fn on_command(&mut self, header: &MessageHeader, command: Command) -> Result<(), ClientError> {
        match command.name.as_str() {
            "_result" => self.on_result(&command)?,
            "_error" => self.on_error(&command),
            "onStatus" => self.on_status(header.stream_id, &command),
            // ffmpeg answers every onBWDone with _checkbw (while the connection is in use).
            "onBWDone" if self.state != ClientState::Closed => {
                self.send_command(
                    CSID_SYSTEM,
                    0,
                    "_checkbw",
                    Some(Method::CheckBandwidth),
                    &[],
                );
            }
            // onFCPublish (SRS sends it before its verdict; ffmpeg ignores it), onFCUnpublish,
            // close, anything else: nothing to do.
            _ => {}
        }
        Ok(())
    }

    fn on_result(&mut self, command: &Command) -> Result<(), ClientError> {
        match self.take_pending(command.transaction_id) {
            Some(Method::Connect) if self.state == ClientState::Connecting => {
                self.state = ClientState::CreatingStream;
                self.events.push_back(ClientEvent::Connected);
                let name = [Amf0Value::String(self.config.stream.clone())];
                match self.config.mode {
                    ClientMode::Publish => {
                        self.send_command(
                            CSID_SYSTEM,
                            0,
                            "releaseStream",
                            Some(Method::ReleaseStream),
                            &name,
                        );
                        self.send_command(
                            CSID_SYSTEM,
                            0,
                            "FCPublish",
                            Some(Method::FcPublish),
                            &name,
                        );
                        self.send_command(
                            CSID_SYSTEM,
                            0,
                            "createStream",
                            Some(Method::CreateStream),
                            &[],
                        );
                    }
                    ClientMode::Play => {
                        // gen_server_bw: the server's window, echoed.
                        let window = match self.server_window {
                            0 => DEFAULT_WINDOW_ACK_SIZE,
                            window => window,
                        };
                        self.send_control(
                            CSID_NETWORK,
                            type_id::WINDOW_ACK_SIZE,
                            0,
                            &window.to_be_bytes(),
                        );
                        self.send_command(
                            CSID_SYSTEM,
                            0,
                            "createStream",
                            Some(Method::CreateStream),
                            &[],
                        );
                        if self.config.live == LiveMode::Live {
                            self.send_command(
                                CSID_SYSTEM,
                                0,
                                "FCSubscribe",
                                Some(Method::FcSubscribe),
                                &name,
                            );
                        }
                    }
                }
            }
            Some(Method::CreateStream) if self.state == ClientState::CreatingStream => {
                let stream_id = command
                    .number_argument(0)
                    .filter(|id| (0.0..=f64::from(u32::MAX)).contains(id))
                    .ok_or(ClientError::CreateStreamWithoutId)?
                    as u32;
                self.stream_id = Some(stream_id);
                self.state = ClientState::Starting;
                let name = Amf0Value::String(self.config.stream.clone());
                match self.config.mode {
                    ClientMode::Publish => self.send_command(
                        CSID_SOURCE,
                        stream_id,
                        "publish",
                        Some(Method::Publish),
                        &[name, "live".into()],
                    ),
                    ClientMode::Play => {
                        if self.config.live != LiveMode::Live {
                            self.send_command(
                                CSID_SOURCE,
                                0,
                                "getStreamLength",
                                Some(Method::GetStreamLength),
                                std::slice::from_ref(&name),
                            );
                        }
                        let start = Amf0Value::Number(self.config.live.play_start());
                        self.send_command(
                            CSID_SOURCE,
                            stream_id,
                            "play",
                            Some(Method::Play),
                            &[name, start],
                        );
                        // gen_buffer_time: on the network channel, timestamp 1, stream 0.
                        let mut buffer = Vec::with_capacity(10);
                        UserControlEvent::SetBufferLength {
                            stream_id,
                            buffer_ms: self.config.buffer_length_ms,
                        }
                        .encode(&mut buffer);
                        self.writer.write(
                            &mut self.out,
                            CSID_NETWORK,
                            &header(type_id::USER_CONTROL, 0, 1),
                            &buffer,
                        );
                    }
                }
            }
            // Results of the other commands (getStreamLength's duration included) change
            // nothing for a live client; results that arrive out of turn are ignored.
            _ => {}
        }
        Ok(())
    }

    fn on_error(&mut self, command: &Command) {
        // Errors for the other commands are ignored — ffmpeg: "Gracefully ignore
        // Adobe-specific historical artifact errors" (releaseStream, FCPublish, _checkbw,
        // FCSubscribe), and getStreamLength, which many servers do not implement — as are
        // errors for commands we did not track.
        if let Some(Method::Connect | Method::CreateStream | Method::Publish | Method::Play) =
            self.take_pending(command.transaction_id)
        {
            let info = command.arguments.first();
            self.reject(text_field(info, "code"), text_field(info, "description"));
        }
    }

    fn on_status(&mut self, stream_id: u32, command: &Command) {
        let info = command.arguments.first();
        let status = StatusInfo {
            stream_id,
            level: text_field(info, "level"),
            code: text_field(info, "code"),
            description: text_field(info, "description"),
        };
        let level_is_error = status.level == "error";
        let code = status.code.clone();
        let description = status.description.clone();
        self.events.push_back(ClientEvent::Status(Box::new(status)));

        if level_is_error {
            // ffmpeg treats every error status as fatal (handle_invoke_status).
            self.reject(code, description);
            return;
        }
        match (code.as_str(), self.config.mode, self.state) {
            ("NetStream.Publish.Start", ClientMode::Publish, ClientState::Starting) => {
                self.state = ClientState::Publishing;
                let stream_id = self.stream_id.unwrap_or(stream_id);
                self.events.push_back(ClientEvent::Publishing { stream_id });
            }
            ("NetStream.Play.Start", ClientMode::Play, ClientState::Starting) => {
                self.state = ClientState::Playing;
                let stream_id = self.stream_id.unwrap_or(stream_id);
                self.events.push_back(ClientEvent::Playing { stream_id });
            }
            (
                "NetStream.Play.Stop" | "NetStream.Play.UnpublishNotify",
                ClientMode::Play,
                ClientState::Playing,
            ) => {
                self.state = ClientState::Stopped;
                self.events
                    .push_back(ClientEvent::Stopped { code, description });
            }
            _ => {}
        }
    }

    fn reject(&mut self, code: String, description: String) {
        if matches!(
            self.state,
            ClientState::Rejected | ClientState::Closed | ClientState::Stopped
        ) {
            return;
        }
        self.state = ClientState::Rejected;
        self.events
            .push_back(ClientEvent::Rejected { code, description });
    }

    fn take_pending(&mut self, transaction_id: f64) -> Option<Method> {
        let slot = self
            .pending
            .iter_mut()
            .find(|slot| matches!(slot, Some((id, _)) if f64::from(*id) == transaction_id))?;
        slot.take().map(|(_, method)| method)
    }

    fn track(&mut self, transaction_id: u32, method: Method) {
        // A free slot, else the oldest (lowest id) makes room.
        let index = self
            .pending
            .iter()
            .position(Option::is_none)
            .unwrap_or_else(|| {
                (0..MAX_PENDING_TRANSACTIONS)
                    .min_by_key(|&i| self.pending[i].map_or(0, |(id, _)| id))
                    .unwrap_or(0)
            });
        self.pending[index] = Some((transaction_id, method));
    }

    /// The next transaction id, as ffmpeg's `++rt->nb_invokes`.
    fn next_transaction_id(&mut self) -> u32 {
        self.last_transaction_id = self.last_transaction_id.wrapping_add(1);
        self.last_transaction_id
    }

    fn send_command(
        &mut self,
        csid: u32,
        stream_id: u32,
        name: &str,
        tracked: Option<Method>,
        arguments: &[Amf0Value],
    ) {
        self.send_command_with_object(csid, stream_id, name, tracked, Amf0Value::Null, arguments);
    }

    fn send_command_with_object(
        &mut self,
        csid: u32,
        stream_id: u32,
        name: &str,
        tracked: Option<Method>,
        command_object: Amf0Value,
        arguments: &[Amf0Value],
    ) {
        let transaction_id = self.next_transaction_id();
        if let Some(method) = tracked {
            self.track(transaction_id, method);
        }
        let mut body = Vec::with_capacity(64);
        Amf0Value::String(name.to_owned()).encode(&mut body);
        Amf0Value::Number(f64::from(transaction_id)).encode(&mut body);
        command_object.encode(&mut body);
        for argument in arguments {
            argument.encode(&mut body);
        }
        self.writer.write(
            &mut self.out,
            csid,
            &header(type_id::AMF0_COMMAND, stream_id, 0),
            &body,
        );
    }

    fn send_control(&mut self, csid: u32, type_id: u8, stream_id: u32, payload: &[u8]) {
        self.writer
            .write(&mut self.out, csid, &header(type_id, stream_id, 0), payload);
    }

    /// Acknowledge once half the server's window has arrived since the last acknowledgement.
    fn acknowledge_if_due(&mut self) {
        if self.server_window == 0 {
            return;
        }
        let due = u64::from(self.server_window / 2).max(1);
        if self.bytes_received - self.acked_bytes >= due {
            self.acked_bytes = self.bytes_received;
            // The sequence number is the byte count modulo 2^32.
            let sequence_number = self.bytes_received as u32;
            self.send_control(
                CSID_NETWORK,
                type_id::ACKNOWLEDGEMENT,
                0,
                &sequence_number.to_be_bytes(),
            );
        }
    }
}

fn header(type_id: u8, stream_id: u32, timestamp: u32) -> MessageHeader {
    MessageHeader {
        timestamp,
        length: 0,
        type_id,
        stream_id,
    }
}

/// A string property of an info object, empty when missing or not a string.
fn text_field(info: Option<&Amf0Value>, key: &str) -> String {
    info.and_then(|info| info.get(key))
        .and_then(Amf0Value::as_str)
        .unwrap_or_default()
        .to_owned()
}
