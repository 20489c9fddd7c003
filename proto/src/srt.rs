//! SRT stream ids as SRS reads them: which stream a caller wants (vhost, app, stream), whether it
//! publishes or plays, and the extra keys SRS hands to HTTP callbacks as the request's `param`.
//! Pure parsing; the SRT transport itself (handshake, ARQ) lives elsewhere.
//!
//! The forms, after SRS's `srs_srt_streamid_info` / `srs_srt_streamid_to_request`
//! (`srs_app_srt_utility.cpp`) and its SRT docs:
//!
//! - `#!::r=app/stream,m=publish,h=vhost,key=value,...` — the access-control syntax of the SRT
//!   project: `r` the resource, `m` the mode (`publish`, or `request` to play; play when
//!   absent; case-insensitive), `h` the vhost. Items are separated by `,` (SRS also accepts `&`
//!   and `;`). Every other key — SRS's own `u` (user), `s` (session), `t` (type) included — is
//!   kept as a parameter, in order; a key given twice keeps its first place and its last value,
//!   as SRS's map would have it.
//! - `#!::h=app/stream,m=publish` and `#!::h=vhost/app/stream,...` — SRS's legacy form: an `h`
//!   holding a `/` is the resource; with two or more slashes its first segment is the vhost.
//!   A `?` anywhere counts as a separator, so the older `#!::h=live/stream?secret=x,m=publish`
//!   reads as it did. An `r` wins over a legacy `h` resource.
//! - `app/stream`, `app/stream?k=v&...`, `stream` — no `#!::`: the resource as a path, the
//!   default app when it has no `/`. SRS always plays such an id and passes the query through as
//!   `param`; here an `m=` in the query sets the mode as it would in the `#!::` form (a publisher
//!   that SRS would have turned into a player), and the other items are parameters.
//!
//! The resource `a/b/c` is app `a/b`, stream `c`: the last segment is the stream, as an RTMP
//! client splits `rtmp://host/a/b/c` and as our RTMP side names streams. (SRS splits SRT
//! resources at the first `/` instead, app `a`, stream `b/c`; both name the same `a/b/c` path.)
//!
//! Stricter than SRS, so that a bad id is refused with a reason instead of half-working: an
//! empty id, one over SRT's 512-byte limit, control characters, an item that is not
//! `key=value`, an unknown mode, no resource, an empty app or stream, or a `..` path segment
//! (names end up in file paths for HLS and DVR). [`StreamIdError`]'s text is written for a log
//! line and an SRT rejection reason.

use thiserror::Error;

/// SRT's limit on the stream id (SRTO_STREAMID): 512 bytes.
pub const MAX_STREAM_ID_LEN: usize = 512;

/// What the caller wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrtMode {
    /// `m=publish`.
    Publish,
    /// `m=request`, or no mode: play.
    Play,
}

/// A parsed stream id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtStreamId {
    /// From `h=` (or the first segment of a legacy `h=vhost/app/stream`); `None` when not given.
    pub vhost: Option<String>,
    pub app: String,
    pub stream: String,
    pub mode: SrtMode,
    /// The other keys, in the order given (`u`, `s`, `t` and any others).
    pub params: Vec<(String, String)>,
}

/// Why a stream id was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StreamIdError {
    #[error("empty SRT stream id")]
    Empty,
    #[error("SRT stream id is {0} bytes, over the 512-byte limit")]
    TooLong(usize),
    #[error("SRT stream id contains a control character")]
    ControlCharacter,
    #[error("SRT stream id names no stream: expected r=app/stream")]
    MissingResource,
    #[error("SRT stream id resource {0:?} has an empty app")]
    EmptyApp(String),
    #[error("SRT stream id resource {0:?} has an empty stream name")]
    EmptyStream(String),
    #[error("SRT stream id resource {0:?} has a `..` segment")]
    DotDot(String),
    #[error("SRT stream id mode m={0:?} is neither publish nor request")]
    UnknownMode(String),
    #[error("SRT stream id item {0:?} is not key=value")]
    MalformedItem(String),
}

impl SrtStreamId {
    /// Parses a stream id; `default_app` is the app of a bare `stream` (SRS's default app name,
    /// normally `live`).
    pub fn parse(s: &str, default_app: &str) -> Result<SrtStreamId, StreamIdError> {
        if s.is_empty() {
            return Err(StreamIdError::Empty);
        }
        if s.len() > MAX_STREAM_ID_LEN {
            return Err(StreamIdError::TooLong(s.len()));
        }
        if s.chars().any(char::is_control) {
            return Err(StreamIdError::ControlCharacter);
        }
        match s.strip_prefix("#!::") {
            Some(keyed) => Self::parse_keyed(keyed, default_app),
            None => Self::parse_plain(s, default_app),
        }
    }

    /// `r=app/stream,m=publish,h=vhost,k=v`, after the `#!::`.
    fn parse_keyed(body: &str, default_app: &str) -> Result<SrtStreamId, StreamIdError> {
        let mut resource = None;
        let mut host = None;
        let mut mode = SrtMode::Play;
        let mut params = Vec::new();
        for (key, value) in items(body, &[',', '&', ';', '?'])? {
            match key {
                "r" => resource = Some(value),
                "h" => host = Some(value),
                "m" => mode = parse_mode(value)?,
                _ => set_param(&mut params, key, value),
            }
        }
        let mut vhost = None;
        let mut legacy_resource = None;
        if let Some(host) = host {
            match (host.find('/'), host.rfind('/')) {
                (Some(first), Some(last)) if first != last => {
                    vhost = Some(&host[..first]);
                    legacy_resource = Some(&host[first + 1..]);
                }
                (Some(_), _) => legacy_resource = Some(host),
                (None, _) => vhost = Some(host),
            }
        }
        let resource = resource.or(legacy_resource).unwrap_or_default();
        let (app, stream) = split_resource(resource, default_app)?;
        Ok(SrtStreamId {
            vhost: vhost.filter(|v| !v.is_empty()).map(str::to_string),
            app,
            stream,
            mode,
            params,
        })
    }

    /// `app/stream?k=v&m=publish`, or a bare `stream`.
    fn parse_plain(s: &str, default_app: &str) -> Result<SrtStreamId, StreamIdError> {
        let (path, query) = s.split_once('?').unwrap_or((s, ""));
        let mut mode = SrtMode::Play;
        let mut params = Vec::new();
        for (key, value) in items(query, &['&'])? {
            match key {
                "m" => mode = parse_mode(value)?,
                _ => set_param(&mut params, key, value),
            }
        }
        let (app, stream) = split_resource(path, default_app)?;
        Ok(SrtStreamId {
            vhost: None,
            app,
            stream,
            mode,
            params,
        })
    }

    /// The parameters as SRS passes them to HTTP callbacks (`param`), without a leading `?`:
    /// `vhost=<h>` first when the id named a vhost (SRS adds it), then each `key=value`, joined
    /// by `&`. Empty when there are none.
    pub fn param(&self) -> String {
        let vhost = self.vhost.iter().map(|vhost| format!("vhost={vhost}"));
        let rest = self.params.iter().map(|(k, v)| format!("{k}={v}"));
        vhost.chain(rest).collect::<Vec<_>>().join("&")
    }

    /// `app/stream`, the way logs and the API name a stream.
    pub fn path(&self) -> String {
        format!("{}/{}", self.app, self.stream)
    }
}

/// Splits `body` into `key=value` items on any of `separators`; empty items (a trailing comma)
/// are skipped. The value is everything after the first `=`, so base64 padding survives.
fn items<'a>(
    body: &'a str,
    separators: &'a [char],
) -> Result<Vec<(&'a str, &'a str)>, StreamIdError> {
    body.split(separators)
        .filter(|item| !item.is_empty())
        .map(|item| match item.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key, value)),
            _ => Err(StreamIdError::MalformedItem(item.to_string())),
        })
        .collect()
}

fn parse_mode(value: &str) -> Result<SrtMode, StreamIdError> {
    if value.eq_ignore_ascii_case("publish") {
        Ok(SrtMode::Publish)
    } else if value.eq_ignore_ascii_case("request") {
        Ok(SrtMode::Play)
    } else {
        Err(StreamIdError::UnknownMode(value.to_string()))
    }
}

/// A repeated key keeps its first position and takes the last value.
fn set_param(params: &mut Vec<(String, String)>, key: &str, value: &str) {
    match params.iter_mut().find(|(k, _)| k == key) {
        Some((_, v)) => *v = value.to_string(),
        None => params.push((key.to_string(), value.to_string())),
    }
}

/// `a/b/c` → (`a/b`, `c`); `c` → (`default_app`, `c`).
fn split_resource(resource: &str, default_app: &str) -> Result<(String, String), StreamIdError> {
    if resource.is_empty() {
        return Err(StreamIdError::MissingResource);
    }
    let (app, stream) = resource.rsplit_once('/').unwrap_or((default_app, resource));
    if app.is_empty() || app.split('/').any(str::is_empty) {
        return Err(StreamIdError::EmptyApp(resource.to_string()));
    }
    if stream.is_empty() {
        return Err(StreamIdError::EmptyStream(resource.to_string()));
    }
    if app
        .split('/')
        .chain([stream])
        .any(|segment| segment == "..")
    {
        return Err(StreamIdError::DotDot(resource.to_string()));
    }
    Ok((app.to_string(), stream.to_string()))
}
