//! HTTP/1.1 wire pieces survive a round trip: generated request heads parse back field for
//! field (and every prefix asks for more; pipelined bytes after the head are left alone);
//! chunked bodies decode to what was encoded, however the bytes are split; WebSocket messages
//! encoded as client or server frames, fragmented and interleaved with control frames, decode
//! back to the same messages.

use proptest::prelude::*;
use sluice_proto::http::response::{ChunkHeader, write_chunk};
use sluice_proto::http::ws::{self, masked_frame_header};
use sluice_proto::http::{
    CHUNK_END, ChunkedDecoder, CloseFrame, DecodeStep, FrameDecoder, LAST_CHUNK, Limits, Message,
    Opcode, RequestHead, Version, WsConfig,
};

#[derive(Debug, Clone)]
struct GeneratedHead {
    method: String,
    path: String,
    query: Option<String>,
    version: Version,
    headers: Vec<(String, String)>,
    newline: &'static str,
}

impl GeneratedHead {
    fn render(&self) -> String {
        let mut text = format!("{} {}", self.method, self.path);
        if let Some(query) = &self.query {
            text.push('?');
            text.push_str(query);
        }
        text.push_str(&format!(" {}{}", self.version.as_str(), self.newline));
        text.push_str(&format!("Host: example.com:8080{}", self.newline));
        for (name, value) in &self.headers {
            // Optional whitespace around the value is not part of it.
            text.push_str(&format!("{name}:  {value}\t{}", self.newline));
        }
        text.push_str(self.newline);
        text
    }
}

fn arb_head() -> impl Strategy<Value = GeneratedHead> {
    (
        "[A-Z]{1,8}",
        "/[a-zA-Z0-9._~%/-]{0,40}",
        prop::option::of("[a-zA-Z0-9=&%+]{0,30}"),
        prop_oneof![Just(Version::Http10), Just(Version::Http11)],
        prop::collection::vec(
            ("X-[A-Za-z0-9-]{1,16}", "([!-~]([ -~]{0,30}[!-~])?)?"),
            0..10,
        ),
        prop_oneof![Just("\r\n"), Just("\n")],
    )
        .prop_map(
            |(method, path, query, version, headers, newline)| GeneratedHead {
                method,
                path,
                query,
                version,
                headers,
                newline,
            },
        )
}

/// A read buffer: bytes arrive in pieces, the decoder takes whole frames off the front.
fn decode_stream(decoder: &mut FrameDecoder, wire: &[u8], cuts: &[usize]) -> Vec<Message> {
    let mut buffer = Vec::new();
    let mut messages = Vec::new();
    let mut start = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.push(wire.len());
    for cut in cuts {
        buffer.extend_from_slice(&wire[start..cut]);
        start = cut;
        loop {
            match decoder.decode(&buffer).unwrap() {
                DecodeStep::NeedMore => break,
                DecodeStep::Consumed { len, message } => {
                    buffer.drain(..len);
                    messages.extend(message);
                }
            }
        }
    }
    assert!(buffer.is_empty());
    messages
}

#[derive(Debug, Clone)]
enum TestMessage {
    Data {
        text: bool,
        payload: Vec<u8>,
        fragments: Vec<usize>,
    },
    Ping(Vec<u8>),
    Close(Option<(u16, String)>),
}

fn arb_message() -> impl Strategy<Value = TestMessage> {
    prop_oneof![
        4 => (any::<bool>(), "\\PC{0,100}", prop::collection::vec(any::<u8>(), 0..300), prop::collection::vec(any::<usize>(), 0..3))
            .prop_map(|(text, string, bytes, fragments)| TestMessage::Data {
                text,
                payload: if text { string.into_bytes() } else { bytes },
                fragments,
            }),
        1 => prop::collection::vec(any::<u8>(), 0..=125).prop_map(TestMessage::Ping),
        1 => prop::option::of((prop_oneof![1000u16..=1003, 1007u16..=1011, 3000u16..=4999], "[a-z ]{0,50}"))
            .prop_map(TestMessage::Close),
    ]
}

/// Encodes messages as frames: masked (client) or not (server). Data messages are split at
/// `fragments`, and a ping is slipped between the first two fragments.
fn encode(messages: &[TestMessage], mask: Option<[u8; 4]>) -> (Vec<u8>, Vec<Message>) {
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    let put = |wire: &mut Vec<u8>, opcode: Opcode, fin: bool, payload: &[u8]| match mask {
        Some(mask) => {
            wire.extend_from_slice(
                masked_frame_header(opcode, fin, payload.len(), mask).as_bytes(),
            );
            let mut masked = payload.to_vec();
            ws::apply_mask(&mut masked, mask, 0);
            wire.extend_from_slice(&masked);
        }
        None => {
            wire.extend_from_slice(ws::frame_header(opcode, fin, payload.len()).as_bytes());
            wire.extend_from_slice(payload);
        }
    };
    for message in messages {
        match message {
            TestMessage::Data {
                text,
                payload,
                fragments,
            } => {
                let mut cuts: Vec<usize> =
                    fragments.iter().map(|f| f % (payload.len() + 1)).collect();
                cuts.sort_unstable();
                cuts.push(payload.len());
                let mut start = 0;
                for (index, &cut) in cuts.iter().enumerate() {
                    let opcode = match (index, text) {
                        (0, true) => Opcode::Text,
                        (0, false) => Opcode::Binary,
                        _ => Opcode::Continuation,
                    };
                    put(
                        &mut wire,
                        opcode,
                        index + 1 == cuts.len(),
                        &payload[start..cut],
                    );
                    start = cut;
                    if index == 0 && cuts.len() > 1 {
                        put(&mut wire, Opcode::Ping, true, b"mid");
                        expected.push(Message::Ping(b"mid".to_vec()));
                    }
                }
                expected.push(if *text {
                    Message::Text(String::from_utf8(payload.clone()).unwrap())
                } else {
                    Message::Binary(payload.clone())
                });
            }
            TestMessage::Ping(payload) => {
                put(&mut wire, Opcode::Ping, true, payload);
                expected.push(Message::Ping(payload.clone()));
            }
            TestMessage::Close(close) => {
                let mut payload = Vec::new();
                if let Some((code, reason)) = close {
                    payload.extend_from_slice(&code.to_be_bytes());
                    payload.extend_from_slice(reason.as_bytes());
                }
                put(&mut wire, Opcode::Close, true, &payload);
                expected.push(Message::Close(close.as_ref().map(|(code, reason)| {
                    CloseFrame {
                        code: *code,
                        reason: reason.clone(),
                    }
                })));
            }
        }
    }
    (wire, expected)
}

proptest! {
    #[test]
    fn generated_heads_parse_back(head in arb_head(), pipelined in "[ -~]{0,20}") {
        let text = head.render();
        let limits = Limits::default();
        let mut buffer = text.clone().into_bytes();
        buffer.extend_from_slice(pipelined.as_bytes());
        let (parsed, consumed) = RequestHead::parse(&buffer, &limits).unwrap().unwrap();
        prop_assert_eq!(consumed, text.len());
        prop_assert_eq!(parsed.method, head.method.as_str());
        prop_assert_eq!(parsed.path, head.path.as_str());
        prop_assert_eq!(parsed.query, head.query.as_deref());
        prop_assert_eq!(parsed.version, head.version);
        prop_assert_eq!(parsed.host(), Some("example.com:8080"));
        prop_assert_eq!(parsed.headers.len(), head.headers.len() + 1);
        for (header, (name, value)) in parsed.headers[1..].iter().zip(&head.headers) {
            prop_assert_eq!(header.name, name.as_str());
            prop_assert_eq!(header.value, value.as_bytes());
        }
        for cut in 0..text.len() {
            prop_assert_eq!(RequestHead::parse(&text.as_bytes()[..cut], &limits), Ok(None));
        }
    }

    #[test]
    fn chunked_round_trip(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..8),
        split in any::<prop::sample::Index>(),
        shared_style in any::<bool>(),
    ) {
        let mut wire = Vec::new();
        for chunk in &chunks {
            if shared_style {
                // header + shared body + trailer, as a viewer's vectored write sends it
                if !chunk.is_empty() {
                    wire.extend_from_slice(ChunkHeader::new(chunk.len()).as_bytes());
                    wire.extend_from_slice(chunk);
                    wire.extend_from_slice(CHUNK_END);
                }
            } else {
                write_chunk(&mut wire, chunk);
            }
        }
        wire.extend_from_slice(LAST_CHUNK);
        wire.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let split = split.index(wire.len() + 1);
        let mut decoder = ChunkedDecoder::new();
        let mut body = Vec::new();
        let first = decoder.decode(&wire[..split], &mut body).unwrap();
        let second = decoder.decode(&wire[first..], &mut body).unwrap();
        prop_assert!(decoder.is_done());
        prop_assert_eq!(&wire[first + second..], b"GET / HTTP/1.1\r\n");
        prop_assert_eq!(body, chunks.concat());
    }

    #[test]
    fn client_frames_to_server(
        messages in prop::collection::vec(arb_message(), 0..6),
        mask in any::<[u8; 4]>(),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let (wire, expected) = encode(&messages, Some(mask));
        let mut server = FrameDecoder::new(WsConfig::default());
        prop_assert_eq!(decode_stream(&mut server, &wire, &cuts), expected);
    }

    #[test]
    fn server_frames_to_client(
        messages in prop::collection::vec(arb_message(), 0..6),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let (wire, expected) = encode(&messages, None);
        let mut client = FrameDecoder::new(WsConfig { expect_masked: false, ..WsConfig::default() });
        prop_assert_eq!(decode_stream(&mut client, &wire, &cuts), expected);
    }
}

#[test]
fn server_binary_frame_around_shared_payload() {
    // A WS-FLV viewer's write: its own frame header, then the shared FLV tag bytes.
    let shared = vec![0x09u8; 70_000];
    let header = ws::frame_header(Opcode::Binary, true, shared.len());
    let mut wire = header.as_bytes().to_vec();
    wire.extend_from_slice(&shared);
    let mut client = FrameDecoder::new(WsConfig {
        expect_masked: false,
        ..WsConfig::default()
    });
    assert_eq!(
        client.decode(&wire),
        Ok(DecodeStep::Consumed {
            len: wire.len(),
            message: Some(Message::Binary(shared))
        })
    );
}
