//! The AMF0 fuzz property, in one place for two runners: the libFuzzer target
//! (`proto/fuzz/fuzz_targets/amf0.rs`, nightly) and the stable smoke test CI runs
//! (`proto/tests/amf0_fuzz_smoke.rs`). Both include this file with `#[path]`, so it may depend
//! on nothing but `sluice_proto` and std.

use sluice_proto::amf0::{self, Amf0Value};

/// Decodes `data` every way the API allows and checks what must hold for any input.
///
/// Panics (the fuzzer's signal) if a decode claims more bytes than it was given, if the first
/// value of `decode_all` differs from `decode`, or if a successful decode does not survive
/// encode → decode.
pub fn check_amf0(data: &[u8]) {
    let single = amf0::decode(data);
    if let Ok((_, consumed)) = &single {
        assert!(
            (1..=data.len()).contains(consumed),
            "decode consumed {consumed} of {} bytes",
            data.len()
        );
    }

    let Ok(values) = amf0::decode_all(data) else {
        return;
    };
    if let Some(first) = values.first() {
        let (single_value, _) = single.expect("decode_all succeeded, so its first value decodes");
        assert_eq!(
            encoding_of(&[single_value]),
            encoding_of(std::slice::from_ref(first))
        );
    }

    // Values are compared through their encodings rather than with `==`: a NaN number is not
    // equal to itself, while its bytes are. Decoding is allowed to normalise (lossy UTF-8,
    // booleans to 0/1, ECMA count hints, a missing end marker, a string that grew past 65535
    // bytes through U+FFFD replacement becoming a long string), so the first re-encoding may
    // differ from the input; from then on the encoding must be a fixed point.
    let canonical = encoding_of(&values);
    let reparsed = amf0::decode_all(&canonical).expect("our own encoding must decode");
    assert_eq!(reparsed.len(), values.len());
    assert_eq!(
        encoding_of(&reparsed),
        canonical,
        "encoding is not stable across a decode"
    );
}

fn encoding_of(values: &[Amf0Value]) -> Vec<u8> {
    let mut out = Vec::new();
    amf0::encode_all(values, &mut out);
    out
}
