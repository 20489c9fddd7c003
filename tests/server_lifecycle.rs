//! The process as an operator sees it: `-t` checks a config (exit 0, or exit 1 naming
//! FILE:LINE: key), the start line names the backend asked for, and SIGTERM/SIGINT stop a busy
//! server cleanly (exit 0 within 3 s, every client's connection closed — even a player that
//! stopped reading).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::rtmp_client::{ClientOpts, Player, RtmpClient};
use common::{
    FfmpegPublisher, Io, PublishOpts, Server, ServerConfig, TempDir, run_with_timeout, sluice_bin,
};

fn check_config(text: &str) -> (common::Output, String) {
    let dir = TempDir::new("config");
    let path = dir.join("check.toml");
    std::fs::write(&path, text).unwrap();
    let mut cmd = Command::new(sluice_bin());
    cmd.arg("-t").arg("-c").arg(&path);
    let out = run_with_timeout(cmd, Duration::from_secs(10));
    (out, path.display().to_string())
}

#[test]
fn config_check_accepts_good_and_names_file_line_key_of_bad() {
    // The shipped default config and a test config are valid.
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/sluice.toml");
    let text = std::fs::read_to_string(shipped).expect("conf/sluice.toml");
    let (out, _) = check_config(&text);
    assert!(out.success(), "conf/sluice.toml rejected: {out:?}");
    let (out, _) = check_config(&ServerConfig::new().play("mw_latency_ms", 100).render(19350));
    assert!(out.success(), "test config rejected: {out:?}");

    let cases: [(&str, &str, &str); 4] = [
        // (config, line, key) — an unknown key, a value of the wrong type, one out of range,
        // and a bad address.
        (
            "workers = 2\n\n[rtmp]\nlisten = \"127.0.0.1:1935\"\nlisten_typo = 3\n",
            "5",
            "rtmp.listen_typo",
        ),
        ("max_connections = \"many\"\n", "1", "max_connections"),
        (
            "[vhost.__defaultVhost__]\nchunk_size = 60000\n\n[vhost.__defaultVhost__.play]\nmw_msgs = 0\n",
            "5",
            "vhost.__defaultVhost__.play.mw_msgs",
        ),
        ("[rtmp]\n\nlisten = \"nowhere\"\n", "3", "rtmp.listen"),
    ];
    for (text, line, key) in cases {
        let (out, path) = check_config(text);
        assert_eq!(
            out.status.and_then(|s| s.code()),
            Some(1),
            "sluice -t on a bad config must exit 1: {out:?}\n{text}"
        );
        let expected = format!("{path}:{line}: {key}:");
        assert!(
            out.stderr.contains(&expected),
            "stderr should name {expected:?}, got: {}\nconfig:\n{text}",
            out.stderr
        );
    }
}

#[test]
fn start_line_names_the_backend_and_signals_stop_a_busy_server() {
    common::require_ffmpeg();
    common::on_each_backend(|io| {
        // The start line carries the backend (Server::start checks the io field too).
        let server = Server::start(io, &ServerConfig::new().workers(2));
        let line = server.expect_log("start line", |l| l.is("sluice started"), Duration::ZERO);
        assert_eq!(line.str("io").as_deref(), Some(io.name()), "{line}");
        assert_eq!(line.u64("workers"), Some(2), "{line}");
        assert_eq!(line.str("rtmp"), Some(server.addr().to_string()), "{line}");
        drop(server);

        stop_busy(io, libc::SIGTERM, "SIGTERM");
        // SIGINT (Ctrl-C) too.
        stop_busy(io, libc::SIGINT, "SIGINT");
    });
}

fn stop_busy(io: Io, signal: i32, name: &str) {
    let mut server = Server::start(io, &ServerConfig::new().workers(2));
    let mut publisher =
        FfmpegPublisher::start(&server, "bye", PublishOpts::default().seconds(30.0));
    server.expect_publish("live/bye", Duration::from_secs(10));
    let player = Player::start(server.port, "bye", Duration::from_secs(30)).expect("play");
    assert!(player.wait_for(Duration::from_secs(3), |r| r.first_keyframe().is_some()));
    // A player that stopped reading, with data queued for it, must not hold up the exit.
    let mut stuck = RtmpClient::connect(
        server.port,
        ClientOpts {
            rcvbuf: Some(4096),
            ..ClientOpts::default()
        },
    )
    .expect("connect");
    let sid = stuck.create_stream().expect("createStream");
    stuck.play(sid, "bye").expect("play");
    std::thread::sleep(Duration::from_millis(1500));

    let sent = Instant::now();
    server.signal(signal);
    let status = server.wait_exit(Duration::from_secs(3));
    let took = sent.elapsed();
    let status =
        status.unwrap_or_else(|| panic!("[{io}] {name}: the server did not exit within 3 s"));
    assert_eq!(
        status.code(),
        Some(0),
        "[{io}] {name}: exit status {status:?}"
    );
    eprintln!("[{io}] {name}: exited 0 after {took:?}");

    // Both clients see their connection end.
    assert!(
        player.wait_for(Duration::from_secs(2), |r| r.closed.is_some()),
        "[{io}] {name}: the player's connection stayed open"
    );
    assert!(
        stuck.wait_closed(Duration::from_secs(3)),
        "[{io}] {name}: the stuck player's connection stayed open"
    );
    let publisher_exit = publisher.wait_exit(Duration::from_secs(5));
    assert!(
        publisher_exit.is_some(),
        "[{io}] {name}: ffmpeg kept publishing to a stopped server"
    );
    for message in ["signal received; shutting down", "sluice stopped"] {
        server.expect_log(message, |l| l.is(message), Duration::ZERO);
    }
    server.assert_no_panic();
}
