//! The io_uring backend (Linux ≥ 6.1). One ring per worker thread, created with
//! `SINGLE_ISSUER | DEFER_TASKRUN` where the kernel has them, so completions are processed only
//! when this thread asks and no other thread touches the ring.
//!
//! - accept: one multishot accept per listener, re-armed if the kernel ends it;
//! - receive: one multishot recv per connection, picking buffers from a provided buffer ring
//!   (no buffer is tied up by an idle connection); re-armed after `ENOBUFS` once buffers return;
//! - send: one vectored `sendmsg` in flight per connection, gathering everything queued up to
//!   the first file region, all connections' sends submitted with one `io_uring_enter`;
//! - file regions: through a pipe of the connection's own (created on first use), as a linked
//!   chain `splice(file → pipe)` → `splice(pipe → socket)`, one pipe-full per round; see
//!   `start_file_send`;
//! - wake-ups: a pending 8-byte read on an eventfd that other threads write;
//! - timeouts: the wait's `EXT_ARG` timespec;
//! - UDP receive: one multishot `recvmsg` per socket, picking 64 KiB buffers from a second
//!   provided-buffer ring (registered with the first UDP socket); each buffer starts with the
//!   kernel's `io_uring_recvmsg_out`, the peer address and the control messages (`UDP_GRO`'s
//!   segment size), then the datagrams. A truncated datagram is dropped and counted. While
//!   an enter brings 32 or more datagrams, `next_event` enters again without waiting
//!   (bounded per wait): the multishot runs as deferred task work, a bounded amount per enter;
//! - UDP send: per flow, one batch of `sendmsg`s at a time, each carrying a GSO batch
//!   (`UDP_SEGMENT` control message) or, with GSO off, one datagram, issued in order at
//!   submit (linked only behind a poll for room: a link costs a deferred task-work run). Every operation owns its `msghdr`, iovecs, address, control
//!   buffer and a reference to the bytes, in a pool of boxed operations reused across sends.
//!   Datagrams of a send that would block (or was cancelled by its chain, or refused GSO) go
//!   back to the front of the flow's queue once the chain is done; the next chain starts
//!   with a poll for room when it would have blocked.
//!
//! A connection's fd is closed only after every operation on it has completed, so a reused fd
//! number can never receive a stale operation. UDP sockets close with the driver, after their
//! operations.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use io_uring::{IoUring, cqueue, opcode, squeue, types};

use crate::sendq::SendQueue;
use crate::slab::Slab;
use crate::udp::{
    Batch, ControlBuf, DatagramQueue, Dest, Gso, Part, UDP_BUFFER_BIT, UDP_RECV_PAYLOAD,
};
use crate::{
    CloseReason, ConnId, DriverConfig, Event, IoCounters, ListenerId, RecvBuf, UdpId, Waker,
};

/// Buffer group id of the provided-buffer ring for TCP receives.
const BUFFER_GROUP: u16 = 0;
/// Buffer group id of the provided-buffer ring for UDP receives.
const UDP_BUFFER_GROUP: u16 = 1;

/// The address room a UDP `recvmsg` asks for (`msg_namelen`): an IPv6 address, the largest.
const UDP_NAME_LEN: usize = std::mem::size_of::<libc::sockaddr_in6>();
/// Where a UDP receive's datagrams start in its buffer: after the kernel's
/// `io_uring_recvmsg_out` (four u32), the address field and the control field, each as long as
/// the `msghdr` asked.
const UDP_PAYLOAD_OFFSET: usize = 16 + UDP_NAME_LEN + crate::udp::CONTROL_LEN;

/// Most `sendmsg`s in one flow's chain: with GSO up to 64 datagrams each; without, one.
const UDP_CHAIN_MAX: u32 = 32;
/// Datagrams from one enter after which another may find more: the kernel's multishot retry
/// runs up to 32 receives before it queues itself again.
const UDP_FULL_ROUND: usize = 32;
/// Extra enters per wait `next_event` may make for UDP receives (at 32+ datagrams each).
const UDP_EXTRA_ENTERS: usize = 64;

/// What an operation's `user_data` refers to: kind in the top byte, then index and generation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Accept = 1,
    Recv = 2,
    Send = 3,
    Wake = 4,
    Cancel = 5,
    Connect = 6,
    /// Waits for a socket to take more bytes before a file round (after a short splice).
    FilePoll = 7,
    /// splice(file → pipe).
    SpliceIn = 8,
    /// splice(pipe → socket).
    SpliceOut = 9,
    /// Multishot recvmsg on a UDP socket (index: the socket).
    UdpRecv = 10,
    /// A UDP sendmsg (index: the operation in the pool).
    UdpSend = 11,
    /// Waits for a UDP socket to take more before a flow's chain (reports only on failure).
    UdpPoll = 12,
}

fn user_data(op: Op, index: u32, generation: u32) -> u64 {
    ((op as u64) << 56) | (((index as u64) & 0x00ff_ffff) << 32) | generation as u64
}

fn decode_user_data(data: u64) -> (Option<Op>, u32, u32) {
    let op = match data >> 56 {
        1 => Some(Op::Accept),
        2 => Some(Op::Recv),
        3 => Some(Op::Send),
        4 => Some(Op::Wake),
        5 => Some(Op::Cancel),
        6 => Some(Op::Connect),
        7 => Some(Op::FilePoll),
        8 => Some(Op::SpliceIn),
        9 => Some(Op::SpliceOut),
        10 => Some(Op::UdpRecv),
        11 => Some(Op::UdpSend),
        12 => Some(Op::UdpPoll),
        _ => None,
    };
    (op, ((data >> 32) & 0x00ff_ffff) as u32, data as u32)
}

fn conn_user_data(op: Op, conn: ConnId) -> u64 {
    user_data(op, conn.index, conn.generation)
}

/// The kernel release this backend needs: multishot recv with provided buffer rings (6.0) and
/// `DEFER_TASKRUN` (6.1).
const MIN_KERNEL: (u32, u32) = (6, 1);

pub(crate) fn probe() -> Result<(), String> {
    let release = kernel_release();
    match parse_release(&release) {
        Some(version) if version >= MIN_KERNEL => {}
        _ => {
            return Err(format!(
                "kernel {release} is older than {}.{}",
                MIN_KERNEL.0, MIN_KERNEL.1
            ));
        }
    }
    let ring = IoUring::new(8).map_err(|e| format!("io_uring_setup failed: {e}"))?;
    if !ring.params().is_feature_skip_cqe_on_success() {
        return Err("io_uring lacks CQE_SKIP_SUCCESS".into());
    }
    let mut probe = io_uring::Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| format!("io_uring probe failed: {e}"))?;
    for (code, name) in [
        (opcode::AcceptMulti::CODE, "accept"),
        (opcode::RecvMulti::CODE, "recv"),
        (opcode::SendMsg::CODE, "sendmsg"),
        (opcode::RecvMsgMulti::CODE, "recvmsg"),
        (opcode::Read::CODE, "read"),
        (opcode::AsyncCancel::CODE, "async_cancel"),
        (opcode::Splice::CODE, "splice"),
        (opcode::PollAdd::CODE, "poll_add"),
    ] {
        if !probe.is_supported(code) {
            return Err(format!("io_uring lacks {name}"));
        }
    }
    Ok(())
}

fn kernel_release() -> String {
    // SAFETY: uname fills a zeroed struct of fixed-size arrays; release is NUL-terminated.
    unsafe {
        let mut name: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut name) != 0 {
            return "unknown".into();
        }
        std::ffi::CStr::from_ptr(name.release.as_ptr())
            .to_string_lossy()
            .into_owned()
    }
}

fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The provided-buffer ring: `count` buffers of `size` bytes the kernel picks from for each
/// receive, and the shared ring through which we hand them back.
struct BufferRing {
    entries: *mut types::BufRingEntry,
    entries_layout: std::alloc::Layout,
    memory: Box<[u8]>,
    count: u16,
    size: usize,
    /// Our producer index; published to the kernel by `publish`.
    tail: u16,
}

impl BufferRing {
    fn new(ring: &IoUring, count: u16, size: usize, group: u16) -> io::Result<BufferRing> {
        let count = count.clamp(1, 1 << 15).next_power_of_two();
        let layout = std::alloc::Layout::from_size_align(
            count as usize * std::mem::size_of::<types::BufRingEntry>(),
            4096,
        )
        .map_err(io::Error::other)?;
        // SAFETY: non-zero size; zeroed memory is a valid (empty) ring with tail 0.
        let entries = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<types::BufRingEntry>();
        if entries.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let mut buffers = BufferRing {
            entries,
            entries_layout: layout,
            memory: vec![0u8; count as usize * size].into_boxed_slice(),
            count,
            size,
            tail: 0,
        };
        // SAFETY: the ring memory stays allocated until after it is unregistered (Drop order
        // in UringDriver) and is page aligned as the kernel requires.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(entries as u64, count, group, 0)?;
        }
        for id in 0..count {
            buffers.give(id);
        }
        buffers.publish();
        Ok(buffers)
    }

    /// Queues buffer `id` for the kernel (visible after `publish`).
    fn give(&mut self, id: u16) {
        let mask = self.count - 1;
        // SAFETY: index masked into the ring; the kernel only reads entries below the tail.
        unsafe {
            let entry = &mut *self.entries.add((self.tail & mask) as usize);
            entry.set_addr(self.memory.as_ptr().add(id as usize * self.size) as u64);
            entry.set_len(self.size as u32);
            entry.set_bid(id);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field lives in the first entry; the kernel reads it with acquire.
        unsafe {
            let tail = types::BufRingEntry::tail(self.entries).cast_mut();
            std::sync::atomic::AtomicU16::from_ptr(tail)
                .store(self.tail, std::sync::atomic::Ordering::Release);
        }
    }

    fn data(&self, id: u16, len: u32) -> &[u8] {
        self.data_at(id, 0, len as usize)
    }

    /// `len` bytes of buffer `id` from `offset`.
    fn data_at(&self, id: u16, offset: usize, len: usize) -> &[u8] {
        let start = id as usize * self.size + offset;
        &self.memory[start..start + len]
    }
}

impl Drop for BufferRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.entries.cast(), self.entries_layout) }
    }
}

/// A vectored send in flight. Boxed so the `msghdr` the kernel reads has a stable address;
/// `iov` is not touched while in flight, and points into segments the send queue keeps
/// pinned until the completion.
struct SendOp {
    msg: libc::msghdr,
    iov: Vec<libc::iovec>,
}

/// The pipe size asked for (`F_SETPIPE_SZ`): how much of a file one round moves.
const PIPE_SIZE: i32 = 1 << 20;

/// A connection's pipe for file regions: file pages go in by reference at one end and out to
/// the socket at the other.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Capacity in bytes (what `F_GETPIPE_SZ` says).
    size: u32,
    /// Bytes spliced in from the front file region and not yet out to the socket.
    buffered: u32,
}

impl Pipe {
    /// A close-on-exec pipe, grown to [`PIPE_SIZE`] when the system allows it. Also returns
    /// why it could not be grown (`pipe-max-size`, or the user's `pipe-user-pages-soft` spent).
    fn new() -> io::Result<(Pipe, Option<io::Error>)> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe2 writes two new fds into the array, or fails and writes nothing.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both fds are fresh and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on a pipe fd we own; F_SETPIPE_SZ takes an int, F_GETPIPE_SZ nothing.
        let refused =
            if unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) } < 0 {
                Some(io::Error::last_os_error())
            } else {
                None
            };
        // SAFETY: as above.
        let size = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ) };
        if size <= 0 {
            return Err(io::Error::last_os_error());
        }
        let pipe = Pipe {
            read,
            write,
            size: size as u32,
            buffered: 0,
        };
        Ok((pipe, refused))
    }
}

/// One round of a file region in flight: up to three linked operations (wait for room, file →
/// pipe, pipe → socket), of which exactly one reports. All but the last are submitted with
/// `CQE_SKIP_SUCCESS`: one reports only when it fails or comes back short, which cancels the
/// rest of the chain without reports (the kernel's rule for a failing skip-success request);
/// otherwise the last reports. Either way every operation of the round has completed or will
/// never run when the report arrives.
struct FileSend {
    /// Keeps the file open until no operation can still read it.
    _file: Arc<std::fs::File>,
    /// Bytes asked of the file → pipe splice (0: none this round).
    fill_len: u32,
}

/// Keep a connection's iovec buffer only up to this many entries between sends, so a burst
/// (a GOP sent to a new viewer) does not pin kilobytes per idle connection.
const RETAINED_IOVECS: usize = 32;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// Outbound, connect operation in flight.
    Connecting,
    Open,
    /// `close_after_flush`: recv cancelled, closing once the queue is written.
    Draining,
    /// Waiting for in-flight operations to finish before closing the fd.
    Closing(CloseReason),
}

struct Conn {
    fd: OwnedFd,
    sendq: SendQueue,
    send: Box<SendOp>,
    /// The peer address a connect operation reads; boxed so it stays put while in flight.
    connect_to: Option<Box<socket2::SockAddr>>,
    send_in_flight: bool,
    /// The file round in flight, if any.
    file_send: Option<Box<FileSend>>,
    /// Created with the first file region; closed with the connection.
    pipe: Option<Pipe>,
    /// The last splice to the socket came back short: wait for room before the next.
    file_needs_poll: bool,
    /// `TCP_CORK` is on while file regions go out (see `socket::set_cork`).
    corked: bool,
    recv_armed: bool,
    state: State,
    queued_for_flush: bool,
}

impl Conn {
    /// A write (vectored or file) is in flight.
    fn writing(&self) -> bool {
        self.send_in_flight || self.file_send.is_some()
    }
}

struct Listener {
    socket: std::net::TcpListener,
    armed: bool,
}

/// A UDP flow: datagrams queued for one peer through one of the driver's sockets.
struct Flow {
    sock: UdpId,
    dest: Dest,
    queue: DatagramQueue,
    /// `sendmsg`s of this flow in flight: one chain at a time, so they stay in order.
    in_flight: u32,
    /// Bytes of those.
    in_flight_bytes: usize,
    /// Datagrams of the chain in flight to send again (it would block, was cancelled by an
    /// earlier link, or GSO was refused), with their place in the chain; back at the front of
    /// the queue, in order, once the chain is done.
    returned: Vec<(u32, Part)>,
    /// `close_after_flush`: closes once everything is written.
    draining: bool,
    queued_for_flush: bool,
    /// A send would have blocked: start the next chain with a poll for room.
    needs_poll: bool,
}

/// What a connection id stands for.
type Slot = crate::slab::ConnSlot<Conn, Flow>;

struct UdpSock {
    socket: std::net::UdpSocket,
    recv_armed: bool,
}

/// A UDP `sendmsg` in flight, boxed so every pointer in `msg` (to `iov`, `name`, `control`)
/// stays put until its completion; `parts` keeps the bytes `iov` points into alive.
struct UdpSendOp {
    msg: libc::msghdr,
    iov: Vec<libc::iovec>,
    parts: Vec<Part>,
    name: socket2::SockAddr,
    control: ControlBuf,
    /// The flow it writes for (`None`: a `send_to`).
    flow: Option<ConnId>,
    /// Its place in the flow's chain.
    seq: u32,
    datagrams: usize,
    bytes: usize,
    /// Carries a `UDP_SEGMENT` control message.
    segmented: bool,
}

impl UdpSendOp {
    fn new() -> UdpSendOp {
        UdpSendOp {
            // SAFETY: plain data, filled in before each use.
            msg: unsafe { std::mem::zeroed() },
            iov: Vec::new(),
            parts: Vec::new(),
            name: socket2::SockAddr::from(SocketAddr::from(([0, 0, 0, 0], 0))),
            control: ControlBuf::new(),
            flow: None,
            seq: 0,
            datagrams: 0,
            bytes: 0,
            segmented: false,
        }
    }

    /// Points `msg` at the parts taken for `batch`, to `name`, with a `UDP_SEGMENT` control
    /// message when `segmented`.
    fn prepare(&mut self, name: &socket2::SockAddr, batch: Batch, segmented: bool) {
        self.iov.clear();
        self.iov.extend(self.parts.iter().map(|part| libc::iovec {
            iov_base: part.data.as_ptr() as *mut libc::c_void,
            iov_len: part.data.len(),
        }));
        self.name = name.clone();
        // SAFETY: msghdr is plain data; zeroed is "no name, no control".
        self.msg = unsafe { std::mem::zeroed() };
        self.msg.msg_name = self.name.as_ptr() as *mut libc::c_void;
        self.msg.msg_namelen = self.name.len();
        self.msg.msg_iov = self.iov.as_mut_ptr();
        self.msg.msg_iovlen = self.iov.len() as _;
        if segmented {
            // A batch of several datagrams is at most GSO_MAX_BYTES: its segment fits.
            let len = self.control.set_segment(batch.segment as u16);
            self.msg.msg_control = self.control.0.as_mut_ptr().cast();
            self.msg.msg_controllen = len as _;
        }
        self.datagrams = batch.datagrams;
        self.bytes = batch.bytes;
        self.segmented = segmented;
    }
}

pub(crate) struct UringDriver {
    // Field order is drop order: the ring goes before the memory it may write into.
    ring: IoUring,
    buffers: BufferRing,
    /// UDP receive buffers (`UDP_PAYLOAD_OFFSET` + 64 KiB each), from the first `bind_udp`.
    udp_buffers: Option<BufferRing>,
    /// Datagrams the last enter brought, and the enters `next_event` made since the wait: see
    /// [`UringDriver::receive_more_udp`].
    udp_received_by_enter: usize,
    udp_extra_enters: usize,
    /// The `msghdr` every UDP multishot `recvmsg` uses: only its name and control lengths
    /// count.
    udp_msghdr: Box<libc::msghdr>,
    /// UDP sends, in flight or free for reuse (`free_udp_ops`); boxed so an operation the
    /// kernel reads stays put when the vector grows.
    #[allow(clippy::vec_box)]
    udp_ops: Vec<Box<UdpSendOp>>,
    free_udp_ops: Vec<u32>,
    udp_ops_in_flight: usize,
    /// Scratch for building a flow's chain.
    udp_chain: Vec<squeue::Entry>,
    udp: Vec<UdpSock>,
    udp_recv_buffers: u16,
    udp_socket_buffer: usize,
    gso: Gso,
    listeners: Vec<Option<Listener>>,
    conns: Slab<Slot>,
    ready: VecDeque<Event>,
    to_flush: Vec<ConnId>,
    /// Connections whose multishot recv ended and must be re-armed (e.g. after `ENOBUFS`).
    to_rearm: Vec<ConnId>,
    wake_fd: OwnedFd,
    wake_buf: Box<u64>,
    wake_armed: bool,
    waker: Waker,
    max_iovecs: usize,
    counters: IoCounters,
    completions: Vec<(u64, i32, u32)>,
    page_size: u64,
    /// A pipe could not be grown to `PIPE_SIZE` (said once in the log).
    pipe_size_refused: bool,
}

impl UringDriver {
    pub(crate) fn new(config: &DriverConfig) -> io::Result<Self> {
        let entries = config.ring_entries.clamp(64, 32768).next_power_of_two();
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_coop_taskrun()
            .setup_cqsize(entries * 4)
            .build(entries)
            .or_else(|_| IoUring::builder().setup_cqsize(entries * 4).build(entries))?;
        let buffers = BufferRing::new(
            &ring,
            config.recv_buffers,
            config.recv_buffer_size,
            BUFFER_GROUP,
        )?;
        // SAFETY: eventfd returns a new fd we then own, or -1.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh, valid fd.
        let wake_fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let waker = Waker::from_eventfd(wake_fd.try_clone()?);
        // SAFETY: msghdr is plain data; zeroed is "no name, no control".
        let mut udp_msghdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        udp_msghdr.msg_namelen = UDP_NAME_LEN as libc::socklen_t;
        udp_msghdr.msg_controllen = crate::udp::CONTROL_LEN as _;
        Ok(UringDriver {
            ring,
            buffers,
            udp_buffers: None,
            udp_received_by_enter: 0,
            udp_extra_enters: 0,
            udp_msghdr,
            udp_ops: Vec::new(),
            free_udp_ops: Vec::new(),
            udp_ops_in_flight: 0,
            udp_chain: Vec::new(),
            udp: Vec::new(),
            udp_recv_buffers: config.udp_recv_buffers,
            udp_socket_buffer: config.udp_socket_buffer,
            gso: Gso::new(),
            listeners: Vec::new(),
            conns: Slab::new(),
            ready: VecDeque::new(),
            to_flush: Vec::new(),
            to_rearm: Vec::new(),
            wake_fd,
            wake_buf: Box::new(0),
            wake_armed: false,
            waker,
            max_iovecs: config.max_iovecs.clamp(1, 1024),
            counters: IoCounters::default(),
            completions: Vec::with_capacity(256),
            // SAFETY: sysconf only reads a constant.
            page_size: match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
                n if n > 0 => n as u64,
                _ => 4096,
            },
            pipe_size_refused: false,
        })
    }

    /// Queues a submission, making room by submitting what is queued if the SQ is full.
    fn push(&mut self, entry: squeue::Entry) {
        for _ in 0..3 {
            // SAFETY: every pointer an entry carries (msghdr, iovecs, wake buffer) stays valid
            // until its completion is reaped: see SendOp, wake_buf and the Drop impl.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return;
            }
            if let Err(e) = self.ring.submit() {
                tracing::error!(error = %e, "io_uring submit failed while the SQ was full");
            }
        }
        tracing::error!(
            ?entry,
            "io_uring submission queue stuck full; operation dropped"
        );
    }

    /// Queues a linked chain as one piece: a chain split across two submissions would be cut
    /// in two, letting its second half run unordered.
    fn push_chain(&mut self, entries: &[squeue::Entry]) {
        for _ in 0..3 {
            // SAFETY: as in `push`: file regions' operations carry only fds, kept open until
            // they complete (Conn::pipe, FileSend::_file, Conn::fd).
            if unsafe { self.ring.submission().push_multiple(entries) }.is_ok() {
                return;
            }
            if let Err(e) = self.ring.submit() {
                tracing::error!(error = %e, "io_uring submit failed while the SQ was full");
            }
        }
        tracing::error!("io_uring submission queue stuck full; linked operations dropped");
    }

    pub(crate) fn listen(&mut self, socket: std::net::TcpListener) -> io::Result<ListenerId> {
        let id = self.listeners.len() as u32;
        self.listeners.push(Some(Listener {
            socket,
            armed: false,
        }));
        self.arm_accept(id);
        Ok(ListenerId(id))
    }

    fn arm_accept(&mut self, id: u32) {
        let Some(Some(listener)) = self.listeners.get_mut(id as usize) else {
            return;
        };
        listener.armed = true;
        let fd = types::Fd(listener.socket.as_raw_fd());
        let entry = opcode::AcceptMulti::new(fd)
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data(Op::Accept, id, 0));
        self.push(entry);
    }

    pub(crate) fn local_addr(&self, listener: ListenerId) -> io::Result<SocketAddr> {
        match self.listeners.get(listener.0 as usize) {
            Some(Some(l)) => l.socket.local_addr(),
            _ => Err(io::Error::new(io::ErrorKind::NotFound, "no such listener")),
        }
    }

    pub(crate) fn stop_listening(&mut self) {
        for id in 0..self.listeners.len() {
            if let Some(listener) = self.listeners[id].take()
                && listener.armed
            {
                let entry = opcode::AsyncCancel::new(user_data(Op::Accept, id as u32, 0))
                    .build()
                    .user_data(user_data(Op::Cancel, 0, 0));
                self.push(entry);
                // The socket is closed when `listener` drops here; the cancelled accept
                // completes with ECANCELED (or EBADF) and is ignored.
            }
        }
    }

    pub(crate) fn waker(&self) -> Waker {
        self.waker.clone()
    }

    fn new_conn(fd: OwnedFd, state: State) -> Conn {
        Conn {
            fd,
            sendq: SendQueue::default(),
            send: Box::new(SendOp {
                // SAFETY: plain data, filled in before each use.
                msg: unsafe { std::mem::zeroed() },
                iov: Vec::new(),
            }),
            connect_to: None,
            send_in_flight: false,
            file_send: None,
            pipe: None,
            file_needs_poll: false,
            corked: false,
            recv_armed: false,
            state,
            queued_for_flush: false,
        }
    }

    pub(crate) fn connect(&mut self, addr: SocketAddr) -> io::Result<ConnId> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM.cloexec(),
            Some(socket2::Protocol::TCP),
        )?;
        let _ = socket.set_tcp_nodelay(true);
        let fd = OwnedFd::from(socket);
        let target = Box::new(socket2::SockAddr::from(addr));
        let entry = opcode::Connect::new(
            types::Fd(fd.as_raw_fd()),
            target.as_ptr().cast(),
            target.len(),
        )
        .build();
        let mut conn_state = Self::new_conn(fd, State::Connecting);
        conn_state.connect_to = Some(target);
        let conn = self.conns.insert(Slot::Tcp(conn_state));
        self.push(entry.user_data(conn_user_data(Op::Connect, conn)));
        Ok(conn)
    }

    fn connected(&mut self, conn: ConnId, result: i32) {
        let Some(c) = self.conns.tcp_mut(conn) else {
            return;
        };
        c.connect_to = None;
        if c.state != State::Connecting {
            // Closed while connecting.
            self.finish_if_idle(conn);
            return;
        }
        if result < 0 {
            c.state = State::Open;
            let kind = io::Error::from_raw_os_error(-result).kind();
            self.begin_close(conn, CloseReason::Error(kind));
            return;
        }
        c.state = State::Open;
        let has_data = !c.sendq.is_empty();
        self.counters.connected += 1;
        self.arm_recv(conn);
        if has_data {
            self.queue_flush(conn);
        }
        self.ready.push_back(Event::Connected { conn });
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
            && matches!(c.state, State::Open | State::Connecting)
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
            && matches!(c.state, State::Open | State::Connecting)
            && len > 0
        {
            c.sendq.push_file(file, offset, len);
            self.queue_flush(conn);
        }
    }

    pub(crate) fn pending_bytes(&self, conn: ConnId) -> usize {
        match self.conns.get(conn) {
            Some(Slot::Tcp(c)) => c.sendq.len(),
            Some(Slot::Flow(f)) => f.queue.len() + f.in_flight_bytes,
            None => 0,
        }
    }

    pub(crate) fn close(&mut self, conn: ConnId) {
        self.begin_close(conn, CloseReason::Local);
    }

    pub(crate) fn close_after_flush(&mut self, conn: ConnId) {
        if let Some(flow) = self.conns.flow_mut(conn) {
            if flow.queue.is_empty() && flow.in_flight == 0 {
                self.begin_close(conn, CloseReason::Local);
            } else {
                flow.draining = true;
            }
            return;
        }
        let Some(c) = self.conns.tcp_mut(conn) else {
            return;
        };
        if c.state == State::Connecting {
            self.begin_close(conn, CloseReason::Local);
            return;
        }
        if c.state != State::Open {
            return;
        }
        if c.sendq.is_empty() && !c.writing() {
            self.begin_close(conn, CloseReason::Local);
            return;
        }
        c.state = State::Draining;
        if c.recv_armed {
            self.cancel(conn_user_data(Op::Recv, conn));
        }
        self.queue_flush(conn);
    }

    fn cancel(&mut self, target: u64) {
        let entry = opcode::AsyncCancel::new(target)
            .build()
            .user_data(user_data(Op::Cancel, 0, 0));
        self.push(entry);
    }

    /// Starts closing: drops what is queued, makes in-flight operations finish, and closes the
    /// fd once they have (`finish_if_idle`).
    fn begin_close(&mut self, conn: ConnId, reason: CloseReason) {
        if let Some(Slot::Flow(_)) = self.conns.get(conn) {
            // A flow owns no fd, and its sends in flight own what they point at: it is gone
            // at once.
            self.conns.remove(conn);
            self.ready.push_back(Event::Closed { conn, reason });
            return;
        }
        let Some(c) = self.conns.tcp_mut(conn) else {
            return;
        };
        if matches!(c.state, State::Closing(_)) {
            return;
        }
        let connecting = c.state == State::Connecting;
        c.state = State::Closing(reason);
        c.sendq.clear();
        let recv_armed = c.recv_armed;
        if c.writing() {
            // A send blocked on a peer that doesn't read would never complete: shut the socket
            // so it fails now (and a file round's poll for room fires).
            // SAFETY: shutdown on an fd we own.
            unsafe { libc::shutdown(c.fd.as_raw_fd(), libc::SHUT_RDWR) };
        }
        if connecting {
            self.cancel(conn_user_data(Op::Connect, conn));
        }
        if recv_armed {
            self.cancel(conn_user_data(Op::Recv, conn));
        }
        self.finish_if_idle(conn);
    }

    fn finish_if_idle(&mut self, conn: ConnId) {
        let Some(c) = self.conns.tcp(conn) else {
            return;
        };
        if let State::Closing(reason) = c.state
            && !c.recv_armed
            && !c.writing()
            && c.connect_to.is_none()
        {
            // Dropping the Conn closes the fd, the pipe and our reference to the file being
            // sent: no operation refers to them any more.
            self.conns.remove(conn);
            self.ready.push_back(Event::Closed { conn, reason });
        }
    }

    fn arm_recv(&mut self, conn: ConnId) {
        let Some(c) = self.conns.tcp_mut(conn) else {
            return;
        };
        if c.state != State::Open || c.recv_armed {
            return;
        }
        c.recv_armed = true;
        let entry = opcode::RecvMulti::new(types::Fd(c.fd.as_raw_fd()), BUFFER_GROUP)
            .build()
            .user_data(conn_user_data(Op::Recv, conn));
        self.push(entry);
    }

    fn flush(&mut self) {
        let mut batch = std::mem::take(&mut self.to_flush);
        for conn in batch.drain(..) {
            match self.conns.get(conn) {
                Some(Slot::Tcp(_)) => self.start_send(conn),
                Some(Slot::Flow(_)) => self.start_flow_send(conn),
                None => {}
            }
        }
        if self.to_flush.is_empty() {
            self.to_flush = batch;
        }
    }

    /// Submits one vectored send of everything queued (up to `max_iovecs` buffers).
    fn start_send(&mut self, conn: ConnId) {
        let max_iovecs = self.max_iovecs;
        let Some(c) = self.conns.tcp_mut(conn) else {
            return;
        };
        c.queued_for_flush = false;
        if c.writing()
            || c.sendq.is_empty()
            || matches!(c.state, State::Closing(_) | State::Connecting)
        {
            return;
        }
        if c.sendq.front_file().is_some() {
            return self.start_file_send(conn);
        }
        // Cork before the head of a response with a file region, so the head leaves with the
        // first file bytes (see the epoll driver's `flush_one`).
        if !c.corked && c.sendq.has_file() {
            crate::socket::set_cork(c.fd.as_raw_fd(), true);
            c.corked = true;
        }
        let op = &mut *c.send;
        op.iov.clear();
        c.sendq.pin_front(max_iovecs, |part| {
            op.iov.push(libc::iovec {
                iov_base: part.as_ptr() as *mut libc::c_void,
                iov_len: part.len(),
            })
        });
        // SAFETY: msghdr is plain data; zeroed is "no name, no control".
        op.msg = unsafe { std::mem::zeroed() };
        op.msg.msg_iov = op.iov.as_mut_ptr();
        op.msg.msg_iovlen = op.iov.len() as _;
        c.send_in_flight = true;
        let entry = opcode::SendMsg::new(types::Fd(c.fd.as_raw_fd()), &op.msg)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build()
            .user_data(conn_user_data(Op::Send, conn));
        self.counters.writes += 1;
        self.push(entry);
    }

    /// Starts one round of the file region at the front of the queue, as a linked chain:
    ///
    /// 1. `poll(socket, POLLOUT)`, only when the last round found the socket full;
    /// 2. `splice(file @ offset → pipe)`, a pipe-full at most, only when the pipe is empty;
    /// 3. `splice(pipe → socket)` of what is in the pipe.
    ///
    /// The socket is non-blocking (set with the first file region) so step 3 sends what fits
    /// and returns: the kernel runs splices on its worker threads, and a blocking splice to a
    /// slow reader would hold one of them for as long as the reader dawdles. A short step 2
    /// (end of file, or a pipe-full that isn't page aligned) breaks the link, so step 3 is
    /// cancelled and the next round sends what did arrive; a step 2 that reads nothing means
    /// the file ended early. The round reports once (see [`FileSend`]), to `file_sent`.
    ///
    /// Costs per round: the splices run on an io-wq worker, and with `DEFER_TASKRUN` each link
    /// step passes through this thread's task work, so a round is two hand-offs between this
    /// thread and the worker; hence a big pipe.
    fn start_file_send(&mut self, conn: ConnId) {
        let page_size = self.page_size;
        let Some(c) = self.conns.tcp_mut(conn) else {
            return;
        };
        if c.sendq
            .front_file()
            .is_some_and(|r| r.offset > i64::MAX as u64)
        {
            // splice takes a signed offset (-1 means "the file position").
            return self.begin_close(conn, CloseReason::Error(io::ErrorKind::InvalidInput));
        }
        if !c.corked {
            crate::socket::set_cork(c.fd.as_raw_fd(), true);
            c.corked = true;
        }
        if c.pipe.is_none() {
            let made = Pipe::new().and_then(|(pipe, refused)| {
                set_nonblocking(&c.fd)?;
                Ok((pipe, refused))
            });
            match made {
                Ok((pipe, refused)) => {
                    if let Some(why) = refused
                        && !self.pipe_size_refused
                    {
                        self.pipe_size_refused = true;
                        tracing::info!(
                            error = %why,
                            pipe_size = pipe.size,
                            "pipes for file sends keep their default size (F_SETPIPE_SZ to 1 MiB refused)"
                        );
                    }
                    c.pipe = Some(pipe);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "no pipe for a file send");
                    self.begin_close(conn, CloseReason::Error(e.kind()));
                    return;
                }
            }
        }
        let pipe = c.pipe.as_ref().expect("created above");
        let socket = types::Fd(c.fd.as_raw_fd());
        let region = c.sendq.pin_file().expect("the front is a file region");
        let mut chain = [None, None, None];
        if c.file_needs_poll {
            chain[0] = Some(
                opcode::PollAdd::new(socket, libc::POLLOUT as u32)
                    .build()
                    .user_data(conn_user_data(Op::FilePoll, conn)),
            );
        }
        let mut fill_len = 0;
        let drain_len = if pipe.buffered > 0 {
            pipe.buffered
        } else {
            // A pipe holds a page per slot: start unaligned reads with a partial pipe-full
            // so the following ones are aligned and fill it.
            let size = u64::from(pipe.size);
            let room = if size > page_size {
                size - region.offset % page_size
            } else {
                size
            };
            fill_len = region.len.min(room) as u32;
            chain[1] = Some(
                opcode::Splice::new(
                    types::Fd(region.file.as_raw_fd()),
                    region.offset as i64,
                    types::Fd(pipe.write.as_raw_fd()),
                    -1,
                    fill_len,
                )
                .build()
                .user_data(conn_user_data(Op::SpliceIn, conn)),
            );
            fill_len
        };
        // Non-blocking on the pipe too: with the pipe never empty here it changes nothing, but
        // a splice waiting on a pipe nobody fills would never return.
        chain[2] = Some(
            opcode::Splice::new(types::Fd(pipe.read.as_raw_fd()), -1, socket, -1, drain_len)
                .flags(libc::SPLICE_F_NONBLOCK)
                .build()
                .user_data(conn_user_data(Op::SpliceOut, conn)),
        );
        c.file_send = Some(Box::new(FileSend {
            _file: region.file.clone(),
            fill_len,
        }));
        c.file_needs_poll = false;
        let mut entries: Vec<squeue::Entry> = chain.into_iter().flatten().collect();
        let last = entries.len() - 1;
        for entry in &mut entries[..last] {
            *entry = entry
                .clone()
                .flags(squeue::Flags::IO_LINK | squeue::Flags::SKIP_SUCCESS);
        }
        self.counters.writes += 1;
        self.push_chain(&entries);
    }

    /// The one report of a file round: account for what reached the socket and decide what
    /// follows. Operations before the one reporting succeeded in full; those after it were
    /// cancelled.
    fn file_sent(&mut self, conn: ConnId, op: Op, result: i32) {
        let Some(c) = self.conns.tcp_mut(conn) else {
            return;
        };
        let Some(round) = c.file_send.take() else {
            return;
        };
        let full_fill = (round.fill_len > 0).then_some(round.fill_len as i32);
        let (poll, fill, drain) = match op {
            Op::FilePoll => (Some(result), None, None),
            Op::SpliceIn => (None, Some(result), None),
            _ => (None, full_fill, Some(result)),
        };
        let pipe = c.pipe.as_mut().expect("a file round has a pipe");
        let error_kind = |result: i32| io::Error::from_raw_os_error(-result).kind();
        let mut error = None;
        if let Some(result) = poll
            && result < 0
            && result != -libc::ECANCELED
        {
            error = Some(error_kind(result));
        }
        match fill {
            Some(n) if n > 0 => pipe.buffered += n as u32,
            // The file ends before the region does (truncated since it was queued).
            Some(0) => error = error.or(Some(io::ErrorKind::UnexpectedEof)),
            Some(e) if e != -libc::ECANCELED => error = error.or(Some(error_kind(e))),
            _ => {}
        }
        let mut sent = 0;
        match drain.unwrap_or(-libc::ECANCELED) {
            n if n > 0 && n as u32 <= pipe.buffered => {
                sent = n as u32;
                pipe.buffered -= sent;
                // Short: the socket is full.
                c.file_needs_poll = pipe.buffered > 0;
            }
            // More than the pipe held by our count: a bug, never worth a stuck connection.
            n if n >= 0 => error = error.or(Some(io::ErrorKind::WriteZero)),
            e if e == -libc::EAGAIN => c.file_needs_poll = true,
            // Cancelled: an earlier link came back short or failed (handled above).
            e if e != -libc::ECANCELED => error = error.or(Some(error_kind(e))),
            _ => {}
        }
        self.counters.bytes_sent += u64::from(sent);
        self.counters.file_bytes_sent += u64::from(sent);
        c.sendq.unpin(sent as usize);
        if let Some(kind) = error {
            self.begin_close(conn, CloseReason::Error(kind));
            self.finish_if_idle(conn);
            return;
        }
        self.after_write(conn);
    }

    pub(crate) fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.flush();
        for conn in std::mem::take(&mut self.to_rearm) {
            self.arm_recv(conn);
        }
        for id in 0..self.udp.len() {
            if !self.udp[id].recv_armed {
                self.arm_udp_recv(id as u32);
            }
        }
        if let Some(udp_buffers) = &self.udp_buffers {
            udp_buffers.publish();
        }
        for id in 0..self.listeners.len() {
            if matches!(&self.listeners[id], Some(l) if !l.armed) {
                self.arm_accept(id as u32);
            }
        }
        if !self.wake_armed {
            self.wake_armed = true;
            let entry = opcode::Read::new(
                types::Fd(self.wake_fd.as_raw_fd()),
                (&mut *self.wake_buf as *mut u64).cast(),
                8,
            )
            .build()
            .user_data(user_data(Op::Wake, 0, 0));
            self.push(entry);
        }
        self.buffers.publish();

        let timeout = if self.ready.is_empty() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        self.counters.waits += 1;
        self.udp_received_by_enter = 0;
        self.udp_extra_enters = 0;
        let result = match timeout {
            Some(t) => {
                let ts = types::Timespec::new()
                    .sec(t.as_secs())
                    .nsec(t.subsec_nanos());
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
            None => self.ring.submitter().submit_and_wait(1),
        };
        match result {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) => {}
            Err(e) => return Err(e),
        }
        self.reap();
        Ok(())
    }

    fn reap(&mut self) {
        let mut completions = std::mem::take(&mut self.completions);
        completions.extend(
            self.ring
                .completion()
                .map(|cqe| (cqe.user_data(), cqe.result(), cqe.flags())),
        );
        for &(data, result, flags) in &completions {
            self.complete(data, result, flags);
        }
        completions.clear();
        self.completions = completions;
    }

    fn complete(&mut self, data: u64, result: i32, flags: u32) {
        let (op, index, generation) = decode_user_data(data);
        let conn = ConnId { index, generation };
        match op {
            Some(Op::Accept) => self.accepted(index, result, flags),
            Some(Op::Recv) => self.received(conn, result, flags),
            Some(Op::Send) => self.sent(conn, result),
            Some(Op::Connect) => self.connected(conn, result),
            Some(op @ (Op::FilePoll | Op::SpliceIn | Op::SpliceOut)) => {
                self.file_sent(conn, op, result)
            }
            Some(Op::Wake) => {
                self.wake_armed = false;
                self.waker.reset();
                self.ready.push_back(Event::Woken);
            }
            Some(Op::UdpRecv) => self.udp_received(index, result, flags),
            Some(Op::UdpSend) => self.udp_sent(index, result),
            // A failed poll for room: the sends linked after it report ECANCELED.
            Some(Op::UdpPoll) | Some(Op::Cancel) | None => {}
        }
    }

    fn accepted(&mut self, listener: u32, result: i32, flags: u32) {
        let still_listening = match self.listeners.get_mut(listener as usize) {
            Some(Some(l)) => {
                if !cqueue::more(flags) {
                    l.armed = false;
                }
                true
            }
            _ => false,
        };
        if result < 0 {
            let e = io::Error::from_raw_os_error(-result);
            if still_listening && result != -libc::ECANCELED {
                tracing::warn!(error = %e, "accept failed");
            }
            return;
        }
        // SAFETY: a successful accept returns a new fd that we now own.
        let fd = unsafe { OwnedFd::from_raw_fd(result as RawFd) };
        if !still_listening {
            return;
        }
        let sock = socket2::SockRef::from(&fd);
        let Some(peer) = sock.peer_addr().ok().and_then(|a| a.as_socket()) else {
            // The peer is already gone (reset before we asked).
            return;
        };
        let _ = sock.set_tcp_nodelay(true);
        let conn = self
            .conns
            .insert(Slot::Tcp(Self::new_conn(fd, State::Open)));
        self.counters.accepted += 1;
        self.arm_recv(conn);
        self.ready.push_back(Event::Accepted {
            listener: ListenerId(listener),
            conn,
            peer,
        });
    }

    fn received(&mut self, conn: ConnId, result: i32, flags: u32) {
        let buffer = cqueue::buffer_select(flags);
        let more = cqueue::more(flags);
        let Some(c) = self.conns.tcp_mut(conn) else {
            // Cannot happen (slots outlive their operations), but never leak a buffer.
            if let Some(id) = buffer {
                self.buffers.give(id);
            }
            return;
        };
        if !more {
            c.recv_armed = false;
        }
        let state = c.state;
        if result > 0 {
            let id = buffer.expect("a recv with data names its buffer");
            self.counters.bytes_received += result as u64;
            if state == State::Open {
                self.ready.push_back(Event::Received {
                    conn,
                    buf: RecvBuf {
                        id,
                        len: result as u32,
                    },
                });
                if !more {
                    self.to_rearm.push(conn);
                }
            } else {
                self.buffers.give(id);
            }
        } else if result == 0 {
            if state == State::Open {
                self.begin_close(conn, CloseReason::PeerClosed);
            }
        } else if result == -libc::ENOBUFS {
            // Every buffer is lent out; re-arm once the caller gives some back.
            if state == State::Open {
                self.to_rearm.push(conn);
            }
        } else if result != -libc::ECANCELED && state == State::Open {
            let kind = io::Error::from_raw_os_error(-result).kind();
            self.begin_close(conn, CloseReason::Error(kind));
        }
        self.finish_if_idle(conn);
    }

    fn sent(&mut self, conn: ConnId, result: i32) {
        let Some(c) = self.conns.tcp_mut(conn) else {
            return;
        };
        c.send_in_flight = false;
        let op = &mut *c.send;
        if op.iov.capacity() > RETAINED_IOVECS {
            op.iov.clear();
            op.iov.shrink_to(RETAINED_IOVECS);
        }
        if result < 0 {
            c.sendq.unpin(0);
            let kind = io::Error::from_raw_os_error(-result).kind();
            self.begin_close(conn, CloseReason::Error(kind));
            self.finish_if_idle(conn);
            return;
        }
        self.counters.bytes_sent += result as u64;
        c.sendq.unpin(result as usize);
        self.after_write(conn);
    }

    /// A write completed without error: close if closing, write on if more is queued, else
    /// report the queue drained.
    fn after_write(&mut self, conn: ConnId) {
        let Some(c) = self.conns.tcp_mut(conn) else {
            return;
        };
        match c.state {
            State::Closing(_) => {
                c.sendq.clear();
                self.finish_if_idle(conn);
            }
            State::Open | State::Draining | State::Connecting => {
                if !c.sendq.is_empty() {
                    self.queue_flush(conn);
                    return;
                }
                if c.corked {
                    crate::socket::set_cork(c.fd.as_raw_fd(), false);
                    c.corked = false;
                }
                if c.state == State::Draining {
                    self.begin_close(conn, CloseReason::Local);
                } else {
                    self.ready.push_back(Event::Drained { conn });
                }
            }
        }
    }

    pub(crate) fn next_event(&mut self) -> Option<Event> {
        loop {
            if self.ready.is_empty() {
                self.receive_more_udp();
            }
            let event = self.ready.pop_front()?;
            match event {
                Event::Received { conn, buf } => {
                    if self.wants_data(conn) {
                        return Some(Event::Received { conn, buf });
                    }
                    // Closed by the caller since the data arrived: nobody wants it.
                    self.buffers.give(buf.id);
                }
                Event::Drained { conn } if self.conns.get(conn).is_none() => {}
                other => return Some(other),
            }
        }
    }

    /// Whether data received for `conn` is still to be handed over: while it is open, and
    /// after the peer closed it or it failed — what the peer sent before its FIN is the
    /// caller's to read (a peer that writes and closes at once had its data dropped when the
    /// FIN's completion came in the same batch). Not once the caller closed it.
    fn wants_data(&self, conn: ConnId) -> bool {
        match self.conns.tcp(conn) {
            Some(c) => match c.state {
                State::Open => true,
                State::Closing(reason) => reason != CloseReason::Local,
                _ => false,
            },
            // Gone already: its `Closed` is still queued behind this data and says who closed it.
            None => self.ready.iter().any(|e| {
                matches!(e, Event::Closed { conn: c, reason } if *c == conn && *reason != CloseReason::Local)
            }),
        }
    }

    /// When the last enter brought a full round of datagrams, enters again without waiting for
    /// more, as epoll's `next_event` reads its sockets until they are empty. A socket's
    /// multishot `recvmsg` runs as deferred task work, which an enter runs a bounded number of
    /// times (32 datagrams each), so one enter per loop could not keep up with a thousand SRT
    /// viewers' ACKs: the socket's queue filled and the kernel dropped datagrams. The buffers
    /// the caller has released since are handed back first. Bounded per wait.
    fn receive_more_udp(&mut self) {
        if self.udp_received_by_enter < UDP_FULL_ROUND || self.udp_extra_enters >= UDP_EXTRA_ENTERS
        {
            return;
        }
        self.udp_received_by_enter = 0;
        self.udp_extra_enters += 1;
        for id in 0..self.udp.len() {
            if !self.udp[id].recv_armed {
                self.arm_udp_recv(id as u32);
            }
        }
        if let Some(udp_buffers) = &self.udp_buffers {
            udp_buffers.publish();
        }
        // `want` 1 with a zero timeout: an enter that runs task work (GETEVENTS) and returns.
        let ts = types::Timespec::new();
        let args = types::SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) => {}
            Err(e) => {
                tracing::debug!(error = %e, "io_uring enter for more UDP receives failed");
                return;
            }
        }
        self.reap();
    }

    pub(crate) fn recv_data(&self, buf: &RecvBuf) -> &[u8] {
        if buf.id & UDP_BUFFER_BIT != 0 {
            let ring = self.udp_buffers.as_ref().expect("UDP buffers lent");
            ring.data_at(
                buf.id & !UDP_BUFFER_BIT,
                UDP_PAYLOAD_OFFSET,
                buf.len as usize,
            )
        } else {
            self.buffers.data(buf.id, buf.len)
        }
    }

    pub(crate) fn release(&mut self, buf: RecvBuf) {
        if buf.id & UDP_BUFFER_BIT != 0 {
            let ring = self.udp_buffers.as_mut().expect("UDP buffers lent");
            ring.give(buf.id & !UDP_BUFFER_BIT);
        } else {
            self.buffers.give(buf.id);
        }
    }

    pub(crate) fn connection_count(&self) -> usize {
        self.conns.len()
    }

    pub(crate) fn counters(&self) -> IoCounters {
        self.counters
    }

    pub(crate) fn bind_udp(&mut self, addr: SocketAddr) -> io::Result<UdpId> {
        if self.udp_buffers.is_none() {
            self.udp_buffers = Some(BufferRing::new(
                &self.ring,
                self.udp_recv_buffers,
                UDP_PAYLOAD_OFFSET + UDP_RECV_PAYLOAD,
                UDP_BUFFER_GROUP,
            )?);
        }
        let socket = crate::socket::reuseport_udp(addr, self.udp_socket_buffer)?;
        let id = self.udp.len() as u32;
        self.udp.push(UdpSock {
            socket,
            recv_armed: false,
        });
        self.arm_udp_recv(id);
        Ok(UdpId(id))
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
            in_flight: 0,
            in_flight_bytes: 0,
            returned: Vec::new(),
            draining: false,
            queued_for_flush: false,
            needs_poll: false,
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
        let Some(socket) = self.udp.get(sock.0 as usize) else {
            self.counters.datagrams_dropped += 1;
            return;
        };
        let fd = types::Fd(socket.socket.as_raw_fd());
        let index = self.alloc_udp_op();
        let op = &mut self.udp_ops[index as usize];
        op.parts.push(Part {
            data: Bytes::copy_from_slice(data),
            segment: data.len().max(1),
        });
        let batch = Batch {
            segment: data.len().max(1),
            datagrams: 1,
            bytes: data.len(),
        };
        op.prepare(&socket2::SockAddr::from(peer), batch, false);
        op.flow = None;
        let entry = opcode::SendMsg::new(fd, &op.msg)
            .build()
            .user_data(user_data(Op::UdpSend, index, 0));
        self.udp_ops_in_flight += 1;
        self.counters.udp_send_calls += 1;
        self.push(entry);
    }

    pub(crate) fn set_udp_gso(&mut self, on: bool) {
        self.gso.set(on);
    }

    pub(crate) fn udp_gso(&self) -> bool {
        self.gso.on()
    }

    /// A send operation from the pool, its `parts` empty.
    fn alloc_udp_op(&mut self) -> u32 {
        match self.free_udp_ops.pop() {
            Some(index) => index,
            None => {
                self.udp_ops.push(Box::new(UdpSendOp::new()));
                (self.udp_ops.len() - 1) as u32
            }
        }
    }

    fn arm_udp_recv(&mut self, id: u32) {
        let Some(sock) = self.udp.get_mut(id as usize) else {
            return;
        };
        if sock.recv_armed {
            return;
        }
        sock.recv_armed = true;
        let entry = opcode::RecvMsgMulti::new(
            types::Fd(sock.socket.as_raw_fd()),
            &*self.udp_msghdr,
            UDP_BUFFER_GROUP,
        )
        .build()
        .user_data(user_data(Op::UdpRecv, id, 0));
        self.push(entry);
    }

    /// A completion of a UDP socket's multishot `recvmsg`: one datagram, or a GRO batch.
    fn udp_received(&mut self, id: u32, result: i32, flags: u32) {
        let buffer = cqueue::buffer_select(flags);
        if let Some(sock) = self.udp.get_mut(id as usize)
            && !cqueue::more(flags)
        {
            // Re-armed at the next wait (after ENOBUFS, once buffers come back).
            sock.recv_armed = false;
        }
        let Some(ring) = self.udp_buffers.as_mut() else {
            return;
        };
        let Some(bid) = buffer else {
            if result < 0 && result != -libc::ENOBUFS && result != -libc::ECANCELED {
                let e = io::Error::from_raw_os_error(-result);
                tracing::debug!(error = %e, "UDP receive error ignored");
            }
            return;
        };
        if result < 0 {
            ring.give(bid);
            return;
        }
        let whole = ring.data_at(bid, 0, result as usize);
        let parsed = types::RecvMsgOut::parse(whole, &self.udp_msghdr)
            .ok()
            .map(|out| {
                let payload = out.payload_data();
                debug_assert!(
                    payload.is_empty()
                        || payload.as_ptr() as usize - whole.as_ptr() as usize
                            == UDP_PAYLOAD_OFFSET
                );
                let len = payload.len();
                let peer = crate::udp::sockaddr_from_bytes(out.name_data());
                let segment = crate::udp::gro_segment(out.control_data())
                    .map_or(len, |segment| segment.min(len));
                (len, out.is_payload_truncated(), peer, segment)
            });
        match parsed {
            Some((len, false, Some(peer), segment)) if len > 0 => {
                self.udp_received_by_enter += 1;
                self.counters.bytes_received += len as u64;
                self.counters.datagrams_received += crate::udp::datagram_count(len, segment) as u64;
                self.ready.push_back(Event::Datagrams {
                    sock: UdpId(id),
                    peer,
                    buf: RecvBuf {
                        id: UDP_BUFFER_BIT | bid,
                        len: len as u32,
                    },
                    segment_size: segment,
                });
            }
            _ => {
                // Cut short (never delivered cut), empty, or from no IP address.
                ring.give(bid);
                self.counters.datagrams_dropped += 1;
            }
        }
    }

    /// Submits a flow's queued datagrams as one batch of `sendmsg`s (GSO batches, or single
    /// datagrams), unless a batch of it is still in flight.
    fn start_flow_send(&mut self, conn: ConnId) {
        let Some(flow) = self.conns.flow_mut(conn) else {
            return;
        };
        flow.queued_for_flush = false;
        if flow.in_flight > 0 || flow.queue.is_empty() {
            return;
        }
        let Some(sock) = self.udp.get(flow.sock.0 as usize) else {
            self.counters.datagrams_dropped += flow.queue.datagrams() as u64;
            flow.queue.clear();
            return self.after_flow_write(conn);
        };
        let fd = types::Fd(sock.socket.as_raw_fd());
        let mut chain = std::mem::take(&mut self.udp_chain);
        chain.clear();
        let after_poll = flow.needs_poll;
        if flow.needs_poll {
            flow.needs_poll = false;
            chain.push(
                opcode::PollAdd::new(fd, libc::POLLOUT as u32)
                    .build()
                    .user_data(user_data(Op::UdpPoll, 0, 0))
                    .flags(squeue::Flags::SKIP_SUCCESS),
            );
        }
        let gso = self.gso.on();
        let mut seq = 0;
        while seq < UDP_CHAIN_MAX && !flow.queue.is_empty() {
            let index = match self.free_udp_ops.pop() {
                Some(index) => index,
                None => {
                    self.udp_ops.push(Box::new(UdpSendOp::new()));
                    (self.udp_ops.len() - 1) as u32
                }
            };
            let op = &mut self.udp_ops[index as usize];
            let batch = flow
                .queue
                .take(gso, &mut op.parts)
                .expect("the queue is not empty");
            op.prepare(&flow.dest.raw, batch, gso && batch.datagrams > 1);
            op.flow = Some(conn);
            op.seq = seq;
            flow.in_flight += 1;
            flow.in_flight_bytes += batch.bytes;
            self.udp_ops_in_flight += 1;
            self.counters.udp_send_calls += 1;
            chain.push(
                opcode::SendMsg::new(fd, &op.msg)
                    .build()
                    .user_data(user_data(Op::UdpSend, index, 0)),
            );
            seq += 1;
        }
        // Linked only behind a poll for room (the socket was full): the sends then wait for
        // it, in order. Otherwise each send stands alone: they are issued in order at submit
        // and rarely fail (a full socket buffer: `EAGAIN`, sent again in order once the batch
        // is done). Linking always cost a deferred task-work run per link — the kernel runs a
        // bounded number per wait — so a viewer's join burst took seconds to leave (measured:
        // 340 MB queued at 1,000 SRT viewers joining, drained at ~0.9 Gbit/s).
        if after_poll {
            let last = chain.len() - 1;
            for entry in &mut chain[..last] {
                *entry = entry.clone().flags(squeue::Flags::IO_LINK);
            }
        }
        self.push_chain(&chain);
        self.udp_chain = chain;
    }

    /// A UDP `sendmsg` completed: count it; for a flow, keep what must go again and, once its
    /// chain is done, go on.
    fn udp_sent(&mut self, index: u32, result: i32) {
        let Some(op) = self.udp_ops.get_mut(index as usize) else {
            return;
        };
        self.udp_ops_in_flight -= 1;
        self.free_udp_ops.push(index);
        let flow = op.flow.take();
        let mut would_block = false;
        let again = if result >= 0 {
            self.counters.datagrams_sent += op.datagrams as u64;
            self.counters.bytes_sent += result as u64;
            false
        } else {
            let error = io::Error::from_raw_os_error(-result);
            match -result {
                libc::EAGAIN => {
                    would_block = true;
                    true
                }
                libc::ECANCELED | libc::EINTR => true,
                _ if op.segmented && self.gso.refused(&error) => true,
                _ => {
                    self.counters.datagrams_dropped += op.datagrams as u64;
                    tracing::debug!(
                        error = %error,
                        datagrams = op.datagrams,
                        "UDP send failed; datagrams dropped"
                    );
                    false
                }
            }
        };
        let flow_state = flow.and_then(|conn| Some((conn, self.conns.flow_mut(conn)?)));
        let Some((conn, f)) = flow_state else {
            // A `send_to` (best effort), or the flow closed since: nothing to send again.
            if again && flow.is_none() {
                self.counters.datagrams_dropped += 1;
            }
            op.parts.clear();
            return;
        };
        f.in_flight -= 1;
        f.in_flight_bytes -= op.bytes;
        f.needs_poll |= would_block;
        if again {
            let seq = op.seq;
            f.returned
                .extend(op.parts.drain(..).map(|part| (seq, part)));
        } else {
            op.parts.clear();
        }
        if f.in_flight == 0 {
            if !f.returned.is_empty() {
                // Stable: parts of one send keep their order.
                f.returned.sort_by_key(|(seq, _)| *seq);
                f.queue.put_back(f.returned.drain(..).map(|(_, part)| part));
            }
            self.after_flow_write(conn);
        }
    }

    /// A flow's chain is done: send the rest, or report it drained (closing it if asked).
    fn after_flow_write(&mut self, conn: ConnId) {
        let Some(flow) = self.conns.flow_mut(conn) else {
            return;
        };
        if !flow.queue.is_empty() {
            self.queue_flush(conn);
        } else if flow.draining {
            self.begin_close(conn, CloseReason::Local);
        } else {
            self.ready.push_back(Event::Drained { conn });
        }
    }
}

impl Drop for UringDriver {
    /// Operations still in flight point at memory this driver owns (buffer ring, send
    /// batches). Shut every socket, cancel, and reap for a bounded time so the kernel is done
    /// with that memory before it is freed.
    fn drop(&mut self) {
        self.stop_listening();
        for conn in self.conns.ids() {
            if let Some(c) = self.conns.tcp(conn) {
                // SAFETY: shutdown on an fd we own.
                unsafe { libc::shutdown(c.fd.as_raw_fd(), libc::SHUT_RDWR) };
            }
            self.begin_close(conn, CloseReason::Local);
        }
        if self.wake_armed {
            self.cancel(user_data(Op::Wake, 0, 0));
        }
        // Every operation on a UDP socket: its multishot recvmsg, and sends waiting for room.
        for id in 0..self.udp.len() {
            let fd = types::Fd(self.udp[id].socket.as_raw_fd());
            let entry = opcode::AsyncCancel2::new(types::CancelBuilder::fd(fd).all())
                .build()
                .user_data(user_data(Op::Cancel, 0, 0));
            self.push(entry);
        }
        let udp_busy =
            |d: &Self| d.udp_ops_in_flight > 0 || d.udp.iter().any(|sock| sock.recv_armed);
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        while (self.conns.len() > 0 || self.wake_armed || udp_busy(self))
            && std::time::Instant::now() < deadline
        {
            let ts = types::Timespec::new().nsec(10_000_000);
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            self.reap();
            // Wake completions re-arm nothing here; clear the flag they set.
        }
        if self.conns.len() > 0 {
            // The kernel still holds operations on our memory: leaking it is the only safe
            // choice left.
            tracing::error!(
                connections = self.conns.len(),
                "io_uring driver dropped with operations in flight; leaking its buffers"
            );
            let memory = std::mem::take(&mut self.buffers.memory);
            std::mem::forget(memory);
        }
        if udp_busy(self) {
            tracing::error!(
                sends = self.udp_ops_in_flight,
                "io_uring driver dropped with UDP operations in flight; leaking their memory"
            );
            if let Some(ring) = &mut self.udp_buffers {
                std::mem::forget(std::mem::take(&mut ring.memory));
            }
            std::mem::forget(std::mem::take(&mut self.udp_ops));
            // SAFETY: msghdr is plain data.
            let empty = Box::new(unsafe { std::mem::zeroed() });
            std::mem::forget(std::mem::replace(&mut self.udp_msghdr, empty));
        }
    }
}

/// Puts a socket in non-blocking mode, so a splice to it sends what fits and returns.
fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl get/set of the status flags of an fd we own.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After a send that would block, a flow's next chain starts with a poll for room; the
    /// datagrams go out behind it, in order.
    #[test]
    fn a_chain_after_would_block_waits_for_room_first() {
        if probe().is_err() {
            return;
        }
        let mut d = UringDriver::new(&DriverConfig::default()).unwrap();
        let a = d.bind_udp("127.0.0.1:0".parse().unwrap()).unwrap();
        let b = d.bind_udp("127.0.0.1:0".parse().unwrap()).unwrap();
        let flow = d.open_flow(a, d.udp_local_addr(b).unwrap());
        d.conns.flow_mut(flow).unwrap().needs_poll = true;
        d.set_udp_gso(false);
        for i in 0..5u8 {
            d.send_datagrams(flow, Bytes::from(vec![i; 100]), 0);
        }
        let mut got = Vec::new();
        let mut drained = false;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while (got.len() < 5 || !drained) && std::time::Instant::now() < deadline {
            d.wait(Some(Duration::from_millis(10))).unwrap();
            while let Some(event) = d.next_event() {
                match event {
                    Event::Datagrams { buf, .. } => {
                        got.push(d.recv_data(&buf).to_vec());
                        d.release(buf);
                    }
                    Event::Drained { conn } => drained |= conn == flow,
                    _ => {}
                }
            }
        }
        let want: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 100]).collect();
        assert_eq!(got, want);
        assert!(drained);
        assert!(!d.conns.flow_mut(flow).unwrap().needs_poll);
        assert_eq!(d.counters().udp_send_calls, 5);
        assert_eq!(d.udp_ops_in_flight, 0);
    }
}
