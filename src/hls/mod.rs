//! HLS (MPEG-TS and fMP4, with Low-Latency parts) and MPEG-DASH, served from memory.
//!
//! A publisher's [`segmenter::Packager`] cuts its stream into parts and segments and files
//! them in the stream's [`HlsStream`]; every worker's HTTP sessions read from there. Playlists
//! and the MPD are rendered once per change, and segments, parts and playlists are shared
//! refcounted buffers, so a request costs a lock, a lookup and a few refcount bumps.
//!
//! Requests find their stream through the [`HlsRegistry`]: each stream registers its fixed
//! paths (playlist, init segments, MPD) and the *shapes* of its numbered ones
//! (`live/cam-[seq].ts`); a request path is looked up as is, then with its last number (or
//! `seq.part` pair) replaced by `[seq]`.
//!
//! A blocking playlist reload (`_HLS_msn`/`_HLS_part`) or a request for the part a preload
//! hint announced parks its connection as a [`Waiter`]; when the packager adds a part it posts
//! `WorkerMsg::HlsReady` to each waiting connection's worker, which asks again.

pub mod disk;
pub mod mpd;
pub mod playlist;
pub mod segmenter;
pub mod sessions;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_ring::ConnId;

use crate::config::VhostConfig;
use crate::hub::StreamKey;

/// A DASH representation: one per track (dash.js does not play multiplexed ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DashTrack {
    Video,
    Audio,
}

impl DashTrack {
    fn index(self) -> usize {
        self as usize
    }

    fn letter(self) -> &'static str {
        match self {
            DashTrack::Video => "v",
            DashTrack::Audio => "a",
        }
    }
}

/// What a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Playlist,
    Init,
    Segment(u64),
    /// LL-HLS partial segment: media sequence number, part index.
    Part(u64, u32),
    Mpd,
    DashInit(DashTrack),
    DashSegment(DashTrack, u64),
}

/// One LL-HLS partial segment (the whole segment when parts are off).
#[derive(Debug, Clone)]
pub struct Part {
    pub data: Bytes,
    /// Seconds.
    pub duration: f64,
    /// Starts with a keyframe.
    pub independent: bool,
}

/// A track's share of a segment, for DASH.
#[derive(Debug, Clone, Default)]
pub struct DashPiece {
    /// Decode time of the first sample, in the track's timescale.
    pub start: u64,
    /// In the track's timescale.
    pub duration: u64,
    pub data: Bytes,
}

#[derive(Debug)]
pub struct Segment {
    pub seq: u64,
    /// Seconds (sum of its parts).
    pub duration: f64,
    /// `EXT-X-DISCONTINUITY` before it (republish, codec change, timestamp jump).
    pub discontinuity: bool,
    pub parts: Vec<Part>,
    /// The whole segment, once it is complete.
    pub data: Bytes,
    /// Per DASH track, once complete.
    pub dash: [Option<DashPiece>; 2],
    /// Wall clock when it started (`EXT-X-PROGRAM-DATE-TIME`), Unix ms.
    pub started_unix_ms: u64,
}

/// How a stream's resources are named and listed (from its vhost when it was created).
#[derive(Debug, Clone)]
pub struct Naming {
    /// Paths relative to the HTTP root, without the leading `/`.
    pub playlist: String,
    /// Segment path with `[seq]` left in.
    pub segment: String,
    pub init: String,
    pub mpd: String,
    /// DASH segment and init paths, `[seq]` left in.
    pub dash_segment: [String; 2],
    pub dash_init: [String; 2],
}

impl Naming {
    pub fn new(key: &StreamKey, vhost: &VhostConfig) -> Naming {
        let fill = |template: &str| {
            template
                .replace("[vhost]", &key.vhost)
                .replace("[app]", &key.app)
                .replace("[stream]", &key.stream)
                .trim_start_matches('/')
                .to_string()
        };
        let hls = &vhost.hls;
        let segment = if hls.hls_fmp4 {
            fill(&hls.hls_fmp4_file)
        } else {
            fill(&hls.hls_ts_file)
        };
        let mpd = fill(&vhost.dash.dash_mpd_file);
        let mpd_stem = mpd.strip_suffix(".mpd").unwrap_or(&mpd).to_string();
        let dash = |track: DashTrack, what: &str| format!("{mpd_stem}-{}-{what}", track.letter());
        Naming {
            playlist: fill(&hls.hls_m3u8_file),
            segment,
            init: fill(&hls.hls_init_file),
            dash_segment: [
                dash(DashTrack::Video, "[seq].m4s"),
                dash(DashTrack::Audio, "[seq].m4s"),
            ],
            dash_init: [
                dash(DashTrack::Video, "init.mp4"),
                dash(DashTrack::Audio, "init.mp4"),
            ],
            mpd,
        }
    }

    pub fn segment_path(&self, seq: u64) -> String {
        self.segment.replace("[seq]", &seq.to_string())
    }

    pub fn part_path(&self, seq: u64, part: u32) -> String {
        self.segment.replace("[seq]", &format!("{seq}.{part}"))
    }

    /// `path` as a URI relative to `from`'s directory (both relative to the root).
    pub fn relative(from: &str, path: &str) -> String {
        let dir = from.rsplit_once('/').map_or("", |(dir, _)| dir);
        if dir.is_empty() {
            return path.to_string();
        }
        match path
            .strip_prefix(dir)
            .and_then(|rest| rest.strip_prefix('/'))
        {
            Some(rest) => rest.to_string(),
            None => format!("/{path}"),
        }
    }
}

/// A connection parked until a part exists.
#[derive(Debug, Clone, Copy)]
pub struct Waiter {
    pub worker: usize,
    pub conn: ConnId,
    pub serial: u64,
}

/// A response body from the store.
#[derive(Debug, Clone)]
pub struct Body {
    pub data: Bytes,
    pub content_type: &'static str,
    /// Segments never change once listed; playlists do.
    pub immutable: bool,
}

/// The answer to a request for a resource.
#[derive(Debug)]
pub enum Lookup {
    Found(Body),
    /// Not there yet: the waiter was registered; ask again when woken (or time out).
    Wait,
    NotFound,
    /// A blocking request that can never be answered (`_HLS_msn` too far ahead).
    BadRequest(String),
}

/// What a blocking playlist request waits for: segment `msn` complete, or its part `part`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub msn: u64,
    pub part: Option<u32>,
}

pub struct HlsStream {
    pub key: StreamKey,
    pub naming: Naming,
    state: Mutex<HlsState>,
}

/// Settings fixed at creation (from the vhost).
#[derive(Debug, Clone)]
pub struct HlsSettings {
    pub hls: bool,
    pub fmp4: bool,
    pub low_latency: bool,
    pub dash: bool,
    /// Seconds.
    pub fragment: f64,
    pub part_target: f64,
    pub window: f64,
    pub cleanup: bool,
    pub dispose: Duration,
    pub dash_update_period: f64,
    pub dash_timeshift: f64,
}

impl HlsSettings {
    pub fn for_vhost(vhost: &VhostConfig) -> HlsSettings {
        let hls = &vhost.hls;
        let low_latency = hls.enabled && hls.hls_ll;
        HlsSettings {
            hls: hls.enabled,
            fmp4: hls.hls_fmp4,
            low_latency,
            dash: vhost.dash.enabled,
            fragment: if hls.enabled {
                hls.hls_fragment
            } else {
                vhost.dash.dash_fragment
            },
            part_target: hls.hls_part,
            window: hls.hls_window,
            cleanup: hls.hls_cleanup,
            dispose: Duration::from_secs_f64(hls.hls_dispose),
            dash_update_period: vhost.dash.dash_update_period,
            dash_timeshift: vhost.dash.dash_timeshift,
        }
    }

    /// Whether a stream on this vhost is packaged at all.
    pub fn any(vhost: &VhostConfig) -> bool {
        vhost.hls.enabled || vhost.dash.enabled
    }
}

/// The DASH side of a stream: what the MPD says about each track.
#[derive(Debug, Clone, Default)]
pub struct DashTrackInfo {
    pub codecs: String,
    pub timescale: u32,
    pub width: u32,
    pub height: u32,
    pub sample_rate: u32,
    pub channels: u16,
}

pub struct HlsState {
    pub settings: HlsSettings,
    /// Complete segments, oldest first; the first `listed_from` are out of the window but
    /// kept (`hls_cleanup = false`).
    pub segments: VecDeque<Segment>,
    /// The segment being built, with the parts it has so far.
    pub open: Option<Segment>,
    pub next_seq: u64,
    /// `EXT-X-DISCONTINUITY-SEQUENCE`: discontinuities that left the window.
    pub discontinuity_seq: u64,
    /// Never decreases (the spec forbids changing it).
    pub target_duration: u64,
    pub init: Bytes,
    pub dash_init: [Bytes; 2],
    pub dash_tracks: [Option<DashTrackInfo>; 2],
    pub playlist: Bytes,
    pub mpd: Bytes,
    /// Wall clock of DASH media time 0, Unix ms.
    pub dash_epoch_unix_ms: u64,
    pub publishing: bool,
    pub ended_at: Option<Instant>,
    /// Where the output (fMP4/DASH) timeline ended when the last publisher left (ms).
    pub timeline_end_ms: i64,
    pub(super) waiters: Vec<Waiter>,
}

const M3U8: &str = "application/vnd.apple.mpegurl";

impl HlsStream {
    fn new(key: StreamKey, naming: Naming, settings: HlsSettings) -> HlsStream {
        let target = settings.fragment.ceil().max(1.0) as u64;
        HlsStream {
            key,
            naming,
            state: Mutex::new(HlsState {
                settings,
                segments: VecDeque::new(),
                open: None,
                next_seq: 0,
                discontinuity_seq: 0,
                target_duration: target,
                init: Bytes::new(),
                dash_init: [Bytes::new(), Bytes::new()],
                dash_tracks: [None, None],
                playlist: Bytes::new(),
                mpd: Bytes::new(),
                dash_epoch_unix_ms: 0,
                publishing: false,
                ended_at: None,
                timeline_end_ms: 0,
                waiters: Vec::new(),
            }),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, HlsState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Answers a request for `resource`; `block` for a blocking playlist reload. When the
    /// answer is [`Lookup::Wait`], `waiter` is woken once something new exists.
    pub fn lookup(&self, resource: Resource, block: Option<Block>, waiter: Waiter) -> Lookup {
        let mut state = self.state();
        let found = |data: &Bytes, content_type, immutable| {
            if data.is_empty() {
                Lookup::NotFound
            } else {
                Lookup::Found(Body {
                    data: data.clone(),
                    content_type,
                    immutable,
                })
            }
        };
        match resource {
            Resource::Playlist => {
                if !state.settings.hls {
                    return Lookup::NotFound;
                }
                if let Some(block) = block {
                    if !state.settings.low_latency {
                        // Blocking reload is an LL-HLS feature; others get the playlist now.
                    } else if let Some(wait) = state.blocks(block) {
                        return match wait {
                            Ok(()) => {
                                state.waiters.push(waiter);
                                Lookup::Wait
                            }
                            Err(why) => Lookup::BadRequest(why),
                        };
                    }
                }
                found(&state.playlist, M3U8, false)
            }
            Resource::Init => found(&state.init, "video/mp4", false),
            Resource::Segment(seq) => match state.segment(seq) {
                Some(segment) if !segment.data.is_empty() => {
                    let content_type = if state.settings.fmp4 {
                        "video/iso.segment"
                    } else {
                        "video/MP2T"
                    };
                    found(&segment.data, content_type, true)
                }
                _ => Lookup::NotFound,
            },
            // Parts are an LL-HLS resource: no playlist names them otherwise.
            Resource::Part(..) if !state.settings.low_latency => Lookup::NotFound,
            Resource::Part(seq, index) => {
                let content_type = if state.settings.fmp4 {
                    "video/iso.segment"
                } else {
                    "video/MP2T"
                };
                if let Some(part) = state
                    .segment(seq)
                    .and_then(|segment| segment.parts.get(index as usize))
                {
                    return found(&part.data, content_type, true);
                }
                // The part a preload hint announced: the spec asks us to hold the request.
                if state.settings.low_latency && state.publishing && state.is_next_part(seq, index)
                {
                    state.waiters.push(waiter);
                    return Lookup::Wait;
                }
                Lookup::NotFound
            }
            Resource::Mpd => found(&state.mpd, "application/dash+xml", false),
            Resource::DashInit(track) => found(&state.dash_init[track.index()], "video/mp4", false),
            Resource::DashSegment(track, seq) => match state.segment(seq) {
                Some(segment) => match &segment.dash[track.index()] {
                    Some(piece) => found(&piece.data, "video/iso.segment", true),
                    None => Lookup::NotFound,
                },
                None => Lookup::NotFound,
            },
        }
    }
}

impl HlsState {
    /// Forgets segments past what the playlist and the MPD list, keeping two more for clients
    /// that fetched the playlist just before (with `hls_cleanup` off, keeps everything until
    /// the stream is disposed).
    pub fn trim(&mut self) -> Vec<u64> {
        let mut removed = Vec::new();
        if !self.settings.cleanup {
            return removed;
        }
        let keep = self.settings.window.max(if self.settings.dash {
            self.settings.dash_timeshift
        } else {
            0.0
        }) + 2.0 * self.settings.fragment;
        let mut kept = 0.0;
        let mut count = 0;
        for segment in self.segments.iter().rev() {
            if kept >= keep && count > 0 {
                break;
            }
            kept += segment.duration;
            count += 1;
        }
        while self.segments.len() > count {
            if let Some(old) = self.segments.pop_front() {
                self.discontinuity_seq += u64::from(old.discontinuity);
                removed.push(old.seq);
            }
        }
        removed
    }

    /// A complete or open segment by sequence number.
    pub fn segment(&self, seq: u64) -> Option<&Segment> {
        if let Some(open) = &self.open
            && open.seq == seq
        {
            return Some(open);
        }
        let first = self.segments.front()?.seq;
        let index = seq.checked_sub(first)?;
        self.segments.get(usize::try_from(index).ok()?)
    }

    /// The part the next preload hint names.
    fn next_part(&self) -> (u64, u32) {
        match &self.open {
            Some(open) => (open.seq, open.parts.len() as u32),
            None => (self.next_seq, 0),
        }
    }

    fn is_next_part(&self, seq: u64, index: u32) -> bool {
        let (next_seq, next_index) = self.next_part();
        (seq, index) == (next_seq, next_index) || (seq == next_seq + 1 && index == 0)
    }

    /// For a blocking reload: `None` if the playlist already has what is asked, `Some(Ok)`
    /// to wait, `Some(Err)` if it is too far ahead (the spec's 400).
    fn blocks(&self, block: Block) -> Option<Result<(), String>> {
        let (next_seq, next_part) = self.next_part();
        let satisfied = match block.part {
            // Segment msn complete.
            None => block.msn < next_seq,
            Some(part) => (block.msn, part) < (next_seq, next_part),
        };
        if satisfied {
            return None;
        }
        if block.msn > next_seq + 2 {
            return Some(Err(format!(
                "_HLS_msn={} is more than two segments past the live edge ({next_seq})",
                block.msn
            )));
        }
        if !self.publishing {
            // Nothing more will come: answer with what there is.
            return None;
        }
        Some(Ok(()))
    }
}

/// Every packaged stream, and the paths that name its resources.
#[derive(Default)]
pub struct HlsRegistry {
    streams: Mutex<HashMap<StreamKey, Arc<HlsStream>>>,
    /// `vhost/path` (with `[seq]` for numbered resources) → stream and what the path names.
    paths: Mutex<HashMap<String, (Arc<HlsStream>, PathKind)>>,
    /// HLS viewers (`hls_ctx`).
    pub sessions: sessions::HlsSessions,
}

/// What a registered path names, before its numbers are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathKind {
    Playlist,
    Init,
    Segment,
    Mpd,
    DashInit(DashTrack),
    DashSegment(DashTrack),
}

impl HlsRegistry {
    fn streams(&self) -> MutexGuard<'_, HashMap<StreamKey, Arc<HlsStream>>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn paths(&self) -> MutexGuard<'_, HashMap<String, (Arc<HlsStream>, PathKind)>> {
        self.paths.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stream's packaging state for a (re)publish: the existing one (sequence numbers go
    /// on, with a discontinuity) or a new one, registered under its paths.
    pub fn open(&self, key: &StreamKey, vhost: &VhostConfig) -> Arc<HlsStream> {
        let mut streams = self.streams();
        if let Some(stream) = streams.get(key) {
            let mut state = stream.state();
            state.publishing = true;
            state.ended_at = None;
            return stream.clone();
        }
        let settings = HlsSettings::for_vhost(vhost);
        let naming = Naming::new(key, vhost);
        let stream = Arc::new(HlsStream::new(key.clone(), naming, settings.clone()));
        stream.state().publishing = true;
        let naming = &stream.naming;
        let mut paths = self.paths();
        let mut add = |path: &str, kind: PathKind| {
            paths.insert(format!("{}/{path}", key.vhost), (stream.clone(), kind));
        };
        if settings.hls {
            add(&naming.playlist, PathKind::Playlist);
            add(&naming.segment, PathKind::Segment);
            if settings.fmp4 {
                add(&naming.init, PathKind::Init);
            }
        }
        if settings.dash {
            add(&naming.mpd, PathKind::Mpd);
            for track in [DashTrack::Video, DashTrack::Audio] {
                add(
                    &naming.dash_segment[track.index()],
                    PathKind::DashSegment(track),
                );
                add(&naming.dash_init[track.index()], PathKind::DashInit(track));
            }
        }
        streams.insert(key.clone(), stream.clone());
        stream
    }

    /// Finds what `path` (relative to the root, no leading `/`) names on `vhost`.
    pub fn resolve(&self, vhost: &str, path: &str) -> Option<(Arc<HlsStream>, Resource)> {
        let paths = self.paths();
        if let Some((stream, kind)) = paths.get(&format!("{vhost}/{path}")) {
            let resource = match kind {
                PathKind::Playlist => Resource::Playlist,
                PathKind::Init => Resource::Init,
                PathKind::Mpd => Resource::Mpd,
                PathKind::DashInit(track) => Resource::DashInit(*track),
                // A numbered shape matched literally: no number.
                PathKind::Segment | PathKind::DashSegment(_) => return None,
            };
            return Some((stream.clone(), resource));
        }
        for (shape, seq, part) in numbered_shapes(path) {
            if let Some((stream, kind)) = paths.get(&format!("{vhost}/{shape}")) {
                let resource = match (kind, part) {
                    (PathKind::Segment, None) => Resource::Segment(seq),
                    (PathKind::Segment, Some(part)) => Resource::Part(seq, part),
                    (PathKind::DashSegment(track), None) => Resource::DashSegment(*track, seq),
                    _ => continue,
                };
                return Some((stream.clone(), resource));
            }
        }
        None
    }

    /// Streams whose publisher left more than `hls_dispose` ago: forgotten, with their paths.
    pub fn dispose_expired(&self, now: Instant) {
        let mut streams = self.streams();
        let expired: Vec<StreamKey> = streams
            .iter()
            .filter(|(_, stream)| {
                let state = stream.state();
                let dispose = state.settings.dispose;
                !dispose.is_zero() && state.ended_at.is_some_and(|at| now >= at + dispose)
            })
            .map(|(key, _)| key.clone())
            .collect();
        if expired.is_empty() {
            return;
        }
        let mut paths = self.paths();
        for key in expired {
            if let Some(stream) = streams.remove(&key) {
                tracing::info!(stream = %key, "hls/dash disposed");
                paths.retain(|_, (s, _)| !Arc::ptr_eq(s, &stream));
            }
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.streams().len()
    }
}

/// The ways `path` may be a numbered resource: one of its numbers replaced by `[seq]` (a
/// segment), or a `seq.part` pair (a part), last numbers first (extensions like `m4s` hold
/// digits too). Yields `(shape, seq, part)`.
fn numbered_shapes(path: &str) -> Vec<(String, u64, Option<u32>)> {
    let bytes = path.as_bytes();
    let mut shapes = Vec::new();
    let mut end = bytes.len();
    while let Some(last) = bytes[..end].iter().rposition(u8::is_ascii_digit) {
        let run_end = last + 1;
        let run_start = digit_run_start(bytes, run_end);
        end = run_start;
        let Ok(number) = path[run_start..run_end].parse::<u64>() else {
            continue;
        };
        shapes.push((
            format!("{}[seq]{}", &path[..run_start], &path[run_end..]),
            number,
            None,
        ));
        if run_start >= 2 && bytes[run_start - 1] == b'.' && bytes[run_start - 2].is_ascii_digit() {
            let seq_start = digit_run_start(bytes, run_start - 1);
            if let (Ok(seq), Ok(part)) = (
                path[seq_start..run_start - 1].parse::<u64>(),
                u32::try_from(number),
            ) {
                shapes.push((
                    format!("{}[seq]{}", &path[..seq_start], &path[run_end..]),
                    seq,
                    Some(part),
                ));
            }
        }
    }
    shapes
}

fn digit_run_start(bytes: &[u8], end: usize) -> usize {
    let mut start = end;
    while start > 0 && bytes[start - 1].is_ascii_digit() {
        start -= 1;
    }
    start
}

/// Posts `HlsReady` to the workers of parked connections.
pub fn wake_waiters(waiters: Vec<Waiter>, shared: &crate::worker::Shared) {
    let mut by_worker: Vec<Vec<(ConnId, u64)>> = vec![Vec::new(); shared.links.len()];
    for waiter in waiters {
        if let Some(list) = by_worker.get_mut(waiter.worker) {
            list.push((waiter.conn, waiter.serial));
        }
    }
    for (worker, conns) in by_worker.into_iter().enumerate() {
        if !conns.is_empty() {
            shared.links[worker].post(crate::worker::WorkerMsg::HlsReady(conns));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_paths_become_shapes() {
        assert_eq!(
            numbered_shapes("live/cam1-42.ts"),
            vec![
                ("live/cam1-[seq].ts".to_string(), 42, None),
                ("live/cam[seq]-42.ts".to_string(), 1, None),
            ]
        );
        let shapes = numbered_shapes("live/cam-42.3.m4s");
        assert!(shapes.contains(&("live/cam-42.[seq].m4s".to_string(), 3, None)));
        assert!(shapes.contains(&("live/cam-[seq].m4s".to_string(), 42, Some(3))));
        assert!(shapes.contains(&("live/cam-42.3.m[seq]s".to_string(), 4, None)));
        assert_eq!(numbered_shapes("live/cam.m3u8").len(), 2);
        // Absurd numbers are not numbers.
        assert!(numbered_shapes("live/c-99999999999999999999999.ts").is_empty());
    }

    #[test]
    fn relative_uris() {
        assert_eq!(Naming::relative("live/s.m3u8", "live/s-1.ts"), "s-1.ts");
        assert_eq!(Naming::relative("live/s.m3u8", "ts/s-1.ts"), "/ts/s-1.ts");
        assert_eq!(Naming::relative("s.m3u8", "s-1.ts"), "s-1.ts");
    }

    #[test]
    fn registry_resolves_every_resource() {
        let mut vhost = VhostConfig::default();
        vhost.hls.hls_fmp4 = true;
        vhost.dash.enabled = true;
        let registry = HlsRegistry::default();
        let key = StreamKey {
            vhost: "__defaultVhost__".into(),
            app: "live".into(),
            stream: "cam".into(),
        };
        registry.open(&key, &vhost);
        let resolve = |path: &str| registry.resolve("__defaultVhost__", path).map(|(_, r)| r);
        assert_eq!(resolve("live/cam.m3u8"), Some(Resource::Playlist));
        assert_eq!(resolve("live/cam-init.mp4"), Some(Resource::Init));
        assert_eq!(resolve("live/cam-7.m4s"), Some(Resource::Segment(7)));
        assert_eq!(resolve("live/cam-7.2.m4s"), Some(Resource::Part(7, 2)));
        assert_eq!(resolve("live/cam.mpd"), Some(Resource::Mpd));
        assert_eq!(
            resolve("live/cam-v-3.m4s"),
            Some(Resource::DashSegment(DashTrack::Video, 3))
        );
        assert_eq!(
            resolve("live/cam-a-init.mp4"),
            Some(Resource::DashInit(DashTrack::Audio))
        );
        assert_eq!(resolve("live/cam-[seq].m4s"), None);
        assert_eq!(resolve("live/other.m3u8"), None);
        assert_eq!(registry.len(), 1);
    }
}
