//! The load generator's event loop: one driver (io_uring or epoll, like the server), an
//! optional in-process publisher, and any number of RTMP players, all on this thread.
//!
//! Players keep only the first bytes of each media message (`ChunkReaderConfig::media_prefix`):
//! enough to classify it and read the synthetic frame number, so receiving costs the kernel's
//! copy into our buffers and a header parse, not a second copy of every payload.

use std::collections::VecDeque;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use sluice_proto::rtmp::chunk::ChunkReaderConfig;
use sluice_proto::rtmp::{
    ClientConfig, ClientEvent, ClientOutput, ClientSession, HandshakeKind, MediaKind, RtmpUrl,
};
use sluice_ring::{Backend, CloseReason, ConnId, Driver, DriverConfig, Event};

use crate::flv::{FlvEvent, FlvReader};
use crate::procstat;
use crate::source::{Source, read_marker};
use crate::stats::{Histogram, ViewerStats};

/// Bytes of each media payload players keep: the FLV header and the synthetic marker.
const MEDIA_PREFIX: u32 = 32;
/// Most connections opened per loop turn, so a large ramp doesn't starve the others.
const CONNECTS_PER_TURN: usize = 256;
/// A player that is not playing this long after connecting has failed.
const PLAY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long send times of synthetic frames are kept for latency matching.
const SENT_HISTORY: usize = 30 * 120;

/// How players play.
pub enum PlayProtocol {
    Rtmp,
    /// HTTP-FLV: GET `path` with this Host header.
    Flv {
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
    /// Measurement starts this long after the last player connected...
    pub warmup: Duration,
    /// ...and lasts this long.
    pub measure: Duration,
    pub complex_handshake: bool,
    /// Server processes whose CPU and memory to sample (`/proc`), if any.
    pub server_pids: Vec<u32>,
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
}

struct Player {
    client: PlayerClient,
    stats: usize,
}

struct Publisher {
    conn: ConnId,
    session: ClientSession,
    source: Source,
    pending: Option<crate::source::Outgoing>,
    started: Option<Instant>,
    /// Send instants of synthetic frames: `sent[i]` is frame `sent_base + i`.
    sent: VecDeque<Instant>,
    sent_base: u64,
    failure: Option<String>,
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
}

impl Runner {
    pub fn new(plan: Plan) -> Result<Runner, String> {
        let driver = Driver::new(
            plan.backend,
            &DriverConfig {
                recv_buffer_size: 64 * 1024,
                recv_buffers: 1024,
                ..DriverConfig::default()
            },
        )
        .map_err(|e| format!("cannot start the {} driver: {e}", plan.backend))?;
        let now = Instant::now();
        Ok(Runner {
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
            + Duration::from_secs(30);
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
            if now >= self.window.1 || now >= deadline_if_stuck {
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
            self.check_play_timeouts(now);
        }
        let window = self.window;
        for stats in &mut self.stats {
            stats.finish(window);
        }
        Outcome {
            viewers: self.stats,
            window,
            latency: self.latency,
            publisher_failure: self.publisher.and_then(|p| p.failure),
            server: self.server,
            own: self.own,
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
        if self.opened < self.plan.viewers {
            wake = wake.min(self.connect_due(self.opened));
        }
        if let Some(p) = &self.publisher
            && let (Some(started), Some(next)) = (p.started, &p.pending)
        {
            wake = wake.min(started + Duration::from_millis(next.timestamp));
        }
        wake.min(self.window.1).max(now)
    }

    fn connect_due(&self, index: usize) -> Instant {
        if self.plan.ramp_per_s <= 0.0 {
            return self.started;
        }
        self.started + Duration::from_secs_f64(index as f64 / self.plan.ramp_per_s)
    }

    fn open_players(&mut self, now: Instant) {
        // HTTP servers answer 404 for a stream nobody publishes yet (RTMP players may wait):
        // start HTTP players once our publisher is on.
        let publishing = self.publisher.as_ref().map(|p| p.started);
        if matches!(self.plan.protocol, PlayProtocol::Flv { .. }) && self.opened == 0 {
            match publishing {
                Some(None) => return,
                Some(Some(started)) => self.started = self.started.max(started),
                None => {}
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
                    };
                    let index = conn.index();
                    if self.players.len() <= index {
                        self.players.resize_with(index + 1, || None);
                    }
                    self.players[index] = Some(Player {
                        client,
                        stats: stats_index,
                    });
                }
                Err(e) => self.stats[stats_index].failure = Some(format!("connect: {e}")),
            }
        }
    }

    fn start_publisher(&mut self, source: Source) {
        let now = Instant::now();
        let config = self.client_config(sluice_proto::rtmp::ClientMode::Publish);
        let mut session = ClientSession::new(config, now);
        match self.driver.connect(self.plan.addr) {
            Ok(conn) => {
                flush(&mut self.driver, conn, &mut session);
                self.publisher = Some(Publisher {
                    conn,
                    session,
                    source,
                    pending: None,
                    started: None,
                    sent: VecDeque::new(),
                    sent_base: 0,
                    failure: None,
                });
            }
            Err(e) => eprintln!("sluice-load: publisher cannot connect: {e}"),
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
        loop {
            let next = p.pending.take().unwrap_or_else(|| p.source.next());
            if started + Duration::from_millis(next.timestamp) > now {
                p.pending = Some(next);
                break;
            }
            let timestamp = next.timestamp as u32;
            if let Err(e) = p.session.send_media(next.kind, timestamp, &next.payload) {
                p.failure = Some(format!("publish: {e}"));
                break;
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
        let conn = p.conn;
        flush(&mut self.driver, conn, &mut p.session);
    }

    fn handle(&mut self, event: Event, now: Instant) {
        match event {
            Event::Received { conn, buf } => {
                let data = self.driver.recv_data(&buf);
                if let Some(p) = &mut self.publisher
                    && p.conn == conn
                {
                    let result = p.session.handle_input(now, data);
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
                }
            }
            Event::Closed { conn, reason } => {
                if let Some(p) = &mut self.publisher
                    && p.conn == conn
                {
                    p.failure
                        .get_or_insert_with(|| format!("publisher connection: {reason}"));
                    return;
                }
                if let Some(slot) = self.players.get_mut(conn.index())
                    && let Some(player) = slot.take()
                {
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
        while let Some(output) = p.session.poll_output() {
            match output {
                ClientOutput::Transmit(bytes) => self.driver.send(p.conn, bytes),
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
            let stats = &mut self.stats[player.stats];
            if stats.playing.is_none()
                && stats.failure.is_none()
                && stats.started.is_some_and(|s| now > s + PLAY_TIMEOUT)
            {
                stats.failure = Some("timeout: not playing after 15 s".into());
            }
        }
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
    stats.video(now, keyframe, window);
    if let (Some(frame), Some(p)) = (read_marker(body), publisher)
        && frame >= p.sent_base
        && let Some(sent) = p.sent.get((frame - p.sent_base) as usize)
        && now >= window.0
        && now <= window.1
    {
        latency.record((now - *sent).as_micros() as u64);
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
