//! The RTMP handshake: C0+C1 → S0+S1+S2 → C2, in the simple and the complex (digest) variant.
//!
//! Layout of C1/S1 (1536 bytes): time (4) | version (4) | two 764-byte blocks. In the *simple*
//! handshake the rest is random and S2 echoes C1. In the *complex* handshake (Flash Player,
//! ffmpeg, OBS when the version field is non-zero) one block carries a 32-byte HMAC-SHA256
//! digest at an offset derived from the block's own bytes; the other block carries a (DH) key.
//! Which block comes first is the "schema":
//!
//! - [`DigestSchema::KeyFirst`] (SRS `srs_schema0`): key block at 8, digest block at 772;
//!   the digest offset is `sum(C1[772..776]) % 728 + 776`.
//! - [`DigestSchema::DigestFirst`] (SRS `srs_schema1`, what ffmpeg and FMS clients send):
//!   digest block at 8; the offset is `sum(C1[8..12]) % 728 + 12`.
//!
//! The digest is HMAC-SHA256 over the 1504 other bytes, keyed with the 30-byte public part of
//! the Flash Player key for C1 and the 36-byte public part of the Flash Media Server key for S1.
//! S2 is 1504 random bytes followed by HMAC(k, those bytes) where
//! `k = HMAC(full 68-byte server key, C1's digest)`.
//!
//! The server follows SRS: try schema 0, then schema 1; if neither validates, fall back to the
//! simple handshake (S2 = C1) instead of failing, because plenty of clients send a non-zero
//! version with no digest. C2 is never validated (ffmpeg's C2 would fail it, as SRS notes).
//! Our S1's key block is random rather than a Diffie-Hellman public key: the key only matters
//! for RTMPE, which we do not speak, and no plain-RTMP client checks it.

use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

use super::rng::SplitMix64;

/// Size of C1, C2, S1 and S2.
pub const HANDSHAKE_SIZE: usize = 1536;
/// The only version byte (C0/S0) we speak: plain, unencrypted RTMP.
pub const RTMP_VERSION: u8 = 3;

/// "Genuine Adobe Flash Player 001" followed by 32 constant bytes. The first 30 bytes key C1's
/// digest; all 62 derive the key of C2's signature.
const FLASH_PLAYER_KEY: [u8; 62] = *b"Genuine Adobe Flash Player 001\
\xF0\xEE\xC2\x4A\x80\x68\xBE\xE8\x2E\x00\xD0\xD1\x02\x9E\x7E\x57\
\x6E\xEC\x5D\x2D\x29\x80\x6F\xAB\x93\xB8\xE6\x36\xCF\xEB\x31\xAE";
const FLASH_PLAYER_KEY_PUBLIC_LEN: usize = 30;

/// "Genuine Adobe Flash Media Server 001" followed by the same 32 constant bytes. The first 36
/// bytes key S1's digest; all 68 derive the key of S2's signature.
const FLASH_MEDIA_SERVER_KEY: [u8; 68] = *b"Genuine Adobe Flash Media Server 001\
\xF0\xEE\xC2\x4A\x80\x68\xBE\xE8\x2E\x00\xD0\xD1\x02\x9E\x7E\x57\
\x6E\xEC\x5D\x2D\x29\x80\x6F\xAB\x93\xB8\xE6\x36\xCF\xEB\x31\xAE";
const FLASH_MEDIA_SERVER_KEY_PUBLIC_LEN: usize = 36;

const DIGEST_LEN: usize = 32;
/// S1's version field, as SRS sends it. ffmpeg only validates S1 when the first version byte
/// is >= 3, so with this value ffmpeg behaves against us exactly as against SRS.
const SERVER_VERSION: [u8; 4] = [0x01, 0x00, 0x05, 0x04];
/// C1's version field for our complex client handshake (SRS's client value).
const CLIENT_VERSION: [u8; 4] = [0x80, 0x00, 0x07, 0x02];

/// Which handshake a peer got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeKind {
    /// S2 echoes C1; no digests.
    Simple,
    /// C1 carried a valid digest; S1 and S2 carry ours.
    Complex,
}

/// Where the digest block sits in C1/S1 (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestSchema {
    /// SRS schema 0: time, version, key block, digest block.
    KeyFirst,
    /// SRS schema 1: time, version, digest block, key block.
    DigestFirst,
}

impl DigestSchema {
    /// The order SRS tries them in when validating a peer's packet.
    const SRS_ORDER: [DigestSchema; 2] = [DigestSchema::KeyFirst, DigestSchema::DigestFirst];

    /// Offset of the 32-byte digest inside a 1536-byte C1/S1. Always in 12..=1504.
    pub fn digest_offset(self, packet: &[u8; HANDSHAKE_SIZE]) -> usize {
        let block = match self {
            DigestSchema::KeyFirst => 8 + 764,
            DigestSchema::DigestFirst => 8,
        };
        let sum: usize = packet[block..block + 4]
            .iter()
            .map(|&b| usize::from(b))
            .sum();
        block + 4 + sum % 728
    }
}

/// Why a handshake failed.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum HandshakeError {
    #[error(
        "client C0 asks for RTMP version {0:#04x}; only 0x03 (plain RTMP) is supported \
         (0x06 is RTMPE, which is not)"
    )]
    UnsupportedClientVersion(u8),
    #[error("server S0 answers RTMP version {0:#04x}; only 0x03 (plain RTMP) is supported")]
    UnsupportedServerVersion(u8),
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// HMAC over the packet with the 32 digest bytes at `offset` left out.
fn packet_digest(packet: &[u8; HANDSHAKE_SIZE], offset: usize, key: &[u8]) -> [u8; DIGEST_LEN] {
    hmac_sha256(key, &[&packet[..offset], &packet[offset + DIGEST_LEN..]])
}

/// Finds the schema under which `packet` carries a valid digest for `key`, SRS's order first.
fn find_valid_digest(packet: &[u8; HANDSHAKE_SIZE], key: &[u8]) -> Option<(DigestSchema, usize)> {
    DigestSchema::SRS_ORDER.into_iter().find_map(|schema| {
        let offset = schema.digest_offset(packet);
        let expected = packet_digest(packet, offset, key);
        (packet[offset..offset + DIGEST_LEN] == expected).then_some((schema, offset))
    })
}

/// Writes our digest into `packet` under `schema`.
fn imprint_digest(packet: &mut [u8; HANDSHAKE_SIZE], schema: DigestSchema, key: &[u8]) {
    let offset = schema.digest_offset(packet);
    let digest = packet_digest(packet, offset, key);
    packet[offset..offset + DIGEST_LEN].copy_from_slice(&digest);
}

/// Fills `packet` (S2 or C2) with random bytes followed by the signature keyed from
/// `peer_digest`: `HMAC(HMAC(full_key, peer_digest), packet[..1504])`.
fn sign_response(
    packet: &mut [u8; HANDSHAKE_SIZE],
    rng: &mut SplitMix64,
    full_key: &[u8],
    peer_digest: &[u8],
) {
    rng.fill(packet);
    let key = hmac_sha256(full_key, &[peer_digest]);
    let signature_at = HANDSHAKE_SIZE - DIGEST_LEN;
    let signature = hmac_sha256(&key, &[&packet[..signature_at]]);
    packet[signature_at..].copy_from_slice(&signature);
}

/// Whether `response` (S2 or C2) carries the signature derived from `own_digest`.
fn response_signature_valid(
    response: &[u8; HANDSHAKE_SIZE],
    full_key: &[u8],
    own_digest: &[u8],
) -> bool {
    let key = hmac_sha256(full_key, &[own_digest]);
    let signature_at = HANDSHAKE_SIZE - DIGEST_LEN;
    hmac_sha256(&key, &[&response[..signature_at]]) == response[signature_at..]
}

/// Appends as much of `data` as `buffer` still needs to reach `target` bytes; returns how many
/// bytes of `data` it took.
fn fill_to(buffer: &mut Vec<u8>, target: usize, data: &[u8]) -> usize {
    let take = target.saturating_sub(buffer.len()).min(data.len());
    buffer.extend_from_slice(&data[..take]);
    take
}

fn as_packet(bytes: &[u8]) -> [u8; HANDSHAKE_SIZE] {
    let mut packet = [0u8; HANDSHAKE_SIZE];
    let len = bytes.len().min(HANDSHAKE_SIZE);
    packet[..len].copy_from_slice(&bytes[..len]);
    packet
}

#[derive(Debug)]
enum ServerState {
    /// Collecting C0 (1 byte) + C1 (1536 bytes).
    ReadingC0C1,
    /// S0S1S2 is queued; skipping C2, of which `received` bytes have arrived.
    ReadingC2 {
        received: usize,
    },
    Done,
    Failed(HandshakeError),
}

/// Server side of the handshake. Feed it the client's bytes in fragments of any size; it
/// answers with S0S1S2 as soon as C0C1 is complete and is done when C2 has been read.
///
/// ```
/// use sluice_proto::rtmp::{ClientHandshake, HandshakeKind, ServerHandshake};
/// let mut client = ClientHandshake::new(HandshakeKind::Complex, 1);
/// let mut server = ServerHandshake::new(2);
/// let c0c1 = client.poll_transmit().unwrap();
/// assert_eq!(server.handle_input(&c0c1).unwrap(), c0c1.len());
/// let s0s1s2 = server.poll_transmit().unwrap();
/// client.handle_input(&s0s1s2).unwrap();
/// let c2 = client.poll_transmit().unwrap();
/// server.handle_input(&c2).unwrap();
/// assert!(server.is_done() && client.is_done());
/// assert_eq!(server.kind(), Some(HandshakeKind::Complex));
/// ```
#[derive(Debug)]
pub struct ServerHandshake {
    state: ServerState,
    c0c1: Vec<u8>,
    rng: SplitMix64,
    kind: Option<HandshakeKind>,
    transmit: Option<Bytes>,
}

impl ServerHandshake {
    /// `seed` drives the random filler of S1/S2; any value works, vary it per connection.
    pub fn new(seed: u64) -> Self {
        ServerHandshake {
            state: ServerState::ReadingC0C1,
            c0c1: Vec::with_capacity(1 + HANDSHAKE_SIZE),
            rng: SplitMix64::new(seed),
            kind: None,
            transmit: None,
        }
    }

    /// Consumes handshake bytes from the front of `data` and returns how many it took. Once C2
    /// is complete it stops consuming, so the caller hands the rest (the first chunks, which
    /// clients pipeline right behind C2) to the chunk reader.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<usize, HandshakeError> {
        let mut consumed = 0;
        loop {
            let rest = &data[consumed..];
            match &mut self.state {
                ServerState::Failed(error) => return Err(error.clone()),
                ServerState::Done => return Ok(consumed),
                ServerState::ReadingC0C1 => {
                    consumed += fill_to(&mut self.c0c1, 1 + HANDSHAKE_SIZE, rest);
                    // Reject a wrong version on its first byte instead of waiting for 1536 more.
                    match self.c0c1.first() {
                        Some(&version) if version != RTMP_VERSION => {
                            let error = HandshakeError::UnsupportedClientVersion(version);
                            self.state = ServerState::Failed(error.clone());
                            return Err(error);
                        }
                        _ => {}
                    }
                    if self.c0c1.len() < 1 + HANDSHAKE_SIZE {
                        return Ok(consumed);
                    }
                    let c1 = as_packet(&self.c0c1[1..]);
                    self.transmit = Some(self.respond(&c1));
                    self.c0c1 = Vec::new();
                    self.state = ServerState::ReadingC2 { received: 0 };
                }
                ServerState::ReadingC2 { received } => {
                    let take = (HANDSHAKE_SIZE - *received).min(rest.len());
                    *received += take;
                    consumed += take;
                    if *received < HANDSHAKE_SIZE {
                        return Ok(consumed);
                    }
                    self.state = ServerState::Done;
                }
            }
        }
    }

    /// S0S1S2, once, after C0C1 is complete.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmit.take()
    }

    /// C2 has been read; everything after it is chunk stream.
    pub fn is_done(&self) -> bool {
        matches!(self.state, ServerState::Done)
    }

    /// Which handshake the client got; known once C0C1 has been read.
    pub fn kind(&self) -> Option<HandshakeKind> {
        self.kind
    }

    fn respond(&mut self, c1: &[u8; HANDSHAKE_SIZE]) -> Bytes {
        let mut s1 = [0u8; HANDSHAKE_SIZE];
        let mut s2 = [0u8; HANDSHAKE_SIZE];
        self.rng.fill(&mut s1);
        // An all-zero version means "simple" by convention; don't spend two HMACs on it.
        let valid_digest = if c1[4..8] == [0; 4] {
            None
        } else {
            find_valid_digest(c1, &FLASH_PLAYER_KEY[..FLASH_PLAYER_KEY_PUBLIC_LEN])
        };
        match valid_digest {
            Some((schema, offset)) => {
                s1[..4].fill(0);
                s1[4..8].copy_from_slice(&SERVER_VERSION);
                imprint_digest(
                    &mut s1,
                    schema,
                    &FLASH_MEDIA_SERVER_KEY[..FLASH_MEDIA_SERVER_KEY_PUBLIC_LEN],
                );
                sign_response(
                    &mut s2,
                    &mut self.rng,
                    &FLASH_MEDIA_SERVER_KEY,
                    &c1[offset..offset + DIGEST_LEN],
                );
                self.kind = Some(HandshakeKind::Complex);
            }
            None => {
                // SRS: our time, then the client's time echoed, then random; S2 echoes C1.
                s1[..4].fill(0);
                s1[4..8].copy_from_slice(&c1[..4]);
                s2 = *c1;
                self.kind = Some(HandshakeKind::Simple);
            }
        }
        let mut out = Vec::with_capacity(1 + 2 * HANDSHAKE_SIZE);
        out.push(RTMP_VERSION);
        out.extend_from_slice(&s1);
        out.extend_from_slice(&s2);
        Bytes::from(out)
    }
}

#[derive(Debug)]
enum ClientState {
    /// C0C1 is queued; collecting S0 + S1 + S2.
    ReadingS0S1S2,
    Done,
    Failed(HandshakeError),
}

/// Client side of the handshake, for tests, the load tool and forwarding. Offers the simple or
/// the complex handshake; answers S1 the way SRS's client does (signed C2 when S1 carries a
/// valid server digest, otherwise S1 echoed).
#[derive(Debug)]
pub struct ClientHandshake {
    state: ClientState,
    c1: [u8; HANDSHAKE_SIZE],
    /// Offset of our digest in C1 (complex only).
    c1_digest_offset: Option<usize>,
    s0s1s2: Vec<u8>,
    rng: SplitMix64,
    transmit: Vec<Bytes>,
    server_signature_valid: Option<bool>,
}

impl ClientHandshake {
    /// Prepares C0C1 (take it with [`poll_transmit`](Self::poll_transmit)).
    pub fn new(kind: HandshakeKind, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let mut c1 = [0u8; HANDSHAKE_SIZE];
        rng.fill(&mut c1);
        c1[..4].fill(0);
        let c1_digest_offset = match kind {
            HandshakeKind::Simple => {
                c1[4..8].fill(0);
                None
            }
            HandshakeKind::Complex => {
                c1[4..8].copy_from_slice(&CLIENT_VERSION);
                // FMS requires digest-first (SRS), and it is what ffmpeg sends.
                let schema = DigestSchema::DigestFirst;
                imprint_digest(
                    &mut c1,
                    schema,
                    &FLASH_PLAYER_KEY[..FLASH_PLAYER_KEY_PUBLIC_LEN],
                );
                Some(schema.digest_offset(&c1))
            }
        };
        let mut c0c1 = Vec::with_capacity(1 + HANDSHAKE_SIZE);
        c0c1.push(RTMP_VERSION);
        c0c1.extend_from_slice(&c1);
        ClientHandshake {
            state: ClientState::ReadingS0S1S2,
            c1,
            c1_digest_offset,
            s0s1s2: Vec::with_capacity(1 + 2 * HANDSHAKE_SIZE),
            rng,
            transmit: vec![Bytes::from(c0c1)],
            server_signature_valid: None,
        }
    }

    /// Consumes S0S1S2 bytes from the front of `data`; returns how many it took. Stops at the
    /// end of S2: what follows is the server's chunk stream.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<usize, HandshakeError> {
        match &self.state {
            ClientState::Failed(error) => return Err(error.clone()),
            ClientState::Done => return Ok(0),
            ClientState::ReadingS0S1S2 => {}
        }
        let consumed = fill_to(&mut self.s0s1s2, 1 + 2 * HANDSHAKE_SIZE, data);
        match self.s0s1s2.first() {
            Some(&version) if version != RTMP_VERSION => {
                let error = HandshakeError::UnsupportedServerVersion(version);
                self.state = ClientState::Failed(error.clone());
                return Err(error);
            }
            _ => {}
        }
        if self.s0s1s2.len() < 1 + 2 * HANDSHAKE_SIZE {
            return Ok(consumed);
        }
        let s1 = as_packet(&self.s0s1s2[1..]);
        let s2 = as_packet(&self.s0s1s2[1 + HANDSHAKE_SIZE..]);
        self.s0s1s2 = Vec::new();

        if let Some(offset) = self.c1_digest_offset {
            self.server_signature_valid = Some(response_signature_valid(
                &s2,
                &FLASH_MEDIA_SERVER_KEY,
                &self.c1[offset..offset + DIGEST_LEN],
            ));
        }
        let server_digest = self.c1_digest_offset.and_then(|_| {
            find_valid_digest(
                &s1,
                &FLASH_MEDIA_SERVER_KEY[..FLASH_MEDIA_SERVER_KEY_PUBLIC_LEN],
            )
        });
        let c2 = match server_digest {
            Some((_, offset)) => {
                let mut c2 = [0u8; HANDSHAKE_SIZE];
                sign_response(
                    &mut c2,
                    &mut self.rng,
                    &FLASH_PLAYER_KEY,
                    &s1[offset..offset + DIGEST_LEN],
                );
                c2
            }
            // Simple handshake, or a server that does not sign: echo S1.
            None => s1,
        };
        self.transmit.push(Bytes::copy_from_slice(&c2));
        self.state = ClientState::Done;
        Ok(consumed)
    }

    /// C0C1 first, then C2 once S0S1S2 has been read.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.transmit.is_empty() {
            None
        } else {
            Some(self.transmit.remove(0))
        }
    }

    /// S0S1S2 has been read and C2 queued.
    pub fn is_done(&self) -> bool {
        matches!(self.state, ClientState::Done)
    }

    /// For a complex handshake, whether S2 carried the signature derived from our C1 digest
    /// (what ffmpeg checks before playing). `None` for simple or before S2 arrived.
    pub fn server_signature_valid(&self) -> Option<bool> {
        self.server_signature_valid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(client_kind: HandshakeKind, fragment: usize) -> (ServerHandshake, ClientHandshake) {
        let mut client = ClientHandshake::new(client_kind, 7);
        let mut server = ServerHandshake::new(9);
        let c0c1 = client.poll_transmit().unwrap();
        for piece in c0c1.chunks(fragment) {
            assert_eq!(server.handle_input(piece).unwrap(), piece.len());
        }
        let s0s1s2 = server.poll_transmit().unwrap();
        assert_eq!(s0s1s2.len(), 3073);
        for piece in s0s1s2.chunks(fragment) {
            assert_eq!(client.handle_input(piece).unwrap(), piece.len());
        }
        let c2 = client.poll_transmit().unwrap();
        for piece in c2.chunks(fragment) {
            server.handle_input(piece).unwrap();
        }
        (server, client)
    }

    #[test]
    fn complex_round_trip_validates_both_ways() {
        for fragment in [1, 7, 1537, 4096] {
            let (server, client) = run(HandshakeKind::Complex, fragment);
            assert!(server.is_done());
            assert_eq!(server.kind(), Some(HandshakeKind::Complex));
            assert_eq!(client.server_signature_valid(), Some(true));
        }
    }

    #[test]
    fn simple_round_trip_echoes() {
        let mut client = ClientHandshake::new(HandshakeKind::Simple, 3);
        let mut server = ServerHandshake::new(4);
        let c0c1 = client.poll_transmit().unwrap();
        server.handle_input(&c0c1).unwrap();
        let s0s1s2 = server.poll_transmit().unwrap();
        assert_eq!(server.kind(), Some(HandshakeKind::Simple));
        assert_eq!(&s0s1s2[1537..], &c0c1[1..], "S2 echoes C1");
        assert_eq!(&s0s1s2[5..9], &c0c1[1..5], "S1 echoes C1's time");
        client.handle_input(&s0s1s2).unwrap();
        let c2 = client.poll_transmit().unwrap();
        assert_eq!(&c2[..], &s0s1s2[1..1537], "C2 echoes S1");
    }

    #[test]
    fn trailing_bytes_after_c2_are_not_consumed() {
        let mut client = ClientHandshake::new(HandshakeKind::Simple, 3);
        let mut server = ServerHandshake::new(4);
        server
            .handle_input(&client.poll_transmit().unwrap())
            .unwrap();
        client
            .handle_input(&server.poll_transmit().unwrap())
            .unwrap();
        let mut c2_and_more = client.poll_transmit().unwrap().to_vec();
        c2_and_more.extend_from_slice(b"chunks");
        assert_eq!(server.handle_input(&c2_and_more).unwrap(), 1536);
        assert!(server.is_done());
        assert_eq!(server.handle_input(b"more").unwrap(), 0);
    }

    #[test]
    fn wrong_version_fails_on_first_byte() {
        let mut server = ServerHandshake::new(1);
        assert_eq!(
            server.handle_input(&[6]),
            Err(HandshakeError::UnsupportedClientVersion(6))
        );
        assert!(server.handle_input(&[3]).is_err(), "stays failed");
    }
}
