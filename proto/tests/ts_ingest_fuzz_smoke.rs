//! Stable stand-in for the `ts_ingest` fuzz target, run by CI on every change: the exact
//! property `cargo +nightly fuzz run ts_ingest` checks (`proto/fuzz/checks/ts_ingest.rs`) —
//! no panic, bounded, every message readable — over random bytes and over real-looking streams
//! (H.264 + AAC, H.265, MP3) with bytes flipped, packets dropped, duplicated and cut, pushed in
//! every chunking. Well under two seconds.

#[path = "../fuzz/checks/ts_ingest.rs"]
mod ts_ingest_check;

#[path = "common/synthetic_ts.rs"]
mod synthetic_ts;

use proptest::prelude::*;
use sluice_proto::ts::{AudioStreamType, PACKET_SIZE, Track, VideoStreamType};
use synthetic_ts::*;
use ts_ingest_check::check_ts_ingest;

fn h265_stream() -> Vec<u8> {
    let mut muxer = muxer(Some(VideoStreamType::H265), None);
    let mut out = Vec::new();
    for index in 0..6u64 {
        let au = h265_access_unit(index % 3 == 0, 120, index as u8);
        write(
            &mut muxer,
            &mut out,
            Track::Video,
            index * 3000 + 6000,
            index * 3000,
            index % 3 == 0,
            &au,
        );
    }
    out
}

fn mp3_stream() -> Vec<u8> {
    let mut muxer = muxer(None, Some(AudioStreamType::Mpeg2Audio));
    let mut out = Vec::new();
    for index in 0..4u64 {
        let mut frames = Vec::new();
        for _ in 0..2 {
            // MPEG-2 layer III, 64 kbit/s, 22.05 kHz, mono, padded: 209 bytes.
            let mut frame = vec![0xff, 0xf3, 0x82, 0xc0];
            frame.resize(209, index as u8);
            frames.extend_from_slice(&frame);
        }
        write_at(
            &mut muxer,
            &mut out,
            Track::Audio,
            index * 4700,
            true,
            &frames,
        );
    }
    out
}

fn sample(choice: u8) -> Vec<u8> {
    match choice % 3 {
        0 => h264_aac_stream(8, 8_589_900_000),
        1 => h265_stream(),
        _ => mp3_stream(),
    }
}

/// Applies byte edits, packet drops and a duplicate, then a cut.
fn damage(
    stream: Vec<u8>,
    edits: &[(prop::sample::Index, u8)],
    drops: &[prop::sample::Index],
    duplicate: Option<prop::sample::Index>,
    cut: Option<prop::sample::Index>,
) -> Vec<u8> {
    let mut packets: Vec<Vec<u8>> = stream.chunks(PACKET_SIZE).map(<[u8]>::to_vec).collect();
    for drop in drops {
        if packets.len() > 1 {
            let at = drop.index(packets.len());
            packets.remove(at);
        }
    }
    if let Some(duplicate) = duplicate {
        let at = duplicate.index(packets.len());
        let copy = packets[at].clone();
        packets.insert(at, copy);
    }
    let mut bytes: Vec<u8> = packets.concat();
    for (index, value) in edits {
        let at = index.index(bytes.len());
        bytes[at] = *value;
    }
    if let Some(cut) = cut {
        // Remove a run of bytes from the middle: alignment is lost and must be found again.
        let at = cut.index(bytes.len());
        let end = (at + 1 + at % 300).min(bytes.len());
        bytes.drain(at..end);
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn random_bytes(data in prop::collection::vec(any::<u8>(), 0..2000)) {
        check_ts_ingest(&data);
    }

    #[test]
    fn random_packets_behind_real_tables(
        selector in any::<u8>(),
        bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 184), 0..12),
        pids in prop::collection::vec(prop_oneof![Just(0x100u16), Just(0x101), any::<u16>()], 12),
        flags in prop::collection::vec(any::<u8>(), 12),
    ) {
        // Tables and one good frame first, so random packets reach PES reassembly and codecs.
        let mut data = vec![selector];
        data.extend(h264_aac_stream(1, 0));
        for (index, body) in bodies.iter().enumerate() {
            let pid = pids[index];
            data.extend_from_slice(&[
                0x47,
                (flags[index] & 0x40) | ((pid >> 8) as u8 & 0x1f),
                pid as u8,
                0x10 | (flags[index] & 0x2f),
            ]);
            data.extend_from_slice(body);
        }
        check_ts_ingest(&data);
    }

    #[test]
    fn damaged_streams(
        choice in any::<u8>(),
        selector in any::<u8>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..12),
        drops in prop::collection::vec(any::<prop::sample::Index>(), 0..3),
        duplicate in proptest::option::of(any::<prop::sample::Index>()),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let mut data = vec![selector];
        data.extend(damage(sample(choice), &edits, &drops, duplicate, cut));
        check_ts_ingest(&data);
    }
}

/// A record for the check's elementary-stream mode: `[flags][u16 length][bytes]`.
fn record(flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![flags];
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Real-looking access units and audio frames, damaged, packed by our muxer: the NAL, ADTS
    /// and MPEG audio paths see broken payloads inside valid transport packets.
    #[test]
    fn damaged_frames_in_valid_packets(
        tables in 1u8..4,
        chunking in any::<u8>(),
        kinds in prop::collection::vec(any::<u8>(), 1..12),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
    ) {
        let selector = (chunking & 0xe3) | (tables << 2) | 0x10;
        let (vps, sps, pps) = hevc_parameter_sets();
        let mut data = vec![selector];
        for (index, kind) in kinds.iter().enumerate() {
            let keyframe = kind & 0x10 != 0;
            let mut payload = match kind % 5 {
                0 if tables == 2 => h265_access_unit(keyframe, 40, index as u8),
                0 => h264_access_unit(keyframe, 40, index as u8),
                1 => adts_frames(&aac_config(), 1 + usize::from(kind >> 6), 12, 0),
                2 => {
                    let mut frame = vec![0xff, 0xfb, 0x90, 0x64];
                    frame.resize(417, 0);
                    frame
                }
                3 => {
                    // Parameter sets alone, or with a stray delimiter.
                    let mut au = Vec::new();
                    for set in [&vps[..], &sps[..], &pps[..], H264_SPS, H264_PPS] {
                        put_nal(&mut au, set);
                    }
                    au
                }
                _ => vec![*kind; usize::from(*kind)],
            };
            if let Some((at, value)) = edits.get(index) {
                if !payload.is_empty() {
                    let at = at.index(payload.len());
                    payload[at] = *value;
                }
            }
            let audio = matches!(kind % 5, 1 | 2);
            let flags = u8::from(audio) | (u8::from(keyframe) << 1) | ((kind >> 5) << 2);
            data.extend(record(flags, &payload));
        }
        check_ts_ingest(&data);
    }
}

/// Every stream undamaged in every chunking, and a few hand-picked inputs.
#[test]
fn clean_streams_and_hand_picked() {
    // Sequence headers and frames: H.264 + AAC, H.265, MP3.
    for (choice, expected) in [(0, 1 + 8 + 1 + 16), (1, 1 + 6), (2, 8)] {
        // Selectors without canned tables in front (bits 2-3 clear), every chunking mode.
        for selector in [0u8, 1, 2, 3, 0x73, 0xf3] {
            let mut data = vec![selector];
            data.extend(sample(choice));
            assert_eq!(
                check_ts_ingest(&data),
                expected,
                "stream {choice}, selector {selector}"
            );
        }
    }
    let cases: &[&[u8]] = &[
        b"",
        &[0],
        &[3, 0x47],
        &[1, 0x47, 0x47, 0x47, 0x47],
        &[0; 400],
        &[0x47; 600],
        &[0xff; 600],
    ];
    for case in cases {
        check_ts_ingest(case);
    }
}
