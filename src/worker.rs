//! A worker: one thread, one I/O driver, its own listeners (`SO_REUSEPORT`), its connections
//! and its mirrors of the streams its viewers watch. Workers talk to each other only through
//! the hub (shared stream logs) and each other's inbox + waker.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_ring::{CloseReason, ConnId, Driver, Event, ListenerId, UdpId, Waker};

use crate::config::Config;
use crate::control::views::{ClientView, WorkerCounters};
use crate::control::{CounterCells, HookJob, Identity, Verdict};
use crate::hub::local::LocalStream;
use crate::hub::{Hub, Stream};
use crate::rtc::Claim;
use crate::session::http::HttpSession;
use crate::session::rtc::RtcSession;
use crate::session::rtc_listener::{Route, RtcListener};
use crate::session::rtmp::RtmpSession;
use crate::session::srt::SrtSession;
use crate::session::srt_listener::{Handshake, SrtListener};
use crate::session::{ClientInfo, Ctx, RATE_SAMPLE_EVERY, Session, Timers};

/// How often idle timeouts are checked.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(500);
/// After a shutdown request, how long open connections get to close.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

/// Messages between workers.
pub enum WorkerMsg {
    /// A stream this worker has viewers of got new frames.
    StreamUpdated(Arc<Stream>),
    /// The control plane wants this worker's clients.
    Snapshot(tokio::sync::oneshot::Sender<Vec<ClientView>>),
    /// Close this client (by id): the API's kick.
    Kick(String),
    /// A hook's verdict for a session waiting on this worker.
    HookVerdict(Verdict),
    /// A WebRTC datagram that reached another worker for a session that runs here.
    RtcDatagram {
        peer: SocketAddr,
        data: bytes::Bytes,
    },
    /// HLS requests parked on this worker (connection, client serial) may be answerable now.
    HlsReady(Vec<(ConnId, u64)>),
    /// Stop accepting, close every connection, exit.
    Shutdown,
}

/// How other threads reach a worker.
pub struct WorkerLink {
    pub waker: Waker,
    inbox: Mutex<Vec<WorkerMsg>>,
}

impl WorkerLink {
    pub fn new(waker: Waker) -> WorkerLink {
        WorkerLink {
            waker,
            inbox: Mutex::new(Vec::new()),
        }
    }

    pub fn post(&self, msg: WorkerMsg) {
        self.inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(msg);
        self.waker.wake();
    }

    fn take(&self, into: &mut Vec<WorkerMsg>) {
        into.append(&mut self.inbox.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// State every worker shares.
pub struct Shared {
    pub config: Config,
    /// The I/O backend every worker runs on.
    pub backend: sluice_ring::Backend,
    pub hub: Hub,
    /// HLS/DASH packaging state of every stream, and the paths that reach it.
    pub hls: crate::hls::HlsRegistry,
    /// WebRTC sessions: answered and waiting for their media, or running on a worker.
    pub rtc: crate::rtc::RtcRegistry,
    pub links: Vec<WorkerLink>,
    /// This server's identity in API replies and hook bodies.
    pub identity: Identity,
    /// Callbacks for the control plane to make.
    pub hooks: tokio::sync::mpsc::UnboundedSender<HookJob>,
    /// Each worker's counters, published every housekeeping tick, summed by `/metrics`.
    pub counters: CounterCells,
    /// Open connections per client address (kept only with `max_connections_per_ip`).
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// The canonical root of static files, if it exists.
    pub static_root: Option<std::path::PathBuf>,
    /// Open client connections across all workers (for `max_connections`).
    pub connections: AtomicUsize,
    next_client: AtomicU64,
    pub shutting_down: AtomicBool,
}

impl Shared {
    pub fn new(
        config: Config,
        backend: sluice_ring::Backend,
        links: Vec<WorkerLink>,
        hooks: tokio::sync::mpsc::UnboundedSender<HookJob>,
    ) -> Shared {
        Shared {
            backend,
            hub: Hub::new(links.len()),
            hls: crate::hls::HlsRegistry::default(),
            rtc: crate::rtc::RtcRegistry::default(),
            identity: Identity::new(),
            hooks,
            counters: (0..links.len()).map(|_| Mutex::default()).collect(),
            per_ip: Mutex::new(HashMap::new()),
            static_root: crate::static_files::canonical_root(&config.http_server.dir),
            config,
            links,
            connections: AtomicUsize::new(0),
            next_client: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
        }
    }

    /// Counts a new connection from `ip` against `max_connections_per_ip`; `false` when over.
    fn admit_ip(&self, ip: IpAddr) -> bool {
        let limit = self.config.max_connections_per_ip;
        if limit == 0 {
            return true;
        }
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let count = per_ip.entry(ip).or_insert(0);
        if *count >= limit {
            return false;
        }
        *count += 1;
        true
    }

    /// A new client serial number (for clients without a connection of their own: HLS).
    pub fn next_serial(&self) -> u64 {
        self.next_client.fetch_add(1, Ordering::Relaxed)
    }

    fn release_ip(&self, ip: IpAddr) {
        if self.config.max_connections_per_ip == 0 {
            return;
        }
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&ip);
            }
        }
    }

    pub fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        for link in &self.links {
            link.post(WorkerMsg::Shutdown);
        }
    }
}

/// What a worker's driver listens on: RTMP, and HTTP, SRT and WebRTC when enabled.
pub struct Listeners {
    pub rtmp: ListenerId,
    pub http: Option<ListenerId>,
    pub srt: Option<UdpId>,
    pub rtc: Option<UdpId>,
}

pub struct Worker {
    pub id: usize,
    pub shared: Arc<Shared>,
    pub driver: Driver,
    rtmp_listener: ListenerId,
    http_listener: Option<ListenerId>,
    /// The SRT socket, its peers and handshakes (when SRT is enabled).
    srt: Option<SrtListener>,
    /// The WebRTC socket and its peers (when WebRTC is enabled).
    rtc: Option<RtcListener>,
    /// The last WebRTC receive (one datagram, or a GRO run of them), out of the driver's buffer.
    rtc_received: Vec<u8>,
    /// Wake-ups sessions asked for (SRT and WebRTC timers).
    timers: Timers,
    sessions: Vec<Option<Session>>,
    pub locals: HashMap<u64, LocalStream>,
    /// Streams published here that got frames in this batch: (stream, workers to wake).
    pub wake: Vec<usize>,
    pending_wakes: Vec<(usize, Arc<Stream>)>,
    /// Local streams with frames to sync into their mirror.
    dirty: Vec<u64>,
    inbox: Vec<WorkerMsg>,
    next_housekeeping: Instant,
    next_rate_sample: Instant,
    /// What this worker publishes for `/metrics`.
    counters: WorkerCounters,
    shutdown_deadline: Option<Instant>,
}

impl Worker {
    /// A worker around a driver already listening (RTMP, and HTTP and SRT when enabled); run
    /// it on the driver's thread.
    pub fn new(id: usize, driver: Driver, listeners: Listeners, shared: Arc<Shared>) -> Worker {
        let srt = listeners.srt.and_then(|sock| {
            let local = driver.udp_local_addr(sock).ok()?;
            Some(SrtListener::new(sock, local, &shared.config))
        });
        Worker {
            srt,
            rtc: listeners.rtc.map(RtcListener::new),
            rtc_received: Vec::new(),
            timers: Timers::new(),
            id,
            shared,
            driver,
            rtmp_listener: listeners.rtmp,
            http_listener: listeners.http,
            sessions: Vec::new(),
            locals: HashMap::new(),
            wake: Vec::new(),
            pending_wakes: Vec::new(),
            dirty: Vec::new(),
            inbox: Vec::new(),
            next_housekeeping: Instant::now() + HOUSEKEEPING_INTERVAL,
            shutdown_deadline: None,
            next_rate_sample: Instant::now() + RATE_SAMPLE_EVERY,
            counters: WorkerCounters::default(),
        }
    }

    /// The event loop; returns after a shutdown once every connection is closed.
    pub fn run(mut self) {
        loop {
            let now = Instant::now();
            // Whole milliseconds, rounded up, as epoll's timeouts are on both backends: the
            // timers of hundreds of SRT sessions spread over a millisecond then cost one wake-up,
            // not one each (io_uring's nanosecond timeouts made the worker sleep and wake
            // ~10× more often and cost 2× the CPU at 500 SRT viewers; see BENCHMARKS.md).
            let timeout = self.next_deadline(now).saturating_duration_since(now);
            let timeout = Duration::from_millis(timeout.as_nanos().div_ceil(1_000_000) as u64);
            if let Err(e) = self.driver.wait(Some(timeout)) {
                tracing::error!(worker = self.id, error = %e, "I/O driver failed; worker stops");
                return;
            }
            let now = Instant::now();
            while let Some(event) = self.driver.next_event() {
                self.handle_event(event, now);
            }
            self.run_timers(now);
            self.deliver_wakes();
            self.sync_dirty(now);
            self.flush_due(now);
            if now >= self.next_housekeeping {
                self.housekeeping(now);
                self.next_housekeeping = now + HOUSEKEEPING_INTERVAL;
            }
            if let Some(deadline) = self.shutdown_deadline {
                if self.driver.connection_count() == 0 {
                    return;
                }
                if now >= deadline {
                    tracing::warn!(
                        worker = self.id,
                        open = self.driver.connection_count(),
                        "shutdown grace period over; exiting with connections open"
                    );
                    return;
                }
            }
        }
    }

    fn next_deadline(&self, now: Instant) -> Instant {
        let mut deadline = self.next_housekeeping;
        for local in self.locals.values() {
            if local.unflushed > 0 {
                let mw = self.mw_latency(local);
                deadline = deadline.min(local.last_flush + mw);
            }
        }
        if let Some(shutdown) = self.shutdown_deadline {
            deadline = deadline.min(shutdown);
        }
        if let Some(std::cmp::Reverse((at, _))) = self.timers.peek() {
            deadline = deadline.min(*at);
        }
        deadline.max(now)
    }

    fn mw_latency(&self, local: &LocalStream) -> Duration {
        let (_, vhost) = self.shared.config.vhost(&local.stream.key.vhost);
        Duration::from_millis(vhost.play.mw_latency_ms)
    }

    fn handle_event(&mut self, event: Event, now: Instant) {
        match event {
            Event::Accepted {
                listener,
                conn,
                peer,
            } => self.accepted(listener, conn, peer, now),
            Event::Received { conn, buf } => {
                let mut session = self.take_session(conn);
                if let Some(session) = &mut session {
                    let data = self.driver.recv_data(&buf);
                    let input = session.handle_input(now, data, &self.shared.config);
                    self.driver.release(buf);
                    session.after_input(input, &mut self.ctx(conn, now));
                } else {
                    self.driver.release(buf);
                }
                self.put_session(conn, session);
            }
            Event::Drained { conn } => {
                let mut session = self.take_session(conn);
                if let Some(session) = &mut session {
                    session.drained(&mut self.ctx(conn, now));
                }
                self.put_session(conn, session);
            }
            Event::Closed { conn, reason } => self.closed(conn, reason, now),
            Event::Datagrams {
                sock,
                peer,
                buf,
                segment_size,
            } if self.rtc.as_ref().is_some_and(|r| r.sock == sock) => {
                // Copied into a reused buffer so the driver's goes back at once (a session's
                // input borrows the worker mutably); no allocation per datagram.
                let mut received = std::mem::take(&mut self.rtc_received);
                received.clear();
                received.extend_from_slice(self.driver.recv_data(&buf));
                self.driver.release(buf);
                let size = if segment_size == 0 {
                    received.len().max(1)
                } else {
                    segment_size
                };
                for datagram in received.chunks(size) {
                    self.rtc_datagram(peer, datagram, now);
                }
                self.rtc_received = received;
            }
            Event::Datagrams {
                sock: _,
                peer,
                buf,
                segment_size,
            } => {
                let packets = crate::session::srt_listener::parse_datagrams(
                    self.driver.recv_data(&buf),
                    segment_size,
                    peer,
                );
                self.driver.release(buf);
                let (packets, dropped) = packets;
                if let Some(srt) = &mut self.srt {
                    srt.dropped += dropped;
                }
                for packet in packets {
                    self.srt_packet(peer, packet, now);
                }
            }
            // The server makes no outbound connections yet (forward and edge will).
            Event::Connected { .. } => {}
            Event::Woken => {
                let mut inbox = std::mem::take(&mut self.inbox);
                self.shared.links[self.id].take(&mut inbox);
                for msg in inbox.drain(..) {
                    match msg {
                        WorkerMsg::StreamUpdated(stream) => self.mark_dirty(stream.id),
                        WorkerMsg::Shutdown => self.begin_shutdown(now),
                        WorkerMsg::Snapshot(reply) => {
                            let _ = reply.send(self.client_views(now));
                        }
                        WorkerMsg::Kick(id) => self.kick(&id, now),
                        WorkerMsg::HookVerdict(verdict) => self.verdict(verdict, now),
                        WorkerMsg::HlsReady(conns) => self.hls_ready(&conns, now),
                        WorkerMsg::RtcDatagram { peer, data } => {
                            self.rtc_datagram(peer, &data, now)
                        }
                    }
                }
                self.inbox = inbox;
            }
        }
    }

    fn accepted(&mut self, listener: ListenerId, conn: ConnId, peer: SocketAddr, now: Instant) {
        let http = Some(listener) == self.http_listener;
        debug_assert!(http || listener == self.rtmp_listener);
        let open = self.shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
        let serial = self.shared.next_client.fetch_add(1, Ordering::Relaxed);
        let client = ClientInfo::new(serial, conn, peer, now);
        if open > self.shared.config.max_connections || self.shutdown_deadline.is_some() {
            tracing::warn!(
                client = %client.id,
                %peer,
                max_connections = self.shared.config.max_connections,
                "refusing connection: too many connections"
            );
            self.counters.refused += 1;
            self.driver.close(conn);
            // Counted until its Closed event, like every connection.
            return;
        }
        if !self.shared.admit_ip(peer.ip()) {
            tracing::warn!(
                client = %client.id,
                %peer,
                max_connections_per_ip = self.shared.config.max_connections_per_ip,
                "refusing connection: too many connections from this address"
            );
            self.counters.refused += 1;
            self.driver.close(conn);
            return;
        }
        if http {
            self.counters.http_connections += 1;
        } else {
            self.counters.rtmp_connections += 1;
        }
        let proto = if http { "http" } else { "rtmp" };
        tracing::info!(client = %client.id, %peer, proto, worker = self.id, "client connected");
        let session = if http {
            Session::Http(Box::new(HttpSession::new(client, &self.shared.config, now)))
        } else {
            Session::Rtmp(Box::new(RtmpSession::new(client, &self.shared.config, now)))
        };
        self.put_session(conn, Some(session));
    }

    fn closed(&mut self, conn: ConnId, reason: CloseReason, now: Instant) {
        self.shared.connections.fetch_sub(1, Ordering::SeqCst);
        if let Some(mut session) = self.take_session(conn) {
            // Only connections that got a session were counted per address and protocol.
            match session {
                Session::Rtmp(_) => self.counters.rtmp_connections -= 1,
                Session::Http(_) => self.counters.http_connections -= 1,
                Session::Srt(_) => self.counters.srt_connections -= 1,
                Session::Rtc(_) => self.counters.rtc_connections -= 1,
            }
            let peer = session.client().peer;
            if let Session::Srt(_) = session {
                if let Some(srt) = &mut self.srt {
                    srt.forget(&peer, conn);
                }
            } else if let Session::Rtc(_) = session {
                if let Some(rtc) = &mut self.rtc {
                    rtc.forget(conn);
                }
            } else {
                self.shared.release_ip(peer.ip());
            }
            session.closed(reason, &mut self.ctx(conn, now));
        }
    }

    /// An SRT packet: to its session, or to the listener as a handshake.
    fn srt_packet(&mut self, peer: SocketAddr, packet: srt_protocol::packet::Packet, now: Instant) {
        let Some(srt) = &mut self.srt else { return };
        if let Some(conn) = srt.flow(&peer) {
            let mut session = self.take_session(conn);
            if let Some(Session::Srt(s)) = &mut session {
                s.handle_packet(packet, &mut self.ctx(conn, now));
            }
            self.put_session(conn, session);
            return;
        }
        let accepted = match srt.handshake(peer, packet, now, &self.shared, &mut self.driver) {
            Handshake::Continue => return,
            Handshake::Accepted(accepted) => accepted,
        };
        if self.shutdown_deadline.is_some() {
            return;
        }
        let conn = self.driver.open_flow(srt.sock, peer);
        srt.add_peer(peer, conn);
        self.shared.connections.fetch_add(1, Ordering::SeqCst);
        self.counters.srt_connections += 1;
        let serial = self.shared.next_client.fetch_add(1, Ordering::Relaxed);
        let client = ClientInfo::new(serial, conn, peer, now);
        let mut session = SrtSession::new(client, *accepted);
        session.start(&mut self.ctx(conn, now));
        self.put_session(conn, Some(Session::Srt(Box::new(session))));
    }

    /// A WebRTC datagram: to its session, or — a STUN request naming a session answered by
    /// signalling — the start of a session on this worker.
    fn rtc_datagram(&mut self, peer: SocketAddr, datagram: &[u8], now: Instant) {
        let Some(rtc) = &mut self.rtc else { return };
        if let Some(conn) = rtc.flow(&peer) {
            let mut session = self.take_session(conn);
            if let Some(Session::Rtc(s)) = &mut session
                && !s.handle_datagram(peer, datagram, &mut self.ctx(conn, now))
            {
                if let Some(rtc) = &mut self.rtc {
                    rtc.dropped += 1;
                }
            }
            self.put_session(conn, session);
            return;
        }
        let ufrag = match rtc.route(&peer, datagram) {
            Route::Drop => {
                rtc.dropped += 1;
                return;
            }
            Route::Forward(worker) => {
                self.forward_rtc(worker, peer, datagram);
                return;
            }
            Route::Stun { ufrag } => ufrag.to_string(),
        };
        if let Some(conn) = rtc.session(&ufrag) {
            // A second address of a peer whose session runs here.
            rtc.add_peer(peer, conn);
            self.rtc_datagram(peer, datagram, now);
            return;
        }
        let pending = match self.shared.rtc.claim(&ufrag, self.id) {
            Claim::New(pending) => pending,
            Claim::Owner(worker) if worker != self.id => {
                rtc.forward_peer(peer, worker);
                self.forward_rtc(worker, peer, datagram);
                return;
            }
            Claim::Owner(_) | Claim::Unknown => {
                rtc.dropped += 1;
                return;
            }
        };
        if self.shutdown_deadline.is_some() {
            return;
        }
        let conn = self.driver.open_flow(rtc.sock, peer);
        rtc.add_session(&ufrag, peer, conn);
        let sock = rtc.sock;
        self.shared.connections.fetch_add(1, Ordering::SeqCst);
        self.counters.rtc_connections += 1;
        let client = ClientInfo::new(pending.serial, conn, peer, now);
        let mut session = RtcSession::new(client, *pending, sock);
        session.start(&mut self.ctx(conn, now));
        session.handle_datagram(peer, datagram, &mut self.ctx(conn, now));
        self.put_session(conn, Some(Session::Rtc(Box::new(session))));
    }

    fn forward_rtc(&self, worker: usize, peer: SocketAddr, datagram: &[u8]) {
        if let Some(link) = self.shared.links.get(worker) {
            link.post(WorkerMsg::RtcDatagram {
                peer,
                data: bytes::Bytes::copy_from_slice(datagram),
            });
        }
    }

    /// Calls back the sessions whose wake-up is due.
    fn run_timers(&mut self, now: Instant) {
        while let Some(std::cmp::Reverse((at, conn))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let mut session = self.take_session(conn);
            match &mut session {
                Some(Session::Srt(s)) => s.on_timer(&mut self.ctx(conn, now)),
                Some(Session::Rtc(s)) => s.on_timer(&mut self.ctx(conn, now)),
                _ => {}
            }
            self.put_session(conn, session);
        }
    }

    pub fn ctx(&mut self, conn: ConnId, now: Instant) -> Ctx<'_> {
        Ctx {
            conn,
            now,
            worker: self.id,
            driver: &mut self.driver,
            shared: &self.shared,
            locals: &mut self.locals,
            wake: &mut self.wake,
            pending_wakes: &mut self.pending_wakes,
            dirty: &mut self.dirty,
            counters: &mut self.counters,
            timers: &mut self.timers,
        }
    }

    fn take_session(&mut self, conn: ConnId) -> Option<Session> {
        let slot = self.sessions.get_mut(conn.index())?;
        match slot {
            Some(session) if session.conn() == conn => slot.take(),
            _ => None,
        }
    }

    fn put_session(&mut self, conn: ConnId, session: Option<Session>) {
        // A session that asked to close stays until its Closed event, so its log line and
        // cleanup happen once, there.
        let Some(session) = session else { return };
        let index = conn.index();
        if self.sessions.len() <= index {
            self.sessions.resize_with(index + 1, || None);
        }
        self.sessions[index] = Some(session);
    }

    fn mark_dirty(&mut self, stream_id: u64) {
        if !self.dirty.contains(&stream_id) {
            self.dirty.push(stream_id);
        }
    }

    /// Tells other workers about frames published here in this batch: one inbox push and one
    /// wake per (worker, stream) per batch.
    fn deliver_wakes(&mut self) {
        let mut woken: Vec<usize> = Vec::new();
        for (worker, stream) in self.pending_wakes.drain(..) {
            if worker == self.id {
                if !self.dirty.contains(&stream.id) {
                    self.dirty.push(stream.id);
                }
                continue;
            }
            let link = &self.shared.links[worker];
            link.inbox
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(WorkerMsg::StreamUpdated(stream));
            if !woken.contains(&worker) {
                woken.push(worker);
            }
        }
        for worker in woken {
            self.shared.links[worker].waker.wake();
        }
    }

    /// Pulls new frames into local mirrors; writes them now or when merged writes are due.
    fn sync_dirty(&mut self, now: Instant) {
        let dirty = std::mem::take(&mut self.dirty);
        for stream_id in &dirty {
            let Some(local) = self.locals.get_mut(stream_id) else {
                continue;
            };
            local.unflushed += local.sync(self.id);
            let (_, vhost) = self.shared.config.vhost(&local.stream.key.vhost);
            let due = local.unflushed >= vhost.play.mw_msgs
                || now >= local.last_flush + Duration::from_millis(vhost.play.mw_latency_ms);
            if due {
                self.flush_stream(*stream_id, now);
            } else {
                // By index, not a copy of the list per frame: a write never removes a viewer
                // (closing ones leave at their `Closed` event).
                let mut next = 0;
                while let Some(conn) = self
                    .locals
                    .get(stream_id)
                    .and_then(|l| l.realtime.get(next).copied())
                {
                    next += 1;
                    let mut session = self.take_session(conn);
                    if let Some(session) = &mut session {
                        session.write_pending(&mut self.ctx(conn, now));
                    }
                    self.put_session(conn, session);
                }
            }
        }
        let mut dirty = dirty;
        dirty.clear();
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    fn flush_due(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .locals
            .iter()
            .filter(|(_, local)| {
                local.unflushed > 0 && now >= local.last_flush + self.mw_latency(local)
            })
            .map(|(id, _)| *id)
            .collect();
        for stream_id in due {
            self.flush_stream(stream_id, now);
        }
    }

    /// Writes pending frames to every local viewer of a stream, then drops frames none of
    /// them needs any more.
    pub fn flush_stream(&mut self, stream_id: u64, now: Instant) {
        let Some(local) = self.locals.get_mut(&stream_id) else {
            return;
        };
        local.last_flush = now;
        local.unflushed = 0;
        // Cloned: a write may close a viewer, and the list must not change under us.
        let viewers = local.viewers.clone();
        let mut min_cursor = u64::MAX;
        for &conn in &viewers {
            let mut session = self.take_session(conn);
            if let Some(session) = &mut session
                && let Some(cursor) = session.write_pending(&mut self.ctx(conn, now))
            {
                min_cursor = min_cursor.min(cursor);
            }
            self.put_session(conn, session);
        }
        if let Some(local) = self.locals.get_mut(&stream_id)
            && min_cursor != u64::MAX
        {
            local.trim(min_cursor);
        }
    }

    fn housekeeping(&mut self, now: Instant) {
        let sample_rates = now >= self.next_rate_sample;
        if sample_rates {
            self.next_rate_sample = now + RATE_SAMPLE_EVERY;
        }
        for index in 0..self.sessions.len() {
            let Some(conn) = self.sessions[index].as_ref().map(Session::conn) else {
                continue;
            };
            let mut session = self.take_session(conn);
            if let Some(session) = &mut session {
                if sample_rates {
                    let client = session.client_mut();
                    let (bytes_in, bytes_out) = (client.bytes_in, client.bytes_out);
                    client.rate.sample(now, bytes_in, bytes_out);
                }
                session.check_timeouts(&mut self.ctx(conn, now));
            }
            self.put_session(conn, session);
        }
        if let Some(srt) = &mut self.srt {
            srt.expire(now);
            self.counters.srt_dropped_datagrams = srt.dropped;
        }
        if let Some(rtc) = &self.rtc {
            self.counters.rtc_dropped_datagrams = rtc.dropped;
        }
        if self.id == 0 {
            let ttl = Duration::from_millis(self.shared.config.rtc_server.connect_timeout_ms);
            for expired in self.shared.rtc.expire(now, ttl) {
                tracing::warn!(
                    ip = %expired.client_ip,
                    stream = %expired.request.path(),
                    session = %expired.session_id,
                    "rtc session never connected; dropped (connect_timeout)"
                );
            }
            self.shared.hls.dispose_expired(now);
            self.expire_hls_viewers(now);
        }
        self.counters.io = self.driver.counters();
        *self.shared.counters[self.id]
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = self.counters;
    }

    /// Every client of this worker, for the API (static-file HTTP connections are not
    /// clients).
    fn client_views(&self, now: Instant) -> Vec<ClientView> {
        self.sessions
            .iter()
            .flatten()
            .filter_map(|session| session.view(now, self.id))
            .collect()
    }

    fn kick(&mut self, id: &str, now: Instant) {
        let Some(conn) = self
            .sessions
            .iter()
            .flatten()
            .find(|s| s.client().id == id)
            .map(Session::conn)
        else {
            return;
        };
        let mut session = self.take_session(conn);
        if let Some(session) = &mut session {
            tracing::info!(client = %id, "kicked by the API");
            session.kick(&mut self.ctx(conn, now));
        }
        self.put_session(conn, session);
    }

    fn verdict(&mut self, verdict: Verdict, now: Instant) {
        let conn = verdict.target.conn;
        let mut session = self.take_session(conn);
        if let Some(session) = &mut session
            && session.client().serial == verdict.target.serial
        {
            session.verdict(verdict, &mut self.ctx(conn, now));
        }
        self.put_session(conn, session);
    }

    /// HLS viewers that stopped asking: logged, `on_stop`.
    fn expire_hls_viewers(&mut self, now: Instant) {
        let config = &self.shared.config;
        let gone = self.shared.hls.sessions.expire(now, |viewer| {
            let fragment = config.vhost(&viewer.key.vhost).1.hls.hls_fragment;
            Duration::from_secs_f64((3.0 * fragment).max(10.0))
        });
        for viewer in gone {
            tracing::info!(
                client = %viewer.client.id,
                peer = %viewer.client.peer,
                proto = "hls",
                stream = %viewer.name,
                bytes_out = viewer.client.bytes_out,
                duration_ms = now.saturating_duration_since(viewer.client.started).as_millis() as u64,
                "hls viewer left"
            );
            let hooks = &config.vhost(&viewer.key.vhost).1.http_hooks;
            let urls = hooks.urls(crate::control::Hook::OnStop);
            if let Some(mut body) = viewer.hook_body
                && !urls.is_empty()
            {
                if let Some(fields) = body.as_object_mut() {
                    fields.insert("action".into(), "on_stop".into());
                    fields.remove("pageUrl");
                }
                let job = HookJob {
                    hook: crate::control::Hook::OnStop,
                    urls: urls.to_vec(),
                    timeout: Duration::from_millis(hooks.timeout_ms),
                    body,
                    verdict: None,
                    reply: None,
                };
                let _ = self.shared.hooks.send(job);
            }
        }
    }

    fn hls_ready(&mut self, conns: &[(ConnId, u64)], now: Instant) {
        for &(conn, serial) in conns {
            let mut session = self.take_session(conn);
            if let Some(Session::Http(http)) = &mut session
                && http.client.serial == serial
            {
                http.hls_ready(&mut self.ctx(conn, now));
            }
            self.put_session(conn, session);
        }
    }

    fn begin_shutdown(&mut self, now: Instant) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        self.shutdown_deadline = Some(now + SHUTDOWN_GRACE);
        self.driver.stop_listening();
        for index in 0..self.sessions.len() {
            let Some(conn) = self.sessions[index].as_ref().map(Session::conn) else {
                continue;
            };
            let mut session = self.take_session(conn);
            if let Some(session) = &mut session {
                session.shut_down(&mut self.ctx(conn, now));
            }
            self.put_session(conn, session);
        }
    }
}
