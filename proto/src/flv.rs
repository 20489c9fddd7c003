//! FLV tag bodies as carried in RTMP audio (8), video (9) and data (18) messages: what the hub
//! needs to know about each media packet (codec, keyframe, sequence header) without decoding it.
//!
//! Covers the legacy FLV codec ids (AVC = 7, and the widely deployed HEVC = 12 extension) and
//! Enhanced RTMP's extended video header (`IsExHeader` bit, FourCC `avc1`/`hvc1`/`av01`/`vp09`).

use bytes::Bytes;

/// Video codecs we recognise in FLV/RTMP video messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    Avc,
    Hevc,
    Av1,
    Vp9,
    /// A legacy codec id we pass through without understanding (Sorenson, VP6, ...).
    Other(u8),
}

impl VideoCodec {
    /// Short name as used in logs and the API (`H264`, `H265`, ...), after SRS.
    pub fn name(self) -> &'static str {
        match self {
            VideoCodec::Avc => "H264",
            VideoCodec::Hevc => "H265",
            VideoCodec::Av1 => "AV1",
            VideoCodec::Vp9 => "VP9",
            VideoCodec::Other(_) => "Other",
        }
    }
}

/// What a video message is, read from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoTag {
    pub codec: VideoCodec,
    /// Frame type 1: a keyframe (random access point).
    pub keyframe: bool,
    /// Decoder configuration (AVCDecoderConfigurationRecord, HEVC/AV1 sequence start).
    pub sequence_header: bool,
    /// Frame type 5 (video info/command frame): carries no picture.
    pub info_frame: bool,
}

impl VideoTag {
    /// Classifies a video message body. `None` when the body is too short to say.
    pub fn parse(body: &[u8]) -> Option<VideoTag> {
        let first = *body.first()?;
        if first & 0x80 != 0 {
            // Enhanced RTMP: [IsExHeader:1][FrameType:3][PacketType:4][FourCC:4 bytes]...
            let frame_type = (first >> 4) & 0x07;
            let packet_type = first & 0x0f;
            let fourcc = body.get(1..5)?;
            let codec = match fourcc {
                b"avc1" => VideoCodec::Avc,
                b"hvc1" => VideoCodec::Hevc,
                b"av01" => VideoCodec::Av1,
                b"vp09" => VideoCodec::Vp9,
                _ => VideoCodec::Other(0),
            };
            return Some(VideoTag {
                codec,
                keyframe: frame_type == 1,
                // 0 = SequenceStart, 5 = MPEG2TSSequenceStart (AV1).
                sequence_header: packet_type == 0 || packet_type == 5,
                info_frame: frame_type == 5,
            });
        }
        let frame_type = first >> 4;
        let codec_id = first & 0x0f;
        let codec = match codec_id {
            7 => VideoCodec::Avc,
            12 => VideoCodec::Hevc,
            13 => VideoCodec::Av1,
            other => VideoCodec::Other(other),
        };
        let sequence_header = match codec {
            VideoCodec::Avc | VideoCodec::Hevc | VideoCodec::Av1 => *body.get(1)? == 0,
            _ => false,
        };
        Some(VideoTag {
            codec,
            keyframe: frame_type == 1,
            sequence_header,
            info_frame: frame_type == 5,
        })
    }
}

/// Audio codecs we recognise in FLV/RTMP audio messages (the FLV `SoundFormat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioCodec {
    Aac,
    Mp3,
    Opus,
    Other(u8),
}

impl AudioCodec {
    pub fn name(self) -> &'static str {
        match self {
            AudioCodec::Aac => "AAC",
            AudioCodec::Mp3 => "MP3",
            AudioCodec::Opus => "Opus",
            AudioCodec::Other(_) => "Other",
        }
    }
}

/// What an audio message is, read from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioTag {
    pub codec: AudioCodec,
    /// AudioSpecificConfig (AAC packet type 0) or an enhanced-audio sequence start.
    pub sequence_header: bool,
}

impl AudioTag {
    pub fn parse(body: &[u8]) -> Option<AudioTag> {
        let first = *body.first()?;
        let sound_format = first >> 4;
        match sound_format {
            10 => Some(AudioTag {
                codec: AudioCodec::Aac,
                sequence_header: *body.get(1)? == 0,
            }),
            2 | 14 => Some(AudioTag {
                codec: AudioCodec::Mp3,
                sequence_header: false,
            }),
            // Enhanced RTMP audio: [SoundFormat=9:4][AudioPacketType:4][FourCC:4 bytes]
            9 => {
                let fourcc = body.get(1..5)?;
                let codec = match fourcc {
                    b"Opus" => AudioCodec::Opus,
                    b"mp4a" => AudioCodec::Aac,
                    b".mp3" => AudioCodec::Mp3,
                    _ => AudioCodec::Other(9),
                };
                Some(AudioTag {
                    codec,
                    sequence_header: first & 0x0f == 0,
                })
            }
            other => Some(AudioTag {
                codec: AudioCodec::Other(other),
                sequence_header: false,
            }),
        }
    }
}

/// The AMF0 encoding of the string `@setDataFrame`: marker 0x02, u16 length 13, the bytes.
const SET_DATA_FRAME: &[u8] = b"\x02\x00\x0d@setDataFrame";
/// The AMF0 encoding of the string `onMetaData`.
const ON_METADATA: &[u8] = b"\x02\x00\x0aonMetaData";

/// If a data message is stream metadata (`@setDataFrame, onMetaData, {...}` as publishers send
/// it, or a bare `onMetaData, {...}`), returns the body players expect: `onMetaData, {...}`.
pub fn metadata_body(body: &Bytes) -> Option<Bytes> {
    let rest = if body.starts_with(SET_DATA_FRAME) {
        body.slice(SET_DATA_FRAME.len()..)
    } else {
        body.clone()
    };
    rest.starts_with(ON_METADATA).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_avc_keyframe_sequence_header() {
        let tag = VideoTag::parse(&[0x17, 0x00, 0, 0, 0]).unwrap();
        assert_eq!(tag.codec, VideoCodec::Avc);
        assert!(tag.keyframe && tag.sequence_header && !tag.info_frame);
        let tag = VideoTag::parse(&[0x27, 0x01, 0, 0, 0]).unwrap();
        assert!(!tag.keyframe && !tag.sequence_header);
    }

    #[test]
    fn enhanced_hevc() {
        let tag = VideoTag::parse(b"\x90hvc1rest").unwrap();
        assert_eq!(tag.codec, VideoCodec::Hevc);
        assert!(tag.keyframe && tag.sequence_header);
        let tag = VideoTag::parse(b"\xa1hvc1").unwrap();
        assert!(!tag.keyframe && !tag.sequence_header);
        assert_eq!(VideoTag::parse(b"\x90hv"), None);
    }

    #[test]
    fn short_bodies_are_none() {
        assert_eq!(VideoTag::parse(&[]), None);
        assert_eq!(VideoTag::parse(&[0x17]), None);
        assert_eq!(AudioTag::parse(&[]), None);
        assert_eq!(AudioTag::parse(&[0xaf]), None);
    }

    #[test]
    fn aac_sequence_header() {
        let tag = AudioTag::parse(&[0xaf, 0x00, 0x12, 0x10]).unwrap();
        assert_eq!(tag.codec, AudioCodec::Aac);
        assert!(tag.sequence_header);
        assert!(
            !AudioTag::parse(&[0xaf, 0x01, 0x21])
                .unwrap()
                .sequence_header
        );
    }

    #[test]
    fn metadata_strips_set_data_frame() {
        let mut raw = SET_DATA_FRAME.to_vec();
        raw.extend_from_slice(ON_METADATA);
        raw.extend_from_slice(b"\x03\x00\x00\x09");
        let body = metadata_body(&Bytes::from(raw)).unwrap();
        assert!(body.starts_with(ON_METADATA));
        assert_eq!(body.len(), ON_METADATA.len() + 4);
        assert!(metadata_body(&Bytes::from_static(b"\x02\x00\x03abc")).is_none());
    }
}
