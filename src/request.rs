//! What a client asks for, in SRS's terms: vhost, app, stream and param, read from an RTMP
//! `tcUrl`, the connect `app` and the publish/play stream name (`rtmp://host/app/stream?k=v`).
//!
//! The vhost is the `vhost=` (or `domain=`) parameter if present, else the tcUrl host; an
//! unconfigured vhost falls back to `__defaultVhost__` (see `Config::vhost`), as in SRS.

/// The parts of a publish or play request that identify a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRequest {
    /// The vhost as requested (before falling back to the default vhost).
    pub vhost: String,
    pub app: String,
    pub stream: String,
    /// Query parameters with the leading `?` (SRS's `param`), empty when there are none.
    pub param: String,
    pub tc_url: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("empty stream name")]
    EmptyStream,
    #[error("empty app name")]
    EmptyApp,
    #[error("name too long ({0} bytes)")]
    TooLong(usize),
    #[error("name has forbidden characters: {0:?}")]
    BadCharacters(String),
}

/// Longest app or stream name accepted (SRS has no hard limit; this keeps keys sane).
const MAX_NAME: usize = 256;

impl StreamRequest {
    /// Builds the request from the connect command's `tcUrl` and `app` and the stream name of
    /// a publish or play command.
    pub fn from_rtmp(
        tc_url: &str,
        connect_app: &str,
        stream_name: &str,
    ) -> Result<StreamRequest, RequestError> {
        let (host, url_app, url_query) = split_tc_url(tc_url);
        let (app, app_query) = split_query(if connect_app.is_empty() {
            url_app
        } else {
            connect_app
        });
        let (stream, stream_query) = split_query(stream_name);
        let app = app.trim_matches('/');

        let vhost = vhost_param([url_query, app_query, stream_query]).unwrap_or(host);

        validate(app).map_err(|e| match e {
            RequestError::EmptyStream => RequestError::EmptyApp,
            other => other,
        })?;
        validate(stream)?;
        let param = if stream_query.is_empty() && app_query.is_empty() {
            String::new()
        } else if stream_query.is_empty() {
            format!("?{app_query}")
        } else {
            format!("?{stream_query}")
        };
        Ok(StreamRequest {
            vhost: vhost.to_string(),
            app: app.to_string(),
            stream: stream.to_string(),
            param,
            tc_url: tc_url.to_string(),
        })
    }

    /// A live-stream request over HTTP: `path` (decoded, extension already removed, e.g.
    /// `/live/cam`) matched against the vhost's `mount` template (`[vhost]/[app]/[stream].flv`,
    /// whose `[vhost]/` part may be left out). The vhost is the `?vhost=` parameter, else the
    /// mount's `[vhost]`, else the Host header. `None` when the path does not fit the mount.
    pub fn from_http(path: &str, mount: &str, host: &str, query: &str) -> Option<StreamRequest> {
        let template = mount.rsplit_once('.').map_or(mount, |(stem, _)| stem);
        let template: Vec<&str> = template.trim_matches('/').split('/').collect();
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let template = if template.first() == Some(&"[vhost]") && parts.len() + 1 == template.len()
        {
            &template[1..]
        } else {
            &template[..]
        };
        if parts.len() != template.len() {
            return None;
        }
        let (mut vhost, mut app, mut stream) = (None, None, None);
        for (part, pattern) in parts.iter().zip(template) {
            match *pattern {
                "[vhost]" => vhost = Some(*part),
                "[app]" => app = Some(*part),
                "[stream]" => stream = Some(*part),
                literal if literal == *part => {}
                _ => return None,
            }
        }
        let (app, stream) = (app?, stream?);
        validate(app).ok()?;
        validate(stream).ok()?;
        let host = host.rsplit_once(':').map_or(host, |(h, port)| {
            // Keep IPv6 literals whole; only strip a numeric port.
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        });
        let vhost = vhost_param([query]).or(vhost).unwrap_or(host);
        Some(StreamRequest {
            vhost: vhost.trim_matches(|c| c == '[' || c == ']').to_string(),
            app: app.to_string(),
            stream: stream.to_string(),
            param: if query.is_empty() {
                String::new()
            } else {
                format!("?{query}")
            },
            tc_url: String::new(),
        })
    }

    /// A request from an SRT stream id already split into its parts (`proto::srt`): the vhost
    /// is `h=`, else a `vhost=` key, else the default vhost; `param` is the extra keys
    /// (`k=v&k2=v2`, without `?`). `tc_url` is the `srt://` URL SRS reports for such clients.
    pub fn from_srt(
        vhost: Option<&str>,
        app: &str,
        stream: &str,
        param: &str,
        server: std::net::SocketAddr,
    ) -> Result<StreamRequest, RequestError> {
        validate(app).map_err(|e| match e {
            RequestError::EmptyStream => RequestError::EmptyApp,
            other => other,
        })?;
        validate(stream)?;
        let vhost = vhost
            .or_else(|| vhost_param([param]))
            .unwrap_or(crate::config::DEFAULT_VHOST);
        Ok(StreamRequest {
            vhost: vhost.to_string(),
            app: app.to_string(),
            stream: stream.to_string(),
            param: if param.is_empty() {
                String::new()
            } else {
                format!("?{param}")
            },
            tc_url: format!("srt://{server}/{app}"),
        })
    }

    /// The vhost a connect asks for, before any stream name is known (it sets the chunk size
    /// the session announces).
    pub fn connect_vhost(tc_url: &str, connect_app: &str) -> String {
        let (host, url_app, url_query) = split_tc_url(tc_url);
        let (_, app_query) = split_query(if connect_app.is_empty() {
            url_app
        } else {
            connect_app
        });
        vhost_param([url_query, app_query])
            .unwrap_or(host)
            .to_string()
    }

    /// `app/stream`, the way logs and the API name a stream.
    pub fn path(&self) -> String {
        format!("{}/{}", self.app, self.stream)
    }
}

/// The `vhost=` (or `domain=`) parameter of the query strings; later ones win, as SRS merges
/// them.
fn vhost_param<'a>(queries: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut found = None;
    for query in queries {
        for pair in query.split('&') {
            if let Some((key, value)) = pair.split_once('=')
                && matches!(key, "vhost" | "domain")
            {
                found = Some(value);
            }
        }
    }
    found
}

fn validate(name: &str) -> Result<(), RequestError> {
    if name.is_empty() {
        return Err(RequestError::EmptyStream);
    }
    if name.len() > MAX_NAME {
        return Err(RequestError::TooLong(name.len()));
    }
    if name.chars().any(|c| c.is_control()) || name.split('/').any(|part| part == "..") {
        return Err(RequestError::BadCharacters(name.to_string()));
    }
    Ok(())
}

/// `rtmp://host:port/app/inst?query` → (host, "app/inst", query).
fn split_tc_url(tc_url: &str) -> (&str, &str, &str) {
    let rest = tc_url.split_once("://").map_or(tc_url, |(_, rest)| rest);
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = match authority.strip_prefix('[') {
        // [::1]:1935
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => authority.split(':').next().unwrap_or(authority),
    };
    let (path, query) = split_query(path);
    (host, path, query)
}

fn split_query(s: &str) -> (&str, &str) {
    s.split_once('?').unwrap_or((s, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_url() {
        let r = StreamRequest::from_rtmp("rtmp://127.0.0.1:1935/live", "live", "cap").unwrap();
        assert_eq!(
            (r.vhost.as_str(), r.app.as_str(), r.stream.as_str()),
            ("127.0.0.1", "live", "cap")
        );
        assert_eq!(r.param, "");
        assert_eq!(r.path(), "live/cap");
    }

    #[test]
    fn params_and_vhost() {
        let r = StreamRequest::from_rtmp(
            "rtmp://1.2.3.4/live",
            "live",
            "cap?token=abc&vhost=v.example",
        )
        .unwrap();
        assert_eq!(r.vhost, "v.example");
        assert_eq!(r.stream, "cap");
        assert_eq!(r.param, "?token=abc&vhost=v.example");
        let r = StreamRequest::from_rtmp("rtmp://h/live?vhost=a.b", "live?vhost=a.b", "s").unwrap();
        assert_eq!((r.vhost.as_str(), r.app.as_str()), ("a.b", "live"));
        let r = StreamRequest::from_rtmp("rtmp://[::1]:1935/live", "", "s").unwrap();
        assert_eq!((r.vhost.as_str(), r.app.as_str()), ("::1", "live"));
    }

    #[test]
    fn connect_vhost_from_host_or_param() {
        assert_eq!(
            StreamRequest::connect_vhost("rtmp://a.example:1935/live", "live"),
            "a.example"
        );
        assert_eq!(
            StreamRequest::connect_vhost("rtmp://1.2.3.4/live?vhost=v", "live?vhost=v"),
            "v"
        );
        assert_eq!(
            StreamRequest::connect_vhost("rtmp://1.2.3.4/live", "live?domain=d"),
            "d"
        );
    }

    #[test]
    fn http_paths_against_mounts() {
        let mount = "[vhost]/[app]/[stream].flv";
        let r = StreamRequest::from_http("/live/cam", mount, "127.0.0.1:8080", "").unwrap();
        assert_eq!(
            (r.vhost.as_str(), r.app.as_str(), r.stream.as_str()),
            ("127.0.0.1", "live", "cam")
        );
        let r = StreamRequest::from_http("/v.example/live/cam", mount, "h", "").unwrap();
        assert_eq!(r.vhost, "v.example");
        let r = StreamRequest::from_http("/live/cam", mount, "h", "vhost=q&token=1").unwrap();
        assert_eq!(
            (r.vhost.as_str(), r.param.as_str()),
            ("q", "?vhost=q&token=1")
        );
        assert!(StreamRequest::from_http("/cam", mount, "h", "").is_none());
        assert!(StreamRequest::from_http("/a/b/c/d", mount, "h", "").is_none());
        let fixed = "tv/[stream].flv";
        assert!(
            StreamRequest::from_http("/tv/one", fixed, "h", "").is_none(),
            "no [app]"
        );
        let custom = "[app]/hls/[stream].flv";
        let r = StreamRequest::from_http("/live/hls/cam", custom, "[::1]:8080", "").unwrap();
        assert_eq!((r.vhost.as_str(), r.app.as_str()), ("::1", "live"));
        assert!(StreamRequest::from_http("/live/x/cam", custom, "h", "").is_none());
    }

    #[test]
    fn bad_names_are_refused() {
        assert_eq!(
            StreamRequest::from_rtmp("rtmp://h/live", "live", ""),
            Err(RequestError::EmptyStream)
        );
        assert_eq!(
            StreamRequest::from_rtmp("rtmp://h/", "", "s"),
            Err(RequestError::EmptyApp)
        );
        assert!(StreamRequest::from_rtmp("rtmp://h/live", "live", "a/../b").is_err());
        assert!(StreamRequest::from_rtmp("rtmp://h/live", "live", &"x".repeat(300)).is_err());
        assert!(StreamRequest::from_rtmp("rtmp://h/live", "live", "a\nb").is_err());
    }
}
