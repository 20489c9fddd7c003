//! The SRS-compatible HTTP API on port 1985, and `/metrics`.
//!
//! Routes, JSON field names, nesting and types follow SRS 7 (samples in `compat/srs/`):
//!
//! - `GET /`, `/api/`, `/api/v1/`: indexes of URLs;
//! - `GET /api/v1/versions`, `/api/v1/summaries` (process and system figures from `/proc`);
//! - `GET /api/v1/vhosts[/{id}]`, `/api/v1/streams[/{id}]`, `/api/v1/clients[/{id}]`, the lists
//!   paged by `?start=&count=` (count 10 by default, at least 1, as SRS ≥ 7.0.128);
//! - `DELETE /api/v1/clients/{id}`: kicks the client;
//! - `GET /metrics`: Prometheus (OpenMetrics) text, see [`super::metrics`].
//!
//! Every success is `{"code":0,"server":...,"service":...,"pid":"..."}` plus the data; every
//! error is `{"code":N}` with N an SRS error code (2048 stream, 2049 client, 2014 vhost not found,
//! sent with HTTP 200 as SRS does, see [`NOT_FOUND_STATUS`]) or, where SRS has none, the HTTP
//! status (404, 405, 400, 401). `?callback=f` answers JSONP
//! (`f(...)`, `text/javascript`), where `?method=DELETE` may stand for the HTTP method as in
//! SRS. CORS headers come from `http_api.cors_origin`; OPTIONS is the preflight. With
//! `http_api.auth.enabled`, every request but OPTIONS needs HTTP Basic credentials.
//!
//! Each connection is a task (HTTP/1.1 keep-alive; a request head must arrive within
//! [`HEADER_TIMEOUT`], which also closes idle keep-alive connections). State comes from
//! [`ControlPlane::snapshot`], fresh for each request.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;

use super::views::{self, AudioView, ClientView, Snapshot, StreamView, VideoView};
use super::{ControlPlane, metrics, rtc_api};
use crate::config::{ApiAuthConfig, DEFAULT_VHOST};
use system::SummaryData;

/// A request head must arrive within this; it also bounds how long an idle keep-alive
/// connection stays open.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// API connections open at once; past it new ones are closed at once.
const MAX_CONNECTIONS: usize = 512;
/// How often CPU usage is sampled for `/api/v1/summaries`.
const CPU_SAMPLE_EVERY: Duration = Duration::from_secs(3);
/// Page size of the lists when `count` is absent or not a number.
const DEFAULT_COUNT: usize = 10;
/// Longest JSONP callback name accepted.
const MAX_CALLBACK: usize = 128;

/// SRS error codes.
const ERROR_SUCCESS: i64 = 0;
const ERROR_RTMP_VHOST_NOT_FOUND: i64 = 2014;
const ERROR_RTMP_STREAM_NOT_FOUND: i64 = 2048;
const ERROR_RTMP_CLIENT_NOT_FOUND: i64 = 2049;

/// The HTTP status of "no such stream/client/vhost": 200 with the code in the body, as SRS
/// answers (`compat/srs/api-stream-missing.json`); its consoles and scripts read the code.
const NOT_FOUND_STATUS: StatusCode = StatusCode::OK;

/// Serves the API on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, plane: Arc<ControlPlane>) {
    let api = Arc::new(Api {
        backend: plane.shared.backend.name(),
        plane,
        cpu: Mutex::new(CpuUsage::default()),
    });
    tokio::spawn(sample_cpu(api.clone()));
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors and the like: back off rather than spin.
                tracing::warn!("http_api: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "http_api: too many connections; closing a new one");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let api = api.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let api = api.clone();
                async move { Ok::<_, Infallible>(api.handle(request, peer).await) }
            });
            let result = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(true)
                .max_buf_size(64 * 1024)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = result {
                tracing::debug!(%peer, "http_api: connection ended: {e}");
            }
            drop(slot);
        });
    }
}

struct Api {
    plane: Arc<ControlPlane>,
    backend: &'static str,
    cpu: Mutex<CpuUsage>,
}

// ---------------------------------------------------------------------------------------------
// Replies

enum Body {
    Json(String),
    Text {
        content_type: &'static str,
        text: String,
    },
    Empty,
}

struct Reply {
    status: StatusCode,
    body: Body,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Reply {
    fn json(status: StatusCode, value: &impl Serialize) -> Reply {
        let text = serde_json::to_string(value).unwrap_or_else(|_| "{\"code\":500}".into());
        Reply {
            status,
            body: Body::Json(text),
            headers: Vec::new(),
        }
    }

    /// `{"code":code}`, as SRS answers errors.
    fn code(status: StatusCode, code: i64) -> Reply {
        #[derive(Serialize)]
        struct Code {
            code: i64,
        }
        Reply::json(status, &Code { code })
    }

    fn not_found() -> Reply {
        Reply::code(StatusCode::NOT_FOUND, 404)
    }

    fn method_not_allowed(allow: &'static str) -> Reply {
        let mut reply = Reply::code(StatusCode::METHOD_NOT_ALLOWED, 405);
        reply
            .headers
            .push((header::ALLOW, HeaderValue::from_static(allow)));
        reply
    }

    fn unauthorized() -> Reply {
        let mut reply = Reply::code(StatusCode::UNAUTHORIZED, 401);
        reply.headers.push((
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"sluice\""),
        ));
        reply
    }

    fn empty(status: StatusCode) -> Reply {
        Reply {
            status,
            body: Body::Empty,
            headers: Vec::new(),
        }
    }
}

/// A success: SRS's envelope around `body`'s fields.
#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    code: i64,
    server: &'a str,
    service: &'a str,
    pid: String,
    #[serde(flatten)]
    body: T,
}

#[derive(Serialize)]
struct Nothing {}

// ---------------------------------------------------------------------------------------------
// Requests

impl Api {
    async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        if request.method() != Method::OPTIONS && rtc_api::is_rtc_path(request.uri().path()) {
            return self.rtc(request, peer).await;
        }
        let query = Query::parse(request.uri().query().unwrap_or(""));
        let callback = query.get("callback").filter(|c| !c.is_empty());
        let config = &self.plane.shared.config.http_api;
        let (reply, jsonp) = if callback.is_some_and(|c| !valid_callback(c)) {
            (Reply::code(StatusCode::BAD_REQUEST, 400), None)
        } else if request.method() == Method::OPTIONS {
            let status = if config.cors_origin.is_empty() {
                StatusCode::METHOD_NOT_ALLOWED
            } else {
                StatusCode::OK
            };
            (Reply::empty(status), None)
        } else if config.auth.enabled && !authorized(request.headers(), &config.auth) {
            (Reply::unauthorized(), callback)
        } else {
            let method = effective_method(request.method(), callback.is_some(), &query);
            (
                self.route(&method, request.uri().path(), &query).await,
                callback,
            )
        };
        tracing::debug!(
            method = %request.method(),
            uri = %request.uri(),
            status = reply.status.as_u16(),
            "http_api request"
        );
        self.respond(reply, jsonp, request.headers())
    }

    /// WebRTC signalling (`super::rtc_api`): the body is read here, bounded.
    async fn rtc(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        use http_body_util::BodyExt;
        let (head, body) = request.into_parts();
        let limited = http_body_util::Limited::new(body, crate::rtc::MAX_OFFER + 1);
        let body = match limited.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                let reply = Reply {
                    status: StatusCode::PAYLOAD_TOO_LARGE,
                    body: Body::Text {
                        content_type: "text/plain; charset=utf-8",
                        text: format!("cannot read the request body: {e}\n"),
                    },
                    headers: Vec::new(),
                };
                return self.respond(reply, None, &head.headers);
            }
        };
        let query = Query::parse(head.uri.query().unwrap_or(""));
        let host = head
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| h.rsplit_once(':').map_or(h, |(host, _)| host))
            .unwrap_or("localhost")
            .to_string();
        let reply = rtc_api::handle(
            &self.plane,
            rtc_api::RtcRequest {
                method: &head.method,
                path: head.uri.path(),
                query: &query.0,
                host: &host,
                body: &body,
                peer,
            },
        )
        .await;
        tracing::debug!(method = %head.method, uri = %head.uri, status = reply.status.as_u16(), "http_api request");
        let mut headers = Vec::new();
        if let Some(location) = reply.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            headers.push((header::LOCATION, location));
        }
        let reply = Reply {
            status: reply.status,
            body: Body::Text {
                content_type: reply.content_type,
                text: reply.body,
            },
            headers,
        };
        self.respond(reply, None, &head.headers)
    }

    async fn route(&self, method: &Method, path: &str, query: &Query) -> Reply {
        let get = matches!(*method, Method::GET | Method::HEAD);
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        match parts.as_slice() {
            [] | ["api"] | ["api", "v1"] if !get => Reply::method_not_allowed("GET, HEAD"),
            [] => self.index(&[("api", "the api root")]),
            ["api"] => self.index(&[("v1", "the api version 1.0")]),
            ["api", "v1"] => self.index(&[
                ("versions", "the version of sluice"),
                (
                    "summaries",
                    "the summary(pid, argv, pwd, cpu, mem) of sluice",
                ),
                ("vhosts", "manage all vhosts or specified vhost"),
                ("streams", "manage all streams or specified stream"),
                (
                    "clients",
                    "manage all clients or specified client, default query top 10 clients",
                ),
            ]),
            ["api", "v1", "versions" | "summaries" | "vhosts" | "streams"]
            | ["api", "v1", "vhosts" | "streams", _]
            | ["api", "v1", "clients"]
            | ["metrics"]
                if !get =>
            {
                Reply::method_not_allowed("GET, HEAD")
            }
            ["api", "v1", "versions"] => self.versions(),
            ["api", "v1", "summaries"] => self.summaries(),
            ["api", "v1", "vhosts"] => self.vhosts(None).await,
            ["api", "v1", "vhosts", id] => self.vhosts(Some(id)).await,
            ["api", "v1", "streams"] => self.streams(Page::of(query)).await,
            ["api", "v1", "streams", id] => self.stream(id).await,
            ["api", "v1", "clients"] => self.clients(Page::of(query)).await,
            ["api", "v1", "clients", id] if get => self.client(id).await,
            ["api", "v1", "clients", id] if *method == Method::DELETE => self.kick(id).await,
            ["api", "v1", "clients", _] => Reply::method_not_allowed("GET, HEAD, DELETE"),
            ["metrics"] => self.metrics().await,
            _ => Reply::not_found(),
        }
    }

    fn ok(&self, body: impl Serialize) -> Reply {
        let identity = self.plane.identity();
        Reply::json(
            StatusCode::OK,
            &Envelope {
                code: ERROR_SUCCESS,
                server: &identity.server_id,
                service: &identity.service_id,
                pid: identity.pid.to_string(),
                body,
            },
        )
    }

    fn respond(
        &self,
        reply: Reply,
        jsonp: Option<&str>,
        request_headers: &HeaderMap,
    ) -> Response<Full<Bytes>> {
        let (content_type, body) = match reply.body {
            Body::Json(json) => match jsonp {
                Some(callback) => ("text/javascript", format!("{callback}({json})")),
                None => ("application/json", json),
            },
            Body::Text { content_type, text } => (content_type, text),
            Body::Empty => ("", String::new()),
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = reply.status;
        let headers = response.headers_mut();
        if !content_type.is_empty() {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        headers.insert(
            header::SERVER,
            HeaderValue::from_static(concat!("sluice/", env!("CARGO_PKG_VERSION"))),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        self.cors(headers, request_headers);
        for (name, value) in reply.headers {
            headers.insert(name, value);
        }
        response
    }

    /// CORS headers on every response when `http_api.cors_origin` is set.
    fn cors(&self, headers: &mut HeaderMap, request_headers: &HeaderMap) {
        let origin = &self.plane.shared.config.http_api.cors_origin;
        if origin.is_empty() {
            return;
        }
        let Ok(origin_value) = HeaderValue::from_str(origin) else {
            return;
        };
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin_value);
        if origin != "*" {
            headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, HEAD, POST, PATCH, DELETE, OPTIONS"),
        );
        // `*` does not cover Authorization, so name what the client asked for.
        let allow_headers = request_headers
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned()
            .unwrap_or_else(|| {
                HeaderValue::from_static(
                    "Origin, Range, Accept-Encoding, Referer, Cache-Control, X-Requested-With, \
                     Content-Type, Authorization",
                )
            });
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allow_headers);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Server, Content-Length, Content-Type, Location"),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }

    // -----------------------------------------------------------------------------------------
    // Routes

    fn index(&self, urls: &[(&'static str, &'static str)]) -> Reply {
        #[derive(Serialize)]
        struct Index {
            urls: BTreeMap<&'static str, &'static str>,
        }
        self.ok(Index {
            urls: urls.iter().copied().collect(),
        })
    }

    fn versions(&self) -> Reply {
        #[derive(Serialize)]
        struct Versions {
            data: VersionData,
        }
        #[derive(Serialize)]
        struct VersionData {
            major: u64,
            minor: u64,
            revision: u64,
            version: &'static str,
        }
        let part = |s: &str| s.parse().unwrap_or(0);
        self.ok(Versions {
            data: VersionData {
                major: part(env!("CARGO_PKG_VERSION_MAJOR")),
                minor: part(env!("CARGO_PKG_VERSION_MINOR")),
                revision: part(env!("CARGO_PKG_VERSION_PATCH")),
                version: env!("CARGO_PKG_VERSION"),
            },
        })
    }

    fn summaries(&self) -> Reply {
        #[derive(Serialize)]
        struct Summaries {
            data: SummaryData,
        }
        let cpu = *self.cpu.lock().unwrap_or_else(|e| e.into_inner());
        let counters = self.plane.counters();
        let io_totals = (
            counters.iter().map(|c| c.io.bytes_received).sum(),
            counters.iter().map(|c| c.io.bytes_sent).sum(),
        );
        let identity = self.plane.identity();
        let uptime = now_ms().saturating_sub(identity.started_ms) / 1000;
        let connections = self
            .plane
            .shared
            .connections
            .load(std::sync::atomic::Ordering::Relaxed) as u64;
        self.ok(Summaries {
            data: system::summary(identity.pid, uptime, cpu, io_totals, connections),
        })
    }

    async fn vhosts(&self, id: Option<&str>) -> Reply {
        #[derive(Serialize)]
        struct Vhosts {
            vhosts: Vec<VhostJson>,
        }
        #[derive(Serialize)]
        struct One {
            vhost: VhostJson,
        }
        let snapshot = self.plane.snapshot().await;
        let config = &self.plane.shared.config;
        let mut names: Vec<&str> = config.vhost.keys().map(String::as_str).collect();
        for stream in &snapshot.streams {
            if !names.contains(&stream.vhost.as_str()) {
                names.push(&stream.vhost);
            }
        }
        let vhost = |name: &str| {
            let enabled = config.vhost.get(name).is_none_or(|v| v.enabled);
            vhost_json(name, enabled, &snapshot)
        };
        match id {
            None => self.ok(Vhosts {
                vhosts: names.iter().map(|name| vhost(name)).collect(),
            }),
            Some(id) => match names
                .iter()
                .find(|name| views::vhost_id(name) == id || **name == id)
            {
                Some(name) => self.ok(One { vhost: vhost(name) }),
                None => Reply::code(NOT_FOUND_STATUS, ERROR_RTMP_VHOST_NOT_FOUND),
            },
        }
    }

    async fn streams(&self, page: Page) -> Reply {
        #[derive(Serialize)]
        struct Streams {
            total: usize,
            streams: Vec<StreamJson>,
        }
        let snapshot = self.plane.snapshot().await;
        self.ok(Streams {
            total: snapshot.streams.len(),
            streams: page
                .of_slice(&snapshot.streams)
                .iter()
                .map(|s| stream_json(s, &snapshot.clients))
                .collect(),
        })
    }

    async fn stream(&self, id: &str) -> Reply {
        #[derive(Serialize)]
        struct One {
            stream: StreamJson,
        }
        let snapshot = self.plane.snapshot().await;
        match snapshot
            .streams
            .iter()
            .find(|s| views::stream_id(s.id) == id)
        {
            Some(stream) => self.ok(One {
                stream: stream_json(stream, &snapshot.clients),
            }),
            None => Reply::code(NOT_FOUND_STATUS, ERROR_RTMP_STREAM_NOT_FOUND),
        }
    }

    async fn clients(&self, page: Page) -> Reply {
        #[derive(Serialize)]
        struct Clients {
            total: usize,
            clients: Vec<ClientJson>,
        }
        let snapshot = self.plane.snapshot().await;
        // As in SRS, a client is listed once it publishes or plays something.
        let listed: Vec<&ClientView> = snapshot
            .clients
            .iter()
            .filter(|c| c.stream_id.is_some())
            .collect();
        self.ok(Clients {
            total: listed.len(),
            clients: page
                .of_slice(&listed)
                .iter()
                .map(|c| client_json(c))
                .collect(),
        })
    }

    async fn client(&self, id: &str) -> Reply {
        #[derive(Serialize)]
        struct One {
            client: ClientJson,
        }
        let snapshot = self.plane.snapshot().await;
        match snapshot.clients.iter().find(|c| c.id == id) {
            Some(client) => self.ok(One {
                client: client_json(client),
            }),
            None => Reply::code(NOT_FOUND_STATUS, ERROR_RTMP_CLIENT_NOT_FOUND),
        }
    }

    async fn kick(&self, id: &str) -> Reply {
        if self.plane.kick(id).await {
            tracing::info!(client = %id, "kick requested by the API");
            self.ok(Nothing {})
        } else {
            Reply::code(NOT_FOUND_STATUS, ERROR_RTMP_CLIENT_NOT_FOUND)
        }
    }

    async fn metrics(&self) -> Reply {
        let snapshot = self.plane.snapshot().await;
        let counters = self.plane.counters();
        Reply {
            status: StatusCode::OK,
            body: Body::Text {
                content_type: metrics::CONTENT_TYPE,
                text: metrics::render(&counters, &snapshot, self.backend),
            },
            headers: Vec::new(),
        }
    }
}

/// The method a request stands for: JSONP requests (GET with `callback`) may say `method=`.
fn effective_method(method: &Method, jsonp: bool, query: &Query) -> Method {
    if !jsonp || *method != Method::GET {
        return method.clone();
    }
    match query.get("method").map(str::to_ascii_uppercase).as_deref() {
        Some("DELETE") => Method::DELETE,
        Some("POST") => Method::POST,
        Some("PUT") => Method::PUT,
        _ => Method::GET,
    }
}

/// A JSONP callback must be a JavaScript name path (`cb`, `jQuery123_456`, `a.b`): it is
/// written into a script, so nothing else is echoed.
fn valid_callback(callback: &str) -> bool {
    callback.len() <= MAX_CALLBACK
        && callback
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$' | b'.'))
}

// ---------------------------------------------------------------------------------------------
// Paging and query strings

/// `?start=&count=`: from 0 and 10 by default; `count` at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Page {
    start: usize,
    count: usize,
}

impl Page {
    fn of(query: &Query) -> Page {
        let number = |key| query.get(key).and_then(|v| v.trim().parse::<i64>().ok());
        let start = number("start").map_or(0, |n| usize::try_from(n).unwrap_or(0));
        let count = number("count").map_or(DEFAULT_COUNT, |n| {
            usize::try_from(n.max(1)).unwrap_or(usize::MAX)
        });
        Page { start, count }
    }

    fn of_slice<T>(self, items: &[T]) -> &[T] {
        let start = self.start.min(items.len());
        let end = start.saturating_add(self.count).min(items.len());
        &items[start..end]
    }
}

/// A parsed query string (percent-decoded, `+` as space).
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: &str) -> Query {
        Query(
            query
                .split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    (percent_decode(key), percent_decode(value))
                })
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Basic authentication

fn authorized(headers: &HeaderMap, auth: &ApiAuthConfig) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, token)) = value.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Some(given) = base64_decode(token.trim()) else {
        return false;
    };
    let expected = format!("{}:{}", auth.username, auth.password);
    constant_time_eq(&given, expected.as_bytes())
}

/// Equality whose time depends only on the lengths, not on where the bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

/// Standard base64 with optional padding; `None` if malformed.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in text.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A lone trailing character (6 bits) cannot end valid base64.
    (bits < 6).then_some(out)
}

// ---------------------------------------------------------------------------------------------
// JSON of vhosts, streams and clients (SRS's field names and order)

#[derive(Serialize, Default, Clone, Copy)]
struct Kbps {
    recv_30s: u64,
    send_30s: u64,
}

/// What a set of clients adds up to.
#[derive(Default, Clone, Copy)]
struct Totals {
    clients: u64,
    send_bytes: u64,
    recv_bytes: u64,
    kbps: Kbps,
}

impl Totals {
    fn of<'a>(clients: impl Iterator<Item = &'a ClientView>) -> Totals {
        clients.fold(Totals::default(), |mut t, c| {
            t.clients += 1;
            t.send_bytes += c.send_bytes;
            t.recv_bytes += c.recv_bytes;
            t.kbps.send_30s += c.send_kbps_30s;
            t.kbps.recv_30s += c.recv_kbps_30s;
            t
        })
    }
}

#[derive(Serialize)]
struct VhostJson {
    id: String,
    name: String,
    enabled: bool,
    clients: u64,
    streams: u64,
    send_bytes: u64,
    recv_bytes: u64,
    kbps: Kbps,
    hls: HlsJson,
}

/// SRS gives `fragment` only when HLS is on; sluice has no HLS yet.
#[derive(Serialize)]
struct HlsJson {
    enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    fragment: Option<f64>,
}

fn vhost_json(name: &str, enabled: bool, snapshot: &Snapshot) -> VhostJson {
    let totals = Totals::of(
        snapshot
            .clients
            .iter()
            .filter(|c| c.stream_id.is_some() && c.vhost == name),
    );
    VhostJson {
        id: views::vhost_id(name),
        name: name.to_string(),
        enabled,
        clients: totals.clients,
        streams: snapshot.streams.iter().filter(|s| s.vhost == name).count() as u64,
        send_bytes: totals.send_bytes,
        recv_bytes: totals.recv_bytes,
        kbps: totals.kbps,
        hls: HlsJson {
            enabled: false,
            fragment: None,
        },
    }
}

#[derive(Serialize)]
struct StreamJson {
    id: String,
    name: String,
    vhost: String,
    app: String,
    #[serde(rename = "tcUrl")]
    tc_url: String,
    url: String,
    live_ms: u64,
    clients: u64,
    frames: u64,
    send_bytes: u64,
    recv_bytes: u64,
    kbps: Kbps,
    publish: PublishJson,
    /// `null` until the stream's video sequence header is known, as SRS.
    video: Option<VideoJson>,
    audio: Option<AudioJson>,
}

#[derive(Serialize)]
struct PublishJson {
    active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    cid: Option<String>,
}

#[derive(Serialize)]
struct VideoJson {
    codec: &'static str,
    profile: String,
    level: String,
    width: u32,
    height: u32,
}

impl From<&VideoView> for VideoJson {
    fn from(v: &VideoView) -> VideoJson {
        VideoJson {
            codec: v.codec,
            profile: v.profile.clone(),
            level: v.level.clone(),
            width: v.width,
            height: v.height,
        }
    }
}

#[derive(Serialize)]
struct AudioJson {
    codec: &'static str,
    sample_rate: u32,
    channel: u8,
    profile: String,
}

impl From<&AudioView> for AudioJson {
    fn from(a: &AudioView) -> AudioJson {
        AudioJson {
            codec: a.codec,
            sample_rate: a.sample_rate,
            channel: a.channels,
            profile: a.profile.clone(),
        }
    }
}

/// SRS's stream URL: `/app/stream` on the default vhost, `vhost/app/stream` on others.
fn stream_url(vhost: &str, app: &str, stream: &str) -> String {
    if vhost == DEFAULT_VHOST || vhost.is_empty() {
        format!("/{app}/{stream}")
    } else {
        format!("{vhost}/{app}/{stream}")
    }
}

fn stream_json(stream: &StreamView, clients: &[ClientView]) -> StreamJson {
    // As SRS: the stream's bytes and rates are those of all its clients (publisher included).
    let totals = Totals::of(clients.iter().filter(|c| c.stream_id == Some(stream.id)));
    StreamJson {
        id: views::stream_id(stream.id),
        name: stream.name.clone(),
        vhost: views::vhost_id(&stream.vhost),
        app: stream.app.clone(),
        tc_url: stream.tc_url.clone(),
        url: stream_url(&stream.vhost, &stream.app, &stream.name),
        live_ms: stream.live_ms,
        clients: totals.clients,
        frames: stream.frames,
        send_bytes: totals.send_bytes,
        recv_bytes: totals.recv_bytes,
        kbps: totals.kbps,
        publish: PublishJson {
            active: stream.publisher.is_some(),
            cid: stream.publisher.clone(),
        },
        video: stream.video.as_ref().map(VideoJson::from),
        audio: stream.audio.as_ref().map(AudioJson::from),
    }
}

#[derive(Serialize)]
struct ClientJson {
    id: String,
    vhost: String,
    stream: String,
    ip: String,
    #[serde(rename = "pageUrl")]
    page_url: String,
    #[serde(rename = "swfUrl")]
    swf_url: String,
    #[serde(rename = "tcUrl")]
    tc_url: String,
    url: String,
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    publish: bool,
    alive: f64,
    send_bytes: u64,
    recv_bytes: u64,
    kbps: Kbps,
}

fn client_json(client: &ClientView) -> ClientJson {
    let on_stream = client.stream_id.is_some();
    ClientJson {
        id: client.id.clone(),
        vhost: if client.vhost.is_empty() {
            String::new()
        } else {
            views::vhost_id(&client.vhost)
        },
        stream: client.stream_id.map(views::stream_id).unwrap_or_default(),
        ip: client.ip.to_canonical().to_string(),
        page_url: client.page_url.clone(),
        swf_url: client.swf_url.clone(),
        tc_url: client.tc_url.clone(),
        url: if on_stream {
            stream_url(&client.vhost, &client.app, &client.stream)
        } else {
            String::new()
        },
        name: client.name.clone(),
        kind: client.kind,
        publish: client.publish,
        alive: round2(client.alive_s),
        send_bytes: client.send_bytes,
        recv_bytes: client.recv_bytes,
        kbps: Kbps {
            recv_30s: client.recv_kbps_30s,
            send_30s: client.send_kbps_30s,
        },
    }
}

/// Two decimals, as SRS prints its numbers.
fn round2(x: f64) -> f64 {
    if x.is_finite() {
        (x * 100.0).round() / 100.0
    } else {
        0.0
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

// ---------------------------------------------------------------------------------------------
// CPU usage, sampled in the background

/// CPU usage between the last two samples, as ratios (1.0 = one CPU busy for the self figure,
/// all CPUs busy for the system one) — what SRS reports as `cpu_percent`.
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuUsage {
    last: Option<system::CpuSample>,
    self_ratio: f64,
    system_ratio: f64,
}

async fn sample_cpu(api: Arc<Api>) {
    let mut ticker = tokio::time::interval(CPU_SAMPLE_EVERY);
    loop {
        ticker.tick().await;
        let Some(sample) = system::CpuSample::now() else {
            return; // no /proc: figures stay 0
        };
        let mut cpu = api.cpu.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(last) = cpu.last {
            let (self_ratio, system_ratio) = sample.usage_since(&last);
            cpu.self_ratio = self_ratio;
            cpu.system_ratio = system_ratio;
        }
        cpu.last = Some(sample);
    }
}

/// Process and system figures for `/api/v1/summaries`, from `/proc` (Linux); zeros elsewhere.
mod system {
    use std::time::Instant;

    use serde::Serialize;

    use super::{CpuUsage, now_ms, round2};

    /// Clock ticks per second in `/proc` (USER_HZ, 100 on every Linux architecture).
    const TICKS_PER_SECOND: f64 = 100.0;

    #[derive(Debug, Clone, Copy)]
    pub struct CpuSample {
        at: Instant,
        /// This process's user + system time (ticks).
        self_ticks: u64,
        /// All CPUs' non-idle and total time (ticks).
        busy: u64,
        total: u64,
    }

    impl CpuSample {
        pub fn now() -> Option<CpuSample> {
            let stat = read("/proc/self/stat")?;
            let fields = self_stat_fields(&stat);
            let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
            let self_ticks = ticks(11)? + ticks(12)?;
            let (busy, total) = system_cpu_ticks()?;
            Some(CpuSample {
                at: Instant::now(),
                self_ticks,
                busy,
                total,
            })
        }

        /// (self, system) usage ratios from `earlier` to this sample.
        pub fn usage_since(&self, earlier: &CpuSample) -> (f64, f64) {
            let seconds = self.at.duration_since(earlier.at).as_secs_f64();
            let own = self.self_ticks.saturating_sub(earlier.self_ticks) as f64;
            let self_ratio = if seconds > 0.0 {
                own / TICKS_PER_SECOND / seconds
            } else {
                0.0
            };
            let total = self.total.saturating_sub(earlier.total);
            let busy = self.busy.saturating_sub(earlier.busy);
            let system_ratio = if total > 0 {
                busy as f64 / total as f64
            } else {
                0.0
            };
            (self_ratio, system_ratio)
        }
    }

    fn read(path: &str) -> Option<String> {
        std::fs::read_to_string(path).ok()
    }

    /// The fields of `/proc/self/stat` after the command name: index 0 is the state (field 3),
    /// 1 the ppid, 11 utime, 12 stime.
    fn self_stat_fields(stat: &str) -> Vec<&str> {
        let rest = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
        rest.split_whitespace().collect()
    }

    /// (busy, total) ticks of all CPUs from the first line of `/proc/stat`.
    fn system_cpu_ticks() -> Option<(u64, u64)> {
        let stat = read("/proc/stat")?;
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let values: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8) // user nice system idle iowait irq softirq steal
            .filter_map(|v| v.parse().ok())
            .collect();
        let total: u64 = values.iter().sum();
        let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
        Some((total.saturating_sub(idle), total))
    }

    /// `key:   value kB` lines (`/proc/meminfo`, `/proc/self/status`).
    fn kb_field(text: &str, key: &str) -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    }

    /// CPUs in a kernel list like `0-3,6`.
    fn count_cpu_list(list: &str) -> Option<u64> {
        let mut n = 0;
        for part in list.trim().split(',').filter(|p| !p.is_empty()) {
            n += match part.split_once('-') {
                Some((a, b)) => b.parse::<u64>().ok()? - a.parse::<u64>().ok()? + 1,
                None => {
                    part.parse::<u64>().ok()?;
                    1
                }
            };
        }
        (n > 0).then_some(n)
    }

    /// Interfaces with a directly connected IPv4 route to a public network, from
    /// `/proc/net/route` (SRS counts those as "internet", the rest as "intranet").
    fn internet_interfaces() -> Vec<String> {
        let Some(routes) = read("/proc/net/route") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for line in routes.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(iface), Some(dest), Some(gateway)) = (f.first(), f.get(1), f.get(2)) else {
                continue;
            };
            let (Ok(dest), Ok(gateway)) = (
                u32::from_str_radix(dest, 16),
                u32::from_str_radix(gateway, 16),
            ) else {
                continue;
            };
            // /proc/net/route prints the network-order address read as a native integer.
            let dest = std::net::Ipv4Addr::from(dest.to_ne_bytes());
            let private = dest.is_private()
                || dest.is_loopback()
                || dest.is_link_local()
                || (dest.octets()[0] == 100 && dest.octets()[1] & 0xc0 == 64);
            if gateway == 0 && !dest.is_unspecified() && !private && !out.iter().any(|i| i == iface)
            {
                out.push(iface.to_string());
            }
        }
        out
    }

    /// Bytes received and sent: (internet recv, internet send, intranet recv, intranet send).
    fn network_bytes() -> (u64, u64, u64, u64) {
        let Some(dev) = read("/proc/net/dev") else {
            return (0, 0, 0, 0);
        };
        let internet = internet_interfaces();
        let mut sums = (0, 0, 0, 0);
        for line in dev.lines().skip(2) {
            let Some((name, counters)) = line.split_once(':') else {
                continue;
            };
            let name = name.trim();
            let values: Vec<u64> = counters
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            let (recv, send) = (
                values.first().copied().unwrap_or(0),
                values.get(8).copied().unwrap_or(0),
            );
            if name != "lo" && internet.iter().any(|i| i == name) {
                sums.0 += recv;
                sums.1 += send;
            } else {
                sums.2 += recv;
                sums.3 += send;
            }
        }
        sums
    }

    /// (all TCP sockets incl. TIME_WAIT, established, TIME_WAIT, UDP) as SRS counts them.
    fn socket_counts() -> (u64, u64, u64, u64) {
        let value_after = |line: &str, key: &str| -> u64 {
            let words: Vec<&str> = line.split_whitespace().collect();
            words
                .iter()
                .position(|w| *w == key)
                .and_then(|i| words.get(i + 1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let (mut tcp_alloc, mut tcp_tw, mut udp) = (0, 0, 0);
        if let Some(sockstat) = read("/proc/net/sockstat") {
            for line in sockstat.lines() {
                if line.starts_with("TCP:") {
                    tcp_alloc = value_after(line, "alloc");
                    tcp_tw = value_after(line, "tw");
                } else if line.starts_with("UDP:") {
                    udp = value_after(line, "inuse");
                }
            }
        }
        let mut established = 0;
        if let Some(snmp) = read("/proc/net/snmp") {
            let tcp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Tcp:")).collect();
            if let [names, values, ..] = tcp.as_slice() {
                let names: Vec<&str> = names.split_whitespace().collect();
                let values: Vec<&str> = values.split_whitespace().collect();
                established = names
                    .iter()
                    .position(|n| *n == "CurrEstab")
                    .and_then(|i| values.get(i))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
            }
        }
        (tcp_alloc + tcp_tw, established, tcp_tw, udp)
    }

    #[derive(Serialize)]
    pub struct SummaryData {
        ok: bool,
        now_ms: u64,
        #[serde(rename = "self")]
        own: SelfJson,
        system: SystemJson,
    }

    #[derive(Serialize)]
    struct SelfJson {
        version: &'static str,
        pid: u32,
        ppid: u32,
        argv: String,
        cwd: String,
        mem_kbyte: u64,
        mem_percent: f64,
        cpu_percent: f64,
        srs_uptime: u64,
    }

    #[derive(Serialize)]
    #[allow(non_snake_case)]
    struct SystemJson {
        cpu_percent: f64,
        disk_read_KBps: u64,
        disk_write_KBps: u64,
        disk_busy_percent: f64,
        mem_ram_kbyte: u64,
        mem_ram_percent: f64,
        mem_swap_kbyte: u64,
        mem_swap_percent: f64,
        cpus: u64,
        cpus_online: u64,
        uptime: f64,
        /// SRS's spelling.
        ilde_time: f64,
        load_1m: f64,
        load_5m: f64,
        load_15m: f64,
        net_sample_time: u64,
        net_recv_bytes: u64,
        net_send_bytes: u64,
        net_recvi_bytes: u64,
        net_sendi_bytes: u64,
        srs_sample_time: u64,
        srs_recv_bytes: u64,
        srs_send_bytes: u64,
        conn_sys: u64,
        conn_sys_et: u64,
        conn_sys_tw: u64,
        conn_sys_udp: u64,
        conn_srs: u64,
    }

    /// The `data` of `/api/v1/summaries`. `io` is the server's (received, sent) bytes,
    /// `connections` its open client connections.
    pub fn summary(
        pid: u32,
        uptime_s: u64,
        cpu: CpuUsage,
        io: (u64, u64),
        connections: u64,
    ) -> SummaryData {
        let now = now_ms();
        let stat = read("/proc/self/stat");
        let ppid = stat
            .as_deref()
            .map(self_stat_fields)
            .and_then(|f| f.get(1).and_then(|v| v.parse().ok()))
            .unwrap_or(0);
        let rss = read("/proc/self/status")
            .and_then(|s| kb_field(&s, "VmRSS"))
            .unwrap_or(0);
        let meminfo = read("/proc/meminfo").unwrap_or_default();
        let mem = |key| kb_field(&meminfo, key).unwrap_or(0);
        let (mem_total, swap_total) = (mem("MemTotal"), mem("SwapTotal"));
        let ratio = |part: u64, whole: u64| {
            if whole > 0 {
                round2(part as f64 / whole as f64)
            } else {
                0.0
            }
        };
        // As SRS: in use = total - free - buffers - cached.
        let ram_used = mem_total
            .saturating_sub(mem("MemFree"))
            .saturating_sub(mem("Buffers"))
            .saturating_sub(mem("Cached"));
        let swap_used = swap_total.saturating_sub(mem("SwapFree"));
        let floats = |path: &str| -> Vec<f64> {
            read(path)
                .unwrap_or_default()
                .split_whitespace()
                .map_while(|v| v.parse().ok())
                .collect()
        };
        let uptime = floats("/proc/uptime");
        let load = floats("/proc/loadavg");
        let at = |v: &[f64], i: usize| round2(v.get(i).copied().unwrap_or(0.0));
        let parallelism = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        let cpu_list = |path| read(path).as_deref().and_then(count_cpu_list);
        let cpus = cpu_list("/sys/devices/system/cpu/present").unwrap_or(parallelism);
        let cpus_online = cpu_list("/sys/devices/system/cpu/online").unwrap_or(parallelism);
        let (net_recv, net_send, net_recvi, net_sendi) = network_bytes();
        let (conn_sys, conn_sys_et, conn_sys_tw, conn_sys_udp) = socket_counts();
        SummaryData {
            ok: stat.is_some() && !meminfo.is_empty(),
            now_ms: now,
            own: SelfJson {
                version: env!("CARGO_PKG_VERSION"),
                pid,
                ppid,
                argv: std::env::args().collect::<Vec<_>>().join(" "),
                cwd: std::env::current_dir()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default(),
                mem_kbyte: rss,
                mem_percent: ratio(rss, mem_total),
                cpu_percent: round2(cpu.self_ratio),
                srs_uptime: uptime_s,
            },
            system: SystemJson {
                cpu_percent: round2(cpu.system_ratio),
                disk_read_KBps: 0,
                disk_write_KBps: 0,
                disk_busy_percent: 0.0,
                mem_ram_kbyte: mem_total,
                mem_ram_percent: ratio(ram_used, mem_total),
                mem_swap_kbyte: swap_total,
                mem_swap_percent: ratio(swap_used, swap_total),
                cpus,
                cpus_online,
                uptime: at(&uptime, 0),
                ilde_time: at(&uptime, 1),
                load_1m: at(&load, 0),
                load_5m: at(&load, 1),
                load_15m: at(&load, 2),
                net_sample_time: now,
                net_recv_bytes: net_recv,
                net_send_bytes: net_send,
                net_recvi_bytes: net_recvi,
                net_sendi_bytes: net_sendi,
                srs_sample_time: now,
                srs_recv_bytes: io.0,
                srs_send_bytes: io.1,
                conn_sys,
                conn_sys_et,
                conn_sys_tw,
                conn_sys_udp,
                conn_srs: connections,
            },
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn cpu_lists() {
            assert_eq!(count_cpu_list("0-3\n"), Some(4));
            assert_eq!(count_cpu_list("0-3,6,8-9"), Some(7));
            assert_eq!(count_cpu_list(""), None);
            assert_eq!(count_cpu_list("x"), None);
        }

        #[test]
        fn stat_fields_survive_odd_names() {
            let stat = "42 (a) b (c)) S 7 42 42 0 -1 4194560 1 0 0 0 25 13 0 0";
            let f = self_stat_fields(stat);
            assert_eq!(f[0], "S");
            assert_eq!(f[1], "7");
            assert_eq!(f[11], "25");
            assert_eq!(f[12], "13");
        }

        #[test]
        fn summary_reads_proc() {
            let data = summary(1, 5, CpuUsage::default(), (10, 20), 3);
            let json = serde_json::to_value(&data).unwrap();
            assert_eq!(json["self"]["srs_uptime"], 5);
            assert_eq!(json["system"]["srs_send_bytes"], 20);
            assert_eq!(json["system"]["conn_srs"], 3);
            assert!(json["self"]["mem_percent"].is_f64());
            assert!(json["system"]["mem_ram_percent"].is_f64());
            if cfg!(target_os = "linux") {
                assert_eq!(json["ok"], true);
                assert!(json["system"]["mem_ram_kbyte"].as_u64().unwrap() > 0);
                assert!(json["system"]["cpus"].as_u64().unwrap() >= 1);
                assert!(json["self"]["mem_kbyte"].as_u64().unwrap() > 0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_like_srs() {
        let q = |s: &str| Page::of(&Query::parse(s));
        assert_eq!(
            q(""),
            Page {
                start: 0,
                count: 10
            }
        );
        assert_eq!(q("start=2&count=3"), Page { start: 2, count: 3 });
        assert_eq!(q("count=0"), Page { start: 0, count: 1 });
        assert_eq!(q("count=-4&start=-1"), Page { start: 0, count: 1 });
        assert_eq!(
            q("count=abc"),
            Page {
                start: 0,
                count: 10
            }
        );
        let items = [1, 2, 3, 4, 5];
        assert_eq!(q("start=1&count=2").of_slice(&items), &[2, 3]);
        assert_eq!(q("start=4&count=9").of_slice(&items), &[5]);
        assert!(q("start=9").of_slice(&items).is_empty());
    }

    #[test]
    fn query_decoding() {
        let query = Query::parse("callback=a%2Eb&x=1+2&y&z=%zz&w=%4");
        assert_eq!(query.get("callback"), Some("a.b"));
        assert_eq!(query.get("x"), Some("1 2"));
        assert_eq!(query.get("y"), Some(""));
        assert_eq!(query.get("z"), Some("%zz"));
        assert_eq!(query.get("w"), Some("%4"));
        assert_eq!(query.get("v"), None);
    }

    #[test]
    fn callbacks() {
        assert!(valid_callback("jQuery1234_5678"));
        assert!(valid_callback("a.b$c"));
        assert!(!valid_callback("alert(1);x"));
        assert!(!valid_callback("a b"));
        assert!(!valid_callback(&"a".repeat(MAX_CALLBACK + 1)));
    }

    #[test]
    fn base64() {
        assert_eq!(base64_decode("YWRtaW46c2VjcmV0").unwrap(), b"admin:secret");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert_eq!(base64_decode("YWI=").unwrap(), b"ab");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert!(base64_decode("Y").is_none());
        assert!(base64_decode("YW*=").is_none());
    }

    #[test]
    fn basic_auth() {
        let auth = ApiAuthConfig {
            enabled: true,
            username: "admin".into(),
            password: "secret".into(),
        };
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            authorized(&headers, &auth)
        };
        assert!(with("Basic YWRtaW46c2VjcmV0"));
        assert!(with("basic  YWRtaW46c2VjcmV0"));
        assert!(!with("Basic YWRtaW46c2VjcmV1"));
        assert!(!with("Bearer YWRtaW46c2VjcmV0"));
        assert!(!with("Basic"));
        assert!(!authorized(&HeaderMap::new(), &auth));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn stream_urls() {
        assert_eq!(stream_url(DEFAULT_VHOST, "live", "cap"), "/live/cap");
        assert_eq!(stream_url("v.example", "live", "cap"), "v.example/live/cap");
    }

    #[test]
    fn jsonp_method_override() {
        let q = Query::parse("callback=f&method=delete");
        assert_eq!(effective_method(&Method::GET, true, &q), Method::DELETE);
        assert_eq!(effective_method(&Method::GET, false, &q), Method::GET);
        assert_eq!(effective_method(&Method::POST, true, &q), Method::POST);
    }
}
