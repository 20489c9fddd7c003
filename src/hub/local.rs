//! A worker's own view of a stream: a mirror of the shared log holding the frames its local
//! viewers still need, and each viewer's cursor into it. Nothing here is shared between
//! threads, so writing a frame to a thousand local viewers takes no lock.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use sluice_ring::ConnId;

use super::{Frame, FrameKind, JoinStart, Stream};

pub struct LocalStream {
    pub stream: Arc<Stream>,
    /// `frames[i]` has sequence number `base + i`.
    frames: VecDeque<Arc<Frame>>,
    base: u64,
    /// Local viewers' connections.
    pub viewers: Vec<ConnId>,
    /// The viewers among them that take every frame at once, outside merged writes (WebRTC:
    /// RTP has no use for batching frames, and it would add `mw_latency_ms` to the latency).
    pub realtime: Vec<ConnId>,
    /// Merged writes: when the stream's viewers were last written to, and how many frames
    /// arrived since.
    pub last_flush: Instant,
    pub unflushed: usize,
}

impl LocalStream {
    pub fn new(stream: Arc<Stream>, start: u64, now: Instant) -> LocalStream {
        LocalStream {
            stream,
            frames: VecDeque::new(),
            base: start,
            viewers: Vec::new(),
            realtime: Vec::new(),
            last_flush: now,
            unflushed: 0,
        }
    }

    /// One past the newest frame's sequence number.
    pub fn end(&self) -> u64 {
        self.base + self.frames.len() as u64
    }

    /// Copies what the publisher appended since the last sync. Returns how many frames arrived.
    pub fn sync(&mut self, worker: usize) -> usize {
        let end = self.end();
        let before = self.frames.len();
        let start = self.stream.copy_new(worker, end, &mut self.frames);
        if start != end {
            // This worker fell behind the shared log: drop what we had, continue from `start`;
            // cursors before it skip to a keyframe.
            self.frames.drain(..before);
            self.base = start;
            self.frames.len()
        } else {
            self.frames.len() - before
        }
    }

    /// Brings the mirror up to date for a new viewer and returns what it starts with; its
    /// cursor then starts at [`LocalStream::end`].
    pub fn attach(&mut self, worker: usize) -> JoinStart {
        let end = self.end();
        let before = self.frames.len();
        let (start, first) = self.stream.attach(worker, end, &mut self.frames);
        if first != end {
            self.frames.drain(..before);
            self.base = first;
        }
        self.unflushed += self.frames.len() - before.min(self.frames.len());
        start
    }

    fn get(&self, seq: u64) -> Option<&Arc<Frame>> {
        seq.checked_sub(self.base)
            .and_then(|i| self.frames.get(i as usize))
    }

    /// The newest keyframe at or after `from`.
    fn latest_keyframe(&self, from: u64) -> Option<u64> {
        let first = from.saturating_sub(self.base) as usize;
        (first..self.frames.len())
            .rev()
            .find(|&i| self.frames[i].keyframe)
            .map(|i| self.base + i as u64)
    }

    /// Drops frames no local viewer needs any more (all cursors are at or past `min_cursor`).
    pub fn trim(&mut self, min_cursor: u64) {
        while self.base < min_cursor && !self.frames.is_empty() {
            self.frames.pop_front();
            self.base += 1;
        }
    }
}

/// Rewrites a viewer's timestamps to start at 0 and move forward smoothly, whatever the
/// publisher does (SRS's "full" jitter correction): each message advances by its distance from
/// the previous one; a jump of more than `MAX_JITTER_MS` either way (a publisher restart, a
/// wrap, a broken encoder) advances by `DEFAULT_FRAME_MS` instead. Each track is then kept
/// monotonic on its own.
#[derive(Debug, Default, Clone)]
pub struct Jitter {
    last_in: Option<u32>,
    last_out: u32,
    last_video: u32,
    last_audio: u32,
}

const MAX_JITTER_MS: i64 = 250;
/// Most frames a viewer may lag, whatever the timestamps say (~40 s of 30 fps video + audio).
const MAX_LAG_FRAMES: u64 = 4096;
const DEFAULT_FRAME_MS: i64 = 10;

impl Jitter {
    pub fn correct(&mut self, kind: FrameKind, timestamp: u32) -> u32 {
        let out = match self.last_in {
            None => 0,
            Some(prev) => {
                let delta = timestamp.wrapping_sub(prev) as i32 as i64;
                let delta = if (-MAX_JITTER_MS..=MAX_JITTER_MS).contains(&delta) {
                    delta
                } else {
                    DEFAULT_FRAME_MS
                };
                (self.last_out as i64 + delta).clamp(0, u32::MAX as i64) as u32
            }
        };
        self.last_in = Some(timestamp);
        self.last_out = out;
        let track = match kind {
            FrameKind::Video => &mut self.last_video,
            FrameKind::Audio | FrameKind::Opus => &mut self.last_audio,
            FrameKind::Metadata => return out,
        };
        *track = (*track).max(out);
        *track
    }
}

/// A viewer's position in its worker's [`LocalStream`].
#[derive(Debug)]
pub struct Cursor {
    pub next: u64,
    /// Video is held back until a keyframe (start without GOP cache, after a skip).
    pub need_keyframe: bool,
    pub paused: bool,
    pub jitter: Jitter,
    /// Frames this viewer never got because it fell behind.
    pub skipped_frames: u64,
    /// Times it fell behind.
    pub skips: u64,
}

/// A frame to write and the timestamp this viewer sees.
pub struct Outgoing<'a> {
    pub frame: &'a Arc<Frame>,
    pub timestamp: u32,
}

impl Cursor {
    pub fn new(next: u64, need_keyframe: bool) -> Cursor {
        Cursor {
            next,
            need_keyframe,
            paused: false,
            jitter: Jitter::default(),
            skipped_frames: 0,
            skips: 0,
        }
    }

    /// Passes a frame outside the mirror (the join start) through this viewer's filters.
    pub fn admit<'a>(&mut self, frame: &'a Arc<Frame>) -> Option<Outgoing<'a>> {
        if frame.kind == FrameKind::Video && !frame.sequence_header {
            if self.need_keyframe && !frame.keyframe {
                return None;
            }
            if frame.keyframe {
                self.need_keyframe = false;
            }
        }
        Some(Outgoing {
            frame,
            timestamp: self.jitter.correct(frame.kind, frame.timestamp),
        })
    }

    /// The next frame for this viewer, after applying the lag policy: a viewer more than
    /// `queue_length_ms` of media (or the whole mirror) behind skips to the newest keyframe.
    pub fn next<'a>(
        &mut self,
        local: &'a LocalStream,
        queue_length_ms: u64,
    ) -> Option<Outgoing<'a>> {
        if self.paused {
            return None;
        }
        self.enforce_lag(local, queue_length_ms);
        loop {
            let frame = local.get(self.next)?;
            self.next += 1;
            if let Some(out) = self.admit(frame) {
                return Some(out);
            }
        }
    }

    /// Moves a viewer that is too far behind to the newest keyframe: behind the mirror's start,
    /// more than `queue_length_ms` of media behind, or more than `MAX_LAG_FRAMES` frames behind
    /// (for publishers whose timestamps don't advance).
    pub fn enforce_lag(&mut self, local: &LocalStream, queue_length_ms: u64) {
        if self.next < local.base || local.end().saturating_sub(self.next) > MAX_LAG_FRAMES {
            self.skip(local);
        } else if let (Some(current), Some(newest)) = (local.get(self.next), local.frames.back()) {
            let behind = newest.timestamp.wrapping_sub(current.timestamp) as i32;
            if behind > 0 && behind as u64 > queue_length_ms {
                self.skip(local);
            }
        }
    }

    fn skip(&mut self, local: &LocalStream) {
        let target = match local.latest_keyframe(self.next.max(local.base)) {
            Some(seq) => seq,
            None => {
                self.need_keyframe = true;
                local.end()
            }
        };
        if target > self.next {
            self.skipped_frames += target - self.next;
            self.skips += 1;
            self.next = target;
        }
    }

    /// Resumes after a pause at the newest keyframe (what was missed is not replayed).
    pub fn resume(&mut self, local: &LocalStream) {
        self.paused = false;
        self.next = local.end();
        self.need_keyframe = true;
        if let Some(seq) = local.latest_keyframe(local.base) {
            self.next = seq;
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::hub::{Hub, StreamKey, StreamSettings};

    #[test]
    fn jitter_starts_at_zero_and_never_goes_back() {
        let mut j = Jitter::default();
        assert_eq!(j.correct(FrameKind::Video, 90_000), 0);
        assert_eq!(j.correct(FrameKind::Audio, 90_010), 10);
        assert_eq!(j.correct(FrameKind::Video, 90_033), 33);
        // Publisher restarts at 0: a small step forward, not a jump back.
        assert_eq!(j.correct(FrameKind::Video, 0), 43);
        assert_eq!(j.correct(FrameKind::Audio, 20), 63);
        // Audio slightly behind video is kept, each track monotonic.
        assert_eq!(j.correct(FrameKind::Video, 100), 143);
        assert_eq!(j.correct(FrameKind::Audio, 90), 133);
        // Wrap of the u32 clock is a small forward step.
        let mut j = Jitter::default();
        j.correct(FrameKind::Video, u32::MAX - 5);
        assert_eq!(j.correct(FrameKind::Video, 10), 16);
    }

    fn setup(frames: &[(&'static [u8], u32)]) -> LocalStream {
        let settings = StreamSettings {
            chunk_size: 60_000,
            gop_cache: true,
            gop_cache_max_frames: 100,
            gop_cache_max_bytes: 1 << 20,
        };
        let hub = Hub::new(1);
        let key = StreamKey {
            vhost: "v".into(),
            app: "a".into(),
            stream: "s".into(),
        };
        let stream = hub.join(key.clone(), &settings, 0);
        let who = crate::hub::Publisher {
            serial: 1,
            id: "p".into(),
            tc_url: String::new(),
        };
        let publisher = hub.publish(key, &settings, who).unwrap();
        let mut local = LocalStream::new(stream, 0, Instant::now());
        let mut wake = Vec::new();
        for (body, ts) in frames {
            let frame = Frame::new(FrameKind::Video, *ts, Bytes::from_static(body), 60_000);
            publisher.push(Arc::new(frame.unwrap()), &mut wake);
        }
        local.sync(0);
        local
    }

    const KEY: &[u8] = &[0x17, 1, 0, 0, 0, 1];
    const INTER: &[u8] = &[0x27, 1, 0, 0, 0, 1];

    #[test]
    fn waits_for_keyframe_then_follows() {
        let local = setup(&[(INTER, 0), (KEY, 40), (INTER, 80)]);
        let mut cursor = Cursor::new(0, true);
        let first = cursor.next(&local, 10_000).unwrap();
        assert!(first.frame.keyframe);
        assert_eq!(first.timestamp, 0);
        assert_eq!(cursor.next(&local, 10_000).unwrap().timestamp, 40);
        assert!(cursor.next(&local, 10_000).is_none());
    }

    #[test]
    fn laggard_skips_to_newest_keyframe() {
        let local = setup(&[
            (KEY, 0),
            (INTER, 1000),
            (INTER, 2000),
            (KEY, 3000),
            (INTER, 4000),
        ]);
        let mut cursor = Cursor::new(0, false);
        let first = cursor.next(&local, 2500).unwrap();
        assert!(first.frame.keyframe);
        assert_eq!(first.frame.timestamp, 3000);
        assert_eq!(cursor.skipped_frames, 3);
        assert_eq!(cursor.skips, 1);
    }
}
