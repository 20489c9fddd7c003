//! WebRTC sessions: one str0m [`Rtc`] (ICE-lite, DTLS-SRTP, RTP/RTCP) on a driver flow of the
//! worker's WebRTC socket, answered by signalling (`control::rtc_api`) and claimed by this
//! worker when its first STUN request arrived here.
//!
//! - A **publisher** (WHIP) sends H.264/H.265 and Opus. str0m reassembles frames; video goes
//!   through [`FlvVideoPacker`] into FLV bodies (sequence headers from the in-band parameter
//!   sets) and into the hub like any publisher's, audio goes in as [`FrameKind::Opus`] for
//!   WebRTC viewers and, with `rtc_to_rtmp` and the `transcode` feature, as AAC for everyone
//!   else. It is asked for a keyframe (PLI) when a viewer asks, when video starts without
//!   parameter sets, and every `pli_interval_ms` so RTMP/HLS viewers get one.
//! - A **player** (WHEP) is a hub viewer whose frames become RTP: video from FLV bodies to
//!   Annex B (parameter sets before each keyframe; B-frames dropped as SRS does, WebRTC players
//!   cannot reorder), audio from the stream's Opus frames. str0m packetizes, paces and answers
//!   NACKs (RTX) and keyframe requests, which go on to the publisher.
//!
//! Every datagram str0m sends goes to the driver as one datagram; the driver sends a frame's
//! packets (equal sizes and a shorter last one) with one GSO `sendmsg`. str0m's timers are kept
//! by the worker (`Ctx::wake_at`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_proto::codec::flv_video::{FlvVideoPacker, VideoCodecKind};
use sluice_proto::codec::{
    AnnexBWriter, AvcDecoderConfig, AvccNalus, HevcDecoderConfig, VideoPacket, VideoPacketKind,
    h264,
};
use sluice_proto::flv::VideoCodec;
use sluice_ring::{CloseReason, ConnId, Driver, UdpId};
use str0m::format::Codec;
use str0m::media::{KeyframeRequestKind, MediaData, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Event, IceConnectionState, Input, Output, Rtc};

use super::player::{Player, PlayerOutput};
use super::publisher::Publishing;
use super::{ClientInfo, Ctx, StreamRole, end_stream_role};
use crate::control::views::ClientView;
use crate::framing::Framing;
use crate::hub::{Frame, FrameKind, StreamKey, StreamSettings};
use crate::request::StreamRequest;
use crate::rtc::{PendingSession, Role};
use crate::transcode::{EncodedAudio, OpusToAac};

/// Keyframe requests to a publisher at most this often (a burst of viewers' PLIs is one).
const MIN_PLI_INTERVAL: Duration = Duration::from_millis(500);
/// Most frames queued for str0m per player before the oldest video is skipped to a keyframe.
const MAX_QUEUED_SAMPLES: usize = 512;

pub struct RtcSession {
    pub client: ClientInfo,
    rtc: Box<Rtc>,
    role: Role,
    request: StreamRequest,
    key: StreamKey,
    session_id: String,
    /// The worker's WebRTC socket, for datagrams to an address other than the flow's peer.
    sock: UdpId,
    /// Our candidate address: where str0m is told the datagrams arrived (its ICE agent takes
    /// only what arrives at one of its candidates; behind NAT or `?eip=` that is not the
    /// socket's own address).
    local: SocketAddr,
    state: State,
    video: Option<Mid>,
    audio: Option<Mid>,
    /// ICE and DTLS are done; the role starts once str0m has announced the media
    /// (`MediaAdded` comes only when SRTP is ready, after `Connected`).
    connected: bool,
    /// The wake-up last asked of the worker.
    scheduled: Option<Instant>,
    close_reason: Option<String>,
    closing: bool,
    last_role: Option<(&'static str, String)>,
}

enum State {
    /// ICE and DTLS not done yet.
    Connecting,
    Publishing(Box<Publishing>, Box<Ingest>),
    Playing(Box<Player>, Box<RtpOut>),
    Ended,
}

impl RtcSession {
    pub fn new(client: ClientInfo, pending: PendingSession, sock: UdpId) -> RtcSession {
        let peer = client.peer;
        let local = pending
            .candidates
            .iter()
            .find(|c| c.is_ipv4() == peer.is_ipv4())
            .or(pending.candidates.first())
            .copied()
            .unwrap_or(peer);
        RtcSession {
            client,
            rtc: Box::new(pending.rtc),
            role: pending.role,
            request: pending.request,
            key: pending.key,
            session_id: pending.session_id,
            sock,
            local,
            state: State::Connecting,
            video: None,
            audio: None,
            connected: false,
            scheduled: None,
            close_reason: None,
            closing: false,
            last_role: None,
        }
    }

    pub fn conn_hint(&self) -> ConnId {
        self.client.conn
    }

    /// The local ICE ufrag the registry knows this session by.
    pub fn ufrag(&self) -> &str {
        self.session_id.split(':').next().unwrap_or("")
    }

    pub fn start(&mut self, ctx: &mut Ctx<'_>) {
        tracing::info!(
            client = %self.client.id,
            peer = %self.client.peer,
            proto = "rtc",
            role = self.role.name(),
            stream = %self.request.path(),
            vhost = %self.key.vhost,
            session = %self.session_id,
            worker = ctx.worker,
            "rtc client connected"
        );
        self.drive(ctx);
    }

    /// One datagram from a peer of this session. `false` when str0m could not parse it.
    pub fn handle_datagram(&mut self, peer: SocketAddr, data: &[u8], ctx: &mut Ctx<'_>) -> bool {
        self.client.bytes_in += data.len() as u64;
        let Ok(receive) = Receive::new(Protocol::Udp, peer, self.local, data) else {
            return false;
        };
        if self.closing {
            return true;
        }
        if let Err(e) = self.rtc.handle_input(Input::Receive(ctx.now, receive)) {
            tracing::debug!(client = %self.client.id, error = %e, "rtc: datagram refused");
        }
        self.drive(ctx);
        true
    }

    /// The wake-up this session asked for (or a stale one).
    pub fn on_timer(&mut self, ctx: &mut Ctx<'_>) {
        if self.scheduled.is_some_and(|at| at <= ctx.now) {
            self.scheduled = None;
        }
        if self.closing {
            return;
        }
        if let Err(e) = self.rtc.handle_input(Input::Timeout(ctx.now)) {
            tracing::debug!(client = %self.client.id, error = %e, "rtc: timeout input failed");
        }
        self.drive(ctx);
    }

    /// Carries out everything str0m has to do — a player's queued frames first — then sends
    /// its datagrams, handles its events and asks for its next wake-up.
    fn drive(&mut self, ctx: &mut Ctx<'_>) {
        if self.closing {
            return;
        }
        self.write_queued(ctx);
        loop {
            if !self.rtc.is_alive() {
                let reason = self
                    .close_reason
                    .clone()
                    .unwrap_or_else(|| "webrtc session ended".into());
                self.close(ctx, reason);
                return;
            }
            let output = match self.rtc.poll_output() {
                Ok(output) => output,
                Err(e) => {
                    tracing::warn!(client = %self.client.id, peer = %self.client.peer, error = %e, "rtc: session failed");
                    self.close(ctx, format!("webrtc error: {e}"));
                    return;
                }
            };
            match output {
                Output::Transmit(transmit) => {
                    let datagram = Bytes::from(Vec::from(transmit.contents));
                    self.client.bytes_out += datagram.len() as u64;
                    if transmit.destination == self.client.peer {
                        ctx.driver.send_datagrams(ctx.conn, datagram, 0);
                    } else {
                        ctx.driver
                            .send_to(self.sock, transmit.destination, &datagram);
                    }
                }
                Output::Timeout(at) => {
                    // str0m wakes us at least every few hundred ms while alive.
                    if self.scheduled.is_none_or(|s| at < s) {
                        self.scheduled = Some(at);
                        ctx.wake_at(at.max(ctx.now));
                    }
                    break;
                }
                Output::Event(event) => {
                    self.on_event(event, ctx);
                    if self.closing {
                        return;
                    }
                }
            }
        }
        if self.connected && matches!(self.state, State::Connecting) {
            // Every event is drained: the media (mids) are known.
            self.begin_role(ctx);
        }
    }

    fn on_event(&mut self, event: Event, ctx: &mut Ctx<'_>) {
        match event {
            Event::MediaAdded(added) => match added.kind {
                MediaKind::Video => self.video = self.video.or(Some(added.mid)),
                MediaKind::Audio => self.audio = self.audio.or(Some(added.mid)),
            },
            Event::Connected => self.connected = true,
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.close(ctx, "peer gone (ICE disconnected)".into());
            }
            Event::MediaData(data) => self.on_media(data, ctx),
            Event::KeyframeRequest(_) => {
                if let State::Playing(player, out) = &mut self.state {
                    // From the stream's next keyframe: the publisher is asked for one.
                    player.stream.request_keyframe();
                    out.keyframe_requests += 1;
                }
            }
            _ => {}
        }
    }

    fn begin_role(&mut self, ctx: &mut Ctx<'_>) {
        if !matches!(self.state, State::Connecting) {
            return;
        }
        match self.role {
            Role::Publish => {
                match Publishing::begin(ctx, &self.client, "rtc", &self.key, &self.request) {
                    Ok(mut publishing) => {
                        publishing.has_own_opus();
                        let ingest = Ingest::new(ctx);
                        self.state = State::Publishing(Box::new(publishing), Box::new(ingest));
                        self.request_keyframe(ctx.now, true);
                    }
                    Err(why) => self.close(ctx, why),
                }
            }
            Role::Play => {
                let vhost = ctx.shared.config.vhost(&self.key.vhost).1;
                let settings = StreamSettings::for_vhost(vhost);
                let (stream, start, cursor) = ctx.join(self.key.clone(), &settings);
                ctx.write_at_once(&stream);
                stream.want_opus();
                tracing::info!(client = %self.client.id, peer = %self.client.peer, proto = "rtc", vhost = %stream.key.vhost, stream = %self.request.path(), param = %self.request.param, published = stream.is_published(), start_frames = start.frames.len(), from_keyframe = start.has_keyframe, "play started");
                let config = ctx.shared.config.vhost(&self.key.vhost).1.play.clone();
                let mut player = Box::new(Player::new(
                    stream,
                    self.request.clone(),
                    cursor,
                    config,
                    Framing::Frames,
                    ctx.now,
                ));
                let mut out = Box::new(RtpOut::new());
                player.start_to(ctx, &start, out.as_mut());
                self.state = State::Playing(player, out);
                self.drive(ctx);
            }
        }
    }

    /// A publisher's frame from str0m.
    fn on_media(&mut self, data: MediaData, ctx: &mut Ctx<'_>) {
        let State::Publishing(publishing, ingest) = &mut self.state else {
            return;
        };
        let codec = data.params.spec().codec;
        let timestamp = ingest.clock.timestamp(&data);
        match codec {
            Codec::H264 | Codec::H265 => {
                let kind = if codec == Codec::H264 {
                    VideoCodecKind::H264
                } else {
                    VideoCodecKind::H265
                };
                let packer = ingest
                    .video
                    .get_or_insert_with(|| FlvVideoPacker::new(kind));
                if packer.codec() != kind {
                    *packer = FlvVideoPacker::new(kind);
                }
                let mut errors = Vec::new();
                let packed = packer.pack(&data.data, 0, &mut errors);
                for (what, error) in errors {
                    tracing::debug!(client = %self.client.id, what, %error, "rtc publisher: bad video skipped");
                }
                if let Some(header) = packed.sequence_header {
                    publishing.push(FrameKind::Video, timestamp, header, ctx);
                }
                let unconfigured = packed.unconfigured;
                if let Some(frame) = packed.frame {
                    publishing.push(FrameKind::Video, timestamp, frame, ctx);
                }
                ingest.video_frames += 1;
                let wanted = publishing.stream.take_keyframe_request();
                if unconfigured || wanted {
                    self.request_keyframe(ctx.now, false);
                }
            }
            Codec::Opus => {
                let payload = Bytes::copy_from_slice(&data.data);
                let chunk_size = publishing.stream.settings.chunk_size;
                if let Some(frame) =
                    Frame::new(FrameKind::Opus, timestamp, payload.clone(), chunk_size)
                {
                    ctx.publish_frame(&publishing.stream, std::sync::Arc::new(frame));
                }
                ingest.audio_frames += 1;
                for aac in ingest.transcode_to_aac(&payload, timestamp, &self.client.id) {
                    publishing.push(FrameKind::Audio, aac.0, aac.1, ctx);
                }
            }
            _ => {}
        }
        let periodic = ctx.shared.config.rtc_server.pli_interval_ms;
        if let State::Publishing(_, ingest) = &self.state
            && periodic > 0
            && ingest
                .last_pli
                .is_none_or(|at| ctx.now >= at + Duration::from_millis(periodic))
        {
            self.request_keyframe(ctx.now, false);
        }
    }

    /// Asks the publisher for a keyframe (PLI), at most every [`MIN_PLI_INTERVAL`] unless
    /// `force`.
    fn request_keyframe(&mut self, now: Instant, force: bool) {
        let State::Publishing(_, ingest) = &mut self.state else {
            return;
        };
        if !force
            && ingest
                .last_pli
                .is_some_and(|at| now < at + MIN_PLI_INTERVAL)
        {
            return;
        }
        let Some(mid) = self.video else { return };
        if let Some(mut writer) = self.rtc.writer(mid) {
            let kind = if writer.is_request_keyframe_possible(KeyframeRequestKind::Pli) {
                KeyframeRequestKind::Pli
            } else {
                KeyframeRequestKind::Fir
            };
            if writer.request_keyframe(None, kind).is_ok() {
                ingest.last_pli = Some(now);
                ingest.keyframe_requests += 1;
            }
        }
    }

    /// Writes the frames a player has not had yet; returns its cursor.
    pub fn write_pending(&mut self, ctx: &mut Ctx<'_>) -> Option<u64> {
        let State::Playing(player, out) = &mut self.state else {
            return None;
        };
        let (_, cursor) = player.write_pending_to(ctx, &self.client.id, out.as_mut());
        self.drive(ctx);
        cursor
    }

    /// Hands the player's queued frames to str0m's writers. A kind of media the peer did not
    /// negotiate (no mid, or no payload type for the stream's codec) is dropped.
    fn write_queued(&mut self, ctx: &mut Ctx<'_>) {
        let State::Playing(_, out) = &mut self.state else {
            return;
        };
        if out.samples.is_empty() {
            return;
        }
        let samples = std::mem::take(&mut out.samples);
        out.queued_bytes = 0;
        for sample in samples {
            let mid = match sample.codec {
                Codec::Opus => self.audio,
                _ => self.video,
            };
            let Some(mid) = mid else { continue };
            let Some(writer) = self.rtc.writer(mid) else {
                continue;
            };
            let key = (mid, sample.codec, out.profile);
            let cached = out.payload_types.iter().find(|(k, _)| *k == key);
            let pt = match cached {
                Some((_, pt)) => *pt,
                None => {
                    let pt =
                        choose_payload_type(writer.payload_params(), sample.codec, out.profile);
                    if pt.is_none() {
                        tracing::warn!(client = %self.client.id, codec = ?sample.codec, "rtc player: the peer takes no such codec; its frames are dropped");
                    }
                    out.payload_types.push((key, pt));
                    pt
                }
            };
            let Some(pt) = pt else { continue };
            let rtp_time = match sample.codec {
                Codec::Opus => MediaTime::new(
                    u64::from(sample.time_ms) * 48,
                    str0m::media::Frequency::FORTY_EIGHT_KHZ,
                ),
                _ => MediaTime::from_90khz(u64::from(sample.time_ms) * 90),
            };
            if let Err(e) = writer.write(pt, ctx.now, rtp_time, sample.data) {
                tracing::debug!(client = %self.client.id, error = %e, "rtc player: frame not written");
            }
        }
    }

    pub fn drained(&mut self, ctx: &mut Ctx<'_>) {
        if matches!(&self.state, State::Playing(p, _) if p.throttled()) {
            self.write_pending(ctx);
        }
    }

    pub fn check_timeouts(&mut self, ctx: &mut Ctx<'_>) {
        let expired = match &self.state {
            State::Publishing(p, _) => p.expired(ctx.now),
            State::Playing(p, _) => p.stalled(ctx),
            State::Connecting => {
                let limit = Duration::from_millis(ctx.shared.config.rtc_server.connect_timeout_ms);
                (ctx.now >= self.client.started + limit)
                    .then(|| "ICE/DTLS did not complete (connect_timeout)".to_string())
            }
            State::Ended => None,
        };
        if let Some(reason) = expired {
            tracing::warn!(client = %self.client.id, peer = %self.client.peer, reason = %reason, "closing connection");
            self.close(ctx, reason);
        }
    }

    /// Ends the session: str0m stops (a peer notices by its consent checks going unanswered,
    /// or by the DELETE it sent), the flow closes once its queue is out.
    pub fn close(&mut self, ctx: &mut Ctx<'_>, reason: String) {
        if self.closing {
            return;
        }
        self.close_reason.get_or_insert(reason);
        self.rtc.disconnect();
        self.closing = true;
        ctx.driver.close_after_flush(ctx.conn);
    }

    pub fn kick(&mut self, ctx: &mut Ctx<'_>) {
        self.close(ctx, "ended by the API (DELETE or kick)".into());
    }

    pub fn shut_down(&mut self, ctx: &mut Ctx<'_>) {
        self.close(ctx, "server shutting down".into());
    }

    fn describe_role(&self) -> Option<(&'static str, String)> {
        match &self.state {
            State::Publishing(p, _) => Some(("publisher", p.describe())),
            State::Playing(p, _) => Some(("player", p.describe())),
            _ => None,
        }
    }

    pub fn view(&self, now: Instant, worker: usize) -> ClientView {
        let (kind, publish) = match self.role {
            Role::Publish => ("rtc-publish", true),
            Role::Play => ("rtc-play", false),
        };
        let stream = match &self.state {
            State::Publishing(p, _) => Some(p.stream.id),
            State::Playing(p, _) => Some(p.stream.id),
            _ => None,
        };
        self.client.stream_view(
            (now, worker),
            &self.key,
            &self.request,
            (kind, publish),
            stream,
        )
    }

    /// The flow is gone: leave the hub, send the closing hooks, log the summary.
    pub fn closed(&mut self, reason: CloseReason, ctx: &mut Ctx<'_>) {
        if let Some(role) = self.describe_role() {
            self.last_role = Some(role);
        }
        ctx.shared.rtc.forget(self.ufrag(), ctx.now);
        let why = self
            .close_reason
            .clone()
            .unwrap_or_else(|| reason.to_string());
        let mut counts = (0, 0, 0);
        let mut skipped_b_frames = 0;
        let role = match std::mem::replace(&mut self.state, State::Ended) {
            State::Publishing(p, ingest) => {
                counts = (
                    ingest.video_frames,
                    ingest.audio_frames,
                    ingest.keyframe_requests,
                );
                StreamRole::Publisher(p)
            }
            State::Playing(p, out) => {
                counts = (out.video_frames, out.audio_frames, out.keyframe_requests);
                skipped_b_frames = out.skipped_b_frames;
                StreamRole::Player(p)
            }
            _ => StreamRole::None,
        };
        end_stream_role(ctx, &self.client, (&self.key, &self.request), role, &why);
        let (role, stream) = self
            .last_role
            .clone()
            .unwrap_or(("none", self.request.path()));
        tracing::info!(
            client = %self.client.id,
            peer = %self.client.peer,
            proto = "rtc",
            role,
            stream = %stream,
            bytes_in = self.client.bytes_in,
            bytes_out = self.client.bytes_out,
            video_frames = counts.0,
            audio_frames = counts.1,
            keyframe_requests = counts.2,
            skipped_b_frames,
            duration_ms = ctx.now.saturating_duration_since(self.client.started).as_millis() as u64,
            reason = %why,
            "client left"
        );
    }
}

/// What a payload type was chosen for: the media, the codec and (H.264) the profile.
type PayloadKey = (Mid, Codec, Option<u8>);

/// The payload type to send `codec` with: for H.264 one with packetization-mode 1, preferably
/// of the stream's profile (`profile_idc`) — the peer's order otherwise.
fn choose_payload_type<'a>(
    params: impl Iterator<Item = &'a str0m::format::PayloadParams>,
    codec: Codec,
    profile: Option<u8>,
) -> Option<str0m::media::Pt> {
    let usable: Vec<&str0m::format::PayloadParams> = params
        .filter(|p| {
            let spec = p.spec();
            spec.codec == codec
                && (codec != Codec::H264 || spec.format.packetization_mode == Some(1))
        })
        .collect();
    let same_profile = usable.iter().find(|p| {
        codec == Codec::H264
            && profile.is_some()
            && p.spec().format.profile_level_id.map(|id| (id >> 16) as u8) == profile
    });
    same_profile.or(usable.first()).map(|p| p.pt())
}

/// A WebRTC publisher's tracks on their way into the hub.
struct Ingest {
    clock: MediaClock,
    video: Option<FlvVideoPacker>,
    /// Opus → AAC for the stream's other viewers (`rtc_to_rtmp`); `None` when off or when the
    /// transcoder could not start (logged once).
    aac: Option<OpusToAac>,
    /// The AAC sequence header went out.
    aac_header_sent: bool,
    last_pli: Option<Instant>,
    video_frames: u64,
    audio_frames: u64,
    keyframe_requests: u64,
}

impl Ingest {
    fn new(ctx: &Ctx<'_>) -> Ingest {
        let aac = if ctx.shared.config.rtc_server.rtc_to_rtmp {
            match OpusToAac::new() {
                Ok(aac) => Some(aac),
                Err(e) => {
                    tracing::warn!(error = %e, "rtc publisher: no Opus → AAC transcoding; RTMP/FLV/HLS viewers get video only");
                    None
                }
            }
        } else {
            None
        };
        Ingest {
            clock: MediaClock::default(),
            video: None,
            aac,
            aac_header_sent: false,
            last_pli: None,
            video_frames: 0,
            audio_frames: 0,
            keyframe_requests: 0,
        }
    }

    /// The AAC bodies (FLV audio, with the sequence header first) for one Opus packet.
    fn transcode_to_aac(&mut self, opus: &[u8], timestamp: u32, client: &str) -> Vec<(u32, Bytes)> {
        let Some(aac) = &mut self.aac else {
            return Vec::new();
        };
        let frames = match aac.push(opus, timestamp) {
            Ok(frames) => frames,
            Err(e) => {
                tracing::debug!(client, error = %e, "rtc publisher: Opus packet not transcoded");
                return Vec::new();
            }
        };
        let mut out = Vec::with_capacity(frames.len() + 1);
        if !self.aac_header_sent && !frames.is_empty() {
            self.aac_header_sent = true;
            let mut header = vec![AAC_SOUND_FLAGS, 0];
            header.extend_from_slice(&aac.audio_specific_config());
            out.push((frames[0].timestamp_ms, Bytes::from(header)));
        }
        out.extend(frames.into_iter().map(
            |EncodedAudio {
                 data, timestamp_ms, ..
             }| {
                let mut body = Vec::with_capacity(2 + data.len());
                body.extend_from_slice(&[AAC_SOUND_FLAGS, 1]);
                body.extend_from_slice(&data);
                (timestamp_ms, Bytes::from(body))
            },
        ));
        out
    }
}

/// FLV sound byte for AAC: format 10, 44 kHz flag, 16-bit, stereo (FLV readers take the real
/// rate and channels from the AudioSpecificConfig).
const AAC_SOUND_FLAGS: u8 = 0xAF;

/// Puts a publisher's tracks on one millisecond clock. Each track's RTP time runs from a
/// random start; a track is anchored at the arrival time of its first frame (relative to the
/// session's first frame) and follows its own RTP time from there, so frames keep their exact
/// spacing and the tracks line up within the network jitter of their first frames.
#[derive(Default)]
struct MediaClock {
    origin: Option<Instant>,
    /// Per track (by clock rate): (first RTP time in ms, its position on the clock in ms).
    anchors: Vec<(u32, i64, i64)>,
}

impl MediaClock {
    fn timestamp(&mut self, data: &MediaData) -> u32 {
        let origin = *self.origin.get_or_insert(data.network_time);
        let rate = data.time.denom();
        let media_ms = (data.time.numer() as i128 * 1000 / i128::from(rate.max(1))) as i64;
        let anchor = match self.anchors.iter().find(|(r, _, _)| *r == rate) {
            Some(&(_, first, at)) => (first, at),
            None => {
                let at = data
                    .network_time
                    .saturating_duration_since(origin)
                    .as_millis() as i64;
                self.anchors.push((rate, media_ms, at));
                (media_ms, at)
            }
        };
        (anchor.1 + (media_ms - anchor.0)).max(0) as u32
    }
}

/// One frame for str0m to packetize.
struct Sample {
    /// H.264, H.265 or Opus.
    codec: Codec,
    /// Presentation time (ms).
    time_ms: u32,
    data: Vec<u8>,
}

/// A WebRTC player's frames, turned from the hub's form into what RTP carries: Annex B video
/// with the parameter sets before each keyframe, Opus audio. Queued here and handed to str0m
/// by the session (which owns the `Rtc`).
struct RtpOut {
    samples: Vec<Sample>,
    queued_bytes: usize,
    annexb: Option<AnnexBWriter>,
    /// The video's codec and (H.264) profile_idc, from its sequence header.
    video_codec: Codec,
    profile: Option<u8>,
    /// The payload type chosen per (mid, codec, profile); `None` when the peer has none.
    payload_types: Vec<(PayloadKey, Option<str0m::media::Pt>)>,
    /// B-frames skipped (WebRTC players cannot reorder frames).
    skipped_b_frames: u64,
    video_frames: u64,
    audio_frames: u64,
    keyframe_requests: u64,
}

impl RtpOut {
    fn new() -> RtpOut {
        RtpOut {
            samples: Vec::new(),
            queued_bytes: 0,
            annexb: None,
            video_codec: Codec::H264,
            profile: None,
            payload_types: Vec::new(),
            skipped_b_frames: 0,
            video_frames: 0,
            audio_frames: 0,
            keyframe_requests: 0,
        }
    }

    fn video(&mut self, frame: &Frame, timestamp: u32) -> usize {
        let Ok(packet) = VideoPacket::parse(&frame.payload) else {
            return 0;
        };
        match packet.kind {
            VideoPacketKind::SequenceHeader => {
                self.profile = None;
                self.annexb = match packet.codec {
                    VideoCodec::Avc => AvcDecoderConfig::parse(packet.data).ok().map(|c| {
                        self.video_codec = Codec::H264;
                        self.profile = Some(c.profile_indication);
                        AnnexBWriter::h264(&c)
                    }),
                    VideoCodec::Hevc => HevcDecoderConfig::parse(packet.data).ok().map(|c| {
                        self.video_codec = Codec::H265;
                        AnnexBWriter::h265(&c)
                    }),
                    _ => None,
                };
                0
            }
            VideoPacketKind::CodedFrames => {
                let Some(writer) = &self.annexb else { return 0 };
                if packet.codec == VideoCodec::Avc && is_b_frame(packet.data, writer) {
                    self.skipped_b_frames += 1;
                    return 0;
                }
                let mut data = Vec::with_capacity(packet.data.len() + 64);
                if writer
                    .write(packet.data, frame.keyframe, &mut data)
                    .is_err()
                {
                    return 0;
                }
                let pts = timestamp.wrapping_add_signed(packet.composition_time);
                self.push(self.video_codec, pts, data)
            }
            _ => 0,
        }
    }

    /// Queues what RTP carries of a frame at this viewer's `timestamp`; returns its bytes.
    fn take(&mut self, frame: &Frame, timestamp: u32) -> usize {
        match frame.kind {
            FrameKind::Video => self.video(frame, timestamp),
            FrameKind::Opus => self.push(Codec::Opus, timestamp, frame.payload.to_vec()),
            // AAC and metadata: the Opus frames carry this stream's audio to WebRTC.
            FrameKind::Audio | FrameKind::Metadata => 0,
        }
    }

    fn push(&mut self, codec: Codec, time_ms: u32, data: Vec<u8>) -> usize {
        if self.samples.len() >= MAX_QUEUED_SAMPLES {
            return 0;
        }
        let len = data.len();
        match codec {
            Codec::Opus => self.audio_frames += 1,
            _ => self.video_frames += 1,
        }
        self.queued_bytes += len;
        self.samples.push(Sample {
            codec,
            time_ms,
            data,
        });
        len
    }
}

/// Whether an AVC access unit's first slice is a B slice.
fn is_b_frame(access_unit: &[u8], writer: &AnnexBWriter) -> bool {
    let Ok(nalus) = AvccNalus::new(access_unit, writer.nalu_length_size()) else {
        return false;
    };
    nalus.flatten().find_map(h264::is_b_slice).unwrap_or(false)
}

impl PlayerOutput for RtpOut {
    fn pending(&self, driver: &Driver, conn: ConnId) -> usize {
        driver.pending_bytes(conn) + self.queued_bytes
    }

    fn write(
        &mut self,
        _driver: &mut Driver,
        _conn: ConnId,
        _framing: &mut Framing,
        frame: &Frame,
        timestamp: u32,
    ) -> usize {
        self.take(frame, timestamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_proto::codec::annexb::annexb_nalus;

    const CHUNK: u32 = 4096;

    fn frame(kind: FrameKind, timestamp: u32, payload: Vec<u8>) -> Frame {
        Frame::new(kind, timestamp, Bytes::from(payload), CHUNK).expect("a media frame")
    }

    /// An AVC sequence header body for a tiny made-up SPS/PPS.
    fn avc_header() -> Frame {
        let config = AvcDecoderConfig {
            profile_indication: 100,
            profile_compatibility: 0,
            level_indication: 31,
            nalu_length_size: 4,
            sps: vec![Bytes::from_static(&[0x67, 0x64, 0x00, 0x1f])],
            pps: vec![Bytes::from_static(&[0x68, 0xef])],
        };
        let mut body = vec![0x17, 0, 0, 0, 0];
        config.write(&mut body);
        frame(FrameKind::Video, 0, body)
    }

    /// An AVC coded frame: one slice NAL (`nal`), with its composition time (ms).
    fn avc_frame(keyframe: bool, cts: i32, timestamp: u32, nal: &[u8]) -> Frame {
        let mut body = vec![if keyframe { 0x17 } else { 0x27 }, 1];
        body.extend_from_slice(&cts.to_be_bytes()[1..]);
        body.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        body.extend_from_slice(nal);
        frame(FrameKind::Video, timestamp, body)
    }

    fn write(out: &mut RtpOut, frame: &Frame) -> usize {
        out.take(frame, frame.timestamp)
    }

    #[test]
    fn video_becomes_annex_b_with_parameter_sets_and_b_frames_are_dropped() {
        let mut out = RtpOut::new();
        assert_eq!(write(&mut out, &avc_header()), 0);
        assert_eq!(out.profile, Some(100));
        // IDR (type 5, ref_idc 3): first_mb 0 ("1"), slice_type 7 = I ("0001000").
        let idr = [0x65, 0b1000_1000, 0x80];
        // P slice: type 1 ref_idc 2, first_mb 0, slice_type 5 = P ("00110").
        let p = [0x41, 0b1001_1000];
        // B slice: type 1 ref_idc 0, first_mb 0, slice_type 6 = B ("00111").
        let b = [0x01, 0b1001_1100];
        assert!(write(&mut out, &avc_frame(true, 40, 1000, &idr)) > 0);
        assert!(write(&mut out, &avc_frame(false, 80, 1040, &p)) > 0);
        assert_eq!(write(&mut out, &avc_frame(false, 0, 1080, &b)), 0);
        assert_eq!(out.skipped_b_frames, 1);
        assert_eq!(out.samples.len(), 2);
        let key: Vec<&[u8]> = annexb_nalus(&out.samples[0].data).collect();
        assert_eq!(
            key.iter().map(|n| n[0] & 0x1f).collect::<Vec<_>>(),
            vec![9, 7, 8, 5],
            "AUD, SPS, PPS, IDR"
        );
        // RTP time is the presentation time: timestamp + composition time.
        assert_eq!(
            (out.samples[0].time_ms, out.samples[1].time_ms),
            (1040, 1120)
        );
        assert!(out.samples.iter().all(|s| s.codec == Codec::H264));
    }

    #[test]
    fn opus_frames_pass_and_aac_does_not() {
        let mut out = RtpOut::new();
        let opus = frame(FrameKind::Opus, 20, vec![0xf8, 0xff, 0xfe]);
        assert_eq!(write(&mut out, &opus), 3);
        let aac = frame(FrameKind::Audio, 20, vec![0xaf, 1, 0x21, 0x10]);
        assert_eq!(write(&mut out, &aac), 0);
        assert_eq!(out.samples.len(), 1);
        assert_eq!(out.samples[0].codec, Codec::Opus);
        assert_eq!(out.audio_frames, 1);
    }
}
