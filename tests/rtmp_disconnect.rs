//! A client that goes away is noticed at once, however it goes: a FIN that rides on its last
//! bytes, a clean deleteStream-then-close, or a reset. Each is logged as "client left" within a
//! second, its side of the connection is closed, and a publisher's stream is free for the next
//! publisher right away (an encoder that restarts must not find its stream "busy").

mod common;

use std::net::Shutdown;
use std::time::{Duration, Instant};

use common::rtmp_client::{self, ClientOpts, RtmpClient, TYPE_COMMAND};
use common::{Io, Server, ServerConfig};
use sluice_proto::amf0::Amf0Value;
use sluice_proto::rtmp::Command;

/// Rounds of publish-then-leave per way of leaving.
const ROUNDS: usize = 6;
const NOTICE_WITHIN: Duration = Duration::from_secs(1);

const AVC_HEADER: &[u8] = &[
    0x17, 0x00, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x1f,
];
const AVC_KEYFRAME: &[u8] = &[
    0x17, 0x01, 0, 0, 0, 0, 0, 0, 5, 0x65, 0x88, 0x84, 0x00, 0x33,
];
const AVC_FRAME: &[u8] = &[
    0x27, 0x01, 0, 0, 0, 0, 0, 0, 5, 0x41, 0x9a, 0x02, 0x03, 0x04,
];

#[derive(Debug, Clone, Copy)]
enum Leave {
    /// The last media message and the FIN in one segment (TCP_CORK, write, shutdown).
    FinWithLastFrame,
    /// FCUnpublish + deleteStream, and the FIN in the same segment (what ffmpeg does).
    DeleteStreamThenFin,
    /// SO_LINGER 0 + close: a reset.
    Reset,
}

#[test]
fn departing_clients_are_noticed_at_once() {
    common::on_each_backend(disconnect);
}

fn disconnect(io: Io) {
    let server = Server::start(
        io,
        &ServerConfig::new()
            .workers(2)
            // Long enough that only noticing the close can free the stream in time.
            .publish("normal_timeout_ms", 20_000)
            .rtmp("handshake_timeout_ms", 20_000),
    );
    for leave in [
        Leave::FinWithLastFrame,
        Leave::DeleteStreamThenFin,
        Leave::Reset,
    ] {
        for round in 0..ROUNDS {
            let what = format!("[{io}] {leave:?} round {round}");
            let mut client = RtmpClient::connect(server.port, ClientOpts::default())
                .unwrap_or_else(|e| panic!("{what}: connect: {e}"));
            let addr = client.local_addr();
            let sid = client.create_stream().expect("createStream");
            let status = client.publish(sid, "gone").expect("publish");
            assert_eq!(
                status, "NetStream.Publish.Start",
                "{what}: the stream is still held by the previous publisher, which left"
            );
            client.send(6, 9, sid, 0, AVC_HEADER).unwrap();
            client.send(6, 9, sid, 0, AVC_KEYFRAME).unwrap();
            for i in 1..4 {
                client.send(6, 9, sid, 33 * i, AVC_FRAME).unwrap();
            }
            std::thread::sleep(Duration::from_millis(50));

            let left_at = Instant::now();
            match leave {
                Leave::FinWithLastFrame => {
                    socket2::SockRef::from(&*client.socket())
                        .set_tcp_cork(true)
                        .unwrap();
                    client.send(6, 9, sid, 200, AVC_FRAME).unwrap();
                    client.socket().shutdown(Shutdown::Write).unwrap();
                }
                Leave::DeleteStreamThenFin => {
                    socket2::SockRef::from(&*client.socket())
                        .set_tcp_cork(true)
                        .unwrap();
                    let unpublish =
                        Command::new("FCUnpublish", 9.0, Amf0Value::Null, vec!["gone".into()]);
                    client.send_command(3, 0, &unpublish).unwrap();
                    let delete = Command::new(
                        "deleteStream",
                        10.0,
                        Amf0Value::Null,
                        vec![Amf0Value::Number(f64::from(sid))],
                    );
                    let mut body = Vec::new();
                    delete.encode(&mut body);
                    client.send(3, TYPE_COMMAND, 0, 0, &body).unwrap();
                    client.socket().shutdown(Shutdown::Write).unwrap();
                }
                Leave::Reset => {
                    socket2::SockRef::from(&*client.socket())
                        .set_linger(Some(Duration::ZERO))
                        .unwrap();
                }
            }
            let id = server.client_id_of(addr).expect("client id");
            if let Leave::Reset = leave {
                drop(client);
            } else {
                // The server closes its side too.
                assert!(
                    rtmp_client::wait_closed(
                        client.socket(),
                        NOTICE_WITHIN + Duration::from_secs(1)
                    ),
                    "{what}: the server kept its side of the connection open after our FIN"
                );
            }
            let left = server.wait_for_log(
                |l| l.is("client left") && l.client().as_deref() == Some(id.as_str()),
                NOTICE_WITHIN,
            );
            assert!(
                left.is_some(),
                "{what}: the server did not notice client {id} leaving within {NOTICE_WITHIN:?} (left at {left_at:?})"
            );
        }
    }
    server.assert_no_panic();
}
