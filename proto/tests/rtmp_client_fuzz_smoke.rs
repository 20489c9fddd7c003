//! Stable stand-in for the RTMP client fuzz target, run by CI on every change: the property
//! `cargo +nightly fuzz run client` checks (`rtmp_fuzz_checks/client.rs`), over a few thousand
//! random, generated-then-mutated and hand-picked server inputs. Well under 2 seconds.

#[path = "rtmp_fuzz_checks/client.rs"]
mod client_check;

use client_check::check_client;
use proptest::prelude::*;
use sluice_proto::amf0::Amf0Value;
use sluice_proto::rtmp::chunk::{ChunkWriter, MessageHeader};
use sluice_proto::rtmp::message::{Command, Message, UserControlEvent};

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

fn command(name: &str, txn: f64, args: Vec<Amf0Value>) -> Vec<u8> {
    let mut body = Vec::new();
    Command::new(name, txn, Amf0Value::Null, args).encode(&mut body);
    body
}

fn status(level: &str, code: &str) -> Vec<u8> {
    command(
        "onStatus",
        0.0,
        vec![Amf0Value::object([
            ("level", Amf0Value::from(level)),
            ("code", code.into()),
            ("description", "d".into()),
        ])],
    )
}

fn aggregate(base: u32) -> Vec<u8> {
    let mut payload = Vec::new();
    for (type_id, ts, data) in [(9u8, base, &[0x17u8, 1][..]), (8, base + 20, &[0xAF][..])] {
        payload.push(type_id);
        payload.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
        payload.extend_from_slice(&ts.to_be_bytes()[1..]);
        payload.push((ts >> 24) as u8);
        payload.extend_from_slice(&[0, 0, 0]);
        payload.extend_from_slice(data);
        payload.extend_from_slice(&(11 + data.len() as u32).to_be_bytes());
    }
    payload
}

/// A plausible server side of the conversation (SRS's replies, then whatever `choices` pick)
/// as chunk-stream bytes.
fn conversation(choices: &[u8], chunk_size: u32) -> Vec<u8> {
    let mut writer = ChunkWriter::with_header_compression(128);
    let mut wire = Vec::new();
    let mut send =
        |writer: &mut ChunkWriter, csid: u32, type_id: u8, stream: u32, ts: u32, payload: &[u8]| {
            let header = MessageHeader {
                timestamp: ts,
                length: 0,
                type_id,
                stream_id: stream,
            };
            writer.write(&mut wire, csid, &header, payload);
        };
    send(&mut writer, 2, 5, 0, 0, &2_500_000u32.to_be_bytes());
    send(&mut writer, 2, 6, 0, 0, &[0, 0x26, 0x25, 0xA0, 2]);
    send(&mut writer, 2, 1, 0, 0, &chunk_size.to_be_bytes());
    writer.set_chunk_size(chunk_size);
    send(&mut writer, 3, 20, 0, 0, &command("_result", 1.0, vec![]));
    send(&mut writer, 3, 20, 0, 0, &command("onBWDone", 0.0, vec![]));
    for (i, choice) in choices.iter().enumerate() {
        let ts = (i as u32 * 40).wrapping_add(u32::from(*choice) << 20);
        match choice % 14 {
            0 => send(
                &mut writer,
                3,
                20,
                0,
                0,
                &command("_result", f64::from(choice % 8), vec![1.0.into()]),
            ),
            1 => send(
                &mut writer,
                5,
                20,
                1,
                0,
                &status("status", "NetStream.Publish.Start"),
            ),
            2 => send(
                &mut writer,
                5,
                20,
                1,
                0,
                &status("status", "NetStream.Play.Start"),
            ),
            3 => send(&mut writer, 7, 8, 1, ts, &[0xAF, 1, *choice]),
            4 => send(
                &mut writer,
                6,
                9,
                1,
                ts,
                &vec![0x27; 300 + usize::from(*choice) * 7],
            ),
            5 => send(&mut writer, 6, 22, 1, ts, &aggregate(ts)),
            6 => send(
                &mut writer,
                2,
                4,
                0,
                0,
                &Message::UserControl(UserControlEvent::PingRequest { timestamp: 9 }).to_bytes(),
            ),
            7 => send(
                &mut writer,
                3,
                20,
                0,
                0,
                &command("_error", f64::from(choice % 8), vec![]),
            ),
            8 => send(
                &mut writer,
                5,
                20,
                1,
                0,
                &status("error", "NetStream.Publish.BadName"),
            ),
            9 => send(
                &mut writer,
                5,
                20,
                1,
                0,
                &status("status", "NetStream.Play.Stop"),
            ),
            10 => send(&mut writer, 4, 15, 1, ts, b"\x00\x02\x00\x01x"),
            11 => send(&mut writer, 2, 5, 0, 0, &u32::from(*choice).to_be_bytes()),
            12 => send(
                &mut writer,
                5,
                20,
                1,
                0,
                &command("onFCPublish", 0.0, vec![]),
            ),
            _ => send(&mut writer, 2, 4, 0, 0, &[0, 0, 0, 0, 0, 1]),
        }
    }
    wire
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn client_random(data in prop::collection::vec(any::<u8>(), 0..300)) {
        check_client(&data);
    }

    #[test]
    fn client_mutated(
        head in prop::collection::vec(any::<u8>(), 3),
        choices in prop::collection::vec(any::<u8>(), 0..16),
        chunk_size in prop_oneof![Just(128u32), Just(4096), Just(60000), 1u32..70000],
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let mut data = head;
        data.extend(mutate(conversation(&choices, chunk_size), &flips, cut));
        check_client(&data);
    }
}

/// Unmutated conversations get through to media, for both modes.
#[test]
fn clean_conversations() {
    use sluice_proto::rtmp::ClientEvent;
    for selector in 0u8..4 {
        // 28: _result for transaction 4 (the publisher's createStream; the player has not sent
        // it yet), 42: for transaction 2 (the player's createStream; the publisher's
        // releaseStream). Then both starts, media, ping, AMF3 data, onFCPublish, Play.Stop.
        let choices = [28, 42, 1, 2, 3, 4, 5, 6, 10, 12, 9];
        let mut data = vec![selector, 3, 5];
        data.extend(conversation(&choices, 4096));
        let events = check_client(&data);
        let publishing = selector & 1 == 1;
        assert!(
            events.contains(&if publishing {
                ClientEvent::Publishing { stream_id: 1 }
            } else {
                ClientEvent::Playing { stream_id: 1 }
            }),
            "{selector}: {events:?}"
        );
        let media = events
            .iter()
            .filter(|e| matches!(e, ClientEvent::Media(_)))
            .count();
        assert_eq!(
            media, 5,
            "{selector}: audio, video, two aggregate parts, AMF3 data"
        );
        assert_eq!(
            events
                .iter()
                .any(|e| matches!(e, ClientEvent::Stopped { .. })),
            !publishing
        );
    }
}

#[test]
fn hand_picked() {
    let cases: &[&[u8]] = &[
        b"",
        &[1],
        &[
            0, 0, 0, 0x03, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x09, 0x01, 0, 0, 0, 0xFF, 0xFF,
        ],
        // Type-3 chunk on a fresh chunk stream.
        &[1, 0, 0, 0xC4, 1, 2, 3],
        // SetChunkSize 0 and 0x80000000.
        &[1, 0, 0, 0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0, 0],
        &[
            1, 0, 0, 0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0x80, 0, 0, 0,
        ],
        // An aggregate whose record claims more than it carries.
        &[
            0, 0, 0, 0x06, 0, 0, 0, 0, 0, 12, 22, 1, 0, 0, 0, 9, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
        // A command that is only a name.
        &[
            0, 0, 0, 0x03, 0, 0, 0, 0, 0, 11, 20, 0, 0, 0, 0, 2, 0, 8, b'o', b'n', b'S', b't',
            b'a', b't', b'u', b's',
        ],
    ];
    for case in cases {
        check_client(case);
    }
}
