//! A player that stops reading its socket must not slow anyone else down: the other players of
//! the stream — including one on the same worker — keep their frame rate, new players still
//! start, and the stuck player is disconnected after `send_timeout_ms` with a log line.

mod common;

use std::time::{Duration, Instant};

use common::rtmp_client::{ClientOpts, Player, RtmpClient};
use common::{FfmpegPublisher, Io, PublishOpts, Server, ServerConfig};

const MEASURE: Duration = Duration::from_secs(3);
const SEND_TIMEOUT_MS: u64 = 2000;
/// Stuck players to open (at least one lands on the healthy player's worker).
const STUCK: usize = 2;

#[test]
fn stuck_player_does_not_slow_others_and_is_closed() {
    common::require_ffmpeg();
    common::on_each_backend(slow_reader);
}

/// A player that completes play (gets its first video message) and then never reads again.
fn stuck_player(server: &Server) -> RtmpClient {
    let opts = ClientOpts {
        rcvbuf: Some(4096),
        ..ClientOpts::default()
    };
    let mut client = RtmpClient::connect(server.port, opts).expect("connect");
    let id = client.create_stream().expect("createStream");
    client.play(id, "slow").expect("play");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match client.read_message(deadline) {
            Ok(Some((_, m))) if m.header.type_id == 9 => break,
            Ok(Some(_)) => {}
            other => panic!("stuck player never got video: {other:?}"),
        }
    }
    client
}

fn slow_reader(io: Io) {
    let server = Server::start(
        io,
        &ServerConfig::new()
            .workers(2)
            .play("send_timeout_ms", SEND_TIMEOUT_MS),
    );
    // A larger picture: more bytes per second, so a stuck socket fills sooner.
    let _publisher = FfmpegPublisher::start(
        &server,
        "slow",
        PublishOpts {
            crf: Some(12),
            ..PublishOpts::default().size(640, 480).seconds(40.0)
        },
    );
    server.expect_publish("live/slow", Duration::from_secs(10));
    let healthy = Player::start(server.port, "slow", Duration::from_secs(40)).expect("play");
    assert!(healthy.wait_for(Duration::from_secs(3), |r| r.first_keyframe().is_some()));
    let healthy_worker = server
        .worker_of(healthy.local_addr)
        .expect("healthy worker");
    std::thread::sleep(Duration::from_secs(1));

    let baseline_from = Instant::now();
    std::thread::sleep(MEASURE);
    let baseline = healthy
        .recording()
        .video_frames_between(baseline_from, baseline_from + MEASURE);

    // Stuck players; keep opening (bounded) until one shares the healthy player's worker.
    let mut stuck: Vec<RtmpClient> = Vec::new();
    for _ in 0..12 {
        let shares = stuck
            .iter()
            .any(|c| server.worker_of(c.local_addr()) == Some(healthy_worker));
        if stuck.len() >= STUCK && shares {
            break;
        }
        let client = stuck_player(&server);
        common::wait_until(Duration::from_secs(1), || {
            server.worker_of(client.local_addr()).is_some()
        });
        stuck.push(client);
    }
    let stuck_workers: Vec<Option<u64>> = stuck
        .iter()
        .map(|c| server.worker_of(c.local_addr()))
        .collect();
    assert!(
        stuck_workers.contains(&Some(healthy_worker)),
        "[{io}] could not put a stuck player on worker {healthy_worker}: {stuck_workers:?}"
    );
    let stuck_ids: Vec<String> = stuck
        .iter()
        .map(|c| {
            server
                .client_id_of(c.local_addr())
                .expect("stuck client id")
        })
        .collect();

    let during_from = Instant::now();
    std::thread::sleep(MEASURE);
    let during = healthy
        .recording()
        .video_frames_between(during_from, during_from + MEASURE);

    // The server keeps serving: a new player starts at once.
    let newcomer = Player::start(server.port, "slow", Duration::from_secs(10)).expect("play");
    assert!(
        newcomer.wait_for(Duration::from_secs(2), |r| r.video_frames().count() >= 30),
        "[{io}] a new player did not get going while players were stuck: {:?}",
        newcomer.recording().video_frames().count()
    );
    drop(newcomer);

    // Each stuck player is closed for send_timeout, named in the log.
    for (id, client) in stuck_ids.iter().zip(stuck.iter_mut()) {
        let line = server.expect_log(
            &format!("closing connection of stuck player {id}"),
            |l| l.is("closing connection") && l.client().as_deref() == Some(id.as_str()),
            Duration::from_secs(20),
        );
        let reason = line.str("reason").unwrap_or_default();
        assert!(reason.contains("send_timeout"), "[{io}] reason: {line}");
        assert!(
            client.wait_closed(Duration::from_secs(5)),
            "[{io}] stuck player {id} was logged as closed but its socket stays open"
        );
        server.expect_log(
            "client left for the stuck player",
            |l| l.is("client left") && l.client().as_deref() == Some(id.as_str()),
            Duration::from_secs(2),
        );
    }
    let closed_after = during_from.elapsed();

    let after_from = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let rec = healthy.stop();
    eprintln!(
        "[{io}] healthy on worker {healthy_worker}, stuck on {stuck_workers:?}; frames per {MEASURE:?}: without {baseline}, with {during}; stuck closed after {closed_after:?}"
    );
    assert!(
        rec.closed.is_none(),
        "[{io}] the healthy player was disconnected: {:?}",
        rec.closed
    );
    assert!(
        baseline >= 80,
        "[{io}] baseline only {baseline} frames in {MEASURE:?}"
    );
    assert!(
        during * 10 >= baseline * 9,
        "[{io}] the healthy player's frame rate fell while others were stuck: {baseline} -> {during} frames per {MEASURE:?}"
    );
    let stall = rec.max_video_gap(baseline_from, after_from);
    assert!(
        stall <= Duration::from_secs(1),
        "[{io}] the healthy player stalled for {stall:?}"
    );
    if let Err(e) = rec.check_monotonic() {
        panic!("[{io}] {e}");
    }
    server.assert_no_panic();
}
