//! Headless Chromium from the tests' side: `tests/browser/play.mjs` (Node + playwright-core,
//! Debian's /usr/bin/chromium) opens sluice's player page (`html/index.html`) once per URL, all
//! at once in one browser, and reports how each `<video>` played, as JSON. Other scripts in
//! `tests/browser/` (`webrtc.mjs`) run the same way through [`BrowserRun::start_script`].
//!
//! Without Node, Chromium or playwright-core a browser test prints a loud SKIP and passes —
//! unless `SLUICE_REQUIRE_BROWSER=1` (ci/test sets it after installing them), then it fails.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::{kill_child, wait_child};

pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Exit code of play.mjs when playwright-core or Chromium is missing.
pub const EXIT_MISSING: i32 = 3;

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The player page's folder, for `ServerConfig::http_dir`.
pub fn html_dir() -> PathBuf {
    repo().join("html")
}

/// NODE_PATH for the script: the caller's, plus the folder ci/test installs into.
pub fn node_path() -> String {
    let mut dirs: Vec<String> = std::env::var("NODE_PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|d| !d.is_empty())
        .map(str::to_string)
        .collect();
    dirs.push(
        repo()
            .join("ci/.cache/node/node_modules")
            .display()
            .to_string(),
    );
    dirs.join(":")
}

/// What is missing for a browser test, if anything.
pub fn missing_tools() -> Option<String> {
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Some("node is not installed".into());
    }
    if !Path::new(CHROMIUM).exists() {
        return Some(format!("{CHROMIUM} is missing (apt-get install chromium)"));
    }
    let mut dirs: Vec<PathBuf> = node_path().split(':').map(PathBuf::from).collect();
    dirs.push(repo().join("tests/browser/node_modules"));
    if !dirs
        .iter()
        .any(|d| d.join("playwright-core/index.mjs").exists())
    {
        return Some(format!(
            "playwright-core is not installed (looked in {dirs:?}; ci/test installs it)"
        ));
    }
    None
}

pub fn browser_required() -> bool {
    std::env::var("SLUICE_REQUIRE_BROWSER").is_ok_and(|v| v == "1")
}

/// A loud SKIP, or a failure when `SLUICE_REQUIRE_BROWSER=1`.
pub fn skip_or_fail(test: &str, why: &str) {
    assert!(
        !browser_required(),
        "SLUICE_REQUIRE_BROWSER=1 but the browser test cannot run: {why}"
    );
    eprintln!("\n################################################################");
    eprintln!("### SKIP {test}: {why}");
    eprintln!("### (set SLUICE_REQUIRE_BROWSER=1 to make this a failure)");
    eprintln!("################################################################\n");
}

/// True when the browser test can run; otherwise skips (or fails, when required).
pub fn available(test: &str) -> bool {
    match missing_tools() {
        None => true,
        Some(why) => {
            skip_or_fail(test, &why);
            false
        }
    }
}

/// Milliseconds since the Unix epoch, comparable with the page's `Date.now()`.
pub fn epoch_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What play.mjs is asked to see.
#[derive(Debug, Clone)]
pub struct PlayOpts {
    /// Media seconds each `<video>` must advance.
    pub seconds: f64,
    /// The longest wall-time stretch without progress, once playing, that is not a stall.
    pub max_stall: f64,
    /// The script's own bound, from its start (it adds a 30 s watchdog on top).
    pub timeout_s: u32,
    /// Where to put `page-N.png`, one per URL.
    pub screenshot_dir: Option<PathBuf>,
}

impl Default for PlayOpts {
    fn default() -> Self {
        PlayOpts {
            seconds: 5.0,
            max_stall: 1.5,
            timeout_s: 30,
            screenshot_dir: None,
        }
    }
}

/// A running play.mjs. Killed on drop.
pub struct BrowserRun {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stdout_reader: Option<JoinHandle<()>>,
    stderr_reader: Option<JoinHandle<String>>,
    timeout: Duration,
    pub started: Instant,
}

/// How play.mjs ended.
#[derive(Debug)]
pub struct PlayOutcome {
    pub status: Option<ExitStatus>,
    /// The final JSON line (`Value::Null` if there was none).
    pub result: Value,
    /// Every stdout line.
    pub stdout: String,
    pub stderr: String,
}

impl PlayOutcome {
    /// Why the browser could not run (the script's exit 3), if so.
    pub fn missing(&self) -> Option<String> {
        (self.status.and_then(|s| s.code()) == Some(EXIT_MISSING)).then(|| {
            self.result["skip"]
                .as_str()
                .unwrap_or("play.mjs: tools missing")
                .to_string()
        })
    }

    pub fn players(&self) -> Vec<Value> {
        self.result["players"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The final line, for messages.
    pub fn line(&self) -> String {
        self.result.to_string()
    }
}

impl BrowserRun {
    /// Starts play.mjs on `urls`.
    pub fn start(urls: &[String], opts: &PlayOpts) -> BrowserRun {
        let mut args = Vec::new();
        for url in urls {
            args.extend(["--url".to_string(), url.clone()]);
        }
        args.extend(["--seconds".to_string(), opts.seconds.to_string()]);
        args.extend(["--max-stall".to_string(), opts.max_stall.to_string()]);
        args.extend(["--timeout".to_string(), opts.timeout_s.to_string()]);
        if let Some(dir) = &opts.screenshot_dir {
            args.extend(["--screenshot-dir".to_string(), dir.display().to_string()]);
        }
        BrowserRun::start_script("play.mjs", &args, opts.timeout_s)
    }

    /// Starts `tests/browser/SCRIPT` with `args`. The script follows play.mjs's conventions: one
    /// JSON object a line on stdout, the last one with an `"ok"` key is the result; exit 3 when
    /// tools are missing; it bounds itself to `timeout_s` (+ a 30 s watchdog).
    pub fn start_script(script: &str, args: &[String], timeout_s: u32) -> BrowserRun {
        let mut cmd = Command::new("node");
        cmd.arg(repo().join("tests/browser").join(script))
            .args(args);
        let mut child = cmd
            .env("NODE_PATH", node_path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run node: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = channel();
        let stdout_reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr_reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
            text
        });
        BrowserRun {
            child,
            lines,
            seen: Vec::new(),
            stdout_reader: Some(stdout_reader),
            stderr_reader: Some(stderr_reader),
            // The script bounds itself (timeout + 30 s watchdog); this is the outer bound.
            timeout: Duration::from_secs(u64::from(timeout_s) + 60),
            started: Instant::now(),
        }
    }

    /// Waits until every page has loaded (`{"ready":true}`). False if the script ended first
    /// (tools missing, or it failed: `finish` tells).
    pub fn wait_ready(&mut self, timeout: Duration) -> bool {
        self.wait_line(timeout, |v| v["ready"] == Value::Bool(true))
            .is_some()
    }

    /// Waits for a JSON line on stdout that `pred` accepts and returns it; `None` if the script
    /// ended (or `timeout` passed) first.
    pub fn wait_line(&mut self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = serde_json::from_str::<Value>(&line)
                        .ok()
                        .filter(|v| pred(v));
                    self.seen.push(line);
                    if found.is_some() {
                        return found;
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    return None;
                }
            }
        }
    }

    /// Waits for the script to end (killing it past its outer bound) and parses its result.
    pub fn finish(mut self) -> PlayOutcome {
        let left = self.timeout.saturating_sub(self.started.elapsed());
        let status = wait_child(&mut self.child, left);
        if status.is_none() {
            kill_child(&mut self.child);
        }
        if let Some(reader) = self.stdout_reader.take() {
            let _ = reader.join();
        }
        self.seen.extend(self.lines.try_iter());
        let stderr = self
            .stderr_reader
            .take()
            .and_then(|r| r.join().ok())
            .unwrap_or_default();
        let result = self
            .seen
            .iter()
            .rev()
            .filter(|l| l.starts_with('{'))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v.get("ok").is_some())
            .unwrap_or(Value::Null);
        PlayOutcome {
            status,
            result,
            stdout: self.seen.join("\n"),
            stderr,
        }
    }
}

impl Drop for BrowserRun {
    fn drop(&mut self) {
        kill_child(&mut self.child);
    }
}

/// Plays `urls` at once and waits for the result (no publisher timing).
pub fn play(urls: &[String], opts: &PlayOpts) -> PlayOutcome {
    BrowserRun::start(urls, opts).finish()
}
