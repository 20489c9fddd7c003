//! A connection's outgoing bytes, in order, as segments: a small header copied inline (up to
//! [`INLINE_HEAD`] bytes: an RTMP chunk header, an FLV tag header, an HTTP chunk-size line)
//! followed by a body that is either a shared refcounted buffer or a region of a file. A media
//! server writes "my header + everyone's payload" per message, so this shape costs no
//! allocation and no refcount for the header.
//!
//! Both backends write from the front of the queue: one vectored write gathering memory
//! segments (up to two iovecs each) up to the first file segment, whose inline head, if any,
//! rides in the same write; then the file region goes out without passing through user space
//! (splice on io_uring, sendfile on epoll); then gathering resumes.

use std::collections::VecDeque;
use std::fs::File;
use std::sync::Arc;

use bytes::{Buf, Bytes};

/// Longest header kept inline in a segment. Sized for the longest per-viewer prefix: HTTP-FLV's
/// `\r\n` + chunk-size line + FLV previous-tag-size + tag header (up to 25 bytes); a type-0
/// RTMP chunk header with a 3-byte basic header and an extended timestamp is 18. 30 keeps a
/// segment at 64 bytes.
pub const INLINE_HEAD: usize = 30;

/// `len` bytes of `file` from `offset`, still to be written.
pub(crate) struct FileRegion {
    pub(crate) file: Arc<File>,
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

/// What follows a segment's inline head. `Bytes` has a non-null pointer the compiler uses as
/// the tag, so this enum is no bigger than `Bytes` (32 bytes on 64-bit targets).
enum Body {
    Memory(Bytes),
    File(FileRegion),
}

/// One queued piece: `head` (inline, may be empty) then `body` (may be empty when in memory;
/// a file region is never empty).
pub(crate) struct Segment {
    head: [u8; INLINE_HEAD],
    head_len: u8,
    body: Body,
}

impl Segment {
    fn new(head: &[u8], body: Body) -> Segment {
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

    /// The body when it is in memory (empty for a file region).
    pub(crate) fn memory(&self) -> &[u8] {
        match &self.body {
            Body::Memory(bytes) => bytes,
            Body::File(_) => &[],
        }
    }

    fn is_file(&self) -> bool {
        matches!(self.body, Body::File(_))
    }

    pub(crate) fn len(&self) -> u64 {
        let body = match &self.body {
            Body::Memory(bytes) => bytes.len() as u64,
            Body::File(region) => region.len,
        };
        self.head_len as u64 + body
    }

    /// Drops `n` bytes from the front (`n` < `len()`).
    fn advance(&mut self, mut n: u64) {
        let head_len = self.head_len as usize;
        if head_len > 0 {
            let from_head = (n as usize).min(head_len);
            self.head.copy_within(from_head..head_len, 0);
            self.head_len = (head_len - from_head) as u8;
            n -= from_head as u64;
        }
        match &mut self.body {
            Body::Memory(bytes) => bytes.advance(n as usize),
            Body::File(region) => {
                region.offset += n;
                region.len -= n;
            }
        }
    }

    /// How many iovecs this segment needs in a vectored write (a file region needs none: it
    /// goes by splice/sendfile).
    pub(crate) fn iovecs(&self) -> usize {
        usize::from(self.head_len > 0) + usize::from(!self.memory().is_empty())
    }
}

/// The queue. A write in flight (io_uring) points into the front segments, so those must not
/// move until it completes: they are *pinned*. Pushing onto a `VecDeque` that has room moves
/// nothing; when it is full while pinned, new segments wait in `overflow` (order kept) and
/// join the deque once the write completes. A file write in flight pins the file segment too,
/// which keeps its `File` open until the write completes, even if the connection is closing.
#[derive(Default)]
pub(crate) struct SendQueue {
    queue: VecDeque<Segment>,
    overflow: Vec<Segment>,
    /// Front segments a write in flight reads from.
    pinned: usize,
    /// Bytes in `queue` and `overflow`, pinned ones included (file regions counted whole).
    queued: u64,
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
        self.push_segment(Segment::new(head, Body::Memory(body)));
    }

    /// Queues `len` bytes of `file` from `offset`. An empty region queues nothing. When the
    /// last queued segment is an unpinned head without a body (a header from `send_copy`), the
    /// region joins it rather than taking a segment of its own.
    pub(crate) fn push_file(&mut self, file: Arc<File>, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        let region = FileRegion { file, offset, len };
        let last = if self.overflow.is_empty() {
            if self.queue.len() > self.pinned {
                self.queue.back_mut()
            } else {
                None
            }
        } else {
            self.overflow.last_mut()
        };
        if let Some(last) = last
            && matches!(&last.body, Body::Memory(bytes) if bytes.is_empty())
        {
            last.body = Body::File(region);
            self.queued += len;
            return;
        }
        self.push_segment(Segment::new(&[], Body::File(region)));
    }

    fn push_segment(&mut self, segment: Segment) {
        self.queued += segment.len();
        let would_move = self.queue.len() == self.queue.capacity();
        if self.pinned > 0 && (would_move || !self.overflow.is_empty()) {
            self.overflow.push(segment);
        } else {
            self.queue.push_back(segment);
        }
    }

    /// Bytes not yet written, in flight included (saturating where `usize` is narrower than a
    /// file region).
    pub(crate) fn len(&self) -> usize {
        usize::try_from(self.queued).unwrap_or(usize::MAX)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Whether a file region is queued anywhere.
    pub(crate) fn has_file(&self) -> bool {
        self.queue.iter().any(|s| s.is_file()) || self.overflow.iter().any(|s| s.is_file())
    }

    /// The file region at the front, when the next bytes to write are file bytes (its
    /// segment's head already written): the writer sends it with splice/sendfile instead of a
    /// vectored write.
    pub(crate) fn front_file(&self) -> Option<&FileRegion> {
        match self.queue.front() {
            Some(Segment {
                head_len: 0,
                body: Body::File(region),
                ..
            }) => Some(region),
            _ => None,
        }
    }

    /// Pins the front file region for a file write in flight (io_uring) and returns it; `None`
    /// when the front is not a file region. Released by [`SendQueue::unpin`].
    pub(crate) fn pin_file(&mut self) -> Option<&FileRegion> {
        debug_assert_eq!(self.pinned, 0, "one write in flight at a time");
        self.front_file()?;
        self.pinned = 1;
        self.front_file()
    }

    /// Pins front segments for a write in flight (io_uring) and hands each of their parts to
    /// `part`, within `max_iovecs` parts, stopping at the first file region (a file segment's
    /// head is included). Returns the bytes pinned. The parts stay valid until
    /// [`SendQueue::unpin`]. Call it only when [`SendQueue::front_file`] is `None`.
    pub(crate) fn pin_front(&mut self, max_iovecs: usize, mut part: impl FnMut(&[u8])) -> usize {
        debug_assert_eq!(self.pinned, 0, "one write in flight at a time");
        debug_assert!(self.front_file().is_none(), "file regions go by pin_file");
        let mut iovecs = 0;
        let mut bytes = 0;
        for segment in &self.queue {
            if iovecs + segment.iovecs() > max_iovecs && iovecs > 0 {
                break;
            }
            if segment.is_file() && segment.head_len == 0 {
                break;
            }
            iovecs += segment.iovecs();
            self.pinned += 1;
            if !segment.head().is_empty() {
                bytes += segment.head().len();
                part(segment.head());
            }
            if !segment.memory().is_empty() {
                bytes += segment.memory().len();
                part(segment.memory());
            }
            if segment.is_file() {
                break;
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

    /// The front segments as slices, for a vectored write done on the spot (epoll), up to the
    /// first file region (a file segment's head is included). Empty when the front is a file
    /// region: see [`SendQueue::front_file`].
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
            if !segment.memory().is_empty() {
                into.push(std::io::IoSlice::new(segment.memory()));
            }
            if segment.is_file() {
                break;
            }
        }
    }

    /// Drops `written` bytes from the front after a write.
    pub(crate) fn advance(&mut self, written: usize) {
        let written = written as u64;
        self.queued -= written;
        advance_segments(&mut self.queue, written);
    }

    /// Drops everything not pinned (closing): pinned segments stay until their write
    /// completes, since the kernel may still be reading them (or their file).
    pub(crate) fn clear(&mut self) {
        self.queue.truncate(self.pinned);
        self.overflow.clear();
        self.queued = self.queue.iter().map(Segment::len).sum();
    }
}

/// Drops `written` bytes from the front of some segments, removing the ones fully written.
fn advance_segments(segments: &mut VecDeque<Segment>, mut written: u64) {
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

    /// A file of `data` in the temp dir, removed when dropped.
    struct TempFile(std::path::PathBuf, Arc<File>);

    impl TempFile {
        fn new(data: &[u8]) -> TempFile {
            use std::sync::atomic::{AtomicU32, Ordering};
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "sluice-sendq-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::write(&path, data).unwrap();
            let file = Arc::new(File::open(&path).unwrap());
            TempFile(path, file)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// Writes the whole queue the way the backends do, at most `step` bytes per write: vectored
    /// writes of memory, file regions read from the file.
    fn write_out(q: &mut SendQueue, step: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while !q.is_empty() {
            if let Some(region) = q.pin_file() {
                let n = (region.len as usize).min(step);
                let mut buf = vec![0; n];
                read_exact_at(&region.file, &mut buf, region.offset);
                out.extend_from_slice(&buf);
                q.unpin(n);
            } else {
                let mut parts = Vec::new();
                let pinned = q.pin_front(4, |part| parts.extend_from_slice(part));
                assert!(pinned > 0, "a write that gathers nothing");
                let n = pinned.min(step);
                out.extend_from_slice(&parts[..n]);
                q.unpin(n);
            }
        }
        out
    }

    fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = file;
        file.seek(SeekFrom::Start(offset)).unwrap();
        file.read_exact(buf).unwrap();
    }

    #[test]
    fn segments_stay_at_64_bytes() {
        #[cfg(target_pointer_width = "64")]
        assert_eq!(std::mem::size_of::<Segment>(), 64);
        assert!(std::mem::size_of::<Segment>() <= 64);
    }

    #[test]
    fn file_regions_keep_their_place_among_memory_segments() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let file = TempFile::new(&data);
        let mut expected = Vec::new();
        let mut q = SendQueue::default();
        q.push(b"head1", Bytes::from_static(b"body1"));
        expected.extend_from_slice(b"head1body1");
        q.push_file(file.1.clone(), 100, 1000);
        expected.extend_from_slice(&data[100..1100]);
        // A header-only segment takes the following region in: one segment, head inline.
        q.push(b"hdr", Bytes::new());
        q.push_file(file.1.clone(), 4000, 1000);
        expected.extend_from_slice(b"hdr");
        expected.extend_from_slice(&data[4000..]);
        q.push_file(file.1.clone(), 0, 0);
        q.push(&[], Bytes::from_static(b"tail"));
        q.push_file(file.1.clone(), 1, 3);
        expected.extend_from_slice(b"tail");
        expected.extend_from_slice(&data[1..4]);
        assert_eq!(q.queue.len(), 5);
        assert_eq!(q.len(), expected.len());
        for step in [1, 2, 3, 7, 64, 999, 1000, 1001, usize::MAX] {
            let mut copy = SendQueue::default();
            for segment in &q.queue {
                match &segment.body {
                    Body::Memory(bytes) => copy.push(segment.head(), bytes.clone()),
                    Body::File(r) => {
                        copy.push(segment.head(), Bytes::new());
                        copy.push_file(r.file.clone(), r.offset, r.len);
                    }
                }
            }
            assert_eq!(copy.len(), expected.len());
            assert!(write_out(&mut copy, step) == expected, "step {step}");
        }
    }

    #[test]
    fn gathering_stops_at_a_file_region_after_its_head() {
        let file = TempFile::new(&[1; 100]);
        let mut q = SendQueue::default();
        q.push(b"a", Bytes::from_static(b"b"));
        q.push(b"c", Bytes::new());
        q.push_file(file.1.clone(), 0, 100);
        q.push(b"d", Bytes::from_static(b"e"));
        assert!(q.front_file().is_none());
        let mut parts = Vec::new();
        assert_eq!(q.pin_front(100, |p| parts.push(p.to_vec())), 3);
        assert_eq!(parts, [&b"a"[..], b"b", b"c"]);
        let mut slices = Vec::new();
        q.front_slices(100, &mut slices);
        assert_eq!(slices.len(), 3);
        drop(slices);
        // Pushed while pinned: the pinned header-only segment already holds a region, and a
        // new region never joins a pinned segment.
        q.push(b"f", Bytes::new());
        q.unpin(3);
        let region = q.front_file().expect("file bytes are next");
        assert_eq!((region.offset, region.len), (0, 100));
        assert_eq!(q.pin_file().map(|r| r.len), Some(100));
        q.unpin(60);
        assert_eq!(q.front_file().map(|r| (r.offset, r.len)), Some((60, 40)));
        assert_eq!(q.len(), 40 + 2 + 1);
        assert!(q.pin_file().is_some());
        q.unpin(40);
        assert!(q.front_file().is_none());
        assert!(q.pin_file().is_none());
        q.advance(3);
        assert!(q.is_empty());
    }

    #[test]
    fn closing_keeps_a_pinned_file_region_until_its_write_completes() {
        let file = TempFile::new(&[2; 1000]);
        let mut q = SendQueue::default();
        q.push_file(file.1.clone(), 0, 1000);
        q.push(b"x", Bytes::from_static(b"y"));
        q.pin_file().unwrap();
        q.push(b"z", Bytes::new());
        q.push_file(file.1.clone(), 0, 10);
        q.clear();
        assert_eq!(q.len(), 1000);
        assert_eq!(q.queue.len(), 1);
        q.unpin(10);
        assert_eq!(q.len(), 990);
        assert_eq!(q.front_file().map(|r| (r.offset, r.len)), Some((10, 990)));
        q.clear();
        assert!(q.is_empty() && q.queue.is_empty());
        // An empty region queues nothing.
        q.push_file(file.1.clone(), 5000, 0);
        assert!(q.is_empty() && q.queue.is_empty());
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
