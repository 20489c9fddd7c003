//! HLS viewers as clients (`hls_ctx`, SRS's way): a playlist request without a context is
//! redirected to one with a new context; the playlist then names every URI with it; the viewer
//! shows in `/api/v1/clients` as `hls-play`, is admitted by `on_play` (a refusal is a 403) and,
//! once it stops asking, leaves with `on_stop`.

mod common;

use std::time::{Duration, Instant};

use common::api_client::Api;
use common::hook_server::HookServer;
use common::{FfmpegPublisher, PublishOpts, Server, ServerConfig, Value, http_client};

const WAIT: Duration = Duration::from_secs(10);

fn query_context(location: &str) -> String {
    location
        .split_once("hls_ctx=")
        .map(|(_, c)| c.split('&').next().unwrap_or("").to_string())
        .unwrap_or_default()
}

#[test]
fn hls_viewers_are_named_counted_admitted_and_expire() {
    common::require_ffmpeg();
    common::on_each_backend(|io| {
        let hooks = HookServer::start();
        let config = ServerConfig::new()
            .hls("hls_fragment", 1)
            .hls("hls_ctx", true)
            .hooks("enabled", true)
            .hooks("on_play", hooks.toml("auto"))
            .hooks("on_stop", hooks.toml("okjson/on_stop"));
        let server = Server::start(io, &config);
        let _publisher =
            FfmpegPublisher::start(&server, "cam", PublishOpts::default().seconds(30.0));
        server.expect_publish("live/cam", WAIT);

        // No context: 302 to the same URL with one, the query kept.
        let redirect = http_client::get(server.http_port, "/live/cam.m3u8?token=t1").expect("GET");
        assert_eq!(redirect.status, 302, "[{io}] {}", redirect.head_text());
        let location = redirect.header("location").unwrap_or("").to_string();
        assert!(
            location.starts_with("/live/cam.m3u8?token=t1&hls_ctx="),
            "[{io}] Location {location}"
        );
        let context = query_context(&location);
        assert_eq!(context.len(), 16, "[{io}] {location}");

        // The playlist names its segments with the context; they are served.
        let mut playlist = String::new();
        assert!(
            common::wait_until(WAIT, || {
                let r = http_client::get(server.http_port, &location).expect("GET playlist");
                playlist = String::from_utf8_lossy(&r.body).into_owned();
                r.status == 200 && playlist.contains(".ts?hls_ctx=")
            }),
            "[{io}] a tagged playlist: {playlist}"
        );
        let segment = playlist
            .lines()
            .find(|l| !l.starts_with('#') && !l.is_empty())
            .expect("a segment");
        assert!(
            segment.ends_with(&format!("?hls_ctx={context}")),
            "[{io}] {segment}"
        );
        let response =
            http_client::get(server.http_port, &format!("/live/{segment}")).expect("GET");
        assert_eq!(response.status, 200, "[{io}] segment {segment}");

        // on_play was asked once for this viewer, with the stream and its param.
        let play = hooks.expect("on_play", WAIT, |r| r.str("stream") == Some("cam"));
        assert_eq!(
            play.str("param"),
            Some(format!("?token=t1&hls_ctx={context}").as_str())
        );

        // The API lists it as an hls-play client of the stream, with what it was sent.
        let api = Api::new(server.api_port);
        let viewer = api
            .clients()
            .into_iter()
            .find(|c| c["type"] == "hls-play")
            .unwrap_or_else(|| panic!("[{io}] an hls-play client in {:?}", api.clients()));
        assert_eq!(viewer["url"], Value::from("/live/cam"), "[{io}] {viewer}");
        assert!(
            viewer["send_bytes"].as_u64().unwrap_or(0) > response.body.len() as u64,
            "[{io}] playlist and segment bytes counted: {viewer}"
        );
        let id = viewer["id"].as_str().unwrap_or("").to_string();

        // A viewer on_play refuses gets 403 (the `auto` hook reads `hook=deny` in the param).
        let redirect = http_client::get(server.http_port, "/live/cam.m3u8?hook=deny").expect("GET");
        let denied_location = redirect.header("location").unwrap_or("").to_string();
        let denied = http_client::get(server.http_port, &denied_location).expect("GET");
        assert_eq!(denied.status, 403, "[{io}] refused by on_play");
        // A context the server did not hand out is no viewer: redirected to a real one.
        let forged = http_client::get(server.http_port, "/live/cam.m3u8?hls_ctx=madeup1234567890")
            .expect("GET");
        assert_eq!(forged.status, 302, "[{io}] a made-up context is redirected");

        // It stops asking: gone from the API, with on_stop, after its timeout (10 s).
        let stopped = Instant::now();
        let stop = hooks.expect("on_stop", Duration::from_secs(20), |r| r.client_id() == id);
        assert!(
            stopped.elapsed() >= Duration::from_secs(5),
            "[{io}] on_stop only after the viewer went quiet"
        );
        assert_eq!(stop.str("stream"), Some("cam"));
        assert!(
            !api.clients().iter().any(|c| c["id"] == id.as_str()),
            "[{io}] the viewer left the API's list"
        );
        server.assert_no_panic();
    });
}
