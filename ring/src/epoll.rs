//! The readiness backend (mio: epoll on Linux, kqueue on macOS, IOCP on Windows): the same
//! contract as the io_uring backend, done with non-blocking syscalls when the OS says a socket
//! is ready. Reads happen lazily in `next_event`, one buffer at a time, so a connection that
//! floods us takes turns with the others instead of starving them.
//!
//! File regions go out with `sendfile` on Linux (the kernel hands page-cache pages to the
//! socket, until the socket is full); elsewhere they are read into a buffer and written (a
//! portable fallback, one buffer per driver).

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
use crate::{CloseReason, ConnId, DriverConfig, Event, IoCounters, ListenerId, RecvBuf, Waker};

const WAKER_TOKEN: Token = Token(usize::MAX);
/// Listener tokens live above every possible connection index.
const LISTENER_TAG: usize = 1 << 31;

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

pub(crate) struct EpollDriver {
    poll: Poll,
    events: mio::Events,
    waker: Waker,
    listeners: Vec<Option<TcpListener>>,
    conns: Slab<Conn>,
    /// Events ready for `next_event`.
    ready: VecDeque<Event>,
    /// Connections with unread data.
    readable: VecDeque<ConnId>,
    /// Connections with queued sends.
    to_flush: Vec<ConnId>,
    buffers: Vec<Box<[u8]>>,
    free_buffers: Vec<u16>,
    buffer_size: usize,
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
            ready: VecDeque::new(),
            readable: VecDeque::new(),
            to_flush: Vec::new(),
            buffers: Vec::new(),
            free_buffers: Vec::new(),
            buffer_size: config.recv_buffer_size.max(512),
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
        let conn = self.conns.insert(Conn {
            stream,
            sendq: SendQueue::default(),
            state: State::Connecting,
            writable: false,
            queued_for_flush: false,
            queued_for_read: false,
            corked: false,
            read_closed: false,
        });
        let c = self.conns.get_mut(conn).expect("just inserted");
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
        let Some(c) = self.conns.get_mut(conn) else {
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
        if let Some(c) = self.conns.get_mut(conn)
            && !c.queued_for_flush
        {
            c.queued_for_flush = true;
            self.to_flush.push(conn);
        }
    }

    pub(crate) fn queue(&mut self, conn: ConnId, head: &[u8], body: Bytes) {
        if let Some(c) = self.conns.get_mut(conn)
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
        if let Some(c) = self.conns.get_mut(conn)
            && c.state != State::Draining
            && len > 0
        {
            c.sendq.push_file(file, offset, len);
            self.queue_flush(conn);
        }
    }

    pub(crate) fn pending_bytes(&self, conn: ConnId) -> usize {
        self.conns.get(conn).map_or(0, |c| c.sendq.len())
    }

    pub(crate) fn close(&mut self, conn: ConnId) {
        self.finish(conn, CloseReason::Local);
    }

    pub(crate) fn close_after_flush(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        if c.sendq.is_empty() || c.state == State::Connecting {
            self.finish(conn, CloseReason::Local);
        } else {
            c.state = State::Draining;
            self.queue_flush(conn);
        }
    }

    /// Drops the connection (closing its socket) and reports it.
    fn finish(&mut self, conn: ConnId, reason: CloseReason) {
        if let Some(mut c) = self.conns.remove(conn) {
            let _ = self.poll.registry().deregister(&mut c.stream);
            self.ready.push_back(Event::Closed { conn, reason });
        }
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
            } else {
                let conn = token_conn(token);
                let Some(c) = self.conns.get_mut(conn) else {
                    continue;
                };
                if c.state == State::Connecting {
                    if !(writable || readable) {
                        continue;
                    }
                    self.finish_connect(conn);
                    let Some(c) = self.conns.get_mut(conn) else {
                        continue;
                    };
                    if c.state == State::Connecting {
                        continue;
                    }
                }
                let Some(c) = self.conns.get_mut(conn) else {
                    continue;
                };
                c.read_closed |= read_closed;
                if readable && !c.queued_for_read {
                    c.queued_for_read = true;
                    self.readable.push_back(conn);
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
                    let conn = self.conns.insert(Conn {
                        stream,
                        sendq: SendQueue::default(),
                        state: State::Open,
                        writable: true,
                        queued_for_flush: false,
                        queued_for_read: false,
                        read_closed: false,
                        corked: false,
                    });
                    let c = self.conns.get_mut(conn).expect("just inserted");
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
            self.flush_one(conn);
        }
        // Keep the allocation for next time.
        if self.to_flush.is_empty() {
            self.to_flush = batch;
        }
    }

    fn flush_one(&mut self, conn: ConnId) {
        let max_iovecs = self.max_iovecs;
        let Some(c) = self.conns.get_mut(conn) else {
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
            let conn = *self.readable.front()?;
            if let Some(event) = self.read_one(conn) {
                return Some(event);
            }
        }
    }

    /// One read from the connection at the front of the readable queue.
    fn read_one(&mut self, conn: ConnId) -> Option<Event> {
        let Some(c) = self.conns.get_mut(conn) else {
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
                    self.readable.push_back(conn);
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
        &self.buffers[buf.id as usize][..buf.len as usize]
    }

    pub(crate) fn release(&mut self, buf: RecvBuf) {
        self.free_buffers.push(buf.id);
    }

    pub(crate) fn connection_count(&self) -> usize {
        self.conns.len()
    }

    pub(crate) fn counters(&self) -> IoCounters {
        self.counters
    }
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
