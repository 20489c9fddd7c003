//! The AMF0 decoder is total: arbitrary, truncated, mutated and hostile input returns a value
//! or an error — never a panic, a stack overflow or an allocation the input cannot justify.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use sluice_proto::amf0::{Amf0Error, Amf0Value, MAX_DEPTH, decode, decode_all};

/// Runs both entry points and checks the only promise that holds for arbitrary input: a
/// success never claims more bytes than it was given.
fn decode_both(input: &[u8]) {
    if let Ok((_, consumed)) = decode(input) {
        assert!(
            consumed >= 1 && consumed <= input.len(),
            "consumed {consumed} of {}",
            input.len()
        );
    }
    let _ = decode_all(input);
}

/// Runs `body` on a thread with a deliberately small stack, so unbounded recursion would
/// overflow here rather than pass by luck on a large main-thread stack.
fn on_small_stack<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(body)
        .expect("spawn test thread")
        .join()
        .expect("decoder thread panicked")
}

/// Bytes biased towards AMF0 markers and small lengths so random input reaches deep paths.
fn arb_amf0ish_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop_oneof![4 => 0x00u8..=0x11, 1 => any::<u8>()], 0..256)
}

/// A small valid encoding to truncate and mutate.
fn arb_encoding() -> impl Strategy<Value = Vec<u8>> {
    let leaf = prop_oneof![
        any::<f64>().prop_map(Amf0Value::Number),
        any::<bool>().prop_map(Amf0Value::Boolean),
        "[a-z]{0,6}".prop_map(Amf0Value::String),
        Just(Amf0Value::Null),
        any::<u16>().prop_map(Amf0Value::Reference),
        "[a-z]{0,6}".prop_map(Amf0Value::LongString),
        (any::<f64>(), any::<i16>())
            .prop_map(|(millis, timezone)| Amf0Value::Date { millis, timezone }),
    ];
    let value = leaf.prop_recursive(4, 32, 4, |inner| {
        let properties = prop::collection::vec(("[a-z]{0,4}", inner.clone()), 0..4);
        prop_oneof![
            properties.clone().prop_map(Amf0Value::Object),
            properties.clone().prop_map(Amf0Value::EcmaArray),
            prop::collection::vec(inner, 0..4).prop_map(Amf0Value::StrictArray),
            ("[A-Z]{0,4}", properties)
                .prop_map(|(class, properties)| Amf0Value::TypedObject { class, properties }),
        ]
    });
    value.prop_map(|value| {
        let mut bytes = Vec::new();
        value.encode(&mut bytes);
        bytes
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn random_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..256)) {
        decode_both(&input);
    }

    #[test]
    fn marker_heavy_bytes_never_panic(input in arb_amf0ish_bytes()) {
        decode_both(&input);
    }

    #[test]
    fn every_truncation_of_a_valid_encoding_is_handled(bytes in arb_encoding()) {
        for end in 0..bytes.len() {
            decode_both(&bytes[..end]);
        }
    }

    #[test]
    fn mutated_encodings_never_panic(
        bytes in arb_encoding(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
    ) {
        let mut bytes = bytes;
        for (index, byte, kind) in edits {
            match kind {
                0 => {
                    let at = index.index(bytes.len());
                    bytes[at] = byte;
                }
                1 => {
                    let at = index.index(bytes.len() + 1);
                    bytes.insert(at, byte);
                }
                _ if bytes.len() > 1 => {
                    let at = index.index(bytes.len());
                    bytes.remove(at);
                }
                _ => {}
            }
        }
        decode_both(&bytes);
    }
}

/// One level of nesting for each container kind: the prefix that opens it and holds one child.
const NESTING_PREFIXES: [(&str, &[u8]); 5] = [
    ("object", &[0x03, 0x00, 0x01, b'k']),
    ("object with empty names", &[0x03, 0x00, 0x00]),
    ("ecma array", &[0x08, 0, 0, 0, 1, 0x00, 0x01, b'k']),
    ("strict array", &[0x0a, 0, 0, 0, 1]),
    ("typed object", &[0x10, 0x00, 0x01, b'C', 0x00, 0x01, b'k']),
];

#[test]
fn depth_bombs_are_too_deep_not_a_stack_overflow() {
    on_small_stack(|| {
        for (kind, prefix) in NESTING_PREFIXES {
            let bomb = prefix.repeat(100_000);
            assert_eq!(decode(&bomb), Err(Amf0Error::TooDeep), "{kind}");
            assert_eq!(decode_all(&bomb), Err(Amf0Error::TooDeep), "{kind}");
        }
        // 100k bare object markers: each 03 03 reads as a 771-byte name, and the next 0x03
        // opens another object, so this nests ~130 deep.
        assert_eq!(decode(&[0x03; 100_000]), Err(Amf0Error::TooDeep));
        // 100k strict-array markers read as absurd counts instead: those fail on length.
        assert_eq!(decode(&[0x0a; 100_000]), Err(Amf0Error::Truncated));
    });
}

#[test]
fn nesting_up_to_max_depth_decodes_and_one_more_is_too_deep() {
    on_small_stack(|| {
        for (kind, prefix) in NESTING_PREFIXES {
            // MAX_DEPTH containers around a null decode (the object ends run to end of input).
            let mut at_limit = prefix.repeat(MAX_DEPTH);
            at_limit.push(0x05);
            let (_, consumed) = decode(&at_limit).unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert_eq!(consumed, at_limit.len(), "{kind}");

            let mut over_limit = prefix.repeat(MAX_DEPTH + 1);
            over_limit.push(0x05);
            assert_eq!(decode(&over_limit), Err(Amf0Error::TooDeep), "{kind}");
        }
    });
}

#[test]
fn deepest_allowed_value_round_trips() {
    // Alternate the kinds so both the property and the element paths count depth.
    let mut value = Amf0Value::Null;
    for level in 0..MAX_DEPTH {
        value = if level % 2 == 0 {
            Amf0Value::StrictArray(vec![value])
        } else {
            Amf0Value::object([("k", value)])
        };
    }
    let mut bytes = Vec::new();
    value.encode(&mut bytes);
    assert_eq!(decode(&bytes), Ok((value.clone(), bytes.len())));

    let mut too_deep = Vec::new();
    Amf0Value::EcmaArray(vec![("k".into(), value)]).encode(&mut too_deep);
    assert_eq!(decode(&too_deep), Err(Amf0Error::TooDeep));
}

fn assert_fast(what: &str, started: Instant) {
    // Generous for a debug build on a loaded CI machine; a decoder that looped over the
    // claimed count or allocated for it would take seconds or abort.
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "{what} took {:?}",
        started.elapsed()
    );
}

#[test]
fn huge_claimed_counts_fail_fast_without_allocating() {
    let started = Instant::now();
    // A strict array claiming 4 billion elements in 5 bytes (and with one element present).
    assert_eq!(
        decode(&[0x0a, 0xff, 0xff, 0xff, 0xff]),
        Err(Amf0Error::Truncated)
    );
    assert_eq!(
        decode(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x05]),
        Err(Amf0Error::Truncated)
    );
    // Long string and XML document claiming 4 GiB.
    assert_eq!(
        decode(&[0x0c, 0xff, 0xff, 0xff, 0xff, b'a']),
        Err(Amf0Error::Truncated)
    );
    assert_eq!(
        decode(&[0x0f, 0xff, 0xff, 0xff, 0xff]),
        Err(Amf0Error::Truncated)
    );
    // An ECMA array whose count hint is 4 billion but which holds one property.
    assert_eq!(
        decode(&[
            0x08, 0xff, 0xff, 0xff, 0xff, 0x00, 0x01, b'a', 0x05, 0x00, 0x00, 0x09
        ]),
        Ok((
            Amf0Value::EcmaArray(vec![("a".into(), Amf0Value::Null)]),
            12
        ))
    );
    assert_fast("huge counts", started);

    // A count the input could just about hold, whose first element is garbage.
    let mut plausible = vec![0x0a, 0x00, 0x01, 0x00, 0x00];
    plausible.extend(std::iter::repeat_n(0xff, 65_536));
    let started = Instant::now();
    assert_eq!(decode(&plausible), Err(Amf0Error::UnknownMarker(0xff)));
    assert_fast("plausible count", started);
}

#[test]
fn a_large_valid_strict_array_decodes() {
    // 1 MiB of nulls: bounded by the input, far past the preallocation cap.
    let count = 1 << 20;
    let mut bytes = vec![0x0a];
    bytes.extend_from_slice(&(count as u32).to_be_bytes());
    bytes.extend(std::iter::repeat_n(0x05, count));
    let (value, consumed) = decode(&bytes).unwrap();
    assert_eq!(consumed, bytes.len());
    assert!(matches!(value, Amf0Value::StrictArray(elements) if elements.len() == count));
}
