//! Every codec parser is total: random bytes, and real structures truncated and mutated, give
//! a value or an error — never a panic, never an allocation the input cannot justify.

use proptest::prelude::*;
use sluice_proto::codec::annexb::annexb_nalus;
use sluice_proto::codec::{
    AdtsHeader, AnnexBWriter, AudioPacket, AudioSpecificConfig, AvcDecoderConfig, AvccNalus,
    H264Sps, HevcDecoderConfig, HevcSps, MpegAudioHeader, VideoPacket,
};

/// Real structures from ffmpeg/x264/x265 output, to mutate.
const AVC_RECORD: &[u8] = &[
    0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x1a, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50,
    0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x83,
    0x19, 0x60, 0x01, 0x00, 0x04, 0x68, 0xef, 0x8f, 0xcb, 0xfd, 0xf8, 0xf8, 0x00,
];
const HEVC_SPS: &[u8] = &[
    0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03,
    0x00, 0x78, 0xa0, 0x03, 0xc0, 0x80, 0x11, 0x07, 0xcb, 0x96, 0x56, 0x54, 0xa4, 0xc2, 0xf0, 0x16,
    0x80, 0x80, 0x00, 0x00, 0x03, 0x00, 0x80, 0x00, 0x00, 0x0c, 0x84,
];

fn parse_everything(data: &[u8]) {
    let _ = AvcDecoderConfig::parse(data);
    let _ = HevcDecoderConfig::parse(data);
    let _ = H264Sps::parse(data);
    let _ = HevcSps::parse(data);
    let _ = AudioSpecificConfig::parse(data);
    let _ = AdtsHeader::parse(data);
    let _ = MpegAudioHeader::parse(data);
    let _ = VideoPacket::parse(data);
    let _ = AudioPacket::parse(data);
    let _ = annexb_nalus(data).count();
    for size in [1, 2, 4] {
        let _ = AvccNalus::new(data, size).unwrap().count();
    }
    if let Ok(config) = AvcDecoderConfig::parse(AVC_RECORD) {
        let mut out = Vec::new();
        if AnnexBWriter::h264(&config)
            .write(data, true, &mut out)
            .is_err()
        {
            assert!(out.is_empty(), "a failed conversion writes nothing");
        }
    }
    if let Ok(sps) = H264Sps::parse(data) {
        assert!(sps.width > 0 && sps.height > 0);
        assert!(sps.width <= 65536 && sps.height <= 2 * 65536);
    }
    if let Ok(packet) = VideoPacket::parse(data) {
        assert!(packet.data.len() < data.len());
    }
}

fn mutate(base: &[u8], edits: &[(prop::sample::Index, u8)], cut: prop::sample::Index) -> Vec<u8> {
    let mut data = base.to_vec();
    for (index, byte) in edits {
        let position = index.index(data.len());
        data[position] = *byte;
    }
    data.truncate(cut.index(data.len() + 1));
    data
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn random_bytes(data in prop::collection::vec(any::<u8>(), 0..300)) {
        parse_everything(&data);
    }

    #[test]
    fn sps_like_bytes(header in prop_oneof![Just(vec![0x67u8]), Just(vec![0x42u8, 0x01])],
                      body in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut data = header;
        data.extend(body);
        parse_everything(&data);
    }

    #[test]
    fn mutated_real_structures(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
    ) {
        parse_everything(&mutate(AVC_RECORD, &edits, cut));
        parse_everything(&mutate(&AVC_RECORD[8..34], &edits, cut));
        parse_everything(&mutate(HEVC_SPS, &edits, cut));
        parse_everything(&mutate(&[0x12, 0x10, 0x56, 0xe5, 0x00], &edits, cut));
        parse_everything(&mutate(&[0xff, 0xf1, 0x50, 0x80, 0x2b, 0x3f, 0xfc], &edits, cut));
    }
}
