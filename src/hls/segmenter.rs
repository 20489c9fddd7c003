//! The packager: one per publishing stream, run by the publisher's session on its worker. It
//! takes the hub's frames in order and cuts them into parts and segments:
//!
//! - a segment starts on a keyframe (streams with video wait for the first one) and is cut at
//!   the first keyframe at least `hls_fragment` after its start (or, with no keyframe coming,
//!   at four fragments, to bound memory);
//! - with LL-HLS, a part is cut before the video frame that would make it longer than the part
//!   target; without it, a segment is one part;
//! - MPEG-TS parts are the frames' shared TS bytes (muxed once per frame for HTTP-TS and HLS);
//!   fMP4 parts are one `moof`+`mdat` fragment of both tracks; DASH gets one fragment per
//!   track over the same cut points.
//!
//! Cuts happen *before* a video frame, when the previous frame's duration is known, so every
//! fMP4 sample has its real duration. fMP4 and DASH use an output timeline that continues
//! across republishes and timestamp jumps (MSE wants monotonic decode times); TS keeps the
//! publisher's timestamps and marks the jump with `EXT-X-DISCONTINUITY`, as SRS does.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use sluice_proto::codec::{
    AudioPacket, AudioPacketKind, AudioSpecificConfig, MpegAudioHeader, VideoPacket,
    VideoPacketKind,
};
use sluice_proto::flv::{AudioCodec, VideoCodec};
use sluice_proto::fmp4::{self, Sample, TrackCodec, TrackInfo, TrackRun};

use super::{DashPiece, DashTrack, DashTrackInfo, HlsSettings, HlsStream, Part, Segment, Waiter};
use crate::hub::{Frame, FrameKind};

const VIDEO_TRACK: u32 = 1;
const AUDIO_TRACK: u32 = 2;
const VIDEO_TIMESCALE: u32 = 90_000;
/// A jump in publisher timestamps larger than this (either way) starts a new segment with a
/// discontinuity.
const JUMP_FORWARD_MS: i64 = 10_000;
const JUMP_BACKWARD_MS: i64 = 1_000;

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct VideoTrack {
    /// The sequence header's payload, to tell a repeat from a change.
    header: Bytes,
    codec: Option<TrackCodec>,
}

struct AudioTrack {
    header: Bytes,
    /// `None` for codecs fMP4 here does not carry (MP3: TS only).
    codec: Option<TrackCodec>,
    sample_rate: u32,
    frame_samples: u32,
}

/// A video sample whose duration is known only when the next one arrives.
struct PendingVideo {
    out_ms: i64,
    composition_ms: i32,
    keyframe: bool,
    data: Bytes,
}

/// A track's samples in a part, with the bytes each one is.
type SampleRun = Vec<(Sample, Bytes)>;

#[derive(Default)]
struct PartBuilder {
    start_ms: i64,
    ts: Vec<Bytes>,
    video: SampleRun,
    video_base: u64,
    audio: SampleRun,
    audio_base: u64,
    independent: bool,
}

impl PartBuilder {
    fn is_empty(&self) -> bool {
        self.ts.is_empty() && self.video.is_empty() && self.audio.is_empty()
    }
}

/// One DASH track's share of the open segment.
#[derive(Default)]
struct DashBuilder {
    start: Option<u64>,
    duration: u64,
    data: Vec<u8>,
}

/// A segment the packager completed (for `on_hls` and `hls_path`).
#[derive(Debug, Clone, Copy)]
pub struct Closed {
    pub seq: u64,
    /// Seconds.
    pub duration: f64,
}

pub struct Packager {
    hls: Arc<HlsStream>,
    /// Segments completed since the caller last looked.
    closed: Vec<Closed>,
    /// Segments that left the window since the caller last looked.
    expired: Vec<u64>,
    settings: HlsSettings,
    ts: bool,
    video: Option<VideoTrack>,
    audio: Option<AudioTrack>,
    /// Media may flow (a keyframe arrived, or the stream has no video).
    started: bool,
    /// Output ms = publisher ms + offset.
    offset_ms: Option<i64>,
    last_in_ms: i64,
    last_out_ms: i64,
    /// The last gap between video frames (ms), to close the last frame at the end.
    video_interval_ms: i64,
    next_discontinuity: bool,
    segment_start_ms: Option<i64>,
    part: PartBuilder,
    pending_video: Option<PendingVideo>,
    audio_next: Option<u64>,
    fragment_seq: u32,
    /// Segments this packager opened.
    opened_segments: u64,
    dash: [DashBuilder; 2],
    /// Whether init segments match the tracks (rebuilt at the next frame when not).
    init_ready: bool,
}

impl Packager {
    pub fn new(hls: Arc<HlsStream>) -> Packager {
        let settings = hls.state().settings.clone();
        let republish = {
            let state = hls.state();
            !state.segments.is_empty() || state.open.is_some()
        };
        Packager {
            closed: Vec::new(),
            expired: Vec::new(),
            ts: settings.hls && !settings.fmp4,
            settings,
            hls,
            video: None,
            audio: None,
            started: false,
            offset_ms: None,
            last_in_ms: 0,
            last_out_ms: 0,
            video_interval_ms: 33,
            next_discontinuity: republish,
            segment_start_ms: None,
            part: PartBuilder::default(),
            pending_video: None,
            audio_next: None,
            fragment_seq: 1,
            opened_segments: 0,
            dash: [DashBuilder::default(), DashBuilder::default()],
            init_ready: false,
        }
    }

    /// Segments completed and forgotten since the last call.
    pub fn take_changes(&mut self) -> (Vec<Closed>, Vec<u64>) {
        (
            std::mem::take(&mut self.closed),
            std::mem::take(&mut self.expired),
        )
    }

    pub fn stream(&self) -> &Arc<HlsStream> {
        &self.hls
    }

    /// Whether frames must carry MPEG-TS bytes for this packager.
    pub fn wants_ts(&self) -> bool {
        self.ts
    }

    /// Takes the next frame of the stream. Returns connections to wake (parked requests).
    pub fn push(&mut self, frame: &Frame) -> Vec<Waiter> {
        match frame.kind {
            FrameKind::Metadata | FrameKind::Opus => Vec::new(),
            FrameKind::Video if frame.sequence_header => self.video_header(frame),
            FrameKind::Audio if frame.sequence_header => self.audio_header(frame),
            FrameKind::Video => self.video_frame(frame),
            FrameKind::Audio => self.audio_frame(frame),
        }
    }

    /// The publisher left: the last part and segment are closed; the stream stays served
    /// until `hls_dispose`.
    pub fn finish(&mut self) -> Vec<Waiter> {
        let mut woken = self.close_segment_at_end();
        let mut state = self.hls.state();
        state.publishing = false;
        state.ended_at = Some(std::time::Instant::now());
        state.timeline_end_ms = self.last_out_ms + self.video_interval_ms;
        self.render(&mut state);
        woken.append(&mut state.waiters);
        woken
    }

    fn video_header(&mut self, frame: &Frame) -> Vec<Waiter> {
        if self
            .video
            .as_ref()
            .is_some_and(|v| v.header == frame.payload)
        {
            return Vec::new();
        }
        let codec = VideoPacket::parse(&frame.payload)
            .ok()
            .and_then(|packet| video_codec(&packet, frame));
        if codec.is_none() {
            tracing::debug!(stream = %self.hls.key, "hls: video codec not packaged in fMP4");
        }
        let changed = self.video.is_some();
        self.video = Some(VideoTrack {
            header: frame.payload.clone(),
            codec,
        });
        self.tracks_changed(changed)
    }

    fn audio_header(&mut self, frame: &Frame) -> Vec<Waiter> {
        if self
            .audio
            .as_ref()
            .is_some_and(|a| a.header == frame.payload)
        {
            return Vec::new();
        }
        let Ok(packet) = AudioPacket::parse(&frame.payload) else {
            return Vec::new();
        };
        if packet.codec != AudioCodec::Aac || packet.kind != AudioPacketKind::SequenceHeader {
            return Vec::new();
        }
        let Ok(config) = AudioSpecificConfig::parse(packet.data) else {
            return Vec::new();
        };
        let changed = self.audio.is_some();
        self.audio = Some(AudioTrack {
            header: frame.payload.clone(),
            codec: Some(TrackCodec::Aac {
                config: packet.data.to_vec(),
                sample_rate: config.sampling_frequency,
                channels: u16::from(config.channels()),
            }),
            sample_rate: config.sampling_frequency,
            frame_samples: config.samples_per_frame(),
        });
        self.tracks_changed(changed)
    }

    /// New decoder configuration: a mid-stream change ends the segment (the next one starts
    /// with a discontinuity and a new init segment).
    fn tracks_changed(&mut self, mid_stream: bool) -> Vec<Waiter> {
        let mut woken = Vec::new();
        // A track that changes, or appears once segments have begun, needs a new init segment:
        // end the segment so the next one starts with a discontinuity.
        if (mid_stream || self.segment_start_ms.is_some()) && self.started {
            woken = self.close_segment_at_end();
            self.next_discontinuity = true;
            self.started = false;
        }
        self.init_ready = false;
        woken
    }

    /// Maps a publisher timestamp to the output timeline; `None` when it jumped (the caller
    /// restarts at the next keyframe).
    fn map_time(&mut self, in_ms: i64) -> Option<i64> {
        let offset = match self.offset_ms {
            Some(offset) => {
                let step = in_ms - self.last_in_ms;
                if !(-JUMP_BACKWARD_MS..=JUMP_FORWARD_MS).contains(&step) {
                    tracing::info!(stream = %self.hls.key, step_ms = step, "hls: timestamp jump, new segment");
                    self.offset_ms = None;
                    return None;
                }
                offset
            }
            None => {
                let (timeline_end, epoch) = {
                    let state = self.hls.state();
                    (state.timeline_end_ms, state.dash_epoch_unix_ms)
                };
                let continued = if self.started_before() {
                    self.last_out_ms + self.video_interval_ms
                } else {
                    timeline_end
                };
                // After a pause (republish, a stalled publisher) the timeline resumes at the
                // wall clock, so DASH availability and EXT-X-PROGRAM-DATE-TIME stay true.
                let wall = if epoch == 0 {
                    0
                } else {
                    unix_ms().saturating_sub(epoch) as i64
                };
                let base = continued.max(wall);
                let offset = base - in_ms;
                self.offset_ms = Some(offset);
                offset
            }
        };
        self.last_in_ms = in_ms;
        let out = in_ms + offset;
        self.last_out_ms = self.last_out_ms.max(out);
        Some(out)
    }

    /// Whether this packager has opened a segment (its timeline continues from there).
    fn started_before(&self) -> bool {
        self.opened_segments > 0
    }

    fn video_frame(&mut self, frame: &Frame) -> Vec<Waiter> {
        let Ok(packet) = VideoPacket::parse(&frame.payload) else {
            return Vec::new();
        };
        if packet.kind != VideoPacketKind::CodedFrames {
            return Vec::new();
        }
        let in_ms = i64::from(frame.timestamp);
        if !self.started {
            if !frame.keyframe {
                return Vec::new();
            }
            self.started = true;
        }
        let Some(out_ms) = self.map_time(in_ms) else {
            let woken = self.close_segment_at_end();
            self.next_discontinuity = true;
            self.started = false;
            return woken;
        };
        let mut woken = Vec::new();
        // The previous frame's duration is known now.
        if let Some(pending) = self.pending_video.take() {
            let interval = (out_ms - pending.out_ms).max(1);
            self.video_interval_ms = interval;
            self.add_video_sample(pending, interval);
        }
        if let Some(start) = self.segment_start_ms {
            let segment_ms = out_ms - start;
            let fragment_ms = (self.settings.fragment * 1000.0) as i64;
            let cut_segment = (frame.keyframe && segment_ms >= fragment_ms)
                || segment_ms >= (fragment_ms * 4).max(20_000);
            // Would this frame end past the part target? Two milliseconds of slack: millisecond
            // timestamps jitter (33, 34, 33 ms at 30 fps).
            let part_ms = out_ms + self.video_interval_ms - self.part.start_ms;
            let cut_part = self.settings.low_latency
                && part_ms > (self.settings.part_target * 1000.0).round() as i64 + 2;
            if cut_segment {
                woken.extend(self.close_part(out_ms));
                woken.extend(self.close_segment());
            } else if cut_part {
                woken.extend(self.close_part(out_ms));
            }
        }
        self.open_segment_if_needed(out_ms);
        if self.part.is_empty() {
            self.part.independent = frame.keyframe;
        }
        if self.ts
            && let Some(ts) = &frame.ts
        {
            self.part.ts.push(ts.bytes.clone());
        }
        self.pending_video = Some(PendingVideo {
            out_ms,
            composition_ms: packet.composition_time,
            keyframe: frame.keyframe,
            data: frame.payload.slice_ref(packet.data),
        });
        woken
    }

    fn audio_frame(&mut self, frame: &Frame) -> Vec<Waiter> {
        let has_video = self.video.is_some();
        if has_video && !self.started {
            return Vec::new();
        }
        let Ok(packet) = AudioPacket::parse(&frame.payload) else {
            return Vec::new();
        };
        if packet.kind != AudioPacketKind::CodedFrames && packet.codec != AudioCodec::Mp3 {
            return Vec::new();
        }
        if packet.codec == AudioCodec::Mp3 && self.audio.is_none() {
            // MP3 has no sequence header: its frames say what it is. TS carries it; fMP4 not.
            let Ok(header) = MpegAudioHeader::parse(packet.data) else {
                return Vec::new();
            };
            self.audio = Some(AudioTrack {
                header: Bytes::new(),
                codec: None,
                sample_rate: header.sample_rate,
                frame_samples: header.samples_per_frame(),
            });
        }
        let Some(audio) = &self.audio else {
            return Vec::new();
        };
        let (sample_rate, frame_samples) = (audio.sample_rate.max(1), audio.frame_samples);
        self.started = true;
        let in_ms = i64::from(frame.timestamp);
        let Some(out_ms) = self.map_time(in_ms) else {
            let woken = self.close_segment_at_end();
            self.next_discontinuity = true;
            self.started = !has_video;
            return woken;
        };
        let mut woken = Vec::new();
        if !has_video && let Some(start) = self.segment_start_ms {
            // Audio only: cut by time at any frame where TS can start (tables precede it).
            let frame_ms = i64::from(frame_samples) * 1000 / i64::from(sample_rate);
            let joinable = !self.ts || frame.ts.as_ref().is_some_and(|t| t.join_point);
            if out_ms - start >= (self.settings.fragment * 1000.0) as i64 && joinable {
                woken.extend(self.close_part(out_ms));
                woken.extend(self.close_segment());
            } else if self.settings.low_latency
                && out_ms + frame_ms - self.part.start_ms
                    > (self.settings.part_target * 1000.0).round() as i64
            {
                woken.extend(self.close_part(out_ms));
            }
        }
        self.open_segment_if_needed(out_ms);
        if !has_video && self.part.is_empty() {
            self.part.independent = true;
        }
        if self.ts
            && let Some(ts) = &frame.ts
        {
            self.part.ts.push(ts.bytes.clone());
        }
        if self.audio.as_ref().is_some_and(|a| a.codec.is_some()) {
            let expected = (out_ms.max(0) as u64) * u64::from(sample_rate) / 1000;
            let next = match self.audio_next {
                // Keep counting samples unless the clock drifted by more than 100 ms.
                Some(next) if next.abs_diff(expected) <= u64::from(sample_rate) / 10 => next,
                _ => expected,
            };
            if self.part.audio.is_empty() {
                self.part.audio_base = next;
            }
            let data = frame.payload.slice_ref(packet.data);
            self.part.audio.push((
                Sample {
                    duration: frame_samples,
                    size: data.len() as u32,
                    keyframe: true,
                    composition_offset: 0,
                },
                data,
            ));
            self.audio_next = Some(next + u64::from(frame_samples));
        }
        woken
    }

    fn add_video_sample(&mut self, pending: PendingVideo, interval_ms: i64) {
        if self.video.as_ref().is_none_or(|v| v.codec.is_none()) {
            return;
        }
        let dts = (pending.out_ms.max(0) as u64) * u64::from(VIDEO_TIMESCALE / 1000);
        if self.part.video.is_empty() {
            self.part.video_base = dts;
        }
        self.part.video.push((
            Sample {
                duration: (interval_ms as u32).saturating_mul(VIDEO_TIMESCALE / 1000),
                size: pending.data.len() as u32,
                keyframe: pending.keyframe,
                composition_offset: pending.composition_ms.saturating_mul(90),
            },
            pending.data,
        ));
    }

    fn open_segment_if_needed(&mut self, out_ms: i64) {
        if self.segment_start_ms.is_some() {
            return;
        }
        if !self.init_ready {
            self.build_init();
        }
        self.segment_start_ms = Some(out_ms);
        self.opened_segments += 1;
        self.part = PartBuilder {
            start_ms: out_ms,
            ..PartBuilder::default()
        };
        let mut state = self.hls.state();
        if state.dash_epoch_unix_ms == 0 {
            state.dash_epoch_unix_ms = unix_ms().saturating_sub(out_ms.max(0) as u64);
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        let started_unix_ms = state.dash_epoch_unix_ms + out_ms.max(0) as u64;
        state.open = Some(Segment {
            seq,
            duration: 0.0,
            discontinuity: std::mem::take(&mut self.next_discontinuity),
            parts: Vec::new(),
            data: Bytes::new(),
            dash: [None, None],
            started_unix_ms,
        });
    }

    /// Init segments for the current tracks (fMP4 HLS: both; DASH: one per track).
    fn build_init(&mut self) {
        self.init_ready = true;
        let video = self.video.as_ref().and_then(|v| v.codec.clone());
        let audio = self.audio.as_ref().and_then(|a| {
            a.codec.clone().map(|codec| TrackInfo {
                id: AUDIO_TRACK,
                timescale: a.sample_rate,
                codec,
            })
        });
        let video = video.map(|codec| TrackInfo {
            id: VIDEO_TRACK,
            timescale: VIDEO_TIMESCALE,
            codec,
        });
        let mut state = self.hls.state();
        let tracks: Vec<&TrackInfo> = video.iter().chain(audio.iter()).collect();
        let init = |tracks: &[&TrackInfo]| -> Bytes {
            let owned: Vec<TrackInfo> = tracks.iter().map(|t| (*t).clone()).collect();
            let mut out = Vec::new();
            match fmp4::write_init(&owned, &mut out) {
                Ok(()) => Bytes::from(out),
                Err(e) => {
                    tracing::warn!(error = %e, "hls: cannot write an init segment");
                    Bytes::new()
                }
            }
        };
        if self.settings.fmp4 && !tracks.is_empty() {
            state.init = init(&tracks);
        }
        if self.settings.dash {
            for (track, info) in [(DashTrack::Video, &video), (DashTrack::Audio, &audio)] {
                let index = track.index();
                match info {
                    Some(info) => {
                        state.dash_init[index] = init(&[info]);
                        state.dash_tracks[index] = Some(dash_info(info));
                    }
                    None => {
                        state.dash_init[index] = Bytes::new();
                        state.dash_tracks[index] = None;
                    }
                }
            }
        }
    }

    /// Ends the current part at `end_ms` and files it; returns connections to wake.
    fn close_part(&mut self, end_ms: i64) -> Vec<Waiter> {
        let part = std::mem::replace(
            &mut self.part,
            PartBuilder {
                start_ms: end_ms,
                ..PartBuilder::default()
            },
        );
        if part.is_empty() {
            return Vec::new();
        }
        let duration = (end_ms - part.start_ms).max(1) as f64 / 1000.0;
        let data = if self.ts {
            concat(&part.ts)
        } else if self.settings.fmp4 {
            self.fragment(&[
                (VIDEO_TRACK, part.video_base, &part.video),
                (AUDIO_TRACK, part.audio_base, &part.audio),
            ])
        } else {
            Bytes::new()
        };
        if self.settings.dash {
            for (track, id, base, samples) in [
                (DashTrack::Video, VIDEO_TRACK, part.video_base, &part.video),
                (DashTrack::Audio, AUDIO_TRACK, part.audio_base, &part.audio),
            ] {
                if samples.is_empty() {
                    continue;
                }
                let fragment = self.fragment(&[(id, base, samples)]);
                let dash = &mut self.dash[track.index()];
                dash.start.get_or_insert(base);
                dash.duration += samples
                    .iter()
                    .map(|(s, _)| u64::from(s.duration))
                    .sum::<u64>();
                dash.data.extend_from_slice(&fragment);
            }
        }
        let mut state = self.hls.state();
        let Some(open) = state.open.as_mut() else {
            return Vec::new();
        };
        open.duration += duration;
        open.parts.push(Part {
            data,
            duration,
            independent: part.independent,
        });
        if self.settings.low_latency {
            self.render(&mut state);
            return std::mem::take(&mut state.waiters);
        }
        Vec::new()
    }

    /// One `moof`+`mdat` of the given runs (empty runs left out), as one buffer.
    fn fragment(&mut self, runs: &[(u32, u64, &SampleRun)]) -> Bytes {
        let samples: Vec<Vec<Sample>> = runs
            .iter()
            .map(|(_, _, run)| run.iter().map(|(s, _)| *s).collect())
            .collect();
        let track_runs: Vec<TrackRun<'_>> = runs
            .iter()
            .zip(&samples)
            .filter(|(_, samples)| !samples.is_empty())
            .map(|((id, base, _), samples)| TrackRun {
                track_id: *id,
                base_decode_time: *base,
                samples,
            })
            .collect();
        if track_runs.is_empty() {
            return Bytes::new();
        }
        let mut head = Vec::with_capacity(256);
        let sequence = self.fragment_seq;
        self.fragment_seq = self.fragment_seq.wrapping_add(1);
        let payload = match fmp4::write_fragment(sequence, &track_runs, &mut head) {
            Ok(len) => len as usize,
            Err(e) => {
                tracing::warn!(stream = %self.hls.key, error = %e, "hls: cannot write a fragment");
                return Bytes::new();
            }
        };
        let mut out = BytesMut::with_capacity(head.len() + payload);
        out.extend_from_slice(&head);
        for (_, _, run) in runs {
            for (_, data) in run.iter() {
                out.extend_from_slice(data);
            }
        }
        out.freeze()
    }

    /// Completes the open segment: one buffer for it, its DASH pieces, the window trimmed,
    /// playlists re-rendered.
    fn close_segment(&mut self) -> Vec<Waiter> {
        self.segment_start_ms = None;
        let dash = std::mem::take(&mut self.dash);
        let mut state = self.hls.state();
        let Some(mut segment) = state.open.take() else {
            return Vec::new();
        };
        if segment.parts.is_empty() {
            // Nothing made it in (a cut right after opening): reuse the number.
            state.next_seq = segment.seq;
            self.next_discontinuity |= segment.discontinuity;
            return Vec::new();
        }
        let datas: Vec<Bytes> = segment.parts.iter().map(|p| p.data.clone()).collect();
        segment.data = concat(&datas);
        for (index, builder) in dash.into_iter().enumerate() {
            if let Some(start) = builder.start {
                segment.dash[index] = Some(DashPiece {
                    start,
                    duration: builder.duration,
                    data: Bytes::from(builder.data),
                });
            }
        }
        let rounded = segment.duration.round() as u64;
        state.target_duration = state.target_duration.max(rounded);
        tracing::debug!(
            stream = %self.hls.key,
            seq = segment.seq,
            duration = segment.duration,
            bytes = segment.data.len(),
            "hls segment"
        );
        self.closed.push(Closed {
            seq: segment.seq,
            duration: segment.duration,
        });
        state.segments.push_back(segment);
        self.expired.extend(state.trim());
        self.render(&mut state);
        std::mem::take(&mut state.waiters)
    }

    /// Closes whatever is open, estimating the last video frame's duration.
    fn close_segment_at_end(&mut self) -> Vec<Waiter> {
        let Some(_) = self.segment_start_ms else {
            self.pending_video = None;
            return Vec::new();
        };
        let mut end = self.last_out_ms;
        if let Some(pending) = self.pending_video.take() {
            let interval = self.video_interval_ms;
            end = end.max(pending.out_ms + interval);
            self.add_video_sample(pending, interval);
        }
        let mut woken = self.close_part(end.max(self.part.start_ms + 1));
        woken.extend(self.close_segment());
        woken
    }

    fn render(&self, state: &mut super::HlsState) {
        if self.settings.hls {
            state.playlist = Bytes::from(super::playlist::render(state, &self.hls.naming));
        }
        // No MPD until it can list media: dash.js cannot start from an empty period.
        let dash_media = state
            .segments
            .iter()
            .any(|s| s.dash.iter().any(Option::is_some));
        if self.settings.dash && dash_media {
            state.mpd = Bytes::from(super::mpd::render(state, &self.hls.naming, unix_ms()));
        }
    }
}

fn concat(parts: &[Bytes]) -> Bytes {
    if parts.len() == 1 {
        return parts[0].clone();
    }
    let mut out = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
    for part in parts {
        out.extend_from_slice(part);
    }
    out.freeze()
}

/// The fMP4 codec of a video sequence header, when we can carry it.
/// The fMP4 codec of a video sequence header (`frame`, parsed as `packet`), when we can carry
/// it; the picture size comes from its SPS, as the API reads it.
fn video_codec(packet: &VideoPacket<'_>, frame: &Frame) -> Option<TrackCodec> {
    if packet.kind != VideoPacketKind::SequenceHeader {
        return None;
    }
    let record = packet.data.to_vec();
    let size = || {
        let view = crate::hub::info::video_view(frame)?;
        let clamp = |v: u32| v.min(u32::from(u16::MAX)) as u16;
        Some((clamp(view.width), clamp(view.height)))
    };
    match packet.codec {
        VideoCodec::Avc => {
            let (width, height) = size()?;
            Some(TrackCodec::Avc {
                record,
                width,
                height,
            })
        }
        VideoCodec::Hevc => {
            let (width, height) = size()?;
            Some(TrackCodec::Hevc {
                record,
                width,
                height,
            })
        }
        // The size is in the sequence header OBU, which we do not parse: players read it
        // from the bitstream.
        VideoCodec::Av1 => Some(TrackCodec::Av1 {
            record,
            width: 0,
            height: 0,
        }),
        _ => None,
    }
}

fn dash_info(info: &TrackInfo) -> DashTrackInfo {
    let mut dash = DashTrackInfo {
        codecs: fmp4::codec_string(&info.codec),
        timescale: info.timescale,
        ..DashTrackInfo::default()
    };
    match &info.codec {
        TrackCodec::Avc { width, height, .. }
        | TrackCodec::Hevc { width, height, .. }
        | TrackCodec::Av1 { width, height, .. } => {
            dash.width = u32::from(*width);
            dash.height = u32::from(*height);
        }
        TrackCodec::Aac {
            sample_rate,
            channels,
            ..
        }
        | TrackCodec::Opus {
            sample_rate,
            channels,
            ..
        } => {
            dash.sample_rate = *sample_rate;
            dash.channels = *channels;
        }
    }
    dash
}
