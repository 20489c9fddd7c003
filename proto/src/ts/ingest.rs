//! MPEG-TS in, FLV tag bodies out: what an SRT (or UDP-TS) publisher sends, turned into the
//! audio and video message bodies an RTMP publisher would have sent, so the hub keeps one form
//! of media whatever the ingest protocol. This is the receiving half of SRS's SRT→RTMP bridge
//! (`SrsRtmpFromSrtBridge`), sans-IO.
//!
//! [`TsIngest`] owns everything between the transport payload and the hub:
//! - **packet framing**: bytes in any chunking (SRT usually carries 7 × 188 bytes per datagram,
//!   but nothing relies on it); a partial packet waits for the next push, and when the sync byte
//!   is not where a packet should start the ingest skips to the next `0x47` that another `0x47`
//!   188 bytes later confirms (waiting for more input if need be) and counts what it skipped;
//! - **demuxing** with [`TsDemuxer`]: the first H.264/H.265 stream and the first AAC/MPEG-audio
//!   stream of the program are used, everything else is counted and ignored;
//! - **video**: each PES is one access unit in Annex B form, packed by
//!   [`FlvVideoPacker`](crate::codec::flv_video::FlvVideoPacker) (shared with WebRTC ingest).
//!   Access unit delimiters and filler are dropped, parameter sets are taken out and become a sequence header (emitted before the
//!   frame whenever they first appear or change), the remaining NAL units become one frame with
//!   4-byte length prefixes. H.264 uses the legacy FLV form (codec id 7), as SRS does; H.265
//!   uses Enhanced RTMP (`hvc1` FourCC, `SequenceStart` / `CodedFrames` with a composition
//!   time), which [`VideoPacket::parse`](crate::codec::VideoPacket::parse) reads, OBS 29.1+
//!   publishes, and ffmpeg reads from 6.1 on (older readers know only the unofficial codec id 12).
//!   Frames before the first sequence header are dropped (a player could not decode them) and
//!   counted;
//! - **audio**: a PES may hold several ADTS (or MPEG audio) frames; each becomes its own message,
//!   timed from the PES PTS plus the samples before it (rounded to the 90 kHz tick, and held
//!   back from stepping a tick behind the previous frame). AAC gets a sequence header (the
//!   AudioSpecificConfig implied by the ADTS header) first and whenever it changes;
//! - **time**: each track's 33-bit 90 kHz clock is unwrapped to 64 bits (a wrap moves forward;
//!   a step back of less than half the range is a step back), then cut to RTMP's wrapping
//!   32-bit milliseconds. The TS time is used as is, without rebasing to zero, as SRS does.
//!   Video messages carry the DTS and the PTS − DTS composition time;
//! - **order**: a muxer sends audio PES up to ~0.7 s after the video of the same time, so the
//!   messages are put back in time order across the tracks ([`Interleaver`]) before they are
//!   polled, as an RTMP publisher would send them. A track waits for the other at most
//!   [`IngestLimits::max_interleave_ms`] of its time and `max_interleave_bytes` of its data.
//!
//! Total and bounded: no input panics; a malformed packet, PES, NAL or audio frame is an error
//! for that unit only, reported from [`TsIngest::push`] (the first of each push) and counted in
//! [`IngestStats`]; the ingest stays usable. Memory is bounded by the demuxer's
//! [`DemuxLimits`], by at most [`MAX_PARAMETER_SETS_PER_KIND`] parameter sets of each kind, by
//! the interleaving bounds, and by the queue of messages: a push is refused while
//! [`IngestLimits::max_pending_messages`] wait, and one push releases at most a number of
//! messages proportional to the input so far. Poll until `None` after each push.
//!
//! An access unit that lost packets on the way is passed on as it is, as SRS does (SRT's
//! retransmission makes that rare; [`IngestStats::discontinuities`] counts it). Not handled:
//! audio frames split across PES packets (ffmpeg, OBS and hardware encoders keep them whole; a
//! cut frame is an error and dropped), ADTS frames with several raw data blocks, and codecs
//! carried as private data (Opus, AC-3: ignored and counted).

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use super::demux::{DemuxEvent, DemuxLimits, ElementaryStreamInfo, Pes, TsDemuxer};
use super::interleave::{Interleaver, TrackSlot};
use super::{PACKET_SIZE, SYNC_BYTE, TIMESTAMP_MASK, TsError, stream_type};
use crate::codec::flv_video::{FlvVideoPacker, VideoCodecKind};
use crate::codec::{AdtsHeader, CodecError, MpegAudioHeader};
use crate::flv::TagType;

pub use crate::codec::flv_video::MAX_PARAMETER_SETS_PER_KIND;

/// Whether a message is audio or video (RTMP message type 8 or 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlvMessageKind {
    Audio,
    Video,
}

impl FlvMessageKind {
    /// The FLV tag type for writing the message into a file or an HTTP-FLV stream.
    pub fn tag_type(self) -> TagType {
        match self {
            FlvMessageKind::Audio => TagType::Audio,
            FlvMessageKind::Video => TagType::Video,
        }
    }
}

/// One audio or video message, as an RTMP publisher would have sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlvMessage {
    pub kind: FlvMessageKind,
    /// Milliseconds, RTMP-style wrapping at 2^32: the DTS for video, the frame's PTS for audio.
    pub timestamp: u32,
    /// The FLV AUDIODATA / VIDEODATA body.
    pub body: Bytes,
}

/// Bounds on what one ingest holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestLimits {
    /// Messages not yet polled beyond which [`TsIngest::push`] refuses input.
    pub max_pending_messages: usize,
    /// How far (in milliseconds of its own time) one track may run ahead while the ingest waits
    /// for the other's messages of the same time; see [`Interleaver`].
    pub max_interleave_ms: u32,
    /// How many bytes of one track may wait for the other.
    pub max_interleave_bytes: usize,
    /// The demuxer's limits (PES size, streams per program).
    pub demux: DemuxLimits,
}

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits {
            max_pending_messages: 64,
            // ffmpeg's mpegts muxer sends a PES at most `max_delay` (0.7 s) late.
            max_interleave_ms: 1000,
            max_interleave_bytes: 8 << 20,
            demux: DemuxLimits::default(),
        }
    }
}

/// Counters for the API, metrics and logs. They only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestStats {
    /// Transport packets handed to the demuxer.
    pub packets: u64,
    /// Times packet alignment was lost and found again.
    pub resyncs: u64,
    /// Bytes skipped looking for a sync byte.
    pub skipped_bytes: u64,
    /// Bytes refused because messages were not polled, or left in a partial packet at finish.
    pub dropped_bytes: u64,
    /// Errors of any kind (only the first of each push is returned).
    pub errors: u64,
    /// PES that arrived after packets of their PID were lost.
    pub discontinuities: u64,
    /// Elementary streams of a PMT that are not ingested (other codecs, second tracks).
    pub ignored_streams: u64,
    /// PES packets of those streams.
    pub ignored_pes: u64,
    /// Video frames emitted.
    pub video_frames: u64,
    /// Audio frames emitted.
    pub audio_frames: u64,
    /// Video frames dropped because no sequence header could be made yet.
    pub frames_before_config: u64,
}

/// Why (part of) the input was not ingested. Each is worth a log line; none stops the ingest.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IngestError {
    #[error("lost TS packet alignment: skipped {skipped} bytes to the next sync byte")]
    Resync { skipped: u64 },
    #[error("{pending} messages are waiting: poll before pushing more ({dropped} bytes dropped)")]
    QueueFull { pending: usize, dropped: usize },
    #[error("transport stream: {0}")]
    Ts(#[from] TsError),
    #[error("{what} on PID {pid:#06x}: {source}")]
    Codec {
        pid: u16,
        what: &'static str,
        source: CodecError,
    },
    #[error("{what} on PID {pid:#06x} is not supported")]
    Unsupported { pid: u16, what: &'static str },
    #[error("PES on PID {pid:#06x} has no timestamp to go by")]
    NoTimestamp { pid: u16 },
}

/// The ingest. Push transport stream bytes, then poll messages.
#[derive(Debug)]
pub struct TsIngest {
    limits: IngestLimits,
    demuxer: TsDemuxer,
    /// Input not used yet: the start of a packet, or a sync candidate waiting for the byte
    /// that confirms it (at most a packet and a byte).
    partial: Vec<u8>,
    /// Bytes skipped since alignment was lost, reported when it is found again.
    skipping: u64,
    /// Messages in time order, ready to poll.
    messages: VecDeque<FlvMessage>,
    /// Messages waiting for the other track to catch up.
    interleaver: Interleaver<FlvMessage>,
    video: Option<VideoTrack>,
    audio: Option<AudioTrack>,
    /// The last unwrapped timestamp of any track: a track's first timestamp is unwrapped next
    /// to it, so that audio and video stay on one timeline even if they start on either side
    /// of a 33-bit wrap.
    reference: Option<i64>,
    stats: IngestStats,
    first_error: Option<IngestError>,
}

impl Default for TsIngest {
    fn default() -> Self {
        TsIngest::new()
    }
}

impl TsIngest {
    pub fn new() -> TsIngest {
        TsIngest::with_limits(IngestLimits::default())
    }

    pub fn with_limits(limits: IngestLimits) -> TsIngest {
        TsIngest {
            limits,
            demuxer: TsDemuxer::with_limits(limits.demux),
            partial: Vec::with_capacity(PACKET_SIZE),
            skipping: 0,
            messages: VecDeque::new(),
            interleaver: Interleaver::new(
                i64::from(limits.max_interleave_ms) * 90,
                limits.max_interleave_bytes,
            ),
            video: None,
            audio: None,
            reference: None,
            stats: IngestStats::default(),
            first_error: None,
        }
    }

    pub fn stats(&self) -> IngestStats {
        self.stats
    }

    /// Messages waiting to be polled.
    pub fn pending(&self) -> usize {
        self.messages.len()
    }

    /// Takes TS bytes in any chunking. All of `data` is used (unless the queue is full, see
    /// [`IngestError::QueueFull`]) even when an error is returned: the error is the first
    /// problem met, for the log; the others are counted in [`stats`](Self::stats).
    pub fn push(&mut self, data: &[u8]) -> Result<(), IngestError> {
        if self.messages.len() >= self.limits.max_pending_messages {
            self.stats.dropped_bytes += data.len() as u64;
            self.stats.errors += 1;
            return Err(IngestError::QueueFull {
                pending: self.messages.len(),
                dropped: data.len(),
            });
        }
        if self.partial.is_empty() {
            let used = self.consume(data);
            self.partial.extend_from_slice(&data[used..]);
        } else {
            // Rare (misaligned chunking, or a sync candidate waiting for confirmation): the
            // carried bytes are at most one packet and a byte.
            let mut buffer = std::mem::take(&mut self.partial);
            buffer.extend_from_slice(data);
            let used = self.consume(&buffer);
            buffer.drain(..used);
            self.partial = buffer;
        }
        self.first_error.take().map_or(Ok(()), Err)
    }

    /// Ends the input (the publisher left): the PES still being assembled — the last video
    /// access unit, whose end only the next one's start would have shown — is completed.
    pub fn finish(&mut self) -> Result<(), IngestError> {
        self.stats.dropped_bytes += self.partial.len() as u64;
        self.partial.clear();
        if let Err(error) = self.demuxer.finish() {
            self.error(error.into());
        }
        self.drain_demuxer();
        while let Some(message) = self.interleaver.pop_all() {
            self.messages.push_back(message);
        }
        self.first_error.take().map_or(Ok(()), Err)
    }

    /// The next message, in the order a publisher would send them: audio and video in time
    /// order, each sequence header before the first frame that needs it.
    pub fn poll(&mut self) -> Option<FlvMessage> {
        self.messages.pop_front()
    }

    /// Cuts `input` into packets and processes them; returns how many bytes were used (the
    /// rest, less than a packet or a sync candidate not yet confirmed, waits for more input).
    fn consume(&mut self, input: &[u8]) -> usize {
        let mut at = 0;
        while at < input.len() {
            let rest = &input[at..];
            if self.skipping > 0 || rest[0] != SYNC_BYTE {
                // Alignment lost: take a sync byte only when the next packet's sync byte
                // confirms it, and wait for input when that is not in view yet.
                let found = rest.iter().enumerate().position(|(offset, &byte)| {
                    byte == SYNC_BYTE
                        && rest
                            .get(offset + PACKET_SIZE)
                            .is_none_or(|&next| next == SYNC_BYTE)
                });
                let skip = found.unwrap_or(rest.len());
                self.skipping += skip as u64;
                self.stats.skipped_bytes += skip as u64;
                at += skip;
                match found {
                    None => break,
                    Some(offset) if offset + PACKET_SIZE >= rest.len() => break,
                    Some(_) => {
                        self.stats.resyncs += 1;
                        let skipped = std::mem::take(&mut self.skipping);
                        self.error(IngestError::Resync { skipped });
                        continue;
                    }
                }
            }
            if rest.len() < PACKET_SIZE {
                break;
            }
            self.packet(&rest[..PACKET_SIZE]);
            at += PACKET_SIZE;
        }
        at
    }

    fn error(&mut self, error: IngestError) {
        self.stats.errors += 1;
        self.first_error.get_or_insert(error);
    }

    fn packet(&mut self, packet: &[u8]) {
        self.stats.packets += 1;
        if let Err(error) = self.demuxer.push_packet(packet) {
            self.error(error.into());
        }
        self.drain_demuxer();
    }

    fn drain_demuxer(&mut self) {
        while let Some(event) = self.demuxer.poll_event() {
            match event {
                DemuxEvent::Program { streams, .. } => self.program(&streams),
                DemuxEvent::Pes(pes) => self.pes(pes),
            }
        }
    }

    /// Picks the first video and the first audio stream we can carry.
    fn program(&mut self, streams: &[ElementaryStreamInfo]) {
        let video = streams
            .iter()
            .find(|s| video_codec(s.stream_type).is_some());
        let audio = streams
            .iter()
            .find(|s| AudioCodecKind::from_stream_type(s.stream_type).is_some());
        let used = usize::from(video.is_some()) + usize::from(audio.is_some());
        self.stats.ignored_streams += (streams.len() - used) as u64;
        let same_video = |track: &VideoTrack, info: &ElementaryStreamInfo| {
            track.pid == info.pid && Some(track.packer.codec()) == video_codec(info.stream_type)
        };
        match video {
            Some(info) if self.video.as_ref().is_some_and(|t| same_video(t, info)) => {}
            Some(info) => {
                self.video =
                    video_codec(info.stream_type).map(|codec| VideoTrack::new(info.pid, codec));
            }
            None => self.video = None,
        }
        self.expect_track(TrackSlot::Video, self.video.is_some());
        let same_audio = |track: &AudioTrack, info: &ElementaryStreamInfo| {
            track.pid == info.pid
                && Some(track.codec) == AudioCodecKind::from_stream_type(info.stream_type)
        };
        match audio {
            Some(info) if self.audio.as_ref().is_some_and(|t| same_audio(t, info)) => {}
            Some(info) => {
                self.audio = AudioCodecKind::from_stream_type(info.stream_type)
                    .map(|codec| AudioTrack::new(info.pid, codec));
            }
            None => self.audio = None,
        }
        self.expect_track(TrackSlot::Audio, self.audio.is_some());
    }

    fn expect_track(&mut self, slot: TrackSlot, present: bool) {
        if present {
            self.interleaver.expect(slot);
        } else {
            self.interleaver.forget(slot);
        }
    }

    fn pes(&mut self, pes: Pes) {
        if pes.discontinuity {
            self.stats.discontinuities += 1;
        }
        if self.video.as_ref().is_some_and(|t| t.pid == pes.pid) {
            self.video_pes(&pes);
        } else if self.audio.as_ref().is_some_and(|t| t.pid == pes.pid) {
            self.audio_pes(&pes);
        } else {
            self.stats.ignored_pes += 1;
        }
    }

    fn push_message(&mut self, kind: FlvMessageKind, ticks: i64, body: Bytes) {
        let slot = match kind {
            FlvMessageKind::Video => TrackSlot::Video,
            FlvMessageKind::Audio => TrackSlot::Audio,
        };
        let message = FlvMessage {
            kind,
            timestamp: ticks_to_rtmp_ms(ticks),
            body,
        };
        // The struct counts too, so that many tiny messages are bounded like a few big ones.
        let size = message.body.len() + std::mem::size_of::<FlvMessage>();
        self.interleaver.hold(slot, ticks, size, message);
        while let Some(message) = self.interleaver.pop() {
            self.messages.push_back(message);
        }
    }

    fn video_pes(&mut self, pes: &Pes) {
        let Some(track) = self.video.as_mut() else {
            return;
        };
        let pid = pes.pid;
        let Some(pts_raw) = pes.pts.or(pes.dts) else {
            self.error(IngestError::NoTimestamp { pid });
            return;
        };
        let dts_raw = pes.dts.unwrap_or(pts_raw);
        let dts = track.clock.unwrap(dts_raw, self.reference);
        self.reference = Some(dts);
        let pts = dts.wrapping_add(signed_delta(pts_raw, dts_raw));
        // PTS and DTS are each cut to milliseconds as the timestamps are, so that
        // timestamp + composition time is exactly the PTS in milliseconds.
        let composition_time = pts
            .div_euclid(90)
            .wrapping_sub(dts.div_euclid(90))
            .clamp(-(1 << 23), (1 << 23) - 1) as i32;

        let mut errors = Vec::new();
        let packed = track
            .packer
            .pack(&pes.payload, composition_time, &mut errors);
        for (what, source) in errors {
            self.error(IngestError::Codec { pid, what, source });
        }
        if let Some(body) = packed.sequence_header {
            self.push_message(FlvMessageKind::Video, dts, body);
        }
        if packed.unconfigured {
            self.stats.frames_before_config += 1;
        }
        if let Some(body) = packed.frame {
            self.stats.video_frames += 1;
            self.push_message(FlvMessageKind::Video, dts, body);
        }
    }

    fn audio_pes(&mut self, pes: &Pes) {
        let Some(track) = self.audio.as_mut() else {
            return;
        };
        let pid = pes.pid;
        let start = match (pes.pts, track.next) {
            (Some(pts), _) => {
                let ticks = track.clock.unwrap(pts, self.reference);
                self.reference = Some(ticks);
                ticks
            }
            // A PES without a PTS continues where the previous one ended.
            (None, Some(next)) if !pes.discontinuity => next,
            (None, _) => {
                self.error(IngestError::NoTimestamp { pid });
                return;
            }
        };
        let codec = track.codec;
        let mut errors: Vec<IngestError> = Vec::new();
        let mut out: Vec<(i64, Bytes)> = Vec::new();
        // Samples since the PES PTS, and the rate they were counted at.
        let mut samples: u64 = 0;
        let mut rest = &pes.payload[..];
        let mut searching = false;
        while !rest.is_empty() {
            let frame = match codec.frame(rest) {
                Ok(frame) => frame,
                Err(AudioFrameError::Truncated(source)) => {
                    errors.push(IngestError::Codec {
                        pid,
                        what: codec.frame_name(),
                        source,
                    });
                    break;
                }
                Err(AudioFrameError::NoSync(source)) => {
                    if !searching {
                        errors.push(IngestError::Codec {
                            pid,
                            what: codec.frame_name(),
                            source,
                        });
                        searching = true;
                    }
                    // Skip to the next candidate sync word.
                    let next = rest[1..]
                        .iter()
                        .position(|&b| b == 0xff)
                        .map_or(rest.len(), |p| p + 1);
                    rest = &rest[next..];
                    continue;
                }
                Err(AudioFrameError::Unsupported(what)) => {
                    errors.push(IngestError::Unsupported { pid, what });
                    break;
                }
            };
            searching = false;
            rest = &rest[frame.len..];
            if frame.payload.is_empty() {
                continue;
            }
            let offset = (u128::from(samples) * 90_000 + u128::from(frame.sample_rate / 2))
                / u128::from(frame.sample_rate.max(1));
            samples += u64::from(frame.samples);
            let duration = i64::from(frame.samples) * 90_000 / i64::from(frame.sample_rate.max(1));
            let mut ticks = start.wrapping_add(offset.min(i64::MAX as u128) as i64);
            // Keep audio timestamps monotonic across PES: the next PES's PTS may land a tick
            // before where counting samples put the previous frame. Larger steps back are real
            // discontinuities and pass through, as SRS passes TS time through.
            if let Some(last) = track.last {
                let back = last.wrapping_sub(ticks);
                if (1..=duration).contains(&back) {
                    ticks = last;
                }
            }
            track.last = Some(ticks);
            track.next = Some(ticks.wrapping_add(duration));
            if let Some(config) = frame.config {
                if track.config != Some(config) {
                    track.config = Some(config);
                    out.push((ticks, aac_body(0, &config)));
                }
            }
            out.push((ticks, codec.frame_body(frame.sound_flags, frame.payload)));
            self.stats.audio_frames += 1;
        }
        for error in errors {
            self.error(error);
        }
        for (ticks, body) in out {
            self.push_message(FlvMessageKind::Audio, ticks, body);
        }
    }
}

/// `to − from` on the 33-bit clock, as the shorter way round: in [−2^32, 2^32).
fn signed_delta(to: u64, from: u64) -> i64 {
    let delta = to.wrapping_sub(from) & TIMESTAMP_MASK;
    if delta >= 1 << 32 {
        delta as i64 - (1 << 33)
    } else {
        delta as i64
    }
}

/// 90 kHz ticks to RTMP milliseconds: rounded down, wrapping at 2^32.
fn ticks_to_rtmp_ms(ticks: i64) -> u32 {
    ticks.div_euclid(90) as u32
}

/// Unwraps one track's 33-bit timestamps.
#[derive(Debug, Default, Clone, Copy)]
struct Clock {
    /// The last raw value and its unwrapped value.
    last: Option<(u64, i64)>,
}

impl Clock {
    fn unwrap(&mut self, raw: u64, reference: Option<i64>) -> i64 {
        let raw = raw & TIMESTAMP_MASK;
        let unwrapped = match (self.last, reference) {
            (Some((last_raw, last)), _) => last.wrapping_add(signed_delta(raw, last_raw)),
            (None, Some(reference)) => {
                reference.wrapping_add(signed_delta(raw, reference.rem_euclid(1 << 33) as u64))
            }
            (None, None) => raw as i64,
        };
        self.last = Some((raw, unwrapped));
        unwrapped
    }
}

fn video_codec(stream_type: u8) -> Option<VideoCodecKind> {
    match stream_type {
        stream_type::H264 => Some(VideoCodecKind::H264),
        stream_type::H265 => Some(VideoCodecKind::H265),
        _ => None,
    }
}

#[derive(Debug)]
struct VideoTrack {
    pid: u16,
    clock: Clock,
    packer: FlvVideoPacker,
}

impl VideoTrack {
    fn new(pid: u16, codec: VideoCodecKind) -> VideoTrack {
        VideoTrack {
            pid,
            clock: Clock::default(),
            packer: FlvVideoPacker::new(codec),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AudioCodecKind {
    Aac,
    MpegAudio,
}

/// One audio frame found in a PES.
struct AudioFrame<'a> {
    /// Bytes of the PES it spans.
    len: usize,
    /// What goes in the FLV body after its header byte(s).
    payload: &'a [u8],
    samples: u32,
    sample_rate: u32,
    /// The low nibble of the FLV sound byte.
    sound_flags: u8,
    /// AAC: the two-byte AudioSpecificConfig the frame implies.
    config: Option<[u8; 2]>,
}

enum AudioFrameError {
    /// No sync word here: look further.
    NoSync(CodecError),
    /// The frame runs past the PES: the rest is lost.
    Truncated(CodecError),
    Unsupported(&'static str),
}

impl AudioCodecKind {
    fn from_stream_type(stream_type: u8) -> Option<AudioCodecKind> {
        match stream_type {
            stream_type::AAC_ADTS => Some(AudioCodecKind::Aac),
            stream_type::MPEG1_AUDIO | stream_type::MPEG2_AUDIO => Some(AudioCodecKind::MpegAudio),
            _ => None,
        }
    }

    fn frame_name(self) -> &'static str {
        match self {
            AudioCodecKind::Aac => "ADTS frame",
            AudioCodecKind::MpegAudio => "MPEG audio frame",
        }
    }

    fn frame(self, data: &[u8]) -> Result<AudioFrame<'_>, AudioFrameError> {
        match self {
            AudioCodecKind::Aac => {
                let header = AdtsHeader::parse(data).map_err(|error| match error {
                    CodecError::Truncated(_) => AudioFrameError::Truncated(error),
                    other => AudioFrameError::NoSync(other),
                })?;
                let frame = data
                    .get(..header.frame_len)
                    .ok_or(AudioFrameError::Truncated(CodecError::Truncated(
                        "ADTS frame",
                    )))?;
                // number_of_raw_data_blocks_in_frame: more than one block would need the
                // blocks split apart; no encoder we know of writes that.
                if frame[6] & 0x03 != 0 {
                    return Err(AudioFrameError::Unsupported(
                        "ADTS frame with several raw data blocks",
                    ));
                }
                let config = header.audio_specific_config();
                Ok(AudioFrame {
                    len: header.frame_len,
                    payload: frame.get(header.header_len()..).unwrap_or_default(),
                    samples: 1024,
                    sample_rate: config.sampling_frequency,
                    // Everyone writes 0xAF for AAC: the spec fixes 44 kHz, 16-bit, stereo and
                    // decoders take the real values from the AudioSpecificConfig.
                    sound_flags: 0x0f,
                    config: Some(config.to_bytes()),
                })
            }
            AudioCodecKind::MpegAudio => {
                let header = MpegAudioHeader::parse(data).map_err(|error| match error {
                    CodecError::Truncated(_) => AudioFrameError::Truncated(error),
                    other => AudioFrameError::NoSync(other),
                })?;
                // Free format has no length in the header: take the rest of the PES.
                let len = header.frame_len().unwrap_or(data.len());
                if len < 4 {
                    return Err(AudioFrameError::NoSync(CodecError::NoMpegAudioSync));
                }
                let frame =
                    data.get(..len)
                        .ok_or(AudioFrameError::Truncated(CodecError::Truncated(
                            "MPEG audio frame",
                        )))?;
                // SoundRate as ffmpeg's FLV muxer writes it (48 kHz MP3 is stored as 44 kHz);
                // readers take the real rate from the frame header.
                let rate = match header.sample_rate {
                    32_000.. => 3,
                    16_000.. => 2,
                    _ => 1,
                };
                Ok(AudioFrame {
                    len,
                    payload: frame,
                    samples: header.samples_per_frame(),
                    sample_rate: header.sample_rate,
                    sound_flags: (rate << 2) | 0x02 | u8::from(header.channels() == 2),
                    config: None,
                })
            }
        }
    }

    fn frame_body(self, sound_flags: u8, payload: &[u8]) -> Bytes {
        match self {
            AudioCodecKind::Aac => aac_body(1, payload),
            AudioCodecKind::MpegAudio => {
                let mut body = BytesMut::with_capacity(1 + payload.len());
                // SoundFormat 2: MP3 (and, as players read it, any MPEG audio layer).
                body.put_u8((2 << 4) | sound_flags);
                body.put_slice(payload);
                body.freeze()
            }
        }
    }
}

/// An FLV AAC body: `0xAF`, AACPacketType (0 sequence header, 1 raw frame), the data.
fn aac_body(packet_type: u8, data: &[u8]) -> Bytes {
    let mut body = BytesMut::with_capacity(2 + data.len());
    body.put_slice(&[0xaf, packet_type]);
    body.put_slice(data);
    body.freeze()
}

#[derive(Debug)]
struct AudioTrack {
    pid: u16,
    codec: AudioCodecKind,
    clock: Clock,
    /// The AudioSpecificConfig of the last AAC sequence header.
    config: Option<[u8; 2]>,
    /// The last frame's time, to keep audio monotonic.
    last: Option<i64>,
    /// Where the frame after the last one starts, for a PES without PTS.
    next: Option<i64>,
}

impl AudioTrack {
    fn new(pid: u16, codec: AudioCodecKind) -> AudioTrack {
        AudioTrack {
            pid,
            codec,
            clock: Clock::default(),
            config: None,
            last: None,
            next: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_unwraps_forward_and_back() {
        let mut clock = Clock::default();
        let top = TIMESTAMP_MASK - 899;
        assert_eq!(clock.unwrap(top, None), top as i64);
        // 900 ticks later, past the wrap.
        assert_eq!(clock.unwrap(0, None), top as i64 + 900);
        assert_eq!(clock.unwrap(90, None), top as i64 + 990);
        // A small step back stays a step back.
        assert_eq!(clock.unwrap(45, None), top as i64 + 945);
        // A new track starts next to the reference, on the same side of the wrap.
        let mut audio = Clock::default();
        assert_eq!(
            audio.unwrap(TIMESTAMP_MASK, Some(top as i64 + 945)),
            TIMESTAMP_MASK as i64
        );
        let mut early = Clock::default();
        assert_eq!(
            early.unwrap(10, Some(TIMESTAMP_MASK as i64)),
            TIMESTAMP_MASK as i64 + 11
        );
    }

    #[test]
    fn milliseconds_wrap_like_rtmp() {
        assert_eq!(ticks_to_rtmp_ms(0), 0);
        assert_eq!(ticks_to_rtmp_ms(179), 1);
        assert_eq!(ticks_to_rtmp_ms(-1), u32::MAX);
        assert_eq!(ticks_to_rtmp_ms((1i64 << 32) * 90 + 90), 1);
        assert_eq!(signed_delta(0, TIMESTAMP_MASK), 1);
        assert_eq!(signed_delta(TIMESTAMP_MASK, 0), -1);
        assert_eq!(signed_delta(1 << 32, 0), -(1 << 32));
    }
}
