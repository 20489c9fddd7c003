//! Codec structures survive write → parse: AVC and HEVC decoder configuration records, ADTS
//! headers, and AVCC → Annex B conversion (NAL units come back out of the start-code stream,
//! behind an access unit delimiter and, at random access points, the parameter sets).

use bytes::Bytes;
use proptest::prelude::*;
use sluice_proto::codec::annexb::annexb_nalus;
use sluice_proto::codec::h265::HevcProfileTierLevel;
use sluice_proto::codec::{
    AdtsHeader, AnnexBWriter, AudioSpecificConfig, AvcDecoderConfig, AvccNalus, HevcDecoderConfig,
};

fn arb_parameter_sets(header: u8) -> impl Strategy<Value = Vec<Bytes>> {
    prop::collection::vec(
        prop::collection::vec(any::<u8>(), 0..40).prop_map(move |mut body| {
            body.insert(0, header);
            Bytes::from(body)
        }),
        0..4,
    )
}

fn arb_length_size() -> impl Strategy<Value = u8> {
    prop_oneof![Just(1u8), Just(2), Just(4)]
}

/// NAL unit bodies with no zero bytes, so a start-code scan finds exactly their boundaries.
fn arb_nal(types: &'static [u8], hevc: bool) -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(types),
        prop::collection::vec(1u8..=255, 0..60),
    )
        .prop_map(move |(nal_type, mut body)| {
            if hevc {
                body.splice(0..0, [nal_type << 1, 0x01]);
            } else {
                body.insert(0, 0x60 | nal_type);
            }
            body
        })
}

fn to_avcc(nalus: &[Vec<u8>], length_size: u8) -> Vec<u8> {
    let mut avcc = Vec::new();
    for nal in nalus {
        let length = (nal.len() as u32).to_be_bytes();
        avcc.extend_from_slice(&length[4 - usize::from(length_size)..]);
        avcc.extend_from_slice(nal);
    }
    avcc
}

proptest! {
    #[test]
    fn avc_record_round_trip(
        profile in any::<u8>(), compatibility in any::<u8>(), level in any::<u8>(),
        nalu_length_size in arb_length_size(),
        sps in arb_parameter_sets(0x67), pps in arb_parameter_sets(0x68),
    ) {
        let config = AvcDecoderConfig {
            profile_indication: profile,
            profile_compatibility: compatibility,
            level_indication: level,
            nalu_length_size,
            sps,
            pps,
        };
        let mut record = Vec::new();
        config.write(&mut record);
        prop_assert_eq!(AvcDecoderConfig::parse(&record).unwrap(), config);
    }

    #[test]
    fn hevc_record_round_trip(
        profile_space in 0u8..4, tier_flag in any::<bool>(), profile_idc in 0u8..32,
        compatibility in any::<u32>(), constraint in 0u64..(1 << 48), level in any::<u8>(),
        chroma in 0u8..4, luma in 8u8..16, chroma_depth in 8u8..16,
        nalu_length_size in arb_length_size(),
        vps in arb_parameter_sets(0x40), sps in arb_parameter_sets(0x42), pps in arb_parameter_sets(0x44),
    ) {
        let config = HevcDecoderConfig {
            general: HevcProfileTierLevel {
                profile_space,
                tier_flag,
                profile_idc,
                profile_compatibility_flags: compatibility,
                constraint_indicator_flags: constraint,
                level_idc: level,
            },
            chroma_format_idc: chroma,
            bit_depth_luma: luma,
            bit_depth_chroma: chroma_depth,
            nalu_length_size,
            vps,
            sps,
            pps,
        };
        let mut record = Vec::new();
        config.write(&mut record);
        prop_assert_eq!(HevcDecoderConfig::parse(&record).unwrap(), config);
    }

    #[test]
    fn adts_round_trip(profile in 0u8..4, index in 0u8..13, channels in 0u8..8, raw_len in 0usize..=8184) {
        let config = AudioSpecificConfig {
            object_type: profile + 1,
            sampling_frequency_index: index,
            sampling_frequency: 0,
            channel_configuration: channels,
            frame_length_960: false,
            sbr: false,
            ps: false,
            extension_sampling_frequency: None,
        };
        let header = AdtsHeader::for_config(&config).unwrap().with_frame_len(raw_len).unwrap();
        let bytes = header.encode();
        let parsed = AdtsHeader::parse(&bytes).unwrap();
        prop_assert_eq!(parsed, header);
        prop_assert_eq!(parsed.frame_len, raw_len + 7);
        // And the two-byte AudioSpecificConfig the header implies parses back to the same.
        let asc = AudioSpecificConfig::parse(&parsed.audio_specific_config().to_bytes()).unwrap();
        prop_assert_eq!(AdtsHeader::for_config(&asc).unwrap().with_frame_len(raw_len).unwrap(), header);
    }

    #[test]
    fn h264_avcc_to_annexb(
        nalus in prop::collection::vec(arb_nal(&[1, 5, 6, 7, 8, 9], false), 0..8),
        length_size in arb_length_size(),
        keyframe in any::<bool>(),
    ) {
        let config = AvcDecoderConfig {
            profile_indication: 100,
            profile_compatibility: 0,
            level_indication: 31,
            nalu_length_size: length_size,
            sps: vec![Bytes::from_static(&[0x67, 0x64, 0x00, 0x1f])],
            pps: vec![Bytes::from_static(&[0x68, 0xee, 0x3c, 0x80])],
        };
        let avcc = to_avcc(&nalus, length_size);
        let parsed: Vec<&[u8]> = AvccNalus::new(&avcc, length_size).unwrap().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(parsed.len(), nalus.len());

        let writer = AnnexBWriter::h264(&config);
        let mut out = Vec::new();
        let info = writer.write(&avcc, keyframe, &mut out).unwrap();
        prop_assert_eq!(info.len, out.len());
        let idr = nalus.iter().any(|n| n[0] & 0x1f == 5);
        let inband_sps = nalus.iter().any(|n| n[0] & 0x1f == 7);
        prop_assert_eq!(info.random_access, idr);
        prop_assert_eq!(info.parameter_sets_inserted, (idr || keyframe) && !inband_sps);

        let mut expected: Vec<&[u8]> = vec![&[0x09, 0xf0]];
        if info.parameter_sets_inserted {
            expected.push(&config.sps[0]);
            expected.push(&config.pps[0]);
        }
        expected.extend(nalus.iter().filter(|n| n[0] & 0x1f != 9).map(|n| &n[..]));
        let found: Vec<&[u8]> = annexb_nalus(&out).collect();
        prop_assert_eq!(found, expected);
    }

    #[test]
    fn h265_avcc_to_annexb(
        nalus in prop::collection::vec(arb_nal(&[1, 19, 21, 32, 33, 34, 35, 39], true), 0..8),
        keyframe in any::<bool>(),
    ) {
        let record = [
            0x01u8, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 0x5d, 0xf0, 0x00, 0xfc, 0xfd, 0xf8,
            0xf8, 0x00, 0x00, 0x0f, 0x03,
            0xa0, 0x00, 0x01, 0x00, 0x03, 0x40, 0x01, 0x0c,
            0xa1, 0x00, 0x01, 0x00, 0x03, 0x42, 0x01, 0x01,
            0xa2, 0x00, 0x01, 0x00, 0x03, 0x44, 0x01, 0xc0,
        ];
        let config = HevcDecoderConfig::parse(&record).unwrap();
        let avcc = to_avcc(&nalus, 4);
        let writer = AnnexBWriter::h265(&config);
        let mut out = Vec::new();
        let info = writer.write(&avcc, keyframe, &mut out).unwrap();
        let nal_type = |n: &Vec<u8>| (n[0] >> 1) & 0x3f;
        let irap = nalus.iter().any(|n| (16..=23).contains(&nal_type(n)));
        let inband_sps = nalus.iter().any(|n| nal_type(n) == 33);
        prop_assert_eq!(info.random_access, irap);
        prop_assert_eq!(info.parameter_sets_inserted, (irap || keyframe) && !inband_sps);
        let mut expected: Vec<&[u8]> = vec![&[0x46, 0x01, 0x50]];
        if info.parameter_sets_inserted {
            expected.extend([&[0x40u8, 0x01, 0x0c][..], &[0x42, 0x01, 0x01], &[0x44, 0x01, 0xc0]]);
        }
        expected.extend(nalus.iter().filter(|n| nal_type(n) != 35).map(|n| &n[..]));
        let found: Vec<&[u8]> = annexb_nalus(&out).collect();
        prop_assert_eq!(found, expected);
    }
}
