//! The readiness backend (mio: epoll on Linux, kqueue on macOS, IOCP on Windows): the same
//! contract as the io_uring backend, done with non-blocking syscalls when the OS says a socket
//! is ready. Reads happen lazily in `next_event`, one buffer at a time, so a connection that
//! floods us takes turns with the others instead of starving them.
//!
//! File regions go out with `sendfile` on Linux (the kernel hands page-cache pages to the
//! socket, until the socket is full); elsewhere they are read into a buffer and written (a
//! portable fallback, one buffer per driver).
//!
//! UDP sockets are registered like connections and read the same lazy way, one receive per
//! turn into a 64 KiB buffer of their own pool. On Linux a receive is a `recvmsg` that reads the
//! `UDP_GRO` control message (one receive may carry several coalesced datagrams) and spots
//! `MSG_TRUNC`; a flow's datagrams go out by `sendmsg` with a `UDP_SEGMENT` control message
//! (GSO), or without GSO by `sendmmsg`, up to 64 datagrams a call. Elsewhere `recv_from` and
//! `send_to`, one datagram each. A socket that would block parks its flows until its
//! writable edge.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Poll, Token};

use crate::sendq::{FileRegion, SendQueue};
use crate::slab::Slab;
use crate::udp::{DatagramQueue, Dest, Part, UDP_BUFFER_BIT, UDP_RECV_PAYLOAD};
use crate::{
    CloseReason, ConnId, DriverConfig, Event, IoCounters, ListenerId, RecvBuf, UdpId, Waker,
};

const WAKER_TOKEN: Token = Token(usize::MAX);
/// Listener tokens live above every possible connection index.
const LISTENER_TAG: usize = 1 << 31;
/// UDP socket tokens too (connection tokens with generation 0 have indexes below 2^30).
const UDP_TAG: usize = 1 << 30;
/// Most `send_to` datagrams a socket holds while it would block; more are dropped.
const STRANGERS_MAX: usize = 1024;

fn conn_token(id: ConnId) -> Token {
    Token(((id.generation as usize) << 32) | id.index as usize)
}

fn token_conn(token: Token) -> ConnId {
    ConnId {
        index: (token.0 & 0xffff_ffff) as u32,
        generation: (token.0 >> 32) as u32,
    }
}

#[derive(PartialEq, Eq)]
enum State {
    /// Outbound, waiting for the first writable edge to learn how the connect went.
    Connecting,
    Open,
    /// `close_after_flush`: no more reads; closes once the queue is empty.
    Draining,
}

struct Conn {
    stream: TcpStream,
    sendq: SendQueue,
    state: State,
    /// The last write did not hit `WouldBlock` (or a writable edge came since).
    writable: bool,
    queued_for_flush: bool,
    queued_for_read: bool,
    /// `TCP_CORK` is on while file regions go out (see `socket::set_cork`).
    corked: bool,
    /// The peer's FIN (or an error) was reported: read until EOF, even after a short read,
    /// since no further edge will come for it.
    read_closed: bool,
}

/// A UDP flow: datagrams queued for one peer through one of the driver's sockets.
struct Flow {
    sock: UdpId,
    dest: Dest,
    queue: DatagramQueue,
    /// `close_after_flush`: closes once the queue is written.
    draining: bool,
    queued_for_flush: bool,
    /// Parked on its socket's `blocked` list until a writable edge.
    blocked: bool,
}

/// What a connection id stands for.
type Slot = crate::slab::ConnSlot<Conn, Flow>;

struct UdpSock {
    socket: mio::net::UdpSocket,
    /// The last send did not hit `WouldBlock` (or a writable edge came since).
    writable: bool,
    queued_for_read: bool,
    /// Flows waiting for a writable edge.
    blocked: Vec<ConnId>,
    /// `send_to` datagrams not yet written.
    strangers: VecDeque<(SocketAddr, Bytes)>,
}

/// Something with data to read.
#[derive(Clone, Copy)]
enum Source {
    Tcp(ConnId),
    Udp(u32),
}

pub(crate) struct EpollDriver {
    poll: Poll,
    events: mio::Events,
    waker: Waker,
    listeners: Vec<Option<TcpListener>>,
    conns: Slab<Slot>,
    udp: Vec<UdpSock>,
    /// Events ready for `next_event`.
    ready: VecDeque<Event>,
    /// Connections and UDP sockets with unread data.
    readable: VecDeque<Source>,
    /// Connections and flows with queued sends.
    to_flush: Vec<ConnId>,
    buffers: Vec<Box<[u8]>>,
    free_buffers: Vec<u16>,
    buffer_size: usize,
    /// UDP receive buffers ([`UDP_RECV_PAYLOAD`] bytes each), lent with `UDP_BUFFER_BIT` set.
    udp_buffers: Vec<Box<[u8]>>,
    free_udp_buffers: Vec<u16>,
    udp_socket_buffer: usize,
    udp_tx: UdpTx,
    max_iovecs: usize,
    counters: IoCounters,
    /// The read + write fallback's buffer for file regions (allocated on first use).
    #[cfg(not(target_os = "linux"))]
    file_buffer: Vec<u8>,
}

impl EpollDriver {
    pub(crate) fn new(config: &DriverConfig) -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Waker::from_mio(mio::Waker::new(poll.registry(), WAKER_TOKEN)?);
        Ok(EpollDriver {
            poll,
            events: mio::Events::with_capacity(1024),
            waker,
            listeners: Vec::new(),
            conns: Slab::new(),
            udp: Vec::new(),
            ready: VecDeque::new(),
            readable: VecDeque::new(),
            to_flush: Vec::new(),
            buffers: Vec::new(),
            free_buffers: Vec::new(),
            buffer_size: config.recv_buffer_size.max(512),
            udp_buffers: Vec::new(),
            free_udp_buffers: Vec::new(),
            udp_socket_buffer: config.udp_socket_buffer,
            udp_tx: UdpTx::new(),
            max_iovecs: config.max_iovecs.clamp(1, 1024),
            counters: IoCounters::default(),
            #[cfg(not(target_os = "linux"))]
            file_buffer: Vec::new(),
        })
    }

    pub(crate) fn listen(&mut self, listener: std::net::TcpListener) -> io::Result<ListenerId> {
        let mut listener = TcpListener::from_std(listener);
        let id = self.listeners.len();
        self.poll.registry().register(
            &mut listener,
            Token(LISTENER_TAG | id),
            Interest::READABLE,
        )?;
        self.listeners.push(Some(listener));
        Ok(ListenerId(id as u32))
    }

    pub(crate) fn local_addr(&self, listener: ListenerId) -> io::Result<SocketAddr> {
        match self.listeners.get(listener.0 as usize) {
            Some(Some(l)) => l.local_addr(),
            _ => Err(io::Error::new(io::ErrorKind::NotFound, "no such listener")),
        }
    }

    pub(crate) fn stop_listening(&mut self) {
        for slot in &mut self.listeners {
            if let Some(mut listener) = slot.take() {
                let _ = self.poll.registry().deregister(&mut listener);
            }
        }
    }

    pub(crate) fn waker(&self) -> Waker {
        self.waker.clone()
    }

    pub(crate) fn connect(&mut self, addr: SocketAddr) -> io::Result<ConnId> {
        let stream = TcpStream::connect(addr)?;
        let _ = stream.set_nodelay(true);
        let conn = self.conns.insert(Slot::Tcp(Conn {
            stream,
            sendq: SendQueue::default(),
            state: State::Connecting,
            writable: false,
            queued_for_flush: false,
            queued_for_read: false,
            corked: false,
            read_closed: false,
        }));
        let c = self.conns.tcp_mut(conn).expect("just inserted");
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut c.stream, conn_token(conn), interest)
        {
            self.conns.remove(conn);
            return Err(e);
        }
        Ok(conn)
    }

    /// The first writable (or error) edge of an outbound connection: up, or failed.
    fn finish_connect(&mut self, conn: ConnId) {
        let Some(c) = self.conns.tcp_mut(conn) else {
            return;
        };
        let error = match c.stream.take_error() {
            Ok(Some(e)) | Err(e) => Some(e),
            Ok(None) => c.stream.peer_addr().err(),
        };
        match error {
            Some(e) if e.kind() == io::ErrorKind::NotConnected => {} // not yet: wait for the next edge
            Some(e) => self.finish(conn, CloseReason::Error(e.kind())),
            None => {
                c.state = State::Open;
                c.writable = true;
                self.counters.connected += 1;
                self.ready.push_back(Event::Connected { conn });
                if !c.sendq.is_empty() {
                    self.queue_flush(conn);
                }
            }
        }
    }

    fn queue_flush(&mut self, conn: ConnId) {
        let queued = match self.conns.get_mut(conn) {
            Some(Slot::Tcp(c)) => &mut c.queued_for_flush,
            Some(Slot::Flow(f)) => &mut f.queued_for_flush,
            None => return,
        };
        if !*queued {
            *queued = true;
            self.to_flush.push(conn);
        }
    }

    pub(crate) fn queue(&mut self, conn: ConnId, head: &[u8], body: Bytes) {
        if let Some(c) = self.conns.tcp_mut(conn)
            && c.state != State::Draining
        {
            c.sendq.push(head, body);
            self.queue_flush(conn);
        }
    }

    pub(crate) fn queue_file(
        &mut self,
        conn: ConnId,
        file: Arc<std::fs::File>,
        offset: u64,
        len: u64,
    ) {
        if let Some(c) = self.conns.tcp_mut(conn)
            && c.state != State::Draining
            && len > 0
        {
            c.sendq.push_file(file, offset, len);
            self.queue_flush(conn);
        }
    }

    pub(crate) fn pending_bytes(&self, conn: ConnId) -> usize {
        match self.conns.get(conn) {
            Some(Slot::Tcp(c)) => c.sendq.len(),
            Some(Slot::Flow(f)) => f.queue.len(),
            None => 0,
        }
    }

    pub(crate) fn close(&mut self, conn: ConnId) {
        self.finish(conn, CloseReason::Local);
    }

    pub(crate) fn close_after_flush(&mut self, conn: ConnId) {
        if let Some(flow) = self.conns.flow_mut(conn) {
            if flow.queue.is_empty() {
                self.finish(conn, CloseReason::Local);
            } else {
                flow.draining = true;
                self.queue_flush(conn);
            }
            return;
        }
        let Some(c) = self.conns.tcp_mut(conn) else {
            return;
        };
        if c.sendq.is_empty() || c.state == State::Connecting {
            self.finish(conn, CloseReason::Local);
        } else {
            c.state = State::Draining;
            self.queue_flush(conn);
        }
    }

    /// Drops the connection (closing its socket) or flow and reports it.
    fn finish(&mut self, conn: ConnId, reason: CloseReason) {
        match self.conns.remove(conn) {
            Some(Slot::Tcp(mut c)) => {
                let _ = self.poll.registry().deregister(&mut c.stream);
            }
            Some(Slot::Flow(_)) => {}
            None => return,
        }
        self.ready.push_back(Event::Closed { conn, reason });
    }

    pub(crate) fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.flush();
        let timeout = if self.ready.is_empty() && self.readable.is_empty() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        self.counters.waits += 1;
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        let tokens: Vec<(Token, bool, bool, bool)> = self
            .events
            .iter()
            .map(|e| {
                let closed = e.is_read_closed() || e.is_error();
                (
                    e.token(),
                    e.is_readable() || closed,
                    closed,
                    e.is_writable() || e.is_write_closed(),
                )
            })
            .collect();
        for (token, readable, read_closed, writable) in tokens {
            if token == WAKER_TOKEN {
                self.waker.reset();
                self.ready.push_back(Event::Woken);
            } else if token.0 & LISTENER_TAG != 0 && token.0 >> 32 == 0 {
                self.accept_all(token.0 & !LISTENER_TAG);
            } else if token.0 & UDP_TAG != 0 && token.0 >> 32 == 0 {
                self.udp_ready((token.0 & !UDP_TAG) as u32, readable, writable);
            } else {
                let conn = token_conn(token);
                let Some(c) = self.conns.tcp_mut(conn) else {
                    continue;
                };
                if c.state == State::Connecting {
                    if !(writable || readable) {
                        continue;
                    }
                    self.finish_connect(conn);
                    let Some(c) = self.conns.tcp_mut(conn) else {
                        continue;
                    };
                    if c.state == State::Connecting {
                        continue;
                    }
                }
                let Some(c) = self.conns.tcp_mut(conn) else {
                    continue;
                };
                c.read_closed |= read_closed;
                if readable && !c.queued_for_read {
                    c.queued_for_read = true;
                    self.readable.push_back(Source::Tcp(conn));
                }
                if writable {
                    c.writable = true;
                    if !c.sendq.is_empty() {
                        self.queue_flush(conn);
                    }
                }
            }
        }
        Ok(())
    }

    /// Edge-triggered: accept until the kernel's queue is empty, or the edge is lost.
    fn accept_all(&mut self, index: usize) {
        loop {
            let Some(Some(listener)) = self.listeners.get(index) else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let conn = self.conns.insert(Slot::Tcp(Conn {
                        stream,
                        sendq: SendQueue::default(),
                        state: State::Open,
                        writable: true,
                        queued_for_flush: false,
                        queued_for_read: false,
                        read_closed: false,
                        corked: false,
                    }));
                    let c = self.conns.tcp_mut(conn).expect("just inserted");
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if let Err(e) =
                        self.poll
                            .registry()
                            .register(&mut c.stream, conn_token(conn), interest)
                    {
                        tracing::warn!(error = %e, %peer, "registering an accepted socket failed");
                        self.conns.remove(conn);
                        continue;
                    }
                    self.counters.accepted += 1;
                    self.ready.push_back(Event::Accepted {
                        listener: ListenerId(index as u32),
                        conn,
                        peer,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: the pending connection stays queued; the next edge
                    // (or the next connection) retries. Log once per burst.
                    tracing::warn!(error = %e, "accept failed");
                    return;
                }
            }
        }
    }

    fn flush(&mut self) {
        let mut batch = std::mem::take(&mut self.to_flush);
        for conn in batch.drain(..) {
            match self.conns.get(conn) {
                Some(Slot::Tcp(_)) => self.flush_one(conn),
                Some(Slot::Flow(_)) => self.flush_flow(conn),
                None => {}
            }
        }
        // Keep the allocation for next time.
        if self.to_flush.is_empty() {
            self.to_flush = batch;
        }
        self.flush_strangers();
    }

    fn flush_one(&mut self, conn: ConnId) {
        let max_iovecs = self.max_iovecs;
        let Some(c) = self.conns.tcp_mut(conn) else {
            return;
        };
        c.queued_for_flush = false;
        if c.state == State::Connecting {
            return; // flushed once connected
        }
        let mut outcome = Ok(());
        // Cork before anything of a response with a file region goes out — its head too — so
        // the head leaves in the same full-sized segment as the first file bytes, as nginx's
        // `tcp_nopush` does. A head sent alone, uncorked, costs the receiver (on loopback, the
        // whole exchange) about twice as much per response (measured: 5,000 → 10,500 responses
        // a second of 540 KB files, BENCHMARKS.md).
        #[cfg(target_os = "linux")]
        if !c.corked && c.sendq.has_file() {
            use std::os::fd::AsRawFd;
            crate::socket::set_cork(c.stream.as_raw_fd(), true);
            c.corked = true;
        }
        while c.writable && !c.sendq.is_empty() {
            self.counters.writes += 1;
            let (result, from_file) = if let Some(region) = c.sendq.front_file() {
                self.counters.write_syscalls += FILE_WRITE_SYSCALLS;
                #[cfg(target_os = "linux")]
                if !c.corked {
                    use std::os::fd::AsRawFd;
                    crate::socket::set_cork(c.stream.as_raw_fd(), true);
                    c.corked = true;
                }
                #[cfg(target_os = "linux")]
                let result = send_file(&c.stream, region);
                #[cfg(not(target_os = "linux"))]
                let result = send_file(&mut c.stream, region, &mut self.file_buffer);
                (result, true)
            } else {
                let mut slices = Vec::with_capacity(max_iovecs.min(64));
                c.sendq.front_slices(max_iovecs, &mut slices);
                self.counters.write_syscalls += 1;
                (c.stream.write_vectored(&slices), false)
            };
            match result {
                Ok(0) => {
                    outcome = Err(io::ErrorKind::WriteZero);
                    break;
                }
                Ok(n) => {
                    self.counters.bytes_sent += n as u64;
                    if from_file {
                        self.counters.file_bytes_sent += n as u64;
                    }
                    c.sendq.advance(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    outcome = Err(e.kind());
                    break;
                }
            }
        }
        let drained = c.sendq.is_empty();
        #[cfg(target_os = "linux")]
        if drained && c.corked {
            use std::os::fd::AsRawFd;
            crate::socket::set_cork(c.stream.as_raw_fd(), false);
            c.corked = false;
        }
        let draining = c.state == State::Draining;
        match outcome {
            Err(kind) => self.finish(conn, CloseReason::Error(kind)),
            Ok(()) if drained && draining => self.finish(conn, CloseReason::Local),
            Ok(()) if drained => self.ready.push_back(Event::Drained { conn }),
            Ok(()) => {}
        }
    }

    pub(crate) fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                match &event {
                    Event::Drained { conn } if self.conns.get(*conn).is_none() => continue,
                    _ => return Some(event),
                }
            }
            let event = match *self.readable.front()? {
                Source::Tcp(conn) => self.read_one(conn),
                Source::Udp(sock) => self.read_udp(sock),
            };
            if let Some(event) = event {
                return Some(event);
            }
        }
    }

    /// One read from the connection at the front of the readable queue.
    fn read_one(&mut self, conn: ConnId) -> Option<Event> {
        let Some(c) = self.conns.tcp_mut(conn) else {
            self.readable.pop_front();
            return None;
        };
        if c.state != State::Open {
            c.queued_for_read = false;
            self.readable.pop_front();
            return None;
        }

        let id = match self.free_buffers.pop() {
            Some(id) => id,
            None => {
                self.buffers
                    .push(vec![0; self.buffer_size].into_boxed_slice());
                (self.buffers.len() - 1) as u16
            }
        };
        let buffer = &mut self.buffers[id as usize];
        match c.stream.read(buffer) {
            Ok(0) => {
                self.free_buffers.push(id);
                self.readable.pop_front();
                self.finish(conn, CloseReason::PeerClosed);
                None
            }
            Ok(n) => {
                self.counters.bytes_received += n as u64;
                self.readable.pop_front();
                if n == buffer.len() || c.read_closed {
                    // Maybe more, or the EOF still to read: another turn after the others.
                    self.readable.push_back(Source::Tcp(conn));
                } else {
                    // A short read took everything the socket had, and the peer has not closed:
                    // new data, or its FIN, raises a new edge.
                    c.queued_for_read = false;
                }
                Some(Event::Received {
                    conn,
                    buf: RecvBuf { id, len: n as u32 },
                })
            }
            Err(e) => {
                self.free_buffers.push(id);
                match e.kind() {
                    io::ErrorKind::WouldBlock => {
                        c.queued_for_read = false;
                        self.readable.pop_front();
                    }
                    io::ErrorKind::Interrupted => {}
                    kind => {
                        self.readable.pop_front();
                        self.finish(conn, CloseReason::Error(kind));
                    }
                }
                None
            }
        }
    }

    pub(crate) fn recv_data(&self, buf: &RecvBuf) -> &[u8] {
        if buf.id & UDP_BUFFER_BIT != 0 {
            &self.udp_buffers[(buf.id & !UDP_BUFFER_BIT) as usize][..buf.len as usize]
        } else {
            &self.buffers[buf.id as usize][..buf.len as usize]
        }
    }

    pub(crate) fn release(&mut self, buf: RecvBuf) {
        if buf.id & UDP_BUFFER_BIT != 0 {
            self.free_udp_buffers.push(buf.id & !UDP_BUFFER_BIT);
        } else {
            self.free_buffers.push(buf.id);
        }
    }

    pub(crate) fn connection_count(&self) -> usize {
        self.conns.len()
    }

    pub(crate) fn counters(&self) -> IoCounters {
        self.counters
    }

    pub(crate) fn bind_udp(&mut self, addr: SocketAddr) -> io::Result<UdpId> {
        let socket = crate::socket::reuseport_udp(addr, self.udp_socket_buffer)?;
        let mut socket = mio::net::UdpSocket::from_std(socket);
        let id = self.udp.len();
        self.poll.registry().register(
            &mut socket,
            Token(UDP_TAG | id),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        self.udp.push(UdpSock {
            socket,
            writable: true,
            queued_for_read: false,
            blocked: Vec::new(),
            strangers: VecDeque::new(),
        });
        Ok(UdpId(id as u32))
    }

    pub(crate) fn udp_local_addr(&self, sock: UdpId) -> io::Result<SocketAddr> {
        match self.udp.get(sock.0 as usize) {
            Some(s) => s.socket.local_addr(),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no such UDP socket",
            )),
        }
    }

    pub(crate) fn open_flow(&mut self, sock: UdpId, peer: SocketAddr) -> ConnId {
        self.conns.insert(Slot::Flow(Flow {
            sock,
            dest: Dest::new(peer),
            queue: DatagramQueue::default(),
            draining: false,
            queued_for_flush: false,
            blocked: false,
        }))
    }

    pub(crate) fn send_datagrams(&mut self, flow: ConnId, data: Bytes, segment_size: u16) {
        if let Some(f) = self.conns.flow_mut(flow)
            && !f.draining
            && !data.is_empty()
        {
            f.queue.push(data, segment_size);
            self.queue_flush(flow);
        }
    }

    pub(crate) fn send_to(&mut self, sock: UdpId, peer: SocketAddr, data: &[u8]) {
        match self.udp.get_mut(sock.0 as usize) {
            Some(s) if s.strangers.len() < STRANGERS_MAX => {
                s.strangers.push_back((peer, Bytes::copy_from_slice(data)));
            }
            _ => self.counters.datagrams_dropped += 1,
        }
    }

    pub(crate) fn set_udp_gso(&mut self, on: bool) {
        self.udp_tx.gso.set(on);
    }

    pub(crate) fn udp_gso(&self) -> bool {
        self.udp_tx.gso.on()
    }

    /// A readiness edge on a UDP socket.
    fn udp_ready(&mut self, id: u32, readable: bool, writable: bool) {
        let Some(sock) = self.udp.get_mut(id as usize) else {
            return;
        };
        if readable && !sock.queued_for_read {
            sock.queued_for_read = true;
            self.readable.push_back(Source::Udp(id));
        }
        if writable {
            sock.writable = true;
            let mut blocked = std::mem::take(&mut sock.blocked);
            for conn in blocked.drain(..) {
                if let Some(flow) = self.conns.flow_mut(conn) {
                    flow.blocked = false;
                    self.queue_flush(conn);
                }
            }
            // Keep the allocation.
            self.udp[id as usize].blocked = blocked;
        }
    }

    /// Writes a flow's queued datagrams until done or its socket is full.
    fn flush_flow(&mut self, conn: ConnId) {
        let Some(flow) = self.conns.flow_mut(conn) else {
            return;
        };
        flow.queued_for_flush = false;
        match self.udp.get_mut(flow.sock.0 as usize) {
            None => {
                self.counters.datagrams_dropped += flow.queue.datagrams() as u64;
                flow.queue.clear();
            }
            Some(sock) => {
                while !flow.queue.is_empty() {
                    if !sock.writable {
                        if !flow.blocked {
                            flow.blocked = true;
                            sock.blocked.push(conn);
                        }
                        break;
                    }
                    let sent = self.udp_tx.send(
                        &sock.socket,
                        &flow.dest,
                        &mut flow.queue,
                        &mut self.counters,
                    );
                    if sent == Sent::WouldBlock {
                        sock.writable = false;
                    }
                }
            }
        }
        if flow.queue.is_empty() {
            if flow.draining {
                self.finish(conn, CloseReason::Local);
            } else {
                self.ready.push_back(Event::Drained { conn });
            }
        }
    }

    /// Writes the `send_to` datagrams of every socket that can take them.
    fn flush_strangers(&mut self) {
        for sock in &mut self.udp {
            while sock.writable
                && let Some((peer, data)) = sock.strangers.pop_front()
            {
                self.counters.udp_send_calls += 1;
                match sock.socket.send_to(&data, peer) {
                    Ok(n) => {
                        self.counters.datagrams_sent += 1;
                        self.counters.bytes_sent += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        sock.strangers.push_front((peer, data));
                        sock.writable = false;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                        sock.strangers.push_front((peer, data));
                    }
                    Err(e) => {
                        self.counters.datagrams_dropped += 1;
                        tracing::debug!(error = %e, %peer, "UDP send_to failed; datagram dropped");
                    }
                }
            }
        }
    }

    /// One receive from the UDP socket at the front of the readable queue.
    fn read_udp(&mut self, id: u32) -> Option<Event> {
        let Some(sock) = self.udp.get_mut(id as usize) else {
            self.readable.pop_front();
            return None;
        };
        let index = match self.free_udp_buffers.pop() {
            Some(index) => index,
            None => {
                debug_assert!(self.udp_buffers.len() < UDP_BUFFER_BIT as usize);
                self.udp_buffers
                    .push(vec![0; UDP_RECV_PAYLOAD].into_boxed_slice());
                (self.udp_buffers.len() - 1) as u16
            }
        };
        match recv_datagrams(&sock.socket, &mut self.udp_buffers[index as usize]) {
            Ok(got) => {
                // Edge-triggered: read until the socket would block, taking turns with the
                // others.
                self.readable.pop_front();
                self.readable.push_back(Source::Udp(id));
                match got.peer {
                    Some(peer) if !got.truncated && got.len > 0 => {
                        self.counters.bytes_received += got.len as u64;
                        self.counters.datagrams_received +=
                            crate::udp::datagram_count(got.len, got.segment) as u64;
                        Some(Event::Datagrams {
                            sock: UdpId(id),
                            peer,
                            buf: RecvBuf {
                                id: UDP_BUFFER_BIT | index,
                                len: got.len as u32,
                            },
                            segment_size: got.segment,
                        })
                    }
                    _ => {
                        // Cut short (never delivered cut), empty, or from no IP address.
                        self.free_udp_buffers.push(index);
                        self.counters.datagrams_dropped += 1;
                        None
                    }
                }
            }
            Err(e) => {
                self.free_udp_buffers.push(index);
                match e.kind() {
                    io::ErrorKind::WouldBlock => {
                        sock.queued_for_read = false;
                        self.readable.pop_front();
                    }
                    io::ErrorKind::Interrupted => {}
                    io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset => {
                        // An ICMP report about an earlier send (Windows reports them on
                        // unconnected sockets too): once per report; read on.
                        self.readable.pop_front();
                        self.readable.push_back(Source::Udp(id));
                    }
                    _ => {
                        // Re-registering raises a fresh edge if datagrams wait, without
                        // spinning here on an error that would repeat.
                        tracing::debug!(error = %e, "UDP receive error ignored");
                        sock.queued_for_read = false;
                        self.readable.pop_front();
                        let _ = self.poll.registry().reregister(
                            &mut sock.socket,
                            Token(UDP_TAG | id as usize),
                            Interest::READABLE | Interest::WRITABLE,
                        );
                    }
                }
                None
            }
        }
    }
}

/// What became of one UDP send call.
#[derive(PartialEq, Eq)]
enum Sent {
    /// Written, dropped, or to be tried again at once: go on.
    Progress,
    /// The socket is full: wait for its writable edge.
    WouldBlock,
}

/// The UDP send path: GSO on or off, and scratch space every send reuses.
struct UdpTx {
    gso: crate::udp::Gso,
    parts: Vec<Part>,
    #[cfg(target_os = "linux")]
    iovecs: Vec<libc::iovec>,
    #[cfg(target_os = "linux")]
    msgs: Vec<libc::mmsghdr>,
}

impl UdpTx {
    fn new() -> UdpTx {
        UdpTx {
            gso: crate::udp::Gso::new(),
            parts: Vec::new(),
            #[cfg(target_os = "linux")]
            iovecs: Vec::new(),
            #[cfg(target_os = "linux")]
            msgs: Vec::new(),
        }
    }

    /// Hands the next datagrams of `queue` to the kernel with one send call: a GSO `sendmsg`,
    /// or a `sendmmsg` of single datagrams.
    #[cfg(target_os = "linux")]
    fn send(
        &mut self,
        socket: &mio::net::UdpSocket,
        dest: &Dest,
        queue: &mut DatagramQueue,
        counters: &mut IoCounters,
    ) -> Sent {
        use std::os::fd::AsRawFd;
        let fd = socket.as_raw_fd();
        self.parts.clear();
        if self.gso.on() {
            let Some(batch) = queue.take(true, &mut self.parts) else {
                return Sent::Progress;
            };
            self.fill_iovecs();
            let mut control = crate::udp::ControlBuf::new();
            // SAFETY: msghdr is plain data; zeroed is "no name, no control".
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_name = dest.raw.as_ptr() as *mut libc::c_void;
            msg.msg_namelen = dest.raw.len();
            msg.msg_iov = self.iovecs.as_mut_ptr();
            msg.msg_iovlen = self.iovecs.len() as _;
            let segmented = batch.datagrams > 1;
            if segmented {
                // A batch of several datagrams is at most GSO_MAX_BYTES: its segment fits.
                msg.msg_controllen = control.set_segment(batch.segment as u16) as _;
                msg.msg_control = control.0.as_mut_ptr().cast();
            }
            counters.udp_send_calls += 1;
            // SAFETY: the name, the iovecs (into `parts`, alive) and the control buffer are
            // valid for the call.
            let n = unsafe { libc::sendmsg(fd, &msg, 0) };
            if n >= 0 {
                counters.datagrams_sent += batch.datagrams as u64;
                counters.bytes_sent += n as u64;
                self.parts.clear();
                return Sent::Progress;
            }
            let error = io::Error::last_os_error();
            return self.failed(error, batch.datagrams, segmented, queue, counters);
        }
        while self.parts.len() < crate::udp::SENDMMSG_MAX
            && queue.take(false, &mut self.parts).is_some()
        {}
        if self.parts.is_empty() {
            return Sent::Progress;
        }
        self.fill_iovecs();
        self.msgs.clear();
        for iov in &mut self.iovecs {
            // SAFETY: as above.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_name = dest.raw.as_ptr() as *mut libc::c_void;
            msg.msg_namelen = dest.raw.len();
            msg.msg_iov = iov;
            msg.msg_iovlen = 1;
            self.msgs.push(libc::mmsghdr {
                msg_hdr: msg,
                msg_len: 0,
            });
        }
        counters.udp_send_calls += 1;
        // SAFETY: every message points at the name and at its own iovec, all alive for the
        // call; the kernel writes only `msg_len`.
        let n = unsafe { libc::sendmmsg(fd, self.msgs.as_mut_ptr(), self.msgs.len() as _, 0) };
        if n > 0 {
            let n = n as usize;
            counters.datagrams_sent += n as u64;
            counters.bytes_sent += self.msgs[..n]
                .iter()
                .map(|m| u64::from(m.msg_len))
                .sum::<u64>();
            // Stopped short: the next call reports why (or sends the rest).
            queue.put_back(self.parts.drain(n..));
            self.parts.clear();
            return Sent::Progress;
        }
        let error = if n == 0 {
            io::ErrorKind::WouldBlock.into()
        } else {
            io::Error::last_os_error()
        };
        // The error is the first datagram's: the rest were not tried.
        queue.put_back(self.parts.drain(1..));
        self.failed(error, 1, false, queue, counters)
    }

    #[cfg(target_os = "linux")]
    fn fill_iovecs(&mut self) {
        self.iovecs.clear();
        self.iovecs
            .extend(self.parts.iter().map(|part| libc::iovec {
                iov_base: part.data.as_ptr() as *mut libc::c_void,
                iov_len: part.data.len(),
            }));
    }

    /// Sends the next datagram of `queue` (no GSO here).
    #[cfg(not(target_os = "linux"))]
    fn send(
        &mut self,
        socket: &mio::net::UdpSocket,
        dest: &Dest,
        queue: &mut DatagramQueue,
        counters: &mut IoCounters,
    ) -> Sent {
        self.parts.clear();
        if queue.take(false, &mut self.parts).is_none() {
            return Sent::Progress;
        }
        counters.udp_send_calls += 1;
        match socket.send_to(&self.parts[0].data, dest.addr) {
            Ok(n) => {
                counters.datagrams_sent += 1;
                counters.bytes_sent += n as u64;
                self.parts.clear();
                Sent::Progress
            }
            Err(error) => self.failed(error, 1, false, queue, counters),
        }
    }

    /// A send of `self.parts` (`datagrams` datagrams) failed: keep them for later (full
    /// socket, interrupted, or GSO refused: sent again one by one), or drop and count them.
    fn failed(
        &mut self,
        error: io::Error,
        datagrams: usize,
        segmented: bool,
        queue: &mut DatagramQueue,
        counters: &mut IoCounters,
    ) -> Sent {
        match error.kind() {
            io::ErrorKind::WouldBlock => {
                queue.put_back(self.parts.drain(..));
                Sent::WouldBlock
            }
            io::ErrorKind::Interrupted => {
                queue.put_back(self.parts.drain(..));
                Sent::Progress
            }
            _ if segmented && self.gso.refused(&error) => {
                queue.put_back(self.parts.drain(..));
                Sent::Progress
            }
            _ => {
                counters.datagrams_dropped += datagrams as u64;
                tracing::debug!(error = %error, datagrams, "UDP send failed; datagrams dropped");
                self.parts.clear();
                Sent::Progress
            }
        }
    }
}

/// One receive: `len` bytes of datagrams of `segment` bytes each (the last may be shorter).
struct Received {
    len: usize,
    peer: Option<SocketAddr>,
    segment: usize,
    /// The datagram did not fit (`MSG_TRUNC`).
    truncated: bool,
}

/// Receives with `recvmsg`, reading the `UDP_GRO` segment size and `MSG_TRUNC`.
#[cfg(target_os = "linux")]
fn recv_datagrams(socket: &mio::net::UdpSocket, buffer: &mut [u8]) -> io::Result<Received> {
    use std::os::fd::AsRawFd;
    // SAFETY: plain data; zeroed is valid.
    let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut control = crate::udp::ControlBuf::new();
    let mut iov = libc::iovec {
        iov_base: buffer.as_mut_ptr().cast(),
        iov_len: buffer.len(),
    };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = crate::udp::CONTROL_LEN as _;
    // SAFETY: every pointer in `msg` is valid for the call, with the lengths given.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let len = n as usize;
    let name_len = (msg.msg_namelen as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: the kernel wrote `name_len` bytes of the storage (all of it is initialized).
    let name = unsafe {
        std::slice::from_raw_parts(
            (&name as *const libc::sockaddr_storage).cast::<u8>(),
            name_len,
        )
    };
    let control_len = (msg.msg_controllen as usize).min(crate::udp::CONTROL_LEN);
    Ok(Received {
        len,
        peer: crate::udp::sockaddr_from_bytes(name),
        segment: crate::udp::gro_segment(&control.0[..control_len])
            .map_or(len, |segment| segment.min(len)),
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
    })
}

/// Receives with `recv_from`: one datagram, no GRO. The 64 KiB buffer holds any datagram.
#[cfg(not(target_os = "linux"))]
fn recv_datagrams(socket: &mio::net::UdpSocket, buffer: &mut [u8]) -> io::Result<Received> {
    let (len, peer) = socket.recv_from(buffer)?;
    Ok(Received {
        len,
        peer: Some(peer),
        segment: len,
        truncated: false,
    })
}

/// Syscalls one file write costs: `sendfile`, or a read and a write.
#[cfg(target_os = "linux")]
const FILE_WRITE_SYSCALLS: u64 = 1;
#[cfg(not(target_os = "linux"))]
const FILE_WRITE_SYSCALLS: u64 = 2;

/// Most bytes one `sendfile` call is asked for (the kernel caps a call at 2 GiB − 4 KiB).
#[cfg(target_os = "linux")]
const SENDFILE_MAX: u64 = 1 << 30;

/// Writes the front of a file region with `sendfile`: the bytes go from the page cache to the
/// socket without entering user space. A file that ends before the region does is
/// `UnexpectedEof`.
#[cfg(target_os = "linux")]
fn send_file(stream: &TcpStream, region: &FileRegion) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut offset = libc::off_t::try_from(region.offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset out of range"))?;
    let count = region.len.min(SENDFILE_MAX) as usize;
    // SAFETY: both fds are open for the duration of the call (the stream and the File are
    // borrowed); `offset` is a valid off_t the kernel updates and we then drop.
    let n = unsafe {
        libc::sendfile(
            stream.as_raw_fd(),
            region.file.as_raw_fd(),
            &mut offset,
            count,
        )
    };
    match n {
        n if n < 0 => Err(io::Error::last_os_error()),
        0 => Err(io::ErrorKind::UnexpectedEof.into()),
        n => Ok(n as usize),
    }
}

/// The portable fallback: reads the front of a file region into `buffer` and writes it. What
/// the socket does not take is read again next time (simple, and rare enough: the socket had
/// room when we got here).
#[cfg(not(target_os = "linux"))]
fn send_file(
    stream: &mut TcpStream,
    region: &FileRegion,
    buffer: &mut Vec<u8>,
) -> io::Result<usize> {
    const BUFFER: usize = 64 * 1024;
    if buffer.is_empty() {
        buffer.resize(BUFFER, 0);
    }
    let want = region.len.min(BUFFER as u64) as usize;
    let n = read_at(&region.file, &mut buffer[..want], region.offset)?;
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    stream.write(&buffer[..n])
}

#[cfg(all(not(target_os = "linux"), unix))]
fn read_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buf, offset)
}

#[cfg(not(any(unix, windows)))]
fn read_at(_file: &std::fs::File, _buf: &mut [u8], _offset: u64) -> io::Result<usize> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flow whose socket would block waits, parked, for the socket's writable edge, then
    /// goes on in order.
    #[test]
    fn flows_parked_on_a_full_socket_resume_on_its_writable_edge() {
        let mut d = EpollDriver::new(&DriverConfig::default()).unwrap();
        let a = d.bind_udp("127.0.0.1:0".parse().unwrap()).unwrap();
        let b = d.bind_udp("127.0.0.1:0".parse().unwrap()).unwrap();
        let flow = d.open_flow(a, d.udp_local_addr(b).unwrap());
        d.wait(Some(Duration::ZERO)).unwrap();
        while d.next_event().is_some() {}
        // As if a send had hit WouldBlock.
        d.udp[a.0 as usize].writable = false;
        for i in 0..5u8 {
            d.send_datagrams(flow, Bytes::from(vec![i; 100]), 0);
        }
        d.send_to(a, d.udp_local_addr(b).unwrap(), b"stranger");
        d.wait(Some(Duration::ZERO)).unwrap();
        assert_eq!(d.pending_bytes(flow), 500);
        assert_eq!(d.udp[a.0 as usize].blocked, [flow]);
        assert!(d.conns.flow_mut(flow).unwrap().blocked);
        // A fresh writable edge, as the kernel raises when room comes back.
        let sock = &mut d.udp[a.0 as usize];
        d.poll
            .registry()
            .reregister(
                &mut sock.socket,
                Token(UDP_TAG | a.0 as usize),
                Interest::READABLE | Interest::WRITABLE,
            )
            .unwrap();
        let mut got = Vec::new();
        let mut drained = false;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while (got.len() < 6 || !drained) && std::time::Instant::now() < deadline {
            d.wait(Some(Duration::from_millis(10))).unwrap();
            while let Some(event) = d.next_event() {
                match event {
                    Event::Datagrams {
                        buf, segment_size, ..
                    } => {
                        got.extend(d.recv_data(&buf).chunks(segment_size).map(<[u8]>::to_vec));
                        d.release(buf);
                    }
                    Event::Drained { conn } => drained |= conn == flow,
                    _ => {}
                }
            }
        }
        let mut want: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 100]).collect();
        want.insert(0, b"stranger".to_vec());
        got.sort_by_key(|d| d != b"stranger");
        assert_eq!(got, want);
        assert!(drained);
        assert_eq!(d.pending_bytes(flow), 0);
        assert!(d.udp[a.0 as usize].blocked.is_empty());
    }
}
