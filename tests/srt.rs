//! SRT (MPEG-TS over SRT, SRS's stream ids) as SRT encoders and players see it: ffmpeg's libsrt
//! and libsrt's own srt-live-transmit (Debian's `srt-tools`), against the real server on
//! loopback.
//!
//! 1. ffmpeg publishes H.264 + AAC over SRT (`#!::r=live/s,m=publish`): ffprobe reads it over
//!    RTMP and HTTP-FLV as H.264 320x240 + AAC, and `-c copy` recordings hold 4 s of 30 fps
//!    video starting on a keyframe, decode timestamps only moving forward;
//! 2. srt-live-transmit plays (`m=request`) a stream ffmpeg publishes over RTMP: the MPEG-TS it
//!    writes starts with a PAT, its first video packet is a keyframe, it holds H.264 + AAC and
//!    (nearly) every frame of the time it played;
//! 3. srt-live-transmit publishes what ffmpeg pipes into it; HTTP-FLV plays it;
//! 4. ffmpeg plays over SRT what ffmpeg publishes over SRT, and it decodes;
//! 5. H.265 over SRT comes out as `hevc` over HTTP-TS and HLS, and as Enhanced RTMP (`hvc1`)
//!    over HTTP-FLV;
//! 6. with a passphrase, a caller with it (16- and 32-byte keys) publishes and plays over RTMP;
//!    a wrong or missing passphrase is refused at once ("srt connection rejected");
//! 7. 5 % of the datagrams lost each way (a lossy relay): ARQ recovers them within the 120 ms
//!    latency, so an RTMP recording has ≥ 95 % of the frames and no hole over 100 ms;
//! 8. stream ids: the legacy `#!::h=live/s,m=publish` publishes, a plain `live/s` and a
//!    `#!::r=live/s` without `m` play, one without a resource is rejected with the reason, and
//!    a player of a stream nobody publishes does the server no harm;
//! 9. callbacks: on_publish/on_unpublish and on_play/on_stop with `app`, `stream` and the extra
//!    keys as `param` (SRS's `?k=v`); a refusing on_publish ends the SRT publisher and nothing
//!    else;
//! 10. `/api/v1/clients` lists SRT clients as `srt-publish` / `srt-play`, `/api/v1/streams` the
//!     stream with its H.264 video;
//! 11. 1,000 junk datagrams at the SRT port during a publish leave its recording whole;
//! 12. four SRT players of one stream at once (on both workers) all play;
//! 13. the vhost's security rules turn SRT publishers and players away at the handshake.
//!
//! Every test runs on each I/O backend, with ~4–6 s of media.

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::time::{Duration, Instant};

use common::hook_server::HookServer;
use common::http_client::{self, LiveViewer, ViewerOpts};
use common::srt::{self as srtc, FFMPEG_LATENCY, publish_id, request_id};
use common::udp_relay::{Loss, UdpRelay};
use common::{
    FfmpegPublisher, Io, PublishOpts, Server, ServerConfig, TempDir, Value,
    assert_starts_on_keyframe, dts_of, ffmpeg_record_as, ffprobe_frame_counts, ffprobe_packets,
    probe_av,
};
use sluice_proto::flv::{VideoCodec, VideoTag};

const FPS: f64 = 30.0;
const RECORD_SECONDS: f64 = 4.0;
/// How long a publish may take to show up in the API.
const LIVE_WAIT: Duration = Duration::from_secs(10);
/// How long a refused SRT caller may take to give up (libsrt's connect timeout is 3 s, its peer
/// idle timeout 5 s).
const REFUSED_WITHIN: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Shared

/// An ffmpeg publishing `app/stream` over SRT (H.264 unless `opts` says otherwise) with a
/// 120 ms latency and `options` (`passphrase=...`).
fn srt_publish(
    server: &Server,
    path: &str,
    opts: PublishOpts,
    options: &[&str],
) -> FfmpegPublisher {
    srtc::require_ffmpeg_srt();
    let mut all = vec![FFMPEG_LATENCY];
    all.extend_from_slice(options);
    FfmpegPublisher::start_url(&server.srt_url(&publish_id(path), &all), "mpegts", opts)
}

/// Waits until the API lists `live/name` as publishing; panics with what the publisher and the
/// server said otherwise.
fn expect_live(server: &Server, name: &str, publisher: Option<&FfmpegPublisher>) -> Value {
    srtc::wait_live(server.api_port, "live", name, LIVE_WAIT).unwrap_or_else(|| {
        panic!(
            "[{}] live/{name} is not publishing in /api/v1/streams within {LIVE_WAIT:?}\n\
             publisher stderr:\n{}\n--- server log tail ---\n{}",
            server.io,
            publisher.map(|p| p.stderr()).unwrap_or_default(),
            server.stderr_tail(30)
        )
    })
}

/// The longest step between consecutive decode times: `(where, how long)` in seconds.
fn longest_gap(dts: &[f64]) -> (f64, f64) {
    dts.windows(2)
        .map(|w| (w[0], w[1] - w[0]))
        .fold((0.0, 0.0), |max, g| if g.1 > max.1 { g } else { max })
}

/// A `-c copy` recording of `seconds`: ~`seconds` of 30 fps video (a GOP-cache start may add
/// up to one 1 s GOP) and of AAC, starting on a keyframe, each track's DTS only moving forward.
fn check_recording(io: Io, what: &str, file: &Path, seconds: f64) {
    let counts = ffprobe_frame_counts(file);
    let video_frames = counts.get("video").copied().unwrap_or(0) as f64;
    let audio_frames = counts.get("audio").copied().unwrap_or(0) as f64;
    let packets = ffprobe_packets(file);
    let (gap_at, gap) = longest_gap(&dts_of(&packets, "video"));
    eprintln!(
        "[{io}] {what}: {video_frames} video, {audio_frames} audio frames in {seconds} s; \
         longest video DTS step {:.0} ms at {gap_at:.3} s",
        gap * 1000.0
    );
    // 4 s: 120 frames; the same tolerance as tests/http_flv_ts.rs (100..=155).
    let expected = seconds * FPS;
    assert!(
        (expected - 20.0..=expected + 35.0).contains(&video_frames),
        "[{io}] {what}: decoded {video_frames} video frames from {seconds} s at 30 fps \
         (longest video DTS step {:.0} ms at {gap_at:.3} s)",
        gap * 1000.0
    );
    // 44.1 kHz AAC: 43 frames of 1024 samples a second.
    let expected_audio = seconds * 44_100.0 / 1024.0;
    assert!(
        (expected_audio * 0.8..=expected_audio * 1.5).contains(&audio_frames),
        "[{io}] {what}: decoded {audio_frames} audio frames from {seconds} s"
    );
    assert_starts_on_keyframe(io, what, &packets);
    for kind in ["video", "audio"] {
        let dts = dts_of(&packets, kind);
        assert!(
            dts.len() as f64 > expected * 0.8,
            "[{io}] {what}: only {} {kind} packets with a DTS",
            dts.len()
        );
        if let Some(w) = dts.windows(2).find(|w| w[1] < w[0]) {
            panic!(
                "[{io}] {what}: {kind} DTS goes backwards: {} -> {}",
                w[0], w[1]
            );
        }
        let span = dts.last().unwrap() - dts.first().unwrap();
        assert!(
            (seconds - 0.5..=seconds + 0.6).contains(&span),
            "[{io}] {what}: {kind} DTS spans {span:.3} s in a {seconds} s recording"
        );
    }
}

/// Records `seconds` of `url` with `-c copy` into `dir/name`, failing the test if ffmpeg does.
fn record(io: Io, url: &str, seconds: f64, dir: &TempDir, name: &str, format: &str) -> String {
    let file = dir.join(name);
    let out = ffmpeg_record_as(url, seconds, &file, format, Duration::from_secs(25));
    assert!(
        out.success(),
        "[{io}] ffmpeg recording of {url} failed: {out:?}"
    );
    file.display().to_string()
}

/// The server's "srt connection rejected" lines (any of its variants).
fn rejections(server: &Server) -> Vec<common::LogLine> {
    server.find_logs(|l| l.message.starts_with("srt connection rejected"))
}

/// An SRT caller that must be refused: ffmpeg exits non-zero within [`REFUSED_WITHIN`].
fn expect_refused_publish(server: &Server, url: &str, why: &str) -> common::Output {
    let out = srtc::ffmpeg_publish_once(url, 30.0, REFUSED_WITHIN);
    assert!(
        out.status.is_some(),
        "[{}] {why}: the SRT publisher still ran after {REFUSED_WITHIN:?} ({url})\n\
         --- server log tail ---\n{}",
        server.io,
        server.stderr_tail(30)
    );
    assert!(
        !out.success(),
        "[{}] {why}: ffmpeg published to {url} and exited 0: {out:?}",
        server.io
    );
    eprintln!(
        "[{}] {why}: ffmpeg gave up after {:.1?}: {}",
        server.io,
        out.elapsed,
        out.stderr.lines().last().unwrap_or("")
    );
    out
}

/// Waits (3 s at most) for an "srt connection rejected" line beyond the first `before`, for
/// the refused caller `what`; panics with the server's log tail otherwise. Returns the latest.
fn expect_rejection(server: &Server, before: usize, what: &str) -> common::LogLine {
    let seen = common::wait_until(Duration::from_secs(3), || rejections(server).len() > before);
    assert!(
        seen,
        "[{}] no \"srt connection rejected\" line for {what}\n\
         --- server log tail ---\n{}",
        server.io,
        server.stderr_tail(30)
    );
    let line = rejections(server).pop().expect("a rejection");
    eprintln!("[{}] {line}", server.io);
    line
}

/// `live/name` is still publishing in `/api/v1/streams` (`after`: after or while what).
fn assert_still_live(server: &Server, name: &str, after: &str) {
    assert!(
        srtc::live_stream(server.api_port, "live", name).is_some(),
        "[{}] live/{name} stopped publishing {after}",
        server.io
    );
}

/// No stream `live/name` in `/api/v1/streams` (publishing or not), and none over HTTP-FLV.
fn assert_not_published(server: &Server, name: &str, why: &str) {
    let io = server.io;
    let streams = common::api_client::Api::new(server.api_port).streams();
    assert!(
        !streams
            .iter()
            .any(|s| s["app"] == "live" && s["name"] == name && s["publish"]["active"] == true),
        "[{io}] {why}: live/{name} is publishing in /api/v1/streams: {streams:#?}"
    );
    let response = http_client::get(server.http_port, &format!("/live/{name}.flv"))
        .unwrap_or_else(|e| panic!("[{io}] GET /live/{name}.flv: {e}"));
    assert_eq!(
        response.status, 404,
        "[{io}] {why}: /live/{name}.flv is served"
    );
}

// ---------------------------------------------------------------------------------------------
// 1. ffmpeg publishes over SRT; RTMP and HTTP-FLV play

#[test]
fn srt_publish_plays_over_rtmp_and_http_flv() {
    srtc::require_ffmpeg_srt();
    common::on_each_backend(publish_plays);
}

fn publish_plays(io: Io) {
    let server = Server::start(io, &ServerConfig::new());
    let publisher = srt_publish(&server, "live/s", PublishOpts::default().seconds(30.0), &[]);
    expect_live(&server, "s", Some(&publisher));
    let rtmp_url = server.url("s");
    let flv_url = server.live_url("s", "flv");
    probe_av(io, &rtmp_url, "h264");
    probe_av(io, &flv_url, "h264");

    let dir = TempDir::new("srt-publish");
    let (rtmp_file, flv_file) = std::thread::scope(|s| {
        let rtmp = s.spawn(|| record(io, &rtmp_url, RECORD_SECONDS, &dir, "rtmp.flv", "flv"));
        let flv = s.spawn(|| record(io, &flv_url, RECORD_SECONDS, &dir, "http.flv", "flv"));
        (rtmp.join().unwrap(), flv.join().unwrap())
    });
    check_recording(io, &rtmp_url, Path::new(&rtmp_file), RECORD_SECONDS);
    check_recording(io, &flv_url, Path::new(&flv_file), RECORD_SECONDS);
    server.assert_no_panic();
}

// ---------------------------------------------------------------------------------------------
// 2. srt-live-transmit plays an RTMP publish

#[test]
fn srt_live_transmit_plays_an_rtmp_publish() {
    common::require_ffmpeg();
    srtc::require_srt_tools();
    common::on_each_backend(slt_plays);
}

/// The PID of the TS packet at `at`.
fn ts_pid(bytes: &[u8], at: usize) -> Option<u16> {
    let packet = bytes.get(at..at + 188)?;
    (packet[0] == 0x47).then(|| (u16::from(packet[1] & 0x1f) << 8) | u16::from(packet[2]))
}

fn slt_plays(io: Io) {
    const PLAY_SECONDS: u32 = 6;
    let server = Server::start(io, &ServerConfig::new());
    let publisher = FfmpegPublisher::start(&server, "s", PublishOpts::default().seconds(30.0));
    expect_live(&server, "s", Some(&publisher));
    let dir = TempDir::new("srt-slt-play");
    let url = server.srt_url(&request_id("live/s"), &[]);
    let played = srtc::slt_play(&url, PLAY_SECONDS, &dir.join("out.ts"));
    eprintln!(
        "[{io}] srt-live-transmit wrote {} bytes in {PLAY_SECONDS} s (exit {:?})",
        played.bytes, played.status
    );
    assert!(
        played.bytes > 50_000,
        "[{io}] srt-live-transmit received {} bytes from {url}; it said:\n{}\n\
         --- server log tail ---\n{}",
        played.bytes,
        played.stderr,
        server.stderr_tail(30)
    );
    let bytes = std::fs::read(&played.file).expect("read out.ts");
    assert_eq!(
        ts_pid(&bytes, 0),
        Some(0),
        "[{io}] the SRT stream does not start with a PAT (first bytes {:02x?})",
        &bytes[..bytes.len().min(8)]
    );
    let file = played.file.display().to_string();
    probe_av(io, &file, "h264");
    let packets = ffprobe_packets(&played.file);
    assert_starts_on_keyframe(io, &file, &packets);
    let frames = ffprobe_frame_counts(&played.file);
    let video = frames.get("video").copied().unwrap_or(0) as f64;
    let expected = f64::from(PLAY_SECONDS) * FPS;
    eprintln!("[{io}] {video} video frames played, {expected} expected");
    assert!(
        video >= expected * 0.8,
        "[{io}] srt-live-transmit got {video} video frames in {PLAY_SECONDS} s at 30 fps"
    );
    assert!(
        frames.get("audio").copied().unwrap_or(0) > 0,
        "[{io}] no audio frames decoded: {frames:?}"
    );
    server.assert_no_panic();
}

// ---------------------------------------------------------------------------------------------
// 3. srt-live-transmit publishes

#[test]
fn srt_live_transmit_publishes() {
    common::require_ffmpeg();
    srtc::require_srt_tools();
    common::on_each_backend(slt_publishes);
}

fn slt_publishes(io: Io) {
    let server = Server::start(io, &ServerConfig::new());
    let mut publisher =
        srtc::SltPublisher::start(&server.srt_url(&publish_id("live/s2"), &[]), 30.0);
    if srtc::wait_live(server.api_port, "live", "s2", LIVE_WAIT).is_none() {
        panic!(
            "[{io}] live/s2 is not publishing within {LIVE_WAIT:?} (publisher running: {})\n\
             {}\n--- server log tail ---\n{}",
            publisher.is_running(),
            publisher.logs(),
            server.stderr_tail(30)
        );
    }
    probe_av(io, &server.live_url("s2", "flv"), "h264");
    server.assert_no_panic();
}

// ---------------------------------------------------------------------------------------------
// 4. ffmpeg publishes over SRT, ffmpeg plays over SRT

#[test]
fn ffmpeg_plays_over_srt_what_ffmpeg_publishes_over_srt() {
    srtc::require_ffmpeg_srt();
    common::on_each_backend(srt_to_srt);
}

fn srt_to_srt(io: Io) {
    let server = Server::start(io, &ServerConfig::new());
    let publisher = srt_publish(&server, "live/s", PublishOpts::default().seconds(30.0), &[]);
    expect_live(&server, "s", Some(&publisher));
    let dir = TempDir::new("srt-to-srt");
    let url = server.srt_url(&request_id("live/s"), &[FFMPEG_LATENCY]);
    let file = record(io, &url, RECORD_SECONDS, &dir, "out.ts", "mpegts");
    probe_av(io, &file, "h264");
    let decoded = common::hls::decode(Path::new(&file));
    assert!(
        decoded.success() && decoded.stderr.trim().is_empty(),
        "[{io}] the SRT recording does not decode cleanly: {decoded:?}"
    );
    check_recording(io, &url, Path::new(&file), RECORD_SECONDS);
    server.assert_no_panic();
}

// ---------------------------------------------------------------------------------------------
// 5. H.265

#[test]
fn hevc_over_srt_plays_as_hevc() {
    srtc::require_ffmpeg_srt();
    if !common::hls::have_encoder("libx265") {
        eprintln!("NOTE: skipping the SRT H.265 test: this ffmpeg has no libx265");
        return;
    }
    common::on_each_backend(hevc);
}

fn hevc(io: Io) {
    let server = Server::start(io, &ServerConfig::new().hls("hls_fragment", 1));
    let opts = PublishOpts::default().seconds(30.0).encoder("libx265");
    let publisher = srt_publish(&server, "live/s", opts, &[]);
    let stream = expect_live(&server, "s", Some(&publisher));
    eprintln!("[{io}] API video: {}", stream["video"]);

    // HTTP-TS and HLS: ffprobe reads HEVC.
    probe_av(io, &server.live_url("s", "ts"), "hevc");
    let playlist = "/live/s.m3u8";
    let segment_ready = common::wait_until(Duration::from_secs(15), || {
        let response = common::hls::get(server.http_port, playlist);
        response.status == 200 && response.body_text().contains("#EXTINF")
    });
    assert!(
        segment_ready,
        "[{io}] {playlist} has no segment within 15 s:\n{}",
        common::hls::get(server.http_port, playlist).body_text()
    );
    probe_av(io, &server.http_url(playlist), "hevc");

    // HTTP-FLV: Enhanced RTMP video tags, FourCC hvc1, a sequence start first.
    let viewer = LiveViewer::start_with(
        server.http_port,
        "/live/s.flv",
        Duration::from_secs(10),
        ViewerOpts::default().raw(1 << 20),
    )
    .unwrap_or_else(|e| panic!("[{io}] GET /live/s.flv: {e}"));
    assert_eq!(viewer.response.status, 200, "[{io}] GET /live/s.flv");
    let video_tags = |body: &[u8]| {
        srtc::flv_tags(body)
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t.tag_type == 9)
            .collect::<Vec<_>>()
    };
    viewer.wait_for(Duration::from_secs(5), |r| video_tags(&r.body).len() >= 10);
    let recording = viewer.stop();
    srtc::flv_tags(&recording.body).unwrap_or_else(|e| panic!("[{io}] /live/s.flv: {e}"));
    let tags = video_tags(&recording.body);
    assert!(
        tags.len() >= 10,
        "[{io}] /live/s.flv: {} video tags in 5 s ({} body bytes)",
        tags.len(),
        recording.body.len()
    );
    for (i, tag) in tags.iter().enumerate() {
        let head = &tag.body[..tag.body.len().min(5)];
        assert!(
            head.len() == 5 && head[0] & 0x80 != 0 && &head[1..5] == b"hvc1",
            "[{io}] /live/s.flv: video tag {i} is not Enhanced RTMP hvc1: first bytes {head:02x?}"
        );
    }
    let first = VideoTag::parse(&tags[0].body).expect("a video tag");
    assert!(
        first.codec == VideoCodec::Hevc && first.sequence_header,
        "[{io}] /live/s.flv: the first video tag is not an HEVC sequence start: {first:?}"
    );
    let first_frame = tags
        .iter()
        .filter_map(|t| VideoTag::parse(&t.body))
        .find(|t| !t.sequence_header && !t.info_frame)
        .unwrap_or_else(|| panic!("[{io}] /live/s.flv: no coded HEVC frame"));
    assert!(
        first_frame.keyframe,
        "[{io}] /live/s.flv: the first HEVC frame is not a keyframe: {first_frame:?}"
    );
    server.assert_no_panic();
}

// ---------------------------------------------------------------------------------------------
// 6. Encryption

const PASSPHRASE: &str = "sluice-secret-1";

fn encrypted_config(pbkeylen: u32) -> ServerConfig {
    ServerConfig::new()
        .srt("passphrase", common::toml_string(PASSPHRASE))
        .srt("pbkeylen", pbkeylen)
}

#[test]
fn srt_passphrase_admits_only_callers_that_have_it() {
    srtc::require_ffmpeg_srt();
    common::on_each_backend(|io| encrypted(io, 16, true));
}

#[test]
fn srt_passphrase_with_a_32_byte_key() {
    srtc::require_ffmpeg_srt();
    common::on_each_backend(|io| encrypted(io, 32, false));
}

fn encrypted(io: Io, pbkeylen: u32, try_wrong: bool) {
    let server = Server::start(io, &encrypted_config(pbkeylen));
    let passphrase = format!("passphrase={PASSPHRASE}");
    let keylen = format!("pbkeylen={pbkeylen}");
    let publisher = srt_publish(
        &server,
        "live/enc",
        PublishOpts::default().seconds(30.0),
        &[&passphrase, &keylen],
    );
    expect_live(&server, "enc", Some(&publisher));
    probe_av(io, &server.url("enc"), "h264");
    if !try_wrong {
        server.assert_no_panic();
        return;
    }

    let wrong = server.srt_url(
        &publish_id("live/wrong"),
        &[FFMPEG_LATENCY, "passphrase=not-the-secret-2", &keylen],
    );
    expect_refused_publish(&server, &wrong, "a wrong passphrase");
    let none = server.srt_url(&publish_id("live/none"), &[FFMPEG_LATENCY]);
    expect_refused_publish(&server, &none, "no passphrase");
    for name in ["wrong", "none"] {
        assert_not_published(&server, name, "a refused SRT caller");
    }
    let rejected = rejections(&server);
    for line in &rejected {
        eprintln!("[{io}] {line}");
    }
    assert!(
        rejected.len() >= 2,
        "[{io}] expected an \"srt connection rejected\" line for each refused caller, got {}\n\
         --- server log tail ---\n{}",
        rejected.len(),
        server.stderr_tail(30)
    );
    // The encrypted publish is still up.
    assert_still_live(&server, "enc", "while others were refused");
    server.assert_no_panic();
}

// ---------------------------------------------------------------------------------------------
// 7. Packet loss

#[test]
fn srt_publish_recovers_5_percent_loss() {
    srtc::require_ffmpeg_srt();
    common::on_each_backend(lossy);
}

fn lossy(io: Io) {
    const SECONDS: f64 = 5.0;
    let server = Server::start(io, &ServerConfig::new());
    let relay = UdpRelay::start(
        server.srt_addr(),
        Loss::both(0.05),
        0x5eed_0005,
        Duration::from_secs(60),
    )
    .expect("start the UDP relay");
    let url = srtc::url(relay.addr, &publish_id("live/s"), &[FFMPEG_LATENCY]);
    let publisher =
        FfmpegPublisher::start_url(&url, "mpegts", PublishOpts::default().seconds(30.0));
    expect_live(&server, "s", Some(&publisher));
    std::thread::sleep(Duration::from_millis(500));
    let dir = TempDir::new("srt-loss");
    let file = record(io, &server.url("s"), SECONDS, &dir, "rtmp.flv", "flv");
    let counts = relay.counts();
    eprintln!("[{io}] relay: {counts}");
    assert!(
        counts.to_server_dropped > 0 && counts.to_client_dropped > 0,
        "[{io}] the relay dropped nothing in one direction: {counts}"
    );
    assert!(
        counts.to_server_forwarded > 100,
        "[{io}] the relay carried little: {counts}"
    );

    let packets = ffprobe_packets(Path::new(&file));
    let dts = dts_of(&packets, "video");
    assert!(dts.len() > 2, "[{io}] {file}: {} video packets", dts.len());
    // Frames the recorded span should hold at 30 fps (a GOP-cache start makes the span begin
    // before the recording did; counting over the span keeps those frames out of the score).
    let span = dts.last().unwrap() - dts.first().unwrap();
    let expected = span * FPS + 1.0;
    let frames = dts.len() as f64;
    let (gap_at, gap) = longest_gap(&dts);
    eprintln!(
        "[{io}] {frames} video frames over {span:.3} s ({:.1} % of {expected:.0}); longest DTS \
         gap {:.0} ms at {gap_at:.3} s",
        100.0 * frames / expected,
        gap * 1000.0
    );
    assert!(
        frames >= 0.95 * expected,
        "[{io}] with 5 % loss each way the recording has {frames} of {expected:.0} video frames \
         ({counts})"
    );
    assert!(
        gap <= 0.100,
        "[{io}] with 5 % loss each way the video DTS jumps {:.0} ms at {gap_at:.3} s ({counts})",
        gap * 1000.0
    );
    if let Some(w) = dts.windows(2).find(|w| w[1] < w[0]) {
        panic!("[{io}] video DTS goes backwards: {} -> {}", w[0], w[1]);
    }
    let decoded = common::hls::decode(Path::new(&file));
    let errors = decoded.stderr.lines().count();
    eprintln!("[{io}] decoding the lossy recording: {errors} error line(s)");
    drop(publisher);
    server.assert_no_panic();
}

// ---------------------------------------------------------------------------------------------
// 8. Stream ids

#[test]
fn srt_stream_id_forms() {
    srtc::require_ffmpeg_srt();
    common::on_each_backend(stream_ids);
}

fn stream_ids(io: Io) {
    let server = Server::start(io, &ServerConfig::new());

    // A player of a stream nobody publishes: it waits (or is let go); the server carries on.
    let dir = TempDir::new("srt-ids");
    let nobody = server.srt_url(&request_id("live/nobody"), &[]);
    let waiting = std::thread::scope(|s| {
        let player = s.spawn(|| {
            ffmpeg_record_as(
                &nobody,
                2.0,
                &dir.join("nobody.ts"),
                "mpegts",
                Duration::from_secs(5),
            )
        });

        // No resource: rejected at the handshake, with the reason.
        let before = rejections(&server).len();
        let bad = server.srt_url("#!::m=publish", &[FFMPEG_LATENCY]);
        expect_refused_publish(&server, &bad, "a stream id without a resource");
        let line = expect_rejection(&server, before, "#!::m=publish");
        assert!(
            line.str("reason").is_some_and(|r| !r.is_empty())
                || line.message.len() > "srt connection rejected".len(),
            "[{io}] the rejection does not say why: {line}"
        );
        player.join().unwrap()
    });
    eprintln!(
        "[{io}] a player of live/nobody: exit {:?} after {:.1?}",
        waiting.status, waiting.elapsed
    );
    assert!(
        !waiting.success() || std::fs::metadata(dir.join("nobody.ts")).map_or(0, |m| m.len()) == 0,
        "[{io}] a player of a stream nobody publishes recorded something: {waiting:?}"
    );

    // The legacy form publishes.
    let legacy = server.srt_url("#!::h=live/leg,m=publish", &[FFMPEG_LATENCY]);
    let publisher =
        FfmpegPublisher::start_url(&legacy, "mpegts", PublishOpts::default().seconds(30.0));
    expect_live(&server, "leg", Some(&publisher));
    probe_av(io, &server.url("leg"), "h264");

    // A plain app/stream and an r= without m= play.
    for streamid in ["live/leg", "#!::r=live/leg"] {
        probe_av(io, &server.srt_url(streamid, &[]), "h264");
    }
    assert_still_live(&server, "leg", "while SRT players played it");
    server.assert_no_panic();
}

// ---------------------------------------------------------------------------------------------
// 9. Callbacks

#[test]
fn srt_callbacks_carry_the_stream_id() {
    srtc::require_ffmpeg_srt();
    common::on_each_backend(callbacks);
}

fn callbacks(io: Io) {
    const WAIT: Duration = Duration::from_secs(10);
    let hooks = HookServer::start();
    let mut config = ServerConfig::new()
        .hooks("enabled", true)
        .hooks("timeout_ms", 3000);
    for hook in ["on_publish", "on_unpublish", "on_play", "on_stop"] {
        config = config.hooks(hook, hooks.toml("auto"));
    }
    let server = Server::start(io, &config);

    // on_publish: app, stream, and the extra keys as SRS's param.
    let url = server.srt_url("#!::r=live/s,m=publish,secret=abc", &[FFMPEG_LATENCY]);
    let mut publisher =
        FfmpegPublisher::start_url(&url, "mpegts", PublishOpts::default().seconds(30.0));
    let request = hooks.expect("on_publish", WAIT, |r| r.str("stream") == Some("s"));
    assert_eq!(
        request.str("app"),
        Some("live"),
        "[{io}] {}",
        request.raw_body
    );
    assert_eq!(
        request.str("stream"),
        Some("s"),
        "[{io}] {}",
        request.raw_body
    );
    // SRS turns the extra keys into a query string, and keeps its `?` as for RTMP.
    assert_eq!(
        request.str("param"),
        Some("?secret=abc"),
        "[{io}] on_publish param: {}",
        request.raw_body
    );
    expect_live(&server, "s", Some(&publisher));
    let publisher_id = request.client_id().to_string();

    // on_play / on_stop for an SRT player.
    let dir = TempDir::new("srt-hooks");
    let play_url = server.srt_url("#!::r=live/s,m=request,token=xyz", &[]);
    let file = record(io, &play_url, 2.0, &dir, "play.ts", "mpegts");
    probe_av(io, &file, "h264");
    let play = hooks.expect("on_play", WAIT, |r| r.str("stream") == Some("s"));
    assert_eq!(play.str("app"), Some("live"), "[{io}] {}", play.raw_body);
    assert_eq!(
        play.str("param"),
        Some("?token=xyz"),
        "[{io}] on_play param: {}",
        play.raw_body
    );
    let player_id = play.client_id().to_string();
    hooks.expect("on_stop", WAIT, |r| r.client_id() == player_id);

    // A refusing on_publish ends that publisher, and only it.
    let denied = server.srt_url("#!::r=live/d,m=publish,hook=deny", &[FFMPEG_LATENCY]);
    expect_refused_publish(&server, &denied, "an on_publish answering {\"code\":1}");
    let request = hooks.expect("on_publish", WAIT, |r| r.str("stream") == Some("d"));
    assert_eq!(
        request.str("param"),
        Some("?hook=deny"),
        "[{io}] {}",
        request.raw_body
    );
    assert_not_published(&server, "d", "refused by on_publish");
    assert_still_live(&server, "s", "when another publisher was refused");
    probe_av(io, &server.url("s"), "h264");

    // on_unpublish when the SRT publisher stops (ffmpeg closes the connection on SIGTERM).
    common::send_signal(publisher.pid(), libc::SIGTERM);
    let _ = publisher.wait_exit(Duration::from_secs(5));
    let unpublish = hooks.expect("on_unpublish", WAIT, |r| r.client_id() == publisher_id);
    assert_eq!(
        unpublish.str("stream"),
        Some("s"),
        "[{io}] {}",
        unpublish.raw_body
    );
    assert_eq!(
        unpublish.str("param"),
        Some("?secret=abc"),
        "[{io}] on_unpublish param: {}",
        unpublish.raw_body
    );
    server.assert_no_panic();
}

// ---------------------------------------------------------------------------------------------
// 10. HTTP API

#[test]
fn srt_clients_and_streams_in_the_api() {
    srtc::require_ffmpeg_srt();
    common::on_each_backend(api);
}

fn api(io: Io) {
    let server = Server::start(io, &ServerConfig::new());
    let api = common::api_client::Api::new(server.api_port);
    let publisher = srt_publish(&server, "live/s", PublishOpts::default().seconds(30.0), &[]);
    let stream = expect_live(&server, "s", Some(&publisher));
    // The video codec is known once the first keyframe has been parsed.
    let mut stream = stream;
    common::wait_until(Duration::from_secs(5), || {
        stream = srtc::live_stream(server.api_port, "live", "s").unwrap_or(Value::Null);
        stream["video"]["codec"] == "H264"
    });
    assert_eq!(
        stream["video"]["codec"], "H264",
        "[{io}] /api/v1/streams entry of live/s: {stream:#?}"
    );
    let clients = api.clients();
    let publishing = clients
        .iter()
        .find(|c| c["type"] == "srt-publish")
        .unwrap_or_else(|| panic!("[{io}] no srt-publish client in /api/v1/clients: {clients:#?}"));
    assert_eq!(publishing["publish"], true, "[{io}] {publishing:#?}");
    assert_eq!(publishing["stream"], stream["id"], "[{io}] {publishing:#?}");

    // An SRT player shows up as srt-play while it plays.
    let url = server.srt_url(&request_id("live/s"), &[]);
    let dir = TempDir::new("srt-api");
    let seen = std::thread::scope(|s| {
        let player = s.spawn(|| record(io, &url, 3.0, &dir, "play.ts", "mpegts"));
        let mut seen = None;
        common::wait_until(Duration::from_secs(5), || {
            seen = api.clients().into_iter().find(|c| c["type"] == "srt-play");
            seen.is_some()
        });
        player.join().unwrap();
        seen
    });
    let player = seen.unwrap_or_else(|| {
        panic!(
            "[{io}] no srt-play client in /api/v1/clients while an SRT player played: {:#?}",
            api.clients()
        )
    });
    assert_eq!(player["publish"], false, "[{io}] {player:#?}");
    server.assert_no_panic();
}

// ---------------------------------------------------------------------------------------------
// 11. Junk datagrams

#[test]
fn junk_datagrams_do_not_disturb_an_srt_publish() {
    srtc::require_ffmpeg_srt();
    common::on_each_backend(junk);
}

fn junk(io: Io) {
    let server = Server::start(io, &ServerConfig::new());
    let publisher = srt_publish(&server, "live/s", PublishOpts::default().seconds(30.0), &[]);
    expect_live(&server, "s", Some(&publisher));
    let dir = TempDir::new("srt-junk");
    let rtmp_url = server.url("s");
    let datagrams = srtc::junk_datagrams(0x6a75_6e6b, 1000);
    let (file, sent) = std::thread::scope(|s| {
        let recording = s.spawn(|| record(io, &rtmp_url, RECORD_SECONDS, &dir, "rtmp.flv", "flv"));
        // Over ~2 s, from another socket, while the recording runs.
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a junk socket");
        let started = Instant::now();
        let mut sent = 0;
        for (i, datagram) in datagrams.iter().enumerate() {
            if socket.send_to(datagram, server.srt_addr()).is_ok() {
                sent += 1;
            }
            if i % 10 == 9 {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        eprintln!(
            "[{io}] sent {sent} junk datagrams in {:.1?}",
            started.elapsed()
        );
        (recording.join().unwrap(), sent)
    });
    assert!(sent >= 990, "[{io}] could send only {sent} junk datagrams");
    check_recording(io, &rtmp_url, Path::new(&file), RECORD_SECONDS);
    assert_still_live(&server, "s", "after the junk");
    server.assert_no_panic();
}

// ---------------------------------------------------------------------------------------------
// 12. Several SRT players at once

#[test]
fn several_srt_players_all_play() {
    common::require_ffmpeg();
    srtc::require_srt_tools();
    common::on_each_backend(several_players);
}

fn several_players(io: Io) {
    const PLAYERS: usize = 4;
    const PLAY_SECONDS: u32 = 4;
    let server = Server::start(io, &ServerConfig::new());
    let publisher = FfmpegPublisher::start(&server, "s", PublishOpts::default().seconds(30.0));
    expect_live(&server, "s", Some(&publisher));
    let dir = TempDir::new("srt-players");
    let url = server.srt_url(&request_id("live/s"), &[]);
    // Started 100 ms apart, so they land on both workers and join at different points of a GOP.
    let played: Vec<srtc::SltPlay> = std::thread::scope(|s| {
        let players: Vec<_> = (0..PLAYERS)
            .map(|i| {
                let (url, file) = (&url, dir.join(&format!("p{i}.ts")));
                std::thread::sleep(Duration::from_millis(100));
                s.spawn(move || srtc::slt_play(url, PLAY_SECONDS, &file))
            })
            .collect();
        players.into_iter().map(|p| p.join().unwrap()).collect()
    });
    let mut failures = Vec::new();
    for (i, play) in played.iter().enumerate() {
        let frames = if play.bytes > 0 {
            ffprobe_frame_counts(&play.file)
                .get("video")
                .copied()
                .unwrap_or(0)
        } else {
            0
        };
        eprintln!(
            "[{io}] SRT player {i}: {} bytes, {frames} video frames in {PLAY_SECONDS} s",
            play.bytes
        );
        // At least 3 of its 4 s: the connection takes a few ms, the start waits for a keyframe
        // at most one 1 s GOP (none with the GOP cache).
        if (frames as f64) < (f64::from(PLAY_SECONDS) - 1.0) * FPS {
            failures.push(format!(
                "player {i}: {} bytes, {frames} video frames; it said: {}",
                play.bytes,
                play.stderr.trim()
            ));
        }
    }
    let connected: Vec<String> = server
        .find_logs(|l| l.message == "srt client connected")
        .iter()
        .map(|l| {
            format!(
                "{} worker {:?}",
                l.client().unwrap_or_default(),
                l.u64("worker")
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "[{io}] {} of {PLAYERS} SRT players of live/s did not play ({}):\n{}\n\
         --- server log tail ---\n{}",
        failures.len(),
        connected.join(", "),
        failures.join("\n"),
        server.stderr_tail(30)
    );
    server.assert_no_panic();
}

// ---------------------------------------------------------------------------------------------
// 13. Security rules

#[test]
fn srt_callers_obey_the_security_rules() {
    srtc::require_ffmpeg_srt();
    common::on_each_backend(security);
}

fn secured(rules: &[&str]) -> ServerConfig {
    let quoted: Vec<String> = rules.iter().map(|r| common::toml_string(r)).collect();
    ServerConfig::new()
        .security("enabled", true)
        .security("rules", format!("[{}]", quoted.join(", ")))
}

fn security(io: Io) {
    // Publishing allowed, playing denied: the SRT player is turned away at the handshake.
    let server = Server::start(io, &secured(&["allow publish all", "deny play all"]));
    let publisher = srt_publish(&server, "live/s", PublishOpts::default().seconds(30.0), &[]);
    expect_live(&server, "s", Some(&publisher));
    let dir = TempDir::new("srt-security");
    let url = server.srt_url(&request_id("live/s"), &[]);
    let play = ffmpeg_record_as(&url, 2.0, &dir.join("play.ts"), "mpegts", REFUSED_WITHIN);
    assert!(
        play.status.is_some() && !play.success(),
        "[{io}] an SRT player denied by the rules was not refused: {play:?}"
    );
    expect_rejection(&server, 0, "a player the rules deny");
    server.assert_no_panic();
    drop(server);

    // Publishing denied: the SRT publisher is turned away, nothing is published.
    let server = Server::start(io, &secured(&["deny publish all", "allow play all"]));
    let url = server.srt_url(&publish_id("live/s"), &[FFMPEG_LATENCY]);
    expect_refused_publish(&server, &url, "a publisher the rules deny");
    expect_rejection(&server, 0, "a publisher the rules deny");
    assert_not_published(&server, "s", "denied by the security rules");
    server.assert_no_panic();
}
