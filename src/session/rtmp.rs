//! RTMP sessions: a `sluice_proto` [`ServerSession`] on a driver connection. A publisher's
//! media goes into its hub stream; a player gets the stream's start (metadata, sequence
//! headers, GOP cache) and then live frames from its worker's mirror, each as its own chunk
//! header plus the frame's shared chunked body.

use std::time::Instant;

use bytes::Bytes;
use sluice_proto::flv;
use sluice_proto::rtmp::{
    MediaKind, MediaMessage, PlayRequest, PublishRequest, ServerSession, SessionConfig,
    SessionError, SessionEvent, SessionOutput,
};
use sluice_ring::{CloseReason, ConnId};

use super::player::Player;
use super::publisher::Publishing;
use super::{ClientInfo, Ctx, HookSubject};
use crate::config::Config;
use crate::control::views::ClientView;
use crate::control::{Hook, Verdict};
use crate::framing::Framing;
use crate::framing::rtmp::RtmpFraming;
use crate::hub::{FrameKind, PublishError, Publisher as HubPublisher, StreamKey, StreamSettings};
use crate::request::StreamRequest;
use crate::security::Method;

pub struct RtmpSession {
    pub client: ClientInfo,
    proto: ServerSession,
    tc_url: String,
    app: String,
    page_url: String,
    swf_url: String,
    /// The connect was accepted (SRS sends `on_close` only for such clients).
    connected: bool,
    /// A request parked until a hook's verdict.
    waiting: Option<Waiting>,
    /// `on_connect` has allowed this client (it is asked once, at its first publish or play).
    connect_allowed: bool,
    role: Role,
    /// The client must be publishing or playing by then.
    setup_deadline: Instant,
    /// Why we closed it, for the leave log line.
    close_reason: Option<String>,
    /// The role it had last ("publisher"/"player") and its stream, for the leave log line
    /// even after the client stopped publishing or playing before disconnecting.
    last_role: Option<(&'static str, String)>,
}

/// A publish or play parked until `hook` answers.
struct Waiting {
    intent: Intent,
    stream_id: u32,
    request: StreamRequest,
    hook: Hook,
}

#[derive(Clone, Copy)]
enum Intent {
    Publish,
    Play,
}

enum Role {
    Idle,
    Publisher(Publisher),
    Player(Box<Player>),
}

struct Publisher {
    publishing: Publishing,
    message_stream_id: u32,
}

/// The message stream id an RTMP player's `play` used.
fn play_stream_id(player: &Player) -> Option<u32> {
    match &player.framing {
        Framing::Rtmp(framing) => Some(framing.message_stream_id),
        _ => None,
    }
}

impl RtmpSession {
    pub fn new(client: ClientInfo, config: &Config, now: Instant) -> RtmpSession {
        let (_, vhost) = config.vhost(crate::config::DEFAULT_VHOST);
        let proto = ServerSession::new(SessionConfig {
            out_chunk_size: vhost.chunk_size,
            max_in_chunk_size: config.rtmp.max_chunk_size,
            max_message_len: config.rtmp.max_message_size,
            // S1's random bytes need only differ between connections, not be secret.
            random_seed: client.serial.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            ..SessionConfig::default()
        });
        RtmpSession {
            client,
            proto,
            tc_url: String::new(),
            app: String::new(),
            page_url: String::new(),
            swf_url: String::new(),
            connected: false,
            waiting: None,
            connect_allowed: false,
            role: Role::Idle,
            setup_deadline: now + config.handshake_timeout(),
            close_reason: None,
            last_role: None,
        }
    }

    pub fn conn_hint(&self) -> ConnId {
        self.client.conn
    }

    pub fn set_close_reason(&mut self, reason: &str) {
        self.close_reason.get_or_insert_with(|| reason.to_string());
    }

    pub fn handle_input(&mut self, now: Instant, data: &[u8]) -> Result<(), SessionError> {
        self.client.bytes_in += data.len() as u64;
        self.proto.handle_input(now, data)
    }

    /// Acts on what the protocol produced from the last input; closes on a protocol error.
    pub fn after_input(&mut self, result: Result<(), SessionError>, ctx: &mut Ctx<'_>) {
        self.drive(ctx);
        if let Err(e) = result {
            tracing::warn!(
                client = %self.client.id,
                peer = %self.client.peer,
                error = %e,
                "rtmp protocol error; closing the connection"
            );
            self.close(ctx, format!("protocol error: {e}"));
        }
    }

    /// Sends what the protocol wants sent and handles its events, in order. Also called mid-event
    /// so status replies go out before the media written after them.
    fn drive(&mut self, ctx: &mut Ctx<'_>) {
        while let Some(output) = self.proto.poll_output() {
            match output {
                SessionOutput::Transmit(bytes) => self.transmit(ctx, bytes),
                SessionOutput::Event(event) => self.on_event(event, ctx),
            }
        }
    }

    fn transmit(&mut self, ctx: &mut Ctx<'_>, bytes: Bytes) {
        self.client.bytes_out += bytes.len() as u64;
        ctx.driver.send(ctx.conn, bytes);
    }

    fn on_event(&mut self, event: SessionEvent, ctx: &mut Ctx<'_>) {
        match event {
            SessionEvent::Connect(request) => {
                self.tc_url = request.tc_url.clone();
                self.app = request.app.clone();
                self.page_url = request.page_url.clone();
                self.swf_url = request.swf_url.clone();
                tracing::debug!(client = %self.client.id, tc_url = %request.tc_url, app = %request.app, "rtmp connect");
                // `on_connect` waits for the publish or play, as in SRS 7, so the hook sees
                // the stream and its `?token=` parameter.
                self.finish_connect(ctx);
            }
            SessionEvent::Publish(request) => self.start_publish(request, ctx),
            SessionEvent::Play(request) => self.start_play(request, ctx),
            SessionEvent::Pause {
                stream_id: _,
                paused,
                ..
            } => {
                if let Role::Player(player) = &mut self.role {
                    if paused {
                        player.cursor.paused = true;
                    } else if let Some(local) = ctx.locals.get(&player.stream.id) {
                        player.cursor.resume(local);
                    }
                }
            }
            SessionEvent::Unpublish { stream_id } | SessionEvent::CloseStream { stream_id } => {
                self.stop_role(stream_id, ctx);
            }
            SessionEvent::Media(message) => self.on_media(message, ctx),
            SessionEvent::UnknownCommand { name } => {
                tracing::debug!(client = %self.client.id, command = %name, "ignoring unknown rtmp command");
            }
        }
    }

    fn stream_request(&self, stream_name: &str) -> Result<StreamRequest, String> {
        StreamRequest::from_rtmp(&self.tc_url, &self.app, stream_name).map_err(|e| e.to_string())
    }

    fn stream_key(request: &StreamRequest, config: &Config) -> (StreamKey, StreamSettings) {
        let (vhost_name, vhost) = config.vhost(&request.vhost);
        let key = StreamKey {
            vhost: vhost_name.to_string(),
            app: request.app.clone(),
            stream: request.stream.clone(),
        };
        (key, StreamSettings::for_vhost(vhost))
    }

    /// Checks a publish or play request before it reaches the hub: the connection must not
    /// already have a role, and the name must parse. A refusal is sent with the status code
    /// clients expect, and the connection closes once it is out.
    fn admit(
        &mut self,
        intent: Intent,
        stream_id: u32,
        stream_name: &str,
        ctx: &mut Ctx<'_>,
    ) -> Option<StreamRequest> {
        let (busy_code, bad_name_code, verb) = match intent {
            Intent::Publish => (
                "NetStream.Publish.BadName",
                "NetStream.Publish.BadName",
                "publish",
            ),
            Intent::Play => (
                "NetStream.Play.Failed",
                "NetStream.Play.StreamNotFound",
                "play",
            ),
        };
        let refusal = if !matches!(self.role, Role::Idle) || self.waiting.is_some() {
            let why = "this connection is already publishing or playing";
            Some((
                busy_code,
                why.to_string(),
                format!("{verb} on a busy connection"),
            ))
        } else {
            match self.stream_request(stream_name) {
                Ok(parsed) => return Some(parsed),
                Err(why) => Some((
                    bad_name_code,
                    why.clone(),
                    format!("bad {verb} name: {why}"),
                )),
            }
        };
        let (code, description, log_reason) = refusal?;
        match intent {
            Intent::Publish => self.proto.reject_publish(stream_id, code, &description),
            Intent::Play => self.proto.reject_play(stream_id, code, &description),
        }
        self.close_after_flush(ctx, log_reason);
        None
    }

    /// The vhost the connect named (before any stream name refines it).
    fn connect_vhost<'c>(&self, ctx: &Ctx<'c>) -> &'c crate::config::VhostConfig {
        let name = StreamRequest::connect_vhost(&self.tc_url, &self.app);
        ctx.shared.config.vhost(&name).1
    }

    fn finish_connect(&mut self, ctx: &mut Ctx<'_>) {
        let chunk_size = self.connect_vhost(ctx).chunk_size;
        self.proto.set_out_chunk_size(chunk_size);
        self.proto.accept_connect();
        self.connected = true;
    }

    /// A hook's verdict for a parked publish or play: after `on_connect` comes the
    /// publish or play hook; after that, the publish or play itself.
    pub fn verdict(&mut self, verdict: Verdict, ctx: &mut Ctx<'_>) {
        let Some(waiting) = self.waiting.take() else {
            return;
        };
        match verdict.result {
            Ok(()) if waiting.hook == Hook::OnConnect => {
                self.connect_allowed = true;
                if let Some(request) =
                    self.authorize(waiting.intent, waiting.stream_id, waiting.request, ctx)
                {
                    self.finish(waiting.intent, waiting.stream_id, request, ctx);
                }
            }
            Ok(()) => self.finish(waiting.intent, waiting.stream_id, waiting.request, ctx),
            Err(why) => {
                let hook = waiting.hook.name();
                tracing::warn!(
                    client = %self.client.id,
                    peer = %self.client.peer,
                    hook,
                    reason = %why,
                    "refused by hook"
                );
                ctx.counters.refused += 1;
                let why = format!("refused by {hook}: {why}");
                match waiting.intent {
                    Intent::Publish => self.proto.reject_publish(
                        waiting.stream_id,
                        "NetStream.Publish.Rejected",
                        &why,
                    ),
                    Intent::Play => {
                        self.proto
                            .reject_play(waiting.stream_id, "NetStream.Play.Rejected", &why)
                    }
                }
                self.close_after_flush(ctx, why);
            }
        }
        self.drive(ctx);
    }

    fn finish(
        &mut self,
        intent: Intent,
        stream_id: u32,
        request: StreamRequest,
        ctx: &mut Ctx<'_>,
    ) {
        match intent {
            Intent::Publish => self.finish_publish(stream_id, request, ctx),
            Intent::Play => self.finish_play(stream_id, request, ctx),
        }
    }

    /// A callback's JSON body, with SRS's fields for each hook.
    fn hook_body(
        &self,
        hook: Hook,
        ctx: &Ctx<'_>,
        request: Option<&StreamRequest>,
    ) -> serde_json::Value {
        let vhost = match request {
            Some(r) => ctx.shared.config.vhost(&r.vhost).0,
            None => {
                let name = StreamRequest::connect_vhost(&self.tc_url, &self.app);
                ctx.shared.config.vhost(&name).0
            }
        };
        let key = request.map(|r| Self::stream_key(r, &ctx.shared.config).0);
        let subject = HookSubject {
            vhost,
            app: request.map_or(&self.app, |r| &r.app),
            stream: request.zip(key.as_ref()),
            tc_url: &self.tc_url,
            page_url: &self.page_url,
        };
        ctx.hook_body(hook, &self.client, subject)
    }

    /// Checks a publish or play against the vhost's security rules, then its hook: returns
    /// `Some(request)` to go on now, `None` when refused or parked for a verdict.
    fn authorize(
        &mut self,
        intent: Intent,
        stream_id: u32,
        request: StreamRequest,
        ctx: &mut Ctx<'_>,
    ) -> Option<StreamRequest> {
        let vhost = ctx.shared.config.vhost(&request.vhost).1;
        let (method, hook) = match intent {
            Intent::Publish => (Method::Publish, Hook::OnPublish),
            Intent::Play => (Method::Play, Hook::OnPlay),
        };
        if let Err(why) = vhost.security.check(method, self.client.peer.ip()) {
            tracing::warn!(
                client = %self.client.id,
                peer = %self.client.peer,
                stream = %request.path(),
                reason = %why,
                "{} refused by security rules",
                method.name()
            );
            ctx.counters.refused += 1;
            match intent {
                Intent::Publish => {
                    self.proto
                        .reject_publish(stream_id, "NetStream.Publish.Denied", &why)
                }
                Intent::Play => self
                    .proto
                    .reject_play(stream_id, "NetStream.Play.Failed", &why),
            }
            self.close_after_flush(ctx, format!("security: {why}"));
            return None;
        }
        let hooks = &vhost.http_hooks;
        let hook = if !self.connect_allowed && !hooks.urls(Hook::OnConnect).is_empty() {
            Hook::OnConnect
        } else if !hooks.urls(hook).is_empty() {
            hook
        } else {
            return Some(request);
        };
        let body = self.hook_body(hook, ctx, Some(&request));
        ctx.call_hook(hook, hooks, body, self.client.serial);
        self.waiting = Some(Waiting {
            intent,
            stream_id,
            request,
            hook,
        });
        None
    }

    fn start_publish(&mut self, request: PublishRequest, ctx: &mut Ctx<'_>) {
        let stream_id = request.stream_id;
        let Some(parsed) = self.admit(Intent::Publish, stream_id, &request.stream_name, ctx) else {
            return;
        };
        if let Some(parsed) = self.authorize(Intent::Publish, stream_id, parsed, ctx) {
            self.finish_publish(stream_id, parsed, ctx);
        }
    }

    fn finish_publish(&mut self, stream_id: u32, parsed: StreamRequest, ctx: &mut Ctx<'_>) {
        let (key, settings) = Self::stream_key(&parsed, &ctx.shared.config);
        let who = HubPublisher {
            serial: self.client.serial,
            id: self.client.id.clone(),
            tc_url: self.tc_url.clone(),
        };
        match ctx.shared.hub.publish(key, &settings, who) {
            Ok(stream) => {
                self.proto.accept_publish(stream_id);
                tracing::info!(
                    client = %self.client.id,
                    peer = %self.client.peer,
                    vhost = %stream.key.vhost,
                    stream = %parsed.path(),
                    param = %parsed.param,
                    handshake = ?self.proto.handshake_kind(),
                    "publish started"
                );
                let (_, vhost) = ctx.shared.config.vhost(&parsed.vhost);
                let hls_hook = (!vhost.http_hooks.urls(Hook::OnHls).is_empty())
                    .then(|| self.hook_body(Hook::OnHls, ctx, Some(&parsed)));
                self.role = Role::Publisher(Publisher {
                    publishing: Publishing::start(stream, parsed, ctx, hls_hook),
                    message_stream_id: stream_id,
                });
            }
            Err(PublishError::Busy(name)) => {
                tracing::warn!(client = %self.client.id, peer = %self.client.peer, stream = %name, "publish refused: stream is busy");
                self.proto.reject_publish(
                    stream_id,
                    "NetStream.Publish.BadName",
                    "Stream is busy: another client is publishing it",
                );
                self.close_after_flush(ctx, format!("stream {name} busy"));
            }
        }
    }

    fn start_play(&mut self, request: PlayRequest, ctx: &mut Ctx<'_>) {
        let stream_id = request.stream_id;
        let Some(parsed) = self.admit(Intent::Play, stream_id, &request.stream_name, ctx) else {
            return;
        };
        if let Some(parsed) = self.authorize(Intent::Play, stream_id, parsed, ctx) {
            self.finish_play(stream_id, parsed, ctx);
        }
    }

    fn finish_play(&mut self, stream_id: u32, parsed: StreamRequest, ctx: &mut Ctx<'_>) {
        let (key, settings) = Self::stream_key(&parsed, &ctx.shared.config);
        let (_, vhost) = ctx.shared.config.vhost(&parsed.vhost);
        let config = vhost.play.clone();
        self.proto.accept_play(stream_id);
        self.drive(ctx);
        let (stream, start, cursor) = ctx.join(key, &settings);
        tracing::info!(
            client = %self.client.id,
            peer = %self.client.peer,
            vhost = %stream.key.vhost,
            stream = %parsed.path(),
            param = %parsed.param,
            handshake = ?self.proto.handshake_kind(),
            published = stream.is_published(),
            "play started"
        );
        let framing = Framing::Rtmp(RtmpFraming {
            message_stream_id: stream_id,
            chunk_size: self.proto.out_chunk_size(),
        });
        let mut player = Box::new(Player::new(
            stream, parsed, cursor, config, framing, ctx.now,
        ));
        self.client.bytes_out += player.start(ctx, &start);
        self.role = Role::Player(player);
    }

    fn stop_role(&mut self, stream_id: u32, ctx: &mut Ctx<'_>) {
        let matches = match &self.role {
            Role::Publisher(p) => p.message_stream_id == stream_id,
            Role::Player(p) => play_stream_id(p) == Some(stream_id),
            Role::Idle => false,
        };
        if matches {
            self.leave_role(ctx, "stream closed by client");
        }
    }

    /// Leaves the hub: a publisher frees its stream, a player stops being a viewer.
    fn leave_role(&mut self, ctx: &mut Ctx<'_>, why: &str) {
        if let Some(role) = self.describe_role() {
            self.last_role = Some(role);
        }
        let hook = match &self.role {
            Role::Publisher(p) => Some((Hook::OnUnpublish, p.publishing.request.clone())),
            Role::Player(p) => Some((Hook::OnStop, p.request.clone())),
            Role::Idle => None,
        };
        if let Some((hook, request)) = hook {
            let hooks = &ctx.shared.config.vhost(&request.vhost).1.http_hooks;
            if !hooks.urls(hook).is_empty() {
                let body = self.hook_body(hook, ctx, Some(&request));
                ctx.call_hook(hook, hooks, body, self.client.serial);
            }
        }
        match std::mem::replace(&mut self.role, Role::Idle) {
            Role::Publisher(p) => {
                p.publishing
                    .finish(ctx, self.client.serial, &self.client.id, why)
            }
            Role::Player(p) => p.leave(ctx, &self.client.id),
            Role::Idle => {}
        }
    }

    fn on_media(&mut self, message: MediaMessage, ctx: &mut Ctx<'_>) {
        let Role::Publisher(publisher) = &mut self.role else {
            return;
        };
        let (kind, payload) = match message.kind {
            MediaKind::Audio => (FrameKind::Audio, message.payload),
            MediaKind::Video => (FrameKind::Video, message.payload),
            MediaKind::Data => match flv::metadata_body(&message.payload) {
                Some(body) => (FrameKind::Metadata, body),
                // Other data messages (cue points, text) are not relayed, as in SRS.
                None => return,
            },
        };
        publisher
            .publishing
            .push(kind, message.timestamp, payload, ctx);
    }

    /// Writes the frames a player has not had yet (see [`Player::write_pending`]).
    pub fn write_pending(&mut self, ctx: &mut Ctx<'_>) -> Option<u64> {
        let Role::Player(player) = &mut self.role else {
            return None;
        };
        let (written, cursor) = player.write_pending(ctx, &self.client.id);
        self.client.bytes_out += written;
        cursor
    }

    /// The socket took everything queued: a player can take more.
    pub fn drained(&mut self, ctx: &mut Ctx<'_>) {
        if matches!(&self.role, Role::Player(p) if p.throttled()) {
            self.write_pending(ctx);
        }
    }

    pub fn check_timeouts(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        let expired = match &self.role {
            Role::Idle => (now >= self.setup_deadline)
                .then(|| "no publish or play before the handshake timeout".to_string()),
            Role::Publisher(p) => p.publishing.expired(now),
            Role::Player(p) => p.stalled(ctx),
        };
        if let Some(reason) = expired {
            tracing::warn!(client = %self.client.id, peer = %self.client.peer, reason = %reason, "closing connection");
            self.close(ctx, reason);
        }
    }

    fn close(&mut self, ctx: &mut Ctx<'_>, reason: String) {
        self.close_reason.get_or_insert(reason);
        ctx.driver.close(ctx.conn);
    }

    fn close_after_flush(&mut self, ctx: &mut Ctx<'_>, reason: String) {
        // Send the status that says why, then close.
        self.drive(ctx);
        self.close_reason.get_or_insert(reason);
        ctx.driver.close_after_flush(ctx.conn);
    }

    /// The API's kick: close now.
    pub fn kick(&mut self, ctx: &mut Ctx<'_>) {
        self.close(ctx, "kicked by the API".into());
    }

    /// This client for the API.
    pub fn view(&self, now: Instant, worker: usize) -> ClientView {
        let (kind, publish, request, stream) = match &self.role {
            Role::Publisher(p) => (
                "fmle-publish",
                true,
                Some(&p.publishing.request),
                Some(p.publishing.stream.id),
            ),
            Role::Player(p) => ("rtmp-play", false, Some(&p.request), Some(p.stream.id)),
            Role::Idle => ("unknown", false, None, None),
        };
        let vhost = match (&self.role, request) {
            (Role::Publisher(p), _) => p.publishing.stream.key.vhost.clone(),
            (Role::Player(p), _) => p.stream.key.vhost.clone(),
            _ => String::new(),
        };
        ClientView {
            vhost,
            app: request.map_or(self.app.clone(), |r| r.app.clone()),
            stream: request.map_or(String::new(), |r| r.stream.clone()),
            stream_id: stream,
            name: request.map_or(String::new(), |r| r.stream.clone()),
            tc_url: self.tc_url.clone(),
            page_url: self.page_url.clone(),
            swf_url: self.swf_url.clone(),
            kind,
            publish,
            ..self.client.view(now, worker)
        }
    }

    /// The connection is gone: leave the hub and log the client's summary.
    /// "publisher"/"player" and `vhost/app/stream`, while it has a role.
    fn describe_role(&self) -> Option<(&'static str, String)> {
        match &self.role {
            Role::Idle => None,
            Role::Publisher(p) => Some(("publisher", p.publishing.describe())),
            Role::Player(p) => Some(("player", p.describe())),
        }
    }

    pub fn closed(&mut self, reason: CloseReason, ctx: &mut Ctx<'_>) {
        let (role, stream) = self
            .describe_role()
            .or_else(|| self.last_role.clone())
            .unwrap_or(("none", String::new()));
        let why = self
            .close_reason
            .clone()
            .unwrap_or_else(|| reason.to_string());
        self.leave_role(ctx, &why);
        if self.connected {
            let hooks = &self.connect_vhost(ctx).http_hooks;
            if !hooks.urls(Hook::OnClose).is_empty() {
                let body = self.hook_body(Hook::OnClose, ctx, None);
                ctx.call_hook(Hook::OnClose, hooks, body, self.client.serial);
            }
        }
        tracing::info!(
            client = %self.client.id,
            peer = %self.client.peer,
            proto = "rtmp",
            role,
            stream = %stream,
            bytes_in = self.client.bytes_in,
            bytes_out = self.client.bytes_out,
            duration_ms = ctx.now.saturating_duration_since(self.client.started).as_millis() as u64,
            reason = %why,
            "client left"
        );
    }
}
