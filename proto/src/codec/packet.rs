//! Where the codec data and the composition time sit inside an FLV/RTMP audio or video body.
//!
//! Video, legacy (`[FrameType:4][CodecId:4]`): for AVC (7) and HEVC (12),
//! `[AVCPacketType:8][CompositionTime:SI24]` then the payload; other codecs have the payload
//! right after the first byte. Enhanced RTMP (`IsExHeader` set):
//! `[1][FrameType:3][PacketType:4][FourCC:32]`, then for `CodedFrames` of `avc1`/`hvc1` an SI24
//! composition time, and for `CodedFramesX` none (it is zero). PTS = DTS + composition time,
//! where DTS is the message timestamp.
//!
//! Audio, legacy: `[SoundFormat:4][Rate:2][Size:1][Type:1]`, for AAC (10) an
//! `AACPacketType` byte (0 AudioSpecificConfig, 1 raw frame). Enhanced (SoundFormat 9):
//! `[9][PacketType:4][FourCC:32]` then the payload.

use super::CodecError;
use crate::flv::{AudioCodec, VideoCodec};

/// What a video body carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoPacketKind {
    /// Decoder configuration (AVCDecoderConfigurationRecord, HEVCDecoderConfigurationRecord,
    /// AV1CodecConfigurationRecord, ...).
    SequenceHeader,
    /// One access unit (length-prefixed NAL units for AVC/HEVC).
    CodedFrames,
    /// End of sequence: no picture.
    EndOfSequence,
    /// Enhanced RTMP `Metadata` (AMF-encoded colour info and the like).
    Metadata,
    /// A command frame (frame type 5); the payload is the command.
    Command,
    /// Any other Enhanced RTMP packet type (multitrack, ModEx, MPEG2TSSequenceStart): passed
    /// through, not understood.
    Other(u8),
}

/// A video body split into its header fields and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoPacket<'a> {
    pub codec: VideoCodec,
    /// Frame type 1: a random access point.
    pub keyframe: bool,
    pub kind: VideoPacketKind,
    /// Milliseconds from DTS to PTS (signed, may be negative with some encoders).
    pub composition_time: i32,
    pub data: &'a [u8],
}

/// Sign-extends a 24-bit big-endian value.
fn si24(bytes: &[u8]) -> i32 {
    let raw = (i32::from(bytes[0]) << 16) | (i32::from(bytes[1]) << 8) | i32::from(bytes[2]);
    (raw << 8) >> 8
}

impl<'a> VideoPacket<'a> {
    pub fn parse(body: &'a [u8]) -> Result<VideoPacket<'a>, CodecError> {
        let first = *body
            .first()
            .ok_or(CodecError::Truncated("FLV video body"))?;
        if first & 0x80 != 0 {
            return Self::parse_enhanced(body, first);
        }
        let frame_type = first >> 4;
        let codec = match first & 0x0f {
            7 => VideoCodec::Avc,
            12 => VideoCodec::Hevc,
            other => {
                return Ok(VideoPacket {
                    codec: VideoCodec::Other(other),
                    keyframe: frame_type == 1,
                    kind: if frame_type == 5 {
                        VideoPacketKind::Command
                    } else {
                        VideoPacketKind::CodedFrames
                    },
                    composition_time: 0,
                    data: &body[1..],
                });
            }
        };
        let header = body
            .get(1..5)
            .ok_or(CodecError::Truncated("FLV AVC/HEVC video header"))?;
        let kind = match header[0] {
            _ if frame_type == 5 => VideoPacketKind::Command,
            0 => VideoPacketKind::SequenceHeader,
            1 => VideoPacketKind::CodedFrames,
            2 => VideoPacketKind::EndOfSequence,
            other => VideoPacketKind::Other(other),
        };
        Ok(VideoPacket {
            codec,
            keyframe: frame_type == 1,
            kind,
            composition_time: si24(&header[1..4]),
            data: &body[5..],
        })
    }

    fn parse_enhanced(body: &'a [u8], first: u8) -> Result<VideoPacket<'a>, CodecError> {
        let frame_type = (first >> 4) & 0x07;
        let packet_type = first & 0x0f;
        let fourcc = body
            .get(1..5)
            .ok_or(CodecError::Truncated("Enhanced RTMP video header"))?;
        let codec = VideoCodec::from_fourcc(fourcc);
        let mut data = &body[5..];
        let mut composition_time = 0;
        let kind = match packet_type {
            // Metadata is allowed on any frame type; otherwise a command frame is a command.
            4 => VideoPacketKind::Metadata,
            _ if frame_type == 5 => VideoPacketKind::Command,
            0 => VideoPacketKind::SequenceHeader,
            1 => {
                if matches!(codec, VideoCodec::Avc | VideoCodec::Hevc) {
                    let cts = data
                        .get(..3)
                        .ok_or(CodecError::Truncated("Enhanced RTMP composition time"))?;
                    composition_time = si24(cts);
                    data = &data[3..];
                }
                VideoPacketKind::CodedFrames
            }
            2 => VideoPacketKind::EndOfSequence,
            3 => VideoPacketKind::CodedFrames,
            other => VideoPacketKind::Other(other),
        };
        Ok(VideoPacket {
            codec,
            keyframe: frame_type == 1,
            kind,
            composition_time,
            data,
        })
    }

    /// PTS in milliseconds for a message whose timestamp (DTS) is `dts_ms`.
    pub fn pts_ms(&self, dts_ms: i64) -> i64 {
        dts_ms + i64::from(self.composition_time)
    }
}

/// What an audio body carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioPacketKind {
    /// AudioSpecificConfig (AAC) or an Enhanced RTMP sequence start (e.g. `dOps` for Opus).
    SequenceHeader,
    /// Coded audio frames.
    CodedFrames,
    /// Enhanced RTMP sequence end.
    EndOfSequence,
    /// Other Enhanced RTMP packet types (multichannel config, multitrack, ModEx).
    Other(u8),
}

/// An audio body split into its header fields and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioPacket<'a> {
    pub codec: AudioCodec,
    pub kind: AudioPacketKind,
    /// For legacy bodies, the SoundRate/SoundSize/SoundType bits of the first byte.
    pub sound_flags: u8,
    pub data: &'a [u8],
}

impl<'a> AudioPacket<'a> {
    pub fn parse(body: &'a [u8]) -> Result<AudioPacket<'a>, CodecError> {
        let first = *body
            .first()
            .ok_or(CodecError::Truncated("FLV audio body"))?;
        let sound_format = first >> 4;
        match sound_format {
            10 => {
                let packet_type = *body
                    .get(1)
                    .ok_or(CodecError::Truncated("FLV AAC audio header"))?;
                Ok(AudioPacket {
                    codec: AudioCodec::Aac,
                    kind: if packet_type == 0 {
                        AudioPacketKind::SequenceHeader
                    } else {
                        AudioPacketKind::CodedFrames
                    },
                    sound_flags: first & 0x0f,
                    data: &body[2..],
                })
            }
            9 => {
                let fourcc = body
                    .get(1..5)
                    .ok_or(CodecError::Truncated("Enhanced RTMP audio header"))?;
                let codec = AudioCodec::from_fourcc(fourcc);
                let kind = match first & 0x0f {
                    0 => AudioPacketKind::SequenceHeader,
                    1 => AudioPacketKind::CodedFrames,
                    2 => AudioPacketKind::EndOfSequence,
                    other => AudioPacketKind::Other(other),
                };
                Ok(AudioPacket {
                    codec,
                    kind,
                    sound_flags: 0,
                    data: &body[5..],
                })
            }
            other => Ok(AudioPacket {
                codec: if matches!(other, 2 | 14) {
                    AudioCodec::Mp3
                } else {
                    AudioCodec::Other(other)
                },
                kind: AudioPacketKind::CodedFrames,
                sound_flags: first & 0x0f,
                data: &body[1..],
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_avc_composition_time() {
        let packet = VideoPacket::parse(&[0x27, 0x01, 0x00, 0x00, 0x50, 0xaa]).unwrap();
        assert_eq!(packet.codec, VideoCodec::Avc);
        assert_eq!(packet.kind, VideoPacketKind::CodedFrames);
        assert!(!packet.keyframe);
        assert_eq!(packet.composition_time, 80);
        assert_eq!(packet.data, &[0xaa]);
        assert_eq!(packet.pts_ms(1000), 1080);
        // Negative: 0xffffd8 = -40.
        let packet = VideoPacket::parse(&[0x1c, 0x01, 0xff, 0xff, 0xd8]).unwrap();
        assert_eq!(packet.codec, VideoCodec::Hevc);
        assert_eq!(packet.composition_time, -40);
        assert!(packet.data.is_empty());
        let packet = VideoPacket::parse(&[0x17, 0x00, 0, 0, 0, 1, 2]).unwrap();
        assert_eq!(packet.kind, VideoPacketKind::SequenceHeader);
        assert!(VideoPacket::parse(&[0x17, 0x01, 0]).is_err());
        assert!(VideoPacket::parse(&[]).is_err());
    }

    #[test]
    fn enhanced_coded_frames_with_and_without_cts() {
        let packet = VideoPacket::parse(b"\x91hvc1\x00\x00\x28NAL").unwrap();
        assert_eq!(packet.codec, VideoCodec::Hevc);
        assert!(packet.keyframe);
        assert_eq!(packet.kind, VideoPacketKind::CodedFrames);
        assert_eq!(packet.composition_time, 40);
        assert_eq!(packet.data, b"NAL");
        let packet = VideoPacket::parse(b"\xa3hvc1NAL").unwrap();
        assert_eq!(packet.kind, VideoPacketKind::CodedFrames);
        assert_eq!(packet.composition_time, 0);
        assert_eq!(packet.data, b"NAL");
        // AV1 CodedFrames carries no composition time.
        let packet = VideoPacket::parse(b"\xa1av01OBU").unwrap();
        assert_eq!(packet.data, b"OBU");
        let packet = VideoPacket::parse(b"\x90av01conf").unwrap();
        assert_eq!(packet.kind, VideoPacketKind::SequenceHeader);
        assert!(VideoPacket::parse(b"\x91hvc1\x00").is_err());
        assert!(VideoPacket::parse(b"\x91hv").is_err());
    }

    #[test]
    fn audio_bodies() {
        let packet = AudioPacket::parse(&[0xaf, 0x00, 0x12, 0x10]).unwrap();
        assert_eq!(packet.codec, AudioCodec::Aac);
        assert_eq!(packet.kind, AudioPacketKind::SequenceHeader);
        assert_eq!(packet.data, &[0x12, 0x10]);
        let packet = AudioPacket::parse(&[0xaf, 0x01, 0x21]).unwrap();
        assert_eq!(packet.kind, AudioPacketKind::CodedFrames);
        let packet = AudioPacket::parse(&[0x2f, 0xff, 0xfb]).unwrap();
        assert_eq!(packet.codec, AudioCodec::Mp3);
        assert_eq!(packet.data, &[0xff, 0xfb]);
        let packet = AudioPacket::parse(b"\x91Opusframe").unwrap();
        assert_eq!(packet.codec, AudioCodec::Opus);
        assert_eq!(packet.kind, AudioPacketKind::CodedFrames);
        assert_eq!(packet.data, b"frame");
        assert!(AudioPacket::parse(&[0xaf]).is_err());
        assert!(AudioPacket::parse(b"\x90Op").is_err());
    }
}
