//! HTTP sessions on the data plane (port 8080): live streams — HTTP-FLV, WebSocket-FLV,
//! HTTP-TS, AAC, MP3 — as hub viewers, and static files sent from disk without copying
//! through user space. Keep-alive and pipelined requests for files; a live request turns the
//! connection into a player until it closes.

mod hls;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_proto::http::ws::{
    self, DecodeStep, FrameDecoder, Message, Opcode, WsConfig, WsUpgrade,
};
use sluice_proto::http::{
    BodyFraming, HttpError, Limits, RangeError, RequestBody, RequestHead, ResponseHead, Version,
    decode_path,
};
use sluice_ring::{CloseReason, ConnId};

use super::player::Player;
use super::{ClientInfo, Ctx, HookSubject};
use crate::config::Config;
use crate::control::views::ClientView;
use crate::control::{Hook, Verdict};
use crate::framing::Framing;
use crate::framing::audio::{AudioFormat, AudioFraming};
use crate::framing::flv::FlvFraming;
use crate::framing::ts::TsFraming;
use crate::hub::{StreamKey, StreamSettings};
use crate::request::StreamRequest;
use crate::security::Method;
use crate::static_files::{self, StaticError};
use crate::worker::Shared;

/// Most bytes a WebSocket viewer may send us in one message (it has nothing to say but pings
/// and a close).
const WS_MAX_MESSAGE: usize = 4096;

/// What a live URL's extension asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LiveFormat {
    Flv,
    Ts,
    Aac,
    Mp3,
}

impl LiveFormat {
    fn from_path(path: &str) -> Option<(LiveFormat, &str)> {
        let (stem, extension) = path.rsplit_once('.')?;
        let format = match extension {
            "flv" => LiveFormat::Flv,
            "ts" => LiveFormat::Ts,
            "aac" => LiveFormat::Aac,
            "mp3" => LiveFormat::Mp3,
            _ => return None,
        };
        Some((format, stem))
    }

    fn content_type(self) -> &'static str {
        match self {
            LiveFormat::Flv => "video/x-flv",
            LiveFormat::Ts => "video/MP2T",
            LiveFormat::Aac => "audio/aac",
            LiveFormat::Mp3 => "audio/mpeg",
        }
    }

    fn name(self) -> &'static str {
        match self {
            LiveFormat::Flv => "flv",
            LiveFormat::Ts => "ts",
            LiveFormat::Aac => "aac",
            LiveFormat::Mp3 => "mp3",
        }
    }
}

enum State {
    /// Reading requests; responses to them (files) are queued in order.
    Requests,
    /// A live request waits for its `on_play` verdict; input is ignored.
    Waiting(Box<LiveRequest>),
    /// A live player over plain HTTP: input is ignored.
    Live(Box<Player>),
    /// A live player over WebSocket: input is control frames.
    WebSocket(Box<Player>, FrameDecoder),
    /// An HLS request parked until the part it waits for exists; later requests are buffered.
    HlsWaiting(Box<hls::HlsWait>),
    /// A new HLS viewer waiting for `on_play`; later requests are buffered.
    HlsAdmitting(Box<hls::HlsAdmission>),
    /// Closing after what is queued; input is ignored.
    Closing,
}

pub struct HttpSession {
    pub client: ClientInfo,
    /// Received bytes not yet consumed: a partial request head (bounded by the head limit) or
    /// WebSocket frames.
    input: Vec<u8>,
    state: State,
    /// The request being read must be complete by then (against slow-header clients).
    head_deadline: Instant,
    /// An idle keep-alive connection closes then.
    idle_deadline: Instant,
    /// Bytes queued for the client when it last made progress reading them, and when.
    write_progress: (usize, Instant),
    requests: u64,
    /// "player:flv" etc. and the stream, for the leave log line.
    role: Option<(String, String)>,
    /// SRS's client type while playing (`flv-play`, ...), for the API.
    kind: Option<&'static str>,
    close_reason: Option<String>,
    limits: Limits,
}

/// A live request, owned, so it can wait for a hook's verdict.
struct LiveRequest {
    format: LiveFormat,
    /// The `101 Switching Protocols` response, for a WebSocket upgrade.
    websocket: Option<Vec<u8>>,
    version: Version,
    chunked: bool,
    key: StreamKey,
    request: StreamRequest,
}

/// A response's status and, for the log, why.
struct Refusal {
    status: u16,
    why: String,
}

impl HttpSession {
    pub fn new(client: ClientInfo, config: &Config, now: Instant) -> HttpSession {
        HttpSession {
            client,
            input: Vec::new(),
            state: State::Requests,
            head_deadline: now + Duration::from_millis(config.http_server.header_timeout_ms),
            idle_deadline: now + Duration::from_millis(config.http_server.keepalive_timeout_ms),
            write_progress: (0, now),
            requests: 0,
            role: None,
            kind: None,
            close_reason: None,
            limits: Limits::default(),
        }
    }

    pub fn conn_hint(&self) -> ConnId {
        self.client.conn
    }

    /// Takes received bytes; [`HttpSession::after_input`] acts on them.
    pub fn handle_input(&mut self, now: Instant, data: &[u8], config: &Config) {
        self.client.bytes_in += data.len() as u64;
        match self.state {
            State::Requests => {
                if self.input.is_empty() {
                    // A new request starts: it has the header timeout to arrive.
                    self.head_deadline =
                        now + Duration::from_millis(config.http_server.header_timeout_ms);
                }
                self.input.extend_from_slice(data);
            }
            State::WebSocket(..) => self.input.extend_from_slice(data),
            State::HlsWaiting(_) | State::HlsAdmitting(_) => {
                // Pipelined requests behind a parked one, bounded like one request head.
                if self.input.len() + data.len() <= self.limits.max_head_size {
                    self.input.extend_from_slice(data);
                }
            }
            // Nothing a plain HTTP player or a closing connection sends matters.
            State::Live(_) | State::Waiting(_) | State::Closing => {}
        }
    }

    pub fn after_input(&mut self, ctx: &mut Ctx<'_>) {
        match self.state {
            State::Requests => self.serve_requests(ctx),
            State::WebSocket(..) => self.websocket_input(ctx),
            State::Live(_)
            | State::Waiting(_)
            | State::HlsWaiting(_)
            | State::HlsAdmitting(_)
            | State::Closing => {}
        }
    }

    /// Answers every complete request in the buffer, in order (pipelining).
    fn serve_requests(&mut self, ctx: &mut Ctx<'_>) {
        let input = std::mem::take(&mut self.input);
        let mut consumed = 0;
        while matches!(self.state, State::Requests) {
            match RequestHead::parse(&input[consumed..], &self.limits) {
                Ok(Some((head, used))) => {
                    consumed += used;
                    self.requests += 1;
                    self.serve(&head, ctx);
                }
                Ok(None) => break,
                Err(e) => {
                    self.bad_request(ctx, &e);
                    consumed = input.len();
                }
            }
        }
        // Requests behind a parked HLS request wait in the buffer for it to be answered.
        if matches!(
            self.state,
            State::Requests | State::HlsWaiting(_) | State::HlsAdmitting(_)
        ) {
            self.input = input;
            self.input.drain(..consumed);
            if matches!(self.state, State::Requests) && self.input.is_empty() {
                self.idle_deadline = ctx.now
                    + Duration::from_millis(ctx.shared.config.http_server.keepalive_timeout_ms);
            }
        }
    }

    fn bad_request(&mut self, ctx: &mut Ctx<'_>, error: &HttpError) {
        tracing::warn!(
            client = %self.client.id,
            peer = %self.client.peer,
            status = error.status(),
            error = %error,
            "bad http request"
        );
        self.respond_error(ctx, Version::Http11, error.status(), false);
        self.close_after_flush(ctx, format!("bad request: {error}"));
    }

    fn serve(&mut self, head: &RequestHead<'_>, ctx: &mut Ctx<'_>) {
        let keep_alive = head.keep_alive();
        let outcome = match head.method {
            "OPTIONS" => {
                self.respond(
                    ctx,
                    head.version,
                    204,
                    &[],
                    BodyFraming::Empty,
                    keep_alive,
                    None,
                );
                Ok(())
            }
            "GET" | "HEAD" => self.get(head, ctx),
            _ => Err(Refusal {
                status: 405,
                why: format!("method {} not allowed", head.method),
            }),
        };
        let keep_alive = keep_alive && matches!(self.state, State::Requests);
        if let Err(refusal) = outcome {
            tracing::info!(
                client = %self.client.id,
                peer = %self.client.peer,
                method = head.method,
                target = head.target,
                status = refusal.status,
                reason = %refusal.why,
                "http request refused"
            );
            // A request with a body we did not read leaves the stream unframed: close.
            let body_unread = !matches!(head.body(), Ok(RequestBody::None));
            self.respond_error(
                ctx,
                head.version,
                refusal.status,
                keep_alive && !body_unread,
            );
            if !keep_alive || body_unread {
                self.close_after_flush(ctx, format!("{} {}", refusal.status, refusal.why));
            }
        } else if matches!(self.state, State::Requests) && !keep_alive {
            self.close_after_flush(ctx, "request done, no keep-alive".into());
        }
    }

    fn get(&mut self, head: &RequestHead<'_>, ctx: &mut Ctx<'_>) -> Result<(), Refusal> {
        if !matches!(head.body(), Ok(RequestBody::None)) {
            return Err(Refusal {
                status: 400,
                why: "GET with a body".into(),
            });
        }
        let decoded = decode_path(head.path).map_err(|e| Refusal {
            status: 400,
            why: format!("bad path: {e}"),
        })?;
        if decoded.has_dot_dot {
            return Err(Refusal {
                status: 403,
                why: "path climbs out of the root".into(),
            });
        }
        let path = decoded.path.into_owned();
        if let Some(result) = self.hls(head, &path, ctx) {
            return result;
        }
        if let Some((format, stem)) = LiveFormat::from_path(&path)
            && let Some(result) = self.live(head, stem, format, ctx)
        {
            return result;
        }
        self.static_file(head, &path, ctx)
    }

    /// Serves a live stream if the path is one of a published stream; `None` to fall back to
    /// static files.
    fn live(
        &mut self,
        head: &RequestHead<'_>,
        stem: &str,
        format: LiveFormat,
        ctx: &mut Ctx<'_>,
    ) -> Option<Result<(), Refusal>> {
        let config = &ctx.shared.config;
        let host = head.host().unwrap_or("");
        let query = head.query.unwrap_or("");
        // The mount of the vhost the Host header or ?vhost= names decides how to read the path.
        let guess = StreamRequest::connect_vhost(&format!("http://{host}/"), &format!("?{query}"));
        let (_, vhost) = config.vhost(&guess);
        if !vhost.http_remux.enabled {
            return None;
        }
        let request = StreamRequest::from_http(stem, &vhost.http_remux.mount, host, query)?;
        let (vhost_name, vhost) = config.vhost(&request.vhost);
        if !vhost.http_remux.enabled {
            return None;
        }
        let key = StreamKey {
            vhost: vhost_name.to_string(),
            app: request.app.clone(),
            stream: request.stream.clone(),
        };
        if !ctx.shared.hub.is_published(&key) {
            return Some(Err(Refusal {
                status: 404,
                why: format!("stream {key} is not published"),
            }));
        }
        let upgrade = match WsUpgrade::from_request(head) {
            Ok(upgrade) => upgrade,
            Err(e) => {
                return Some(Err(Refusal {
                    status: e.status(),
                    why: format!("bad websocket upgrade: {e}"),
                }));
            }
        };
        if upgrade.is_some() && format != LiveFormat::Flv {
            return Some(Err(Refusal {
                status: 400,
                why: "WebSocket is offered for .flv only".into(),
            }));
        }
        let chunked = head.version == Version::Http11;
        if head.method == "HEAD" {
            let headers = [("Content-Type", format.content_type())];
            self.respond(
                ctx,
                head.version,
                200,
                &headers,
                BodyFraming::Chunked,
                true,
                None,
            );
            return Some(Ok(()));
        }
        // The 101 response is built now, while the request head is at hand.
        let websocket = upgrade.map(|upgrade| {
            let mut response = Vec::new();
            upgrade.write_response(&mut response, None);
            response
        });
        let live = LiveRequest {
            format,
            websocket,
            version: head.version,
            chunked,
            key,
            request,
        };
        if let Err(why) = vhost.security.check(Method::Play, self.client.peer.ip()) {
            ctx.counters.refused += 1;
            return Some(Err(Refusal {
                status: 403,
                why: format!("play refused by security rules: {why}"),
            }));
        }
        let hooks = &vhost.http_hooks;
        if hooks.urls(Hook::OnPlay).is_empty() {
            self.start_live(live, ctx);
        } else {
            let body = self.hook_body(Hook::OnPlay, ctx, &live);
            ctx.call_hook(Hook::OnPlay, hooks, body, self.client.serial);
            self.input.clear();
            self.state = State::Waiting(Box::new(live));
        }
        Some(Ok(()))
    }

    /// Starts a live viewer: the response head (or 101), the FLV header, the stream's start.
    fn start_live(&mut self, live: LiveRequest, ctx: &mut Ctx<'_>) {
        let LiveRequest {
            format,
            websocket,
            version,
            chunked,
            key,
            request,
        } = live;
        let vhost = ctx.shared.config.vhost(&request.vhost).1;
        let mut framing = match (format, &websocket) {
            (LiveFormat::Flv, Some(_)) => Framing::Flv(FlvFraming::websocket()),
            (LiveFormat::Flv, None) => Framing::Flv(FlvFraming::http(chunked)),
            (LiveFormat::Ts, _) => Framing::Ts(TsFraming::new(chunked)),
            (LiveFormat::Aac, _) => Framing::Audio(AudioFraming::new(AudioFormat::Aac, chunked)),
            (LiveFormat::Mp3, _) => Framing::Audio(AudioFraming::new(AudioFormat::Mp3, chunked)),
        };
        // The response head, then (FLV) the file header: before any media.
        let mut out = Vec::with_capacity(256);
        match &websocket {
            Some(response) => out.extend_from_slice(response),
            None => {
                let cors = Self::cors(ctx.shared);
                let mut headers = vec![
                    ("Content-Type", format.content_type()),
                    ("Cache-Control", "no-cache"),
                    ("Server", concat!("sluice/", env!("CARGO_PKG_VERSION"))),
                ];
                headers.extend(cors);
                ResponseHead {
                    version,
                    status: 200,
                    reason: None,
                    headers: &headers,
                    body: BodyFraming::Chunked,
                    keep_alive: false,
                }
                .write(&mut out);
            }
        }
        if let Framing::Flv(flv) = &mut framing {
            out.extend_from_slice(flv.begin().as_bytes());
        }
        self.client.bytes_out += out.len() as u64;
        ctx.driver.send(ctx.conn, Bytes::from(out));

        let settings = StreamSettings::for_vhost(vhost);
        let (stream, start, cursor) = ctx.join(key, &settings);
        if format == LiveFormat::Ts {
            stream.want_ts();
        }
        let kind = match (format, websocket.is_some()) {
            (LiveFormat::Flv, true) => "ws-flv",
            (other, _) => other.name(),
        };
        tracing::info!(
            client = %self.client.id,
            peer = %self.client.peer,
            vhost = %stream.key.vhost,
            stream = %request.path(),
            param = %request.param,
            format = kind,
            "play started"
        );
        let mut player = Box::new(Player::new(
            stream,
            request,
            cursor,
            vhost.play.clone(),
            framing,
            ctx.now,
        ));
        self.client.bytes_out += player.start(ctx, &start);
        self.role = Some((format!("player:{kind}"), player.describe()));
        self.kind = Some(match kind {
            "ws-flv" | "flv" => "flv-play",
            "ts" => "ts-play",
            "aac" => "aac-play",
            _ => "mp3-play",
        });
        self.input.clear();
        self.state = if websocket.is_some() {
            State::WebSocket(
                player,
                FrameDecoder::new(WsConfig {
                    max_message_size: WS_MAX_MESSAGE,
                    expect_masked: true,
                }),
            )
        } else {
            State::Live(player)
        };
    }

    /// A hook's verdict for a parked live request.
    pub fn verdict(&mut self, verdict: Verdict, ctx: &mut Ctx<'_>) {
        if matches!(self.state, State::HlsAdmitting(_)) {
            self.hls_verdict(verdict, ctx);
            return;
        }
        if !matches!(self.state, State::Waiting(_)) {
            return;
        }
        let State::Waiting(live) = std::mem::replace(&mut self.state, State::Requests) else {
            return;
        };
        match verdict.result {
            Ok(()) => self.start_live(*live, ctx),
            Err(why) => {
                tracing::warn!(
                    client = %self.client.id,
                    peer = %self.client.peer,
                    hook = verdict.target.hook.name(),
                    reason = %why,
                    "refused by hook"
                );
                ctx.counters.refused += 1;
                self.respond_error(ctx, live.version, 403, false);
                self.close_after_flush(ctx, format!("refused by on_play: {why}"));
            }
        }
    }

    /// A callback's JSON body for an HTTP viewer, with SRS's fields.
    fn hook_body(&self, hook: Hook, ctx: &Ctx<'_>, live: &LiveRequest) -> serde_json::Value {
        let request = &live.request;
        // What SRS reports as an HTTP viewer's tcUrl: RTMP on the vhost, not the Host header.
        let tc_url = format!("rtmp://{}/{}", live.key.vhost, request.app);
        let subject = HookSubject {
            vhost: &live.key.vhost,
            app: &request.app,
            stream: Some((request, &live.key)),
            tc_url: &tc_url,
            page_url: "",
        };
        ctx.hook_body(hook, &self.client, subject)
    }

    fn static_file(
        &mut self,
        head: &RequestHead<'_>,
        path: &str,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), Refusal> {
        let Some(root) = ctx.shared.static_root.as_deref() else {
            return Err(Refusal {
                status: 404,
                why: "no document root".into(),
            });
        };
        let file = match static_files::open(root, path) {
            Ok(file) => file,
            Err(StaticError::Directory) => {
                let location = format!("{path}/");
                let headers = [("Location", location.as_str())];
                let keep_alive = head.keep_alive();
                self.respond(
                    ctx,
                    head.version,
                    301,
                    &headers,
                    BodyFraming::Length(0),
                    keep_alive,
                    None,
                );
                return Ok(());
            }
            Err(e @ StaticError::NotFound) => {
                return Err(Refusal {
                    status: 404,
                    why: format!("{path}: {e}"),
                });
            }
            Err(e @ StaticError::Forbidden) => {
                return Err(Refusal {
                    status: 403,
                    why: format!("{path}: {e}"),
                });
            }
        };
        self.role
            .get_or_insert_with(|| ("static".into(), String::new()));
        let keep_alive = head.keep_alive();
        let validators = [
            ("Content-Type", file.content_type),
            ("Last-Modified", file.last_modified.as_str()),
            ("ETag", file.etag.as_str()),
            ("Accept-Ranges", "bytes"),
        ];
        let not_modified = head.if_none_match(&file.etag)
            || (head.header("if-none-match").is_none()
                && head.header_str("if-modified-since") == Some(file.last_modified.as_str()));
        if not_modified {
            self.respond(
                ctx,
                head.version,
                304,
                &validators[1..],
                BodyFraming::Empty,
                keep_alive,
                None,
            );
            return Ok(());
        }
        let (status, offset, len, content_range) = match head.range(file.len) {
            Ok(Some(range)) => (
                206,
                range.start,
                range.len(),
                Some(range.content_range(file.len)),
            ),
            // A malformed or multi-range header is ignored (RFC 9110 allows it): whole file.
            Ok(None) | Err(RangeError::Malformed | RangeError::MultipleRanges) => {
                (200, 0, file.len, None)
            }
            Err(RangeError::Unsatisfiable) => {
                let unsatisfied = format!("bytes */{}", file.len);
                let headers = [("Content-Range", unsatisfied.as_str())];
                self.respond(
                    ctx,
                    head.version,
                    416,
                    &headers,
                    BodyFraming::Length(0),
                    keep_alive,
                    None,
                );
                return Ok(());
            }
        };
        let mut headers: Vec<(&str, &str)> = validators.to_vec();
        if let Some(range) = &content_range {
            headers.push(("Content-Range", range));
        }
        let body = (head.method == "GET" && len > 0).then(|| (Arc::new(file.file), offset, len));
        self.respond(
            ctx,
            head.version,
            status,
            &headers,
            BodyFraming::Length(len),
            keep_alive,
            body,
        );
        Ok(())
    }

    /// CORS headers, when configured.
    fn cors(shared: &Shared) -> Vec<(&'static str, &str)> {
        let origin = shared.config.http_server.cors_origin.as_str();
        if origin.is_empty() {
            return Vec::new();
        }
        vec![
            ("Access-Control-Allow-Origin", origin),
            ("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS"),
            ("Access-Control-Allow-Headers", "*"),
            (
                "Access-Control-Expose-Headers",
                "Content-Length, Content-Range, Date",
            ),
        ]
    }

    /// Queues a response head (with CORS and Server headers), then the file body if any.
    #[allow(clippy::too_many_arguments)]
    fn respond(
        &mut self,
        ctx: &mut Ctx<'_>,
        version: Version,
        status: u16,
        headers: &[(&str, &str)],
        body: BodyFraming,
        keep_alive: bool,
        file: Option<(Arc<std::fs::File>, u64, u64)>,
    ) {
        let date = static_files::http_date_now();
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        all.push(("Date", &date));
        all.push(("Server", concat!("sluice/", env!("CARGO_PKG_VERSION"))));
        all.extend(Self::cors(ctx.shared));
        let mut out = Vec::with_capacity(256);
        ResponseHead {
            version,
            status,
            reason: None,
            headers: &all,
            body,
            keep_alive,
        }
        .write(&mut out);
        self.client.bytes_out += out.len() as u64;
        ctx.driver.send(ctx.conn, Bytes::from(out));
        if let Some((file, offset, len)) = file {
            self.client.bytes_out += len;
            ctx.driver.send_file(ctx.conn, file, offset, len);
        }
    }

    fn respond_error(
        &mut self,
        ctx: &mut Ctx<'_>,
        version: Version,
        status: u16,
        keep_alive: bool,
    ) {
        let text = format!("{status} {}\n", sluice_proto::http::reason_phrase(status));
        let headers = [("Content-Type", "text/plain; charset=utf-8")];
        let mut out = Vec::new();
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        all.extend(Self::cors(ctx.shared));
        ResponseHead {
            version,
            status,
            reason: None,
            headers: &all,
            body: BodyFraming::Length(text.len() as u64),
            keep_alive,
        }
        .write(&mut out);
        out.extend_from_slice(text.as_bytes());
        self.client.bytes_out += out.len() as u64;
        ctx.driver.send(ctx.conn, Bytes::from(out));
    }

    /// Control frames from a WebSocket viewer: pings are answered, a close is returned, and
    /// anything malformed closes the connection with the matching close code.
    fn websocket_input(&mut self, ctx: &mut Ctx<'_>) {
        let State::WebSocket(_, decoder) = &mut self.state else {
            return;
        };
        let mut consumed = 0;
        let mut replies = Vec::new();
        let mut close = None;
        loop {
            match decoder.decode(&self.input[consumed..]) {
                Ok(DecodeStep::NeedMore) => break,
                Ok(DecodeStep::Consumed { len, message }) => {
                    consumed += len;
                    match message {
                        Some(Message::Ping(payload)) => {
                            ws::write_frame(&mut replies, Opcode::Pong, &payload);
                        }
                        Some(Message::Close(frame)) => {
                            let code = frame.map_or(1000, |f| f.code);
                            close = Some((1000, format!("websocket closed by client ({code})")));
                            break;
                        }
                        _ => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(client = %self.client.id, peer = %self.client.peer, error = %e, "bad websocket frame");
                    close = Some((e.close_code(), format!("bad websocket frame: {e}")));
                    break;
                }
            }
        }
        self.input.drain(..consumed.min(self.input.len()));
        if let Some((code, why)) = close {
            ws::write_close(&mut replies, Some((code, "")));
            self.send_raw(ctx, replies);
            self.close_after_flush(ctx, why);
        } else if !replies.is_empty() {
            self.send_raw(ctx, replies);
        }
    }

    fn send_raw(&mut self, ctx: &mut Ctx<'_>, bytes: Vec<u8>) {
        self.client.bytes_out += bytes.len() as u64;
        ctx.driver.send(ctx.conn, Bytes::from(bytes));
    }

    fn player_mut(&mut self) -> Option<&mut Player> {
        match &mut self.state {
            State::Live(player) | State::WebSocket(player, _) => Some(player),
            _ => None,
        }
    }

    /// Writes the frames a live viewer has not had yet (see [`Player::write_pending`]).
    pub fn write_pending(&mut self, ctx: &mut Ctx<'_>) -> Option<u64> {
        let client = self.client.id.clone();
        let player = self.player_mut()?;
        let (written, cursor) = player.write_pending(ctx, &client);
        self.client.bytes_out += written;
        cursor
    }

    pub fn drained(&mut self, ctx: &mut Ctx<'_>) {
        if self.player_mut().is_some_and(|p| p.throttled()) {
            self.write_pending(ctx);
        }
        if matches!(self.state, State::Requests) && self.input.is_empty() {
            // The last response is out: the connection is idle from now.
            self.idle_deadline =
                ctx.now + Duration::from_millis(ctx.shared.config.http_server.keepalive_timeout_ms);
        }
    }

    /// Whether a response (not a live stream) has sat unread for `send_timeout_ms`.
    fn response_stalled(&mut self, ctx: &Ctx<'_>) -> bool {
        let pending = ctx.driver.pending_bytes(ctx.conn);
        let (last, since) = self.write_progress;
        if pending == 0 || pending < last {
            self.write_progress = (pending, ctx.now);
            return false;
        }
        self.write_progress = (pending, since);
        ctx.now >= since + Duration::from_millis(ctx.shared.config.http_server.send_timeout_ms)
    }

    pub fn check_timeouts(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        if matches!(self.state, State::Requests | State::Closing) && self.response_stalled(ctx) {
            let reason = "client stopped reading the response (send_timeout)";
            tracing::warn!(client = %self.client.id, peer = %self.client.peer, reason, "closing connection");
            self.close_reason.get_or_insert_with(|| reason.to_string());
            ctx.driver.close(ctx.conn);
            return;
        }
        let expired = match &self.state {
            State::Requests if !self.input.is_empty() && now >= self.head_deadline => {
                self.respond_error(ctx, Version::Http11, 408, false);
                Some("request head not complete in time (header_timeout)".to_string())
            }
            State::Requests if self.requests == 0 && now >= self.head_deadline => {
                Some("no request in time (header_timeout)".to_string())
            }
            State::Requests
                if self.input.is_empty()
                    && self.requests > 0
                    && now >= self.idle_deadline
                    && ctx.driver.pending_bytes(ctx.conn) == 0 =>
            {
                // Quietly: an idle keep-alive connection ending is normal.
                self.close_reason = Some("idle keep-alive (keepalive_timeout)".into());
                ctx.driver.close_after_flush(ctx.conn);
                None
            }
            State::Live(player) | State::WebSocket(player, _) => player.stalled(ctx),
            State::HlsWaiting(_) => {
                self.hls_timed_out(ctx);
                None
            }
            _ => None,
        };
        if let Some(reason) = expired {
            tracing::warn!(client = %self.client.id, peer = %self.client.peer, reason = %reason, "closing connection");
            self.close_after_flush(ctx, reason);
        }
    }

    fn close_after_flush(&mut self, ctx: &mut Ctx<'_>, reason: String) {
        self.close_reason.get_or_insert(reason);
        if let State::Live(player) | State::WebSocket(player, _) =
            std::mem::replace(&mut self.state, State::Closing)
        {
            self.leave_player(player, ctx);
        }
        self.state = State::Closing;
        ctx.driver.close_after_flush(ctx.conn);
    }

    /// A live viewer stops: `on_stop`, then out of the hub.
    fn leave_player(&self, player: Box<Player>, ctx: &mut Ctx<'_>) {
        let hooks = &ctx.shared.config.vhost(&player.request.vhost).1.http_hooks;
        if !hooks.urls(Hook::OnStop).is_empty() {
            let live = LiveRequest {
                format: LiveFormat::Flv,
                websocket: None,
                version: Version::Http11,
                chunked: true,
                key: player.stream.key.clone(),
                request: player.request.clone(),
            };
            let body = self.hook_body(Hook::OnStop, ctx, &live);
            ctx.call_hook(Hook::OnStop, hooks, body, self.client.serial);
        }
        player.leave(ctx, &self.client.id);
    }

    /// The API's kick.
    pub fn kick(&mut self, ctx: &mut Ctx<'_>) {
        self.close_after_flush(ctx, "kicked by the API".into());
        ctx.driver.close(ctx.conn);
    }

    /// This connection as an API client: live viewers only.
    pub fn view(&self, now: Instant, worker: usize) -> Option<ClientView> {
        let (State::Live(player) | State::WebSocket(player, _)) = &self.state else {
            return None;
        };
        let request = &player.request;
        let extension = match self.kind {
            Some("ts-play") => "ts",
            Some("aac-play") => "aac",
            Some("mp3-play") => "mp3",
            _ => "flv",
        };
        Some(ClientView {
            vhost: player.stream.key.vhost.clone(),
            app: request.app.clone(),
            stream: request.stream.clone(),
            stream_id: Some(player.stream.id),
            name: format!("{}.{extension}", request.stream),
            tc_url: format!("http://{}/{}", request.vhost, request.app),
            kind: self.kind.unwrap_or("flv-play"),
            ..self.client.view(now, worker)
        })
    }

    /// The server is ending a live stream (shutdown): end the body properly, then close.
    pub fn end_stream(&mut self, ctx: &mut Ctx<'_>, reason: &str) {
        if let Some(player) = self.player_mut() {
            let end = player.framing.end();
            if !end.is_empty() {
                ctx.driver.send(ctx.conn, Bytes::from(end));
            }
        }
        self.close_after_flush(ctx, reason.to_string());
    }

    /// The connection is gone: leave the hub and log the client's summary.
    pub fn closed(&mut self, reason: CloseReason, ctx: &mut Ctx<'_>) {
        if let State::Live(player) | State::WebSocket(player, _) =
            std::mem::replace(&mut self.state, State::Closing)
        {
            self.leave_player(player, ctx);
        }
        let why = self
            .close_reason
            .clone()
            .unwrap_or_else(|| reason.to_string());
        let (role, stream) = self.role.clone().unwrap_or(("none".into(), String::new()));
        tracing::info!(
            client = %self.client.id,
            peer = %self.client.peer,
            proto = "http",
            role = %role,
            stream = %stream,
            requests = self.requests,
            bytes_in = self.client.bytes_in,
            bytes_out = self.client.bytes_out,
            duration_ms = ctx.now.saturating_duration_since(self.client.started).as_millis() as u64,
            reason = %why,
            "client left"
        );
    }
}
