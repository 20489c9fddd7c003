//! Audio transcoding between AAC (RTMP, SRT, HLS) and Opus (WebRTC), for the WebRTC bridges:
//! [`AacToOpus`] makes an RTMP/SRT stream's Opus for WebRTC players, [`OpusToAac`] a WebRTC
//! publisher's AAC for everyone else.
//!
//! With the `transcode` feature they are FFmpeg's decoders, resampler and encoders
//! (`ffmpeg.rs`); without it (no FFmpeg where the server is built) a stand-in
//! (`disabled.rs`) whose constructors return [`TranscodeError::Disabled`], so the server
//! builds and runs everywhere and bridged streams carry video only.

use bytes::Bytes;

#[cfg(not(feature = "transcode"))]
mod disabled;
#[cfg(feature = "transcode")]
mod ffmpeg;

#[cfg(not(feature = "transcode"))]
pub use disabled::{AacToOpus, OpusToAac};
#[cfg(feature = "transcode")]
pub use ffmpeg::{AacToOpus, OpusToAac};

/// One encoded audio frame out of a transcoder.
#[derive(Debug, Clone)]
pub struct EncodedAudio {
    pub data: Bytes,
    /// Presentation time in ms (same clock as the input's).
    pub timestamp_ms: u32,
    /// Duration in samples at the output rate.
    #[allow(dead_code)] // the tests check it; the server goes by timestamps
    pub samples: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    /// Only the stand-in (`disabled.rs`) returns it.
    #[cfg_attr(feature = "transcode", allow(dead_code))]
    #[error("audio transcoding is not compiled in (build with the `transcode` feature)")]
    Disabled,
    #[cfg_attr(not(feature = "transcode"), allow(dead_code))]
    #[error("codec `{0}` is not available in this FFmpeg build")]
    CodecNotFound(&'static str),
    #[cfg_attr(not(feature = "transcode"), allow(dead_code))]
    #[error("invalid codec configuration: {0}")]
    InvalidConfig(&'static str),
    /// Setting up or running a codec/resampler failed (not the input's fault).
    #[cfg_attr(not(feature = "transcode"), allow(dead_code))]
    #[error("codec error: {0}")]
    Codec(String),
    /// The input packet could not be decoded; the transcoder stays usable.
    #[cfg_attr(not(feature = "transcode"), allow(dead_code))]
    #[error("undecodable input packet: {0}")]
    Decode(String),
}
