//! The TS ingest fuzz property, in one place for two runners: the libFuzzer target
//! (`proto/fuzz/fuzz_targets/ts_ingest.rs`, nightly) and the stable smoke test CI runs
//! (`proto/tests/ts_ingest_fuzz_smoke.rs`). Both include this file with `#[path]`, so it may
//! depend on nothing but `sluice_proto` and std.

use sluice_proto::codec::{
    AudioPacket, AudioPacketKind, AudioSpecificConfig, AvcDecoderConfig, AvccNalus,
    HevcDecoderConfig, VideoPacket, VideoPacketKind,
};
use sluice_proto::flv::{AudioCodec, VideoCodec};
use sluice_proto::ts::{
    AudioStreamType, FlvMessage, FlvMessageKind, Frame, IngestLimits, PACKET_SIZE, Track, TsIngest,
    TsMuxer, VideoStreamType,
};

/// Pushes `data` through a [`TsIngest`] in chunks whose size the first byte picks, polling
/// after each push, and checks what must hold for any input.
///
/// The first byte also picks what the rest is, so that the fuzzer reaches PES reassembly and
/// the codecs without having to forge CRCs and PES headers: bits 2–3 choose valid PAT/PMT
/// tables to put in front (none, H.264 + AAC, H.265 + AAC, H.264 + MPEG audio), and with
/// tables, bit 4 reads the rest as elementary-stream frames (`[flags][u16 length][bytes]`,
/// flags bit 0 audio, bit 1 keyframe, bits 2.. a composition offset) that our muxer packs.
///
/// Panics (the fuzzer's signal) if the ingest panics, if a push with fewer than the limit's
/// messages waiting is refused, if more messages wait than a push can explain, or if any
/// message is not one an RTMP reader accepts: every body parses, every sequence header is a
/// valid decoder configuration, every frame's NAL units are whole, and no frame of a kind comes
/// before that kind's first sequence header. Returns how many messages came out.
pub fn check_ts_ingest(data: &[u8]) -> usize {
    let Some((&selector, data)) = data.split_first() else {
        return 0;
    };
    let streams = match (selector >> 2) & 3 {
        0 => None,
        1 => Some((VideoStreamType::H264, AudioStreamType::AacAdts)),
        2 => Some((VideoStreamType::H265, AudioStreamType::AacAdts)),
        _ => Some((VideoStreamType::H264, AudioStreamType::Mpeg1Audio)),
    };
    let mut input = Vec::with_capacity(2 * PACKET_SIZE + data.len());
    match streams {
        Some((video, audio)) if selector & 0x10 != 0 => mux_frames(video, audio, data, &mut input),
        Some((video, audio)) => {
            TsMuxer::new(Some(video), Some(audio)).write_tables(&mut input);
            input.extend_from_slice(data);
        }
        None => input.extend_from_slice(data),
    }
    let data = &input[..];
    let chunk = match selector & 3 {
        0 => 1316,
        1 => 188,
        2 => data.len().max(1),
        _ => usize::from(selector >> 5) * 29 + 1,
    };
    let limits = IngestLimits::default();
    let mut ingest = TsIngest::with_limits(limits);
    let mut seen = Seen::default();
    let mut pushed = 0usize;
    let mut messages = 0usize;
    for piece in data.chunks(chunk) {
        let refused = ingest.pending() >= limits.max_pending_messages;
        let result = ingest.push(piece);
        if !refused {
            assert!(
                !matches!(result, Err(sluice_proto::ts::IngestError::QueueFull { .. })),
                "push refused with an empty queue"
            );
        }
        pushed += piece.len();
        // Each message stands for at least two bytes of input (an empty ADTS payload makes
        // none; the smallest frame is a 7-byte header plus one byte).
        assert!(
            ingest.pending() <= pushed / 2 + 2,
            "{} messages",
            ingest.pending()
        );
        while let Some(message) = ingest.poll() {
            seen.check(&message);
            messages += 1;
        }
    }
    let _ = ingest.finish();
    while let Some(message) = ingest.poll() {
        seen.check(&message);
        messages += 1;
    }
    let stats = ingest.stats();
    assert!(stats.skipped_bytes + stats.dropped_bytes <= pushed as u64);
    messages
}

/// Packs `[flags][u16 length][bytes]` records as frames with our muxer (see
/// [`check_ts_ingest`]); a record the muxer refuses is skipped.
fn mux_frames(video: VideoStreamType, audio: AudioStreamType, mut data: &[u8], out: &mut Vec<u8>) {
    let mut muxer = TsMuxer::new(Some(video), Some(audio));
    muxer.write_tables(out);
    let (mut video_time, mut audio_time) = (0u64, 0u64);
    while let [flags, high, low, rest @ ..] = data {
        let length = usize::from(u16::from_be_bytes([*high, *low])).min(rest.len());
        let (payload, after) = rest.split_at(length);
        data = after;
        let is_audio = flags & 1 != 0;
        let (track, dts) = if is_audio {
            audio_time += 1920;
            (Track::Audio, audio_time)
        } else {
            video_time += 3000;
            (Track::Video, video_time)
        };
        let pts = dts + u64::from(flags >> 2) * 1500 * u64::from(!is_audio);
        let frame = Frame {
            track,
            pts,
            dts,
            keyframe: flags & 2 != 0,
            data: &[payload],
        };
        let _ = muxer.write_frame(out, &frame);
    }
}

#[derive(Default)]
struct Seen {
    video_config: bool,
    audio_config: bool,
}

impl Seen {
    fn check(&mut self, message: &FlvMessage) {
        assert!(!message.body.is_empty());
        match message.kind {
            FlvMessageKind::Video => {
                let packet = VideoPacket::parse(&message.body).expect("video body parses");
                match packet.kind {
                    VideoPacketKind::SequenceHeader => {
                        match packet.codec {
                            VideoCodec::Avc => {
                                AvcDecoderConfig::parse(packet.data).expect("AVC record");
                            }
                            VideoCodec::Hevc => {
                                HevcDecoderConfig::parse(packet.data).expect("HEVC record");
                            }
                            other => panic!("unexpected codec {other:?}"),
                        }
                        self.video_config = true;
                    }
                    VideoPacketKind::CodedFrames => {
                        assert!(self.video_config, "video frame before its sequence header");
                        let nalus: Vec<&[u8]> = AvccNalus::new(packet.data, 4)
                            .unwrap()
                            .collect::<Result<_, _>>()
                            .expect("whole NAL units");
                        assert!(!nalus.is_empty() && nalus.iter().all(|nal| !nal.is_empty()));
                    }
                    other => panic!("unexpected video packet {other:?}"),
                }
            }
            FlvMessageKind::Audio => {
                let packet = AudioPacket::parse(&message.body).expect("audio body parses");
                match (packet.codec, packet.kind) {
                    (AudioCodec::Aac, AudioPacketKind::SequenceHeader) => {
                        AudioSpecificConfig::parse(packet.data).expect("AudioSpecificConfig");
                        self.audio_config = true;
                    }
                    (AudioCodec::Aac, AudioPacketKind::CodedFrames) => {
                        assert!(self.audio_config, "AAC frame before its sequence header");
                        assert!(!packet.data.is_empty());
                    }
                    (AudioCodec::Mp3, AudioPacketKind::CodedFrames) => {
                        assert!(packet.data.len() >= 4);
                    }
                    other => panic!("unexpected audio packet {other:?}"),
                }
            }
        }
    }
}
