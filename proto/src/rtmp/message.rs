//! What RTMP message payloads mean: protocol control (types 1–6), user control events,
//! AMF0/AMF3 commands (20/17) and data (18/15), audio (8), video (9) and aggregates (22).
//!
//! [`Message::decode`] is total: a payload too short for its type, or a command whose AMF0 does
//! not parse, is a [`MessageError`]. Like SRS it tolerates trailing bytes after the fields a
//! control message needs. [`Message::encode`] writes the payload back; `decode(encode(m)) == m`.
//!
//! AMF3 commands and data are carried as a leading format byte (0 = AMF0) followed by AMF0
//! values, which is all real clients send; we strip that byte on decode and write it on encode.

use bytes::{BufMut, Bytes};
use thiserror::Error;

use super::chunk::MessageHeader;
use crate::amf0::{self, Amf0Error, Amf0Value};

/// Message type ids.
pub mod type_id {
    pub const SET_CHUNK_SIZE: u8 = 1;
    pub const ABORT: u8 = 2;
    pub const ACKNOWLEDGEMENT: u8 = 3;
    pub const USER_CONTROL: u8 = 4;
    pub const WINDOW_ACK_SIZE: u8 = 5;
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const AMF3_DATA: u8 = 15;
    pub const AMF3_SHARED_OBJECT: u8 = 16;
    pub const AMF3_COMMAND: u8 = 17;
    pub const AMF0_DATA: u8 = 18;
    pub const AMF0_SHARED_OBJECT: u8 = 19;
    pub const AMF0_COMMAND: u8 = 20;
    pub const AGGREGATE: u8 = 22;
}

/// Set Peer Bandwidth limit types.
pub mod limit_type {
    pub const HARD: u8 = 0;
    pub const SOFT: u8 = 1;
    pub const DYNAMIC: u8 = 2;
}

/// User control event type numbers.
pub mod event_type {
    pub const STREAM_BEGIN: u16 = 0;
    pub const STREAM_EOF: u16 = 1;
    pub const STREAM_DRY: u16 = 2;
    pub const SET_BUFFER_LENGTH: u16 = 3;
    pub const STREAM_IS_RECORDED: u16 = 4;
    pub const PING_REQUEST: u16 = 6;
    pub const PING_RESPONSE: u16 = 7;
}

/// Why a message payload does not mean what its type says.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum MessageError {
    #[error("{what} message has {len} bytes of payload; it needs at least {need}")]
    Truncated {
        what: &'static str,
        len: usize,
        need: usize,
    },
    #[error("{what}: {source}")]
    Amf {
        what: &'static str,
        #[source]
        source: Amf0Error,
    },
    #[error("command message does not start with a command name string")]
    MissingCommandName,
    #[error("command '{name}' has no transaction id number after its name")]
    MissingTransactionId { name: String },
    #[error("aggregate message: sub-message at byte {offset} runs past the end of the message")]
    AggregateTruncated { offset: usize },
}

/// A user control message (type 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserControlEvent {
    StreamBegin {
        stream_id: u32,
    },
    StreamEof {
        stream_id: u32,
    },
    StreamDry {
        stream_id: u32,
    },
    SetBufferLength {
        stream_id: u32,
        buffer_ms: u32,
    },
    StreamIsRecorded {
        stream_id: u32,
    },
    PingRequest {
        timestamp: u32,
    },
    PingResponse {
        timestamp: u32,
    },
    /// An event we do not interpret (SWF verification, FMS buffer events, ...): raw data.
    Other {
        event_type: u16,
        data: Bytes,
    },
}

impl UserControlEvent {
    pub fn event_type(&self) -> u16 {
        use event_type::*;
        match self {
            UserControlEvent::StreamBegin { .. } => STREAM_BEGIN,
            UserControlEvent::StreamEof { .. } => STREAM_EOF,
            UserControlEvent::StreamDry { .. } => STREAM_DRY,
            UserControlEvent::SetBufferLength { .. } => SET_BUFFER_LENGTH,
            UserControlEvent::StreamIsRecorded { .. } => STREAM_IS_RECORDED,
            UserControlEvent::PingRequest { .. } => PING_REQUEST,
            UserControlEvent::PingResponse { .. } => PING_RESPONSE,
            UserControlEvent::Other { event_type, .. } => *event_type,
        }
    }

    pub fn decode(payload: &Bytes) -> Result<UserControlEvent, MessageError> {
        use event_type::*;
        let truncated = |need| MessageError::Truncated {
            what: "user control",
            len: payload.len(),
            need,
        };
        if payload.len() < 2 {
            return Err(truncated(2));
        }
        let event = u16::from_be_bytes([payload[0], payload[1]]);
        let word = |at: usize| {
            payload
                .get(at..at + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| truncated(at + 4))
        };
        Ok(match event {
            STREAM_BEGIN => UserControlEvent::StreamBegin {
                stream_id: word(2)?,
            },
            STREAM_EOF => UserControlEvent::StreamEof {
                stream_id: word(2)?,
            },
            STREAM_DRY => UserControlEvent::StreamDry {
                stream_id: word(2)?,
            },
            SET_BUFFER_LENGTH => UserControlEvent::SetBufferLength {
                stream_id: word(2)?,
                buffer_ms: word(6)?,
            },
            STREAM_IS_RECORDED => UserControlEvent::StreamIsRecorded {
                stream_id: word(2)?,
            },
            PING_REQUEST => UserControlEvent::PingRequest {
                timestamp: word(2)?,
            },
            PING_RESPONSE => UserControlEvent::PingResponse {
                timestamp: word(2)?,
            },
            event_type => UserControlEvent::Other {
                event_type,
                data: payload.slice(2..),
            },
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u16(self.event_type());
        match self {
            UserControlEvent::StreamBegin { stream_id }
            | UserControlEvent::StreamEof { stream_id }
            | UserControlEvent::StreamDry { stream_id }
            | UserControlEvent::StreamIsRecorded { stream_id } => out.put_u32(*stream_id),
            UserControlEvent::SetBufferLength {
                stream_id,
                buffer_ms,
            } => {
                out.put_u32(*stream_id);
                out.put_u32(*buffer_ms);
            }
            UserControlEvent::PingRequest { timestamp }
            | UserControlEvent::PingResponse { timestamp } => out.put_u32(*timestamp),
            UserControlEvent::Other { data, .. } => out.put_slice(data),
        }
    }
}

/// An AMF0 command: name, transaction id, command object, then arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub name: String,
    pub transaction_id: f64,
    /// `Null` for most commands; the connection properties for `connect`. Also `Null` when the
    /// sender stopped after the transaction id.
    pub command_object: Amf0Value,
    pub arguments: Vec<Amf0Value>,
}

impl Command {
    pub fn new(
        name: impl Into<String>,
        transaction_id: f64,
        command_object: Amf0Value,
        arguments: Vec<Amf0Value>,
    ) -> Self {
        Command {
            name: name.into(),
            transaction_id,
            command_object,
            arguments,
        }
    }

    /// Decodes an AMF0 command body (for type 17, after the format byte).
    pub fn decode(body: &[u8]) -> Result<Command, MessageError> {
        let values = amf0::decode_all(body).map_err(|source| MessageError::Amf {
            what: "command message",
            source,
        })?;
        let mut values = values.into_iter();
        let name = match values.next() {
            Some(Amf0Value::String(name) | Amf0Value::LongString(name)) => name,
            _ => return Err(MessageError::MissingCommandName),
        };
        let transaction_id = match values.next() {
            Some(Amf0Value::Number(id)) => id,
            _ => return Err(MessageError::MissingTransactionId { name }),
        };
        let command_object = values.next().unwrap_or(Amf0Value::Null);
        Ok(Command {
            name,
            transaction_id,
            command_object,
            arguments: values.collect(),
        })
    }

    /// Appends the AMF0 body.
    pub fn encode(&self, out: &mut Vec<u8>) {
        Amf0Value::String(self.name.clone()).encode(out);
        Amf0Value::Number(self.transaction_id).encode(out);
        self.command_object.encode(out);
        amf0::encode_all(&self.arguments, out);
    }

    /// The first argument as a string (stream names of publish, play, releaseStream, ...).
    pub fn string_argument(&self, index: usize) -> Option<&str> {
        self.arguments.get(index).and_then(Amf0Value::as_str)
    }

    /// An argument as a number.
    pub fn number_argument(&self, index: usize) -> Option<f64> {
        self.arguments.get(index).and_then(Amf0Value::as_f64)
    }
}

/// One decoded message payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    SetChunkSize(u32),
    Abort {
        csid: u32,
    },
    Acknowledgement {
        sequence_number: u32,
    },
    UserControl(UserControlEvent),
    WindowAckSize(u32),
    SetPeerBandwidth {
        window: u32,
        limit_type: u8,
    },
    Audio(Bytes),
    Video(Bytes),
    /// A data message (18, or 15 when `amf3`); `payload` is the AMF0 body, not decoded here
    /// (the hub forwards it as is and `flv::metadata_body` recognises `@setDataFrame`).
    Data {
        payload: Bytes,
        amf3: bool,
    },
    /// A command message (20, or 17 when `amf3`).
    Command {
        command: Command,
        amf3: bool,
    },
    /// An aggregate (22); split it with [`split_aggregate`].
    Aggregate(Bytes),
    /// Shared object messages and unknown types, kept raw.
    Other {
        type_id: u8,
        payload: Bytes,
    },
}

fn word_at(payload: &[u8], what: &'static str, need: usize) -> Result<u32, MessageError> {
    if payload.len() < need {
        return Err(MessageError::Truncated {
            what,
            len: payload.len(),
            need,
        });
    }
    Ok(u32::from_be_bytes([
        payload[0], payload[1], payload[2], payload[3],
    ]))
}

impl Message {
    /// Interprets a payload of the given message type.
    pub fn decode(type_id: u8, payload: &Bytes) -> Result<Message, MessageError> {
        use self::type_id::*;
        Ok(match type_id {
            SET_CHUNK_SIZE => Message::SetChunkSize(word_at(payload, "SetChunkSize", 4)?),
            ABORT => Message::Abort {
                csid: word_at(payload, "Abort", 4)?,
            },
            ACKNOWLEDGEMENT => Message::Acknowledgement {
                sequence_number: word_at(payload, "Acknowledgement", 4)?,
            },
            USER_CONTROL => Message::UserControl(UserControlEvent::decode(payload)?),
            WINDOW_ACK_SIZE => Message::WindowAckSize(word_at(payload, "WindowAckSize", 4)?),
            SET_PEER_BANDWIDTH => Message::SetPeerBandwidth {
                window: word_at(payload, "SetPeerBandwidth", 5)?,
                limit_type: payload[4],
            },
            AUDIO => Message::Audio(payload.clone()),
            VIDEO => Message::Video(payload.clone()),
            AMF0_DATA => Message::Data {
                payload: payload.clone(),
                amf3: false,
            },
            AMF3_DATA => Message::Data {
                // The format byte is optional in the wild; strip it only when present.
                payload: if payload.first() == Some(&0) {
                    payload.slice(1..)
                } else {
                    payload.clone()
                },
                amf3: true,
            },
            AMF0_COMMAND => Message::Command {
                command: Command::decode(payload)?,
                amf3: false,
            },
            AMF3_COMMAND => {
                // SRS skips the format byte unconditionally.
                let body = payload.get(1..).unwrap_or_default();
                Message::Command {
                    command: Command::decode(body)?,
                    amf3: true,
                }
            }
            AGGREGATE => Message::Aggregate(payload.clone()),
            type_id => Message::Other {
                type_id,
                payload: payload.clone(),
            },
        })
    }

    pub fn type_id(&self) -> u8 {
        use self::type_id::*;
        match self {
            Message::SetChunkSize(_) => SET_CHUNK_SIZE,
            Message::Abort { .. } => ABORT,
            Message::Acknowledgement { .. } => ACKNOWLEDGEMENT,
            Message::UserControl(_) => USER_CONTROL,
            Message::WindowAckSize(_) => WINDOW_ACK_SIZE,
            Message::SetPeerBandwidth { .. } => SET_PEER_BANDWIDTH,
            Message::Audio(_) => AUDIO,
            Message::Video(_) => VIDEO,
            Message::Data { amf3: false, .. } => AMF0_DATA,
            Message::Data { amf3: true, .. } => AMF3_DATA,
            Message::Command { amf3: false, .. } => AMF0_COMMAND,
            Message::Command { amf3: true, .. } => AMF3_COMMAND,
            Message::Aggregate(_) => AGGREGATE,
            Message::Other { type_id, .. } => *type_id,
        }
    }

    /// Appends the payload.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Message::SetChunkSize(value)
            | Message::Abort { csid: value }
            | Message::Acknowledgement {
                sequence_number: value,
            }
            | Message::WindowAckSize(value) => out.put_u32(*value),
            Message::UserControl(event) => event.encode(out),
            Message::SetPeerBandwidth { window, limit_type } => {
                out.put_u32(*window);
                out.put_u8(*limit_type);
            }
            Message::Audio(payload)
            | Message::Video(payload)
            | Message::Aggregate(payload)
            | Message::Other { payload, .. } => out.put_slice(payload),
            Message::Data { payload, amf3 } => {
                if *amf3 {
                    out.put_u8(0);
                }
                out.put_slice(payload);
            }
            Message::Command { command, amf3 } => {
                if *amf3 {
                    out.put_u8(0);
                }
                command.encode(out);
            }
        }
    }

    /// The payload as a new buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::new();
        self.encode(&mut out);
        Bytes::from(out)
    }
}

/// One message carried inside an aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregatePart {
    pub type_id: u8,
    /// Absolute timestamp, rebased onto the aggregate's own timestamp.
    pub timestamp: u32,
    pub payload: Bytes,
}

/// Splits an aggregate message (FLV-tag-like records: type, 24-bit size, 24+8-bit timestamp,
/// 24-bit stream id, data, 32-bit back pointer) into its parts. Like SRS and ffmpeg, part
/// timestamps are rebased so that the first part has the aggregate's timestamp. Payloads are
/// slices of `payload`, not copies.
pub fn split_aggregate(
    header: &MessageHeader,
    payload: &Bytes,
) -> Result<Vec<AggregatePart>, MessageError> {
    aggregate_parts(header, payload).collect()
}

/// The parts of an aggregate one at a time, as [`split_aggregate`] without its `Vec`: complete
/// parts come before the error of a truncated one, after which the iterator ends.
pub fn aggregate_parts<'a>(header: &MessageHeader, payload: &'a Bytes) -> AggregateParts<'a> {
    AggregateParts {
        timestamp: header.timestamp,
        payload,
        offset: 0,
        first_timestamp: None,
    }
}

/// Iterator returned by [`aggregate_parts`].
pub struct AggregateParts<'a> {
    /// The aggregate's own timestamp, which the first part gets.
    timestamp: u32,
    payload: &'a Bytes,
    offset: usize,
    first_timestamp: Option<u32>,
}

impl Iterator for AggregateParts<'_> {
    type Item = Result<AggregatePart, MessageError>;

    fn next(&mut self) -> Option<Self::Item> {
        const PART_HEADER: usize = 11;
        const BACK_POINTER: usize = 4;
        let offset = self.offset;
        if offset >= self.payload.len() {
            return None;
        }
        let truncated = MessageError::AggregateTruncated { offset };
        // After an error there is nothing more to read.
        self.offset = self.payload.len();
        let record = match self.payload.get(offset..offset + PART_HEADER) {
            Some(record) => record,
            None => return Some(Err(truncated)),
        };
        let size =
            (usize::from(record[1]) << 16) | (usize::from(record[2]) << 8) | usize::from(record[3]);
        let timestamp = (u32::from(record[7]) << 24)
            | (u32::from(record[4]) << 16)
            | (u32::from(record[5]) << 8)
            | u32::from(record[6]);
        let data_start = offset + PART_HEADER;
        let data_end = data_start + size;
        if data_end + BACK_POINTER > self.payload.len() {
            return Some(Err(truncated));
        }
        let base = *self.first_timestamp.get_or_insert(timestamp);
        self.offset = data_end + BACK_POINTER;
        Some(Ok(AggregatePart {
            type_id: record[0],
            timestamp: self.timestamp.wrapping_add(timestamp.wrapping_sub(base)),
            payload: self.payload.slice(data_start..data_end),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_control_known_bytes() {
        let ping = Bytes::from_static(&[0, 6, 0, 0, 0x0d, 0x0f]);
        assert_eq!(
            Message::decode(type_id::USER_CONTROL, &ping).unwrap(),
            Message::UserControl(UserControlEvent::PingRequest { timestamp: 0x0d0f })
        );
        let buffer = Message::UserControl(UserControlEvent::SetBufferLength {
            stream_id: 1,
            buffer_ms: 3000,
        });
        assert_eq!(buffer.to_bytes()[..], [0, 3, 0, 0, 0, 1, 0, 0, 0x0b, 0xb8]);
    }

    #[test]
    fn truncated_control_messages_error() {
        for type_id in [1u8, 2, 3, 4, 5, 6] {
            let err = Message::decode(type_id, &Bytes::from_static(&[0, 0, 0])).unwrap_err();
            assert!(matches!(err, MessageError::Truncated { .. }), "{err}");
        }
    }

    #[test]
    fn amf3_command_strips_format_byte() {
        let mut body = vec![0u8];
        Command::new("play", 4.0, Amf0Value::Null, vec!["live".into()]).encode(&mut body);
        let decoded = Message::decode(type_id::AMF3_COMMAND, &Bytes::from(body)).unwrap();
        let Message::Command { command, amf3 } = decoded else {
            panic!("not a command");
        };
        assert!(amf3);
        assert_eq!(command.name, "play");
        assert_eq!(command.string_argument(0), Some("live"));
    }

    #[test]
    fn aggregate_rebases_timestamps() {
        let mut payload = Vec::new();
        for (type_id, ts, data) in [(9u8, 1000u32, &b"abc"[..]), (8, 1040, &b"de"[..])] {
            payload.push(type_id);
            payload.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
            payload.extend_from_slice(&ts.to_be_bytes()[1..]);
            payload.push((ts >> 24) as u8);
            payload.extend_from_slice(&[0, 0, 0]);
            payload.extend_from_slice(data);
            payload.extend_from_slice(&(11 + data.len() as u32).to_be_bytes());
        }
        let header = MessageHeader {
            timestamp: 5000,
            ..Default::default()
        };
        let parts = split_aggregate(&header, &Bytes::from(payload.clone())).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].type_id, parts[0].timestamp), (9, 5000));
        assert_eq!((parts[1].type_id, parts[1].timestamp), (8, 5040));
        assert_eq!(parts[1].payload, &b"de"[..]);
        payload.pop();
        assert!(split_aggregate(&header, &Bytes::from(payload)).is_err());
    }
}
