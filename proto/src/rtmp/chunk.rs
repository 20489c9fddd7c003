//! The RTMP chunk stream: messages split into chunks, chunks of different chunk streams
//! interleaved on one connection.
//!
//! Every chunk starts with a basic header (fmt and chunk stream id, 1–3 bytes) and a message
//! header whose size depends on fmt: 11 bytes for type 0 (absolute timestamp, length, type,
//! stream id), 7 for type 1 (timestamp delta, length, type), 3 for type 2 (delta only), none for
//! type 3 (everything as before). A timestamp field of 0xFFFFFF announces a 4-byte extended
//! timestamp after the message header.
//!
//! [`ChunkReader`] reassembles messages from fragments of any size. It applies SetChunkSize and
//! Abort itself, because they change how the very next chunk is parsed, and still yields them.
//! It is total and bounded: limits on the chunk size, the message length, the number of chunk
//! streams and how many of them may hold a partial message; payload buffers grow with the
//! bytes actually received rather than with what a header claims.
//!
//! [`ChunkWriter`] splits messages again, optionally compressing headers per chunk stream.
//! [`write_fmt0_header`] and [`write_chunked_body`] are the hub's fan-out path: a message on the
//! wire is a per-viewer type-0 header (carrying that viewer's timestamp) followed by a chunked
//! body that every viewer with the same chunk size and chunk stream id can share.
//!
//! The type-3 extended-timestamp quirk: Adobe's encoders (and ffmpeg, and SRS) repeat the
//! extended timestamp in every type-3 chunk of a message, the spec's early text says not to.
//! Like SRS and ffmpeg we always read it on a type-3 chunk that starts a new message, and on a
//! continuation chunk we consume 4 bytes only if they equal the extended timestamp in force —
//! so both kinds of encoder are understood. We always write it.

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// The chunk size both directions start with.
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// Lowest chunk stream id (0 and 1 select the 2- and 3-byte basic header forms).
pub const MIN_CHUNK_STREAM_ID: u32 = 2;
/// Highest chunk stream id the 3-byte basic header can carry.
pub const MAX_CHUNK_STREAM_ID: u32 = 65599;
/// Timestamp field value announcing a 4-byte extended timestamp.
pub const EXTENDED_TIMESTAMP: u32 = 0x00FF_FFFF;
/// Longest message length the 24-bit length field can express.
pub const MAX_MESSAGE_LENGTH_FIELD: u32 = 0x00FF_FFFF;
/// Longest possible chunk header: 3-byte basic header, 11-byte message header, 4-byte
/// extended timestamp.
pub const MAX_CHUNK_HEADER_LEN: usize = 3 + 11 + 4;

/// Chunk stream ids SRS sends on, so that captures look the same and clients that care find
/// what they expect. Protocol control (set chunk size, window ack size, user control, ...).
pub const CSID_PROTOCOL_CONTROL: u32 = 2;
/// NetConnection commands and their results (`_result` of connect/createStream, onBWDone).
pub const CSID_COMMAND: u32 = 3;
/// Script data sent to players (onMetaData): SRS's `RTMP_CID_OverConnection2`.
pub const CSID_DATA: u32 = 4;
/// NetStream commands and data (onStatus, |RtmpSampleAccess): SRS's `RTMP_CID_OverStream`.
pub const CSID_STREAM: u32 = 5;
/// Video messages to players.
pub const CSID_VIDEO: u32 = 6;
/// Audio messages to players.
pub const CSID_AUDIO: u32 = 7;

const SET_CHUNK_SIZE: u8 = 1;
const TYPE_AUDIO: u8 = 8;
const TYPE_VIDEO: u8 = 9;
const ABORT: u8 = 2;

/// Chunk streams with ids below this live in a directly indexed table (one-byte basic header).
const DIRECT_STREAMS: u32 = 64;
/// Payload bytes a reader may reserve up front, across all partial messages, on the word of
/// message headers alone. Past it buffers grow as bytes arrive, so a few bytes of headers
/// claiming huge messages cannot make us allocate much.
const PREALLOCATION_BUDGET: usize = 2 << 20;
/// Initial capacity of a partial message once the budget is spent.
const SMALL_PREALLOCATION: usize = 4096;

/// The header of a complete message, as the chunk layer delivers it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MessageHeader {
    /// Absolute timestamp in milliseconds; wraps at 2^32.
    pub timestamp: u32,
    /// Payload length in bytes (24 bits on the wire).
    pub length: u32,
    /// Message type id (1 set chunk size, 8 audio, 9 video, 20 AMF0 command, ...).
    pub type_id: u8,
    /// Message stream id (little-endian on the wire, unlike everything else).
    pub stream_id: u32,
}

/// A complete message and the chunk stream it arrived on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpMessage {
    pub csid: u32,
    pub header: MessageHeader,
    pub payload: Bytes,
}

/// Why the chunk stream cannot be read any further. After an error the reader stays failed:
/// the byte stream has lost its framing.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error(
        "chunk stream {csid} starts with a type-{fmt} header; a new chunk stream must start \
         with a type-0 (or type-1) header"
    )]
    StreamStartsWithoutHeader { csid: u32, fmt: u8 },
    #[error(
        "chunk stream {csid}: type-0 header while a {length}-byte message is still incomplete \
         ({received} bytes received)"
    )]
    Type0InsideMessage {
        csid: u32,
        length: u32,
        received: usize,
    },
    #[error("chunk stream {csid}: message length changed from {old} to {new} mid-message")]
    LengthChangedInsideMessage { csid: u32, old: u32, new: u32 },
    #[error("chunk stream {csid}: message of {length} bytes exceeds the limit of {max} bytes")]
    MessageTooLong { csid: u32, length: u32, max: u32 },
    #[error("more than {limit} chunk streams hold a partially received message")]
    TooManyPartialMessages { limit: usize },
    #[error("more than {limit} chunk streams in use")]
    TooManyChunkStreams { limit: usize },
    #[error("SetChunkSize to 0; the chunk size must be at least 1")]
    ChunkSizeZero,
    #[error("SetChunkSize to {size} exceeds the limit of {max}")]
    ChunkSizeTooLarge { size: u32, max: u32 },
    #[error("{what} message has {len} bytes of payload; it needs 4")]
    ControlMessageTruncated { what: &'static str, len: usize },
}

/// Limits of a [`ChunkReader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkReaderConfig {
    /// Largest chunk size a peer may set (default 16 MiB).
    pub max_chunk_size: u32,
    /// Largest message accepted (default 8 MiB: far above any real video frame).
    pub max_message_len: u32,
    /// How many chunk streams may hold a partially received message at once (default 64).
    pub max_partial_messages: usize,
    /// How many chunk streams with two- or three-byte ids (64 and up) may be in use; the 62
    /// one-byte ids are always available (default 1024).
    pub max_chunk_streams: usize,
    /// Keep only this many leading bytes of audio and video payloads (`header.length` still
    /// gives the full size). For clients that only classify media — a load generator with
    /// thousands of players — this skips copying what they would throw away. Default `None`.
    pub media_prefix: Option<u32>,
}

impl Default for ChunkReaderConfig {
    fn default() -> Self {
        ChunkReaderConfig {
            max_chunk_size: 16 << 20,
            max_message_len: 8 << 20,
            max_partial_messages: 64,
            max_chunk_streams: 1024,
            media_prefix: None,
        }
    }
}

/// What a chunk stream remembers between chunks.
#[derive(Debug, Default)]
struct ChunkStream {
    /// A header has been seen, so type 1/2/3 headers have something to refer to.
    started: bool,
    /// The last header's values; `timestamp` is the absolute timestamp of the current (or
    /// last) message.
    header: MessageHeader,
    /// The delta a type-3 header that starts a new message adds. After a type-0 header it is
    /// that header's timestamp (spec 5.3.1.2.4).
    timestamp_delta: u32,
    /// The extended timestamp field of the last header that had one, while it is in force.
    extended: Option<u32>,
    partial: Option<Partial>,
}

#[derive(Debug)]
struct Partial {
    header: MessageHeader,
    payload: BytesMut,
    /// Payload bytes received, kept or not (see `ChunkReaderConfig::media_prefix`).
    received: usize,
    /// Most payload bytes kept.
    keep: usize,
    /// Capacity taken from the preallocation budget.
    reserved: usize,
}

/// A chunk header decoded from bytes, not yet applied to the chunk stream's state.
#[derive(Debug, Clone, Copy)]
struct ParsedHeader {
    consumed: usize,
    fmt: u8,
    csid: u32,
    timestamp_field: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    extended: Option<u32>,
}

#[derive(Debug, Clone, Copy)]
enum ReadState {
    Header,
    /// Copying `remaining` more payload bytes of the current chunk of `csid`.
    Payload {
        csid: u32,
        remaining: usize,
    },
}

/// Incremental chunk stream demuxer. Feed it bytes in fragments of any size with
/// [`read_message`](Self::read_message); it returns messages as they complete.
#[derive(Debug)]
pub struct ChunkReader {
    config: ChunkReaderConfig,
    chunk_size: u32,
    direct: Vec<ChunkStream>,
    other: HashMap<u32, ChunkStream>,
    partial_count: usize,
    reserved_bytes: usize,
    state: ReadState,
    /// The start of a chunk header that was split across inputs (< MAX_CHUNK_HEADER_LEN bytes).
    stash: Vec<u8>,
    failed: Option<ChunkError>,
}

fn be24(bytes: &[u8]) -> u32 {
    u32::from(bytes[0]) << 16 | u32::from(bytes[1]) << 8 | u32::from(bytes[2])
}

fn be32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

impl Default for ChunkReader {
    fn default() -> Self {
        ChunkReader::new(ChunkReaderConfig::default())
    }
}

impl ChunkReader {
    pub fn new(config: ChunkReaderConfig) -> Self {
        ChunkReader {
            config,
            chunk_size: DEFAULT_CHUNK_SIZE,
            direct: Vec::new(),
            other: HashMap::new(),
            partial_count: 0,
            reserved_bytes: 0,
            state: ReadState::Header,
            stash: Vec::with_capacity(MAX_CHUNK_HEADER_LEN),
            failed: None,
        }
    }

    /// The chunk size incoming chunks are currently split at.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Sets the incoming chunk size, as a SetChunkSize message does (validated the same way).
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        if size == 0 {
            return Err(ChunkError::ChunkSizeZero);
        }
        if size > self.config.max_chunk_size {
            return Err(ChunkError::ChunkSizeTooLarge {
                size,
                max: self.config.max_chunk_size,
            });
        }
        self.chunk_size = size;
        Ok(())
    }

    /// How many chunk streams currently hold an incomplete message.
    pub fn partial_messages(&self) -> usize {
        self.partial_count
    }

    /// Consumes bytes from the front of `input` until a message completes (returned) or the
    /// input is exhausted (`Ok(None)`, everything consumed and kept). Call it in a loop until it
    /// returns `Ok(None)`.
    pub fn read_message(&mut self, input: &mut &[u8]) -> Result<Option<RtmpMessage>, ChunkError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let result = self.read_message_inner(input);
        if let Err(error) = &result {
            self.failed = Some(error.clone());
        }
        result
    }

    /// Reads every message `data` completes. Convenience for tests and tools.
    pub fn read_all(&mut self, mut data: &[u8]) -> Result<Vec<RtmpMessage>, ChunkError> {
        let mut messages = Vec::new();
        while let Some(message) = self.read_message(&mut data)? {
            messages.push(message);
        }
        Ok(messages)
    }

    fn read_message_inner(&mut self, input: &mut &[u8]) -> Result<Option<RtmpMessage>, ChunkError> {
        loop {
            match self.state {
                ReadState::Header => {
                    let Some(parsed) = self.take_header(input) else {
                        return Ok(None);
                    };
                    if let Some(message) = self.start_chunk(parsed, input)? {
                        return Ok(Some(message));
                    }
                }
                ReadState::Payload { csid, remaining } => {
                    if input.is_empty() {
                        return Ok(None);
                    }
                    let (bytes, rest) = input.split_at(remaining.min(input.len()));
                    *input = rest;
                    let chunk_done = bytes.len() == remaining;
                    let mut finished = None;
                    if let Some(stream) = self.stream_mut(csid) {
                        if let Some(partial) = stream.partial.as_mut() {
                            let room = partial.keep.saturating_sub(partial.payload.len());
                            partial
                                .payload
                                .extend_from_slice(&bytes[..room.min(bytes.len())]);
                            partial.received += bytes.len();
                            if chunk_done && partial.received >= partial.header.length as usize {
                                finished = stream.partial.take();
                            }
                        }
                    }
                    if !chunk_done {
                        self.state = ReadState::Payload {
                            csid,
                            remaining: remaining - bytes.len(),
                        };
                        return Ok(None);
                    }
                    self.state = ReadState::Header;
                    if let Some(partial) = finished {
                        return self.complete(csid, partial).map(Some);
                    }
                }
            }
        }
    }

    /// Parses the next chunk header, from the stash and/or `input`. `None` when more bytes are
    /// needed; those seen so far are then kept in the stash.
    fn take_header(&mut self, input: &mut &[u8]) -> Option<ParsedHeader> {
        if self.stash.is_empty() {
            if let Some(parsed) = self.parse_header(input) {
                *input = &input[parsed.consumed..];
                return Some(parsed);
            }
            self.stash.extend_from_slice(input);
            *input = &[];
            return None;
        }
        let before = self.stash.len();
        let took = (MAX_CHUNK_HEADER_LEN - before).min(input.len());
        self.stash.extend_from_slice(&input[..took]);
        let parsed = self.parse_header(&self.stash);
        match parsed {
            None => {
                *input = &input[took..];
                None
            }
            Some(parsed) => {
                // The stash alone was not enough, so the header ends inside what we just took;
                // give back what lies beyond it.
                let unused = self.stash.len() - parsed.consumed;
                *input = &input[took.saturating_sub(unused)..];
                self.stash.clear();
                Some(parsed)
            }
        }
    }

    fn stream(&self, csid: u32) -> Option<&ChunkStream> {
        if csid < DIRECT_STREAMS {
            self.direct.get(csid as usize)
        } else {
            self.other.get(&csid)
        }
    }

    fn stream_mut(&mut self, csid: u32) -> Option<&mut ChunkStream> {
        if csid < DIRECT_STREAMS {
            self.direct.get_mut(csid as usize)
        } else {
            self.other.get_mut(&csid)
        }
    }

    fn stream_or_insert(&mut self, csid: u32) -> Result<&mut ChunkStream, ChunkError> {
        if csid < DIRECT_STREAMS {
            let index = csid as usize;
            if self.direct.len() <= index {
                self.direct.resize_with(index + 1, ChunkStream::default);
            }
            return Ok(&mut self.direct[index]);
        }
        let limit = self.config.max_chunk_streams;
        if !self.other.contains_key(&csid) && self.other.len() >= limit {
            return Err(ChunkError::TooManyChunkStreams { limit });
        }
        Ok(self.other.entry(csid).or_default())
    }

    /// Decodes a chunk header from the start of `buf` without changing any state.
    fn parse_header(&self, buf: &[u8]) -> Option<ParsedHeader> {
        let first = *buf.first()?;
        let fmt = first >> 6;
        let (csid, mut pos) = match first & 0x3f {
            0 => (64 + u32::from(*buf.get(1)?), 2),
            1 => {
                let low = u32::from(*buf.get(1)?);
                let high = u32::from(*buf.get(2)?);
                (64 + low + 256 * high, 3)
            }
            id => (u32::from(id), 1),
        };
        let mut parsed = ParsedHeader {
            consumed: 0,
            fmt,
            csid,
            timestamp_field: 0,
            length: 0,
            type_id: 0,
            stream_id: 0,
            extended: None,
        };
        let header_len = [11, 7, 3, 0][usize::from(fmt)];
        let fields = buf.get(pos..pos + header_len)?;
        pos += header_len;
        if fmt <= 2 {
            parsed.timestamp_field = be24(&fields[0..3]);
        }
        if fmt <= 1 {
            parsed.length = be24(&fields[3..6]);
            parsed.type_id = fields[6];
        }
        if fmt == 0 {
            parsed.stream_id = u32::from_le_bytes([fields[7], fields[8], fields[9], fields[10]]);
        }
        if fmt <= 2 {
            if parsed.timestamp_field == EXTENDED_TIMESTAMP {
                parsed.extended = Some(be32(buf.get(pos..pos + 4)?));
                pos += 4;
            }
        } else if let Some(stream) = self.stream(csid) {
            if let (true, Some(in_force)) = (stream.started, stream.extended) {
                let field = be32(buf.get(pos..pos + 4)?);
                if stream.partial.is_none() {
                    // A type-3 header starting a new message always carries it.
                    parsed.extended = Some(field);
                    pos += 4;
                } else if field == in_force {
                    // A continuation chunk from an encoder that repeats it.
                    parsed.extended = Some(field);
                    pos += 4;
                }
                // Otherwise: an encoder that does not repeat it; those bytes are payload.
            }
        }
        parsed.consumed = pos;
        Some(parsed)
    }

    /// Applies a parsed header to its chunk stream and sets up the payload copy. Returns a
    /// message right away when it is empty or arrived whole within `input` (fast path).
    fn start_chunk(
        &mut self,
        parsed: ParsedHeader,
        input: &mut &[u8],
    ) -> Result<Option<RtmpMessage>, ChunkError> {
        let csid = parsed.csid;
        let stream = self.stream_or_insert(csid)?;
        let in_progress = stream
            .partial
            .as_ref()
            .map(|p| (p.header.length, p.received));
        match parsed.fmt {
            0 => {
                if let Some((length, received)) = in_progress {
                    return Err(ChunkError::Type0InsideMessage {
                        csid,
                        length,
                        received,
                    });
                }
                let timestamp = parsed.extended.unwrap_or(parsed.timestamp_field);
                stream.header = MessageHeader {
                    timestamp,
                    length: parsed.length,
                    type_id: parsed.type_id,
                    stream_id: parsed.stream_id,
                };
                stream.timestamp_delta = timestamp;
                stream.extended = parsed.extended;
            }
            1 | 2 => {
                // librtmp opens a fresh chunk stream with a type-1 ping; SRS tolerates it.
                if !stream.started && parsed.fmt == 2 {
                    return Err(ChunkError::StreamStartsWithoutHeader {
                        csid,
                        fmt: parsed.fmt,
                    });
                }
                if let Some((length, _)) = in_progress {
                    if parsed.fmt == 1 && parsed.length != length {
                        return Err(ChunkError::LengthChangedInsideMessage {
                            csid,
                            old: length,
                            new: parsed.length,
                        });
                    }
                    // A type 1/2 header on a continuation chunk: the message keeps the
                    // timestamp of its first chunk; only the extended field in force changes.
                    stream.extended = parsed.extended;
                } else {
                    let delta = parsed.extended.unwrap_or(parsed.timestamp_field);
                    stream.header.timestamp = stream.header.timestamp.wrapping_add(delta);
                    stream.timestamp_delta = delta;
                    stream.extended = parsed.extended;
                    if parsed.fmt == 1 {
                        stream.header.length = parsed.length;
                        stream.header.type_id = parsed.type_id;
                    }
                }
            }
            _ => {
                if !stream.started {
                    return Err(ChunkError::StreamStartsWithoutHeader {
                        csid,
                        fmt: parsed.fmt,
                    });
                }
                if in_progress.is_none() {
                    let delta = match parsed.extended {
                        Some(value) => {
                            stream.extended = Some(value);
                            stream.timestamp_delta = value;
                            value
                        }
                        None => stream.timestamp_delta,
                    };
                    stream.header.timestamp = stream.header.timestamp.wrapping_add(delta);
                }
            }
        }
        stream.started = true;
        let header = stream.header;
        let chunk_size = self.chunk_size as usize;

        let received = match in_progress {
            Some((_, received)) => received,
            None => {
                if header.length > self.config.max_message_len {
                    return Err(ChunkError::MessageTooLong {
                        csid,
                        length: header.length,
                        max: self.config.max_message_len,
                    });
                }
                let length = header.length as usize;
                let keep = match self.config.media_prefix {
                    Some(prefix) if matches!(header.type_id, TYPE_AUDIO | TYPE_VIDEO) => {
                        length.min(prefix as usize)
                    }
                    _ => length,
                };
                if length <= chunk_size && length <= input.len() {
                    // Whole message in one chunk, all here: one copy, no partial buffer.
                    let payload = Bytes::copy_from_slice(&input[..keep]);
                    *input = &input[length..];
                    let message = RtmpMessage {
                        csid,
                        header,
                        payload,
                    };
                    self.apply_control(&message)?;
                    return Ok(Some(message));
                }
                if self.partial_count >= self.config.max_partial_messages {
                    return Err(ChunkError::TooManyPartialMessages {
                        limit: self.config.max_partial_messages,
                    });
                }
                let reserve = if self.reserved_bytes + keep <= PREALLOCATION_BUDGET {
                    keep
                } else {
                    keep.min(SMALL_PREALLOCATION)
                };
                self.reserved_bytes += reserve;
                self.partial_count += 1;
                if let Some(stream) = self.stream_mut(csid) {
                    stream.partial = Some(Partial {
                        header,
                        payload: BytesMut::with_capacity(reserve),
                        received: 0,
                        keep,
                        reserved: reserve,
                    });
                }
                0
            }
        };
        let remaining = (header.length as usize)
            .saturating_sub(received)
            .min(chunk_size);
        self.state = ReadState::Payload { csid, remaining };
        Ok(None)
    }

    fn complete(&mut self, csid: u32, partial: Partial) -> Result<RtmpMessage, ChunkError> {
        self.partial_count -= 1;
        self.reserved_bytes -= partial.reserved;
        let message = RtmpMessage {
            csid,
            header: partial.header,
            payload: partial.payload.freeze(),
        };
        self.apply_control(&message)?;
        Ok(message)
    }

    /// SetChunkSize and Abort act on the chunk layer itself, before the next chunk is parsed.
    fn apply_control(&mut self, message: &RtmpMessage) -> Result<(), ChunkError> {
        let what = match message.header.type_id {
            SET_CHUNK_SIZE => "SetChunkSize",
            ABORT => "Abort",
            _ => return Ok(()),
        };
        if message.payload.len() < 4 {
            return Err(ChunkError::ControlMessageTruncated {
                what,
                len: message.payload.len(),
            });
        }
        let value = be32(&message.payload[..4]);
        if message.header.type_id == SET_CHUNK_SIZE {
            // The top bit must be zero; a "negative" size exceeds any limit we allow.
            return self.set_chunk_size(value);
        }
        if let Some(partial) = self
            .stream_mut(value)
            .and_then(|stream| stream.partial.take())
        {
            self.partial_count -= 1;
            self.reserved_bytes -= partial.reserved;
        }
        Ok(())
    }
}

/// Length of a basic header for `csid`.
pub fn basic_header_len(csid: u32) -> usize {
    if csid < 64 {
        1
    } else if csid < 320 {
        2
    } else {
        3
    }
}

/// Writes a basic header. `csid` must be in `2..=65599` (anything else is a caller bug).
fn write_basic_header<B: BufMut + ?Sized>(out: &mut B, fmt: u8, csid: u32) {
    debug_assert!(
        (MIN_CHUNK_STREAM_ID..=MAX_CHUNK_STREAM_ID).contains(&csid),
        "chunk stream id {csid} out of range"
    );
    let fmt_bits = fmt << 6;
    if csid < 64 {
        out.put_u8(fmt_bits | csid as u8);
    } else if csid < 320 {
        out.put_u8(fmt_bits);
        out.put_u8((csid - 64) as u8);
    } else {
        let id = csid - 64;
        out.put_u8(fmt_bits | 1);
        out.put_u8(id as u8);
        out.put_u8((id >> 8) as u8);
    }
}

fn put_u24<B: BufMut + ?Sized>(out: &mut B, value: u32) {
    out.put_u8((value >> 16) as u8);
    out.put_u8((value >> 8) as u8);
    out.put_u8(value as u8);
}

/// Length of the type-0 header [`write_fmt0_header`] writes.
pub fn fmt0_header_len(csid: u32, timestamp: u32) -> usize {
    basic_header_len(csid)
        + 11
        + if timestamp >= EXTENDED_TIMESTAMP {
            4
        } else {
            0
        }
}

/// Writes a type-0 chunk header: basic header, timestamp, `header.length`, type, stream id,
/// and the extended timestamp when `header.timestamp >= 0xFFFFFF`. The payload goes after it
/// via [`write_chunked_body`], with `extended_timestamp` = the same `Some(timestamp)` in that
/// case.
pub fn write_fmt0_header<B: BufMut + ?Sized>(out: &mut B, csid: u32, header: &MessageHeader) {
    write_basic_header(out, 0, csid);
    let extended = header.timestamp >= EXTENDED_TIMESTAMP;
    put_u24(
        out,
        if extended {
            EXTENDED_TIMESTAMP
        } else {
            header.timestamp
        },
    );
    put_u24(out, header.length);
    out.put_u8(header.type_id);
    out.put_u32_le(header.stream_id);
    if extended {
        out.put_u32(header.timestamp);
    }
}

/// Length of what [`write_chunked_body`] writes.
pub fn chunked_body_len(
    payload_len: usize,
    chunk_size: u32,
    csid: u32,
    extended_timestamp: Option<u32>,
) -> usize {
    let chunk_size = chunk_size.max(1) as usize;
    let continuation_chunks = payload_len.saturating_sub(1) / chunk_size;
    let per_chunk = basic_header_len(csid) + if extended_timestamp.is_some() { 4 } else { 0 };
    payload_len + continuation_chunks * per_chunk
}

/// Writes `payload` split at `chunk_size`, with a type-3 basic header (plus the 4-byte
/// `extended_timestamp` when `Some`) before every chunk after the first. Preceded by the
/// message's first chunk header, this is the message on the wire; the result depends only on
/// the payload, chunk size, csid and extended timestamp, so viewers that share those share it.
pub fn write_chunked_body<B: BufMut + ?Sized>(
    out: &mut B,
    payload: &[u8],
    chunk_size: u32,
    csid: u32,
    extended_timestamp: Option<u32>,
) {
    // A zero chunk size is a caller bug; writing one byte per chunk at least terminates.
    let chunk_size = chunk_size.max(1) as usize;
    let mut chunks = payload.chunks(chunk_size);
    if let Some(first) = chunks.next() {
        out.put_slice(first);
    }
    for chunk in chunks {
        write_basic_header(out, 3, csid);
        if let Some(timestamp) = extended_timestamp {
            out.put_u32(timestamp);
        }
        out.put_slice(chunk);
    }
}

/// What the writer remembers of the last message per chunk stream, for header compression.
#[derive(Debug, Clone, Copy)]
struct SentHeader {
    csid: u32,
    header: MessageHeader,
    /// The delta a following type-3 header would imply.
    timestamp_delta: u32,
}

/// Chunk stream muxer: splits messages at the outgoing chunk size. With header compression
/// off (the default, and what SRS does) every message starts with a type-0 header, so the
/// output equals [`write_fmt0_header`] + [`write_chunked_body`]; with it on, type 1/2/3
/// headers are used per chunk stream the way ffmpeg chooses them.
#[derive(Debug, Clone)]
pub struct ChunkWriter {
    chunk_size: u32,
    compress_headers: bool,
    sent: Vec<SentHeader>,
}

impl Default for ChunkWriter {
    fn default() -> Self {
        ChunkWriter::new(DEFAULT_CHUNK_SIZE)
    }
}

impl ChunkWriter {
    /// A writer that starts every message with a type-0 header.
    pub fn new(chunk_size: u32) -> Self {
        ChunkWriter {
            chunk_size: chunk_size.max(1),
            compress_headers: false,
            sent: Vec::new(),
        }
    }

    /// A writer that compresses headers (type 1/2/3) where the previous message on the same
    /// chunk stream allows.
    pub fn with_header_compression(chunk_size: u32) -> Self {
        ChunkWriter {
            compress_headers: true,
            ..ChunkWriter::new(chunk_size)
        }
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Changes the outgoing chunk size. Call it right after writing the SetChunkSize message
    /// that announces it (that message itself still goes out at the old size).
    pub fn set_chunk_size(&mut self, chunk_size: u32) {
        self.chunk_size = chunk_size.max(1);
    }

    /// Writes one message. Its length is `payload.len()` (`header.length` is ignored) and must
    /// fit in 24 bits; `csid` must be in `2..=65599`.
    pub fn write<B: BufMut + ?Sized>(
        &mut self,
        out: &mut B,
        csid: u32,
        header: &MessageHeader,
        payload: &[u8],
    ) {
        debug_assert!(payload.len() <= MAX_MESSAGE_LENGTH_FIELD as usize);
        let header = MessageHeader {
            length: payload.len() as u32,
            ..*header
        };
        let previous = self.sent.iter().position(|sent| sent.csid == csid);
        let (fmt, timestamp_field) = match previous.map(|index| self.sent[index]) {
            Some(sent)
                if self.compress_headers
                    && sent.header.stream_id == header.stream_id
                    && header.timestamp >= sent.header.timestamp =>
            {
                let delta = header.timestamp - sent.header.timestamp;
                if sent.header.length != header.length || sent.header.type_id != header.type_id {
                    (1, delta)
                } else if delta != sent.timestamp_delta {
                    (2, delta)
                } else {
                    (3, delta)
                }
            }
            _ => (0, header.timestamp),
        };
        let record = SentHeader {
            csid,
            header,
            timestamp_delta: timestamp_field,
        };
        match previous {
            Some(index) => self.sent[index] = record,
            None => self.sent.push(record),
        }

        let extended = (timestamp_field >= EXTENDED_TIMESTAMP).then_some(timestamp_field);
        if fmt == 0 {
            write_fmt0_header(out, csid, &header);
        } else {
            write_basic_header(out, fmt, csid);
            if fmt <= 2 {
                put_u24(out, timestamp_field.min(EXTENDED_TIMESTAMP));
            }
            if fmt == 1 {
                put_u24(out, header.length);
                out.put_u8(header.type_id);
            }
            if let Some(value) = extended {
                out.put_u32(value);
            }
        }
        write_chunked_body(out, payload, self.chunk_size, csid, extended);
    }

    /// Writes a message that came from a [`ChunkReader`] (or was built by hand).
    pub fn write_message<B: BufMut + ?Sized>(&mut self, out: &mut B, message: &RtmpMessage) {
        self.write(out, message.csid, &message.header, &message.payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(timestamp: u32, length: u32, type_id: u8, stream_id: u32) -> MessageHeader {
        MessageHeader {
            timestamp,
            length,
            type_id,
            stream_id,
        }
    }

    #[test]
    fn fmt0_one_byte_basic_header_known_bytes() {
        let mut out = Vec::new();
        write_fmt0_header(&mut out, 3, &header(0x0001_0203, 5, 20, 1));
        assert_eq!(
            out,
            [
                0x03, 0x01, 0x02, 0x03, 0x00, 0x00, 0x05, 0x14, 0x01, 0x00, 0x00, 0x00
            ]
        );
    }

    #[test]
    fn basic_header_two_and_three_bytes() {
        let mut out = Vec::new();
        write_basic_header(&mut out, 3, 64);
        write_basic_header(&mut out, 3, 319);
        write_basic_header(&mut out, 0, 320);
        write_basic_header(&mut out, 1, 65599);
        assert_eq!(
            out,
            [0xC0, 0, 0xC0, 255, 0x01, 0x00, 0x01, 0x41, 0xFF, 0xFF]
        );
    }

    #[test]
    fn extended_timestamp_fmt0_and_continuations() {
        let payload = vec![0xAB; 300];
        let mut out = Vec::new();
        ChunkWriter::new(128).write(&mut out, 4, &header(0x0100_0000, 0, 9, 1), &payload);
        // 1 + 11 + 4 header, then 2 continuations of 1 + 4.
        assert_eq!(out.len(), 16 + 300 + 2 * 5);
        assert_eq!(&out[1..4], &[0xFF, 0xFF, 0xFF]);
        assert_eq!(&out[12..16], &[0x01, 0, 0, 0]);
        assert_eq!(&out[16 + 128..16 + 128 + 5], &[0xC4, 0x01, 0, 0, 0]);
        let messages = ChunkReader::default().read_all(&out).unwrap();
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].header.timestamp, 0x0100_0000);
        assert_eq!(messages[0].payload, payload);
    }

    #[test]
    fn extended_timestamp_not_repeated_by_encoder() {
        // A type-0 chunk with an extended timestamp, then a type-3 continuation *without* the
        // repeated field (nginx-rtmp style).
        let mut wire = Vec::new();
        write_fmt0_header(&mut wire, 4, &header(0x0200_0000, 130, 9, 1));
        wire.extend_from_slice(&[7u8; 128]);
        wire.push(0xC4);
        wire.extend_from_slice(&[9, 9]);
        // The reader needs 4 bytes after the basic header to tell; the next message gives them.
        write_fmt0_header(&mut wire, 3, &header(0, 1, 20, 0));
        wire.push(5);
        let messages = ChunkReader::default().read_all(&wire).unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(&messages[0].payload[126..], &[7, 7, 9, 9]);
    }

    #[test]
    fn type3_new_message_after_type0_adds_its_timestamp() {
        // SRS's FMLE example: type 0 at 26 ms, then a bare 0xC4 means another message 26 ms on.
        let mut wire = Vec::new();
        write_fmt0_header(&mut wire, 4, &header(26, 2, 8, 1));
        wire.extend_from_slice(&[1, 2]);
        wire.extend_from_slice(&[0xC4, 3, 4]);
        let messages = ChunkReader::default().read_all(&wire).unwrap();
        assert_eq!(messages[1].header, header(52, 2, 8, 1));
        assert_eq!(messages[1].payload, [3, 4][..]);
    }

    #[test]
    fn type1_and_type2_deltas_accumulate_and_wrap() {
        let mut wire = Vec::new();
        write_fmt0_header(&mut wire, 6, &header(0xFFFF_FFF0, 1, 9, 1));
        wire.push(0);
        // type 1: delta 0x20, length 2, type 9.
        wire.extend_from_slice(&[0x46, 0, 0, 0x20, 0, 0, 2, 9, 1, 2]);
        // type 2: delta 5.
        wire.extend_from_slice(&[0x86, 0, 0, 5, 3, 4]);
        let messages = ChunkReader::default().read_all(&wire).unwrap();
        assert_eq!(messages[1].header.timestamp, 0x10);
        assert_eq!(messages[2].header, header(0x15, 2, 9, 1));
    }

    #[test]
    fn compressed_writer_round_trips() {
        let mut writer = ChunkWriter::with_header_compression(128);
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        for (i, ts) in [
            0u32,
            40,
            80,
            120,
            100,
            0x0100_0000,
            0x0200_0000,
            0x0300_0000,
        ]
        .into_iter()
        .enumerate()
        {
            let payload = vec![i as u8; 50 + (i % 3) * 100];
            let h = header(ts, 0, 9, 1);
            writer.write(&mut wire, 6, &h, &payload);
            expected.push((ts, payload));
        }
        let messages = ChunkReader::default().read_all(&wire).unwrap();
        let got: Vec<_> = messages
            .iter()
            .map(|m| (m.header.timestamp, m.payload.to_vec()))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn set_chunk_size_applies_to_next_chunk() {
        let mut wire = Vec::new();
        let mut writer = ChunkWriter::new(128);
        writer.write(&mut wire, 2, &header(0, 0, 1, 0), &4096u32.to_be_bytes());
        writer.set_chunk_size(4096);
        writer.write(&mut wire, 6, &header(0, 0, 9, 1), &[5u8; 4000]);
        let mut reader = ChunkReader::default();
        let messages = reader.read_all(&wire).unwrap();
        assert_eq!(reader.chunk_size(), 4096);
        assert_eq!(messages[1].payload.len(), 4000);
    }

    #[test]
    fn abort_discards_partial_message() {
        let mut wire = Vec::new();
        write_fmt0_header(&mut wire, 6, &header(0, 1000, 9, 1));
        wire.extend_from_slice(&[0u8; 128]);
        let mut reader = ChunkReader::default();
        assert!(reader.read_all(&wire).unwrap().is_empty());
        assert_eq!(reader.partial_messages(), 1);
        let mut abort = Vec::new();
        ChunkWriter::new(128).write(&mut abort, 2, &header(0, 0, 2, 0), &6u32.to_be_bytes());
        reader.read_all(&abort).unwrap();
        assert_eq!(reader.partial_messages(), 0);
    }

    #[test]
    fn limits() {
        let mut reader = ChunkReader::default();
        let mut wire = Vec::new();
        ChunkWriter::new(128).write(&mut wire, 2, &header(0, 0, 1, 0), &0u32.to_be_bytes());
        assert_eq!(reader.read_all(&wire), Err(ChunkError::ChunkSizeZero));
        assert_eq!(
            reader.read_all(&[]),
            Err(ChunkError::ChunkSizeZero),
            "stays failed"
        );

        let mut reader = ChunkReader::default();
        let mut wire = Vec::new();
        write_fmt0_header(&mut wire, 6, &header(0, 9 << 20, 9, 1));
        assert!(matches!(
            reader.read_all(&wire),
            Err(ChunkError::MessageTooLong { .. })
        ));
    }
}
