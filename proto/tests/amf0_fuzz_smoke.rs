//! Stable stand-in for the AMF0 fuzz target, run by CI on every change: the exact property
//! `cargo +nightly fuzz run amf0` checks (`proto/fuzz/checks/amf0.rs`), over a few thousand
//! generated, mutated and hand-picked inputs. Bounded to well under two seconds.

#[path = "../fuzz/checks/amf0.rs"]
mod amf0_check;

use amf0_check::check_amf0;
use proptest::prelude::*;
use sluice_proto::amf0::Amf0Value;

fn arb_value() -> impl Strategy<Value = Amf0Value> {
    let leaf = prop_oneof![
        any::<f64>().prop_map(Amf0Value::Number),
        Just(Amf0Value::Number(f64::NAN)),
        any::<bool>().prop_map(Amf0Value::Boolean),
        ".{0,8}".prop_map(Amf0Value::String),
        Just(Amf0Value::Null),
        Just(Amf0Value::Undefined),
        any::<u16>().prop_map(Amf0Value::Reference),
        (any::<f64>(), any::<i16>())
            .prop_map(|(millis, timezone)| Amf0Value::Date { millis, timezone }),
        ".{0,8}".prop_map(Amf0Value::LongString),
        Just(Amf0Value::Unsupported),
        ".{0,8}".prop_map(Amf0Value::XmlDocument),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        let properties = prop::collection::vec((".{0,4}", inner.clone()), 0..4);
        prop_oneof![
            properties.clone().prop_map(Amf0Value::Object),
            properties.clone().prop_map(Amf0Value::EcmaArray),
            prop::collection::vec(inner, 0..4).prop_map(Amf0Value::StrictArray),
            (".{0,4}", properties)
                .prop_map(|(class, properties)| Amf0Value::TypedObject { class, properties }),
        ]
    })
}

fn encode_values(values: &[Amf0Value]) -> Vec<u8> {
    let mut bytes = Vec::new();
    sluice_proto::amf0::encode_all(values, &mut bytes);
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn smoke_random_bytes(input in prop::collection::vec(any::<u8>(), 0..128)) {
        check_amf0(&input);
    }

    #[test]
    fn smoke_mutated_encodings(
        values in prop::collection::vec(arb_value(), 1..3),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        cut in any::<prop::sample::Index>(),
        keep_whole in any::<bool>(),
    ) {
        let mut bytes = encode_values(&values);
        for (index, byte) in flips {
            let at = index.index(bytes.len());
            bytes[at] ^= byte;
        }
        if !keep_whole {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        check_amf0(&bytes);
    }
}

/// Every truncation and a spread of single-byte edits of real command and metadata messages.
#[test]
fn smoke_real_messages_truncated_and_mutated() {
    let connect = encode_values(&[
        "connect".into(),
        1.0.into(),
        Amf0Value::object([
            ("app", "live".into()),
            ("type", "nonprivate".into()),
            ("flashVer", "FMLE/3.0 (compatible; Lavf61.7.100)".into()),
            ("tcUrl", "rtmp://localhost:1935/live".into()),
        ]),
    ]);
    let metadata = encode_values(&[
        "@setDataFrame".into(),
        "onMetaData".into(),
        Amf0Value::EcmaArray(vec![
            ("width".into(), 1280.0.into()),
            ("height".into(), 720.0.into()),
            ("stereo".into(), true.into()),
            (
                "encoder".into(),
                "obs-output module (libobs version 30.0.0)".into(),
            ),
            (
                "fourCcList".into(),
                Amf0Value::StrictArray(vec!["hvc1".into(), "av01".into()]),
            ),
        ]),
    ]);
    for message in [connect, metadata] {
        for end in 0..=message.len() {
            check_amf0(&message[..end]);
        }
        for at in 0..message.len() {
            for replacement in [0x00, 0x02, 0x03, 0x09, 0x0a, 0x11, 0x80, 0xff] {
                let mut mutated = message.clone();
                mutated[at] = replacement;
                check_amf0(&mutated);
            }
        }
    }
}

#[test]
fn smoke_hand_picked_edge_cases() {
    let cases: &[&[u8]] = &[
        &[],
        &[0x09],
        &[0x11],
        &[0x03],
        &[0x03, 0x00, 0x00, 0x09, 0x09],
        &[0x0a, 0xff, 0xff, 0xff, 0xff],
        &[0x08, 0xff, 0xff, 0xff, 0xff],
        &[0x02, 0x00, 0x02, 0xff, 0xfe],
        &[0x01, 0x7f],
        &[0x00, 0x7f, 0xf8, 0, 0, 0, 0, 0, 1],
    ];
    for case in cases {
        check_amf0(case);
    }
    // Invalid UTF-8 that triples in size when replaced pushes a string past 65535 bytes.
    let mut growing = vec![0x02, 0xff, 0xff];
    growing.extend(std::iter::repeat_n(0xff, 65_535));
    check_amf0(&growing);
    // The same in a property name, which the encoder must clip.
    let mut growing_name = vec![0x03, 0xff, 0xff];
    growing_name.extend(std::iter::repeat_n(0xff, 65_535));
    growing_name.push(0x05);
    check_amf0(&growing_name);
}
