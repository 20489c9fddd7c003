//! The TS demuxer is total and bounded: random packets, and a real muxed stream with packets
//! mutated, dropped and duplicated, give events or errors — never a panic — and the demuxer
//! keeps working after every error.

use proptest::prelude::*;
use sluice_proto::ts::{
    AudioStreamType, DemuxEvent, DemuxLimits, Frame, PACKET_SIZE, Track, TsDemuxer, TsMuxer,
    VideoStreamType,
};

fn sample_stream() -> Vec<u8> {
    let mut muxer = TsMuxer::new(Some(VideoStreamType::H265), Some(AudioStreamType::AacAdts));
    let mut out = Vec::new();
    let video = vec![0x42u8; 900];
    let audio = vec![0x21u8; 200];
    for index in 0..6u64 {
        muxer
            .write_frame(
                &mut out,
                &Frame {
                    track: Track::Video,
                    pts: index * 3600 + 7200,
                    dts: index * 3600,
                    keyframe: index % 3 == 0,
                    data: &[&video],
                },
            )
            .unwrap();
        muxer
            .write_frame(
                &mut out,
                &Frame {
                    track: Track::Audio,
                    pts: index * 1920,
                    dts: index * 1920,
                    keyframe: true,
                    data: &[&audio],
                },
            )
            .unwrap();
    }
    out
}

/// Feeds packets, polling after each; returns the payload bytes delivered.
fn feed(
    demuxer: &mut TsDemuxer,
    packets: impl IntoIterator<Item = Vec<u8>>,
    limits: &DemuxLimits,
) -> usize {
    let mut delivered = 0;
    for packet in packets {
        let _ = demuxer.push_packet(&packet);
        while let Some(event) = demuxer.poll_event() {
            match event {
                DemuxEvent::Pes(pes) => {
                    assert!(pes.payload.len() <= limits.max_pes_size);
                    delivered += pes.payload.len();
                }
                DemuxEvent::Program { streams, .. } => assert!(streams.len() <= limits.max_streams),
            }
        }
    }
    let _ = demuxer.finish();
    while demuxer.poll_event().is_some() {}
    delivered
}

fn arb_packet() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![
            Just(0u16),
            Just(0x1000),
            Just(0x100),
            Just(0x101),
            any::<u16>()
        ],
        any::<u8>(),
        prop::collection::vec(any::<u8>(), 184),
    )
        .prop_map(|(pid, flags, body)| {
            let mut packet = vec![
                0x47,
                (flags & 0xe0) | ((pid >> 8) as u8 & 0x1f),
                pid as u8,
                flags.rotate_right(4),
            ];
            packet.extend(body);
            packet
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_packets(packets in prop::collection::vec(arb_packet(), 0..64)) {
        let limits = DemuxLimits { max_pes_size: 4096, max_streams: 4, max_pending_events: 8 };
        let mut demuxer = TsDemuxer::with_limits(limits);
        // Prime with valid tables so random packets reach the PES paths.
        let mut tables = Vec::new();
        TsMuxer::new(Some(VideoStreamType::H264), Some(AudioStreamType::AacAdts)).write_tables(&mut tables);
        let primed = tables.chunks(PACKET_SIZE).map(<[u8]>::to_vec).chain(packets);
        feed(&mut demuxer, primed, &limits);
    }

    #[test]
    fn damaged_real_stream(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..16),
        drops in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
        duplicate in any::<prop::sample::Index>(),
    ) {
        let mut stream = sample_stream();
        for (index, byte) in &edits {
            let position = index.index(stream.len());
            stream[position] = *byte;
        }
        let mut packets: Vec<Vec<u8>> = stream.chunks(PACKET_SIZE).map(<[u8]>::to_vec).collect();
        for drop in &drops {
            let position = drop.index(packets.len());
            packets.remove(position);
        }
        let position = duplicate.index(packets.len());
        packets.insert(position, packets[position].clone());
        let limits = DemuxLimits::default();
        feed(&mut TsDemuxer::new(), packets, &limits);
    }

    #[test]
    fn arbitrary_byte_lengths(data in prop::collection::vec(any::<u8>(), 0..600)) {
        let mut demuxer = TsDemuxer::new();
        let _ = demuxer.push_packets(&data);
        let _ = demuxer.push_packet(&data);
    }
}

#[test]
fn unpolled_events_are_bounded() {
    let stream = sample_stream();
    let limits = DemuxLimits {
        max_pending_events: 3,
        ..DemuxLimits::default()
    };
    let mut demuxer = TsDemuxer::with_limits(limits);
    let refused = stream
        .chunks(PACKET_SIZE)
        .filter(|packet| demuxer.push_packet(packet).is_err())
        .count();
    assert!(refused > 0);
    let mut pending = 0;
    while demuxer.poll_event().is_some() {
        pending += 1;
    }
    assert_eq!(pending, 3);
}

#[test]
fn oversized_pes_is_dropped_and_demuxer_recovers() {
    let mut muxer = TsMuxer::new(Some(VideoStreamType::H264), None);
    let mut out = Vec::new();
    let big = vec![1u8; 10_000];
    let small = vec![2u8; 10];
    for data in [&big, &small, &small] {
        muxer
            .write_frame(
                &mut out,
                &Frame {
                    track: Track::Video,
                    pts: 0,
                    dts: 0,
                    keyframe: false,
                    data: &[data],
                },
            )
            .unwrap();
    }
    let limits = DemuxLimits {
        max_pes_size: 5000,
        ..DemuxLimits::default()
    };
    let mut demuxer = TsDemuxer::with_limits(limits);
    let errors = out
        .chunks(PACKET_SIZE)
        .filter(|p| demuxer.push_packet(p).is_err())
        .count();
    assert_eq!(errors, 1);
    demuxer.finish().unwrap();
    let payloads: Vec<Vec<u8>> = std::iter::from_fn(|| demuxer.poll_event())
        .filter_map(|e| match e {
            DemuxEvent::Pes(p) => Some(p.payload),
            _ => None,
        })
        .collect();
    assert_eq!(payloads, vec![small.clone(), small]);
}
