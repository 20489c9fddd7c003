//! [`ServerSession`]: the server side of an RTMP connection as a sans-IO state machine.
//!
//! Bytes go in through [`ServerSession::handle_input`]; replies and events come out of
//! [`ServerSession::poll_output`] — bytes to send first, then events in arrival order. The
//! server answers the events that need a verdict (connect, publish, play) with the
//! `accept_*`/`reject_*` methods, possibly much later (after an HTTP callback): the session
//! holds back everything the client pipelines behind `connect` until the verdict.
//!
//! What goes on the wire mirrors SRS (srs_protocol_rtmp_stack.cpp, srs_app_rtmp_conn.cpp), so
//! ffmpeg, OBS and SRS's own tools see what they see there:
//! - connect accepted → WindowAckSize, SetPeerBandwidth (dynamic), SetChunkSize, `_result`
//!   (fmsVer `FMS/3,5,3,888`, capabilities 127, mode 1; NetConnection.Connect.Success with the
//!   client's objectEncoding and a `data` ECMA array), onBWDone;
//! - releaseStream / FCPublish → `_result(null, undefined)`; createStream → `_result(null, id)`
//!   with ids 1, 2, ...; publish after FCPublish → onFCPublish right away, onStatus
//!   NetStream.Publish.Start on acceptance;
//! - play accepted → StreamBegin, NetStream.Play.Reset, NetStream.Play.Start,
//!   `|RtmpSampleAccess(true, true)`. (SRS stopped sending NetStream.Data.Start because ffmpeg
//!   then shows an empty data stream; so do we.)
//! - pause → NetStream.Pause.Notify + StreamEOF / NetStream.Unpause.Notify + StreamBegin;
//! - FCUnpublish → onFCUnpublish, `_result`, NetStream.Unpublish.Success;
//! - _checkbw, FCSubscribe, receiveAudio/Video → `_result(null, null)` when a reply is asked
//!   for; getStreamLength → nothing (SRS ignores it, ffmpeg does not wait for it);
//! - any other command → `_error` NetConnection.Call.Failed when its transaction id is
//!   non-zero, and [`SessionEvent::UnknownCommand`]; never fatal.
//!
//! Acknowledgements: once the peer sets a window, we acknowledge every half window of bytes
//! received, as SRS does, so that no peer ever stalls waiting for one.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use thiserror::Error;

use super::chunk::{
    CSID_COMMAND, CSID_PROTOCOL_CONTROL, CSID_STREAM, ChunkError, ChunkReader, ChunkReaderConfig,
    ChunkWriter, MessageHeader, RtmpMessage,
};
use super::handshake::{HandshakeError, HandshakeKind, ServerHandshake};
use super::message::{
    Command, Message, MessageError, UserControlEvent, limit_type, split_aggregate, type_id,
};
use crate::amf0::{self, Amf0Value};

/// What SRS calls every client in onStatus.
const CLIENT_ID: &str = "ASAICiss";
/// The FMS version SRS claims.
const FMS_VERSION: &str = "3,5,3,888";
/// Messages the client may pipeline behind `connect` while the server decides.
const MAX_DEFERRED_MESSAGES: usize = 256;
/// Bytes of those messages.
const MAX_DEFERRED_BYTES: usize = 4 << 20;

/// Session settings. Every field has a default matching SRS.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionConfig {
    /// Chunk size announced to and used towards the client (SRS: 60000).
    pub out_chunk_size: u32,
    /// Window Acknowledgement Size sent on connect (SRS: 2.5 MB).
    pub window_ack_size: u32,
    /// Set Peer Bandwidth sent on connect, limit type dynamic (SRS: 2.5 MB).
    pub peer_bandwidth: u32,
    /// Largest chunk size the client may set.
    pub max_in_chunk_size: u32,
    /// Largest incoming message.
    pub max_message_len: u32,
    /// Chunk streams that may hold a partial message at once.
    pub max_partial_messages: usize,
    /// Chunk streams with ids >= 64 the client may use.
    pub max_chunk_streams: usize,
    /// How many createStream calls one connection may make.
    pub max_message_streams: u32,
    /// Seeds the handshake's random bytes; vary it per connection.
    pub random_seed: u64,
    /// The `data` ECMA array of the connect `_result` (SRS puts version and server
    /// identification here; SRS's edge reads `srs_server`, `srs_version`, `srs_id`, ...).
    pub connect_result_data: Vec<(String, Amf0Value)>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        let version = env!("CARGO_PKG_VERSION");
        SessionConfig {
            out_chunk_size: 60000,
            window_ack_size: 2_500_000,
            peer_bandwidth: 2_500_000,
            max_in_chunk_size: 16 << 20,
            max_message_len: 8 << 20,
            max_partial_messages: 64,
            max_chunk_streams: 1024,
            max_message_streams: 16,
            random_seed: 0,
            connect_result_data: vec![
                ("version".into(), FMS_VERSION.into()),
                ("srs_sig".into(), "sluice".into()),
                ("srs_server".into(), format!("sluice/{version}").into()),
                ("srs_license".into(), "MIT".into()),
                ("srs_version".into(), version.into()),
            ],
        }
    }
}

/// Why the connection must be closed.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum SessionError {
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
    #[error("'{name}' command before connect")]
    CommandBeforeConnect { name: String },
    #[error("connect command object is not an object")]
    ConnectWithoutCommandObject,
    #[error("connect command object has no tcUrl string")]
    ConnectWithoutTcUrl,
    #[error("second connect command on a connection that already sent one")]
    DuplicateConnect,
    #[error("{command} without a stream name string")]
    MissingStreamName { command: &'static str },
    #[error("{command} on message stream {stream_id}, which createStream did not create")]
    UnknownStream {
        command: &'static str,
        stream_id: u32,
    },
    #[error("{command} on message stream {stream_id}, which is already {state}")]
    StreamBusy {
        command: &'static str,
        stream_id: u32,
        state: &'static str,
    },
    #[error("pause command without its pause flag")]
    MalformedPause,
    #[error("more than {limit} createStream calls on one connection")]
    TooManyStreams { limit: u32 },
    #[error("more than {limit} messages sent while connect awaited the server's verdict")]
    TooManyDeferred { limit: usize },
}

/// What [`ServerSession::poll_output`] hands out.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionOutput {
    /// Bytes to write to the socket, in order.
    Transmit(Bytes),
    Event(SessionEvent),
}

/// Something the server has to know or decide.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// Answer with [`ServerSession::accept_connect`] or [`ServerSession::reject_connect`].
    Connect(ConnectRequest),
    /// Answer with [`ServerSession::accept_publish`] or [`ServerSession::reject_publish`].
    Publish(PublishRequest),
    /// Answer with [`ServerSession::accept_play`] or [`ServerSession::reject_play`].
    Play(PlayRequest),
    /// The session already answered with Pause/Unpause.Notify.
    Pause {
        stream_id: u32,
        paused: bool,
        position_ms: f64,
    },
    /// FCUnpublish; the session already answered with NetStream.Unpublish.Success.
    Unpublish { stream_id: u32 },
    /// closeStream or deleteStream of a stream that was created: ends whatever publish or
    /// play ran on it (Flash sends no FCUnpublish).
    CloseStream { stream_id: u32 },
    /// Audio, video or data (incl. `@setDataFrame`), also the parts of aggregates.
    Media(MediaMessage),
    /// A command we do not implement; answered with `_error` if it asked for a reply.
    UnknownCommand { name: String },
}

/// The `connect` command, as SRS reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectRequest {
    pub transaction_id: f64,
    /// The `app` property (SRS derives the app from `tc_url`; both are given).
    pub app: String,
    pub tc_url: String,
    pub page_url: String,
    pub swf_url: String,
    pub flash_ver: String,
    /// 0 (AMF0) unless the client asked for 3; echoed in the `_result`.
    pub object_encoding: f64,
    /// The whole command object.
    pub command_object: Amf0Value,
    /// Values after the command object (some clients send auth parameters there).
    pub arguments: Vec<Amf0Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PublishRequest {
    pub stream_id: u32,
    /// Raw, as sent: may carry `?key=value` parameters.
    pub stream_name: String,
    /// "live" (default), "record" or "append".
    pub publish_type: String,
    pub transaction_id: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlayRequest {
    pub stream_id: u32,
    /// Raw, as sent: may carry `?key=value` parameters.
    pub stream_name: String,
    /// -2 (live or recorded, the default), -1 (live only), >= 0 (recorded, from there).
    pub start: f64,
    /// -1 (to the end, the default).
    pub duration: f64,
    pub reset: bool,
    pub transaction_id: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Audio,
    Video,
    /// AMF0 data (an AMF3 data message's format byte removed).
    Data,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaMessage {
    pub kind: MediaKind,
    pub timestamp: u32,
    pub stream_id: u32,
    pub payload: Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamState {
    Idle,
    PublishPending,
    Publishing,
    PlayPending,
    Playing,
}

impl StreamState {
    fn describe(self) -> &'static str {
        match self {
            StreamState::Idle => "idle",
            StreamState::PublishPending | StreamState::Publishing => "publishing",
            StreamState::PlayPending | StreamState::Playing => "playing",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct NetStream {
    id: u32,
    state: StreamState,
}

#[derive(Debug)]
enum Phase {
    Handshake(Box<ServerHandshake>),
    AwaitingConnect,
    /// Connect event emitted; messages behind it wait in `deferred`.
    ConnectPending,
    Connected,
    /// Connect was rejected: the server closes after transmitting; input is ignored.
    Rejected,
}

/// Event queue capacity kept between bursts.
const RETAINED_EVENT_CAPACITY: usize = 16;

/// The server side of one RTMP connection. See the module docs.
#[derive(Debug)]
pub struct ServerSession {
    config: SessionConfig,
    phase: Phase,
    handshake_kind: Option<HandshakeKind>,
    reader: ChunkReader,
    writer: ChunkWriter,
    out: BytesMut,
    events: VecDeque<SessionEvent>,
    deferred: VecDeque<RtmpMessage>,
    deferred_bytes: usize,
    /// A failure while replaying deferred messages, reported by the next `handle_input`.
    fatal: Option<SessionError>,
    connect_transaction_id: f64,
    object_encoding: f64,
    streams: Vec<NetStream>,
    streams_created: u32,
    /// FCPublish was seen: publish then gets onFCPublish, as SRS does for FMLE/Haivision.
    fc_publish_seen: bool,
    bytes_received: u64,
    /// The peer's window acknowledgement size (0: it did not ask for acknowledgements).
    peer_ack_window: u32,
    acked_bytes: u64,
    last_input_at: Option<Instant>,
}

impl ServerSession {
    pub fn new(config: SessionConfig) -> Self {
        let reader = ChunkReader::new(ChunkReaderConfig {
            max_chunk_size: config.max_in_chunk_size,
            max_message_len: config.max_message_len,
            max_partial_messages: config.max_partial_messages,
            max_chunk_streams: config.max_chunk_streams,
            media_prefix: None,
        });
        ServerSession {
            phase: Phase::Handshake(Box::new(ServerHandshake::new(config.random_seed))),
            handshake_kind: None,
            reader,
            writer: ChunkWriter::default(),
            out: BytesMut::new(),
            events: VecDeque::new(),
            deferred: VecDeque::new(),
            deferred_bytes: 0,
            fatal: None,
            connect_transaction_id: 1.0,
            object_encoding: 0.0,
            streams: Vec::new(),
            streams_created: 0,
            fc_publish_seen: false,
            bytes_received: 0,
            peer_ack_window: 0,
            acked_bytes: 0,
            last_input_at: None,
            config,
        }
    }

    /// Feeds bytes read from the socket. An error means the connection must be closed (after
    /// transmitting what [`poll_output`](Self::poll_output) still holds).
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) -> Result<(), SessionError> {
        if let Some(error) = self.fatal.take() {
            return Err(error);
        }
        self.last_input_at = Some(now);
        self.bytes_received += data.len() as u64;
        let mut input = data;
        if let Phase::Handshake(handshake) = &mut self.phase {
            let consumed = handshake.handle_input(input)?;
            input = &input[consumed..];
            if let Some(reply) = handshake.poll_transmit() {
                self.out.extend_from_slice(&reply);
            }
            if !handshake.is_done() {
                return Ok(());
            }
            self.handshake_kind = handshake.kind();
            self.phase = Phase::AwaitingConnect;
        }
        if matches!(self.phase, Phase::Rejected) {
            return Ok(());
        }
        while let Some(message) = self.reader.read_message(&mut input)? {
            self.on_message(message)?;
        }
        self.acknowledge_if_due();
        Ok(())
    }

    /// Bytes to send first, then events in arrival order; `None` when there is nothing.
    pub fn poll_output(&mut self) -> Option<SessionOutput> {
        if !self.out.is_empty() {
            // The whole buffer goes, spare capacity too: after `split` the emptied BytesMut
            // would keep its allocation alive, kilobytes pinned by every idle player.
            return Some(SessionOutput::Transmit(
                std::mem::take(&mut self.out).freeze(),
            ));
        }
        let event = self.events.pop_front();
        if event.is_none() && self.events.capacity() > RETAINED_EVENT_CAPACITY {
            // A burst of small messages must not leave its queue behind.
            self.events.shrink_to(RETAINED_EVENT_CAPACITY);
        }
        event.map(SessionOutput::Event)
    }

    /// Accepts the pending connect (SRS's replies, see the module docs), then processes what
    /// the client sent behind it.
    pub fn accept_connect(&mut self) {
        self.accept_connect_with_data(Vec::new());
    }

    /// [`accept_connect`](Self::accept_connect), appending `extra_data` (e.g. `srs_server_ip`,
    /// `srs_pid`, `srs_id`) to the `_result`'s data array.
    pub fn accept_connect_with_data(&mut self, extra_data: Vec<(String, Amf0Value)>) {
        if !matches!(self.phase, Phase::ConnectPending) {
            return;
        }
        self.send_control(&Message::WindowAckSize(self.config.window_ack_size));
        self.send_control(&Message::SetPeerBandwidth {
            window: self.config.peer_bandwidth,
            limit_type: limit_type::DYNAMIC,
        });
        self.send_control(&Message::SetChunkSize(self.config.out_chunk_size));
        self.writer.set_chunk_size(self.config.out_chunk_size);

        let mut data = self.config.connect_result_data.clone();
        data.extend(extra_data);
        let properties = Amf0Value::object([
            ("fmsVer", Amf0Value::from(format!("FMS/{FMS_VERSION}"))),
            ("capabilities", 127.0.into()),
            ("mode", 1.0.into()),
        ]);
        let information = Amf0Value::object([
            ("level", Amf0Value::from("status")),
            ("code", "NetConnection.Connect.Success".into()),
            ("description", "Connection succeeded".into()),
            ("objectEncoding", self.object_encoding.into()),
            ("data", Amf0Value::EcmaArray(data)),
        ]);
        self.send_command(
            CSID_COMMAND,
            0,
            "_result",
            self.connect_transaction_id,
            properties,
            &[information],
        );
        self.send_command(CSID_COMMAND, 0, "onBWDone", 0.0, Amf0Value::Null, &[]);
        self.phase = Phase::Connected;

        // Replay what arrived while we waited.
        let deferred = std::mem::take(&mut self.deferred);
        self.deferred_bytes = 0;
        for message in deferred {
            if let Err(error) = self.on_message(message) {
                self.fatal = Some(error);
                break;
            }
        }
    }

    /// Rejects the pending connect with onStatus NetConnection.Connect.Rejected (what SRS
    /// sends); close the connection after transmitting.
    pub fn reject_connect(&mut self, description: &str) {
        if !matches!(self.phase, Phase::ConnectPending) {
            return;
        }
        self.send_on_status(
            0,
            Amf0Value::object([
                ("level", Amf0Value::from("error")),
                ("code", "NetConnection.Connect.Rejected".into()),
                ("description", description.into()),
            ]),
        );
        self.deferred.clear();
        self.deferred_bytes = 0;
        self.phase = Phase::Rejected;
    }

    /// Answers a publish with onStatus NetStream.Publish.Start.
    pub fn accept_publish(&mut self, stream_id: u32) {
        self.set_stream_state(stream_id, StreamState::Publishing);
        self.send_on_status(
            stream_id,
            Amf0Value::object([
                ("level", Amf0Value::from("status")),
                ("code", "NetStream.Publish.Start".into()),
                ("description", "Started publishing stream.".into()),
                ("clientid", CLIENT_ID.into()),
            ]),
        );
    }

    /// Answers a publish with an error onStatus, e.g. code `NetStream.Publish.BadName`,
    /// description `stream is busy`. Close the connection after transmitting.
    pub fn reject_publish(&mut self, stream_id: u32, code: &str, description: &str) {
        self.set_stream_state(stream_id, StreamState::Idle);
        self.send_status(stream_id, "error", code, description);
    }

    /// Answers a play the way SRS does: StreamBegin, NetStream.Play.Reset,
    /// NetStream.Play.Start, |RtmpSampleAccess.
    pub fn accept_play(&mut self, stream_id: u32) {
        self.set_stream_state(stream_id, StreamState::Playing);
        self.send_user_control(UserControlEvent::StreamBegin { stream_id });
        for (code, description) in [
            ("NetStream.Play.Reset", "Playing and resetting stream."),
            ("NetStream.Play.Start", "Started playing stream."),
        ] {
            self.send_on_status(
                stream_id,
                Amf0Value::object([
                    ("level", Amf0Value::from("status")),
                    ("code", code.into()),
                    ("description", description.into()),
                    ("details", "stream".into()),
                    ("clientid", CLIENT_ID.into()),
                ]),
            );
        }
        let mut body = Vec::new();
        amf0::encode_all(
            &[
                "|RtmpSampleAccess".into(),
                Amf0Value::Boolean(true),
                Amf0Value::Boolean(true),
            ],
            &mut body,
        );
        self.send_message(CSID_STREAM, &header(type_id::AMF0_DATA, stream_id), &body);
    }

    /// Answers a play with an error onStatus, e.g. `NetStream.Play.StreamNotFound`.
    pub fn reject_play(&mut self, stream_id: u32, code: &str, description: &str) {
        self.set_stream_state(stream_id, StreamState::Idle);
        self.send_status(stream_id, "error", code, description);
    }

    /// Sends `onStatus(0, null, {level, code, description})` on `stream_id`.
    pub fn send_status(&mut self, stream_id: u32, level: &str, code: &str, description: &str) {
        self.send_on_status(
            stream_id,
            Amf0Value::object([
                ("level", Amf0Value::from(level)),
                ("code", code.into()),
                ("description", description.into()),
            ]),
        );
    }

    /// Sends a user control event (StreamBegin, StreamEOF, ...).
    pub fn send_user_control(&mut self, event: UserControlEvent) {
        self.send_control(&Message::UserControl(event));
    }

    /// Sends any message through the session's chunk writer (type-0 headers, out chunk size).
    pub fn send_message(&mut self, csid: u32, header: &MessageHeader, payload: &[u8]) {
        self.writer.write(&mut self.out, csid, header, payload);
    }

    /// Sets the chunk size towards the client (e.g. from the vhost the connect named). Before
    /// `accept_connect` it replaces `SessionConfig::out_chunk_size`; after, it sends
    /// SetChunkSize at once. Sizes are clamped to 128..=65536 (what SRS accepts).
    pub fn set_out_chunk_size(&mut self, size: u32) {
        let size = size.clamp(128, 65_536);
        self.config.out_chunk_size = size;
        if self.is_connected() && self.writer.chunk_size() != size {
            self.send_control(&Message::SetChunkSize(size));
            self.writer.set_chunk_size(size);
        }
    }

    /// The chunk size towards the client: 128 until connect is accepted, then
    /// `out_chunk_size`. Media the hub writes directly must be chunked at this size.
    pub fn out_chunk_size(&self) -> u32 {
        self.writer.chunk_size()
    }

    /// The chunk size the client announced for its chunks.
    pub fn in_chunk_size(&self) -> u32 {
        self.reader.chunk_size()
    }

    pub fn handshake_kind(&self) -> Option<HandshakeKind> {
        self.handshake_kind
    }

    /// All bytes received, handshake included.
    pub fn bytes_received(&self) -> u64 {
        self.bytes_received
    }

    /// When `handle_input` was last called (for idle timeouts).
    pub fn last_input_at(&self) -> Option<Instant> {
        self.last_input_at
    }

    /// Connect has been accepted.
    pub fn is_connected(&self) -> bool {
        matches!(self.phase, Phase::Connected)
    }

    fn on_message(&mut self, message: RtmpMessage) -> Result<(), SessionError> {
        let type_id = message.header.type_id;
        // Empty messages carry nothing; SRS drops them.
        if message.payload.is_empty() {
            return Ok(());
        }
        if matches!(self.phase, Phase::ConnectPending) && type_id != type_id::SET_CHUNK_SIZE {
            if self.deferred.len() >= MAX_DEFERRED_MESSAGES
                || self.deferred_bytes + message.payload.len() > MAX_DEFERRED_BYTES
            {
                return Err(SessionError::TooManyDeferred {
                    limit: MAX_DEFERRED_MESSAGES,
                });
            }
            self.deferred_bytes += message.payload.len();
            self.deferred.push_back(message);
            return Ok(());
        }
        if matches!(self.phase, Phase::Rejected) {
            return Ok(());
        }
        let decoded = match Message::decode(type_id, &message.payload) {
            Ok(decoded) => decoded,
            // SRS never decodes these; a malformed one must not cost the connection.
            Err(_)
                if matches!(
                    type_id,
                    type_id::ACKNOWLEDGEMENT | type_id::SET_PEER_BANDWIDTH
                ) =>
            {
                return Ok(());
            }
            Err(source) => return Err(SessionError::Message { type_id, source }),
        };
        let header = message.header;
        match decoded {
            // The chunk reader already applied SetChunkSize and Abort.
            Message::SetChunkSize(_)
            | Message::Abort { .. }
            | Message::Acknowledgement { .. }
            | Message::SetPeerBandwidth { .. } => {}
            Message::WindowAckSize(window) => self.peer_ack_window = window,
            Message::UserControl(UserControlEvent::PingRequest { timestamp }) => {
                self.send_user_control(UserControlEvent::PingResponse { timestamp });
            }
            Message::UserControl(_) => {}
            Message::Audio(payload) => self.emit_media(MediaKind::Audio, &header, payload),
            Message::Video(payload) => self.emit_media(MediaKind::Video, &header, payload),
            Message::Data { payload, .. } => {
                // ffmpeg sends a bare 4-byte timecode as a data message; SRS ignores it (#3803).
                if !(payload.len() == 4 && payload[0] == 0) {
                    self.emit_media(MediaKind::Data, &header, payload);
                }
            }
            Message::Aggregate(payload) => {
                let parts =
                    split_aggregate(&header, &payload).map_err(|source| SessionError::Message {
                        type_id: type_id::AGGREGATE,
                        source,
                    })?;
                for part in parts {
                    let kind = match part.type_id {
                        type_id::AUDIO => MediaKind::Audio,
                        type_id::VIDEO => MediaKind::Video,
                        type_id::AMF0_DATA => MediaKind::Data,
                        _ => continue,
                    };
                    let part_header = MessageHeader {
                        timestamp: part.timestamp,
                        ..header
                    };
                    self.emit_media(kind, &part_header, part.payload);
                }
            }
            Message::Command { command, .. } => self.on_command(&header, command)?,
            Message::Other { .. } => {}
        }
        Ok(())
    }

    fn emit_media(&mut self, kind: MediaKind, header: &MessageHeader, payload: Bytes) {
        // Media before connect has nowhere to go.
        if !matches!(self.phase, Phase::Connected) {
            return;
        }
        self.events.push_back(SessionEvent::Media(MediaMessage {
            kind,
            timestamp: header.timestamp,
            stream_id: header.stream_id,
            payload,
        }));
    }

    fn on_command(&mut self, header: &MessageHeader, command: Command) -> Result<(), SessionError> {
        if matches!(self.phase, Phase::AwaitingConnect) {
            if command.name != "connect" {
                return Err(SessionError::CommandBeforeConnect { name: command.name });
            }
            return self.on_connect(command);
        }
        let stream_id = header.stream_id;
        let transaction_id = command.transaction_id;
        match command.name.as_str() {
            "connect" => return Err(SessionError::DuplicateConnect),
            "createStream" => {
                if self.streams_created >= self.config.max_message_streams {
                    return Err(SessionError::TooManyStreams {
                        limit: self.config.max_message_streams,
                    });
                }
                self.streams_created += 1;
                let id = self.streams_created;
                self.streams.push(NetStream {
                    id,
                    state: StreamState::Idle,
                });
                self.send_command(
                    CSID_COMMAND,
                    0,
                    "_result",
                    transaction_id,
                    Amf0Value::Null,
                    &[Amf0Value::Number(f64::from(id))],
                );
            }
            "releaseStream" | "FCPublish" => {
                if command.name == "FCPublish" {
                    self.fc_publish_seen = true;
                }
                self.send_command(
                    CSID_COMMAND,
                    0,
                    "_result",
                    transaction_id,
                    Amf0Value::Null,
                    &[Amf0Value::Undefined],
                );
            }
            "publish" => self.on_publish(stream_id, &command)?,
            "play" => self.on_play(stream_id, &command)?,
            "pause" => self.on_pause(stream_id, &command)?,
            "FCUnpublish" => self.on_fc_unpublish(transaction_id),
            "deleteStream" => {
                let target = command
                    .number_argument(0)
                    .filter(|id| *id >= 0.0 && *id <= f64::from(u32::MAX))
                    .map_or(stream_id, |id| id as u32);
                if let Some(index) = self.streams.iter().position(|s| s.id == target) {
                    self.streams.remove(index);
                    self.events
                        .push_back(SessionEvent::CloseStream { stream_id: target });
                }
            }
            "closeStream" => {
                if let Some(stream) = self.streams.iter_mut().find(|s| s.id == stream_id) {
                    stream.state = StreamState::Idle;
                    self.events
                        .push_back(SessionEvent::CloseStream { stream_id });
                }
            }
            // SRS leaves it unanswered and ffmpeg does not wait for it.
            "getStreamLength" => {}
            "_checkbw" | "FCSubscribe" | "FCUnsubscribe" | "receiveAudio" | "receiveVideo" => {
                if transaction_id != 0.0 {
                    self.send_command(
                        CSID_COMMAND,
                        stream_id,
                        "_result",
                        transaction_id,
                        Amf0Value::Null,
                        &[Amf0Value::Null],
                    );
                }
            }
            // Replies and notifications from the client: nothing to answer.
            "_result" | "_error" | "onStatus" | "onBWDone" => {}
            // Metadata sent as a command instead of a data message: pass it on as data.
            "@setDataFrame" | "onMetaData" => {
                let mut payload = Vec::new();
                command.encode(&mut payload);
                self.emit_media(MediaKind::Data, header, Bytes::from(payload));
            }
            _ => {
                if transaction_id != 0.0 {
                    let description = format!("Method not found ({}).", command.name);
                    self.send_command(
                        CSID_COMMAND,
                        stream_id,
                        "_error",
                        transaction_id,
                        Amf0Value::Null,
                        &[Amf0Value::object([
                            ("level", Amf0Value::from("error")),
                            ("code", "NetConnection.Call.Failed".into()),
                            ("description", description.into()),
                        ])],
                    );
                }
                self.events
                    .push_back(SessionEvent::UnknownCommand { name: command.name });
            }
        }
        Ok(())
    }

    fn on_connect(&mut self, command: Command) -> Result<(), SessionError> {
        let object = &command.command_object;
        if !matches!(object, Amf0Value::Object(_) | Amf0Value::EcmaArray(_)) {
            return Err(SessionError::ConnectWithoutCommandObject);
        }
        let text = |key: &str| {
            object
                .get(key)
                .and_then(Amf0Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let tc_url = object
            .get("tcUrl")
            .and_then(Amf0Value::as_str)
            .ok_or(SessionError::ConnectWithoutTcUrl)?
            .to_owned();
        let object_encoding = object
            .get("objectEncoding")
            .and_then(Amf0Value::as_f64)
            .unwrap_or(0.0);
        self.connect_transaction_id = command.transaction_id;
        self.object_encoding = object_encoding;
        let request = ConnectRequest {
            transaction_id: command.transaction_id,
            app: text("app"),
            tc_url,
            page_url: text("pageUrl"),
            swf_url: text("swfUrl"),
            flash_ver: text("flashVer"),
            object_encoding,
            command_object: command.command_object,
            arguments: command.arguments,
        };
        self.phase = Phase::ConnectPending;
        self.events.push_back(SessionEvent::Connect(request));
        Ok(())
    }

    fn on_publish(&mut self, stream_id: u32, command: &Command) -> Result<(), SessionError> {
        let stream_name = command
            .string_argument(0)
            .ok_or(SessionError::MissingStreamName { command: "publish" })?
            .to_owned();
        let publish_type = command.string_argument(1).unwrap_or("live").to_owned();
        let Some(stream) = self.streams.iter_mut().find(|s| s.id == stream_id) else {
            return Err(SessionError::UnknownStream {
                command: "publish",
                stream_id,
            });
        };
        if stream.state != StreamState::Idle {
            return Err(SessionError::StreamBusy {
                command: "publish",
                stream_id,
                state: stream.state.describe(),
            });
        }
        stream.state = StreamState::PublishPending;
        // SRS answers an FMLE-style publish with onFCPublish at once, before its hooks run.
        if self.fc_publish_seen {
            self.send_command(
                CSID_STREAM,
                stream_id,
                "onFCPublish",
                0.0,
                Amf0Value::Null,
                &[Amf0Value::object([
                    ("code", Amf0Value::from("NetStream.Publish.Start")),
                    ("description", "Started publishing stream.".into()),
                ])],
            );
        }
        self.events.push_back(SessionEvent::Publish(PublishRequest {
            stream_id,
            stream_name,
            publish_type,
            transaction_id: command.transaction_id,
        }));
        Ok(())
    }

    fn on_play(&mut self, stream_id: u32, command: &Command) -> Result<(), SessionError> {
        let stream_name = command
            .string_argument(0)
            .ok_or(SessionError::MissingStreamName { command: "play" })?
            .to_owned();
        let start = command.number_argument(1).unwrap_or(-2.0);
        let duration = command.number_argument(2).unwrap_or(-1.0);
        let reset = match command.arguments.get(3) {
            Some(Amf0Value::Boolean(reset)) => *reset,
            Some(Amf0Value::Number(reset)) => *reset != 0.0,
            _ => true,
        };
        match self.streams.iter_mut().find(|s| s.id == stream_id) {
            // A second play on a playing stream (some Flash players re-issue it): SRS ignores it.
            Some(stream)
                if matches!(
                    stream.state,
                    StreamState::PlayPending | StreamState::Playing
                ) =>
            {
                return Ok(());
            }
            Some(stream) if stream.state != StreamState::Idle => {
                return Err(SessionError::StreamBusy {
                    command: "play",
                    stream_id,
                    state: stream.state.describe(),
                });
            }
            Some(stream) => stream.state = StreamState::PlayPending,
            // SRS lets a client play without createStream.
            None => self.streams.push(NetStream {
                id: stream_id,
                state: StreamState::PlayPending,
            }),
        }
        self.events.push_back(SessionEvent::Play(PlayRequest {
            stream_id,
            stream_name,
            start,
            duration,
            reset,
            transaction_id: command.transaction_id,
        }));
        Ok(())
    }

    fn on_pause(&mut self, stream_id: u32, command: &Command) -> Result<(), SessionError> {
        let paused = match command.arguments.first() {
            Some(Amf0Value::Boolean(paused)) => *paused,
            _ => return Err(SessionError::MalformedPause),
        };
        let position_ms = command.number_argument(1).unwrap_or(0.0);
        let playing = |s: &&NetStream| s.state == StreamState::Playing;
        let target = match self.streams.iter().find(|s| s.id == stream_id) {
            Some(stream) => Some(stream).filter(playing).map(|s| s.id),
            None => self.streams.iter().find(playing).map(|s| s.id),
        };
        let Some(stream_id) = target else {
            // Not playing: nothing to pause (SRS ignores it outside its play loop).
            return Ok(());
        };
        let (code, description, event) = if paused {
            (
                "NetStream.Pause.Notify",
                "Paused stream.",
                UserControlEvent::StreamEof { stream_id },
            )
        } else {
            (
                "NetStream.Unpause.Notify",
                "Unpaused stream.",
                UserControlEvent::StreamBegin { stream_id },
            )
        };
        self.send_status(stream_id, "status", code, description);
        self.send_user_control(event);
        self.events.push_back(SessionEvent::Pause {
            stream_id,
            paused,
            position_ms,
        });
        Ok(())
    }

    fn on_fc_unpublish(&mut self, transaction_id: f64) {
        let publishing = self.streams.iter_mut().find(|s| {
            matches!(
                s.state,
                StreamState::Publishing | StreamState::PublishPending
            )
        });
        let Some(stream) = publishing else {
            if transaction_id != 0.0 {
                self.send_command(
                    CSID_COMMAND,
                    0,
                    "_result",
                    transaction_id,
                    Amf0Value::Null,
                    &[Amf0Value::Undefined],
                );
            }
            return;
        };
        stream.state = StreamState::Idle;
        let stream_id = stream.id;
        self.send_command(
            CSID_STREAM,
            stream_id,
            "onFCUnpublish",
            0.0,
            Amf0Value::Null,
            &[Amf0Value::object([
                ("code", Amf0Value::from("NetStream.Unpublish.Success")),
                ("description", "Stop publishing stream.".into()),
            ])],
        );
        self.send_command(
            CSID_COMMAND,
            stream_id,
            "_result",
            transaction_id,
            Amf0Value::Null,
            &[Amf0Value::Undefined],
        );
        self.send_on_status(
            stream_id,
            Amf0Value::object([
                ("level", Amf0Value::from("status")),
                ("code", "NetStream.Unpublish.Success".into()),
                ("description", "Stream is now unpublished".into()),
                ("clientid", CLIENT_ID.into()),
            ]),
        );
        self.events.push_back(SessionEvent::Unpublish { stream_id });
    }

    fn set_stream_state(&mut self, stream_id: u32, state: StreamState) {
        if let Some(stream) = self.streams.iter_mut().find(|s| s.id == stream_id) {
            stream.state = state;
        }
    }

    /// SRS's rule: acknowledge once half the peer's window has arrived since the last one.
    fn acknowledge_if_due(&mut self) {
        if self.peer_ack_window == 0 {
            return;
        }
        if self.bytes_received - self.acked_bytes >= u64::from(self.peer_ack_window / 2) {
            self.acked_bytes = self.bytes_received;
            // The sequence number is the byte count modulo 2^32.
            self.send_control(&Message::Acknowledgement {
                sequence_number: self.bytes_received as u32,
            });
        }
    }

    fn send_control(&mut self, message: &Message) {
        let payload = message.to_bytes();
        self.send_message(
            CSID_PROTOCOL_CONTROL,
            &header(message.type_id(), 0),
            &payload,
        );
    }

    fn send_command(
        &mut self,
        csid: u32,
        stream_id: u32,
        name: &str,
        transaction_id: f64,
        command_object: Amf0Value,
        arguments: &[Amf0Value],
    ) {
        let mut body = Vec::new();
        Amf0Value::from(name).encode(&mut body);
        Amf0Value::Number(transaction_id).encode(&mut body);
        command_object.encode(&mut body);
        amf0::encode_all(arguments, &mut body);
        self.send_message(csid, &header(type_id::AMF0_COMMAND, stream_id), &body);
    }

    fn send_on_status(&mut self, stream_id: u32, information: Amf0Value) {
        self.send_command(
            CSID_STREAM,
            stream_id,
            "onStatus",
            0.0,
            Amf0Value::Null,
            &[information],
        );
    }
}

fn header(type_id: u8, stream_id: u32) -> MessageHeader {
    MessageHeader {
        timestamp: 0,
        length: 0,
        type_id,
        stream_id,
    }
}
