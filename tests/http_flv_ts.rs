//! Live streams over HTTP as ffprobe, ffmpeg and a plain HTTP client see them: `.flv` and `.ts`
//! carry H.264 320x240 and AAC, record with `-c copy` to the right number of frames with decode
//! timestamps that only move forward, starting on a keyframe (TS: with PAT/PMT first); `.aac` is
//! ADTS that ffprobe reads as 44.1 kHz AAC; HTTP/1.0 gets the FLV body without chunked coding;
//! HEAD answers the head only; a stream nobody publishes is 404. Each viewer is logged with its
//! format when it starts and with its role when it leaves.

mod common;

use std::path::Path;
use std::time::Duration;

use common::http_client::{self, HttpConn, LiveViewer, Transport, ViewerOpts};
use common::{
    FfmpegPublisher, Io, PublishOpts, Server, ServerConfig, TempDir, assert_starts_on_keyframe,
    ffmpeg_record_as, ffprobe_frame_counts, ffprobe_packets, ffprobe_streams, probe_av,
};

const RECORD_SECONDS: f64 = 4.0;
const TS_PACKET: usize = 188;

#[test]
fn http_flv_ts_aac_play_in_ffmpeg() {
    common::require_ffmpeg();
    common::on_each_backend(flv_ts_aac);
}

/// A `-c copy` recording of RECORD_SECONDS: ~4 s of 30 fps video and of audio, starting on a
/// keyframe, DTS monotonic per track and spanning ~4 s.
fn check_recording(io: Io, url: &str, file: &Path) {
    let counts = ffprobe_frame_counts(file);
    let video_frames = counts.get("video").copied().unwrap_or(0);
    let audio_frames = counts.get("audio").copied().unwrap_or(0);
    eprintln!(
        "[{io}] {url}: {video_frames} video, {audio_frames} audio frames in {RECORD_SECONDS} s"
    );
    // 4 s at 30 fps = 120; the GOP-cache start may add up to one GOP (30), jitter a few.
    assert!(
        (100..=155).contains(&video_frames),
        "[{io}] {url}: decoded {video_frames} video frames from {RECORD_SECONDS} s at 30 fps"
    );
    // 4 s of 44.1 kHz AAC is ~172 frames of 1024 samples.
    assert!(
        (140..=260).contains(&audio_frames),
        "[{io}] {url}: decoded {audio_frames} audio frames from {RECORD_SECONDS} s"
    );
    let packets = ffprobe_packets(file);
    assert_starts_on_keyframe(io, url, &packets);
    for kind in ["video", "audio"] {
        let dts: Vec<f64> = packets
            .iter()
            .filter(|p| p.codec_type == kind)
            .filter_map(|p| p.dts_time)
            .collect();
        assert!(
            dts.len() > 100,
            "[{io}] {url}: only {} {kind} packets with a DTS",
            dts.len()
        );
        if let Some(w) = dts.windows(2).find(|w| w[1] < w[0]) {
            panic!(
                "[{io}] {url}: {kind} DTS goes backwards: {} -> {}",
                w[0], w[1]
            );
        }
        let span = dts.last().unwrap() - dts.first().unwrap();
        assert!(
            (3.5..=4.6).contains(&span),
            "[{io}] {url}: {kind} DTS spans {span:.3} s in a {RECORD_SECONDS} s recording"
        );
    }
}

/// The server's client id for our connection from `viewer`, and its "play started" format.
fn expect_play_started(server: &Server, viewer: &LiveViewer, format: &str) -> String {
    let addr = viewer.local_addr;
    let connected = server.expect_log(
        &format!("client connected from {addr}"),
        |l| l.is("client connected") && l.peer() == Some(addr),
        Duration::from_secs(3),
    );
    assert_eq!(
        connected.str("proto").as_deref(),
        Some("http"),
        "[{}] {connected}",
        server.io
    );
    let id = connected.client().expect("client id");
    let started = server.expect_log(
        &format!("play started for {id}"),
        |l| l.is("play started") && l.client().as_deref() == Some(id.as_str()),
        Duration::from_secs(3),
    );
    assert_eq!(
        started.str("format").as_deref(),
        Some(format),
        "[{}] {}: {started}",
        server.io,
        viewer.target
    );
    id
}

fn expect_left(server: &Server, id: &str, role: &str) {
    let left = server.expect_log(
        &format!("client left for {id}"),
        |l| l.is("client left") && l.client().as_deref() == Some(id),
        Duration::from_secs(3),
    );
    assert_eq!(
        left.str("proto").as_deref(),
        Some("http"),
        "[{}] {left}",
        server.io
    );
    assert_eq!(
        left.str("role").as_deref(),
        Some(role),
        "[{}] {left}",
        server.io
    );
    assert!(
        left.u64("bytes_out").unwrap_or(0) > 10_000,
        "[{}] a viewer that played for seconds left with few bytes: {left}",
        server.io
    );
}

fn flv_ts_aac(io: Io) {
    let server = Server::start(io, &ServerConfig::new().workers(2));
    let mut publisher = FfmpegPublisher::start(&server, "x", PublishOpts::default().seconds(40.0));
    server.expect_publish("live/x", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    let flv_url = server.live_url("x", "flv");
    let ts_url = server.live_url("x", "ts");
    let aac_url = server.live_url("x", "aac");

    // What ffprobe sees on each URL.
    probe_av(io, &flv_url, "h264");
    probe_av(io, &ts_url, "h264");
    let streams = ffprobe_streams(&aac_url, Duration::from_secs(20));
    assert_eq!(
        streams.len(),
        1,
        "[{io}] {aac_url}: ffprobe streams: {streams:#?}"
    );
    assert_eq!(streams[0]["codec_type"], "audio", "[{io}] {streams:#?}");
    assert_eq!(streams[0]["codec_name"], "aac", "[{io}] {streams:#?}");
    assert_eq!(streams[0]["sample_rate"], "44100", "[{io}] {streams:#?}");

    // ffmpeg records 4 s of .flv and of .ts at the same time.
    let dir = TempDir::new("http-flv-ts");
    let flv_file = dir.join("out.flv");
    let ts_file = dir.join("out.ts");
    let (flv_out, ts_out) = std::thread::scope(|s| {
        let flv = s.spawn(|| {
            ffmpeg_record_as(
                &flv_url,
                RECORD_SECONDS,
                &flv_file,
                "flv",
                Duration::from_secs(20),
            )
        });
        let ts = s.spawn(|| {
            ffmpeg_record_as(
                &ts_url,
                RECORD_SECONDS,
                &ts_file,
                "mpegts",
                Duration::from_secs(20),
            )
        });
        (flv.join().unwrap(), ts.join().unwrap())
    });
    assert!(
        flv_out.success(),
        "[{io}] ffmpeg recording of {flv_url} failed: {flv_out:?}"
    );
    assert!(
        ts_out.success(),
        "[{io}] ffmpeg recording of {ts_url} failed: {ts_out:?}"
    );
    check_recording(io, &flv_url, &flv_file);
    check_recording(io, &ts_url, &ts_file);

    // Our own viewers, side by side for 2 s: HTTP/1.1 FLV (chunked), HTTP/1.0 FLV (until
    // close), TS (raw) and AAC (raw).
    let watch = Duration::from_secs(2);
    let start = |target: &str, opts: ViewerOpts| {
        LiveViewer::start_with(server.http_port, target, Duration::from_secs(20), opts)
            .unwrap_or_else(|e| panic!("[{io}] GET {target}: {e}"))
    };
    let flv11 = start("/live/x.flv", ViewerOpts::default());
    let flv10 = start(
        "/live/x.flv",
        ViewerOpts::default().transport(Transport::Http10),
    );
    let ts = start("/live/x.ts", ViewerOpts::default().raw(1 << 20));
    let aac = start("/live/x.aac", ViewerOpts::default().raw(1 << 20));
    for (viewer, content_type) in [
        (&flv11, "video/x-flv"),
        (&flv10, "video/x-flv"),
        (&ts, "video/mp2t"),
        (&aac, "audio/aac"),
    ] {
        let head = &viewer.response;
        assert_eq!(
            head.status,
            200,
            "[{io}] {}: {}",
            viewer.target,
            head.head_text()
        );
        assert_eq!(
            head.header("content-type")
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some(content_type),
            "[{io}] {}: {}",
            viewer.target,
            head.head_text()
        );
        // Players on other origins (a page on another port) need CORS.
        assert_eq!(
            head.header("access-control-allow-origin"),
            Some("*"),
            "[{io}] {}: no CORS header: {}",
            viewer.target,
            head.head_text()
        );
    }
    assert!(
        flv11.response.chunked,
        "[{io}] HTTP/1.1 FLV is not chunked: {}",
        flv11.response.head_text()
    );
    assert!(
        !flv10.response.chunked && flv10.response.content_length().is_none(),
        "[{io}] HTTP/1.0 FLV must be a plain body until close: {}",
        flv10.response.head_text()
    );
    let flv11_id = expect_play_started(&server, &flv11, "flv");
    let flv10_id = expect_play_started(&server, &flv10, "flv");
    let ts_id = expect_play_started(&server, &ts, "ts");
    let aac_id = expect_play_started(&server, &aac, "aac");
    std::thread::sleep(watch);
    for viewer in [flv11, flv10] {
        let target = format!("{} ({:?})", viewer.target, viewer.transport);
        let rec = viewer.stop();
        assert!(
            rec.flv_error.is_none(),
            "[{io}] {target}: {:?}",
            rec.flv_error
        );
        let header = rec.flv_header.unwrap_or_else(|| {
            panic!("[{io}] {target}: no FLV header in {} bytes", rec.body_bytes)
        });
        assert!(
            header.has_video && header.has_audio,
            "[{io}] {target}: {header:?}"
        );
        let frames = rec.media.video_frames().count();
        assert!(
            frames >= 45,
            "[{io}] {target}: only {frames} video frames in {watch:?}"
        );
        let first = rec.media.video_frames().next().unwrap();
        assert!(
            first.keyframe,
            "[{io}] {target}: starts with a non-keyframe: {first:?}"
        );
        if let Err(e) = rec.media.check_monotonic() {
            panic!("[{io}] {target}: {e}");
        }
        assert!(
            rec.media.closed.is_none(),
            "[{io}] {target}: closed early: {:?}",
            rec.media.closed
        );
    }

    // TS: 188-byte packets, PAT first, then a PMT, then video starting with a keyframe.
    let ts_rec = ts.stop();
    let body = &ts_rec.body;
    assert!(
        body.len() >= 100 * TS_PACKET,
        "[{io}] .ts: only {} bytes in {watch:?}",
        body.len()
    );
    let pid = |p: &[u8]| (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
    for (i, packet) in body.chunks_exact(TS_PACKET).take(200).enumerate() {
        assert_eq!(packet[0], 0x47, "[{io}] .ts: packet {i} has no sync byte");
    }
    assert_eq!(
        pid(&body[..TS_PACKET]),
        0,
        "[{io}] .ts: the first packet is not the PAT"
    );
    let ts_path = dir.join("live.ts");
    std::fs::write(&ts_path, body).unwrap();
    let ts_packets = ffprobe_packets(&ts_path);
    let first_video = ts_packets.iter().find(|p| p.codec_type == "video");
    assert!(
        first_video.is_some_and(|p| p.keyframe),
        "[{io}] .ts: the stream does not start on a keyframe: {first_video:?}"
    );

    // AAC: ADTS frames (sync word 0xFFF, layer 0), ~43 a second, that ffprobe decodes.
    let aac_rec = aac.stop();
    let body = &aac_rec.body;
    assert!(
        body.len() >= 2 && body[0] == 0xFF && body[1] & 0xF6 == 0xF0,
        "[{io}] .aac does not start with an ADTS header: {:02x?}",
        &body[..body.len().min(8)]
    );
    let aac_path = dir.join("live.aac");
    std::fs::write(&aac_path, body).unwrap();
    let streams = ffprobe_streams(&aac_path.display().to_string(), Duration::from_secs(10));
    assert_eq!(streams.len(), 1, "[{io}] .aac body: {streams:#?}");
    assert_eq!(streams[0]["codec_name"], "aac", "[{io}] {streams:#?}");
    assert_eq!(streams[0]["sample_rate"], "44100", "[{io}] {streams:#?}");
    let audio_frames = ffprobe_frame_counts(&aac_path)
        .get("audio")
        .copied()
        .unwrap_or(0);
    assert!(
        audio_frames >= 60,
        "[{io}] .aac: only {audio_frames} frames decoded from {watch:?}"
    );

    for (id, role) in [
        (&flv11_id, "player:flv"),
        (&flv10_id, "player:flv"),
        (&ts_id, "player:ts"),
        (&aac_id, "player:aac"),
    ] {
        expect_left(&server, id, role);
    }

    // HEAD on a live URL: 200, the head only — the next request on the connection is answered
    // as itself.
    {
        let mut conn = HttpConn::connect(server.http_port).unwrap();
        let head = conn
            .request("HEAD", "/live/x.flv", &[])
            .unwrap_or_else(|e| panic!("[{io}] HEAD /live/x.flv: {e}"));
        assert_eq!(head.status, 200, "[{io}] HEAD: {}", head.head_text());
        assert_eq!(
            head.header("content-type"),
            Some("video/x-flv"),
            "[{io}] HEAD: {}",
            head.head_text()
        );
        let next = conn
            .request("GET", "/live/nobody.flv", &[("Connection", "close")])
            .unwrap_or_else(|e| panic!("[{io}] GET after HEAD: {e}"));
        assert_eq!(
            next.status,
            404,
            "[{io}] the request after a live HEAD got {} (did the HEAD send a body?)",
            next.head_text()
        );
    }

    // A stream nobody publishes: 404 on every format.
    for target in ["/live/nobody.flv", "/live/nobody.ts", "/live/nobody.aac"] {
        let response = http_client::get(server.http_port, target)
            .unwrap_or_else(|e| panic!("[{io}] {target}: {e}"));
        assert_eq!(
            response.status,
            404,
            "[{io}] {target}: {}",
            response.head_text()
        );
    }
    let refused = server.find_logs(|l| l.is("http request refused"));
    assert!(
        refused.iter().any(|l| l.u64("status") == Some(404)),
        "[{io}] no \"http request refused\" line with status 404: {refused:?}"
    );

    assert!(
        publisher.is_running(),
        "[{io}] the publisher ended early: {}",
        publisher.stderr()
    );
    server.assert_no_panic();
}
