//! A connection's outgoing bytes: shared buffers queued in order, plus an arena that gathers
//! small per-connection copies (chunk and tag headers) so they cost no allocation each.
//! Both backends write from the front of the queue with one vectored write.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

/// Arena growth step: room for a few hundred message headers.
const ARENA_CHUNK: usize = 4096;

#[derive(Default)]
pub(crate) struct SendQueue {
    queue: VecDeque<Bytes>,
    arena: BytesMut,
    /// Bytes in `queue` and `arena`.
    queued: usize,
}

impl SendQueue {
    pub(crate) fn push(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        self.seal();
        self.queued += data.len();
        self.queue.push_back(data);
    }

    pub(crate) fn push_copy(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if self.arena.capacity() - self.arena.len() < data.len() {
            self.seal();
            self.arena.reserve(data.len().max(ARENA_CHUNK));
        }
        self.arena.extend_from_slice(data);
        self.queued += data.len();
    }

    /// Moves the arena's bytes into the queue so they are written in order.
    fn seal(&mut self) {
        if !self.arena.is_empty() {
            self.queue.push_back(self.arena.split().freeze());
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.queued
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Removes up to `max` buffers from the front for a write in flight (io_uring).
    pub(crate) fn take_front(&mut self, max: usize, into: &mut Vec<Bytes>) {
        self.seal();
        let n = max.min(self.queue.len());
        for data in self.queue.drain(..n) {
            self.queued -= data.len();
            into.push(data);
        }
    }

    /// Puts back what a partial write left over, ahead of everything queued since.
    pub(crate) fn restore_front(&mut self, rest: impl DoubleEndedIterator<Item = Bytes>) {
        for data in rest.rev() {
            self.queued += data.len();
            self.queue.push_front(data);
        }
    }

    /// The front buffers as slices, for a vectored write done on the spot (epoll).
    pub(crate) fn front_slices<'a>(&'a mut self, max: usize, into: &mut Vec<std::io::IoSlice<'a>>) {
        self.seal();
        into.extend(
            self.queue
                .iter()
                .take(max)
                .map(|b| std::io::IoSlice::new(b)),
        );
    }

    /// Drops `written` bytes from the front after a write.
    pub(crate) fn advance(&mut self, mut written: usize) {
        self.queued -= written;
        while written > 0 {
            let front = self.queue.front_mut().expect("advance within queued bytes");
            if front.len() <= written {
                written -= front.len();
                self.queue.pop_front();
            } else {
                front.advance(written);
                written = 0;
            }
        }
    }

    pub(crate) fn clear(&mut self) {
        self.queue.clear();
        self.arena.clear();
        self.queued = 0;
    }
}

/// Drops `written` bytes from the front of a batch taken with [`SendQueue::take_front`]; what
/// remains is the unwritten tail, in order.
pub(crate) fn advance_batch(batch: &mut Vec<Bytes>, mut written: usize) {
    let mut consumed = 0;
    for data in batch.iter_mut() {
        if written == 0 {
            break;
        }
        if data.len() <= written {
            written -= data.len();
            consumed += 1;
        } else {
            data.advance(written);
            written = 0;
        }
    }
    batch.drain(..consumed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain_all(q: &mut SendQueue) -> Vec<u8> {
        let mut out = Vec::new();
        let mut batch = Vec::new();
        q.take_front(usize::MAX, &mut batch);
        for b in batch {
            out.extend_from_slice(&b);
        }
        out
    }

    #[test]
    fn copies_and_shared_buffers_keep_their_order() {
        let mut q = SendQueue::default();
        q.push_copy(b"h1");
        q.push(Bytes::from_static(b"body1"));
        q.push_copy(b"h2");
        q.push_copy(b"h3");
        q.push(Bytes::from_static(b"body2"));
        q.push_copy(b"tail");
        assert_eq!(q.len(), 20);
        assert_eq!(drain_all(&mut q), b"h1body1h2h3body2tail");
        assert!(q.is_empty());
    }

    #[test]
    fn partial_writes_resume_where_they_stopped() {
        let mut q = SendQueue::default();
        q.push(Bytes::from_static(b"abcdef"));
        q.push_copy(b"gh");
        q.push(Bytes::from_static(b"ijkl"));
        let mut batch = Vec::new();
        q.take_front(2, &mut batch);
        q.push_copy(b"mn");
        advance_batch(&mut batch, 4);
        q.restore_front(batch.into_iter());
        assert_eq!(q.len(), 10);
        q.advance(3);
        assert_eq!(drain_all(&mut q), b"hijklmn");
    }

    #[test]
    fn arena_survives_many_small_copies() {
        let mut q = SendQueue::default();
        let mut expected = Vec::new();
        for i in 0..10_000u32 {
            q.push_copy(&i.to_be_bytes());
            expected.extend_from_slice(&i.to_be_bytes());
            if i % 7 == 0 {
                q.push(Bytes::from_static(b"x"));
                expected.push(b'x');
            }
        }
        assert_eq!(drain_all(&mut q), expected);
    }
}
