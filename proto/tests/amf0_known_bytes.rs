//! AMF0 against byte sequences written down from the spec and from what real peers send
//! (ffmpeg's `gen_connect` in libavformat/rtmpproto.c, its FLV muxer's `onMetaData`), plus the
//! leniencies SRS has for sloppy encoders.

use sluice_proto::amf0::{self, Amf0Error, Amf0Value, decode, decode_all, encode_all};

fn encode_one(value: &Amf0Value) -> Vec<u8> {
    let mut out = Vec::new();
    value.encode(&mut out);
    out
}

/// Builds AMF0 bytes the way ffmpeg's `ff_amf_write_*` helpers do, independently of the
/// encoder under test.
#[derive(Default)]
struct FfmpegStyleWriter(Vec<u8>);

impl FfmpegStyleWriter {
    fn string(&mut self, text: &str) -> &mut Self {
        self.0.push(0x02);
        self.field_name(text)
    }
    fn number(&mut self, number: f64) -> &mut Self {
        self.0.push(0x00);
        self.0.extend_from_slice(&number.to_bits().to_be_bytes());
        self
    }
    fn bool(&mut self, flag: bool) -> &mut Self {
        self.0.extend_from_slice(&[0x01, flag as u8]);
        self
    }
    fn null(&mut self) -> &mut Self {
        self.0.push(0x05);
        self
    }
    fn object_start(&mut self) -> &mut Self {
        self.0.push(0x03);
        self
    }
    fn ecma_array_start(&mut self, count: u32) -> &mut Self {
        self.0.push(0x08);
        self.0.extend_from_slice(&count.to_be_bytes());
        self
    }
    fn field_name(&mut self, name: &str) -> &mut Self {
        self.0.extend_from_slice(&(name.len() as u16).to_be_bytes());
        self.0.extend_from_slice(name.as_bytes());
        self
    }
    fn object_end(&mut self) -> &mut Self {
        self.0.extend_from_slice(&[0x00, 0x00, 0x09]);
        self
    }
}

/// `ffmpeg -f flv rtmp://localhost:1935/live/stream`: the publisher's `connect` command.
const FFMPEG_PUBLISH_CONNECT: &[u8] = b"\x02\x00\x07connect\
\x00\x3f\xf0\x00\x00\x00\x00\x00\x00\
\x03\
\x00\x03app\x02\x00\x04live\
\x00\x04type\x02\x00\x0anonprivate\
\x00\x08flashVer\x02\x00\x23FMLE/3.0 (compatible; Lavf61.7.100)\
\x00\x05tcUrl\x02\x00\x1artmp://localhost:1935/live\
\x00\x00\x09";

fn ffmpeg_publish_connect_values() -> Vec<Amf0Value> {
    vec![
        "connect".into(),
        1.0.into(),
        Amf0Value::object([
            ("app", "live".into()),
            ("type", "nonprivate".into()),
            ("flashVer", "FMLE/3.0 (compatible; Lavf61.7.100)".into()),
            ("tcUrl", "rtmp://localhost:1935/live".into()),
        ]),
    ]
}

#[test]
fn ffmpeg_publish_connect_decodes() {
    let values = decode_all(FFMPEG_PUBLISH_CONNECT).unwrap();
    assert_eq!(values, ffmpeg_publish_connect_values());

    let command_object = &values[2];
    assert_eq!(values[0].as_str(), Some("connect"));
    assert_eq!(values[1].as_f64(), Some(1.0));
    assert_eq!(
        command_object.get("tcUrl").and_then(Amf0Value::as_str),
        Some("rtmp://localhost:1935/live")
    );
    assert_eq!(command_object.get("swfUrl"), None);
}

#[test]
fn ffmpeg_publish_connect_encodes_byte_exact() {
    let mut out = Vec::new();
    encode_all(&ffmpeg_publish_connect_values(), &mut out);
    assert_eq!(out, FFMPEG_PUBLISH_CONNECT);
}

#[test]
fn ffmpeg_play_connect_decodes() {
    // `ffplay rtmp://...`: the player's connect carries the capability fields.
    let mut bytes = FfmpegStyleWriter::default();
    bytes
        .string("connect")
        .number(1.0)
        .object_start()
        .field_name("app")
        .string("live")
        .field_name("flashVer")
        .string("LNX 9,0,124,2")
        .field_name("tcUrl")
        .string("rtmp://127.0.0.1:1935/live")
        .field_name("fpad")
        .bool(false)
        .field_name("capabilities")
        .number(15.0)
        .field_name("audioCodecs")
        .number(4071.0)
        .field_name("videoCodecs")
        .number(252.0)
        .field_name("videoFunction")
        .number(1.0)
        .object_end();
    let values = decode_all(&bytes.0).unwrap();
    let command_object = Amf0Value::object([
        ("app", "live".into()),
        ("flashVer", "LNX 9,0,124,2".into()),
        ("tcUrl", "rtmp://127.0.0.1:1935/live".into()),
        ("fpad", false.into()),
        ("capabilities", 15.0.into()),
        ("audioCodecs", 4071.0.into()),
        ("videoCodecs", 252.0.into()),
        ("videoFunction", 1.0.into()),
    ]);
    assert_eq!(values, vec!["connect".into(), 1.0.into(), command_object]);
    assert_eq!(
        values[2].get("fpad").and_then(Amf0Value::as_bool),
        Some(false)
    );

    let mut reencoded = Vec::new();
    encode_all(&values, &mut reencoded);
    assert_eq!(reencoded, bytes.0);
}

#[test]
fn ffmpeg_release_stream_with_null_command_object_decodes() {
    let mut bytes = FfmpegStyleWriter::default();
    bytes
        .string("releaseStream")
        .number(2.0)
        .null()
        .string("stream");
    assert_eq!(
        decode_all(&bytes.0).unwrap(),
        vec![
            "releaseStream".into(),
            2.0.into(),
            Amf0Value::Null,
            "stream".into()
        ]
    );
}

fn ffmpeg_on_metadata_bytes(count_hint: u32) -> Vec<u8> {
    let mut bytes = FfmpegStyleWriter::default();
    bytes
        .string("@setDataFrame")
        .string("onMetaData")
        .ecma_array_start(count_hint)
        .field_name("duration")
        .number(0.0)
        .field_name("width")
        .number(1280.0)
        .field_name("height")
        .number(720.0)
        .field_name("videodatarate")
        .number(2500.0)
        .field_name("framerate")
        .number(30.0)
        .field_name("videocodecid")
        .number(7.0)
        .field_name("audiodatarate")
        .number(128.0)
        .field_name("audiosamplerate")
        .number(44100.0)
        .field_name("audiosamplesize")
        .number(16.0)
        .field_name("stereo")
        .bool(true)
        .field_name("audiocodecid")
        .number(10.0)
        .field_name("encoder")
        .string("Lavf61.7.100")
        .field_name("filesize")
        .number(0.0)
        .object_end();
    bytes.0
}

#[test]
fn ffmpeg_set_data_frame_on_metadata_decodes() {
    let bytes = ffmpeg_on_metadata_bytes(13);
    let values = decode_all(&bytes).unwrap();
    assert_eq!(values.len(), 3);
    assert_eq!(values[0].as_str(), Some("@setDataFrame"));
    assert_eq!(values[1].as_str(), Some("onMetaData"));
    let metadata = &values[2];
    assert!(matches!(metadata, Amf0Value::EcmaArray(properties) if properties.len() == 13));
    assert_eq!(
        metadata.get("width").and_then(Amf0Value::as_f64),
        Some(1280.0)
    );
    assert_eq!(
        metadata.get("stereo").and_then(Amf0Value::as_bool),
        Some(true)
    );
    assert_eq!(
        metadata.get("encoder").and_then(Amf0Value::as_str),
        Some("Lavf61.7.100")
    );

    let mut reencoded = Vec::new();
    encode_all(&values, &mut reencoded);
    assert_eq!(reencoded, bytes);
}

#[test]
fn ecma_array_count_is_only_a_hint() {
    // Encoders write 0 or a stale count; the end marker decides, and encode writes the truth.
    let honest = decode_all(&ffmpeg_on_metadata_bytes(13)).unwrap();
    for wrong_count in [0, 1, 12, 14, u32::MAX] {
        let bytes = ffmpeg_on_metadata_bytes(wrong_count);
        assert_eq!(
            decode_all(&bytes).unwrap(),
            honest,
            "count hint {wrong_count}"
        );
    }
    let mut reencoded = Vec::new();
    encode_all(
        &decode_all(&ffmpeg_on_metadata_bytes(0)).unwrap(),
        &mut reencoded,
    );
    assert_eq!(reencoded, ffmpeg_on_metadata_bytes(13));
}

#[test]
fn every_marker_has_its_documented_encoding() {
    let cases: Vec<(Amf0Value, Vec<u8>)> = vec![
        (
            Amf0Value::Number(-2.5),
            [&[0x00][..], &(-2.5f64).to_be_bytes()].concat(),
        ),
        (Amf0Value::Boolean(true), vec![0x01, 0x01]),
        (Amf0Value::Boolean(false), vec![0x01, 0x00]),
        (
            Amf0Value::String("hi".into()),
            vec![0x02, 0x00, 0x02, b'h', b'i'],
        ),
        (Amf0Value::String(String::new()), vec![0x02, 0x00, 0x00]),
        (Amf0Value::Object(vec![]), vec![0x03, 0x00, 0x00, 0x09]),
        (Amf0Value::Null, vec![0x05]),
        (Amf0Value::Undefined, vec![0x06]),
        (Amf0Value::Reference(0x0102), vec![0x07, 0x01, 0x02]),
        (
            Amf0Value::EcmaArray(vec![("k".into(), Amf0Value::Null)]),
            vec![0x08, 0, 0, 0, 1, 0x00, 0x01, b'k', 0x05, 0x00, 0x00, 0x09],
        ),
        (
            Amf0Value::StrictArray(vec![Amf0Value::Null, Amf0Value::Boolean(true)]),
            vec![0x0a, 0, 0, 0, 2, 0x05, 0x01, 0x01],
        ),
        (
            Amf0Value::Date {
                millis: 1.0,
                timezone: -60,
            },
            [&[0x0b][..], &1.0f64.to_be_bytes(), &(-60i16).to_be_bytes()].concat(),
        ),
        (
            Amf0Value::LongString("ab".into()),
            vec![0x0c, 0, 0, 0, 2, b'a', b'b'],
        ),
        (Amf0Value::Unsupported, vec![0x0d]),
        (
            Amf0Value::XmlDocument("<a/>".into()),
            vec![0x0f, 0, 0, 0, 4, b'<', b'a', b'/', b'>'],
        ),
        (
            Amf0Value::TypedObject {
                class: "C".into(),
                properties: vec![("x".into(), Amf0Value::Undefined)],
            },
            vec![
                0x10, 0x00, 0x01, b'C', 0x00, 0x01, b'x', 0x06, 0x00, 0x00, 0x09,
            ],
        ),
    ];
    for (value, bytes) in cases {
        assert_eq!(encode_one(&value), bytes, "encoding {value:?}");
        assert_eq!(
            decode(&bytes),
            Ok((value.clone(), bytes.len())),
            "decoding {value:?}"
        );
    }
}

#[test]
fn any_non_zero_boolean_byte_is_true() {
    for byte in 1..=u8::MAX {
        assert_eq!(decode(&[0x01, byte]), Ok((Amf0Value::Boolean(true), 2)));
    }
    assert_eq!(decode(&[0x01, 0x00]), Ok((Amf0Value::Boolean(false), 2)));
}

#[test]
fn invalid_utf8_is_decoded_lossily() {
    // Latin-1 "café" as some encoders send it, in a string and in a property name.
    let string = [0x02, 0x00, 0x04, b'c', b'a', b'f', 0xe9];
    assert_eq!(
        decode(&string),
        Ok((Amf0Value::String("caf\u{fffd}".into()), 7))
    );

    let object = [0x03, 0x00, 0x02, 0xff, b'k', 0x05, 0x00, 0x00, 0x09];
    assert_eq!(
        decode(&object),
        Ok((Amf0Value::object([("\u{fffd}k", Amf0Value::Null)]), 9))
    );

    let long_string = [0x0c, 0, 0, 0, 2, 0xc3, 0x28];
    assert_eq!(
        decode(&long_string),
        Ok((Amf0Value::LongString("\u{fffd}(".into()), 7))
    );
}

#[test]
fn object_without_end_marker_is_accepted_at_end_of_input() {
    let object = [0x03, 0x00, 0x01, b'a', 0x05];
    assert_eq!(
        decode(&object),
        Ok((Amf0Value::object([("a", Amf0Value::Null)]), 5))
    );

    let nested = [0x03, 0x00, 0x01, b'a', 0x03, 0x00, 0x01, b'b', 0x05];
    let expected = Amf0Value::object([("a", Amf0Value::object([("b", Amf0Value::Null)]))]);
    assert_eq!(decode(&nested), Ok((expected, nested.len())));

    let ecma = [0x08, 0, 0, 0, 1, 0x00, 0x01, b'a', 0x06];
    assert_eq!(
        decode_all(&ecma),
        Ok(vec![Amf0Value::EcmaArray(vec![(
            "a".into(),
            Amf0Value::Undefined
        )])])
    );

    // The publish connect with its final `00 00 09` cut off, as some encoders send it.
    let without_end = &FFMPEG_PUBLISH_CONNECT[..FFMPEG_PUBLISH_CONNECT.len() - 3];
    assert_eq!(
        decode_all(without_end).unwrap(),
        ffmpeg_publish_connect_values()
    );
}

#[test]
fn object_end_marker_cut_short_is_truncated() {
    // `00 00` then the input ends: a property named "" whose value is missing.
    assert_eq!(decode(&[0x03, 0x00, 0x00]), Err(Amf0Error::Truncated));
    assert_eq!(decode(&[0x03, 0x00, 0x00, 0x00]), Err(Amf0Error::Truncated));
    // A name with no value.
    assert_eq!(decode(&[0x03, 0x00, 0x01, b'a']), Err(Amf0Error::Truncated));
}

#[test]
fn empty_property_name_with_a_value_is_a_property() {
    let object = [0x03, 0x00, 0x00, 0x05, 0x00, 0x00, 0x09];
    assert_eq!(
        decode(&object),
        Ok((Amf0Value::object([("", Amf0Value::Null)]), 7))
    );
    assert_eq!(
        encode_one(&Amf0Value::object([("", Amf0Value::Null)])),
        object
    );
}

#[test]
fn long_strings_switch_to_the_long_string_marker() {
    let exactly_max = "a".repeat(65535);
    let encoded = encode_one(&Amf0Value::String(exactly_max.clone()));
    assert_eq!(&encoded[..3], &[0x02, 0xff, 0xff]);
    assert_eq!(
        decode(&encoded),
        Ok((Amf0Value::String(exactly_max), 65538))
    );

    let one_more = "a".repeat(65536);
    let encoded = encode_one(&Amf0Value::String(one_more.clone()));
    assert_eq!(&encoded[..5], &[0x0c, 0x00, 0x01, 0x00, 0x00]);
    assert_eq!(
        decode(&encoded),
        Ok((Amf0Value::LongString(one_more), 65541))
    );
}

#[test]
fn amf3_switch_marker_is_a_clear_error() {
    assert_eq!(decode(&[0x11, 0x02]), Err(Amf0Error::Amf3NotSupported));
    // Inside an object too.
    assert_eq!(
        decode(&[0x03, 0x00, 0x01, b'a', 0x11, 0x01]),
        Err(Amf0Error::Amf3NotSupported)
    );
    assert!(Amf0Error::Amf3NotSupported.to_string().contains("AMF3"));
}

#[test]
fn reserved_unknown_and_stray_markers_are_errors() {
    assert_eq!(decode(&[0x04]), Err(Amf0Error::ReservedMarker(0x04)));
    assert_eq!(decode(&[0x0e]), Err(Amf0Error::ReservedMarker(0x0e)));
    assert_eq!(decode(&[0x12]), Err(Amf0Error::UnknownMarker(0x12)));
    assert_eq!(decode(&[0xff]), Err(Amf0Error::UnknownMarker(0xff)));
    assert_eq!(decode(&[0x09]), Err(Amf0Error::UnexpectedObjectEnd));
    // 0x09 is not a value inside a strict array either.
    assert_eq!(
        decode(&[0x0a, 0, 0, 0, 1, 0x09]),
        Err(Amf0Error::UnexpectedObjectEnd)
    );
    assert_eq!(
        Amf0Error::UnknownMarker(0x12).to_string(),
        "unknown AMF0 type marker 0x12"
    );
}

#[test]
fn truncated_scalars_are_errors() {
    let cases: &[&[u8]] = &[
        &[],
        &[0x00, 0x3f, 0xf0],
        &[0x01],
        &[0x02, 0x00],
        &[0x02, 0x00, 0x05, b'a'],
        &[0x07, 0x01],
        &[0x08, 0x00, 0x00],
        &[0x0a, 0x00, 0x00, 0x00],
        &[0x0b, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        &[0x0c, 0x00, 0x00, 0x00, 0x03, b'a'],
        &[0x0f, 0xff, 0xff, 0xff, 0xff],
        &[0x10, 0x00, 0x02, b'C'],
    ];
    for bytes in cases {
        assert_eq!(
            decode(bytes),
            Err(Amf0Error::Truncated),
            "input {bytes:02x?}"
        );
    }
}

#[test]
fn decode_all_fails_on_a_bad_trailing_value() {
    assert_eq!(
        decode_all(&[0x05, 0x06, 0x02, 0x00]),
        Err(Amf0Error::Truncated)
    );
    assert_eq!(
        decode_all(&[0x05, 0x06]),
        Ok(vec![Amf0Value::Null, Amf0Value::Undefined])
    );
}

#[test]
fn typed_object_round_trips() {
    let value = Amf0Value::TypedObject {
        class: "flex.messaging.messages.RemotingMessage".into(),
        properties: vec![("operation".into(), "ping".into())],
    };
    let bytes = encode_one(&value);
    assert_eq!(decode(&bytes), Ok((value.clone(), bytes.len())));
    assert_eq!(
        value.get("operation").and_then(Amf0Value::as_str),
        Some("ping")
    );
}

#[test]
fn accessors_answer_only_for_their_own_variants() {
    assert_eq!(Amf0Value::LongString("x".into()).as_str(), Some("x"));
    assert_eq!(Amf0Value::XmlDocument("x".into()).as_str(), None);
    assert_eq!(Amf0Value::Number(1.0).as_str(), None);
    assert_eq!(
        Amf0Value::Date {
            millis: 1.0,
            timezone: 0
        }
        .as_f64(),
        None
    );
    assert_eq!(Amf0Value::Number(1.0).as_bool(), None);
    assert_eq!(Amf0Value::StrictArray(vec![Amf0Value::Null]).get("0"), None);
    assert_eq!(Amf0Value::Null.get("a"), None);

    let ecma = Amf0Value::EcmaArray(vec![("dup".into(), 1.0.into()), ("dup".into(), 2.0.into())]);
    assert_eq!(
        ecma.get("dup").and_then(Amf0Value::as_f64),
        Some(2.0),
        "last key wins"
    );
}

#[test]
fn conversions_build_the_obvious_variants() {
    assert_eq!(Amf0Value::from("a"), Amf0Value::String("a".into()));
    assert_eq!(
        Amf0Value::from(String::from("a")),
        Amf0Value::String("a".into())
    );
    assert_eq!(Amf0Value::from(2.0), Amf0Value::Number(2.0));
    assert_eq!(Amf0Value::from(true), Amf0Value::Boolean(true));
    assert_eq!(
        Amf0Value::object([(String::from("a"), Amf0Value::Null)]),
        Amf0Value::Object(vec![("a".into(), Amf0Value::Null)])
    );
    assert_eq!(amf0::MAX_DEPTH, 64);
}
