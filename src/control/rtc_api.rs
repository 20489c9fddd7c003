//! WebRTC signalling on the API port, as SRS serves it:
//!
//! - WHIP `POST /rtc/v1/whip/?app=&stream=` and WHEP `POST /rtc/v1/whep/?app=&stream=` (also
//!   SRS 5's `/rtc/v1/whip-play/`): body and answer `application/sdp`, `201 Created` with a
//!   `Location` to `DELETE` when done (200; also for a session that ended moments before, so a
//!   client's DELETE racing its own close is not an error; 404 for an unknown one);
//! - SRS's JSON API `POST /rtc/v1/publish/` and `/rtc/v1/play/` with
//!   `{api, streamurl: "webrtc://host/app/stream?k=v", sdp, clientip}`, answered
//!   `{code: 0, server, service, pid, sdp, sessionid}`.
//!
//! Each request is checked like any publish or play (the vhost's security rules, a busy stream,
//! then the `on_publish`/`on_play` callbacks, awaited here), then the offer is answered
//! (`crate::rtc::answer_offer`) and the session parked for the worker its media reaches.
//! Refusals are HTTP errors with a reason: 400 for a bad offer or URL, 403 for security rules
//! and callbacks, 409 for a stream already published, 503 past `max_connections` or when too
//! many sessions wait to connect.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use hyper::StatusCode;
use serde::{Deserialize, Serialize};

use super::{ControlPlane, Hook, HookJob};
use crate::hub::StreamKey;
use crate::request::StreamRequest;
use crate::rtc::{Ended, PendingSession, Role, answer_offer, candidates};
use crate::security::Method as SecurityMethod;
use crate::session::{ClientInfo, HookSubject};
use crate::worker::WorkerMsg;

/// What signalling answers; the API turns it into an HTTP response.
pub struct RtcReply {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: String,
    pub location: Option<String>,
}

impl RtcReply {
    fn text(status: StatusCode, text: impl Into<String>) -> RtcReply {
        let mut body = text.into();
        body.push('\n');
        RtcReply {
            status,
            content_type: "text/plain; charset=utf-8",
            body,
            location: None,
        }
    }

    fn json(status: StatusCode, value: &impl Serialize) -> RtcReply {
        RtcReply {
            status,
            content_type: "application/json",
            body: serde_json::to_string(value).unwrap_or_else(|_| "{\"code\":500}".into()),
            location: None,
        }
    }
}

/// A refused signalling request: its status and reason.
#[derive(Debug)]
struct Refused {
    status: StatusCode,
    reason: String,
}

impl Refused {
    fn new(status: StatusCode, reason: impl Into<String>) -> Refused {
        Refused {
            status,
            reason: reason.into(),
        }
    }
}

/// Which endpoint a path names.
enum Endpoint {
    Whip,
    Whep,
    SrsPublish,
    SrsPlay,
}

fn endpoint(path: &str) -> Option<Endpoint> {
    match path.trim_end_matches('/') {
        "/rtc/v1/whip" => Some(Endpoint::Whip),
        "/rtc/v1/whep" | "/rtc/v1/whip-play" => Some(Endpoint::Whep),
        "/rtc/v1/publish" => Some(Endpoint::SrsPublish),
        "/rtc/v1/play" => Some(Endpoint::SrsPlay),
        _ => None,
    }
}

/// A signalling request, already read.
pub struct RtcRequest<'a> {
    pub method: &'a hyper::Method,
    pub path: &'a str,
    /// Query parameters, decoded.
    pub query: &'a [(String, String)],
    /// The `Host` header (for `tcUrl`), without a port.
    pub host: &'a str,
    pub body: &'a [u8],
    pub peer: SocketAddr,
}

impl RtcRequest<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Whether a path is WebRTC signalling.
pub fn is_rtc_path(path: &str) -> bool {
    endpoint(path).is_some()
}

pub async fn handle(plane: &ControlPlane, request: RtcRequest<'_>) -> RtcReply {
    let Some(endpoint) = endpoint(request.path) else {
        return RtcReply::text(StatusCode::NOT_FOUND, "no such WebRTC endpoint");
    };
    if !plane.shared.config.rtc_server.enabled {
        return RtcReply::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "WebRTC is disabled (rtc_server.enabled = false)",
        );
    }
    let (post, delete_method) = (
        *request.method == hyper::Method::POST,
        *request.method == hyper::Method::DELETE,
    );
    match endpoint {
        Endpoint::Whip | Endpoint::Whep if delete_method => delete(plane, &request).await,
        Endpoint::Whip if post => whip_whep(plane, &request, Role::Publish).await,
        Endpoint::Whep if post => whip_whep(plane, &request, Role::Play).await,
        Endpoint::SrsPublish if post => srs_json(plane, &request, Role::Publish).await,
        Endpoint::SrsPlay if post => srs_json(plane, &request, Role::Play).await,
        _ => RtcReply::text(StatusCode::METHOD_NOT_ALLOWED, "use POST (or DELETE)"),
    }
}

/// WHIP/WHEP: the offer is the body, app and stream are query parameters.
async fn whip_whep(plane: &ControlPlane, request: &RtcRequest<'_>, role: Role) -> RtcReply {
    let offer = match std::str::from_utf8(request.body) {
        Ok(offer) => offer,
        Err(_) => return RtcReply::text(StatusCode::BAD_REQUEST, "the offer is not UTF-8 text"),
    };
    let app = request.get("app").unwrap_or("live");
    let Some(stream) = request.get("stream").filter(|s| !s.is_empty()) else {
        return RtcReply::text(StatusCode::BAD_REQUEST, "missing ?stream=");
    };
    // The other parameters are the stream's `param`, as an RTMP URL's query would be.
    let param: Vec<String> = request
        .query
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "app" | "stream" | "eip" | "codec"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let stream_name = if param.is_empty() {
        stream.to_string()
    } else {
        format!("{stream}?{}", param.join("&"))
    };
    let tc_url = format!("webrtc://{}/{app}", request.host);
    let started = start(
        plane,
        role,
        offer,
        (&tc_url, app, &stream_name),
        request.get("eip"),
        request.peer.ip(),
    )
    .await;
    match started {
        Ok(started) => {
            let endpoint = match role {
                Role::Publish => "whip",
                Role::Play => "whep",
            };
            let location = format!(
                "/rtc/v1/{endpoint}/?action=delete&app={app}&stream={stream}&session={}",
                started.session_id
            );
            RtcReply {
                status: StatusCode::CREATED,
                content_type: "application/sdp",
                body: started.answer,
                location: Some(location),
            }
        }
        Err(refused) => RtcReply::text(refused.status, refused.reason),
    }
}

#[derive(Deserialize)]
struct SrsOffer {
    #[serde(default)]
    streamurl: String,
    #[serde(default)]
    sdp: String,
    #[serde(default)]
    clientip: Option<String>,
}

#[derive(Serialize)]
struct SrsAnswer<'a> {
    code: i64,
    server: &'a str,
    service: &'a str,
    pid: String,
    sdp: String,
    sessionid: String,
}

#[derive(Serialize)]
struct SrsError {
    code: i64,
    msg: String,
}

/// SRS's JSON API: `{streamurl, sdp}` in, `{code, sdp, sessionid}` out. Errors keep the HTTP
/// status of the refusal and carry SRS's non-zero `code` with the reason.
async fn srs_json(plane: &ControlPlane, request: &RtcRequest<'_>, role: Role) -> RtcReply {
    let refuse = |refused: Refused| {
        RtcReply::json(
            refused.status,
            &SrsError {
                code: i64::from(refused.status.as_u16()),
                msg: refused.reason,
            },
        )
    };
    let offer: SrsOffer = match serde_json::from_slice(request.body) {
        Ok(offer) => offer,
        Err(e) => {
            return refuse(Refused::new(
                StatusCode::BAD_REQUEST,
                format!("the body is not the JSON SRS expects: {e}"),
            ));
        }
    };
    let Some(rest) = offer.streamurl.strip_prefix("webrtc://") else {
        return refuse(Refused::new(
            StatusCode::BAD_REQUEST,
            format!(
                "streamurl {:?} is not webrtc://host/app/stream",
                offer.streamurl
            ),
        ));
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let Some((host_app, stream)) = path.rsplit_once('/') else {
        return refuse(Refused::new(
            StatusCode::BAD_REQUEST,
            "streamurl has no stream name",
        ));
    };
    let (_, app) = host_app.split_once('/').unwrap_or((host_app, ""));
    let eip = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("eip="))
        .map(str::to_string);
    let stream_name = if query.is_empty() {
        stream.to_string()
    } else {
        format!("{stream}?{query}")
    };
    let tc_url = format!("webrtc://{host_app}");
    // SRS reports `clientip` as the client's address when a proxy signals for it.
    let client_ip = offer
        .clientip
        .as_deref()
        .and_then(|ip| ip.parse::<IpAddr>().ok())
        .unwrap_or(request.peer.ip());
    match start(
        plane,
        role,
        &offer.sdp,
        (&tc_url, app, &stream_name),
        eip.as_deref(),
        client_ip,
    )
    .await
    {
        Ok(started) => {
            let identity = plane.identity();
            RtcReply::json(
                StatusCode::OK,
                &SrsAnswer {
                    code: 0,
                    server: &identity.server_id,
                    service: &identity.service_id,
                    pid: identity.pid.to_string(),
                    sdp: started.answer,
                    sessionid: started.session_id,
                },
            )
        }
        Err(refused) => refuse(refused),
    }
}

/// `DELETE` of a WHIP/WHEP `Location`: ends the session.
async fn delete(plane: &ControlPlane, request: &RtcRequest<'_>) -> RtcReply {
    let Some(session) = request.get("session").filter(|s| !s.is_empty()) else {
        return RtcReply::text(StatusCode::BAD_REQUEST, "missing ?session=");
    };
    match plane.shared.rtc.end(session) {
        Ended::Pending => {
            tracing::info!(session, "rtc session deleted before it connected");
            RtcReply::text(StatusCode::OK, "deleted")
        }
        Ended::Live { worker, client_id } => {
            if let Some(link) = plane.shared.links.get(worker) {
                link.post(WorkerMsg::Kick(client_id));
            }
            RtcReply::text(StatusCode::OK, "deleted")
        }
        Ended::Already => RtcReply::text(StatusCode::OK, "already ended"),
        Ended::NotFound => RtcReply::text(StatusCode::NOT_FOUND, "no such session"),
    }
}

struct Started {
    answer: String,
    session_id: String,
}

/// The checks of a publish or play, then the answer and the parked session.
async fn start(
    plane: &ControlPlane,
    role: Role,
    offer: &str,
    (tc_url, app, stream_name): (&str, &str, &str),
    eip: Option<&str>,
    client_ip: IpAddr,
) -> Result<Started, Refused> {
    let shared = &plane.shared;
    let config = &shared.config;
    if offer.len() > crate::rtc::MAX_OFFER {
        return Err(Refused::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the offer is too large",
        ));
    }
    if offer.trim().is_empty() {
        return Err(Refused::new(StatusCode::BAD_REQUEST, "empty SDP offer"));
    }
    let request = StreamRequest::from_rtmp(tc_url, app, stream_name)
        .map_err(|e| Refused::new(StatusCode::BAD_REQUEST, format!("bad stream: {e}")))?;
    let (vhost_name, vhost) = config.vhost(&request.vhost);
    let key = StreamKey {
        vhost: vhost_name.to_string(),
        app: request.app.clone(),
        stream: request.stream.clone(),
    };
    let security_method = match role {
        Role::Publish => SecurityMethod::Publish,
        Role::Play => SecurityMethod::Play,
    };
    vhost
        .security
        .check(security_method, client_ip)
        .map_err(|why| Refused::new(StatusCode::FORBIDDEN, why))?;
    if role == Role::Publish && shared.hub.is_published(&key) {
        return Err(Refused::new(
            StatusCode::CONFLICT,
            format!(
                "stream {} is busy: another client is publishing it",
                request.path()
            ),
        ));
    }
    if shared.connections.load(std::sync::atomic::Ordering::SeqCst) >= config.max_connections {
        return Err(Refused::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many connections (max_connections {})",
                config.max_connections
            ),
        ));
    }
    let serial = shared.next_serial();
    let client = ClientInfo::new(
        serial,
        sluice_ring::ConnId::NONE,
        SocketAddr::new(client_ip, 0),
        Instant::now(),
    );
    let hook = match role {
        Role::Publish => Hook::OnPublish,
        Role::Play => Hook::OnPlay,
    };
    let urls = vhost.http_hooks.urls(hook).to_vec();
    if !urls.is_empty() {
        let body = crate::session::hook_body(
            shared,
            hook,
            &client,
            HookSubject {
                vhost: &key.vhost,
                app: &request.app,
                stream: Some((&request, &key)),
                tc_url: &request.tc_url,
                page_url: "",
            },
        );
        let (reply, verdict) = tokio::sync::oneshot::channel();
        let job = HookJob {
            hook,
            urls,
            timeout: std::time::Duration::from_millis(vhost.http_hooks.timeout_ms),
            body,
            verdict: None,
            reply: Some(reply),
        };
        if shared.hooks.send(job).is_err() {
            return Err(Refused::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the callback runner is gone",
            ));
        }
        match verdict.await {
            Ok(Ok(())) => {}
            Ok(Err(why)) => {
                tracing::warn!(client = %client.id, ip = %client_ip, hook = hook.name(), reason = %why, "rtc: refused by hook");
                return Err(Refused::new(
                    StatusCode::FORBIDDEN,
                    format!("refused by {}: {why}", hook.name()),
                ));
            }
            Err(_) => {
                return Err(Refused::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the callback was dropped",
                ));
            }
        }
    }
    let rtc_config = &config.rtc_server;
    let spec = candidates::parse_spec(&rtc_config.candidate)
        .map_err(|e| Refused::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let port = config.rtc_listen().map_or(0, |addr| addr.port());
    let offered = candidates::resolve(&spec, eip, port)
        .map_err(|e| Refused::new(StatusCode::BAD_REQUEST, format!("candidate: {e}")))?;
    let answer = answer_offer(offer, (role, rtc_config.twcc), &offered, Instant::now()).map_err(|e| {
        tracing::warn!(ip = %client_ip, stream = %request.path(), reason = %e, "rtc: offer refused");
        Refused::new(StatusCode::BAD_REQUEST, e.to_string())
    })?;
    let session_id = format!("{}:{}", answer.local_ufrag, answer.remote_ufrag);
    tracing::info!(
        client = %client.id,
        ip = %client_ip,
        role = role.name(),
        stream = %request.path(),
        vhost = %key.vhost,
        session = %session_id,
        candidates = ?offered,
        "rtc session answered"
    );
    let pending = PendingSession {
        rtc: answer.rtc,
        role,
        request,
        key,
        serial,
        client_ip,
        session_id: session_id.clone(),
        candidates: offered,
        created: Instant::now(),
    };
    shared
        .rtc
        .insert(answer.local_ufrag, pending)
        .map_err(|e| Refused::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(Started {
        answer: answer.sdp,
        session_id,
    })
}
