//! A real browser plays a live stream: headless Chromium opens sluice's own player page
//! (`html/index.html?stream=live/NAME`, served by sluice with its vendored mpegts.js), which
//! plays `http://HOST/live/NAME.flv` at once; the `<video>` shows 320x240 and its currentTime
//! advances by at least 3 s without a stall. Driven by `tests/browser/play.mjs` (Node +
//! playwright-core) through `common::browser`.
//!
//! Without Node, Chromium or playwright-core this test prints a loud SKIP and passes — unless
//! `SLUICE_REQUIRE_BROWSER=1` (ci/test sets it after installing them), then it fails.

mod common;

use std::time::Duration;

use common::browser::{self, PlayOpts};
use common::{FfmpegPublisher, Io, PublishOpts, Server, ServerConfig, TempDir};

const PLAY_SECONDS: f64 = 3.0;
const PLAY_TIMEOUT_S: u32 = 30;

#[test]
fn chromium_plays_http_flv_from_the_player_page() {
    if !browser::available("http_browser") {
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
            .http_dir(&browser::html_dir()),
    );
    let _publisher =
        FfmpegPublisher::start(&server, "browser", PublishOpts::default().seconds(60.0));
    server.expect_publish("live/browser", Duration::from_secs(10));

    let dir = TempDir::new("browser");
    let url = server.http_url("/index.html?stream=live/browser");
    let opts = PlayOpts {
        seconds: PLAY_SECONDS,
        timeout_s: PLAY_TIMEOUT_S,
        screenshot_dir: Some(dir.path.clone()),
        ..PlayOpts::default()
    };
    let out = browser::play(std::slice::from_ref(&url), &opts);
    if let Some(why) = out.missing() {
        browser::skip_or_fail("http_browser", &why);
        return;
    }
    let line = out.line();
    eprintln!("[{io}] browser: {line}");
    let result = out.players().into_iter().next().unwrap_or_default();
    assert!(
        out.status.is_some_and(|s| s.success()) && result["ok"] == true,
        "[{io}] Chromium did not play {url}:\nresult: {line}\nexit: {:?}\nstderr: {}",
        out.status,
        out.stderr
    );
    let played = result["played_s"].as_f64().unwrap_or(0.0);
    assert!(
        played >= PLAY_SECONDS,
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
