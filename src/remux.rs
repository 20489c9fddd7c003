//! Remuxing a publisher's media into MPEG-TS, once per frame, for every HTTP-TS viewer (and,
//! later, HLS): FLV/RTMP bodies in, 188-byte packets out. It follows the stream's sequence
//! headers (AVC/HEVC decoder configuration, AAC AudioSpecificConfig) and turns each frame
//! into an Annex B access unit or an ADTS/MP3 frame inside PES packets.

use bytes::{Bytes, BytesMut};
use sluice_proto::codec::{
    AdtsHeader, AnnexBWriter, AudioPacket, AudioPacketKind, AudioSpecificConfig, AvcDecoderConfig,
    HevcDecoderConfig, MpegAudioHeader, MpegAudioVersion, VideoPacket, VideoPacketKind,
};
use sluice_proto::flv::{AudioCodec, VideoCodec};
use sluice_proto::ts::{self, AudioStreamType, Track, TsMuxer, VideoStreamType};

use crate::hub::FrameKind;

/// A frame as TS: the bytes, and whether a viewer may start there (PAT/PMT precede it and it
/// is a keyframe, or an audio-only stream's periodic table point).
#[derive(Debug)]
pub struct TsFrame {
    pub bytes: Bytes,
    pub join_point: bool,
}

enum AudioConfig {
    Aac(AudioSpecificConfig),
    Mp3(AudioStreamType),
}

#[derive(Default)]
pub struct TsRemuxer {
    video: Option<(VideoStreamType, AnnexBWriter)>,
    audio: Option<AudioConfig>,
    /// Created at the first coded frame, once the stream's codecs are known; dropped (and
    /// recreated with new tables) when a sequence header changes them.
    muxer: Option<TsMuxer>,
    annexb: Vec<u8>,
    out: BytesMut,
}

impl TsRemuxer {
    pub fn new() -> TsRemuxer {
        TsRemuxer::default()
    }

    /// The frame as TS, or `None` for what TS does not carry (metadata, sequence headers,
    /// codecs it cannot hold, or bodies that do not parse — skipped, not fatal).
    pub fn remux(&mut self, kind: FrameKind, timestamp: u32, payload: &[u8]) -> Option<TsFrame> {
        match kind {
            FrameKind::Video => self.video(timestamp, payload),
            FrameKind::Audio => self.audio(timestamp, payload),
            FrameKind::Metadata | FrameKind::Opus => None,
        }
    }

    fn video(&mut self, timestamp: u32, payload: &[u8]) -> Option<TsFrame> {
        let packet = VideoPacket::parse(payload).ok()?;
        match packet.kind {
            VideoPacketKind::SequenceHeader => {
                let writer = match packet.codec {
                    VideoCodec::Avc => (
                        VideoStreamType::H264,
                        AnnexBWriter::h264(&AvcDecoderConfig::parse(packet.data).ok()?),
                    ),
                    VideoCodec::Hevc => (
                        VideoStreamType::H265,
                        AnnexBWriter::h265(&HevcDecoderConfig::parse(packet.data).ok()?),
                    ),
                    _ => return None,
                };
                if self.video.as_ref().map(|v| v.0) != Some(writer.0) {
                    self.muxer = None;
                }
                self.video = Some(writer);
                None
            }
            VideoPacketKind::CodedFrames => {
                let (_, writer) = self.video.as_ref()?;
                self.annexb.clear();
                writer
                    .write(packet.data, packet.keyframe, &mut self.annexb)
                    .ok()?;
                let dts = i64::from(timestamp);
                let pts = packet.pts_ms(dts);
                let annexb = std::mem::take(&mut self.annexb);
                let frame = self.mux(Track::Video, pts, dts, packet.keyframe, &[&annexb]);
                self.annexb = annexb;
                frame
            }
            _ => None,
        }
    }

    fn audio(&mut self, timestamp: u32, payload: &[u8]) -> Option<TsFrame> {
        let packet = AudioPacket::parse(payload).ok()?;
        let ms = i64::from(timestamp);
        match (packet.codec, packet.kind) {
            (AudioCodec::Aac, AudioPacketKind::SequenceHeader) => {
                let config = AudioSpecificConfig::parse(packet.data).ok()?;
                if !matches!(self.audio, Some(AudioConfig::Aac(_))) {
                    self.muxer = None;
                }
                self.audio = Some(AudioConfig::Aac(config));
                None
            }
            (AudioCodec::Aac, AudioPacketKind::CodedFrames) => {
                let Some(AudioConfig::Aac(config)) = &self.audio else {
                    return None;
                };
                let adts = AdtsHeader::for_config(config)
                    .and_then(|h| h.with_frame_len(packet.data.len()))
                    .ok()?
                    .encode();
                let random_access = self.video.is_none();
                self.mux(Track::Audio, ms, ms, random_access, &[&adts, packet.data])
            }
            (AudioCodec::Mp3, _) => {
                if self.audio.is_none() {
                    let header = MpegAudioHeader::parse(packet.data).ok()?;
                    let kind = match header.version {
                        MpegAudioVersion::Mpeg1 => AudioStreamType::Mpeg1Audio,
                        MpegAudioVersion::Mpeg2 | MpegAudioVersion::Mpeg25 => {
                            AudioStreamType::Mpeg2Audio
                        }
                    };
                    self.audio = Some(AudioConfig::Mp3(kind));
                    self.muxer = None;
                }
                // Audio-only: every frame is a place to start (after the tables).
                let random_access = self.video.is_none();
                self.mux(Track::Audio, ms, ms, random_access, &[packet.data])
            }
            _ => None,
        }
    }

    fn mux(
        &mut self,
        track: Track,
        pts_ms: i64,
        dts_ms: i64,
        keyframe: bool,
        data: &[&[u8]],
    ) -> Option<TsFrame> {
        let video = self.video.as_ref().map(|v| v.0);
        let audio = match &self.audio {
            Some(AudioConfig::Aac(_)) => Some(AudioStreamType::AacAdts),
            Some(AudioConfig::Mp3(kind)) => Some(*kind),
            None => None,
        };
        let muxer = self.muxer.get_or_insert_with(|| TsMuxer::new(video, audio));
        let frame = ts::Frame::from_ms(track, pts_ms, dts_ms, keyframe, data);
        self.out.reserve(muxer.frame_len(&frame));
        let written = muxer.write_frame(&mut self.out, &frame).ok()?;
        Some(TsFrame {
            bytes: self.out.split().freeze(),
            join_point: written.join_point,
        })
    }
}
