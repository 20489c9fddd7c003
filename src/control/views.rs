//! What the control plane knows of the data plane: snapshots the workers and the hub hand over
//! on request, plus the counters each worker publishes. Plain data, no behaviour: `api.rs`
//! renders it as SRS's JSON and `metrics.rs` as Prometheus text.

use std::net::IpAddr;

/// One client connection, as its worker sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientView {
    /// SRS-style short id (also in the logs).
    pub id: String,
    pub worker: usize,
    pub ip: IpAddr,
    /// The vhost name the client's stream is filed under (empty before publish/play).
    pub vhost: String,
    pub app: String,
    /// The stream name, without extension.
    pub stream: String,
    /// The hub stream it publishes or plays, if any.
    pub stream_id: Option<u64>,
    /// SRS's `name`: the stream name as requested (`cap`, or `cap.flv` over HTTP).
    pub name: String,
    pub tc_url: String,
    pub page_url: String,
    pub swf_url: String,
    /// SRS's client `type`: `fmle-publish`, `rtmp-play`, `flv-play`, `ws-flv-play`,
    /// `ts-play`, `aac-play`, `mp3-play`, `static`, or `unknown` before it asked for anything.
    pub kind: &'static str,
    pub publish: bool,
    /// Seconds since it connected.
    pub alive_s: f64,
    pub send_bytes: u64,
    pub recv_bytes: u64,
    /// Average rates over the last 30 s (kbit/s), as SRS's `kbps.send_30s`/`recv_30s`.
    pub send_kbps_30s: u64,
    pub recv_kbps_30s: u64,
}

/// Codec details from a stream's video sequence header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoView {
    /// `H264`, `H265`, `AV1`, ...
    pub codec: &'static str,
    /// `Baseline`, `Main`, `High`, ... (SRS's spelling).
    pub profile: String,
    /// `3.1` etc.
    pub level: String,
    pub width: u32,
    pub height: u32,
}

/// Codec details from a stream's audio sequence header (or first frame).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioView {
    /// `AAC`, `MP3`, `Opus`.
    pub codec: &'static str,
    pub sample_rate: u32,
    pub channels: u8,
    /// `LC`, `HE`, ... (empty when not AAC).
    pub profile: String,
}

/// One stream, as the hub sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamView {
    pub id: u64,
    pub vhost: String,
    pub app: String,
    pub name: String,
    /// The publisher's tcUrl (empty while nobody publishes).
    pub tc_url: String,
    /// When it was created or last started publishing (Unix ms), SRS's `live_ms`.
    pub live_ms: u64,
    /// Video frames received since publishing started.
    pub frames: u64,
    /// The publishing client's id.
    pub publisher: Option<String>,
    pub video: Option<VideoView>,
    pub audio: Option<AudioView>,
}

/// Totals a worker publishes for `/metrics` (plain integers, summed at scrape).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerCounters {
    pub rtmp_connections: u64,
    pub http_connections: u64,
    pub srt_connections: u64,
    /// Datagrams on the SRT port that were not SRT or belonged to no connection.
    pub srt_dropped_datagrams: u64,
    pub rtc_connections: u64,
    /// Datagrams on the WebRTC port that belonged to no session (or were not WebRTC).
    pub rtc_dropped_datagrams: u64,
    /// Times a viewer fell so far behind it skipped to a newer keyframe.
    pub viewer_skips: u64,
    pub viewer_skipped_frames: u64,
    /// Connections refused (max_connections, per-IP limit, security, hooks).
    pub refused: u64,
    /// HLS/DASH playlists, segments and parts served.
    pub hls_requests: u64,
    pub io: sluice_ring::IoCounters,
}

/// Everything `/api/v1/...` needs at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub clients: Vec<ClientView>,
    pub streams: Vec<StreamView>,
}

/// A stream's id as the API and hooks show it (`vid-...`, SRS's shape).
pub fn stream_id(id: u64) -> String {
    format!("vid-{}", super::short_id(id ^ 0x5354_5245_414d, 7))
}

/// A vhost's id as the API shows it, stable for its name.
pub fn vhost_id(name: &str) -> String {
    // FNV-1a: stable across runs, unlike the std hasher.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("vid-{}", super::short_id(hash, 7))
}
