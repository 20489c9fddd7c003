//! A second publisher of a stream that is already live is refused (ffmpeg fails, the server says
//! why in its log), and the first publisher's viewers don't notice: same frame rate, same
//! picture.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::rtmp_client::Player;
use common::{FfmpegPublisher, Io, PublishOpts, Server, ServerConfig};

const MEASURE: Duration = Duration::from_secs(3);

#[test]
fn second_publisher_is_refused_and_viewers_keep_playing() {
    common::require_ffmpeg();
    common::on_each_backend(busy);
}

fn busy(io: Io) {
    let server = Server::start(io, &ServerConfig::new().workers(2));
    let mut first = FfmpegPublisher::start(&server, "busy", PublishOpts::default().seconds(20.0));
    let started = server.expect_publish("live/busy", Duration::from_secs(10));
    let player = Player::start(server.port, "busy", Duration::from_secs(20)).expect("play");
    assert!(player.wait_for(Duration::from_secs(3), |r| r.first_keyframe().is_some()));
    std::thread::sleep(Duration::from_secs(1));

    let baseline_from = Instant::now();
    std::thread::sleep(MEASURE);
    let baseline = player
        .recording()
        .video_frames_between(baseline_from, baseline_from + MEASURE);

    // The intruder: same stream name, a different picture size so its content would show.
    let intruder_from = Instant::now();
    let mut second = FfmpegPublisher::start(
        &server,
        "busy",
        PublishOpts::default().size(160, 120).seconds(10.0),
    );
    let status = second.wait_exit(Duration::from_secs(10));
    let refused_after = intruder_from.elapsed();
    let status = status.unwrap_or_else(|| {
        panic!("[{io}] the second publisher was not refused within 10 s (ffmpeg still running)")
    });
    assert!(
        !status.success(),
        "[{io}] the second publisher's ffmpeg exited successfully: {status:?}"
    );
    let refused = server.expect_log(
        "publish refused: stream is busy",
        |l| l.is("publish refused: stream is busy"),
        Duration::from_secs(2),
    );
    assert!(
        refused
            .str("stream")
            .is_some_and(|s| s.ends_with("live/busy")),
        "[{io}] refusal names the wrong stream: {refused}"
    );
    assert_ne!(
        refused.client(),
        started.client(),
        "[{io}] the refusal names the first publisher"
    );

    let during_end = intruder_from + MEASURE.max(refused_after);
    std::thread::sleep(during_end.saturating_duration_since(Instant::now()));
    let rec = player.stop();
    let during = rec.video_frames_between(intruder_from, intruder_from + MEASURE);
    eprintln!(
        "[{io}] refused after {refused_after:?} ({status:?}); frames per {MEASURE:?}: before {baseline}, during {during}"
    );

    assert!(
        rec.closed.is_none(),
        "[{io}] the player was disconnected: {:?}",
        rec.closed
    );
    assert!(
        baseline >= 80,
        "[{io}] baseline only {baseline} frames in {MEASURE:?}"
    );
    assert!(
        during * 10 >= baseline * 9,
        "[{io}] the player's frame rate dropped while the intruder was refused: {baseline} -> {during} frames per {MEASURE:?}"
    );
    let stall = rec.max_video_gap(baseline_from, intruder_from + MEASURE);
    assert!(
        stall <= Duration::from_secs(1),
        "[{io}] the player stalled for {stall:?}"
    );

    // Nothing of the intruder reached the player: one metadata width, one sequence header.
    let widths: HashSet<u64> = rec
        .messages
        .iter()
        .filter_map(|m| m.metadata_width)
        .map(|w| w as u64)
        .collect();
    assert_eq!(
        widths,
        HashSet::from([320]),
        "[{io}] metadata widths seen by the player"
    );
    let headers: HashSet<u64> = rec
        .messages
        .iter()
        .filter(|m| m.is_video() && m.seq_header)
        .map(|m| m.hash)
        .collect();
    assert_eq!(
        headers.len(),
        1,
        "[{io}] the player saw a second AVC sequence header"
    );
    if let Err(e) = rec.check_monotonic() {
        panic!("[{io}] {e}");
    }

    assert!(
        first.is_running(),
        "[{io}] the first publisher stopped: {}",
        first.stderr()
    );
    let first_client = started.client();
    assert!(
        server
            .find_log(|l| l.is("client left") && l.client() == first_client)
            .is_none(),
        "[{io}] the first publisher was disconnected"
    );
    server.assert_no_panic();
}
