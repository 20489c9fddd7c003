//! A real browser publishes and plays over WebRTC: headless Chromium with its fake camera and
//! microphone opens sluice's own `whip.html` (served by sluice), which publishes H.264 + Opus by
//! WHIP to the HTTP API; while it publishes, the API lists the stream with video codec H264; then
//! `whep.html` in the same browser plays the stream back by WHEP and its `<video>` must present
//! at least [`FRAMES`] frames (requestVideoFrameCallback) of a real picture, decoded as H.264.
//! Both pages then stop, DELETE-ing their WHIP/WHEP resource, and the stream's publisher goes.
//! Driven by `tests/browser/webrtc.mjs` (Node + playwright-core) through `common::browser`.
//!
//! Loopback only: the test thread first moves into a private network namespace with nothing but
//! `lo` (`common::netns`, needs root / CAP_SYS_ADMIN), then starts the server, Node and Chromium
//! from that thread, so they live in it too, and Chromium (whose ICE gathers host candidates on
//! every interface it sees; `--allow-loopback-in-peer-connection` lets it use loopback) can
//! offer nothing but 127.0.0.1.
//!
//! Without Node, Chromium, playwright-core or the privilege for a network namespace this test
//! prints a loud SKIP and passes — unless `SLUICE_REQUIRE_BROWSER=1` (ci/test sets it), then it
//! fails.

mod common;

use std::time::{Duration, Instant};

use common::api_client::Api;
use common::browser::{self, BrowserRun};
use common::netns::{self, NetnsError};
use common::{Io, Server, ServerConfig, TempDir, Value};

const TEST: &str = "webrtc_browser";
/// Frames each WHEP `<video>` must present (the fake camera runs at 30 fps).
const FRAMES: u32 = 60;
/// webrtc.mjs's own bound, from its start.
const TIMEOUT_S: u32 = 30;

#[test]
fn chromium_publishes_by_whip_and_plays_by_whep() {
    if !browser::available(TEST) {
        return;
    }
    // This thread, and everything it starts from here on, is in a namespace with only `lo`.
    match netns::enter_private() {
        Ok(ns) => eprintln!(
            "private network namespace {} (was {}), interfaces {:?}",
            ns.after, ns.before, ns.interfaces
        ),
        Err(NetnsError::Unavailable(why)) => {
            browser::skip_or_fail(TEST, &why);
            return;
        }
        Err(NetnsError::Broken(why)) => panic!("{why}"),
    }
    common::on_each_backend(browser_webrtc);
}

fn browser_webrtc(io: Io) {
    let server = Server::start(
        io,
        &ServerConfig::new()
            .workers(2)
            .http_dir(&browser::html_dir()),
    );
    let api = Api::new(server.api_port);
    let stream = format!("webrtc-{io}");
    let query = format!(
        "api=http://127.0.0.1:{}&app=live&stream={stream}&autostart=1",
        server.api_port
    );
    let publish = server.http_url(&format!("/whip.html?{query}"));
    let play = server.http_url(&format!("/whep.html?{query}&retry=5"));
    let dir = TempDir::new("webrtc-browser");
    let args: Vec<String> = [
        "--publish",
        &publish,
        "--play",
        &play,
        "--frames",
        &FRAMES.to_string(),
        "--timeout",
        &TIMEOUT_S.to_string(),
        "--screenshot-dir",
        &dir.path.display().to_string(),
    ]
    .map(str::to_string)
    .to_vec();
    let started = Instant::now();
    let mut run = BrowserRun::start_script("webrtc.mjs", &args, TIMEOUT_S);

    // While Chromium publishes: the API lists the stream, its video H.264.
    let published = run.wait_line(Duration::from_secs(u64::from(TIMEOUT_S) + 30), |v| {
        v.get("published").is_some()
    });
    let mut listed = None;
    if published.as_ref().is_some_and(|v| v["published"] == true) {
        eprintln!(
            "[{io}] published after {:.1?}: {}",
            started.elapsed(),
            published.as_ref().map(Value::to_string).unwrap_or_default()
        );
        listed = wait_for_stream(&api, &stream, Duration::from_secs(5), |s| {
            s["video"]["codec"].is_string()
        });
    }

    let out = run.finish();
    if let Some(why) = out.missing() {
        browser::skip_or_fail(TEST, &why);
        return;
    }
    let result = &out.result;
    let publisher = &result["publisher"];
    let players = out.players();
    eprintln!(
        "[{io}] browser ({:.1?}): ok={} publisher: {} | players: {}",
        started.elapsed(),
        result["ok"],
        brief(publisher),
        players.iter().map(brief).collect::<Vec<_>>().join(" | ")
    );
    let context = || {
        format!(
            "\nresult (offers cut): {}\nexit: {:?}\nstderr: {}\nserver log tail:\n{}",
            without_offers(result),
            out.status,
            out.stderr,
            server.stderr_tail(40)
        )
    };

    // The publisher connected, by WHIP, and sent H.264 + Opus.
    assert_eq!(
        publisher["state"],
        "connected",
        "[{io}] whip.html did not connect: {}{}",
        publisher["error"],
        context()
    );
    assert_eq!(
        publisher["http_status"],
        201,
        "[{io}] WHIP POST{}",
        context()
    );
    assert!(
        publisher["location"].is_string(),
        "[{io}] whip.html could not read the Location of the WHIP resource (CORS \
         Access-Control-Expose-Headers must name Location){}",
        context()
    );
    assert_eq!(
        publisher["stats"]["video"]["codec"],
        "video/H264",
        "[{io}] whip.html did not send H.264{}",
        context()
    );
    assert_eq!(
        publisher["stats"]["audio"]["codec"],
        "audio/opus",
        "[{io}] whip.html did not send Opus{}",
        context()
    );
    let offer = publisher["offer"].as_str().unwrap_or_default();
    assert_loopback_only(io, "whip.html's offer", offer);
    assert_loopback_only(
        io,
        "sluice's WHIP answer",
        publisher["answer"].as_str().unwrap_or_default(),
    );

    // The API listed the stream while it was published, with H.264 video.
    let listed = listed.unwrap_or_else(|| {
        panic!(
            "[{io}] GET /api/v1/streams did not list live/{stream} with its video while \
             Chromium published it: {:?}{}",
            api.try_get("/api/v1/streams?count=1000"),
            context()
        )
    });
    eprintln!("[{io}] API stream: {listed}");
    assert_eq!(listed["video"]["codec"], "H264", "[{io}] {listed}");
    assert_eq!(listed["publish"]["active"], true, "[{io}] {listed}");

    // The player: connected by WHEP, H.264 decoded, frames presented, a picture.
    assert_eq!(players.len(), 1, "[{io}] no player result{}", context());
    let player = &players[0];
    assert_eq!(
        player["state"],
        "connected",
        "[{io}] whep.html did not connect: {}{}",
        player["error"],
        context()
    );
    assert_eq!(player["http_status"], 201, "[{io}] WHEP POST{}", context());
    assert!(
        player["location"].is_string(),
        "[{io}] whep.html could not read the Location of the WHEP resource{}",
        context()
    );
    assert_loopback_only(
        io,
        "sluice's WHEP answer",
        player["answer"].as_str().unwrap_or_default(),
    );
    let frames = player["frames"].as_u64().unwrap_or(0);
    assert!(
        frames >= u64::from(FRAMES),
        "[{io}] whep.html's <video> presented {frames} frames, not {FRAMES}{}",
        context()
    );
    assert_eq!(
        player["stats"]["video"]["codec"],
        "video/H264",
        "[{io}] whep.html did not receive H.264{}",
        context()
    );
    let (width, height) = (
        player["videoWidth"].as_u64().unwrap_or(0),
        player["videoHeight"].as_u64().unwrap_or(0),
    );
    assert!(
        width > 0 && height > 0,
        "[{io}] whep.html's <video> has no size{}",
        context()
    );
    let stddev = player["frame"]["stddev"].as_u64().unwrap_or(0);
    assert!(
        stddev >= 5,
        "[{io}] whep.html's <video> shows a flat picture (luma stddev {stddev}){}",
        context()
    );
    assert!(
        player["stats"]["audio"]["packetsReceived"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "[{io}] whep.html received no audio{}",
        context()
    );
    assert!(
        out.status.is_some_and(|s| s.success()) && result["ok"] == true,
        "[{io}] webrtc.mjs did not pass{}",
        context()
    );

    // Both pages stopped by DELETE on their resource; then the stream has no publisher.
    for (who, page) in [("whep.html", player), ("whip.html", publisher)] {
        let status = page["after_stop"]["delete_status"].as_u64().unwrap_or(0);
        assert!(
            (200..300).contains(&status),
            "[{io}] {who}'s DELETE of its resource answered {}{}",
            page["after_stop"]["delete_status"],
            context()
        );
        for key in ["uncaught", "failed_requests"] {
            assert!(
                page[key].as_array().is_some_and(|a| a.is_empty()),
                "[{io}] {who}: {key}: {}{}",
                page[key],
                context()
            );
        }
    }
    let gone = wait_for_stream_gone(&api, &stream, Duration::from_secs(5));
    assert!(
        gone,
        "[{io}] live/{stream} is still published after whip.html's DELETE: {:?}",
        api.try_get("/api/v1/streams?count=1000")
    );
    server.assert_no_panic();
}

/// The stream `live/NAME` from the API's list once `ready` accepts it.
fn wait_for_stream(
    api: &Api,
    name: &str,
    timeout: Duration,
    ready: impl Fn(&Value) -> bool,
) -> Option<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let found = api
            .try_get("/api/v1/streams?count=1000")
            .and_then(|v| find_stream(&v, name))
            .filter(|s| ready(s));
        if found.is_some() || Instant::now() >= deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// True once `live/NAME` is not listed, or listed without an active publisher.
fn wait_for_stream_gone(api: &Api, name: &str, timeout: Duration) -> bool {
    common::wait_until(timeout, || {
        api.try_get("/api/v1/streams?count=1000")
            .is_some_and(|v| find_stream(&v, name).is_none_or(|s| s["publish"]["active"] != true))
    })
}

fn find_stream(list: &Value, name: &str) -> Option<Value> {
    list["streams"]
        .as_array()?
        .iter()
        .find(|s| s["app"] == "live" && s["name"] == name)
        .cloned()
}

/// Every candidate and connection address in `sdp` is 127.0.0.1 (or the 0.0.0.0 placeholder).
fn assert_loopback_only(io: Io, what: &str, sdp: &str) {
    for line in sdp.lines() {
        let addr = if let Some(rest) = line.strip_prefix("a=candidate:") {
            rest.split_whitespace().nth(4)
        } else if let Some(rest) = line.strip_prefix("c=IN IP4 ") {
            Some(rest.trim())
        } else if line.starts_with("c=IN IP6") {
            Some("IPv6")
        } else {
            None
        };
        if let Some(addr) = addr {
            assert!(
                addr == "127.0.0.1" || addr == "0.0.0.0",
                "[{io}] {what} names {addr}, not loopback: {line}\n{sdp}"
            );
        }
    }
}

/// The result with the pages' offer SDPs cut to their length (the answers stay: they are the
/// server's).
fn without_offers(result: &Value) -> String {
    let mut result = result.clone();
    let mut cut = |page: &mut Value| {
        if let Some(offer) = page["offer"].as_str() {
            page["offer"] = Value::String(format!("({} bytes)", offer.len()));
        }
    };
    cut(&mut result["publisher"]);
    if let Some(players) = result["players"].as_array_mut() {
        players.iter_mut().for_each(&mut cut);
    }
    result.to_string()
}

/// One line about a page, for the log.
fn brief(page: &Value) -> String {
    format!(
        "state={} frames={} {}x{} video={} audio={} connect_ms={} first_frame_ms={} delete={} err={}",
        page["state"],
        page["frames"],
        page["videoWidth"],
        page["videoHeight"],
        page["stats"]["video"]["codec"],
        page["stats"]["audio"]["codec"],
        page["connect_ms"],
        page["first_frame_ms"],
        page["after_stop"]["delete_status"],
        page["error"]
    )
}
