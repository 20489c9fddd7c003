//! ffmpeg publishes a stream; ffprobe and an ffmpeg recording see it as a real viewer would:
//! the right codecs and parameters, the right number of frames for the time recorded, audio,
//! decode timestamps that only move forward, and a recording that starts on a keyframe.

mod common;

use std::time::Duration;

use common::{
    FfmpegPublisher, Io, PublishOpts, Server, ServerConfig, TempDir, ffmpeg_record,
    ffprobe_frame_counts, ffprobe_packets, ffprobe_streams,
};

const RECORD_SECONDS: f64 = 4.0;

#[test]
fn ffmpeg_publish_then_ffprobe_and_ffmpeg_play() {
    common::require_ffmpeg();
    common::on_each_backend(publish_and_play);
}

fn publish_and_play(io: Io) {
    let server = Server::start(io, &ServerConfig::new().workers(2));
    let mut publisher = FfmpegPublisher::start(&server, "x", PublishOpts::default().seconds(14.0));
    server.expect_publish("live/x", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));

    // ffprobe on the live URL: one H.264 320x240 and one AAC 44.1 kHz stream.
    let streams = ffprobe_streams(&server.url("x"), Duration::from_secs(15));
    assert_eq!(streams.len(), 2, "[{io}] ffprobe streams: {streams:#?}");
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .unwrap_or_else(|| panic!("[{io}] no video stream: {streams:#?}"));
    let audio = streams
        .iter()
        .find(|s| s["codec_type"] == "audio")
        .unwrap_or_else(|| panic!("[{io}] no audio stream: {streams:#?}"));
    assert_eq!(video["codec_name"], "h264", "[{io}] {video:#?}");
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(320), Some(240))
    );
    assert_eq!(audio["codec_name"], "aac", "[{io}] {audio:#?}");
    assert_eq!(audio["sample_rate"], "44100", "[{io}] {audio:#?}");

    // ffmpeg records 4 s with -c copy; the file decodes to ~4 s of 30 fps video plus audio.
    let dir = TempDir::new("publish-play");
    let file = dir.join("out.flv");
    let out = ffmpeg_record(
        &server.url("x"),
        RECORD_SECONDS,
        &file,
        Duration::from_secs(20),
    );
    assert!(out.success(), "[{io}] ffmpeg recording failed: {out:?}");
    assert!(
        publisher.is_running(),
        "[{io}] the publisher ended early: {}",
        publisher.stderr()
    );

    let counts = ffprobe_frame_counts(&file);
    let video_frames = counts.get("video").copied().unwrap_or(0);
    let audio_frames = counts.get("audio").copied().unwrap_or(0);
    // 4 s at 30 fps = 120; the GOP cache start may add up to one GOP (30), jitter a few.
    assert!(
        (100..=130).contains(&video_frames),
        "[{io}] decoded {video_frames} video frames from {RECORD_SECONDS} s at 30 fps"
    );
    // 4 s of 44.1 kHz AAC is ~172 frames of 1024 samples.
    assert!(
        audio_frames >= 140,
        "[{io}] decoded only {audio_frames} audio frames from {RECORD_SECONDS} s"
    );

    eprintln!(
        "[{io}] recorded {RECORD_SECONDS} s: {video_frames} video, {audio_frames} audio frames"
    );
    let packets = ffprobe_packets(&file);
    let first_video = packets
        .iter()
        .find(|p| p.codec_type == "video")
        .expect("video packets");
    assert!(
        first_video.keyframe,
        "[{io}] recording does not start on a keyframe: {first_video:?}"
    );
    for kind in ["video", "audio"] {
        let dts: Vec<i64> = packets
            .iter()
            .filter(|p| p.codec_type == kind)
            .filter_map(|p| p.dts)
            .collect();
        assert!(
            dts.len() > 100,
            "[{io}] only {} {kind} packets with a DTS",
            dts.len()
        );
        if let Some(w) = dts.windows(2).find(|w| w[1] < w[0]) {
            panic!("[{io}] {kind} DTS goes backwards: {} -> {}", w[0], w[1]);
        }
        let span = dts.last().unwrap() - dts.first().unwrap();
        assert!(
            (3500..=4600).contains(&span),
            "[{io}] {kind} DTS span {span} ms for a {RECORD_SECONDS} s recording"
        );
    }

    // Both viewers (ffprobe, then the ffmpeg recording) have exited: the server noticed each
    // of them leaving.
    let viewers = server.find_logs(|l| l.is("play started"));
    assert_eq!(viewers.len(), 2, "[{io}] play started lines: {viewers:?}");
    for viewer in &viewers {
        let id = viewer.client();
        let left = server.wait_for_log(
            |l| l.is("client left") && l.client() == id,
            Duration::from_secs(3),
        );
        assert!(
            left.is_some(),
            "[{io}] viewer {} exited but the server still holds its connection; log:\n{}",
            id.unwrap_or_default(),
            server.stderr_tail(20)
        );
    }
    server.assert_no_panic();
}
