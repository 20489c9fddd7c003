//! Fragmented MP4 (CMAF) for live HLS and DASH: the initialisation segment (`ftyp` + `moov`)
//! and media fragments (`moof` + the `mdat` header), plus the RFC 6381 codec strings that
//! playlists and manifests announce.
//!
//! This file owns the public types, the error enum, the limits and [`codec_string`];
//! [`init`] builds the initialisation segment and [`fragment`] the per-fragment boxes.
//!
//! The two halves are written differently on purpose. The initialisation segment is built with
//! the `mp4-atom` crate: it is written once per stream, its box tree is large, and the crate
//! models every box it needs. `moof` is written by hand with a tiny box writer, because
//! `mp4-atom`'s `Moof`/`Traf`/`Trun` would cost a tree of `Vec`s per fragment (one entry per
//! sample) and a second encoding pass just to learn the `moof` size that `data_offset` needs,
//! while the hand-written boxes have fixed sizes that are computed up front and written once.
//!
//! Like the rest of the crate this is sans-IO and total: bad input is an [`Fmp4Error`], never
//! a panic, and what is allocated is bounded by the limits below.

pub mod fragment;
pub mod init;

pub use fragment::write_fragment;
pub use init::write_init;

use thiserror::Error;

use crate::codec::{AvcDecoderConfig, HevcDecoderConfig};

/// Most tracks in one initialisation segment. A live stream has one video and one audio
/// track; the limit only keeps a confused caller from building an absurd `moov`.
pub const MAX_TRACKS: usize = 16;

/// Longest decoder configuration record (avcC / hvcC / av1C / AudioSpecificConfig) accepted.
/// Real records are tens to a few hundred bytes; parameter sets never approach this.
pub const MAX_RECORD_LEN: usize = 64 * 1024;

/// Most samples in one fragment, all runs together. At 16 bytes per `trun` entry this bounds
/// the `moof` to about 1 MiB, which also keeps every `data_offset` well inside `i32`.
pub const MAX_FRAGMENT_SAMPLES: usize = 65_536;

/// Most track runs (`traf` boxes) in one fragment.
pub const MAX_FRAGMENT_RUNS: usize = 64;

/// The decoder configuration of one track, as the publisher sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackCodec {
    /// AVCDecoderConfigurationRecord bytes (as in FLV's AVC sequence header after the 5-byte header)
    Avc {
        record: Vec<u8>,
        width: u16,
        height: u16,
    },
    /// HEVCDecoderConfigurationRecord; sample entry must be `hvc1` (Safari)
    Hevc {
        record: Vec<u8>,
        width: u16,
        height: u16,
    },
    /// AV1CodecConfigurationRecord (av1C)
    Av1 {
        record: Vec<u8>,
        width: u16,
        height: u16,
    },
    /// AudioSpecificConfig bytes
    Aac {
        config: Vec<u8>,
        sample_rate: u32,
        channels: u16,
    },
    Opus {
        sample_rate: u32,
        channels: u16,
        pre_skip: u16,
    },
}

impl TrackCodec {
    /// Whether the track is video (`vide` handler) rather than audio (`soun`).
    pub fn is_video(&self) -> bool {
        matches!(
            self,
            TrackCodec::Avc { .. } | TrackCodec::Hevc { .. } | TrackCodec::Av1 { .. }
        )
    }
}

/// One track of the initialisation segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    /// Track id, non-zero and unique; fragments refer to the track by it.
    pub id: u32,
    /// Ticks per second of this track's decode times and durations (`mdhd`), e.g. 90000 for
    /// video and the sample rate for audio.
    pub timescale: u32,
    pub codec: TrackCodec,
}

/// One sample (access unit / audio frame) of a track run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// In the track's timescale.
    pub duration: u32,
    /// Bytes of the sample in the `mdat`.
    pub size: u32,
    /// Sync sample (IDR / IRAP / key frame). Audio callers set this on every sample.
    pub keyframe: bool,
    /// Presentation minus decode time, in the track's timescale (signed: `trun` version 1).
    pub composition_offset: i32,
}

/// Consecutive samples of one track, stored back to back in the `mdat`.
#[derive(Clone, Copy, Debug)]
pub struct TrackRun<'a> {
    pub track_id: u32,
    /// Decode time of the first sample, in the track's timescale (`tfdt`).
    pub base_decode_time: u64,
    pub samples: &'a [Sample],
}

/// Why an initialisation segment or a fragment could not be written.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Fmp4Error {
    #[error("no tracks")]
    NoTracks,
    #[error("{0} tracks, at most {MAX_TRACKS} are allowed")]
    TooManyTracks(usize),
    #[error("track id 0 is reserved")]
    ZeroTrackId,
    #[error("track id {0} appears twice")]
    DuplicateTrackId(u32),
    #[error("track {0} has timescale 0")]
    ZeroTimescale(u32),
    #[error("track {track_id}: {what} is {len} bytes, at most {MAX_RECORD_LEN} are allowed")]
    RecordTooLong {
        track_id: u32,
        what: &'static str,
        len: usize,
    },
    #[error("track {track_id}: invalid {what}: {reason}")]
    BadRecord {
        track_id: u32,
        what: &'static str,
        reason: String,
    },
    #[error("track {track_id}: {reason}")]
    Unsupported { track_id: u32, reason: &'static str },
    #[error("encoding {what} failed: {reason}")]
    Encode { what: &'static str, reason: String },
    #[error("a fragment needs at least one track run")]
    NoRuns,
    #[error("{0} track runs in one fragment, at most {MAX_FRAGMENT_RUNS} are allowed")]
    TooManyRuns(usize),
    #[error("track run for track {0} has no samples")]
    EmptyRun(u32),
    #[error("{0} samples in one fragment, at most {MAX_FRAGMENT_SAMPLES} are allowed")]
    TooManySamples(usize),
    #[error(
        "mdat payload of {0} bytes is too large: a fragment must stay under 2 GiB so that data offsets fit their signed 32-bit field"
    )]
    MdatTooLarge(u64),
}

/// The RFC 6381 codec string for an HLS `CODECS` or a DASH `codecs` attribute, e.g.
/// `avc1.64001f`, `hvc1.1.6.L93.90`, `av01.0.04M.08`, `mp4a.40.2`, `opus`.
///
/// Never fails: a record too short or malformed to read yields the bare sample-entry code
/// (`avc1`, `hvc1`, `av01`) or AAC-LC (`mp4a.40.2`), which players accept as "some profile".
pub fn codec_string(codec: &TrackCodec) -> String {
    match codec {
        TrackCodec::Avc { record, .. } => match AvcDecoderConfig::parse(record) {
            Ok(config) => config.codec_string(),
            // Profile, compatibility and level are bytes 1..4 even when the parameter sets
            // behind them are damaged.
            Err(_) => match record.get(1..4) {
                Some(ppcl) => format!("avc1.{:02x}{:02x}{:02x}", ppcl[0], ppcl[1], ppcl[2]),
                None => "avc1".to_owned(),
            },
        },
        // Our H.265 codec strings always say `hvc1`, matching the sample entry we write.
        TrackCodec::Hevc { record, .. } => HevcDecoderConfig::parse(record)
            .map(|config| config.codec_string())
            .unwrap_or_else(|_| "hvc1".to_owned()),
        TrackCodec::Av1 { record, .. } => av1_codec_string(record),
        // The first audioObjectType as written, not the core coder: explicitly signalled
        // HE-AAC (5) and HE-AAC v2 (29) must say so, players pick a decoder by it.
        TrackCodec::Aac { config, .. } => {
            format!("mp4a.40.{}", audio_object_type(config).unwrap_or(2))
        }
        TrackCodec::Opus { .. } => "opus".to_owned(),
    }
}

/// The first audioObjectType of an AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1).
fn audio_object_type(config: &[u8]) -> Option<u8> {
    let first = *config.first()?;
    let object_type = first >> 3;
    if object_type == 31 {
        // Escape: 32 + the next 6 bits.
        let second = *config.get(1)?;
        Some(32 + (((first & 0x07) << 3) | (second >> 5)))
    } else {
        Some(object_type)
    }
}

/// `av01.P.LLT.DD` (AV1 codec ISO media file format binding, "Codecs Parameter String") from
/// the av1C header: profile, level + tier, bit depth. The optional colour fields are left out,
/// which the binding allows.
fn av1_codec_string(record: &[u8]) -> String {
    let (Some(&marker), Some(&b1), Some(&b2)) = (record.first(), record.get(1), record.get(2))
    else {
        return "av01".to_owned();
    };
    // marker (1) + version (7) must read 0x81.
    if marker != 0x81 {
        return "av01".to_owned();
    }
    let profile = b1 >> 5;
    let level = b1 & 0x1f;
    let tier = if b2 & 0x80 != 0 { 'H' } else { 'M' };
    let high_bitdepth = b2 & 0x40 != 0;
    let twelve_bit = b2 & 0x20 != 0;
    let depth = match (high_bitdepth, twelve_bit) {
        (true, true) => 12,
        (true, false) => 10,
        _ => 8,
    };
    format!("av01.{profile}.{level:02}{tier}.{depth:02}")
}

#[cfg(test)]
mod tests;
