//! SRT from the tests' side: URLs with SRS stream ids, the tools (ffmpeg's libsrt and
//! srt-live-transmit from Debian's `srt-tools`), an ffmpeg | srt-live-transmit publisher, an
//! srt-live-transmit player that writes what it receives to a file, "is this stream live" from
//! the HTTP API, FLV tags of a raw HTTP-FLV body, and junk datagrams for an SRT port.
//!
//! Everything is bounded like the rest of the harness: children are killed on drop, waits have
//! deadlines.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use sluice_proto::flv::{FileHeader, Tag};

use super::api_client::Api;
use super::udp_relay::XorShift;
use super::{
    Output, PublishOpts, TempDir, ffmpeg_publish_command, kill_child, run_with_timeout, wait_child,
    wait_until,
};

/// ffmpeg's SRT `latency` option is in microseconds: 120 ms, the server's default.
pub const FFMPEG_LATENCY: &str = "latency=120000";

/// `srt://ADDR?streamid=STREAMID&OPTION&...`.
pub fn url(addr: SocketAddr, streamid: &str, options: &[&str]) -> String {
    let mut url = format!("srt://{addr}?streamid={streamid}");
    for option in options {
        url.push('&');
        url.push_str(option);
    }
    url
}

/// SRS's stream id to publish `app/stream`: `#!::r=app/stream,m=publish`.
pub fn publish_id(path: &str) -> String {
    format!("#!::r={path},m=publish")
}

/// SRS's stream id to play `app/stream`: `#!::r=app/stream,m=request`.
pub fn request_id(path: &str) -> String {
    format!("#!::r={path},m=request")
}

/// Fails with a clear message if `srt-live-transmit` is missing (ci/test installs it).
pub fn require_srt_tools() {
    super::require_tool("srt-live-transmit", "srt-tools");
}

/// Fails with a clear message if ffmpeg or ffprobe lack the `srt` protocol (libsrt).
pub fn require_ffmpeg_srt() {
    super::require_ffmpeg();
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-protocols"]);
    let out = run_with_timeout(cmd, Duration::from_secs(10));
    let (mut input, mut output, mut section) = (false, false, "");
    for line in out.stdout.lines().map(str::trim) {
        match line {
            "Input:" => section = "in",
            "Output:" => section = "out",
            "srt" if section == "in" => input = true,
            "srt" if section == "out" => output = true,
            _ => {}
        }
    }
    assert!(
        input && output,
        "this ffmpeg has no srt protocol (libsrt) for input and output: `ffmpeg -protocols` says\n{}",
        out.stdout
    );
}

/// The stream `app/name` as `/api/v1/streams` lists it, if it is there and publishing.
pub fn live_stream(api_port: u16, app: &str, name: &str) -> Option<Value> {
    let json = Api::new(api_port).try_get("/api/v1/streams?count=1000")?;
    json["streams"].as_array()?.iter().find_map(|s| {
        (s["app"] == app && s["name"] == name && s["publish"]["active"] == true).then(|| s.clone())
    })
}

/// Waits until `/api/v1/streams` lists `app/name` as publishing; returns its entry.
pub fn wait_live(api_port: u16, app: &str, name: &str, timeout: Duration) -> Option<Value> {
    let mut found = None;
    wait_until(timeout, || {
        found = live_stream(api_port, app, name);
        found.is_some()
    });
    found
}

/// An ffmpeg encoding `testsrc2` + `sine` to MPEG-TS on stdout, piped into
/// `srt-live-transmit file://con URL` (libsrt's own sender, 1316-byte payloads: 7 TS
/// packets, as SRT senders use). Both are killed on drop.
pub struct SltPublisher {
    pub url: String,
    ffmpeg: Child,
    slt: Child,
    dir: TempDir,
}

impl SltPublisher {
    pub fn start(url: &str, seconds: f64) -> SltPublisher {
        require_srt_tools();
        let dir = TempDir::new("slt-publish");
        let ffmpeg_log = File::create(dir.join("ffmpeg.log")).expect("create ffmpeg log");
        let slt_log = File::create(dir.join("slt.log")).expect("create slt log");
        let mut ffmpeg =
            ffmpeg_publish_command("-", "mpegts", &PublishOpts::default().seconds(seconds))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(ffmpeg_log)
                .spawn()
                .expect("run ffmpeg");
        let pipe = ffmpeg.stdout.take().expect("ffmpeg stdout");
        let slt = Command::new("srt-live-transmit")
            .args(["-a:no", "-chunk:1316", "file://con", url])
            .stdin(Stdio::from(pipe))
            .stdout(Stdio::null())
            .stderr(slt_log)
            .spawn()
            .expect("run srt-live-transmit");
        SltPublisher {
            url: url.to_string(),
            ffmpeg,
            slt,
            dir,
        }
    }

    /// What ffmpeg and srt-live-transmit printed.
    pub fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!(
            "--- ffmpeg ---\n{}\n--- srt-live-transmit ---\n{}",
            read("ffmpeg.log"),
            read("slt.log")
        )
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.slt.try_wait(), Ok(None))
    }
}

impl Drop for SltPublisher {
    fn drop(&mut self) {
        kill_child(&mut self.ffmpeg);
        kill_child(&mut self.slt);
    }
}

/// What an srt-live-transmit player wrote and printed.
#[derive(Debug)]
pub struct SltPlay {
    pub file: PathBuf,
    pub bytes: u64,
    /// Its exit status, `None` if it had to be killed.
    pub status: Option<std::process::ExitStatus>,
    pub stderr: String,
}

/// `srt-live-transmit -t:SECONDS -a:no URL file://con > FILE`: plays `url` for `seconds`
/// (its own timer, counted from its start), killed if it is still running `seconds + 6` s
/// later.
pub fn slt_play(url: &str, seconds: u32, file: &Path) -> SltPlay {
    require_srt_tools();
    let out = File::create(file).unwrap_or_else(|e| panic!("create {file:?}: {e}"));
    let log_path = file.with_extension("slt.log");
    let log = File::create(&log_path).expect("create srt-live-transmit log");
    let mut child = Command::new("srt-live-transmit")
        .args([&format!("-t:{seconds}"), "-a:no", url, "file://con"])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(log)
        .spawn()
        .expect("run srt-live-transmit");
    let status = wait_child(&mut child, Duration::from_secs(u64::from(seconds) + 6));
    if status.is_none() {
        kill_child(&mut child);
    }
    SltPlay {
        file: file.to_path_buf(),
        bytes: std::fs::metadata(file).map_or(0, |m| m.len()),
        status,
        stderr: std::fs::read_to_string(&log_path).unwrap_or_default(),
    }
}

/// An ffmpeg publishing `testsrc2` + `sine` as MPEG-TS to `url` for `seconds`, run to its end
/// or `timeout` (then killed: `status` is `None`). For publishers that must be refused.
pub fn ffmpeg_publish_once(url: &str, seconds: f64, timeout: Duration) -> Output {
    super::require_ffmpeg();
    let cmd = ffmpeg_publish_command(url, "mpegts", &PublishOpts::default().seconds(seconds));
    run_with_timeout(cmd, timeout)
}

// ---------------------------------------------------------------------------------------------
// FLV

/// One FLV tag of a recorded body.
#[derive(Debug, Clone)]
pub struct FlvTag {
    pub tag_type: u8,
    pub timestamp: u32,
    pub body: Vec<u8>,
}

/// The tags of an FLV body (file header first), up to the first incomplete or bad one.
pub fn flv_tags(body: &[u8]) -> Result<Vec<FlvTag>, String> {
    let (_, mut at) = FileHeader::parse(body).map_err(|e| format!("FLV file header: {e:?}"))?;
    let mut tags = Vec::new();
    while let Ok((tag, used)) = Tag::parse(&body[at..]) {
        tags.push(FlvTag {
            tag_type: tag.tag_type,
            timestamp: tag.timestamp,
            body: tag.body.to_vec(),
        });
        at += used;
    }
    Ok(tags)
}

// ---------------------------------------------------------------------------------------------
// Junk for an SRT port

/// `count` datagrams a server's SRT port must survive: random bytes of random sizes (some
/// empty), and things that look like SRT but are not right — headers cut short, handshakes
/// with truncated or nonsense bodies, control packets of every type (keep-alive, ACK, NAK,
/// shutdown, ACKACK, drop request, user-defined) and data packets for socket ids nobody has.
pub fn junk_datagrams(seed: u64, count: usize) -> Vec<Vec<u8>> {
    let mut rng = XorShift::new(seed);
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let datagram = match i % 8 {
            // Random bytes, 0..1500.
            0 | 1 => {
                let mut bytes = vec![0u8; rng.below(1501) as usize];
                rng.fill(&mut bytes);
                bytes
            }
            // A control header cut short (1..15 bytes).
            2 => {
                let mut bytes = vec![0u8; 1 + rng.below(15) as usize];
                rng.fill(&mut bytes);
                bytes[0] |= 0x80;
                bytes
            }
            // A handshake (control type 0) for socket 0 whose body is cut anywhere in its 48
            // bytes, or runs on with garbage extensions.
            3 => {
                let body_len = rng.below(48 + 200) as usize;
                let mut bytes = srt_control_header(&mut rng, 0x0000, 0);
                let mut body = vec![0u8; body_len];
                rng.fill(&mut body);
                if body_len >= 4 {
                    // Version 4 or 5, so it goes past the first check.
                    body[..4].copy_from_slice(&[0, 0, 0, 4 + (rng.below(2) as u8)]);
                }
                bytes.extend_from_slice(&body);
                bytes
            }
            // Another control type, for a random socket id, with a random body.
            4 | 5 => {
                let types = [
                    0x0001, 0x0002, 0x0003, 0x0004, 0x0005, 0x0006, 0x0007, 0x7fff,
                ];
                let kind = types[rng.below(types.len() as u64) as usize];
                let dest_socket = rng.next_u64() as u32;
                let mut bytes = srt_control_header(&mut rng, kind, dest_socket);
                let mut body = vec![0u8; rng.below(64) as usize];
                rng.fill(&mut body);
                bytes.extend_from_slice(&body);
                bytes
            }
            // A data packet (top bit clear) for a random socket id.
            _ => {
                let mut bytes = vec![0u8; 16 + rng.below(1316) as usize];
                rng.fill(&mut bytes);
                bytes[0] &= 0x7f;
                bytes
            }
        };
        out.push(datagram);
    }
    out
}

/// A 16-byte SRT control header: type, a random subtype/type-specific word and timestamp,
/// and `dest_socket`.
fn srt_control_header(rng: &mut XorShift, kind: u16, dest_socket: u32) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(16);
    bytes.extend_from_slice(&(0x8000 | kind).to_be_bytes());
    bytes.extend_from_slice(&[0, 0]);
    bytes.extend_from_slice(&(rng.next_u64() as u32).to_be_bytes());
    bytes.extend_from_slice(&(rng.next_u64() as u32).to_be_bytes());
    bytes.extend_from_slice(&dest_socket.to_be_bytes());
    bytes
}
