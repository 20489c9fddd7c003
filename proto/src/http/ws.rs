//! WebSocket (RFC 6455) for WS-FLV: the opening handshake, the server's frame encoder and a
//! decoder for what clients send.
//!
//! A WS-FLV viewer receives the same FLV tags as an HTTP-FLV viewer, each in a binary frame.
//! Server frames are unmasked, so a frame is a 2–10 byte header ([`frame_header`]) in front of
//! the payload: the payload can be the hub's shared buffer and only the header is per-viewer.
//!
//! Clients send little (ping, pong, close), but the decoder is complete and strict: masking is
//! required (or forbidden, for a client-side decoder), reserved bits and unknown opcodes are
//! refused, control frames are at most 125 bytes and never fragmented, fragmented messages
//! are reassembled up to [`WsConfig::max_message_size`], text must be UTF-8 and close codes
//! valid. Each error carries the close code to answer with ([`WsError::close_code`]).

use bytes::BufMut;
use sha1::{Digest, Sha1};
use thiserror::Error;

use super::Version;
use super::base64;
use super::request::RequestHead;

/// The GUID appended to the client's key (RFC 6455 §1.3).
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// The largest payload of a control frame.
pub const MAX_CONTROL_PAYLOAD: usize = 125;
/// The largest frame header: 2 bytes, 8-byte length, 4-byte mask.
pub const MAX_HEADER_LEN: usize = 14;

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64(SHA-1(key + GUID)).
pub fn accept_key(key: &str) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key.as_bytes());
    sha1.update(GUID.as_bytes());
    base64::encode(&sha1.finalize())
}

/// Why an upgrade request cannot be accepted. [`WsHandshakeError::status`] is the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum WsHandshakeError {
    #[error("WebSocket upgrade with a method other than GET")]
    NotGet,
    #[error("WebSocket upgrade over HTTP/1.0")]
    NotHttp11,
    #[error("Upgrade: websocket without Connection: Upgrade")]
    MissingConnectionUpgrade,
    #[error("no Sec-WebSocket-Key")]
    MissingKey,
    #[error("Sec-WebSocket-Key is not 16 bytes in base64")]
    BadKey,
    #[error("Sec-WebSocket-Version is not 13")]
    UnsupportedVersion,
}

impl WsHandshakeError {
    /// 426 Upgrade Required (with `Sec-WebSocket-Version: 13`) for a version we do not speak,
    /// 400 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            WsHandshakeError::UnsupportedVersion => 426,
            _ => 400,
        }
    }
}

/// A valid WebSocket upgrade request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsUpgrade<'a> {
    pub key: &'a str,
    /// `Sec-WebSocket-Protocol`, as sent (a comma-separated list).
    pub protocols: Option<&'a str>,
    pub origin: Option<&'a str>,
}

impl<'a> WsUpgrade<'a> {
    /// `Ok(None)` when the request does not ask for WebSocket (`Upgrade: websocket` absent);
    /// an error when it asks but the handshake is invalid.
    pub fn from_request(head: &RequestHead<'a>) -> Result<Option<WsUpgrade<'a>>, WsHandshakeError> {
        if !head.has_token("upgrade", "websocket") {
            return Ok(None);
        }
        if head.method != "GET" {
            return Err(WsHandshakeError::NotGet);
        }
        if head.version != Version::Http11 {
            return Err(WsHandshakeError::NotHttp11);
        }
        if !head.has_token("connection", "upgrade") {
            return Err(WsHandshakeError::MissingConnectionUpgrade);
        }
        let key = head
            .header_str("sec-websocket-key")
            .ok_or(WsHandshakeError::MissingKey)?;
        if base64::decode(key.as_bytes()).is_none_or(|decoded| decoded.len() != 16) {
            return Err(WsHandshakeError::BadKey);
        }
        if head.header("sec-websocket-version") != Some(b"13") {
            return Err(WsHandshakeError::UnsupportedVersion);
        }
        Ok(Some(WsUpgrade {
            key,
            protocols: head.header_str("sec-websocket-protocol"),
            origin: head.header_str("origin"),
        }))
    }

    /// Appends the `101 Switching Protocols` response, choosing `protocol` if given (it must be
    /// one the client offered; CR/LF in it are dropped).
    pub fn write_response<B: BufMut + ?Sized>(&self, out: &mut B, protocol: Option<&str>) {
        out.put_slice(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: ",
        );
        out.put_slice(accept_key(self.key).as_bytes());
        out.put_slice(b"\r\n");
        if let Some(protocol) = protocol {
            out.put_slice(b"Sec-WebSocket-Protocol: ");
            for byte in protocol.bytes().filter(|b| !matches!(b, b'\r' | b'\n' | 0)) {
                out.put_u8(byte);
            }
            out.put_slice(b"\r\n");
        }
        out.put_slice(b"\r\n");
    }
}

/// Frame opcodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xa,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xa => Opcode::Pong,
            _ => return None,
        })
    }

    pub fn is_control(self) -> bool {
        (self as u8) & 0x08 != 0
    }
}

/// A frame header, at most [`MAX_HEADER_LEN`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    bytes: [u8; MAX_HEADER_LEN],
    len: usize,
}

impl FrameHeader {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

fn build_header(
    opcode: Opcode,
    fin: bool,
    payload_len: usize,
    mask: Option<[u8; 4]>,
) -> FrameHeader {
    let mut bytes = [0u8; MAX_HEADER_LEN];
    bytes[0] = (u8::from(fin) << 7) | opcode as u8;
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut len = 2;
    if payload_len < 126 {
        bytes[1] = mask_bit | payload_len as u8;
    } else if let Ok(short) = u16::try_from(payload_len) {
        bytes[1] = mask_bit | 126;
        bytes[2..4].copy_from_slice(&short.to_be_bytes());
        len = 4;
    } else {
        bytes[1] = mask_bit | 127;
        bytes[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
        len = 10;
    }
    if let Some(mask) = mask {
        bytes[len..len + 4].copy_from_slice(&mask);
        len += 4;
    }
    FrameHeader { bytes, len }
}

/// The header of an unmasked (server) frame with `payload_len` bytes of payload.
pub fn frame_header(opcode: Opcode, fin: bool, payload_len: usize) -> FrameHeader {
    build_header(opcode, fin, payload_len, None)
}

/// The header of a masked (client) frame; the payload must be masked with
/// [`apply_mask`] before it is sent.
pub fn masked_frame_header(
    opcode: Opcode,
    fin: bool,
    payload_len: usize,
    mask: [u8; 4],
) -> FrameHeader {
    build_header(opcode, fin, payload_len, Some(mask))
}

/// XORs `data` with the masking key; `offset` is the position of `data[0]` in the payload.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    for (index, byte) in data.iter_mut().enumerate() {
        *byte ^= mask[(offset + index) % 4];
    }
}

/// Appends a whole unmasked frame. Control frames' payloads are cut at 125 bytes.
pub fn write_frame<B: BufMut + ?Sized>(out: &mut B, opcode: Opcode, payload: &[u8]) {
    let payload = if opcode.is_control() {
        &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)]
    } else {
        payload
    };
    out.put_slice(frame_header(opcode, true, payload.len()).as_bytes());
    out.put_slice(payload);
}

/// Appends a close frame: empty, or a status code and a reason (cut to fit 125 bytes at a
/// character boundary).
pub fn write_close<B: BufMut + ?Sized>(out: &mut B, close: Option<(u16, &str)>) {
    let Some((code, reason)) = close else {
        write_frame(out, Opcode::Close, &[]);
        return;
    };
    let mut cut = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let reason = &reason.as_bytes()[..cut];
    out.put_slice(frame_header(Opcode::Close, true, 2 + reason.len()).as_bytes());
    out.put_u16(code);
    out.put_slice(reason);
}

/// Decoder settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsConfig {
    /// Largest message (all fragments together) accepted.
    pub max_message_size: usize,
    /// true on the server (client frames must be masked), false on a client (server frames
    /// must not be).
    pub expect_masked: bool,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            max_message_size: 1024 * 1024,
            expect_masked: true,
        }
    }
}

/// The status code and reason of a close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    pub code: u16,
    pub reason: String,
}

/// A complete message or control frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// `None` for a close frame without a status code.
    Close(Option<CloseFrame>),
}

/// What one [`FrameDecoder::decode`] call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeStep {
    /// The input does not hold a whole frame yet.
    NeedMore,
    /// A frame of `len` bytes was consumed; it completed `message`, or was a fragment.
    Consumed {
        len: usize,
        message: Option<Message>,
    },
}

/// Why the peer's frames are invalid; the connection should be closed with
/// [`close_code`](WsError::close_code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum WsError {
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    #[error("unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    #[error("client frame is not masked")]
    Unmasked,
    #[error("server frame is masked")]
    Masked,
    #[error("control frame with more than 125 bytes of payload")]
    ControlTooLong,
    #[error("fragmented control frame")]
    FragmentedControl,
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    #[error("new data frame while a fragmented message is open")]
    ExpectedContinuation,
    #[error("64-bit payload length with the most significant bit set")]
    BadLength,
    #[error("message larger than {0} bytes")]
    MessageTooBig(usize),
    #[error("text or close reason is not UTF-8")]
    InvalidUtf8,
    #[error("close frame with a 1-byte payload or an invalid status code")]
    BadClose,
}

impl WsError {
    /// The close status to send: 1009 for oversized messages, 1007 for bad UTF-8, 1002
    /// (protocol error) for the rest.
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::MessageTooBig(_) => 1009,
            WsError::InvalidUtf8 => 1007,
            _ => 1002,
        }
    }
}

/// Close codes a peer may send (RFC 6455 §7.4 and the IANA registry): not 1004–1006, 1015,
/// or anything below 1000 or in 1016–2999.
fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Decodes frames from a byte stream, reassembling fragmented messages.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    config: WsConfig,
    /// The opcode of an open fragmented message, and its payload so far.
    fragmented: Option<Opcode>,
    fragments: Vec<u8>,
}

impl FrameDecoder {
    pub fn new(config: WsConfig) -> FrameDecoder {
        FrameDecoder {
            config,
            fragmented: None,
            fragments: Vec::new(),
        }
    }

    /// Decodes the frame at the start of `input`. Errors are reported as soon as the header
    /// shows them, before the payload arrives, so an oversized frame never has to be buffered.
    pub fn decode(&mut self, input: &[u8]) -> Result<DecodeStep, WsError> {
        let [first, second, ..] = *input else {
            return Ok(DecodeStep::NeedMore);
        };
        if first & 0x70 != 0 {
            return Err(WsError::ReservedBits);
        }
        let fin = first & 0x80 != 0;
        let opcode = Opcode::from_bits(first & 0x0f).ok_or(WsError::UnknownOpcode(first & 0x0f))?;
        let masked = second & 0x80 != 0;
        match (masked, self.config.expect_masked) {
            (false, true) => return Err(WsError::Unmasked),
            (true, false) => return Err(WsError::Masked),
            _ => {}
        }
        let (payload_len, mut header_len) = match second & 0x7f {
            126 => {
                let Some(bytes) = input.get(2..4) else {
                    return Ok(DecodeStep::NeedMore);
                };
                (u64::from(u16::from_be_bytes([bytes[0], bytes[1]])), 4)
            }
            127 => {
                let Some(bytes) = input.get(2..10) else {
                    return Ok(DecodeStep::NeedMore);
                };
                let mut length = [0u8; 8];
                length.copy_from_slice(bytes);
                let length = u64::from_be_bytes(length);
                if length >> 63 != 0 {
                    return Err(WsError::BadLength);
                }
                (length, 10)
            }
            short => (u64::from(short), 2),
        };
        if opcode.is_control() {
            if !fin {
                return Err(WsError::FragmentedControl);
            }
            if payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(WsError::ControlTooLong);
            }
        } else {
            match (opcode, self.fragmented) {
                (Opcode::Continuation, None) => return Err(WsError::UnexpectedContinuation),
                (Opcode::Text | Opcode::Binary, Some(_)) => {
                    return Err(WsError::ExpectedContinuation);
                }
                _ => {}
            }
            let limit = self.config.max_message_size;
            if payload_len > (limit - self.fragments.len().min(limit)) as u64 {
                return Err(WsError::MessageTooBig(limit));
            }
        }
        // Bounded by the checks above: fits usize.
        let payload_len = payload_len as usize;
        let mask = if masked {
            let Some(bytes) = input.get(header_len..header_len + 4) else {
                return Ok(DecodeStep::NeedMore);
            };
            header_len += 4;
            Some([bytes[0], bytes[1], bytes[2], bytes[3]])
        } else {
            None
        };
        let Some(payload) = input
            .get(header_len..)
            .and_then(|rest| rest.get(..payload_len))
        else {
            return Ok(DecodeStep::NeedMore);
        };
        let len = header_len + payload_len;
        let unmask = |target: &mut [u8], offset| {
            if let Some(mask) = mask {
                apply_mask(target, mask, offset);
            }
        };

        if opcode.is_control() {
            let mut data = payload.to_vec();
            unmask(&mut data, 0);
            let message = match opcode {
                Opcode::Ping => Message::Ping(data),
                Opcode::Pong => Message::Pong(data),
                _ => Message::Close(parse_close(&data)?),
            };
            return Ok(DecodeStep::Consumed {
                len,
                message: Some(message),
            });
        }

        let start = self.fragments.len();
        self.fragments.extend_from_slice(payload);
        unmask(&mut self.fragments[start..], 0);
        let message_opcode = match opcode {
            Opcode::Continuation => self.fragmented.unwrap_or(Opcode::Binary),
            other => other,
        };
        if !fin {
            self.fragmented = Some(message_opcode);
            return Ok(DecodeStep::Consumed { len, message: None });
        }
        self.fragmented = None;
        let data = std::mem::take(&mut self.fragments);
        let message = match message_opcode {
            Opcode::Text => {
                Message::Text(String::from_utf8(data).map_err(|_| WsError::InvalidUtf8)?)
            }
            _ => Message::Binary(data),
        };
        Ok(DecodeStep::Consumed {
            len,
            message: Some(message),
        })
    }
}

fn parse_close(payload: &[u8]) -> Result<Option<CloseFrame>, WsError> {
    match payload {
        [] => Ok(None),
        [_] => Err(WsError::BadClose),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !valid_close_code(code) {
                return Err(WsError::BadClose);
            }
            let reason = std::str::from_utf8(reason).map_err(|_| WsError::InvalidUtf8)?;
            Ok(Some(CloseFrame {
                code,
                reason: reason.to_owned(),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::request::Limits;
    use super::*;

    #[test]
    fn rfc6455_accept_key() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn handshake() {
        let text = b"GET /live/livestream.flv HTTP/1.1\r\nHost: server.example.com\r\n\
                     Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
                     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\n\
                     Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let (head, _) = RequestHead::parse(text, &Limits::default())
            .unwrap()
            .unwrap();
        let upgrade = WsUpgrade::from_request(&head).unwrap().unwrap();
        assert_eq!(upgrade.protocols, Some("chat, superchat"));
        assert_eq!(upgrade.origin, Some("http://example.com"));
        let mut out = Vec::new();
        upgrade.write_response(&mut out, Some("chat"));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
        );
    }

    #[test]
    fn handshake_errors() {
        let check = |extra: &str, method: &str| {
            let text =
                format!("{method} / HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\n{extra}\r\n");
            let (head, _) = RequestHead::parse(text.as_bytes(), &Limits::default())
                .unwrap()
                .unwrap();
            WsUpgrade::from_request(&head).map(|upgrade| upgrade.is_some())
        };
        let good = "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
        assert_eq!(check(good, "GET"), Ok(true));
        assert_eq!(check(good, "POST"), Err(WsHandshakeError::NotGet));
        assert_eq!(
            check("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "GET"),
            Err(WsHandshakeError::MissingConnectionUpgrade)
        );
        assert_eq!(
            check("Connection: upgrade\r\n", "GET"),
            Err(WsHandshakeError::MissingKey)
        );
        assert_eq!(
            check(
                "Connection: upgrade\r\nSec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n",
                "GET"
            ),
            Err(WsHandshakeError::BadKey)
        );
        let old = "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n";
        assert_eq!(check(old, "GET"), Err(WsHandshakeError::UnsupportedVersion));
        assert_eq!(WsHandshakeError::UnsupportedVersion.status(), 426);
        let (head, _) =
            RequestHead::parse(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", &Limits::default())
                .unwrap()
                .unwrap();
        assert_eq!(WsUpgrade::from_request(&head), Ok(None));
    }

    #[test]
    fn rfc6455_examples() {
        let mut client = FrameDecoder::new(WsConfig {
            expect_masked: false,
            ..WsConfig::default()
        });
        // §5.7: a single-frame unmasked text message "Hello".
        assert_eq!(
            client.decode(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]),
            Ok(DecodeStep::Consumed {
                len: 7,
                message: Some(Message::Text("Hello".into()))
            })
        );
        // A fragmented unmasked text message: "Hel" + "lo".
        assert_eq!(
            client.decode(&[0x01, 0x03, 0x48, 0x65, 0x6c]),
            Ok(DecodeStep::Consumed {
                len: 5,
                message: None
            })
        );
        assert_eq!(
            client.decode(&[0x80, 0x02, 0x6c, 0x6f]),
            Ok(DecodeStep::Consumed {
                len: 4,
                message: Some(Message::Text("Hello".into()))
            })
        );
        // A single-frame masked text message "Hello" (to the server).
        let mut server = FrameDecoder::new(WsConfig::default());
        let masked = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(
            server.decode(&masked),
            Ok(DecodeStep::Consumed {
                len: 11,
                message: Some(Message::Text("Hello".into()))
            })
        );
        for cut in 0..masked.len() {
            assert_eq!(server.decode(&masked[..cut]), Ok(DecodeStep::NeedMore));
        }
        // Encoder: the unmasked "Hello", and the 256-byte / 64 KiB binary headers of §5.7.
        let mut out = Vec::new();
        write_frame(&mut out, Opcode::Text, b"Hello");
        assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert_eq!(
            frame_header(Opcode::Binary, true, 256).as_bytes(),
            [0x82, 0x7e, 0x01, 0x00]
        );
        assert_eq!(
            frame_header(Opcode::Binary, true, 65536).as_bytes(),
            [0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]
        );
    }

    #[test]
    fn protocol_errors() {
        let mut server = FrameDecoder::new(WsConfig {
            max_message_size: 100,
            expect_masked: true,
        });
        assert_eq!(server.decode(&[0x81, 0x00]), Err(WsError::Unmasked));
        assert_eq!(
            server.decode(&[0xc1, 0x80, 0, 0, 0, 0]),
            Err(WsError::ReservedBits)
        );
        assert_eq!(
            server.decode(&[0x83, 0x80, 0, 0, 0, 0]),
            Err(WsError::UnknownOpcode(3))
        );
        assert_eq!(
            server.decode(&[0x09, 0x80, 0, 0, 0, 0]),
            Err(WsError::FragmentedControl)
        );
        assert_eq!(
            server.decode(&[0x89, 0xfe, 0, 126]),
            Err(WsError::ControlTooLong)
        );
        assert_eq!(
            server.decode(&[0x80, 0x80, 0, 0, 0, 0]),
            Err(WsError::UnexpectedContinuation)
        );
        assert_eq!(
            server.decode(&[0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            Err(WsError::BadLength)
        );
        assert_eq!(
            server.decode(&[0x82, 0xfe, 0, 101]),
            Err(WsError::MessageTooBig(100))
        );
        assert_eq!(WsError::MessageTooBig(1).close_code(), 1009);
        // Fragments count towards the limit together.
        let mut frame = vec![0x02, 0x80 | 60, 0, 0, 0, 0];
        frame.extend([0u8; 60]);
        assert!(matches!(
            server.decode(&frame),
            Ok(DecodeStep::Consumed { message: None, .. })
        ));
        assert_eq!(
            server.decode(&[0x80, 0x80 | 50]),
            Err(WsError::MessageTooBig(100))
        );
        assert_eq!(
            server.decode(&[0x82, 0x80, 0, 0, 0, 0]),
            Err(WsError::ExpectedContinuation)
        );
        // Invalid UTF-8 and close payloads.
        let mut server = FrameDecoder::new(WsConfig::default());
        assert_eq!(
            server.decode(&[0x81, 0x81, 0, 0, 0, 0, 0xff]),
            Err(WsError::InvalidUtf8)
        );
        assert_eq!(
            server.decode(&[0x88, 0x81, 0, 0, 0, 0, 0x03]),
            Err(WsError::BadClose)
        );
        assert_eq!(
            server.decode(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xed]),
            Err(WsError::BadClose)
        );
        assert_eq!(
            server.decode(&[0x88, 0x84, 0, 0, 0, 0, 0x03, 0xe8, b'o', b'k']),
            Ok(DecodeStep::Consumed {
                len: 10,
                message: Some(Message::Close(Some(CloseFrame {
                    code: 1000,
                    reason: "ok".into()
                })))
            })
        );
        let mut client = FrameDecoder::new(WsConfig {
            expect_masked: false,
            ..WsConfig::default()
        });
        assert_eq!(
            client.decode(&[0x81, 0x80, 0, 0, 0, 0]),
            Err(WsError::Masked)
        );
    }

    #[test]
    fn close_frames() {
        let mut out = Vec::new();
        write_close(&mut out, Some((1001, "going away")));
        assert_eq!(&out[..4], &[0x88, 12, 0x03, 0xe9]);
        out.clear();
        write_close(&mut out, Some((1000, &"é".repeat(100))));
        assert_eq!(out[1], 124); // 2 + 122 bytes: 61 whole two-byte characters
        out.clear();
        write_close(&mut out, None);
        assert_eq!(out, [0x88, 0x00]);
    }
}
