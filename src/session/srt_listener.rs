//! A worker's SRT listener: its UDP socket, which peer address belongs to which SRT session
//! (a driver flow), and the handshakes not yet finished. A datagram from a known peer goes to
//! its session; anything else must be a handshake (induction, then conclusion), answered by
//! srt-protocol's listener state machine. The conclusion carries the stream id: it is parsed
//! (SRS's forms, `proto::srt`), checked against the security rules, the stream's state and
//! the passphrase, and the caller is accepted or rejected with an SRT reject code and a log
//! line — before any session exists, so a refused caller costs nothing more.
//!
//! Handshakes in progress are bounded ([`MAX_PENDING`]) and expire ([`PENDING_TTL`]): a flood
//! of inductions from made-up addresses cannot grow memory.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use sluice_proto::srt::{SrtMode, SrtStreamId};
use sluice_ring::{ConnId, UdpId};
use srt_protocol::connection::Connection;
use srt_protocol::options::{KeySize, PacketCount, Passphrase};
use srt_protocol::packet::{
    ControlTypes, CoreRejectReason, Packet, RejectReason, ServerRejectReason,
};
use srt_protocol::protocol::pending_connection::listen::Listen;
use srt_protocol::protocol::pending_connection::{
    AccessControlRequest, AccessControlResponse, ConnectionReject, ConnectionResult,
};
use srt_protocol::settings::{ConnInitSettings, KeySettings};

use crate::config::Config;
use crate::hub::StreamKey;
use crate::request::StreamRequest;
use crate::security::Method;
use crate::worker::Shared;

/// Most handshakes in progress per worker.
const MAX_PENDING: usize = 4096;
/// A handshake not concluded within this is forgotten (libsrt gives up after 3 s).
const PENDING_TTL: Duration = Duration::from_secs(5);

/// A caller the listener accepted: the connection to drive and what it asked for.
pub struct Accepted {
    pub connection: Connection,
    pub stream_id: SrtStreamId,
    pub request: StreamRequest,
    pub key: StreamKey,
}

/// What a datagram from an unknown peer led to.
pub enum Handshake {
    /// Nothing more to do (a reply may have been queued).
    Continue,
    /// The caller is connected: open a session for it.
    Accepted(Box<Accepted>),
}

/// Why an SRT caller was turned away.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("bad stream id {id:?}: {reason}")]
    BadStreamId { id: String, reason: String },
    #[error("{0}")]
    Security(String),
    #[error("stream {0} is busy: another client is publishing it")]
    Busy(String),
    #[error("too many connections")]
    TooMany,
    #[error("passphrase required: the caller does not encrypt")]
    Unencrypted,
    #[error("the caller encrypts but no passphrase is configured")]
    UnexpectedEncryption,
    #[error("key length {caller} bytes, expected {ours} (pbkeylen)")]
    KeyLength { caller: u16, ours: u16 },
}

impl Refusal {
    fn reject_reason(&self) -> RejectReason {
        match self {
            Refusal::BadStreamId { .. } => ServerRejectReason::BadRequest.into(),
            Refusal::Security(_) => ServerRejectReason::Forbidden.into(),
            Refusal::Busy(_) => ServerRejectReason::Conflict.into(),
            Refusal::TooMany => ServerRejectReason::Overload.into(),
            Refusal::Unencrypted => CoreRejectReason::Unsecure.into(),
            Refusal::UnexpectedEncryption | Refusal::KeyLength { .. } => {
                CoreRejectReason::BadSecret.into()
            }
        }
    }
}

struct Pending {
    listen: Listen,
    since: Instant,
    /// What the access check decided, kept until the connection is made.
    admitted: Option<(SrtStreamId, StreamRequest, StreamKey)>,
}

pub struct SrtListener {
    pub sock: UdpId,
    pub local: SocketAddr,
    /// Peers with a session, and their flow.
    peers: HashMap<SocketAddr, ConnId>,
    pending: HashMap<SocketAddr, Pending>,
    template: ConnInitSettings,
    /// Datagrams that were not SRT, or not for anyone.
    pub dropped: u64,
    out: BytesMut,
}

impl SrtListener {
    pub fn new(sock: UdpId, local: SocketAddr, config: &Config) -> SrtListener {
        let srt = &config.srt_server;
        let latency = Duration::from_millis(srt.latency_ms);
        let template = ConnInitSettings {
            send_latency: latency,
            recv_latency: latency,
            peer_idle_timeout: Duration::from_millis(srt.peer_idle_timeout_ms),
            key_settings: None,
            // libsrt's default (SRTO_SNDBUF 8192 packets). The crate's own default of 32 packets
            // overflows on the burst a viewer gets at join (a whole GOP) or on a keyframe at
            // 2 Mbit/s, and the sender never catches up. Memory stays bounded anyway: the crate
            // drops what is older than max(1.25 × latency, 1 s) from the send buffer.
            send_buffer_size: PacketCount(8192),
            ..ConnInitSettings::default()
        };
        SrtListener {
            sock,
            local,
            peers: HashMap::new(),
            pending: HashMap::new(),
            template,
            dropped: 0,
            out: BytesMut::with_capacity(1500),
        }
    }

    /// The session flow of a peer, if it has one.
    pub fn flow(&self, peer: &SocketAddr) -> Option<ConnId> {
        self.peers.get(peer).copied()
    }

    pub fn add_peer(&mut self, peer: SocketAddr, flow: ConnId) {
        self.peers.insert(peer, flow);
    }

    /// A session's flow closed.
    pub fn forget(&mut self, peer: &SocketAddr, flow: ConnId) {
        if self.peers.get(peer) == Some(&flow) {
            self.peers.remove(peer);
        }
    }

    /// Drops handshakes that never concluded.
    pub fn expire(&mut self, now: Instant) {
        self.pending
            .retain(|_, p| now.saturating_duration_since(p.since) < PENDING_TTL);
    }

    /// A packet from a peer without a session.
    pub fn handshake(
        &mut self,
        peer: SocketAddr,
        packet: Packet,
        now: Instant,
        shared: &Shared,
        driver: &mut sluice_ring::Driver,
    ) -> Handshake {
        let is_handshake = matches!(
            &packet,
            Packet::Control(c) if matches!(c.control_type, ControlTypes::Handshake(_))
        );
        if !is_handshake {
            // Late packets of a closed session, or noise.
            self.dropped += 1;
            return Handshake::Continue;
        }
        if !self.pending.contains_key(&peer) {
            if self.pending.len() >= MAX_PENDING {
                self.expire(now);
                if self.pending.len() >= MAX_PENDING {
                    self.dropped += 1;
                    return Handshake::Continue;
                }
            }
            let settings = self.template.copy_randomize();
            self.pending.insert(
                peer,
                Pending {
                    listen: Listen::new(settings, true),
                    since: now,
                    admitted: None,
                },
            );
        }
        let mut replies = Replies {
            driver,
            sock: self.sock,
            out: &mut self.out,
        };
        let Some(pending) = self.pending.get_mut(&peer) else {
            return Handshake::Continue;
        };
        let mut result = guarded(|| pending.listen.handle_packet(now, Ok((packet, peer))));
        // An access request is answered at once (the checks need no I/O), which yields the
        // conclusion response or a rejection.
        loop {
            match result {
                Some(ConnectionResult::RequestAccess(request)) => {
                    let response = match admit(&request, shared, self.local) {
                        Ok((id, req, key, keys)) => {
                            pending.admitted = Some((id, req, key));
                            AccessControlResponse::Accepted(keys)
                        }
                        Err(refusal) => {
                            log_refusal(peer, &request, &refusal);
                            AccessControlResponse::Rejected(refusal.reject_reason())
                        }
                    };
                    result =
                        guarded(|| pending.listen.handle_access_control_response(now, response));
                }
                Some(ConnectionResult::SendPacket((reply, to))) => {
                    replies.send(to, &reply);
                    return Handshake::Continue;
                }
                Some(ConnectionResult::Reject(reply, reason)) => {
                    if let Some((reply, to)) = reply {
                        replies.send(to, &reply);
                    }
                    // Our own refusals were logged by `admit`; the protocol's (a passphrase
                    // that does not unwrap the caller's key) are logged here.
                    if pending.admitted.is_some() {
                        let why = match reason {
                            ConnectionReject::Rejecting(RejectReason::Core(
                                CoreRejectReason::BadSecret,
                            )) => "wrong passphrase".to_string(),
                            other => format!("handshake failed: {other:?}"),
                        };
                        tracing::warn!(%peer, reason = %why, "srt connection rejected");
                    }
                    self.pending.remove(&peer);
                    return Handshake::Continue;
                }
                Some(ConnectionResult::Connected(reply, connection)) => {
                    if let Some((reply, to)) = reply {
                        replies.send(to, &reply);
                    }
                    let Some(pending) = self.pending.remove(&peer) else {
                        return Handshake::Continue;
                    };
                    let Some((stream_id, request, key)) = pending.admitted else {
                        return Handshake::Continue;
                    };
                    return Handshake::Accepted(Box::new(Accepted {
                        connection,
                        stream_id,
                        request,
                        key,
                    }));
                }
                Some(ConnectionResult::NotHandled(error)) => {
                    tracing::debug!(%peer, error = %error, "srt handshake packet ignored");
                    return Handshake::Continue;
                }
                Some(ConnectionResult::NoAction) => return Handshake::Continue,
                Some(ConnectionResult::Failure(error)) => {
                    tracing::debug!(%peer, error = %error, "srt handshake failed");
                    self.pending.remove(&peer);
                    return Handshake::Continue;
                }
                None => {
                    tracing::warn!(%peer, "srt connection rejected: malformed handshake");
                    self.pending.remove(&peer);
                    return Handshake::Continue;
                }
            }
        }
    }
}

/// Where a handshake reply goes: the listener's socket, through a reused buffer.
struct Replies<'a> {
    driver: &'a mut sluice_ring::Driver,
    sock: UdpId,
    out: &'a mut BytesMut,
}

impl Replies<'_> {
    fn send(&mut self, to: SocketAddr, packet: &Packet) {
        self.out.clear();
        packet.serialize(self.out);
        self.driver.send_to(self.sock, to, self.out);
    }
}

/// Splits one receive into its datagrams (`segment_size` each with GRO) and parses each as an
/// SRT packet. Returns the packets and how many datagrams were not SRT (dropped).
pub fn parse_datagrams(data: &[u8], segment_size: usize, peer: SocketAddr) -> (Vec<Packet>, u64) {
    let segment_size = if segment_size == 0 {
        data.len().max(1)
    } else {
        segment_size
    };
    let mut packets = Vec::with_capacity(data.len().div_ceil(segment_size));
    let mut dropped = 0;
    for datagram in data.chunks(segment_size) {
        let mut bytes = datagram;
        match guarded(|| Packet::parse(&mut bytes, peer.is_ipv6())) {
            Some(Ok(packet)) => packets.push(packet),
            _ => dropped += 1,
        }
    }
    (packets, dropped)
}

/// Runs srt-protocol code on input from the network. The crate asserts on some malformed
/// handshakes (`unimplemented!`); a panic there must end that one handshake, not the worker.
pub fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).ok()
}

fn log_refusal(peer: SocketAddr, request: &AccessControlRequest, refusal: &Refusal) {
    let stream_id = request.stream_id.as_ref().map_or("", |s| s.as_str());
    tracing::warn!(%peer, stream_id, reason = %refusal, "srt connection rejected");
}

type Admitted = (SrtStreamId, StreamRequest, StreamKey, Option<KeySettings>);

/// The checks a caller must pass before it is connected.
fn admit(
    request: &AccessControlRequest,
    shared: &Shared,
    local: SocketAddr,
) -> Result<Admitted, Refusal> {
    let config = &shared.config;
    let raw = request.stream_id.as_ref().map_or("", |s| s.as_str());
    let bad = |reason: String| Refusal::BadStreamId {
        id: raw.to_string(),
        reason,
    };
    let stream_id =
        SrtStreamId::parse(raw, &config.srt_server.default_app).map_err(|e| bad(e.to_string()))?;
    let stream_request = StreamRequest::from_srt(
        stream_id.vhost.as_deref(),
        &stream_id.app,
        &stream_id.stream,
        &stream_id.param(),
        local,
    )
    .map_err(|e| bad(e.to_string()))?;
    let (vhost_name, vhost) = config.vhost(&stream_request.vhost);
    let method = match stream_id.mode {
        SrtMode::Publish => Method::Publish,
        SrtMode::Play => Method::Play,
    };
    vhost
        .security
        .check(method, request.remote.ip())
        .map_err(Refusal::Security)?;
    let key = StreamKey {
        vhost: vhost_name.to_string(),
        app: stream_request.app.clone(),
        stream: stream_request.stream.clone(),
    };
    if stream_id.mode == SrtMode::Publish && shared.hub.is_published(&key) {
        return Err(Refusal::Busy(stream_request.path()));
    }
    if shared.connections.load(std::sync::atomic::Ordering::SeqCst) >= config.max_connections {
        return Err(Refusal::TooMany);
    }
    let srt = &config.srt_server;
    let caller_key = match request.key_size {
        KeySize::Unspecified => None,
        KeySize::AES128 => Some(16),
        KeySize::AES192 => Some(24),
        KeySize::AES256 => Some(32),
    };
    let keys = match (srt.passphrase.is_empty(), caller_key) {
        (true, None) => None,
        (true, Some(_)) => return Err(Refusal::UnexpectedEncryption),
        (false, None) => return Err(Refusal::Unencrypted),
        (false, Some(caller)) if caller != srt.pbkeylen => {
            return Err(Refusal::KeyLength {
                caller,
                ours: srt.pbkeylen,
            });
        }
        (false, Some(_)) => Some(KeySettings {
            key_size: request.key_size,
            passphrase: Passphrase::from(srt.passphrase.as_str()),
        }),
    };
    Ok((stream_id, stream_request, key, keys))
}
