//! FLV tag bodies as carried in RTMP audio (8), video (9) and data (18) messages: what the hub
//! needs to know about each media packet (codec, keyframe, sequence header) without decoding it.
//!
//! Covers the legacy FLV codec ids (AVC = 7, and the widely deployed HEVC = 12 extension) and
//! Enhanced RTMP's extended video header (`IsExHeader` bit, FourCC `avc1`/`hvc1`/`av01`/`vp09`).
//!
//! Also the FLV container (HTTP-FLV, WS-FLV, DVR files): [`file_header`], and per tag
//! [`tag_header`] + shared body + [`previous_tag_size`] as separate pieces so each viewer
//! writes its own small header around a body shared by all; [`FileHeader::parse`] and
//! [`Tag::parse`] read it back. Codec-level reading of the bodies is in [`crate::codec`].

use bytes::{BufMut, Bytes};

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
    /// The codec an Enhanced RTMP FourCC names.
    pub fn from_fourcc(fourcc: &[u8]) -> VideoCodec {
        match fourcc {
            b"avc1" => VideoCodec::Avc,
            b"hvc1" => VideoCodec::Hevc,
            b"av01" => VideoCodec::Av1,
            b"vp09" => VideoCodec::Vp9,
            _ => VideoCodec::Other(0),
        }
    }

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
            let codec = VideoCodec::from_fourcc(body.get(1..5)?);
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
    /// The codec an Enhanced RTMP audio FourCC names.
    pub fn from_fourcc(fourcc: &[u8]) -> AudioCodec {
        match fourcc {
            b"Opus" => AudioCodec::Opus,
            b"mp4a" => AudioCodec::Aac,
            b".mp3" => AudioCodec::Mp3,
            _ => AudioCodec::Other(9),
        }
    }

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
                let codec = AudioCodec::from_fourcc(body.get(1..5)?);
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

// ---------------------------------------------------------------------------------------------
// FLV files and streams (HTTP-FLV, WS-FLV, DVR): the container around the tag bodies above.
//
// A file is a 9-byte header and PreviousTagSize0 (0), then tags: an 11-byte tag header (type,
// body size, timestamp with its extension byte, stream id 0), the body, and a 4-byte
// PreviousTagSize (11 + body size). The three parts are separate functions so that the hub
// can share one body between all viewers while each viewer writes its own header, carrying its
// own timestamp (viewers start their clocks at different points), and trailer.
// ---------------------------------------------------------------------------------------------

/// Bytes of the file header plus PreviousTagSize0.
pub const FILE_HEADER_LEN: usize = 13;
/// Bytes of a tag header.
pub const TAG_HEADER_LEN: usize = 11;
/// Bytes of the PreviousTagSize trailer after each tag.
pub const PREVIOUS_TAG_SIZE_LEN: usize = 4;
/// The largest body a tag's 24-bit DataSize can describe.
pub const MAX_TAG_DATA_SIZE: usize = 0x00ff_ffff;

/// The FLV TagType.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagType {
    Audio = 8,
    Video = 9,
    /// Script data (`onMetaData`).
    Script = 18,
}

/// Why FLV container bytes could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlvError {
    #[error("FLV tag body of {0} bytes exceeds the 24-bit DataSize")]
    TagTooLarge(usize),
    #[error("FLV input ends in the middle of {0}")]
    Truncated(&'static str),
    #[error("not an FLV file (no `FLV` signature)")]
    NotFlv,
    #[error("FLV header size {0} is smaller than 9")]
    BadHeaderSize(u32),
}

/// The file header with PreviousTagSize0: `FLV`, version 1, audio/video flags, header size 9,
/// then four zero bytes.
pub fn file_header(has_audio: bool, has_video: bool) -> [u8; FILE_HEADER_LEN] {
    let flags = (u8::from(has_audio) << 2) | u8::from(has_video);
    [b'F', b'L', b'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0]
}

/// Appends [`file_header`].
pub fn write_file_header<B: BufMut + ?Sized>(out: &mut B, has_audio: bool, has_video: bool) {
    out.put_slice(&file_header(has_audio, has_video));
}

/// A tag header for a body of `data_size` bytes at `timestamp_ms` (the low 24 bits, then the
/// extension byte with the high 8, as the format splits it), stream id 0.
pub fn tag_header(
    tag_type: TagType,
    data_size: usize,
    timestamp_ms: u32,
) -> Result<[u8; TAG_HEADER_LEN], FlvError> {
    if data_size > MAX_TAG_DATA_SIZE {
        return Err(FlvError::TagTooLarge(data_size));
    }
    let size = (data_size as u32).to_be_bytes();
    let time = timestamp_ms.to_be_bytes();
    Ok([
        tag_type as u8,
        size[1],
        size[2],
        size[3],
        time[1],
        time[2],
        time[3],
        time[0],
        0,
        0,
        0,
    ])
}

/// Appends [`tag_header`].
pub fn write_tag_header<B: BufMut + ?Sized>(
    out: &mut B,
    tag_type: TagType,
    data_size: usize,
    timestamp_ms: u32,
) -> Result<(), FlvError> {
    out.put_slice(&tag_header(tag_type, data_size, timestamp_ms)?);
    Ok(())
}

/// The PreviousTagSize after a tag whose body is `data_size` bytes: 11 + `data_size`.
pub fn previous_tag_size(data_size: usize) -> [u8; PREVIOUS_TAG_SIZE_LEN] {
    // Saturates only for bodies `tag_header` already refused.
    let size = u32::try_from(TAG_HEADER_LEN + data_size).unwrap_or(u32::MAX);
    size.to_be_bytes()
}

/// Appends [`previous_tag_size`].
pub fn write_previous_tag_size<B: BufMut + ?Sized>(out: &mut B, data_size: usize) {
    out.put_slice(&previous_tag_size(data_size));
}

/// Appends a whole tag: header, body, PreviousTagSize. Nothing is written on error.
pub fn write_tag<B: BufMut + ?Sized>(
    out: &mut B,
    tag_type: TagType,
    timestamp_ms: u32,
    body: &[u8],
) -> Result<(), FlvError> {
    write_tag_header(out, tag_type, body.len(), timestamp_ms)?;
    out.put_slice(body);
    write_previous_tag_size(out, body.len());
    Ok(())
}

/// A parsed file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    pub version: u8,
    pub has_audio: bool,
    pub has_video: bool,
}

impl FileHeader {
    /// Reads the file header and PreviousTagSize0; returns it with the bytes consumed (13 for
    /// a standard header; a larger DataOffset is honoured).
    pub fn parse(input: &[u8]) -> Result<(FileHeader, usize), FlvError> {
        let head = input
            .get(..9)
            .ok_or(FlvError::Truncated("the file header"))?;
        if &head[..3] != b"FLV" {
            return Err(FlvError::NotFlv);
        }
        let data_offset = u32::from_be_bytes([head[5], head[6], head[7], head[8]]);
        if data_offset < 9 {
            return Err(FlvError::BadHeaderSize(data_offset));
        }
        let consumed = (data_offset as usize).saturating_add(PREVIOUS_TAG_SIZE_LEN);
        if input.len() < consumed {
            return Err(FlvError::Truncated("the file header"));
        }
        Ok((
            FileHeader {
                version: head[3],
                has_audio: head[4] & 0x04 != 0,
                has_video: head[4] & 0x01 != 0,
            },
            consumed,
        ))
    }
}

/// One tag read from a file or stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag<'a> {
    /// TagType (8 audio, 9 video, 18 script); the filter bit is dropped.
    pub tag_type: u8,
    /// The Filter bit: the body is encrypted (never in practice).
    pub filtered: bool,
    /// Milliseconds, extension byte applied.
    pub timestamp: u32,
    pub stream_id: u32,
    pub body: &'a [u8],
    /// The PreviousTagSize that followed (not checked: muxers get it wrong).
    pub previous_tag_size: u32,
}

impl<'a> Tag<'a> {
    /// Reads one tag and its PreviousTagSize from the start of `input`; returns it with the
    /// bytes consumed. [`FlvError::Truncated`] means: wait for more input.
    pub fn parse(input: &'a [u8]) -> Result<(Tag<'a>, usize), FlvError> {
        let header = input
            .get(..TAG_HEADER_LEN)
            .ok_or(FlvError::Truncated("a tag header"))?;
        let data_size =
            (usize::from(header[1]) << 16) | (usize::from(header[2]) << 8) | usize::from(header[3]);
        let timestamp = u32::from_be_bytes([header[7], header[4], header[5], header[6]]);
        let stream_id = u32::from_be_bytes([0, header[8], header[9], header[10]]);
        let body_end = TAG_HEADER_LEN + data_size;
        let body = input
            .get(TAG_HEADER_LEN..body_end)
            .ok_or(FlvError::Truncated("a tag body"))?;
        let trailer = input
            .get(body_end..body_end + PREVIOUS_TAG_SIZE_LEN)
            .ok_or(FlvError::Truncated("a PreviousTagSize"))?;
        Ok((
            Tag {
                tag_type: header[0] & 0x1f,
                filtered: header[0] & 0x20 != 0,
                timestamp,
                stream_id,
                body,
                previous_tag_size: u32::from_be_bytes([
                    trailer[0], trailer[1], trailer[2], trailer[3],
                ]),
            },
            body_end + PREVIOUS_TAG_SIZE_LEN,
        ))
    }
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
    #[test]
    fn file_header_bytes() {
        assert_eq!(
            file_header(true, true),
            [b'F', b'L', b'V', 1, 5, 0, 0, 0, 9, 0, 0, 0, 0]
        );
        assert_eq!(file_header(false, true)[4], 1);
        assert_eq!(file_header(true, false)[4], 4);
        let (header, consumed) = FileHeader::parse(&file_header(true, false)).unwrap();
        assert_eq!(consumed, FILE_HEADER_LEN);
        assert!(header.has_audio && !header.has_video);
        assert_eq!(
            FileHeader::parse(b"FLX\x01\x05\0\0\0\x09\0\0\0\0"),
            Err(FlvError::NotFlv)
        );
        assert!(FileHeader::parse(b"FLV\x01\x05\0\0\0\x09\0\0\0").is_err());
    }

    #[test]
    fn tag_header_splits_extended_timestamp() {
        // The first video tag of an ffmpeg-written file: video, 0x32 bytes, time 0.
        assert_eq!(
            tag_header(TagType::Video, 0x32, 0).unwrap(),
            [0x09, 0x00, 0x00, 0x32, 0, 0, 0, 0, 0, 0, 0]
        );
        // 0x12345678 ms: low 24 bits first, the high byte in the extension.
        assert_eq!(
            tag_header(TagType::Audio, 1, 0x1234_5678).unwrap(),
            [0x08, 0, 0, 1, 0x34, 0x56, 0x78, 0x12, 0, 0, 0]
        );
        assert_eq!(previous_tag_size(0x32), [0, 0, 0, 0x3d]);
        assert_eq!(
            tag_header(TagType::Video, MAX_TAG_DATA_SIZE + 1, 0),
            Err(FlvError::TagTooLarge(MAX_TAG_DATA_SIZE + 1))
        );
        let mut out = Vec::new();
        assert!(write_tag(&mut out, TagType::Video, 0, &vec![0; MAX_TAG_DATA_SIZE + 1]).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn tag_round_trip() {
        let mut out = Vec::new();
        write_tag(&mut out, TagType::Script, 0xff00_0001, b"body").unwrap();
        let (tag, consumed) = Tag::parse(&out).unwrap();
        assert_eq!(consumed, out.len());
        assert_eq!(tag.tag_type, 18);
        assert_eq!(tag.timestamp, 0xff00_0001);
        assert_eq!(tag.body, b"body");
        assert_eq!(tag.previous_tag_size, 15);
        for cut in 0..out.len() {
            assert!(matches!(
                Tag::parse(&out[..cut]),
                Err(FlvError::Truncated(_))
            ));
        }
    }
}
