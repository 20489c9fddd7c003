//! Shared harness of the end-to-end tests: the real `sluice` binary on free loopback ports (RTMP
//! and HTTP) with a generated config, its JSON log captured line by line, ffmpeg publishers,
//! ffprobe/ffmpeg probes parsed from JSON, (in [`rtmp_client`]) a small RTMP client that records
//! what a player receives and when, and (in [`http_client`]) an HTTP/1.x and WebSocket client:
//! plain requests, pipelining, and live FLV viewers recorded the same way. SRT: the server's UDP
//! port ([`Server::srt_port`], always in the config), SRT tools and URLs (in [`srt`]), and a
//! lossy UDP relay (in [`udp_relay`]).
//!
//! Everything is bounded: every wait has a deadline, every child process is killed on drop.

#![allow(dead_code)]

pub mod api_client;
pub mod browser;
pub mod hls;
pub mod hook_server;
pub mod http_client;
pub mod netns;
pub mod rtmp_client;
pub mod srt;
pub mod udp_relay;
pub mod webrtc;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use serde_json::Value;

/// How long the server may take to log "sluice started".
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// The server binary under test.
pub fn sluice_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sluice")
}

// ---------------------------------------------------------------------------------------------
// Backends, ports, temp dirs, waiting

/// An I/O backend of the server (`--io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Io {
    Uring,
    Epoll,
}

impl Io {
    pub fn name(self) -> &'static str {
        match self {
            Io::Uring => "uring",
            Io::Epoll => "epoll",
        }
    }
}

impl std::fmt::Display for Io {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The backends every data-plane test runs on: io_uring (unless this kernel cannot, which is
/// printed) and epoll.
pub fn backends() -> Vec<Io> {
    let mut list = Vec::new();
    match sluice_ring::uring_support() {
        Ok(()) => list.push(Io::Uring),
        Err(why) => eprintln!("NOTE: skipping the io_uring backend on this machine: {why}"),
    }
    list.push(Io::Epoll);
    list
}

/// Runs `test` on every backend in turn. A failure on one backend does not skip the others:
/// all of them run, then the test fails naming each backend that failed.
pub fn on_each_backend(test: impl Fn(Io)) {
    let mut failed = Vec::new();
    for io in backends() {
        let started = Instant::now();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| test(io))) {
            Ok(()) => eprintln!("[{io}] passed in {:.1?}", started.elapsed()),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "(no message)".into());
                eprintln!("[{io}] FAILED after {:.1?}", started.elapsed());
                failed.push(format!("--io {io}: {message}"));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "failed on {} backend(s):\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// A loopback port nobody listens on right now (bound, read, released). The server binds it
/// with `SO_REUSEPORT` on every worker, so port 0 cannot go in its config.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// A loopback UDP port nobody uses right now (bound, read, released): the server's SRT port,
/// which it binds with `SO_REUSEPORT` on every worker.
pub fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind udp 127.0.0.1:0");
    socket.local_addr().expect("local addr").port()
}

/// A directory removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "sluice-test-{tag}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Polls `condition` every 20 ms until it holds (true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends a signal to a process.
pub fn send_signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) with a pid we spawned ourselves and a valid signal number.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// Waits for a child to exit, at most `timeout`.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => return None,
        }
    }
}

/// Kills a child (SIGKILL) and reaps it.
pub fn kill_child(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// Whether a socket error only means a read or write timeout ran out (or a signal cut it
/// short): the caller goes round again.
pub fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    )
}

// ---------------------------------------------------------------------------------------------
// Server config

/// The config a test server runs with: JSON logs, a loopback listen address, and whatever keys a
/// test sets. Rendered as TOML, one table per section.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub workers: usize,
    top: Vec<(String, String)>,
    rtmp: Vec<(String, String)>,
    vhost: Vec<(String, String)>,
    play: Vec<(String, String)>,
    publish: Vec<(String, String)>,
    http: Vec<(String, String)>,
    http_remux: Vec<(String, String)>,
    api: Vec<(String, String)>,
    hooks: Vec<(String, String)>,
    security: Vec<(String, String)>,
    hls: Vec<(String, String)>,
    dash: Vec<(String, String)>,
    srt: Vec<(String, String)>,
    rtc: Vec<(String, String)>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            workers: 2,
            top: Vec::new(),
            rtmp: Vec::new(),
            vhost: Vec::new(),
            play: Vec::new(),
            publish: Vec::new(),
            http: Vec::new(),
            http_remux: Vec::new(),
            api: Vec::new(),
            hooks: Vec::new(),
            security: Vec::new(),
            hls: Vec::new(),
            dash: Vec::new(),
            srt: Vec::new(),
            rtc: Vec::new(),
        }
    }
}

impl ServerConfig {
    pub fn new() -> ServerConfig {
        ServerConfig::default()
    }

    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// A top-level key; `value` is TOML (`"50"`, `"\"epoll\""`).
    pub fn top(mut self, key: &str, value: impl ToString) -> Self {
        self.top.push((key.into(), value.to_string()));
        self
    }

    /// A key of `[rtmp]` (besides `listen`).
    pub fn rtmp(mut self, key: &str, value: impl ToString) -> Self {
        self.rtmp.push((key.into(), value.to_string()));
        self
    }

    /// A key of `[vhost.__defaultVhost__]`.
    pub fn vhost(mut self, key: &str, value: impl ToString) -> Self {
        self.vhost.push((key.into(), value.to_string()));
        self
    }

    /// A key of `[vhost.__defaultVhost__.play]`.
    pub fn play(mut self, key: &str, value: impl ToString) -> Self {
        self.play.push((key.into(), value.to_string()));
        self
    }

    /// A key of `[vhost.__defaultVhost__.publish]`.
    pub fn publish(mut self, key: &str, value: impl ToString) -> Self {
        self.publish.push((key.into(), value.to_string()));
        self
    }

    /// A key of `[http_server]` (besides `listen`); `value` is TOML.
    pub fn http(mut self, key: &str, value: impl ToString) -> Self {
        self.http.push((key.into(), value.to_string()));
        self
    }

    /// `[http_server] dir`: the static files' root.
    pub fn http_dir(self, dir: &Path) -> Self {
        self.http("dir", toml_string(&dir.display().to_string()))
    }

    /// A key of `[vhost.__defaultVhost__.http_remux]`.
    pub fn http_remux(mut self, key: &str, value: impl ToString) -> Self {
        self.http_remux.push((key.into(), value.to_string()));
        self
    }

    /// A key of `[http_api]` (besides `listen`); `value` is TOML. Dotted keys reach its
    /// sub-tables (`auth.enabled`).
    pub fn api(mut self, key: &str, value: impl ToString) -> Self {
        self.api.push((key.into(), value.to_string()));
        self
    }

    /// A key of `[vhost.__defaultVhost__.http_hooks]`; `value` is TOML.
    pub fn hooks(mut self, key: &str, value: impl ToString) -> Self {
        self.hooks.push((key.into(), value.to_string()));
        self
    }

    /// A key of `[vhost.__defaultVhost__.security]`; `value` is TOML.
    pub fn security(mut self, key: &str, value: impl ToString) -> Self {
        self.security.push((key.into(), value.to_string()));
        self
    }

    /// A key of `[vhost.__defaultVhost__.hls]`; `value` is TOML.
    pub fn hls(mut self, key: &str, value: impl ToString) -> Self {
        self.hls.push((key.into(), value.to_string()));
        self
    }

    /// A key of `[vhost.__defaultVhost__.dash]`; `value` is TOML.
    pub fn dash(mut self, key: &str, value: impl ToString) -> Self {
        self.dash.push((key.into(), value.to_string()));
        self
    }

    /// A key of `[srt_server]` (besides `listen`); `value` is TOML.
    pub fn srt(mut self, key: &str, value: impl ToString) -> Self {
        self.srt.push((key.into(), value.to_string()));
        self
    }

    /// A key of `[rtc_server]` (besides `listen` and `candidate`); `value` is TOML.
    pub fn rtc(mut self, key: &str, value: impl ToString) -> Self {
        self.rtc.push((key.into(), value.to_string()));
        self
    }

    /// The config with RTMP on `port` and the HTTP server and API left at their default
    /// addresses (for `sluice -t`, which binds nothing). SRT listens on UDP `port` of loopback.
    pub fn render(&self, port: u16) -> String {
        self.render_with(port, None, None)
    }

    /// The config with RTMP on `port` and, if given, the HTTP server on `http_port` and the
    /// HTTP API on `api_port`. SRT listens on UDP `port` of loopback.
    pub fn render_with(&self, port: u16, http_port: Option<u16>, api_port: Option<u16>) -> String {
        self.render_full(port, http_port, api_port, (port, port))
    }

    /// The config with RTMP on `port`, SRT and WebRTC on UDP `udp_ports` and, if given, the
    /// HTTP server on `http_port` and the HTTP API on `api_port`. The SRT and WebRTC listen
    /// addresses are always written: the server's defaults (`0.0.0.0:10080`, `0.0.0.0:8000`,
    /// bound with `SO_REUSEPORT`) would be shared by every test server at once. WebRTC offers
    /// only a loopback candidate: tests never use an interface address of the machine.
    pub fn render_full(
        &self,
        port: u16,
        http_port: Option<u16>,
        api_port: Option<u16>,
        udp_ports: (u16, u16),
    ) -> String {
        let (srt_port, rtc_port) = udp_ports;
        let mut out = String::from("# generated by tests/common\n");
        for (k, v) in &self.top {
            out += &format!("{k} = {v}\n");
        }
        out += "\n[log]\nlevel = \"info\"\nformat = \"json\"\n";
        out += &format!("\n[rtmp]\nlisten = \"127.0.0.1:{port}\"\n");
        for (k, v) in &self.rtmp {
            out += &format!("{k} = {v}\n");
        }
        if http_port.is_some() || !self.http.is_empty() {
            out += "\n[http_server]\n";
            if let Some(http_port) = http_port {
                out += &format!("listen = \"127.0.0.1:{http_port}\"\n");
            }
            for (k, v) in &self.http {
                out += &format!("{k} = {v}\n");
            }
        }
        if api_port.is_some() || !self.api.is_empty() {
            out += "\n[http_api]\n";
            if let Some(api_port) = api_port {
                out += &format!("listen = \"127.0.0.1:{api_port}\"\n");
            }
            for (k, v) in &self.api {
                out += &format!("{k} = {v}\n");
            }
        }
        out += &format!("\n[srt_server]\nlisten = \"127.0.0.1:{srt_port}\"\n");
        for (k, v) in &self.srt {
            out += &format!("{k} = {v}\n");
        }
        out += &format!(
            "\n[rtc_server]\nlisten = \"127.0.0.1:{rtc_port}\"\ncandidate = \"127.0.0.1\"\n"
        );
        for (k, v) in &self.rtc {
            out += &format!("{k} = {v}\n");
        }
        let sections = [
            ("vhost.__defaultVhost__", &self.vhost),
            ("vhost.__defaultVhost__.play", &self.play),
            ("vhost.__defaultVhost__.publish", &self.publish),
            ("vhost.__defaultVhost__.http_remux", &self.http_remux),
            ("vhost.__defaultVhost__.http_hooks", &self.hooks),
            ("vhost.__defaultVhost__.security", &self.security),
            ("vhost.__defaultVhost__.hls", &self.hls),
            ("vhost.__defaultVhost__.dash", &self.dash),
        ];
        for (name, keys) in sections {
            if !keys.is_empty() {
                out += &format!("\n[{name}]\n");
                for (k, v) in keys {
                    out += &format!("{k} = {v}\n");
                }
            }
        }
        out
    }
}

/// A TOML basic string.
pub fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            c if c.is_control() => out += &format!("\\u{:04X}", c as u32),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------------------------------------
// Server process and its log

/// One JSON log line of the server.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// When the harness read it.
    pub at: Instant,
    pub level: String,
    pub message: String,
    pub fields: serde_json::Map<String, Value>,
}

impl LogLine {
    fn parse(line: &str, at: Instant) -> Option<LogLine> {
        let value: Value = serde_json::from_str(line).ok()?;
        let fields = value.get("fields")?.as_object()?.clone();
        Some(LogLine {
            at,
            level: value.get("level")?.as_str()?.to_string(),
            message: fields.get("message")?.as_str()?.to_string(),
            fields,
        })
    }

    pub fn is(&self, message: &str) -> bool {
        self.message == message
    }

    /// A field as text (strings as they are, numbers and bools rendered).
    pub fn str(&self, key: &str) -> Option<String> {
        match self.fields.get(key)? {
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }

    pub fn u64(&self, key: &str) -> Option<u64> {
        match self.fields.get(key)? {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }

    pub fn client(&self) -> Option<String> {
        self.str("client")
    }

    pub fn peer(&self) -> Option<SocketAddr> {
        self.str("peer")?.parse().ok()
    }
}

impl std::fmt::Display for LogLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.level, Value::Object(self.fields.clone()))
    }
}

#[derive(Default)]
struct Captured {
    lines: Vec<LogLine>,
    raw: Vec<String>,
    eof: bool,
}

/// A running `sluice` with a generated config. Stopped on drop (SIGTERM, then SIGKILL after
/// 3 s); if the test is panicking, the tail of its stderr is printed.
pub struct Server {
    /// The RTMP port.
    pub port: u16,
    /// The HTTP (data plane: live streams and static files) port.
    pub http_port: u16,
    /// The HTTP API (control plane) port.
    pub api_port: u16,
    /// The SRT port (UDP).
    pub srt_port: u16,
    /// The WebRTC media port (UDP).
    pub rtc_port: u16,
    pub io: Io,
    pub workers: usize,
    pub config_path: PathBuf,
    child: Option<Child>,
    captured: Arc<Mutex<Captured>>,
    reader: Option<JoinHandle<()>>,
    _dir: TempDir,
}

impl Server {
    /// Starts the server on `io` and waits for "sluice started". Retries on another port if
    /// the chosen one was taken meanwhile.
    pub fn start(io: Io, config: &ServerConfig) -> Server {
        let mut last_error = String::new();
        for _attempt in 0..3 {
            match Server::try_start(io, config) {
                Ok(server) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("server did not start on --io {io}: {last_error}");
    }

    fn try_start(io: Io, config: &ServerConfig) -> Result<Server, String> {
        let port = free_port();
        let mut http_port = free_port();
        while http_port == port {
            http_port = free_port();
        }
        let mut api_port = free_port();
        while api_port == port || api_port == http_port {
            api_port = free_port();
        }
        let srt_port = free_udp_port();
        let mut rtc_port = free_udp_port();
        while rtc_port == srt_port {
            rtc_port = free_udp_port();
        }
        let dir = TempDir::new("server");
        let config_path = dir.join("sluice.toml");
        std::fs::write(
            &config_path,
            config.render_full(port, Some(http_port), Some(api_port), (srt_port, rtc_port)),
        )
        .expect("write config");
        let mut child = Command::new(sluice_bin())
            .arg("-c")
            .arg(&config_path)
            .arg("--io")
            .arg(io.name())
            .arg("--workers")
            .arg(config.workers.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", sluice_bin()))?;
        let stderr = child.stderr.take().expect("piped stderr");
        let captured = Arc::new(Mutex::new(Captured::default()));
        let sink = captured.clone();
        let reader = std::thread::spawn(move || {
            let mut lines = BufReader::new(stderr);
            let mut line = String::new();
            loop {
                line.clear();
                match lines.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = line.trim_end().to_string();
                        let parsed = LogLine::parse(&text, Instant::now());
                        let mut c = sink.lock().unwrap_or_else(|e| e.into_inner());
                        if let Some(parsed) = parsed {
                            c.lines.push(parsed);
                        }
                        c.raw.push(text);
                    }
                }
            }
            sink.lock().unwrap_or_else(|e| e.into_inner()).eof = true;
        });
        let mut server = Server {
            port,
            http_port,
            api_port,
            srt_port,
            rtc_port,
            io,
            workers: config.workers,
            config_path,
            child: Some(child),
            captured,
            reader: Some(reader),
            _dir: dir,
        };
        let started = wait_until(STARTUP_TIMEOUT, || {
            server.find_log(|l| l.is("sluice started")).is_some() || server.stderr_eof()
        });
        if started && let Some(line) = server.find_log(|l| l.is("sluice started")) {
            assert_eq!(
                line.str("io").as_deref(),
                Some(io.name()),
                "server started on the wrong backend: {line}"
            );
            return Ok(server);
        }
        let stderr = server.stderr_text();
        server.kill();
        Err(format!("no \"sluice started\" log line; stderr:\n{stderr}"))
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `rtmp://127.0.0.1:PORT/live/NAME`
    pub fn url(&self, stream: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{stream}", self.port)
    }

    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.http_port))
    }

    /// `http://127.0.0.1:HTTP_PORT{path}` (`path` starts with `/`).
    pub fn http_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    /// `http://127.0.0.1:HTTP_PORT/live/NAME.EXT`: a live stream over HTTP.
    pub fn live_url(&self, stream: &str, extension: &str) -> String {
        self.http_url(&format!("/live/{stream}.{extension}"))
    }

    pub fn srt_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.srt_port))
    }

    /// `srt://127.0.0.1:SRT_PORT?streamid=STREAMID` with `options` appended (`latency=120000`,
    /// ...). `streamid` goes in as written (`#!::r=live/s,m=publish`): ffmpeg and
    /// srt-live-transmit both take it so.
    pub fn srt_url(&self, streamid: &str, options: &[&str]) -> String {
        srt::url(self.srt_addr(), streamid, options)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn stderr_eof(&self) -> bool {
        self.captured.lock().unwrap_or_else(|e| e.into_inner()).eof
    }

    /// Every JSON log line so far.
    pub fn logs(&self) -> Vec<LogLine> {
        self.captured
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .lines
            .clone()
    }

    pub fn find_logs(&self, pred: impl Fn(&LogLine) -> bool) -> Vec<LogLine> {
        let c = self.captured.lock().unwrap_or_else(|e| e.into_inner());
        c.lines.iter().filter(|l| pred(l)).cloned().collect()
    }

    pub fn find_log(&self, pred: impl Fn(&LogLine) -> bool) -> Option<LogLine> {
        let c = self.captured.lock().unwrap_or_else(|e| e.into_inner());
        c.lines.iter().find(|l| pred(l)).cloned()
    }

    /// Waits for a log line matching `pred` (already logged or to come).
    pub fn wait_for_log(
        &self,
        pred: impl Fn(&LogLine) -> bool,
        timeout: Duration,
    ) -> Option<LogLine> {
        let mut found = None;
        wait_until(timeout, || {
            found = self.find_log(&pred);
            found.is_some()
        });
        found
    }

    /// Like [`wait_for_log`](Self::wait_for_log), panicking with `what` and the log tail.
    pub fn expect_log(
        &self,
        what: &str,
        pred: impl Fn(&LogLine) -> bool,
        timeout: Duration,
    ) -> LogLine {
        self.wait_for_log(pred, timeout).unwrap_or_else(|| {
            panic!(
                "[{}] expected log line not seen within {timeout:?}: {what}\n--- server log tail ---\n{}",
                self.io,
                self.stderr_tail(40)
            )
        })
    }

    /// All of stderr so far (JSON and anything else, e.g. a panic message).
    pub fn stderr_text(&self) -> String {
        self.captured
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .raw
            .join("\n")
    }

    pub fn stderr_tail(&self, lines: usize) -> String {
        let c = self.captured.lock().unwrap_or_else(|e| e.into_inner());
        let start = c.raw.len().saturating_sub(lines);
        c.raw[start..].join("\n")
    }

    /// Fails if the server printed a panic.
    pub fn assert_no_panic(&self) {
        let text = self.stderr_text();
        assert!(
            !text.contains("panicked"),
            "[{}] the server panicked:\n{}",
            self.io,
            text.lines()
                .filter(|l| l.contains("panicked") || !l.starts_with('{'))
                .take(20)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    /// The process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    pub fn signal(&self, signal: i32) {
        if let Some(child) = &self.child {
            send_signal(child.id(), signal);
        }
    }

    /// Waits for the process to exit; then waits for its stderr to be read to the end.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let status = wait_child(self.child.as_mut()?, timeout)?;
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        Some(status)
    }

    fn kill(&mut self) {
        if let Some(child) = &mut self.child {
            kill_child(child);
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }

    /// The "client connected" line of the connection from `peer` (our local address).
    pub fn connected_line(&self, peer: SocketAddr) -> Option<LogLine> {
        self.find_log(|l| l.is("client connected") && l.peer() == Some(peer))
    }

    /// The worker a connection from `peer` landed on.
    pub fn worker_of(&self, peer: SocketAddr) -> Option<u64> {
        self.connected_line(peer)?.u64("worker")
    }

    /// The client id the server gave the connection from `peer`.
    pub fn client_id_of(&self, peer: SocketAddr) -> Option<String> {
        self.connected_line(peer)?.client()
    }

    /// The client id the server gave the connection from `peer`, waiting up to 5 s for its
    /// "client connected" line.
    pub fn wait_client_id(&self, peer: SocketAddr) -> String {
        self.expect_log(
            &format!("client connected from {peer}"),
            |l| l.is("client connected") && l.peer() == Some(peer),
            Duration::from_secs(5),
        )
        .client()
        .expect("a client id")
    }

    /// The peer address of the client publishing `app/stream` (from "publish started").
    pub fn publisher_peer(&self, path: &str) -> Option<SocketAddr> {
        self.find_log(|l| l.is("publish started") && l.str("stream").as_deref() == Some(path))?
            .peer()
    }

    /// Waits until `app/stream` is being published (returns the log line).
    pub fn expect_publish(&self, path: &str, timeout: Duration) -> LogLine {
        self.expect_log(
            &format!("publish started for {path}"),
            |l| l.is("publish started") && l.str("stream").as_deref() == Some(path),
            timeout,
        )
    }

    /// Count of log lines by message (for failure reports).
    pub fn message_counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for line in self.logs() {
            *counts.entry(line.message).or_insert(0) += 1;
        }
        counts
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            if let Ok(None) = child.try_wait() {
                send_signal(child.id(), libc::SIGTERM);
                if wait_child(child, Duration::from_secs(3)).is_none() {
                    eprintln!("[{}] server ignored SIGTERM for 3 s; killing it", self.io);
                }
            }
            kill_child(child);
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- [{}] server stderr (last 60 lines) ---\n{}\n--- end ---",
                self.io,
                self.stderr_tail(60)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ffmpeg and ffprobe

/// Fails with a clear message if ffmpeg/ffprobe are missing (ci/test installs them).
pub fn require_ffmpeg() {
    for tool in ["ffmpeg", "ffprobe"] {
        require_tool(tool, "ffmpeg");
    }
}

/// Fails with a clear message if `tool -version` does not run and exit 0: the tool is missing
/// (ci/test installs it from the Debian package `package`).
pub fn require_tool(tool: &str, package: &str) {
    let ok = Command::new(tool)
        .arg("-version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{tool} is not installed (ci/test installs it: apt-get install {package})"
    );
}

/// What an ffmpeg publisher sends: `testsrc2` video (H.264, keyframe every `gop` frames) and a
/// `sine` tone (AAC), in real time, for at most `seconds`.
#[derive(Debug, Clone)]
pub struct PublishOpts {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub gop: u32,
    pub sample_rate: u32,
    pub seconds: f64,
    /// x264 constant rate factor (lower = more bytes); None = x264's default (23).
    pub crf: Option<u32>,
    /// The video encoder: `libx264` (H.264) unless set (`libx265` for H.265).
    pub video_encoder: &'static str,
}

impl Default for PublishOpts {
    fn default() -> Self {
        PublishOpts {
            width: 320,
            height: 240,
            fps: 30,
            gop: 30,
            sample_rate: 44_100,
            seconds: 20.0,
            crf: None,
            video_encoder: "libx264",
        }
    }
}

impl PublishOpts {
    pub fn seconds(mut self, seconds: f64) -> Self {
        self.seconds = seconds;
        self
    }

    pub fn size(mut self, width: u32, height: u32) -> Self {
        self.width = width;
        self.height = height;
        self
    }

    /// The video encoder (`libx265`, ...).
    pub fn encoder(mut self, video_encoder: &'static str) -> Self {
        self.video_encoder = video_encoder;
        self
    }
}

/// The ffmpeg command line of a publisher: `opts`' `testsrc2` video and `sine` tone, encoded in
/// real time for `opts.seconds`, written as `format` to `output` (a URL, a file, or `-` for
/// stdout). Stdio is left to the caller.
pub fn ffmpeg_publish_command(output: &str, format: &str, opts: &PublishOpts) -> Command {
    let video = format!(
        "testsrc2=size={}x{}:rate={}",
        opts.width, opts.height, opts.fps
    );
    let audio = format!("sine=frequency=440:sample_rate={}", opts.sample_rate);
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", &video, "-f", "lavfi", "-i", &audio])
        .args(["-t", &format!("{}", opts.seconds)])
        .args([
            "-c:v",
            opts.video_encoder,
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
        ])
        .args(["-g", &opts.gop.to_string(), "-pix_fmt", "yuv420p"])
        .args(
            opts.crf
                .map(|crf| ["-crf".to_string(), crf.to_string()])
                .into_iter()
                .flatten(),
        )
        .args(
            (opts.video_encoder == "libx265")
                .then_some(["-x265-params", "log-level=error"])
                .into_iter()
                .flatten(),
        )
        .args(["-c:a", "aac", "-f", format, output]);
    cmd
}

/// An ffmpeg process publishing to the server. Killed on drop.
pub struct FfmpegPublisher {
    pub url: String,
    pub opts: PublishOpts,
    pub started: Instant,
    child: Child,
    log_path: PathBuf,
    _dir: TempDir,
}

impl FfmpegPublisher {
    pub fn start(server: &Server, stream: &str, opts: PublishOpts) -> FfmpegPublisher {
        FfmpegPublisher::start_url(&server.url(stream), "flv", opts)
    }

    /// Publishes to any URL in any container: `("srt://...", "mpegts")`.
    pub fn start_url(url: &str, format: &str, opts: PublishOpts) -> FfmpegPublisher {
        require_ffmpeg();
        let dir = TempDir::new("ffmpeg");
        let log_path = dir.join("ffmpeg.log");
        let log = std::fs::File::create(&log_path).expect("create ffmpeg log");
        let url = url.to_string();
        let child = ffmpeg_publish_command(&url, format, &opts)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("run ffmpeg");
        FfmpegPublisher {
            url,
            opts,
            started: Instant::now(),
            child,
            log_path,
            _dir: dir,
        }
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_child(&mut self.child, timeout)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL: the TCP connection just goes away, as with a crashed encoder.
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What ffmpeg printed (errors only).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for FfmpegPublisher {
    fn drop(&mut self) {
        kill_child(&mut self.child);
    }
}

/// A finished (or timed-out and killed) command.
#[derive(Debug)]
pub struct Output {
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

/// Runs a command with a time limit; on timeout it is killed and `status` is `None`.
pub fn run_with_timeout(mut command: Command, timeout: Duration) -> Output {
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let status = wait_child(&mut child, timeout);
    if status.is_none() {
        kill_child(&mut child);
    }
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        elapsed: started.elapsed(),
    }
}

/// `ffprobe -show_streams` of a URL or file: the streams array.
pub fn ffprobe_streams(input: &str, timeout: Duration) -> Vec<Value> {
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-v", "error", "-show_streams", "-of", "json", input]);
    let out = run_with_timeout(cmd, timeout);
    assert!(out.success(), "ffprobe {input} failed: {out:?}");
    let json: Value = serde_json::from_str(&out.stdout).expect("ffprobe JSON");
    json["streams"].as_array().cloned().unwrap_or_default()
}

/// ffprobe on a URL or file (20 s at most): exactly two streams, `video_codec` 320x240 and AAC
/// 44.1 kHz (see [`assert_av_streams`]).
pub fn probe_av(io: Io, input: &str, video_codec: &str) {
    let streams = ffprobe_streams(input, Duration::from_secs(20));
    assert_eq!(
        streams.len(),
        2,
        "[{io}] {input}: ffprobe streams: {streams:#?}"
    );
    assert_av_streams(io, input, &streams, video_codec);
}

/// The first stream of `kind` (`video`, `audio`) among ffprobe's `streams` of `what`.
pub fn find_stream<'a>(io: Io, streams: &'a [Value], kind: &str, what: &str) -> &'a Value {
    streams
        .iter()
        .find(|s| s["codec_type"] == kind)
        .unwrap_or_else(|| panic!("[{io}] {what}: no {kind} stream: {streams:#?}"))
}

/// ffprobe's `streams` of `input` hold what the publishers send: `video_codec` 320x240 and AAC
/// 44.1 kHz. Returns the video and the audio stream.
pub fn assert_av_streams<'a>(
    io: Io,
    input: &str,
    streams: &'a [Value],
    video_codec: &str,
) -> (&'a Value, &'a Value) {
    let video = find_stream(io, streams, "video", input);
    let audio = find_stream(io, streams, "audio", input);
    assert_eq!(
        video["codec_name"], video_codec,
        "[{io}] {input}: {video:#?}"
    );
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(320), Some(240)),
        "[{io}] {input}: {video:#?}"
    );
    assert_eq!(audio["codec_name"], "aac", "[{io}] {input}: {audio:#?}");
    assert_eq!(audio["sample_rate"], "44100", "[{io}] {input}: {audio:#?}");
    (video, audio)
}

/// One packet of `ffprobe -show_packets`.
#[derive(Debug, Clone)]
pub struct Packet {
    pub codec_type: String,
    pub stream_index: u64,
    /// Decode timestamp in the stream's time base (FLV: ms; MPEG-TS: 1/90000 s).
    pub dts: Option<i64>,
    pub pts: Option<i64>,
    /// Decode timestamp in seconds, whatever the container.
    pub dts_time: Option<f64>,
    pub keyframe: bool,
    pub size: u64,
}

/// `ffprobe -show_packets` of a file.
pub fn ffprobe_packets(file: &Path) -> Vec<Packet> {
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-v", "error", "-show_packets", "-of", "json"])
        .arg(file);
    let out = run_with_timeout(cmd, Duration::from_secs(30));
    assert!(
        out.success(),
        "ffprobe -show_packets {file:?} failed: {out:?}"
    );
    let json: Value = serde_json::from_str(&out.stdout).expect("ffprobe JSON");
    let num = |v: &Value| -> Option<i64> {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    };
    json["packets"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| Packet {
            codec_type: p["codec_type"].as_str().unwrap_or("").to_string(),
            stream_index: p["stream_index"].as_u64().unwrap_or(u64::MAX),
            dts: num(&p["dts"]),
            pts: num(&p["pts"]),
            dts_time: p["dts_time"]
                .as_f64()
                .or_else(|| p["dts_time"].as_str().and_then(|s| s.parse().ok())),
            keyframe: p["flags"].as_str().is_some_and(|f| f.starts_with('K')),
            size: num(&p["size"]).unwrap_or(0) as u64,
        })
        .collect()
}

/// The decode times (s) of one track's packets (`kind`: `video`, `audio`).
pub fn dts_of(packets: &[Packet], kind: &str) -> Vec<f64> {
    packets
        .iter()
        .filter(|p| p.codec_type == kind)
        .filter_map(|p| p.dts_time)
        .collect()
}

/// The first video packet of `packets` (of `what`: a recording, a segment) is a keyframe.
pub fn assert_starts_on_keyframe(io: Io, what: &str, packets: &[Packet]) {
    let first_video = packets
        .iter()
        .find(|p| p.codec_type == "video")
        .unwrap_or_else(|| panic!("[{io}] {what}: no video packets"));
    assert!(
        first_video.keyframe,
        "[{io}] {what}: the first video packet is not a keyframe: {first_video:?}"
    );
}

/// `ffprobe -count_frames`: decoded frames per codec type (decodes the whole file).
pub fn ffprobe_frame_counts(file: &Path) -> HashMap<String, u64> {
    let mut cmd = Command::new("ffprobe");
    cmd.args([
        "-v",
        "error",
        "-count_frames",
        "-show_streams",
        "-of",
        "json",
    ])
    .arg(file);
    let out = run_with_timeout(cmd, Duration::from_secs(30));
    assert!(
        out.success(),
        "ffprobe -count_frames {file:?} failed: {out:?}"
    );
    let json: Value = serde_json::from_str(&out.stdout).expect("ffprobe JSON");
    let mut counts = HashMap::new();
    for stream in json["streams"].as_array().cloned().unwrap_or_default() {
        let kind = stream["codec_type"].as_str().unwrap_or("").to_string();
        let n = stream["nb_read_frames"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        *counts.entry(kind).or_insert(0) += n;
    }
    counts
}

/// Records `seconds` of a stream with `ffmpeg -i URL -t SECONDS -c copy FILE.flv`.
pub fn ffmpeg_record(url: &str, seconds: f64, file: &Path, timeout: Duration) -> Output {
    ffmpeg_record_as(url, seconds, file, "flv", timeout)
}

/// Records `seconds` of a stream with `ffmpeg -i URL -t SECONDS -c copy -f FORMAT FILE`
/// (`flv`, `mpegts`, `adts`, ...).
pub fn ffmpeg_record_as(
    url: &str,
    seconds: f64,
    file: &Path,
    format: &str,
    timeout: Duration,
) -> Output {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(["-i", url])
        .args(["-t", &format!("{seconds}"), "-c", "copy", "-f", format])
        .arg(file);
    run_with_timeout(cmd, timeout)
}
