//! Elementary-stream codecs as far as a media server needs them: read decoder configurations and
//! parameter sets (for the API, for players, for remuxing), and rewrap frames from the FLV/RTMP
//! form into the forms MPEG-TS and HLS want. Nothing here decodes pictures or sound.
//!
//! One file per concern:
//! - [`h264`]: AVCDecoderConfigurationRecord and the H.264 SPS (profile, level, size, rate);
//! - [`h265`]: HEVCDecoderConfigurationRecord and the H.265 SPS;
//! - [`annexb`]: length-prefixed ("AVCC") access units to Annex B start-code form, with an
//!   access unit delimiter and the parameter sets in front of every random-access picture;
//! - [`flv_video`]: Annex B access units to FLV video bodies (sequence headers from the
//!   parameter sets, length-prefixed frames), for ingests of start-code video (SRT, WebRTC);
//! - [`aac`]: AudioSpecificConfig and the 7-byte ADTS header;
//! - [`mp3`]: the MPEG audio frame header;
//! - [`packet`]: where the codec payload and the composition time sit in an FLV/RTMP audio or
//!   video body, legacy and Enhanced RTMP alike.
//!
//! Every parser is total: malformed input is a [`CodecError`], never a panic, and nothing is
//! allocated beyond a copy of parameter sets that the input actually holds.

pub mod aac;
pub mod annexb;
mod bits;
pub mod flv_video;
pub mod h264;
pub mod h265;
pub mod mp3;
pub mod packet;

pub use aac::{ADTS_HEADER_LEN, AdtsHeader, AudioSpecificConfig};
pub use annexb::{AccessUnitInfo, AnnexBWriter, AvccNalus, NalCodec};
pub use h264::{AvcDecoderConfig, H264Sps};
pub use h265::{HevcDecoderConfig, HevcSps};
pub use mp3::{MpegAudioHeader, MpegAudioLayer, MpegAudioVersion};
pub use packet::{AudioPacket, AudioPacketKind, VideoPacket, VideoPacketKind};

use thiserror::Error;

/// Why a codec structure could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodecError {
    #[error("{0} ends early")]
    Truncated(&'static str),
    #[error("exp-Golomb code longer than 32 bits")]
    ExpGolombOverflow,
    #[error("{what} has version {version}, only 1 is defined")]
    UnsupportedVersion { what: &'static str, version: u8 },
    #[error("NAL unit length size {0} (only 1, 2 and 4 are allowed)")]
    BadNaluLengthSize(u8),
    #[error(
        "NAL unit length {length} runs past the end of the access unit ({remaining} bytes left)"
    )]
    NaluOverrun { length: usize, remaining: usize },
    #[error("expected {expected} NAL unit, found type {found}")]
    WrongNalType { expected: &'static str, found: u8 },
    #[error("{what} is {value}, out of range")]
    OutOfRange { what: &'static str, value: u64 },
    #[error("more than {limit} parameter sets in a decoder configuration record")]
    TooManyParameterSets { limit: usize },
    #[error("no {0} in the decoder configuration record")]
    MissingParameterSet(&'static str),
    #[error("AAC object type {0} cannot be carried in ADTS (only 1..=4 can)")]
    AdtsObjectType(u8),
    #[error("sampling frequency {0} Hz has no ADTS index")]
    AdtsFrequency(u32),
    #[error("AAC frame of {0} bytes is too long for ADTS (at most 8184 bytes)")]
    AdtsFrameTooLong(usize),
    #[error("no ADTS sync word")]
    NoAdtsSync,
    #[error("no MPEG audio frame sync")]
    NoMpegAudioSync,
    #[error("reserved value in {0}")]
    Reserved(&'static str),
}

/// How many parameter sets of one kind a decoder configuration record may carry. Real encoders
/// send one of each; the limit keeps a hostile record from growing a long list of tiny entries.
pub const MAX_PARAMETER_SETS: usize = 32;
