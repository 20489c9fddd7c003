//! A real browser plays a live stream: headless Chromium opens sluice's own player page
//! (`html/index.html?stream=live/NAME`, served by sluice with its vendored mpegts.js), which
//! plays `http://HOST/live/NAME.flv` at once; the `<video>` shows 320x240 and its currentTime
//! advances by at least 3 s. Driven by `tests/browser/play_flv.mjs` (Node + playwright-core).
//!
//! Without Node, Chromium or playwright-core this test prints a loud SKIP and passes — unless
//! `SLUICE_REQUIRE_BROWSER=1` (ci/test sets it after installing them), then it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{
    FfmpegPublisher, Io, PublishOpts, Server, ServerConfig, TempDir, Value, run_with_timeout,
};

const CHROMIUM: &str = "/usr/bin/chromium";
/// Exit code of play_flv.mjs when playwright-core or Chromium is missing.
const EXIT_MISSING: i32 = 3;
const PLAY_SECONDS: u32 = 3;
const PLAY_TIMEOUT_S: u32 = 30;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// NODE_PATH for the script: the caller's, plus the folder ci/test installs into.
fn node_path() -> String {
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

/// What is missing for the browser test, if anything.
fn missing_tools() -> Option<String> {
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

fn browser_required() -> bool {
    std::env::var("SLUICE_REQUIRE_BROWSER").is_ok_and(|v| v == "1")
}

fn skip_or_fail(why: &str) {
    assert!(
        !browser_required(),
        "SLUICE_REQUIRE_BROWSER=1 but the browser test cannot run: {why}"
    );
    eprintln!("\n################################################################");
    eprintln!("### SKIP http_browser: {why}");
    eprintln!("### (set SLUICE_REQUIRE_BROWSER=1 to make this a failure)");
    eprintln!("################################################################\n");
}

#[test]
fn chromium_plays_http_flv_from_the_player_page() {
    if let Some(why) = missing_tools() {
        skip_or_fail(&why);
        return;
    }
    common::require_ffmpeg();
    common::on_each_backend(browser_plays);
}

fn browser_plays(io: Io) {
    let server = Server::start(
        io,
        &ServerConfig::new()
            .workers(2)
            .http_dir(&repo().join("html")),
    );
    let _publisher =
        FfmpegPublisher::start(&server, "browser", PublishOpts::default().seconds(60.0));
    server.expect_publish("live/browser", Duration::from_secs(10));

    let dir = TempDir::new("browser");
    let screenshot = dir.join("page.png");
    let url = server.http_url("/index.html?stream=live/browser");
    let mut cmd = Command::new("node");
    cmd.arg(repo().join("tests/browser/play_flv.mjs"))
        .args(["--url", &url])
        .args(["--seconds", &PLAY_SECONDS.to_string()])
        .args(["--timeout", &PLAY_TIMEOUT_S.to_string()])
        .arg("--screenshot")
        .arg(&screenshot)
        .env("NODE_PATH", node_path());
    // The script bounds itself (timeout + 30 s watchdog); this is the outer bound.
    let out = run_with_timeout(cmd, Duration::from_secs(u64::from(PLAY_TIMEOUT_S) + 60));
    let line = out
        .stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or("");
    let result: Value = serde_json::from_str(line).unwrap_or(Value::Null);
    if out.status.and_then(|s| s.code()) == Some(EXIT_MISSING) {
        skip_or_fail(
            result["skip"]
                .as_str()
                .unwrap_or("play_flv.mjs: tools missing"),
        );
        return;
    }
    eprintln!("[{io}] browser: {line}");
    assert!(
        out.success() && result["ok"] == true,
        "[{io}] Chromium did not play {url}:\nresult: {line}\nexit: {:?}\nstderr: {}",
        out.status,
        out.stderr
    );
    let played = result["played_s"].as_f64().unwrap_or(0.0);
    assert!(
        played >= f64::from(PLAY_SECONDS),
        "[{io}] the video advanced only {played} s: {line}"
    );
    assert_eq!(
        (
            result["videoWidth"].as_u64(),
            result["videoHeight"].as_u64()
        ),
        (Some(320), Some(240)),
        "[{io}] the video element shows the wrong size: {line}"
    );
    assert_eq!(result["page_status"].as_u64(), Some(200), "[{io}] {line}");
    assert!(
        result["failed_requests"]
            .as_array()
            .is_some_and(|a| a.is_empty()),
        "[{io}] requests failed in the page: {line}"
    );

    // The server saw the browser's FLV request as a viewer (the page and its script may have
    // come on the same keep-alive connection before it), which left when the browser closed.
    let player = server.expect_log(
        "play started for the browser",
        |l| l.is("play started") && l.str("format").as_deref() == Some("flv"),
        Duration::from_secs(1),
    );
    let id = player.client().expect("client id");
    let left = server.expect_log(
        "client left for the browser's FLV connection",
        |l| l.is("client left") && l.client().as_deref() == Some(id.as_str()),
        Duration::from_secs(5),
    );
    assert_eq!(
        left.str("role").as_deref(),
        Some("player:flv"),
        "[{io}] {left}"
    );
    server.assert_no_panic();
}
