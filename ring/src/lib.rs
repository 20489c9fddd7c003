//! sluice-ring: the data-plane I/O engine. One API, two backends chosen at start:
//!
//! - **uring** (Linux, io_uring): multishot accept, multishot recv from a provided buffer ring,
//!   vectored `sendmsg`, file regions by linked `splice` (file → pipe → socket), UDP by
//!   multishot `recvmsg` (with `UDP_GRO`) from a second buffer ring and `sendmsg`s
//!   (with `UDP_SEGMENT`), wait timeouts, and an eventfd read that another core completes to
//!   wake this one.
//! - **epoll** (mio: epoll on Linux, kqueue on macOS, IOCP on Windows): the same operations as
//!   non-blocking syscalls on readiness; file regions by `sendfile` on Linux, by read + write
//!   elsewhere; UDP by `recvmsg`/`sendmsg` with GRO/GSO (or `sendmmsg` without GSO) on Linux,
//!   by `recv_from`/`send_to` elsewhere.
//!
//! A [`Driver`] belongs to one thread (thread-per-core). The caller's loop is:
//!
//! ```text
//! loop {
//!     driver.wait(timeout)?;                 // flush queued sends, block for I/O, a wake or the timeout
//!     while let Some(event) = driver.next_event() { ... }   // handle, queue sends, release buffers
//! }
//! ```
//!
//! Received bytes are lent as a [`RecvBuf`]: read them with [`Driver::recv_data`], then give the
//! buffer back with [`Driver::release`] before the next `wait`. Sends are queued per connection
//! ([`Driver::send`] for shared refcounted buffers, [`Driver::send_copy`] for small
//! per-connection headers, [`Driver::send_file`] for a region of a file) and written at the next
//! `wait` as one vectored write per connection — on io_uring, one submission for all
//! connections — with file regions written in order between the vectored writes. Every
//! accepted connection ends with exactly one [`Event::Closed`], whoever closed it.
//!
//! UDP: [`Driver::bind_udp`] binds a socket (`SO_REUSEPORT`, so every worker binds the same
//! address); what arrives comes as [`Event::Datagrams`], lent like TCP bytes and possibly
//! several coalesced datagrams (GRO). Replies go through a *flow* ([`Driver::open_flow`]): a
//! [`ConnId`] standing for (socket, peer) that queues datagrams ([`Driver::send_datagrams`]),
//! counts as a connection, drains and closes like one, and is written at the next `wait` in as
//! few `sendmsg` calls as GSO allows ([`Driver::set_udp_gso`]). [`Driver::send_to`] answers a
//! peer that has no flow.
//!
//! All `unsafe` and every syscall of sluice live in this crate.

use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

mod epoll;
mod sendq;
mod slab;
mod socket;
mod udp;
#[cfg(target_os = "linux")]
mod uring;
mod waker;

pub use sendq::INLINE_HEAD;
pub use waker::Waker;

/// Which I/O engine a driver runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Uring,
    Epoll,
}

impl Backend {
    /// The preferred backend on this machine: io_uring when the kernel offers every operation we
    /// use, else epoll. The `Err` side says why io_uring was passed over, for the startup log.
    pub fn detect() -> (Backend, Option<String>) {
        match uring_support() {
            Ok(()) => (Backend::Uring, None),
            Err(why) => (Backend::Epoll, Some(why)),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Uring => "uring",
            Backend::Epoll => "epoll",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "uring" | "io_uring" => Ok(Backend::Uring),
            "epoll" => Ok(Backend::Epoll),
            other => Err(format!(
                "unknown io backend {other:?} (expected uring or epoll)"
            )),
        }
    }
}

/// Whether io_uring can run here with the features the uring backend uses.
pub fn uring_support() -> Result<(), String> {
    #[cfg(target_os = "linux")]
    {
        uring::probe()
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err("io_uring is Linux-only".to_string())
    }
}

/// Sizes of a driver's resources. Every field has a default that suits a media server worker.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// Size of each receive buffer (bytes).
    pub recv_buffer_size: usize,
    /// Number of receive buffers (a power of two for io_uring's buffer ring).
    pub recv_buffers: u16,
    /// io_uring submission queue entries.
    pub ring_entries: u32,
    /// Most buffers gathered into one vectored write (the kernel's limit is 1024).
    pub max_iovecs: usize,
    /// Number of UDP receive buffers, 64 KiB each so a GRO receive fits (io_uring: a second
    /// buffer ring, registered with the first [`Driver::bind_udp`]; a power of two. epoll:
    /// allocated as needed, this is unused).
    pub udp_recv_buffers: u16,
    /// `SO_RCVBUF`/`SO_SNDBUF` asked for each UDP socket, in bytes (the kernel caps it at
    /// `net.core.rmem_max`/`wmem_max`); 0 keeps the system default.
    pub udp_socket_buffer: usize,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            recv_buffer_size: 16 * 1024,
            recv_buffers: 256,
            ring_entries: 4096,
            max_iovecs: 256,
            udp_recv_buffers: 32,
            udp_socket_buffer: 2 << 20,
        }
    }
}

/// A connection, valid from its [`Event::Accepted`] (or [`Driver::connect`]) to its
/// [`Event::Closed`]. The generation
/// makes a stale id harmless after its slot is reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    index: u32,
    generation: u32,
}

impl ConnId {
    /// An id no connection of any driver has: for clients known before (or without) a
    /// connection of their own, such as a WebRTC session being signalled.
    pub const NONE: ConnId = ConnId {
        index: u32::MAX,
        generation: u32::MAX,
    };

    /// A dense small integer, unique among live connections of one driver: callers can index
    /// their own tables with it.
    pub fn index(self) -> usize {
        self.index as usize
    }
}

/// A listening socket of one driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId(pub(crate) u32);

/// A UDP socket of one driver (from [`Driver::bind_udp`]); it lives as long as the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpId(pub(crate) u32);

/// Received bytes (TCP) or datagrams (UDP) lent by the driver; read with
/// [`Driver::recv_data`], return with [`Driver::release`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a RecvBuf must be given back with Driver::release"]
pub struct RecvBuf {
    pub(crate) id: u16,
    pub(crate) len: u32,
}

impl RecvBuf {
    pub fn len(&self) -> usize {
        self.len as usize
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed its side (EOF).
    PeerClosed,
    /// We asked for it ([`Driver::close`] or [`Driver::close_after_flush`]).
    Local,
    /// A socket error (reset, broken pipe, ...).
    Error(io::ErrorKind),
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::PeerClosed => f.write_str("peer closed"),
            CloseReason::Local => f.write_str("closed by server"),
            CloseReason::Error(kind) => write!(f, "socket error: {kind}"),
        }
    }
}

/// What happened on a driver.
#[derive(Debug)]
pub enum Event {
    Accepted {
        listener: ListenerId,
        conn: ConnId,
        peer: SocketAddr,
    },
    /// An outbound connection from [`Driver::connect`] is established. (A failed one ends
    /// with `Closed` instead.)
    Connected {
        conn: ConnId,
    },
    Received {
        conn: ConnId,
        buf: RecvBuf,
    },
    /// Everything queued for the connection has been written.
    Drained {
        conn: ConnId,
    },
    /// The connection is gone; its id is dead from now on.
    Closed {
        conn: ConnId,
        reason: CloseReason,
    },
    /// Another thread called [`Waker::wake`].
    Woken,
    /// Datagrams from `peer` on `sock`: `buf` holds one datagram, or with GRO several
    /// coalesced ones of `segment_size` bytes each (the last may be shorter); split with
    /// `chunks(segment_size)`. `segment_size` is at least 1; empty datagrams are not reported.
    /// Give `buf` back with [`Driver::release`] like any receive.
    Datagrams {
        sock: UdpId,
        peer: SocketAddr,
        buf: RecvBuf,
        segment_size: usize,
    },
}

/// Per-driver I/O counters: plain integers, owned by the driver's thread, summed by whoever
/// reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoCounters {
    /// Times the driver entered the kernel to wait or submit (`io_uring_enter` / `epoll_wait`).
    pub waits: u64,
    /// Stream (TCP) write operations issued: one per vectored write, one per file write (a
    /// `sendfile` call on epoll; on io_uring a linked round of splices moving up to a
    /// pipe-full). UDP sends count in `udp_send_calls` instead.
    pub writes: u64,
    /// Syscalls issued for stream writes on the epoll backend (on io_uring, writes ride on
    /// `waits`).
    pub write_syscalls: u64,
    /// Bytes written to sockets, file bytes and UDP payload included.
    pub bytes_sent: u64,
    /// The part of `bytes_sent` that came from files ([`Driver::send_file`]).
    pub file_bytes_sent: u64,
    /// Bytes received, UDP payload included.
    pub bytes_received: u64,
    pub accepted: u64,
    pub connected: u64,
    /// UDP datagrams received (a GRO receive counts each datagram it carries).
    pub datagrams_received: u64,
    /// UDP datagrams the kernel took (a GSO send counts each datagram it carries).
    pub datagrams_sent: u64,
    /// UDP send calls: `sendmsg`/`sendmmsg`/`sendto` syscalls on epoll, `SENDMSG` operations
    /// on io_uring.
    pub udp_send_calls: u64,
    /// UDP datagrams dropped: received truncated (or empty), or refused by a send with an
    /// error other than would-block (too big, unreachable, ...).
    pub datagrams_dropped: u64,
}

/// The I/O engine of one worker thread.
pub struct Driver {
    imp: Imp,
}

enum Imp {
    #[cfg(target_os = "linux")]
    Uring(Box<uring::UringDriver>),
    Epoll(Box<epoll::EpollDriver>),
}

macro_rules! dispatch {
    ($self:expr, $d:ident => $body:expr) => {
        match &$self.imp {
            #[cfg(target_os = "linux")]
            Imp::Uring($d) => $body,
            Imp::Epoll($d) => $body,
        }
    };
    (mut $self:expr, $d:ident => $body:expr) => {
        match &mut $self.imp {
            #[cfg(target_os = "linux")]
            Imp::Uring($d) => $body,
            Imp::Epoll($d) => $body,
        }
    };
}

impl Driver {
    /// Creates a driver. On io_uring with single-issuer mode, create it on the thread that will
    /// run it.
    pub fn new(backend: Backend, config: &DriverConfig) -> io::Result<Driver> {
        let imp = match backend {
            #[cfg(target_os = "linux")]
            Backend::Uring => Imp::Uring(Box::new(uring::UringDriver::new(config)?)),
            #[cfg(not(target_os = "linux"))]
            Backend::Uring => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "io_uring is Linux-only",
                ));
            }
            Backend::Epoll => Imp::Epoll(Box::new(epoll::EpollDriver::new(config)?)),
        };
        Ok(Driver { imp })
    }

    pub fn backend(&self) -> Backend {
        match self.imp {
            #[cfg(target_os = "linux")]
            Imp::Uring(_) => Backend::Uring,
            Imp::Epoll(_) => Backend::Epoll,
        }
    }

    /// Starts accepting TCP connections on `addr` with `SO_REUSEPORT`, so every worker can
    /// listen on the same address and the kernel spreads connections across them.
    pub fn listen(&mut self, addr: SocketAddr) -> io::Result<ListenerId> {
        let listener = socket::reuseport_listener(addr)?;
        dispatch!(mut self, d => d.listen(listener))
    }

    /// The local address of a listener (useful after binding port 0).
    pub fn local_addr(&self, listener: ListenerId) -> io::Result<SocketAddr> {
        dispatch!(self, d => d.local_addr(listener))
    }

    /// Stops accepting on every listener (graceful shutdown). Open connections are untouched,
    /// and so are UDP sockets (their flows are live sessions); they close with the driver.
    pub fn stop_listening(&mut self) {
        dispatch!(mut self, d => d.stop_listening())
    }

    /// Opens an outbound TCP connection. The id is usable at once (sends queue until the
    /// connection is up); [`Event::Connected`] or [`Event::Closed`] follows.
    pub fn connect(&mut self, addr: SocketAddr) -> io::Result<ConnId> {
        dispatch!(mut self, d => d.connect(addr))
    }

    /// A handle other threads use to wake this driver out of [`Driver::wait`].
    pub fn waker(&self) -> Waker {
        dispatch!(self, d => d.waker())
    }

    /// Queues a shared buffer to be written to `conn` at the next [`Driver::wait`]. Ignored if
    /// the connection is closing or gone, or is a UDP flow (flows take datagrams only:
    /// [`Driver::send_datagrams`]); the same holds for the other stream sends below.
    pub fn send(&mut self, conn: ConnId, data: Bytes) {
        dispatch!(mut self, d => d.queue(conn, &[], data))
    }

    /// Queues a copy of `data`. Up to [`INLINE_HEAD`] bytes are stored inline in the queue (no
    /// allocation); longer data is copied into a buffer of its own.
    pub fn send_copy(&mut self, conn: ConnId, data: &[u8]) {
        dispatch!(mut self, d => d.queue(conn, data, Bytes::new()))
    }

    /// Queues a per-connection `header` (copied inline when it is at most [`INLINE_HEAD`]
    /// bytes) followed by a shared `body`: the shape of a media message to one viewer.
    pub fn send_with_header(&mut self, conn: ConnId, header: &[u8], body: Bytes) {
        dispatch!(mut self, d => d.queue(conn, header, body))
    }

    /// Queues `len` bytes of `file` from `offset`, after everything queued before, written
    /// without passing through user space (io_uring: splice file → pipe → socket; epoll:
    /// `sendfile` on Linux; a portable read + write fallback elsewhere). [`Event::Drained`]
    /// fires as for other sends; a file that ends early (truncated while sending) closes the
    /// connection with `CloseReason::Error(UnexpectedEof)`. A zero-length region is a no-op.
    /// Ignored if the connection is closing or gone.
    ///
    /// `file` should be a regular file opened for reading. The driver keeps its own reference
    /// until the last operation reading it has completed, so the caller may drop its `Arc` at
    /// once. Bytes are read when they are written, not when queued: a file changed in between
    /// sends its new contents.
    pub fn send_file(&mut self, conn: ConnId, file: Arc<std::fs::File>, offset: u64, len: u64) {
        dispatch!(mut self, d => d.queue_file(conn, file, offset, len))
    }

    /// Bytes queued or in flight for `conn` and not yet written, file regions included (for a
    /// flow, its datagrams): the back-pressure signal.
    pub fn pending_bytes(&self, conn: ConnId) -> usize {
        dispatch!(self, d => d.pending_bytes(conn))
    }

    /// Closes `conn` now, dropping whatever is still queued. An [`Event::Closed`] follows. On a
    /// flow, datagrams already handed to the kernel still go out.
    pub fn close(&mut self, conn: ConnId) {
        dispatch!(mut self, d => d.close(conn))
    }

    /// Stops reading from `conn`, writes what is queued, then closes. If the peer never reads,
    /// this never finishes: callers bound it with their own timeout and [`Driver::close`]. On a
    /// flow: writes its queued datagrams, then closes.
    pub fn close_after_flush(&mut self, conn: ConnId) {
        dispatch!(mut self, d => d.close_after_flush(conn))
    }

    /// Writes queued sends, then blocks until there is an event, a wake-up or `timeout` passes.
    /// Returns at once when events are already waiting.
    pub fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        dispatch!(mut self, d => d.wait(timeout))
    }

    /// Takes the next event gathered by the last [`Driver::wait`].
    pub fn next_event(&mut self) -> Option<Event> {
        dispatch!(mut self, d => d.next_event())
    }

    /// The bytes of a received buffer.
    pub fn recv_data(&self, buf: &RecvBuf) -> &[u8] {
        dispatch!(self, d => d.recv_data(buf))
    }

    /// Gives a receive buffer back to the driver (TCP bytes and UDP datagrams alike).
    pub fn release(&mut self, buf: RecvBuf) {
        dispatch!(mut self, d => d.release(buf))
    }

    /// Live connections (accepted or connected, and UDP flows, not yet reported closed).
    pub fn connection_count(&self) -> usize {
        dispatch!(self, d => d.connection_count())
    }

    pub fn counters(&self) -> IoCounters {
        dispatch!(self, d => d.counters())
    }

    /// Binds a UDP socket on `addr` with `SO_REUSEPORT` (every worker binds the same address;
    /// Linux's reuseport hash of the 4-tuple keeps each peer on one worker). Non-blocking.
    /// Turns on `UDP_GRO` where the OS has it (Linux), so one receive may carry several
    /// datagrams from one peer ([`Event::Datagrams`]). The socket lives as long as the driver.
    pub fn bind_udp(&mut self, addr: SocketAddr) -> io::Result<UdpId> {
        dispatch!(mut self, d => d.bind_udp(addr))
    }

    /// The local address of a UDP socket (useful after binding port 0).
    pub fn udp_local_addr(&self, sock: UdpId) -> io::Result<SocketAddr> {
        dispatch!(self, d => d.udp_local_addr(sock))
    }

    /// Opens a flow: a [`ConnId`] standing for (`sock`, `peer`), used by connection-oriented
    /// protocols on UDP (SRT, WebRTC). A flow has no socket of its own; it counts in
    /// [`Driver::connection_count`], works with [`Driver::pending_bytes`], [`Driver::close`]
    /// and [`Driver::close_after_flush`] (writes queued datagrams, then closes), and ends with
    /// exactly one [`Event::Closed`] (`reason: Local`) like every connection. The stream sends
    /// ([`Driver::send`], [`Driver::send_copy`], [`Driver::send_with_header`],
    /// [`Driver::send_file`]) ignore a flow: flows take datagrams only. Datagrams from the peer
    /// arrive as [`Event::Datagrams`] on `sock`, not on the flow: the caller maps peers to
    /// flows. A `sock` this driver does not have gives a flow whose datagrams are all dropped.
    pub fn open_flow(&mut self, sock: UdpId, peer: SocketAddr) -> ConnId {
        dispatch!(mut self, d => d.open_flow(sock, peer))
    }

    /// Queues datagrams for a flow: `data` holds consecutive datagrams of `segment_size` bytes
    /// each (the last may be shorter; 0 makes `data` one datagram). Written at the next
    /// [`Driver::wait`]: with GSO on, in as few `sendmsg` calls with a `UDP_SEGMENT` control
    /// message as the kernel allows (≤ 64 datagrams and ≤ 65,000 bytes per call, segments of
    /// at most 1,452 bytes; consecutive calls with one segment size share a `sendmsg` when the
    /// earlier ones end on a full-sized datagram, and a single shorter datagram may end it);
    /// with GSO off (or not Linux), one datagram per send (on epoll on Linux,
    /// several per `sendmmsg`). [`Event::Drained`] follows as for TCP. A datagram the kernel
    /// refuses (too big, no route) is dropped and counted (`datagrams_dropped`); a full
    /// socket buffer only delays. Ignored if the flow is closing or gone, or `conn` is not a
    /// flow.
    pub fn send_datagrams(&mut self, flow: ConnId, data: Bytes, segment_size: u16) {
        dispatch!(mut self, d => d.send_datagrams(flow, data, segment_size))
    }

    /// Sends one datagram (copied) from `sock` to `peer` outside any flow: for answers to
    /// strangers (a rejected handshake). Best effort: written at the next [`Driver::wait`]
    /// (while the socket is full, epoll holds up to 1,024 of them per socket, io_uring waits
    /// for room); dropped and counted (`datagrams_dropped`) when the kernel refuses it or the
    /// socket is unknown. No event follows.
    pub fn send_to(&mut self, sock: UdpId, peer: SocketAddr, data: &[u8]) {
        dispatch!(mut self, d => d.send_to(sock, peer, data))
    }

    /// Turns GSO (`UDP_SEGMENT`) on or off for this driver's UDP sends (benchmarks compare
    /// both). Default: on where the kernel supports `UDP_SEGMENT`; asking for it elsewhere
    /// leaves it off. A driver whose GSO sends the kernel refuses (`EIO`/`ENOBUFS`: a device
    /// without it) turns it off by itself and says so once in the log.
    pub fn set_udp_gso(&mut self, on: bool) {
        let on = on && socket::udp_gso_supported();
        dispatch!(mut self, d => d.set_udp_gso(on))
    }

    /// Whether this driver's UDP sends use GSO.
    pub fn udp_gso(&self) -> bool {
        dispatch!(self, d => d.udp_gso())
    }
}

#[cfg(test)]
mod tests;
