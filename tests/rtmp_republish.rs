//! A player that is waiting before anyone publishes gets the stream when it starts; when the
//! publisher stops (cleanly, or by dying) and another one publishes the same stream, the same
//! player connection picks up the new stream — new decoder configuration, then a keyframe —
//! and its timestamps never go backwards.

mod common;

use std::time::{Duration, Instant};

use common::rtmp_client::{Player, Recording};
use common::{FfmpegPublisher, Io, PublishOpts, Server, ServerConfig};

#[test]
fn waiting_player_follows_the_stream_across_publishers() {
    common::require_ffmpeg();
    common::on_each_backend(republish);
}

/// What the player got from one publisher: from `since` on, the first AVC sequence header with a
/// hash not in `old_headers`, then a keyframe after it, then frames.
fn check_phase(
    io: Io,
    phase: &str,
    rec: &Recording,
    since: Instant,
    old_header: Option<u64>,
    width: u32,
) -> u64 {
    let after: Vec<_> = rec.messages.iter().filter(|m| m.at >= since).collect();
    let header = after
        .iter()
        .position(|m| m.is_video() && m.seq_header && Some(m.hash) != old_header)
        .unwrap_or_else(|| panic!("[{io}] {phase}: no new AVC sequence header reached the player"));
    let keyframe = after
        .iter()
        .position(|m| m.is_video_frame() && m.keyframe)
        .unwrap_or_else(|| panic!("[{io}] {phase}: no keyframe reached the player"));
    assert!(
        header < keyframe,
        "[{io}] {phase}: the keyframe came before the new sequence header"
    );
    // The frames in between (if any) must not be pictures of the new stream without a keyframe.
    if let Some(frame) = after[header..keyframe].iter().find(|m| m.is_video_frame()) {
        panic!("[{io}] {phase}: a non-keyframe picture came before the keyframe: {frame:?}");
    }
    assert!(
        after
            .iter()
            .any(|m| m.metadata_width == Some(f64::from(width))),
        "[{io}] {phase}: no onMetaData with width {width}"
    );
    let start = after[keyframe].at;
    let frames = rec.video_frames_between(start, start + Duration::from_secs(2));
    assert!(
        frames >= 54,
        "[{io}] {phase}: only {frames} video frames in the 2 s after the keyframe"
    );
    after[header].hash
}

fn republish(io: Io) {
    let server = Server::start(io, &ServerConfig::new().workers(2));
    let player = Player::start(server.port, "re", Duration::from_secs(40)).expect("play");
    let waiting = server.expect_log(
        "play started before any publisher",
        |l| l.is("play started") && l.str("stream").as_deref() == Some("live/re"),
        Duration::from_secs(5),
    );
    assert_eq!(
        waiting.str("published").as_deref(),
        Some("false"),
        "{waiting}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        player.recording().count(|m| m.is_media()),
        0,
        "[{io}] media before anyone published"
    );

    // Publisher 1: 4 s, then ffmpeg ends and unpublishes cleanly.
    let p1_from = Instant::now();
    let mut p1 = FfmpegPublisher::start(&server, "re", PublishOpts::default().seconds(4.0));
    assert!(
        player.wait_for(Duration::from_secs(5), |r| r.first_keyframe().is_some()),
        "[{io}] the waiting player got no keyframe within 5 s of the publish"
    );
    let status = p1
        .wait_exit(Duration::from_secs(10))
        .expect("publisher 1 ends");
    assert!(
        status.success(),
        "[{io}] publisher 1: {status:?} {}",
        p1.stderr()
    );
    let p1_client = server.expect_publish("live/re", Duration::ZERO).client();
    let left = server.expect_log(
        "publisher 1 left",
        |l| l.is("client left") && l.client() == p1_client,
        Duration::from_secs(3),
    );
    let rec = player.recording();
    let h1 = check_phase(io, "publisher 1", &rec, p1_from, None, 320);

    // Publisher 2: another picture size on the same stream; the same connection resumes.
    std::thread::sleep(Duration::from_millis(500));
    let p2_from = Instant::now();
    let mut p2 = FfmpegPublisher::start(
        &server,
        "re",
        PublishOpts::default().size(160, 120).seconds(20.0),
    );
    assert!(
        player.wait_for(Duration::from_secs(6), |r| {
            r.messages
                .iter()
                .filter(|m| m.at >= p2_from && m.is_video_frame())
                .count()
                >= 60
        }),
        "[{io}] the player did not resume after the second publish"
    );
    std::thread::sleep(Duration::from_millis(500));
    let rec = player.recording();
    let h2 = check_phase(io, "publisher 2", &rec, p2_from, Some(h1), 160);

    // Publisher 2 dies (SIGKILL); publisher 3 takes over.
    p2.kill();
    let p2_client = server
        .find_logs(|l| l.is("publish started") && l.str("stream").as_deref() == Some("live/re"))
        .last()
        .and_then(|l| l.client());
    server.expect_log(
        "publisher 2 left",
        |l| l.is("client left") && l.client() == p2_client,
        Duration::from_secs(3),
    );
    let p3_from = Instant::now();
    let _p3 = FfmpegPublisher::start(&server, "re", PublishOpts::default().seconds(20.0));
    assert!(
        player.wait_for(Duration::from_secs(6), |r| {
            r.messages
                .iter()
                .filter(|m| m.at >= p3_from && m.is_video_frame())
                .count()
                >= 60
        }),
        "[{io}] the player did not resume after publisher 2 died and publisher 3 started"
    );
    std::thread::sleep(Duration::from_millis(500));
    let rec = player.stop();
    check_phase(io, "publisher 3", &rec, p3_from, Some(h2), 320);

    assert!(
        rec.closed.is_none(),
        "[{io}] the player was disconnected: {:?}",
        rec.closed
    );
    if let Err(e) = rec.check_monotonic() {
        panic!("[{io}] across publishers: {e}");
    }
    let publishes = server.find_logs(|l| l.is("publish started")).len();
    assert_eq!(publishes, 3, "[{io}] publish started lines");
    server.assert_no_panic();

    // ffmpeg ends cleanly (FCUnpublish, deleteStream, close): the summary still says what the
    // client was.
    assert_eq!(
        (left.str("role").as_deref(), left.str("stream").as_deref()),
        (Some("publisher"), Some("__defaultVhost__/live/re")),
        "[{io}] the leave line of a publisher that ended cleanly: {left}"
    );
    assert!(left.u64("bytes_in").unwrap_or(0) > 100_000, "[{io}] {left}");
}
