//! WebRTC as WHIP publishers and WHEP players see it: aiortc (`tests/webrtc/*.py`, loopback
//! host candidates only) against the real server, whose `[rtc_server]` offers the candidate
//! 127.0.0.1.
//!
//! 1. aiortc publishes H.264 + Opus over WHIP; an aiortc WHEP player decodes 320x240 H.264 with
//!    strictly increasing timestamps and 48 kHz Opus; ffprobe reads the same stream over
//!    HTTP-FLV as h264 + aac (Opus transcoded once by the publisher's session) with ~25 fps of
//!    frames; both DELETEs end their sessions ("client left", "ended by the API");
//! 2. ffmpeg publishes H.264 + AAC over RTMP; the WHEP player decodes its video and Opus audio
//!    (AAC transcoded once for the stream);
//! 3. SRS's JSON API: `POST /rtc/v1/play/` with `{streamurl, sdp}` answers `{code: 0, sdp,
//!    sessionid}` and the player plays; a body that is not JSON is a 400 with a non-zero code;
//! 4. refusals: an `on_play` callback that denies gives 403 (and the hook saw the stream and
//!    param), a publish of a stream being published 409, malformed SDP and a missing stream 400
//!    with a reason;
//! 5. 1,000 junk datagrams at the WebRTC port during a session are dropped and counted
//!    (`sluice_rtc_dropped_datagrams`), and the player it disturbs nothing;
//! 6. the API lists the session's clients as `rtc-publish` / `rtc-play` and the stream with
//!    H.264 video.
//!
//! Every test runs on each I/O backend.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::api_client::Api;
use common::hook_server::HookServer;
use common::webrtc::{self, WhipPublisher};
use common::{FfmpegPublisher, Io, PublishOpts, Server, ServerConfig, TempDir, Value};

/// How long a publish may take to show up.
const LIVE_WAIT: Duration = Duration::from_secs(15);
/// The WHIP publisher's frame rate (whip_publish.py's default).
const WHIP_FPS: f64 = 25.0;
const PLAY_SECONDS: f64 = 3.0;
/// Whether the server was built with the AAC <-> Opus bridge (`--features transcode`, as
/// ci/test builds it). Without it, the bridged audio is not asserted (a loud note says so).
const TRANSCODE: bool = cfg!(feature = "transcode");

fn note_no_transcode(test: &str) {
    eprintln!("### {test}: built without the `transcode` feature: bridged audio not checked");
}

fn server(io: Io) -> Server {
    Server::start(io, &ServerConfig::new().workers(2))
}

fn ok(result: &Value) -> bool {
    result["ok"] == true
}

/// A WHEP player's result: H.264 320x240 with most frames of `seconds` at `fps`, strictly
/// increasing timestamps, and Opus at 48 kHz.
fn assert_played(io: Io, what: &str, result: &Value, fps: f64, seconds: f64) {
    assert!(ok(result), "[{io}] {what}: {result}");
    assert_eq!(result["video_codec"], "H264", "[{io}] {what}: {result}");
    assert_eq!(result["audio_codec"], "opus", "[{io}] {what}: {result}");
    assert_eq!(
        (result["width"].as_u64(), result["height"].as_u64()),
        (Some(320), Some(240)),
        "[{io}] {what}: {result}"
    );
    assert_eq!(result["video_pts_monotonic"], true, "[{io}] {what}");
    let frames = result["video_frames"].as_f64().unwrap_or(0.0);
    let expected = fps * seconds;
    assert!(
        frames >= expected * 0.7,
        "[{io}] {what}: {frames} video frames in {seconds} s, expected about {expected}: {result}"
    );
    // 20 ms Opus frames.
    let audio = result["audio_frames"].as_f64().unwrap_or(0.0);
    assert!(
        audio >= seconds * 50.0 * 0.7,
        "[{io}] {what}: {audio} audio frames in {seconds} s: {result}"
    );
    assert_eq!(result["audio_sample_rate"], 48000, "[{io}] {what}");
}

#[test]
fn whip_publish_plays_over_whep_and_http_flv() {
    if !webrtc::available("whip_publish_plays_over_whep_and_http_flv") {
        return;
    }
    common::require_ffmpeg();
    common::on_each_backend(|io| {
        let server = server(io);
        let publisher = WhipPublisher::start(&server, "live/w", 9.0, &[]);
        server.expect_publish("live/w", LIVE_WAIT);
        let played = webrtc::whep_play(
            &server,
            "live/w",
            PLAY_SECONDS,
            &["--expect-audio", "--delete"],
        );
        assert_played(io, "WHIP → WHEP", &played, WHIP_FPS, PLAY_SECONDS);
        assert_eq!(played["delete_status"], 200, "[{io}] {played}");
        server.expect_log(
            "the WHEP session ended by its DELETE",
            |l| {
                l.is("client left")
                    && l.str("role").as_deref() == Some("player")
                    && l.str("reason")
                        .is_some_and(|r| r.contains("ended by the API"))
            },
            Duration::from_secs(5),
        );

        // The same stream over HTTP-FLV: H.264 and the Opus transcoded to AAC (48 kHz stereo).
        let flv = server.live_url("w", "flv");
        let streams = common::ffprobe_streams(&flv, Duration::from_secs(20));
        let video = common::find_stream(io, &streams, "video", &flv);
        assert_eq!(
            (&video["codec_name"], &video["width"], &video["height"]),
            (&Value::from("h264"), &Value::from(320), &Value::from(240)),
            "[{io}] {flv}: {video}"
        );
        if TRANSCODE {
            let audio = common::find_stream(io, &streams, "audio", &flv);
            assert_eq!(
                (
                    &audio["codec_name"],
                    &audio["sample_rate"],
                    &audio["channels"]
                ),
                (&Value::from("aac"), &Value::from("48000"), &Value::from(2)),
                "[{io}] {flv}: {audio}"
            );
        } else {
            note_no_transcode("whip_publish_plays_over_whep_and_http_flv");
        }
        let dir = TempDir::new("whip-flv");
        let file = dir.join("w.flv");
        let out = common::ffmpeg_record_as(&flv, 2.0, &file, "flv", Duration::from_secs(20));
        assert!(out.success(), "[{io}] record {flv}: {out:?}");
        let counts = common::ffprobe_frame_counts(&file);
        let (video, audio) = (counts["video"], counts.get("audio").copied().unwrap_or(0));
        assert!(
            video as f64 >= 2.0 * WHIP_FPS * 0.7 && (audio > 40 || !TRANSCODE),
            "[{io}] HTTP-FLV of a WHIP publish: {video} video and {audio} audio frames in 2 s"
        );

        let published = publisher.finish(Duration::from_secs(20));
        assert!(ok(&published), "[{io}] WHIP publisher: {published}");
        assert_eq!(published["delete_status"], 200, "[{io}] {published}");
        server.expect_log(
            "the WHIP session ended by its DELETE",
            |l| {
                l.is("client left")
                    && l.str("role").as_deref() == Some("publisher")
                    && l.str("reason")
                        .is_some_and(|r| r.contains("ended by the API"))
            },
            Duration::from_secs(5),
        );
        server.assert_no_panic();
    });
}

#[test]
fn rtmp_publish_plays_over_whep_with_opus() {
    if !webrtc::available("rtmp_publish_plays_over_whep_with_opus") {
        return;
    }
    common::require_ffmpeg();
    common::on_each_backend(|io| {
        let server = server(io);
        let opts = PublishOpts::default().seconds(30.0);
        let fps = f64::from(opts.fps);
        let _ffmpeg = FfmpegPublisher::start(&server, "r", opts);
        server.expect_publish("live/r", LIVE_WAIT);
        if !TRANSCODE {
            note_no_transcode("rtmp_publish_plays_over_whep_with_opus");
            let played = webrtc::whep_play(&server, "live/r", PLAY_SECONDS, &[]);
            assert!(ok(&played), "[{io}] RTMP → WHEP: {played}");
            return;
        }
        let played = webrtc::whep_play(&server, "live/r", PLAY_SECONDS, &["--expect-audio"]);
        assert_played(io, "RTMP → WHEP", &played, fps, PLAY_SECONDS);
        server.assert_no_panic();
    });
}

#[test]
fn srs_json_api_plays_and_refuses_bad_bodies() {
    if !webrtc::available("srs_json_api_plays_and_refuses_bad_bodies") {
        return;
    }
    common::on_each_backend(|io| {
        let server = server(io);
        let _publisher = WhipPublisher::start(&server, "live/j", 8.0, &[]);
        server.expect_publish("live/j", LIVE_WAIT);
        let api = format!("http://127.0.0.1:{}/rtc/v1/play/", server.api_port);
        let played = webrtc::play_url(
            &api,
            PLAY_SECONDS,
            &[
                "--api",
                "srs",
                "--streamurl",
                "webrtc://127.0.0.1/live/j",
                "--expect-audio",
            ],
        );
        assert_played(io, "SRS /rtc/v1/play/", &played, WHIP_FPS, PLAY_SECONDS);
        assert_eq!(played["status"], 200, "[{io}] {played}");

        let (status, reply) = webrtc::post(
            server.api_port,
            "POST",
            "/rtc/v1/play/",
            "application/json",
            b"{",
        );
        assert_eq!(status, 400, "[{io}] {reply}");
        let body = reply.split("\r\n\r\n").nth(1).unwrap_or("");
        let json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        assert!(
            json["code"].as_i64().is_some_and(|c| c != 0) && json["msg"].is_string(),
            "[{io}] {reply}"
        );
        server.assert_no_panic();
    });
}

#[test]
fn refusals_have_a_status_and_a_reason() {
    if !webrtc::available("refusals_have_a_status_and_a_reason") {
        return;
    }
    common::on_each_backend(|io| {
        let hooks = HookServer::start();
        let server = Server::start(
            io,
            &ServerConfig::new()
                .workers(2)
                .hooks("enabled", true)
                .hooks("on_play", hooks.toml("auto")),
        );
        // on_play denies (the hook server reads `hook=deny` from the stream's param).
        let url = format!("{}&hook=deny", webrtc::url(&server, "whep", "live/d"));
        let played = webrtc::play_url(&url, 1.0, &["--timeout", "5"]);
        assert_eq!(played["status"], 403, "[{io}] {played}");
        let asked = hooks.wait_for(Duration::from_secs(5), |r| {
            r.action() == "on_play"
                && r.str("stream") == Some("d")
                && r.str("param").is_some_and(|p| p.contains("hook=deny"))
        });
        assert!(asked.is_some(), "[{io}] on_play: {}", hooks.summary());

        // Malformed SDP, an empty offer, no stream name: 400 with the reason.
        let whep = "/rtc/v1/whep/?app=live&stream=x";
        let (status, reply) = webrtc::post(
            server.api_port,
            "POST",
            whep,
            "application/sdp",
            b"v=0\r\na=ice-ufrag:abcd\r\nthis is not sdp\r\n",
        );
        assert_eq!(status, 400, "[{io}] {reply}");
        assert!(reply.contains("not valid SDP"), "[{io}] {reply}");
        let (status, reply) = webrtc::post(server.api_port, "POST", whep, "application/sdp", b"");
        assert_eq!(status, 400, "[{io}] {reply}");
        assert!(reply.contains("empty SDP offer"), "[{io}] {reply}");
        let (status, reply) = webrtc::post(
            server.api_port,
            "POST",
            "/rtc/v1/whip/?app=live",
            "application/sdp",
            b"v=0\r\n",
        );
        assert_eq!(status, 400, "[{io}] {reply}");
        assert!(reply.contains("stream"), "[{io}] {reply}");

        // A second publisher of a live stream: 409.
        let _first = WhipPublisher::start(&server, "live/busy", 8.0, &[]);
        server.expect_publish("live/busy", LIVE_WAIT);
        let second = WhipPublisher::start(&server, "live/busy", 1.0, &["--timeout", "5"])
            .finish(Duration::from_secs(20));
        assert_eq!(second["status"], 409, "[{io}] {second}");
        server.assert_no_panic();
    });
}

#[test]
fn junk_datagrams_are_counted_and_disturb_nothing() {
    if !webrtc::available("junk_datagrams_are_counted_and_disturb_nothing") {
        return;
    }
    common::on_each_backend(|io| {
        let server = server(io);
        let _publisher = WhipPublisher::start(&server, "live/g", 10.0, &[]);
        server.expect_publish("live/g", LIVE_WAIT);
        let junk = std::thread::spawn({
            let port = server.rtc_port;
            move || {
                let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
                // Not STUN, DTLS or RTP; then STUN-looking bytes; then RTP-looking ones.
                for i in 0..1000u32 {
                    let datagram: Vec<u8> = match i % 3 {
                        0 => vec![0xff; 100],
                        1 => [&[0u8, 1, 0, 8][..], &[0x21, 0x12, 0xa4, 0x42], &[7; 20]].concat(),
                        _ => [&[0x80u8, 96][..], &i.to_be_bytes(), &[0; 40]].concat(),
                    };
                    let _ = sock.send_to(&datagram, ("127.0.0.1", port));
                    if i % 100 == 0 {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        });
        let played = webrtc::whep_play(&server, "live/g", PLAY_SECONDS, &["--expect-audio"]);
        junk.join().expect("junk sender");
        assert_played(io, "WHEP during junk", &played, WHIP_FPS, PLAY_SECONDS);
        let counted = common::wait_until(Duration::from_secs(5), || {
            metric(&server, "sluice_rtc_dropped_datagrams_total") >= 1000.0
        });
        assert!(
            counted,
            "[{io}] sluice_rtc_dropped_datagrams_total = {}",
            metric(&server, "sluice_rtc_dropped_datagrams_total")
        );
        server.assert_no_panic();
    });
}

#[test]
fn the_api_lists_webrtc_clients_and_streams() {
    if !webrtc::available("the_api_lists_webrtc_clients_and_streams") {
        return;
    }
    common::on_each_backend(|io| {
        let server = server(io);
        let _publisher = WhipPublisher::start(&server, "live/a", 10.0, &[]);
        server.expect_publish("live/a", LIVE_WAIT);
        let player = std::thread::spawn({
            let url = webrtc::url(&server, "whep", "live/a");
            move || webrtc::play_url(&url, 4.0, &[])
        });
        let api = Api::new(server.api_port);
        let mut kinds = Vec::new();
        common::wait_until(Duration::from_secs(10), || {
            let clients = api.get("/api/v1/clients/?count=100");
            kinds = clients["clients"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .filter(|c| c["name"] == "a")
                        .map(|c| {
                            (
                                c["type"].as_str().unwrap_or("").to_string(),
                                c["publish"].clone(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            kinds.len() == 2
        });
        kinds.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            kinds,
            vec![
                ("rtc-play".to_string(), Value::Bool(false)),
                ("rtc-publish".to_string(), Value::Bool(true)),
            ],
            "[{io}] clients of live/a"
        );
        let streams = api.get("/api/v1/streams/");
        let stream = streams["streams"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == "a").cloned())
            .unwrap_or(Value::Null);
        assert_eq!(stream["video"]["codec"], "H264", "[{io}] {stream}");
        if TRANSCODE {
            assert_eq!(stream["audio"]["codec"], "AAC", "[{io}] {stream}");
        }
        let played = player.join().expect("player");
        assert!(ok(&played), "[{io}] {played}");
        server.assert_no_panic();
    });
}

/// A counter's value from `/metrics` (0 when absent).
fn metric(server: &Server, name: &str) -> f64 {
    let Ok(response) = common::http_client::get(server.api_port, "/metrics") else {
        return 0.0;
    };
    response
        .body_text()
        .lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}
