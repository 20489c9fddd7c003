//! Bad clients against a live server: garbage and truncated handshakes, silent connections,
//! absurd chunk sizes and message lengths, broken AMF, commands out of order, and a connection
//! storm past `max_connections`. Each bad client is closed with a log line naming it (except the
//! unknown command, which must get `_error` and stay usable); nothing panics; and a healthy
//! player watching a healthy publisher keeps getting frames throughout.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::rtmp_client::{self, ClientOpts, Player, RtmpClient, TYPE_COMMAND};
use common::{FfmpegPublisher, Io, PublishOpts, Server, ServerConfig};
use sluice_proto::amf0::Amf0Value;
use sluice_proto::rtmp::{MessageHeader, write_fmt0_header};

const HANDSHAKE_TIMEOUT_MS: u64 = 1500;
const MAX_CONNECTIONS: usize = 50;
const MAX_MESSAGE_SIZE: u32 = 1 << 20;
const STORM: usize = 300;
/// firstpkt_timeout_ms and normal_timeout_ms.
const PUBLISH_TIMEOUT_MS: u64 = 1500;
const PROTOCOL_ERROR: &str = "rtmp protocol error; closing the connection";

#[test]
fn bad_clients_are_closed_and_the_stream_plays_on() {
    common::require_ffmpeg();
    common::on_each_backend(bad_input);
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
        line.client().expect("client field")
    }

    /// The bad client from `addr` got a `message` line (whose `field` contains `needle`) and a
    /// "client left" line, both naming it.
    fn expect_named(&self, what: &str, addr: SocketAddr, message: &str, field: &str, needle: &str) {
        let id = self.client_id(what, addr);
        let line = self.server.expect_log(
            &format!("{what}: \"{message}\" naming client {id}"),
            |l| l.is(message) && l.client().as_deref() == Some(id.as_str()),
            Duration::from_secs(HANDSHAKE_TIMEOUT_MS / 1000 + 3),
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
        );
    }

    fn expect_socket_closed(&self, what: &str, sock: &mut TcpStream, within: Duration) {
        assert!(
            rtmp_client::wait_closed(sock, within),
            "[{}] {what}: the server did not close the connection within {within:?}",
            self.io
        );
    }

    /// A client whose handshake (and, with `connect`, connect) went through.
    fn handshaken(&self, connect: bool) -> RtmpClient {
        let opts = ClientOpts::default();
        let mut client = RtmpClient::handshake(self.server.port, opts).expect("handshake");
        if connect {
            let reply = client.connect_app().expect("connect");
            assert_eq!(reply.name, "_result");
        }
        client
    }

    /// Sends `bytes` after the handshake (and connect): the server must close with a protocol
    /// error that mentions `needle`.
    fn protocol_error_after_handshake(
        &self,
        what: &str,
        connect: bool,
        bytes: &[u8],
        needle: &str,
    ) {
        let mut client = self.handshaken(connect);
        let addr = client.local_addr();
        client.send_raw(bytes).expect("send");
        assert!(
            client.wait_closed(Duration::from_secs(3)),
            "[{}] {what}: the server did not close the connection",
            self.io
        );
        self.expect_named(what, addr, PROTOCOL_ERROR, "error", needle);
    }
}

/// One message as a client would chunk it (128-byte chunks, type-0 header).
fn message(csid: u32, type_id: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut writer = sluice_proto::rtmp::ChunkWriter::new(128);
    let header = MessageHeader {
        timestamp: 0,
        length: payload.len() as u32,
        type_id,
        stream_id,
    };
    writer.write(&mut out, csid, &header, payload);
    out
}

fn amf_string(s: &str) -> Vec<u8> {
    let mut out = vec![0x02];
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    out
}

fn amf_number(n: f64) -> Vec<u8> {
    let mut out = vec![0x00];
    out.extend_from_slice(&n.to_be_bytes());
    out
}

fn bad_input(io: Io) {
    let server = Server::start(
        io,
        &ServerConfig::new()
            .workers(2)
            .top("max_connections", MAX_CONNECTIONS)
            .rtmp("handshake_timeout_ms", HANDSHAKE_TIMEOUT_MS)
            .rtmp("max_message_size", MAX_MESSAGE_SIZE)
            .publish("firstpkt_timeout_ms", PUBLISH_TIMEOUT_MS)
            .publish("normal_timeout_ms", PUBLISH_TIMEOUT_MS),
    );
    let _publisher = FfmpegPublisher::start(&server, "ok", PublishOpts::default().seconds(90.0));
    server.expect_publish("live/ok", Duration::from_secs(10));
    let healthy = Player::start(server.port, "ok", Duration::from_secs(90)).expect("play");
    assert!(healthy.wait_for(Duration::from_secs(3), |r| r.first_keyframe().is_some()));
    let watch_from = Instant::now();
    let ctx = Ctx {
        io,
        server: &server,
    };

    // C0 asking for RTMPE (6), and an HTTP request on the RTMP port.
    for (what, bytes) in [
        ("C0 = 6 (RTMPE)", {
            let mut b = vec![0x06];
            b.extend(std::iter::repeat_n(0xA5, 1536));
            b
        }),
        (
            "HTTP request",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
    ] {
        let mut sock = rtmp_client::tcp(server.port, None, Duration::from_secs(3)).unwrap();
        let addr = sock.local_addr().unwrap();
        sock.write_all(&bytes).unwrap();
        ctx.expect_socket_closed(what, &mut sock, Duration::from_secs(3));
        ctx.expect_named(what, addr, PROTOCOL_ERROR, "error", "version");
    }

    // Truncated handshake, then the client goes away: the server notices and logs it.
    {
        let mut sock = rtmp_client::tcp(server.port, None, Duration::from_secs(3)).unwrap();
        let addr = sock.local_addr().unwrap();
        let mut c0c1 = vec![0x03];
        c0c1.extend(std::iter::repeat_n(0x11, 700));
        sock.write_all(&c0c1).unwrap();
        drop(sock);
        let id = ctx.client_id("truncated handshake", addr);
        server.expect_log(
            "truncated handshake: client left",
            |l| l.is("client left") && l.client().as_deref() == Some(id.as_str()),
            Duration::from_secs(3),
        );
    }

    // Silent clients: nothing at all, and half a C1 then nothing. Closed at handshake_timeout.
    {
        let started = Instant::now();
        let mut silent = rtmp_client::tcp(server.port, None, Duration::from_secs(3)).unwrap();
        let mut half = rtmp_client::tcp(server.port, None, Duration::from_secs(3)).unwrap();
        half.write_all(&[0x03; 700]).unwrap();
        let within = Duration::from_millis(HANDSHAKE_TIMEOUT_MS + 2000);
        for (what, sock) in [
            ("silent client", &mut silent),
            ("half a handshake", &mut half),
        ] {
            let addr = sock.local_addr().unwrap();
            ctx.expect_socket_closed(what, sock, within);
            let took = started.elapsed();
            assert!(
                took >= Duration::from_millis(HANDSHAKE_TIMEOUT_MS - 100),
                "[{io}] {what}: closed after {took:?}, before the handshake timeout"
            );
            ctx.expect_named(what, addr, "closing connection", "reason", "timeout");
        }
    }

    // Chunk sizes 0 and 2^31 (before connect, as the first message after the handshake).
    ctx.protocol_error_after_handshake(
        "SetChunkSize 0",
        false,
        &message(2, 1, 0, &0u32.to_be_bytes()),
        "chunk",
    );
    ctx.protocol_error_after_handshake(
        "SetChunkSize 2^31",
        true,
        &message(2, 1, 0, &(1u32 << 31).to_be_bytes()),
        "chunk",
    );

    // A message header claiming more than max_message_size.
    {
        let mut bytes = Vec::new();
        let header = MessageHeader {
            timestamp: 0,
            length: 2 * MAX_MESSAGE_SIZE,
            type_id: 9,
            stream_id: 1,
        };
        write_fmt0_header(&mut bytes, 6, &header);
        bytes.extend_from_slice(&[0x17; 128]);
        ctx.protocol_error_after_handshake("oversized message", true, &bytes, "limit");
    }

    // A chunk stream that starts with a type-3 header (nothing to continue).
    ctx.protocol_error_after_handshake(
        "type-3 chunk on a new chunk stream",
        true,
        &[0xC0 | 9, 1, 2, 3, 4],
        "chunk stream",
    );

    // Broken AMF in connect: a string that claims 65535 bytes, and an unknown marker.
    for (what, tail) in [
        (
            "connect with truncated AMF string",
            vec![0x03, 0, 3, b'a', b'p', b'p', 0x02, 0xFF, 0xFF, b'l', b'i'],
        ),
        ("connect with unknown AMF marker", vec![0x42, 1, 2, 3]),
    ] {
        let mut payload = amf_string("connect");
        payload.extend(amf_number(1.0));
        payload.extend(tail);
        ctx.protocol_error_after_handshake(
            what,
            false,
            &message(3, TYPE_COMMAND, 0, &payload),
            "amf",
        );
    }

    // A command before connect.
    {
        let mut payload = amf_string("play");
        payload.extend(amf_number(2.0));
        payload.push(0x05);
        payload.extend(amf_string("ok"));
        ctx.protocol_error_after_handshake(
            "play before connect",
            false,
            &message(8, TYPE_COMMAND, 1, &payload),
            "before connect",
        );
    }

    // An unknown command is answered with _error and the connection stays usable: it can
    // still create a stream and play.
    {
        let mut client = ctx.handshaken(true);
        let addr = client.local_addr();
        let reply = client
            .call(0, "noSuchCommand", Amf0Value::Null, vec!["x".into()])
            .unwrap_or_else(|e| panic!("[{io}] no reply to an unknown command: {e}"));
        assert_eq!(
            reply.name, "_error",
            "[{io}] reply to an unknown command: {reply:?}"
        );
        let id = client
            .create_stream()
            .expect("createStream after an unknown command");
        client.play(id, "ok").expect("play");
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut keyframe = false;
        while let Ok(Some((_, m))) = client.read_message(deadline) {
            if m.header.type_id == 9
                && m.payload.first() == Some(&0x17)
                && m.payload.get(1) == Some(&1)
            {
                keyframe = true;
                break;
            }
        }
        assert!(
            keyframe,
            "[{io}] after an unknown command, play gave no keyframe"
        );
        let cid = ctx.client_id("unknown command", addr);
        assert!(
            server
                .find_log(|l| l.client().as_deref() == Some(cid.as_str())
                    && (l.is(PROTOCOL_ERROR) || l.is("client left")))
                .is_none(),
            "[{io}] the unknown command closed the connection"
        );
    }

    // A publisher sending malformed media to a watched stream: empty and one-byte video and
    // audio, a sequence header with no body, junk data, then a broken aggregate. The server may
    // drop or refuse them but must not fall over; if it closes the publisher, it says so.
    {
        let mut publisher = ctx.handshaken(true);
        let addr = publisher.local_addr();
        let sid = publisher.create_stream().expect("createStream");
        let status = publisher.publish(sid, "junk").expect("publish");
        assert_eq!(status, "NetStream.Publish.Start", "[{io}] junk publisher");
        let viewer = Player::start(server.port, "junk", Duration::from_secs(10)).expect("play");
        let junk: [(u32, u8, &[u8]); 9] = [
            (6, 9, &[0x17]),
            (6, 9, &[0x17, 0x00]),
            (6, 9, &[0x27, 0x01, 0, 0]),
            (6, 9, &[0xFF; 3]),
            (7, 8, &[0xAF]),
            (7, 8, &[0xAF, 0x00]),
            (4, 18, &[0x02, 0x00]),
            (
                4,
                18,
                b"\x02\x00\x0d@setDataFrame\x02\x00\x0aonMetaData\x08\xFF\xFF",
            ),
            (6, 9, &[0x10, 0xFF, 0xFF, 0xFF, 0xFF]),
        ];
        for (csid, type_id, payload) in junk {
            let _ = publisher.send(csid, type_id, sid, 40, payload);
        }
        std::thread::sleep(Duration::from_millis(300));
        // An aggregate whose first part claims 16 MB.
        let mut aggregate = vec![9, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0];
        aggregate.extend_from_slice(&[0x17; 20]);
        let _ = publisher.send(6, 22, sid, 80, &aggregate);
        std::thread::sleep(Duration::from_millis(300));
        let id = ctx.client_id("junk publisher", addr);
        if let Some(left) =
            server.find_log(|l| l.is("client left") && l.client().as_deref() == Some(id.as_str()))
        {
            eprintln!("[{io}] junk publisher was closed: {left}");
            assert!(
                server
                    .find_log(|l| l.client().as_deref() == Some(id.as_str()) && l.is(PROTOCOL_ERROR))
                    .is_some(),
                "[{io}] the junk publisher was closed without a protocol-error line"
            );
        }
        let viewed = viewer.stop();
        eprintln!(
            "[{io}] junk viewer got {} messages, closed: {:?}",
            viewed.messages.len(),
            viewed.closed
        );
        server.assert_no_panic();
    }

    // Publishers that hold a stream without sending: one never sends media, one sends a
    // keyframe and then stalls. Each is closed at its timeout, named in the log, and its stream
    // can be published again.
    {
        let started = Instant::now();
        let mut mute = ctx.handshaken(true);
        let sid = mute.create_stream().expect("createStream");
        assert_eq!(
            mute.publish(sid, "mute").expect("publish"),
            "NetStream.Publish.Start"
        );
        let mut stalled = ctx.handshaken(true);
        let sid2 = stalled.create_stream().expect("createStream");
        assert_eq!(
            stalled.publish(sid2, "stalled").expect("publish"),
            "NetStream.Publish.Start"
        );
        stalled
            .send(6, 9, sid2, 0, &[0x17, 0x00, 0, 0, 0, 1, 0x64, 0, 0x1f])
            .unwrap();
        stalled
            .send(6, 9, sid2, 0, &[0x17, 0x01, 0, 0, 0, 0, 0, 0, 1, 0x65])
            .unwrap();
        let within = Duration::from_millis(PUBLISH_TIMEOUT_MS + 2500);
        for (what, client, stream, needle) in [
            ("mute publisher", &mut mute, "mute", "firstpkt"),
            (
                "stalled publisher",
                &mut stalled,
                "stalled",
                "normal_timeout",
            ),
        ] {
            let addr = client.local_addr();
            assert!(
                client.wait_closed(within),
                "[{io}] {what}: still connected {:?} after publishing",
                started.elapsed()
            );
            ctx.expect_named(what, addr, "closing connection", "reason", needle);
            let took = started.elapsed();
            assert!(
                took >= Duration::from_millis(PUBLISH_TIMEOUT_MS - 100),
                "[{io}] {what}: closed after {took:?}, before its timeout"
            );
            let mut next = ctx.handshaken(true);
            let sid = next.create_stream().expect("createStream");
            let status = next.publish(sid, stream).expect("publish");
            assert_eq!(
                status, "NetStream.Publish.Start",
                "[{io}] {what}: the stream was not free after the timeout"
            );
        }
    }

    // A play of a name the server must refuse: an error status, not a crash.
    {
        let mut client = ctx.handshaken(true);
        let sid = client.create_stream().expect("createStream");
        client.play(sid, "a/../b").expect("play");
        let code = client
            .wait_status(Duration::from_secs(3))
            .unwrap_or_else(|e| panic!("[{io}] no status for a bad play name: {e}"));
        assert!(
            code.starts_with("NetStream.Play.")
                && code != "NetStream.Play.Start"
                && code != "NetStream.Play.Reset",
            "[{io}] play of a bad name answered {code}"
        );
    }

    // Still fine so far?
    server.assert_no_panic();

    // A storm of connections past max_connections: the excess is refused at once, named in the
    // log; the rest time out; memory stays sane; afterwards new clients get in again.
    {
        let rss_before = server.rss_kib().unwrap_or(0);
        let mut socks = Vec::new();
        for i in 0..STORM {
            match rtmp_client::tcp(server.port, None, Duration::from_secs(5)) {
                Ok(sock) => socks.push(sock),
                Err(e) => panic!("[{io}] storm connection {i} failed: {e}"),
            }
        }
        let rss_peak = server.rss_kib().unwrap_or(0);
        let addrs: Vec<SocketAddr> = socks.iter().map(|s| s.local_addr().unwrap()).collect();
        let within = Duration::from_millis(HANDSHAKE_TIMEOUT_MS + 3000);
        for sock in &mut socks {
            ctx.expect_socket_closed("storm connection", sock, within);
        }
        drop(socks);
        let refused = server.find_logs(|l| l.is("refusing connection: too many connections"));
        assert!(
            refused.len() >= STORM - MAX_CONNECTIONS,
            "[{io}] only {} of {STORM} connections past max_connections = {MAX_CONNECTIONS} were refused",
            refused.len()
        );
        for addr in &addrs {
            let named = refused.iter().any(|l| l.peer() == Some(*addr))
                || server.connected_line(*addr).is_some();
            assert!(named, "[{io}] storm connection {addr} is in no log line");
        }
        let rss_after = server.rss_kib().unwrap_or(0);
        eprintln!(
            "[{io}] storm: {} refused; RSS {rss_before} -> {rss_peak} -> {rss_after} KiB",
            refused.len()
        );
        assert!(
            rss_peak.max(rss_after) < rss_before + 64 * 1024,
            "[{io}] memory grew from {rss_before} KiB to {} KiB in the storm",
            rss_peak.max(rss_after)
        );
        // The count of open connections went back down: a new player gets in and plays.
        let late = Player::start(server.port, "ok", Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("[{io}] no new player after the storm: {e}"));
        assert!(
            late.wait_for(Duration::from_secs(3), |r| r.first_keyframe().is_some()),
            "[{io}] a new player after the storm got no keyframe"
        );
    }

    // The healthy player never noticed.
    let watch_to = Instant::now();
    let rec = healthy.stop();
    let watched = watch_to - watch_from;
    let frames = rec.video_frames_between(watch_from, watch_to);
    let expected = watched.as_secs_f64() * 30.0;
    eprintln!("[{io}] healthy player: {frames} frames in {watched:?} (~{expected:.0} expected)");
    assert!(
        rec.closed.is_none(),
        "[{io}] the healthy player was disconnected: {:?}",
        rec.closed
    );
    assert!(
        frames as f64 >= 0.9 * expected,
        "[{io}] the healthy player got {frames} frames in {watched:?}"
    );
    let stall = rec.max_video_gap(watch_from, watch_to);
    assert!(
        stall <= Duration::from_secs(1),
        "[{io}] the healthy player stalled for {stall:?}"
    );
    if let Err(e) = rec.check_monotonic() {
        panic!("[{io}] {e}");
    }
    let mut server = server;
    assert!(server.is_running(), "[{io}] the server exited");
    server.assert_no_panic();
}
