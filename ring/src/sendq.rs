//! A connection's outgoing bytes, in order, as segments: a small header copied inline (up to
//! [`INLINE_HEAD`] bytes: an RTMP chunk header, an FLV tag header) followed by a shared
//! refcounted body. A media server writes "my header + everyone's payload" per message, so
//! this shape costs no allocation and no refcount for the header. Both backends write from the
//! front of the queue with one vectored write of up to two iovecs per segment.

use std::collections::VecDeque;

use bytes::{Buf, Bytes};

/// Longest header kept inline in a segment (a type-0 RTMP chunk header with a 3-byte basic
/// header and an extended timestamp is 18 bytes).
pub const INLINE_HEAD: usize = 22;

/// One queued piece: `head` (inline, may be empty) then `body` (shared, may be empty).
pub(crate) struct Segment {
    head: [u8; INLINE_HEAD],
    head_len: u8,
    body: Bytes,
}

impl Segment {
    fn new(head: &[u8], body: Bytes) -> Segment {
        debug_assert!(head.len() <= INLINE_HEAD);
        let mut inline = [0u8; INLINE_HEAD];
        inline[..head.len()].copy_from_slice(head);
        Segment {
            head: inline,
            head_len: head.len() as u8,
            body,
        }
    }

    pub(crate) fn head(&self) -> &[u8] {
        &self.head[..self.head_len as usize]
    }

    pub(crate) fn body(&self) -> &[u8] {
        &self.body
    }

    pub(crate) fn len(&self) -> usize {
        self.head_len as usize + self.body.len()
    }

    /// Drops `n` bytes from the front (`n` < `len()`).
    fn advance(&mut self, mut n: usize) {
        let head_len = self.head_len as usize;
        if head_len > 0 {
            let from_head = n.min(head_len);
            self.head.copy_within(from_head..head_len, 0);
            self.head_len = (head_len - from_head) as u8;
            n -= from_head;
        }
        self.body.advance(n);
    }

    /// How many iovecs this segment needs.
    pub(crate) fn iovecs(&self) -> usize {
        usize::from(self.head_len > 0) + usize::from(!self.body.is_empty())
    }
}

/// The queue. A write in flight (io_uring) points into the front segments, so those must not
/// move until it completes: they are *pinned*. Pushing onto a `VecDeque` that has room moves
/// nothing; when it is full while pinned, new segments wait in `overflow` (order kept) and
/// join the deque once the write completes.
#[derive(Default)]
pub(crate) struct SendQueue {
    queue: VecDeque<Segment>,
    overflow: Vec<Segment>,
    /// Front segments a write in flight reads from.
    pinned: usize,
    /// Bytes in `queue` and `overflow`, pinned ones included.
    queued: usize,
}

impl SendQueue {
    /// Queues `head` (copied) then `body` (shared). A head longer than [`INLINE_HEAD`] is
    /// copied into a buffer of its own.
    pub(crate) fn push(&mut self, head: &[u8], body: Bytes) {
        if head.len() > INLINE_HEAD {
            self.push(&[], Bytes::copy_from_slice(head));
            return self.push(&[], body);
        }
        if head.is_empty() && body.is_empty() {
            return;
        }
        let segment = Segment::new(head, body);
        self.queued += segment.len();
        let would_move = self.queue.len() == self.queue.capacity();
        if self.pinned > 0 && (would_move || !self.overflow.is_empty()) {
            self.overflow.push(segment);
        } else {
            self.queue.push_back(segment);
        }
    }

    /// Bytes not yet written, in flight included.
    pub(crate) fn len(&self) -> usize {
        self.queued
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Pins front segments for a write in flight (io_uring) and hands each of their parts to
    /// `part`, within `max_iovecs` parts. Returns the bytes pinned. The parts stay valid until
    /// [`SendQueue::unpin`].
    pub(crate) fn pin_front(&mut self, max_iovecs: usize, mut part: impl FnMut(&[u8])) -> usize {
        debug_assert_eq!(self.pinned, 0, "one write in flight at a time");
        let mut iovecs = 0;
        let mut bytes = 0;
        for segment in &self.queue {
            if iovecs + segment.iovecs() > max_iovecs && iovecs > 0 {
                break;
            }
            iovecs += segment.iovecs();
            bytes += segment.len();
            self.pinned += 1;
            if !segment.head().is_empty() {
                part(segment.head());
            }
            if !segment.body().is_empty() {
                part(segment.body());
            }
        }
        bytes
    }

    /// The write in flight completed having written `written` bytes: drop them and let the
    /// queue move again.
    pub(crate) fn unpin(&mut self, written: usize) {
        self.pinned = 0;
        self.advance(written);
        if !self.overflow.is_empty() {
            self.queue.extend(self.overflow.drain(..));
        }
    }

    /// The front segments as slices, for a vectored write done on the spot (epoll).
    pub(crate) fn front_slices<'a>(
        &'a self,
        max_iovecs: usize,
        into: &mut Vec<std::io::IoSlice<'a>>,
    ) {
        for segment in &self.queue {
            if into.len() + segment.iovecs() > max_iovecs && !into.is_empty() {
                break;
            }
            if !segment.head().is_empty() {
                into.push(std::io::IoSlice::new(segment.head()));
            }
            if !segment.body().is_empty() {
                into.push(std::io::IoSlice::new(segment.body()));
            }
        }
    }

    /// Drops `written` bytes from the front after a write.
    pub(crate) fn advance(&mut self, written: usize) {
        self.queued -= written;
        advance_segments(&mut self.queue, written);
    }

    /// Drops everything not pinned (closing): pinned segments stay until their write
    /// completes, since the kernel may still be reading them.
    pub(crate) fn clear(&mut self) {
        self.queue.truncate(self.pinned);
        self.overflow.clear();
        self.queued = self.queue.iter().map(Segment::len).sum();
    }
}

/// Drops `written` bytes from the front of some segments, removing the ones fully written.
fn advance_segments(segments: &mut VecDeque<Segment>, mut written: usize) {
    while written > 0 {
        let front = segments.front_mut().expect("advance within queued bytes");
        if front.len() <= written {
            written -= front.len();
            segments.pop_front();
        } else {
            front.advance(written);
            written = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain_all(q: &mut SendQueue) -> Vec<u8> {
        let mut out = Vec::new();
        let written = q.pin_front(usize::MAX, |part| out.extend_from_slice(part));
        q.unpin(written);
        out
    }

    #[test]
    fn heads_and_bodies_keep_their_order() {
        let mut q = SendQueue::default();
        q.push(b"h1", Bytes::from_static(b"body1"));
        q.push(b"h2", Bytes::new());
        q.push(b"h3", Bytes::from_static(b"body2"));
        q.push(&[], Bytes::from_static(b"tail"));
        q.push(&[b'L'; 40], Bytes::from_static(b"!"));
        assert_eq!(q.len(), 61);
        let mut expected = b"h1body1h2h3body2tail".to_vec();
        expected.extend_from_slice(&[b'L'; 40]);
        expected.push(b'!');
        assert_eq!(drain_all(&mut q), expected);
        assert!(q.is_empty());
    }

    #[test]
    fn partial_writes_resume_inside_heads_and_bodies() {
        let all = b"abcdefghijklmnopqrs";
        for cut in 0..=16 {
            let mut q = SendQueue::default();
            q.push(b"abc", Bytes::from_static(b"defgh"));
            q.push(b"ij", Bytes::from_static(b"klmnop"));
            let mut pinned = Vec::new();
            let bytes = q.pin_front(2, |part| pinned.extend_from_slice(part));
            assert_eq!((bytes, &pinned[..]), (8, &b"abcdefgh"[..]));
            // Pushed while pinned; lands behind everything.
            q.push(b"q", Bytes::from_static(b"rs"));
            q.unpin(cut.min(8));
            let again = cut.saturating_sub(8);
            q.advance(again);
            assert_eq!(drain_all(&mut q), &all[cut.min(8) + again..], "cut {cut}");
        }
    }

    #[test]
    fn pinned_segments_do_not_move_when_the_queue_grows() {
        let mut q = SendQueue::default();
        q.push(b"first", Bytes::from_static(b"body"));
        let mut head_address = 0;
        q.pin_front(usize::MAX, |part| {
            if head_address == 0 {
                head_address = part.as_ptr() as usize;
            }
        });
        for i in 0..1000u32 {
            q.push(&i.to_be_bytes(), Bytes::new());
        }
        assert_eq!(
            q.queue.front().unwrap().head().as_ptr() as usize,
            head_address
        );
        // Closing while pinned keeps the pinned segment, drops the rest.
        q.clear();
        assert_eq!(q.len(), 9);
        q.unpin(9);
        assert!(q.is_empty());
    }

    #[test]
    fn iovec_limit_is_respected() {
        let mut q = SendQueue::default();
        for _ in 0..10 {
            q.push(b"h", Bytes::from_static(b"b"));
        }
        let mut parts = 0;
        assert_eq!(q.pin_front(5, |_| parts += 1), 4);
        assert_eq!(parts, 4);
        q.unpin(0);
        let mut slices = Vec::new();
        q.front_slices(5, &mut slices);
        assert_eq!(slices.len(), 4);
    }
}
