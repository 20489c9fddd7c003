//! Unit tests: box sizes add up, data offsets land in the mdat, the init segment decodes back
//! (with `mp4-atom`'s decoder, an independent reading of our hand-written `moof`), and bad
//! input is an error that leaves the output untouched.

use mp4_atom::{Any, Codec, Decode, Ftyp, Moof, Moov};

use super::fragment::{NON_SYNC_SAMPLE_FLAGS, SYNC_SAMPLE_FLAGS};
use super::*;

const SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x80, 0x50, 0x05, 0xbb, 0x01, 0x6a, 0x02, 0x02, 0x02, 0x80,
    0x00, 0x00, 0x03, 0x00, 0x80, 0x00, 0x00, 0x1e, 0x07, 0x8c, 0x18, 0xcd,
];
const PPS: &[u8] = &[0x68, 0xe9, 0x7b, 0x2c, 0x8b];

/// High profile, level 3.1, 4-byte lengths, one SPS and one PPS (x264, 1280x720).
fn avc_record() -> Vec<u8> {
    let mut record = vec![0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1];
    record.extend_from_slice(&(SPS.len() as u16).to_be_bytes());
    record.extend_from_slice(SPS);
    record.push(1);
    record.extend_from_slice(&(PPS.len() as u16).to_be_bytes());
    record.extend_from_slice(PPS);
    record
}

/// The hvcC body ffmpeg wrote for libx265 1280x720 Main 3.1 (as in `codec::h265` tests).
const HEVC_RECORD: &[u8] = &[
    0x01, 0x01, 0x60, 0x00, 0x00, 0x00, 0x90, 0x00, 0x00, 0x00, 0x00, 0x00, 0x5d, 0xf0, 0x00, 0xfc,
    0xfd, 0xf8, 0xf8, 0x00, 0x00, 0x0f, 0x03, 0xa0, 0x00, 0x01, 0x00, 0x18, 0x40, 0x01, 0x0c, 0x01,
    0xff, 0xff, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00,
    0x5d, 0x95, 0x94, 0x09, 0xa1, 0x00, 0x01, 0x00, 0x2b, 0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00,
    0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x5d, 0xa0, 0x02, 0x80, 0x80, 0x2d,
    0x16, 0x59, 0x59, 0x52, 0x93, 0x0b, 0xc0, 0x5a, 0x02, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00, 0x00,
    0x03, 0x00, 0x32, 0x10, 0xa2, 0x00, 0x01, 0x00, 0x06, 0x44, 0x01, 0xc0, 0x73, 0xc1, 0x89,
];

/// av1C: marker/version, profile 0 level 8 (4.0), main tier 8-bit 4:2:0, no config OBUs.
const AV1_RECORD: &[u8] = &[0x81, 0x08, 0x0c, 0x00];

/// AAC LC, 44.1 kHz, stereo.
const AAC_LC_CONFIG: &[u8] = &[0x12, 0x10];

fn h264_aac_tracks() -> Vec<TrackInfo> {
    vec![
        TrackInfo {
            id: 1,
            timescale: 90_000,
            codec: TrackCodec::Avc {
                record: avc_record(),
                width: 1280,
                height: 720,
            },
        },
        TrackInfo {
            id: 2,
            timescale: 44_100,
            codec: TrackCodec::Aac {
                config: AAC_LC_CONFIG.to_vec(),
                sample_rate: 44_100,
                channels: 2,
            },
        },
    ]
}

fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// Top-level boxes as (type, offset, size); asserts they tile `bytes` exactly.
fn top_level_boxes(bytes: &[u8]) -> Vec<([u8; 4], usize, usize)> {
    let mut boxes = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let size = be32(bytes, at) as usize;
        assert!(
            size >= 8 && at + size <= bytes.len(),
            "box at {at} size {size}"
        );
        boxes.push((bytes[at + 4..at + 8].try_into().unwrap(), at, size));
        at += size;
    }
    assert_eq!(at, bytes.len());
    boxes
}

#[test]
fn fmp4_init_h264_aac_decodes_back() {
    let mut out = b"prefix".to_vec();
    write_init(&h264_aac_tracks(), &mut out).unwrap();
    assert_eq!(&out[..6], b"prefix", "appends");
    let init = &out[6..];
    let kinds: Vec<_> = top_level_boxes(init).iter().map(|b| b.0).collect();
    assert_eq!(kinds, [*b"ftyp", *b"moov"]);

    let mut buf = init;
    let ftyp = Ftyp::decode(&mut buf).unwrap();
    assert_eq!(ftyp.major_brand, b"iso6".into());
    assert!(ftyp.compatible_brands.contains(&b"cmfc".into()));
    let moov = Moov::decode(&mut buf).unwrap();
    assert!(buf.is_empty());

    assert_eq!(moov.mvhd.next_track_id, 3);
    let trex = &moov.mvex.as_ref().unwrap().trex;
    assert_eq!(trex.iter().map(|t| t.track_id).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(moov.trak.len(), 2);

    let video = &moov.trak[0];
    assert_eq!(video.tkhd.track_id, 1);
    assert_eq!(video.tkhd.width, 1280.into());
    assert_eq!(video.tkhd.height, 720.into());
    assert_eq!(video.mdia.mdhd.timescale, 90_000);
    assert_eq!(video.mdia.hdlr.handler, b"vide".into());
    assert!(video.mdia.minf.vmhd.is_some());
    let stbl = &video.mdia.minf.stbl;
    assert!(stbl.stts.entries.is_empty());
    assert_eq!(stbl.stsz, Default::default());
    assert_eq!(stbl.stsc, Default::default());
    assert_eq!(stbl.stco, Some(Default::default()));
    match &stbl.stsd.codecs[..] {
        [Codec::Avc1(avc1)] => {
            assert_eq!((avc1.visual.width, avc1.visual.height), (1280, 720));
            assert_eq!(avc1.avcc.sequence_parameter_sets, [SPS.to_vec()]);
            assert_eq!(avc1.avcc.picture_parameter_sets, [PPS.to_vec()]);
            assert_eq!(avc1.avcc.length_size, 4);
        }
        other => panic!("{other:?}"),
    }
    // The avcC body is the record we were given, byte for byte.
    let record = avc_record();
    let at = init
        .windows(4)
        .position(|w| w == b"avcC")
        .expect("avcC box");
    assert_eq!(be32(init, at - 4) as usize, 8 + record.len());
    assert_eq!(&init[at + 4..at + 4 + record.len()], &record[..]);

    let audio = &moov.trak[1];
    assert_eq!(audio.mdia.hdlr.handler, b"soun".into());
    assert_eq!(audio.mdia.mdhd.timescale, 44_100);
    assert!(audio.mdia.minf.smhd.is_some());
    match &audio.mdia.minf.stbl.stsd.codecs[..] {
        [Codec::Mp4a(mp4a)] => {
            assert_eq!(mp4a.audio.channel_count, 2);
            let specific = mp4a.esds.es_desc.dec_config.dec_specific.as_ref().unwrap();
            assert_eq!(specific.raw, AAC_LC_CONFIG);
            assert_eq!(mp4a.esds.es_desc.dec_config.object_type_indication, 0x40);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn fmp4_init_hevc_av1_opus_decode_back() {
    let tracks = [
        TrackInfo {
            id: 1,
            timescale: 90_000,
            codec: TrackCodec::Hevc {
                record: HEVC_RECORD.to_vec(),
                width: 1280,
                height: 720,
            },
        },
        TrackInfo {
            id: 2,
            timescale: 90_000,
            codec: TrackCodec::Av1 {
                record: AV1_RECORD.to_vec(),
                width: 640,
                height: 360,
            },
        },
        TrackInfo {
            id: 7,
            timescale: 48_000,
            codec: TrackCodec::Opus {
                sample_rate: 48_000,
                channels: 2,
                pre_skip: 312,
            },
        },
    ];
    let mut out = Vec::new();
    write_init(&tracks, &mut out).unwrap();
    let mut buf = &out[..];
    Ftyp::decode(&mut buf).unwrap();
    let moov = Moov::decode(&mut buf).unwrap();
    assert_eq!(moov.mvhd.next_track_id, 8);
    let entries: Vec<_> = moov
        .trak
        .iter()
        .map(|trak| trak.mdia.minf.stbl.stsd.codecs[0].clone())
        .collect();
    match &entries[..] {
        [Codec::Hvc1(hvc1), Codec::Av01(av01), Codec::Opus(opus)] => {
            assert_eq!(hvc1.hvcc.general_level_idc, 93);
            assert_eq!(hvc1.hvcc.arrays.len(), 3);
            assert_eq!(av01.av1c.seq_level_idx_0, 8);
            assert_eq!(opus.dops.pre_skip, 312);
            assert_eq!(opus.dops.output_channel_count, 2);
        }
        other => panic!("{other:?}"),
    }
    // Safari plays only `hvc1` (parameter sets in the sample entry), never `hev1`.
    assert!(out.windows(4).any(|w| w == b"hvc1"));
    assert!(!out.windows(4).any(|w| w == b"hev1"));
    let at = out.windows(4).position(|w| w == b"hvcC").unwrap();
    assert_eq!(&out[at + 4..at + 4 + HEVC_RECORD.len()], HEVC_RECORD);
}

#[test]
fn fmp4_init_errors_leave_output_untouched() {
    let video = |id: u32, timescale: u32, record: Vec<u8>| TrackInfo {
        id,
        timescale,
        codec: TrackCodec::Avc {
            record,
            width: 16,
            height: 16,
        },
    };
    type Expect = fn(&Fmp4Error) -> bool;
    let cases: Vec<(Vec<TrackInfo>, Expect)> = vec![
        (vec![], |e| *e == Fmp4Error::NoTracks),
        (vec![video(0, 90_000, avc_record())], |e| {
            *e == Fmp4Error::ZeroTrackId
        }),
        (
            vec![
                video(3, 90_000, avc_record()),
                video(3, 90_000, avc_record()),
            ],
            |e| *e == Fmp4Error::DuplicateTrackId(3),
        ),
        (vec![video(1, 0, avc_record())], |e| {
            *e == Fmp4Error::ZeroTimescale(1)
        }),
        (
            (1..=MAX_TRACKS as u32 + 1)
                .map(|id| video(id, 90_000, avc_record()))
                .collect(),
            |e| matches!(e, Fmp4Error::TooManyTracks(_)),
        ),
        (vec![video(1, 90_000, vec![0; MAX_RECORD_LEN + 1])], |e| {
            matches!(e, Fmp4Error::RecordTooLong { .. })
        }),
        (vec![video(1, 90_000, vec![1, 0x64])], |e| {
            matches!(e, Fmp4Error::BadRecord { what: "avcC", .. })
        }),
        (
            vec![video(1, 90_000, {
                let mut record = avc_record();
                record.push(0xff);
                record
            })],
            |e| matches!(e, Fmp4Error::BadRecord { .. }),
        ),
        (
            vec![TrackInfo {
                id: 1,
                timescale: 48_000,
                codec: TrackCodec::Opus {
                    sample_rate: 48_000,
                    channels: 6,
                    pre_skip: 0,
                },
            }],
            |e| matches!(e, Fmp4Error::Unsupported { .. }),
        ),
        (
            vec![TrackInfo {
                id: 1,
                timescale: 48_000,
                codec: TrackCodec::Aac {
                    config: vec![],
                    sample_rate: 48_000,
                    channels: 2,
                },
            }],
            |e| matches!(e, Fmp4Error::BadRecord { .. }),
        ),
    ];
    for (tracks, expected) in cases {
        let mut out = b"keep".to_vec();
        let err = write_init(&tracks, &mut out).unwrap_err();
        assert!(expected(&err), "{err:?}");
        assert_eq!(out, b"keep");
    }
}

#[test]
fn fmp4_init_never_panics_on_damaged_records() {
    type Make = fn(Vec<u8>) -> TrackCodec;
    let records: [(&[u8], Make); 4] = [
        (&avc_record(), |record| TrackCodec::Avc {
            record,
            width: 1,
            height: 1,
        }),
        (HEVC_RECORD, |record| TrackCodec::Hevc {
            record,
            width: 1,
            height: 1,
        }),
        (AV1_RECORD, |record| TrackCodec::Av1 {
            record,
            width: 1,
            height: 1,
        }),
        (AAC_LC_CONFIG, |config| TrackCodec::Aac {
            config,
            sample_rate: 96_000,
            channels: 2,
        }),
    ];
    for (record, make) in records {
        for cut in 0..=record.len() {
            for flip in [None, Some(0x00u8), Some(0xff)] {
                let mut damaged = record[..cut].to_vec();
                if let (Some(byte), Some(last)) = (flip, damaged.last_mut()) {
                    *last = byte;
                }
                let codec = make(damaged);
                let _ = codec_string(&codec);
                let tracks = [TrackInfo {
                    id: 1,
                    timescale: 1000,
                    codec,
                }];
                let mut out = Vec::new();
                if write_init(&tracks, &mut out).is_err() {
                    assert!(out.is_empty());
                }
            }
        }
    }
}

fn sample(duration: u32, size: u32, keyframe: bool, composition_offset: i32) -> Sample {
    Sample {
        duration,
        size,
        keyframe,
        composition_offset,
    }
}

#[test]
fn fmp4_fragment_layout_and_data_offsets() {
    let video = [
        sample(3000, 1000, true, 6000),
        sample(3000, 200, false, -3000),
        sample(3000, 300, false, 0),
    ];
    let audio = [sample(1024, 10, true, 0), sample(1024, 20, true, 0)];
    let runs = [
        TrackRun {
            track_id: 1,
            base_decode_time: 1 << 40,
            samples: &video,
        },
        TrackRun {
            track_id: 2,
            base_decode_time: 44_100,
            samples: &audio,
        },
    ];
    let mut out = b"xx".to_vec();
    let payload = write_fragment(42, &runs, &mut out).unwrap();
    assert_eq!(payload, 1530);
    let fragment = &out[2..];

    // moof then the bare mdat header announcing exactly the payload.
    let moof_len = be32(fragment, 0) as usize;
    assert_eq!(&fragment[4..8], b"moof");
    let expected_moof = 8 + 16 + 2 * (8 + 16 + 20 + 20) + 5 * 16;
    assert_eq!(moof_len, expected_moof);
    assert_eq!(fragment.len(), moof_len + 8);
    assert_eq!(&fragment[moof_len + 4..moof_len + 8], b"mdat");
    assert_eq!(be32(fragment, moof_len) as u64, 8 + payload);

    // Append the payload as a caller would and check the whole thing with mp4-atom.
    let mut file = fragment.to_vec();
    file.resize(file.len() + payload as usize, 0);
    let kinds: Vec<_> = top_level_boxes(&file).iter().map(|b| b.0).collect();
    assert_eq!(kinds, [*b"moof", *b"mdat"]);

    let moof = match Any::decode(&mut &file[..]).unwrap() {
        Any::Moof(moof) => moof,
        other => panic!("{other:?}"),
    };
    let Moof { mfhd, traf } = moof;
    assert_eq!(mfhd.sequence_number, 42);
    assert_eq!(traf.len(), 2);
    let mdat_payload_start = (moof_len + 8) as i32;
    let expected_offsets = [mdat_payload_start, mdat_payload_start + 1500];
    for ((traf, run), offset) in traf.iter().zip(&runs).zip(expected_offsets) {
        assert_eq!(traf.tfhd.track_id, run.track_id);
        assert!(traf.tfhd.default_base_is_moof);
        assert_eq!(traf.tfhd.base_data_offset, None);
        assert_eq!(
            traf.tfdt.as_ref().unwrap().base_media_decode_time,
            run.base_decode_time
        );
        let trun = &traf.trun[0];
        assert_eq!(trun.data_offset, Some(offset));
        assert_eq!(trun.entries.len(), run.samples.len());
        for (entry, sample) in trun.entries.iter().zip(run.samples) {
            assert_eq!(entry.duration, Some(sample.duration));
            assert_eq!(entry.size, Some(sample.size));
            assert_eq!(entry.cts, Some(sample.composition_offset));
            let flags = if sample.keyframe {
                SYNC_SAMPLE_FLAGS
            } else {
                NON_SYNC_SAMPLE_FLAGS
            };
            assert_eq!(entry.flags, Some(flags));
        }
    }
    assert_eq!(SYNC_SAMPLE_FLAGS, 0x0200_0000);
    assert_eq!(NON_SYNC_SAMPLE_FLAGS, 0x0101_0000);

    // trun is version 1 (signed composition offsets) with flags 0x000f01.
    let at = fragment.windows(4).position(|w| w == b"trun").unwrap();
    assert_eq!(be32(fragment, at + 4), 0x0100_0f01);
    let at = fragment.windows(4).position(|w| w == b"tfdt").unwrap();
    assert_eq!(fragment[at + 4], 1, "tfdt version 1");
}

#[test]
fn fmp4_fragment_errors_leave_output_untouched() {
    let one = [sample(1, 1, true, 0)];
    let huge = [sample(1, u32::MAX, true, 0)];
    let many = vec![sample(1, 1, false, 0); MAX_FRAGMENT_SAMPLES + 1];
    let run = |track_id, samples| TrackRun {
        track_id,
        base_decode_time: 0,
        samples,
    };
    let too_many_runs = vec![run(1, &one[..]); MAX_FRAGMENT_RUNS + 1];
    let cases: Vec<(Vec<TrackRun<'_>>, Fmp4Error)> = vec![
        (vec![], Fmp4Error::NoRuns),
        (vec![run(1, &[])], Fmp4Error::EmptyRun(1)),
        (vec![run(0, &one)], Fmp4Error::ZeroTrackId),
        (
            vec![run(1, &many)],
            Fmp4Error::TooManySamples(MAX_FRAGMENT_SAMPLES + 1),
        ),
        (too_many_runs, Fmp4Error::TooManyRuns(MAX_FRAGMENT_RUNS + 1)),
        (
            vec![run(1, &huge)],
            Fmp4Error::MdatTooLarge(u64::from(u32::MAX)),
        ),
        (
            vec![run(1, &one), run(2, &huge)],
            Fmp4Error::MdatTooLarge(1 + u64::from(u32::MAX)),
        ),
    ];
    for (runs, expected) in cases {
        let mut out = b"keep".to_vec();
        assert_eq!(write_fragment(1, &runs, &mut out), Err(expected));
        assert_eq!(out, b"keep");
    }
}

#[test]
fn fmp4_fragment_at_the_limits() {
    // The largest fragment allowed still has consistent sizes.
    let samples = vec![sample(1, 1, false, 0); MAX_FRAGMENT_SAMPLES];
    let runs = [TrackRun {
        track_id: 9,
        base_decode_time: u64::MAX,
        samples: &samples,
    }];
    let mut out = Vec::new();
    let payload = write_fragment(u32::MAX, &runs, &mut out).unwrap();
    assert_eq!(payload, MAX_FRAGMENT_SAMPLES as u64);
    let moof_len = be32(&out, 0) as usize;
    assert_eq!(out.len(), moof_len + 8);
    assert_eq!(be32(&out, moof_len) as u64, 8 + payload);
}

#[test]
fn fmp4_codec_strings() {
    let avc = TrackCodec::Avc {
        record: avc_record(),
        width: 0,
        height: 0,
    };
    assert_eq!(codec_string(&avc), "avc1.64001f");
    // Damaged parameter sets: still profile/compat/level from bytes 1..4.
    let avc_damaged = TrackCodec::Avc {
        record: vec![1, 0x4d, 0x40, 0x28, 0xff],
        width: 0,
        height: 0,
    };
    assert_eq!(codec_string(&avc_damaged), "avc1.4d4028");
    let avc_empty = TrackCodec::Avc {
        record: vec![],
        width: 0,
        height: 0,
    };
    assert_eq!(codec_string(&avc_empty), "avc1");

    let hevc = TrackCodec::Hevc {
        record: HEVC_RECORD.to_vec(),
        width: 0,
        height: 0,
    };
    assert_eq!(codec_string(&hevc), "hvc1.1.6.L93.90");
    let hevc_empty = TrackCodec::Hevc {
        record: vec![],
        width: 0,
        height: 0,
    };
    assert_eq!(codec_string(&hevc_empty), "hvc1");

    let av1 = TrackCodec::Av1 {
        record: AV1_RECORD.to_vec(),
        width: 0,
        height: 0,
    };
    assert_eq!(codec_string(&av1), "av01.0.08M.08");
    let av1_10bit_high = TrackCodec::Av1 {
        record: vec![0x81, 0x2d, 0xc0, 0x00],
        width: 0,
        height: 0,
    };
    assert_eq!(codec_string(&av1_10bit_high), "av01.1.13H.10");

    let aac = |config: &[u8]| TrackCodec::Aac {
        config: config.to_vec(),
        sample_rate: 44_100,
        channels: 2,
    };
    assert_eq!(codec_string(&aac(AAC_LC_CONFIG)), "mp4a.40.2");
    // HE-AAC with explicit SBR signalling: object type 5.
    assert_eq!(codec_string(&aac(&[0x2b, 0x92, 0x08, 0x00])), "mp4a.40.5");
    // HE-AAC v2 (parametric stereo), explicit: 29.
    assert_eq!(codec_string(&aac(&[0xeb, 0x8a, 0x08, 0x00])), "mp4a.40.29");
    // Escaped object type 31 + 6 bits: 32 + 10 = 42 (USAC).
    assert_eq!(codec_string(&aac(&[0xf9, 0x40])), "mp4a.40.42");
    assert_eq!(codec_string(&aac(&[])), "mp4a.40.2");

    let opus = TrackCodec::Opus {
        sample_rate: 48_000,
        channels: 2,
        pre_skip: 0,
    };
    assert_eq!(codec_string(&opus), "opus");
}

mod totality {
    use proptest::prelude::*;

    use super::*;

    fn any_codec() -> impl Strategy<Value = TrackCodec> {
        let bytes = || proptest::collection::vec(any::<u8>(), 0..300);
        prop_oneof![
            (bytes(), any::<u16>(), any::<u16>()).prop_map(|(record, width, height)| {
                TrackCodec::Avc {
                    record,
                    width,
                    height,
                }
            }),
            (bytes(), any::<u16>(), any::<u16>()).prop_map(|(record, width, height)| {
                TrackCodec::Hevc {
                    record,
                    width,
                    height,
                }
            }),
            (bytes(), any::<u16>(), any::<u16>()).prop_map(|(record, width, height)| {
                TrackCodec::Av1 {
                    record,
                    width,
                    height,
                }
            }),
            (bytes(), any::<u32>(), any::<u16>()).prop_map(|(config, sample_rate, channels)| {
                TrackCodec::Aac {
                    config,
                    sample_rate,
                    channels,
                }
            }),
            (any::<u32>(), any::<u16>(), any::<u16>()).prop_map(
                |(sample_rate, channels, pre_skip)| TrackCodec::Opus {
                    sample_rate,
                    channels,
                    pre_skip,
                }
            ),
        ]
    }

    proptest! {
        #[test]
        fn fmp4_init_is_total(
            tracks in proptest::collection::vec((0u32..4, 0u32..3, any_codec()), 0..4)
        ) {
            let tracks: Vec<TrackInfo> = tracks
                .into_iter()
                .map(|(id, timescale, codec)| TrackInfo { id, timescale: timescale * 1000, codec })
                .collect();
            for track in &tracks {
                let _ = codec_string(&track.codec);
            }
            let mut out = Vec::new();
            match write_init(&tracks, &mut out) {
                Ok(()) => {
                    let mut buf = &out[..];
                    prop_assert!(mp4_atom::Ftyp::decode(&mut buf).is_ok());
                    prop_assert!(mp4_atom::Moov::decode(&mut buf).is_ok());
                    prop_assert!(buf.is_empty());
                }
                Err(_) => prop_assert!(out.is_empty()),
            }
        }

        #[test]
        fn fmp4_fragment_is_total(
            runs in proptest::collection::vec(
                (0u32..3, any::<u64>(), proptest::collection::vec(
                    (any::<u32>(), 0u32..5000, any::<bool>(), any::<i32>()), 0..20)),
                0..4),
            sequence in any::<u32>(),
        ) {
            let samples: Vec<Vec<Sample>> = runs
                .iter()
                .map(|(_, _, samples)| {
                    samples
                        .iter()
                        .map(|&(duration, size, keyframe, composition_offset)| Sample {
                            duration,
                            size,
                            keyframe,
                            composition_offset,
                        })
                        .collect()
                })
                .collect();
            let runs: Vec<TrackRun<'_>> = runs
                .iter()
                .zip(&samples)
                .map(|((track_id, base_decode_time, _), samples)| TrackRun {
                    track_id: *track_id,
                    base_decode_time: *base_decode_time,
                    samples,
                })
                .collect();
            let mut out = Vec::new();
            match write_fragment(sequence, &runs, &mut out) {
                Ok(payload) => {
                    let total: u64 = samples.iter().flatten().map(|s| u64::from(s.size)).sum();
                    prop_assert_eq!(payload, total);
                    let moof_len = be32(&out, 0) as usize;
                    prop_assert_eq!(out.len(), moof_len + 8);
                    prop_assert_eq!(u64::from(be32(&out, moof_len)), 8 + payload);
                    let mut file = out.clone();
                    file.resize(file.len() + payload as usize, 0);
                    let moof = match Any::decode(&mut &file[..]) {
                        Ok(Any::Moof(moof)) => moof,
                        other => return Err(TestCaseError::fail(format!("{other:?}"))),
                    };
                    // Each run's data starts where the previous one ended, inside the mdat.
                    let mut offset = moof_len as i32 + 8;
                    for (traf, run) in moof.traf.iter().zip(&runs) {
                        prop_assert_eq!(traf.trun[0].data_offset, Some(offset));
                        offset += run.samples.iter().map(|s| s.size as i32).sum::<i32>();
                    }
                    prop_assert_eq!(offset as usize, file.len());
                }
                Err(_) => prop_assert!(out.is_empty()),
            }
        }
    }
}
