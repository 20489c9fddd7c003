//! Connection limits: `max_connections_per_ip` counts every connection from one address across
//! the RTMP and HTTP ports and all workers; the one over the limit is closed at once with a log
//! line, and once some close new ones are accepted again. `max_connections` (global) works the
//! same way; `max_connections_per_ip = 0` means no per-address limit.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::http_client::HttpConn;
use common::rtmp_client::{self, ClientOpts, RtmpClient};
use common::{Io, Server, ServerConfig};

const PER_IP: &str = "refusing connection: too many connections from this address";
const GLOBAL: &str = "refusing connection: too many connections";

fn config(key: &str, value: usize) -> ServerConfig {
    // Idle connections must outlive the test: no publish/play is ever sent.
    ServerConfig::new()
        .workers(2)
        .top(key, value)
        .rtmp("handshake_timeout_ms", 60_000)
        .http("header_timeout_ms", 60_000)
}

/// An accepted RTMP connection: the handshake completes.
fn rtmp_accepted(io: Io, server: &Server) -> RtmpClient {
    RtmpClient::handshake(server.port, ClientOpts::default())
        .unwrap_or_else(|e| panic!("[{io}] a connection under the limit was refused: {e}"))
}

/// A connection the server must close at once: returns how long that took, after checking the
/// log line with `message` names its address.
fn refused(io: Io, server: &Server, port: u16, message: &str) -> Duration {
    let started = Instant::now();
    let mut sock = rtmp_client::tcp(port, None, Duration::from_secs(5)).expect("TCP connect");
    let local: SocketAddr = sock.local_addr().expect("local addr");
    let closed = rtmp_client::wait_closed(&mut sock, Duration::from_secs(3));
    let took = started.elapsed();
    assert!(
        closed,
        "[{io}] the connection over the limit ({local}) stayed open"
    );
    assert!(
        took < Duration::from_secs(1),
        "[{io}] closing it took {took:?}"
    );
    server.expect_log(
        &format!("{message:?} for {local}"),
        |l| l.is(message) && l.peer() == Some(local),
        Duration::from_secs(3),
    );
    took
}

/// Waits until the server has seen `n` clients leave.
fn wait_left(io: Io, server: &Server, n: usize) {
    assert!(
        common::wait_until(Duration::from_secs(5), || {
            server.find_logs(|l| l.is("client left")).len() >= n
        }),
        "[{io}] the server did not see {n} clients leave"
    );
}

#[test]
fn the_connection_over_the_per_ip_limit_is_closed() {
    common::on_each_backend(per_ip);
}

fn per_ip(io: Io) {
    let server = Server::start(io, &config("max_connections_per_ip", 5));
    // Five from 127.0.0.1: three RTMP, two HTTP (an idle keep-alive and one mid-request).
    let mut rtmp: Vec<RtmpClient> = (0..3).map(|_| rtmp_accepted(io, &server)).collect();
    let mut http = HttpConn::connect(server.http_port).expect("HTTP connect");
    let response = http
        .request("GET", "/nothing-here", &[])
        .expect("an HTTP connection under the limit is served");
    assert_eq!(response.status, 404);
    let half: TcpStream =
        rtmp_client::tcp(server.http_port, None, Duration::from_secs(5)).expect("connect");
    assert!(
        common::wait_until(Duration::from_secs(3), || {
            server.find_logs(|l| l.is("client connected")).len() == 5
        }),
        "[{io}] five connections should be in"
    );

    // The sixth, on either port, is closed at once.
    let rtmp_took = refused(io, &server, server.port, PER_IP);
    let http_took = refused(io, &server, server.http_port, PER_IP);
    let line = server.find_log(|l| l.is(PER_IP)).expect("logged");
    assert_eq!(line.u64("max_connections_per_ip"), Some(5), "[{io}] {line}");
    assert_eq!(line.level, "WARN");
    // The five are untouched.
    for client in &mut rtmp {
        let reply = client
            .connect_app()
            .unwrap_or_else(|e| panic!("[{io}] an admitted client broke: {e}"));
        assert_eq!(reply.name, "_result", "[{io}] {reply:?}");
    }

    // Two leave: two new ones get in, and the one after them is refused again.
    rtmp.truncate(2);
    drop(half);
    wait_left(io, &server, 2);
    rtmp.push(rtmp_accepted(io, &server));
    rtmp.push(rtmp_accepted(io, &server));
    refused(io, &server, server.port, PER_IP);
    eprintln!("[{io}] over the limit: RTMP closed after {rtmp_took:?}, HTTP after {http_took:?}");
    // Refused connections were not counted as open ones: after all leave, five fit again.
    drop(rtmp);
    drop(http);
    wait_left(io, &server, 2 + 5);
    let again: Vec<RtmpClient> = (0..5).map(|_| rtmp_accepted(io, &server)).collect();
    assert_eq!(again.len(), 5);
    server.assert_no_panic();
}

#[test]
fn the_connection_over_max_connections_is_closed() {
    common::on_each_backend(global);
}

fn global(io: Io) {
    let server = Server::start(io, &config("max_connections", 3));
    let mut open: Vec<RtmpClient> = (0..3).map(|_| rtmp_accepted(io, &server)).collect();
    refused(io, &server, server.port, GLOBAL);
    refused(io, &server, server.http_port, GLOBAL);
    let line = server.find_log(|l| l.is(GLOBAL)).expect("logged");
    assert_eq!(line.u64("max_connections"), Some(3), "[{io}] {line}");
    assert!(server.find_log(|l| l.is(PER_IP)).is_none());
    open.pop();
    wait_left(io, &server, 1);
    open.push(rtmp_accepted(io, &server));
    refused(io, &server, server.port, GLOBAL);
    server.assert_no_panic();
}

#[test]
fn zero_means_no_per_ip_limit() {
    common::on_each_backend(|io| {
        let server = Server::start(io, &config("max_connections_per_ip", 0));
        let open: Vec<RtmpClient> = (0..40).map(|_| rtmp_accepted(io, &server)).collect();
        let http: Vec<HttpConn> = (0..10)
            .map(|_| HttpConn::connect(server.http_port).expect("HTTP connect"))
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            common::wait_until(Duration::from_secs(3), || {
                server.find_logs(|l| l.is("client connected")).len() == 50
            }),
            "[{io}] not all 50 connections were accepted"
        );
        assert!(
            server
                .find_log(|l| l.message.starts_with("refusing connection"))
                .is_none(),
            "[{io}] a connection was refused without a limit"
        );
        drop((open, http));
        server.assert_no_panic();
    });
}
