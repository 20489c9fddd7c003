//! The Annex B → FLV video packer (`codec::flv_video`), as WebRTC and SRT ingest use it: real
//! x264 parameter sets become one sequence header, frames before it are dropped and reported,
//! a changed SPS makes a new header, and random bytes never panic (the fuzz target's property,
//! over a few thousand inputs, on stable).

use sluice_proto::codec::flv_video::{FlvVideoPacker, VideoCodecKind};
use sluice_proto::codec::{AvcDecoderConfig, VideoPacket, VideoPacketKind};

/// SPS and PPS libx264 wrote for 1280x720 High profile (the FLV record's sets).
const SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
    0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x83, 0x19, 0x60,
];
const PPS: &[u8] = &[0x68, 0xef, 0x8f, 0xcb];

fn annexb(nals: &[&[u8]]) -> Vec<u8> {
    nals.iter()
        .flat_map(|nal| [&[0u8, 0, 0, 1][..], nal].concat())
        .collect()
}

#[test]
fn parameter_sets_become_one_header_then_frames() {
    let mut packer = FlvVideoPacker::new(VideoCodecKind::H264);
    let mut errors = Vec::new();
    // A P frame before any parameter set: nothing a player could decode.
    let early = packer.pack(&annexb(&[&[0x41, 0x9a, 0x01]]), 0, &mut errors);
    assert!(early.unconfigured && early.frame.is_none() && early.sequence_header.is_none());

    let idr = annexb(&[&[0x09, 0xf0], SPS, PPS, &[0x65, 0x88, 0x84, 0x00]]);
    let packed = packer.pack(&idr, 0, &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    let header = packed.sequence_header.expect("a sequence header");
    let parsed = VideoPacket::parse(&header).unwrap();
    assert_eq!(parsed.kind, VideoPacketKind::SequenceHeader);
    let record = AvcDecoderConfig::parse(parsed.data).unwrap();
    assert_eq!((record.sps[0].as_ref(), record.pps[0].as_ref()), (SPS, PPS));
    let frame = packed.frame.expect("the IDR frame");
    assert!(packed.keyframe);
    // Keyframe, AVC, NALU, composition time 0, then the IDR slice alone (AUD and sets out).
    assert_eq!(&frame[..5], &[0x17, 1, 0, 0, 0]);
    assert_eq!(&frame[5..], &[0, 0, 0, 4, 0x65, 0x88, 0x84, 0x00]);

    // The same sets again: no new header.
    let again = packer.pack(&idr, 0, &mut errors);
    assert!(again.sequence_header.is_none() && again.frame.is_some());
    // A changed PPS: a new header.
    let changed = annexb(&[SPS, &[0x68, 0xee, 0x3c, 0x80], &[0x65, 0x88]]);
    assert!(
        packer
            .pack(&changed, 0, &mut errors)
            .sequence_header
            .is_some()
    );
}

#[test]
fn random_access_units_never_panic() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..4000 {
        let codec = if round % 2 == 0 {
            VideoCodecKind::H264
        } else {
            VideoCodecKind::H265
        };
        let mut packer = FlvVideoPacker::new(codec);
        let len = (next() % 300) as usize;
        let mut data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Start codes often enough that NAL units get parsed.
        for i in (0..len.saturating_sub(4)).step_by(23) {
            data[i..i + 4].copy_from_slice(&[0, 0, 0, 1]);
        }
        let mut errors = Vec::new();
        let mut configured = false;
        for _ in 0..3 {
            let packed = packer.pack(&data, 0, &mut errors);
            configured |= packed.sequence_header.is_some();
            assert!(packed.frame.is_none() || configured);
        }
        for nal in sluice_proto::codec::annexb::annexb_nalus(&data) {
            let _ = sluice_proto::codec::h264::is_b_slice(nal);
        }
    }
}
