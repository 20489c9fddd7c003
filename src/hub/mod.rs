//! The hub: the registry of live streams, shared by all workers.
//!
//! A stream has at most one publisher (on some worker) and viewers on any worker. The
//! publisher's worker appends each frame — already serialized for RTMP — to the stream's shared
//! log and wakes each *worker* that has viewers, once per batch, not once per viewer. A woken
//! worker copies the new frames (refcount bumps, no bytes) into its own mirror of the stream
//! ([`local::LocalStream`]) and writes them to its local viewers with no further locking.
//!
//! Locks are taken per frame (publisher side) and per wake-up (viewer side), never per viewer.
//! Lock order: the registry map, then a stream's state.

pub mod frame;
pub mod gop;
pub mod info;
pub mod local;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

pub use frame::{Frame, FrameKind};

use crate::control::views::{AudioView, StreamView, VideoView};

/// Now, in Unix milliseconds (for the API's `live_ms`).
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
use gop::GopCache;

/// Frames kept in a stream's shared log for workers to copy. Workers copy within a wake-up
/// (milliseconds), so this only matters for a stalled worker, which then resyncs at a keyframe.
const LOG_CAPACITY: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamKey {
    pub vhost: String,
    pub app: String,
    pub stream: String,
}

impl std::fmt::Display for StreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.vhost, self.app, self.stream)
    }
}

/// Per-stream settings, fixed when the stream is created (from its vhost).
#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub chunk_size: u32,
    pub gop_cache: bool,
    pub gop_cache_max_frames: usize,
    pub gop_cache_max_bytes: usize,
}

impl StreamSettings {
    pub fn for_vhost(vhost: &crate::config::VhostConfig) -> StreamSettings {
        StreamSettings {
            chunk_size: vhost.chunk_size,
            gop_cache: vhost.play.gop_cache,
            gop_cache_max_frames: vhost.play.gop_cache_max_frames,
            gop_cache_max_bytes: vhost.play.gop_cache_max_bytes,
        }
    }
}

/// Who publishes a stream: a client serial number unique in the process.
pub type ClientSerial = u64;

/// The publisher of a stream, as the API reports it.
#[derive(Debug, Clone)]
pub struct Publisher {
    pub serial: ClientSerial,
    /// The client's id (logs, API).
    pub id: String,
    pub tc_url: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PublishError {
    #[error("stream {0} is busy: another client is publishing it")]
    Busy(String),
}

pub struct Hub {
    streams: Mutex<HashMap<StreamKey, Arc<Stream>>>,
    /// Salt for stream ids: an id is a hash of the stream's key, so it is known before the
    /// stream exists (a hook's `stream_id` for a publish not yet allowed) and stays the same
    /// while the process runs, across republishes.
    ids: std::hash::RandomState,
    workers: usize,
}

impl Hub {
    pub fn new(workers: usize) -> Hub {
        Hub {
            streams: Mutex::new(HashMap::new()),
            ids: std::hash::RandomState::new(),
            workers,
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<StreamKey, Arc<Stream>>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get_or_create(
        &self,
        map: &mut HashMap<StreamKey, Arc<Stream>>,
        key: StreamKey,
        settings: &StreamSettings,
    ) -> Arc<Stream> {
        map.entry(key.clone())
            .or_insert_with(|| {
                Arc::new(Stream::new(
                    self.stream_id(&key),
                    key,
                    settings.clone(),
                    self.workers,
                ))
            })
            .clone()
    }

    /// Claims the stream for a publisher; a second publisher gets [`PublishError::Busy`] and
    /// the first is untouched.
    pub fn publish(
        &self,
        key: StreamKey,
        settings: &StreamSettings,
        who: Publisher,
    ) -> Result<Arc<Stream>, PublishError> {
        let mut map = self.map();
        let stream = self.get_or_create(&mut map, key, settings);
        let mut state = stream.state();
        if state.publisher.is_some() {
            return Err(PublishError::Busy(stream.key.to_string()));
        }
        state.publisher = Some(who);
        state.live_ms = unix_ms();
        state.frames = 0;
        drop(state);
        Ok(stream)
    }

    /// Ends a publish. Viewers stay, waiting for the next publisher.
    pub fn unpublish(&self, stream: &Arc<Stream>, who: ClientSerial) {
        let map = self.map();
        let mut state = stream.state();
        if state.publisher.as_ref().is_some_and(|p| p.serial == who) {
            state.publisher = None;
            state.video = None;
            state.audio = None;
            // A new publisher may change codecs: new viewers must not get stale headers.
            state.metadata = None;
            state.video_header = None;
            state.audio_header = None;
            state.gop.clear();
        }
        drop(state);
        self.forget_if_idle(map, stream);
    }

    /// Registers a viewer on `worker` and returns the stream (created if nobody publishes it
    /// yet: players may arrive first).
    pub fn join(&self, key: StreamKey, settings: &StreamSettings, worker: usize) -> Arc<Stream> {
        let mut map = self.map();
        let stream = self.get_or_create(&mut map, key, settings);
        stream.state().workers[worker].viewers += 1;
        stream
    }

    pub fn leave(&self, stream: &Arc<Stream>, worker: usize) {
        let map = self.map();
        {
            let mut state = stream.state();
            let interest = &mut state.workers[worker];
            interest.viewers = interest.viewers.saturating_sub(1);
        }
        self.forget_if_idle(map, stream);
    }

    fn forget_if_idle(
        &self,
        mut map: MutexGuard<'_, HashMap<StreamKey, Arc<Stream>>>,
        stream: &Arc<Stream>,
    ) {
        let idle = {
            let state = stream.state();
            state.publisher.is_none() && state.workers.iter().all(|w| w.viewers == 0)
        };
        if idle && map.get(&stream.key).is_some_and(|s| Arc::ptr_eq(s, stream)) {
            map.remove(&stream.key);
        }
    }

    /// Every stream as the API reports it.
    pub fn stream_views(&self) -> Vec<StreamView> {
        let streams: Vec<Arc<Stream>> = self.map().values().cloned().collect();
        let mut views: Vec<StreamView> = streams.iter().map(|s| s.view()).collect();
        views.sort_by(|a, b| (&a.vhost, &a.app, &a.name).cmp(&(&b.vhost, &b.app, &b.name)));
        views
    }

    /// The id of the stream `key`, whether or not it exists yet.
    pub fn stream_id(&self, key: &StreamKey) -> u64 {
        use std::hash::BuildHasher;
        self.ids.hash_one(key)
    }

    /// Whether someone publishes `key` now.
    pub fn is_published(&self, key: &StreamKey) -> bool {
        self.map()
            .get(key)
            .is_some_and(|stream| stream.is_published())
    }

    /// Streams currently known (published or awaited).
    #[cfg(test)]
    pub fn stream_count(&self) -> usize {
        self.map().len()
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct WorkerInterest {
    viewers: u32,
    /// Woken for new frames and not yet synced: no need to wake it again.
    notified: bool,
}

pub struct Stream {
    pub id: u64,
    pub key: StreamKey,
    pub settings: StreamSettings,
    state: Mutex<StreamState>,
    /// An HTTP-TS viewer joined: the publisher muxes every frame to TS from now on.
    wants_ts: AtomicBool,
    /// A WebRTC viewer joined: the publisher adds Opus frames (transcoded from its AAC when it
    /// has no Opus of its own) from now on.
    wants_opus: AtomicBool,
    /// A viewer asked for a keyframe (a WebRTC viewer's PLI/FIR); the publisher passes the
    /// request on if its protocol can (WebRTC).
    keyframe_wanted: AtomicBool,
}

pub struct StreamState {
    publisher: Option<Publisher>,
    /// When the stream was created or last started publishing (Unix ms).
    live_ms: u64,
    /// Video frames since publishing started.
    frames: u64,
    video: Option<VideoView>,
    audio: Option<AudioView>,
    metadata: Option<Arc<Frame>>,
    video_header: Option<Arc<Frame>>,
    audio_header: Option<Arc<Frame>>,
    gop: GopCache,
    /// Recent frames; `log[i]` has sequence number `log_base + i`.
    log: VecDeque<Arc<Frame>>,
    log_base: u64,
    workers: Vec<WorkerInterest>,
}

/// What a new viewer is sent before live frames: metadata, sequence headers, the GOP cache.
pub struct JoinStart {
    pub frames: Vec<Arc<Frame>>,
    /// The GOP cache gave it a keyframe to start on.
    pub has_keyframe: bool,
}

impl Stream {
    fn new(id: u64, key: StreamKey, settings: StreamSettings, workers: usize) -> Stream {
        let gop = GopCache::new(
            settings.gop_cache,
            settings.gop_cache_max_frames,
            settings.gop_cache_max_bytes,
        );
        Stream {
            id,
            key,
            settings,
            state: Mutex::new(StreamState {
                publisher: None,
                live_ms: unix_ms(),
                frames: 0,
                video: None,
                audio: None,
                metadata: None,
                video_header: None,
                audio_header: None,
                gop,
                log: VecDeque::new(),
                log_base: 0,
                workers: vec![WorkerInterest::default(); workers],
            }),
            wants_ts: AtomicBool::new(false),
            wants_opus: AtomicBool::new(false),
            keyframe_wanted: AtomicBool::new(false),
        }
    }

    fn state(&self) -> MutexGuard<'_, StreamState> {
        // A panic elsewhere must not take every stream down with it: the state is consistent
        // between statements, so keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a publisher's frame. Returns the workers to wake (via `wake`), each at most
    /// once until it syncs.
    pub fn push(&self, frame: Arc<Frame>, wake: &mut Vec<usize>) {
        let mut state = self.state();
        if frame.sequence_header {
            match frame.kind {
                FrameKind::Video => {
                    state.video = info::video_view(&frame);
                    state.video_header = Some(frame.clone());
                }
                FrameKind::Audio => {
                    state.audio = info::audio_view(&frame);
                    state.audio_header = Some(frame.clone());
                }
                _ => {}
            }
        } else if frame.kind == FrameKind::Video {
            state.frames += 1;
        } else if frame.kind == FrameKind::Audio && state.audio.is_none() {
            // MP3 has no sequence header: read it from a frame.
            state.audio = info::audio_view(&frame);
        }
        if frame.kind == FrameKind::Metadata {
            state.metadata = Some(frame.clone());
        }
        state.gop.push(&frame);
        state.log.push_back(frame);
        if state.log.len() > LOG_CAPACITY {
            state.log.pop_front();
            state.log_base += 1;
        }
        for (worker, interest) in state.workers.iter_mut().enumerate() {
            if interest.viewers > 0 && !interest.notified {
                interest.notified = true;
                wake.push(worker);
            }
        }
    }

    /// The next sequence number the log will assign.
    fn head(state: &StreamState) -> u64 {
        state.log_base + state.log.len() as u64
    }

    /// Copies frames from `from` to the head of the log into `into` and clears `worker`'s
    /// notification. Returns the sequence number of the first frame copied, which is larger
    /// than `from` if the worker fell so far behind that the log no longer has them.
    pub fn copy_new(&self, worker: usize, from: u64, into: &mut VecDeque<Arc<Frame>>) -> u64 {
        Stream::copy_locked(&mut self.state(), worker, from, into)
    }

    fn copy_locked(
        state: &mut StreamState,
        worker: usize,
        from: u64,
        into: &mut VecDeque<Arc<Frame>>,
    ) -> u64 {
        state.workers[worker].notified = false;
        let start = from.max(state.log_base);
        let skip = (start - state.log_base) as usize;
        into.extend(state.log.iter().skip(skip).cloned());
        start
    }

    /// For a viewer joining on `worker`: brings the worker's mirror up to date (as
    /// [`Stream::copy_new`]) and, under the same lock, takes what the viewer starts with —
    /// metadata, sequence headers, the GOP cache — so nothing is missed or sent twice between
    /// the start and the live frames that follow the mirror's end.
    pub fn attach(
        &self,
        worker: usize,
        from: u64,
        into: &mut VecDeque<Arc<Frame>>,
    ) -> (JoinStart, u64) {
        let mut state = self.state();
        let start = Stream::copy_locked(&mut state, worker, from, into);
        let mut frames: Vec<Arc<Frame>> = Vec::with_capacity(3 + state.gop.frames().len());
        frames.extend(state.metadata.iter().cloned());
        frames.extend(state.video_header.iter().cloned());
        frames.extend(state.audio_header.iter().cloned());
        frames.extend(state.gop.frames().iter().cloned());
        let has_keyframe = state.gop.frames().iter().any(|f| f.keyframe);
        (
            JoinStart {
                frames,
                has_keyframe,
            },
            start,
        )
    }

    pub fn head_seq(&self) -> u64 {
        Stream::head(&self.state())
    }

    /// This stream for the API.
    pub fn view(&self) -> StreamView {
        let state = self.state();
        StreamView {
            id: self.id,
            vhost: self.key.vhost.clone(),
            app: self.key.app.clone(),
            name: self.key.stream.clone(),
            tc_url: state
                .publisher
                .as_ref()
                .map_or(String::new(), |p| p.tc_url.clone()),
            live_ms: state.live_ms,
            frames: state.frames,
            publisher: state.publisher.as_ref().map(|p| p.id.clone()),
            video: state.video.clone(),
            audio: state.audio.clone(),
        }
    }

    /// Asks the publisher to mux frames to MPEG-TS (for HTTP-TS viewers), from its next frame.
    pub fn want_ts(&self) {
        self.wants_ts.store(true, Ordering::Relaxed);
    }

    pub fn wants_ts(&self) -> bool {
        self.wants_ts.load(Ordering::Relaxed)
    }

    /// Asks the publisher for Opus frames (for WebRTC viewers), from its next audio frame.
    pub fn want_opus(&self) {
        self.wants_opus.store(true, Ordering::Relaxed);
    }

    pub fn wants_opus(&self) -> bool {
        self.wants_opus.load(Ordering::Relaxed)
    }

    /// A viewer needs a keyframe now (it lost packets it could not recover).
    pub fn request_keyframe(&self) {
        self.keyframe_wanted.store(true, Ordering::Relaxed);
    }

    /// Takes a pending keyframe request (for the publisher).
    pub fn take_keyframe_request(&self) -> bool {
        self.keyframe_wanted.load(Ordering::Relaxed)
            && self.keyframe_wanted.swap(false, Ordering::Relaxed)
    }

    /// The current video and audio sequence headers (to prime a remuxer started mid-stream).
    pub fn sequence_headers(&self) -> [Option<Arc<Frame>>; 2] {
        let state = self.state();
        [state.video_header.clone(), state.audio_header.clone()]
    }

    pub fn is_published(&self) -> bool {
        self.state().publisher.is_some()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn settings() -> StreamSettings {
        StreamSettings {
            chunk_size: 60_000,
            gop_cache: true,
            gop_cache_max_frames: 2500,
            gop_cache_max_bytes: 1 << 24,
        }
    }

    fn key(name: &str) -> StreamKey {
        StreamKey {
            vhost: "__defaultVhost__".into(),
            app: "live".into(),
            stream: name.into(),
        }
    }

    fn publisher(serial: ClientSerial) -> Publisher {
        Publisher {
            serial,
            id: format!("c{serial}"),
            tc_url: String::new(),
        }
    }

    fn frame(body: &'static [u8]) -> Arc<Frame> {
        Arc::new(Frame::new(FrameKind::Video, 0, Bytes::from_static(body), 60_000).unwrap())
    }

    #[test]
    fn second_publisher_is_busy_and_first_untouched() {
        let hub = Hub::new(2);
        let s = hub.publish(key("a"), &settings(), publisher(1)).unwrap();
        assert_eq!(
            hub.publish(key("a"), &settings(), publisher(2)).err(),
            Some(PublishError::Busy("__defaultVhost__/live/a".into()))
        );
        assert!(s.is_published());
        hub.unpublish(&s, 2); // not the publisher: ignored
        assert!(s.is_published());
        hub.unpublish(&s, 1);
        assert_eq!(hub.stream_count(), 0);
    }

    #[test]
    fn viewer_before_publisher_shares_the_stream() {
        let hub = Hub::new(2);
        let viewed = hub.join(key("b"), &settings(), 1);
        let published = hub.publish(key("b"), &settings(), publisher(7)).unwrap();
        assert!(Arc::ptr_eq(&viewed, &published));
        let mut wake = Vec::new();
        published.push(frame(&[0x17, 0, 0, 0, 0, 1]), &mut wake);
        published.push(frame(&[0x17, 1, 0, 0, 0, 1]), &mut wake);
        assert_eq!(wake, vec![1], "worker 1 woken once for two frames");
        let mut mirror = VecDeque::new();
        assert_eq!(viewed.copy_new(1, 0, &mut mirror), 0);
        assert_eq!(mirror.len(), 2);
        wake.clear();
        published.push(frame(&[0x27, 1, 0, 0, 0, 1]), &mut wake);
        assert_eq!(wake, vec![1], "woken again after syncing");
        hub.unpublish(&published, 7);
        assert_eq!(hub.stream_count(), 1, "the viewer keeps it");
        hub.leave(&viewed, 1);
        assert_eq!(hub.stream_count(), 0);
    }

    #[test]
    fn join_start_has_headers_then_gop() {
        let hub = Hub::new(1);
        let s = hub.publish(key("c"), &settings(), publisher(1)).unwrap();
        let mut wake = Vec::new();
        s.push(frame(&[0x17, 0, 0, 0, 0, 1]), &mut wake); // sequence header
        s.push(frame(&[0x17, 1, 0, 0, 0, 1]), &mut wake); // keyframe
        s.push(frame(&[0x27, 1, 0, 0, 0, 1]), &mut wake);
        let mut mirror = VecDeque::new();
        let (start, first) = s.attach(0, 3, &mut mirror);
        assert_eq!(first, 3);
        assert!(mirror.is_empty());
        assert!(start.has_keyframe);
        assert_eq!(start.frames.len(), 3);
        assert!(start.frames[0].sequence_header && start.frames[1].keyframe);
    }

    #[test]
    fn stalled_worker_resyncs_past_the_log() {
        let hub = Hub::new(1);
        let s = hub.publish(key("d"), &settings(), publisher(1)).unwrap();
        let mut wake = Vec::new();
        for _ in 0..LOG_CAPACITY + 10 {
            s.push(frame(&[0x27, 1, 0, 0, 0, 1]), &mut wake);
        }
        let mut mirror = VecDeque::new();
        assert_eq!(s.copy_new(0, 0, &mut mirror), 10);
        assert_eq!(mirror.len(), LOG_CAPACITY);
    }
}
