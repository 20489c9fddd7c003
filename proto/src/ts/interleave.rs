//! Puts the messages of two tracks back into one time order. A transport stream interleaves its
//! tracks loosely: ffmpeg's muxer gathers several audio frames into one PES and sends it up to
//! its `max_delay` (0.7 s) after the video of the same time, hardware encoders do the same, so
//! demuxing PES by PES yields video at 10.3 s next to audio at 10.0 s. An RTMP publisher's
//! messages are in time order across tracks, and what reads the hub — FLV and RTMP viewers'
//! timestamp correction, the HLS segmenter — relies on it.
//!
//! [`Interleaver`] holds each track's messages in arrival order (each track is in order on its
//! own) and releases the earliest head once the other track cannot send anything earlier: it
//! has a message waiting, it has already gone past that time, or it is not expected at all (the
//! program has no such track). Waiting is bounded: a track that is silent holds the other back
//! by at most `max_span` of the waiting track's time and `max_bytes` of its data.

use std::collections::VecDeque;

/// The two tracks, as indexes into [`Interleaver`]'s queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackSlot {
    Video = 0,
    Audio = 1,
}

impl TrackSlot {
    fn other(self) -> TrackSlot {
        match self {
            TrackSlot::Video => TrackSlot::Audio,
            TrackSlot::Audio => TrackSlot::Video,
        }
    }
}

#[derive(Debug)]
struct Held<T> {
    /// (time, size in bytes, message), oldest first.
    queue: VecDeque<(i64, usize, T)>,
    bytes: usize,
    /// The latest time this track has had, held or released; `None` until its first message.
    latest: Option<i64>,
    /// The program has this track, so its messages are worth waiting for.
    expected: bool,
}

impl<T> Default for Held<T> {
    fn default() -> Self {
        Held {
            queue: VecDeque::new(),
            bytes: 0,
            latest: None,
            expected: false,
        }
    }
}

impl<T> Held<T> {
    fn head_time(&self) -> Option<i64> {
        self.queue.front().map(|(time, _, _)| *time)
    }

    fn over_bounds(&self, max_span: i64, max_bytes: usize) -> bool {
        match (self.queue.front(), self.queue.back()) {
            (Some((first, _, _)), Some((last, _, _))) => {
                last.saturating_sub(*first) > max_span || self.bytes > max_bytes
            }
            _ => false,
        }
    }
}

/// Two tracks in, one time-ordered sequence out. Times are any monotonic unit (the ingest uses
/// unwrapped 90 kHz ticks); sizes count toward `max_bytes`.
#[derive(Debug)]
pub struct Interleaver<T> {
    tracks: [Held<T>; 2],
    max_span: i64,
    max_bytes: usize,
}

impl<T> Interleaver<T> {
    pub fn new(max_span: i64, max_bytes: usize) -> Interleaver<T> {
        Interleaver {
            tracks: [Held::default(), Held::default()],
            max_span,
            max_bytes,
        }
    }

    /// The program has this track: the other waits for its first message (within the bounds).
    pub fn expect(&mut self, slot: TrackSlot) {
        self.tracks[slot as usize].expected = true;
    }

    /// Adds a track's next message.
    pub fn hold(&mut self, slot: TrackSlot, time: i64, size: usize, message: T) {
        let track = &mut self.tracks[slot as usize];
        track.expected = true;
        track.queue.push_back((time, size, message));
        track.bytes += size;
        track.latest = Some(track.latest.map_or(time, |latest| latest.max(time)));
    }

    /// The track is gone (the program no longer has it): it stops holding the other back.
    pub fn forget(&mut self, slot: TrackSlot) {
        let track = &mut self.tracks[slot as usize];
        track.latest = None;
        track.expected = false;
    }

    /// The next message that can go out in time order, if any yet.
    pub fn pop(&mut self) -> Option<T> {
        let slot = self.next_slot(false)?;
        self.take(slot)
    }

    /// The next message whatever the other track may still send (the input ended).
    pub fn pop_all(&mut self) -> Option<T> {
        let slot = self.next_slot(true)?;
        self.take(slot)
    }

    /// Messages held.
    pub fn len(&self) -> usize {
        self.tracks.iter().map(|t| t.queue.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn next_slot(&self, flush: bool) -> Option<TrackSlot> {
        let video = self.tracks[TrackSlot::Video as usize].head_time();
        let audio = self.tracks[TrackSlot::Audio as usize].head_time();
        let (slot, head) = match (video, audio) {
            // Video first on a tie: a keyframe and the audio of its instant start a segment.
            (Some(v), Some(a)) => {
                return Some(if v <= a {
                    TrackSlot::Video
                } else {
                    TrackSlot::Audio
                });
            }
            (Some(v), None) => (TrackSlot::Video, v),
            (None, Some(a)) => (TrackSlot::Audio, a),
            (None, None) => return None,
        };
        let other = &self.tracks[slot.other() as usize];
        let other_cannot_be_earlier = match other.latest {
            None => !other.expected,
            Some(latest) => head <= latest,
        };
        let waited_enough = self.tracks[slot as usize].over_bounds(self.max_span, self.max_bytes);
        (flush || other_cannot_be_earlier || waited_enough).then_some(slot)
    }

    fn take(&mut self, slot: TrackSlot) -> Option<T> {
        let track = &mut self.tracks[slot as usize];
        let (_, size, message) = track.queue.pop_front()?;
        track.bytes -= size;
        Some(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(interleaver: &mut Interleaver<(char, i64)>) -> Vec<(char, i64)> {
        std::iter::from_fn(|| interleaver.pop()).collect()
    }

    #[test]
    fn late_audio_is_put_back_in_order() {
        let mut interleaver = Interleaver::new(90_000, 1 << 20);
        // Video 0..=300 ms arrives before the audio PES covering 0..=300 ms.
        for t in [0, 100, 200, 300] {
            interleaver.hold(TrackSlot::Video, t, 10, ('v', t));
        }
        // No audio expected (yet): video goes out as it comes.
        assert_eq!(drain(&mut interleaver).len(), 4);
        interleaver.expect(TrackSlot::Audio);
        for t in [400, 500] {
            interleaver.hold(TrackSlot::Video, t, 10, ('v', t));
        }
        for t in [0, 150, 300, 450] {
            interleaver.hold(TrackSlot::Audio, t, 10, ('a', t));
        }
        let out = drain(&mut interleaver);
        let times: Vec<i64> = out.iter().map(|(_, t)| *t).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{out:?}");
        // Video 500 waits: audio may still send something between 450 and 500.
        assert_eq!(out.last(), Some(&('a', 450)));
        assert_eq!(interleaver.len(), 1);
        interleaver.hold(TrackSlot::Audio, 600, 10, ('a', 600));
        assert_eq!(drain(&mut interleaver), vec![('v', 500)]);
        assert_eq!(interleaver.pop_all(), Some(('a', 600)));
        assert!(interleaver.is_empty());
    }

    #[test]
    fn a_silent_track_holds_the_other_back_only_so_long() {
        let mut interleaver = Interleaver::new(1000, 1 << 20);
        interleaver.hold(TrackSlot::Audio, 0, 10, ('a', 0));
        assert_eq!(drain(&mut interleaver), vec![('a', 0)]);
        for t in (0..=1000).step_by(100) {
            interleaver.hold(TrackSlot::Video, t, 10, ('v', t));
        }
        // Video 0 is no later than the audio seen; the rest wait until they span over 1000.
        assert_eq!(drain(&mut interleaver), vec![('v', 0)]);
        interleaver.hold(TrackSlot::Video, 1100, 10, ('v', 1100));
        assert_eq!(drain(&mut interleaver), vec![]);
        interleaver.hold(TrackSlot::Video, 1200, 10, ('v', 1200));
        assert_eq!(drain(&mut interleaver), vec![('v', 100)]);
        interleaver.forget(TrackSlot::Audio);
        assert_eq!(drain(&mut interleaver).len(), 11);
    }

    #[test]
    fn an_expected_track_is_waited_for_from_the_start() {
        let mut interleaver = Interleaver::new(90_000, 1 << 20);
        interleaver.expect(TrackSlot::Audio);
        for t in [0, 100, 200, 300] {
            interleaver.hold(TrackSlot::Video, t, 10, ('v', t));
        }
        assert_eq!(drain(&mut interleaver), vec![]);
        interleaver.hold(TrackSlot::Audio, 0, 10, ('a', 0));
        interleaver.hold(TrackSlot::Audio, 250, 10, ('a', 250));
        assert_eq!(
            drain(&mut interleaver),
            vec![('v', 0), ('a', 0), ('v', 100), ('v', 200), ('a', 250)]
        );
    }

    #[test]
    fn bytes_bound_the_wait_too() {
        let mut interleaver = Interleaver::new(i64::MAX, 100);
        interleaver.hold(TrackSlot::Audio, 0, 1, ('a', 0));
        drain(&mut interleaver);
        for t in 1..=5 {
            interleaver.hold(TrackSlot::Video, t, 30, ('v', t));
        }
        // 150 bytes held: released until no more than 100 remain.
        assert_eq!(drain(&mut interleaver), vec![('v', 1), ('v', 2)]);
        assert_eq!(interleaver.len(), 3);
    }
}
