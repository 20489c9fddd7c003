//! `whep-play`: WebRTC viewers of one stream, signalled over WHEP (RFC 9725-style: `POST` of a
//! non-trickle offer, `201 Created` with the answer and a `Location` to `DELETE`), each a
//! [str0m](https://docs.rs/str0m) `Rtc` on a UDP socket of its own (the server tells WebRTC
//! peers apart by address, as browsers are), all driven from the load tool's one thread (the
//! client plumbing is [`crate::rtc_client`]'s).
//!
//! A viewer offers recvonly H.264 video and recvonly Opus audio with a host candidate on its
//! socket; the server is ICE-lite, so we are the controlling agent and the DTLS client.
//!
//! str0m hands over each video access unit in Annex B form: its first bytes tell a keyframe
//! and carry the synthetic frame number ([`crate::source::find_marker`]) that an H.264 NAL unit
//! keeps from FLV through RTP, which gives publish→receive latency as for the other players.
//!
//! Every viewer shares one DTLS certificate (generating a P-256 key per viewer would cost more
//! than its handshake); ICE credentials and SRTP keys are per viewer as usual.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sluice_ring::{CloseReason, ConnId, Driver, RecvBuf, UdpId};
use str0m::media::{Direction, KeyframeRequestKind, Mid};
use str0m::{Event, Rtc, RtcConfig};

use crate::rtc_client::{self, Exchange, State};
use crate::source::find_marker;
use crate::srt::{VideoFrame, has_random_access_nal};
use crate::stats::{ViewerStats, WhepStats};
use crate::udp::{Timers, UdpViewers, bind_address, copy_receive};

/// Bytes of an access unit searched for a keyframe NAL and the frame number (parameter sets,
/// the NAL header and the marker fit with room to spare).
const AU_PREFIX: usize = 512;
/// Keyframe requests (PLI) are sent at most this often per viewer.
const PLI_INTERVAL: Duration = Duration::from_millis(500);

/// Splits a WHEP endpoint URL `http://host:port/path?query` into the server's address, the
/// Host header and the request target.
pub fn parse_url(url: &str) -> Result<(SocketAddr, String, String), String> {
    crate::parse_http_url(url)
}

/// One WebRTC viewer.
struct Viewer {
    state: State,
    rtc: Option<Box<Rtc>>,
    sock: Option<UdpId>,
    local: SocketAddr,
    video: Option<Mid>,
    audio: Option<Mid>,
    exchange: Option<Exchange>,
    /// Where to `DELETE` the session (from the answer's `Location`).
    location: Option<String>,
    /// The pending timer; heap entries that differ are stale.
    wake_at: Option<Instant>,
    started: Instant,
    connected: bool,
    last_pli: Option<Instant>,
    stats: WhepStats,
}

/// All WHEP viewers of a run.
pub struct WhepPlay {
    api: SocketAddr,
    host: String,
    path: String,
    /// Where viewers bind (port 0): loopback for a loopback server, else any address.
    bind: SocketAddr,
    config: RtcConfig,
    viewers: Vec<Viewer>,
    by_sock: HashMap<UdpId, usize>,
    by_conn: HashMap<ConnId, usize>,
    timers: Timers,
    /// Frames seen since the caller last drained them: (viewer, frame).
    pub frames: Vec<(usize, VideoFrame)>,
    /// Ending the run: a closing session is not a failure.
    shutting_down: bool,
    /// How long signalling plus ICE and DTLS may take.
    timeout: Duration,
    /// `DELETE`s sent and answered at shutdown.
    pub deletes_sent: usize,
    pub deletes_answered: usize,
    /// A receive's datagrams.
    scratch: Vec<u8>,
}

impl WhepPlay {
    pub fn new(
        api: SocketAddr,
        host: String,
        path: String,
        timeout: Duration,
    ) -> Result<WhepPlay, String> {
        // Ingress stats: NACKs and PLIs sent, as the viewer's Rtc counts them.
        let config = rtc_client::client_config()?.set_stats_interval(Some(Duration::from_secs(1)));
        Ok(WhepPlay {
            api,
            host,
            path,
            bind: bind_address(api),
            config,
            viewers: Vec::new(),
            by_sock: HashMap::new(),
            by_conn: HashMap::new(),
            timers: Timers::default(),
            frames: Vec::new(),
            shutting_down: false,
            timeout,
            deletes_sent: 0,
            deletes_answered: 0,
            scratch: Vec::new(),
        })
    }

    /// Whether `conn` is one of our HTTP exchanges.
    pub fn owns(&self, conn: ConnId) -> bool {
        self.by_conn.contains_key(&conn)
    }

    fn fail(&mut self, driver: &mut Driver, v: usize, stats: &mut ViewerStats, why: String) {
        if !self.shutting_down {
            stats.failure.get_or_insert(why);
        }
        let viewer = &mut self.viewers[v];
        viewer.state = State::Done;
        viewer.wake_at = None;
        if let Some(exchange) = viewer.exchange.take() {
            self.by_conn.remove(&exchange.conn);
            driver.close(exchange.conn);
        }
        // The socket stays bound (the driver keeps UDP sockets for its life); its datagrams
        // are dropped from now on.
        viewer.rtc = None;
    }

    fn schedule(&mut self, v: usize, at: Instant) {
        // An earlier pending timer stays: when it fires the Rtc names its next one.
        self.timers.schedule(&mut self.viewers[v].wake_at, v, at);
    }

    /// Bytes on one of our HTTP connections.
    pub fn http_received(
        &mut self,
        driver: &mut Driver,
        conn: ConnId,
        buf: RecvBuf,
        now: Instant,
        stats: &mut [ViewerStats],
    ) {
        let Some(&v) = self.by_conn.get(&conn) else {
            driver.release(buf);
            return;
        };
        let Some(exchange) = self.viewers[v].exchange.as_mut() else {
            driver.release(buf);
            return;
        };
        if !exchange.receive(driver, buf) {
            return self.http_failed(driver, v, stats, "response too large".into());
        }
        self.http_progress(driver, v, now, false, stats);
    }

    /// One of our HTTP connections ended. Returns whether it was ours.
    pub fn closed(
        &mut self,
        driver: &mut Driver,
        conn: ConnId,
        reason: CloseReason,
        now: Instant,
        stats: &mut [ViewerStats],
    ) -> bool {
        let Some(v) = self.by_conn.get(&conn).copied() else {
            return false;
        };
        if reason == CloseReason::Local {
            self.by_conn.remove(&conn);
            return true;
        }
        self.http_progress(driver, v, now, true, stats);
        // Still waiting: the response never completed.
        if self.by_conn.remove(&conn).is_some() {
            let viewer = &mut self.viewers[v];
            if viewer.exchange.as_ref().is_some_and(|e| e.conn == conn) {
                viewer.exchange = None;
                if matches!(viewer.state, State::Signalling(_)) {
                    let why = format!("whep: connection {reason} before the answer");
                    self.fail(driver, v, &mut stats[v], why);
                }
            }
        }
        true
    }

    fn http_failed(
        &mut self,
        driver: &mut Driver,
        v: usize,
        stats: &mut [ViewerStats],
        why: String,
    ) {
        if matches!(self.viewers[v].state, State::Signalling(_)) {
            self.fail(driver, v, &mut stats[v], format!("whep: {why}"));
        } else if let Some(exchange) = self.viewers[v].exchange.take() {
            self.by_conn.remove(&exchange.conn);
            driver.close(exchange.conn);
        }
    }

    /// Handles a viewer's HTTP response if it is complete.
    fn http_progress(
        &mut self,
        driver: &mut Driver,
        v: usize,
        now: Instant,
        closed: bool,
        stats: &mut [ViewerStats],
    ) {
        let Some(exchange) = &self.viewers[v].exchange else {
            return;
        };
        let mut reply = match exchange.reply(closed) {
            Ok(Some(reply)) => reply,
            Ok(None) => return,
            Err(e) => return self.http_failed(driver, v, stats, e),
        };
        let exchange = self.viewers[v].exchange.take().expect("checked above");
        self.by_conn.remove(&exchange.conn);
        driver.close(exchange.conn);
        let viewer = &mut self.viewers[v];
        let State::Signalling(_) = viewer.state else {
            // The DELETE's answer.
            self.deletes_answered += 1;
            return;
        };
        let State::Signalling(pending) = std::mem::replace(&mut viewer.state, State::Done) else {
            unreachable!("checked above");
        };
        if let Some(why) = rtc_client::refusal(&reply) {
            return self.fail(driver, v, &mut stats[v], format!("whep: {why}"));
        }
        viewer.stats.signalling = Some(now - viewer.started);
        viewer.location = reply.location.take();
        let answer = match rtc_client::parse_answer(&reply) {
            Ok(answer) => answer,
            Err(why) => return self.fail(driver, v, &mut stats[v], why),
        };
        let Some(rtc) = viewer.rtc.as_mut() else {
            return;
        };
        if let Err(why) = rtc_client::accept_answer(rtc, *pending, answer) {
            return self.fail(driver, v, &mut stats[v], why);
        }
        viewer.state = State::Media;
        self.drive(driver, v, now, None, &mut stats[v]);
    }

    /// Feeds a timeout (`None`) or a datagram to viewer `v`'s Rtc and carries out what it asks.
    fn drive(
        &mut self,
        driver: &mut Driver,
        v: usize,
        now: Instant,
        datagram: Option<(SocketAddr, &[u8])>,
        stats: &mut ViewerStats,
    ) {
        let viewer = &mut self.viewers[v];
        let (State::Media, Some(rtc), Some(sock)) = (&viewer.state, &mut viewer.rtc, viewer.sock)
        else {
            return;
        };
        let frames = &mut self.frames;
        let driven = rtc_client::drive(
            rtc,
            driver,
            sock,
            viewer.local,
            now,
            datagram,
            |rtc, event| match event {
                Event::Connected => {
                    viewer.connected = true;
                    viewer.stats.connect = Some(now - viewer.started);
                    stats.playing = Some(now);
                }
                Event::MediaData(data) if Some(data.mid) == viewer.video => {
                    let c = &mut viewer.stats.counters;
                    c.video_frames += 1;
                    c.video_bytes += data.data.len() as u64;
                    let prefix = &data.data[..data.data.len().min(AU_PREFIX)];
                    let keyframe = has_random_access_nal(prefix, false);
                    let marker = find_marker(prefix);
                    c.keyframes += u64::from(keyframe);
                    c.marker_frames += u64::from(marker.is_some());
                    if !data.contiguous {
                        c.discontinuities += 1;
                    }
                    let want_keyframe = !data.contiguous || stats.first_keyframe.is_none();
                    if want_keyframe
                        && !keyframe
                        && viewer.last_pli.is_none_or(|t| now >= t + PLI_INTERVAL)
                        && let Some(mut writer) = rtc.writer(data.mid)
                        && writer
                            .request_keyframe(data.rid, KeyframeRequestKind::Pli)
                            .is_ok()
                    {
                        viewer.last_pli = Some(now);
                        viewer.stats.counters.keyframe_requests += 1;
                    }
                    frames.push((
                        v,
                        VideoFrame {
                            at: now,
                            keyframe,
                            marker,
                        },
                    ));
                }
                Event::MediaData(data) if Some(data.mid) == viewer.audio => {
                    viewer.stats.counters.audio_frames += 1;
                    viewer.stats.counters.audio_bytes += data.data.len() as u64;
                }
                Event::MediaIngressStats(s) => {
                    let c = &mut viewer.stats.counters;
                    if Some(s.mid) == viewer.video {
                        c.video_rtp_packets = s.packets;
                        c.video_nacks_sent = s.nacks;
                    } else if Some(s.mid) == viewer.audio {
                        c.audio_rtp_packets = s.packets;
                    }
                }
                _ => {}
            },
        );
        let viewer = &self.viewers[v];
        let wake = driven.and_then(|wake| {
            rtc_client::connect_deadline(viewer.connected, viewer.started, self.timeout, now, wake)
                .map_err(|why| format!("timeout: {why}"))
        });
        match wake {
            Ok(at) => self.schedule(v, at),
            Err(why) => self.fail(driver, v, stats, why),
        }
    }

    /// Ends the run: every viewer closes its Rtc, and those the server gave a `Location` send
    /// it a `DELETE` (answers are awaited by the caller while [`Self::deleting`]).
    pub fn shut_down(&mut self, driver: &mut Driver, stats: &mut [ViewerStats]) {
        self.shutting_down = true;
        self.frames.clear();
        for v in 0..self.viewers.len() {
            if let Some(s) = stats.get_mut(v) {
                s.whep = Some(self.viewers[v].stats.clone());
            }
            let viewer = &mut self.viewers[v];
            let was_media = rtc_client::close(&mut viewer.state, &mut viewer.rtc);
            if let Some(exchange) = viewer.exchange.take() {
                self.by_conn.remove(&exchange.conn);
                driver.close(exchange.conn);
            }
            let Some(location) = viewer.location.clone().filter(|_| was_media) else {
                continue;
            };
            let Some(exchange) =
                Exchange::delete(driver, self.api, &self.host, &self.path, &location)
            else {
                continue;
            };
            // A DELETE in flight looks like signalling to `http_progress` unless the state is
            // Done, which it is: the answer counts as `deletes_answered`.
            self.by_conn.insert(exchange.conn, v);
            viewer.exchange = Some(exchange);
            self.deletes_sent += 1;
        }
    }

    /// Whether `DELETE`s are still waiting for their answers.
    pub fn deleting(&self) -> bool {
        !self.by_conn.is_empty()
    }
}

impl UdpViewers for WhepPlay {
    /// Opens viewer `v` (the next index): a socket, an `Rtc` with its offer, and the `POST`.
    fn open(&mut self, driver: &mut Driver, v: usize, now: Instant, stats: &mut ViewerStats) {
        debug_assert_eq!(v, self.viewers.len());
        self.viewers.push(Viewer {
            state: State::Done,
            rtc: None,
            sock: None,
            local: self.bind,
            video: None,
            audio: None,
            exchange: None,
            location: None,
            wake_at: None,
            started: now,
            connected: false,
            last_pli: None,
            stats: WhepStats::default(),
        });
        // A port-0 bind gets a port of its own (the driver sets no `SO_REUSEPORT` for it).
        let sock = match driver.bind_udp(self.bind) {
            Ok(sock) => sock,
            Err(e) => return self.fail(driver, v, stats, format!("bind: {e}")),
        };
        let local = match driver.udp_local_addr(sock) {
            Ok(local) => local,
            Err(e) => return self.fail(driver, v, stats, format!("bind: {e}")),
        };
        self.by_sock.insert(sock, v);
        let offer = rtc_client::offer(self.config.clone(), now, local, Direction::RecvOnly);
        let offer = match offer {
            Ok(offer) => offer,
            Err(e) => return self.fail(driver, v, stats, e),
        };
        let exchange =
            match Exchange::post_offer(driver, self.api, &self.host, &self.path, &offer.sdp) {
                Ok(exchange) => exchange,
                Err(e) => return self.fail(driver, v, stats, e),
            };
        self.by_conn.insert(exchange.conn, v);
        let viewer = &mut self.viewers[v];
        viewer.sock = Some(sock);
        viewer.local = local;
        viewer.rtc = Some(Box::new(offer.rtc));
        viewer.video = Some(offer.video);
        viewer.audio = Some(offer.audio);
        viewer.state = State::Signalling(Box::new(offer.pending));
        viewer.exchange = Some(exchange);
        // The give-up timer; the Rtc names its own once it runs.
        self.schedule(v, now + self.timeout);
    }

    #[allow(clippy::too_many_arguments)]
    fn datagrams(
        &mut self,
        driver: &mut Driver,
        sock: UdpId,
        peer: SocketAddr,
        buf: RecvBuf,
        segment_size: usize,
        now: Instant,
        stats: &mut [ViewerStats],
        window: (Instant, Instant),
    ) {
        let Some(&v) = self.by_sock.get(&sock) else {
            driver.release(buf);
            return;
        };
        if !matches!(self.viewers[v].state, State::Media) {
            driver.release(buf);
            return;
        }
        // Copied out, as the Rtc's answers need the driver: the buffer goes back at once.
        let mut data = std::mem::take(&mut self.scratch);
        let segment = copy_receive(driver, buf, segment_size, &mut data);
        let in_window = now >= window.0 && now <= window.1;
        for datagram in data.chunks(segment) {
            let c = &mut self.viewers[v].stats.counters;
            c.datagrams += 1;
            c.wire_bytes += datagram.len() as u64;
            // RFC 7983 demultiplexing: 128..=191 is RTP or RTCP; RTCP packet types are
            // 192..=223 in the second byte (with the marker bit, RTP never looks like that
            // for the dynamic payload types WebRTC uses).
            if let [128..=191, second, ..] = datagram
                && !(192..=223).contains(second)
            {
                c.rtp_packets += 1;
            }
            if in_window {
                stats[v].window_bytes += datagram.len() as u64;
            }
            self.drive(driver, v, now, Some((peer, datagram)), &mut stats[v]);
            if !matches!(self.viewers[v].state, State::Media) {
                break;
            }
        }
        self.scratch = data;
    }

    fn timers(&mut self, driver: &mut Driver, now: Instant, stats: &mut [ViewerStats]) {
        while let Some(v) = self
            .timers
            .pop_due(now, &mut self.viewers, |v| &mut v.wake_at)
        {
            match self.viewers[v].state {
                State::Signalling(_) => {
                    if now >= self.viewers[v].started + self.timeout {
                        let why =
                            format!("timeout: no WHEP answer in {} s", self.timeout.as_secs());
                        self.fail(driver, v, &mut stats[v], why);
                    }
                }
                State::Media => self.drive(driver, v, now, None, &mut stats[v]),
                State::Done => {}
            }
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        self.timers.next()
    }

    fn frames(&mut self) -> &mut Vec<(usize, VideoFrame)> {
        &mut self.frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtc_client::tests::{TestServer, answer_delete};
    use crate::udp::tests::{backends, play_turn};
    use std::net::{TcpListener, UdpSocket};
    use str0m::format::Codec;
    use str0m::media::{MediaKind, MediaTime};

    /// An H.264 access unit in Annex B as a server forwards the synthetic stream: parameter
    /// sets and an IDR slice for keyframes, a non-IDR slice otherwise; the slice carries the
    /// frame number as the synthetic FLV body does.
    fn access_unit(number: u64, keyframe: bool) -> Vec<u8> {
        let mut au = Vec::new();
        if keyframe {
            au.extend_from_slice(&[0, 0, 0, 1, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40]);
            au.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xef, 0x8f, 0xcb]);
        }
        au.extend_from_slice(&[0, 0, 0, 1, if keyframe { 0x65 } else { 0x41 }]);
        au.extend_from_slice(b"sluiceLD");
        au.extend_from_slice(&crate::source::marker_bytes(number));
        au.resize(au.len() + if keyframe { 6000 } else { 1500 }, 0x5a);
        au
    }

    /// A minimal WHEP server: answers one offer with an ICE-lite str0m `Rtc` on `socket`,
    /// sends `frames` access units at 30 fps (and Opus frames) once connected, then answers
    /// the `DELETE`. Returns the DELETE's request line.
    fn serve(listener: TcpListener, socket: UdpSocket, frames: u64) -> String {
        let (mut server, post) = TestServer::answer(
            &listener,
            socket,
            "/rtc/v1/whep/?app=live&stream=s",
            "/rtc/v1/whep/?action=delete&token=t1",
        );
        let mut mids: Vec<(MediaKind, Mid)> = Vec::new();
        let mut start = None;
        let mut sent = 0u64;
        let began = Instant::now();
        loop {
            let now = Instant::now();
            assert!(now < began + Duration::from_secs(10), "server timed out");
            if let Some(start) = start {
                if sent < frames && now >= start + Duration::from_millis(33 * sent) {
                    for (kind, mid) in &mids {
                        let writer = server.rtc.writer(*mid).unwrap();
                        let codec = if *kind == MediaKind::Video {
                            Codec::H264
                        } else {
                            Codec::Opus
                        };
                        let pt = writer
                            .payload_params()
                            .find(|p| p.spec().codec == codec)
                            .unwrap()
                            .pt();
                        if *kind == MediaKind::Video {
                            let au = access_unit(sent, sent % 30 == 0);
                            let time = MediaTime::from_90khz(sent * 3000);
                            writer.write(pt, now, time, au).unwrap();
                        } else {
                            let time = MediaTime::new(
                                sent * 1600,
                                str0m::media::Frequency::FORTY_EIGHT_KHZ,
                            );
                            writer.write(pt, now, time, vec![0xfc; 80]).unwrap();
                        }
                    }
                    sent += 1;
                }
                if sent == frames && now > start + Duration::from_millis(33 * frames + 300) {
                    break;
                }
            }
            server.turn(|_, event| match event {
                Event::Connected => start = Some(Instant::now()),
                Event::MediaAdded(added) => mids.push((added.kind, added.mid)),
                _ => {}
            });
        }
        drop(post);
        let (stream, _) = listener.accept().unwrap();
        answer_delete(stream)
    }

    /// One viewer against a str0m WHEP server, on each backend this machine runs: signalling,
    /// ICE, DTLS, every video frame counted with its number, audio, the DELETE at the end.
    #[test]
    fn plays_from_a_whep_server() {
        for backend in backends() {
            let frames = 45;
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let api = listener.local_addr().unwrap();
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            let thread = std::thread::spawn(move || serve(listener, socket, frames));
            let mut driver = Driver::new(backend, &sluice_ring::DriverConfig::default()).unwrap();
            let mut play = WhepPlay::new(
                api,
                api.to_string(),
                "/rtc/v1/whep/?app=live&stream=s".into(),
                Duration::from_secs(5),
            )
            .unwrap();
            let t0 = Instant::now();
            let window = (t0, t0 + Duration::from_secs(60));
            let mut stats = vec![ViewerStats::default()];
            play.open(&mut driver, 0, t0, &mut stats[0]);
            let mut seen = Vec::new();
            let mut deleting = false;
            while t0.elapsed() < Duration::from_secs(8) {
                if !deleting && seen.len() == frames as usize {
                    play.shut_down(&mut driver, &mut stats);
                    deleting = true;
                }
                if deleting && !play.deleting() {
                    break;
                }
                play_turn(
                    &mut driver,
                    &mut play,
                    &mut stats,
                    window,
                    |driver, play, event, now, stats| match event {
                        sluice_ring::Event::Received { conn, buf } => {
                            play.http_received(driver, conn, buf, now, stats)
                        }
                        sluice_ring::Event::Closed { conn, reason } => {
                            play.closed(driver, conn, reason, now, stats);
                        }
                        _ => {}
                    },
                );
                seen.extend(play.frames.drain(..).map(|(_, f)| (f.keyframe, f.marker)));
            }
            let delete = thread.join().unwrap();
            assert_eq!(stats[0].failure, None, "{backend}");
            assert!(stats[0].playing.is_some(), "{backend}");
            let expected: Vec<(bool, Option<u64>)> =
                (0..frames).map(|n| (n % 30 == 0, Some(n))).collect();
            assert_eq!(seen, expected, "{backend}");
            let whep = stats[0].whep.as_ref().unwrap();
            assert!(whep.connect.is_some() && whep.signalling.is_some());
            assert_eq!(whep.counters.video_frames, frames);
            assert_eq!(whep.counters.marker_frames, frames);
            assert!(
                whep.counters.audio_frames >= frames - 2,
                "{:?}",
                whep.counters
            );
            assert!(whep.counters.rtp_packets > frames, "{:?}", whep.counters);
            assert_eq!(whep.counters.discontinuities, 0);
            assert_eq!(
                delete,
                "DELETE /rtc/v1/whep/?action=delete&token=t1 HTTP/1.1"
            );
            assert_eq!(
                (play.deletes_sent, play.deletes_answered),
                (1, 1),
                "{backend}"
            );
        }
    }
}
