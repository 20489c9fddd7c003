//! What `ts::TsIngest` makes of transport streams our own muxer writes (no ffmpeg needed):
//! sequence headers first and on change, frames stripped of AUD/parameter sets, keyframes,
//! timestamps (composition time, several audio frames per PES, the 33-bit wrap), the Enhanced
//! RTMP form for H.265, MPEG audio, ignored streams, any chunking, resynchronisation, a full
//! queue, and errors confined to the unit they concern.

#[path = "common/synthetic_ts.rs"]
mod synthetic_ts;

use sluice_proto::codec::{
    AudioPacket, AudioPacketKind, AvcDecoderConfig, AvccNalus, HevcDecoderConfig, VideoPacket,
    VideoPacketKind,
};
use sluice_proto::flv::{AudioCodec, VideoCodec};
use sluice_proto::ts::{
    AudioStreamType, FlvMessage, FlvMessageKind, IngestError, IngestLimits, PACKET_SIZE,
    TIMESTAMP_MASK, Track, TsError, TsIngest, TsMuxer, TsMuxerConfig, VideoStreamType, crc32_mpeg2,
};
use synthetic_ts::*;

/// Pushes `ts` in chunks of `chunk` bytes, polling after each push; returns the messages and
/// the errors pushes reported.
fn ingest_with(
    ingest: &mut TsIngest,
    ts: &[u8],
    chunk: usize,
) -> (Vec<FlvMessage>, Vec<IngestError>) {
    let mut messages = Vec::new();
    let mut errors = Vec::new();
    for piece in ts.chunks(chunk.max(1)) {
        if let Err(error) = ingest.push(piece) {
            errors.push(error);
        }
        messages.extend(std::iter::from_fn(|| ingest.poll()));
    }
    if let Err(error) = ingest.finish() {
        errors.push(error);
    }
    messages.extend(std::iter::from_fn(|| ingest.poll()));
    (messages, errors)
}

fn ingest_clean(ts: &[u8], chunk: usize) -> Vec<FlvMessage> {
    let (messages, errors) = ingest_with(&mut TsIngest::new(), ts, chunk);
    assert!(errors.is_empty(), "{errors:?}");
    messages
}

fn video(messages: &[FlvMessage]) -> Vec<&FlvMessage> {
    messages
        .iter()
        .filter(|m| m.kind == FlvMessageKind::Video)
        .collect()
}

fn audio(messages: &[FlvMessage]) -> Vec<&FlvMessage> {
    messages
        .iter()
        .filter(|m| m.kind == FlvMessageKind::Audio)
        .collect()
}

/// A video-only stream of `count` frames 3000 ticks apart with PTS = DTS; `frame(index)` gives
/// each frame's keyframe flag (for the muxer) and access unit.
fn video_frames(
    mut muxer: TsMuxer,
    count: u64,
    mut frame: impl FnMut(u64) -> (bool, Vec<u8>),
) -> Vec<u8> {
    let mut ts = Vec::new();
    for index in 0..count {
        let (keyframe, au) = frame(index);
        write_at(
            &mut muxer,
            &mut ts,
            Track::Video,
            index * 3000,
            keyframe,
            &au,
        );
    }
    ts
}

fn nalus(data: &[u8]) -> Vec<&[u8]> {
    AvccNalus::new(data, 4)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn h264_and_aac_as_an_rtmp_publisher_sends_them() {
    let start = 126_000; // ffmpeg's TS muxer starts at 1.4 s
    let ts = h264_aac_stream(20, start);
    let messages = ingest_clean(&ts, 1316);

    let video = video(&messages);
    assert_eq!(video.len(), 21);
    // The sequence header first, at the first frame's DTS, from the in-band SPS/PPS.
    assert_eq!(&video[0].body[..5], &[0x17, 0, 0, 0, 0]);
    assert_eq!(video[0].timestamp, (start / 90) as u32);
    let config = AvcDecoderConfig::parse(&video[0].body[5..]).unwrap();
    assert_eq!(
        config,
        AvcDecoderConfig::from_parameter_sets(&[H264_SPS], &[H264_PPS]).unwrap()
    );
    assert_eq!(config.codec_string(), "avc1.64001f");
    for (index, message) in video[1..].iter().enumerate() {
        let packet = VideoPacket::parse(&message.body).unwrap();
        assert_eq!(packet.codec, VideoCodec::Avc);
        assert_eq!(packet.kind, VideoPacketKind::CodedFrames);
        assert_eq!(packet.keyframe, index % 10 == 0, "frame {index}");
        assert_eq!(message.body[0], if index % 10 == 0 { 0x17 } else { 0x27 });
        assert_eq!(packet.composition_time, 40);
        assert_eq!(
            message.timestamp,
            ((start + index as u64 * 3600) / 90) as u32
        );
        // AUD, SPS and PPS are gone: only the slice is left.
        let units = nalus(packet.data);
        assert_eq!(units.len(), 1, "frame {index}");
        assert_eq!(units[0][0], if index % 10 == 0 { 0x65 } else { 0x41 });
        assert_eq!(units[0][1], index as u8);
        assert_eq!(units[0].len(), 300 + index * 7);
    }

    let audio = audio(&messages);
    assert_eq!(audio.len(), 41);
    assert_eq!(&audio[0].body[..], &[0xaf, 0x00, 0x12, 0x10]);
    for (index, message) in audio[1..].iter().enumerate() {
        let packet = AudioPacket::parse(&message.body).unwrap();
        assert_eq!(
            (packet.codec, packet.kind),
            (AudioCodec::Aac, AudioPacketKind::CodedFrames)
        );
        assert_eq!(message.body[0], 0xaf);
        assert_eq!(packet.data.len(), 50);
        assert_eq!(packet.data[0], index as u8);
        // Two frames per PES: the second is 1024 samples (2090 ticks) after the PES PTS.
        let pes_pts = start + (index as u64 / 2) * 2 * 2090;
        let offset = if index % 2 == 1 { 2090 } else { 0 };
        assert_eq!(
            message.timestamp,
            ((pes_pts + offset) / 90) as u32,
            "audio {index}"
        );
    }
}

#[test]
fn every_chunking_gives_the_same_messages() {
    let ts = h264_aac_stream(24, 900_000);
    let reference = ingest_clean(&ts, ts.len());
    for chunk in [1, 7, 187, 188, 189, 1000, 1316, 4096] {
        assert_eq!(ingest_clean(&ts, chunk), reference, "chunk {chunk}");
    }
}

#[test]
fn sequence_header_again_only_when_parameter_sets_change() {
    // A second SPS differing in level_idc (0x1f → 0x28).
    let mut other_sps = H264_SPS.to_vec();
    other_sps[3] = 0x28;
    let ts = video_frames(muxer(Some(VideoStreamType::H264), None), 30, |index| {
        let keyframe = index % 10 == 0;
        let mut au = Vec::new();
        if keyframe {
            put_nal(&mut au, if index >= 20 { &other_sps } else { H264_SPS });
            put_nal(&mut au, H264_PPS);
            // A repeated PPS in the same access unit is one PPS.
            put_nal(&mut au, H264_PPS);
        }
        put_nal(&mut au, &[if keyframe { 0x65 } else { 0x41 }, index as u8]);
        (keyframe, au)
    });
    let messages = ingest_clean(&ts, 188);
    let headers: Vec<(usize, &FlvMessage)> = messages
        .iter()
        .enumerate()
        .filter(|(_, m)| m.body[1] == 0)
        .collect();
    assert_eq!(headers.len(), 2);
    assert_eq!(headers[0].0, 0);
    // The new header comes right before frame 20, at its time.
    assert_eq!(headers[1].0, 21);
    assert_eq!(headers[1].1.timestamp, 20 * 3000 / 90);
    let config = AvcDecoderConfig::parse(&headers[1].1.body[5..]).unwrap();
    assert_eq!(config.level_indication, 0x28);
    assert_eq!(config.pps.len(), 1);
    assert_eq!(messages.len(), 32);
}

#[test]
fn frames_before_the_first_parameter_sets_are_dropped() {
    let ts = video_frames(muxer(Some(VideoStreamType::H264), None), 12, |index| {
        // Joining mid-GOP: frames 0..5 are P-frames without parameter sets.
        let keyframe = index == 5;
        (true, h264_access_unit(keyframe, 20, index as u8))
    });
    let mut ingest = TsIngest::new();
    let (messages, errors) = ingest_with(&mut ingest, &ts, 1316);
    assert!(errors.is_empty());
    assert_eq!(ingest.stats().frames_before_config, 5);
    assert_eq!(ingest.stats().video_frames, 7);
    assert_eq!(messages.len(), 8);
    assert_eq!(messages[0].body[1], 0, "sequence header first");
    assert_eq!(messages[1].body[0], 0x17, "then the keyframe");
}

#[test]
fn h265_uses_enhanced_rtmp() {
    let muxer = muxer(Some(VideoStreamType::H265), Some(AudioStreamType::AacAdts));
    // PTS only (no B-frames): DTS = PTS, composition time 0.
    let ts = video_frames(muxer, 15, |index| {
        let keyframe = index % 5 == 0;
        (keyframe, h265_access_unit(keyframe, 100, index as u8))
    });
    let messages = ingest_clean(&ts, 1316);
    assert_eq!(messages.len(), 16);
    let header = &messages[0].body;
    assert_eq!(&header[..5], b"\x90hvc1");
    let packet = VideoPacket::parse(header).unwrap();
    assert_eq!(
        (packet.codec, packet.kind, packet.keyframe),
        (VideoCodec::Hevc, VideoPacketKind::SequenceHeader, true)
    );
    let (vps, sps, pps) = hevc_parameter_sets();
    let config = HevcDecoderConfig::parse(packet.data).unwrap();
    assert_eq!(
        config,
        HevcDecoderConfig::from_parameter_sets(&[&vps], &[&sps], &[&pps]).unwrap()
    );
    assert_eq!(config.first_sps().unwrap().width, 1280);
    for (index, message) in messages[1..].iter().enumerate() {
        let keyframe = index % 5 == 0;
        assert_eq!(message.body[0], if keyframe { 0x91 } else { 0xa1 });
        assert_eq!(&message.body[1..5], b"hvc1");
        let packet = VideoPacket::parse(&message.body).unwrap();
        assert_eq!(packet.kind, VideoPacketKind::CodedFrames);
        assert_eq!(packet.keyframe, keyframe);
        assert_eq!(packet.composition_time, 0);
        let units = nalus(packet.data);
        assert_eq!(units.len(), 1);
        assert_eq!(units[0][2], index as u8);
        assert_eq!(message.timestamp, (index as u64 * 3000 / 90) as u32);
    }
}

#[test]
fn timestamps_unwrap_across_the_33_bit_wrap() {
    let start = TIMESTAMP_MASK + 1 - 5 * 3600;
    let ts = h264_aac_stream(12, start);
    let messages = ingest_clean(&ts, 1316);
    let video = video(&messages);
    for (index, message) in video[1..].iter().enumerate() {
        // The unwrapped time keeps going past 2^33 ticks; milliseconds wrap only at 2^32.
        let ticks = start + index as u64 * 3600;
        assert_eq!(message.timestamp, (ticks / 90) as u32, "frame {index}");
    }
    assert!(video.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    let audio = audio(&messages);
    assert!(audio.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    assert!(audio.last().unwrap().timestamp > (TIMESTAMP_MASK / 90) as u32);
}

#[test]
fn audio_frames_in_one_pes_are_timed_by_sample_count() {
    let mut muxer = muxer(None, Some(AudioStreamType::AacAdts));
    let mut ts = Vec::new();
    let config = aac_config();
    let pts = 90_000;
    let frames = adts_frames(&config, 7, 30, 0);
    write_at(&mut muxer, &mut ts, Track::Audio, pts, true, &frames);
    // The next PES's PTS is a tick earlier than counting samples says: no step back.
    let next = pts + (7 * 1024 * 90_000 + 22_050) / 44_100 - 1;
    write_at(
        &mut muxer,
        &mut ts,
        Track::Audio,
        next,
        true,
        &adts_frames(&config, 1, 30, 7),
    );
    let messages = ingest_clean(&ts, 188);
    assert_eq!(messages.len(), 9);
    let times: Vec<u32> = messages[1..].iter().map(|m| m.timestamp).collect();
    let expected: Vec<u32> = (0..7u64)
        .map(|n| ((pts + (n * 1024 * 90_000 + 22_050) / 44_100) / 90) as u32)
        .collect();
    assert_eq!(&times[..7], &expected[..]);
    assert_eq!(times, [1000, 1023, 1046, 1069, 1092, 1116, 1139, 1162]);
    assert!(times.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn adts_with_crc_and_config_change() {
    let mut muxer = muxer(None, Some(AudioStreamType::AacAdts));
    let mut ts = Vec::new();
    // One frame with a CRC: protection_absent 0, frame_length + 2, CRC bytes after the header.
    let mut frame = adts_frames(&aac_config(), 1, 20, 0x40);
    frame[1] = 0xf0;
    let len = 7 + 2 + 20;
    frame[3] = (frame[3] & 0xfc) | (len >> 11) as u8;
    frame[4] = (len >> 3) as u8;
    frame[5] = (frame[5] & 0x1f) | ((len & 7) << 5) as u8;
    frame.splice(7..7, [0xde, 0xad]);
    write_at(&mut muxer, &mut ts, Track::Audio, 0, true, &frame);
    // Then 48 kHz mono: a new sequence header.
    let mono = sluice_proto::codec::AudioSpecificConfig::parse(&[0x11, 0x88]).unwrap();
    assert_eq!((mono.sampling_frequency, mono.channels()), (48_000, 1));
    write_at(
        &mut muxer,
        &mut ts,
        Track::Audio,
        9000,
        true,
        &adts_frames(&mono, 2, 10, 1),
    );
    let messages = ingest_clean(&ts, 1316);
    let bodies: Vec<&[u8]> = messages.iter().map(|m| &m.body[..]).collect();
    assert_eq!(bodies.len(), 5);
    assert_eq!(bodies[0], &[0xaf, 0, 0x12, 0x10]);
    assert_eq!(bodies[1].len(), 22);
    assert_eq!(&bodies[1][..3], &[0xaf, 1, 0x40]);
    assert_eq!(bodies[2], &[0xaf, 0, 0x11, 0x88]);
    assert_eq!(messages[3].timestamp, 100);
    // 1024 samples at 48 kHz = 1920 ticks = 21.33 ms.
    assert_eq!(messages[4].timestamp, (9000 + 1920) / 90);
}

#[test]
fn mpeg_audio_frames_are_split() {
    let mut muxer = muxer(None, Some(AudioStreamType::Mpeg1Audio));
    let mut ts = Vec::new();
    // MPEG-1 layer III, 128 kbit/s, 44.1 kHz, joint stereo: 417-byte frames of 1152 samples.
    let mut frames = Vec::new();
    for index in 0..3u8 {
        let mut frame = vec![0xff, 0xfb, 0x90, 0x64];
        frame.resize(417, index);
        frames.extend_from_slice(&frame);
    }
    write_at(&mut muxer, &mut ts, Track::Audio, 45_000, true, &frames);
    let messages = ingest_clean(&ts, 1316);
    assert_eq!(messages.len(), 3);
    for (index, message) in messages.iter().enumerate() {
        // SoundFormat 2 (MP3), 44 kHz, 16-bit, stereo.
        assert_eq!(message.body[0], 0x2f);
        assert_eq!(message.body.len(), 418);
        let packet = AudioPacket::parse(&message.body).unwrap();
        assert_eq!(packet.codec, AudioCodec::Mp3);
        assert_eq!(packet.data[4], index as u8);
        let ticks = 45_000 + (index as u64 * 1152 * 90_000 + 22_050) / 44_100;
        assert_eq!(message.timestamp, (ticks / 90) as u32);
    }
}

/// A PMT listing H.264 on 0x100, private data (0x06) on 0x102 and AAC on 0x101, as one packet
/// on PID 0x1000 with continuity counter `cc`.
fn pmt_with_private_stream(cc: u8) -> Vec<u8> {
    let mut section = vec![
        0x02, 0xb0, 28, 0x00, 0x01, 0xc1, 0x00, 0x00, 0xe1, 0x00, 0xf0, 0x00,
    ];
    for (stream_type, pid) in [(0x1bu8, 0x100u16), (0x06, 0x102), (0x0f, 0x101)] {
        section.extend_from_slice(&[stream_type, 0xe0 | (pid >> 8) as u8, pid as u8, 0xf0, 0]);
    }
    let crc = crc32_mpeg2(&section);
    section.extend_from_slice(&crc.to_be_bytes());
    let mut packet = vec![0x47, 0x50, 0x00, 0x10 | cc, 0x00];
    packet.extend_from_slice(&section);
    packet.resize(PACKET_SIZE, 0xff);
    packet
}

#[test]
fn other_streams_are_ignored_and_counted() {
    let stream = h264_aac_stream(5, 0);
    // Swap in a PMT that also lists a private stream, and interleave that stream's PES.
    let mut private = TsMuxer::with_config(
        None,
        Some(AudioStreamType::AacAdts),
        TsMuxerConfig {
            audio_pid: 0x102,
            ..TsMuxerConfig::default()
        },
    )
    .unwrap();
    let mut private_ts = Vec::new();
    for index in 0..3 {
        write(
            &mut private,
            &mut private_ts,
            Track::Audio,
            index * 100,
            index * 100,
            false,
            &[0xaa; 300],
        );
    }
    let private_packets: Vec<&[u8]> = private_ts
        .chunks(PACKET_SIZE)
        .filter(|p| p[1] & 0x1f == 0x01 && p[2] == 0x02)
        .collect();
    let mut ts = Vec::new();
    let mut pmt_count = 0u8;
    for packet in stream.chunks(PACKET_SIZE) {
        if packet[1] & 0x1f == 0x10 && packet[2] == 0x00 {
            ts.extend_from_slice(&pmt_with_private_stream(packet[3] & 0x0f));
            pmt_count += 1;
            if pmt_count == 1 {
                for private in &private_packets {
                    ts.extend_from_slice(private);
                }
            }
        } else {
            ts.extend_from_slice(packet);
        }
    }
    let mut ingest = TsIngest::new();
    let (messages, errors) = ingest_with(&mut ingest, &ts, 1316);
    assert!(errors.is_empty(), "{errors:?}");
    let stats = ingest.stats();
    assert_eq!(stats.ignored_streams, 1);
    assert_eq!(stats.ignored_pes, 3);
    assert_eq!(messages, ingest_clean(&stream, 1316));
}

#[test]
fn resynchronises_after_garbage() {
    let ts = h264_aac_stream(20, 0);
    let reference = ingest_clean(&ts, ts.len());
    // Garbage between packets, including stray sync bytes.
    let garbage: &[u8] = &[0x00, 0x47, 0x12, 0x47, 0x47, 0x99, 0x00];
    let mut damaged = Vec::new();
    let mut inserted = 0;
    let mut places = 0;
    for (index, packet) in ts.chunks(PACKET_SIZE).enumerate() {
        if index % 17 == 3 {
            damaged.extend_from_slice(&garbage[..index % garbage.len() + 1]);
            inserted += index % garbage.len() + 1;
            places += 1;
        }
        damaged.extend_from_slice(packet);
    }
    // Leading garbage too.
    let mut input = vec![0x55u8; 10];
    input.extend_from_slice(&damaged);
    inserted += 10;
    places += 1;
    for chunk in [1, 100, 1316, input.len()] {
        let mut ingest = TsIngest::new();
        let (messages, errors) = ingest_with(&mut ingest, &input, chunk);
        assert_eq!(messages, reference, "chunk {chunk}");
        let stats = ingest.stats();
        assert_eq!(stats.skipped_bytes, inserted as u64, "chunk {chunk}");
        assert_eq!(stats.resyncs, places, "chunk {chunk}");
        assert_eq!(stats.errors, places, "chunk {chunk}");
        // Pushes report their first problem: here always a resync.
        assert!(!errors.is_empty());
        assert!(
            errors
                .iter()
                .all(|e| matches!(e, IngestError::Resync { skipped } if *skipped <= 10)),
            "{errors:?}"
        );
    }
}

#[test]
fn full_queue_refuses_input_until_polled() {
    let ts = h264_aac_stream(30, 0);
    let limits = IngestLimits {
        max_pending_messages: 8,
        ..IngestLimits::default()
    };
    let mut ingest = TsIngest::with_limits(limits);
    // One push may leave more than the limit waiting (bounded by its length)...
    let (first, second) = ts.split_at(ts.len() / 2);
    ingest.push(first).unwrap();
    let waiting = ingest.pending();
    assert!(waiting > 8);
    // ...but the next is refused whole.
    assert_eq!(
        ingest.push(second),
        Err(IngestError::QueueFull {
            pending: waiting,
            dropped: second.len()
        })
    );
    assert_eq!(ingest.stats().dropped_bytes, second.len() as u64);
    while ingest.poll().is_some() {}
    // Polled: input is taken again (the lost half shows as a resync at worst).
    let mut tail = h264_aac_stream(30, 0);
    tail.drain(..tail.len() / 2 / PACKET_SIZE * PACKET_SIZE);
    let _ = ingest.push(&tail);
    assert!(ingest.pending() > 0);
}

#[test]
fn a_malformed_pes_costs_only_itself() {
    let ts = h264_aac_stream(10, 0);
    let reference = ingest_clean(&ts, 1316);
    let mut damaged = ts.clone();
    // Break the start code of the fourth video PES.
    let starts: Vec<usize> = damaged
        .chunks(PACKET_SIZE)
        .enumerate()
        .filter(|(_, p)| p[1] & 0x40 != 0 && p[1] & 0x1f == 0x01 && p[2] == 0x00)
        .map(|(index, p)| {
            let adaptation = if p[3] & 0x20 != 0 {
                1 + usize::from(p[4])
            } else {
                0
            };
            index * PACKET_SIZE + 4 + adaptation
        })
        .collect();
    damaged[starts[3] + 2] = 0x07;
    let mut ingest = TsIngest::new();
    let (messages, errors) = ingest_with(&mut ingest, &damaged, 1316);
    assert!(
        matches!(
            errors.as_slice(),
            [IngestError::Ts(TsError::BadPes { pid: 0x100, .. })]
        ),
        "{errors:?}"
    );
    assert_eq!(ingest.stats().errors, 1);
    let mut expected = reference.clone();
    // Sequence header + frames 0..=2, then frame 3 is missing.
    let lost = expected
        .iter()
        .position(|m| m.kind == FlvMessageKind::Video && m.timestamp == 3 * 3600 / 90)
        .unwrap();
    expected.remove(lost);
    assert_eq!(messages, expected);
}

#[test]
fn errors_read_as_log_lines() {
    assert_eq!(
        IngestError::Resync { skipped: 12 }.to_string(),
        "lost TS packet alignment: skipped 12 bytes to the next sync byte"
    );
    let error = IngestError::Codec {
        pid: 0x101,
        what: "ADTS frame",
        source: sluice_proto::codec::CodecError::NoAdtsSync,
    };
    assert_eq!(
        error.to_string(),
        "ADTS frame on PID 0x0101: no ADTS sync word"
    );
}
