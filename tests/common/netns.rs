//! A private network namespace for one test thread: nothing in it but `lo`, so whatever the test
//! starts from that thread — the server, Node, Chromium — can reach only 127.0.0.1, and a
//! WebRTC peer that gathers host candidates from every interface finds only the loopback one.
//!
//! Network namespace membership is per thread on Linux: `unshare(CLONE_NEWNET)` moves only the
//! calling thread, and the processes and threads it spawns afterwards start in the new namespace
//! too. The test harness's other threads stay where they were. The namespace goes away when the
//! last thread or process in it ends.
//!
//! Needs CAP_SYS_ADMIN (root; or a user namespace, which this does not set up). Without it
//! [`enter_private`] returns [`NetnsError::Unavailable`], and the caller skips (or fails when
//! the browser is required); [`NetnsError::Broken`] (the namespace is not what it should be) is
//! always a failure.

use std::process::{Command, Stdio};

/// What [`enter_private`] found: the namespace's identity before and after, as the calling
/// thread and as a child process see it, and the interfaces in it.
#[derive(Debug, Clone)]
pub struct Netns {
    /// `/proc/thread-self/ns/net` before and after, e.g. `net:[4026531840]`.
    pub before: String,
    pub after: String,
    /// `/proc/self/ns/net` of a child process spawned from the thread afterwards.
    pub child: String,
    /// Interface names in the thread's `/proc/thread-self/net/dev`.
    pub interfaces: Vec<String>,
    /// Interface names in the child's `/proc/self/net/dev`.
    pub child_interfaces: Vec<String>,
}

/// Why there is no private namespace.
#[derive(Debug, Clone)]
pub enum NetnsError {
    /// unshare(CLONE_NEWNET) was refused (not root, no CAP_SYS_ADMIN, a seccomp filter, not
    /// Linux): a test may skip.
    Unavailable(String),
    /// The namespace was made but is not private and loopback-only: a test must fail.
    Broken(String),
}

impl std::fmt::Display for NetnsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetnsError::Unavailable(why) | NetnsError::Broken(why) => f.write_str(why),
        }
    }
}

/// Moves the calling thread into a new network namespace, brings its `lo` up, and checks that
/// the thread and a child it spawns are in it and that `lo` is the only interface that is up (a
/// kernel with tunnel modules loaded adds `sit0`, `tunl0`, ... to every new namespace, down and
/// without addresses). An error says why not (no privilege, or a check failed); the thread may
/// then already be in the new namespace.
#[cfg(target_os = "linux")]
pub fn enter_private() -> Result<Netns, NetnsError> {
    let before = ns_id().map_err(NetnsError::Unavailable)?;
    // SAFETY: unshare has no memory effects; it changes only the calling thread's namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(NetnsError::Unavailable(format!(
            "unshare(CLONE_NEWNET) failed: {e} (a private network namespace needs root or \
             CAP_SYS_ADMIN)"
        )));
    }
    check_private(before).map_err(NetnsError::Broken)
}

#[cfg(target_os = "linux")]
fn check_private(before: String) -> Result<Netns, String> {
    let after = ns_id()?;
    if after == before {
        return Err(format!("unshare(CLONE_NEWNET) left the thread in {before}"));
    }
    let mut lo = if_flags("lo")?;
    lo |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    set_if_flags("lo", lo)?;
    let interfaces = interfaces_in(
        &std::fs::read_to_string("/proc/thread-self/net/dev")
            .map_err(|e| format!("cannot read /proc/thread-self/net/dev: {e}"))?,
    );
    let child = child_output("readlink", &["/proc/self/ns/net"])?
        .trim()
        .to_string();
    let child_interfaces = interfaces_in(&child_output("cat", &["/proc/self/net/dev"])?);
    let netns = Netns {
        before,
        after,
        child,
        interfaces,
        child_interfaces,
    };
    if netns.child != netns.after || netns.child_interfaces != netns.interfaces {
        return Err(format!(
            "a child process is not in the thread's network namespace: {netns:?}"
        ));
    }
    for name in &netns.interfaces {
        let up = if_flags(name)? & libc::IFF_UP as libc::c_short != 0;
        if (name == "lo") != up {
            return Err(format!(
                "in the private network namespace, {name} is {}: {netns:?}",
                if up { "up" } else { "down" }
            ));
        }
    }
    // Loopback really works: a TCP connection to 127.0.0.1 inside the namespace.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("cannot bind 127.0.0.1 in the namespace: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2))
        .map_err(|e| format!("cannot connect to {addr} in the namespace: {e}"))?;
    Ok(netns)
}

#[cfg(not(target_os = "linux"))]
pub fn enter_private() -> Result<Netns, NetnsError> {
    Err(NetnsError::Unavailable(
        "network namespaces are Linux-only".into(),
    ))
}

/// The calling thread's network namespace, e.g. `net:[4026531840]`.
#[cfg(target_os = "linux")]
fn ns_id() -> Result<String, String> {
    std::fs::read_link("/proc/thread-self/ns/net")
        .map(|p| p.display().to_string())
        .map_err(|e| format!("cannot read /proc/thread-self/ns/net: {e}"))
}

#[cfg(target_os = "linux")]
fn child_output(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{program} {args:?}: {}", out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// An interface's flags (SIOCGIFFLAGS on a socket of this thread, so in its namespace).
#[cfg(target_os = "linux")]
fn if_flags(name: &str) -> Result<libc::c_short, String> {
    if_ioctl(name, None)
}

/// `ip link set NAME up`, without needing iproute2 (SIOCSIFFLAGS).
#[cfg(target_os = "linux")]
fn set_if_flags(name: &str, flags: libc::c_short) -> Result<(), String> {
    if_ioctl(name, Some(flags)).map(|_| ())
}

#[cfg(target_os = "linux")]
fn if_ioctl(name: &str, set: Option<libc::c_short>) -> Result<libc::c_short, String> {
    if name.len() >= libc::IFNAMSIZ {
        return Err(format!("interface name too long: {name}"));
    }
    // SAFETY: plain syscalls on a socket we own and a zeroed ifreq that lives across them; the
    // name fits with its NUL (checked above).
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(format!("socket: {}", std::io::Error::last_os_error()));
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        let (request, what) = match set {
            None => (libc::SIOCGIFFLAGS, "SIOCGIFFLAGS"),
            Some(flags) => {
                req.ifr_ifru.ifru_flags = flags;
                (libc::SIOCSIFFLAGS, "SIOCSIFFLAGS")
            }
        };
        let result = if libc::ioctl(fd, request as _, &mut req) != 0 {
            Err(format!(
                "{what} {name}: {}",
                std::io::Error::last_os_error()
            ))
        } else {
            Ok(req.ifr_ifru.ifru_flags)
        };
        libc::close(fd);
        result
    }
}

/// Interface names from a `/proc/.../net/dev` table.
fn interfaces_in(dev: &str) -> Vec<String> {
    let mut names: Vec<String> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    names
}
