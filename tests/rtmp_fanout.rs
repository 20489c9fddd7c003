//! Two publishers, twenty players each, two workers: every player gets nearly every frame of
//! its own stream — and nothing of the other — whichever worker it and its publisher landed on,
//! without stalls.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::rtmp_client::{ClientOpts, Player, Recording};
use common::{FfmpegPublisher, Io, PublishOpts, Server, ServerConfig};
use sluice_proto::rtmp::HandshakeKind;

const PLAYERS_PER_STREAM: usize = 20;
/// Measured from each player's first keyframe.
const WINDOW: Duration = Duration::from_secs(4);
const FPS: f64 = 30.0;
const MAX_STALL: Duration = Duration::from_secs(1);

struct StreamSpec {
    name: &'static str,
    width: u32,
    height: u32,
}

const STREAMS: [StreamSpec; 2] = [
    StreamSpec {
        name: "fan_a",
        width: 320,
        height: 240,
    },
    StreamSpec {
        name: "fan_b",
        width: 160,
        height: 120,
    },
];

#[test]
fn two_publishers_twenty_players_each_across_two_workers() {
    common::require_ffmpeg();
    common::on_each_backend(fanout);
}

fn fanout(io: Io) {
    let server = Server::start(io, &ServerConfig::new().workers(2));
    let _publishers: Vec<FfmpegPublisher> = STREAMS
        .iter()
        .map(|s| {
            FfmpegPublisher::start(
                &server,
                s.name,
                PublishOpts::default().size(s.width, s.height).seconds(20.0),
            )
        })
        .collect();
    for s in &STREAMS {
        server.expect_publish(&format!("live/{}", s.name), Duration::from_secs(10));
    }
    std::thread::sleep(Duration::from_millis(1500));

    // Interleaved, so both streams' players spread over both workers.
    let mut players: Vec<(usize, Player)> = Vec::new();
    for i in 0..PLAYERS_PER_STREAM {
        for (index, s) in STREAMS.iter().enumerate() {
            // Half the players use the simple handshake (librtmp, OBS), half the complex one.
            let opts = ClientOpts {
                handshake: if i % 2 == 0 {
                    HandshakeKind::Complex
                } else {
                    HandshakeKind::Simple
                },
                ..ClientOpts::default()
            };
            let player = Player::start_with(server.port, s.name, Duration::from_secs(15), opts)
                .unwrap_or_else(|e| panic!("[{io}] player of {} failed to start: {e}", s.name));
            players.push((index, player));
        }
    }
    // Every player's window ends by then (first keyframe within ~1 s of play).
    let until = players.last().unwrap().1.play_sent + WINDOW + Duration::from_millis(1500);
    std::thread::sleep(until.saturating_duration_since(Instant::now()));
    let results: Vec<(usize, std::net::SocketAddr, Recording)> = players
        .into_iter()
        .map(|(index, p)| (index, p.local_addr, p.stop()))
        .collect();

    // Where everyone landed.
    let mut publisher_worker = Vec::new();
    for s in &STREAMS {
        let path = format!("live/{}", s.name);
        let peer = server.publisher_peer(&path).expect("publisher peer");
        publisher_worker.push(server.worker_of(peer).expect("publisher worker"));
    }
    let mut workers_per_stream = vec![HashSet::new(); STREAMS.len()];
    let mut cross_worker = vec![0; STREAMS.len()];
    for (index, addr, _) in &results {
        let worker = server
            .worker_of(*addr)
            .unwrap_or_else(|| panic!("[{io}] no \"client connected\" line for player {addr}"));
        workers_per_stream[*index].insert(worker);
        if worker != publisher_worker[*index] {
            cross_worker[*index] += 1;
        }
    }
    eprintln!(
        "[{io}] publishers on workers {publisher_worker:?}; players on other workers: {cross_worker:?}"
    );
    for (index, s) in STREAMS.iter().enumerate() {
        assert_eq!(
            workers_per_stream[index].len(),
            2,
            "[{io}] players of {} did not spread over both workers: {:?}",
            s.name,
            workers_per_stream[index]
        );
        assert!(
            cross_worker[index] > 0,
            "[{io}] no player of {} is on another worker than its publisher",
            s.name
        );
    }

    // What each stream's content looks like: the video payloads its players received.
    let mut seen: Vec<HashSet<u64>> = vec![HashSet::new(); STREAMS.len()];
    for (index, _, rec) in &results {
        seen[*index].extend(rec.messages.iter().filter(|m| m.is_video()).map(|m| m.hash));
    }

    let expected = (WINDOW.as_secs_f64() * FPS) as usize;
    let mut worst = usize::MAX;
    for (index, addr, rec) in &results {
        let s = &STREAMS[*index];
        let who = format!("[{io}] player {addr} of {}", s.name);
        assert!(
            rec.closed.is_none(),
            "{who} was disconnected: {:?}",
            rec.closed
        );
        let keyframe = rec
            .first_keyframe()
            .unwrap_or_else(|| panic!("{who} got no keyframe"));
        let (first, first_ts) = (keyframe.at, keyframe.timestamp);
        let end = first + WINDOW;
        // The frames of the 4 s of media from the first keyframe on (120 at 30 fps), counted by
        // timestamp so the GOP cache's burst at the start neither helps nor hurts; each must
        // have arrived within the window plus a second.
        let window_ms = WINDOW.as_millis() as u32;
        let frames = rec
            .video_frames()
            .filter(|m| m.timestamp >= first_ts && m.timestamp < first_ts + window_ms)
            .filter(|m| m.at <= end + Duration::from_secs(1))
            .count();
        worst = worst.min(frames);
        assert!(
            frames * 10 >= expected * 9,
            "{who} got {frames} video frames of the {WINDOW:?} after its first keyframe; expected {expected}"
        );
        let stall = rec.max_video_gap(first, end);
        assert!(stall <= MAX_STALL, "{who} stalled for {stall:?}");

        // Only its own stream: its metadata, and no video payload of the other stream.
        let widths: HashSet<u64> = rec
            .messages
            .iter()
            .filter_map(|m| m.metadata_width)
            .map(|w| w as u64)
            .collect();
        assert_eq!(
            widths,
            HashSet::from([u64::from(s.width)]),
            "{who}: metadata widths"
        );
        let other = &seen[1 - *index];
        let foreign = rec
            .messages
            .iter()
            .filter(|m| m.is_video() && other.contains(&m.hash))
            .count();
        assert_eq!(
            foreign, 0,
            "{who} received {foreign} video messages of the other stream"
        );
        if let Err(e) = rec.check_monotonic() {
            panic!("{who}: {e}");
        }
    }
    eprintln!("[{io}] fewest frames in the window: {worst} of ~{expected}");
    server.assert_no_panic();
}
