//! `--publish-whip`: the in-process publisher as a WebRTC client, signalled over WHIP (`POST`
//! of a non-trickle offer, `201 Created` with the answer and a `Location` to `DELETE` at the
//! end), one [str0m](https://docs.rs/str0m) `Rtc` on a UDP socket of its own, driven from the
//! load tool's thread like the WHEP viewers.
//!
//! It offers sendonly H.264 and sendonly Opus. The source's FLV video bodies become Annex B
//! access units (the sequence header's SPS and PPS in front of each keyframe) and go to
//! str0m's `Writer`, which packetizes them; the NAL units are not touched, so the synthetic
//! frame numbers reach the viewers as they do from an RTMP publisher, and publish→receive
//! latency is measured the same way. The source's AAC audio is not sent: a WebRTC publisher
//! sends Opus, here the 3-byte Opus silence frame every 20 ms (no encoder needed).
//!
//! The client plumbing (str0m, signalling) is [`crate::rtc_client`]'s, as for the viewers.
//!
//! A keyframe request from the server (PLI or FIR) is reported by
//! [`WhipPublisher::take_keyframe_request`]; the caller makes the source's next video frame a
//! keyframe where it can (the synthetic source can, an FLV file cannot).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sluice_proto::codec::{AvcDecoderConfig, AvccNalus};
use sluice_proto::rtmp::MediaKind as RtmpMediaKind;
use sluice_ring::{CloseReason, ConnId, Driver, RecvBuf, UdpId};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaTime, Mid};
use str0m::{Event, Rtc};

use crate::rtc_client::{self, Exchange, State};
use crate::source::{Outgoing, is_keyframe_body};
use crate::udp::{bind_address, copy_receive, guarded};

/// An Opus packet of one 20 ms CELT fullband mono frame that decodes to silence (TOC 0xf8),
/// as browsers send for a muted track.
pub const OPUS_SILENCE: [u8; 3] = [0xf8, 0xff, 0xfe];
/// Opus frames are 20 ms: 960 samples at Opus's 48 kHz RTP clock.
const OPUS_FRAME: Duration = Duration::from_millis(20);
const OPUS_FRAME_SAMPLES: u64 = 960;
/// The four-byte Annex B start code.
const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// Where to publish: a WHIP endpoint URL `http://host:port/path?query`, split.
#[derive(Debug, Clone)]
pub struct WhipTarget {
    pub api: SocketAddr,
    pub host: String,
    pub path: String,
}

impl WhipTarget {
    pub fn parse(url: &str) -> Result<WhipTarget, String> {
        let (api, host, path) = crate::parse_http_url(url)?;
        Ok(WhipTarget { api, host, path })
    }
}

/// What the publisher did, for the report.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct WhipCounters {
    /// POST → answer, and POST → ICE and DTLS connected.
    pub signalling_ms: Option<f64>,
    pub connect_ms: Option<f64>,
    pub video_frames: u64,
    pub keyframes: u64,
    pub audio_frames: u64,
    /// Keyframe requests (PLI/FIR) the server sent, and how many of them made a keyframe out
    /// of GOP (none for an FLV file source).
    pub keyframe_requests: u64,
    pub forced_keyframes: u64,
    /// Video frames the writer refused (no H.264 payload type, str0m error, not connected).
    pub write_errors: u64,
    /// The `DELETE` of the session at the end: sent, answered (with its status).
    pub delete_sent: bool,
    pub delete_status: Option<u16>,
}

/// The WHIP publisher.
pub struct WhipPublisher {
    target: WhipTarget,
    timeout: Duration,
    state: State,
    rtc: Option<Box<Rtc>>,
    sock: UdpId,
    local: SocketAddr,
    video: Mid,
    audio: Mid,
    /// The HTTP exchange in flight (the `POST`, or the `DELETE` at the end) and its response.
    exchange: Option<Exchange>,
    location: Option<String>,
    opened: Instant,
    /// ICE and DTLS are up: media may be written.
    connected_at: Option<Instant>,
    /// When the Rtc wants to be woken.
    wake_at: Option<Instant>,
    /// The sequence header's parameter sets in Annex B form, written before each keyframe.
    parameter_sets: Vec<u8>,
    nalu_length_size: u8,
    keyframe_wanted: bool,
    pub counters: WhipCounters,
    pub failure: Option<String>,
    /// A receive's datagrams.
    scratch: Vec<u8>,
}

impl WhipPublisher {
    /// Binds the socket, makes the offer and `POST`s it.
    pub fn open(
        driver: &mut Driver,
        target: WhipTarget,
        timeout: Duration,
        now: Instant,
    ) -> Result<WhipPublisher, String> {
        let sock = driver
            .bind_udp(bind_address(target.api))
            .map_err(|e| format!("whip: bind: {e}"))?;
        let local = driver
            .udp_local_addr(sock)
            .map_err(|e| format!("whip: bind: {e}"))?;
        let offer = match guarded(rtc_client::client_config) {
            Some(Ok(config)) => rtc_client::offer(config, now, local, Direction::SendOnly),
            Some(Err(e)) => Err(format!("offer: {e}")),
            None => Err("str0m panicked".into()),
        }
        .map_err(|e| format!("whip: {e}"))?;
        let exchange =
            Exchange::post_offer(driver, target.api, &target.host, &target.path, &offer.sdp)
                .map_err(|e| format!("whip: {e}"))?;
        Ok(WhipPublisher {
            target,
            timeout,
            state: State::Signalling(Box::new(offer.pending)),
            rtc: Some(Box::new(offer.rtc)),
            sock,
            local,
            video: offer.video,
            audio: offer.audio,
            exchange: Some(exchange),
            location: None,
            opened: now,
            connected_at: None,
            wake_at: Some(now + timeout),
            parameter_sets: Vec::new(),
            nalu_length_size: 4,
            keyframe_wanted: false,
            counters: WhipCounters::default(),
            failure: None,
            scratch: Vec::new(),
        })
    }

    /// When ICE and DTLS came up (media is written from then on).
    pub fn connected_at(&self) -> Option<Instant> {
        self.connected_at
    }

    /// Whether `conn` is our HTTP exchange.
    pub fn owns(&self, conn: ConnId) -> bool {
        self.exchange.as_ref().is_some_and(|e| e.conn == conn)
    }

    pub fn owns_sock(&self, sock: UdpId) -> bool {
        self.sock == sock
    }

    /// The earliest moment something is due: the Rtc's timer, the next Opus frame.
    pub fn next_wake(&self) -> Option<Instant> {
        let opus = self.next_opus_at();
        match (self.wake_at, opus) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn next_opus_at(&self) -> Option<Instant> {
        let start = self
            .connected_at
            .filter(|_| matches!(self.state, State::Media))?;
        Some(start + OPUS_FRAME * self.counters.audio_frames as u32)
    }

    /// Whether the server asked for a keyframe since the last call.
    pub fn take_keyframe_request(&mut self) -> bool {
        std::mem::take(&mut self.keyframe_wanted)
    }

    fn fail(&mut self, driver: &mut Driver, why: String) {
        if !matches!(self.state, State::Done) {
            self.failure.get_or_insert(why);
        }
        self.state = State::Done;
        self.wake_at = None;
        self.rtc = None;
        if let Some(exchange) = self.exchange.take() {
            driver.close(exchange.conn);
        }
    }

    /// Bytes on our HTTP connection.
    pub fn http_received(&mut self, driver: &mut Driver, conn: ConnId, buf: RecvBuf, now: Instant) {
        let Some(exchange) = self.exchange.as_mut().filter(|e| e.conn == conn) else {
            driver.release(buf);
            return;
        };
        if !exchange.receive(driver, buf) {
            return self.http_failed(driver, "response too large".into());
        }
        self.http_progress(driver, now, false);
    }

    /// Our HTTP connection ended. Returns whether it was ours.
    pub fn closed(
        &mut self,
        driver: &mut Driver,
        conn: ConnId,
        reason: CloseReason,
        now: Instant,
    ) -> bool {
        if !self.owns(conn) {
            return false;
        }
        if reason == CloseReason::Local {
            self.exchange = None;
            return true;
        }
        self.http_progress(driver, now, true);
        if self.owns(conn) {
            self.exchange = None;
            if matches!(self.state, State::Signalling(_)) {
                self.fail(
                    driver,
                    format!("whip: connection {reason} before the answer"),
                );
            }
        }
        true
    }

    fn http_failed(&mut self, driver: &mut Driver, why: String) {
        if matches!(self.state, State::Signalling(_)) {
            self.fail(driver, format!("whip: {why}"));
        } else if let Some(exchange) = self.exchange.take() {
            driver.close(exchange.conn);
        }
    }

    fn http_progress(&mut self, driver: &mut Driver, now: Instant, closed: bool) {
        let Some(exchange) = &self.exchange else {
            return;
        };
        let mut reply = match exchange.reply(closed) {
            Ok(Some(reply)) => reply,
            Ok(None) => return,
            Err(e) => return self.http_failed(driver, e),
        };
        if let Some(exchange) = self.exchange.take() {
            driver.close(exchange.conn);
        }
        let State::Signalling(_) = self.state else {
            // The DELETE's answer.
            self.counters.delete_status = Some(reply.status);
            return;
        };
        let State::Signalling(pending) = std::mem::replace(&mut self.state, State::Done) else {
            unreachable!("checked above");
        };
        // Put back for a refusal or a bad answer, so that `fail` records why.
        if let Some(why) = rtc_client::refusal(&reply) {
            self.state = State::Signalling(pending);
            return self.fail(driver, format!("whip: {why}"));
        }
        self.counters.signalling_ms = Some(ms(now - self.opened));
        self.location = reply.location.take();
        let answer = match rtc_client::parse_answer(&reply) {
            Ok(answer) => answer,
            Err(why) => {
                self.state = State::Signalling(pending);
                return self.fail(driver, format!("whip: {why}"));
            }
        };
        let Some(rtc) = self.rtc.as_mut() else {
            return;
        };
        if let Err(why) = rtc_client::accept_answer(rtc, *pending, answer) {
            // `fail` records a reason only before `Done`, which the state already is here.
            self.failure.get_or_insert(format!("whip: {why}"));
            return self.fail(driver, String::new());
        }
        self.state = State::Media;
        self.drive(driver, now, None);
    }

    /// Feeds a timeout (`None`) or a datagram to the Rtc and carries out what it asks.
    fn drive(&mut self, driver: &mut Driver, now: Instant, datagram: Option<(SocketAddr, &[u8])>) {
        let (State::Media, Some(rtc)) = (&self.state, &mut self.rtc) else {
            return;
        };
        let driven = rtc_client::drive(
            rtc,
            driver,
            self.sock,
            self.local,
            now,
            datagram,
            |_, event| match event {
                Event::Connected => {
                    self.connected_at = Some(now);
                    self.counters.connect_ms = Some(ms(now - self.opened));
                }
                Event::KeyframeRequest(request) if request.mid == self.video => {
                    self.counters.keyframe_requests += 1;
                    self.keyframe_wanted = true;
                }
                _ => {}
            },
        );
        let wake = driven.and_then(|wake| {
            let connected = self.connected_at.is_some();
            rtc_client::connect_deadline(connected, self.opened, self.timeout, now, wake)
        });
        match wake {
            Ok(at) => self.wake_at = Some(at),
            Err(why) => self.fail(driver, format!("whip: {why}")),
        }
    }

    /// A receive on our socket: one datagram, or several of `segment_size` bytes (GRO).
    pub fn datagrams(
        &mut self,
        driver: &mut Driver,
        peer: SocketAddr,
        buf: RecvBuf,
        segment_size: usize,
        now: Instant,
    ) {
        if !matches!(self.state, State::Media) {
            driver.release(buf);
            return;
        }
        let mut data = std::mem::take(&mut self.scratch);
        let segment = copy_receive(driver, buf, segment_size, &mut data);
        for datagram in data.chunks(segment) {
            self.drive(driver, now, Some((peer, datagram)));
            if !matches!(self.state, State::Media) {
                break;
            }
        }
        self.scratch = data;
    }

    /// Runs the Rtc's timer and sends the Opus frames that are due.
    pub fn timers(&mut self, driver: &mut Driver, now: Instant) {
        match self.state {
            State::Signalling(_) => {
                if now >= self.opened + self.timeout {
                    let why = format!("whip: no answer in {} s", self.timeout.as_secs());
                    self.fail(driver, why);
                }
                return;
            }
            State::Media => {}
            State::Done => return,
        }
        let mut wrote = false;
        while let Some(at) = self.next_opus_at()
            && at <= now
        {
            let time = MediaTime::new(
                self.counters.audio_frames * OPUS_FRAME_SAMPLES,
                Frequency::FORTY_EIGHT_KHZ,
            );
            self.counters.audio_frames += 1;
            if let Some(rtc) = self.rtc.as_mut()
                && let Some(writer) = rtc.writer(self.audio)
            {
                let pt = writer
                    .payload_params()
                    .find(|p| p.spec().codec == Codec::Opus)
                    .map(|p| p.pt());
                if let Some(pt) = pt {
                    let _ = guarded(|| writer.write(pt, now, time, &OPUS_SILENCE[..]));
                    wrote = true;
                }
            }
        }
        if wrote || self.wake_at.is_some_and(|at| at <= now) {
            self.drive(driver, now, None);
        }
    }

    /// Publishes one message of the source: a video frame becomes an Annex B access unit for
    /// str0m, a sequence header gives the parameter sets; audio (AAC) and metadata are not
    /// sent. Returns whether a video frame went out.
    pub fn write(&mut self, driver: &mut Driver, now: Instant, out: &Outgoing) -> bool {
        if out.kind != RtmpMediaKind::Video || !matches!(self.state, State::Media) {
            return false;
        }
        let body = &out.payload[..];
        if body.len() < 5 {
            return false;
        }
        if body[0] & 0x0f != 7 {
            self.fail(driver, "whip: only H.264 video can be published".into());
            return false;
        }
        if body[1] == 0 {
            match AvcDecoderConfig::parse(&body[5..]) {
                Ok(config) => {
                    self.nalu_length_size = config.nalu_length_size;
                    self.parameter_sets.clear();
                    for set in config.sps.iter().chain(&config.pps) {
                        self.parameter_sets.extend_from_slice(&START_CODE);
                        self.parameter_sets.extend_from_slice(set);
                    }
                }
                Err(e) => self.fail(driver, format!("whip: sequence header: {e}")),
            }
            return false;
        }
        if body[1] != 1 {
            return false; // end of sequence
        }
        let keyframe = is_keyframe_body(body);
        let Some(access_unit) = annexb(
            &body[5..],
            self.nalu_length_size,
            keyframe.then_some(&self.parameter_sets[..]),
        ) else {
            self.counters.write_errors += 1;
            return false;
        };
        let time = MediaTime::from_90khz(out.timestamp * 90);
        let written = self.rtc.as_mut().and_then(|rtc| {
            let writer = rtc.writer(self.video)?;
            let pt = h264_pt(writer.payload_params())?;
            guarded(|| writer.write(pt, now, time, access_unit))?.ok()
        });
        if written.is_none() {
            self.counters.write_errors += 1;
            return false;
        }
        self.counters.video_frames += 1;
        self.counters.keyframes += u64::from(keyframe);
        self.drive(driver, now, None);
        true
    }

    /// A keyframe went out of GOP for a request.
    pub fn forced_keyframe(&mut self) {
        self.counters.forced_keyframes += 1;
    }

    /// Ends the session: closes the Rtc and `DELETE`s the `Location` (awaited while
    /// [`Self::deleting`]).
    pub fn shut_down(&mut self, driver: &mut Driver) {
        let was_media = rtc_client::close(&mut self.state, &mut self.rtc);
        self.wake_at = None;
        if let Some(exchange) = self.exchange.take() {
            driver.close(exchange.conn);
        }
        let Some(location) = self.location.clone().filter(|_| was_media) else {
            return;
        };
        let target = &self.target;
        self.exchange = Exchange::delete(driver, target.api, &target.host, &target.path, &location);
        if self.exchange.is_some() {
            self.counters.delete_sent = true;
        }
    }

    /// Whether the `DELETE` still waits for its answer.
    pub fn deleting(&self) -> bool {
        self.exchange.is_some() && matches!(self.state, State::Done)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The H.264 payload type to send with: packetization mode 1 (FU-A: keyframes are larger than
/// a packet), High profile like the synthetic SPS if the server took it.
fn h264_pt<'a>(
    params: impl Iterator<Item = &'a str0m::format::PayloadParams>,
) -> Option<str0m::media::Pt> {
    let mut best: Option<(u8, str0m::media::Pt)> = None;
    for p in params {
        let spec = p.spec();
        if spec.codec != Codec::H264 {
            continue;
        }
        let mode1 = spec.format.packetization_mode == Some(1);
        let high = spec
            .format
            .profile_level_id
            .is_some_and(|id| id >> 16 == 0x64);
        let score = u8::from(mode1) * 2 + u8::from(high);
        if best.is_none_or(|(s, _)| score > s) {
            best = Some((score, p.pt()));
        }
    }
    best.map(|(_, pt)| pt)
}

/// Length-prefixed NAL units to Annex B, with `parameter_sets` (already in Annex B form) in
/// front unless the access unit carries its own SPS. `None` if a length runs past the end.
pub fn annexb(avcc: &[u8], length_size: u8, parameter_sets: Option<&[u8]>) -> Option<Vec<u8>> {
    let nalus = AvccNalus::new(avcc, length_size).ok()?;
    let mut nals = Vec::new();
    for nal in nalus {
        let nal = nal.ok()?;
        if !nal.is_empty() {
            nals.push(nal);
        }
    }
    let has_sps = nals.iter().any(|n| n[0] & 0x1f == 7);
    let sets = parameter_sets.filter(|_| !has_sps).unwrap_or(&[]);
    let mut out = Vec::with_capacity(sets.len() + avcc.len() + nals.len() * START_CODE.len());
    out.extend_from_slice(sets);
    for nal in nals {
        out.extend_from_slice(&START_CODE);
        out.extend_from_slice(nal);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtc_client::tests::{TestServer, answer_delete};
    use crate::source::{Source, Synthetic, SyntheticConfig, find_marker};
    use crate::srt::has_random_access_nal;
    use crate::udp::tests::{backends, turn};
    use std::net::{TcpListener, UdpSocket};
    use str0m::media::KeyframeRequestKind;

    /// What the test server received.
    #[derive(Default)]
    struct Received {
        /// Per video frame: (frame number, keyframe, SPS in front).
        video: Vec<(Option<u64>, bool, bool)>,
        audio: Vec<Vec<u8>>,
        /// The frame number after which the server asked for a keyframe.
        pli_after: Option<u64>,
        delete: String,
    }

    /// A minimal WHIP server: answers one offer with an ICE-lite str0m `Rtc` on `socket`,
    /// collects what arrives, asks for a keyframe once frame `pli_at` is in, and answers the
    /// `DELETE` (which ends it).
    fn serve(listener: TcpListener, socket: UdpSocket, pli_at: u64) -> Received {
        let (mut server, post) = TestServer::answer(
            &listener,
            socket,
            "/rtc/v1/whip/?app=live&stream=s",
            "/rtc/v1/whip/?action=delete&token=p1",
        );
        listener.set_nonblocking(true).unwrap();
        let mut received = Received::default();
        let mut video_mid = None;
        let began = Instant::now();
        let delete = loop {
            assert!(
                began.elapsed() < Duration::from_secs(10),
                "server timed out"
            );
            if let Ok((stream, _)) = listener.accept() {
                break stream;
            }
            server.turn(|rtc, event| {
                let Event::MediaData(data) = event else {
                    return;
                };
                if data.params.spec().codec == Codec::Opus {
                    received.audio.push(data.data.to_vec());
                    return;
                }
                video_mid = Some(data.mid);
                let au = &data.data;
                let marker = find_marker(&au[..au.len().min(512)]);
                let sps = au.windows(5).any(|w| w == [0, 0, 0, 1, 0x67]);
                received
                    .video
                    .push((marker, has_random_access_nal(au, false), sps));
                if received.pli_after.is_none() && marker >= Some(pli_at) {
                    let mut writer = rtc.writer(data.mid).unwrap();
                    writer
                        .request_keyframe(None, KeyframeRequestKind::Pli)
                        .unwrap();
                    received.pli_after = marker;
                }
            });
        };
        assert!(video_mid.is_some(), "no video arrived");
        drop(post);
        delete.set_nonblocking(false).unwrap();
        received.delete = answer_delete(delete);
        received
    }

    /// The publisher against a str0m WHIP server, on each backend this machine runs:
    /// signalling, ICE, DTLS, every synthetic frame in Annex B with its number (parameter
    /// sets before keyframes), Opus silence, a PLI answered with a keyframe out of GOP, the
    /// DELETE at the end.
    #[test]
    fn publishes_to_a_whip_server() {
        for backend in backends() {
            let frames = 24u64;
            let pli_at = 5;
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let api = listener.local_addr().unwrap();
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            let thread = std::thread::spawn(move || serve(listener, socket, pli_at));
            let mut driver = Driver::new(backend, &sluice_ring::DriverConfig::default()).unwrap();
            let target = WhipTarget {
                api,
                host: api.to_string(),
                path: "/rtc/v1/whip/?app=live&stream=s".into(),
            };
            let t0 = Instant::now();
            let mut whip =
                WhipPublisher::open(&mut driver, target, Duration::from_secs(5), t0).unwrap();
            let mut source = Source::Synthetic(Synthetic::new(SyntheticConfig {
                bitrate: 1_000_000,
                fps: 30,
                gop: 30,
            }));
            let mut pending: Option<Outgoing> = None;
            let mut sent = 0;
            let mut done_at = None;
            let mut deleting = false;
            while t0.elapsed() < Duration::from_secs(8) {
                let now = Instant::now();
                if let Some(started) = whip.connected_at() {
                    if whip.take_keyframe_request() && source.force_keyframe(pending.as_mut()) {
                        whip.forced_keyframe();
                    }
                    while sent < frames {
                        let next = pending.take().unwrap_or_else(|| source.next());
                        if started + Duration::from_millis(next.timestamp) > now {
                            pending = Some(next);
                            break;
                        }
                        whip.write(&mut driver, now, &next);
                        sent += u64::from(next.frame.is_some());
                    }
                    if sent == frames && done_at.is_none() {
                        done_at = Some(now);
                    }
                }
                if !deleting && done_at.is_some_and(|t| now > t + Duration::from_millis(300)) {
                    whip.shut_down(&mut driver);
                    deleting = true;
                }
                if deleting && !whip.deleting() {
                    break;
                }
                let next_wake = whip.next_wake();
                let max = Duration::from_millis(5);
                let now = turn(
                    &mut driver,
                    next_wake,
                    max,
                    |driver, event, now| match event {
                        sluice_ring::Event::Datagrams {
                            sock,
                            peer,
                            buf,
                            segment_size,
                        } => {
                            assert!(whip.owns_sock(sock));
                            whip.datagrams(driver, peer, buf, segment_size, now);
                        }
                        sluice_ring::Event::Received { conn, buf } => {
                            assert!(whip.owns(conn));
                            whip.http_received(driver, conn, buf, now);
                        }
                        sluice_ring::Event::Closed { conn, reason } => {
                            whip.closed(driver, conn, reason, now);
                        }
                        _ => {}
                    },
                );
                whip.timers(&mut driver, now);
            }
            let received = thread.join().unwrap();
            assert_eq!(whip.failure, None, "{backend}");
            let numbers: Vec<Option<u64>> = received.video.iter().map(|v| v.0).collect();
            let expected: Vec<Option<u64>> = (0..frames).map(Some).collect();
            assert_eq!(numbers, expected, "{backend}");
            for &(number, keyframe, sps) in &received.video {
                assert_eq!(
                    keyframe, sps,
                    "{backend}: frame {number:?}: SPS iff keyframe"
                );
            }
            let keyframes: Vec<u64> = received
                .video
                .iter()
                .filter(|v| v.1)
                .filter_map(|v| v.0)
                .collect();
            let pli_after = received.pli_after.unwrap();
            assert_eq!(keyframes.len(), 2, "{backend}: {keyframes:?}");
            assert_eq!(keyframes[0], 0);
            // The PLI takes a round trip; the publisher answers with the next frame.
            assert!(
                (pli_after + 1..=pli_after + 3).contains(&keyframes[1]),
                "{backend}: PLI after {pli_after}, keyframes {keyframes:?}"
            );
            let c = &whip.counters;
            assert_eq!(
                (
                    c.video_frames,
                    c.keyframes,
                    c.forced_keyframes,
                    c.keyframe_requests
                ),
                (frames, 2, 1, 1),
                "{backend}: {c:?}"
            );
            assert!(c.audio_frames >= frames * 33 / 20 - 2, "{backend}: {c:?}");
            assert!(
                received.audio.len() + 3 >= c.audio_frames as usize
                    && received.audio.iter().all(|a| a[..] == OPUS_SILENCE),
                "{backend}: {} Opus frames received",
                received.audio.len()
            );
            assert_eq!(
                received.delete,
                "DELETE /rtc/v1/whip/?action=delete&token=p1 HTTP/1.1"
            );
            assert_eq!(c.delete_status, Some(200), "{backend}");
        }
    }

    #[test]
    fn annexb_puts_parameter_sets_before_keyframes() {
        let avcc = [0, 0, 0, 2, 0x65, 0xaa, 0, 0, 0, 1, 0x06];
        let sets = [0, 0, 0, 1, 0x67, 0x64, 0, 0, 0, 1, 0x68, 0xef];
        let key = annexb(&avcc, 4, Some(&sets)).unwrap();
        assert_eq!(key[..sets.len()], sets);
        assert_eq!(
            key[sets.len()..],
            [0, 0, 0, 1, 0x65, 0xaa, 0, 0, 0, 1, 0x06]
        );
        let inter = annexb(&avcc, 4, None).unwrap();
        assert_eq!(inter, [0, 0, 0, 1, 0x65, 0xaa, 0, 0, 0, 1, 0x06]);
        // An access unit with its own SPS gets no second copy.
        let own = [0, 0, 0, 2, 0x67, 0x64, 0, 0, 0, 2, 0x65, 0xaa];
        let written = annexb(&own, 4, Some(&sets)).unwrap();
        assert_eq!(written, [0, 0, 0, 1, 0x67, 0x64, 0, 0, 0, 1, 0x65, 0xaa]);
        assert_eq!(annexb(&[0, 0, 0, 9, 0x65], 4, None), None);
    }
}
