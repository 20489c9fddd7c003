//! An HLS viewer as players behave, with nothing decoded: fetch the media playlist, start at
//! the live edge (the third segment from the end), fetch the init segment once and every new
//! segment in order, reload the playlist every target duration — or, once every known segment
//! is fetched, half a target duration after the last reload. One request at a time on one
//! keep-alive connection.
//!
//! The playlist parser reads only what that needs (`#EXT-X-TARGETDURATION`,
//! `#EXT-X-MEDIA-SEQUENCE`, `#EXTINF` + URI, `#EXT-X-MAP`, `#EXT-X-PROGRAM-DATE-TIME`,
//! `#EXT-X-ENDLIST`); LL-HLS tags are ignored. Segment URIs stay byte ranges of the playlist
//! text, which is the only thing a viewer stores: segment bodies are counted, not kept.

use std::ops::Range;
use std::time::{Duration, Instant};

use sluice_ring::ConnId;

use crate::http::{HttpError, Response, ResponseReader};
use crate::stats::{Histogram, ViewerStats};

/// Largest playlist accepted.
const MAX_PLAYLIST: usize = 1 << 20;
/// A request unanswered this long fails (and its connection is dropped).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Wait after a failed request or connection before the next try.
const RETRY_DELAY: Duration = Duration::from_millis(250);
/// Wait after a connection could not even be opened.
const CONNECT_RETRY_DELAY: Duration = Duration::from_secs(1);
/// How often the start-up probe reloads the playlist.
const PROBE_INTERVAL: Duration = Duration::from_millis(250);
/// Segments from the end where playback starts (the spec's minimum hold-back, as players do).
pub const LIVE_EDGE_SEGMENTS: usize = 3;

/// A segment the playlist lists.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub seq: u64,
    /// `#EXTINF` seconds.
    pub duration: f64,
    /// `#EXT-X-PROGRAM-DATE-TIME` (given, or carried from an earlier segment), Unix ms.
    pub pdt_ms: Option<i64>,
    /// The URI: a byte range of the playlist text.
    pub uri: Range<usize>,
}

/// The rest of what a media playlist says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlaylistInfo {
    pub target_duration: f64,
    pub media_sequence: u64,
    /// `#EXT-X-MAP` URI, a byte range of the playlist text.
    pub map: Option<Range<usize>>,
    pub endlist: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlaylistError {
    #[error("not an M3U8 playlist")]
    NotM3u8,
    #[error("a multivariant (master) playlist: give a media playlist URL")]
    Multivariant,
    #[error("no #EXT-X-TARGETDURATION")]
    NoTargetDuration,
    #[error("bad {0}")]
    Bad(&'static str),
    #[error("a segment URI without #EXTINF")]
    NoExtinf,
}

/// Parses a media playlist; the segments go to `entries` (cleared first).
pub fn parse_playlist(
    text: &[u8],
    entries: &mut Vec<Entry>,
) -> Result<PlaylistInfo, PlaylistError> {
    entries.clear();
    let mut info = PlaylistInfo::default();
    let mut target = None;
    let mut first = true;
    let mut extinf = None;
    let mut pdt = None;
    let mut next_pdt = None;
    let mut offset = 0;
    for raw in text.split(|&b| b == b'\n') {
        let start = offset;
        offset += raw.len() + 1;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if first {
            if !line.starts_with(b"#EXTM3U") {
                return Err(PlaylistError::NotM3u8);
            }
            first = false;
            continue;
        }
        let trimmed = line.trim_ascii();
        if trimmed.is_empty() {
            continue;
        }
        if let Some(tag) = line.strip_prefix(b"#") {
            if let Some(v) = tag.strip_prefix(b"EXTINF:") {
                let end = v.iter().position(|&b| b == b',').unwrap_or(v.len());
                extinf = Some(number(&v[..end]).ok_or(PlaylistError::Bad("#EXTINF"))?);
            } else if let Some(v) = tag.strip_prefix(b"EXT-X-TARGETDURATION:") {
                target = Some(number(v).ok_or(PlaylistError::Bad("#EXT-X-TARGETDURATION"))?);
            } else if let Some(v) = tag.strip_prefix(b"EXT-X-MEDIA-SEQUENCE:") {
                info.media_sequence = std::str::from_utf8(v.trim_ascii())
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or(PlaylistError::Bad("#EXT-X-MEDIA-SEQUENCE"))?;
            } else if let Some(v) = tag.strip_prefix(b"EXT-X-PROGRAM-DATE-TIME:") {
                pdt = parse_date_time(v.trim_ascii());
            } else if let Some(v) = tag.strip_prefix(b"EXT-X-MAP:") {
                if info.map.is_none() {
                    let at = start + 1 + b"EXT-X-MAP:".len();
                    info.map = Some(
                        quoted_attribute(v, b"URI")
                            .map(|r| r.start + at..r.end + at)
                            .ok_or(PlaylistError::Bad("#EXT-X-MAP"))?,
                    );
                }
            } else if tag.starts_with(b"EXT-X-DISCONTINUITY") && !tag.contains(&b':') {
                next_pdt = None;
            } else if tag.starts_with(b"EXT-X-ENDLIST") {
                info.endlist = true;
            } else if tag.starts_with(b"EXT-X-STREAM-INF") {
                return Err(PlaylistError::Multivariant);
            }
            continue;
        }
        let duration = extinf.take().ok_or(PlaylistError::NoExtinf)?;
        let lead = line.len() - line.trim_ascii_start().len();
        let seg_pdt = pdt.take().or(next_pdt);
        next_pdt = seg_pdt.map(|p| p + (duration * 1000.0).round() as i64);
        entries.push(Entry {
            seq: info.media_sequence + entries.len() as u64,
            duration,
            pdt_ms: seg_pdt,
            uri: start + lead..start + lead + trimmed.len(),
        });
    }
    if first {
        return Err(PlaylistError::NotM3u8);
    }
    info.target_duration = target.ok_or(PlaylistError::NoTargetDuration)?;
    Ok(info)
}

fn number(v: &[u8]) -> Option<f64> {
    let n: f64 = std::str::from_utf8(v.trim_ascii()).ok()?.parse().ok()?;
    (n.is_finite() && n >= 0.0).then_some(n)
}

/// The range of `NAME="value"`'s value within an attribute list.
fn quoted_attribute(list: &[u8], name: &[u8]) -> Option<Range<usize>> {
    let mut at = 0;
    while at < list.len() {
        let rest = &list[at..];
        let eq = rest.iter().position(|&b| b == b'=')?;
        let key = rest[..eq].trim_ascii();
        let value_start = at + eq + 1;
        if list.get(value_start) == Some(&b'"') {
            let close = list[value_start + 1..].iter().position(|&b| b == b'"')?;
            let value = value_start + 1..value_start + 1 + close;
            if key == name {
                return Some(value);
            }
            at = value.end + 1;
        } else if key == name {
            return None;
        } else {
            at = value_start;
        }
        // Past the comma that ends this attribute.
        match list[at..].iter().position(|&b| b == b',') {
            Some(comma) => at += comma + 1,
            None => break,
        }
    }
    None
}

/// `YYYY-MM-DDThh:mm:ss[.fff](Z|±hh:mm|±hhmm)` as Unix milliseconds.
pub fn parse_date_time(text: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(text).ok()?;
    let digits = |r: Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if s.len() < 19 || &s[4..5] != "-" || &s[7..8] != "-" || !matches!(&s[10..11], "T" | "t") {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    let mut rest = &s[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let len = fraction
            .bytes()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(fraction.len());
        let kept = &fraction[..len.min(3)];
        millis = kept.parse::<i64>().ok()? * 10i64.pow(3 - kept.len() as u32);
        rest = &fraction[len..];
    }
    let offset_min = match rest.as_bytes().first() {
        None | Some(b'Z' | b'z') => 0,
        Some(&sign @ (b'+' | b'-')) => {
            let hm = rest[1..].replace(':', "");
            if hm.len() != 4 || !hm.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let minutes = hm[..2].parse::<i64>().ok()? * 60 + hm[2..].parse::<i64>().ok()?;
            if sign == b'+' { minutes } else { -minutes }
        }
        _ => return None,
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_min * 60;
    Some(secs * 1000 + millis)
}

/// Where a request goes, relative to the playlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    /// A path relative to the playlist's directory.
    Dir,
    /// An absolute path (the URI's, or an absolute URL's path: the same server is assumed).
    Root,
}

/// Splits a segment URI into its base and the text that follows it in the request line.
pub fn request_target(uri: &[u8]) -> (Base, &[u8]) {
    let after_scheme = uri
        .strip_prefix(b"http://")
        .or_else(|| uri.strip_prefix(b"https://"));
    match after_scheme {
        Some(rest) => match rest.iter().position(|&b| b == b'/') {
            Some(slash) => (Base::Root, &rest[slash..]),
            None => (Base::Root, b"/"),
        },
        None if uri.starts_with(b"/") => (Base::Root, uri),
        None => (Base::Dir, uri),
    }
}

/// What a viewer asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fetch {
    Playlist,
    Init,
    Segment {
        seq: u64,
        duration: f64,
        pdt_ms: Option<i64>,
    },
}

/// What a lost connection took with it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Dropped {
    /// Nothing: no request was out.
    Idle,
    /// A request sent on a reused keep-alive connection that closed before any byte of the
    /// response: the usual race with the server's idle timeout, retried at once.
    Race,
    /// A request failed.
    Request(Fetch),
}

/// What a viewer wants next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Request the playlist.
    Playlist,
    /// Request this URI (a range of [`Viewer::text`]).
    Uri(Range<usize>),
    /// Nothing before then.
    WaitUntil(Instant),
    /// The stream ended and everything is fetched.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Init {
    NotNeeded,
    Wanted,
    Fetched,
}

/// What the measurements of a completed response go to.
pub struct Measure<'a> {
    pub stats: &'a mut ViewerStats,
    pub window: (Instant, Instant),
    pub latency: &'a mut Histogram,
    /// Wall clock now, Unix microseconds.
    pub unix_now_us: i64,
}

/// One HLS viewer (or the start-up probe, which only reloads the playlist).
pub struct Viewer {
    pub conn: Option<ConnId>,
    pub reader: ResponseReader,
    /// Connections opened so far.
    pub connections: u32,
    /// Responses completed on the current connection.
    served_on_conn: u32,
    /// When the timer should next look at this viewer.
    pub wake_at: Option<Instant>,
    inflight: Option<Fetch>,
    deadline: Instant,
    probe: bool,
    /// The playlist being received.
    body: Vec<u8>,
    body_too_large: bool,
    /// The last playlist parsed; [`Entry::uri`] ranges point into it.
    text: Vec<u8>,
    entries: Vec<Entry>,
    info: PlaylistInfo,
    have_playlist: bool,
    next_seq: Option<u64>,
    init: Init,
    /// When the last playlist request went out.
    last_reload: Option<Instant>,
    not_before: Instant,
}

impl Viewer {
    pub fn new(now: Instant, probe: bool) -> Viewer {
        Viewer {
            conn: None,
            reader: ResponseReader::default(),
            connections: 0,
            served_on_conn: 0,
            wake_at: None,
            inflight: None,
            deadline: now,
            probe,
            body: Vec::new(),
            body_too_large: false,
            text: Vec::new(),
            entries: Vec::new(),
            info: PlaylistInfo::default(),
            have_playlist: false,
            next_seq: None,
            init: Init::NotNeeded,
            last_reload: None,
            not_before: now,
        }
    }

    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// The request deadline, while one is out.
    pub fn deadline(&self) -> Option<Instant> {
        self.inflight.map(|_| self.deadline)
    }

    /// Target duration in seconds (1 until a playlist said otherwise).
    fn target(&self) -> f64 {
        if self.info.target_duration > 0.0 {
            self.info.target_duration
        } else {
            1.0
        }
    }

    /// The probe's verdict: the playlist lists enough segments for viewers to start at the
    /// live edge (three, or fewer in a window that has begun sliding or in an ended stream).
    pub fn stream_ready(&self) -> bool {
        self.have_playlist
            && (self.entries.len() >= LIVE_EDGE_SEGMENTS
                || (!self.entries.is_empty()
                    && (self.info.media_sequence > 0 || self.info.endlist)))
    }

    /// Decides the next request (and marks it in flight) or when to look again. Call only when
    /// nothing is in flight.
    pub fn next(&mut self, now: Instant) -> Next {
        debug_assert!(self.inflight.is_none());
        if now < self.not_before {
            return Next::WaitUntil(self.not_before);
        }
        let half = Duration::from_secs_f64(self.target() / 2.0);
        let full = Duration::from_secs_f64(self.target());
        if self.probe {
            let due = self.last_reload.map_or(now, |t| t + PROBE_INTERVAL);
            return self.playlist_at(due, now);
        }
        let reload_due = if !self.have_playlist {
            now
        } else if self.info.endlist {
            now + Duration::from_secs(86_400)
        } else {
            self.last_reload.map_or(now, |t| t + full)
        };
        if now >= reload_due {
            return self.playlist_at(reload_due, now);
        }
        if self.init == Init::Wanted
            && let Some(map) = self.info.map.clone()
        {
            self.start(Fetch::Init, now);
            return Next::Uri(map);
        }
        let wanted = self.next_seq.and_then(|seq| {
            let index = seq.checked_sub(self.info.media_sequence)?;
            self.entries.get(usize::try_from(index).ok()?)
        });
        if let Some(entry) = wanted {
            let fetch = Fetch::Segment {
                seq: entry.seq,
                duration: entry.duration,
                pdt_ms: entry.pdt_ms,
            };
            let uri = entry.uri.clone();
            self.start(fetch, now);
            return Next::Uri(uri);
        }
        if self.info.endlist {
            return Next::Done;
        }
        // Out of known segments: reload early, but not more than every half target duration.
        let early = self.last_reload.map_or(now, |t| t + half);
        self.playlist_at(early.min(reload_due), now)
    }

    fn playlist_at(&mut self, due: Instant, now: Instant) -> Next {
        if now < due {
            return Next::WaitUntil(due);
        }
        self.last_reload = Some(now);
        self.start(Fetch::Playlist, now);
        Next::Playlist
    }

    fn start(&mut self, fetch: Fetch, now: Instant) {
        self.inflight = Some(fetch);
        self.deadline = now + REQUEST_TIMEOUT;
        self.body.clear();
        self.body_too_large = false;
        self.reader.expect();
    }

    /// The request could not be sent: returns when to try again.
    pub fn abort(&mut self, now: Instant) -> Instant {
        self.inflight = None;
        self.not_before = now + CONNECT_RETRY_DELAY;
        self.not_before
    }

    /// The connection is gone (whoever closed it); the next request goes out on a new one.
    pub fn disconnected(&mut self, now: Instant) -> Dropped {
        let race = self.served_on_conn > 0 && !self.reader.begun();
        self.conn = None;
        self.served_on_conn = 0;
        self.reader.reset();
        match self.inflight.take() {
            None => Dropped::Idle,
            // The server closed the idle connection as the request went out: retry at once,
            // as browsers do.
            Some(_) if race => Dropped::Race,
            Some(fetch) => {
                self.not_before = now + RETRY_DELAY;
                Dropped::Request(fetch)
            }
        }
    }

    /// Feeds received bytes; a playlist's body is kept, everything else only counted.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<Response>, HttpError> {
        let keep = matches!(self.inflight, Some(Fetch::Playlist));
        let (body, too_large) = (&mut self.body, &mut self.body_too_large);
        self.reader.feed(data, |status, bytes| {
            if keep && status == 200 {
                if body.len() + bytes.len() <= MAX_PLAYLIST {
                    body.extend_from_slice(bytes);
                } else {
                    *too_large = true;
                }
            }
        })
    }

    /// A response is complete: update the plan and the measurements.
    pub fn complete(&mut self, now: Instant, response: Response, m: Measure<'_>) {
        let Some(fetch) = self.inflight.take() else {
            return;
        };
        self.served_on_conn += 1;
        let target = self.target();
        if response.status != 200 {
            m.stats.hls_failure(format!("status {}", response.status));
            match fetch {
                // Gone from the window, perhaps: go on with the next one.
                Fetch::Segment { seq, .. } => self.next_seq = Some(seq + 1),
                Fetch::Playlist | Fetch::Init => {
                    self.not_before = now + Duration::from_secs_f64(target / 2.0)
                }
            }
            return;
        }
        match fetch {
            Fetch::Playlist => {
                m.stats.hls_mut().playlists += 1;
                if self.body_too_large {
                    m.stats.hls_failure("playlist too large".into());
                    self.not_before = now + Duration::from_secs_f64(target / 2.0);
                    return;
                }
                std::mem::swap(&mut self.text, &mut self.body);
                match parse_playlist(&self.text, &mut self.entries) {
                    Ok(info) => self.info = info,
                    Err(e) => {
                        self.entries.clear();
                        self.info.map = None;
                        m.stats.hls_failure(format!("playlist: {e}"));
                        self.not_before = now + Duration::from_secs_f64(target / 2.0);
                        return;
                    }
                }
                self.have_playlist = true;
                m.stats.hls_mut().target_duration = self.info.target_duration;
                if self.probe {
                    return;
                }
                m.stats.playing.get_or_insert(now);
                if self.init == Init::NotNeeded && self.info.map.is_some() {
                    self.init = Init::Wanted;
                }
                if self.next_seq.is_none() && !self.entries.is_empty() {
                    let start = self.entries.len().saturating_sub(LIVE_EDGE_SEGMENTS);
                    self.next_seq = Some(self.entries[start].seq);
                }
                if let Some(seq) = self.next_seq
                    && seq < self.info.media_sequence
                {
                    // Fell out of the window: go on from its start.
                    m.stats.hls_mut().skipped += self.info.media_sequence - seq;
                    self.next_seq = Some(self.info.media_sequence);
                }
            }
            Fetch::Init => self.init = Init::Fetched,
            Fetch::Segment {
                seq,
                duration,
                pdt_ms,
            } => {
                self.next_seq = Some(seq + 1);
                m.stats.segment(now, duration, m.window);
                if let Some(pdt) = pdt_ms
                    && now >= m.window.0
                    && now <= m.window.1
                {
                    let end_us = (pdt as f64 + duration * 1000.0) * 1000.0;
                    m.latency
                        .record((m.unix_now_us as f64 - end_us).max(0.0) as u64);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Response;

    const LIVE: &str = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:2\n\
        #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.500\n\
        #EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-MAP:URI=\"s-init.mp4\"\n\
        #EXT-X-PROGRAM-DATE-TIME:2026-11-25T17:53:54.409Z\n\
        #EXT-X-PART:DURATION=0.500,URI=\"s-7.0.m4s\",INDEPENDENT=YES\n#EXTINF:2.000,\ns-7.m4s\n\
        #EXTINF:2.000,\r\ns-8.m4s\r\n\
        #EXT-X-DISCONTINUITY\n#EXTINF:1.5,title\n/abs/s-9.m4s\n\
        #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"s-10.0.m4s\"\n";

    fn parse(text: &str) -> (PlaylistInfo, Vec<Entry>) {
        let mut entries = vec![];
        let info = parse_playlist(text.as_bytes(), &mut entries).unwrap();
        (info, entries)
    }

    #[test]
    fn parses_a_live_playlist() {
        let (info, entries) = parse(LIVE);
        assert_eq!(info.target_duration, 2.0);
        assert_eq!(info.media_sequence, 7);
        assert!(!info.endlist);
        assert_eq!(&LIVE[info.map.unwrap()], "s-init.mp4");
        let uris: Vec<&str> = entries.iter().map(|e| &LIVE[e.uri.clone()]).collect();
        assert_eq!(uris, ["s-7.m4s", "s-8.m4s", "/abs/s-9.m4s"]);
        let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [7, 8, 9]);
        assert_eq!(entries[2].duration, 1.5);
        let pdt = parse_date_time(b"2026-11-25T17:53:54.409Z").unwrap();
        assert_eq!(entries[0].pdt_ms, Some(pdt));
        assert_eq!(entries[1].pdt_ms, Some(pdt + 2000), "carried forward");
        assert_eq!(entries[2].pdt_ms, None, "not across a discontinuity");
    }

    #[test]
    fn playlist_errors() {
        let mut e = vec![];
        assert_eq!(parse_playlist(b"", &mut e), Err(PlaylistError::NotM3u8));
        assert_eq!(
            parse_playlist(b"hello\n", &mut e),
            Err(PlaylistError::NotM3u8)
        );
        assert_eq!(
            parse_playlist(b"#EXTM3U\n#EXTINF:1,\na.ts\n", &mut e),
            Err(PlaylistError::NoTargetDuration)
        );
        assert_eq!(
            parse_playlist(b"#EXTM3U\n#EXT-X-TARGETDURATION:1\na.ts\n", &mut e),
            Err(PlaylistError::NoExtinf)
        );
        assert_eq!(
            parse_playlist(b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n", &mut e),
            Err(PlaylistError::Multivariant)
        );
        let (info, entries) =
            parse("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:9.97,\na.ts\n#EXT-X-ENDLIST\n");
        assert!(info.endlist);
        assert_eq!((info.media_sequence, entries.len()), (0, 1));
    }

    #[test]
    fn attributes_and_dates() {
        let list = b"BYTERANGE=\"1@2\",URI=\"in,it.mp4\",X=1";
        assert_eq!(&list[quoted_attribute(list, b"URI").unwrap()], b"in,it.mp4");
        assert_eq!(quoted_attribute(b"X=1,URI=\"a\"", b"URI"), Some(9..10));
        assert_eq!(quoted_attribute(b"X=1", b"URI"), None);
        assert_eq!(parse_date_time(b"1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_date_time(b"1970-01-01T01:00:00.5+01:00"), Some(500));
        assert_eq!(
            parse_date_time(b"1970-01-01T00:00:00.123456-0030"),
            Some(1_800_123)
        );
        assert_eq!(
            parse_date_time(b"2000-02-29T00:00:00.000Z"),
            Some(951_782_400_000)
        );
        assert_eq!(parse_date_time(b"2000-02-29 00:00:00Z"), None);
        assert_eq!(parse_date_time(b"2000-13-01T00:00:00Z"), None);
    }

    #[test]
    fn request_targets() {
        let t = |uri: &'static str| {
            let (base, rest) = request_target(uri.as_bytes());
            (base, std::str::from_utf8(rest).unwrap())
        };
        assert_eq!(t("s-1.ts"), (Base::Dir, "s-1.ts"));
        assert_eq!(t("/a/b.ts?x=1"), (Base::Root, "/a/b.ts?x=1"));
        assert_eq!(t("http://h:1/a/b.ts"), (Base::Root, "/a/b.ts"));
        assert_eq!(t("https://h"), (Base::Root, "/"));
    }

    fn ok() -> Response {
        Response {
            status: 200,
            keep_alive: true,
            body_len: 0,
        }
    }

    /// Answers the viewer's playlist request with `text`.
    fn answer_playlist(v: &mut Viewer, text: &str, now: Instant, m: &mut (ViewerStats, Histogram)) {
        v.body = text.as_bytes().to_vec();
        v.complete(now, ok(), measure(m, now));
    }

    fn measure(m: &mut (ViewerStats, Histogram), now: Instant) -> Measure<'_> {
        Measure {
            stats: &mut m.0,
            window: (now, now + Duration::from_secs(100)),
            latency: &mut m.1,
            unix_now_us: 0,
        }
    }

    fn playlist(first: u64, count: u64) -> String {
        let mut text = format!("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:{first}\n");
        for seq in first..first + count {
            text += &format!("#EXTINF:2.0,\ns-{seq}.ts\n");
        }
        text
    }

    #[test]
    fn plays_from_the_live_edge_and_reloads() {
        let t0 = Instant::now();
        let mut m = (ViewerStats::default(), Histogram::default());
        let mut v = Viewer::new(t0, false);
        assert_eq!(v.next(t0), Next::Playlist);
        answer_playlist(&mut v, &playlist(10, 5), t0, &mut m);
        let mut got = vec![];
        let mut t = t0;
        loop {
            t += Duration::from_millis(1);
            match v.next(t) {
                Next::Uri(r) => {
                    got.push(String::from_utf8_lossy(&v.text()[r]).into_owned());
                    v.complete(t, ok(), measure(&mut m, t));
                }
                Next::WaitUntil(at) => {
                    // Out of segments: reload half a target duration after the last one.
                    assert_eq!(at, t0 + Duration::from_secs(1));
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got, ["s-12.ts", "s-13.ts", "s-14.ts"]);
        let t = t0 + Duration::from_secs(1);
        assert_eq!(v.next(t), Next::Playlist);
        answer_playlist(&mut v, &playlist(11, 4), t, &mut m);
        // Nothing new: next reload half a target later still.
        assert_eq!(v.next(t), Next::WaitUntil(t + Duration::from_secs(1)));
        let t = t + Duration::from_secs(1);
        assert_eq!(v.next(t), Next::Playlist);
        answer_playlist(&mut v, &playlist(12, 4), t, &mut m);
        let Next::Uri(r) = v.next(t) else { panic!() };
        assert_eq!(&v.text()[r], b"s-15.ts");
        v.complete(t, ok(), measure(&mut m, t));
        let hls = m.0.hls.as_ref().unwrap();
        assert_eq!((hls.segments, hls.playlists), (4, 3));
        assert!(m.0.first_keyframe.is_some() && m.0.playing.is_some());
        // A viewer that fell out of the window skips ahead.
        answer_playlist_after_request(&mut v, &playlist(30, 3), t + Duration::from_secs(2), &mut m);
        let Next::Uri(r) = v.next(t + Duration::from_secs(2)) else {
            panic!()
        };
        assert_eq!(&v.text()[r], b"s-30.ts");
        assert_eq!(m.0.hls.as_ref().unwrap().skipped, 14);
    }

    fn answer_playlist_after_request(
        v: &mut Viewer,
        text: &str,
        now: Instant,
        m: &mut (ViewerStats, Histogram),
    ) {
        assert_eq!(v.next(now), Next::Playlist);
        answer_playlist(v, text, now, m);
    }

    #[test]
    fn init_segment_once_and_endlist() {
        let t0 = Instant::now();
        let mut m = (ViewerStats::default(), Histogram::default());
        let mut v = Viewer::new(t0, false);
        assert_eq!(v.next(t0), Next::Playlist);
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI=\"init.mp4\"\n\
            #EXTINF:2,\na.m4s\n#EXT-X-ENDLIST\n";
        answer_playlist(&mut v, text, t0, &mut m);
        let Next::Uri(r) = v.next(t0) else { panic!() };
        assert_eq!(&v.text()[r], b"init.mp4");
        v.complete(t0, ok(), measure(&mut m, t0));
        let Next::Uri(r) = v.next(t0) else { panic!() };
        assert_eq!(&v.text()[r], b"a.m4s");
        v.complete(t0, ok(), measure(&mut m, t0));
        assert_eq!(v.next(t0 + Duration::from_secs(5)), Next::Done);
    }

    #[test]
    fn failures_are_counted_and_retried() {
        let t0 = Instant::now();
        let mut m = (ViewerStats::default(), Histogram::default());
        let mut v = Viewer::new(t0, false);
        assert_eq!(v.next(t0), Next::Playlist);
        let not_found = Response {
            status: 404,
            ..ok()
        };
        v.complete(t0, not_found, measure(&mut m, t0));
        assert_eq!(m.0.failure.as_deref(), Some("status 404"));
        assert!(matches!(v.next(t0), Next::WaitUntil(_)));
        assert_eq!(v.disconnected(t0), Dropped::Idle);
        let t = t0 + Duration::from_secs(1);
        assert_eq!(v.next(t), Next::Playlist);
        assert_eq!(v.disconnected(t), Dropped::Request(Fetch::Playlist));
        assert_eq!(v.next(t), Next::WaitUntil(t + RETRY_DELAY));
        // On a reused connection closed before any byte of the answer: retried at once.
        answer_playlist_after_request(&mut v, &playlist(1, 3), t + RETRY_DELAY, &mut m);
        let t = t + RETRY_DELAY + Duration::from_millis(1);
        assert!(matches!(v.next(t), Next::Uri(_)));
        assert_eq!(v.disconnected(t), Dropped::Race);
        assert!(matches!(v.next(t), Next::Uri(_)));
        assert_eq!(m.0.hls.as_ref().unwrap().failures["status 404"], 1);
    }
}
