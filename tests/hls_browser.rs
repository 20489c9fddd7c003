//! Real browser players on sluice's HLS and DASH: headless Chromium opens sluice's own player
//! page (`html/index.html?stream=live/NAME&format=...`) with the vendored hls.js and dash.js:
//!
//! - server A, MPEG-TS HLS with 1 s fragments (ffmpeg `-g 30`): (a) hls.js;
//! - server B, fMP4 HLS with LL-HLS parts (2 s fragments, 0.5 s parts, ffmpeg `-g 60`) and DASH
//!   over the same cuts (MPD reloaded every 2 s, as conf/hls.toml): (b) hls.js with
//!   lowLatencyMode off (whole fMP4 segments), (c) hls.js with lowLatencyMode on (parts and
//!   blocking playlist reloads), (d) dash.js.
//!
//! Each `<video>` must show 320x240 and advance at least 5 s of media with no stall (no 1.5 s of
//! wall time without progress once playing). The pages are open before the publisher starts
//! (they poll until the playlist is there), so the time from the publisher's start to the first
//! `playing` event is measured too; it is printed with the live latency the players report
//! (`hls.latency`, dash.js `getCurrentLiveLatency()`), for BENCHMARKS.md.
//!
//! Driven by `tests/browser/play.mjs` through `common::browser`. Without Node, Chromium or
//! playwright-core this test prints a loud SKIP and passes — unless `SLUICE_REQUIRE_BROWSER=1`
//! (ci/test sets it after installing them), then it fails.

mod common;

use std::time::Duration;

use common::browser::{self, BrowserRun, PlayOpts};
use common::{FfmpegPublisher, Io, PublishOpts, Server, ServerConfig, TempDir, Value};

const PLAY_SECONDS: f64 = 5.0;
const MAX_STALL_S: f64 = 1.5;
/// From the browser's start: Chromium's launch, the publisher's first segments, 5 s of play.
const PLAY_TIMEOUT_S: u32 = 40;

/// One player page on a server.
struct Case {
    /// `(a)` … `(d)` and what it is.
    name: &'static str,
    /// The page's `format` parameter.
    format: &'static str,
    /// Whether its numbers go to BENCHMARKS.md.
    benchmark: bool,
    /// Kinds of request (play.mjs's counts) the player must have made: what shows it played
    /// this kind of stream (TS or fMP4 segments; LL-HLS parts and blocking playlist reloads).
    needs: &'static [&'static str],
}

const TS_CASES: &[Case] = &[Case {
    name: "(a) hls.js, TS HLS, 1 s fragments",
    format: "hls",
    benchmark: true,
    needs: &["segment_ts"],
}];

const FMP4_CASES: &[Case] = &[
    Case {
        name: "(b) hls.js, fMP4 HLS, 2 s fragments (lowLatencyMode off)",
        format: "hls",
        benchmark: false,
        needs: &["init", "segment_m4s"],
    },
    Case {
        name: "(c) hls.js lowLatencyMode, LL-HLS, 2 s fragments, 0.5 s parts",
        format: "llhls",
        benchmark: true,
        needs: &["init", "part", "playlist_blocking"],
    },
    Case {
        name: "(d) dash.js, DASH, 2 s fragments",
        format: "dash",
        benchmark: true,
        needs: &["mpd", "init", "segment_m4s"],
    },
];

#[test]
fn chromium_plays_hls_llhls_and_dash() {
    if !browser::available("hls_browser") {
        return;
    }
    common::require_ffmpeg();
    common::on_each_backend(|io| {
        let ts = ServerConfig::new()
            .workers(2)
            .http_dir(&browser::html_dir())
            .hls("enabled", true)
            .hls("hls_fragment", 1);
        let fmp4 = ServerConfig::new()
            .workers(2)
            .http_dir(&browser::html_dir())
            .hls("enabled", true)
            .hls("hls_fragment", 2)
            .hls("hls_fmp4", true)
            .hls("hls_ll", true)
            .hls("hls_part", 0.5)
            .dash("enabled", true)
            // As conf/hls.toml: dash.js learns of new segments (SegmentTimeline) only from MPD
            // reloads, every minimumUpdatePeriod (5 s by default), and runs dry before it.
            .dash("dash_update_period", 2);
        // One server after the other (the machine may have two cores); a failure of the first
        // does not keep the second from running.
        let groups = [("ts", &ts, 30, TS_CASES), ("fmp4", &fmp4, 60, FMP4_CASES)];
        let mut lines = Vec::new();
        let mut failures = Vec::new();
        for (tag, config, gop, cases) in groups {
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                play_cases(io, tag, config, gop, cases)
            }));
            match run {
                Ok(Some(latencies)) => lines.extend(latencies),
                Ok(None) => return,
                Err(panic) => failures.push(
                    panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "(no message)".into()),
                ),
            }
        }
        eprintln!(
            "[{io}] latency (publisher start -> first 'playing'; live latency as the player reports it):"
        );
        for line in &lines {
            eprintln!("[{io}]   {line}");
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    });
}

/// Starts a server with `config`, opens a page per case, starts the publisher (keyframe every
/// `gop` frames at 30 fps), and checks every page played. Returns a latency line per
/// benchmarked case, or None when the browser test is skipped.
fn play_cases(
    io: Io,
    tag: &str,
    config: &ServerConfig,
    gop: u32,
    cases: &[Case],
) -> Option<Vec<String>> {
    let server = Server::start(io, config);
    let stream = format!("browser-{tag}");
    let urls: Vec<String> = cases
        .iter()
        .map(|c| {
            server.http_url(&format!(
                "/index.html?stream=live/{stream}&format={}",
                c.format
            ))
        })
        .collect();
    let dir = TempDir::new("hls-browser");
    let opts = PlayOpts {
        seconds: PLAY_SECONDS,
        max_stall: MAX_STALL_S,
        timeout_s: PLAY_TIMEOUT_S,
        screenshot_dir: Some(dir.path.clone()),
    };
    let mut run = BrowserRun::start(&urls, &opts);
    let ready = run.wait_ready(Duration::from_secs(30));
    // The pages are up (waiting for the playlist): the publisher starts now.
    let published_ms = browser::epoch_ms();
    let _publisher = ready.then(|| {
        FfmpegPublisher::start(
            &server,
            &stream,
            PublishOpts {
                gop,
                seconds: 60.0,
                ..PublishOpts::default()
            },
        )
    });
    if ready {
        server.expect_publish(&format!("live/{stream}"), Duration::from_secs(10));
    }
    let out = run.finish();
    if let Some(why) = out.missing() {
        browser::skip_or_fail("hls_browser", &why);
        return None;
    }
    let line = out.line();
    assert!(
        ready,
        "[{io}] {tag}: the browser did not get ready:\nstdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    let players = out.players();
    assert_eq!(
        players.len(),
        cases.len(),
        "[{io}] {tag}: no result for every page:\nresult: {line}\nexit: {:?}\nstderr: {}",
        out.status,
        out.stderr
    );
    let mut failures = Vec::new();
    let mut latencies = Vec::new();
    for (case, player) in cases.iter().zip(&players) {
        let publish_to_playing = player["playing_epoch_ms"]
            .as_i64()
            .map(|t| (t - published_ms) as f64 / 1000.0);
        eprintln!(
            "[{io}] {}: ok={} played={} s stalls={} max_gap={} s size={}x{} frame={} \
             publish->playing={} s page->first frame={} ms latency last={} mean={} min={} max={} s \
             requests={}",
            case.name,
            player["ok"],
            player["played_s"],
            player["stalls"],
            player["max_gap_s"],
            player["videoWidth"],
            player["videoHeight"],
            player["frame"],
            publish_to_playing.map_or("-".into(), |s| format!("{s:.2}")),
            player["ttff_ms"],
            player["latency_s"],
            player["latency_mean_s"],
            player["latency_min_s"],
            player["latency_max_s"],
            player["requests"],
        );
        if let Err(why) = check(case, player) {
            failures.push(format!("{}: {why}\n  page: {player}", case.name));
        }
        if case.benchmark {
            latencies.push(format!(
                "{}: publish->playing {} s, live latency (player) mean {} s (last {} s)",
                case.name,
                publish_to_playing.map_or("-".into(), |s| format!("{s:.2}")),
                player["latency_mean_s"],
                player["latency_s"],
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "[{io}] {tag}: {} page(s) did not play:\n{}\nexit: {:?}\nstderr: {}",
        failures.len(),
        failures.join("\n"),
        out.status,
        out.stderr
    );
    assert!(
        out.status.is_some_and(|s| s.success()),
        "[{io}] {tag}: play.mjs failed: {line}\nstderr: {}",
        out.stderr
    );
    server.assert_no_panic();
    Some(latencies)
}

/// What every page must show, and what each kind of player must have fetched.
fn check(case: &Case, player: &Value) -> Result<(), String> {
    if player["ok"] != true {
        return Err(format!(
            "did not play {PLAY_SECONDS} s without a stall (played {} s, stalls {}, errors {}, \
             video error {})",
            player["played_s"], player["stalls"], player["page_errors"], player["video_error"]
        ));
    }
    let played = player["played_s"].as_f64().unwrap_or(0.0);
    if played < PLAY_SECONDS {
        return Err(format!("the video advanced only {played} s"));
    }
    if !player["stalls"].as_array().is_some_and(|a| a.is_empty()) {
        return Err(format!("stalled: {}", player["stalls"]));
    }
    let size = (
        player["videoWidth"].as_u64(),
        player["videoHeight"].as_u64(),
    );
    if size != (Some(320), Some(240)) {
        return Err(format!("the video element shows {size:?}, not 320x240"));
    }
    // The frame on screen, drawn on a canvas: testsrc2's colours, not a black or flat picture.
    let stddev = player["frame"]["stddev"].as_f64().unwrap_or(0.0);
    if stddev < 10.0 {
        return Err(format!(
            "the video shows no picture (luma {})",
            player["frame"]
        ));
    }
    if player["page_status"].as_u64() != Some(200) {
        return Err(format!("the page answered {}", player["page_status"]));
    }
    for key in ["failed_requests", "bad_responses_after_playing", "uncaught"] {
        if !player[key].as_array().is_some_and(|a| a.is_empty()) {
            return Err(format!("{key}: {}", player[key]));
        }
    }
    let missing: Vec<&str> = case
        .needs
        .iter()
        .copied()
        .filter(|kind| player["requests"][*kind].as_u64().unwrap_or(0) == 0)
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the player made no {missing:?} request: {}",
            player["requests"]
        ));
    }
    Ok(())
}
