//! Publish/play access by client address (SRS `security`), end to end: with security enabled a
//! client is refused when a `deny` rule matches it or no `allow` rule does — ffmpeg's publish
//! fails, an RTMP player gets an error status and is closed, an HTTP-FLV viewer gets 403 — and
//! the server logs why; disabled, the rules are ignored; a bad rule fails `sluice -t`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::http_client::{self, LiveViewer};
use common::rtmp_client::Player;
use common::{FfmpegPublisher, Io, LogLine, PublishOpts, Server, ServerConfig, TempDir};

const WAIT: Duration = Duration::from_secs(10);

fn rules(list: &[&str]) -> String {
    let quoted: Vec<String> = list.iter().map(|r| common::toml_string(r)).collect();
    format!("[{}]", quoted.join(", "))
}

fn secured(enabled: bool, list: &[&str]) -> ServerConfig {
    ServerConfig::new()
        .security("enabled", enabled)
        .security("rules", rules(list))
}

fn publish(server: &Server, stream: &str) -> FfmpegPublisher {
    FfmpegPublisher::start(server, stream, PublishOpts::default().seconds(30.0))
}

/// The publish is refused: ffmpeg fails, the log says why, nothing is published.
fn expect_publish_refused(
    io: Io,
    server: &Server,
    ffmpeg: &mut FfmpegPublisher,
    stream: &str,
    why: &str,
) {
    let status = ffmpeg
        .wait_exit(WAIT)
        .unwrap_or_else(|| panic!("[{io}] the refused publisher still runs"));
    assert!(
        !status.success(),
        "[{io}] the refused publisher exited {status}"
    );
    let line = server.expect_log(
        "publish refused by security rules",
        |l| l.is("publish refused by security rules"),
        WAIT,
    );
    let reason = line.str("reason").unwrap_or_default();
    assert!(
        reason.contains(why),
        "[{io}] the refusal should say {why:?}: {line}"
    );
    assert!(
        line.str("stream")
            .is_some_and(|s| s.ends_with(&format!("live/{stream}"))),
        "[{io}] {line}"
    );
    assert!(
        server.find_log(|l| l.is("publish started")).is_none(),
        "[{io}] a refused stream was published"
    );
}

/// An RTMP player of `stream` is refused: an error status, then the close; returns the log line.
fn expect_rtmp_play_refused(io: Io, server: &Server, stream: &str, why: &str) -> LogLine {
    let player = Player::start(server.port, stream, Duration::from_secs(10)).expect("play");
    let id = server.wait_client_id(player.local_addr);
    assert!(
        player.wait_for(Duration::from_secs(5), |r| r.closed.is_some()),
        "[{io}] the RTMP player refused by the rules was not closed"
    );
    let rec = player.stop();
    let statuses = rec.commands();
    assert!(
        statuses.contains(&"onStatus:NetStream.Play.Failed"),
        "[{io}] the refused player got {statuses:?}"
    );
    assert_eq!(
        rec.count(|m| m.is_media()),
        0,
        "[{io}] media reached a refused player"
    );
    let line = server.expect_log(
        "play refused by security rules",
        |l| l.is("play refused by security rules") && l.client().as_deref() == Some(id.as_str()),
        WAIT,
    );
    let reason = line.str("reason").unwrap_or_default();
    assert!(
        reason.contains(why),
        "[{io}] the refusal should say {why:?}: {line}"
    );
    line
}

/// An HTTP-FLV viewer of a published `stream` gets 403 and the log says why.
fn expect_http_play_refused(io: Io, server: &Server, stream: &str, why: &str) {
    let viewer = LiveViewer::start(
        server.http_port,
        &format!("/live/{stream}.flv"),
        Duration::from_secs(10),
    )
    .expect("GET");
    assert_eq!(
        viewer.response.status,
        403,
        "[{io}] HTTP-FLV refused by the rules: {}",
        viewer.response.head_text()
    );
    let id = server.wait_client_id(viewer.local_addr);
    let line = server.expect_log(
        "http request refused by the rules",
        |l| l.is("http request refused") && l.client().as_deref() == Some(id.as_str()),
        WAIT,
    );
    let reason = line.str("reason").unwrap_or_default();
    assert!(
        reason.contains("refused by security rules") && reason.contains(why),
        "[{io}] the HTTP refusal should say it was the rules and {why:?}: {line}"
    );
    assert_eq!(line.u64("status"), Some(403), "[{io}] {line}");
}

#[test]
fn allow_publish_deny_play() {
    common::require_ffmpeg();
    common::on_each_backend(|io| {
        let server = Server::start(
            io,
            &secured(true, &["allow publish 127.0.0.1", "deny play all"]),
        );
        let _ffmpeg = publish(&server, "s");
        server.expect_publish("live/s", WAIT);
        expect_rtmp_play_refused(io, &server, "s", "\"deny play all\"");
        expect_http_play_refused(io, &server, "s", "\"deny play all\"");
        // HLS playlists and segments are play too.
        let hls = http_client::get(server.http_port, "/live/s.m3u8").expect("GET m3u8");
        assert_eq!(hls.status, 403, "[{io}] HLS refused by the rules");
        server.assert_no_panic();
    });
}

#[test]
fn no_matching_allow_rule_refuses() {
    common::require_ffmpeg();
    common::on_each_backend(|io| {
        // Only 10.0.0.0/8 may play: from 127.0.0.1 nothing is allowed.
        let server = Server::start(io, &secured(true, &["allow play 10.0.0.0/8"]));
        let mut ffmpeg = publish(&server, "s");
        expect_publish_refused(
            io,
            &server,
            &mut ffmpeg,
            "s",
            "no rule allows publish from 127.0.0.1",
        );
        expect_rtmp_play_refused(io, &server, "s", "no rule allows play from 127.0.0.1");
        let response = http_client::get(server.http_port, "/live/s.flv").expect("GET");
        assert_eq!(
            response.status, 404,
            "[{io}] nothing is published, nothing is served"
        );
        server.assert_no_panic();
        drop(server);

        // Publishing allowed, playing still only from 10.0.0.0/8: HTTP-FLV is refused too.
        let server = Server::start(
            io,
            &secured(true, &["allow publish 127.0.0.1", "allow play 10.0.0.0/8"]),
        );
        let _ffmpeg = publish(&server, "s");
        server.expect_publish("live/s", WAIT);
        expect_rtmp_play_refused(io, &server, "s", "no rule allows play from 127.0.0.1");
        expect_http_play_refused(io, &server, "s", "no rule allows play from 127.0.0.1");
        server.assert_no_panic();
    });
}

#[test]
fn disabled_security_ignores_the_rules() {
    common::require_ffmpeg();
    common::on_each_backend(|io| {
        let server = Server::start(io, &secured(false, &["deny publish all", "deny play all"]));
        let _ffmpeg = publish(&server, "s");
        server.expect_publish("live/s", WAIT);
        let player = Player::start(server.port, "s", Duration::from_secs(10)).expect("play");
        assert!(
            player.wait_for(Duration::from_secs(5), |r| r.first_keyframe().is_some()),
            "[{io}] RTMP play refused with security disabled: {:?}",
            player.recording().closed
        );
        let viewer = LiveViewer::start(server.http_port, "/live/s.flv", Duration::from_secs(10))
            .expect("GET");
        assert_eq!(
            viewer.response.status,
            200,
            "[{io}] {}",
            viewer.response.head_text()
        );
        assert!(viewer.wait_for(Duration::from_secs(5), |r| {
            r.media.first_keyframe().is_some()
        }));
        assert!(
            server
                .find_log(|l| l.message.contains("refused by security rules")
                    || l.str("reason").is_some_and(|r| r.contains("security")))
                .is_none(),
            "[{io}] something was refused by disabled rules"
        );
        server.assert_no_panic();
    });
}

#[test]
fn a_bad_rule_fails_the_config_check() {
    let dir = TempDir::new("security-config");
    for (bad, says) in [
        ("permit play all", "permit"),
        ("allow watch all", "watch"),
        ("allow play 10.0.0.0/33", "10.0.0.0/33"),
        ("allow play", "allow|deny"),
    ] {
        let config = secured(true, &["allow publish 127.0.0.1", bad]).render(19350);
        let path = dir.join("sluice.toml");
        std::fs::write(&path, &config).expect("write config");
        let mut cmd = Command::new(common::sluice_bin());
        cmd.arg("-t").arg("-c").arg(&path);
        let out = common::run_with_timeout(cmd, Duration::from_secs(10));
        assert_eq!(
            out.status.and_then(|s| s.code()),
            Some(1),
            "sluice -t accepted the rule {bad:?}: {out:?}"
        );
        assert!(
            out.stderr.contains("vhost.__defaultVhost__.security.rules")
                && out.stderr.contains(says),
            "sluice -t should name the key and say {says:?} for {bad:?}: {}",
            out.stderr
        );
    }
    // The same config with good rules passes.
    let good = secured(
        true,
        &[
            "allow publish 127.0.0.1",
            "deny play 10.0.0.0/8",
            "allow play all",
        ],
    );
    let path = dir.join("good.toml");
    std::fs::write(&path, good.render(19350)).expect("write config");
    let mut cmd = Command::new(common::sluice_bin());
    cmd.arg("-t").arg("-c").arg(&path);
    let out = common::run_with_timeout(cmd, Duration::from_secs(10));
    assert!(out.success(), "good rules rejected: {out:?}");
}
