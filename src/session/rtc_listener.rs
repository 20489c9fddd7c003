//! A worker's WebRTC listener: its UDP socket and which peer address belongs to which session
//! (a driver flow). A datagram from a known peer goes to its session. From an unknown peer only
//! a STUN binding request is taken: its USERNAME (`our-ufrag:their-ufrag`) names a session
//! answered by signalling, which this worker then claims from the registry (or, if another
//! worker owns it, forwards the datagram there). Anything else is dropped and counted.

use std::collections::HashMap;
use std::net::SocketAddr;

use sluice_ring::{ConnId, UdpId};
use str0m::ice::StunMessage;

/// Most peer addresses remembered as belonging to another worker's session.
const MAX_FORWARDS: usize = 4096;

pub struct RtcListener {
    pub sock: UdpId,
    /// Peers with a session here, and its flow.
    peers: HashMap<SocketAddr, ConnId>,
    /// Sessions running here by local ufrag (to take a second address of their peer).
    sessions: HashMap<String, ConnId>,
    /// Peers whose session runs on another worker (a second address of a peer whose first
    /// reached that worker): their datagrams are passed on.
    forwards: HashMap<SocketAddr, usize>,
    /// Datagrams that were not for any session.
    pub dropped: u64,
}

/// Where an unknown peer's datagram goes.
pub enum Route<'a> {
    /// A STUN request for the session with this local ufrag.
    Stun {
        ufrag: &'a str,
    },
    /// To the session on another worker.
    Forward(usize),
    Drop,
}

impl RtcListener {
    pub fn new(sock: UdpId) -> RtcListener {
        RtcListener {
            sock,
            peers: HashMap::new(),
            sessions: HashMap::new(),
            forwards: HashMap::new(),
            dropped: 0,
        }
    }

    pub fn flow(&self, peer: &SocketAddr) -> Option<ConnId> {
        self.peers.get(peer).copied()
    }

    /// The flow of a session running here, by its local ufrag.
    pub fn session(&self, ufrag: &str) -> Option<ConnId> {
        self.sessions.get(ufrag).copied()
    }

    pub fn add_session(&mut self, ufrag: &str, peer: SocketAddr, flow: ConnId) {
        self.sessions.insert(ufrag.to_string(), flow);
        self.add_peer(peer, flow);
    }

    pub fn add_peer(&mut self, peer: SocketAddr, flow: ConnId) {
        self.forwards.remove(&peer);
        self.peers.insert(peer, flow);
    }

    /// A session's flow closed: forget every address of its peer.
    pub fn forget(&mut self, flow: ConnId) {
        self.peers.retain(|_, f| *f != flow);
        self.sessions.retain(|_, f| *f != flow);
    }

    /// Remembers that `peer` belongs to a session on `worker`.
    pub fn forward_peer(&mut self, peer: SocketAddr, worker: usize) {
        if self.forwards.len() >= MAX_FORWARDS {
            self.forwards.clear();
        }
        self.forwards.insert(peer, worker);
    }

    /// Where a datagram from a peer without a session here goes.
    pub fn route<'a>(&self, peer: &SocketAddr, datagram: &'a [u8]) -> Route<'a> {
        if let Some(worker) = self.forwards.get(peer) {
            return Route::Forward(*worker);
        }
        match stun_ufrag(datagram) {
            Some(ufrag) => Route::Stun { ufrag },
            None => Route::Drop,
        }
    }
}

/// The local ufrag a STUN binding request is for (the first half of its USERNAME).
pub fn stun_ufrag(datagram: &[u8]) -> Option<&str> {
    // STUN messages start with two zero bits (RFC 7983 demultiplexing: 0..=3).
    if datagram.first().is_none_or(|b| *b > 3) {
        return None;
    }
    let message = StunMessage::parse(datagram).ok()?;
    if !message.is_binding_request() {
        return None;
    }
    let username = message.username()?;
    let (local, _remote) = username.split_once(':')?;
    (!local.is_empty()).then_some(local)
}
