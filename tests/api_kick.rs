//! `DELETE /api/v1/clients/{id}` kicks: a publisher (its ffmpeg sees the connection go and
//! exits), an RTMP player and an HTTP-FLV viewer are each disconnected within a second, logged
//! as "kicked by the API" and "client left", and gone from the API; a player of another stream
//! keeps receiving frames throughout; an unknown or already kicked id is HTTP 200 with code 2049, as SRS answers.

mod common;

use std::time::{Duration, Instant};

use common::api_client::{Allow, Api, assert_srs_shape};
use common::http_client::LiveViewer;
use common::rtmp_client::Player;
use common::{FfmpegPublisher, Io, PublishOpts, Server, ServerConfig, wait_until};

/// How soon a kicked client must be disconnected.
const KICK_WITHIN: Duration = Duration::from_secs(1);

#[test]
fn api_kicks_publishers_players_and_viewers() {
    common::require_ffmpeg();
    common::on_each_backend(kick);
}

/// How a kick is asked for.
#[derive(Clone, Copy, PartialEq)]
enum Via {
    Delete,
    /// SRS's JSONP form: `GET ...?callback=f&method=DELETE`.
    Jsonp,
}

/// Kicks `id` and checks the server says so and drops it within [`KICK_WITHIN`]; returns when
/// the kick was sent.
fn kick_and_expect_left(
    io: Io,
    server: &Server,
    api: &Api,
    id: &str,
    what: &str,
    via: Via,
) -> Instant {
    let sent = Instant::now();
    let reply = match via {
        Via::Delete => api.kick(id),
        Via::Jsonp => {
            let target = format!("/api/v1/clients/{id}?callback=kicked&method=DELETE");
            let mut reply = api.request("GET", &target, &[]).expect("JSONP kick");
            let body = reply.response.body_text();
            let inner = body
                .strip_prefix("kicked(")
                .and_then(|b| b.strip_suffix(')'))
                .unwrap_or_else(|| panic!("[{io}] JSONP kick answered {body}"));
            reply.json = serde_json::from_str(inner).expect("JSON in the JSONP kick reply");
            reply
        }
    };
    assert_eq!(
        (reply.status(), reply.code()),
        (200, 0),
        "[{io}] kick {what}: {}",
        reply.response.body_text()
    );
    assert_srs_shape(
        "kick",
        "api-client-delete.json",
        &reply.json,
        Allow::default(),
    );
    server.expect_log(
        &format!("\"kicked by the API\" for the {what}"),
        |l| l.is("kicked by the API") && l.client().as_deref() == Some(id),
        KICK_WITHIN,
    );
    let left = server.expect_log(
        &format!("\"client left\" for the {what}"),
        |l| l.is("client left") && l.client().as_deref() == Some(id),
        KICK_WITHIN,
    );
    eprintln!(
        "[{io}] {what} left {:?} after the kick: {}",
        left.at.saturating_duration_since(sent),
        left.str("reason").unwrap_or_default()
    );
    assert!(
        wait_until(KICK_WITHIN, || api.client(id).is_none()),
        "[{io}] the kicked {what} is still listed"
    );
    sent
}

fn kick(io: Io) {
    let server = Server::start(io, &ServerConfig::new().workers(2));
    let api = Api::new(server.api_port);
    let small = || PublishOpts::default().size(160, 120).seconds(60.0);
    let mut publisher_a = FfmpegPublisher::start(&server, "kick_a", small());
    let _publisher_b = FfmpegPublisher::start(&server, "kick_b", small());
    server.expect_publish("live/kick_a", Duration::from_secs(10));
    server.expect_publish("live/kick_b", Duration::from_secs(10));
    let player_a = Player::start(server.port, "kick_a", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("[{io}] player of A: {e}"));
    let viewer_a = LiveViewer::start(
        server.http_port,
        "/live/kick_a.flv",
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("[{io}] viewer of A: {e}"));
    let player_b = Player::start(server.port, "kick_b", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("[{io}] player of B: {e}"));
    for (what, ok) in [
        (
            "player of A",
            player_a.wait_for(Duration::from_secs(5), |r| r.video_frames().count() >= 5),
        ),
        (
            "viewer of A",
            viewer_a.wait_for(Duration::from_secs(5), |r| {
                r.media.video_frames().count() >= 5
            }),
        ),
        (
            "player of B",
            player_b.wait_for(Duration::from_secs(5), |r| r.video_frames().count() >= 5),
        ),
    ] {
        assert!(ok, "[{io}] the {what} got no video");
    }
    let publisher_a_id = server
        .publisher_peer("live/kick_a")
        .and_then(|peer| server.client_id_of(peer))
        .expect("publisher A's id");
    let player_a_id = server
        .client_id_of(player_a.local_addr)
        .expect("player A id");
    let viewer_a_id = server
        .client_id_of(viewer_a.local_addr)
        .expect("viewer A id");
    for id in [&publisher_a_id, &player_a_id, &viewer_a_id] {
        assert!(
            wait_until(Duration::from_secs(2), || api.client(id).is_some()),
            "[{io}] client {id} is not in the API"
        );
    }
    let window_start = Instant::now();

    // The publisher: the server closes it, ffmpeg notices and exits, the stream goes inactive.
    let sent = kick_and_expect_left(
        io,
        &server,
        &api,
        &publisher_a_id,
        "publisher of A",
        Via::Delete,
    );
    let exited = publisher_a.wait_exit(KICK_WITHIN.saturating_sub(sent.elapsed()));
    assert!(
        exited.is_some(),
        "[{io}] ffmpeg kept running {KICK_WITHIN:?} after its connection was kicked"
    );
    eprintln!(
        "[{io}] the kicked ffmpeg exited {:?} after the kick ({:?})",
        sent.elapsed(),
        exited
    );
    assert!(
        wait_until(KICK_WITHIN, || {
            api.streams()
                .iter()
                .any(|s| s["name"] == "kick_a" && s["publish"]["active"] == false)
        }),
        "[{io}] stream A still shows an active publisher: {:#?}",
        api.streams()
    );

    // The RTMP player: its socket is closed.
    let sent = kick_and_expect_left(io, &server, &api, &player_a_id, "player of A", Via::Delete);
    assert!(
        player_a.wait_for(
            KICK_WITHIN.saturating_sub(sent.elapsed()) + Duration::from_millis(100),
            |r| { r.closed.is_some() }
        ),
        "[{io}] the kicked RTMP player's connection is still open"
    );

    // The HTTP-FLV viewer, kicked the JSONP way: its socket is closed.
    let sent = kick_and_expect_left(io, &server, &api, &viewer_a_id, "viewer of A", Via::Jsonp);
    assert!(
        viewer_a.wait_for(
            KICK_WITHIN.saturating_sub(sent.elapsed()) + Duration::from_millis(100),
            |r| { r.media.closed.is_some() }
        ),
        "[{io}] the kicked HTTP-FLV viewer's connection is still open"
    );

    // Stream B never noticed.
    std::thread::sleep(Duration::from_millis(1500));
    let now = Instant::now();
    let b = player_b.recording();
    assert!(
        b.closed.is_none(),
        "[{io}] player of B was closed: {:?}",
        b.closed
    );
    let frames = b.video_frames_between(window_start, now);
    let seconds = now.duration_since(window_start).as_secs_f64();
    assert!(
        frames as f64 >= seconds * 30.0 * 0.7,
        "[{io}] player of B got {frames} frames in {seconds:.1} s of kicks"
    );
    let gap = b.max_video_gap(window_start, now);
    assert!(
        gap < Duration::from_millis(700),
        "[{io}] player of B stalled {gap:?}"
    );

    // Unknown and already kicked ids.
    for id in ["nope", publisher_a_id.as_str(), player_a_id.as_str()] {
        let reply = api.kick(id);
        assert_eq!(
            (reply.status(), reply.code()),
            (200, 2049),
            "[{io}] kick {id}: {}",
            reply.response.body_text()
        );
    }
    assert!(
        api.client(&server.client_id_of(player_b.local_addr).unwrap())
            .is_some()
    );
    server.assert_no_panic();
}
