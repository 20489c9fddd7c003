//! HTTP callbacks (SRS `http_hooks`): each [`HookJob`] a session sends is POSTed as JSON to
//! every URL of its hook, in order. For a deciding hook (`on_connect`, `on_publish`, `on_play`)
//! the client is allowed only if every URL allows it — SRS's contract, see [`verdict_of`] — and
//! the verdict goes back to the waiting session through [`ControlPlane::deliver`]. The other
//! hooks are notifications: failures are logged and change nothing.
//!
//! Everything is bounded: each URL has the job's timeout (waiting for a request slot, connect,
//! response and body together); a response body over [`MAX_BODY`] refuses; at most
//! [`MAX_PER_URL`] requests to one URL are in flight at once; at most [`MAX_PENDING`] jobs wait
//! or run at once (past it a deciding hook refuses at once and a notification is dropped, both
//! logged). The callbacks of one client go out in the order the client caused them (SRS makes
//! them one after the other on the client's coroutine), so `on_unpublish` reaches the hook
//! server before `on_close`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, StatusCode, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::{ControlPlane, HookJob, Verdict};

/// The largest response body a hook may answer with (bytes); a larger one refuses.
pub const MAX_BODY: usize = 8 * 1024;
/// Requests in flight to one URL at once; more wait for a slot (within their timeout).
pub const MAX_PER_URL: usize = 32;
/// Jobs waiting or running at once; past it new jobs are refused (deciding) or dropped.
pub const MAX_PENDING: usize = 4096;
/// Idle keep-alive connections kept per hook server.
const MAX_IDLE_PER_HOST: usize = 4;
/// How much of a response body a refusal reason quotes.
const QUOTE: usize = 120;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Whether a hook's answer allows the client, as SRS's `SrsHttpHooks::do_post` decides: HTTP
/// 200 or 201, and a body that is the number `0` or a JSON object whose `code` is the integer
/// 0. An empty body, a body that is not JSON, any other value, an object without an integer
/// `code`, or a non-zero `code` refuse. Unlike SRS, whitespace around the body is ignored
/// (SRS refuses `"0\n"`).
pub fn verdict_of(status: u16, body: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if status != 200 && status != 201 {
        return Err(if text.is_empty() {
            format!("HTTP status {status}")
        } else {
            format!("HTTP status {status}, body {}", quote(text))
        });
    }
    if text.is_empty() {
        return Err("empty response body".into());
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|_| format!("response is not JSON: {}", quote(text)))?;
    match value {
        serde_json::Value::Object(fields) => match fields.get("code") {
            Some(code) => match code.as_i64() {
                Some(0) => Ok(()),
                Some(n) => Err(format!("code {n}")),
                None => Err(format!("code is not an integer: {}", quote(text))),
            },
            None => Err(format!("response object has no code: {}", quote(text))),
        },
        _ if text == "0" => Ok(()),
        _ => Err(format!(
            "response is neither 0 nor {{\"code\":0}}: {}",
            quote(text)
        )),
    }
}

/// `text` in quotes, cut to [`QUOTE`] characters.
fn quote(text: &str) -> String {
    if text.chars().count() <= QUOTE {
        format!("{text:?}")
    } else {
        let cut: String = text.chars().take(QUOTE).collect();
        format!("{cut:?}...")
    }
}

/// Makes the hook jobs the sessions send, until every sender is gone.
pub async fn run(mut jobs: UnboundedReceiver<HookJob>, plane: Arc<ControlPlane>) {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.enforce_http(true);
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector);
    let runner = Arc::new(Runner {
        client,
        pending: AtomicUsize::new(0),
        slots: Mutex::new(HashMap::new()),
        lanes: Mutex::new(Lanes::default()),
    });
    while let Some(mut job) = jobs.recv().await {
        let client_id = job
            .body
            .get("client_id")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        if runner.pending.fetch_add(1, Ordering::SeqCst) >= MAX_PENDING {
            runner.pending.fetch_sub(1, Ordering::SeqCst);
            let reason = format!("over {MAX_PENDING} hook calls pending");
            finish(&plane, &mut job, &client_id, Err(reason));
            continue;
        }
        let (previous, lane) = runner.join_lane(&client_id);
        let runner = runner.clone();
        let plane = plane.clone();
        tokio::spawn(async move {
            // The client's earlier callbacks first (the sender is dropped when one is done).
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            let result = runner.call(&job, &client_id).await;
            finish(&plane, &mut job, &client_id, result);
            runner.leave_lane(&client_id, lane);
            runner.pending.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Logs a job's outcome and hands a deciding hook's verdict to the waiting session.
fn finish(plane: &ControlPlane, job: &mut HookJob, client_id: &str, result: Result<(), String>) {
    let hook = job.hook.name();
    if let Some(reply) = job.reply.take() {
        match &result {
            Ok(()) => tracing::info!(hook, client = %client_id, "hook allowed"),
            Err(reason) => {
                tracing::warn!(hook, client = %client_id, reason = %reason, "hook refused")
            }
        }
        let _ = reply.send(result);
        return;
    }
    match (&job.verdict, &result) {
        (Some(_), Ok(())) => tracing::info!(hook, client = %client_id, "hook allowed"),
        (Some(_), Err(reason)) => {
            tracing::warn!(hook, client = %client_id, reason = %reason, "hook refused")
        }
        (None, Ok(())) => tracing::debug!(hook, client = %client_id, "hook notified"),
        (None, Err(reason)) => {
            tracing::warn!(hook, client = %client_id, reason = %reason, "hook failed")
        }
    }
    if let Some(target) = job.verdict {
        plane.deliver(Verdict { target, result });
    }
}

/// The order of each client's callbacks: the last job of the client still pending, which the
/// next one waits for.
#[derive(Default)]
struct Lanes {
    next: u64,
    /// client id -> (the job's number, resolved when it is done).
    last: HashMap<String, (u64, oneshot::Receiver<()>)>,
}

/// A job's place in its client's lane: dropping `done` lets the next job go.
struct Lane {
    number: u64,
    done: oneshot::Sender<()>,
}

struct Runner {
    client: HttpClient,
    pending: AtomicUsize,
    /// Request slots per URL (the URLs come from the config, so the map stays small).
    slots: Mutex<HashMap<String, Arc<Semaphore>>>,
    lanes: Mutex<Lanes>,
}

impl Runner {
    /// Queues a job behind the client's pending ones: returns what to wait for first.
    fn join_lane(&self, client_id: &str) -> (Option<oneshot::Receiver<()>>, Lane) {
        let (done, receiver) = oneshot::channel();
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        lanes.next += 1;
        let number = lanes.next;
        let previous = lanes
            .last
            .insert(client_id.to_string(), (number, receiver))
            .map(|(_, previous)| previous);
        (previous, Lane { number, done })
    }

    /// The job is done: forget the client's lane if no later job joined it.
    fn leave_lane(&self, client_id: &str, lane: Lane) {
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        if lanes
            .last
            .get(client_id)
            .is_some_and(|(n, _)| *n == lane.number)
        {
            lanes.last.remove(client_id);
        }
        drop(lane.done);
    }

    fn slots(&self, url: &str) -> Arc<Semaphore> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .entry(url.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(MAX_PER_URL)))
            .clone()
    }

    /// POSTs the job's body to each URL in turn; for a deciding hook, stops at the first
    /// refusal. A notification calls every URL and reports the failures together.
    async fn call(&self, job: &HookJob, client_id: &str) -> Result<(), String> {
        let body = Bytes::from(serde_json::to_vec(&job.body).unwrap_or_default());
        let mut failures = Vec::new();
        for url in &job.urls {
            let result = tokio::time::timeout(job.timeout, async {
                let slots = self.slots(url);
                let _permit: OwnedSemaphorePermit = slots
                    .acquire_owned()
                    .await
                    .map_err(|_| "no request slot".to_string())?;
                self.post(url, body.clone()).await
            })
            .await
            .unwrap_or_else(|_| Err(format!("timed out after {} ms", job.timeout.as_millis())));
            match result {
                Ok(()) => {
                    tracing::debug!(hook = job.hook.name(), client = %client_id, url = %url, "hook url allowed")
                }
                Err(why) => {
                    let why = format!("{url}: {why}");
                    if job.verdict.is_some() {
                        return Err(why);
                    }
                    failures.push(why);
                }
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("; "))
        }
    }

    /// One POST: the verdict of its answer, or why there was none.
    async fn post(&self, url: &str, body: Bytes) -> Result<(), String> {
        let request = Request::post(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("sluice/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(body))
            .map_err(|e| format!("bad request: {e}"))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| describe_error(&e))?;
        let status = response.status();
        if let Some(length) = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            && length > MAX_BODY as u64
        {
            return Err(too_large(status, Some(length)));
        }
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    too_large(status, None)
                } else {
                    format!("reading the response body: {}", describe_error(e.as_ref()))
                }
            })?
            .to_bytes();
        verdict_of(status.as_u16(), &body)
    }
}

fn too_large(status: StatusCode, length: Option<u64>) -> String {
    let size = length.map_or_else(|| "more than".to_string(), |n| format!("{n} bytes, over"));
    format!(
        "HTTP status {}, response body too large ({size} {MAX_BODY})",
        status.as_u16()
    )
}

/// An error and its causes, most specific last: "client error (Connect): tcp connect error:
/// Connection refused (os error 111)".
fn describe_error(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text += ": ";
            text += &cause_text;
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srs_contract() {
        assert_eq!(verdict_of(200, b"0"), Ok(()));
        assert_eq!(verdict_of(201, b"0"), Ok(()));
        assert_eq!(verdict_of(200, b" 0\r\n"), Ok(()));
        assert_eq!(verdict_of(200, br#"{"code":0}"#), Ok(()));
        assert_eq!(
            verdict_of(200, br#"{"code": 0, "data": {"x": [1]}}"#),
            Ok(())
        );
        assert_eq!(verdict_of(201, b"{\"code\":0}\n"), Ok(()));
    }

    #[test]
    fn refusals_say_why() {
        let refusal = |status, body: &[u8]| verdict_of(status, body).unwrap_err();
        assert_eq!(refusal(401, b""), "HTTP status 401");
        assert!(refusal(403, b"0").contains("HTTP status 403"));
        assert!(refusal(204, b"").contains("HTTP status 204"));
        assert!(refusal(500, br#"{"code":0}"#).contains("HTTP status 500"));
        assert_eq!(refusal(200, b""), "empty response body");
        assert_eq!(refusal(200, b" \n"), "empty response body");
        assert!(refusal(200, b"not json").contains("not JSON"));
        assert!(refusal(200, b"\xff\xfe").contains("not JSON"));
        assert_eq!(refusal(200, br#"{"code":1}"#), "code 1");
        assert_eq!(refusal(200, br#"{"code":-5,"msg":"no"}"#), "code -5");
        assert!(refusal(200, br#"{"code":"0"}"#).contains("not an integer"));
        assert!(refusal(200, br#"{"code":0.5}"#).contains("not an integer"));
        assert!(refusal(200, br#"{"ok":true}"#).contains("no code"));
        for other in ["1", "0.0", "\"0\"", "[0]", "null", "true"] {
            assert!(
                refusal(200, other.as_bytes()).contains("neither 0"),
                "{other} should refuse"
            );
        }
    }

    #[test]
    fn long_bodies_are_cut_in_reasons() {
        let body = "x".repeat(10_000);
        let reason = verdict_of(200, body.as_bytes()).unwrap_err();
        assert!(reason.len() < QUOTE + 64, "{reason}");
        assert!(reason.ends_with("..."), "{reason}");
    }
}
