//! Hostile input gets a clear error, never a panic and never an unbounded allocation: garbage
//! handshakes, absurd chunk sizes, oversized messages, thousands of chunk streams, broken
//! headers and broken AMF.

use std::time::Instant;

use sluice_proto::rtmp::chunk::{
    ChunkError, ChunkReader, ChunkReaderConfig, ChunkWriter, MessageHeader, write_fmt0_header,
};
use sluice_proto::rtmp::{
    ClientHandshake, HandshakeError, HandshakeKind, ServerSession, SessionConfig, SessionError,
    SessionOutput,
};

fn header(timestamp: u32, length: u32, type_id: u8, stream_id: u32) -> MessageHeader {
    MessageHeader {
        timestamp,
        length,
        type_id,
        stream_id,
    }
}

fn control(type_id: u8, value: u32) -> Vec<u8> {
    let mut wire = Vec::new();
    ChunkWriter::new(128).write(
        &mut wire,
        2,
        &header(0, 0, type_id, 0),
        &value.to_be_bytes(),
    );
    wire
}

#[test]
fn absurd_chunk_sizes() {
    for (size, expected) in [
        (0u32, ChunkError::ChunkSizeZero),
        (
            0x8000_0000,
            ChunkError::ChunkSizeTooLarge {
                size: 0x8000_0000,
                max: 16 << 20,
            },
        ),
        (
            u32::MAX,
            ChunkError::ChunkSizeTooLarge {
                size: u32::MAX,
                max: 16 << 20,
            },
        ),
        (
            (16 << 20) + 1,
            ChunkError::ChunkSizeTooLarge {
                size: (16 << 20) + 1,
                max: 16 << 20,
            },
        ),
    ] {
        let mut reader = ChunkReader::default();
        assert_eq!(reader.read_all(&control(1, size)), Err(expected.clone()));
        assert!(!expected.to_string().is_empty());
    }
    // The extremes that are legal.
    for size in [1u32, 16 << 20] {
        let mut reader = ChunkReader::default();
        reader.read_all(&control(1, size)).unwrap();
        assert_eq!(reader.chunk_size(), size);
    }
}

#[test]
fn truncated_control_messages() {
    let mut wire = Vec::new();
    ChunkWriter::new(128).write(&mut wire, 2, &header(0, 0, 1, 0), &[0, 1]);
    assert_eq!(
        ChunkReader::default().read_all(&wire),
        Err(ChunkError::ControlMessageTruncated {
            what: "SetChunkSize",
            len: 2
        })
    );
}

#[test]
fn message_length_over_limit() {
    let mut reader = ChunkReader::new(ChunkReaderConfig {
        max_message_len: 1000,
        ..ChunkReaderConfig::default()
    });
    let mut wire = Vec::new();
    write_fmt0_header(&mut wire, 6, &header(0, 1001, 9, 1));
    let error = reader.read_all(&wire).unwrap_err();
    assert_eq!(
        error,
        ChunkError::MessageTooLong {
            csid: 6,
            length: 1001,
            max: 1000
        }
    );
    assert!(error.to_string().contains("1001"));
}

#[test]
fn thousands_of_partial_messages() {
    // Each chunk stream starts a 16 MB message and sends one byte of it (chunk size 1).
    let mut wire = Vec::new();
    for csid in 64..5064u32 {
        write_fmt0_header(&mut wire, csid, &header(0, 0x00FF_FFFF, 9, 1));
        wire.push(0);
    }
    let mut reader = ChunkReader::new(ChunkReaderConfig {
        max_message_len: 0x00FF_FFFF,
        max_chunk_streams: 10_000,
        ..ChunkReaderConfig::default()
    });
    reader.set_chunk_size(1).unwrap();
    assert_eq!(
        reader.read_all(&wire),
        Err(ChunkError::TooManyPartialMessages { limit: 64 })
    );
    assert_eq!(reader.partial_messages(), 64);
}

#[test]
fn thousands_of_chunk_streams() {
    let mut wire = Vec::new();
    for csid in 64..5064u32 {
        write_fmt0_header(&mut wire, csid, &header(0, 1, 9, 1));
        wire.push(0);
    }
    let mut reader = ChunkReader::default();
    let mut input = &wire[..];
    let mut read = 0;
    let error = loop {
        match reader.read_message(&mut input) {
            Ok(Some(_)) => read += 1,
            Ok(None) => panic!("no limit hit"),
            Err(error) => break error,
        }
    };
    assert_eq!(error, ChunkError::TooManyChunkStreams { limit: 1024 });
    assert_eq!(read, 1024);
}

#[test]
fn broken_headers() {
    // A type-2 or type-3 header on a chunk stream never seen.
    for first in [0x84u8, 0xC4] {
        let error = ChunkReader::default()
            .read_all(&[first, 0, 0, 1, 2, 3, 4, 5])
            .unwrap_err();
        assert!(matches!(
            error,
            ChunkError::StreamStartsWithoutHeader { csid: 4, .. }
        ));
    }
    // A type-0 header while a message is incomplete.
    let mut wire = Vec::new();
    write_fmt0_header(&mut wire, 4, &header(0, 300, 9, 1));
    wire.extend_from_slice(&[0; 128]);
    write_fmt0_header(&mut wire, 4, &header(0, 10, 9, 1));
    assert!(matches!(
        ChunkReader::default().read_all(&wire),
        Err(ChunkError::Type0InsideMessage {
            csid: 4,
            length: 300,
            received: 128
        })
    ));
    // A type-1 header changing the length mid-message.
    let mut wire = Vec::new();
    write_fmt0_header(&mut wire, 4, &header(0, 300, 9, 1));
    wire.extend_from_slice(&[0; 128]);
    wire.extend_from_slice(&[0x44, 0, 0, 0, 0, 0x01, 0x00, 9]);
    assert!(matches!(
        ChunkReader::default().read_all(&wire),
        Err(ChunkError::LengthChangedInsideMessage {
            csid: 4,
            old: 300,
            new: 256
        })
    ));
}

#[test]
fn session_rejects_garbage_handshake() {
    let mut session = ServerSession::new(SessionConfig::default());
    let error = session
        .handle_input(Instant::now(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap_err();
    assert_eq!(
        error,
        SessionError::Handshake(HandshakeError::UnsupportedClientVersion(b'G'))
    );
    assert!(error.to_string().contains("0x47"), "{error}");
}

fn handshaken_session() -> ServerSession {
    let mut client = ClientHandshake::new(HandshakeKind::Simple, 1);
    let mut session = ServerSession::new(SessionConfig::default());
    let now = Instant::now();
    session
        .handle_input(now, &client.poll_transmit().unwrap())
        .unwrap();
    let Some(SessionOutput::Transmit(reply)) = session.poll_output() else {
        panic!()
    };
    client.handle_input(&reply).unwrap();
    session
        .handle_input(now, &client.poll_transmit().unwrap())
        .unwrap();
    session
}

#[test]
fn session_errors_on_broken_amf_and_limits() {
    // A command whose AMF0 string claims more bytes than there are.
    let mut session = handshaken_session();
    let mut wire = Vec::new();
    ChunkWriter::new(128).write(&mut wire, 3, &header(0, 0, 20, 0), b"\x02\xff\xffconnect");
    let error = session.handle_input(Instant::now(), &wire).unwrap_err();
    assert!(matches!(error, SessionError::Message { type_id: 20, .. }));

    // An oversized message.
    let mut session = handshaken_session();
    let mut wire = Vec::new();
    write_fmt0_header(&mut wire, 6, &header(0, 0x00FF_FFFF, 9, 1));
    let error = session.handle_input(Instant::now(), &wire).unwrap_err();
    assert!(matches!(
        error,
        SessionError::Chunk(ChunkError::MessageTooLong { .. })
    ));

    // A command that is not a command.
    let mut session = handshaken_session();
    let mut wire = Vec::new();
    ChunkWriter::new(128).write(&mut wire, 3, &header(0, 0, 20, 0), &[0x05]);
    let error = session.handle_input(Instant::now(), &wire).unwrap_err();
    assert!(error.to_string().contains("command name"), "{error}");
}
