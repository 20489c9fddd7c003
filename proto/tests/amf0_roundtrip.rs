//! AMF0 round-trip properties: any value we can build encodes to bytes that decode back to the
//! same value, consuming exactly those bytes.

use proptest::prelude::*;
use sluice_proto::amf0::{Amf0Value, decode, decode_all, encode_all};

/// Numbers from every class, NaN payloads included: the wire carries raw IEEE-754 bits, so the
/// round trip must preserve them exactly.
fn arb_number() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        any::<u64>().prop_map(f64::from_bits),
        Just(f64::NAN),
        Just(-0.0),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
    ]
}

/// Short valid UTF-8, from plain ASCII names to arbitrary code points.
fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-zA-Z0-9@_.:/]{0,16}", ".{0,12}"]
}

fn arb_properties(
    value: impl Strategy<Value = Amf0Value>,
) -> impl Strategy<Value = Vec<(String, Amf0Value)>> {
    prop::collection::vec((arb_text(), value), 0..6)
}

fn arb_value() -> impl Strategy<Value = Amf0Value> {
    let leaf = prop_oneof![
        arb_number().prop_map(Amf0Value::Number),
        any::<bool>().prop_map(Amf0Value::Boolean),
        arb_text().prop_map(Amf0Value::String),
        Just(Amf0Value::Null),
        Just(Amf0Value::Undefined),
        any::<u16>().prop_map(Amf0Value::Reference),
        (arb_number(), any::<i16>())
            .prop_map(|(millis, timezone)| Amf0Value::Date { millis, timezone }),
        arb_text().prop_map(Amf0Value::LongString),
        Just(Amf0Value::Unsupported),
        arb_text().prop_map(Amf0Value::XmlDocument),
    ];
    // Depth 6 is far inside MAX_DEPTH; deeper nesting is covered by the totality tests.
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            arb_properties(inner.clone()).prop_map(Amf0Value::Object),
            arb_properties(inner.clone()).prop_map(Amf0Value::EcmaArray),
            prop::collection::vec(inner.clone(), 0..6).prop_map(Amf0Value::StrictArray),
            (arb_text(), arb_properties(inner))
                .prop_map(|(class, properties)| Amf0Value::TypedObject { class, properties }),
        ]
    })
}

/// Structural equality where numbers compare by bits, so NaN equals the same NaN.
fn same_value(left: &Amf0Value, right: &Amf0Value) -> bool {
    use Amf0Value as V;
    match (left, right) {
        (V::Number(left), V::Number(right)) => left.to_bits() == right.to_bits(),
        (
            V::Date {
                millis: left_millis,
                timezone: left_zone,
            },
            V::Date {
                millis: right_millis,
                timezone: right_zone,
            },
        ) => left_millis.to_bits() == right_millis.to_bits() && left_zone == right_zone,
        (V::Object(left), V::Object(right)) | (V::EcmaArray(left), V::EcmaArray(right)) => {
            same_properties(left, right)
        }
        (V::StrictArray(left), V::StrictArray(right)) => {
            left.len() == right.len() && left.iter().zip(right).all(|(l, r)| same_value(l, r))
        }
        (
            V::TypedObject {
                class: left_class,
                properties: left_properties,
            },
            V::TypedObject {
                class: right_class,
                properties: right_properties,
            },
        ) => left_class == right_class && same_properties(left_properties, right_properties),
        _ => left == right,
    }
}

fn same_properties(left: &[(String, Amf0Value)], right: &[(String, Amf0Value)]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .all(|((left_name, left_value), (right_name, right_value))| {
                left_name == right_name && same_value(left_value, right_value)
            })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn value_round_trips(value in arb_value()) {
        let mut bytes = Vec::new();
        value.encode(&mut bytes);
        let (decoded, consumed) = decode(&bytes).expect("our own encoding must decode");
        prop_assert_eq!(consumed, bytes.len());
        prop_assert!(same_value(&decoded, &value), "decoded {:?}\nexpected {:?}", decoded, value);
    }

    #[test]
    fn value_sequence_round_trips(values in prop::collection::vec(arb_value(), 0..5)) {
        let mut bytes = Vec::new();
        encode_all(&values, &mut bytes);
        let decoded = decode_all(&bytes).expect("our own encoding must decode");
        prop_assert_eq!(decoded.len(), values.len());
        for (decoded, value) in decoded.iter().zip(&values) {
            prop_assert!(same_value(decoded, value), "decoded {:?}\nexpected {:?}", decoded, value);
        }
    }

    #[test]
    fn decode_stops_at_the_end_of_the_first_value(first in arb_value(), second in arb_value()) {
        let mut bytes = Vec::new();
        first.encode(&mut bytes);
        let first_len = bytes.len();
        second.encode(&mut bytes);
        let (decoded, consumed) = decode(&bytes).expect("our own encoding must decode");
        prop_assert_eq!(consumed, first_len);
        prop_assert!(same_value(&decoded, &first));
    }
}

#[test]
fn nan_payload_survives_the_round_trip() {
    let signalling_nan = f64::from_bits(0x7ff0_0000_0000_0001);
    let mut bytes = Vec::new();
    Amf0Value::Number(signalling_nan).encode(&mut bytes);
    let (decoded, _) = decode(&bytes).unwrap();
    assert_eq!(
        decoded.as_f64().map(f64::to_bits),
        Some(signalling_nan.to_bits())
    );
}
