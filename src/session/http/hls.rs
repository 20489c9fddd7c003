//! HLS and DASH requests on an HTTP connection: playlists, MPDs, init segments, segments and
//! LL-HLS parts from the stream's in-memory store, and blocking requests parked until the
//! part they wait for exists (or answered 503 after three target durations, as RFC 8216bis
//! asks).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_proto::http::{BodyFraming, RequestHead, Version};

use super::{HttpSession, Refusal, State};
use crate::control::{Hook, Verdict};
use crate::hls::sessions::{HlsViewer, context_of, tag_playlist, with_context};
use crate::hls::{Block, Body, HlsStream, Lookup, Resource, Waiter};
use crate::request::StreamRequest;
use crate::security::Method;
use crate::session::{ClientInfo, Ctx, HookSubject};

/// A request parked until its part exists.
pub(super) struct HlsWait {
    stream: Arc<HlsStream>,
    resource: Resource,
    block: Option<Block>,
    version: Version,
    keep_alive: bool,
    head_only: bool,
    deadline: Instant,
    /// The viewer's `hls_ctx`, when viewers are tracked.
    context: Option<String>,
}

/// A new HLS viewer waiting for its `on_play` verdict.
pub(super) struct HlsAdmission {
    wait: HlsWait,
    viewer: HlsViewer,
}

/// Reads `_HLS_msn` / `_HLS_part` from a query string.
fn blocking_params(query: &str) -> Result<Option<Block>, String> {
    let mut msn = None;
    let mut part = None;
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "_HLS_msn" => msn = Some(value.parse::<u64>().map_err(|_| "bad _HLS_msn")?),
            "_HLS_part" => part = Some(value.parse::<u32>().map_err(|_| "bad _HLS_part")?),
            _ => {}
        }
    }
    match (msn, part) {
        (None, Some(_)) => Err("_HLS_part without _HLS_msn".into()),
        (None, None) => Ok(None),
        (Some(msn), part) => Ok(Some(Block { msn, part })),
    }
}

impl HttpSession {
    /// Serves `path` if it names an HLS/DASH resource; `None` to try live streams and files.
    pub(super) fn hls(
        &mut self,
        head: &RequestHead<'_>,
        path: &str,
        ctx: &mut Ctx<'_>,
    ) -> Option<Result<(), Refusal>> {
        let host = head.host().unwrap_or("");
        let query = head.query.unwrap_or("");
        let guess = StreamRequest::connect_vhost(&format!("http://{host}/"), &format!("?{query}"));
        let (vhost, vhost_config) = ctx.shared.config.vhost(&guess);
        let (stream, resource) = ctx
            .shared
            .hls
            .resolve(vhost, path.trim_start_matches('/'))?;
        // Security rules hold for HLS and DASH players as for every other protocol.
        if let Err(why) = vhost_config
            .security
            .check(Method::Play, self.client.peer.ip())
        {
            ctx.counters.refused += 1;
            return Some(Err(Refusal {
                status: 403,
                why: format!("play refused by security rules: {why}"),
            }));
        }
        let block = match resource {
            Resource::Playlist => match blocking_params(query) {
                Ok(block) => block,
                Err(why) => return Some(Err(Refusal { status: 400, why })),
            },
            _ => None,
        };
        let tracked = vhost_config.hls.hls_ctx
            && matches!(
                resource,
                Resource::Playlist | Resource::Init | Resource::Segment(_) | Resource::Part(..)
            );
        // Only contexts we handed out count; a made-up one is as good as none.
        let sessions = &ctx.shared.hls.sessions;
        let context = tracked
            .then(|| context_of(query).filter(|c| sessions.is_genuine(c)))
            .flatten()
            .map(str::to_string);
        if tracked && context.is_none() && resource == Resource::Playlist {
            // SRS's hls_ctx: name this viewer, and come back with the name.
            let id = ctx.shared.hls.sessions.new_context(self.client.serial);
            let location = with_context(head.path, query, &id);
            let headers = [("Location", location.as_str())];
            let keep_alive = head.keep_alive();
            self.respond(
                ctx,
                head.version,
                302,
                &headers,
                BodyFraming::Length(0),
                keep_alive,
                None,
            );
            if !keep_alive {
                self.close_after_flush(ctx, "request done, no keep-alive".into());
            }
            return Some(Ok(()));
        }
        let target = stream.state().target_duration;
        let wait = HlsWait {
            stream,
            resource,
            block,
            version: head.version,
            keep_alive: head.keep_alive(),
            head_only: head.method == "HEAD",
            deadline: ctx.now + Duration::from_secs(3 * target.max(1)),
            context,
        };
        self.role
            .get_or_insert_with(|| ("hls".into(), path.to_string()));
        if let Some(context) = &wait.context
            && !ctx.shared.hls.sessions.touch(context, 0, ctx.now)
        {
            return Some(self.admit_viewer(wait, head, path, ctx));
        }
        Some(self.answer_hls(wait, ctx))
    }

    /// A request with a context not seen yet: a new viewer, admitted by `on_play` if the
    /// vhost has it.
    fn admit_viewer(
        &mut self,
        wait: HlsWait,
        head: &RequestHead<'_>,
        path: &str,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), Refusal> {
        let key = wait.stream.key.clone();
        let query = head.query.unwrap_or("");
        let request = StreamRequest {
            vhost: key.vhost.clone(),
            app: key.app.clone(),
            stream: key.stream.clone(),
            param: if query.is_empty() {
                String::new()
            } else {
                format!("?{query}")
            },
            tc_url: String::new(),
        };
        let client = ClientInfo::new(
            ctx.shared.next_serial(),
            ctx.conn,
            self.client.peer,
            ctx.now,
        );
        let hooks = &ctx.shared.config.vhost(&key.vhost).1.http_hooks;
        let hook_body = hooks.enabled.then(|| {
            let tc_url = format!("rtmp://{}/{}", key.vhost, key.app);
            ctx.hook_body(
                Hook::OnPlay,
                &client,
                HookSubject {
                    vhost: &key.vhost,
                    app: &key.app,
                    stream: Some((&request, &key)),
                    tc_url: &tc_url,
                    page_url: "",
                },
            )
        });
        let asks = hook_body.is_some() && !hooks.urls(Hook::OnPlay).is_empty();
        let viewer = HlsViewer {
            client,
            stream_id: ctx.shared.hub.stream_id(&key),
            name: path.rsplit('/').next().unwrap_or(path).to_string(),
            app: key.app.clone(),
            stream: key.stream.clone(),
            key,
            last_seen: ctx.now,
            hook_body,
        };
        if asks {
            let hooks = &ctx.shared.config.vhost(&viewer.key.vhost).1.http_hooks;
            let body = viewer.hook_body.clone().unwrap_or_default();
            ctx.call_hook(Hook::OnPlay, hooks, body, self.client.serial);
            self.state = State::HlsAdmitting(Box::new(HlsAdmission { wait, viewer }));
            return Ok(());
        }
        self.viewer_admitted(&wait, viewer, ctx);
        self.answer_hls(wait, ctx)
    }

    fn viewer_admitted(&mut self, wait: &HlsWait, viewer: HlsViewer, ctx: &Ctx<'_>) {
        let Some(context) = wait.context.clone() else {
            return;
        };
        let (id, peer) = (viewer.client.id.clone(), viewer.client.peer);
        let stream = format!("{}/{}", viewer.app, viewer.stream);
        let vhost = viewer.key.vhost.clone();
        if ctx.shared.hls.sessions.admit(context.clone(), viewer) {
            tracing::info!(client = %id, peer = %peer, vhost = %vhost, stream = %stream, hls_ctx = %context, "hls viewer started");
        } else {
            tracing::warn!(
                client = %id,
                peer = %peer,
                stream = %stream,
                max = crate::hls::sessions::MAX_VIEWERS,
                "too many hls viewers tracked; this one is served untracked"
            );
        }
    }

    /// `on_play`'s verdict for a new HLS viewer.
    pub(super) fn hls_verdict(&mut self, verdict: Verdict, ctx: &mut Ctx<'_>) {
        let State::HlsAdmitting(admission) = std::mem::replace(&mut self.state, State::Requests)
        else {
            return;
        };
        let HlsAdmission { wait, viewer } = *admission;
        let (version, keep_alive) = (wait.version, wait.keep_alive);
        match verdict.result {
            Ok(()) => {
                self.viewer_admitted(&wait, viewer, ctx);
                if let Err(refusal) = self.answer_hls(wait, ctx) {
                    self.respond_error(ctx, version, refusal.status, keep_alive);
                }
                self.resume_requests(ctx);
            }
            Err(why) => {
                tracing::warn!(client = %self.client.id, peer = %self.client.peer, hook = "on_play", reason = %why, "hls viewer refused by hook");
                ctx.counters.refused += 1;
                self.respond_error(ctx, version, 403, false);
                self.close_after_flush(ctx, format!("refused by on_play: {why}"));
            }
        }
    }

    /// Answers a request now, or parks it.
    fn answer_hls(&mut self, wait: HlsWait, ctx: &mut Ctx<'_>) -> Result<(), Refusal> {
        let waiter = Waiter {
            worker: ctx.worker,
            conn: ctx.conn,
            serial: self.client.serial,
        };
        match wait.stream.lookup(wait.resource, wait.block, waiter) {
            Lookup::Found(body) => {
                self.send_hls(&wait, body, ctx);
                Ok(())
            }
            Lookup::Wait => {
                self.state = State::HlsWaiting(Box::new(wait));
                Ok(())
            }
            Lookup::NotFound => Err(Refusal {
                status: 404,
                why: format!("{}: {:?} is not available", wait.stream.key, wait.resource),
            }),
            Lookup::BadRequest(why) => Err(Refusal { status: 400, why }),
        }
    }

    fn send_hls(&mut self, wait: &HlsWait, body: Body, ctx: &mut Ctx<'_>) {
        let max_age;
        let cache = if body.immutable {
            // Immutable while the stream lives; bounded so a restarted stream's reused numbers
            // are not served stale from caches.
            max_age = format!(
                "public, max-age={}, immutable",
                ctx.shared
                    .config
                    .vhost(&wait.stream.key.vhost)
                    .1
                    .hls
                    .hls_window
                    .ceil() as u64
            );
            max_age.as_str()
        } else {
            "no-cache"
        };
        let headers = [
            ("Content-Type", body.content_type),
            ("Cache-Control", cache),
        ];
        let data = match (&wait.context, wait.resource) {
            (Some(context), Resource::Playlist) => Bytes::from(tag_playlist(&body.data, context)),
            _ => body.data,
        };
        let len = data.len() as u64;
        if let Some(context) = &wait.context {
            ctx.shared.hls.sessions.touch(context, len, ctx.now);
        }
        self.respond(
            ctx,
            wait.version,
            200,
            &headers,
            BodyFraming::Length(len),
            wait.keep_alive,
            None,
        );
        if !wait.head_only {
            self.client.bytes_out += len;
            ctx.driver.send(ctx.conn, data);
        }
        ctx.counters.hls_requests += 1;
        if !wait.keep_alive {
            self.close_after_flush(ctx, "request done, no keep-alive".into());
        }
    }

    /// The part a parked request waits for may exist now.
    pub fn hls_ready(&mut self, ctx: &mut Ctx<'_>) {
        if !matches!(self.state, State::HlsWaiting(_)) {
            return;
        }
        let State::HlsWaiting(wait) = std::mem::replace(&mut self.state, State::Requests) else {
            return;
        };
        let (version, keep_alive) = (wait.version, wait.keep_alive);
        if let Err(refusal) = self.answer_hls(*wait, ctx) {
            tracing::info!(client = %self.client.id, status = refusal.status, reason = %refusal.why, "hls request refused");
            self.respond_error(ctx, version, refusal.status, keep_alive);
        }
        self.resume_requests(ctx);
    }

    /// A parked request past its deadline gets 503 (RFC 8216bis 6.2.5.2).
    pub(super) fn hls_timed_out(&mut self, ctx: &mut Ctx<'_>) {
        let State::HlsWaiting(wait) = &self.state else {
            return;
        };
        if ctx.now < wait.deadline {
            return;
        }
        let (version, keep_alive) = (wait.version, wait.keep_alive);
        tracing::info!(client = %self.client.id, stream = %wait.stream.key, "blocking hls request timed out");
        self.state = State::Requests;
        self.respond_error(ctx, version, 503, keep_alive);
        if !keep_alive {
            self.close_after_flush(ctx, "blocking request timed out".into());
            return;
        }
        self.resume_requests(ctx);
    }

    /// Goes on with requests that arrived while one was parked.
    fn resume_requests(&mut self, ctx: &mut Ctx<'_>) {
        if matches!(self.state, State::Requests) && !self.input.is_empty() {
            self.serve_requests(ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_parameters() {
        assert_eq!(blocking_params("").unwrap(), None);
        assert_eq!(
            blocking_params("_HLS_msn=12&_HLS_part=3").unwrap(),
            Some(Block {
                msn: 12,
                part: Some(3)
            })
        );
        assert_eq!(
            blocking_params("x=1&_HLS_msn=4").unwrap(),
            Some(Block { msn: 4, part: None })
        );
        assert!(blocking_params("_HLS_part=1").is_err());
        assert!(blocking_params("_HLS_msn=-1").is_err());
    }
}
