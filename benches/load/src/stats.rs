//! Measurements: per-viewer counters and a log-linear histogram for latencies and start-up
//! times, summed into the JSON report.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Microsecond histogram with ~6 % resolution: 16 sub-buckets per power of two. Fixed size,
/// no allocation per sample.
pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
}

const SUB_BUCKETS: u64 = 16;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: vec![0; 64 * SUB_BUCKETS as usize],
            count: 0,
        }
    }
}

impl Histogram {
    fn index(value: u64) -> usize {
        if value < SUB_BUCKETS {
            return value as usize;
        }
        let magnitude = 63 - value.leading_zeros() as u64; // ≥ 4
        let sub = (value >> (magnitude - 4)) & (SUB_BUCKETS - 1);
        ((magnitude - 3) * SUB_BUCKETS + sub) as usize
    }

    /// The smallest value that lands in bucket `index`.
    fn lower_bound(index: usize) -> u64 {
        let index = index as u64;
        if index < SUB_BUCKETS {
            return index;
        }
        let magnitude = index / SUB_BUCKETS + 3;
        let sub = index % SUB_BUCKETS;
        (1 << magnitude) | (sub << (magnitude - 4))
    }

    pub fn record(&mut self, micros: u64) {
        self.buckets[Self::index(micros)] += 1;
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The value at quantile `q` (0..=1), in microseconds; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((self.count as f64 * q).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (index, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(Self::lower_bound(index));
            }
        }
        None
    }
}

/// One player's life.
#[derive(Debug, Default)]
pub struct ViewerStats {
    pub started: Option<Instant>,
    /// Playing (HLS: the first playlist arrived).
    pub playing: Option<Instant>,
    /// The first keyframe arrived (HLS: the first media segment was complete).
    pub first_keyframe: Option<Instant>,
    pub last_video: Option<Instant>,
    /// Counted only inside the measurement window.
    pub window_video_frames: u64,
    pub window_bytes: u64,
    pub stalls: u32,
    pub longest_gap: Duration,
    pub failure: Option<String>,
    /// HLS viewers only.
    pub hls: Option<HlsStats>,
    /// SRT viewers only.
    pub srt: Option<SrtStats>,
    /// WebRTC (WHEP) viewers only.
    pub whep: Option<WhepStats>,
}

/// A WebRTC (WHEP) viewer's counters over the whole run.
#[derive(Debug, Default, Clone)]
pub struct WhepStats {
    /// `POST` of the offer → the answer received.
    pub signalling: Option<Duration>,
    /// `POST` of the offer → ICE and DTLS done (str0m's `Event::Connected`).
    pub connect: Option<Duration>,
    pub counters: WhepCounters,
}

/// The counts a WHEP viewer keeps that the report sums over viewers (the field names are the
/// report's JSON keys).
#[derive(Debug, Default, Clone, Serialize)]
pub struct WhepCounters {
    /// UDP datagrams and their bytes (SRTP, SRTCP, STUN, DTLS).
    pub datagrams: u64,
    pub wire_bytes: u64,
    /// Datagrams that were RTP (by RFC 7983 demultiplexing, before decryption).
    pub rtp_packets: u64,
    /// RTP packets the viewer's Rtc counted per media (its last ingress stats).
    pub video_rtp_packets: u64,
    pub audio_rtp_packets: u64,
    /// Depacketized video access units and audio frames, and their bytes.
    pub video_frames: u64,
    pub video_bytes: u64,
    pub keyframes: u64,
    /// Video frames carrying the synthetic frame number: 0 means the stream had none (a file
    /// source, or a server that rewrote the video), and then there is no latency.
    pub marker_frames: u64,
    pub audio_frames: u64,
    pub audio_bytes: u64,
    /// Video frames that did not follow the last one (RTP packets missing in between).
    pub discontinuities: u64,
    /// PLIs sent: while waiting for the first keyframe and after a discontinuity, at most one
    /// per 500 ms.
    pub keyframe_requests: u64,
    /// NACKs the Rtc sent for video (its last ingress stats).
    pub video_nacks_sent: u64,
}

impl WhepCounters {
    /// Adds `other`'s counts to these. The destructuring names every field, so a new counter
    /// does not compile until it is summed here too.
    pub fn add(&mut self, other: &WhepCounters) {
        let WhepCounters {
            datagrams,
            wire_bytes,
            rtp_packets,
            video_rtp_packets,
            audio_rtp_packets,
            video_frames,
            video_bytes,
            keyframes,
            marker_frames,
            audio_frames,
            audio_bytes,
            discontinuities,
            keyframe_requests,
            video_nacks_sent,
        } = *other;
        self.datagrams += datagrams;
        self.wire_bytes += wire_bytes;
        self.rtp_packets += rtp_packets;
        self.video_rtp_packets += video_rtp_packets;
        self.audio_rtp_packets += audio_rtp_packets;
        self.video_frames += video_frames;
        self.video_bytes += video_bytes;
        self.keyframes += keyframes;
        self.marker_frames += marker_frames;
        self.audio_frames += audio_frames;
        self.audio_bytes += audio_bytes;
        self.discontinuities += discontinuities;
        self.keyframe_requests += keyframe_requests;
        self.video_nacks_sent += video_nacks_sent;
    }
}

/// What WHEP viewers did, summed over viewers (whole run, ramp and warm-up included).
#[derive(Debug, Default, Serialize)]
pub struct WhepReport {
    /// `POST` → answer, and `POST` → ICE+DTLS connected.
    pub signalling_ms: Option<Percentiles>,
    pub connect_ms: Option<Percentiles>,
    /// Viewers whose ICE+DTLS completed.
    pub connected: usize,
    /// Viewers that got any audio frame.
    pub viewers_with_audio: usize,
    /// `DELETE`s sent at the end, and answered within a moment.
    pub deletes_sent: usize,
    pub deletes_answered: usize,
    /// Flattened: the counters are keys of `whep` itself in the JSON report.
    #[serde(flatten)]
    pub counters: WhepCounters,
}

/// An SRT viewer's counters over the whole run.
#[derive(Debug, Default, Clone)]
pub struct SrtStats {
    /// Connect → the caller handshake concluded.
    pub handshake: Option<Duration>,
    /// The TSBPD latency the connection settled on (the larger of ours and the server's):
    /// every payload is released this long after the server sent it.
    pub tsbpd_latency: Option<Duration>,
    pub counters: SrtCounters,
}

/// The counts an SRT viewer keeps that the report sums over viewers: one struct for both, so
/// a counter added for a viewer is reported too (the field names are the report's JSON keys).
#[derive(Debug, Default, Clone, Serialize)]
pub struct SrtCounters {
    pub datagrams: u64,
    pub wire_bytes: u64,
    /// Datagrams that were not SRT packets.
    pub bad_datagrams: u64,
    /// MPEG-TS bytes released to the player.
    pub ts_bytes: u64,
    /// Video frames seen, and how many carried the synthetic frame number: 0 means the stream
    /// had none (a file source, or a server that rewrote the video), and then there is no
    /// latency.
    pub frames: u64,
    pub marker_frames: u64,
    /// The connection's own counters: packets found missing, retransmissions received,
    /// packets given up on (too late), NAKs sent.
    pub lost_packets: u64,
    pub retransmitted_packets: u64,
    pub dropped_packets: u64,
    pub naks_sent: u64,
    /// MPEG-TS continuity jumps on the video PID, and bytes skipped to resync.
    pub ts_cc_errors: u64,
    pub ts_sync_errors: u64,
}

impl SrtCounters {
    /// Adds `other`'s counts to these. The destructuring names every field, so a new counter
    /// does not compile until it is summed here too.
    pub fn add(&mut self, other: &SrtCounters) {
        let SrtCounters {
            datagrams,
            wire_bytes,
            bad_datagrams,
            ts_bytes,
            frames,
            marker_frames,
            lost_packets,
            retransmitted_packets,
            dropped_packets,
            naks_sent,
            ts_cc_errors,
            ts_sync_errors,
        } = *other;
        self.datagrams += datagrams;
        self.wire_bytes += wire_bytes;
        self.bad_datagrams += bad_datagrams;
        self.ts_bytes += ts_bytes;
        self.frames += frames;
        self.marker_frames += marker_frames;
        self.lost_packets += lost_packets;
        self.retransmitted_packets += retransmitted_packets;
        self.dropped_packets += dropped_packets;
        self.naks_sent += naks_sent;
        self.ts_cc_errors += ts_cc_errors;
        self.ts_sync_errors += ts_sync_errors;
    }
}

/// An HLS viewer's counters, and the player it stands for: one that starts playing when its
/// first segment is in and plays in real time from then on, pausing whenever its buffer (media
/// seconds downloaded minus media seconds played) runs dry.
#[derive(Debug, Default)]
pub struct HlsStats {
    /// Over the whole run.
    pub requests: u64,
    pub playlists: u64,
    pub segments: u64,
    /// Bytes received, response heads included.
    pub bytes: u64,
    /// Failed requests by reason ("status 404", "connection: ...", "timeout", ...).
    pub failures: BTreeMap<String, u64>,
    /// Connections opened after the first.
    pub reconnects: u64,
    /// Requests retried because the server closed the idle connection as they went out.
    pub keep_alive_retries: u64,
    /// Segments that left the playlist before this viewer got to them.
    pub skipped: u64,
    /// From the last playlist.
    pub target_duration: f64,
    /// Segments completed inside the measurement window, and their `#EXTINF` seconds.
    pub window_segments: u64,
    pub window_media_s: f64,
    /// Media seconds downloaded in all.
    media_s: f64,
    /// The playback clock's zero: the first segment's arrival, moved later by every pause.
    play_origin: Option<Instant>,
    /// (arrival, `media_s` after it) of the last segment at or before the window's start (or
    /// the first in it), and of the last one in the window: the realtime ratio's span.
    rate_from: Option<(Instant, f64)>,
    rate_to: Option<(Instant, f64)>,
    /// Set by [`ViewerStats::finish`].
    pub realtime_ratio: f64,
}

/// The part of a pause that counts: a pause (the buffer empty from `dry_at` to `until`) is a
/// stall once it passes [`STALL`], counted if that stretch meets the window.
fn stall_in_window(
    dry_at: Instant,
    until: Instant,
    window: (Instant, Instant),
) -> Option<Duration> {
    let length = until.checked_duration_since(dry_at)?;
    (length > STALL && dry_at + STALL <= window.1 && until >= window.0).then_some(length)
}

impl ViewerStats {
    /// A video frame arrived at `now`; `window` is the measurement window.
    pub fn video(&mut self, now: Instant, keyframe: bool, window: (Instant, Instant)) {
        if self.first_keyframe.is_none() {
            if !keyframe {
                return;
            }
            self.first_keyframe = Some(now);
        }
        if let Some(last) = self.last_video {
            self.gap(now - last, last >= window.0 && now <= window.1);
        }
        self.last_video = Some(now);
        if now >= window.0 && now <= window.1 {
            self.window_video_frames += 1;
        }
    }

    fn gap(&mut self, gap: Duration, in_window: bool) {
        if in_window {
            self.longest_gap = self.longest_gap.max(gap);
            if gap > STALL {
                self.stalls += 1;
            }
        }
    }

    pub fn hls_mut(&mut self) -> &mut HlsStats {
        self.hls.get_or_insert_with(HlsStats::default)
    }

    /// An HLS request failed: counted by reason; the first failure is the viewer's.
    pub fn hls_failure(&mut self, why: String) {
        *self.hls_mut().failures.entry(why.clone()).or_insert(0) += 1;
        self.failure.get_or_insert(why);
    }

    /// An HLS media segment of `duration` seconds was completely received at `now`.
    pub fn segment(&mut self, now: Instant, duration: f64, window: (Instant, Instant)) {
        self.first_keyframe.get_or_insert(now);
        self.last_video = Some(now);
        let h = self.hls.get_or_insert_with(HlsStats::default);
        h.segments += 1;
        match h.play_origin {
            None => h.play_origin = Some(now),
            Some(origin) => {
                let dry_at = origin + Duration::from_secs_f64(h.media_s);
                if now > dry_at {
                    // The player paused from dry_at until now, and resumes now.
                    h.play_origin = Some(origin + (now - dry_at));
                    if let Some(length) = stall_in_window(dry_at, now, window) {
                        self.stalls += 1;
                        self.longest_gap = self.longest_gap.max(length);
                    }
                }
            }
        }
        h.media_s += duration;
        if now <= window.0 {
            h.rate_from = Some((now, h.media_s));
        } else if now <= window.1 {
            h.rate_from.get_or_insert((now, h.media_s));
            h.rate_to = Some((now, h.media_s));
            h.window_segments += 1;
            h.window_media_s += duration;
        }
    }

    /// Closes the books at the end of the window: a player silent since before then stalled.
    pub fn finish(&mut self, window: (Instant, Instant)) {
        if let Some(h) = &mut self.hls {
            h.realtime_ratio = match (h.rate_from, h.rate_to) {
                (Some((from, media_from)), Some((to, media_to))) if to > from => {
                    // A viewer that stopped receiving well before the window ended is charged
                    // for the silence (beyond a segment and a reload interval).
                    let grace = Duration::from_secs_f64(1.5 * h.target_duration.max(0.1));
                    let end = window.1.checked_sub(grace).map_or(to, |t| t.max(to));
                    (media_to - media_from) / (end - from).as_secs_f64()
                }
                _ => 0.0,
            };
            if self.failure.is_none() {
                let dry_at = h
                    .play_origin
                    .map_or(window.0, |o| o + Duration::from_secs_f64(h.media_s));
                if let Some(length) = stall_in_window(dry_at, window.1, window) {
                    self.stalls += 1;
                    self.longest_gap = self.longest_gap.max(length);
                }
            }
            return;
        }
        let since = self.last_video.unwrap_or(window.0).max(window.0);
        if self.failure.is_none() && window.1 > since {
            self.gap(window.1 - since, true);
        }
    }
}

/// More than this without video is a stall.
pub const STALL: Duration = Duration::from_secs(1);

#[derive(Debug, Serialize)]
pub struct Percentiles {
    pub p1: f64,
    pub p50: f64,
    pub p99: f64,
}

impl Percentiles {
    fn of(mut values: Vec<f64>) -> Option<Percentiles> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(|a, b| a.total_cmp(b));
        let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
        Some(Percentiles {
            p1: at(0.01),
            p50: at(0.5),
            p99: at(0.99),
        })
    }

    fn of_histogram(h: &Histogram, scale: f64) -> Option<Percentiles> {
        Some(Percentiles {
            p1: h.quantile(0.01)? as f64 * scale,
            p50: h.quantile(0.5)? as f64 * scale,
            p99: h.quantile(0.99)? as f64 * scale,
        })
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: String,
    pub url: String,
    pub io: String,
    pub viewers: usize,
    pub connected: usize,
    pub failed: BTreeMap<String, usize>,
    pub window_s: f64,
    /// Bytes per second received by all viewers in the window.
    pub bytes_per_s: f64,
    /// RTMP and HTTP-FLV players: the frame rate a healthy player sees 95 % of.
    pub expected_fps: Option<f64>,
    pub fps: Option<Percentiles>,
    pub bitrate_kbps: Option<Percentiles>,
    pub stalls: u64,
    pub viewers_with_stalls: usize,
    /// Viewers that got ≥ 95 % of real-time frames (HLS: a realtime ratio ≥ 0.95) with no
    /// stall and no failure.
    pub healthy_viewers: usize,
    pub healthy_ratio: f64,
    /// Connect → first keyframe (HLS: first media segment fully received).
    pub startup_ms: Option<Percentiles>,
    /// Publish → receive of synthetic frames (HLS: a segment's download end − its
    /// `#EXT-X-PROGRAM-DATE-TIME` − its duration).
    pub latency_ms: Option<Percentiles>,
    pub latency_samples: u64,
    /// Server CPU seconds spent in the window (with `--server-pid`).
    pub server_cpu_s: Option<f64>,
    /// ... per gigabit delivered to the players in the window.
    pub server_cpu_s_per_gbit: Option<f64>,
    /// Server resident memory before the players connected and at the window's end (KiB).
    pub server_rss_before_kib: Option<u64>,
    pub server_rss_kib: Option<u64>,
    /// (RSS at the end − RSS before) / viewers.
    pub server_rss_per_viewer_kib: Option<f64>,
    /// This load generator's own CPU use in the window, as a fraction of one core.
    pub load_cpu_fraction: Option<f64>,
    /// `hls-play` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hls: Option<HlsReport>,
    /// `srt-play` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub srt: Option<SrtReport>,
    /// `whep-play` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whep: Option<WhepReport>,
    /// The in-process WHIP publisher (`--publish-whip`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whip_publisher: Option<crate::whip::WhipCounters>,
    /// Whether this tool's UDP sends used segmentation offload (`--gso`, else the driver's
    /// default; the driver may refuse it). UDP modes, or when `--gso` was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub udp_gso: Option<bool>,
}

/// What SRT viewers did, summed over viewers (whole run, ramp and warm-up included).
#[derive(Debug, Default, Serialize)]
pub struct SrtReport {
    /// Connect → handshake concluded.
    pub handshake_ms: Option<Percentiles>,
    /// The TSBPD latency connections settled on (largest seen): `latency_ms` and
    /// `startup_ms` include it, since a player gets each payload only at its release time.
    pub tsbpd_latency_ms: Option<f64>,
    /// Flattened: the counters are keys of `srt` itself in the JSON report.
    #[serde(flatten)]
    pub counters: SrtCounters,
}

/// What HLS viewers did, summed over viewers.
#[derive(Debug, Default, Serialize)]
pub struct HlsReport {
    /// Over the whole run (ramp and warm-up included).
    pub requests: u64,
    pub playlists: u64,
    pub segments: u64,
    pub bytes: u64,
    /// Failed requests by reason: "status N", "connection: ...", "timeout", ...
    pub failures: BTreeMap<String, u64>,
    pub reconnects: u64,
    /// Requests retried at once because the server closed the idle keep-alive connection as
    /// they went out (not failures).
    pub keep_alive_retries: u64,
    pub skipped_segments: u64,
    /// The largest `#EXT-X-TARGETDURATION` viewers saw.
    pub target_duration_s: f64,
    /// Segments completed in the window, and their media seconds.
    pub window_segments: u64,
    pub window_media_s: f64,
    /// Per viewer: media seconds received ÷ wall seconds, between the last segment before the
    /// window and the last one in it.
    pub realtime_ratio: Option<Percentiles>,
    pub viewers_below_realtime: usize,
}

pub struct ReportInput<'a> {
    pub mode: &'a str,
    pub url: &'a str,
    pub io: &'a str,
    pub viewers: &'a [ViewerStats],
    pub window: (Instant, Instant),
    /// `None` for HLS viewers (they are judged by their realtime ratio).
    pub expected_fps: Option<f64>,
    pub latency: &'a Histogram,
    pub server: [Option<crate::procstat::Sample>; 3],
    pub own: [Option<crate::procstat::Sample>; 2],
    pub udp_gso: Option<bool>,
    /// `whep-play`: (`DELETE`s sent, answered).
    pub whep_deletes: (usize, usize),
    /// `--publish-whip`: what the WHIP publisher did.
    pub whip: Option<crate::whip::WhipCounters>,
}

pub fn report(input: ReportInput<'_>) -> Report {
    let window_s = (input.window.1 - input.window.0).as_secs_f64().max(1e-3);
    let mut failed = BTreeMap::new();
    let mut fps = Vec::new();
    let mut bitrate = Vec::new();
    let mut startup = Histogram::default();
    let mut bytes = 0u64;
    let mut stalls = 0u64;
    let mut with_stalls = 0;
    let mut healthy = 0;
    let mut connected = 0;
    let mut hls: Option<HlsReport> = None;
    let mut realtime = Vec::new();
    let mut srt: Option<SrtReport> = None;
    let mut handshakes = Histogram::default();
    let mut whep: Option<WhepReport> = None;
    let mut signalling = Histogram::default();
    let mut connects = Histogram::default();
    for viewer in input.viewers {
        if let Some(w) = &viewer.whep {
            let sum = whep.get_or_insert_with(WhepReport::default);
            if let Some(d) = w.signalling {
                signalling.record(d.as_micros() as u64);
            }
            if let Some(d) = w.connect {
                connects.record(d.as_micros() as u64);
                sum.connected += 1;
            }
            if w.counters.audio_frames > 0 {
                sum.viewers_with_audio += 1;
            }
            sum.counters.add(&w.counters);
        }
        if let Some(v) = &viewer.srt {
            let sum = srt.get_or_insert_with(SrtReport::default);
            if let Some(h) = v.handshake {
                handshakes.record(h.as_micros() as u64);
            }
            if let Some(latency) = v.tsbpd_latency {
                let ms = latency.as_secs_f64() * 1e3;
                sum.tsbpd_latency_ms = Some(sum.tsbpd_latency_ms.map_or(ms, |m| m.max(ms)));
            }
            sum.counters.add(&v.counters);
        }
        if let Some(why) = &viewer.failure {
            *failed.entry(why.clone()).or_insert(0) += 1;
        }
        if viewer.playing.is_some() {
            connected += 1;
        }
        if let (Some(start), Some(key)) = (viewer.started, viewer.first_keyframe) {
            startup.record((key - start).as_micros() as u64);
        }
        bytes += viewer.window_bytes;
        stalls += viewer.stalls as u64;
        if viewer.stalls > 0 {
            with_stalls += 1;
        }
        bitrate.push(viewer.window_bytes as f64 * 8.0 / 1000.0 / window_s);
        let fast_enough = match (&viewer.hls, input.expected_fps) {
            (Some(h), _) => {
                let sum = hls.get_or_insert_with(HlsReport::default);
                sum.requests += h.requests;
                sum.playlists += h.playlists;
                sum.segments += h.segments;
                sum.bytes += h.bytes;
                for (why, n) in &h.failures {
                    *sum.failures.entry(why.clone()).or_insert(0) += n;
                }
                sum.reconnects += h.reconnects;
                sum.keep_alive_retries += h.keep_alive_retries;
                sum.skipped_segments += h.skipped;
                sum.target_duration_s = sum.target_duration_s.max(h.target_duration);
                sum.window_segments += h.window_segments;
                sum.window_media_s += h.window_media_s;
                realtime.push(h.realtime_ratio);
                if h.realtime_ratio < 0.95 {
                    sum.viewers_below_realtime += 1;
                }
                h.realtime_ratio >= 0.95
            }
            (None, expected) => {
                let viewer_fps = viewer.window_video_frames as f64 / window_s;
                fps.push(viewer_fps);
                viewer_fps >= 0.95 * expected.unwrap_or(0.0)
            }
        };
        if viewer.failure.is_none() && viewer.stalls == 0 && fast_enough {
            healthy += 1;
        }
    }
    if let Some(sum) = &mut hls {
        sum.realtime_ratio = Percentiles::of(realtime);
    }
    if let Some(sum) = &mut srt {
        sum.handshake_ms = Percentiles::of_histogram(&handshakes, 1e-3);
    }
    if let Some(sum) = &mut whep {
        sum.signalling_ms = Percentiles::of_histogram(&signalling, 1e-3);
        sum.connect_ms = Percentiles::of_histogram(&connects, 1e-3);
        (sum.deletes_sent, sum.deletes_answered) = input.whep_deletes;
    }
    let total = input.viewers.len();
    let gigabits = bytes as f64 * 8.0 / 1e9;
    let server_cpu_s = match (input.server[1], input.server[2]) {
        (Some(start), Some(end)) => Some(end.cpu.saturating_sub(start.cpu).as_secs_f64()),
        _ => None,
    };
    let rss_before = input.server[0].map(|s| s.rss_kib);
    let rss_end = input.server[2].map(|s| s.rss_kib);
    Report {
        mode: input.mode.to_string(),
        url: input.url.to_string(),
        io: input.io.to_string(),
        viewers: total,
        connected,
        failed,
        window_s,
        bytes_per_s: bytes as f64 / window_s,
        expected_fps: input.expected_fps,
        fps: Percentiles::of(fps),
        bitrate_kbps: Percentiles::of(bitrate),
        stalls,
        viewers_with_stalls: with_stalls,
        healthy_viewers: healthy,
        healthy_ratio: if total == 0 {
            0.0
        } else {
            healthy as f64 / total as f64
        },
        startup_ms: Percentiles::of_histogram(&startup, 1e-3),
        latency_ms: Percentiles::of_histogram(input.latency, 1e-3),
        latency_samples: input.latency.count(),
        server_cpu_s,
        server_cpu_s_per_gbit: server_cpu_s
            .filter(|_| gigabits > 0.0)
            .map(|cpu| cpu / gigabits),
        server_rss_before_kib: rss_before,
        server_rss_kib: rss_end,
        server_rss_per_viewer_kib: match (rss_before, rss_end) {
            (Some(before), Some(end)) if total > 0 => {
                Some(end.saturating_sub(before) as f64 / total as f64)
            }
            _ => None,
        },
        load_cpu_fraction: match (input.own[0], input.own[1]) {
            (Some(start), Some(end)) => {
                Some(end.cpu.saturating_sub(start.cpu).as_secs_f64() / window_s)
            }
            _ => None,
        },
        hls,
        srt,
        whep,
        whip_publisher: input.whip,
        udp_gso: input.udp_gso,
    }
}

impl Report {
    /// The one-line human summary.
    pub fn summary(&self) -> String {
        let server = match (self.server_cpu_s, self.server_cpu_s_per_gbit) {
            (Some(cpu), Some(per_gbit)) => format!(
                "; server {:.0} % of a core, {:.3} core-s/Gbit, {:.1} KiB RSS/viewer",
                cpu / self.window_s * 100.0,
                per_gbit,
                self.server_rss_per_viewer_kib.unwrap_or(0.0)
            ),
            _ => String::new(),
        };
        let srt = self.srt.as_ref().map_or(String::new(), |report| {
            let s = &report.counters;
            format!(
                "; srt: TSBPD {} ms (in the latency), {} lost, {} retransmitted, {} dropped, \
                 {} TS continuity errors{}",
                report
                    .tsbpd_latency_ms
                    .map_or("-".into(), |l| format!("{l:.0}")),
                s.lost_packets,
                s.retransmitted_packets,
                s.dropped_packets,
                s.ts_cc_errors,
                if s.frames > 0 && s.marker_frames == 0 {
                    ", no frame numbers (no latency)"
                } else {
                    ""
                }
            )
        });
        let whep = self.whep.as_ref().map_or(String::new(), |report| {
            let s = &report.counters;
            format!(
                "; whep: {} connected (p50 {} ms), {} with audio, {} discontinuities, {} PLIs, \
                 {} NACKs{}",
                report.connected,
                report
                    .connect_ms
                    .as_ref()
                    .map_or("-".into(), |p| format!("{:.0}", p.p50)),
                report.viewers_with_audio,
                s.discontinuities,
                s.keyframe_requests,
                s.video_nacks_sent,
                if s.video_frames > 0 && s.marker_frames == 0 {
                    ", no frame numbers (no latency)"
                } else {
                    ""
                }
            )
        });
        let whip = self.whip_publisher.as_ref().map_or(String::new(), |w| {
            format!(
                "; whip publisher: {} video frames ({} keyframes, {} forced by {} keyframe \
                 requests), {} audio, {} write errors, DELETE {}",
                w.video_frames,
                w.keyframes,
                w.forced_keyframes,
                w.keyframe_requests,
                w.audio_frames,
                w.write_errors,
                match (w.delete_sent, w.delete_status) {
                    (false, _) => "not sent".to_string(),
                    (true, None) => "unanswered".to_string(),
                    (true, Some(status)) => status.to_string(),
                }
            )
        });
        let own = self.load_cpu_fraction.map_or(String::new(), |f| {
            format!("; load tool {:.0} % of a core", f * 100.0)
        });
        let p = |p: &Option<Percentiles>, f: fn(&Percentiles) -> f64| {
            p.as_ref()
                .map_or("-".to_string(), |p| format!("{:.1}", f(p)))
        };
        let p2 = |p: &Option<Percentiles>, f: fn(&Percentiles) -> f64| {
            p.as_ref()
                .map_or("-".to_string(), |p| format!("{:.2}", f(p)))
        };
        let pace = match &self.hls {
            Some(hls) => format!(
                "realtime ratio p1 {} p50 {}; {} segments, {} failed requests",
                p2(&hls.realtime_ratio, |p| p.p1),
                p2(&hls.realtime_ratio, |p| p.p50),
                hls.window_segments,
                hls.failures.values().sum::<u64>(),
            ),
            None => format!(
                "fps p1 {} p50 {}",
                p(&self.fps, |p| p.p1),
                p(&self.fps, |p| p.p50)
            ),
        };
        format!(
            "{} viewers: {} playing, {} failed, {} healthy ({:.1} %); {:.0} Mbit/s; {}; \
             stalls {}; startup p50 {} ms p99 {} ms; latency p50 {} ms p99 {} ms{}{}{}{}{}",
            self.viewers,
            self.connected,
            self.failed.values().sum::<usize>(),
            self.healthy_viewers,
            self.healthy_ratio * 100.0,
            self.bytes_per_s * 8.0 / 1e6,
            pace,
            self.stalls,
            p(&self.startup_ms, |p| p.p50),
            p(&self.startup_ms, |p| p.p99),
            p(&self.latency_ms, |p| p.p50),
            p(&self.latency_ms, |p| p.p99),
            srt,
            whep,
            whip,
            server,
            own,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_within_resolution() {
        let mut h = Histogram::default();
        for v in 1..=100_000u64 {
            h.record(v);
        }
        for (q, want) in [(0.5, 50_000.0), (0.99, 99_000.0), (0.01, 1_000.0)] {
            let got = h.quantile(q).unwrap() as f64;
            assert!((got - want).abs() / want < 0.07, "q{q}: {got} vs {want}");
        }
        assert_eq!(Histogram::default().quantile(0.5), None);
    }

    #[test]
    fn bucket_bounds_are_monotonic() {
        let mut last = 0;
        for v in [0u64, 1, 15, 16, 17, 31, 32, 1000, 1 << 40] {
            let i = Histogram::index(v);
            assert!(Histogram::lower_bound(i) <= v);
            assert!(i >= last);
            last = i;
        }
    }

    #[test]
    fn stalls_are_gaps_over_a_second_in_the_window() {
        let t0 = Instant::now();
        let window = (t0, t0 + Duration::from_secs(10));
        let mut v = ViewerStats::default();
        v.video(t0 + Duration::from_millis(100), false, window);
        assert!(v.first_keyframe.is_none(), "waits for a keyframe");
        v.video(t0 + Duration::from_millis(200), true, window);
        v.video(t0 + Duration::from_millis(2500), false, window);
        v.finish(window);
        assert_eq!(v.stalls, 2, "the 2.3 s gap and the silent end");
        assert_eq!(v.window_video_frames, 2);
    }

    fn hls_viewer() -> ViewerStats {
        ViewerStats {
            hls: Some(HlsStats {
                target_duration: 2.0,
                ..HlsStats::default()
            }),
            ..ViewerStats::default()
        }
    }

    #[test]
    fn hls_realtime_ratio_and_buffer() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let window = (t0 + s(10), t0 + s(20));
        // Live edge: three segments at once, then one every 2 s, 0.3 s after the window's
        // edges: exactly real time, whatever the phase.
        let mut v = hls_viewer();
        for _ in 0..3 {
            v.segment(t0 + s(1), 2.0, window);
        }
        for k in 1..12 {
            v.segment(t0 + s(1 + 2 * k) + Duration::from_millis(300), 2.0, window);
        }
        v.finish(window);
        let h = v.hls.as_ref().unwrap();
        assert_eq!(v.stalls, 0);
        assert!(
            (h.realtime_ratio - 1.0).abs() < 1e-9,
            "{}",
            h.realtime_ratio
        );
        assert_eq!(h.window_segments, 5);
        assert_eq!(v.first_keyframe, Some(t0 + s(1)));

        // Segments at 80 % of real time: the 6 s buffer would run dry after 20 s, but the
        // ratio shows it.
        let mut v = hls_viewer();
        for _ in 0..3 {
            v.segment(t0 + s(1), 2.0, window);
        }
        for k in 1..8 {
            v.segment(t0 + s(1) + Duration::from_millis(2500 * k), 2.0, window);
        }
        v.finish(window);
        let ratio = v.hls.as_ref().unwrap().realtime_ratio;
        assert!((ratio - 0.8).abs() < 0.01, "{ratio}");
        assert_eq!(v.stalls, 0);

        // A viewer whose segments stop at 11 s: its buffer runs dry at 17 s, a stall by 18 s;
        // the silence costs it its ratio too.
        let mut v = hls_viewer();
        for _ in 0..3 {
            v.segment(t0 + s(1), 2.0, window);
        }
        for k in 1..6 {
            v.segment(t0 + s(1 + 2 * k), 2.0, window);
        }
        v.finish(window);
        assert_eq!(v.stalls, 1);
        assert_eq!(v.longest_gap, s(3));
        let ratio = v.hls.as_ref().unwrap().realtime_ratio;
        // 2 media seconds from 9 s to 17 s (20 s less the grace of 1.5 target durations).
        assert!((ratio - 0.25).abs() < 1e-9, "{ratio}");

        // A 3 s hole with a 2 s buffer: one stall, and playback resumes from there.
        let mut v = hls_viewer();
        v.segment(t0 + s(9), 2.0, window); // plays from 9 s, dry at 11 s
        v.segment(t0 + s(14), 2.0, window); // a 3 s stall; dry again at 16 s
        v.segment(t0 + s(16), 2.0, window);
        v.segment(t0 + s(18), 2.0, window);
        v.finish(window);
        assert_eq!(v.stalls, 1);
        assert_eq!(v.longest_gap, s(3));
        // Never a segment: stalled for the whole window.
        let mut v = hls_viewer();
        v.finish(window);
        assert_eq!(v.stalls, 1);
        assert_eq!(v.hls.as_ref().unwrap().realtime_ratio, 0.0);
    }

    /// The report's `srt` object keeps its keys, in order, with the counters flattened into it.
    #[test]
    fn srt_report_json_keys() {
        let json = serde_json::to_value(SrtReport::default()).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        let mut sorted = vec![
            "handshake_ms",
            "tsbpd_latency_ms",
            "datagrams",
            "wire_bytes",
            "bad_datagrams",
            "ts_bytes",
            "frames",
            "marker_frames",
            "lost_packets",
            "retransmitted_packets",
            "dropped_packets",
            "naks_sent",
            "ts_cc_errors",
            "ts_sync_errors",
        ];
        sorted.sort_unstable();
        assert_eq!(keys, sorted);
        let text = serde_json::to_string(&SrtReport::default()).unwrap();
        assert!(
            text.starts_with(r#"{"handshake_ms":null,"tsbpd_latency_ms":null,"datagrams":0,"#),
            "{text}"
        );
        assert!(
            text.ends_with(r#""ts_cc_errors":0,"ts_sync_errors":0}"#),
            "{text}"
        );
    }
}
