//! Bad HTTP clients against a live server: request heads over the limits (a 9 KiB head, 100
//! headers, a 5 KiB URI), garbage, a slowloris that trickles headers and never finishes, a
//! client that connects and says nothing, a download that is never read and a live FLV viewer
//! that stops reading. Each is answered with the right status (431, 431, 414, 400, 408) and/or
//! closed in time with a log line naming it; nothing panics; and a healthy HTTP-FLV viewer
//! watching throughout keeps its frame rate.

mod common;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::http_client::{self, HttpConn, LiveViewer, parse_response_head, request_bytes};
use common::{FfmpegPublisher, Io, PublishOpts, Server, ServerConfig, TempDir};

const HEADER_TIMEOUT_MS: u64 = 1500;
/// `[http_server] send_timeout_ms` (files) and the vhost's `play.send_timeout_ms` (live).
const SEND_TIMEOUT_MS: u64 = 2000;
const BIG_LEN: usize = 20 * 1024 * 1024;
/// How often the slowloris sends a header line (not a divisor of the header timeout, so a
/// line never crosses the server's close).
const HEADER_EVERY: Duration = Duration::from_millis(400);

#[test]
fn bad_http_clients_are_refused_or_closed_and_the_viewer_plays_on() {
    common::require_ffmpeg();
    let root = TempDir::new("http-bad-root");
    let big: Vec<u8> = (0..BIG_LEN).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.join("big.bin"), big).unwrap();
    common::on_each_backend(|io| bad_input(io, &root));
}

struct Ctx<'a> {
    io: Io,
    server: &'a Server,
}

impl Ctx<'_> {
    /// The server's id for our connection from `addr`.
    fn client_id(&self, what: &str, addr: SocketAddr) -> String {
        let line = self.server.expect_log(
            &format!("{what}: client connected from {addr}"),
            |l| l.is("client connected") && l.peer() == Some(addr),
            Duration::from_secs(3),
        );
        assert_eq!(
            line.str("proto").as_deref(),
            Some("http"),
            "[{}] {line}",
            self.io
        );
        line.client().expect("client field")
    }

    /// A `message` line naming the client from `addr` whose `field` contains `needle`, then
    /// its "client left" line; returns the latter.
    fn expect_named(
        &self,
        what: &str,
        addr: SocketAddr,
        message: &str,
        field: &str,
        needle: &str,
        within: Duration,
    ) -> common::LogLine {
        let id = self.client_id(what, addr);
        let line = self.server.expect_log(
            &format!("{what}: \"{message}\" naming client {id}"),
            |l| l.is(message) && l.client().as_deref() == Some(id.as_str()),
            within,
        );
        let value = line.str(field).unwrap_or_default();
        assert!(
            value.to_lowercase().contains(&needle.to_lowercase()),
            "[{}] {what}: expected {field} to mention {needle:?}: {line}",
            self.io
        );
        self.server.expect_log(
            &format!("{what}: \"client left\" for {id}"),
            |l| l.is("client left") && l.client().as_deref() == Some(id.as_str()),
            Duration::from_secs(3),
        )
    }

    /// Sends `bytes`: the server must answer `status`, close, and log "bad http request".
    fn refused(&self, what: &str, bytes: &[u8], status: u16) {
        let outcome =
            http_client::raw_exchange(self.server.http_port, bytes, Duration::from_secs(3))
                .unwrap_or_else(|e| panic!("[{}] {what}: {e}", self.io));
        let response = outcome.response.unwrap_or_else(|| {
            panic!(
                "[{}] {what}: no response (expected {status}): {:?}",
                self.io, outcome.error
            )
        });
        assert_eq!(
            response.status,
            status,
            "[{}] {what}: {}",
            self.io,
            response.head_text()
        );
        assert!(
            outcome.closed,
            "[{}] {what}: the connection stayed open after {status}",
            self.io
        );
        let line = self.server.expect_log(
            &format!("{what}: \"bad http request\""),
            |l| {
                l.is("bad http request")
                    && l.peer() == Some(outcome.local_addr)
                    && l.u64("status") == Some(u64::from(status))
            },
            Duration::from_secs(3),
        );
        assert!(line.str("error").is_some(), "[{}] {what}: {line}", self.io);
        let id = self.client_id(what, outcome.local_addr);
        self.server.expect_log(
            &format!("{what}: \"client left\" for {id}"),
            |l| l.is("client left") && l.client().as_deref() == Some(id.as_str()),
            Duration::from_secs(3),
        );
    }
}

/// A slowloris: the request line, then a header line every HEADER_EVERY, never the blank line.
/// Returns what the server sent back and when it closed (None: still open after `limit`).
fn slowloris(port: u16, limit: Duration) -> (SocketAddr, Vec<u8>, Option<Duration>) {
    let mut sock = common::rtmp_client::tcp(port, None, Duration::from_secs(3)).unwrap();
    let addr = sock.local_addr().unwrap();
    let started = Instant::now();
    sock.write_all(b"GET /live/ok.flv HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    let mut received = Vec::new();
    let mut next_header = started + HEADER_EVERY;
    let mut n = 0;
    while started.elapsed() < limit {
        if Instant::now() >= next_header {
            n += 1;
            if sock
                .write_all(format!("X-Slow-{n}: {n}\r\n").as_bytes())
                .is_err()
            {
                return (addr, received, Some(started.elapsed()));
            }
            next_header += HEADER_EVERY;
        }
        let wait = next_header.saturating_duration_since(Instant::now());
        sock.set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .unwrap();
        let mut buf = [0u8; 4096];
        match sock.read(&mut buf) {
            Ok(0) => return (addr, received, Some(started.elapsed())),
            Ok(k) => received.extend_from_slice(&buf[..k]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (addr, received, Some(started.elapsed())),
        }
    }
    (addr, received, None)
}

fn bad_input(io: Io, root: &TempDir) {
    let server = Server::start(
        io,
        &ServerConfig::new()
            .workers(2)
            .http_dir(&root.path)
            .http("header_timeout_ms", HEADER_TIMEOUT_MS)
            .http("send_timeout_ms", SEND_TIMEOUT_MS)
            .play("send_timeout_ms", SEND_TIMEOUT_MS),
    );
    // A larger picture: more bytes per second, so a stuck socket fills sooner.
    let _publisher = FfmpegPublisher::start(
        &server,
        "ok",
        PublishOpts {
            crf: Some(12),
            ..PublishOpts::default().size(640, 480).seconds(90.0)
        },
    );
    server.expect_publish("live/ok", Duration::from_secs(10));
    let healthy = LiveViewer::start(server.http_port, "/live/ok.flv", Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("[{io}] healthy viewer: {e}"));
    assert_eq!(
        healthy.response.status,
        200,
        "[{io}] {}",
        healthy.response.head_text()
    );
    assert!(
        healthy.wait_for(Duration::from_secs(3), |r| r
            .media
            .first_keyframe()
            .is_some()),
        "[{io}] the healthy viewer got no keyframe"
    );
    let healthy_worker = server.worker_of(healthy.local_addr);
    let watch_from = Instant::now();
    let ctx = Ctx {
        io,
        server: &server,
    };

    // Heads over the limits, and garbage.
    let mut big_head = b"GET /live/ok.flv HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ".to_vec();
    big_head.extend(std::iter::repeat_n(b'a', 9 * 1024));
    big_head.extend_from_slice(b"\r\n\r\n");
    ctx.refused("9 KiB request head", &big_head, 431);
    let headers: Vec<(String, String)> = (0..100)
        .map(|i| (format!("X-H{i}"), format!("{i}")))
        .collect();
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    ctx.refused(
        "100 headers",
        &request_bytes("GET", "/live/ok.flv", &headers),
        431,
    );
    let long_uri = format!("/live/{}.flv", "a".repeat(5 * 1024));
    ctx.refused("5 KiB URI", &request_bytes("GET", &long_uri, &[]), 414);
    let mut tls_hello = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    tls_hello.extend((0u8..=255).cycle().take(500));
    tls_hello.extend_from_slice(b"\r\n\r\n");
    ctx.refused("a TLS ClientHello", &tls_hello, 400);
    ctx.refused("a request line of garbage", b"HELLO THERE\r\n\r\n", 400);
    ctx.refused(
        "a header line without a colon",
        b"GET /live/ok.flv HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n",
        400,
    );
    server.assert_no_panic();

    // A slowloris and a silent client, side by side: both closed at header_timeout, the
    // slowloris with a 408, each named in a "closing connection" line.
    {
        let limit = Duration::from_millis(HEADER_TIMEOUT_MS + 3000);
        let silent_started = Instant::now();
        let mut silent = HttpConn::connect(server.http_port).unwrap();
        let silent_addr = silent.local_addr();
        let (slow_addr, slow_got, slow_closed) = slowloris(server.http_port, limit);
        let slow_closed = slow_closed.unwrap_or_else(|| {
            panic!("[{io}] slowloris: still open after {limit:?} (header_timeout {HEADER_TIMEOUT_MS} ms)")
        });
        assert!(
            slow_closed >= Duration::from_millis(HEADER_TIMEOUT_MS - 100),
            "[{io}] slowloris: closed after {slow_closed:?}, before header_timeout"
        );
        let response = parse_response_head(&slow_got)
            .ok()
            .flatten()
            .map(|(r, _)| r)
            .unwrap_or_else(|| {
                panic!(
                    "[{io}] slowloris: no response before the close: {:?}",
                    String::from_utf8_lossy(&slow_got)
                )
            });
        assert_eq!(
            response.status,
            408,
            "[{io}] slowloris: {}",
            response.head_text()
        );
        ctx.expect_named(
            "slowloris",
            slow_addr,
            "closing connection",
            "reason",
            "header_timeout",
            Duration::from_secs(3),
        );
        assert!(
            silent.wait_closed(limit.saturating_sub(silent_started.elapsed())),
            "[{io}] a silent client stayed connected past header_timeout"
        );
        let took = silent_started.elapsed();
        assert!(
            took >= Duration::from_millis(HEADER_TIMEOUT_MS - 100),
            "[{io}] silent client: closed after {took:?}, before header_timeout"
        );
        let left = ctx.expect_named(
            "silent client",
            silent_addr,
            "closing connection",
            "reason",
            "header_timeout",
            Duration::from_secs(3),
        );
        assert_eq!(left.str("role").as_deref(), Some("none"), "[{io}] {left}");
    }

    // Clients that stop reading: downloads of the 20 MiB file and live FLV viewers, with a
    // small receive buffer, never read. Open live ones until one shares the healthy viewer's
    // worker (bounded).
    {
        let stuck_started = Instant::now();
        let mut stuck: Vec<(&str, HttpConn)> = Vec::new();
        for _ in 0..2 {
            let mut conn = HttpConn::connect_with(server.http_port, Some(4096)).unwrap();
            conn.send(&request_bytes("GET", "/big.bin", &[])).unwrap();
            stuck.push(("download never read", conn));
        }
        for i in 0..8 {
            let shares = stuck
                .iter()
                .filter(|(what, _)| what.starts_with("live"))
                .any(|(_, c)| {
                    healthy_worker.is_some() && server.worker_of(c.local_addr()) == healthy_worker
                });
            if i >= 2 && shares {
                break;
            }
            let mut conn = HttpConn::connect_with(server.http_port, Some(4096)).unwrap();
            conn.send(&request_bytes("GET", "/live/ok.flv", &[]))
                .unwrap();
            let addr = conn.local_addr();
            common::wait_until(Duration::from_secs(1), || server.worker_of(addr).is_some());
            stuck.push(("live FLV viewer never read", conn));
        }
        let workers: Vec<Option<u64>> = stuck
            .iter()
            .map(|(_, c)| server.worker_of(c.local_addr()))
            .collect();
        eprintln!(
            "[{io}] healthy viewer on worker {healthy_worker:?}; stuck clients on {workers:?}"
        );
        for (what, conn) in &mut stuck {
            let addr = conn.local_addr();
            let (role, reason_needle) = if what.starts_with("live") {
                ("player:flv", "send_timeout")
            } else {
                ("static", "send_timeout")
            };
            let left = ctx.expect_named(
                what,
                addr,
                "closing connection",
                "reason",
                reason_needle,
                Duration::from_millis(SEND_TIMEOUT_MS + 8000),
            );
            assert_eq!(
                left.str("role").as_deref(),
                Some(role),
                "[{io}] {what}: {left}"
            );
            assert!(
                conn.wait_closed(Duration::from_secs(5)),
                "[{io}] {what}: logged as closed but the socket stays open"
            );
        }
        let took = stuck_started.elapsed();
        eprintln!("[{io}] stuck clients closed within {took:?}");
        assert!(
            took >= Duration::from_millis(SEND_TIMEOUT_MS),
            "[{io}] stuck clients closed after {took:?}, before send_timeout"
        );
        // A new viewer still starts at once.
        let newcomer =
            LiveViewer::start(server.http_port, "/live/ok.flv", Duration::from_secs(10)).unwrap();
        assert!(
            newcomer.wait_for(Duration::from_secs(3), |r| r.media.video_frames().count()
                >= 30),
            "[{io}] a new viewer did not get going after the stuck clients"
        );
    }

    // The healthy viewer never noticed.
    let watch_to = Instant::now();
    let rec = healthy.stop();
    let watched = watch_to - watch_from;
    let frames = rec.media.video_frames_between(watch_from, watch_to);
    let expected = watched.as_secs_f64() * 30.0;
    eprintln!("[{io}] healthy viewer: {frames} frames in {watched:?} (~{expected:.0} expected)");
    assert!(
        rec.media.closed.is_none(),
        "[{io}] the healthy viewer was disconnected: {:?}",
        rec.media.closed
    );
    assert!(rec.flv_error.is_none(), "[{io}] {:?}", rec.flv_error);
    assert!(
        frames as f64 >= 0.9 * expected,
        "[{io}] the healthy viewer got {frames} frames in {watched:?}"
    );
    let stall = rec.media.max_video_gap(watch_from, watch_to);
    assert!(
        stall <= Duration::from_secs(1),
        "[{io}] the healthy viewer stalled for {stall:?}"
    );
    if let Err(e) = rec.media.check_monotonic() {
        panic!("[{io}] {e}");
    }
    let mut server = server;
    assert!(server.is_running(), "[{io}] the server exited");
    server.assert_no_panic();
}
