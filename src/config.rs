//! Configuration: the TOML file (`conf/sluice.toml`), its defaults and its validation.
//!
//! Every field has a default, so an empty file is a working server with SRS's defaults. An
//! unknown key or a bad value is reported as `FILE:LINE: key: problem` and the server does not
//! start (`sluice -t -c FILE` checks a file without starting).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The vhost SRS uses when a request names no configured vhost.
pub const DEFAULT_VHOST: &str = "__defaultVhost__";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
}

/// Which I/O backend the data plane runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum IoChoice {
    /// io_uring where the kernel supports it, else epoll.
    #[default]
    Auto,
    Uring,
    Epoll,
}

impl std::str::FromStr for IoChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(IoChoice::Auto),
            "uring" | "io_uring" => Ok(IoChoice::Uring),
            "epoll" => Ok(IoChoice::Epoll),
            other => Err(format!("expected auto, uring or epoll, got {other:?}")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Worker threads, each with its own I/O driver; 0 means one per CPU core.
    pub workers: usize,
    /// `auto`, `uring` or `epoll`.
    pub io: IoChoice,
    /// Most client connections at once, across all workers (SRS: `max_connections`).
    pub max_connections: usize,
    /// Most connections at once from one IP address; 0 means no limit.
    pub max_connections_per_ip: usize,
    /// Send runs of equal-size UDP datagrams with one GSO `sendmsg` (`UDP_SEGMENT`) where the
    /// kernel supports it (SRT). The environment variable `SLUICE_UDP_GSO=0` turns it off too,
    /// for benchmarks.
    pub udp_gso: bool,
    pub log: LogConfig,
    pub rtmp: RtmpConfig,
    pub http_server: HttpServerConfig,
    pub http_api: HttpApiConfig,
    pub srt_server: SrtServerConfig,
    pub rtc_server: RtcServerConfig,
    /// Virtual hosts by name; `__defaultVhost__` always exists.
    pub vhost: BTreeMap<String, VhostConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            workers: 0,
            io: IoChoice::Auto,
            max_connections: 1000,
            max_connections_per_ip: 0,
            udp_gso: true,
            log: LogConfig::default(),
            rtmp: RtmpConfig::default(),
            http_server: HttpServerConfig::default(),
            http_api: HttpApiConfig::default(),
            srt_server: SrtServerConfig::default(),
            rtc_server: RtcServerConfig::default(),
            vhost: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug`, `trace`, or a tracing filter directive.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtmpConfig {
    /// Address the RTMP listener binds on every worker (`SO_REUSEPORT`).
    pub listen: String,
    /// A client must finish the handshake and connect within this (ms).
    pub handshake_timeout_ms: u64,
    /// Largest chunk size a client may set (bytes).
    pub max_chunk_size: u32,
    /// Largest RTMP message a client may send (bytes).
    pub max_message_size: u32,
}

impl Default for RtmpConfig {
    fn default() -> Self {
        RtmpConfig {
            listen: "0.0.0.0:1935".into(),
            handshake_timeout_ms: 10_000,
            max_chunk_size: 65_536,
            max_message_size: 8 * 1024 * 1024,
        }
    }
}

/// The data-plane HTTP server (SRS `http_server`): live streams over HTTP and static files.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpServerConfig {
    pub enabled: bool,
    /// Address every worker listens on (`SO_REUSEPORT`).
    pub listen: String,
    /// Root of the static files.
    pub dir: String,
    /// `Access-Control-Allow-Origin` on every response; empty sends no CORS headers.
    pub cors_origin: String,
    /// A request head must arrive completely within this (ms), against slow-header clients.
    pub header_timeout_ms: u64,
    /// An idle keep-alive connection is closed after this (ms).
    pub keepalive_timeout_ms: u64,
    /// A client whose socket takes none of a response (a file) for this long is disconnected
    /// (ms). Live viewers use their vhost's `play.send_timeout_ms`.
    pub send_timeout_ms: u64,
}

impl Default for HttpServerConfig {
    fn default() -> Self {
        HttpServerConfig {
            enabled: true,
            listen: "0.0.0.0:8080".into(),
            dir: "./html".into(),
            cors_origin: "*".into(),
            header_timeout_ms: 10_000,
            keepalive_timeout_ms: 30_000,
            send_timeout_ms: 30_000,
        }
    }
}

/// The control plane's HTTP API and `/metrics` (SRS `http_api`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpApiConfig {
    pub enabled: bool,
    pub listen: String,
    /// `Access-Control-Allow-Origin` on every response; empty sends no CORS headers.
    pub cors_origin: String,
    pub auth: ApiAuthConfig,
}

impl Default for HttpApiConfig {
    fn default() -> Self {
        HttpApiConfig {
            enabled: true,
            listen: "0.0.0.0:1985".into(),
            cors_origin: "*".into(),
            auth: ApiAuthConfig::default(),
        }
    }
}

/// WebRTC (SRS `rtc_server`): media of every WHIP publisher and WHEP player on one UDP port,
/// signalling on the HTTP API port (`/rtc/v1/...`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtcServerConfig {
    pub enabled: bool,
    /// UDP address every worker binds (`SO_REUSEPORT`).
    pub listen: String,
    /// The address(es) offered to clients as ICE host candidates, with the port of `listen`:
    /// IPs separated by commas or spaces; `*` for every address of this host's interfaces
    /// (loopback too when there is no other); `$NAME` for the environment variable NAME
    /// (SRS's `$CANDIDATE`). A request's `?eip=IP[:port]` overrides it, as in SRS.
    pub candidate: String,
    /// RTMP/SRT streams play over WebRTC (AAC audio transcoded to Opus when built with the
    /// `transcode` feature).
    pub rtmp_to_rtc: bool,
    /// WebRTC publishes play over RTMP/FLV/HLS (Opus transcoded to AAC with `transcode`).
    pub rtc_to_rtmp: bool,
    /// How often a WebRTC publisher is asked for a keyframe (PLI), so RTMP/HLS viewers get one
    /// at least this often (ms; SRS `pli_for_rtmp`, 6 s). 0: only when a viewer asks.
    pub pli_interval_ms: u64,
    /// A session whose ICE does not connect within this after the offer is dropped (ms).
    pub connect_timeout_ms: u64,
    /// Negotiate transport-wide congestion control (TWCC) feedback, as SRS does. The server
    /// does not pace players by it; off saves the ~12 % of a player's CPU its processing costs.
    pub twcc: bool,
}

impl Default for RtcServerConfig {
    fn default() -> Self {
        RtcServerConfig {
            enabled: true,
            listen: "0.0.0.0:8000".into(),
            candidate: "*".into(),
            rtmp_to_rtc: true,
            rtc_to_rtmp: true,
            pli_interval_ms: 6000,
            connect_timeout_ms: 15_000,
            twcc: true,
        }
    }
}

/// The SRT listener (SRS `srt_server`): MPEG-TS over SRT, publish and play, on one UDP port.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SrtServerConfig {
    pub enabled: bool,
    /// UDP address every worker binds (`SO_REUSEPORT`: each peer stays on one worker).
    pub listen: String,
    /// TSBPD latency we ask for in both directions (ms); a connection uses the larger of
    /// ours and the peer's (SRS `latency`).
    pub latency_ms: u64,
    /// A connection that hears nothing from its peer for this long is closed (ms).
    pub peer_idle_timeout_ms: u64,
    /// Non-empty: every connection must be encrypted with this passphrase (10–79 characters).
    pub passphrase: String,
    /// AES key length in bytes when encrypting: 16, 24 or 32.
    pub pbkeylen: u16,
    /// The app of a stream id that names only a stream.
    pub default_app: String,
}

impl Default for SrtServerConfig {
    fn default() -> Self {
        SrtServerConfig {
            enabled: true,
            listen: "0.0.0.0:10080".into(),
            latency_ms: 120,
            peer_idle_timeout_ms: 10_000,
            passphrase: String::new(),
            pbkeylen: 16,
            default_app: "live".into(),
        }
    }
}

/// HTTP basic authentication for the API (SRS `http_api.auth`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiAuthConfig {
    pub enabled: bool,
    pub username: String,
    pub password: String,
}

/// HTTP callbacks (SRS `http_hooks`): each hook is a list of URLs, all of which must allow a
/// connect, publish or play.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpHooksConfig {
    pub enabled: bool,
    pub on_connect: Vec<String>,
    pub on_close: Vec<String>,
    pub on_publish: Vec<String>,
    pub on_unpublish: Vec<String>,
    pub on_play: Vec<String>,
    pub on_stop: Vec<String>,
    /// Notified of every HLS segment written (SRS's on_hls body).
    pub on_hls: Vec<String>,
    /// A URL that has not answered in this long refuses (ms).
    pub timeout_ms: u64,
}

impl Default for HttpHooksConfig {
    fn default() -> Self {
        HttpHooksConfig {
            enabled: false,
            on_connect: Vec::new(),
            on_close: Vec::new(),
            on_publish: Vec::new(),
            on_unpublish: Vec::new(),
            on_play: Vec::new(),
            on_stop: Vec::new(),
            on_hls: Vec::new(),
            timeout_ms: 3000,
        }
    }
}

impl HttpHooksConfig {
    /// The URLs of a hook, if hooks are enabled and it has any.
    pub fn urls(&self, hook: crate::control::Hook) -> &[String] {
        use crate::control::Hook;
        if !self.enabled {
            return &[];
        }
        match hook {
            Hook::OnConnect => &self.on_connect,
            Hook::OnClose => &self.on_close,
            Hook::OnPublish => &self.on_publish,
            Hook::OnUnpublish => &self.on_unpublish,
            Hook::OnPlay => &self.on_play,
            Hook::OnStop => &self.on_stop,
            Hook::OnHls => &self.on_hls,
        }
    }
}

/// Publish/play access by client address (SRS `security`), see `crate::security`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    pub enabled: bool,
    /// `"allow publish 127.0.0.1"`, `"deny play 10.0.0.0/8"`, `"allow play all"`...
    pub rules: Vec<String>,
    /// The parsed `rules` (filled at load).
    #[serde(skip)]
    pub parsed: Vec<crate::security::Rule>,
}

impl SecurityConfig {
    /// Whether `ip` may `method` on this vhost.
    pub fn check(
        &self,
        method: crate::security::Method,
        ip: std::net::IpAddr,
    ) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        crate::security::allows(&self.parsed, method, ip)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VhostConfig {
    pub enabled: bool,
    /// RTMP chunk size the server writes with (SRS default 60000).
    pub chunk_size: u32,
    pub play: PlayConfig,
    pub publish: PublishConfig,
    pub http_remux: HttpRemuxConfig,
    pub hls: HlsConfig,
    pub dash: DashConfig,
    pub http_hooks: HttpHooksConfig,
    pub security: SecurityConfig,
}

impl Default for VhostConfig {
    fn default() -> Self {
        VhostConfig {
            enabled: true,
            chunk_size: 60_000,
            play: PlayConfig::default(),
            publish: PublishConfig::default(),
            http_remux: HttpRemuxConfig::default(),
            hls: HlsConfig::default(),
            dash: DashConfig::default(),
            http_hooks: HttpHooksConfig::default(),
            security: SecurityConfig::default(),
        }
    }
}

/// Live streams over HTTP (SRS `http_remux`): FLV, WebSocket-FLV, MPEG-TS, AAC and MP3.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpRemuxConfig {
    pub enabled: bool,
    /// Where streams are mounted, as in SRS: `[vhost]`, `[app]` and `[stream]` are replaced,
    /// and the extension may be any of `.flv`, `.ts`, `.aac`, `.mp3` (the format asked for).
    /// `[vhost]/` is optional in requests for the default vhost.
    pub mount: String,
}

impl Default for HttpRemuxConfig {
    fn default() -> Self {
        HttpRemuxConfig {
            enabled: true,
            mount: "[vhost]/[app]/[stream].flv".into(),
        }
    }
}

/// HLS (SRS `hls`): segments and playlists kept in memory and served on the HTTP port. Key
/// names are SRS's; durations are seconds as in SRS.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HlsConfig {
    pub enabled: bool,
    /// Target segment duration (s); segments are cut at the first keyframe past it.
    pub hls_fragment: f64,
    /// How much media (s) the playlist lists.
    pub hls_window: f64,
    /// Playlist path template: `[app]`, `[stream]` (and `[vhost]`) are replaced.
    pub hls_m3u8_file: String,
    /// MPEG-TS segment path template; `[seq]` is the media sequence number.
    pub hls_ts_file: String,
    /// fMP4 (CMAF) segments instead of MPEG-TS.
    pub hls_fmp4: bool,
    /// fMP4 segment path template.
    pub hls_fmp4_file: String,
    /// fMP4 initialization segment path template.
    pub hls_init_file: String,
    /// Forget segments that left the window (else they stay until the stream is disposed).
    pub hls_cleanup: bool,
    /// Seconds a stopped stream's playlist and segments stay served; 0 keeps them until the
    /// stream is published again.
    pub hls_dispose: f64,
    /// Low-Latency HLS: partial segments, preload hints, blocking playlist reload.
    pub hls_ll: bool,
    /// LL-HLS part target duration (s).
    pub hls_part: f64,
    /// Also write segments and playlists under this directory ("" = memory only).
    pub hls_path: String,
    /// Track HLS viewers as clients (SRS's `hls_ctx`): a playlist request without `hls_ctx`
    /// is redirected to one with a new context, which the playlist's URIs then carry.
    pub hls_ctx: bool,
}

impl Default for HlsConfig {
    fn default() -> Self {
        HlsConfig {
            enabled: true,
            hls_fragment: 10.0,
            hls_window: 60.0,
            hls_m3u8_file: "[app]/[stream].m3u8".into(),
            hls_ts_file: "[app]/[stream]-[seq].ts".into(),
            hls_fmp4: false,
            hls_fmp4_file: "[app]/[stream]-[seq].m4s".into(),
            hls_init_file: "[app]/[stream]-init.mp4".into(),
            hls_cleanup: true,
            hls_dispose: 120.0,
            hls_ll: false,
            hls_part: 0.5,
            hls_path: String::new(),
            hls_ctx: false,
        }
    }
}

/// MPEG-DASH (SRS `dash`): a dynamic MPD over fMP4 segments, one adaptation set per track.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DashConfig {
    pub enabled: bool,
    /// Target segment duration (s) when HLS is off; with HLS on, DASH shares its segments.
    pub dash_fragment: f64,
    /// The MPD's `minimumUpdatePeriod` (s).
    pub dash_update_period: f64,
    /// The MPD's `timeShiftBufferDepth` (s): how much media it lists.
    pub dash_timeshift: f64,
    /// MPD path template; segments are named after it.
    pub dash_mpd_file: String,
}

impl Default for DashConfig {
    fn default() -> Self {
        DashConfig {
            enabled: false,
            dash_fragment: 10.0,
            dash_update_period: 5.0,
            dash_timeshift: 60.0,
            dash_mpd_file: "[app]/[stream].mpd".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlayConfig {
    /// Keep the current GOP so a new player starts on a keyframe at once.
    pub gop_cache: bool,
    /// GOP cache bounds: past either, the cache is dropped until the next keyframe.
    pub gop_cache_max_frames: usize,
    pub gop_cache_max_bytes: usize,
    /// How far (ms of media) a player may fall behind before it skips to a newer keyframe.
    pub queue_length_ms: u64,
    /// Merged writes: a player's pending messages go out together at most this late (ms);
    /// 0 sends every message as it arrives.
    pub mw_latency_ms: u64,
    /// Merged writes: ... or as soon as this many messages are pending.
    pub mw_msgs: usize,
    /// A player whose socket accepts nothing for this long is disconnected (ms).
    pub send_timeout_ms: u64,
}

impl Default for PlayConfig {
    fn default() -> Self {
        PlayConfig {
            gop_cache: true,
            gop_cache_max_frames: 2500,
            gop_cache_max_bytes: 64 * 1024 * 1024,
            queue_length_ms: 10_000,
            mw_latency_ms: 350,
            mw_msgs: 8,
            send_timeout_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublishConfig {
    /// A publisher must send its first media within this (ms).
    pub firstpkt_timeout_ms: u64,
    /// A publisher that sends nothing for this long is disconnected (ms).
    pub normal_timeout_ms: u64,
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig {
            firstpkt_timeout_ms: 20_000,
            normal_timeout_ms: 5_000,
        }
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates config text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(1, |span| line_of(text, span.start));
            ConfigError::Invalid {
                path: path.to_owned(),
                line,
                key: key_at(text, line).unwrap_or_else(|| "(file)".into()),
                message: e.message().to_string(),
            }
        })?;
        config.vhost.entry(DEFAULT_VHOST.to_string()).or_default();
        config
            .validate()
            .map_err(|(key, message)| ConfigError::Invalid {
                path: path.to_owned(),
                line: locate_key(text, &key).unwrap_or(1),
                key,
                message,
            })?;
        for vhost in config.vhost.values_mut() {
            let rules = vhost.security.rules.iter();
            vhost.security.parsed = rules.filter_map(|r| r.parse().ok()).collect();
        }
        Ok(config)
    }

    /// Checks what the types alone don't; the error names the dotted key.
    fn validate(&self) -> Result<(), (String, String)> {
        if let Err(e) = self.rtmp.listen.parse::<SocketAddr>() {
            return Err(("rtmp.listen".into(), format!("not an address:port: {e}")));
        }
        if let Err(e) = self.http_server.listen.parse::<SocketAddr>() {
            return Err((
                "http_server.listen".into(),
                format!("not an address:port: {e}"),
            ));
        }
        if let Err(e) = self.http_api.listen.parse::<SocketAddr>() {
            return Err((
                "http_api.listen".into(),
                format!("not an address:port: {e}"),
            ));
        }
        if let Err(e) = self.srt_server.listen.parse::<SocketAddr>() {
            return Err((
                "srt_server.listen".into(),
                format!("not an address:port: {e}"),
            ));
        }
        if let Err(e) = self.rtc_server.listen.parse::<SocketAddr>() {
            return Err((
                "rtc_server.listen".into(),
                format!("not an address:port: {e}"),
            ));
        }
        if let Err(e) = crate::rtc::candidates::parse_spec(&self.rtc_server.candidate) {
            return Err(("rtc_server.candidate".into(), e.to_string()));
        }
        if self.rtc_server.connect_timeout_ms < 1000 {
            return Err((
                "rtc_server.connect_timeout_ms".into(),
                "must be at least 1000".into(),
            ));
        }
        let srt = &self.srt_server;
        if !srt.passphrase.is_empty() && !(10..=79).contains(&srt.passphrase.len()) {
            return Err((
                "srt_server.passphrase".into(),
                "must be 10 to 79 characters (SRT's limits), or empty for no encryption".into(),
            ));
        }
        if ![16, 24, 32].contains(&srt.pbkeylen) {
            return Err(("srt_server.pbkeylen".into(), "must be 16, 24 or 32".into()));
        }
        if srt.latency_ms > 60_000 {
            return Err((
                "srt_server.latency_ms".into(),
                "must be at most 60000".into(),
            ));
        }
        if srt.peer_idle_timeout_ms < 1000 {
            return Err((
                "srt_server.peer_idle_timeout_ms".into(),
                "must be at least 1000".into(),
            ));
        }
        if srt.default_app.is_empty() || srt.default_app.contains('/') {
            return Err((
                "srt_server.default_app".into(),
                "must be one non-empty path segment".into(),
            ));
        }
        if self.http_api.auth.enabled && self.http_api.auth.username.is_empty() {
            return Err((
                "http_api.auth.username".into(),
                "must be set when auth is enabled".into(),
            ));
        }
        if self.max_connections == 0 {
            return Err(("max_connections".into(), "must be at least 1".into()));
        }
        if !(128..=16 * 1024 * 1024).contains(&self.rtmp.max_chunk_size) {
            return Err((
                "rtmp.max_chunk_size".into(),
                "must be between 128 and 16777216".into(),
            ));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.rtmp.max_message_size) {
            return Err((
                "rtmp.max_message_size".into(),
                "must be between 1024 and 16777216".into(),
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(("log.level".into(), format!("not a log level: {e}")));
        }
        for (name, vhost) in &self.vhost {
            let key = |field: &str| format!("vhost.{name}.{field}");
            if !(128..=65_536).contains(&vhost.chunk_size) {
                return Err((key("chunk_size"), "must be between 128 and 65536".into()));
            }
            if vhost.play.mw_msgs == 0 {
                return Err((key("play.mw_msgs"), "must be at least 1".into()));
            }
            if vhost.play.queue_length_ms < 1000 {
                return Err((
                    key("play.queue_length_ms"),
                    "must be at least 1000 (one second of media)".into(),
                ));
            }
            for url in [
                &vhost.http_hooks.on_connect,
                &vhost.http_hooks.on_close,
                &vhost.http_hooks.on_publish,
                &vhost.http_hooks.on_unpublish,
                &vhost.http_hooks.on_play,
                &vhost.http_hooks.on_stop,
                &vhost.http_hooks.on_hls,
            ]
            .into_iter()
            .flatten()
            {
                if !url.starts_with("http://") {
                    return Err((
                        key("http_hooks"),
                        format!("{url:?}: hook URLs must be http://"),
                    ));
                }
            }
            for rule in &vhost.security.rules {
                if let Err(e) = rule.parse::<crate::security::Rule>() {
                    return Err((key("security.rules"), format!("{rule:?}: {e}")));
                }
            }
            let mount = &vhost.http_remux.mount;
            if !(mount.contains("[app]") && mount.contains("[stream]")) {
                return Err((
                    key("http_remux.mount"),
                    "must contain [app] and [stream]".into(),
                ));
            }
            let hls = &vhost.hls;
            for (field, value, min) in [
                ("hls.hls_fragment", hls.hls_fragment, 0.2),
                ("hls.hls_part", hls.hls_part, 0.1),
                ("dash.dash_fragment", vhost.dash.dash_fragment, 0.2),
                (
                    "dash.dash_update_period",
                    vhost.dash.dash_update_period,
                    0.1,
                ),
            ] {
                if !(min..=3600.0).contains(&value) {
                    return Err((
                        key(field),
                        format!("must be between {min} and 3600 seconds"),
                    ));
                }
            }
            if !(hls.hls_window >= hls.hls_fragment && hls.hls_window <= 86_400.0) {
                return Err((
                    key("hls.hls_window"),
                    "must be at least hls_fragment and at most 86400 seconds".into(),
                ));
            }
            if !(vhost.dash.dash_timeshift >= vhost.dash.dash_fragment
                && vhost.dash.dash_timeshift <= 86_400.0)
            {
                return Err((
                    key("dash.dash_timeshift"),
                    "must be at least dash_fragment and at most 86400 seconds".into(),
                ));
            }
            if hls.hls_ll && hls.hls_part * 2.0 > hls.hls_fragment {
                return Err((
                    key("hls.hls_part"),
                    "must be at most half of hls_fragment".into(),
                ));
            }
            if !(0.0..=86_400.0).contains(&hls.hls_dispose) {
                return Err((key("hls.hls_dispose"), "must be between 0 and 86400".into()));
            }
            for (field, template, needs_seq) in [
                ("hls.hls_m3u8_file", &hls.hls_m3u8_file, false),
                ("hls.hls_ts_file", &hls.hls_ts_file, true),
                ("hls.hls_fmp4_file", &hls.hls_fmp4_file, true),
                ("hls.hls_init_file", &hls.hls_init_file, false),
                ("dash.dash_mpd_file", &vhost.dash.dash_mpd_file, false),
            ] {
                if !template.contains("[stream]") || (needs_seq && !template.contains("[seq]")) {
                    let what = if needs_seq {
                        "[stream] and [seq]"
                    } else {
                        "[stream]"
                    };
                    return Err((key(field), format!("must contain {what}")));
                }
                if template.split('/').any(|part| part == ".." || part == ".") {
                    return Err((key(field), "must not contain . or .. parts".into()));
                }
            }
            if vhost.play.gop_cache_max_frames == 0 {
                return Err((
                    key("play.gop_cache_max_frames"),
                    "must be at least 1".into(),
                ));
            }
        }
        Ok(())
    }

    /// The listen address (validated at load).
    pub fn rtmp_listen(&self) -> SocketAddr {
        self.rtmp.listen.parse().expect("validated at load")
    }

    /// The API listen address, if the HTTP API is enabled (validated at load).
    pub fn api_listen(&self) -> Option<SocketAddr> {
        self.http_api
            .enabled
            .then(|| self.http_api.listen.parse().expect("validated at load"))
    }

    /// The HTTP listen address, if the HTTP server is enabled (validated at load).
    pub fn http_listen(&self) -> Option<SocketAddr> {
        self.http_server
            .enabled
            .then(|| self.http_server.listen.parse().expect("validated at load"))
    }

    /// The SRT listen address, if SRT is enabled (validated at load).
    pub fn srt_listen(&self) -> Option<SocketAddr> {
        self.srt_server
            .enabled
            .then(|| self.srt_server.listen.parse().expect("validated at load"))
    }

    /// The WebRTC listen address, if WebRTC is enabled (validated at load).
    pub fn rtc_listen(&self) -> Option<SocketAddr> {
        self.rtc_server
            .enabled
            .then(|| self.rtc_server.listen.parse().expect("validated at load"))
    }

    /// The settings for a vhost name, falling back to the default vhost like SRS. Returns the
    /// name the stream is filed under.
    pub fn vhost(&self, name: &str) -> (&str, &VhostConfig) {
        match self.vhost.get_key_value(name) {
            Some((key, vhost)) if vhost.enabled => (key, vhost),
            _ => {
                let (key, vhost) = self
                    .vhost
                    .get_key_value(DEFAULT_VHOST)
                    .expect("default vhost always present");
                (key, vhost)
            }
        }
    }

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.rtmp.handshake_timeout_ms)
    }
}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The dotted key a line assigns, from the nearest table header above it.
fn key_at(text: &str, line: usize) -> Option<String> {
    let mut table = String::new();
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if let Some(header) = l.strip_prefix('[') {
            table = header
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string();
        }
        if i + 1 == line {
            if l.starts_with('[') {
                return Some(table);
            }
            let key = l.split('=').next()?.trim().trim_matches('"');
            if key.is_empty() {
                return None;
            }
            return Some(if table.is_empty() {
                key.to_string()
            } else {
                format!("{table}.{key}")
            });
        }
    }
    None
}

/// The line that assigns a dotted key, if the file sets it explicitly.
fn locate_key(text: &str, dotted: &str) -> Option<usize> {
    (1..=text.lines().count()).find(|&line| {
        key_at(text, line).is_some_and(|k| k == dotted && !text_line(text, line).starts_with('['))
    })
}

fn text_line(text: &str, line: usize) -> &str {
    text.lines().nth(line - 1).unwrap_or("").trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn empty_file_has_srs_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.rtmp_listen().port(), 1935);
        assert_eq!(c.max_connections, 1000);
        let (name, vhost) = c.vhost("anything.example.com");
        assert_eq!(name, DEFAULT_VHOST);
        assert_eq!(vhost.chunk_size, 60_000);
        assert!(vhost.play.gop_cache);
        assert_eq!(vhost.play.mw_latency_ms, 350);
    }

    #[test]
    fn shipped_configs_are_valid() {
        for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/conf")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err = parse("workers = 2\n\n[rtmp]\nlisten = \"0.0.0.0:1935\"\nlisten_typo = 3\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("test.toml:5: rtmp.listen_typo: unknown field"),
            "{err}"
        );
    }

    #[test]
    fn bad_value_type_names_the_key() {
        let err = parse("[vhost.__defaultVhost__.play]\nmw_latency_ms = \"fast\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("test.toml:2: vhost.__defaultVhost__.play.mw_latency_ms:"),
            "{err}"
        );
    }

    #[test]
    fn out_of_range_value_names_the_key() {
        let err = parse("io = \"epoll\"\n[vhost.live]\nchunk_size = 64\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("test.toml:3: vhost.live.chunk_size: must be"),
            "{err}"
        );
        let err = parse("[rtmp]\nlisten = \"nowhere\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("test.toml:2: rtmp.listen: not an address"),
            "{err}"
        );
        let err = parse("io = \"kqueue\"\n").unwrap_err().to_string();
        assert!(err.starts_with("test.toml:1: io:"), "{err}");
    }

    #[test]
    fn configured_vhost_is_used_and_disabled_falls_back() {
        let c = parse("[vhost.live]\nchunk_size = 4096\n[vhost.off]\nenabled = false\n").unwrap();
        assert_eq!(c.vhost("live").1.chunk_size, 4096);
        assert_eq!(c.vhost("off").0, DEFAULT_VHOST);
    }
}
