//! WebRTC: what signalling (the API's `/rtc/v1/...`, on the control plane) and media (the
//! workers' UDP socket, `session::rtc`) share.
//!
//! A session starts on the control plane: the client's SDP offer is answered by a new str0m
//! [`Rtc`] (ICE-lite, our candidates), which is parked in the [`RtcRegistry`] under its local
//! ICE ufrag. The first STUN binding request naming that ufrag reaches some worker (the kernel
//! spreads peers over the workers' `SO_REUSEPORT` sockets by address, so all of that peer's
//! datagrams keep reaching the same worker); that worker claims the parked session and owns it
//! from then on. No session moves between workers after it has started, and no lock is taken
//! per packet.

pub mod candidates;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::{Candidate, Rtc, RtcConfig};

use crate::hub::StreamKey;
use crate::request::StreamRequest;

/// Longest SDP offer accepted (a browser's is 4–8 KiB).
pub const MAX_OFFER: usize = 64 * 1024;
/// Most sessions answered but not yet connected, server-wide: bounds what offers can make the
/// server hold.
pub const MAX_PENDING: usize = 4096;

/// Video packets a player's session keeps for retransmission (NACK/RTX): about 1.2 s at
/// 2 Mbit/s, several round trips. str0m's default of 1000 packets held ~1.5 MiB per player.
const SEND_BUFFER_VIDEO: usize = 256;

/// Whether a session publishes into the hub (WHIP) or plays from it (WHEP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Publish,
    Play,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Publish => "publish",
            Role::Play => "play",
        }
    }
}

/// A session answered by signalling, waiting for its first STUN request.
pub struct PendingSession {
    pub rtc: Rtc,
    pub role: Role,
    pub request: StreamRequest,
    pub key: StreamKey,
    /// The client's serial (its API id is `session::client_id(serial)`).
    pub serial: u64,
    /// The signalling client's address (HTTP), for logs until the media peer is known.
    pub client_ip: IpAddr,
    /// `local-ufrag:remote-ufrag`, SRS's `sessionid`.
    pub session_id: String,
    /// The candidates offered: the session tells str0m its datagrams arrive at the first.
    pub candidates: Vec<SocketAddr>,
    pub created: Instant,
}

enum Entry {
    Pending(Box<PendingSession>),
    /// Running on a worker.
    Claimed {
        worker: usize,
        client_id: String,
    },
    /// Ended (kept [`ENDED_TTL`] so a client's `DELETE` that crosses the end is a success).
    Ended {
        since: Instant,
    },
}

/// How long an ended session's id still answers `DELETE` with success.
const ENDED_TTL: Duration = Duration::from_secs(60);

/// What a STUN request's ufrag leads to.
pub enum Claim {
    /// A new session for the asking worker.
    New(Box<PendingSession>),
    /// The session runs on that worker.
    Owner(usize),
    Unknown,
}

/// What ending a session by its id found.
pub enum Ended {
    /// It had not connected yet: dropped.
    Pending,
    /// It runs on a worker as this client.
    Live {
        worker: usize,
        client_id: String,
    },
    /// It had ended already (the peer closed it, or it timed out) a moment ago.
    Already,
    NotFound,
}

/// Every WebRTC session, by local ICE ufrag.
#[derive(Default)]
pub struct RtcRegistry {
    entries: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("too many WebRTC sessions waiting to connect ({MAX_PENDING})")]
    TooManyPending,
}

impl RtcRegistry {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Parks an answered session until a worker claims it.
    pub fn insert(&self, ufrag: String, session: PendingSession) -> Result<(), RegistryError> {
        let mut entries = self.entries();
        let pending = entries
            .values()
            .filter(|e| matches!(e, Entry::Pending(_)))
            .count();
        if pending >= MAX_PENDING {
            return Err(RegistryError::TooManyPending);
        }
        entries.insert(ufrag, Entry::Pending(Box::new(session)));
        Ok(())
    }

    /// A STUN request for `ufrag` reached `worker`.
    pub fn claim(&self, ufrag: &str, worker: usize) -> Claim {
        let mut entries = self.entries();
        match entries.get_mut(ufrag) {
            None | Some(Entry::Ended { .. }) => Claim::Unknown,
            Some(Entry::Claimed { worker: owner, .. }) => Claim::Owner(*owner),
            Some(entry @ Entry::Pending(_)) => {
                let Entry::Pending(session) = std::mem::replace(
                    entry,
                    Entry::Claimed {
                        worker,
                        client_id: String::new(),
                    },
                ) else {
                    return Claim::Unknown;
                };
                *entry = Entry::Claimed {
                    worker,
                    client_id: crate::session::client_id(session.serial),
                };
                Claim::New(session)
            }
        }
    }

    /// A session ended (its worker closed it).
    pub fn forget(&self, ufrag: &str, now: Instant) {
        if let Some(entry) = self.entries().get_mut(ufrag) {
            *entry = Entry::Ended { since: now };
        }
    }

    /// Ends a session by SRS session id (`local:remote`) or local ufrag.
    pub fn end(&self, session_id: &str) -> Ended {
        let ufrag = session_id.split(':').next().unwrap_or("");
        let mut entries = self.entries();
        match entries.get(ufrag) {
            None => Ended::NotFound,
            Some(Entry::Claimed { worker, client_id }) => Ended::Live {
                worker: *worker,
                client_id: client_id.clone(),
            },
            Some(Entry::Pending(_)) => {
                entries.remove(ufrag);
                Ended::Pending
            }
            Some(Entry::Ended { .. }) => Ended::Already,
        }
    }

    /// Drops sessions that never connected within `ttl` (returned, for the log) and the
    /// records of ended ones.
    pub fn expire(&self, now: Instant, ttl: Duration) -> Vec<Box<PendingSession>> {
        let mut entries = self.entries();
        entries.retain(|_, e| {
            !matches!(e, Entry::Ended { since } if now.saturating_duration_since(*since) >= ENDED_TTL)
        });
        let stale: Vec<String> = entries
            .iter()
            .filter(|(_, e)| {
                matches!(e, Entry::Pending(p) if now.saturating_duration_since(p.created) >= ttl)
            })
            .map(|(k, _)| k.clone())
            .collect();
        stale
            .into_iter()
            .filter_map(|k| match entries.remove(&k) {
                Some(Entry::Pending(p)) => Some(p),
                _ => None,
            })
            .collect()
    }
}

/// Why an offer was not answered (HTTP 400, with this text).
#[derive(Debug, thiserror::Error)]
pub enum OfferError {
    #[error("the offer is not valid SDP: {0}")]
    Sdp(String),
    #[error("the offer was refused: {0}")]
    Refused(String),
    #[error("the offer has no ICE credentials (a=ice-ufrag/a=ice-pwd)")]
    NoIce,
    #[error("the offer has no H.264 or H.265 video nor Opus audio that we can {0}")]
    NoMedia(&'static str),
}

/// An answered offer.
pub struct Answer {
    pub rtc: Rtc,
    pub sdp: String,
    pub local_ufrag: String,
    pub remote_ufrag: String,
}

/// Answers `offer` for `role` with a new ICE-lite session offering `candidates`; `twcc`
/// negotiates transport-wide congestion control feedback.
pub fn answer_offer(
    offer: &str,
    (role, twcc): (Role, bool),
    candidates: &[SocketAddr],
    now: Instant,
) -> Result<Answer, OfferError> {
    let remote_ufrag = sdp_attribute(offer, "ice-ufrag").ok_or(OfferError::NoIce)?;
    let offer = SdpOffer::from_sdp_string(offer).map_err(|e| OfferError::Sdp(e.to_string()))?;
    let mut config = RtcConfig::new();
    if !twcc {
        // Every standard extension but transport-wide sequence numbers: peers then send no
        // TWCC feedback, whose processing costs ~12 % of a player's CPU (BENCHMARKS.md).
        use str0m::rtp::Extension;
        config = config
            .clear_extension_map()
            .set_extension(1, Extension::AudioLevel)
            .set_extension(2, Extension::AbsoluteSendTime)
            .set_extension(4, Extension::RtpMid)
            .set_extension(10, Extension::RtpStreamId)
            .set_extension(11, Extension::RepairedRtpStreamId)
            .set_extension(13, Extension::VideoOrientation);
    }
    let mut rtc = config
        .set_ice_lite(true)
        .clear_codecs()
        .enable_h264(true)
        .enable_h265(true)
        .enable_opus(true, false)
        .set_send_buffer_video(SEND_BUFFER_VIDEO)
        .build(now);
    for addr in candidates {
        match Candidate::host(*addr, "udp") {
            Ok(candidate) => {
                rtc.add_local_candidate(candidate);
            }
            Err(e) => tracing::warn!(%addr, error = %e, "rtc: unusable candidate"),
        }
    }
    let answer = rtc
        .sdp_api()
        .accept_offer(offer)
        .map_err(|e| OfferError::Refused(e.to_string()))?;
    let sdp = complete_candidates(&answer.to_sdp_string());
    let local_ufrag = sdp_attribute(&sdp, "ice-ufrag").ok_or(OfferError::NoIce)?;
    let wanted = match role {
        Role::Publish => "receive",
        Role::Play => "send",
    };
    if !has_usable_media(&sdp, role) {
        return Err(OfferError::NoMedia(wanted));
    }
    Ok(Answer {
        rtc,
        sdp,
        local_ufrag,
        remote_ufrag,
    })
}

/// The answer with every candidate in every media section and `a=end-of-candidates` after
/// them. An ICE-lite server has all its candidates when it answers and never trickles more;
/// str0m lists them in the first section only and leaves the list open, and some clients
/// (aiortc) then wait for more candidates instead of starting their checks.
fn complete_candidates(sdp: &str) -> String {
    let candidates: Vec<&str> = sdp
        .lines()
        .filter(|l| l.starts_with("a=candidate:"))
        .collect();
    let mut out = String::with_capacity(sdp.len() + 256);
    let mut sections = sdp.split_inclusive("\r\n").peekable();
    let mut in_media = false;
    let mut seen: Vec<&str> = Vec::new();
    let finish = |out: &mut String, seen: &[&str]| {
        for candidate in &candidates {
            if !seen.contains(candidate) {
                out.push_str(candidate);
                out.push_str("\r\n");
            }
        }
        out.push_str("a=end-of-candidates\r\n");
    };
    while let Some(line) = sections.next() {
        let bare = line.trim_end();
        if bare.starts_with("m=") {
            if in_media {
                finish(&mut out, &seen);
            }
            in_media = true;
            seen.clear();
        }
        if bare == "a=end-of-candidates" {
            continue;
        }
        if bare.starts_with("a=candidate:") {
            seen.push(bare);
        }
        out.push_str(line);
        if !line.ends_with('\n') {
            out.push_str("\r\n");
        }
        if sections.peek().is_none() && in_media {
            finish(&mut out, &seen);
        }
    }
    out
}

/// The first `a=NAME:value` of an SDP.
pub fn sdp_attribute(sdp: &str, name: &str) -> Option<String> {
    sdp.lines().find_map(|line| {
        let value = line.trim().strip_prefix("a=")?.strip_prefix(name)?;
        let value = value.strip_prefix(':')?.trim();
        (!value.is_empty()).then(|| value.to_string())
    })
}

/// Whether the answer accepts some media section with a codec we carry, in the direction the
/// role needs (we receive for a publisher, send for a player).
fn has_usable_media(answer: &str, role: Role) -> bool {
    let our_direction = match role {
        Role::Publish => ["a=recvonly", "a=sendrecv"],
        Role::Play => ["a=sendonly", "a=sendrecv"],
    };
    answer.split("\nm=").skip(1).any(|section| {
        let port_open = section
            .split_whitespace()
            .nth(1)
            .is_some_and(|port| port != "0");
        let codec = section.lines().any(|l| {
            l.starts_with("a=rtpmap:")
                && (l.contains(" H264/") || l.contains(" H265/") || l.contains(" opus/"))
        });
        let direction = section.lines().any(|l| our_direction.contains(&l.trim()));
        port_open && codec && direction
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_read_from_sdp() {
        let sdp = "v=0\r\na=group:BUNDLE 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=ice-ufrag:abcd\r\na=ice-pwd:x\r\n";
        assert_eq!(sdp_attribute(sdp, "ice-ufrag").as_deref(), Some("abcd"));
        assert_eq!(sdp_attribute(sdp, "ice-options"), None);
    }

    #[test]
    fn every_section_lists_the_candidates_and_ends_them() {
        let sdp = "v=0\r\nm=video 9 X 96\r\na=candidate:1 1 udp 1 127.0.0.1 8000 typ host\r\na=mid:0\r\nm=audio 9 X 111\r\na=mid:1\r\n";
        let out = complete_candidates(sdp);
        assert_eq!(
            out,
            "v=0\r\nm=video 9 X 96\r\na=candidate:1 1 udp 1 127.0.0.1 8000 typ host\r\na=mid:0\r\na=end-of-candidates\r\nm=audio 9 X 111\r\na=mid:1\r\na=candidate:1 1 udp 1 127.0.0.1 8000 typ host\r\na=end-of-candidates\r\n"
        );
    }

    /// A client offer as a browser's: recvonly (WHEP) or sendonly (WHIP) H.264 video and Opus
    /// audio, from a full-ICE str0m with a loopback candidate. Returns the client and its
    /// pending offer.
    fn client_offer(
        direction: str0m::media::Direction,
    ) -> (Rtc, str0m::change::SdpPendingOffer, String) {
        use str0m::media::MediaKind;
        let mut client = RtcConfig::new().build(Instant::now());
        let local = Candidate::host("127.0.0.1:40000".parse().unwrap(), "udp").unwrap();
        client.add_local_candidate(local);
        let mut change = client.sdp_api();
        change.add_media(MediaKind::Video, direction, None, None, None);
        change.add_media(MediaKind::Audio, direction, None, None, None);
        let (offer, pending) = change.apply().expect("an offer");
        (client, pending, offer.to_sdp_string())
    }

    #[test]
    fn a_whep_offer_is_answered_ice_lite_with_our_candidate() {
        str0m::crypto::from_feature_flags().install_process_default();
        let (_client, _pending, offer) = client_offer(str0m::media::Direction::RecvOnly);
        let candidates = ["127.0.0.1:8000".parse().unwrap()];
        let answer = answer_offer(&offer, (Role::Play, true), &candidates, Instant::now()).unwrap();
        assert!(answer.sdp.contains("a=ice-lite"), "{}", answer.sdp);
        assert!(answer.sdp.contains("a=sendonly"), "{}", answer.sdp);
        let sections: Vec<&str> = answer.sdp.split("\r\nm=").skip(1).collect();
        assert_eq!(sections.len(), 2, "{}", answer.sdp);
        for section in sections {
            assert!(
                section.contains(" 127.0.0.1 8000 typ host")
                    && section.contains("a=end-of-candidates"),
                "{section}"
            );
        }
        assert_eq!(
            Some(answer.remote_ufrag),
            sdp_attribute(&offer, "ice-ufrag")
        );
        assert!(answer.local_ufrag.len() >= 4);
        // Transport-wide congestion control is negotiated unless turned off.
        assert!(answer.sdp.contains("transport-wide-cc"), "{}", answer.sdp);
        let without = answer_offer(&offer, (Role::Play, false), &candidates, Instant::now());
        assert!(!without.unwrap().sdp.contains("transport-wide-cc"));
        // A WHEP offer cannot publish: we would have nothing to receive.
        assert!(matches!(
            answer_offer(&offer, (Role::Publish, true), &candidates, Instant::now()),
            Err(OfferError::NoMedia("receive"))
        ));
    }

    #[test]
    fn the_clients_first_stun_request_names_the_session() {
        str0m::crypto::from_feature_flags().install_process_default();
        let (mut client, pending, offer) = client_offer(str0m::media::Direction::SendOnly);
        let candidates = ["127.0.0.1:8000".parse().unwrap()];
        let answer =
            answer_offer(&offer, (Role::Publish, true), &candidates, Instant::now()).unwrap();
        let sdp = str0m::change::SdpAnswer::from_sdp_string(&answer.sdp).unwrap();
        client.sdp_api().accept_answer(pending, sdp).unwrap();
        let now = Instant::now();
        client.handle_input(str0m::Input::Timeout(now)).unwrap();
        let stun = loop {
            match client.poll_output().unwrap() {
                str0m::Output::Transmit(t) => break Vec::from(t.contents),
                str0m::Output::Event(_) => continue,
                str0m::Output::Timeout(_) => panic!("the client sent no STUN request"),
            }
        };
        assert_eq!(
            crate::session::rtc_listener::stun_ufrag(&stun),
            Some(answer.local_ufrag.as_str())
        );
        // What is not a STUN binding request names nothing.
        assert_eq!(
            crate::session::rtc_listener::stun_ufrag(&[0x80, 96, 0, 1]),
            None
        );
        assert_eq!(crate::session::rtc_listener::stun_ufrag(&stun[..10]), None);
        assert_eq!(crate::session::rtc_listener::stun_ufrag(&[]), None);
    }

    #[test]
    fn the_registry_hands_a_session_to_one_worker() {
        str0m::crypto::from_feature_flags().install_process_default();
        let registry = RtcRegistry::default();
        let now = Instant::now();
        let pending = |ufrag: &str, created: Instant| PendingSession {
            rtc: RtcConfig::new().set_ice_lite(true).build(now),
            role: Role::Play,
            request: StreamRequest::from_rtmp("webrtc://h/live", "live", "s").unwrap(),
            key: StreamKey {
                vhost: "__defaultVhost__".into(),
                app: "live".into(),
                stream: "s".into(),
            },
            serial: 7,
            client_ip: IpAddr::from([127, 0, 0, 1]),
            session_id: format!("{ufrag}:peer"),
            candidates: Vec::new(),
            created,
        };
        registry.insert("a".into(), pending("a", now)).unwrap();
        registry.insert("b".into(), pending("b", now)).unwrap();
        assert!(matches!(registry.claim("a", 1), Claim::New(_)));
        assert!(matches!(registry.claim("a", 0), Claim::Owner(1)));
        assert!(matches!(registry.claim("zzz", 0), Claim::Unknown));
        assert!(matches!(
            registry.end("a:peer"),
            Ended::Live { worker: 1, ref client_id } if *client_id == crate::session::client_id(7)
        ));
        assert!(matches!(registry.end("b:peer"), Ended::Pending));
        assert!(matches!(registry.end("b:peer"), Ended::NotFound));
        registry.forget("a", now);
        assert!(matches!(registry.claim("a", 0), Claim::Unknown));
        // A DELETE that crosses the end still succeeds, for a while.
        assert!(matches!(registry.end("a:peer"), Ended::Already));
        registry.expire(now + ENDED_TTL, Duration::from_secs(15));
        assert!(matches!(registry.end("a:peer"), Ended::NotFound));
        // Never claimed: expires.
        registry.insert("c".into(), pending("c", now)).unwrap();
        let later = now + Duration::from_secs(20);
        assert_eq!(registry.expire(later, Duration::from_secs(15)).len(), 1);
        assert!(matches!(registry.claim("c", 0), Claim::Unknown));
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        let now = Instant::now();
        let candidates = ["127.0.0.1:8000".parse().unwrap()];
        assert!(matches!(
            answer_offer("hello", (Role::Play, true), &candidates, now),
            Err(OfferError::NoIce)
        ));
        let bad = "v=0\r\na=ice-ufrag:abcd\r\nnot sdp at all\r\n";
        assert!(matches!(
            answer_offer(bad, (Role::Play, true), &candidates, now),
            Err(OfferError::Sdp(_))
        ));
    }
}
