//! The GOP cache: everything since the last video keyframe, so a new viewer starts on a
//! keyframe at once instead of waiting up to a GOP for the next one.

use std::sync::Arc;

use super::frame::{Frame, FrameKind};

/// Audio-only streams have no keyframes; keep this many recent audio frames for a quick start.
const PURE_AUDIO_FRAMES: usize = 32;

#[derive(Debug)]
pub struct GopCache {
    enabled: bool,
    max_frames: usize,
    max_bytes: usize,
    frames: Vec<Arc<Frame>>,
    bytes: usize,
    /// A keyframe has started the current cache (else video is not cached: it can't be decoded).
    started: bool,
    /// The stream has sent video, so audio is cached only inside a GOP.
    has_video: bool,
}

impl GopCache {
    pub fn new(enabled: bool, max_frames: usize, max_bytes: usize) -> Self {
        GopCache {
            enabled,
            max_frames,
            max_bytes,
            frames: Vec::new(),
            bytes: 0,
            started: false,
            has_video: false,
        }
    }

    pub fn push(&mut self, frame: &Arc<Frame>) {
        if !self.enabled || frame.sequence_header {
            return;
        }
        match frame.kind {
            FrameKind::Metadata => return,
            FrameKind::Video => {
                self.has_video = true;
                if frame.keyframe {
                    self.clear();
                    self.started = true;
                } else if !self.started {
                    return;
                }
            }
            FrameKind::Audio | FrameKind::Opus => {
                if self.has_video && !self.started {
                    return;
                }
                if !self.has_video && self.frames.len() >= PURE_AUDIO_FRAMES {
                    let old = self.frames.remove(0);
                    self.bytes -= old.size();
                }
            }
        }
        self.bytes += frame.size();
        self.frames.push(frame.clone());
        if self.frames.len() > self.max_frames || self.bytes > self.max_bytes {
            // A GOP too long to keep: drop it and wait for the next keyframe, as SRS does.
            self.clear();
        }
    }

    pub fn clear(&mut self) {
        self.frames.clear();
        self.bytes = 0;
        self.started = false;
    }

    pub fn frames(&self) -> &[Arc<Frame>] {
        &self.frames
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn video(key: bool) -> Arc<Frame> {
        let body: &'static [u8] = if key {
            &[0x17, 1, 0, 0, 0, 9]
        } else {
            &[0x27, 1, 0, 0, 0, 9]
        };
        Arc::new(Frame::new(FrameKind::Video, 0, Bytes::from_static(body), 60_000).unwrap())
    }

    fn audio() -> Arc<Frame> {
        Arc::new(
            Frame::new(
                FrameKind::Audio,
                0,
                Bytes::from_static(&[0xaf, 1, 7]),
                60_000,
            )
            .unwrap(),
        )
    }

    #[test]
    fn starts_at_keyframe_and_restarts_at_the_next() {
        let mut gop = GopCache::new(true, 100, 1 << 20);
        gop.push(&video(false));
        gop.push(&audio());
        assert!(gop.frames().is_empty(), "nothing before the first keyframe");
        gop.push(&video(true));
        gop.push(&audio());
        gop.push(&video(false));
        assert_eq!(gop.frames().len(), 3);
        gop.push(&video(true));
        assert_eq!(gop.frames().len(), 1);
        assert!(gop.frames()[0].keyframe);
    }

    #[test]
    fn overlong_gop_is_dropped_until_next_keyframe() {
        let mut gop = GopCache::new(true, 3, 1 << 20);
        gop.push(&video(true));
        for _ in 0..3 {
            gop.push(&video(false));
        }
        assert!(gop.frames().is_empty());
        gop.push(&video(false));
        assert!(gop.frames().is_empty());
        gop.push(&video(true));
        assert_eq!(gop.frames().len(), 1);
    }

    #[test]
    fn pure_audio_keeps_a_short_tail() {
        let mut gop = GopCache::new(true, 2500, 1 << 20);
        for _ in 0..100 {
            gop.push(&audio());
        }
        assert_eq!(gop.frames().len(), PURE_AUDIO_FRAMES);
    }

    #[test]
    fn disabled_caches_nothing() {
        let mut gop = GopCache::new(false, 100, 1 << 20);
        gop.push(&video(true));
        assert!(gop.frames().is_empty());
    }
}
