//! `ClientSession` against the real `ServerSession` in memory (both directions randomly
//! fragmented), and against scripted server bytes for what `ServerSession` never sends. What
//! the client writes is decoded by a spy reader and compared with ffmpeg's conversation
//! (libavformat/rtmpproto.c): command names, transaction ids, chunk streams, message streams.

use std::time::Instant;

use bytes::Bytes;
use sluice_proto::amf0::{self, Amf0Value};
use sluice_proto::rtmp::chunk::{ChunkReader, ChunkWriter, MessageHeader, RtmpMessage};
use sluice_proto::rtmp::handshake::ServerHandshake;
use sluice_proto::rtmp::message::{Command, Message, MessageError, UserControlEvent};
use sluice_proto::rtmp::{
    ClientConfig, ClientError, ClientEvent, ClientMode, ClientOutput, ClientSession, ClientState,
    HandshakeKind, LiveMode, MediaKind, OutChunkSize, RtmpUrl, SendError, ServerSession,
    SessionConfig, SessionEvent, SessionOutput, UrlError, write_chunked_body, write_fmt0_header,
};

const C0C1_AND_C2: usize = 1 + 1536 + 1536;

/// xorshift64*: deterministic fragment sizes without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Mostly pieces up to 8 KiB, now and then tiny ones that split headers.
    fn fragments<'a>(&mut self, mut data: &'a [u8]) -> Vec<&'a [u8]> {
        let mut pieces = Vec::new();
        while !data.is_empty() {
            let roll = self.next();
            let size = if roll % 8 == 0 {
                1 + (roll >> 8) as usize % 16
            } else {
                1 + (roll >> 8) as usize % 8192
            };
            let (piece, rest) = data.split_at(size.min(data.len()));
            pieces.push(piece);
            data = rest;
        }
        pieces
    }
}

/// Decodes one direction of the conversation once the handshake bytes have passed.
struct Spy {
    skip: usize,
    reader: ChunkReader,
    messages: Vec<RtmpMessage>,
}

impl Spy {
    fn new(skip: usize) -> Spy {
        Spy {
            skip,
            reader: ChunkReader::default(),
            messages: Vec::new(),
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        let skipped = self.skip.min(bytes.len());
        self.skip -= skipped;
        let messages = self.reader.read_all(&bytes[skipped..]).unwrap();
        self.messages.extend(messages);
    }

    fn take(&mut self) -> Vec<RtmpMessage> {
        std::mem::take(&mut self.messages)
    }
}

/// How the server answers.
#[derive(Default, Clone)]
struct Policy {
    out_chunk_size: Option<u32>,
    reject_connect: Option<&'static str>,
    reject_publish: Option<(&'static str, &'static str)>,
    reject_play: Option<(&'static str, &'static str)>,
}

/// A client and a server session wired together in memory.
struct Pair {
    client: ClientSession,
    server: ServerSession,
    policy: Policy,
    rng: Rng,
    now: Instant,
    spy: Spy,
    client_events: Vec<ClientEvent>,
    server_events: Vec<SessionEvent>,
}

impl Pair {
    fn new(config: ClientConfig, server_config: SessionConfig, policy: Policy) -> Pair {
        let now = Instant::now();
        Pair {
            rng: Rng(config.random_seed | 1),
            client: ClientSession::new(config, now),
            server: ServerSession::new(server_config),
            policy,
            now,
            spy: Spy::new(C0C1_AND_C2),
            client_events: Vec::new(),
            server_events: Vec::new(),
        }
    }

    /// Moves bytes both ways, answering the server's events per the policy, until quiet.
    fn pump(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(output) = self.client.poll_output() {
                match output {
                    ClientOutput::Transmit(bytes) => {
                        progressed = true;
                        self.spy.feed(&bytes);
                        for piece in self.rng.fragments(&bytes) {
                            self.server.handle_input(self.now, piece).unwrap();
                        }
                    }
                    ClientOutput::Event(event) => self.client_events.push(event),
                }
            }
            while let Some(output) = self.server.poll_output() {
                progressed = true;
                match output {
                    SessionOutput::Transmit(bytes) => {
                        for piece in self.rng.fragments(&bytes) {
                            self.client.handle_input(self.now, piece).unwrap();
                        }
                    }
                    SessionOutput::Event(event) => {
                        self.answer(&event);
                        self.server_events.push(event);
                    }
                }
            }
            if !progressed {
                return;
            }
        }
    }

    fn answer(&mut self, event: &SessionEvent) {
        match event {
            SessionEvent::Connect(_) => {
                if let Some(size) = self.policy.out_chunk_size {
                    self.server.set_out_chunk_size(size);
                }
                match self.policy.reject_connect {
                    Some(description) => self.server.reject_connect(description),
                    None => self.server.accept_connect(),
                }
            }
            SessionEvent::Publish(request) => match self.policy.reject_publish {
                Some((code, description)) => {
                    self.server
                        .reject_publish(request.stream_id, code, description)
                }
                None => self.server.accept_publish(request.stream_id),
            },
            SessionEvent::Play(request) => match self.policy.reject_play {
                Some((code, description)) => {
                    self.server
                        .reject_play(request.stream_id, code, description)
                }
                None => self.server.accept_play(request.stream_id),
            },
            _ => {}
        }
    }

    fn take_client_events(&mut self) -> Vec<ClientEvent> {
        std::mem::take(&mut self.client_events)
    }

    fn take_server_events(&mut self) -> Vec<SessionEvent> {
        std::mem::take(&mut self.server_events)
    }
}

fn publisher() -> ClientConfig {
    ClientConfig {
        random_seed: 7,
        ..ClientConfig::publish("rtmp://127.0.0.1:1935/live", "live", "stream?k=v")
    }
}

fn player() -> ClientConfig {
    ClientConfig {
        random_seed: 9,
        ..ClientConfig::play("rtmp://127.0.0.1:1935/live", "live", "stream")
    }
}

fn command_of(message: &RtmpMessage) -> Command {
    match Message::decode(message.header.type_id, &message.payload).unwrap() {
        Message::Command { command, .. } => command,
        other => panic!("expected a command, got {other:?}"),
    }
}

/// (csid, type id, message stream, command name or "", transaction id or -1).
fn shape(message: &RtmpMessage) -> (u32, u8, u32, String, f64) {
    let (name, txn) = if message.header.type_id == 20 {
        let command = command_of(message);
        (command.name, command.transaction_id)
    } else {
        (String::new(), -1.0)
    };
    (
        message.csid,
        message.header.type_id,
        message.header.stream_id,
        name,
        txn,
    )
}

fn shapes(messages: &[RtmpMessage]) -> Vec<(u32, u8, u32, String, f64)> {
    messages.iter().map(shape).collect()
}

fn s(csid: u32, type_id: u8, stream: u32, name: &str, txn: f64) -> (u32, u8, u32, String, f64) {
    (csid, type_id, stream, name.to_owned(), txn)
}

fn status_codes(events: &[ClientEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match event {
            ClientEvent::Status(status) => Some(status.code.clone()),
            _ => None,
        })
        .collect()
}

fn media_of(events: &[ClientEvent]) -> Vec<(MediaKind, u32, Vec<u8>)> {
    events
        .iter()
        .filter_map(|event| match event {
            ClientEvent::Media(media) => {
                Some((media.kind, media.timestamp, media.payload.to_vec()))
            }
            _ => None,
        })
        .collect()
}

/// (kind, timestamp, length, FNV-1a of the payload): failures print short.
type Digest = (MediaKind, u32, usize, u64);

fn digest(media: &[(MediaKind, u32, Vec<u8>)]) -> Vec<Digest> {
    media
        .iter()
        .map(|(kind, ts, payload)| {
            let hash = payload.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
                (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
            });
            (*kind, *ts, payload.len(), hash)
        })
        .collect()
}

/// Timestamps that cross into and beyond the extended range, then wrap.
fn media_plan() -> Vec<(MediaKind, u32, Vec<u8>)> {
    let mut plan = Vec::new();
    let timestamps = [
        0u32,
        23,
        40,
        0x00FF_FFFE,
        0x00FF_FFFF,
        0x0100_0000,
        0x0100_0028,
        0x7FFF_FFFF,
        0xFFFF_FFF0,
        0xFFFF_FFFF,
    ];
    for (i, &ts) in timestamps.iter().enumerate() {
        plan.push((MediaKind::Audio, ts, vec![0xAF, 0x01, i as u8, 3, 4]));
        let size = match i % 3 {
            0 => 150_000,
            1 => 4096,
            _ => 60_001,
        };
        let mut video = vec![0x27u8; size];
        video[0] = if i % 3 == 0 { 0x17 } else { 0x27 };
        video[size - 1] = i as u8;
        plan.push((MediaKind::Video, ts, video));
    }
    plan
}

#[test]
fn publish_follows_ffmpeg_and_the_server_sees_exact_media() {
    for (handshake, chunk_size, policy_size, expected_out) in [
        // ffmpeg against SRS: the server's 60000 is echoed and adopted.
        (
            HandshakeKind::Complex,
            OutChunkSize::EchoServer,
            None,
            60000,
        ),
        (
            HandshakeKind::Simple,
            OutChunkSize::EchoServer,
            Some(128),
            128,
        ),
        (
            HandshakeKind::Simple,
            OutChunkSize::EchoServer,
            Some(4096),
            4096,
        ),
        // OBS style: announced before connect, whatever the server uses.
        (
            HandshakeKind::Complex,
            OutChunkSize::Fixed(4096),
            None,
            4096,
        ),
    ] {
        let config = ClientConfig {
            handshake,
            chunk_size,
            ..publisher()
        };
        let policy = Policy {
            out_chunk_size: policy_size,
            ..Policy::default()
        };
        let mut pair = Pair::new(config, SessionConfig::default(), policy);
        pair.pump();

        assert_eq!(pair.server.handshake_kind(), Some(handshake));
        if handshake == HandshakeKind::Complex {
            assert_eq!(pair.client.server_signature_valid(), Some(true));
        }
        assert_eq!(pair.client.state(), ClientState::Publishing);
        assert_eq!(pair.client.stream_id(), Some(1));
        assert_eq!(pair.client.out_chunk_size(), expected_out);
        assert_eq!(pair.server.in_chunk_size(), expected_out);

        let events = pair.take_client_events();
        assert_eq!(events[0], ClientEvent::Connected);
        assert_eq!(status_codes(&events), vec!["NetStream.Publish.Start"]);
        assert_eq!(
            events.last(),
            Some(&ClientEvent::Publishing { stream_id: 1 })
        );

        let server_events = pair.take_server_events();
        let SessionEvent::Connect(connect) = &server_events[0] else {
            panic!("expected Connect, got {server_events:?}");
        };
        assert_eq!(
            (
                connect.app.as_str(),
                connect.tc_url.as_str(),
                connect.flash_ver.as_str()
            ),
            (
                "live",
                "rtmp://127.0.0.1:1935/live",
                "FMLE/3.0 (compatible; Lavf61.7.100)"
            )
        );
        let SessionEvent::Publish(publish) = &server_events[1] else {
            panic!("expected Publish, got {server_events:?}");
        };
        assert_eq!(
            (
                publish.stream_id,
                publish.stream_name.as_str(),
                publish.publish_type.as_str()
            ),
            (1, "stream?k=v", "live")
        );

        // ffmpeg's conversation, byte for byte where it matters.
        let sent = pair.spy.take();
        let mut expected = Vec::new();
        if chunk_size == OutChunkSize::Fixed(4096) {
            expected.push(s(2, 1, 0, "", -1.0));
        }
        expected.push(s(3, 20, 0, "connect", 1.0));
        if chunk_size == OutChunkSize::EchoServer {
            expected.push(s(2, 1, 0, "", -1.0));
        }
        expected.extend([
            s(3, 20, 0, "releaseStream", 2.0),
            s(3, 20, 0, "FCPublish", 3.0),
            s(3, 20, 0, "createStream", 4.0),
            s(3, 20, 0, "_checkbw", 5.0),
            s(8, 20, 1, "publish", 6.0),
        ]);
        assert_eq!(shapes(&sent), expected);
        let set_chunk_size = sent.iter().find(|m| m.header.type_id == 1).unwrap();
        assert_eq!(&set_chunk_size.payload[..], &expected_out.to_be_bytes());
        for message in &sent {
            if message.header.type_id != 20 {
                continue;
            }
            let command = command_of(message);
            match command.name.as_str() {
                "releaseStream" | "FCPublish" => {
                    assert_eq!(command.command_object, Amf0Value::Null);
                    assert_eq!(command.arguments, vec![Amf0Value::from("stream?k=v")]);
                }
                "createStream" | "_checkbw" => {
                    assert_eq!(command.command_object, Amf0Value::Null);
                    assert!(command.arguments.is_empty());
                }
                "publish" => assert_eq!(
                    command.arguments,
                    vec![Amf0Value::from("stream?k=v"), "live".into()]
                ),
                _ => {}
            }
        }

        // Media: what the server hands the hub is exactly what we sent.
        let mut metadata = Vec::new();
        amf0::encode_all(
            &[
                "onMetaData".into(),
                Amf0Value::EcmaArray(vec![("width".into(), 1280.0.into())]),
            ],
            &mut metadata,
        );
        pair.client.send_metadata(&metadata).unwrap();
        let plan = media_plan();
        for (kind, ts, payload) in &plan {
            pair.client.send_media(*kind, *ts, payload).unwrap();
        }
        pair.pump();
        let got: Vec<_> = pair
            .take_server_events()
            .into_iter()
            .map(|event| match event {
                SessionEvent::Media(media) => {
                    assert_eq!(media.stream_id, 1);
                    (media.kind, media.timestamp, media.payload.to_vec())
                }
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        let mut set_data_frame = b"\x02\x00\x0d@setDataFrame".to_vec();
        set_data_frame.extend_from_slice(&metadata);
        assert_eq!(got[0], (MediaKind::Data, 0, set_data_frame.clone()));
        assert_eq!(
            sluice_proto::flv::metadata_body(&Bytes::from(set_data_frame)).as_deref(),
            Some(&metadata[..])
        );
        assert_eq!(digest(&got[1..]), digest(&plan));
        // ffmpeg's channels: metadata and audio on 4, video on 6.
        let channels: Vec<_> = pair
            .spy
            .take()
            .iter()
            .map(|m| (m.csid, m.header.type_id))
            .collect();
        assert_eq!(channels[0], (4, 18));
        assert!(channels[1..].iter().all(|c| *c == (4, 8) || *c == (6, 9)));

        // Shutdown as ffmpeg's rtmp_close.
        pair.client.close_stream();
        pair.pump();
        assert_eq!(pair.client.state(), ClientState::Closed);
        assert_eq!(
            shapes(&pair.spy.take()),
            vec![
                s(3, 20, 0, "FCUnpublish", 7.0),
                s(3, 20, 0, "deleteStream", 8.0)
            ]
        );
        assert_eq!(
            pair.take_server_events(),
            vec![
                SessionEvent::Unpublish { stream_id: 1 },
                SessionEvent::CloseStream { stream_id: 1 }
            ]
        );
        assert_eq!(
            pair.client.send_media(MediaKind::Audio, 0, &[1]),
            Err(SendError::NotPublishing(ClientState::Closed))
        );
    }
}

#[test]
fn play_follows_ffmpeg_and_reaches_playing() {
    let mut pair = Pair::new(player(), SessionConfig::default(), Policy::default());
    pair.pump();
    assert_eq!(pair.client.state(), ClientState::Playing);
    assert_eq!(pair.client.out_chunk_size(), 128, "players keep 128");
    assert_eq!(pair.client.in_chunk_size(), 60000);

    let events = pair.take_client_events();
    assert_eq!(events[0], ClientEvent::Connected);
    assert_eq!(
        status_codes(&events),
        vec!["NetStream.Play.Reset", "NetStream.Play.Start"]
    );
    let playing = events
        .iter()
        .position(|e| *e == ClientEvent::Playing { stream_id: 1 })
        .expect("Playing");
    let ClientEvent::Status(start) = &events[playing - 1] else {
        panic!("Playing follows its onStatus");
    };
    assert_eq!(
        (
            start.stream_id,
            start.level.as_str(),
            start.description.as_str()
        ),
        (1, "status", "Started playing stream.")
    );
    // SRS's |RtmpSampleAccess comes through as data, like every data message.
    let data = media_of(&events);
    assert_eq!(data.len(), 1);
    assert_eq!(
        amf0::decode_all(&data[0].2).unwrap()[0],
        Amf0Value::from("|RtmpSampleAccess")
    );

    let server_events = pair.take_server_events();
    let SessionEvent::Connect(connect) = &server_events[0] else {
        panic!("expected Connect");
    };
    assert_eq!(connect.flash_ver, "LNX 9,0,124,2");
    let SessionEvent::Play(play) = &server_events[1] else {
        panic!("expected Play, got {server_events:?}");
    };
    assert_eq!(
        (play.stream_id, play.stream_name.as_str(), play.start),
        (1, "stream", -2000.0)
    );

    let sent = pair.spy.take();
    assert_eq!(
        shapes(&sent),
        vec![
            s(3, 20, 0, "connect", 1.0),
            s(2, 5, 0, "", -1.0),
            s(3, 20, 0, "createStream", 2.0),
            s(3, 20, 0, "_checkbw", 3.0),
            s(8, 20, 0, "getStreamLength", 4.0),
            s(8, 20, 1, "play", 5.0),
            s(2, 4, 0, "", -1.0),
        ]
    );
    // gen_server_bw echoes the server's window; gen_buffer_time has timestamp 1.
    assert_eq!(&sent[1].payload[..], &2_500_000u32.to_be_bytes());
    assert_eq!(
        command_of(&sent[5]).arguments,
        vec![Amf0Value::from("stream"), (-2000.0).into()]
    );
    assert_eq!(sent[6].header.timestamp, 1);
    assert_eq!(
        Message::decode(4, &sent[6].payload).unwrap(),
        Message::UserControl(UserControlEvent::SetBufferLength {
            stream_id: 1,
            buffer_ms: 3000
        })
    );

    pair.client.close_stream();
    pair.pump();
    assert_eq!(
        shapes(&pair.spy.take()),
        vec![s(3, 20, 0, "deleteStream", 6.0)]
    );
    assert_eq!(
        pair.take_server_events(),
        vec![SessionEvent::CloseStream { stream_id: 1 }]
    );
}

#[test]
fn live_only_play_subscribes_instead_of_asking_the_length() {
    let config = ClientConfig {
        live: LiveMode::Live,
        buffer_length_ms: 100,
        ..player()
    };
    let mut pair = Pair::new(config, SessionConfig::default(), Policy::default());
    pair.pump();
    assert_eq!(pair.client.state(), ClientState::Playing);
    let sent = pair.spy.take();
    assert_eq!(
        shapes(&sent),
        vec![
            s(3, 20, 0, "connect", 1.0),
            s(2, 5, 0, "", -1.0),
            s(3, 20, 0, "createStream", 2.0),
            s(3, 20, 0, "FCSubscribe", 3.0),
            s(3, 20, 0, "_checkbw", 4.0),
            s(8, 20, 1, "play", 5.0),
            s(2, 4, 0, "", -1.0),
        ]
    );
    assert_eq!(
        command_of(&sent[5]).arguments,
        vec![Amf0Value::from("stream"), (-1000.0).into()]
    );
}

#[test]
fn played_media_arrives_in_order_with_absolute_timestamps() {
    let plan = media_plan();
    for chunk_size in [128u32, 4096, 60000] {
        let policy = Policy {
            out_chunk_size: Some(chunk_size),
            ..Policy::default()
        };
        let mut pair = Pair::new(player(), SessionConfig::default(), policy);
        pair.pump();
        assert_eq!(pair.client.in_chunk_size(), chunk_size);
        pair.take_client_events();

        // Half through the session's writer, half the hub's way (shared chunked body).
        for (i, (kind, ts, payload)) in plan.iter().enumerate() {
            let (csid, type_id) = match kind {
                MediaKind::Video => (6, 9),
                _ => (7, 8),
            };
            let header = MessageHeader {
                timestamp: *ts,
                length: payload.len() as u32,
                type_id,
                stream_id: 1,
            };
            if i % 2 == 0 {
                pair.server.send_message(csid, &header, payload);
                pair.pump();
            } else {
                let mut wire = Vec::new();
                write_fmt0_header(&mut wire, csid, &header);
                let extended = (*ts >= 0x00FF_FFFF).then_some(*ts);
                write_chunked_body(&mut wire, payload, chunk_size, csid, extended);
                for piece in pair.rng.fragments(&wire) {
                    pair.client.handle_input(pair.now, piece).unwrap();
                }
            }
        }
        pair.pump();
        let events = pair.take_client_events();
        assert!(
            events.iter().all(|e| matches!(e, ClientEvent::Media(_))),
            "{chunk_size}"
        );
        assert_eq!(
            digest(&media_of(&events)),
            digest(&plan),
            "chunk size {chunk_size}"
        );
    }
}

#[test]
fn rejections_carry_code_and_description() {
    let mut pair = Pair::new(
        player(),
        SessionConfig::default(),
        Policy {
            reject_connect: Some("auth failed"),
            ..Policy::default()
        },
    );
    pair.pump();
    assert_eq!(pair.client.state(), ClientState::Rejected);
    let events = pair.take_client_events();
    assert_eq!(
        events.last(),
        Some(&ClientEvent::Rejected {
            code: "NetConnection.Connect.Rejected".into(),
            description: "auth failed".into()
        })
    );
    assert!(!events.contains(&ClientEvent::Connected));

    let mut pair = Pair::new(
        publisher(),
        SessionConfig::default(),
        Policy {
            reject_publish: Some(("NetStream.Publish.BadName", "Stream is busy")),
            ..Policy::default()
        },
    );
    pair.pump();
    assert_eq!(pair.client.state(), ClientState::Rejected);
    let events = pair.take_client_events();
    // SRS's onFCPublish (sent before the verdict) does not count as a start.
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, ClientEvent::Publishing { .. }))
    );
    assert_eq!(
        events.last(),
        Some(&ClientEvent::Rejected {
            code: "NetStream.Publish.BadName".into(),
            description: "Stream is busy".into()
        })
    );
    assert_eq!(
        pair.client.send_media(MediaKind::Video, 0, &[0x17]),
        Err(SendError::NotPublishing(ClientState::Rejected))
    );

    let mut pair = Pair::new(
        player(),
        SessionConfig::default(),
        Policy {
            reject_play: Some(("NetStream.Play.StreamNotFound", "no such stream")),
            ..Policy::default()
        },
    );
    pair.pump();
    assert_eq!(pair.client.state(), ClientState::Rejected);
    let events = pair.take_client_events();
    assert_eq!(status_codes(&events), vec!["NetStream.Play.StreamNotFound"]);
    assert_eq!(
        events.last(),
        Some(&ClientEvent::Rejected {
            code: "NetStream.Play.StreamNotFound".into(),
            description: "no such stream".into()
        })
    );
}

#[test]
fn pings_are_answered_and_the_window_is_acknowledged() {
    let server_config = SessionConfig {
        window_ack_size: 10_000,
        ..SessionConfig::default()
    };
    let mut pair = Pair::new(player(), server_config, Policy::default());
    pair.pump();
    let sent = pair.spy.take();
    // The window ffmpeg echoes is the server's.
    assert_eq!(&sent[1].payload[..], &10_000u32.to_be_bytes());

    pair.server
        .send_user_control(UserControlEvent::PingRequest { timestamp: 777 });
    pair.pump();
    let replies: Vec<_> = pair
        .spy
        .take()
        .iter()
        .map(|m| Message::decode(m.header.type_id, &m.payload).unwrap())
        .collect();
    assert_eq!(
        replies,
        vec![Message::UserControl(UserControlEvent::PingResponse {
            timestamp: 777
        })]
    );

    // Every half window (5000 bytes) of input earns an acknowledgement of the byte count.
    let header = MessageHeader {
        timestamp: 0,
        length: 0,
        type_id: 9,
        stream_id: 1,
    };
    pair.server.send_message(6, &header, &[0x27; 6000]);
    pair.pump();
    let acks: Vec<_> = pair
        .spy
        .take()
        .iter()
        .filter_map(|m| match Message::decode(m.header.type_id, &m.payload) {
            Ok(Message::Acknowledgement { sequence_number }) => Some(sequence_number),
            _ => None,
        })
        .collect();
    assert!(!acks.is_empty());
    assert!(
        acks.windows(2).all(|pair| pair[1] - pair[0] >= 5000),
        "{acks:?}"
    );
    let unacknowledged = pair.client.bytes_received() - u64::from(*acks.last().unwrap());
    assert!(unacknowledged < 5000, "{acks:?}");
}

/// Known bytes: ffmpeg's connect for `ffmpeg -f flv rtmp://localhost:1935/live/stream`
/// (as in amf0_known_bytes.rs).
const FFMPEG_PUBLISH_CONNECT: &[u8] = b"\x02\x00\x07connect\
\x00\x3f\xf0\x00\x00\x00\x00\x00\x00\
\x03\
\x00\x03app\x02\x00\x04live\
\x00\x04type\x02\x00\x0anonprivate\
\x00\x08flashVer\x02\x00\x23FMLE/3.0 (compatible; Lavf61.7.100)\
\x00\x05tcUrl\x02\x00\x1artmp://localhost:1935/live\
\x00\x00\x09";

/// ffmpeg's player connect (gen_connect with `is_input`), written out field by field.
fn ffmpeg_play_connect() -> Vec<u8> {
    fn name(out: &mut Vec<u8>, text: &str) {
        out.extend_from_slice(&(text.len() as u16).to_be_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    fn string(out: &mut Vec<u8>, text: &str) {
        out.push(2);
        name(out, text);
    }
    fn number(out: &mut Vec<u8>, value: f64) {
        out.push(0);
        out.extend_from_slice(&value.to_be_bytes());
    }
    let mut out = Vec::new();
    string(&mut out, "connect");
    number(&mut out, 1.0);
    out.push(3);
    name(&mut out, "app");
    string(&mut out, "live");
    name(&mut out, "flashVer");
    string(&mut out, "LNX 9,0,124,2");
    name(&mut out, "tcUrl");
    string(&mut out, "rtmp://localhost:1935/live");
    name(&mut out, "fpad");
    out.extend_from_slice(&[1, 0]);
    name(&mut out, "capabilities");
    number(&mut out, 15.0);
    name(&mut out, "audioCodecs");
    number(&mut out, 4071.0);
    name(&mut out, "videoCodecs");
    number(&mut out, 252.0);
    name(&mut out, "videoFunction");
    number(&mut out, 1.0);
    out.extend_from_slice(&[0, 0, 9]);
    out
}

/// The first message the client sends after the handshake.
fn first_message(config: ClientConfig) -> RtmpMessage {
    let mut script = Scripted::new(config);
    script.take_sent().remove(0)
}

#[test]
fn connect_command_is_ffmpegs_byte_for_byte() {
    let url = RtmpUrl::parse("rtmp://localhost/live/stream").unwrap();
    let publish = first_message(ClientConfig::for_url(ClientMode::Publish, &url));
    assert_eq!((publish.csid, publish.header.stream_id), (3, 0));
    assert_eq!(&publish.payload[..], FFMPEG_PUBLISH_CONNECT);

    let play = first_message(ClientConfig::for_url(ClientMode::Play, &url));
    assert_eq!(&play.payload[..], &ffmpeg_play_connect()[..]);
}

#[test]
fn urls_split_like_ffmpeg() {
    let url = RtmpUrl::parse("rtmp://127.0.0.1/live/stream?token=abc").unwrap();
    assert_eq!(
        url,
        RtmpUrl {
            host: "127.0.0.1".into(),
            port: 1935,
            app: "live".into(),
            stream: "stream?token=abc".into(),
            tc_url: "rtmp://127.0.0.1:1935/live".into(),
        }
    );
    let url = RtmpUrl::parse("RTMP://user:pw@[::1]:19350/app/inst/name").unwrap();
    assert_eq!(
        (
            url.host.as_str(),
            url.port,
            url.app.as_str(),
            url.stream.as_str()
        ),
        ("::1", 19350, "app/inst", "name")
    );
    assert_eq!(url.tc_url, "rtmp://[::1]:19350/app/inst");
    let url = RtmpUrl::parse("rtmp://h/vod/mp4:dir/file.mp4").unwrap();
    assert_eq!(
        (url.app.as_str(), url.stream.as_str()),
        ("vod", "mp4:dir/file.mp4")
    );
    let url = RtmpUrl::parse("rtmp://h/live?vhost=v.example/stream").unwrap();
    assert_eq!(
        (url.app.as_str(), url.stream.as_str()),
        ("live?vhost=v.example", "stream")
    );
    let url = RtmpUrl::parse("rtmp://h:1936/onlystream").unwrap();
    assert_eq!((url.app.as_str(), url.stream.as_str()), ("", "onlystream"));
    assert!(matches!(
        RtmpUrl::parse("http://h/live/s"),
        Err(UrlError::NotRtmp(_))
    ));
    assert!(matches!(
        RtmpUrl::parse("rtmp:///live/s"),
        Err(UrlError::MissingHost(_))
    ));
    assert!(matches!(
        RtmpUrl::parse("rtmp://h:99999/live/s"),
        Err(UrlError::InvalidPort(_))
    ));
}

/// A server made of a handshake and a chunk writer: says whatever the test wants.
struct Scripted {
    client: ClientSession,
    writer: ChunkWriter,
    spy: Spy,
    events: Vec<ClientEvent>,
    now: Instant,
}

impl Scripted {
    fn new(config: ClientConfig) -> Scripted {
        let now = Instant::now();
        let mut client = ClientSession::new(config, now);
        let mut handshake = ServerHandshake::new(5);
        let mut spy = Spy::new(C0C1_AND_C2);
        let Some(ClientOutput::Transmit(c0c1)) = client.poll_output() else {
            panic!("C0C1 first");
        };
        spy.feed(&c0c1);
        assert_eq!(client.state(), ClientState::Handshaking);
        handshake.handle_input(&c0c1).unwrap();
        client
            .handle_input(now, &handshake.poll_transmit().unwrap())
            .unwrap();
        assert_eq!(client.state(), ClientState::Connecting);
        let mut script = Scripted {
            client,
            writer: ChunkWriter::new(128),
            spy,
            events: Vec::new(),
            now,
        };
        script.drain();
        script
    }

    fn drain(&mut self) {
        while let Some(output) = self.client.poll_output() {
            match output {
                ClientOutput::Transmit(bytes) => self.spy.feed(&bytes),
                ClientOutput::Event(event) => self.events.push(event),
            }
        }
    }

    fn take_sent(&mut self) -> Vec<RtmpMessage> {
        self.drain();
        self.spy.take()
    }

    fn take_events(&mut self) -> Vec<ClientEvent> {
        self.drain();
        std::mem::take(&mut self.events)
    }

    fn say(
        &mut self,
        csid: u32,
        type_id: u8,
        stream_id: u32,
        timestamp: u32,
        payload: &[u8],
    ) -> Result<(), ClientError> {
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
        let result = self.client.handle_input(self.now, &wire);
        self.drain();
        result
    }

    fn command(
        &mut self,
        stream_id: u32,
        name: &str,
        txn: f64,
        args: Vec<Amf0Value>,
    ) -> Result<(), ClientError> {
        let mut body = Vec::new();
        Command::new(name, txn, Amf0Value::Null, args).encode(&mut body);
        self.say(3, 20, stream_id, 0, &body)
    }

    fn status(&mut self, stream_id: u32, level: &str, code: &str) -> Result<(), ClientError> {
        let info = Amf0Value::object([
            ("level", Amf0Value::from(level)),
            ("code", code.into()),
            ("description", format!("{code} described").into()),
        ]);
        self.command(stream_id, "onStatus", 0.0, vec![info])
    }

    /// connect and createStream answered; play/publish sent.
    fn up_to_starting(config: ClientConfig) -> Scripted {
        let mut script = Scripted::new(config);
        script.command(0, "_result", 1.0, vec![]).unwrap();
        let create = script
            .take_sent()
            .iter()
            .filter(|m| m.header.type_id == 20)
            .map(command_of)
            .find(|c| c.name == "createStream")
            .unwrap();
        script
            .command(0, "_result", create.transaction_id, vec![1.0.into()])
            .unwrap();
        assert_eq!(script.client.state(), ClientState::Starting);
        script.take_sent();
        script.take_events();
        script
    }
}

#[test]
fn error_replies_reject_by_transaction() {
    // _error for connect (FMS style), carrying the info object.
    let mut script = Scripted::new(player());
    let info = Amf0Value::object([
        ("level", Amf0Value::from("error")),
        ("code", "NetConnection.Connect.Rejected".into()),
        (
            "description",
            "[ AccessManager.Reject ] : authmod=adobe".into(),
        ),
    ]);
    script.command(0, "_error", 1.0, vec![info]).unwrap();
    assert_eq!(script.client.state(), ClientState::Rejected);
    assert_eq!(
        script.take_events(),
        vec![ClientEvent::Rejected {
            code: "NetConnection.Connect.Rejected".into(),
            description: "[ AccessManager.Reject ] : authmod=adobe".into()
        }]
    );

    // _error for releaseStream / FCPublish / _checkbw is ignored (ffmpeg); for createStream
    // it is fatal.
    let mut script = Scripted::new(publisher());
    script.command(0, "_result", 1.0, vec![]).unwrap();
    assert_eq!(script.take_events(), vec![ClientEvent::Connected]);
    for txn in [2.0, 3.0] {
        script.command(0, "_error", txn, vec![]).unwrap();
    }
    // An _error for a transaction we never sent is not ours either.
    script.command(0, "_error", 42.0, vec![]).unwrap();
    assert_eq!(script.client.state(), ClientState::CreatingStream);
    assert!(script.take_events().is_empty());
    script.command(0, "_error", 4.0, vec![]).unwrap();
    assert_eq!(script.client.state(), ClientState::Rejected);
    assert_eq!(
        script.take_events(),
        vec![ClientEvent::Rejected {
            code: String::new(),
            description: String::new()
        }]
    );
    // A late _result for createStream changes nothing.
    script.take_sent();
    script.command(0, "_result", 4.0, vec![1.0.into()]).unwrap();
    assert_eq!(script.client.state(), ClientState::Rejected);
    assert!(script.take_sent().is_empty());
}

#[test]
fn server_ending_a_play_stops_it() {
    for code in ["NetStream.Play.Stop", "NetStream.Play.UnpublishNotify"] {
        let mut script = Scripted::up_to_starting(player());
        script.status(1, "status", "NetStream.Play.Start").unwrap();
        assert_eq!(script.client.state(), ClientState::Playing);
        script.status(1, "status", code).unwrap();
        assert_eq!(script.client.state(), ClientState::Stopped);
        let events = script.take_events();
        assert_eq!(
            events.last(),
            Some(&ClientEvent::Stopped {
                code: code.into(),
                description: format!("{code} described")
            })
        );
        // An error afterwards is only a status.
        script.status(1, "error", "NetStream.Play.Failed").unwrap();
        assert_eq!(script.client.state(), ClientState::Stopped);
        assert_eq!(
            status_codes(&script.take_events()),
            vec!["NetStream.Play.Failed"]
        );
    }
}

#[test]
fn error_status_after_start_rejects_and_repeats_are_ignored() {
    let mut script = Scripted::up_to_starting(publisher());
    script
        .status(1, "status", "NetStream.Publish.Start")
        .unwrap();
    script
        .status(1, "status", "NetStream.Publish.Start")
        .unwrap();
    let events = script.take_events();
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, ClientEvent::Publishing { .. }))
            .count(),
        1
    );
    script
        .status(1, "error", "NetStream.Publish.Denied")
        .unwrap();
    script
        .status(1, "error", "NetStream.Publish.Denied")
        .unwrap();
    let rejected = script
        .take_events()
        .into_iter()
        .filter(|e| matches!(e, ClientEvent::Rejected { .. }))
        .count();
    assert_eq!(rejected, 1);
    // No FCUnpublish once rejected; deleteStream still, as ffmpeg's rtmp_close. (connect 1,
    // releaseStream 2, FCPublish 3, createStream 4, publish 5: this server sent no onBWDone.)
    script.client.close_stream();
    assert_eq!(
        shapes(&script.take_sent()),
        vec![s(3, 20, 0, "deleteStream", 6.0)]
    );
}

#[test]
fn aggregates_and_amf3_data_become_media() {
    let mut script = Scripted::up_to_starting(player());
    script.status(1, "status", "NetStream.Play.Start").unwrap();
    script.take_events();

    let mut payload = Vec::new();
    for (type_id, ts, data) in [
        (9u8, 0x0100_0000u32, vec![0x17u8, 1, 2]),
        (8, 0x0100_0014, vec![0xAF, 1]),
        (18, 0x0100_0014, vec![2, 0, 1, b'x']),
        (9, 0x0100_0020, vec![]),
        (99, 0x0100_0020, vec![1]),
    ] {
        payload.push(type_id);
        payload.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
        payload.extend_from_slice(&ts.to_be_bytes()[1..]);
        payload.push((ts >> 24) as u8);
        payload.extend_from_slice(&[0, 0, 0]);
        payload.extend_from_slice(&data);
        payload.extend_from_slice(&(11 + data.len() as u32).to_be_bytes());
    }
    script.say(6, 22, 1, 1000, &payload).unwrap();
    // AMF3 data with its format byte.
    script.say(5, 15, 1, 1040, b"\x00\x02\x00\x01y").unwrap();
    assert_eq!(
        media_of(&script.take_events()),
        vec![
            (MediaKind::Video, 1000, vec![0x17, 1, 2]),
            (MediaKind::Audio, 1020, vec![0xAF, 1]),
            (MediaKind::Data, 1020, vec![2, 0, 1, b'x']),
            (MediaKind::Data, 1040, b"\x02\x00\x01y".to_vec()),
        ]
    );

    // A truncated aggregate: the complete part is delivered, then the error.
    payload.truncate(20);
    let error = script.say(6, 22, 1, 2000, &payload).unwrap_err();
    assert!(
        matches!(
            error,
            ClientError::Message {
                type_id: 22,
                source: MessageError::AggregateTruncated { offset: 18 }
            }
        ),
        "{error}"
    );
    assert_eq!(
        media_of(&script.take_events()),
        vec![(MediaKind::Video, 2000, vec![0x17, 1, 2])]
    );
    // Sticky.
    assert_eq!(script.client.handle_input(script.now, &[]), Err(error));
}

#[test]
fn players_do_not_echo_chunk_size_and_publishers_do() {
    let mut script = Scripted::new(player());
    script.take_sent();
    script.say(2, 1, 0, 0, &4096u32.to_be_bytes()).unwrap();
    assert!(script.take_sent().is_empty());
    assert_eq!(script.client.in_chunk_size(), 4096);
    assert_eq!(script.client.out_chunk_size(), 128);

    let mut script = Scripted::new(publisher());
    script.take_sent();
    script.say(2, 1, 0, 0, &4096u32.to_be_bytes()).unwrap();
    let sent = script.take_sent();
    assert_eq!(shapes(&sent), vec![s(2, 1, 0, "", -1.0)]);
    assert_eq!(&sent[0].payload[..], &4096u32.to_be_bytes());
    assert_eq!(script.client.out_chunk_size(), 4096);
}

#[test]
fn malformed_server_input_is_an_error_not_a_panic() {
    // createStream's _result without an id.
    let mut script = Scripted::new(publisher());
    script.command(0, "_result", 1.0, vec![]).unwrap();
    assert_eq!(
        script.command(0, "_result", 4.0, vec![Amf0Value::Null]),
        Err(ClientError::CreateStreamWithoutId)
    );
    let mut script = Scripted::new(publisher());
    script.command(0, "_result", 1.0, vec![]).unwrap();
    assert_eq!(
        script.command(0, "_result", 4.0, vec![(-1.0).into()]),
        Err(ClientError::CreateStreamWithoutId)
    );

    // Broken AMF inside a command.
    let mut script = Scripted::new(player());
    let error = script
        .say(3, 20, 0, 0, b"\x02\x00\x09onStatus")
        .unwrap_err();
    assert!(
        matches!(error, ClientError::Message { type_id: 20, .. }),
        "{error}"
    );

    // A server speaking another version.
    let mut client = ClientSession::new(player(), Instant::now());
    assert!(matches!(
        client.handle_input(Instant::now(), &[6]),
        Err(ClientError::Handshake(_))
    ));

    // A truncated WindowAckSize; a malformed StreamBegin is tolerated.
    let mut script = Scripted::new(player());
    script.say(2, 4, 0, 0, &[0, 0, 1]).unwrap();
    assert!(matches!(
        script.say(2, 5, 0, 0, &[1, 2]),
        Err(ClientError::Message { type_id: 5, .. })
    ));

    // The chunk stream's own limits.
    let mut script = Scripted::new(ClientConfig {
        limits: sluice_proto::rtmp::ChunkReaderConfig {
            max_message_len: 1000,
            ..Default::default()
        },
        ..player()
    });
    assert!(matches!(
        script.say(6, 9, 1, 0, &[0u8; 2000]),
        Err(ClientError::Chunk(_))
    ));
}

#[test]
fn sending_needs_a_published_stream_and_a_24_bit_length() {
    let mut script = Scripted::new(publisher());
    assert_eq!(
        script.client.send_metadata(b"x"),
        Err(SendError::NotPublishing(ClientState::Connecting))
    );
    let mut script = Scripted::up_to_starting(publisher());
    script
        .status(1, "status", "NetStream.Publish.Start")
        .unwrap();
    assert_eq!(
        script
            .client
            .send_media(MediaKind::Video, 0, &vec![0; 1 << 24]),
        Err(SendError::TooLong(1 << 24))
    );
    script
        .client
        .send_media(MediaKind::Video, 0, &[0x17])
        .unwrap();
    let sent = script.take_sent();
    assert_eq!((sent[0].csid, sent[0].header.stream_id), (6, 1));
}

#[test]
fn session_stays_small() {
    let size = std::mem::size_of::<ClientSession>();
    println!("size_of::<ClientSession>() = {size}");
    assert!(size <= 640, "ClientSession grew to {size} bytes");
    assert!(std::mem::size_of::<ClientEvent>() <= 56);
}

#[test]
fn closing_during_the_handshake_sends_no_connect() {
    let now = Instant::now();
    let mut client = ClientSession::new(player(), now);
    let Some(ClientOutput::Transmit(c0c1)) = client.poll_output() else {
        panic!("C0C1 first");
    };
    client.close_stream();
    assert_eq!(client.state(), ClientState::Closed);
    assert!(client.poll_output().is_none());
    let mut handshake = ServerHandshake::new(1);
    handshake.handle_input(&c0c1).unwrap();
    client
        .handle_input(now, &handshake.poll_transmit().unwrap())
        .unwrap();
    let Some(ClientOutput::Transmit(c2)) = client.poll_output() else {
        panic!("C2 still completes the handshake");
    };
    assert_eq!(c2.len(), 1536, "and nothing after it");
    assert!(client.poll_output().is_none());
    assert_eq!(client.state(), ClientState::Closed);
}
