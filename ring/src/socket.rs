//! Socket set-up shared by both backends: `SO_REUSEPORT` listeners and per-connection options.

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

/// Corks or uncorks a TCP socket (`TCP_CORK`, Linux): while corked, the kernel sends only
/// full-sized segments. File regions go out corked — as nginx's `tcp_nopush` does with
/// `sendfile` — because the socket otherwise sends whatever a write-readiness wake-up had room
/// for, and many small segments cost the receiver (and, on loopback, the sender) per segment.
/// Uncorking pushes out the last partial segment at once. Elsewhere a no-op.
#[cfg(target_os = "linux")]
pub(crate) fn set_cork(fd: std::os::fd::RawFd, corked: bool) {
    let value: libc::c_int = corked.into();
    // SAFETY: setsockopt with a valid int option value on an fd we own; failure is harmless
    // (the data still goes out, in smaller segments).
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_CORK,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}
