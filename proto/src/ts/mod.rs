//! MPEG-2 transport stream (ISO/IEC 13818-1) as HTTP-TS, HLS and SRT carry it: one program,
//! at most one video and one audio elementary stream.
//!
//! - [`TsMuxer`] ([`mux`]): PAT/PMT, PES packetization with PTS/DTS, PCR, random access
//!   indicators, continuity counters, stuffing. It writes into a caller-provided buffer and
//!   allocates nothing, so the hub can mux each frame **once** and share the bytes with every
//!   viewer (see the module docs of [`mux`] for how joining and lagging viewers stay valid).
//! - [`TsDemuxer`] ([`demux`]): PAT/PMT parsing and PES reassembly with PTS/DTS — total and
//!   bounded; enough for tests today and the starting point for SRT/UDP ingest.
//! - [`TsIngest`] ([`ingest`]): TS bytes in any chunking (SRT, UDP) to the FLV audio/video
//!   bodies an RTMP publisher would send — packet resync, parameter sets to sequence headers,
//!   ADTS/MPEG audio split into frames, 33-bit timestamps unwrapped.
//!
//! Timestamps are 90 kHz ticks carried in 33 bits; [`ms_to_90k`] converts from the
//! millisecond timestamps of RTMP/FLV.

pub mod demux;
pub mod ingest;
pub mod interleave;
pub mod mux;

pub use demux::{DemuxEvent, DemuxLimits, ElementaryStreamInfo, Pes, TsDemuxer};
pub use ingest::{FlvMessage, FlvMessageKind, IngestError, IngestLimits, IngestStats, TsIngest};
pub use mux::{
    AudioStreamType, Continuity, Frame, FrameWritten, Track, TsMuxer, TsMuxerConfig,
    VideoStreamType,
};

use thiserror::Error;

/// Every transport stream packet is 188 bytes.
pub const PACKET_SIZE: usize = 188;
/// First byte of every packet.
pub const SYNC_BYTE: u8 = 0x47;
/// The program association table's PID.
pub const PAT_PID: u16 = 0x0000;
/// The null packet PID.
pub const NULL_PID: u16 = 0x1fff;
/// Timestamps (PTS, DTS, PCR base) are 33-bit counters of a 90 kHz clock.
pub const TIMESTAMP_MASK: u64 = (1 << 33) - 1;

/// stream_type values for the PMT (ISO/IEC 13818-1 Table 2-34 and its amendments).
pub mod stream_type {
    pub const MPEG1_AUDIO: u8 = 0x03;
    pub const MPEG2_AUDIO: u8 = 0x04;
    pub const PRIVATE_DATA: u8 = 0x06;
    /// AAC with ADTS framing (ISO/IEC 13818-7).
    pub const AAC_ADTS: u8 = 0x0f;
    pub const H264: u8 = 0x1b;
    pub const H265: u8 = 0x24;
}

/// Converts milliseconds to 90 kHz ticks, wrapped into 33 bits (negative values, as a PTS
/// before the first DTS can be, wrap to the top of the range as the TS clock would).
pub fn ms_to_90k(ms: i64) -> u64 {
    (i128::from(ms) * 90).rem_euclid(1 << 33) as u64
}

/// Converts 90 kHz ticks to milliseconds (rounding down).
pub fn ticks_to_ms(ticks: u64) -> u64 {
    ticks / 90
}

/// Why a transport stream could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TsError {
    #[error("frame for the {0:?} track, which this muxer was not created with")]
    NoSuchTrack(Track),
    #[error("PID {0:#06x} is reserved or used twice")]
    BadPid(u16),
    #[error("audio PES of {0} bytes does not fit the 16-bit PES_packet_length")]
    PesTooLong(usize),
    #[error("transport packet is {0} bytes, not 188")]
    PacketSize(usize),
    #[error("transport packet does not start with the sync byte 0x47")]
    NoSync,
    #[error("adaptation_field_control 0 is reserved")]
    ReservedAdaptationFieldControl,
    #[error("adaptation field of {0} bytes overruns the packet")]
    AdaptationFieldOverrun(usize),
    #[error("PSI section on PID {pid:#06x} is malformed: {reason}")]
    BadSection { pid: u16, reason: &'static str },
    #[error("PSI section on PID {0:#06x} fails its CRC")]
    SectionCrc(u16),
    #[error("PMT lists more than {0} elementary streams")]
    TooManyStreams(usize),
    #[error("PES on PID {pid:#06x} exceeds the {limit}-byte limit")]
    PesTooLarge { pid: u16, limit: usize },
    #[error("PES on PID {pid:#06x} is malformed: {reason}")]
    BadPes { pid: u16, reason: &'static str },
    #[error("{0} demuxer events are waiting: poll before pushing more")]
    EventQueueFull(usize),
}

/// CRC-32/MPEG-2 (polynomial 0x04c11db7, initial value all ones, no reflection, no final
/// xor) over PSI sections.
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    data.iter().fold(0xffff_ffff, |crc, &byte| {
        (crc << 8) ^ CRC_TABLE[usize::from((crc >> 24) as u8 ^ byte)]
    })
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut index = 0;
    while index < 256 {
        let mut crc = (index as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[index] = crc;
        index += 1;
    }
    table
};

/// Encodes a PTS or DTS: 4-bit prefix, 33 bits split 3/15/15 with marker bits.
pub(crate) fn encode_timestamp(prefix: u8, ticks: u64) -> [u8; 5] {
    let ticks = ticks & TIMESTAMP_MASK;
    [
        (prefix << 4) | ((ticks >> 29) as u8 & 0x0e) | 1,
        (ticks >> 22) as u8,
        ((ticks >> 14) as u8 & 0xfe) | 1,
        (ticks >> 7) as u8,
        ((ticks << 1) as u8 & 0xfe) | 1,
    ]
}

/// Decodes a PTS or DTS (marker bits and prefix are not checked: real muxers get them wrong).
pub(crate) fn decode_timestamp(bytes: &[u8; 5]) -> u64 {
    (u64::from(bytes[0] >> 1) & 0x07) << 30
        | u64::from(bytes[1]) << 22
        | u64::from(bytes[2] >> 1) << 15
        | u64::from(bytes[3]) << 7
        | u64::from(bytes[4] >> 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_of_ffmpeg_pat() {
        // The PAT section ffmpeg writes (transport_stream_id 1, program 1 on PID 0x1000).
        let section = [
            0x00, 0xb0, 0x0d, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01, 0xf0, 0x00,
        ];
        assert_eq!(crc32_mpeg2(&section), 0x2ab1_04b2);
        // A section followed by its CRC checks to zero.
        let mut with_crc = section.to_vec();
        with_crc.extend_from_slice(&0x2ab1_04b2u32.to_be_bytes());
        assert_eq!(crc32_mpeg2(&with_crc), 0);
    }

    #[test]
    fn timestamps_match_ffmpeg() {
        // PTS 1.48 s and DTS 1.4 s from the first video PES of an ffmpeg-muxed file.
        assert_eq!(encode_timestamp(3, 133_200), [0x31, 0x00, 0x09, 0x10, 0xa1]);
        assert_eq!(encode_timestamp(1, 126_000), [0x11, 0x00, 0x07, 0xd8, 0x61]);
        assert_eq!(decode_timestamp(&[0x31, 0x00, 0x09, 0x10, 0xa1]), 133_200);
        let max = TIMESTAMP_MASK;
        assert_eq!(decode_timestamp(&encode_timestamp(2, max)), max);
        assert_eq!(decode_timestamp(&encode_timestamp(2, max + 5)), 4);
    }

    #[test]
    fn millisecond_conversion_wraps() {
        assert_eq!(ms_to_90k(1000), 90_000);
        assert_eq!(ms_to_90k(-1), TIMESTAMP_MASK + 1 - 90);
        assert_eq!(
            ms_to_90k(i64::from(u32::MAX)),
            (u64::from(u32::MAX) * 90) & TIMESTAMP_MASK
        );
        assert_eq!(ticks_to_ms(90_090), 1001);
    }
}
