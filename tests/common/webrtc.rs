//! WebRTC clients for the tests: aiortc (PyPI, in the virtualenv `ci/test` makes) driven by
//! `tests/webrtc/whip_publish.py` and `whep_play.py`, which gather loopback host candidates only
//! and refuse to run if any other address shows up in an offer or answer. Each prints one JSON
//! line (what it sent or decoded); see the scripts' headers.
//!
//! Without that Python, a WebRTC test prints a loud SKIP and passes — unless
//! `SLUICE_REQUIRE_AIORTC=1` (ci/test sets it after installing aiortc), then it fails.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{Server, kill_child, wait_child};

/// The Python with aiortc: `SLUICE_PYTHON`, else ci/test's virtualenv.
pub fn python() -> Option<PathBuf> {
    let candidate = std::env::var_os("SLUICE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ci/.cache/venv/bin/python")
        });
    let works = Command::new(&candidate)
        .args(["-c", "import aiortc"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    works.then_some(candidate)
}

/// True when aiortc can run; otherwise skips loudly (or fails with `SLUICE_REQUIRE_AIORTC=1`).
pub fn available(test: &str) -> bool {
    if python().is_some() {
        return true;
    }
    let why = "no Python with aiortc (run ci/test, or set SLUICE_PYTHON)";
    assert!(
        std::env::var("SLUICE_REQUIRE_AIORTC").as_deref() != Ok("1"),
        "SLUICE_REQUIRE_AIORTC=1 but {test} cannot run: {why}"
    );
    eprintln!("\n################################################################");
    eprintln!("### SKIP {test}: {why}");
    eprintln!("### (set SLUICE_REQUIRE_AIORTC=1 to make this a failure)");
    eprintln!("################################################################\n");
    false
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/webrtc")
        .join(name)
}

/// The WHIP (`whip`) or WHEP (`whep`) URL of `app/stream` on the server's API.
pub fn url(server: &Server, endpoint: &str, app_stream: &str) -> String {
    let (app, stream) = app_stream.split_once('/').unwrap_or(("live", app_stream));
    format!(
        "http://127.0.0.1:{}/rtc/v1/{endpoint}/?app={app}&stream={stream}",
        server.api_port
    )
}

/// A WHIP publisher (aiortc: H.264 320x240 at 25 fps with an IDR every second, and a 440 Hz
/// Opus tone) sending for `seconds` once connected, then DELETEing its session.
pub struct WhipPublisher {
    child: Option<Child>,
}

impl WhipPublisher {
    pub fn start(server: &Server, app_stream: &str, seconds: f64, extra: &[&str]) -> WhipPublisher {
        let python = python().expect("aiortc is available (checked by the test)");
        let child = Command::new(python)
            .arg(script("whip_publish.py"))
            .args(["--url", &url(server, "whip", app_stream)])
            .args(["--seconds", &seconds.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start whip_publish.py");
        WhipPublisher { child: Some(child) }
    }

    /// Waits for it to end; its JSON summary.
    pub fn finish(mut self, timeout: Duration) -> Value {
        let mut child = self.child.take().expect("not finished yet");
        if wait_child(&mut child, timeout).is_none() {
            kill_child(&mut child);
        }
        let output = child.wait_with_output().expect("whip_publish.py output");
        json_line(&output)
    }
}

impl Drop for WhipPublisher {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            kill_child(child);
        }
    }
}

/// Plays with aiortc's `whep_play.py` for `seconds` after the first frame; `args` adds options
/// (`--expect-audio`, `--delete`, `--api srs`, ...). Its JSON summary.
pub fn whep_play(server: &Server, app_stream: &str, seconds: f64, args: &[&str]) -> Value {
    play_url(&url(server, "whep", app_stream), seconds, args)
}

/// Like [`whep_play`] against any signalling URL.
pub fn play_url(url: &str, seconds: f64, args: &[&str]) -> Value {
    let python = python().expect("aiortc is available (checked by the test)");
    let mut child = Command::new(python)
        .arg(script("whep_play.py"))
        .args(["--url", url])
        .args(["--seconds", &seconds.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start whep_play.py");
    let limit = Duration::from_secs_f64(seconds + 30.0);
    if wait_child(&mut child, limit).is_none() {
        kill_child(&mut child);
    }
    json_line(&child.wait_with_output().expect("whep_play.py output"))
}

/// The last JSON line a script printed (with its stderr tail when there is none).
fn json_line(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str::<Value>(line).ok())
        .unwrap_or_else(|| {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
            serde_json::json!({
                "ok": false,
                "error": format!("no JSON from the script (exit {:?}); stderr tail: {:?}", output.status.code(), tail),
            })
        })
}

/// A raw HTTP/1.1 request with a body on the API port: (status, headers and body as text).
pub fn post(
    port: u16,
    method: &str,
    target: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect to the API");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).expect("send head");
    conn.write_all(body).expect("send body");
    let mut reply = Vec::new();
    let _ = conn.read_to_end(&mut reply);
    let text = String::from_utf8_lossy(&reply).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}
