//! A minimal transport stream demuxer: PAT → PMT → PES reassembly with PTS/DTS, random access
//! and continuity tracking, for the first program of a stream.
//!
//! Total and bounded: a packet is 188 bytes or an error; PSI sections are at most 1024 bytes
//! (the syntax's own limit); a PES is at most [`DemuxLimits::max_pes_size`]; the PMT may list
//! at most [`DemuxLimits::max_streams`] streams; events wait in a queue of at most
//! [`DemuxLimits::max_pending_events`] — poll them after each push. A malformed packet, section
//! or PES is an error for that unit only: the demuxer stays usable and the caller may go on
//! pushing (live input is lossy).
//!
//! Not handled yet (the SRT ingest will need some): resynchronisation on a byte stream that
//! is not packet-aligned, multiple programs, SCTE-35 and other private sections, descriptors.

use std::collections::VecDeque;

use super::{NULL_PID, PACKET_SIZE, PAT_PID, SYNC_BYTE, TsError, crc32_mpeg2, decode_timestamp};

/// Bounds on what one demuxer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemuxLimits {
    /// Largest PES we reassemble; larger ones are dropped with [`TsError::PesTooLarge`].
    pub max_pes_size: usize,
    /// Most elementary streams a PMT may list.
    pub max_streams: usize,
    /// Events not yet polled beyond which [`TsDemuxer::push_packet`] refuses input.
    pub max_pending_events: usize,
}

impl Default for DemuxLimits {
    fn default() -> Self {
        DemuxLimits {
            // An 8K intra picture at high quality fits with room to spare.
            max_pes_size: 8 * 1024 * 1024,
            max_streams: 16,
            max_pending_events: 64,
        }
    }
}

/// One elementary stream as listed in the PMT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElementaryStreamInfo {
    pub pid: u16,
    pub stream_type: u8,
}

/// A reassembled PES packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pes {
    pub pid: u16,
    pub stream_type: u8,
    pub stream_id: u8,
    /// 90 kHz, 33 bits.
    pub pts: Option<u64>,
    /// 90 kHz, 33 bits; `None` when only a PTS was sent (DTS = PTS).
    pub dts: Option<u64>,
    /// The first packet carried the random_access_indicator.
    pub random_access: bool,
    /// Packets were lost while this PES was assembled (a continuity counter jump), or the
    /// sender flagged a discontinuity (discontinuity_indicator) since the previous PES: what
    /// precedes this PES on its PID is not continuous with it.
    pub discontinuity: bool,
    /// The elementary stream bytes.
    pub payload: Vec<u8>,
}

/// What the demuxer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DemuxEvent {
    /// A PMT was read for the first time or its stream list changed.
    Program {
        program_number: u16,
        pcr_pid: u16,
        streams: Vec<ElementaryStreamInfo>,
    },
    Pes(Pes),
}

/// Continuity counter bookkeeping for one PID.
#[derive(Debug, Clone, Copy, Default)]
struct ContinuityCheck {
    last: Option<u8>,
}

enum CcVerdict {
    InOrder,
    /// The same packet again: skip it.
    Duplicate,
    Lost,
}

impl ContinuityCheck {
    fn check(&mut self, cc: u8, has_payload: bool, discontinuity_indicator: bool) -> CcVerdict {
        let verdict = match self.last {
            _ if discontinuity_indicator => CcVerdict::InOrder,
            None => CcVerdict::InOrder,
            Some(last) if !has_payload => {
                if cc == last {
                    CcVerdict::InOrder
                } else {
                    CcVerdict::Lost
                }
            }
            Some(last) if cc == (last + 1) & 0x0f => CcVerdict::InOrder,
            Some(last) if cc == last => CcVerdict::Duplicate,
            Some(_) => CcVerdict::Lost,
        };
        self.last = Some(cc);
        verdict
    }
}

/// Collects PSI sections for one PID.
#[derive(Debug, Default)]
struct SectionAssembler {
    buffer: Vec<u8>,
    active: bool,
    continuity: ContinuityCheck,
}

/// Longest PSI section: 3 header bytes + the 10-bit section_length limit of 1021.
const MAX_SECTION_LEN: usize = 1024;

impl SectionAssembler {
    /// Feeds one packet's payload; returns the complete sections it finishes.
    fn push(
        &mut self,
        pid: u16,
        payload_unit_start: bool,
        payload: &[u8],
        sections: &mut Vec<Vec<u8>>,
    ) -> Result<(), TsError> {
        let bad = |reason| TsError::BadSection { pid, reason };
        if payload_unit_start {
            let pointer = usize::from(*payload.first().ok_or(bad("no pointer_field"))?);
            let tail = payload
                .get(1..1 + pointer)
                .ok_or(bad("pointer_field past the packet"))?;
            if self.active {
                self.buffer.extend_from_slice(tail);
                self.drain(pid, sections)?;
            }
            self.buffer.clear();
            self.buffer.extend_from_slice(&payload[1 + pointer..]);
            self.active = true;
        } else if self.active {
            self.buffer.extend_from_slice(payload);
        } else {
            return Ok(());
        }
        self.drain(pid, sections)
    }

    /// Splits complete sections off the front of the buffer.
    fn drain(&mut self, pid: u16, sections: &mut Vec<Vec<u8>>) -> Result<(), TsError> {
        while self.active && self.buffer.len() >= 3 {
            if self.buffer[0] == 0xff {
                // Stuffing: no more sections in this unit.
                self.buffer.clear();
                self.active = false;
                break;
            }
            let section_length =
                (usize::from(self.buffer[1] & 0x0f) << 8) | usize::from(self.buffer[2]);
            let total = 3 + section_length;
            if total > MAX_SECTION_LEN {
                self.buffer.clear();
                self.active = false;
                return Err(TsError::BadSection {
                    pid,
                    reason: "section_length over 1021",
                });
            }
            if self.buffer.len() < total {
                break;
            }
            sections.push(self.buffer[..total].to_vec());
            self.buffer.drain(..total);
        }
        Ok(())
    }
}

/// Reassembly state of one elementary stream.
#[derive(Debug)]
struct StreamState {
    info: ElementaryStreamInfo,
    buffer: Vec<u8>,
    /// A payload unit start has been seen and `buffer` holds its PES.
    active: bool,
    random_access: bool,
    discontinuity: bool,
    /// A discontinuity the sender announced between PES packets, for the next one.
    announced_discontinuity: bool,
    continuity: ContinuityCheck,
}

impl StreamState {
    fn new(info: ElementaryStreamInfo) -> Self {
        StreamState {
            info,
            buffer: Vec::new(),
            active: false,
            random_access: false,
            discontinuity: false,
            announced_discontinuity: false,
            continuity: ContinuityCheck::default(),
        }
    }

    /// The PES_packet_length, once the buffer holds it; `None` if unknown or 0 (unbounded).
    fn declared_len(&self) -> Option<usize> {
        let length = usize::from(u16::from_be_bytes([
            *self.buffer.get(4)?,
            *self.buffer.get(5)?,
        ]));
        (length != 0).then_some(6 + length)
    }
}

/// The demuxer. Push 188-byte packets, then poll events.
#[derive(Debug)]
pub struct TsDemuxer {
    limits: DemuxLimits,
    pat: SectionAssembler,
    pmt: SectionAssembler,
    pmt_pid: Option<u16>,
    program_number: u16,
    streams: Vec<StreamState>,
    events: VecDeque<DemuxEvent>,
    last_pcr: Option<u64>,
    /// Scratch for sections completed by one packet.
    sections: Vec<Vec<u8>>,
}

impl Default for TsDemuxer {
    fn default() -> Self {
        TsDemuxer::new()
    }
}

impl TsDemuxer {
    pub fn new() -> TsDemuxer {
        TsDemuxer::with_limits(DemuxLimits::default())
    }

    pub fn with_limits(limits: DemuxLimits) -> TsDemuxer {
        TsDemuxer {
            limits,
            pat: SectionAssembler::default(),
            pmt: SectionAssembler::default(),
            pmt_pid: None,
            program_number: 0,
            streams: Vec::new(),
            events: VecDeque::new(),
            last_pcr: None,
            sections: Vec::new(),
        }
    }

    /// The streams of the current PMT.
    pub fn streams(&self) -> impl Iterator<Item = ElementaryStreamInfo> + '_ {
        self.streams.iter().map(|stream| stream.info)
    }

    /// The most recent PCR base (90 kHz) seen on any PID.
    pub fn last_pcr(&self) -> Option<u64> {
        self.last_pcr
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<DemuxEvent> {
        self.events.pop_front()
    }

    /// Pushes each 188-byte packet of `data` (whose length must be a multiple of 188), stopping
    /// at the first error. Events are only bounded per packet: poll between calls.
    pub fn push_packets(&mut self, data: &[u8]) -> Result<(), TsError> {
        if data.len() % PACKET_SIZE != 0 {
            return Err(TsError::PacketSize(data.len() % PACKET_SIZE));
        }
        for packet in data.chunks_exact(PACKET_SIZE) {
            self.push_packet(packet)?;
        }
        Ok(())
    }

    /// Ends the input: PES packets still open (video PES have no length) are completed.
    pub fn finish(&mut self) -> Result<(), TsError> {
        let mut first_error = None;
        for index in 0..self.streams.len() {
            if self.streams[index].active {
                if let Err(error) = self.complete_pes(index) {
                    first_error.get_or_insert(error);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Processes one transport packet.
    pub fn push_packet(&mut self, packet: &[u8]) -> Result<(), TsError> {
        if packet.len() != PACKET_SIZE {
            return Err(TsError::PacketSize(packet.len()));
        }
        if packet[0] != SYNC_BYTE {
            return Err(TsError::NoSync);
        }
        if self.events.len() >= self.limits.max_pending_events {
            return Err(TsError::EventQueueFull(self.events.len()));
        }
        if packet[1] & 0x80 != 0 {
            // transport_error_indicator: the sender knows this packet is damaged.
            return Ok(());
        }
        let payload_unit_start = packet[1] & 0x40 != 0;
        let pid = (u16::from(packet[1] & 0x1f) << 8) | u16::from(packet[2]);
        let adaptation_field_control = (packet[3] >> 4) & 0x03;
        let cc = packet[3] & 0x0f;
        if adaptation_field_control == 0 {
            return Err(TsError::ReservedAdaptationFieldControl);
        }
        let mut payload_start = 4;
        let mut discontinuity_indicator = false;
        let mut random_access = false;
        if adaptation_field_control & 0b10 != 0 {
            let length = usize::from(packet[4]);
            if 5 + length > PACKET_SIZE {
                return Err(TsError::AdaptationFieldOverrun(length));
            }
            if length > 0 {
                let flags = packet[5];
                discontinuity_indicator = flags & 0x80 != 0;
                random_access = flags & 0x40 != 0;
                if flags & 0x10 != 0 && length >= 7 {
                    let pcr = &packet[6..12];
                    self.last_pcr = Some(
                        (u64::from(pcr[0]) << 25)
                            | (u64::from(pcr[1]) << 17)
                            | (u64::from(pcr[2]) << 9)
                            | (u64::from(pcr[3]) << 1)
                            | u64::from(pcr[4] >> 7),
                    );
                }
            }
            payload_start = 5 + length;
        }
        let payload: &[u8] = if adaptation_field_control & 0b01 != 0 {
            &packet[payload_start..]
        } else {
            &[]
        };
        let has_payload = adaptation_field_control & 0b01 != 0;

        if pid == NULL_PID {
            return Ok(());
        }
        if pid == PAT_PID || Some(pid) == self.pmt_pid {
            let assembler = if pid == PAT_PID {
                &mut self.pat
            } else {
                &mut self.pmt
            };
            if let CcVerdict::Duplicate =
                assembler
                    .continuity
                    .check(cc, has_payload, discontinuity_indicator)
            {
                return Ok(());
            }
            let mut sections = std::mem::take(&mut self.sections);
            sections.clear();
            let pushed = assembler.push(pid, payload_unit_start, payload, &mut sections);
            let mut result = pushed;
            for section in &sections {
                let handled = if pid == PAT_PID {
                    self.handle_pat(section)
                } else {
                    self.handle_pmt(pid, section)
                };
                if result.is_ok() {
                    result = handled;
                }
            }
            self.sections = sections;
            return result;
        }
        let Some(index) = self.streams.iter().position(|s| s.info.pid == pid) else {
            return Ok(());
        };
        let lost =
            match self.streams[index]
                .continuity
                .check(cc, has_payload, discontinuity_indicator)
            {
                CcVerdict::Duplicate => return Ok(()),
                CcVerdict::Lost => true,
                CcVerdict::InOrder => false,
            };
        let mut result = Ok(());
        if payload_unit_start {
            if self.streams[index].active {
                result = self.complete_pes(index);
            }
            let stream = &mut self.streams[index];
            stream.buffer.clear();
            stream.active = true;
            stream.random_access = random_access;
            stream.discontinuity =
                lost || discontinuity_indicator || stream.announced_discontinuity;
            stream.announced_discontinuity = false;
        } else if lost {
            self.streams[index].discontinuity = true;
        } else if discontinuity_indicator {
            // Announced between PES packets (e.g. an adaptation-only marker): it concerns
            // the next PES, not the one assembled so far.
            self.streams[index].announced_discontinuity = true;
        }
        let limit = self.limits.max_pes_size;
        let stream = &mut self.streams[index];
        if !stream.active || payload.is_empty() {
            return result;
        }
        if stream.buffer.len() + payload.len() > limit {
            stream.buffer = Vec::new();
            stream.active = false;
            return result.and(Err(TsError::PesTooLarge { pid, limit }));
        }
        stream.buffer.extend_from_slice(payload);
        if stream
            .declared_len()
            .is_some_and(|declared| stream.buffer.len() >= declared)
        {
            let completed = self.complete_pes(index);
            result = result.and(completed);
        }
        result
    }

    fn handle_pat(&mut self, section: &[u8]) -> Result<(), TsError> {
        let body = check_section(PAT_PID, section, 0x00)?;
        let Some(body) = body else { return Ok(()) };
        // body: transport_stream_id(2) version(1) section_number(1) last(1) then programs.
        let programs = body.get(5..).ok_or(TsError::BadSection {
            pid: PAT_PID,
            reason: "PAT too short",
        })?;
        let program = programs
            .chunks_exact(4)
            .map(|entry| {
                (
                    u16::from_be_bytes([entry[0], entry[1]]),
                    u16::from_be_bytes([entry[2], entry[3]]) & 0x1fff,
                )
            })
            .find(|&(number, _)| number != 0);
        if let Some((number, pmt_pid)) = program {
            if self.pmt_pid != Some(pmt_pid) || self.program_number != number {
                self.pmt_pid = Some(pmt_pid);
                self.program_number = number;
                self.pmt = SectionAssembler::default();
            }
        }
        Ok(())
    }

    fn handle_pmt(&mut self, pid: u16, section: &[u8]) -> Result<(), TsError> {
        let bad = |reason| TsError::BadSection { pid, reason };
        let Some(body) = check_section(pid, section, 0x02)? else {
            return Ok(());
        };
        // body: program_number(2) version(1) section_number(1) last(1) PCR_PID(2)
        // program_info_length(2) descriptors, then the stream loop.
        let fixed = body.get(..9).ok_or(bad("PMT too short"))?;
        let program_number = u16::from_be_bytes([fixed[0], fixed[1]]);
        if program_number != self.program_number {
            return Ok(());
        }
        let pcr_pid = u16::from_be_bytes([fixed[5], fixed[6]]) & 0x1fff;
        let program_info_length = usize::from(u16::from_be_bytes([fixed[7], fixed[8]]) & 0x0fff);
        let mut rest = body
            .get(9 + program_info_length..)
            .ok_or(bad("program_info_length past the section"))?;
        let mut streams = Vec::new();
        while !rest.is_empty() {
            let entry = rest.get(..5).ok_or(bad("truncated stream entry"))?;
            let es_info_length = usize::from(u16::from_be_bytes([entry[3], entry[4]]) & 0x0fff);
            if streams.len() == self.limits.max_streams {
                return Err(TsError::TooManyStreams(self.limits.max_streams));
            }
            streams.push(ElementaryStreamInfo {
                stream_type: entry[0],
                pid: u16::from_be_bytes([entry[1], entry[2]]) & 0x1fff,
            });
            rest = rest
                .get(5 + es_info_length..)
                .ok_or(bad("ES_info_length past the section"))?;
        }
        let current: Vec<ElementaryStreamInfo> = self.streams().collect();
        if current != streams {
            // Keep the state of streams that stay; start fresh for new ones.
            let mut old = std::mem::take(&mut self.streams);
            for info in &streams {
                let state = match old.iter().position(|s| s.info == *info) {
                    Some(position) => old.swap_remove(position),
                    None => StreamState::new(*info),
                };
                self.streams.push(state);
            }
            self.events.push_back(DemuxEvent::Program {
                program_number,
                pcr_pid,
                streams,
            });
        }
        Ok(())
    }

    /// Parses the PES assembled for stream `index` and queues it.
    fn complete_pes(&mut self, index: usize) -> Result<(), TsError> {
        let stream = &mut self.streams[index];
        stream.active = false;
        let mut buffer = std::mem::take(&mut stream.buffer);
        let pid = stream.info.pid;
        let bad = |reason| TsError::BadPes { pid, reason };
        if buffer.len() < 6 || buffer[..3] != [0, 0, 1] {
            return Err(bad("no packet_start_code_prefix"));
        }
        let stream_id = buffer[3];
        let end = match stream.declared_len() {
            Some(declared) if declared > buffer.len() => {
                return Err(bad("shorter than its PES_packet_length"));
            }
            Some(declared) => declared,
            None => buffer.len(),
        };
        let mut pts = None;
        let mut dts = None;
        let mut start = 6;
        if has_optional_header(stream_id) {
            let header = buffer.get(6..9).ok_or(bad("truncated PES header"))?;
            let flags = header[1];
            let header_data_length = usize::from(header[2]);
            start = 9 + header_data_length;
            if start > end {
                return Err(bad("PES_header_data_length past the PES"));
            }
            let optional = &buffer[9..start];
            let timestamp = |at: usize| -> Result<u64, TsError> {
                let bytes: &[u8; 5] = optional
                    .get(at..at + 5)
                    .and_then(|b| b.try_into().ok())
                    .ok_or(bad("PTS/DTS past PES_header_data_length"))?;
                Ok(decode_timestamp(bytes))
            };
            match flags >> 6 {
                0b10 => pts = Some(timestamp(0)?),
                0b11 => {
                    pts = Some(timestamp(0)?);
                    dts = Some(timestamp(5)?);
                }
                0b01 => return Err(bad("PTS_DTS_flags 01 is forbidden")),
                _ => {}
            }
        }
        buffer.truncate(end);
        buffer.drain(..start);
        self.events.push_back(DemuxEvent::Pes(Pes {
            pid,
            stream_type: stream.info.stream_type,
            stream_id,
            pts,
            dts,
            random_access: stream.random_access,
            discontinuity: stream.discontinuity,
            payload: buffer,
        }));
        Ok(())
    }
}

/// Stream ids whose PES has no optional header (Table 2-22 / 2-21 of 13818-1).
fn has_optional_header(stream_id: u8) -> bool {
    !matches!(
        stream_id,
        0xbc | 0xbe | 0xbf | 0xf0 | 0xf1 | 0xf2 | 0xf8 | 0xff
    )
}

/// Checks a long-form section's header and CRC; returns the bytes between the 3-byte header and
/// the CRC, or `None` for a table we should skip (other table_id, not yet current).
fn check_section(pid: u16, section: &[u8], table_id: u8) -> Result<Option<&[u8]>, TsError> {
    if section.first() != Some(&table_id) {
        return Ok(None);
    }
    if section.len() < 3 + 5 + 4 || section[1] & 0x80 == 0 {
        return Err(TsError::BadSection {
            pid,
            reason: "not a long-form section",
        });
    }
    if crc32_mpeg2(section) != 0 {
        return Err(TsError::SectionCrc(pid));
    }
    let body = &section[3..section.len() - 4];
    // current_next_indicator 0: a table announced for later.
    if body[2] & 0x01 == 0 {
        return Ok(None);
    }
    Ok(Some(body))
}

#[cfg(test)]
mod tests {
    use super::super::mux::{AudioStreamType, Frame, Track, TsMuxer, VideoStreamType};
    use super::*;

    fn drain(demuxer: &mut TsDemuxer) -> Vec<DemuxEvent> {
        std::iter::from_fn(|| demuxer.poll_event()).collect()
    }

    #[test]
    fn mux_then_demux() {
        let mut muxer = TsMuxer::new(Some(VideoStreamType::H264), Some(AudioStreamType::AacAdts));
        let mut out = Vec::new();
        let video = vec![7u8; 5000];
        let audio = [1u8, 2, 3];
        muxer
            .write_frame(
                &mut out,
                &Frame {
                    track: Track::Video,
                    pts: 3600,
                    dts: 0,
                    keyframe: true,
                    data: &[&video[..10], &video[10..]],
                },
            )
            .unwrap();
        muxer
            .write_frame(
                &mut out,
                &Frame {
                    track: Track::Audio,
                    pts: 100,
                    dts: 100,
                    keyframe: true,
                    data: &[&audio],
                },
            )
            .unwrap();
        let mut demuxer = TsDemuxer::new();
        demuxer.push_packets(&out).unwrap();
        let mut events = drain(&mut demuxer);
        demuxer.finish().unwrap();
        events.extend(drain(&mut demuxer));
        assert_eq!(events.len(), 3, "{events:?}");
        assert!(
            matches!(&events[0], DemuxEvent::Program { pcr_pid: 0x100, streams, .. } if streams.len() == 2)
        );
        // The audio PES completes first: it has a length; the video PES ends at finish().
        let DemuxEvent::Pes(audio_pes) = &events[1] else {
            panic!()
        };
        assert_eq!(audio_pes.payload, audio);
        assert_eq!((audio_pes.pts, audio_pes.dts), (Some(100), None));
        let DemuxEvent::Pes(video_pes) = &events[2] else {
            panic!()
        };
        assert_eq!(video_pes.payload, video);
        assert_eq!((video_pes.pts, video_pes.dts), (Some(3600), Some(0)));
        assert!(video_pes.random_access && !video_pes.discontinuity);
        assert_eq!(demuxer.last_pcr(), Some(0));
    }

    #[test]
    fn lost_packet_marks_discontinuity() {
        let mut muxer = TsMuxer::new(Some(VideoStreamType::H264), None);
        let mut out = Vec::new();
        let video = vec![7u8; 1000];
        for _ in 0..2 {
            muxer
                .write_frame(
                    &mut out,
                    &Frame {
                        track: Track::Video,
                        pts: 0,
                        dts: 0,
                        keyframe: false,
                        data: &[&video],
                    },
                )
                .unwrap();
        }
        // Drop the third video packet of the first PES.
        out.drain(4 * PACKET_SIZE..5 * PACKET_SIZE);
        let mut demuxer = TsDemuxer::new();
        demuxer.push_packets(&out).unwrap();
        demuxer.finish().unwrap();
        let pes: Vec<Pes> = drain(&mut demuxer)
            .into_iter()
            .filter_map(|e| match e {
                DemuxEvent::Pes(p) => Some(p),
                _ => None,
            })
            .collect();
        assert_eq!(pes.len(), 2);
        assert!(pes[0].discontinuity && pes[0].payload.len() < 1000);
        assert!(!pes[1].discontinuity && pes[1].payload == video);
    }

    #[test]
    fn malformed_packets_are_errors() {
        let mut demuxer = TsDemuxer::new();
        assert_eq!(
            demuxer.push_packet(&[0x47; 100]),
            Err(TsError::PacketSize(100))
        );
        assert_eq!(
            demuxer.push_packet(&[0u8; PACKET_SIZE]),
            Err(TsError::NoSync)
        );
        let mut packet = [0xffu8; PACKET_SIZE];
        packet[..4].copy_from_slice(&[0x47, 0x40, 0x00, 0x00]);
        assert_eq!(
            demuxer.push_packet(&packet),
            Err(TsError::ReservedAdaptationFieldControl)
        );
        packet[3] = 0x30;
        packet[4] = 184;
        assert_eq!(
            demuxer.push_packet(&packet),
            Err(TsError::AdaptationFieldOverrun(184))
        );
        // A PAT with a bad CRC.
        let mut muxer = TsMuxer::new(None, None);
        let mut tables = Vec::new();
        muxer.write_tables(&mut tables);
        tables[20] ^= 1;
        assert_eq!(
            demuxer.push_packet(&tables[..PACKET_SIZE]),
            Err(TsError::SectionCrc(0))
        );
    }
}
