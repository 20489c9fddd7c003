//! The HTTP API as SRS's tools see it, with an ffmpeg publisher, an RTMP player and an
//! HTTP-FLV viewer on one stream: every route answers with SRS's field names, nesting and JSON
//! types (compared recursively with replies captured from SRS 7, `tests/data/srs/`); ids agree
//! between streams, clients and vhosts; counts, codecs and byte counters are right and move;
//! lists page with `start`/`count`; JSONP, CORS and keep-alive work; unknown ids are HTTP 200
//! with SRS's codes (as SRS answers), unknown routes 404, wrong methods 405.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::api_client::{Allow, Api, assert_srs_shape, shape_diff, srs_sample};
use common::http_client::{HttpConn, LiveViewer};
use common::rtmp_client::Player;
use common::{FfmpegPublisher, Io, PublishOpts, Server, ServerConfig, Value, wait_until};

const STREAM: &str = "cap";
/// Keys sluice adds that SRS 7.0.18 lacks (later SRS 7 releases have them).
const LIST_EXTRA: &[&str] = &["total"];

#[test]
fn api_json_matches_srs_with_a_publisher_a_player_and_a_viewer() {
    common::require_ffmpeg();
    common::on_each_backend(shapes);
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn u64_of(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("not an unsigned integer: {value}"))
}

fn shapes(io: Io) {
    let started_ms = now_ms();
    let server = Server::start(io, &ServerConfig::new().workers(2));
    let api = Api::new(server.api_port);
    let _publisher = FfmpegPublisher::start(&server, STREAM, PublishOpts::default().seconds(60.0));
    server.expect_publish("live/cap", Duration::from_secs(10));
    let publisher_peer = server.publisher_peer("live/cap").expect("publisher peer");
    let publisher_id = server.client_id_of(publisher_peer).expect("publisher id");
    let player = Player::start(server.port, STREAM, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("[{io}] RTMP player: {e}"));
    let viewer = LiveViewer::start(server.http_port, "/live/cap.flv", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("[{io}] HTTP-FLV viewer: {e}"));
    assert_eq!(viewer.response.status, 200, "[{io}] HTTP-FLV viewer");
    assert!(
        player.wait_for(Duration::from_secs(5), |r| r.video_frames().count() >= 10),
        "[{io}] the RTMP player got no video"
    );
    assert!(
        viewer.wait_for(Duration::from_secs(5), |r| r.media.video_frames().count()
            >= 10),
        "[{io}] the HTTP-FLV viewer got no video"
    );
    let player_id = server.client_id_of(player.local_addr).expect("player id");
    let viewer_id = server.client_id_of(viewer.local_addr).expect("viewer id");
    let ready = wait_until(Duration::from_secs(5), || {
        api.try_get("/api/v1/streams").is_some_and(|s| {
            let stream = &s["streams"][0];
            stream["clients"] == 3 && stream["video"].is_object() && stream["audio"].is_object()
        })
    });
    assert!(
        ready,
        "[{io}] the API never showed 1 stream with 3 clients and its codecs: {:#}",
        api.get("/api/v1/streams")
    );

    // The envelope: code, server, service, pid (a string) on every success.
    let versions = api.get("/api/v1/versions");
    assert_srs_shape("versions", "api-versions.json", &versions, Allow::default());
    assert_eq!(versions["data"]["version"], env!("CARGO_PKG_VERSION"));
    let server_id = versions["server"].as_str().unwrap().to_string();
    assert!(server_id.starts_with("vid-"), "server id {server_id}");
    assert_eq!(versions["service"].as_str().unwrap().len(), 8);
    assert_eq!(versions["pid"], server.pid().to_string());
    for path in ["/", "/api/", "/api/v1/"] {
        let index = api.get(path);
        assert_eq!(index["server"], server_id.as_str(), "{path}");
        assert!(index["urls"].is_object(), "[{io}] {path}: {index}");
    }

    // Summaries: SRS's fields, read from /proc.
    let summaries = api.get("/api/v1/summaries");
    assert_srs_shape(
        "summaries",
        "api-summaries.json",
        &summaries,
        Allow::default(),
    );
    let data = &summaries["data"];
    assert_eq!(data["ok"], true, "{data:#}");
    assert_eq!(data["self"]["pid"], server.pid(), "{data:#}");
    assert!(u64_of(&data["self"]["mem_kbyte"]) > 0, "{data:#}");
    assert!(u64_of(&data["system"]["mem_ram_kbyte"]) > 0, "{data:#}");
    assert!(u64_of(&data["system"]["cpus"]) >= 1, "{data:#}");
    assert!(u64_of(&data["system"]["srs_recv_bytes"]) > 0, "{data:#}");
    assert!(u64_of(&data["system"]["conn_srs"]) >= 3, "{data:#}");
    assert!(u64_of(&data["now_ms"]) >= started_ms, "{data:#}");

    // Streams.
    let streams = api.get("/api/v1/streams");
    assert_srs_shape(
        "streams",
        "api-streams.json",
        &streams,
        Allow {
            extra: LIST_EXTRA,
            ..Allow::default()
        },
    );
    assert_eq!(streams["total"], 1);
    let stream = streams["streams"][0].clone();
    let stream_id = stream["id"].as_str().unwrap().to_string();
    let one = api.get(&format!("/api/v1/streams/{stream_id}"));
    assert_srs_shape("stream", "api-stream-one.json", &one, Allow::default());
    let stream_one = &one["stream"];
    assert_eq!(stream_one["id"], stream_id.as_str());
    assert_eq!(stream["name"], STREAM);
    assert_eq!(stream["app"], "live");
    assert_eq!(stream["url"], "/live/cap");
    assert_eq!(
        stream["tcUrl"],
        format!("rtmp://127.0.0.1:{}/live", server.port),
        "[{io}] {stream:#}"
    );
    assert_eq!(stream["clients"], 3, "[{io}] {stream:#}");
    assert!(u64_of(&stream["frames"]) > 0, "[{io}] {stream:#}");
    let live_ms = u64_of(&stream["live_ms"]);
    assert!(
        (started_ms..=now_ms()).contains(&live_ms),
        "[{io}] live_ms {live_ms} not within this test"
    );
    assert_eq!(stream["publish"]["active"], true);
    assert_eq!(
        stream["publish"]["cid"],
        publisher_id.as_str(),
        "[{io}] {stream:#}"
    );
    let video = &stream["video"];
    assert_eq!(video["codec"], "H264", "[{io}] {video}");
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(320), Some(240))
    );
    // x264's ultrafast preset makes constrained baseline, which SRS names by profile_idc.
    assert_eq!(video["profile"], "Baseline", "[{io}] {video}");
    assert!(
        video["level"].as_str().is_some_and(|s| !s.is_empty()),
        "[{io}] video level: {video}"
    );
    let audio = &stream["audio"];
    assert_eq!(audio["codec"], "AAC", "[{io}] {audio}");
    assert_eq!(audio["sample_rate"], 44100, "[{io}] {audio}");
    // ffmpeg's `sine` source is mono; sluice reports the AudioSpecificConfig's channels.
    assert_eq!(audio["channel"], 1, "[{io}] {audio}");
    assert_eq!(audio["profile"], "LC", "[{io}] {audio}");

    // Vhosts.
    let vhosts = api.get("/api/v1/vhosts");
    let no_hls = Allow {
        missing: &["vhosts[].hls.fragment", "hls.fragment"],
        ..Allow::default()
    };
    assert_srs_shape("vhosts", "api-vhosts.json", &vhosts, no_hls);
    let vhost = vhosts["vhosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "__defaultVhost__")
        .cloned()
        .unwrap_or_else(|| panic!("[{io}] no default vhost: {vhosts:#}"));
    assert_eq!(vhost["id"], stream["vhost"], "[{io}] vhost ids differ");
    assert_eq!(vhost["enabled"], true);
    assert_eq!(
        (vhost["clients"].as_u64(), vhost["streams"].as_u64()),
        (Some(3), Some(1))
    );
    let vhost_id = vhost["id"].as_str().unwrap();
    let one_vhost = api.get(&format!("/api/v1/vhosts/{vhost_id}"));
    let diffs = shape_diff(
        &srs_sample("api-vhosts.json")["vhosts"][0],
        &one_vhost["vhost"],
        no_hls,
    );
    assert!(diffs.is_empty(), "[{io}] /vhosts/{{id}}: {diffs:?}");
    assert_eq!(one_vhost["vhost"]["name"], "__defaultVhost__");

    // Clients: the three, consistent with the stream.
    let clients = api.get("/api/v1/clients");
    assert_srs_shape(
        "clients",
        "api-clients.json",
        &clients,
        Allow {
            extra: LIST_EXTRA,
            ..Allow::default()
        },
    );
    assert_eq!(clients["total"], 3, "[{io}] {clients:#}");
    let list = clients["clients"].as_array().unwrap().clone();
    let ids: BTreeSet<&str> = list.iter().map(|c| c["id"].as_str().unwrap()).collect();
    let expected: BTreeSet<&str> = [&publisher_id, &player_id, &viewer_id]
        .iter()
        .map(|s| s.as_str())
        .collect();
    assert_eq!(ids, expected, "[{io}] client ids");
    for client in &list {
        let id = client["id"].as_str().unwrap();
        assert_eq!(client["stream"], stream_id.as_str(), "[{io}] {client:#}");
        assert_eq!(client["vhost"], vhost_id, "[{io}] {client:#}");
        assert_eq!(client["ip"], "127.0.0.1", "[{io}] {client:#}");
        assert_eq!(client["url"], "/live/cap", "[{io}] {client:#}");
        assert!(client["alive"].as_f64().unwrap() > 0.0, "[{io}] {client:#}");
        let (kind, publish, name, scheme) = if id == publisher_id {
            ("fmle-publish", true, "cap", "rtmp://")
        } else if id == player_id {
            ("rtmp-play", false, "cap", "rtmp://")
        } else {
            ("flv-play", false, "cap.flv", "http://")
        };
        assert_eq!(client["type"], kind, "[{io}] {client:#}");
        assert_eq!(client["publish"], publish, "[{io}] {client:#}");
        assert_eq!(client["name"], name, "[{io}] {client:#}");
        assert!(
            client["tcUrl"].as_str().unwrap().starts_with(scheme),
            "[{io}] {client:#}"
        );
        let one = api.get(&format!("/api/v1/clients/{id}"));
        assert_srs_shape("client", "api-client-one.json", &one, Allow::default());
        assert_eq!(one["client"]["id"], id);
    }

    // Byte counters move: the stream's, the publisher's received, the players' sent.
    let before = api.get(&format!("/api/v1/streams/{stream_id}"))["stream"].clone();
    let clients_before = api.clients();
    std::thread::sleep(Duration::from_millis(1500));
    let after = api.get(&format!("/api/v1/streams/{stream_id}"))["stream"].clone();
    let clients_after = api.clients();
    for key in ["send_bytes", "recv_bytes", "frames"] {
        assert!(
            u64_of(&after[key]) > u64_of(&before[key]),
            "[{io}] stream {key} did not grow: {} -> {}",
            before[key],
            after[key]
        );
    }
    for client in &clients_after {
        let id = client["id"].as_str().unwrap();
        let earlier = clients_before
            .iter()
            .find(|c| c["id"] == id)
            .expect("same clients");
        let key = if client["publish"] == true {
            "recv_bytes"
        } else {
            "send_bytes"
        };
        assert!(
            u64_of(&earlier[key]) > 0,
            "[{io}] {id}: no {key}: {earlier:#}"
        );
        assert!(
            u64_of(&client[key]) > u64_of(&earlier[key]),
            "[{io}] client {id} {key} did not grow"
        );
        assert!(client["alive"].as_f64() > earlier["alive"].as_f64());
    }

    // Paging, with a second stream: a player waiting for a stream nobody publishes.
    let _waiting = Player::start(server.port, "waiting", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("[{io}] waiting player: {e}"));
    assert!(
        wait_until(Duration::from_secs(3), || {
            api.try_get("/api/v1/clients")
                .is_some_and(|c| c["total"] == 4)
        }),
        "[{io}] the waiting player never showed"
    );
    let all_streams = api.streams();
    assert_eq!(all_streams.len(), 2, "[{io}] {all_streams:#?}");
    let waiting = all_streams.iter().find(|s| s["name"] == "waiting").unwrap();
    // Not published: no cid, and no codecs (`null`, as SRS).
    assert_eq!(waiting["publish"], serde_json::json!({"active": false}));
    assert!(
        waiting["video"].is_null() && waiting["audio"].is_null(),
        "{waiting:#}"
    );
    assert_eq!(waiting["clients"], 1);
    let stream_page = |query: &str| -> Vec<String> {
        let page = api.get(&format!("/api/v1/streams?{query}"));
        assert_eq!(page["total"], 2, "{query}");
        page["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    };
    let all_ids: Vec<String> = all_streams
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stream_page(""), all_ids);
    assert_eq!(stream_page("start=0&count=1"), all_ids[..1]);
    assert_eq!(stream_page("start=1&count=1"), all_ids[1..]);
    assert!(stream_page("start=2&count=1").is_empty());
    let all_clients: Vec<String> = api
        .clients()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(all_clients.len(), 4);
    let client_page = |query: &str| -> Vec<String> {
        api.get(&format!("/api/v1/clients?{query}"))["clients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(client_page("start=1&count=2"), all_clients[1..3]);
    assert_eq!(
        client_page("count=0"),
        all_clients[..1],
        "count is at least 1"
    );
    assert_eq!(client_page("start=3"), all_clients[3..]);
    assert!(client_page("start=10").is_empty());

    // JSONP.
    let jsonp = api
        .request("GET", "/api/v1/versions?callback=cb_1", &[])
        .unwrap();
    assert_eq!(jsonp.status(), 200);
    assert_eq!(jsonp.header("content-type"), Some("text/javascript"));
    let body = jsonp.response.body_text();
    let inner = body
        .strip_prefix("cb_1(")
        .and_then(|b| b.strip_suffix(')'))
        .unwrap_or_else(|| panic!("[{io}] not JSONP: {body}"));
    let inner: Value = serde_json::from_str(inner).expect("JSON inside JSONP");
    assert_eq!(inner["data"], versions["data"]);
    let jsonp_missing = api
        .request("GET", "/api/v1/streams/vid-nope?callback=f", &[])
        .unwrap();
    assert_eq!(jsonp_missing.response.body_text(), "f({\"code\":2048})");
    let bad_callback = api
        .request("GET", "/api/v1/versions?callback=alert(1)%3Bx", &[])
        .unwrap();
    assert_eq!(bad_callback.status(), 400, "a callback that is not a name");

    // CORS (cors_origin defaults to "*") and the preflight.
    let plain = api.request("GET", "/api/v1/versions", &[]).unwrap();
    assert_eq!(plain.header("access-control-allow-origin"), Some("*"));
    let preflight = api
        .request(
            "OPTIONS",
            "/api/v1/clients/x",
            &[
                ("Origin", "http://console.example"),
                ("Access-Control-Request-Method", "DELETE"),
                ("Access-Control-Request-Headers", "authorization"),
            ],
        )
        .unwrap();
    assert!(
        matches!(preflight.status(), 200 | 204),
        "[{io}] preflight: {}",
        preflight.response.head_text()
    );
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    assert!(
        preflight
            .header("access-control-allow-methods")
            .is_some_and(|m| m.contains("DELETE")),
        "{}",
        preflight.response.head_text()
    );
    assert!(
        preflight
            .header("access-control-allow-headers")
            .is_some_and(|h| h.to_ascii_lowercase().contains("authorization")),
        "{}",
        preflight.response.head_text()
    );

    // Keep-alive: several requests on one connection.
    let mut conn = HttpConn::connect(server.api_port).unwrap();
    for path in [
        "/api/v1/versions",
        "/api/v1/streams",
        "/api/v1/clients?count=1",
    ] {
        let response = conn.request("GET", path, &[]).unwrap();
        assert_eq!(response.status, 200, "[{io}] keep-alive {path}");
        assert!(!response.closes(), "[{io}] {path} closed the connection");
    }

    // HEAD: the head of the GET.
    let head = conn.request("HEAD", "/api/v1/versions", &[]).unwrap();
    assert_eq!(head.status, 200, "[{io}] HEAD");
    assert!(head.content_length().is_some_and(|n| n > 0), "[{io}] HEAD");
    let after_head = conn.request("GET", "/api/v1/versions", &[]).unwrap();
    assert_eq!(
        after_head.status, 200,
        "[{io}] GET after HEAD on the same connection"
    );

    // Errors: SRS's codes (HTTP 200) for unknown ids, 404 for unknown routes, 405 for other methods.
    let missing = api.request("GET", "/api/v1/streams/vid-nope", &[]).unwrap();
    assert_eq!(missing.status(), 200);
    assert_eq!(missing.json, srs_sample("api-stream-missing.json"));
    for (path, code) in [
        ("/api/v1/clients/nope", 2049),
        ("/api/v1/vhosts/nope", 2014),
    ] {
        let reply = api.request("GET", path, &[]).unwrap();
        assert_eq!((reply.status(), reply.code()), (200, code), "[{io}] {path}");
        assert_eq!(reply.header("content-type"), Some("application/json"));
    }
    for path in ["/api/v1/nope", "/api/v2/streams", "/nope"] {
        let reply = api.request("GET", path, &[]).unwrap();
        assert_eq!(reply.status(), 404, "[{io}] {path}");
        assert!(
            reply.code() > 0,
            "[{io}] {path}: {}",
            reply.response.body_text()
        );
    }
    for (method, path) in [
        ("POST", "/api/v1/streams"),
        ("PUT", "/api/v1/clients"),
        ("DELETE", &*format!("/api/v1/streams/{stream_id}")),
        ("POST", "/api/v1/clients/nope"),
    ] {
        let reply = api.request(method, path, &[]).unwrap();
        assert_eq!(reply.status(), 405, "[{io}] {method} {path}");
        assert!(reply.code() > 0, "[{io}] {method} {path}");
        assert!(reply.header("allow").is_some(), "[{io}] {method} {path}");
    }
    server.assert_no_panic();
}
