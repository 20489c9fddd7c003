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
    pub playing: Option<Instant>,
    pub first_keyframe: Option<Instant>,
    pub last_video: Option<Instant>,
    /// Counted only inside the measurement window.
    pub window_video_frames: u64,
    pub window_bytes: u64,
    pub stalls: u32,
    pub longest_gap: Duration,
    pub failure: Option<String>,
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

    /// Closes the books at the end of the window: a player silent since before then stalled.
    pub fn finish(&mut self, window: (Instant, Instant)) {
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
    pub expected_fps: f64,
    pub fps: Option<Percentiles>,
    pub bitrate_kbps: Option<Percentiles>,
    pub stalls: u64,
    pub viewers_with_stalls: usize,
    /// Viewers that got ≥ 95 % of real-time frames with no stall.
    pub healthy_viewers: usize,
    pub healthy_ratio: f64,
    pub startup_ms: Option<Percentiles>,
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
}

pub struct ReportInput<'a> {
    pub mode: &'a str,
    pub url: &'a str,
    pub io: &'a str,
    pub viewers: &'a [ViewerStats],
    pub window: (Instant, Instant),
    pub expected_fps: f64,
    pub latency: &'a Histogram,
    pub server: [Option<crate::procstat::Sample>; 3],
    pub own: [Option<crate::procstat::Sample>; 2],
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
    for viewer in input.viewers {
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
        let viewer_fps = viewer.window_video_frames as f64 / window_s;
        fps.push(viewer_fps);
        bitrate.push(viewer.window_bytes as f64 * 8.0 / 1000.0 / window_s);
        if viewer.failure.is_none() && viewer.stalls == 0 && viewer_fps >= 0.95 * input.expected_fps
        {
            healthy += 1;
        }
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
        let own = self.load_cpu_fraction.map_or(String::new(), |f| {
            format!("; load tool {:.0} % of a core", f * 100.0)
        });
        let p = |p: &Option<Percentiles>, f: fn(&Percentiles) -> f64| {
            p.as_ref()
                .map_or("-".to_string(), |p| format!("{:.1}", f(p)))
        };
        format!(
            "{} viewers: {} playing, {} failed, {} healthy ({:.1} %); {:.0} Mbit/s; fps p1 {} p50 {}; \
             stalls {}; startup p50 {} ms p99 {} ms; latency p50 {} ms p99 {} ms{}{}",
            self.viewers,
            self.connected,
            self.failed.values().sum::<usize>(),
            self.healthy_viewers,
            self.healthy_ratio * 100.0,
            self.bytes_per_s * 8.0 / 1e6,
            p(&self.fps, |p| p.p1),
            p(&self.fps, |p| p.p50),
            self.stalls,
            p(&self.startup_ms, |p| p.p50),
            p(&self.startup_ms, |p| p.p99),
            p(&self.latency_ms, |p| p.p50),
            p(&self.latency_ms, |p| p.p99),
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
}
