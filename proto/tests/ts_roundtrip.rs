//! TS mux → demux gives back every frame's payload, PTS and DTS; the muxed stream is
//! well-formed packet by packet (sync bytes, continuity per PID, PCR where promised); and the
//! per-viewer discontinuity marker makes a skipping viewer's stream continuous again.

use proptest::prelude::*;
use sluice_proto::ts::{
    AudioStreamType, Continuity, DemuxEvent, Frame, PACKET_SIZE, Pes, TIMESTAMP_MASK, Track,
    TsDemuxer, TsMuxer, VideoStreamType,
};

#[derive(Debug, Clone)]
struct TestFrame {
    track: Track,
    pts: u64,
    dts: u64,
    keyframe: bool,
    data: Vec<u8>,
    /// Where to cut `data` into gather-list pieces.
    cuts: Vec<usize>,
}

fn arb_frame(audio_only: bool) -> impl Strategy<Value = TestFrame> {
    (
        if audio_only {
            Just(Track::Audio).boxed()
        } else {
            prop_oneof![Just(Track::Video), Just(Track::Audio)].boxed()
        },
        any::<u64>(),
        0u64..10_000,
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..2000),
        prop::collection::vec(any::<usize>(), 0..4),
    )
        .prop_map(|(track, dts, delay, keyframe, data, cuts)| {
            let dts = dts & TIMESTAMP_MASK;
            let pts = if track == Track::Video {
                dts + delay
            } else {
                dts
            };
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (data.len() + 1)).collect();
            cuts.sort_unstable();
            TestFrame {
                track,
                pts,
                dts,
                keyframe,
                data,
                cuts,
            }
        })
}

fn pieces(frame: &TestFrame) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for &cut in &frame.cuts {
        pieces.push(&frame.data[start..cut]);
        start = cut;
    }
    pieces.push(&frame.data[start..]);
    pieces
}

fn mux(muxer: &mut TsMuxer, frames: &[TestFrame]) -> Vec<u8> {
    let mut out = Vec::new();
    for frame in frames {
        let pieces = pieces(frame);
        let ts_frame = Frame {
            track: frame.track,
            pts: frame.pts,
            dts: frame.dts,
            keyframe: frame.keyframe,
            data: &pieces,
        };
        let expected = muxer.frame_len(&ts_frame);
        let before = out.len();
        let written = muxer.write_frame(&mut out, &ts_frame).unwrap();
        assert_eq!(out.len() - before, expected);
        assert_eq!(out.len() - before, written.packets * PACKET_SIZE);
    }
    out
}

fn demux(stream: &[u8]) -> Vec<Pes> {
    let mut demuxer = TsDemuxer::new();
    let mut pes = Vec::new();
    let mut collect = |demuxer: &mut TsDemuxer| {
        while let Some(event) = demuxer.poll_event() {
            if let DemuxEvent::Pes(p) = event {
                pes.push(p);
            }
        }
    };
    for packet in stream.chunks_exact(PACKET_SIZE) {
        demuxer.push_packet(packet).unwrap();
        collect(&mut demuxer);
    }
    demuxer.finish().unwrap();
    collect(&mut demuxer);
    pes
}

/// Checks every packet's structure and returns how many there were.
fn check_packets(stream: &[u8], muxer: &TsMuxer) -> usize {
    assert_eq!(stream.len() % PACKET_SIZE, 0);
    let mut last_cc = std::collections::HashMap::new();
    let pcr_pid = muxer.pcr_pid();
    for packet in stream.chunks_exact(PACKET_SIZE) {
        assert_eq!(packet[0], 0x47);
        let pid = (u16::from(packet[1] & 0x1f) << 8) | u16::from(packet[2]);
        let unit_start = packet[1] & 0x40 != 0;
        let control = (packet[3] >> 4) & 3;
        let cc = packet[3] & 0x0f;
        assert!(control == 1 || control == 3, "every packet carries payload");
        if let Some(previous) = last_cc.insert(pid, cc) {
            assert_eq!(cc, (previous + 1) & 0x0f, "continuity on PID {pid:#x}");
        }
        if control == 3 {
            let length = usize::from(packet[4]);
            assert!(length <= 182, "payload must remain");
            if length > 0 && unit_start && pid == pcr_pid {
                assert_eq!(packet[5] & 0x10, 0x10, "PCR on the PCR PID's PES start");
            }
        } else if unit_start && pid == pcr_pid {
            panic!("PES start on the PCR PID without adaptation field");
        }
    }
    stream.len() / PACKET_SIZE
}

fn expect_round_trip(frames: &[TestFrame], pes: &[Pes], track: Track, pid: u16) {
    let sent: Vec<&TestFrame> = frames.iter().filter(|f| f.track == track).collect();
    let received: Vec<&Pes> = pes.iter().filter(|p| p.pid == pid).collect();
    assert_eq!(sent.len(), received.len());
    for (frame, pes) in sent.iter().zip(received) {
        assert_eq!(pes.payload, frame.data);
        assert_eq!(pes.pts, Some(frame.pts & TIMESTAMP_MASK));
        let dts = (frame.dts != frame.pts).then_some(frame.dts & TIMESTAMP_MASK);
        assert_eq!(pes.dts, dts);
        assert!(!pes.discontinuity);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn video_and_audio_round_trip(frames in prop::collection::vec(arb_frame(false), 0..40)) {
        let mut muxer = TsMuxer::new(Some(VideoStreamType::H264), Some(AudioStreamType::AacAdts));
        let stream = mux(&mut muxer, &frames);
        check_packets(&stream, &muxer);
        let pes = demux(&stream);
        expect_round_trip(&frames, &pes, Track::Video, 0x100);
        expect_round_trip(&frames, &pes, Track::Audio, 0x101);
        // Random access flags arrive on video keyframes.
        let keyframes: Vec<bool> = frames.iter().filter(|f| f.track == Track::Video).map(|f| f.keyframe).collect();
        let flagged: Vec<bool> = pes.iter().filter(|p| p.pid == 0x100).map(|p| p.random_access).collect();
        prop_assert_eq!(keyframes, flagged);
    }

    #[test]
    fn audio_only_round_trip(frames in prop::collection::vec(arb_frame(true), 1..40)) {
        let mut muxer = TsMuxer::new(None, Some(AudioStreamType::Mpeg1Audio));
        let stream = mux(&mut muxer, &frames);
        check_packets(&stream, &muxer);
        expect_round_trip(&frames, &demux(&stream), Track::Audio, 0x101);
    }

    #[test]
    fn skipping_viewer_with_discontinuity_marker(
        frames in prop::collection::vec(arb_frame(false), 1..30),
        skip_from in any::<prop::sample::Index>(),
    ) {
        // The shared stream, one buffer per frame, with the continuity snapshot the hub keeps
        // for each join point.
        let mut muxer = TsMuxer::new(Some(VideoStreamType::H264), Some(AudioStreamType::AacAdts));
        let mut chunks: Vec<(Vec<u8>, Continuity, bool)> = Vec::new();
        for frame in &frames {
            let snapshot = muxer.continuity();
            let pieces = pieces(frame);
            let mut out = Vec::new();
            let written = muxer.write_frame(&mut out, &Frame {
                track: frame.track, pts: frame.pts, dts: frame.dts, keyframe: frame.keyframe, data: &pieces,
            }).unwrap();
            chunks.push((out, snapshot, written.tables));
        }
        // The viewer got the first chunk, then skipped ahead to a later chunk with tables.
        let resume = (skip_from.index(chunks.len()) .max(1)..chunks.len()).find(|&i| chunks[i].2);
        let Some(resume) = resume else { return Ok(()) };
        let mut viewer = chunks[0].0.clone();
        muxer.write_discontinuity(&mut viewer, chunks[resume].1);
        for (bytes, ..) in &chunks[resume..] {
            viewer.extend_from_slice(bytes);
        }
        // No packet is seen as lost. The first PES on each stream after the marker is flagged
        // as following an (announced) discontinuity; everything else is continuous.
        let pes = demux(&viewer);
        let mut seen_after_marker = std::collections::HashSet::new();
        let first_chunk_pes = demux(&chunks[0].0).len();
        for (index, p) in pes.iter().enumerate() {
            let first_after = index >= first_chunk_pes && seen_after_marker.insert(p.pid);
            prop_assert_eq!(p.discontinuity, first_after, "PES {} on {:#x}", index, p.pid);
        }
    }
}

#[test]
fn large_keyframe_uses_unbounded_video_pes() {
    let mut muxer = TsMuxer::new(Some(VideoStreamType::H264), None);
    let data = vec![0x55u8; 300_000];
    let mut out = Vec::new();
    muxer
        .write_frame(
            &mut out,
            &Frame {
                track: Track::Video,
                pts: 90_000,
                dts: 90_000,
                keyframe: true,
                data: &[&data],
            },
        )
        .unwrap();
    let pes = demux(&out);
    assert_eq!(pes.len(), 1);
    assert_eq!(pes[0].payload.len(), 300_000);
    assert!(pes[0].random_access);
}

#[test]
fn oversized_audio_pes_is_refused_without_output() {
    let mut muxer = TsMuxer::new(None, Some(AudioStreamType::AacAdts));
    let data = vec![0u8; 70_000];
    let mut out = Vec::new();
    let frame = Frame {
        track: Track::Audio,
        pts: 0,
        dts: 0,
        keyframe: true,
        data: &[&data],
    };
    assert!(muxer.write_frame(&mut out, &frame).is_err());
    assert!(out.is_empty());
    assert_eq!(muxer.continuity(), Continuity::default());
}
