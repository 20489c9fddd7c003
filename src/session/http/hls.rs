//! HLS and DASH requests on an HTTP connection: playlists, MPDs, init segments, segments and
//! LL-HLS parts from the stream's in-memory store, and blocking requests parked until the
//! part they wait for exists (or answered 503 after three target durations, as RFC 8216bis
//! asks).

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_proto::http::{BodyFraming, RequestHead, Version};

use super::{HttpSession, Refusal, State};
use crate::hls::{Block, Body, HlsStream, Lookup, Resource, Waiter};
use crate::request::StreamRequest;
use crate::session::Ctx;

/// A request parked until its part exists.
pub(super) struct HlsWait {
    stream: Arc<HlsStream>,
    resource: Resource,
    block: Option<Block>,
    version: Version,
    keep_alive: bool,
    head_only: bool,
    deadline: Instant,
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
        let (vhost, _) = ctx.shared.config.vhost(&guess);
        let (stream, resource) = ctx
            .shared
            .hls
            .resolve(vhost, path.trim_start_matches('/'))?;
        let block = match resource {
            Resource::Playlist => match blocking_params(query) {
                Ok(block) => block,
                Err(why) => return Some(Err(Refusal { status: 400, why })),
            },
            _ => None,
        };
        let target = stream.state().target_duration;
        let wait = HlsWait {
            stream,
            resource,
            block,
            version: head.version,
            keep_alive: head.keep_alive(),
            head_only: head.method == "HEAD",
            deadline: ctx.now + Duration::from_secs(3 * target.max(1)),
        };
        self.role
            .get_or_insert_with(|| ("hls".into(), path.to_string()));
        Some(self.answer_hls(wait, ctx))
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
        let len = body.data.len() as u64;
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
            ctx.driver.send(ctx.conn, body.data);
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
