//! HTTP callbacks (SRS `http_hooks`), end to end: the real server, ffmpeg publishers, RTMP and
//! HTTP-FLV players, and a loopback hook server (tests/common/hook_server.rs) that answers each
//! request as the test asks.
//!
//! - A deciding hook (`on_connect`, `on_publish`, `on_play`) allows only on HTTP 200/201 with
//!   body `0` or `{"code":0}`; every other answer, a hook that hangs past `timeout_ms`, and an
//!   unreachable hook refuse, and the server says which hook refused and why.
//! - Several URLs are called in order and the first refusal decides.
//! - Notifications (`on_unpublish`, `on_stop`, `on_close`) arrive after the client stops, in
//!   the client's order, with SRS's fields (compared with SRS 7's own bodies).
//! - A slow hook parks only the client that waits for it: everyone else keeps playing.

mod common;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::hook_server::{Behaviour, HookRequest, HookServer, SLOW, down_url, toml_urls};
use common::http_client::{self, LiveViewer};
use common::rtmp_client::{ClientOpts, Player, RtmpClient};
use common::{FfmpegPublisher, Io, LogLine, PublishOpts, Server, ServerConfig, Value};

const WAIT: Duration = Duration::from_secs(10);

fn hooked(hooks: &[(&str, String)], timeout_ms: u64) -> ServerConfig {
    let mut config = ServerConfig::new()
        .hooks("enabled", true)
        .hooks("timeout_ms", timeout_ms);
    for (key, value) in hooks {
        config = config.hooks(key, value);
    }
    config
}

fn publish(server: &Server, stream: &str, seconds: f64) -> FfmpegPublisher {
    FfmpegPublisher::start(server, stream, PublishOpts::default().seconds(seconds))
}

/// An ffmpeg publishing to any URL (another app than `live`). Killed on drop.
struct Ffmpeg(Child);

impl Ffmpeg {
    fn publish(url: &str) -> Ffmpeg {
        common::require_ffmpeg();
        let child = Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30"])
            .args(["-t", "20", "-c:v", "libx264", "-preset", "ultrafast"])
            .args(["-g", "30", "-pix_fmt", "yuv420p", "-f", "flv", url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run ffmpeg");
        Ffmpeg(child)
    }
}

impl Drop for Ffmpeg {
    fn drop(&mut self) {
        common::kill_child(&mut self.0);
    }
}

/// The server's "refused by hook" line for a client.
fn refusal(server: &Server, client: &str) -> LogLine {
    server.expect_log(
        &format!("refused by hook for client {client}"),
        |l| l.is("refused by hook") && l.client().as_deref() == Some(client),
        Duration::from_secs(5),
    )
}

/// Checks a refusal line names the hook, the URL and the reason.
fn check_refusal(io: Io, line: &LogLine, hook: &str, url: &str, fragment: &str) {
    assert_eq!(
        line.str("hook").as_deref(),
        Some(hook),
        "[{io}] the refusal names the wrong hook: {line}"
    );
    let reason = line.str("reason").unwrap_or_default();
    assert!(
        reason.contains(url) && reason.contains(fragment),
        "[{io}] the refusal reason should name {url} and say {fragment:?}: {line}"
    );
}

/// The answers a deciding hook is tested with, and what a refusal reason then says.
const ANSWERS: [(Behaviour, Option<&str>); 7] = [
    (Behaviour::Ok0, None),
    (Behaviour::OkJson, None),
    (Behaviour::Deny, Some("code 1")),
    (Behaviour::Unauthorized, Some("HTTP status 401")),
    (Behaviour::Garbage, Some("not JSON")),
    (Behaviour::Big, Some("too large")),
    (Behaviour::Empty, Some("empty response body")),
];

// ---------------------------------------------------------------------------------------------
// on_publish

#[test]
fn on_publish_allows_or_refuses_by_the_answer() {
    common::require_ffmpeg();
    common::on_each_backend(on_publish_answers);
}

fn on_publish_answers(io: Io) {
    let hooks = HookServer::start();
    let server = Server::start(io, &hooked(&[("on_publish", hooks.toml("auto"))], 3000));
    // One publisher per answer, all at once; each names its answer in its query string.
    let mut publishers: Vec<FfmpegPublisher> = ANSWERS
        .iter()
        .map(|(b, _)| publish(&server, &format!("p_{0}?hook={0}", b.name()), 30.0))
        .collect();
    for ((behaviour, fragment), ffmpeg) in ANSWERS.iter().zip(&mut publishers) {
        let name = behaviour.name();
        let stream = format!("p_{name}");
        let path = format!("live/{stream}");
        let request = hooks.expect("on_publish", WAIT, |r| {
            r.str("stream") == Some(stream.as_str())
        });
        assert_eq!(request.str("param"), Some(format!("?hook={name}").as_str()));
        match fragment {
            None => {
                let started = server.expect_publish(&path, WAIT);
                assert_eq!(
                    started.client().as_deref(),
                    Some(request.client_id()),
                    "[{io}] on_publish came with another client id than the publisher's"
                );
                let player =
                    Player::start(server.port, &stream, Duration::from_secs(20)).expect("play");
                assert!(
                    player.wait_for(Duration::from_secs(5), |r| r.first_keyframe().is_some()),
                    "[{io}] {path}, allowed by {name}, does not play: {:?}",
                    player.recording().closed
                );
            }
            Some(fragment) => {
                let status = ffmpeg.wait_exit(WAIT).unwrap_or_else(|| {
                    panic!("[{io}] the publisher answered {name} still runs after {WAIT:?}")
                });
                assert!(
                    !status.success(),
                    "[{io}] {name}: ffmpeg exited with {status}"
                );
                let line = refusal(&server, request.client_id());
                check_refusal(io, &line, "on_publish", &hooks.url("auto"), fragment);
                assert!(
                    server
                        .find_log(|l| l.is("publish started")
                            && l.str("stream").as_deref() == Some(path.as_str()))
                        .is_none(),
                    "[{io}] {path} was published although {name} refused it"
                );
                let response = http_client::get(server.http_port, &format!("/{path}.flv"))
                    .expect("GET the refused stream");
                assert_eq!(
                    response.status, 404,
                    "[{io}] the refused stream {path} is served over HTTP"
                );
                eprintln!(
                    "[{io}] on_publish {name}: refused ({})",
                    line.str("reason").unwrap_or_default()
                );
            }
        }
    }
    server.assert_no_panic();
}

// ---------------------------------------------------------------------------------------------
// on_play

#[test]
fn on_play_allows_or_refuses_by_the_answer() {
    common::require_ffmpeg();
    common::on_each_backend(on_play_answers);
}

fn on_play_answers(io: Io) {
    let hooks = HookServer::start();
    let server = Server::start(io, &hooked(&[("on_play", hooks.toml("auto"))], 3000));
    let _publisher = publish(&server, "src", 60.0);
    server.expect_publish("live/src", WAIT);
    for (behaviour, fragment) in ANSWERS {
        let name = behaviour.name();
        let param = format!("?hook={name}");

        // RTMP: NetStream.Play.Start and media, or NetStream.Play.Rejected and a close.
        let player = Player::start(server.port, &format!("src{param}"), Duration::from_secs(20))
            .expect("connect and play");
        let id = server.wait_client_id(player.local_addr);
        let request = hooks.expect("on_play", WAIT, |r| r.client_id() == id);
        assert_eq!(
            request.str("param"),
            Some(param.as_str()),
            "[{io}] {request:?}"
        );
        match fragment {
            None => {
                assert!(
                    player.wait_for(Duration::from_secs(5), |r| r.first_keyframe().is_some()),
                    "[{io}] RTMP play allowed by {name} gets no media: {:?}",
                    player.recording().closed
                );
                let rec = player.stop();
                assert!(rec.closed.is_none(), "[{io}] {name}: {:?}", rec.closed);
                assert!(
                    rec.count(|m| m.command.as_deref() == Some("onStatus:NetStream.Play.Start"))
                        == 1
                );
            }
            Some(fragment) => {
                assert!(
                    player.wait_for(Duration::from_secs(5), |r| r.closed.is_some()),
                    "[{io}] the RTMP player refused by {name} was not closed"
                );
                let rec = player.stop();
                let statuses = rec.commands();
                assert!(
                    statuses.contains(&"onStatus:NetStream.Play.Rejected"),
                    "[{io}] refused by {name}, the player got {statuses:?}"
                );
                assert_eq!(
                    rec.count(|m| m.is_media()),
                    0,
                    "[{io}] {name}: media after a refusal"
                );
                check_refusal(
                    io,
                    &refusal(&server, &id),
                    "on_play",
                    &hooks.url("auto"),
                    fragment,
                );
            }
        }

        // HTTP-FLV: 200 and FLV, or 403.
        let viewer = LiveViewer::start(
            server.http_port,
            &format!("/live/src.flv{param}"),
            Duration::from_secs(20),
        )
        .expect("GET the stream");
        let id = server.wait_client_id(viewer.local_addr);
        hooks.expect("on_play", WAIT, |r| r.client_id() == id);
        match fragment {
            None => {
                assert_eq!(viewer.response.status, 200, "[{io}] {name}");
                assert!(
                    viewer.wait_for(Duration::from_secs(5), |r| r
                        .media
                        .first_keyframe()
                        .is_some()),
                    "[{io}] HTTP-FLV allowed by {name} gets no media"
                );
            }
            Some(fragment) => {
                assert_eq!(
                    viewer.response.status,
                    403,
                    "[{io}] HTTP-FLV refused by {name}: {}",
                    viewer.response.head_text()
                );
                check_refusal(
                    io,
                    &refusal(&server, &id),
                    "on_play",
                    &hooks.url("auto"),
                    fragment,
                );
            }
        }
        eprintln!("[{io}] on_play {name}: ok");
    }
    server.assert_no_panic();
}

// ---------------------------------------------------------------------------------------------
// on_connect

#[test]
fn on_connect_allows_or_refuses_by_the_answer() {
    common::require_ffmpeg();
    common::on_each_backend(on_connect_answers);
}

fn on_connect_answers(io: Io) {
    let hooks = HookServer::start();
    let server = Server::start(io, &hooked(&[("on_connect", hooks.toml("auto"))], 3000));
    // As in SRS 7, on_connect is asked when the client names its stream, so it sees the
    // stream and its parameter (which names the answer here); a refusal lands on the publish.
    for (behaviour, fragment) in ANSWERS {
        let name = behaviour.name();
        let mut client =
            RtmpClient::handshake(server.port, ClientOpts::default()).expect("handshake");
        let id = server.wait_client_id(client.local_addr());
        let reply = client
            .connect_app()
            .unwrap_or_else(|e| panic!("[{io}] {name}: connect failed: {e}"));
        assert_eq!(reply.name, "_result", "[{io}] {name}: {reply:?}");
        let stream_id = client.create_stream().expect("createStream after connect");
        let status = client
            .publish(stream_id, &format!("cap_{name}?hook={name}"))
            .unwrap_or_else(|e| panic!("[{io}] {name}: no answer to publish: {e}"));
        let request = hooks.expect("on_connect", WAIT, |r| r.client_id() == id);
        assert_eq!(request.str("stream"), Some(format!("cap_{name}").as_str()));
        assert_eq!(request.str("param"), Some(format!("?hook={name}").as_str()));
        match fragment {
            None => assert_eq!(status, "NetStream.Publish.Start", "[{io}] {name}"),
            Some(fragment) => {
                assert_eq!(status, "NetStream.Publish.Rejected", "[{io}] {name}");
                assert!(
                    client.wait_closed(Duration::from_secs(3)),
                    "[{io}] {name}: not closed"
                );
                check_refusal(
                    io,
                    &refusal(&server, &id),
                    "on_connect",
                    &hooks.url("auto"),
                    fragment,
                );
            }
        }
    }
    // ffmpeg: refused, or allowed and publishing.
    let started = Instant::now();
    let mut refused = Ffmpeg::publish(&format!(
        "rtmp://127.0.0.1:{}/live/cap_ff?hook=deny",
        server.port
    ));
    let status = common::wait_child(&mut refused.0, WAIT)
        .unwrap_or_else(|| panic!("[{io}] ffmpeg refused by on_connect still runs"));
    assert!(
        !status.success(),
        "[{io}] ffmpeg refused by on_connect exited {status}"
    );
    let request = hooks.expect("on_connect", WAIT, |r| r.str("stream") == Some("cap_ff"));
    check_refusal(
        io,
        &refusal(&server, request.client_id()),
        "on_connect",
        &hooks.url("auto"),
        "code 1",
    );
    eprintln!(
        "[{io}] ffmpeg refused by on_connect after {:?}",
        started.elapsed()
    );
    let _allowed = publish(&server, "cap", 20.0);
    server.expect_publish("live/cap", WAIT);
    server.assert_no_panic();
}

// ---------------------------------------------------------------------------------------------
// A hook that never answers

#[test]
fn a_hanging_hook_refuses_at_the_timeout() {
    common::require_ffmpeg();
    common::on_each_backend(hanging_hook);
}

const HANG_TIMEOUT: Duration = Duration::from_millis(800);

/// Checks a refusal came after the timeout and well before twice it (at most 1.5 times: a
/// timer that ran twice, once per step, would show).
fn check_waited(io: Io, what: &str, waited: Duration, lower: Duration) {
    let upper = HANG_TIMEOUT * 3 / 2;
    assert!(
        waited >= lower && waited <= upper,
        "[{io}] {what}: refused after {waited:?}, expected between {lower:?} and {upper:?}"
    );
    eprintln!("[{io}] {what}: refused after {waited:?}");
}

fn hanging_hook(io: Io) {
    let hooks = HookServer::start();
    let config = hooked(
        &[
            ("on_publish", hooks.toml("auto")),
            ("on_play", hooks.toml("auto")),
        ],
        HANG_TIMEOUT.as_millis() as u64,
    );
    let server = Server::start(io, &config);
    let _source = publish(&server, "src", 60.0);
    server.expect_publish("live/src", WAIT);

    // A publisher: from the request reaching the hook to the refusal.
    let mut ffmpeg = publish(&server, "h?hook=hang", 20.0);
    let request = hooks.expect("on_publish", WAIT, |r| r.str("stream") == Some("h"));
    let line = refusal(&server, request.client_id());
    check_refusal(
        io,
        &line,
        "on_publish",
        &hooks.url("auto"),
        "timed out after 800 ms",
    );
    // The hook saw the request a moment after the timer started; the log is read a moment
    // after the refusal: allow 20 ms for the first.
    let waited = line.at.saturating_duration_since(request.at);
    check_waited(
        io,
        "on_publish",
        waited,
        HANG_TIMEOUT - Duration::from_millis(20),
    );
    let status = ffmpeg.wait_exit(WAIT).expect("ffmpeg exits");
    assert!(!status.success());

    // An RTMP player: from the play command to the rejection.
    let player =
        Player::start(server.port, "src?hook=hang", Duration::from_secs(10)).expect("play");
    assert!(player.wait_for(Duration::from_secs(5), |r| r.closed.is_some()));
    let rec = player.recording();
    let rejected = rec
        .messages
        .iter()
        .find(|m| m.command.as_deref() == Some("onStatus:NetStream.Play.Rejected"))
        .unwrap_or_else(|| panic!("[{io}] no rejection: {:?}", rec.messages));
    check_waited(
        io,
        "RTMP on_play",
        rejected.at - player.play_sent,
        HANG_TIMEOUT,
    );

    // An HTTP-FLV viewer: from the request to the 403.
    let viewer = LiveViewer::start(
        server.http_port,
        "/live/src.flv?hook=hang",
        Duration::from_secs(10),
    )
    .expect("GET");
    let waited = viewer.requested.elapsed();
    assert_eq!(
        viewer.response.status,
        403,
        "[{io}] {}",
        viewer.response.head_text()
    );
    check_waited(io, "HTTP-FLV on_play", waited, HANG_TIMEOUT);
    server.assert_no_panic();
}

// ---------------------------------------------------------------------------------------------
// Several URLs, unreachable hooks, failing notifications

#[test]
fn urls_are_called_in_order_and_the_first_refusal_decides() {
    common::require_ffmpeg();
    common::on_each_backend(several_urls);
}

fn several_urls(io: Io) {
    let hooks = HookServer::start();
    let config = hooked(
        &[
            (
                "on_connect",
                toml_urls(&[hooks.url("okjson/c1"), hooks.url("ok0/c2")]),
            ),
            (
                "on_publish",
                toml_urls(&[hooks.url("ok0/p1"), hooks.url("deny/p2")]),
            ),
            (
                "on_play",
                toml_urls(&[hooks.url("deny/v1"), hooks.url("ok0/v2")]),
            ),
            // Notifications that fail change nothing.
            ("on_close", toml_urls(&[down_url()])),
        ],
        2000,
    );
    let server = Server::start(io, &config);

    // on_connect (asked at the play): both allow, both called, in order; then on_play: the
    // first URL denies and the second is never called.
    let mut client = RtmpClient::connect(server.port, ClientOpts::default())
        .unwrap_or_else(|e| panic!("[{io}] connect refused: {e}"));
    let id = server.wait_client_id(client.local_addr());
    let sid = client.create_stream().expect("createStream");
    client.play(sid, "nothing").expect("play");
    assert!(
        client.wait_closed(Duration::from_secs(5)),
        "[{io}] the refused player stays"
    );
    let paths: Vec<String> = hooks
        .requests_of("on_connect")
        .into_iter()
        .filter(|r| r.client_id() == id)
        .map(|r| r.path)
        .collect();
    assert_eq!(paths, ["/okjson/c1", "/ok0/c2"], "[{io}] on_connect calls");
    check_refusal(
        io,
        &refusal(&server, &id),
        "on_play",
        &hooks.url("deny/v1"),
        "code 1",
    );
    std::thread::sleep(Duration::from_millis(300));
    let plays: Vec<String> = hooks
        .requests_of("on_play")
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert_eq!(plays, ["/deny/v1"], "[{io}] on_play calls");

    // on_publish: the first allows, the second denies: refused, naming the second.
    let mut ffmpeg = publish(&server, "two", 20.0);
    let status = ffmpeg.wait_exit(WAIT).expect("ffmpeg exits");
    assert!(!status.success());
    let requests: Vec<HookRequest> = hooks.requests_of("on_publish");
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/ok0/p1", "/deny/p2"], "[{io}] on_publish calls");
    assert!(requests[0].at <= requests[1].at);
    let line = refusal(&server, requests[0].client_id());
    check_refusal(io, &line, "on_publish", &hooks.url("deny/p2"), "code 1");

    // on_close goes nowhere: logged, nothing else.
    let failed = server.expect_log(
        "on_close failure logged",
        |l| l.is("hook failed") && l.str("hook").as_deref() == Some("on_close"),
        WAIT,
    );
    let reason = failed.str("reason").unwrap_or_default();
    assert!(
        reason.contains("/down") && reason.to_lowercase().contains("connection refused"),
        "[{io}] {failed}"
    );
    assert_eq!(failed.level, "WARN", "[{io}] {failed}");
    eprintln!("[{io}] on_close to nowhere: {reason}");

    // An unreachable deciding hook refuses.
    let down = down_url();
    let server = Server::start(
        io,
        &hooked(
            &[("on_publish", toml_urls(std::slice::from_ref(&down)))],
            2000,
        ),
    );
    let mut ffmpeg = publish(&server, "down", 20.0);
    let status = ffmpeg
        .wait_exit(WAIT)
        .expect("ffmpeg refused by an unreachable hook exits");
    assert!(!status.success());
    let line = server.expect_log("refused by hook", |l| l.is("refused by hook"), WAIT);
    check_refusal(io, &line, "on_publish", &down, "");
    let reason = line.str("reason").unwrap_or_default().to_lowercase();
    assert!(reason.contains("connection refused"), "[{io}] {line}");
    server.assert_no_panic();
}

// ---------------------------------------------------------------------------------------------
// A slow hook parks only its client

#[test]
fn a_slow_hook_does_not_stall_other_clients() {
    common::require_ffmpeg();
    common::on_each_backend(slow_hook);
}

fn slow_hook(io: Io) {
    let hooks = HookServer::start();
    let config = hooked(
        &[
            ("on_publish", hooks.toml("auto")),
            ("on_play", hooks.toml("auto")),
        ],
        10_000,
    );
    let server = Server::start(io, &config.workers(1));
    let _a = publish(&server, "a", 60.0);
    server.expect_publish("live/a", WAIT);
    let watcher = Player::start(server.port, "a", Duration::from_secs(30)).expect("play a");
    assert!(watcher.wait_for(Duration::from_secs(5), |r| r.first_keyframe().is_some()));
    std::thread::sleep(Duration::from_secs(1));
    let baseline_from = Instant::now();
    std::thread::sleep(SLOW);
    let baseline = watcher
        .recording()
        .video_frames_between(baseline_from, baseline_from + SLOW);

    // Two clients wait for slow hooks: a publisher and an HTTP-FLV viewer.
    let slow_from = Instant::now();
    let _b = publish(&server, "b?hook=slow", 30.0);
    let slow_viewer = std::thread::spawn({
        let port = server.http_port;
        move || {
            let from = Instant::now();
            let viewer = LiveViewer::start(port, "/live/a.flv?hook=slow", Duration::from_secs(10));
            (viewer, from.elapsed())
        }
    });
    hooks.expect("on_publish", WAIT, |r| r.str("stream") == Some("b"));
    // Meanwhile a new player of `a` starts at once (its hook answers at once).
    let newcomer_from = Instant::now();
    let newcomer = Player::start(server.port, "a", Duration::from_secs(20)).expect("play a again");
    assert!(
        newcomer.wait_for(Duration::from_secs(2), |r| r.first_keyframe().is_some()),
        "[{io}] a new player waited for another client's slow hook"
    );
    let newcomer_started = newcomer
        .recording()
        .first_keyframe()
        .map(|m| m.at - newcomer_from);

    let started_b = server.expect_publish("live/b", WAIT);
    let b_waited = started_b.at.saturating_duration_since(slow_from);
    let (viewer, viewer_waited) = slow_viewer.join().expect("viewer thread");
    let viewer = viewer.expect("GET a.flv");
    assert_eq!(
        viewer.response.status, 200,
        "[{io}] slow on_play then allowed"
    );
    std::thread::sleep((slow_from + SLOW).saturating_duration_since(Instant::now()));
    let rec = watcher.stop();
    let during = rec.video_frames_between(slow_from, slow_from + SLOW);
    let gap = rec.max_video_gap(slow_from, slow_from + SLOW);
    eprintln!(
        "[{io}] frames per {SLOW:?}: before {baseline}, during slow hooks {during}; max gap {gap:?}; \
         newcomer first keyframe after {newcomer_started:?}; b published after {b_waited:?}"
    );
    assert!(
        b_waited >= SLOW,
        "[{io}] b was published before its hook answered ({b_waited:?})"
    );
    assert!(
        viewer_waited >= SLOW - Duration::from_millis(100),
        "[{io}] the HTTP-FLV viewer was answered before its slow hook ({viewer_waited:?})"
    );
    assert!(
        rec.closed.is_none(),
        "[{io}] the watcher was closed: {:?}",
        rec.closed
    );
    assert!(baseline >= 60, "[{io}] baseline only {baseline} frames");
    assert!(
        during * 10 >= baseline * 9,
        "[{io}] the watcher's frame rate dropped while hooks were pending: {baseline} -> {during}"
    );
    assert!(
        gap <= Duration::from_millis(500),
        "[{io}] the watcher stalled for {gap:?}"
    );
    server.assert_no_panic();
}

// ---------------------------------------------------------------------------------------------
// Notifications and the bodies, field by field against SRS

#[test]
fn hook_bodies_match_srs() {
    common::require_ffmpeg();
    common::on_each_backend(bodies);
}

/// The keys SRS 7.0.18 sent for each action (shared/compat/srs/hooks.json).
fn srs_keys(action: &str) -> BTreeSet<&'static str> {
    let common = [
        "server_id",
        "service_id",
        "action",
        "client_id",
        "ip",
        "vhost",
        "app",
    ];
    let stream = ["tcUrl", "stream", "param", "stream_url", "stream_id"];
    let extra: &[&str] = match action {
        "on_connect" => &["tcUrl", "stream", "param", "pageUrl"],
        "on_publish" | "on_unpublish" | "on_stop" => &stream,
        "on_play" => &[
            "tcUrl",
            "stream",
            "param",
            "pageUrl",
            "stream_url",
            "stream_id",
        ],
        "on_close" => &["send_bytes", "recv_bytes"],
        other => panic!("no SRS sample for {other}"),
    };
    common.iter().chain(extra).copied().collect()
}

/// Collects every way a body differs from what SRS sends.
struct Diffs(Vec<String>);

impl Diffs {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.0.push(what());
        }
    }

    fn eq(&mut self, who: &str, r: &HookRequest, key: &str, want: &str) {
        let got = r.body.get(key);
        self.check(got == Some(&Value::from(want)), || {
            format!("{who} {}: {key} is {got:?}, SRS sends {want:?}", r.action())
        });
    }
}

fn bodies(io: Io) {
    let hooks = HookServer::start();
    let all = [
        "on_connect",
        "on_close",
        "on_publish",
        "on_unpublish",
        "on_play",
        "on_stop",
    ];
    let config = hooked(
        &all.map(|hook| (hook, hooks.toml(&format!("okjson/{hook}")))),
        3000,
    );
    let server = Server::start(io, &config);
    let tc_url = format!("rtmp://127.0.0.1:{}/live", server.port);

    let mut ffmpeg = publish(&server, "cap?token=abc", 6.0);
    let published = server.expect_publish("live/cap", WAIT);
    let publisher = published.client().expect("publisher id");
    let player = Player::start(server.port, "cap?k=v", Duration::from_secs(20)).expect("play");
    let player_id = server.wait_client_id(player.local_addr);
    let viewer = LiveViewer::start(server.http_port, "/live/cap.flv", Duration::from_secs(20))
        .expect("GET cap.flv");
    let viewer_id = server.wait_client_id(viewer.local_addr);
    assert!(player.wait_for(Duration::from_secs(5), |r| r.first_keyframe().is_some()));
    assert!(viewer.wait_for(Duration::from_secs(5), |r| {
        r.media.first_keyframe().is_some()
    }));
    std::thread::sleep(Duration::from_millis(500));
    drop(player.stop());
    drop(viewer.stop());
    let player_close = hooks.expect("on_close", WAIT, |r| r.client_id() == player_id);
    hooks.expect("on_stop", WAIT, |r| r.client_id() == viewer_id);
    // The publisher stops by itself (-t): on_unpublish, then on_close.
    let status = ffmpeg
        .wait_exit(Duration::from_secs(15))
        .expect("ffmpeg ends");
    assert!(
        status.success(),
        "[{io}] the publisher failed: {}",
        ffmpeg.stderr()
    );
    let publisher_close = hooks.expect("on_close", WAIT, |r| r.client_id() == publisher);
    std::thread::sleep(Duration::from_millis(300));

    let requests = hooks.requests();
    let mut diffs = Diffs(Vec::new());
    let find = |who: &str, id: &str, action: &str| -> HookRequest {
        let found: Vec<&HookRequest> = requests
            .iter()
            .filter(|r| r.client_id() == id && r.action() == action)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "[{io}] expected one {action} for the {who} ({id}); received:\n{}",
            hooks.summary()
        );
        found[0].clone()
    };
    let order = |who: &str, id: &str, actions: &[&str]| {
        let seen: Vec<&str> = requests
            .iter()
            .filter(|r| r.client_id() == id)
            .map(|r| r.action())
            .collect();
        assert_eq!(
            seen, actions,
            "[{io}] the {who}'s callbacks, in arrival order"
        );
    };
    order(
        "publisher",
        &publisher,
        &["on_connect", "on_publish", "on_unpublish", "on_close"],
    );
    order(
        "RTMP player",
        &player_id,
        &["on_connect", "on_play", "on_stop", "on_close"],
    );
    order("HTTP-FLV viewer", &viewer_id, &["on_play", "on_stop"]);

    // Every request: POST, JSON, SRS's keys and types, this server's ids.
    let server_id = requests[0].str("server_id").unwrap_or("").to_string();
    let service_id = requests[0].str("service_id").unwrap_or("").to_string();
    assert!(
        server_id.starts_with("vid-") && server_id.len() == 11,
        "[{io}] server_id {server_id:?}"
    );
    assert_eq!(service_id.len(), 8, "[{io}] service_id {service_id:?}");
    for r in &requests {
        let who = format!("client {}", r.client_id());
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "[{io}] {r:?}"
        );
        let keys: BTreeSet<&str> = r
            .body
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let want = srs_keys(r.action());
        diffs.check(keys == want, || {
            let extra: Vec<_> = keys.difference(&want).collect();
            let missing: Vec<_> = want.difference(&keys).collect();
            format!(
                "{who} {}: keys differ from SRS's: extra {extra:?}, missing {missing:?}",
                r.action()
            )
        });
        for (key, value) in r.body.as_object().into_iter().flatten() {
            let number = matches!(key.as_str(), "send_bytes" | "recv_bytes");
            diffs.check(
                if number {
                    value.is_u64()
                } else {
                    value.is_string()
                },
                || {
                    format!(
                        "{who} {}: {key} is {value}, SRS sends a {}",
                        r.action(),
                        if number { "number" } else { "string" }
                    )
                },
            );
        }
        diffs.eq(&who, r, "server_id", &server_id);
        diffs.eq(&who, r, "service_id", &service_id);
        diffs.eq(&who, r, "ip", "127.0.0.1");
        diffs.eq(&who, r, "vhost", "__defaultVhost__");
        diffs.eq(&who, r, "app", "live");
    }

    // The publisher.
    // The stream's id, from a player's on_play (the stream exists by then).
    let on_play = find("RTMP player", &player_id, "on_play");
    let stream_id = on_play.str("stream_id").unwrap_or("").to_string();
    assert!(
        stream_id.starts_with("vid-") && stream_id.len() == 11,
        "[{io}] on_play stream_id {stream_id:?}"
    );
    for action in ["on_connect", "on_publish", "on_unpublish"] {
        let r = find("publisher", &publisher, action);
        diffs.eq("publisher", &r, "tcUrl", &tc_url);
        diffs.eq("publisher", &r, "stream", "cap");
        diffs.eq("publisher", &r, "param", "?token=abc");
        if action == "on_connect" {
            diffs.eq("publisher", &r, "pageUrl", "");
        } else {
            diffs.eq("publisher", &r, "stream_url", "/live/cap");
            diffs.eq("publisher", &r, "stream_id", &stream_id);
        }
    }
    // The RTMP player.
    for action in ["on_play", "on_stop"] {
        let r = find("RTMP player", &player_id, action);
        diffs.eq("RTMP player", &r, "tcUrl", &tc_url);
        diffs.eq("RTMP player", &r, "stream", "cap");
        diffs.eq("RTMP player", &r, "param", "?k=v");
        diffs.eq("RTMP player", &r, "stream_url", "/live/cap");
        diffs.eq("RTMP player", &r, "stream_id", &stream_id);
        if action == "on_play" {
            diffs.eq("RTMP player", &r, "pageUrl", "");
        }
    }
    // The HTTP-FLV viewer: SRS reports an RTMP tcUrl on the vhost for it.
    for action in ["on_play", "on_stop"] {
        let r = find("HTTP-FLV viewer", &viewer_id, action);
        diffs.eq(
            "HTTP-FLV viewer",
            &r,
            "tcUrl",
            "rtmp://__defaultVhost__/live",
        );
        diffs.eq("HTTP-FLV viewer", &r, "stream", "cap");
        diffs.eq("HTTP-FLV viewer", &r, "param", "");
        diffs.eq("HTTP-FLV viewer", &r, "stream_url", "/live/cap");
        diffs.eq("HTTP-FLV viewer", &r, "stream_id", &stream_id);
    }
    // on_close: the bytes each way.
    for (who, close, min_recv) in [
        ("RTMP player", &player_close, 1),
        ("publisher", &publisher_close, 100_000),
    ] {
        let sent = close
            .body
            .get("send_bytes")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let received = close
            .body
            .get("recv_bytes")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        diffs.check(sent > 0 && received >= min_recv, || {
            format!("{who} on_close: send_bytes {sent}, recv_bytes {received}")
        });
    }
    let player_sent = player_close
        .body
        .get("send_bytes")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    diffs.check(player_sent > 50_000, || {
        format!("the RTMP player's on_close send_bytes is only {player_sent} after playing")
    });

    assert!(
        diffs.0.is_empty(),
        "[{io}] the hook bodies differ from SRS's in {} way(s):\n  {}\nbodies:\n{}",
        diffs.0.len(),
        diffs.0.join("\n  "),
        hooks.summary()
    );
    server.assert_no_panic();
}

/// `on_hls` is POSTed once per HLS segment with SRS's body: the publisher's fields plus the
/// segment's duration, file, url, m3u8, m3u8_url and seq_no.
#[test]
fn on_hls_body_matches_srs() {
    common::require_ffmpeg();
    common::on_each_backend(|io| {
        let hooks = HookServer::start();
        let config =
            hooked(&[("on_hls", hooks.toml("okjson/on_hls"))], 3000).hls("hls_fragment", 1);
        let server = Server::start(io, &config);
        let mut ffmpeg = publish(&server, "cap?token=abc", 4.0);
        let publisher = server
            .expect_publish("live/cap", WAIT)
            .client()
            .expect("publisher id");
        let first = hooks.expect("on_hls", WAIT, |r| {
            r.body.get("seq_no") == Some(&Value::from(0))
        });
        hooks.expect("on_hls", WAIT, |r| {
            r.body.get("seq_no") == Some(&Value::from(1))
        });
        let _ = ffmpeg.wait_exit(Duration::from_secs(15));

        let keys: BTreeSet<&str> = first
            .body
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let want: BTreeSet<&str> = [
            "server_id",
            "service_id",
            "action",
            "client_id",
            "ip",
            "vhost",
            "app",
            "tcUrl",
            "stream",
            "param",
            "duration",
            "cwd",
            "file",
            "url",
            "m3u8",
            "m3u8_url",
            "seq_no",
            "stream_url",
            "stream_id",
        ]
        .into_iter()
        .collect();
        assert_eq!(keys, want, "[{io}] on_hls keys (SRS 7.0.18's)");
        assert_eq!(
            first.client_id(),
            publisher,
            "[{io}] the publisher's client id"
        );
        assert_eq!(first.str("url"), Some("live/cap-0.ts"), "[{io}]");
        assert_eq!(first.str("m3u8_url"), Some("live/cap.m3u8"), "[{io}]");
        assert_eq!(first.str("param"), Some("?token=abc"), "[{io}]");
        assert_eq!(first.str("stream_url"), Some("/live/cap"), "[{io}]");
        let duration = first.body.get("duration").and_then(Value::as_f64);
        assert!(
            duration.is_some_and(|d| (0.9..=1.6).contains(&d)),
            "[{io}] a 1 s segment's duration: {duration:?}"
        );
        server.assert_no_panic();
    });
}
