//! Socket set-up shared by both backends: `SO_REUSEPORT` listeners and UDP sockets, and
//! per-connection options.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Pending-connection queue length: large enough for connection storms (SRS uses 512+).
const LISTEN_BACKLOG: i32 = 4096;

/// A non-blocking TCP listener on `addr` that other workers can bind too.
pub(crate) fn reuseport_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// A non-blocking UDP socket bound to `addr` that other workers can bind too (`SO_REUSEPORT`:
/// the kernel hashes each peer's 4-tuple to one of them). Port 0 asks for a port of its own:
/// with `SO_REUSEPORT` the kernel could hand out one that another such socket already has. `buffer` bytes of `SO_RCVBUF` and
/// `SO_SNDBUF` are asked for (the kernel caps them; 0 keeps its default). On Linux, `UDP_GRO`
/// is turned on where the kernel has it, so one receive may carry several datagrams.
pub(crate) fn reuseport_udp(addr: SocketAddr, buffer: usize) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    if addr.port() != 0 {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if buffer > 0 {
        // Best effort: a smaller buffer only means drops under bursts.
        let _ = socket.set_recv_buffer_size(buffer);
        let _ = socket.set_send_buffer_size(buffer);
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // Best effort: without it every datagram is a receive of its own.
        let _ = set_int_option(
            socket.as_raw_fd(),
            crate::udp::SOL_UDP,
            crate::udp::UDP_GRO,
            1,
        );
    }
    Ok(socket.into())
}

/// Whether the kernel takes `UDP_SEGMENT` (GSO, Linux ≥ 4.18); asked once per process.
pub(crate) fn udp_gso_supported() -> bool {
    #[cfg(target_os = "linux")]
    {
        static SUPPORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *SUPPORTED.get_or_init(|| {
            use std::os::fd::AsRawFd;
            let Ok(socket) = std::net::UdpSocket::bind("127.0.0.1:0")
                .or_else(|_| std::net::UdpSocket::bind("[::1]:0"))
            else {
                return false;
            };
            let mut value: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: getsockopt writes at most `len` bytes into `value`.
            let rc = unsafe {
                libc::getsockopt(
                    socket.as_raw_fd(),
                    crate::udp::SOL_UDP,
                    crate::udp::UDP_SEGMENT,
                    (&mut value as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            rc == 0
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

#[cfg(target_os = "linux")]
fn set_int_option(
    fd: std::os::fd::RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: setsockopt reads an int from a valid pointer on an fd the caller owns.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Corks or uncorks a TCP socket (`TCP_CORK`, Linux): while corked, the kernel sends only
/// full-sized segments. File regions go out corked — as nginx's `tcp_nopush` does with
/// `sendfile` — because the socket otherwise sends whatever a write-readiness wake-up had room
/// for, and many small segments cost the receiver (and, on loopback, the sender) per segment.
/// Uncorking pushes out the last partial segment at once. Elsewhere a no-op.
#[cfg(target_os = "linux")]
pub(crate) fn set_cork(fd: std::os::fd::RawFd, corked: bool) {
    // Failure is harmless: the data still goes out, in smaller segments.
    let _ = set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_CORK, corked.into());
}
