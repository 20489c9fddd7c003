//! Protocol sessions: each glues a `sluice_proto` state machine to a driver connection and to
//! the hub. [`Ctx`] is what a session may touch while it handles an event.

pub mod http;
pub mod outputs;
pub mod player;
pub mod publisher;
pub mod rtc;
pub mod rtc_listener;
pub mod rtmp;
pub mod srt;
pub mod srt_listener;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use sluice_ring::{ConnId, Driver};

use crate::hub::local::{Cursor, LocalStream};
use crate::hub::{Frame, JoinStart, Stream, StreamKey, StreamSettings};
use crate::request::StreamRequest;
use crate::worker::Shared;

/// What a connection is speaking.
pub enum Session {
    Rtmp(Box<rtmp::RtmpSession>),
    Http(Box<http::HttpSession>),
    /// SRT on a driver flow: its input is datagrams, routed by the worker's SRT listener.
    Srt(Box<srt::SrtSession>),
    /// WebRTC on a driver flow: its datagrams are routed by the worker's WebRTC listener.
    Rtc(Box<rtc::RtcSession>),
}

/// Wake-ups sessions asked for: (when, which connection), soonest first. Entries may be stale
/// (a session moved its deadline later); a session woken early just asks again.
pub type Timers = BinaryHeap<Reverse<(Instant, ConnId)>>;

/// What `Session::handle_input` took in, for `Session::after_input` to act on.
pub enum Input {
    Rtmp(Result<(), sluice_proto::rtmp::SessionError>),
    Http,
}

impl Session {
    pub fn conn(&self) -> ConnId {
        match self {
            Session::Rtmp(s) => s.conn_hint(),
            Session::Http(s) => s.conn_hint(),
            Session::Srt(s) => s.conn_hint(),
            Session::Rtc(s) => s.conn_hint(),
        }
    }

    /// Takes received bytes (while the driver still lends them).
    pub fn handle_input(
        &mut self,
        now: Instant,
        data: &[u8],
        config: &crate::config::Config,
    ) -> Input {
        match self {
            Session::Rtmp(s) => Input::Rtmp(s.handle_input(now, data)),
            Session::Http(s) => {
                s.handle_input(now, data, config);
                Input::Http
            }
            // Flows receive no stream bytes: datagrams reach SRT sessions through the worker.
            Session::Srt(_) | Session::Rtc(_) => Input::Http,
        }
    }

    pub fn after_input(&mut self, input: Input, ctx: &mut Ctx<'_>) {
        match (self, input) {
            (Session::Rtmp(s), Input::Rtmp(result)) => s.after_input(result, ctx),
            (Session::Http(s), Input::Http) => s.after_input(ctx),
            (Session::Srt(_) | Session::Rtc(_), _) => {}
            _ => unreachable!("input comes from the same session"),
        }
    }

    pub fn drained(&mut self, ctx: &mut Ctx<'_>) {
        match self {
            Session::Rtmp(s) => s.drained(ctx),
            Session::Http(s) => s.drained(ctx),
            Session::Srt(s) => s.drained(ctx),
            Session::Rtc(s) => s.drained(ctx),
        }
    }

    /// A viewer writes its pending frames; returns its cursor.
    pub fn write_pending(&mut self, ctx: &mut Ctx<'_>) -> Option<u64> {
        match self {
            Session::Rtmp(s) => s.write_pending(ctx),
            Session::Http(s) => s.write_pending(ctx),
            Session::Srt(s) => s.write_pending(ctx),
            Session::Rtc(s) => s.write_pending(ctx),
        }
    }

    pub fn check_timeouts(&mut self, ctx: &mut Ctx<'_>) {
        match self {
            Session::Rtmp(s) => s.check_timeouts(ctx),
            Session::Http(s) => s.check_timeouts(ctx),
            Session::Srt(s) => s.check_timeouts(ctx),
            Session::Rtc(s) => s.check_timeouts(ctx),
        }
    }

    /// The server is stopping: end this connection.
    pub fn shut_down(&mut self, ctx: &mut Ctx<'_>) {
        const REASON: &str = "server shutting down";
        match self {
            Session::Rtmp(s) => {
                s.set_close_reason(REASON);
                ctx.driver.close(ctx.conn);
            }
            Session::Http(s) => s.end_stream(ctx, REASON),
            Session::Srt(s) => s.shut_down(ctx),
            Session::Rtc(s) => s.shut_down(ctx),
        }
    }

    pub fn client(&self) -> &ClientInfo {
        match self {
            Session::Rtmp(s) => &s.client,
            Session::Http(s) => &s.client,
            Session::Srt(s) => &s.client,
            Session::Rtc(s) => &s.client,
        }
    }

    pub fn client_mut(&mut self) -> &mut ClientInfo {
        match self {
            Session::Rtmp(s) => &mut s.client,
            Session::Http(s) => &mut s.client,
            Session::Srt(s) => &mut s.client,
            Session::Rtc(s) => &mut s.client,
        }
    }

    /// This connection as an API client (`None` for HTTP connections serving files).
    pub fn view(&self, now: Instant, worker: usize) -> Option<crate::control::views::ClientView> {
        match self {
            Session::Rtmp(s) => Some(s.view(now, worker)),
            Session::Http(s) => s.view(now, worker),
            Session::Srt(s) => Some(s.view(now, worker)),
            Session::Rtc(s) => Some(s.view(now, worker)),
        }
    }

    pub fn kick(&mut self, ctx: &mut Ctx<'_>) {
        match self {
            Session::Rtmp(s) => s.kick(ctx),
            Session::Http(s) => s.kick(ctx),
            Session::Srt(s) => s.kick(ctx),
            Session::Rtc(s) => s.kick(ctx),
        }
    }

    pub fn verdict(&mut self, verdict: crate::control::Verdict, ctx: &mut Ctx<'_>) {
        match self {
            Session::Rtmp(s) => s.verdict(verdict, ctx),
            Session::Http(s) => s.verdict(verdict, ctx),
            Session::Srt(s) => s.verdict(verdict, ctx),
            // Its hooks were asked during signalling.
            Session::Rtc(_) => {}
        }
    }

    pub fn closed(&mut self, reason: sluice_ring::CloseReason, ctx: &mut Ctx<'_>) {
        match self {
            Session::Rtmp(s) => s.closed(reason, ctx),
            Session::Http(s) => s.closed(reason, ctx),
            Session::Srt(s) => s.closed(reason, ctx),
            Session::Rtc(s) => s.closed(reason, ctx),
        }
    }
}

/// Who a connection is, for logs and (later) the API.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// Process-unique serial number.
    pub serial: u64,
    /// Short id shown in logs and the API, SRS-style.
    pub id: String,
    pub peer: SocketAddr,
    pub conn: ConnId,
    pub started: Instant,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Byte counts sampled every few seconds, for the API's 30-second rates.
    pub rate: RateMeter,
}

impl ClientInfo {
    /// The API's view of this client with what every protocol knows (id, address, traffic);
    /// the session fills in its stream and type.
    pub fn view(&self, now: Instant, worker: usize) -> crate::control::views::ClientView {
        let (recv_kbps, send_kbps) = self.rate.kbps(now, self.bytes_in, self.bytes_out);
        crate::control::views::ClientView {
            id: self.id.clone(),
            worker,
            ip: self.peer.ip(),
            vhost: String::new(),
            app: String::new(),
            stream: String::new(),
            stream_id: None,
            name: String::new(),
            tc_url: String::new(),
            page_url: String::new(),
            swf_url: String::new(),
            kind: "unknown",
            publish: false,
            alive_s: now.saturating_duration_since(self.started).as_secs_f64(),
            send_bytes: self.bytes_out,
            recv_bytes: self.bytes_in,
            send_kbps_30s: send_kbps,
            recv_kbps_30s: recv_kbps,
        }
    }
}

impl ClientInfo {
    /// The API's view of a client that publishes or plays `request` (a stream of the hub when
    /// `stream_id` is known), as protocol `kind` (`srt-play`, `rtc-publish`, ...).
    pub fn stream_view(
        &self,
        (now, worker): (Instant, usize),
        key: &StreamKey,
        request: &StreamRequest,
        (kind, publish): (&'static str, bool),
        stream_id: Option<u64>,
    ) -> crate::control::views::ClientView {
        crate::control::views::ClientView {
            vhost: key.vhost.clone(),
            app: request.app.clone(),
            stream: request.stream.clone(),
            stream_id,
            name: request.stream.clone(),
            tc_url: request.tc_url.clone(),
            kind,
            publish,
            ..self.view(now, worker)
        }
    }
}

/// Recent byte counts of a client, sampled by its worker's housekeeping, giving the average
/// send/receive rates over about the last 30 s (SRS's `kbps.*_30s`).
#[derive(Debug, Clone, Default)]
pub struct RateMeter {
    /// (when, bytes in, bytes out), oldest first, at most `RATE_SAMPLES`.
    samples: std::collections::VecDeque<(Instant, u64, u64)>,
}

/// Samples kept: one every `RATE_SAMPLE_EVERY`, covering 30 s.
const RATE_SAMPLES: usize = 7;
pub const RATE_SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

impl RateMeter {
    pub fn sample(&mut self, now: Instant, bytes_in: u64, bytes_out: u64) {
        if self.samples.len() == RATE_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back((now, bytes_in, bytes_out));
    }

    /// (receive, send) in kbit/s since the oldest sample.
    pub fn kbps(&self, now: Instant, bytes_in: u64, bytes_out: u64) -> (u64, u64) {
        let Some(&(then, old_in, old_out)) = self.samples.front() else {
            return (0, 0);
        };
        let seconds = now.saturating_duration_since(then).as_secs_f64();
        if seconds < 1.0 {
            return (0, 0);
        }
        let rate =
            |now: u64, old: u64| (now.saturating_sub(old) as f64 * 8.0 / 1000.0 / seconds) as u64;
        (rate(bytes_in, old_in), rate(bytes_out, old_out))
    }
}

impl ClientInfo {
    pub fn new(serial: u64, conn: ConnId, peer: SocketAddr, now: Instant) -> ClientInfo {
        ClientInfo {
            serial,
            id: client_id(serial),
            peer,
            conn,
            started: now,
            bytes_in: 0,
            bytes_out: 0,
            rate: RateMeter::default(),
        }
    }
}

/// An 8-character id from a serial number: distinct for distinct serials, not sequential to
/// the eye (a bijective mix of the serial, in base 36).
pub fn client_id(serial: u64) -> String {
    let mut x = serial.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 32;
    base36_id(x)
}

/// The low 8 base-36 digits of `x`: the shape of every id we hand out.
pub fn base36_id(mut x: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    (0..8)
        .map(|_| {
            let digit = DIGITS[(x % 36) as usize] as char;
            x /= 36;
            digit
        })
        .collect()
}

/// What a session may use while handling one event.
pub struct Ctx<'a> {
    pub conn: ConnId,
    pub now: Instant,
    pub worker: usize,
    pub driver: &'a mut Driver,
    pub shared: &'a Shared,
    pub locals: &'a mut HashMap<u64, LocalStream>,
    pub wake: &'a mut Vec<usize>,
    pub pending_wakes: &'a mut Vec<(usize, Arc<Stream>)>,
    pub dirty: &'a mut Vec<u64>,
    pub counters: &'a mut crate::control::views::WorkerCounters,
    pub timers: &'a mut Timers,
}

/// What a callback body says about a client besides its identity.
pub struct HookSubject<'a> {
    pub vhost: &'a str,
    pub app: &'a str,
    /// The stream it publishes or plays, with its hub key.
    pub stream: Option<(&'a StreamRequest, &'a StreamKey)>,
    pub tc_url: &'a str,
    pub page_url: &'a str,
}

impl<'a> HookSubject<'a> {
    /// A hook about a publish or play of `request` (filed under `key`); `on_close` carries no
    /// stream.
    pub fn stream(
        hook: crate::control::Hook,
        key: &'a StreamKey,
        request: &'a StreamRequest,
    ) -> HookSubject<'a> {
        HookSubject {
            vhost: &key.vhost,
            app: &request.app,
            stream: (hook != crate::control::Hook::OnClose).then_some((request, key)),
            tc_url: &request.tc_url,
            page_url: "",
        }
    }
}

/// What a publish or play session held of the hub when its connection closed.
pub enum StreamRole {
    Publisher(Box<publisher::Publishing>),
    Player(Box<player::Player>),
    /// It never got that far (refused, or not connected yet).
    None,
}

/// The end of a session's publish or play: its leave callback (`on_unpublish` or `on_stop`),
/// then the hub lets go (the publisher's outputs finish, the player leaves). `why` is for the
/// log.
pub fn end_stream_role(
    ctx: &mut Ctx<'_>,
    client: &ClientInfo,
    (key, request): (&StreamKey, &StreamRequest),
    role: StreamRole,
    why: &str,
) {
    use crate::control::Hook;
    let hooks = &ctx.shared.config.vhost(&key.vhost).1.http_hooks;
    let hook = match role {
        StreamRole::Publisher(_) => Some(Hook::OnUnpublish),
        StreamRole::Player(_) => Some(Hook::OnStop),
        StreamRole::None => None,
    };
    if let Some(hook) = hook
        && !hooks.urls(hook).is_empty()
    {
        let body = ctx.hook_body(hook, client, HookSubject::stream(hook, key, request));
        ctx.call_hook(hook, hooks, body, client.serial);
    }
    match role {
        StreamRole::Publisher(p) => p.finish(ctx, client.serial, &client.id, why),
        StreamRole::Player(p) => p.leave(ctx, &client.id),
        StreamRole::None => {}
    }
}

/// A callback's JSON body with the fields SRS 7 sends for `hook`
/// (`shared/compat/srs/hooks.json`).
pub fn hook_body(
    shared: &Shared,
    hook: crate::control::Hook,
    client: &ClientInfo,
    subject: HookSubject<'_>,
) -> serde_json::Value {
    use crate::control::Hook;
    let identity = &shared.identity;
    let mut body = serde_json::json!({
        "server_id": identity.server_id,
        "service_id": identity.service_id,
        "action": hook.name(),
        "client_id": client.id,
        "ip": client.peer.ip().to_string(),
        "vhost": subject.vhost,
        "app": subject.app,
    });
    let Some(fields) = body.as_object_mut() else {
        return body;
    };
    if hook == Hook::OnClose {
        fields.insert("send_bytes".into(), client.bytes_out.into());
        fields.insert("recv_bytes".into(), client.bytes_in.into());
        return body;
    }
    fields.insert("tcUrl".into(), subject.tc_url.into());
    let (name, param) = subject
        .stream
        .map_or(("", ""), |(r, _)| (r.stream.as_str(), r.param.as_str()));
    fields.insert("stream".into(), name.into());
    fields.insert("param".into(), param.into());
    if matches!(hook, Hook::OnConnect | Hook::OnPlay) {
        fields.insert("pageUrl".into(), subject.page_url.into());
    }
    if let Some((request, key)) = subject.stream
        && hook != Hook::OnConnect
    {
        fields.insert("stream_url".into(), format!("/{}", request.path()).into());
        let id = crate::control::views::stream_id(shared.hub.stream_id(key));
        fields.insert("stream_id".into(), id.into());
    }
    body
}

impl Ctx<'_> {
    /// Asks the worker to call this connection's session back at `at` (SRT timers).
    pub fn wake_at(&mut self, at: Instant) {
        self.timers.push(Reverse((at, self.conn)));
    }

    /// A callback's JSON body with the fields SRS 7 sends for `hook`
    /// (`shared/compat/srs/hooks.json`).
    pub fn hook_body(
        &self,
        hook: crate::control::Hook,
        client: &ClientInfo,
        subject: HookSubject<'_>,
    ) -> serde_json::Value {
        hook_body(self.shared, hook, client, subject)
    }

    /// Sends a callback to the control plane. Deciding hooks name who waits for the verdict.
    pub fn call_hook(
        &self,
        hook: crate::control::Hook,
        hooks: &crate::config::HttpHooksConfig,
        body: serde_json::Value,
        serial: u64,
    ) {
        let urls = hooks.urls(hook).to_vec();
        let verdict = hook.decides().then_some(crate::control::VerdictTarget {
            worker: self.worker,
            conn: self.conn,
            serial,
            hook,
        });
        let job = crate::control::HookJob {
            hook,
            urls,
            timeout: std::time::Duration::from_millis(hooks.timeout_ms),
            body,
            verdict,
            reply: None,
        };
        if self.shared.hooks.send(job).is_err() {
            tracing::error!("the control plane is gone; hook {} dropped", hook.name());
        }
    }
    /// Appends a publisher's frame to its stream and notes which workers to wake at the end of
    /// this batch.
    pub fn publish_frame(&mut self, stream: &Arc<Stream>, frame: Arc<Frame>) {
        stream.push(frame, self.wake);
        for worker in self.wake.drain(..) {
            if !self
                .pending_wakes
                .iter()
                .any(|(w, s)| *w == worker && Arc::ptr_eq(s, stream))
            {
                self.pending_wakes.push((worker, stream.clone()));
            }
        }
    }

    /// Makes this connection a viewer of a stream on this worker: returns the stream, what to
    /// send first, and the cursor for live frames.
    pub fn join(
        &mut self,
        key: StreamKey,
        settings: &StreamSettings,
    ) -> (Arc<Stream>, JoinStart, Cursor) {
        let stream = self.shared.hub.join(key, settings, self.worker);
        let local = self
            .locals
            .entry(stream.id)
            .or_insert_with(|| LocalStream::new(stream.clone(), stream.head_seq(), self.now));
        let start = local.attach(self.worker);
        local.viewers.push(self.conn);
        let cursor = Cursor::new(local.end(), !start.has_keyframe);
        if local.unflushed > 0 && !self.dirty.contains(&stream.id) {
            // Frames the attach copied for the other viewers: write them at the batch end.
            self.dirty.push(stream.id);
        }
        (stream, start, cursor)
    }

    /// This connection's viewer takes frames as they come, not in merged writes.
    pub fn write_at_once(&mut self, stream: &Arc<Stream>) {
        if let Some(local) = self.locals.get_mut(&stream.id)
            && !local.realtime.contains(&self.conn)
        {
            local.realtime.push(self.conn);
        }
    }

    pub fn leave(&mut self, stream: &Arc<Stream>) {
        if let Some(local) = self.locals.get_mut(&stream.id) {
            local.viewers.retain(|c| *c != self.conn);
            local.realtime.retain(|c| *c != self.conn);
            if local.viewers.is_empty() {
                self.locals.remove(&stream.id);
            }
        }
        self.shared.hub.leave(stream, self.worker);
    }
}

#[cfg(test)]
mod tests {
    use super::client_id;

    #[test]
    fn client_ids_are_short_and_distinct() {
        let ids: std::collections::HashSet<String> = (1..10_000).map(client_id).collect();
        assert_eq!(ids.len(), 9_999);
        assert!(ids.iter().all(|id| id.len() == 8));
    }
}
