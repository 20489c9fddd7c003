//! sluice-ring: the data-plane I/O engine. One API, two backends chosen at start:
//!
//! - **uring** (Linux, io_uring): multishot accept, multishot recv from a provided buffer ring,
//!   vectored `sendmsg`, file regions by linked `splice` (file → pipe → socket), wait timeouts,
//!   and an eventfd read that another core completes to wake this one.
//! - **epoll** (mio: epoll on Linux, kqueue on macOS, IOCP on Windows): the same operations as
//!   non-blocking syscalls on readiness; file regions by `sendfile` on Linux, by read + write
//!   elsewhere.
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
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            recv_buffer_size: 16 * 1024,
            recv_buffers: 256,
            ring_entries: 4096,
            max_iovecs: 256,
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
    /// A dense small integer, unique among live connections of one driver: callers can index
    /// their own tables with it.
    pub fn index(self) -> usize {
        self.index as usize
    }
}

/// A listening socket of one driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId(pub(crate) u32);

/// Received bytes lent by the driver; read with [`Driver::recv_data`], return with
/// [`Driver::release`].
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
}

/// Per-driver I/O counters: plain integers, owned by the driver's thread, summed by whoever
/// reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoCounters {
    /// Times the driver entered the kernel to wait or submit (`io_uring_enter` / `epoll_wait`).
    pub waits: u64,
    /// Write operations issued: one per vectored write, one per file write (a `sendfile` call
    /// on epoll; on io_uring a linked round of splices moving up to a pipe-full).
    pub writes: u64,
    /// Syscalls issued for writes on the epoll backend (on io_uring, writes ride on `waits`).
    pub write_syscalls: u64,
    /// Bytes written to sockets, file bytes included.
    pub bytes_sent: u64,
    /// The part of `bytes_sent` that came from files ([`Driver::send_file`]).
    pub file_bytes_sent: u64,
    pub bytes_received: u64,
    pub accepted: u64,
    pub connected: u64,
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

    /// Stops accepting on every listener (graceful shutdown). Open connections are untouched.
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
    /// the connection is closing or gone.
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

    /// Bytes queued or in flight for `conn` and not yet written, file regions included: the
    /// back-pressure signal.
    pub fn pending_bytes(&self, conn: ConnId) -> usize {
        dispatch!(self, d => d.pending_bytes(conn))
    }

    /// Closes `conn` now, dropping whatever is still queued. An [`Event::Closed`] follows.
    pub fn close(&mut self, conn: ConnId) {
        dispatch!(mut self, d => d.close(conn))
    }

    /// Stops reading from `conn`, writes what is queued, then closes. If the peer never reads,
    /// this never finishes: callers bound it with their own timeout and [`Driver::close`].
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

    /// Gives a receive buffer back to the driver.
    pub fn release(&mut self, buf: RecvBuf) {
        dispatch!(mut self, d => d.release(buf))
    }

    /// Live connections (accepted and not yet reported closed).
    pub fn connection_count(&self) -> usize {
        dispatch!(self, d => d.connection_count())
    }

    pub fn counters(&self) -> IoCounters {
        dispatch!(self, d => d.counters())
    }
}

#[cfg(test)]
mod tests;
