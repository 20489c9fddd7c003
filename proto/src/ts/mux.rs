//! The transport stream muxer: one program, an optional video and an optional audio stream.
//!
//! # Mux once, share with every viewer
//!
//! The hub owns one [`TsMuxer`] per stream and calls [`TsMuxer::write_frame`] once per media
//! frame, into a buffer it then freezes into refcounted bytes that every HTTP-TS viewer (and
//! the HLS segmenter) sends as is. Nothing in the output is per-viewer, so the continuity
//! counters live here, in the muxer, and advance once per packet of the shared stream.
//!
//! # Joining viewers
//!
//! Before every video keyframe (and before the first frame, and for audio-only streams at
//! least every [`TsMuxerConfig::audio_only_table_interval`]) the muxer repeats PAT and PMT in
//! the same output, and [`FrameWritten::join_point`] says so. A viewer that starts at such a
//! frame — the start of the GOP cache — therefore receives PAT, PMT and a random-access picture
//! first, as players need. Its first packet on each PID is the first it has ever seen on that
//! PID, so there is no continuity-counter discontinuity to signal: ISO/IEC 13818-1 only defines
//! continuity against a previous packet, and players start counting at the first packet
//! (ffmpeg initialises its last CC to "none", VLC likewise; hls.js and mpegts.js do not check
//! CC at all). HLS segments start at join points, so each segment is self-contained.
//!
//! # Viewers that skip
//!
//! A slow viewer that is moved forward to a later keyframe sees each PID's counter jump. All
//! common players tolerate that (ffmpeg logs "Continuity check failed" at debug level and
//! carries on; VLC flags the block and resyncs at the next picture, which is a keyframe here
//! anyway). To be exact, the hub can take [`TsMuxer::continuity`] just before muxing each
//! keyframe, keep it with the GOP, and send a skipping viewer [`TsMuxer::write_discontinuity`]
//! for that snapshot before the keyframe: one adaptation-only packet per PID with the
//! discontinuity_indicator set and the counter one below what follows, which makes the stream
//! that viewer receives conformant again. It is per-viewer and 188 bytes per PID.
//!
//! # Timing
//!
//! PCR is carried in the adaptation field of the first packet of every PES on the PCR PID (the
//! video PID, or the audio PID when there is no video), equal to that frame's DTS, as SRS does.
//! Video PES use PES_packet_length 0 (unbounded, as ffmpeg writes them); audio PES carry their
//! length.

use bytes::BufMut;

use super::{
    PACKET_SIZE, PAT_PID, SYNC_BYTE, TIMESTAMP_MASK, TsError, crc32_mpeg2, encode_timestamp,
    stream_type,
};

/// Payload bytes in a packet without adaptation field.
const PAYLOAD_SIZE: usize = PACKET_SIZE - 4;
/// PES stream_id for the first video stream.
const STREAM_ID_VIDEO: u8 = 0xe0;
/// PES stream_id for the first MPEG audio stream (AAC and MP3 alike).
const STREAM_ID_AUDIO: u8 = 0xc0;
/// Adaptation field flags.
const AF_DISCONTINUITY: u8 = 0x80;
const AF_RANDOM_ACCESS: u8 = 0x40;
const AF_PCR: u8 = 0x10;
/// A PCR in the adaptation field: 33-bit base, 6 reserved bits, 9-bit extension.
const PCR_LEN: usize = 6;

/// The video elementary stream's codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoStreamType {
    H264,
    H265,
}

impl VideoStreamType {
    pub fn stream_type(self) -> u8 {
        match self {
            VideoStreamType::H264 => stream_type::H264,
            VideoStreamType::H265 => stream_type::H265,
        }
    }
}

/// The audio elementary stream's codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioStreamType {
    /// AAC in ADTS frames: each frame's data must start with an ADTS header.
    AacAdts,
    /// MPEG-1 audio (MP3 at 32/44.1/48 kHz).
    Mpeg1Audio,
    /// MPEG-2 low-sampling-frequency audio (MP3 at 16/22.05/24 kHz and MPEG 2.5).
    Mpeg2Audio,
}

impl AudioStreamType {
    pub fn stream_type(self) -> u8 {
        match self {
            AudioStreamType::AacAdts => stream_type::AAC_ADTS,
            AudioStreamType::Mpeg1Audio => stream_type::MPEG1_AUDIO,
            AudioStreamType::Mpeg2Audio => stream_type::MPEG2_AUDIO,
        }
    }
}

/// Which elementary stream a frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    Video,
    Audio,
}

/// One access unit (video) or one or more audio frames to mux as one PES.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub track: Track,
    /// Presentation time, 90 kHz (wrapped to 33 bits on output).
    pub pts: u64,
    /// Decoding time, 90 kHz. Equal to `pts` for audio and for video without B-frames; then
    /// only the PTS is written.
    pub dts: u64,
    /// A random access point: sets the random_access_indicator, and for video repeats the
    /// tables in front.
    pub keyframe: bool,
    /// The elementary stream bytes as a gather list (e.g. an ADTS header and the shared raw
    /// frame, or Annex B pieces), concatenated in order.
    pub data: &'a [&'a [u8]],
}

impl<'a> Frame<'a> {
    /// A frame timed in milliseconds, as RTMP/FLV time it (`pts_ms` = DTS + composition time).
    pub fn from_ms(
        track: Track,
        pts_ms: i64,
        dts_ms: i64,
        keyframe: bool,
        data: &'a [&'a [u8]],
    ) -> Frame<'a> {
        Frame {
            track,
            pts: super::ms_to_90k(pts_ms),
            dts: super::ms_to_90k(dts_ms),
            keyframe,
            data,
        }
    }

    fn data_len(&self) -> usize {
        self.data.iter().map(|piece| piece.len()).sum()
    }
}

/// PIDs and table policy. The defaults are ffmpeg's PIDs (PMT 0x1000, streams from 0x100),
/// so our PAT and PMT are byte-identical to ffmpeg's for the same streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TsMuxerConfig {
    pub transport_stream_id: u16,
    pub program_number: u16,
    pub pmt_pid: u16,
    pub video_pid: u16,
    pub audio_pid: u16,
    /// Repeat PAT/PMT before every video keyframe (join points for viewers and HLS segments).
    pub tables_before_keyframes: bool,
    /// Without video: repeat PAT/PMT before an audio frame when this many 90 kHz ticks have
    /// passed since the last tables. 0 disables.
    pub audio_only_table_interval: u64,
}

impl Default for TsMuxerConfig {
    fn default() -> Self {
        TsMuxerConfig {
            transport_stream_id: 1,
            program_number: 1,
            pmt_pid: 0x1000,
            video_pid: 0x100,
            audio_pid: 0x101,
            tables_before_keyframes: true,
            audio_only_table_interval: 90_000,
        }
    }
}

/// The continuity counter each PID's next packet will carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Continuity {
    pub pat: u8,
    pub pmt: u8,
    pub video: u8,
    pub audio: u8,
}

/// What one [`TsMuxer::write_frame`] call wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameWritten {
    /// PAT and PMT precede the frame, and the frame is a random access point: a viewer may
    /// start here.
    pub join_point: bool,
    /// PAT and PMT were written in front of the frame.
    pub tables: bool,
    /// Transport packets written, tables included.
    pub packets: usize,
}

/// An MPEG-TS muxer for one program. See the [module docs](self) for how its output is shared.
#[derive(Debug, Clone)]
pub struct TsMuxer {
    config: TsMuxerConfig,
    video: Option<VideoStreamType>,
    audio: Option<AudioStreamType>,
    /// PAT and PMT packets, complete but for the continuity counter nibble.
    pat: [u8; PACKET_SIZE],
    pmt: [u8; PACKET_SIZE],
    continuity: Continuity,
    /// PAT/PMT have been written at least once (by either entry point).
    tables_written: bool,
    /// DTS of the frame the tables were last written before (audio-only repetition).
    last_tables_at: Option<u64>,
}

impl TsMuxer {
    /// A muxer with the default PIDs. With neither stream it still writes valid (empty) tables.
    pub fn new(video: Option<VideoStreamType>, audio: Option<AudioStreamType>) -> TsMuxer {
        Self::build(video, audio, TsMuxerConfig::default())
    }

    /// A muxer with chosen PIDs. PIDs must be distinct (for the streams in use) and in
    /// 0x0010..=0x1ffe.
    pub fn with_config(
        video: Option<VideoStreamType>,
        audio: Option<AudioStreamType>,
        config: TsMuxerConfig,
    ) -> Result<TsMuxer, TsError> {
        let mut pids = vec![config.pmt_pid];
        if video.is_some() {
            pids.push(config.video_pid);
        }
        if audio.is_some() {
            pids.push(config.audio_pid);
        }
        for (index, &pid) in pids.iter().enumerate() {
            if !(0x0010..=0x1ffe).contains(&pid) || pids[..index].contains(&pid) {
                return Err(TsError::BadPid(pid));
            }
        }
        Ok(Self::build(video, audio, config))
    }

    fn build(
        video: Option<VideoStreamType>,
        audio: Option<AudioStreamType>,
        config: TsMuxerConfig,
    ) -> TsMuxer {
        let mut muxer = TsMuxer {
            config,
            video,
            audio,
            pat: [0xff; PACKET_SIZE],
            pmt: [0xff; PACKET_SIZE],
            continuity: Continuity::default(),
            tables_written: false,
            last_tables_at: None,
        };
        muxer.pat = psi_packet(PAT_PID, &muxer.pat_section());
        muxer.pmt = psi_packet(config.pmt_pid, &muxer.pmt_section());
        muxer
    }

    pub fn config(&self) -> &TsMuxerConfig {
        &self.config
    }

    pub fn video(&self) -> Option<VideoStreamType> {
        self.video
    }

    pub fn audio(&self) -> Option<AudioStreamType> {
        self.audio
    }

    /// The PID that carries the PCR: video if there is video, else audio.
    pub fn pcr_pid(&self) -> u16 {
        if self.video.is_some() || self.audio.is_none() {
            self.config.video_pid
        } else {
            self.config.audio_pid
        }
    }

    /// The counters the next packet on each PID will carry.
    pub fn continuity(&self) -> Continuity {
        self.continuity
    }

    /// Writes PAT and PMT (two packets) into the shared stream, advancing their counters.
    pub fn write_tables<B: BufMut + ?Sized>(&mut self, out: &mut B) {
        let pat_cc = next_cc(&mut self.continuity.pat);
        put_with_cc(out, &self.pat, pat_cc);
        let pmt_cc = next_cc(&mut self.continuity.pmt);
        put_with_cc(out, &self.pmt, pmt_cc);
        self.tables_written = true;
    }

    /// Muxes one frame as one PES, preceded by PAT/PMT when the table policy calls for them.
    /// Writes whole packets only; on error nothing is written.
    pub fn write_frame<B: BufMut + ?Sized>(
        &mut self,
        out: &mut B,
        frame: &Frame<'_>,
    ) -> Result<FrameWritten, TsError> {
        let (pid, stream_id) = match frame.track {
            Track::Video if self.video.is_some() => (self.config.video_pid, STREAM_ID_VIDEO),
            Track::Audio if self.audio.is_some() => (self.config.audio_pid, STREAM_ID_AUDIO),
            track => return Err(TsError::NoSuchTrack(track)),
        };
        let header = PesHeader::new(stream_id, frame)?;
        let tables = self.tables_due(frame);
        let random_access = frame.keyframe && (frame.track == Track::Video || self.video.is_none());
        let mut packets = 0;
        if tables {
            self.write_tables(out);
            self.last_tables_at = Some(frame.dts);
            packets += 2;
        } else if self.last_tables_at.is_none() {
            // Tables came from an explicit `write_tables`: the interval counts from here.
            self.last_tables_at = Some(frame.dts);
        }
        let pcr = (pid == self.pcr_pid()).then_some(frame.dts);
        let cc = match frame.track {
            Track::Video => &mut self.continuity.video,
            Track::Audio => &mut self.continuity.audio,
        };
        packets += write_pes(out, pid, cc, &header, frame, pcr, random_access);
        Ok(FrameWritten {
            join_point: tables && random_access,
            tables,
            packets,
        })
    }

    /// Bytes [`write_frame`](Self::write_frame) would write for `frame` now (for reserving).
    pub fn frame_len(&self, frame: &Frame<'_>) -> usize {
        let header_len = if frame.pts == frame.dts { 14 } else { 19 };
        let total = header_len + frame.data_len();
        let pcr_pid = match frame.track {
            Track::Video => self.config.video_pid,
            Track::Audio => self.config.audio_pid,
        } == self.pcr_pid();
        let random_access = frame.keyframe && (frame.track == Track::Video || self.video.is_none());
        let first_capacity = PAYLOAD_SIZE - first_adaptation_len(pcr_pid, random_access);
        let packets = 1 + total.saturating_sub(first_capacity).div_ceil(PAYLOAD_SIZE);
        let tables = if self.tables_due(frame) { 2 } else { 0 };
        (packets + tables) * PACKET_SIZE
    }

    /// Per-viewer: marks a jump in a viewer's stream (it skipped ahead to a keyframe muxed when
    /// the counters stood at `at`). Writes one adaptation-only packet per PID in use with the
    /// discontinuity_indicator set and the counter just below `at`, so that the shared packets
    /// that follow continue it. Does not touch the muxer's state.
    pub fn write_discontinuity<B: BufMut + ?Sized>(&self, out: &mut B, at: Continuity) {
        let pids = [
            Some((PAT_PID, at.pat)),
            Some((self.config.pmt_pid, at.pmt)),
            self.video.map(|_| (self.config.video_pid, at.video)),
            self.audio.map(|_| (self.config.audio_pid, at.audio)),
        ];
        for (pid, next) in pids.into_iter().flatten() {
            // adaptation_field_control 10: no payload, so the counter does not advance.
            put_packet_header(out, pid, false, 0b10, next.wrapping_sub(1) & 0x0f);
            out.put_u8((PAYLOAD_SIZE - 1) as u8);
            out.put_u8(AF_DISCONTINUITY);
            out.put_bytes(0xff, PAYLOAD_SIZE - 2);
        }
    }

    fn tables_due(&self, frame: &Frame<'_>) -> bool {
        if !self.tables_written {
            return true;
        }
        match frame.track {
            Track::Video => frame.keyframe && self.config.tables_before_keyframes,
            Track::Audio if self.video.is_none() => {
                let interval = self.config.audio_only_table_interval;
                self.last_tables_at.is_some_and(|last| {
                    interval != 0 && frame.dts.wrapping_sub(last) & TIMESTAMP_MASK >= interval
                })
            }
            Track::Audio => false,
        }
    }

    /// The PAT section: one program.
    fn pat_section(&self) -> Vec<u8> {
        let mut section = Vec::with_capacity(16);
        let pmt_pid = self.config.pmt_pid;
        section.push(0x00); // table_id
        section.extend_from_slice(&[0xb0, 0x0d]); // syntax indicator, '0', reserved, length 13
        section.extend_from_slice(&self.config.transport_stream_id.to_be_bytes());
        section.extend_from_slice(&[0xc1, 0x00, 0x00]); // version 0, current, section 0 of 0
        section.extend_from_slice(&self.config.program_number.to_be_bytes());
        section.extend_from_slice(&(0xe000 | pmt_pid).to_be_bytes());
        let crc = crc32_mpeg2(&section);
        section.extend_from_slice(&crc.to_be_bytes());
        section
    }

    /// The PMT section: PCR PID, then one entry per stream without descriptors.
    fn pmt_section(&self) -> Vec<u8> {
        let mut streams = Vec::new();
        if let Some(video) = self.video {
            streams.push((video.stream_type(), self.config.video_pid));
        }
        if let Some(audio) = self.audio {
            streams.push((audio.stream_type(), self.config.audio_pid));
        }
        // After section_length: 9 fixed bytes, 5 per stream, 4 CRC.
        let section_length = 9 + 5 * streams.len() as u16 + 4;
        let mut section = Vec::with_capacity(3 + usize::from(section_length));
        section.push(0x02); // table_id
        section.extend_from_slice(&(0xb000 | section_length).to_be_bytes());
        section.extend_from_slice(&self.config.program_number.to_be_bytes());
        section.extend_from_slice(&[0xc1, 0x00, 0x00]);
        section.extend_from_slice(&(0xe000 | self.pcr_pid()).to_be_bytes());
        section.extend_from_slice(&[0xf0, 0x00]); // program_info_length 0
        for (stream_type, pid) in streams {
            section.push(stream_type);
            section.extend_from_slice(&(0xe000 | pid).to_be_bytes());
            section.extend_from_slice(&[0xf0, 0x00]); // ES_info_length 0
        }
        let crc = crc32_mpeg2(&section);
        section.extend_from_slice(&crc.to_be_bytes());
        section
    }
}

/// Returns the counter to use now and advances it.
fn next_cc(counter: &mut u8) -> u8 {
    let current = *counter;
    *counter = (current + 1) & 0x0f;
    current
}

/// A PSI packet: PUSI, pointer_field 0, the section, 0xff to the end. CC left 0.
fn psi_packet(pid: u16, section: &[u8]) -> [u8; PACKET_SIZE] {
    let mut packet = [0xff; PACKET_SIZE];
    packet[0] = SYNC_BYTE;
    packet[1] = 0x40 | (pid >> 8) as u8;
    packet[2] = pid as u8;
    packet[3] = 0x10; // payload only
    packet[4] = 0x00; // pointer_field
    // Our sections are at most 12 + 5 + 4 + 10 bytes: they always fit.
    packet[5..5 + section.len()].copy_from_slice(section);
    packet
}

fn put_with_cc<B: BufMut + ?Sized>(out: &mut B, packet: &[u8; PACKET_SIZE], cc: u8) {
    out.put_slice(&packet[..3]);
    out.put_u8((packet[3] & 0xf0) | cc);
    out.put_slice(&packet[4..]);
}

fn put_packet_header<B: BufMut + ?Sized>(
    out: &mut B,
    pid: u16,
    payload_unit_start: bool,
    adaptation_field_control: u8,
    cc: u8,
) {
    out.put_u8(SYNC_BYTE);
    out.put_u8((u8::from(payload_unit_start) << 6) | ((pid >> 8) as u8 & 0x1f));
    out.put_u8(pid as u8);
    out.put_u8((adaptation_field_control << 4) | (cc & 0x0f));
}

/// Size of the first packet's adaptation field (length byte included) before stuffing.
fn first_adaptation_len(pcr: bool, random_access: bool) -> usize {
    match (pcr, random_access) {
        (false, false) => 0,
        (pcr, _) => 2 + if pcr { PCR_LEN } else { 0 },
    }
}

/// The PES header for one frame: start code, stream id, length, flags, PTS and maybe DTS.
struct PesHeader {
    bytes: [u8; 19],
    len: usize,
}

impl PesHeader {
    fn new(stream_id: u8, frame: &Frame<'_>) -> Result<PesHeader, TsError> {
        let with_dts = frame.pts & TIMESTAMP_MASK != frame.dts & TIMESTAMP_MASK;
        let header_data_len: usize = if with_dts { 10 } else { 5 };
        let data_len = frame.data_len();
        // PES_packet_length counts from after itself: 3 flag bytes, header data, payload.
        let pes_len = 3 + header_data_len + data_len;
        let length_field = match frame.track {
            // 0 = unbounded, allowed for video only. ffmpeg writes it for every video PES, even
            // short ones, and players expect it; it also lifts the 64 KiB limit on keyframes.
            Track::Video => 0,
            Track::Audio => u16::try_from(pes_len).map_err(|_| TsError::PesTooLong(data_len))?,
        };
        let mut bytes = [0u8; 19];
        bytes[..3].copy_from_slice(&[0x00, 0x00, 0x01]);
        bytes[3] = stream_id;
        bytes[4..6].copy_from_slice(&length_field.to_be_bytes());
        bytes[6] = 0x80; // '10', not scrambled, no priority/alignment/copyright flags
        bytes[7] = if with_dts { 0xc0 } else { 0x80 };
        bytes[8] = header_data_len as u8;
        if with_dts {
            bytes[9..14].copy_from_slice(&encode_timestamp(0b0011, frame.pts));
            bytes[14..19].copy_from_slice(&encode_timestamp(0b0001, frame.dts));
        } else {
            bytes[9..14].copy_from_slice(&encode_timestamp(0b0010, frame.pts));
        }
        Ok(PesHeader {
            bytes,
            len: 9 + header_data_len,
        })
    }
}

/// Reads the PES header then the frame's pieces as one byte sequence.
struct GatherCursor<'a> {
    pieces: std::iter::Chain<
        std::iter::Once<&'a [u8]>,
        std::iter::Copied<std::slice::Iter<'a, &'a [u8]>>,
    >,
    current: &'a [u8],
}

impl<'a> GatherCursor<'a> {
    fn new(header: &'a [u8], data: &'a [&'a [u8]]) -> Self {
        GatherCursor {
            pieces: std::iter::once(header).chain(data.iter().copied()),
            current: &[],
        }
    }

    /// Copies exactly `count` bytes (the caller knows that many remain).
    fn copy_to<B: BufMut + ?Sized>(&mut self, out: &mut B, mut count: usize) {
        while count > 0 {
            if self.current.is_empty() {
                match self.pieces.next() {
                    Some(piece) => self.current = piece,
                    None => return,
                }
                continue;
            }
            let take = count.min(self.current.len());
            out.put_slice(&self.current[..take]);
            self.current = &self.current[take..];
            count -= take;
        }
    }
}

/// Packetizes one PES; returns the number of packets written.
fn write_pes<B: BufMut + ?Sized>(
    out: &mut B,
    pid: u16,
    cc: &mut u8,
    header: &PesHeader,
    frame: &Frame<'_>,
    pcr: Option<u64>,
    random_access: bool,
) -> usize {
    let mut remaining = header.len + frame.data_len();
    let mut cursor = GatherCursor::new(&header.bytes[..header.len], frame.data);
    let mut packets = 0;
    while remaining > 0 {
        let first = packets == 0;
        let (flags, pcr_value) = if first {
            let mut flags = 0;
            if random_access {
                flags |= AF_RANDOM_ACCESS;
            }
            if pcr.is_some() {
                flags |= AF_PCR;
            }
            (flags, pcr)
        } else {
            (0, None)
        };
        let fixed = if first {
            first_adaptation_len(pcr.is_some(), random_access)
        } else {
            0
        };
        let capacity = PAYLOAD_SIZE - fixed;
        let payload = remaining.min(capacity);
        let stuffing = capacity - payload;
        // Total adaptation field bytes, length byte included.
        let adaptation = fixed + stuffing;
        let control = if adaptation > 0 { 0b11 } else { 0b01 };
        put_packet_header(out, pid, first, control, next_cc(cc));
        if adaptation > 0 {
            out.put_u8((adaptation - 1) as u8);
            if adaptation > 1 {
                out.put_u8(flags);
                let mut written = 2;
                if let Some(pcr) = pcr_value {
                    put_pcr(out, pcr);
                    written += PCR_LEN;
                }
                out.put_bytes(0xff, adaptation - written);
            }
        }
        cursor.copy_to(out, payload);
        remaining -= payload;
        packets += 1;
    }
    packets
}

/// program_clock_reference: base (90 kHz, 33 bits), 6 reserved bits, extension 0.
fn put_pcr<B: BufMut + ?Sized>(out: &mut B, base: u64) {
    let base = base & TIMESTAMP_MASK;
    out.put_u8((base >> 25) as u8);
    out.put_u8((base >> 17) as u8);
    out.put_u8((base >> 9) as u8);
    out.put_u8((base >> 1) as u8);
    out.put_u8(((base as u8 & 1) << 7) | 0x7e);
    out.put_u8(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PAT and PMT exactly as `ffmpeg -c copy -f mpegts` writes them for H.264 + AAC.
    const FFMPEG_PAT: &[u8] = &[
        0x47, 0x40, 0x00, 0x10, 0x00, 0x00, 0xb0, 0x0d, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01,
        0xf0, 0x00, 0x2a, 0xb1, 0x04, 0xb2,
    ];
    const FFMPEG_PMT: &[u8] = &[
        0x47, 0x50, 0x00, 0x10, 0x00, 0x02, 0xb0, 0x17, 0x00, 0x01, 0xc1, 0x00, 0x00, 0xe1, 0x00,
        0xf0, 0x00, 0x1b, 0xe1, 0x00, 0xf0, 0x00, 0x0f, 0xe1, 0x01, 0xf0, 0x00, 0x2f, 0x44, 0xb9,
        0x9b,
    ];

    #[test]
    fn tables_match_ffmpeg() {
        let mut muxer = TsMuxer::new(Some(VideoStreamType::H264), Some(AudioStreamType::AacAdts));
        let mut out = Vec::new();
        muxer.write_tables(&mut out);
        assert_eq!(out.len(), 2 * PACKET_SIZE);
        assert_eq!(&out[..FFMPEG_PAT.len()], FFMPEG_PAT);
        assert!(
            out[FFMPEG_PAT.len()..PACKET_SIZE]
                .iter()
                .all(|&b| b == 0xff)
        );
        assert_eq!(
            &out[PACKET_SIZE..PACKET_SIZE + FFMPEG_PMT.len()],
            FFMPEG_PMT
        );
        // Counters advance.
        out.clear();
        muxer.write_tables(&mut out);
        assert_eq!(out[3], 0x11);
        assert_eq!(out[PACKET_SIZE + 3], 0x11);
    }

    #[test]
    fn keyframe_first_packet_matches_ffmpeg_layout() {
        let mut muxer = TsMuxer::new(Some(VideoStreamType::H264), Some(AudioStreamType::AacAdts));
        let data = vec![0xabu8; 1000];
        let frame = Frame {
            track: Track::Video,
            pts: 133_200,
            dts: 126_000,
            keyframe: true,
            data: &[&data],
        };
        let mut out = Vec::new();
        let expected_len = muxer.frame_len(&frame);
        let written = muxer.write_frame(&mut out, &frame).unwrap();
        assert!(written.join_point && written.tables);
        assert_eq!(out.len(), written.packets * PACKET_SIZE);
        assert_eq!(out.len(), expected_len);
        let video = &out[2 * PACKET_SIZE..];
        // As ffmpeg's first video packet: PUSI, PID 0x100, AF + payload, CC 0; AF length 7,
        // RAI + PCR flags, PCR = DTS (0.7 s in ffmpeg's file, 1.4 s here), then the PES header.
        assert_eq!(&video[..6], &[0x47, 0x41, 0x00, 0x30, 0x07, 0x50]);
        assert_eq!(&video[6..12], &[0x00, 0x00, 0xf6, 0x18, 0x7e, 0x00]);
        assert_eq!(
            &video[12..31],
            &[
                0x00, 0x00, 0x01, 0xe0, 0x00, 0x00, 0x80, 0xc0, 0x0a, 0x31, 0x00, 0x09, 0x10, 0xa1,
                0x11, 0x00, 0x07, 0xd8, 0x61
            ]
        );
        // 19 + 1000 bytes = 176 in the first packet, then 184, ..., the last one stuffed.
        assert_eq!(written.packets, 2 + 6);
        let last = &video[5 * PACKET_SIZE..];
        assert_eq!(last[3] & 0x30, 0x30);
        let payload_in_last = 1019 - 176 - 4 * 184;
        assert_eq!(usize::from(last[4]), PAYLOAD_SIZE - payload_in_last - 1);
        assert_eq!(last[5], 0x00);
        assert!(
            last[6..PACKET_SIZE - payload_in_last]
                .iter()
                .all(|&b| b == 0xff)
        );
    }

    #[test]
    fn one_byte_of_stuffing_is_a_bare_length() {
        // An audio PES of 14 + 169 = 183 bytes leaves exactly one byte: AF length 0.
        let mut muxer = TsMuxer::new(Some(VideoStreamType::H264), Some(AudioStreamType::AacAdts));
        let data = vec![0u8; 169];
        let mut out = Vec::new();
        muxer.write_tables(&mut out);
        out.clear();
        let frame = Frame {
            track: Track::Audio,
            pts: 0,
            dts: 0,
            keyframe: true,
            data: &[&data],
        };
        let written = muxer.write_frame(&mut out, &frame).unwrap();
        assert_eq!(written.packets, 1);
        assert!(!written.tables && !written.join_point);
        assert_eq!(&out[..5], &[0x47, 0x41, 0x01, 0x30, 0x00]);
        // PES_packet_length: 3 flag bytes + 5 PTS bytes + 169.
        assert_eq!(&out[5..11], &[0x00, 0x00, 0x01, 0xc0, 0x00, 0xb1]);
    }

    #[test]
    fn audio_only_carries_pcr_and_periodic_tables() {
        let mut muxer = TsMuxer::new(None, Some(AudioStreamType::AacAdts));
        assert_eq!(muxer.pcr_pid(), 0x101);
        let data = [0u8; 10];
        let mut out = Vec::new();
        let mut tables = 0;
        for index in 0..100u64 {
            out.clear();
            let frame = Frame {
                track: Track::Audio,
                pts: index * 1920,
                dts: index * 1920,
                keyframe: true,
                data: &[&data],
            };
            let written = muxer.write_frame(&mut out, &frame).unwrap();
            tables += usize::from(written.tables);
            let pes = if written.tables {
                &out[2 * PACKET_SIZE..]
            } else {
                &out[..]
            };
            assert_eq!(pes[5] & AF_PCR, AF_PCR);
            assert_eq!(pes[5] & AF_RANDOM_ACCESS, AF_RANDOM_ACCESS);
        }
        // 100 frames of 21.3 ms: tables at 0, 1 s and 2 s.
        assert_eq!(tables, 3);
        assert_eq!(
            muxer.write_frame(
                &mut out,
                &Frame {
                    track: Track::Video,
                    pts: 0,
                    dts: 0,
                    keyframe: true,
                    data: &[]
                }
            ),
            Err(TsError::NoSuchTrack(Track::Video))
        );
    }

    #[test]
    fn discontinuity_marker_continues_into_shared_stream() {
        let muxer = TsMuxer::new(
            Some(VideoStreamType::H265),
            Some(AudioStreamType::Mpeg1Audio),
        );
        let mut out = Vec::new();
        let at = Continuity {
            pat: 0,
            pmt: 5,
            video: 9,
            audio: 15,
        };
        muxer.write_discontinuity(&mut out, at);
        assert_eq!(out.len(), 4 * PACKET_SIZE);
        let ccs: Vec<u8> = out.chunks(PACKET_SIZE).map(|p| p[3] & 0x0f).collect();
        assert_eq!(ccs, [15, 4, 8, 14]);
        for packet in out.chunks(PACKET_SIZE) {
            assert_eq!(packet[3] & 0x30, 0x20);
            assert_eq!(&packet[4..6], &[183, AF_DISCONTINUITY]);
        }
    }

    #[test]
    fn pid_validation() {
        let config = TsMuxerConfig {
            audio_pid: 0x100,
            ..TsMuxerConfig::default()
        };
        assert_eq!(
            TsMuxer::with_config(
                Some(VideoStreamType::H264),
                Some(AudioStreamType::AacAdts),
                config
            )
            .err(),
            Some(TsError::BadPid(0x100))
        );
        assert!(TsMuxer::with_config(None, Some(AudioStreamType::AacAdts), config).is_ok());
        let config = TsMuxerConfig {
            pmt_pid: 0x0001,
            ..TsMuxerConfig::default()
        };
        assert!(TsMuxer::with_config(None, None, config).is_err());
    }
}
