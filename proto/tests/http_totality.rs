//! Every HTTP parser is total and bounded: the request-head parser, Range and path decoding,
//! the chunked decoder and the WebSocket frame decoder take arbitrary and mutated input
//! without panicking, never claim more bytes than they were given, and respect their limits.

use proptest::prelude::*;
use sluice_proto::http::{
    ByteRange, ChunkedDecoder, DecodeStep, FrameDecoder, HttpError, Limits, RequestHead, WsConfig,
    WsUpgrade, decode_path, query_param,
};

const SAMPLE: &[u8] = b"GET /live/a.flv?x=1 HTTP/1.1\r\nHost: h\r\nRange: bytes=0-\r\n\
    Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\nIf-None-Match: W/\"a\", \"b\"\r\nTransfer-Encoding: chunked\r\n\r\n";

fn exercise_head(data: &[u8], limits: &Limits) {
    match RequestHead::parse(data, limits) {
        Ok(Some((head, consumed))) => {
            assert!(consumed <= data.len() && consumed <= limits.max_head_size);
            assert!(head.headers.len() <= limits.max_headers);
            assert!(head.target.len() <= limits.max_uri_len);
            let _ = head.keep_alive();
            let _ = head.range(1000);
            let _ = head.range(0);
            let _ = head.if_none_match("\"b\"");
            let _ = head.expectation();
            let _ = head.body();
            let _ = WsUpgrade::from_request(&head);
            if let Ok(decoded) = decode_path(head.path) {
                assert!(!decoded.path.contains('\0'));
            }
            if let Some(query) = head.query {
                let _ = query_param(query, "x");
            }
        }
        Ok(None) => assert!(data.len() < limits.max_head_size),
        Err(error) => assert!(matches!(error.status(), 400 | 414 | 431 | 505)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn random_heads(data in prop::collection::vec(any::<u8>(), 0..400)) {
        exercise_head(&data, &Limits::default());
        exercise_head(&data, &Limits { max_head_size: 64, max_headers: 2, max_uri_len: 16 });
    }

    #[test]
    fn mutated_heads(
        edits in prop::collection::vec((any::<prop::sample::Index>(), prop_oneof![any::<u8>(), Just(b'\n'), Just(b':'), Just(b' ')]), 0..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut data = SAMPLE.to_vec();
        for (index, byte) in &edits {
            let position = index.index(data.len());
            data[position] = *byte;
        }
        data.truncate(cut.index(data.len() + 1));
        exercise_head(&data, &Limits::default());
        exercise_head(&data, &Limits { max_head_size: 100, max_headers: 3, max_uri_len: 10 });
    }

    #[test]
    fn ranges_and_paths(value in "[ -~]{0,40}", len in any::<u64>()) {
        if let Ok(Some(range)) = ByteRange::parse(value.as_bytes(), len) {
            prop_assert!(range.start <= range.end && range.end < len);
        }
        let _ = decode_path(&value);
        let _ = query_param(&value, "a");
    }

    #[test]
    fn chunked_decoder(data in prop::collection::vec(prop_oneof![any::<u8>(), Just(b'\r'), Just(b'\n'), Just(b'0'), Just(b'5')], 0..300)) {
        let mut decoder = ChunkedDecoder::new();
        let mut body = Vec::new();
        if let Ok(consumed) = decoder.decode(&data, &mut body) {
            prop_assert!(consumed <= data.len());
            prop_assert!(body.len() <= data.len());
        }
    }

    #[test]
    fn ws_decoder(data in prop::collection::vec(any::<u8>(), 0..300), masked in any::<bool>()) {
        let mut decoder = FrameDecoder::new(WsConfig { max_message_size: 200, expect_masked: masked });
        let mut rest = &data[..];
        while let Ok(DecodeStep::Consumed { len, .. }) = decoder.decode(rest) {
            prop_assert!(len >= 2 && len <= rest.len());
            rest = &rest[len..];
        }
    }
}

#[test]
fn head_limit_applies_to_incomplete_input() {
    let limits = Limits::default();
    let endless: Vec<u8> = b"GET / HTTP/1.1\r\nX: "
        .iter()
        .copied()
        .chain(std::iter::repeat_n(b'a', 20_000))
        .collect();
    for length in [100, 8191, 8192, 20_000] {
        let result = RequestHead::parse(&endless[..length], &limits);
        if length >= 8192 {
            assert_eq!(result, Err(HttpError::HeadTooLarge(8192)));
        } else {
            assert_eq!(result, Ok(None));
        }
    }
}
