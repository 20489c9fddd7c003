//! Message payload codecs: every message kind round trips through encode → decode, and known
//! bytes from the wire decode to what they mean.

use bytes::Bytes;
use proptest::prelude::*;
use sluice_proto::amf0::Amf0Value;
use sluice_proto::rtmp::message::{Command, Message, UserControlEvent, type_id};

fn amf_value() -> impl Strategy<Value = Amf0Value> {
    let leaf = prop_oneof![
        (-1e9f64..1e9).prop_map(Amf0Value::Number),
        any::<bool>().prop_map(Amf0Value::Boolean),
        "[a-zA-Z0-9 ?=&/:.]{0,12}".prop_map(Amf0Value::String),
        Just(Amf0Value::Null),
        Just(Amf0Value::Undefined),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop::collection::vec(("[a-zA-Z]{1,8}", inner), 0..4).prop_map(Amf0Value::Object)
    })
}

fn user_control() -> impl Strategy<Value = UserControlEvent> {
    prop_oneof![
        any::<u32>().prop_map(|stream_id| UserControlEvent::StreamBegin { stream_id }),
        any::<u32>().prop_map(|stream_id| UserControlEvent::StreamEof { stream_id }),
        any::<u32>().prop_map(|stream_id| UserControlEvent::StreamDry { stream_id }),
        (any::<u32>(), any::<u32>()).prop_map(|(stream_id, buffer_ms)| {
            UserControlEvent::SetBufferLength {
                stream_id,
                buffer_ms,
            }
        }),
        any::<u32>().prop_map(|stream_id| UserControlEvent::StreamIsRecorded { stream_id }),
        any::<u32>().prop_map(|timestamp| UserControlEvent::PingRequest { timestamp }),
        any::<u32>().prop_map(|timestamp| UserControlEvent::PingResponse { timestamp }),
        (8u16..100, prop::collection::vec(any::<u8>(), 0..8)).prop_map(|(event_type, data)| {
            UserControlEvent::Other {
                event_type,
                data: Bytes::from(data),
            }
        }),
    ]
}

fn bytes() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from)
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        any::<u32>().prop_map(Message::SetChunkSize),
        any::<u32>().prop_map(|csid| Message::Abort { csid }),
        any::<u32>().prop_map(|sequence_number| Message::Acknowledgement { sequence_number }),
        user_control().prop_map(Message::UserControl),
        any::<u32>().prop_map(Message::WindowAckSize),
        (any::<u32>(), 0u8..3)
            .prop_map(|(window, limit_type)| Message::SetPeerBandwidth { window, limit_type }),
        bytes().prop_map(Message::Audio),
        bytes().prop_map(Message::Video),
        (bytes(), any::<bool>()).prop_map(|(payload, amf3)| {
            // An AMF3 data payload's own first byte 0 would read as the format byte.
            let payload = if amf3 && payload.first() == Some(&0) {
                payload.slice(1..)
            } else {
                payload
            };
            Message::Data { payload, amf3 }
        }),
        (
            "[a-zA-Z_@|]{1,16}",
            0u32..1000,
            amf_value(),
            prop::collection::vec(amf_value(), 0..3),
            any::<bool>(),
        )
            .prop_map(|(name, txn, object, args, amf3)| Message::Command {
                command: Command::new(name, f64::from(txn), object, args),
                amf3,
            }),
        bytes().prop_map(Message::Aggregate),
        (prop_oneof![Just(16u8), Just(19), 23u8..=255], bytes())
            .prop_map(|(type_id, payload)| Message::Other { type_id, payload }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn round_trip(message in message()) {
        let payload = message.to_bytes();
        let decoded = Message::decode(message.type_id(), &payload).unwrap();
        prop_assert_eq!(decoded, message);
    }

    #[test]
    fn decode_is_total(type_id in any::<u8>(), payload in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = Message::decode(type_id, &Bytes::from(payload));
    }
}

#[test]
fn ffmpeg_connect_bytes() {
    // "connect", 1, {app: "live", type: "nonprivate"}: as ffmpeg's ff_amf_write_* emit it.
    let mut wire = Vec::new();
    wire.extend_from_slice(b"\x02\x00\x07connect");
    wire.extend_from_slice(b"\x00\x3f\xf0\x00\x00\x00\x00\x00\x00");
    wire.extend_from_slice(
        b"\x03\x00\x03app\x02\x00\x04live\x00\x04type\x02\x00\x0anonprivate\x00\x00\x09",
    );
    let Message::Command { command, amf3 } =
        Message::decode(type_id::AMF0_COMMAND, &Bytes::from(wire.clone())).unwrap()
    else {
        panic!("not a command");
    };
    assert!(!amf3);
    assert_eq!(command.name, "connect");
    assert_eq!(command.transaction_id, 1.0);
    assert_eq!(
        command
            .command_object
            .get("type")
            .and_then(Amf0Value::as_str),
        Some("nonprivate")
    );
    let mut encoded = Vec::new();
    command.encode(&mut encoded);
    assert_eq!(encoded, wire);
}

#[test]
fn set_peer_bandwidth_and_window_known_bytes() {
    assert_eq!(
        Message::SetPeerBandwidth {
            window: 2_500_000,
            limit_type: 2
        }
        .to_bytes()[..],
        [0x00, 0x26, 0x25, 0xA0, 0x02]
    );
    assert_eq!(
        Message::decode(
            type_id::WINDOW_ACK_SIZE,
            &Bytes::from_static(&[0, 0x26, 0x25, 0xA0, 0xEE])
        )
        .unwrap(),
        Message::WindowAckSize(2_500_000),
        "trailing bytes are tolerated, as SRS does"
    );
}
