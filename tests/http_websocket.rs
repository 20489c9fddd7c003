//! WebSocket-FLV (RFC 6455): the upgrade is answered 101 with the right accept key; the binary
//! messages concatenate to a valid FLV stream whose first video tag is the AVC sequence header
//! followed by a keyframe, with timestamps monotonic per track at the publisher's frame rate; a
//! ping gets a pong with its payload. Clients that break the protocol — an unmasked frame, a
//! control frame over 125 bytes — are closed with a log line naming them, while another
//! viewer keeps playing undisturbed.

mod common;

use std::time::{Duration, Instant};

use common::http_client::{
    self, LiveViewer, Transport, ViewerOpts, WS_SAMPLE_ACCEPT, WS_SAMPLE_KEY, ws_client_frame,
};
use common::rtmp_client::{TYPE_AUDIO, TYPE_VIDEO};
use common::{FfmpegPublisher, Io, PublishOpts, Server, ServerConfig};
use sluice_proto::http::ws::{self, Opcode};

#[test]
fn websocket_flv_plays_and_bad_frames_close_only_their_connection() {
    common::require_ffmpeg();
    common::on_each_backend(websocket);
}

fn ws_viewer(server: &Server, target: &str) -> LiveViewer {
    LiveViewer::start_with(
        server.http_port,
        target,
        Duration::from_secs(60),
        ViewerOpts::default().transport(Transport::WebSocket),
    )
    .unwrap_or_else(|e| panic!("[{}] WebSocket {target}: {e}", server.io))
}

fn websocket(io: Io) {
    let server = Server::start(io, &ServerConfig::new().workers(2));
    let _publisher = FfmpegPublisher::start(&server, "ws", PublishOpts::default().seconds(60.0));
    server.expect_publish("live/ws", Duration::from_secs(10));

    // The handshake.
    let viewer = ws_viewer(&server, "/live/ws.flv");
    let head = &viewer.response;
    assert_eq!(head.status, 101, "[{io}] upgrade: {}", head.head_text());
    assert_eq!(
        head.header("upgrade")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("websocket"),
        "[{io}] {}",
        head.head_text()
    );
    assert!(
        head.header("connection")
            .is_some_and(|v| v.to_ascii_lowercase().contains("upgrade")),
        "[{io}] {}",
        head.head_text()
    );
    assert_eq!(ws::accept_key(WS_SAMPLE_KEY), WS_SAMPLE_ACCEPT);
    assert_eq!(
        head.header("sec-websocket-accept"),
        Some(WS_SAMPLE_ACCEPT),
        "[{io}] wrong accept key: {}",
        head.head_text()
    );
    let viewer_id = server.wait_client_id(viewer.local_addr);
    let started = server.expect_log(
        "play started for the WebSocket viewer",
        |l| l.is("play started") && l.client().as_deref() == Some(viewer_id.as_str()),
        Duration::from_secs(3),
    );
    assert_eq!(
        started.str("format").as_deref(),
        Some("ws-flv"),
        "[{io}] {started}"
    );

    // A ping is answered with a pong carrying its payload.
    assert!(
        viewer.wait_for(Duration::from_secs(3), |r| r
            .media
            .first_keyframe()
            .is_some()),
        "[{io}] no keyframe over WebSocket within 3 s: {:?}",
        viewer.recording().media.closed
    );
    let ping_payload = b"sluice-ping-0123456789";
    let pinged = Instant::now();
    viewer.ws_send(Opcode::Ping, ping_payload).unwrap();
    assert!(
        viewer.wait_for(Duration::from_secs(2), |r| r
            .ws_pongs
            .iter()
            .any(|(_, p)| p == ping_payload)),
        "[{io}] no pong with the ping's payload within 2 s: {:?}",
        viewer.recording().ws_pongs
    );
    let pong_after = viewer.recording().ws_pongs[0]
        .0
        .saturating_duration_since(pinged);
    eprintln!("[{io}] pong after {pong_after:?}");

    // Bad clients, each on its own connection, while the viewer keeps watching.
    let watch_from = Instant::now();
    let bad_frames: [(&str, Vec<u8>); 3] = [
        (
            "unmasked client frame",
            ws_client_frame(Opcode::Ping, b"not masked", false),
        ),
        (
            "control frame over 125 bytes",
            ws_client_frame(Opcode::Ping, &[0x42; 126], true),
        ),
        ("reserved bits and an unknown opcode", {
            let mut frame = ws_client_frame(Opcode::Binary, b"junk", true);
            frame[0] = 0x80 | 0x40 | 0x03;
            frame
        }),
    ];
    for (what, frame) in bad_frames {
        let bad = ws_viewer(&server, "/live/ws.flv");
        assert_eq!(
            bad.response.status,
            101,
            "[{io}] {what}: {}",
            bad.response.head_text()
        );
        let id = server.wait_client_id(bad.local_addr);
        assert!(
            bad.wait_for(Duration::from_secs(3), |r| r
                .media
                .first_keyframe()
                .is_some()),
            "[{io}] {what}: the second viewer got no keyframe"
        );
        bad.send_raw(&frame).unwrap();
        assert!(
            bad.wait_for(Duration::from_secs(3), |r| r.media.closed.is_some()),
            "[{io}] {what}: the server did not close the connection within 3 s"
        );
        let rec = bad.stop();
        // It says why in a close frame (1002 protocol error), then closes.
        assert_eq!(
            rec.ws_close,
            Some(Some(1002)),
            "[{io}] {what}: expected a close frame with 1002; ended with {:?}",
            rec.media.closed
        );
        let line = server.expect_log(
            &format!("{what}: \"bad websocket frame\" naming {id}"),
            |l| l.is("bad websocket frame") && l.client().as_deref() == Some(id.as_str()),
            Duration::from_secs(3),
        );
        assert!(line.str("error").is_some(), "[{io}] {what}: {line}");
        let left = server.expect_log(
            &format!("{what}: client left for {id}"),
            |l| l.is("client left") && l.client().as_deref() == Some(id.as_str()),
            Duration::from_secs(3),
        );
        assert_eq!(
            left.str("role").as_deref(),
            Some("player:ws-flv"),
            "[{io}] {left}"
        );
    }

    // A client that says goodbye with a close frame gets a close frame back and the
    // connection ends (RFC 6455 §5.5.1).
    {
        let leaving = ws_viewer(&server, "/live/ws.flv");
        let id = server.wait_client_id(leaving.local_addr);
        assert!(
            leaving.wait_for(Duration::from_secs(3), |r| r
                .media
                .first_keyframe()
                .is_some()),
            "[{io}] closing client: no keyframe"
        );
        let mut goodbye = 1000u16.to_be_bytes().to_vec();
        goodbye.extend_from_slice(b"bye");
        leaving.ws_send(Opcode::Close, &goodbye).unwrap();
        assert!(
            leaving.wait_for(Duration::from_secs(3), |r| r.ws_close.is_some()),
            "[{io}] no close frame in answer to the client's close: {:?}",
            leaving.recording().media.closed
        );
        assert_eq!(
            leaving.stop().ws_close,
            Some(Some(1000)),
            "[{io}] close code"
        );
        server.expect_log(
            "client left after its close frame",
            |l| l.is("client left") && l.client().as_deref() == Some(id.as_str()),
            Duration::from_secs(3),
        );
    }

    // An upgrade for a stream nobody publishes is refused with 404, not upgraded.
    let missing = http_client::raw_exchange(
        server.http_port,
        &http_client::ws_upgrade_request("/live/nobody.flv"),
        Duration::from_secs(3),
    )
    .unwrap();
    let response = missing.response.unwrap_or_else(|| {
        panic!(
            "[{io}] no answer to an upgrade for a missing stream: {:?}",
            missing.error
        )
    });
    assert_eq!(response.status, 404, "[{io}] {}", response.head_text());

    std::thread::sleep(Duration::from_secs(1));
    let watch_to = Instant::now();
    let rec = viewer.stop();

    // The healthy viewer: a valid FLV stream, sequence header first, then a keyframe,
    // monotonic timestamps, 30 fps throughout, never closed.
    assert!(rec.flv_error.is_none(), "[{io}] {:?}", rec.flv_error);
    assert!(
        rec.ws_unexpected.is_empty(),
        "[{io}] {:?}",
        rec.ws_unexpected
    );
    let header = rec.flv_header.expect("FLV header");
    assert!(header.has_video && header.has_audio, "[{io}] {header:?}");
    assert!(
        rec.ws_binary_messages > 0,
        "[{io}] media came in no binary message"
    );
    let media = &rec.media;
    let mut video = media.messages.iter().filter(|m| m.type_id == TYPE_VIDEO);
    let first = video.next().expect("video tags");
    assert!(
        first.seq_header && first.keyframe,
        "[{io}] the first video tag is not the AVC sequence header: {first:?}"
    );
    let second = video.next().expect("a second video tag");
    assert!(
        !second.seq_header && second.keyframe,
        "[{io}] the sequence header is not followed by a keyframe: {second:?}"
    );
    let first_audio = media.messages.iter().find(|m| m.type_id == TYPE_AUDIO);
    assert!(
        first_audio.is_some_and(|a| a.seq_header),
        "[{io}] the first audio tag is not the AAC sequence header: {first_audio:?}"
    );
    if let Err(e) = media.check_monotonic() {
        panic!("[{io}] {e}");
    }
    assert!(
        media.closed.is_none(),
        "[{io}] the viewer was closed: {:?}",
        media.closed
    );
    let watched = watch_to - watch_from;
    let frames = media.video_frames_between(watch_from, watch_to);
    let expected = watched.as_secs_f64() * 30.0;
    eprintln!(
        "[{io}] viewer: {frames} frames in {watched:?} (~{expected:.0} expected), {} messages, {} bytes",
        rec.ws_binary_messages, rec.body_bytes
    );
    assert!(
        frames as f64 >= 0.9 * expected,
        "[{io}] the viewer got {frames} frames in {watched:?} while bad clients came and went"
    );
    let stall = media.max_video_gap(watch_from, watch_to);
    assert!(
        stall <= Duration::from_secs(1),
        "[{io}] the viewer stalled for {stall:?}"
    );
    let left = server.expect_log(
        "client left for the viewer",
        |l| l.is("client left") && l.client().as_deref() == Some(viewer_id.as_str()),
        Duration::from_secs(3),
    );
    assert_eq!(
        left.str("role").as_deref(),
        Some("player:ws-flv"),
        "[{io}] {left}"
    );
    server.assert_no_panic();
}
