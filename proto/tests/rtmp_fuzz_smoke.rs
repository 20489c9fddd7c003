//! Stable stand-in for the RTMP fuzz targets, run by CI on every change: the exact properties
//! `cargo +nightly fuzz run {handshake,chunk,session}` check (`rtmp_fuzz_checks/mod.rs`), over
//! a few thousand random, generated-then-mutated and hand-picked inputs. Well under 3 seconds.

mod rtmp_fuzz_checks;

use proptest::prelude::*;
use rtmp_fuzz_checks::{check_chunk, check_handshake, check_session};
use sluice_proto::amf0::Amf0Value;
use sluice_proto::rtmp::chunk::{ChunkWriter, MessageHeader};
use sluice_proto::rtmp::message::{Command, Message, UserControlEvent};
use sluice_proto::rtmp::{ClientHandshake, HandshakeKind};

fn mutate(
    mut bytes: Vec<u8>,
    flips: &[(prop::sample::Index, u8)],
    cut: Option<prop::sample::Index>,
) -> Vec<u8> {
    if !bytes.is_empty() {
        for (index, value) in flips {
            let at = index.index(bytes.len());
            bytes[at] ^= value;
        }
    }
    if let Some(cut) = cut {
        let len = cut.index(bytes.len() + 1);
        bytes.truncate(len);
    }
    bytes
}

fn command(name: &str, txn: f64, object: Amf0Value, args: Vec<Amf0Value>) -> Vec<u8> {
    let mut body = Vec::new();
    Command::new(name, txn, object, args).encode(&mut body);
    body
}

/// A plausible client conversation as chunk-stream bytes.
fn conversation(choices: &[u8], chunk_size: u32) -> Vec<u8> {
    let mut writer = ChunkWriter::with_header_compression(128);
    let mut wire = Vec::new();
    let send = |writer: &mut ChunkWriter,
                wire: &mut Vec<u8>,
                csid: u32,
                type_id: u8,
                stream: u32,
                ts: u32,
                payload: &[u8]| {
        let header = MessageHeader {
            timestamp: ts,
            length: 0,
            type_id,
            stream_id: stream,
        };
        writer.write(wire, csid, &header, payload);
    };
    send(
        &mut writer,
        &mut wire,
        2,
        1,
        0,
        0,
        &chunk_size.to_be_bytes(),
    );
    writer.set_chunk_size(chunk_size);
    let connect = command(
        "connect",
        1.0,
        Amf0Value::object([
            ("app", Amf0Value::from("live")),
            ("tcUrl", "rtmp://h/live".into()),
        ]),
        vec![],
    );
    send(&mut writer, &mut wire, 3, 20, 0, 0, &connect);
    for (i, choice) in choices.iter().enumerate() {
        let ts = i as u32 * 40;
        match choice % 12 {
            0 => send(
                &mut writer,
                &mut wire,
                3,
                20,
                0,
                0,
                &command("createStream", 2.0 + i as f64, Amf0Value::Null, vec![]),
            ),
            1 => send(
                &mut writer,
                &mut wire,
                3,
                20,
                0,
                0,
                &command("FCPublish", 3.0, Amf0Value::Null, vec!["s".into()]),
            ),
            2 => send(
                &mut writer,
                &mut wire,
                8,
                20,
                1,
                0,
                &command(
                    "publish",
                    4.0,
                    Amf0Value::Null,
                    vec!["s".into(), "live".into()],
                ),
            ),
            3 => send(
                &mut writer,
                &mut wire,
                8,
                20,
                1,
                0,
                &command(
                    "play",
                    5.0,
                    Amf0Value::Null,
                    vec!["ss".into(), (-2000.0).into()],
                ),
            ),
            4 => send(&mut writer, &mut wire, 4, 8, 1, ts, &[0xAF, 1, *choice]),
            5 => send(
                &mut writer,
                &mut wire,
                6,
                9,
                1,
                ts,
                &vec![0x27; 300 + usize::from(*choice)],
            ),
            6 => send(
                &mut writer,
                &mut wire,
                3,
                20,
                1,
                0,
                &command(
                    "pause",
                    0.0,
                    Amf0Value::Null,
                    vec![(choice % 2 == 0).into(), 10.0.into()],
                ),
            ),
            7 => send(
                &mut writer,
                &mut wire,
                3,
                20,
                0,
                0,
                &command("FCUnpublish", 6.0, Amf0Value::Null, vec!["s".into()]),
            ),
            8 => send(
                &mut writer,
                &mut wire,
                2,
                4,
                0,
                0,
                &Message::UserControl(UserControlEvent::PingRequest { timestamp: 9 }).to_bytes(),
            ),
            9 => send(&mut writer, &mut wire, 2, 5, 0, 0, &1000u32.to_be_bytes()),
            10 => send(
                &mut writer,
                &mut wire,
                3,
                20,
                0,
                0,
                &command("deleteStream", 7.0, Amf0Value::Null, vec![1.0.into()]),
            ),
            _ => send(
                &mut writer,
                &mut wire,
                3,
                20,
                0,
                0,
                &command("whatever", 8.0, Amf0Value::Null, vec![]),
            ),
        }
    }
    wire
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn handshake_random(data in prop::collection::vec(any::<u8>(), 0..200)) {
        check_handshake(&data);
    }

    #[test]
    fn handshake_mutated(
        kind in prop_oneof![Just(HandshakeKind::Simple), Just(HandshakeKind::Complex)],
        pattern in prop::collection::vec(any::<u8>(), 4),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let mut client = ClientHandshake::new(kind, 1);
        let mut bytes = client.poll_transmit().unwrap().to_vec();
        bytes.extend_from_slice(&[0x5A; 1536]);
        bytes.extend_from_slice(b"trailing chunk bytes");
        let mut data = pattern;
        data.extend(mutate(bytes, &flips, cut));
        check_handshake(&data);
    }

    #[test]
    fn chunk_random(data in prop::collection::vec(any::<u8>(), 0..300)) {
        check_chunk(&data);
    }

    #[test]
    fn chunk_mutated(
        head in prop::collection::vec(any::<u8>(), 3),
        choices in prop::collection::vec(any::<u8>(), 0..12),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        // The check's reader starts at 1 + head[0] * 97; the conversation sets its own size.
        let mut data = head;
        data.extend(mutate(conversation(&choices, 4096), &flips, cut));
        check_chunk(&data);
    }

    #[test]
    fn session_mutated(
        pattern in prop::collection::vec(any::<u8>(), 2),
        choices in prop::collection::vec(any::<u8>(), 0..16),
        chunk_size in prop_oneof![Just(128u32), Just(4096), 1u32..70000],
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let mut data = pattern;
        data.extend(mutate(conversation(&choices, chunk_size), &flips, cut));
        check_session(&data);
    }

    #[test]
    fn session_random(data in prop::collection::vec(any::<u8>(), 0..300)) {
        check_session(&data);
    }
}

#[test]
fn hand_picked() {
    let cases: &[&[u8]] = &[
        b"",
        &[3],
        &[
            0, 0, 0, 0x03, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x09, 0x01, 0, 0, 0, 0xFF, 0xFF,
            0xFF, 0xFF,
        ],
        // Type-3 chunk on a fresh stream.
        &[0, 0, 0, 0xC4, 1, 2, 3],
        // SetChunkSize 0 and 0x80000000.
        &[0, 0, 0, 0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0, 0],
        &[
            0, 0, 0, 0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0x80, 0, 0, 0,
        ],
        // Three-byte basic headers.
        &[
            0, 0, 0, 0x01, 0xFF, 0xFF, 0, 0, 0, 0, 0, 1, 9, 0, 0, 0, 0, 7,
        ],
    ];
    for case in cases {
        check_handshake(case);
        check_chunk(case);
        check_session(case);
    }
}
