//! Scripted conversations against `ServerSession`: ffmpeg's exact publish and play sequences
//! (from libavformat/rtmpproto.c), OBS-style pipelining, and what a client waits for — byte
//! exact where clients parse by position (transaction ids, stream ids, status codes).

use std::time::Instant;

use bytes::Bytes;
use sluice_proto::amf0::{self, Amf0Value};
use sluice_proto::rtmp::chunk::{ChunkReader, ChunkWriter, MessageHeader, RtmpMessage};
use sluice_proto::rtmp::message::{Command, Message, UserControlEvent};
use sluice_proto::rtmp::{
    ClientHandshake, HandshakeKind, MediaKind, ServerSession, SessionConfig, SessionError,
    SessionEvent, SessionOutput,
};

/// A client driving a `ServerSession` in memory.
struct Client {
    session: ServerSession,
    writer: ChunkWriter,
    reader: ChunkReader,
    now: Instant,
}

impl Client {
    fn new(kind: HandshakeKind) -> Client {
        Client::with_config(kind, SessionConfig::default())
    }

    fn with_config(kind: HandshakeKind, config: SessionConfig) -> Client {
        let mut handshake = ClientHandshake::new(kind, 11);
        let mut session = ServerSession::new(config);
        let now = Instant::now();
        session
            .handle_input(now, &handshake.poll_transmit().unwrap())
            .unwrap();
        let Some(SessionOutput::Transmit(s0s1s2)) = session.poll_output() else {
            panic!("no S0S1S2");
        };
        assert_eq!(handshake.handle_input(&s0s1s2).unwrap(), 3073);
        session
            .handle_input(now, &handshake.poll_transmit().unwrap())
            .unwrap();
        assert_eq!(session.handshake_kind(), Some(kind));
        assert!(session.poll_output().is_none());
        Client {
            session,
            // ffmpeg compresses headers; so do we, to exercise the reader.
            writer: ChunkWriter::with_header_compression(128),
            reader: ChunkReader::default(),
            now,
        }
    }

    fn wire(
        &mut self,
        csid: u32,
        type_id: u8,
        stream_id: u32,
        timestamp: u32,
        payload: &[u8],
    ) -> Vec<u8> {
        let header = MessageHeader {
            timestamp,
            length: 0,
            type_id,
            stream_id,
        };
        let mut wire = Vec::new();
        self.writer.write(&mut wire, csid, &header, payload);
        if type_id == 1 {
            let size = u32::from_be_bytes(payload[..4].try_into().unwrap());
            self.writer.set_chunk_size(size);
        }
        wire
    }

    fn send(&mut self, csid: u32, type_id: u8, stream_id: u32, timestamp: u32, payload: &[u8]) {
        let wire = self.wire(csid, type_id, stream_id, timestamp, payload);
        self.session.handle_input(self.now, &wire).unwrap();
    }

    fn try_send(
        &mut self,
        csid: u32,
        type_id: u8,
        stream_id: u32,
        payload: &[u8],
    ) -> Result<(), SessionError> {
        let wire = self.wire(csid, type_id, stream_id, 0, payload);
        self.session.handle_input(self.now, &wire)
    }

    fn command(
        &mut self,
        csid: u32,
        stream_id: u32,
        name: &str,
        txn: f64,
        object: Amf0Value,
        args: Vec<Amf0Value>,
    ) {
        let mut body = Vec::new();
        Command::new(name, txn, object, args).encode(&mut body);
        self.send(csid, 20, stream_id, 0, &body);
    }

    /// Everything the session has produced: decoded replies and events.
    fn drain(&mut self) -> (Vec<RtmpMessage>, Vec<SessionEvent>) {
        let mut replies = Vec::new();
        let mut events = Vec::new();
        while let Some(output) = self.session.poll_output() {
            match output {
                SessionOutput::Transmit(bytes) => {
                    replies.extend(self.reader.read_all(&bytes).unwrap())
                }
                SessionOutput::Event(event) => events.push(event),
            }
        }
        (replies, events)
    }
}

fn decode(message: &RtmpMessage) -> Message {
    Message::decode(message.header.type_id, &message.payload).unwrap()
}

fn command_of(message: &RtmpMessage) -> Command {
    match decode(message) {
        Message::Command { command, .. } => command,
        other => panic!("expected a command, got {other:?}"),
    }
}

fn data_of(message: &RtmpMessage) -> Vec<Amf0Value> {
    assert_eq!(message.header.type_id, 18);
    amf0::decode_all(&message.payload).unwrap()
}

/// (name, transaction id, code of the info object if any).
fn summary(message: &RtmpMessage) -> (String, f64, Option<String>) {
    let command = command_of(message);
    let code = command
        .arguments
        .first()
        .and_then(|info| info.get("code"))
        .and_then(Amf0Value::as_str)
        .map(str::to_owned);
    (command.name, command.transaction_id, code)
}

fn ffmpeg_connect(client: &mut Client, publishing: bool) {
    let mut object = vec![("app", Amf0Value::from("live"))];
    if publishing {
        object.push(("type", "nonprivate".into()));
        object.push(("flashVer", "FMLE/3.0 (compatible; Lavf61.7.100)".into()));
        object.push(("tcUrl", "rtmp://127.0.0.1:1935/live".into()));
    } else {
        object.push(("flashVer", "LNX 9,0,124,2".into()));
        object.push(("tcUrl", "rtmp://127.0.0.1:1935/live".into()));
        object.push(("fpad", false.into()));
        object.push(("capabilities", 15.0.into()));
        object.push(("audioCodecs", 4071.0.into()));
        object.push(("videoCodecs", 252.0.into()));
        object.push(("videoFunction", 1.0.into()));
    }
    client.command(3, 0, "connect", 1.0, Amf0Value::object(object), vec![]);
    let (replies, events) = client.drain();
    assert!(
        replies.is_empty(),
        "nothing is sent before the server's verdict"
    );
    let [SessionEvent::Connect(request)] = &events[..] else {
        panic!("expected Connect, got {events:?}");
    };
    assert_eq!(request.app, "live");
    assert_eq!(request.tc_url, "rtmp://127.0.0.1:1935/live");
    assert_eq!(request.transaction_id, 1.0);
    assert_eq!(request.object_encoding, 0.0);

    client.session.accept_connect();
    let (replies, events) = client.drain();
    assert!(events.is_empty());
    // SRS's order: WindowAckSize, SetPeerBandwidth(dynamic), SetChunkSize, _result, onBWDone.
    let kinds: Vec<_> = replies
        .iter()
        .map(|m| (m.csid, m.header.type_id, m.header.stream_id))
        .collect();
    assert_eq!(
        kinds,
        vec![(2, 5, 0), (2, 6, 0), (2, 1, 0), (3, 20, 0), (3, 20, 0)]
    );
    assert_eq!(&replies[0].payload[..], &2_500_000u32.to_be_bytes());
    assert_eq!(&replies[1].payload[..], &[0x00, 0x26, 0x25, 0xA0, 0x02]);
    assert_eq!(&replies[2].payload[..], &60000u32.to_be_bytes());
    assert_eq!(client.session.out_chunk_size(), 60000);

    let result = command_of(&replies[3]);
    assert_eq!(
        (result.name.as_str(), result.transaction_id),
        ("_result", 1.0)
    );
    assert_eq!(
        result.command_object,
        Amf0Value::object([
            ("fmsVer", Amf0Value::from("FMS/3,5,3,888")),
            ("capabilities", 127.0.into()),
            ("mode", 1.0.into()),
        ])
    );
    let info = &result.arguments[0];
    assert_eq!(
        info.get("level").and_then(Amf0Value::as_str),
        Some("status")
    );
    assert_eq!(
        info.get("code").and_then(Amf0Value::as_str),
        Some("NetConnection.Connect.Success")
    );
    assert_eq!(
        info.get("description").and_then(Amf0Value::as_str),
        Some("Connection succeeded")
    );
    assert_eq!(
        info.get("objectEncoding").and_then(Amf0Value::as_f64),
        Some(0.0)
    );
    assert!(matches!(info.get("data"), Some(Amf0Value::EcmaArray(_))));
    assert_eq!(summary(&replies[4]), ("onBWDone".into(), 0.0, None));
    // onBWDone carries exactly one null after the transaction id, like SRS.
    assert_eq!(
        &replies[4].payload[..],
        b"\x02\x00\x08onBWDone\x00\x00\x00\x00\x00\x00\x00\x00\x00\x05"
    );

    // ffmpeg echoes the server's chunk size when publishing (handle_chunk_size).
    if publishing {
        client.send(2, 1, 0, 0, &60000u32.to_be_bytes());
        assert_eq!(client.session.in_chunk_size(), 60000);
    } else {
        // gen_server_bw: the player's window acknowledgement size.
        client.send(2, 5, 0, 0, &2_500_000u32.to_be_bytes());
    }
}

#[test]
fn ffmpeg_publish_sequence() {
    let mut client = Client::new(HandshakeKind::Complex);
    ffmpeg_connect(&mut client, true);

    // On the connect _result: releaseStream, FCPublish, createStream; on onBWDone: _checkbw.
    client.command(
        3,
        0,
        "releaseStream",
        2.0,
        Amf0Value::Null,
        vec!["stream?k=v".into()],
    );
    client.command(
        3,
        0,
        "FCPublish",
        3.0,
        Amf0Value::Null,
        vec!["stream?k=v".into()],
    );
    client.command(3, 0, "createStream", 4.0, Amf0Value::Null, vec![]);
    client.command(3, 0, "_checkbw", 5.0, Amf0Value::Null, vec![]);
    let (replies, events) = client.drain();
    assert!(events.is_empty());
    let summaries: Vec<_> = replies.iter().map(summary).collect();
    assert_eq!(
        summaries,
        vec![
            ("_result".into(), 2.0, None),
            ("_result".into(), 3.0, None),
            ("_result".into(), 4.0, None),
            ("_result".into(), 5.0, None),
        ]
    );
    // releaseStream/FCPublish: _result(txn, null, undefined), as SRS.
    assert_eq!(
        command_of(&replies[0]).arguments,
        vec![Amf0Value::Undefined]
    );
    // createStream: byte exact; old ffmpeg reads the stream id as the double at offset 21.
    let expected: &[u8] = b"\x02\x00\x07_result\x00\x40\x10\x00\x00\x00\x00\x00\x00\x05\x00\x3f\xf0\x00\x00\x00\x00\x00\x00";
    assert_eq!(&replies[2].payload[..], expected);
    assert_eq!(
        f64::from_be_bytes(replies[2].payload[21..29].try_into().unwrap()),
        1.0
    );

    // publish on RTMP_SOURCE_CHANNEL (8), stream 1.
    client.command(
        8,
        1,
        "publish",
        6.0,
        Amf0Value::Null,
        vec!["stream?k=v".into(), "live".into()],
    );
    let (replies, events) = client.drain();
    // onFCPublish goes out at once (FMLE flow), the verdict waits for the server.
    assert_eq!(replies.len(), 1);
    assert_eq!((replies[0].csid, replies[0].header.stream_id), (5, 1));
    assert_eq!(
        summary(&replies[0]),
        (
            "onFCPublish".into(),
            0.0,
            Some("NetStream.Publish.Start".into())
        )
    );
    let [SessionEvent::Publish(request)] = &events[..] else {
        panic!("expected Publish, got {events:?}");
    };
    assert_eq!(
        (
            request.stream_id,
            request.stream_name.as_str(),
            request.publish_type.as_str()
        ),
        (1, "stream?k=v", "live")
    );

    client.session.accept_publish(1);
    let (replies, _) = client.drain();
    assert_eq!(replies.len(), 1);
    assert_eq!((replies[0].csid, replies[0].header.stream_id), (5, 1));
    let status = command_of(&replies[0]);
    assert_eq!(status.name, "onStatus");
    assert_eq!(status.command_object, Amf0Value::Null);
    assert_eq!(
        status.arguments[0],
        Amf0Value::object([
            ("level", Amf0Value::from("status")),
            ("code", "NetStream.Publish.Start".into()),
            ("description", "Started publishing stream.".into()),
            ("clientid", "ASAICiss".into()),
        ])
    );

    // @setDataFrame, then audio (channel 4) and video (channel 6) with headers compressed.
    let mut metadata = Vec::new();
    amf0::encode_all(
        &[
            "@setDataFrame".into(),
            "onMetaData".into(),
            Amf0Value::EcmaArray(vec![
                ("width".into(), 1280.0.into()),
                ("height".into(), 720.0.into()),
            ]),
        ],
        &mut metadata,
    );
    client.send(8, 18, 1, 0, &metadata);
    let keyframe = vec![0x17; 100_000];
    let mut sent = vec![(MediaKind::Data, 0, metadata.clone())];
    for i in 0..30u32 {
        let audio = vec![0xAF, 0x01, i as u8, 3, 4];
        client.send(4, 8, 1, i * 23, &audio);
        sent.push((MediaKind::Audio, i * 23, audio));
        let video = if i % 10 == 0 {
            keyframe.clone()
        } else {
            vec![0x27; 8000 + i as usize]
        };
        client.send(6, 9, 1, i * 33, &video);
        sent.push((MediaKind::Video, i * 33, video));
    }
    let (replies, events) = client.drain();
    assert!(replies.is_empty());
    let got: Vec<_> = events
        .into_iter()
        .map(|event| match event {
            SessionEvent::Media(media) => {
                assert_eq!(media.stream_id, 1);
                (media.kind, media.timestamp, media.payload.to_vec())
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(got, sent);
    assert_eq!(
        sluice_proto::flv::metadata_body(&Bytes::from(metadata)).map(|b| b.len()),
        Some(metadata_len_without_set_data_frame())
    );

    // Shutdown: FCUnpublish (untracked by ffmpeg) then deleteStream(1).
    client.command(
        3,
        0,
        "FCUnpublish",
        7.0,
        Amf0Value::Null,
        vec!["stream?k=v".into()],
    );
    client.command(3, 0, "deleteStream", 8.0, Amf0Value::Null, vec![1.0.into()]);
    let (replies, events) = client.drain();
    let summaries: Vec<_> = replies.iter().map(summary).collect();
    assert_eq!(
        summaries,
        vec![
            (
                "onFCUnpublish".into(),
                0.0,
                Some("NetStream.Unpublish.Success".into())
            ),
            ("_result".into(), 7.0, None),
            (
                "onStatus".into(),
                0.0,
                Some("NetStream.Unpublish.Success".into())
            ),
        ]
    );
    assert_eq!(
        events,
        vec![
            SessionEvent::Unpublish { stream_id: 1 },
            SessionEvent::CloseStream { stream_id: 1 }
        ]
    );
}

fn metadata_len_without_set_data_frame() -> usize {
    let mut body = Vec::new();
    amf0::encode_all(
        &[
            "onMetaData".into(),
            Amf0Value::EcmaArray(vec![
                ("width".into(), 1280.0.into()),
                ("height".into(), 720.0.into()),
            ]),
        ],
        &mut body,
    );
    body.len()
}

#[test]
fn ffmpeg_play_sequence() {
    let mut client = Client::new(HandshakeKind::Complex);
    ffmpeg_connect(&mut client, false);
    client.command(3, 0, "createStream", 2.0, Amf0Value::Null, vec![]);
    client.command(3, 0, "_checkbw", 3.0, Amf0Value::Null, vec![]);
    let (replies, _) = client.drain();
    assert_eq!(summary(&replies[0]), ("_result".into(), 2.0, None));
    assert_eq!(
        command_of(&replies[0]).arguments,
        vec![Amf0Value::Number(1.0)]
    );
    assert_eq!(summary(&replies[1]), ("_result".into(), 3.0, None));

    // On the createStream result: getStreamLength, play(-2000 = live "any"), SetBufferLength.
    client.command(
        8,
        0,
        "getStreamLength",
        4.0,
        Amf0Value::Null,
        vec!["stream".into()],
    );
    client.command(
        8,
        1,
        "play",
        5.0,
        Amf0Value::Null,
        vec!["stream".into(), (-2000.0).into()],
    );
    let buffer = Message::UserControl(UserControlEvent::SetBufferLength {
        stream_id: 1,
        buffer_ms: 3000,
    });
    client.send(2, 4, 0, 1, &buffer.to_bytes());
    let (replies, events) = client.drain();
    // getStreamLength is not answered (SRS); play waits for the verdict.
    assert!(replies.is_empty());
    let [SessionEvent::Play(play)] = &events[..] else {
        panic!("expected Play, got {events:?}");
    };
    assert_eq!(
        (
            play.stream_id,
            play.stream_name.as_str(),
            play.start,
            play.duration,
            play.reset
        ),
        (1, "stream", -2000.0, -1.0, true)
    );

    client.session.accept_play(1);
    let (replies, _) = client.drain();
    assert_eq!(replies.len(), 4);
    assert_eq!(
        (
            replies[0].csid,
            replies[0].header.type_id,
            replies[0].header.stream_id
        ),
        (2, 4, 0)
    );
    assert_eq!(
        decode(&replies[0]),
        Message::UserControl(UserControlEvent::StreamBegin { stream_id: 1 })
    );
    for (reply, code, description) in [
        (
            &replies[1],
            "NetStream.Play.Reset",
            "Playing and resetting stream.",
        ),
        (
            &replies[2],
            "NetStream.Play.Start",
            "Started playing stream.",
        ),
    ] {
        assert_eq!((reply.csid, reply.header.stream_id), (5, 1));
        let status = command_of(reply);
        assert_eq!(
            status.arguments[0],
            Amf0Value::object([
                ("level", Amf0Value::from("status")),
                ("code", code.into()),
                ("description", description.into()),
                ("details", "stream".into()),
                ("clientid", "ASAICiss".into()),
            ])
        );
    }
    assert_eq!((replies[3].csid, replies[3].header.stream_id), (5, 1));
    assert_eq!(
        data_of(&replies[3]),
        vec![
            "|RtmpSampleAccess".into(),
            Amf0Value::Boolean(true),
            Amf0Value::Boolean(true)
        ]
    );

    // Pause and resume (ffmpeg: txn 0, null, flag, position).
    client.command(
        3,
        1,
        "pause",
        0.0,
        Amf0Value::Null,
        vec![true.into(), 1234.0.into()],
    );
    client.command(
        3,
        1,
        "pause",
        0.0,
        Amf0Value::Null,
        vec![false.into(), 1234.0.into()],
    );
    let (replies, events) = client.drain();
    assert_eq!(
        summary(&replies[0]).2.as_deref(),
        Some("NetStream.Pause.Notify")
    );
    assert_eq!(
        decode(&replies[1]),
        Message::UserControl(UserControlEvent::StreamEof { stream_id: 1 })
    );
    assert_eq!(
        summary(&replies[2]).2.as_deref(),
        Some("NetStream.Unpause.Notify")
    );
    assert_eq!(
        decode(&replies[3]),
        Message::UserControl(UserControlEvent::StreamBegin { stream_id: 1 })
    );
    assert_eq!(
        events,
        vec![
            SessionEvent::Pause {
                stream_id: 1,
                paused: true,
                position_ms: 1234.0
            },
            SessionEvent::Pause {
                stream_id: 1,
                paused: false,
                position_ms: 1234.0
            },
        ]
    );

    // Media written by the hub path reads back at the session's out chunk size.
    let mut wire = Vec::new();
    let header = MessageHeader {
        timestamp: 40,
        length: 100_000,
        type_id: 9,
        stream_id: 1,
    };
    sluice_proto::rtmp::write_fmt0_header(&mut wire, 6, &header);
    sluice_proto::rtmp::write_chunked_body(
        &mut wire,
        &[0x17; 100_000],
        client.session.out_chunk_size(),
        6,
        None,
    );
    let messages = client.reader.read_all(&wire).unwrap();
    assert_eq!(messages[0].header, header);
}

#[test]
fn obs_pipelines_commands_behind_connect() {
    // librtmp-style: everything in one write before the connect verdict.
    let mut client = Client::new(HandshakeKind::Simple);
    let mut wire = client.wire(2, 1, 0, 0, &4096u32.to_be_bytes());
    let mut connect = Vec::new();
    Command::new(
        "connect",
        1.0,
        Amf0Value::object([
            ("app", Amf0Value::from("live")),
            ("tcUrl", "rtmp://h/live".into()),
        ]),
        vec![],
    )
    .encode(&mut connect);
    wire.extend(client.wire(3, 20, 0, 0, &connect));
    for (name, txn) in [("releaseStream", 2.0), ("FCPublish", 3.0)] {
        let mut body = Vec::new();
        Command::new(name, txn, Amf0Value::Null, vec!["key".into()]).encode(&mut body);
        wire.extend(client.wire(3, 20, 0, 0, &body));
    }
    let mut body = Vec::new();
    Command::new("createStream", 4.0, Amf0Value::Null, vec![]).encode(&mut body);
    wire.extend(client.wire(3, 20, 0, 0, &body));
    client.session.handle_input(client.now, &wire).unwrap();
    let (replies, events) = client.drain();
    assert!(replies.is_empty());
    assert!(matches!(&events[..], [SessionEvent::Connect(_)]));
    assert_eq!(client.session.in_chunk_size(), 4096);

    client.session.accept_connect();
    let (replies, _) = client.drain();
    let commands: Vec<_> = replies
        .iter()
        .filter(|m| m.header.type_id == 20)
        .map(summary)
        .collect();
    assert_eq!(
        commands,
        vec![
            (
                "_result".into(),
                1.0,
                Some("NetConnection.Connect.Success".into())
            ),
            ("onBWDone".into(), 0.0, None),
            ("_result".into(), 2.0, None),
            ("_result".into(), 3.0, None),
            ("_result".into(), 4.0, None),
        ]
    );
}

#[test]
fn rejections_tell_the_client_why() {
    let mut client = Client::new(HandshakeKind::Simple);
    client.command(
        3,
        0,
        "connect",
        1.0,
        Amf0Value::object([("tcUrl", Amf0Value::from("rtmp://h/app"))]),
        vec![],
    );
    client.drain();
    client.session.reject_connect("auth failed");
    let (replies, _) = client.drain();
    let status = command_of(&replies[0]);
    assert_eq!(status.name, "onStatus");
    assert_eq!(
        status.arguments[0].get("level").and_then(Amf0Value::as_str),
        Some("error")
    );
    assert_eq!(
        status.arguments[0].get("code").and_then(Amf0Value::as_str),
        Some("NetConnection.Connect.Rejected")
    );
    assert_eq!(
        status.arguments[0]
            .get("description")
            .and_then(Amf0Value::as_str),
        Some("auth failed")
    );

    let mut client = Client::new(HandshakeKind::Simple);
    ffmpeg_connect(&mut client, true);
    client.command(3, 0, "createStream", 2.0, Amf0Value::Null, vec![]);
    client.command(8, 1, "publish", 3.0, Amf0Value::Null, vec!["busy".into()]);
    client.drain();
    client
        .session
        .reject_publish(1, "NetStream.Publish.BadName", "stream is busy");
    let (replies, _) = client.drain();
    let info = &command_of(&replies[0]).arguments[0];
    assert_eq!(info.get("level").and_then(Amf0Value::as_str), Some("error"));
    assert_eq!(
        info.get("code").and_then(Amf0Value::as_str),
        Some("NetStream.Publish.BadName")
    );
    assert_eq!(
        info.get("description").and_then(Amf0Value::as_str),
        Some("stream is busy")
    );
}

#[test]
fn unknown_commands_get_error_and_do_not_close() {
    let mut client = Client::new(HandshakeKind::Simple);
    ffmpeg_connect(&mut client, true);
    client.command(3, 0, "setPeerInfo", 9.0, Amf0Value::Null, vec!["x".into()]);
    client.command(3, 0, "seek", 0.0, Amf0Value::Null, vec![10.0.into()]);
    let (replies, events) = client.drain();
    assert_eq!(
        replies.len(),
        1,
        "only the command with a transaction id is answered"
    );
    let error = command_of(&replies[0]);
    assert_eq!((error.name.as_str(), error.transaction_id), ("_error", 9.0));
    assert_eq!(
        error.arguments[0].get("code").and_then(Amf0Value::as_str),
        Some("NetConnection.Call.Failed")
    );
    assert_eq!(
        events,
        vec![
            SessionEvent::UnknownCommand {
                name: "setPeerInfo".into()
            },
            SessionEvent::UnknownCommand {
                name: "seek".into()
            },
        ]
    );
    client.command(3, 0, "createStream", 10.0, Amf0Value::Null, vec![]);
    assert_eq!(
        summary(&client.drain().0[0]),
        ("_result".into(), 10.0, None)
    );
}

#[test]
fn ping_and_acknowledgements() {
    let mut client = Client::new(HandshakeKind::Simple);
    ffmpeg_connect(&mut client, true);
    client.send(
        2,
        4,
        0,
        0,
        &Message::UserControl(UserControlEvent::PingRequest { timestamp: 777 }).to_bytes(),
    );
    let (replies, _) = client.drain();
    assert_eq!(
        decode(&replies[0]),
        Message::UserControl(UserControlEvent::PingResponse { timestamp: 777 })
    );

    // The peer asks for an acknowledgement every 10000 bytes; SRS answers every half window.
    client.send(2, 5, 0, 0, &10_000u32.to_be_bytes());
    client.drain();
    let before = client.session.bytes_received();
    client.command(3, 0, "createStream", 2.0, Amf0Value::Null, vec![]);
    client.command(8, 1, "publish", 3.0, Amf0Value::Null, vec!["s".into()]);
    client.session.accept_publish(1);
    client.send(6, 9, 1, 0, &[0x27; 6000]);
    let (replies, _) = client.drain();
    let acks: Vec<_> = replies
        .iter()
        .filter_map(|m| match decode(m) {
            Message::Acknowledgement { sequence_number } => Some(sequence_number),
            _ => None,
        })
        .collect();
    assert_eq!(acks.len(), 1);
    assert!(u64::from(acks[0]) >= before + 5000);
    assert_eq!(u64::from(acks[0]), client.session.bytes_received());
}

#[test]
fn amf3_connect_and_flash_publish_without_fcpublish() {
    let mut client = Client::new(HandshakeKind::Complex);
    let mut body = vec![0u8];
    Command::new(
        "connect",
        1.0,
        Amf0Value::object([
            ("app", Amf0Value::from("live")),
            ("tcUrl", "rtmp://h/live".into()),
            ("objectEncoding", 3.0.into()),
        ]),
        vec![],
    )
    .encode(&mut body);
    client.send(3, 17, 0, 0, &body);
    let (_, events) = client.drain();
    let [SessionEvent::Connect(request)] = &events[..] else {
        panic!()
    };
    assert_eq!(request.object_encoding, 3.0);
    client.session.accept_connect();
    let (replies, _) = client.drain();
    let result = command_of(&replies[3]);
    assert_eq!(
        result.arguments[0]
            .get("objectEncoding")
            .and_then(Amf0Value::as_f64),
        Some(3.0)
    );

    // Flash: createStream, publish; no onFCPublish without FCPublish.
    client.command(3, 0, "createStream", 2.0, Amf0Value::Null, vec![]);
    client.command(
        8,
        1,
        "publish",
        0.0,
        Amf0Value::Null,
        vec!["s".into(), "live".into()],
    );
    let (replies, events) = client.drain();
    assert_eq!(replies.len(), 1, "only the createStream _result");
    assert!(matches!(&events[..], [SessionEvent::Publish(_)]));

    // AMF3 data message carrying metadata.
    let mut data = vec![0u8];
    amf0::encode_all(
        &[
            "onMetaData".into(),
            Amf0Value::object([("w", Amf0Value::from(1.0))]),
        ],
        &mut data,
    );
    client.send(4, 15, 1, 0, &data);
    let (_, events) = client.drain();
    let [SessionEvent::Media(media)] = &events[..] else {
        panic!()
    };
    assert_eq!(
        (media.kind, &media.payload[..]),
        (MediaKind::Data, &data[1..])
    );
    // closeStream ends the publish.
    client.command(8, 1, "closeStream", 0.0, Amf0Value::Null, vec![]);
    assert_eq!(
        client.drain().1,
        vec![SessionEvent::CloseStream { stream_id: 1 }]
    );
}

#[test]
fn protocol_errors_are_clear() {
    let mut client = Client::new(HandshakeKind::Simple);
    let mut body = Vec::new();
    Command::new("publish", 1.0, Amf0Value::Null, vec!["s".into()]).encode(&mut body);
    assert_eq!(
        client.try_send(3, 20, 0, &body),
        Err(SessionError::CommandBeforeConnect {
            name: "publish".into()
        })
    );

    let mut client = Client::new(HandshakeKind::Simple);
    let mut body = Vec::new();
    Command::new(
        "connect",
        1.0,
        Amf0Value::object([("app", Amf0Value::from("live"))]),
        vec![],
    )
    .encode(&mut body);
    assert_eq!(
        client.try_send(3, 20, 0, &body),
        Err(SessionError::ConnectWithoutTcUrl)
    );

    let mut client = Client::new(HandshakeKind::Simple);
    ffmpeg_connect(&mut client, true);
    let mut body = Vec::new();
    Command::new("publish", 2.0, Amf0Value::Null, vec!["s".into()]).encode(&mut body);
    assert_eq!(
        client.try_send(8, 20, 5, &body),
        Err(SessionError::UnknownStream {
            command: "publish",
            stream_id: 5
        })
    );

    let mut client = Client::new(HandshakeKind::Simple);
    ffmpeg_connect(&mut client, true);
    // Broken AMF inside a command.
    let err = client
        .try_send(3, 20, 0, b"\x02\x00\x0cFCPublish")
        .unwrap_err();
    assert!(
        matches!(err, SessionError::Message { type_id: 20, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("AMF0"), "{err}");
}

#[test]
fn play_without_create_stream_is_tolerated() {
    let mut client = Client::new(HandshakeKind::Simple);
    ffmpeg_connect(&mut client, false);
    client.command(8, 0, "play", 1.0, Amf0Value::Null, vec!["stream".into()]);
    let (_, events) = client.drain();
    let [SessionEvent::Play(play)] = &events[..] else {
        panic!()
    };
    assert_eq!((play.stream_id, play.start), (0, -2.0));
}

#[test]
fn aggregate_messages_become_media() {
    let mut client = Client::new(HandshakeKind::Simple);
    ffmpeg_connect(&mut client, true);
    let mut payload = Vec::new();
    for (type_id, ts, data) in [(9u8, 100u32, vec![0x17u8, 1, 2]), (8, 120, vec![0xAF, 1])] {
        payload.push(type_id);
        payload.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
        payload.extend_from_slice(&ts.to_be_bytes()[1..]);
        payload.push(0);
        payload.extend_from_slice(&[0, 0, 0]);
        payload.extend_from_slice(&data);
        payload.extend_from_slice(&(11 + data.len() as u32).to_be_bytes());
    }
    client.send(6, 22, 1, 1000, &payload);
    let (_, events) = client.drain();
    let media: Vec<_> = events
        .iter()
        .map(|e| match e {
            SessionEvent::Media(m) => (m.kind, m.timestamp, m.payload.len()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        media,
        vec![(MediaKind::Video, 1000, 3), (MediaKind::Audio, 1020, 2)]
    );
}

#[test]
fn out_chunk_size_follows_the_vhost_before_and_after_connect() {
    let mut client = Client::new(HandshakeKind::Simple);
    client.command(
        3,
        0,
        "connect",
        1.0,
        Amf0Value::object([
            ("app", Amf0Value::from("live")),
            ("tcUrl", "rtmp://127.0.0.1/live".into()),
        ]),
        vec![],
    );
    client.drain();
    // Chosen between the Connect event and the verdict: announced in the connect replies.
    client.session.set_out_chunk_size(4096);
    client.session.accept_connect();
    let (replies, _) = client.drain();
    let set_chunk_size = replies.iter().find(|m| m.header.type_id == 1).unwrap();
    assert_eq!(&set_chunk_size.payload[..], &4096u32.to_be_bytes());
    assert_eq!(client.session.out_chunk_size(), 4096);
    // Changed later: announced at once; out of range is clamped.
    client.session.set_out_chunk_size(1);
    let (replies, _) = client.drain();
    assert_eq!(replies.len(), 1);
    assert_eq!(&replies[0].payload[..], &128u32.to_be_bytes());
    assert_eq!(client.session.out_chunk_size(), 128);
}
