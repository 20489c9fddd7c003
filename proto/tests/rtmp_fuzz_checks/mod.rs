//! The RTMP fuzz properties, in one place for two runners: the libFuzzer targets
//! (`proto/fuzz/fuzz_targets/{handshake,chunk,session}.rs`, nightly) and the stable smoke test
//! CI runs (`proto/tests/rtmp_fuzz_smoke.rs`). Both include this file with `#[path]`, so it may
//! depend on nothing but `sluice_proto` and std.
//!
//! Each check panics (the fuzzer's signal) only when an invariant breaks; malformed input must
//! come back as an error value.

#![allow(dead_code)]

use std::time::Instant;

use sluice_proto::rtmp::chunk::{ChunkReader, ChunkReaderConfig, ChunkWriter};
use sluice_proto::rtmp::message::{Message, split_aggregate};
use sluice_proto::rtmp::{
    ClientHandshake, HandshakeKind, ServerHandshake, ServerSession, SessionConfig, SessionEvent,
    SessionOutput,
};

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

/// Server handshake over arbitrary bytes in arbitrary fragments: consumption is accounted
/// for exactly, S0S1S2 is 3073 bytes starting with 3, it stops at the end of C2.
pub fn check_handshake(data: &[u8]) {
    let (pattern, input) = data.split_at(data.len().min(4));
    let mut server = ServerHandshake::new(u64::from(data.len() as u32));
    let mut total = 0usize;
    for piece in fragments(input, pattern) {
        match server.handle_input(piece) {
            Ok(consumed) => {
                assert!(consumed <= piece.len());
                total += consumed;
                if consumed < piece.len() {
                    assert!(
                        server.is_done(),
                        "bytes left over before the handshake ended"
                    );
                }
            }
            Err(_) => {
                assert!(!server.is_done());
                return;
            }
        }
        if let Some(reply) = server.poll_transmit() {
            assert_eq!(reply.len(), 3073);
            assert_eq!(reply[0], 3);
            assert!(server.kind().is_some());
        }
    }
    assert!(total <= 1537 + 1536);
    assert_eq!(server.is_done(), total == 1537 + 1536);

    // The client side must survive the same bytes as a server answer.
    let mut client = ClientHandshake::new(HandshakeKind::Complex, 1);
    let _ = client.poll_transmit();
    for piece in fragments(input, pattern) {
        match client.handle_input(piece) {
            Ok(consumed) => assert!(consumed <= piece.len()),
            Err(_) => break,
        }
    }
}

/// Chunk reader over arbitrary bytes with small limits: messages are consistent with their
/// headers, every payload decodes or errors without panicking, what decodes re-encodes to
/// something that decodes the same, and re-chunking the messages reads back identically.
pub fn check_chunk(data: &[u8]) {
    let (head, input) = data.split_at(data.len().min(3));
    let chunk_size = 1 + u32::from(head.first().copied().unwrap_or(0)) * 97;
    let pattern = head.get(1..).unwrap_or(&[]);
    let mut reader = ChunkReader::new(ChunkReaderConfig {
        max_chunk_size: 1 << 20,
        max_message_len: 1 << 20,
        max_partial_messages: 8,
        max_chunk_streams: 16,
        media_prefix: None,
    });
    if reader.set_chunk_size(chunk_size).is_err() {
        return;
    }
    let mut messages = Vec::new();
    'outer: for mut piece in fragments(input, pattern) {
        loop {
            match reader.read_message(&mut piece) {
                Ok(Some(message)) => messages.push(message),
                Ok(None) => {
                    assert!(piece.is_empty());
                    break;
                }
                Err(_) => {
                    assert!(
                        reader.read_message(&mut &b"x"[..]).is_err(),
                        "errors are sticky"
                    );
                    break 'outer;
                }
            }
        }
    }
    assert!(reader.partial_messages() <= 8);

    for message in &messages {
        assert_eq!(message.payload.len() as u32, message.header.length);
        assert!((2..=65599).contains(&message.csid));
        if let Ok(decoded) = Message::decode(message.header.type_id, &message.payload) {
            assert_eq!(decoded.type_id(), message.header.type_id);
            let encoded = decoded.to_bytes();
            let again =
                Message::decode(decoded.type_id(), &encoded).expect("our own encoding decodes");
            // Compare through encodings: NaN transaction ids are not equal to themselves.
            assert_eq!(again.to_bytes(), encoded);
        }
        let aggregate = (message.header.type_id == 22)
            .then(|| split_aggregate(&message.header, &message.payload));
        if let Some(Ok(parts)) = aggregate {
            let total: usize = parts.iter().map(|p| p.payload.len() + 15).sum();
            assert_eq!(total, message.payload.len());
        }
    }

    // Re-chunk what we read (type-0 headers) and read it back at another chunk size. Control
    // messages would change the chunk size or abort streams midway; leave them out.
    let media: Vec<_> = messages
        .into_iter()
        .filter(|m| !matches!(m.header.type_id, 1 | 2))
        .collect();
    let out_chunk_size = 128 + chunk_size % 4000;
    let mut writer = ChunkWriter::new(out_chunk_size);
    let mut wire = Vec::new();
    for message in &media {
        writer.write_message(&mut wire, message);
    }
    let mut reader = ChunkReader::new(ChunkReaderConfig {
        max_message_len: 1 << 20,
        ..ChunkReaderConfig::default()
    });
    reader.set_chunk_size(out_chunk_size).unwrap();
    let again = reader.read_all(&wire).expect("our own chunking reads back");
    assert_eq!(again, media);
}

/// A whole server session behind a valid handshake: arbitrary chunk-stream bytes, the server
/// accepting everything it is asked. Never panics; every byte it transmits is a well-formed
/// chunk stream.
pub fn check_session(data: &[u8]) {
    let (pattern, input) = data.split_at(data.len().min(2));
    let mut client = ClientHandshake::new(HandshakeKind::Simple, 3);
    let mut session = ServerSession::new(SessionConfig {
        max_message_len: 1 << 20,
        ..SessionConfig::default()
    });
    let now = Instant::now();
    let mut server_bytes = Vec::new();
    session
        .handle_input(now, &client.poll_transmit().unwrap())
        .unwrap();
    while let Some(output) = session.poll_output() {
        if let SessionOutput::Transmit(bytes) = output {
            server_bytes.extend_from_slice(&bytes);
        }
    }
    client.handle_input(&server_bytes).unwrap();
    server_bytes.clear();
    session
        .handle_input(now, &client.poll_transmit().unwrap())
        .unwrap();

    for piece in fragments(input, pattern) {
        if session.handle_input(now, piece).is_err() {
            break;
        }
        while let Some(output) = session.poll_output() {
            match output {
                SessionOutput::Transmit(bytes) => server_bytes.extend_from_slice(&bytes),
                SessionOutput::Event(SessionEvent::Connect(_)) => session.accept_connect(),
                SessionOutput::Event(SessionEvent::Publish(request)) => {
                    session.accept_publish(request.stream_id)
                }
                SessionOutput::Event(SessionEvent::Play(request)) => {
                    if request.stream_name.len() % 2 == 0 {
                        session.accept_play(request.stream_id);
                    } else {
                        session.reject_play(
                            request.stream_id,
                            "NetStream.Play.StreamNotFound",
                            "no",
                        );
                    }
                }
                SessionOutput::Event(_) => {}
            }
        }
    }
    assert!(session.bytes_received() >= (1537 + 1536) as u64);
    let mut reader = ChunkReader::default();
    let replies = reader
        .read_all(&server_bytes)
        .expect("the session transmits a well-formed chunk stream");
    for reply in replies {
        Message::decode(reply.header.type_id, &reply.payload).expect("our replies decode");
    }
}
