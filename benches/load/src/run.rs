//! The load generator's event loop: one driver (io_uring or epoll, like the server), an
//! optional in-process publisher, and any number of RTMP, HTTP-FLV, HLS, SRT or WebRTC (WHEP)
//! players, all on this thread.
//!
//! Players keep only the first bytes of each media message (`ChunkReaderConfig::media_prefix`):
//! enough to classify it and read the synthetic frame number, so receiving costs the kernel's
//! copy into our buffers and a header parse, not a second copy of every payload.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use sluice_proto::rtmp::chunk::ChunkReaderConfig;
use sluice_proto::rtmp::{
    ClientConfig, ClientEvent, ClientOutput, ClientSession, HandshakeKind, MediaKind, RtmpUrl,
};
use sluice_ring::{
    Backend, CloseReason, ConnId, Driver, DriverConfig, Event, INLINE_HEAD, RecvBuf,
};

use crate::flv::{FlvEvent, FlvReader};
use crate::hls;
use crate::procstat;
use crate::source::{Source, read_marker};
use crate::srt::SrtPlay;
use crate::stats::{Histogram, ViewerStats};
use crate::udp::UdpViewers;
use crate::whep::WhepPlay;
use crate::whip::{WhipCounters, WhipPublisher, WhipTarget};

/// Bytes of each media payload players keep: the FLV header and the synthetic marker.
const MEDIA_PREFIX: u32 = 32;
/// Most connections opened per loop turn, so a large ramp doesn't starve the others.
const CONNECTS_PER_TURN: usize = 256;
/// A player that is not playing this long after connecting has failed.
const PLAY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long send times of synthetic frames are kept for latency matching.
const SENT_HISTORY: usize = 30 * 120;
/// The viewer number of the HLS start-up probe.
const PROBE: usize = usize::MAX;
/// How long HLS viewers wait for the playlist to list enough segments before starting anyway.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// How players play.
pub enum PlayProtocol {
    Rtmp,
    /// HTTP-FLV: GET `path` with this Host header.
    Flv {
        host: String,
        path: String,
    },
    /// HLS: `path` is the media playlist.
    Hls {
        host: String,
        path: String,
    },
    /// SRT: callers of `play_addr` with this stream id, asking for this TSBPD latency.
    Srt {
        stream_id: String,
        latency: Duration,
    },
    /// WebRTC: WHEP offers POSTed to `path` on `play_addr` with this Host header.
    Whep {
        host: String,
        path: String,
    },
}

pub struct Plan {
    pub backend: Backend,
    /// The RTMP URL players (RTMP) and the in-process publisher use.
    pub url: RtmpUrl,
    /// Where the RTMP URL points.
    pub addr: SocketAddr,
    pub protocol: PlayProtocol,
    /// Where players connect (the RTMP address, or the HTTP server's).
    pub play_addr: SocketAddr,
    pub viewers: usize,
    /// New players per second (0 = as fast as possible).
    pub ramp_per_s: f64,
    /// Publish this source to the URL from this process.
    pub publish: Option<Source>,
    /// ...over WHIP to this endpoint instead of RTMP.
    pub publish_whip: Option<WhipTarget>,
    /// Measurement starts this long after the last player connected...
    pub warmup: Duration,
    /// ...and lasts this long.
    pub measure: Duration,
    pub complex_handshake: bool,
    /// Server processes whose CPU and memory to sample (`/proc`), if any.
    pub server_pids: Vec<u32>,
    /// UDP segmentation offload on our sockets: `None` leaves the driver's default.
    pub udp_gso: Option<bool>,
}

pub struct Outcome {
    pub viewers: Vec<ViewerStats>,
    pub window: (Instant, Instant),
    pub latency: Histogram,
    pub publisher_failure: Option<String>,
    /// Server samples: before any player connected, at the window's start and at its end.
    pub server: [Option<procstat::Sample>; 3],
    /// This process's own samples at the window's start and end: a load generator near 100 %
    /// of its core is measuring itself, not the server.
    pub own: [Option<procstat::Sample>; 2],
    /// Whether our UDP sends used GSO (the driver may refuse to turn it on).
    pub udp_gso: bool,
    /// WHEP viewers: `DELETE`s sent at the end, and answered.
    pub whep_deletes: (usize, usize),
    /// The WHIP publisher's counters (`--publish-whip`).
    pub whip: Option<WhipCounters>,
}

pub fn resolve(url: &RtmpUrl) -> Result<SocketAddr, String> {
    (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", url.host))?
        .next()
        .ok_or_else(|| format!("{} has no address", url.host))
}

enum PlayerClient {
    Rtmp(Box<ClientSession>),
    Flv(Box<FlvReader>),
    /// One of an HLS viewer's connections; the viewer is `hls.viewers[stats]`.
    Hls,
}

struct Player {
    client: PlayerClient,
    /// The viewer: its index in `stats` (or [`PROBE`]).
    stats: usize,
    /// Ids are reused once closed, and an HLS viewer may open a connection before the `Closed`
    /// of its last one is handled: events are matched against the whole id.
    conn: ConnId,
}

/// `hls-play`: the viewers, the start-up probe and their timers.
struct HlsPlay {
    /// The playlist request, and the pieces around a segment URI: shared by every viewer, so a
    /// request costs refcounts and a URI copied inline into the send queue.
    playlist_request: Bytes,
    get_dir: Bytes,
    get_root: Bytes,
    request_end: Bytes,
    /// Indexed like `Runner::stats`.
    viewers: Vec<hls::Viewer>,
    /// Reloads the playlist until it lists enough segments to start at the live edge, so
    /// viewers join a running stream, as in life.
    probe: Option<(hls::Viewer, ViewerStats)>,
    probe_started: Option<Instant>,
    ready: bool,
    /// (when, viewer); an entry is live if it equals the viewer's `wake_at`.
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
}

impl HlsPlay {
    fn new(host: &str, path: &str) -> HlsPlay {
        let end =
            format!(" HTTP/1.1\r\nHost: {host}\r\nUser-Agent: sluice-load\r\nAccept: */*\r\n\r\n");
        let without_query = path.split('?').next().unwrap_or(path);
        let dir = &without_query[..without_query.rfind('/').map_or(0, |i| i + 1)];
        HlsPlay {
            playlist_request: Bytes::from(format!("GET {path}{end}")),
            get_dir: Bytes::from(format!("GET {dir}")),
            get_root: Bytes::from_static(b"GET "),
            request_end: Bytes::from(end),
            viewers: Vec::new(),
            probe: None,
            probe_started: None,
            ready: false,
            timers: BinaryHeap::new(),
        }
    }
}

/// An HLS viewer (or the probe) and its stats.
fn hls_viewer<'a>(
    viewers: &'a mut [hls::Viewer],
    probe: &'a mut Option<(hls::Viewer, ViewerStats)>,
    stats: &'a mut [ViewerStats],
    v: usize,
) -> Option<(&'a mut hls::Viewer, &'a mut ViewerStats)> {
    if v == PROBE {
        probe.as_mut().map(|(viewer, stats)| (viewer, stats))
    } else {
        Some((viewers.get_mut(v)?, stats.get_mut(v)?))
    }
}

fn unix_now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// How the in-process publisher sends.
enum PublishVia {
    Rtmp {
        conn: ConnId,
        session: Box<ClientSession>,
    },
    Whip(Box<WhipPublisher>),
}

struct Publisher {
    via: PublishVia,
    source: Source,
    pending: Option<crate::source::Outgoing>,
    started: Option<Instant>,
    /// Send instants of synthetic frames: `sent[i]` is frame `sent_base + i`.
    sent: VecDeque<Instant>,
    sent_base: u64,
    failure: Option<String>,
}

impl Publisher {
    /// The RTMP publisher's connection.
    fn rtmp_conn(&self) -> Option<ConnId> {
        match &self.via {
            PublishVia::Rtmp { conn, .. } => Some(*conn),
            PublishVia::Whip(_) => None,
        }
    }

    fn whip(&mut self) -> Option<&mut WhipPublisher> {
        match &mut self.via {
            PublishVia::Whip(whip) => Some(whip),
            PublishVia::Rtmp { .. } => None,
        }
    }

    fn failure(&self) -> Option<&String> {
        match &self.via {
            PublishVia::Whip(whip) => self.failure.as_ref().or(whip.failure.as_ref()),
            PublishVia::Rtmp { .. } => self.failure.as_ref(),
        }
    }
}

pub struct Runner {
    driver: Driver,
    plan: Plan,
    players: Vec<Option<Player>>,
    stats: Vec<ViewerStats>,
    publisher: Option<Publisher>,
    latency: Histogram,
    window: (Instant, Instant),
    started: Instant,
    opened: usize,
    all_open_at: Option<Instant>,
    server: [Option<procstat::Sample>; 3],
    own: [Option<procstat::Sample>; 2],
    /// Reused for FLV players' tags.
    flv_events: Vec<FlvEvent>,
    hls: Option<HlsPlay>,
    srt: Option<SrtPlay>,
    whep: Option<WhepPlay>,
}

impl Runner {
    pub fn new(plan: Plan) -> Result<Runner, String> {
        let mut driver = Driver::new(
            plan.backend,
            &DriverConfig {
                recv_buffer_size: 64 * 1024,
                recv_buffers: 1024,
                // SRT viewers: every socket's receives draw on these (64 KiB each).
                udp_recv_buffers: 512,
                ..DriverConfig::default()
            },
        )
        .map_err(|e| format!("cannot start the {} driver: {e}", plan.backend))?;
        if let Some(gso) = plan.udp_gso {
            driver.set_udp_gso(gso);
        }
        let now = Instant::now();
        let srt = match &plan.protocol {
            PlayProtocol::Srt { stream_id, latency } => Some(SrtPlay::new(
                plan.play_addr,
                stream_id.clone(),
                *latency,
                PLAY_TIMEOUT,
            )),
            _ => None,
        };
        let hls = match &plan.protocol {
            PlayProtocol::Hls { host, path } => Some(HlsPlay::new(host, path)),
            _ => None,
        };
        let whep = match &plan.protocol {
            PlayProtocol::Whep { host, path } => Some(WhepPlay::new(
                plan.play_addr,
                host.clone(),
                path.clone(),
                PLAY_TIMEOUT,
            )?),
            _ => None,
        };
        Ok(Runner {
            whep,
            hls,
            srt,
            driver,
            players: Vec::new(),
            stats: Vec::with_capacity(plan.viewers),
            publisher: None,
            latency: Histogram::default(),
            // Placeholder until every player is connected.
            window: (
                now + Duration::from_secs(86_400),
                now + Duration::from_secs(86_400),
            ),
            started: now,
            opened: 0,
            all_open_at: None,
            server: [None; 3],
            own: [None; 2],
            flv_events: Vec::new(),
            plan,
        })
    }

    fn client_config(&self, mode: sluice_proto::rtmp::ClientMode) -> ClientConfig {
        let mut config = ClientConfig::for_url(mode, &self.plan.url);
        config.handshake = if self.plan.complex_handshake {
            HandshakeKind::Complex
        } else {
            HandshakeKind::Simple
        };
        config.random_seed = self.opened as u64;
        config
    }

    pub fn run(mut self) -> Outcome {
        self.server[0] = self.sample_server();
        if let Some(source) = self.plan.publish.take() {
            self.start_publisher(source);
        }
        let deadline_if_stuck = self.started
            + Duration::from_secs_f64(self.plan.viewers as f64 / self.plan.ramp_per_s.max(1.0))
            + PLAY_TIMEOUT
            + self.plan.warmup
            + self.plan.measure
            + Duration::from_secs(30)
            + if self.hls.is_some() {
                PROBE_TIMEOUT
            } else {
                Duration::ZERO
            };
        loop {
            let now = Instant::now();
            self.open_players(now);
            self.publish_due(now);
            if self.all_open_at.is_none() && self.opened == self.plan.viewers {
                self.all_open_at = Some(now);
                let start = now + self.plan.warmup;
                self.window = (start, start + self.plan.measure);
            }
            if self.own[0].is_none() && now >= self.window.0 {
                self.server[1] = self.sample_server();
                self.own[0] = procstat::sample(&[std::process::id()]);
            }
            let publisher_failed = self
                .publisher
                .as_ref()
                .is_some_and(|p| p.failure().is_some());
            if now >= self.window.1 || now >= deadline_if_stuck || publisher_failed {
                // Cut short: the window ends here.
                self.window = (self.window.0.min(now), self.window.1.min(now));
                self.server[2] = self.sample_server();
                self.own[1] = procstat::sample(&[std::process::id()]);
                break;
            }
            let timeout = self.next_wake(now).saturating_duration_since(now);
            if let Err(e) = self.driver.wait(Some(timeout)) {
                eprintln!("sluice-load: driver failed: {e}");
                break;
            }
            let now = Instant::now();
            while let Some(event) = self.driver.next_event() {
                self.handle(event, now);
            }
            self.hls_timers(now);
            if let Some(viewers) = udp_viewers(&mut self.srt, &mut self.whep) {
                viewers.timers(&mut self.driver, now, &mut self.stats);
                self.srt_frames();
            }
            self.whip_timers(now);
            self.check_play_timeouts(now);
        }
        let mut whep_deletes = (0, 0);
        if self.whep.is_some()
            || self
                .publisher
                .as_ref()
                .is_some_and(|p| p.rtmp_conn().is_none())
        {
            self.whep_shut_down();
            if let Some(whep) = &self.whep {
                whep_deletes = (whep.deletes_sent, whep.deletes_answered);
            }
        }
        if let Some(srt) = &mut self.srt {
            srt.shut_down(&mut self.driver, Instant::now(), &mut self.stats);
            srt.finish(&mut self.stats);
            self.flush_briefly();
        }
        let window = self.window;
        for stats in &mut self.stats {
            stats.finish(window);
        }
        let whip = self
            .publisher
            .as_mut()
            .and_then(|p| p.whip())
            .map(|w| w.counters.clone());
        Outcome {
            whip,
            viewers: self.stats,
            window,
            latency: self.latency,
            publisher_failure: self.publisher.and_then(|p| p.failure().cloned()),
            server: self.server,
            own: self.own,
            udp_gso: self.driver.udp_gso(),
            whep_deletes,
        }
    }

    fn sample_server(&self) -> Option<procstat::Sample> {
        if self.plan.server_pids.is_empty() {
            return None;
        }
        procstat::sample(&self.plan.server_pids)
    }

    fn next_wake(&self, now: Instant) -> Instant {
        let mut wake = now + Duration::from_millis(50);
        if self.opened < self.plan.viewers && !self.players_gated() {
            wake = wake.min(self.connect_due(self.opened));
        }
        if let Some(Reverse((at, _))) = self.hls.as_ref().and_then(|h| h.timers.peek()) {
            wake = wake.min(*at);
        }
        if let Some(at) = self.srt.as_ref().and_then(|s| s.next_wake()) {
            wake = wake.min(at);
        }
        if let Some(at) = self.whep.as_ref().and_then(|s| s.next_wake()) {
            wake = wake.min(at);
        }
        if let Some(p) = &self.publisher
            && let (Some(started), Some(next)) = (p.started, &p.pending)
        {
            wake = wake.min(started + Duration::from_millis(next.timestamp));
        }
        if let Some(PublishVia::Whip(whip)) = self.publisher.as_ref().map(|p| &p.via)
            && let Some(at) = whip.next_wake()
        {
            wake = wake.min(at);
        }
        wake.min(self.window.1).max(now)
    }

    /// HTTP and SRT players wait for the in-process publisher, HLS viewers for the probe.
    fn players_gated(&self) -> bool {
        let http = !matches!(self.plan.protocol, PlayProtocol::Rtmp);
        let waiting_publisher = self.publisher.as_ref().is_some_and(|p| p.started.is_none());
        (http && self.opened == 0 && waiting_publisher)
            || self.hls.as_ref().is_some_and(|h| !h.ready)
    }

    fn connect_due(&self, index: usize) -> Instant {
        if self.plan.ramp_per_s <= 0.0 {
            return self.started;
        }
        self.started + Duration::from_secs_f64(index as f64 / self.plan.ramp_per_s)
    }

    fn open_players(&mut self, now: Instant) {
        // HTTP servers answer 404 for a stream nobody publishes yet (RTMP players may wait):
        // start HTTP players once our publisher is on. SRT players too, so that they measure
        // the stream rather than the wait for it.
        let publishing = self.publisher.as_ref().map(|p| p.started);
        if matches!(
            self.plan.protocol,
            PlayProtocol::Flv { .. } | PlayProtocol::Srt { .. } | PlayProtocol::Whep { .. }
        ) && self.opened == 0
        {
            match publishing {
                Some(None) => return,
                Some(Some(started)) => self.started = self.started.max(started),
                None => {}
            }
        }
        if self.hls.as_ref().is_some_and(|h| !h.ready) {
            if publishing == Some(None) {
                return;
            }
            self.hls_probe(now);
            if self.hls.as_ref().is_some_and(|h| !h.ready) {
                return;
            }
        }
        let mut opened_now = 0;
        while self.opened < self.plan.viewers
            && self.connect_due(self.opened) <= now
            && opened_now < CONNECTS_PER_TURN
        {
            let stats_index = self.stats.len();
            self.stats.push(ViewerStats {
                started: Some(now),
                ..ViewerStats::default()
            });
            self.opened += 1;
            opened_now += 1;
            if let Some(h) = &mut self.hls {
                self.stats[stats_index].hls = Some(Default::default());
                h.viewers.push(hls::Viewer::new(now, false));
                self.hls_drive(stats_index, now, true);
                continue;
            }
            if let Some(viewers) = udp_viewers(&mut self.srt, &mut self.whep) {
                viewers.open(
                    &mut self.driver,
                    stats_index,
                    now,
                    &mut self.stats[stats_index],
                );
                continue;
            }
            match self.driver.connect(self.plan.play_addr) {
                Ok(conn) => {
                    let client = match &self.plan.protocol {
                        PlayProtocol::Rtmp => {
                            let mut config =
                                self.client_config(sluice_proto::rtmp::ClientMode::Play);
                            config.limits = ChunkReaderConfig {
                                media_prefix: Some(MEDIA_PREFIX),
                                ..config.limits
                            };
                            let mut session = ClientSession::new(config, now);
                            flush(&mut self.driver, conn, &mut session);
                            PlayerClient::Rtmp(Box::new(session))
                        }
                        PlayProtocol::Flv { host, path } => {
                            let request = FlvReader::request(host, path);
                            self.driver.send(conn, request.into());
                            PlayerClient::Flv(Box::default())
                        }
                        PlayProtocol::Hls { .. }
                        | PlayProtocol::Srt { .. }
                        | PlayProtocol::Whep { .. } => {
                            unreachable!("opened above")
                        }
                    };
                    let index = conn.index();
                    if self.players.len() <= index {
                        self.players.resize_with(index + 1, || None);
                    }
                    self.players[index] = Some(Player {
                        client,
                        stats: stats_index,
                        conn,
                    });
                }
                Err(e) => self.stats[stats_index].failure = Some(format!("connect: {e}")),
            }
        }
    }

    fn start_publisher(&mut self, source: Source) {
        let now = Instant::now();
        let via = if let Some(target) = self.plan.publish_whip.clone() {
            WhipPublisher::open(&mut self.driver, target, PLAY_TIMEOUT, now)
                .map(|whip| PublishVia::Whip(Box::new(whip)))
                .map_err(|e| format!("publisher: {e}"))
        } else {
            let config = self.client_config(sluice_proto::rtmp::ClientMode::Publish);
            let mut session = ClientSession::new(config, now);
            match self.driver.connect(self.plan.addr) {
                Ok(conn) => {
                    flush(&mut self.driver, conn, &mut session);
                    Ok(PublishVia::Rtmp {
                        conn,
                        session: Box::new(session),
                    })
                }
                Err(e) => Err(format!("publisher cannot connect: {e}")),
            }
        };
        match via {
            Ok(via) => {
                self.publisher = Some(Publisher {
                    via,
                    source,
                    pending: None,
                    started: None,
                    sent: VecDeque::new(),
                    sent_base: 0,
                    failure: None,
                })
            }
            Err(e) => eprintln!("sluice-load: {e}"),
        }
    }

    /// Sends every message whose time has come, in real time from the publish start.
    fn publish_due(&mut self, now: Instant) {
        let Some(p) = &mut self.publisher else {
            return;
        };
        let Some(started) = p.started else {
            return;
        };
        if let PublishVia::Whip(whip) = &mut p.via
            && whip.take_keyframe_request()
            && p.source.force_keyframe(p.pending.as_mut())
        {
            whip.forced_keyframe();
        }
        loop {
            let next = p.pending.take().unwrap_or_else(|| p.source.next());
            if started + Duration::from_millis(next.timestamp) > now {
                p.pending = Some(next);
                break;
            }
            match &mut p.via {
                PublishVia::Rtmp { session, .. } => {
                    let timestamp = next.timestamp as u32;
                    if let Err(e) = session.send_media(next.kind, timestamp, &next.payload) {
                        p.failure = Some(format!("publish: {e}"));
                        break;
                    }
                }
                PublishVia::Whip(whip) => {
                    whip.write(&mut self.driver, now, &next);
                }
            }
            if let Some(frame) = next.frame {
                if p.sent.is_empty() {
                    p.sent_base = frame;
                }
                p.sent.push_back(now);
                if p.sent.len() > SENT_HISTORY {
                    p.sent.pop_front();
                    p.sent_base += 1;
                }
            }
        }
        if let PublishVia::Rtmp { conn, session } = &mut p.via {
            flush(&mut self.driver, *conn, session);
        }
    }

    /// The WHIP publisher's timers; publishing starts once it is connected.
    fn whip_timers(&mut self, now: Instant) {
        let Some(p) = &mut self.publisher else {
            return;
        };
        let PublishVia::Whip(whip) = &mut p.via else {
            return;
        };
        whip.timers(&mut self.driver, now);
        if p.started.is_none() {
            p.started = whip.connected_at();
            if p.started.is_some() {
                self.publish_due(now);
            }
        }
    }

    fn handle(&mut self, event: Event, now: Instant) {
        match event {
            Event::Received { conn, buf } => {
                if let Some(whep) = &mut self.whep
                    && whep.owns(conn)
                {
                    whep.http_received(&mut self.driver, conn, buf, now, &mut self.stats);
                    self.srt_frames();
                    return;
                }
                if let Some(whip) = self.publisher.as_mut().and_then(|p| p.whip())
                    && whip.owns(conn)
                {
                    whip.http_received(&mut self.driver, conn, buf, now);
                    self.whip_timers(now);
                    return;
                }
                let data = self.driver.recv_data(&buf);
                if let Some(p) = &mut self.publisher
                    && let PublishVia::Rtmp { conn: c, session } = &mut p.via
                    && *c == conn
                {
                    let result = session.handle_input(now, data);
                    self.driver.release(buf);
                    if let Err(e) = result {
                        p.failure = Some(format!("publisher: {e}"));
                    }
                    self.publisher_events(now);
                    return;
                }
                let Some(Some(player)) = self.players.get_mut(conn.index()) else {
                    self.driver.release(buf);
                    return;
                };
                if player.conn != conn {
                    self.driver.release(buf);
                    return;
                }
                if let PlayerClient::Hls = player.client {
                    let viewer = player.stats;
                    self.hls_received(conn, viewer, buf, now);
                    return;
                }
                let stats = &mut self.stats[player.stats];
                if now >= self.window.0 && now <= self.window.1 {
                    stats.window_bytes += data.len() as u64;
                }
                let result = match &mut player.client {
                    PlayerClient::Rtmp(session) => {
                        session.handle_input(now, data).map_err(|e| e.to_string())
                    }
                    PlayerClient::Flv(reader) => {
                        if stats.playing.is_none() {
                            stats.playing = Some(now);
                        }
                        reader
                            .feed(data, &mut self.flv_events)
                            .map_err(|e| e.to_string())
                    }
                    PlayerClient::Hls => unreachable!("handled above"),
                };
                self.driver.release(buf);
                if let Err(e) = result {
                    stats
                        .failure
                        .get_or_insert_with(|| format!("protocol: {e}"));
                    self.driver.close(conn);
                    return;
                }
                match player.client {
                    PlayerClient::Rtmp(_) => self.player_events(conn, now),
                    PlayerClient::Flv(_) => self.flv_events(conn, now),
                    PlayerClient::Hls => {}
                }
            }
            Event::Datagrams {
                sock,
                peer,
                buf,
                segment_size,
            } if self
                .publisher
                .as_mut()
                .and_then(|p| p.whip())
                .is_some_and(|w| w.owns_sock(sock)) =>
            {
                if let Some(whip) = self.publisher.as_mut().and_then(|p| p.whip()) {
                    whip.datagrams(&mut self.driver, peer, buf, segment_size, now);
                }
                self.whip_timers(now);
            }
            Event::Datagrams {
                sock,
                peer,
                buf,
                segment_size,
            } => match udp_viewers(&mut self.srt, &mut self.whep) {
                Some(viewers) => {
                    viewers.datagrams(
                        &mut self.driver,
                        sock,
                        peer,
                        buf,
                        segment_size,
                        now,
                        &mut self.stats,
                        self.window,
                    );
                    self.srt_frames();
                }
                None => self.driver.release(buf),
            },
            Event::Closed { conn, reason } => {
                if let Some(whep) = &mut self.whep
                    && whep.closed(&mut self.driver, conn, reason, now, &mut self.stats)
                {
                    self.srt_frames();
                    return;
                }
                if let Some(srt) = &mut self.srt
                    && srt.closed(&mut self.driver, conn, reason, &mut self.stats)
                {
                    return;
                }
                if let Some(p) = &mut self.publisher
                    && let Some(whip) = p.whip()
                    && whip.closed(&mut self.driver, conn, reason, now)
                {
                    self.whip_timers(now);
                    return;
                }
                if let Some(p) = &mut self.publisher
                    && p.rtmp_conn() == Some(conn)
                {
                    p.failure
                        .get_or_insert_with(|| format!("publisher connection: {reason}"));
                    return;
                }
                if let Some(slot) = self.players.get_mut(conn.index())
                    && slot.as_ref().is_some_and(|p| p.conn == conn)
                    && let Some(player) = slot.take()
                {
                    if let PlayerClient::Hls = player.client {
                        self.hls_closed(conn, player.stats, reason, now);
                        return;
                    }
                    let stats = &mut self.stats[player.stats];
                    if reason != CloseReason::Local {
                        stats.failure.get_or_insert_with(|| match reason {
                            CloseReason::Error(kind) => format!("socket: {kind}"),
                            other => other.to_string(),
                        });
                    }
                }
            }
            Event::Connected { .. }
            | Event::Drained { .. }
            | Event::Accepted { .. }
            | Event::Woken => {}
        }
    }

    fn publisher_events(&mut self, now: Instant) {
        let Some(p) = &mut self.publisher else {
            return;
        };
        let PublishVia::Rtmp { conn, session } = &mut p.via else {
            return;
        };
        while let Some(output) = session.poll_output() {
            match output {
                ClientOutput::Transmit(bytes) => self.driver.send(*conn, bytes),
                ClientOutput::Event(ClientEvent::Publishing { .. }) => p.started = Some(now),
                ClientOutput::Event(ClientEvent::Rejected { code, description }) => {
                    p.failure = Some(format!("publish refused: {code} {description}"));
                }
                ClientOutput::Event(_) => {}
            }
        }
    }

    fn player_events(&mut self, conn: ConnId, now: Instant) {
        let Some(Some(player)) = self.players.get_mut(conn.index()) else {
            return;
        };
        let PlayerClient::Rtmp(session) = &mut player.client else {
            return;
        };
        let stats = &mut self.stats[player.stats];
        while let Some(output) = session.poll_output() {
            match output {
                ClientOutput::Transmit(bytes) => self.driver.send(conn, bytes),
                ClientOutput::Event(ClientEvent::Playing { .. }) => stats.playing = Some(now),
                ClientOutput::Event(ClientEvent::Media(media))
                    if media.kind == MediaKind::Video =>
                {
                    video_arrived(
                        &media.payload,
                        now,
                        stats,
                        self.window,
                        self.publisher.as_ref(),
                        &mut self.latency,
                    );
                }
                ClientOutput::Event(ClientEvent::Rejected { code, description }) => {
                    stats.failure = Some(format!("rejected: {code} {description}"));
                }
                ClientOutput::Event(ClientEvent::Stopped { code, .. }) => {
                    stats
                        .failure
                        .get_or_insert_with(|| format!("stopped: {code}"));
                }
                ClientOutput::Event(_) => {}
            }
        }
    }

    fn flv_events(&mut self, conn: ConnId, now: Instant) {
        let Some(Some(player)) = self.players.get(conn.index()) else {
            return;
        };
        let stats = &mut self.stats[player.stats];
        for event in self.flv_events.drain(..) {
            let FlvEvent::Tag {
                tag_type,
                prefix,
                prefix_len,
                ..
            } = event;
            if tag_type == 9 {
                video_arrived(
                    &prefix[..prefix_len as usize],
                    now,
                    stats,
                    self.window,
                    self.publisher.as_ref(),
                    &mut self.latency,
                );
            }
        }
    }

    /// Counts the frames SRT and WHEP viewers saw.
    fn srt_frames(&mut self) {
        let Some(viewers) = udp_viewers(&mut self.srt, &mut self.whep) else {
            return;
        };
        for (v, frame) in viewers.frames().drain(..) {
            frame_arrived(
                frame.at,
                frame.keyframe,
                frame.marker,
                &mut self.stats[v],
                self.window,
                self.publisher.as_ref(),
                &mut self.latency,
            );
        }
    }

    /// Ends the WHEP viewers and the WHIP publisher: each DELETEs its session; the answers are
    /// awaited a moment.
    fn whep_shut_down(&mut self) {
        if let Some(whep) = &mut self.whep {
            whep.shut_down(&mut self.driver, &mut self.stats);
        }
        if let Some(whip) = self.publisher.as_mut().and_then(|p| p.whip()) {
            whip.shut_down(&mut self.driver);
        }
        let until = Instant::now() + crate::rtc_client::DELETE_WAIT;
        loop {
            let viewers = self.whep.as_ref().is_some_and(|w| w.deleting());
            let publisher = self
                .publisher
                .as_mut()
                .and_then(|p| p.whip())
                .is_some_and(|w| w.deleting());
            if !(viewers || publisher) || Instant::now() >= until {
                break;
            }
            if self.driver.wait(Some(Duration::from_millis(10))).is_err() {
                return;
            }
            let now = Instant::now();
            while let Some(event) = self.driver.next_event() {
                match event {
                    Event::Received { conn, buf } => {
                        if let Some(whip) = self.publisher.as_mut().and_then(|p| p.whip())
                            && whip.owns(conn)
                        {
                            whip.http_received(&mut self.driver, conn, buf, now);
                            continue;
                        }
                        match &mut self.whep {
                            Some(whep) if whep.owns(conn) => whep.http_received(
                                &mut self.driver,
                                conn,
                                buf,
                                now,
                                &mut self.stats,
                            ),
                            _ => self.driver.release(buf),
                        }
                    }
                    Event::Datagrams { buf, .. } => self.driver.release(buf),
                    Event::Closed { conn, reason } => {
                        if let Some(whip) = self.publisher.as_mut().and_then(|p| p.whip())
                            && whip.closed(&mut self.driver, conn, reason, now)
                        {
                            continue;
                        }
                        if let Some(whep) = &mut self.whep {
                            whep.closed(&mut self.driver, conn, reason, now, &mut self.stats);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Gives the driver a moment to send what is queued (SRT shutdowns) before we exit.
    fn flush_briefly(&mut self) {
        for _ in 0..3 {
            if self.driver.wait(Some(Duration::from_millis(2))).is_err() {
                return;
            }
            while let Some(event) = self.driver.next_event() {
                match event {
                    Event::Received { buf, .. } | Event::Datagrams { buf, .. } => {
                        self.driver.release(buf)
                    }
                    _ => {}
                }
            }
        }
    }

    fn check_play_timeouts(&mut self, now: Instant) {
        // Cheap enough at load-test scale: only while players are still starting.
        if self
            .all_open_at
            .is_some_and(|t| now > t + PLAY_TIMEOUT + Duration::from_secs(1))
        {
            return;
        }
        for index in 0..self.players.len() {
            let Some(player) = &self.players[index] else {
                continue;
            };
            let Some(stats) = self.stats.get_mut(player.stats) else {
                continue; // the HLS probe
            };
            if stats.playing.is_none()
                && stats.failure.is_none()
                && stats.started.is_some_and(|s| now > s + PLAY_TIMEOUT)
            {
                stats.failure = Some("timeout: not playing after 15 s".into());
            }
        }
    }
}

/// HLS viewers.
impl Runner {
    /// Starts the probe, or gives up waiting for it.
    fn hls_probe(&mut self, now: Instant) {
        let Some(h) = &mut self.hls else {
            return;
        };
        match h.probe_started {
            None => {
                h.probe = Some((hls::Viewer::new(now, true), ViewerStats::default()));
                h.probe_started = Some(now);
                self.hls_drive(PROBE, now, true);
            }
            Some(started) if now > started + PROBE_TIMEOUT => {
                let why = h
                    .probe
                    .as_ref()
                    .and_then(|(_, stats)| stats.failure.clone());
                eprintln!(
                    "sluice-load: the playlist did not list {} segments in {} s{}; starting the \
                     viewers anyway",
                    hls::LIVE_EDGE_SEGMENTS,
                    PROBE_TIMEOUT.as_secs(),
                    why.map_or(String::new(), |why| format!(" (probe: {why})"))
                );
                self.hls_ready(now);
            }
            Some(_) => {}
        }
    }

    /// The stream is ready for viewers: drop the probe and start the ramp.
    fn hls_ready(&mut self, now: Instant) {
        let Some(h) = &mut self.hls else {
            return;
        };
        if let Some((probe, _)) = h.probe.take()
            && let Some(conn) = probe.conn
        {
            self.driver.close(conn);
        }
        h.ready = true;
        self.started = self.started.max(now);
        // RSS "before the viewers": the stream's first segments are stored by now (its window
        // keeps filling, though: RSS per viewer is an upper bound for HLS).
        self.server[0] = self.sample_server();
    }

    /// Sends viewer `v`'s next request if it is due, else sets its timer. New connections are
    /// opened only when `may_connect` (outside event handling: a `Closed` still queued may
    /// carry the index a new connection would get).
    fn hls_drive(&mut self, v: usize, now: Instant, may_connect: bool) {
        let Some(h) = &mut self.hls else {
            return;
        };
        let Some((viewer, stats)) = hls_viewer(&mut h.viewers, &mut h.probe, &mut self.stats, v)
        else {
            return;
        };
        let wake = if let Some(deadline) = viewer.deadline() {
            Some(deadline)
        } else if viewer.conn.is_none() && !may_connect {
            Some(now)
        } else {
            match viewer.next(now) {
                hls::Next::Done => None,
                hls::Next::WaitUntil(at) => Some(at),
                next => {
                    let conn = match viewer.conn {
                        Some(conn) => Ok(conn),
                        None => self.driver.connect(self.plan.play_addr),
                    };
                    match conn {
                        Ok(conn) => {
                            if viewer.conn.is_none() {
                                viewer.conn = Some(conn);
                                viewer.connections += 1;
                                if viewer.connections > 1 {
                                    stats.hls_mut().reconnects += 1;
                                }
                                let index = conn.index();
                                if self.players.len() <= index {
                                    self.players.resize_with(index + 1, || None);
                                }
                                self.players[index] = Some(Player {
                                    client: PlayerClient::Hls,
                                    stats: v,
                                    conn,
                                });
                            }
                            match next {
                                hls::Next::Uri(uri) => {
                                    let (base, target) = hls::request_target(&viewer.text()[uri]);
                                    let get = match base {
                                        hls::Base::Dir => &h.get_dir,
                                        hls::Base::Root => &h.get_root,
                                    };
                                    self.driver.send(conn, get.clone());
                                    for piece in target.chunks(INLINE_HEAD) {
                                        self.driver.send_copy(conn, piece);
                                    }
                                    self.driver.send(conn, h.request_end.clone());
                                }
                                _ => self.driver.send(conn, h.playlist_request.clone()),
                            }
                            stats.hls_mut().requests += 1;
                            viewer.deadline()
                        }
                        Err(e) => {
                            stats.hls_failure(format!("connect: {e}"));
                            Some(viewer.abort(now))
                        }
                    }
                }
            }
        };
        viewer.wake_at = wake;
        if let Some(at) = wake {
            h.timers.push(Reverse((at, v)));
        }
    }

    /// Runs the viewers whose timers are due.
    fn hls_timers(&mut self, now: Instant) {
        loop {
            let Some(h) = &mut self.hls else {
                return;
            };
            let Some(&Reverse((at, v))) = h.timers.peek() else {
                return;
            };
            if at > now {
                return;
            }
            h.timers.pop();
            let Some((viewer, stats)) =
                hls_viewer(&mut h.viewers, &mut h.probe, &mut self.stats, v)
            else {
                continue;
            };
            if viewer.wake_at != Some(at) {
                continue; // superseded
            }
            viewer.wake_at = None;
            if viewer.deadline().is_some_and(|deadline| now >= deadline) {
                if let Some(conn) = viewer.conn {
                    self.driver.close(conn);
                }
                viewer.disconnected(now);
                stats.hls_failure(format!(
                    "timeout: no response in {} s",
                    hls::REQUEST_TIMEOUT.as_secs()
                ));
            }
            self.hls_drive(v, now, true);
        }
    }

    fn hls_received(&mut self, conn: ConnId, v: usize, buf: RecvBuf, now: Instant) {
        let Some(h) = &mut self.hls else {
            self.driver.release(buf);
            return;
        };
        let Some((viewer, stats)) = hls_viewer(&mut h.viewers, &mut h.probe, &mut self.stats, v)
        else {
            self.driver.release(buf);
            return;
        };
        if viewer.conn != Some(conn) {
            self.driver.release(buf);
            return;
        }
        let data = self.driver.recv_data(&buf);
        if v != PROBE && now >= self.window.0 && now <= self.window.1 {
            stats.window_bytes += data.len() as u64;
        }
        stats.hls_mut().bytes += data.len() as u64;
        let result = viewer.feed(data);
        self.driver.release(buf);
        match result {
            Ok(None) => return,
            Ok(Some(response)) => {
                viewer.complete(
                    now,
                    response,
                    hls::Measure {
                        stats,
                        window: self.window,
                        latency: &mut self.latency,
                        unix_now_us: unix_now_us(),
                    },
                );
                if !response.keep_alive {
                    self.driver.close(conn);
                    viewer.disconnected(now);
                }
                if v == PROBE && viewer.stream_ready() {
                    self.hls_ready(now);
                    return;
                }
            }
            Err(e) => {
                stats.hls_failure(format!("http: {e}"));
                self.driver.close(conn);
                viewer.disconnected(now);
            }
        }
        self.hls_drive(v, now, false);
    }

    fn hls_closed(&mut self, conn: ConnId, v: usize, reason: CloseReason, now: Instant) {
        let Some(h) = &mut self.hls else {
            return;
        };
        let Some((viewer, stats)) = hls_viewer(&mut h.viewers, &mut h.probe, &mut self.stats, v)
        else {
            return;
        };
        if viewer.conn != Some(conn) {
            return; // closed by us, already forgotten
        }
        // The server may close an idle keep-alive connection; not while a request waits.
        match viewer.disconnected(now) {
            hls::Dropped::Idle => {}
            hls::Dropped::Race => stats.hls_mut().keep_alive_retries += 1,
            hls::Dropped::Request(_) => stats.hls_failure(format!("connection: {reason}")),
        }
        self.hls_drive(v, now, false);
    }
}

/// A video message reached a player: count it, and match its synthetic frame number against
/// the publisher's send time.
fn video_arrived(
    body: &[u8],
    now: Instant,
    stats: &mut ViewerStats,
    window: (Instant, Instant),
    publisher: Option<&Publisher>,
    latency: &mut Histogram,
) {
    let keyframe = body.first().is_some_and(|b| b >> 4 == 1);
    if body.get(1) == Some(&0) {
        return; // sequence header
    }
    frame_arrived(
        now,
        keyframe,
        read_marker(body),
        stats,
        window,
        publisher,
        latency,
    );
}

/// A video frame (carrying synthetic frame number `marker`, if any) reached a player at `at`.
fn frame_arrived(
    at: Instant,
    keyframe: bool,
    marker: Option<u64>,
    stats: &mut ViewerStats,
    window: (Instant, Instant),
    publisher: Option<&Publisher>,
    latency: &mut Histogram,
) {
    stats.video(at, keyframe, window);
    if let (Some(frame), Some(p)) = (marker, publisher)
        && frame >= p.sent_base
        && let Some(sent) = p.sent.get((frame - p.sent_base) as usize)
        && at >= window.0
        && at <= window.1
    {
        latency.record(at.saturating_duration_since(*sent).as_micros() as u64);
    }
}

/// Sends whatever the session has queued.
fn flush(driver: &mut Driver, conn: ConnId, session: &mut ClientSession) {
    while let Some(output) = session.poll_output() {
        if let ClientOutput::Transmit(bytes) = output {
            driver.send(conn, bytes);
        }
    }
}

/// The UDP viewers of the run (SRT or WHEP), if it has them.
fn udp_viewers<'a>(
    srt: &'a mut Option<SrtPlay>,
    whep: &'a mut Option<WhepPlay>,
) -> Option<&'a mut dyn UdpViewers> {
    match (srt, whep) {
        (Some(srt), _) => Some(srt),
        (None, Some(whep)) => Some(whep),
        (None, None) => None,
    }
}
