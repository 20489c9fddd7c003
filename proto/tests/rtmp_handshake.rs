//! The RTMP handshake against known bytes: an ffmpeg-layout complex C1 whose digest and S2 key
//! were computed independently (Python's hmac), the simple fallback, fragmenting, and garbage.

use hmac::{Hmac, Mac};
use proptest::prelude::*;
use sha2::Sha256;
use sluice_proto::rtmp::{ClientHandshake, HandshakeError, HandshakeKind, ServerHandshake};

/// C1 laid out like ffmpeg's (time 0, version 9.0.124.2, digest-first schema) with filler byte
/// `i` = `(i * 31 + 7) mod 256`, and the digest imprinted at 450 (= 438 % 728 + 12).
fn ffmpeg_style_c0c1() -> Vec<u8> {
    let mut c1: Vec<u8> = (0..1536u32).map(|i| (i * 31 + 7) as u8).collect();
    c1[..4].fill(0);
    c1[4..8].copy_from_slice(&[9, 0, 124, 2]);
    c1[450..482].copy_from_slice(&hex(
        "a3ba710c26a9f95974deaac20ae608dcad6f09c8e61b847f0e495845c49c4724",
    ));
    let mut c0c1 = vec![3];
    c0c1.extend_from_slice(&c1);
    c0c1
}

/// HMAC(68-byte FMS key, C1 digest), from Python.
const S2_KEY: &str = "dc801c2b89cba3157f9508a85b2f79a28b263ea0c5cfab6fd433ecd6bc7566f8";

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

#[test]
fn ffmpeg_complex_c1_gets_complex_answer() {
    let c0c1 = ffmpeg_style_c0c1();
    let mut server = ServerHandshake::new(42);
    assert_eq!(server.handle_input(&c0c1).unwrap(), 1537);
    assert_eq!(server.kind(), Some(HandshakeKind::Complex));
    let reply = server.poll_transmit().unwrap();
    assert_eq!(reply.len(), 3073);
    assert_eq!(reply[0], 3);
    let s1 = &reply[1..1537];
    let s2 = &reply[1537..];

    // S1: version as SRS, digest in the client's (digest-first) schema keyed with the
    // 36-byte public part of the server key.
    assert_eq!(&s1[4..8], &[1, 0, 5, 4]);
    let offset = s1[8..12].iter().map(|&b| usize::from(b)).sum::<usize>() % 728 + 12;
    let expected = hmac(
        b"Genuine Adobe Flash Media Server 001",
        &[&s1[..offset], &s1[offset + 32..]],
    );
    assert_eq!(&s1[offset..offset + 32], &expected[..]);

    // S2: signed with the key derived from C1's digest — what ffmpeg checks before playing.
    assert_eq!(&s2[1504..], &hmac(&hex(S2_KEY), &[&s2[..1504]])[..]);
}

#[test]
fn c1_with_version_but_bad_digest_falls_back_to_simple() {
    let mut c0c1 = ffmpeg_style_c0c1();
    c0c1[1 + 460] ^= 1;
    let mut server = ServerHandshake::new(1);
    server.handle_input(&c0c1).unwrap();
    assert_eq!(server.kind(), Some(HandshakeKind::Simple));
    let reply = server.poll_transmit().unwrap();
    assert_eq!(&reply[1537..], &c0c1[1..], "S2 echoes C1 like SRS");
}

#[test]
fn c1_with_zero_version_is_simple() {
    let mut c0c1 = vec![3u8; 1537];
    c0c1[1..9].fill(0);
    let mut server = ServerHandshake::new(1);
    server.handle_input(&c0c1).unwrap();
    assert_eq!(server.kind(), Some(HandshakeKind::Simple));
}

#[test]
fn one_byte_at_a_time_with_pipelined_chunk_data() {
    let mut client = ClientHandshake::new(HandshakeKind::Complex, 5);
    let mut server = ServerHandshake::new(6);
    let mut wire = client.poll_transmit().unwrap().to_vec();
    // C0C1, byte by byte.
    for byte in wire.drain(..) {
        assert_eq!(server.handle_input(&[byte]).unwrap(), 1);
    }
    let s0s1s2 = server.poll_transmit().unwrap();
    for byte in s0s1s2.iter() {
        assert_eq!(client.handle_input(&[*byte]).unwrap(), 1);
    }
    assert_eq!(client.server_signature_valid(), Some(true));
    let mut c2 = client.poll_transmit().unwrap().to_vec();
    c2.extend_from_slice(&[0x03, 0, 0, 0]);
    let mut consumed = 0;
    for byte in &c2 {
        consumed += server.handle_input(&[*byte]).unwrap();
    }
    assert_eq!(
        consumed, 1536,
        "the first chunk bytes after C2 are left to the caller"
    );
    assert!(server.is_done());
}

#[test]
fn garbage_versions_are_rejected() {
    for version in [0u8, 1, 6, 8, 0x16, 0x47, 0xF3, 0xFF] {
        let mut server = ServerHandshake::new(1);
        let mut garbage = vec![version];
        garbage.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(
            server.handle_input(&garbage),
            Err(HandshakeError::UnsupportedClientVersion(version))
        );
        assert!(server.poll_transmit().is_none());
    }
}

#[test]
fn truncated_handshake_waits_without_answering() {
    let c0c1 = ffmpeg_style_c0c1();
    let mut server = ServerHandshake::new(1);
    assert_eq!(server.handle_input(&c0c1[..1000]).unwrap(), 1000);
    assert!(server.poll_transmit().is_none());
    assert!(!server.is_done());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_fragmenting_completes(
        kind in prop_oneof![Just(HandshakeKind::Simple), Just(HandshakeKind::Complex)],
        seed in any::<u64>(),
        cuts in prop::collection::vec(1usize..700, 1..10),
    ) {
        let mut client = ClientHandshake::new(kind, seed);
        let mut server = ServerHandshake::new(seed ^ 1);
        let c0c1 = client.poll_transmit().unwrap();
        let mut rest = &c0c1[..];
        for cut in cuts.iter().cycle() {
            if rest.is_empty() { break; }
            let (piece, tail) = rest.split_at((*cut).min(rest.len()));
            prop_assert_eq!(server.handle_input(piece).unwrap(), piece.len());
            rest = tail;
        }
        prop_assert_eq!(server.kind(), Some(kind));
        client.handle_input(&server.poll_transmit().unwrap()).unwrap();
        server.handle_input(&client.poll_transmit().unwrap()).unwrap();
        prop_assert!(server.is_done());
        if kind == HandshakeKind::Complex {
            prop_assert_eq!(client.server_signature_valid(), Some(true));
        }
    }

    #[test]
    fn random_c1_never_panics(c1 in prop::collection::vec(any::<u8>(), 1536)) {
        let mut server = ServerHandshake::new(0);
        let mut c0c1 = vec![3];
        c0c1.extend_from_slice(&c1);
        prop_assert_eq!(server.handle_input(&c0c1).unwrap(), 1537);
        prop_assert!(server.kind().is_some());
    }
}
