//! A player joining a running stream starts at once on a picture: its first video frame is a
//! keyframe (from the GOP cache), preceded by the decoder configuration, within 100 ms of its
//! play command; its timestamps start near 0 and never go backwards.

mod common;

use std::time::Duration;

use common::rtmp_client::Player;
use common::{FfmpegPublisher, Io, PublishOpts, Server, ServerConfig};

/// Players joining one after another, at different points of the 1 s GOP.
const JOINS: usize = 6;
const JOIN_SPACING: Duration = Duration::from_millis(170);
/// Play sent -> first keyframe received.
const MAX_START_DELAY: Duration = Duration::from_millis(100);
const WATCH: Duration = Duration::from_millis(1500);

#[test]
fn player_joining_mid_stream_starts_on_a_keyframe_at_once() {
    common::require_ffmpeg();
    common::on_each_backend(join_mid_stream);
}

fn join_mid_stream(io: Io) {
    // Keyframes (~10-20 KB here) span several chunks at 4096: the shared chunked body path.
    let server = Server::start(
        io,
        &ServerConfig::new().workers(2).vhost("chunk_size", 4096),
    );
    let _publisher = FfmpegPublisher::start(&server, "join", PublishOpts::default().seconds(15.0));
    server.expect_publish("live/join", Duration::from_secs(10));
    // Let the stream run for a few GOPs (GOP = 30 frames = 1 s).
    std::thread::sleep(Duration::from_secs(3));

    let mut players = Vec::new();
    for _ in 0..JOINS {
        players.push(Player::start(server.port, "join", Duration::from_secs(10)).expect("play"));
        std::thread::sleep(JOIN_SPACING);
    }
    let deadline = players.last().unwrap().play_sent + WATCH;
    std::thread::sleep(deadline.saturating_duration_since(std::time::Instant::now()));

    let mut delays = Vec::new();
    for (i, player) in players.into_iter().enumerate() {
        let sent = player.play_sent;
        let worker = server.worker_of(player.local_addr);
        let rec = player.stop();
        let who = format!("[{io}] player {i} (worker {worker:?})");
        assert!(
            rec.closed.is_none(),
            "{who} was disconnected: {:?}",
            rec.closed
        );

        let first_video = rec
            .messages
            .iter()
            .position(|m| m.is_video())
            .unwrap_or_else(|| panic!("{who} got no video"));
        let first_frame = rec
            .messages
            .iter()
            .position(|m| m.is_video_frame())
            .unwrap_or_else(|| panic!("{who} got no video frame"));
        assert!(
            rec.messages[first_video].seq_header,
            "{who}: first video message is not the AVC sequence header"
        );
        assert!(first_video < first_frame);
        let first = &rec.messages[first_frame];
        assert!(first.keyframe, "{who}: first video frame is not a keyframe");
        let delay = first.at - sent;
        delays.push(delay);
        assert!(
            delay <= MAX_START_DELAY,
            "{who}: first keyframe arrived {delay:?} after play (limit {MAX_START_DELAY:?})"
        );
        assert!(
            rec.messages.iter().any(|m| m.metadata_width == Some(320.0)),
            "{who}: no onMetaData with width 320 before the media"
        );

        let first_ts = rec
            .messages
            .iter()
            .find(|m| m.is_media())
            .map(|m| m.timestamp)
            .unwrap();
        assert!(
            first_ts <= 100,
            "{who}: timestamps start at {first_ts} ms, not near 0"
        );
        if let Err(e) = rec.check_monotonic() {
            panic!("{who}: {e}");
        }
        // And the stream goes on after the start: ~45 frames in 1.5 s, at least most of them.
        let frames = rec.video_frames().count();
        assert!(
            frames >= 35,
            "{who}: only {frames} video frames in {WATCH:?}"
        );
    }
    eprintln!("[{io}] play -> first keyframe: {delays:?}");
    server.assert_no_panic();
}
