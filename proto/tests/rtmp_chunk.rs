//! Chunk stream round trips: the hub's header + shared body equals the writer's output and
//! reads back, at any chunk size; any fragmenting of the input; chunk streams interleaved
//! chunk by chunk; compressed headers; extended timestamps.

use bytes::BytesMut;
use proptest::prelude::*;
use sluice_proto::rtmp::chunk::{
    ChunkReader, ChunkWriter, MessageHeader, RtmpMessage, chunked_body_len, fmt0_header_len,
    write_chunked_body, write_fmt0_header,
};

const EXTENDED: u32 = 0x00FF_FFFF;

fn chunk_size() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(128u32),
        Just(4096),
        Just(60000),
        Just(65536),
        128u32..=65536,
    ]
}

fn csid() -> impl Strategy<Value = u32> {
    prop_oneof![2u32..64, 64u32..320, 320u32..=65599]
}

fn timestamp() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..100_000, (EXTENDED - 2)..=(EXTENDED + 2), any::<u32>()]
}

/// A media-like message: type 8/9/18, payload up to 200 KB (a keyframe) but mostly small.
fn message() -> impl Strategy<Value = (MessageHeader, Vec<u8>)> {
    (
        timestamp(),
        prop_oneof![Just(8u8), Just(9), Just(18), Just(20)],
        0u32..4,
        prop_oneof![
            4 => prop::collection::vec(any::<u8>(), 0..600),
            1 => (0usize..200_000, any::<u8>()).prop_map(|(len, fill)| vec![fill; len]),
        ],
    )
        .prop_map(|(timestamp, type_id, stream_id, payload)| {
            let header = MessageHeader {
                timestamp,
                length: payload.len() as u32,
                type_id,
                stream_id,
            };
            (header, payload)
        })
}

fn read_fragmented(reader: &mut ChunkReader, wire: &[u8], cuts: &[usize]) -> Vec<RtmpMessage> {
    let mut messages = Vec::new();
    let mut rest = wire;
    let mut cuts = cuts.iter().cycle();
    while !rest.is_empty() {
        let cut = cuts
            .next()
            .copied()
            .unwrap_or(rest.len())
            .clamp(1, rest.len());
        let (mut piece, tail) = rest.split_at(cut);
        rest = tail;
        while let Some(message) = reader.read_message(&mut piece).unwrap() {
            messages.push(message);
        }
        assert!(
            piece.is_empty(),
            "read_message consumes everything it is given"
        );
    }
    messages
}

/// Splits one message into its chunks as separate buffers (type-0 header on the first).
fn chunks_of(csid: u32, header: &MessageHeader, payload: &[u8], chunk_size: u32) -> Vec<Vec<u8>> {
    let ext = (header.timestamp >= EXTENDED).then_some(header.timestamp);
    let mut first = Vec::new();
    write_fmt0_header(&mut first, csid, header);
    let mut pieces = payload.chunks(chunk_size as usize);
    first.extend_from_slice(pieces.next().unwrap_or(&[]));
    let mut chunks = vec![first];
    for piece in pieces {
        let mut chunk = Vec::new();
        // Type-3 basic header, spelled out from the spec rather than borrowed from the code
        // under test.
        if csid < 64 {
            chunk.push(0xC0 | csid as u8);
        } else if csid < 320 {
            chunk.extend_from_slice(&[0xC0, (csid - 64) as u8]);
        } else {
            chunk.extend_from_slice(&[0xC1, (csid - 64) as u8, ((csid - 64) >> 8) as u8]);
        }
        if let Some(ext) = ext {
            chunk.extend_from_slice(&ext.to_be_bytes());
        }
        chunk.extend_from_slice(piece);
        chunks.push(chunk);
    }
    chunks
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// The hub's fan-out path: fmt0 header + shared chunked body == ChunkWriter (type-0
    /// headers), and ChunkReader gets the message back, at chunk sizes 128..=65536.
    #[test]
    fn header_plus_shared_body_equals_writer(
        (header, payload) in message(),
        chunk_size in chunk_size(),
        csid in csid(),
        cuts in prop::collection::vec(1usize..5000, 1..8),
    ) {
        let ext = (header.timestamp >= EXTENDED).then_some(header.timestamp);
        let mut hub = Vec::new();
        write_fmt0_header(&mut hub, csid, &header);
        prop_assert_eq!(hub.len(), fmt0_header_len(csid, header.timestamp));
        let mut body = BytesMut::new();
        write_chunked_body(&mut body, &payload, chunk_size, csid, ext);
        prop_assert_eq!(body.len(), chunked_body_len(payload.len(), chunk_size, csid, ext));
        hub.extend_from_slice(&body);

        let mut written = Vec::new();
        ChunkWriter::new(chunk_size).write(&mut written, csid, &header, &payload);
        prop_assert_eq!(&hub, &written);

        let mut reader = ChunkReader::default();
        reader.set_chunk_size(chunk_size).unwrap();
        let messages = read_fragmented(&mut reader, &hub, &cuts);
        prop_assert_eq!(messages.len(), 1);
        prop_assert_eq!(messages[0].csid, csid);
        prop_assert_eq!(messages[0].header, header);
        prop_assert_eq!(&messages[0].payload[..], &payload[..]);
    }

    /// Several messages per chunk stream, chunks of different streams interleaved at random,
    /// the whole read in random fragments.
    #[test]
    fn interleaved_chunk_streams(
        streams in prop::collection::vec((csid(), prop::collection::vec(message(), 1..4)), 1..5),
        chunk_size in prop_oneof![Just(128u32), 128u32..2048],
        picks in prop::collection::vec(any::<prop::sample::Index>(), 64),
        cuts in prop::collection::vec(1usize..3000, 1..8),
    ) {
        // Distinct chunk stream ids.
        let mut seen = std::collections::HashSet::new();
        let streams: Vec<_> = streams.into_iter().filter(|(csid, _)| seen.insert(*csid)).collect();
        let mut queues: Vec<std::collections::VecDeque<Vec<u8>>> = streams
            .iter()
            .map(|(csid, messages)| {
                messages
                    .iter()
                    .flat_map(|(header, payload)| chunks_of(*csid, header, payload, chunk_size))
                    .collect()
            })
            .collect();
        let mut wire = Vec::new();
        let mut turn = 0;
        while queues.iter().any(|q| !q.is_empty()) {
            let live: Vec<usize> = (0..queues.len()).filter(|&i| !queues[i].is_empty()).collect();
            let pick = live[picks[turn % picks.len()].index(live.len())];
            turn += 1;
            wire.extend_from_slice(&queues[pick].pop_front().unwrap());
        }

        let mut reader = ChunkReader::default();
        reader.set_chunk_size(chunk_size).unwrap();
        let messages = read_fragmented(&mut reader, &wire, &cuts);
        for (csid, sent) in &streams {
            let got: Vec<_> = messages.iter().filter(|m| m.csid == *csid).collect();
            prop_assert_eq!(got.len(), sent.len());
            for (message, (header, payload)) in got.iter().zip(sent) {
                prop_assert_eq!(message.header, *header);
                prop_assert_eq!(&message.payload[..], &payload[..]);
            }
        }
        prop_assert_eq!(reader.partial_messages(), 0);
    }

    /// The compressing writer (type 1/2/3 headers) round trips through the reader, including
    /// timestamps going backwards, wrapping and crossing the extended boundary.
    #[test]
    fn compressed_headers_round_trip(
        messages in prop::collection::vec((csid(), message()), 1..24),
        chunk_size in chunk_size(),
        cuts in prop::collection::vec(1usize..2000, 1..8),
    ) {
        let mut writer = ChunkWriter::with_header_compression(chunk_size);
        let mut wire = Vec::new();
        for (csid, (header, payload)) in &messages {
            writer.write(&mut wire, *csid, header, payload);
        }
        let mut reader = ChunkReader::default();
        reader.set_chunk_size(chunk_size).unwrap();
        let got = read_fragmented(&mut reader, &wire, &cuts);
        prop_assert_eq!(got.len(), messages.len());
        for (message, (csid, (header, payload))) in got.iter().zip(&messages) {
            prop_assert_eq!(message.csid, *csid);
            prop_assert_eq!(message.header, *header);
            prop_assert_eq!(&message.payload[..], &payload[..]);
        }
    }
}

/// Every chunk size from 128 to 60000 in steps, for a 100 KB keyframe and an 8 KB P-frame
/// (deterministic complement to the sampled property above).
#[test]
fn shared_body_matches_writer_across_chunk_sizes() {
    let keyframe: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
    let p_frame: Vec<u8> = (0..8_000u32).map(|i| (i * 13) as u8).collect();
    for chunk_size in (128..=60000).step_by(997).chain([128, 4096, 60000]) {
        for (timestamp, payload) in [(40u32, &keyframe), (EXTENDED + 5, &p_frame)] {
            let header = MessageHeader {
                timestamp,
                length: payload.len() as u32,
                type_id: 9,
                stream_id: 1,
            };
            let ext = (timestamp >= EXTENDED).then_some(timestamp);
            let mut hub = Vec::new();
            write_fmt0_header(&mut hub, 6, &header);
            write_chunked_body(&mut hub, payload, chunk_size, 6, ext);
            let mut written = Vec::new();
            ChunkWriter::new(chunk_size).write(&mut written, 6, &header, payload);
            assert_eq!(hub, written, "chunk size {chunk_size}");
            let mut reader = ChunkReader::default();
            reader.set_chunk_size(chunk_size).unwrap();
            let messages = reader.read_all(&hub).unwrap();
            assert_eq!(messages.len(), 1);
            assert_eq!(&messages[0].payload[..], &payload[..]);
        }
    }
}

/// Known bytes for each header type, hand-assembled from the spec.
#[test]
fn header_types_known_bytes() {
    let wire: &[u8] = &[
        // fmt 0, csid 4: ts 1000, len 3, audio, stream 1.
        0x04, 0x00, 0x03, 0xE8, 0x00, 0x00, 0x03, 0x08, 0x01, 0x00, 0x00, 0x00, b'a', b'b', b'c',
        // fmt 1, csid 4: delta 23, len 2, audio.
        0x44, 0x00, 0x00, 0x17, 0x00, 0x00, 0x02, 0x08, b'd', b'e',
        // fmt 2, csid 4: delta 20.
        0x84, 0x00, 0x00, 0x14, b'f', b'g', // fmt 3, csid 4: same delta again.
        0xC4, b'h', b'i',
        // fmt 0 with a 2-byte basic header (csid 64 + 10) and extended timestamp 0x01000000.
        0x00, 10, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x01, 0x12, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00,
        0x00, 0x00, b'z',
    ];
    let messages = ChunkReader::default().read_all(wire).unwrap();
    let summary: Vec<_> = messages
        .iter()
        .map(|m| {
            (
                m.csid,
                m.header.timestamp,
                m.header.type_id,
                m.payload.to_vec(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (4, 1000, 8, b"abc".to_vec()),
            (4, 1023, 8, b"de".to_vec()),
            (4, 1043, 8, b"fg".to_vec()),
            (4, 1063, 8, b"hi".to_vec()),
            (74, 0x0100_0000, 0x12, b"z".to_vec()),
        ]
    );
}

/// ffmpeg and Flash repeat the extended timestamp in every type-3 chunk; nginx-rtmp-style
/// encoders do not. Both read back to the same message.
#[test]
fn extended_timestamp_repeated_or_not() {
    let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    let header = MessageHeader {
        timestamp: 0x0123_4567,
        length: 300,
        type_id: 9,
        stream_id: 1,
    };
    let mut repeated = Vec::new();
    ChunkWriter::new(128).write(&mut repeated, 6, &header, &payload);

    let mut not_repeated = Vec::new();
    write_fmt0_header(&mut not_repeated, 6, &header);
    write_chunked_body(&mut not_repeated, &payload, 128, 6, None);

    for wire in [repeated, not_repeated] {
        let mut wire = wire;
        // A trailing message lets the reader decide about the last continuation chunk.
        write_fmt0_header(
            &mut wire,
            3,
            &MessageHeader {
                timestamp: 0,
                length: 1,
                type_id: 20,
                stream_id: 0,
            },
        );
        wire.push(0);
        let messages = ChunkReader::default().read_all(&wire).unwrap();
        assert_eq!(messages[0].header, header);
        assert_eq!(&messages[0].payload[..], &payload[..]);
    }
}

/// `media_prefix` keeps only the head of audio/video payloads, whole other messages, and the
/// stream stays in sync across chunk boundaries and fragmenting.
#[test]
fn media_prefix_keeps_heads_of_media_only() {
    use sluice_proto::rtmp::chunk::{ChunkReaderConfig, ChunkWriter, MessageHeader};
    let video: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    let command = vec![7u8; 300];
    for chunk_size in [128u32, 4096, 60_000] {
        let mut writer = ChunkWriter::new(chunk_size);
        let mut wire = Vec::new();
        for (type_id, payload) in [(9u8, &video), (20, &command), (8, &video[..20].to_vec())] {
            let header = MessageHeader {
                timestamp: 5,
                length: payload.len() as u32,
                type_id,
                stream_id: 1,
            };
            writer.write(
                &mut wire,
                if type_id == 20 { 3 } else { 6 },
                &header,
                payload,
            );
        }
        let mut reader = sluice_proto::rtmp::ChunkReader::new(ChunkReaderConfig {
            media_prefix: Some(16),
            ..ChunkReaderConfig::default()
        });
        reader.set_chunk_size(chunk_size).unwrap();
        let mut messages = Vec::new();
        for piece in wire.chunks(777) {
            messages.extend(reader.read_all(piece).unwrap());
        }
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[0].header.length, 100_000);
        assert_eq!(&messages[0].payload[..], &video[..16]);
        assert_eq!(&messages[1].payload[..], &command[..]);
        assert_eq!(&messages[2].payload[..], &video[..16]);
    }
}
