//! The RTMP client fuzz property, for two runners: the libFuzzer target
//! (`proto/fuzz/fuzz_targets/client.rs`, nightly) and the stable smoke test CI runs
//! (`proto/tests/rtmp_client_fuzz_smoke.rs`). Both include this file with `#[path]`, so it may
//! depend on nothing but `sluice_proto` and std.
//!
//! It panics (the fuzzer's signal) only when an invariant breaks; malformed server input must
//! come back as an error value.

#![allow(dead_code)]

use std::time::Instant;

use sluice_proto::rtmp::chunk::{ChunkReader, ChunkReaderConfig};
use sluice_proto::rtmp::message::Message;
use sluice_proto::rtmp::{
    ClientConfig, ClientEvent, ClientOutput, ClientSession, ClientState, HandshakeKind, MediaKind,
    OutChunkSize,
};

/// C0C1 plus C2: what the client sends before its chunk stream.
const CLIENT_HANDSHAKE_LEN: usize = 1 + 1536 + 1536;

/// Splits `data` into fragments whose sizes come from `pattern` (a byte each, 0 meaning 1).
fn fragments<'a>(data: &'a [u8], pattern: &[u8]) -> Vec<&'a [u8]> {
    let mut pieces = Vec::new();
    let mut rest = data;
    let mut sizes = pattern.iter().cycle();
    while !rest.is_empty() {
        let size = if pattern.is_empty() {
            rest.len()
        } else {
            usize::from(*sizes.next().unwrap_or(&0)).max(1) * 7
        };
        let (piece, tail) = rest.split_at(size.min(rest.len()));
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

/// The client configuration byte 0 of the input selects: play or publish, echoed or fixed
/// chunk size.
pub fn client_config(selector: u8) -> ClientConfig {
    let mut config = if selector & 1 == 0 {
        ClientConfig::play("rtmp://h:1935/live", "live", "s")
    } else {
        ClientConfig::publish("rtmp://h:1935/live", "live", "s?k=v")
    };
    config.handshake = HandshakeKind::Simple;
    config.random_seed = u64::from(selector);
    if selector & 2 != 0 {
        config.chunk_size = OutChunkSize::Fixed(1 + u32::from(selector) * 61);
    }
    config.limits = ChunkReaderConfig {
        max_chunk_size: 1 << 20,
        max_message_len: 1 << 20,
        max_partial_messages: 8,
        max_chunk_streams: 16,
        media_prefix: None,
    };
    config
}

/// A client session behind a valid (simple) handshake fed arbitrary server chunk-stream bytes
/// in arbitrary fragments (byte 0: configuration, bytes 1–2: fragment pattern). Never panics;
/// errors are sticky; events stay within what the state machine allows and within what the
/// input can pay for; publishing works whenever the state says so; every byte the client
/// transmits is a well-formed chunk stream of messages that decode. Returns the events, for
/// tests that want to see how far a conversation got.
pub fn check_client(data: &[u8]) -> Vec<ClientEvent> {
    let (head, input) = data.split_at(data.len().min(3));
    let selector = head.first().copied().unwrap_or(0);
    let pattern = head.get(1..).unwrap_or(&[]);
    let config = client_config(selector);
    let publishing = config.mode == sluice_proto::rtmp::ClientMode::Publish;
    let now = Instant::now();
    let mut client = ClientSession::new(config, now);
    let mut sent = Vec::new();
    let mut events = Vec::new();
    let drain = |client: &mut ClientSession, sent: &mut Vec<u8>, events: &mut Vec<_>| {
        while let Some(output) = client.poll_output() {
            match output {
                ClientOutput::Transmit(bytes) => {
                    assert!(!bytes.is_empty());
                    sent.extend_from_slice(&bytes);
                }
                ClientOutput::Event(event) => events.push(event),
            }
        }
    };
    drain(&mut client, &mut sent, &mut events);
    assert_eq!(sent.len(), 1 + 1536, "C0C1 first");

    // Any 3073 bytes starting with 3 answer a simple handshake.
    let mut s0s1s2 = vec![0u8; 1 + 2 * 1536];
    s0s1s2[0] = 3;
    client.handle_input(now, &s0s1s2).expect("a valid S0S1S2");
    assert_eq!(client.state(), ClientState::Connecting);

    let mut failed = false;
    for piece in fragments(input, pattern) {
        if client.handle_input(now, piece).is_err() {
            assert!(client.handle_input(now, b"x").is_err(), "errors are sticky");
            failed = true;
        }
        drain(&mut client, &mut sent, &mut events);
        if client.state() == ClientState::Publishing {
            client
                .send_media(MediaKind::Video, piece.len() as u32, piece)
                .expect("sending while publishing");
            client.send_metadata(b"\x02\x00\x0aonMetaData").unwrap();
        } else {
            assert!(client.send_media(MediaKind::Audio, 0, b"a").is_err());
        }
        if failed {
            break;
        }
    }
    client.close_stream();
    assert_eq!(client.state(), ClientState::Closed);
    drain(&mut client, &mut sent, &mut events);
    assert!(client.bytes_received() >= s0s1s2.len() as u64);

    // Events: bounded by the input, in an order the state machine allows.
    assert!(events.len() <= 2 + input.len(), "{} events", events.len());
    let count = |wanted: fn(&ClientEvent) -> bool| events.iter().filter(|e| wanted(e)).count();
    assert!(count(|e| *e == ClientEvent::Connected) <= 1);
    assert!(count(|e| matches!(e, ClientEvent::Rejected { .. })) <= 1);
    let started = count(|e| {
        matches!(
            e,
            ClientEvent::Publishing { .. } | ClientEvent::Playing { .. }
        )
    });
    assert!(started <= 1);
    if started == 1 {
        let connected = events.iter().position(|e| *e == ClientEvent::Connected);
        let start = events.iter().position(|e| {
            matches!(
                e,
                ClientEvent::Publishing { .. } | ClientEvent::Playing { .. }
            )
        });
        assert!(connected < start, "started before connecting");
        assert_eq!(
            count(|e| matches!(e, ClientEvent::Publishing { .. })),
            usize::from(publishing)
        );
    }
    for event in &events {
        if let ClientEvent::Media(media) = event {
            assert!(!media.payload.is_empty());
        }
    }

    // What the client sent reads back as a chunk stream of decodable messages.
    let mut reader = ChunkReader::default();
    let messages = reader
        .read_all(&sent[CLIENT_HANDSHAKE_LEN.min(sent.len())..])
        .expect("the client transmits a well-formed chunk stream");
    assert!(!messages.is_empty(), "connect at least");
    for message in messages {
        Message::decode(message.header.type_id, &message.payload).expect("our messages decode");
    }
    events
}
