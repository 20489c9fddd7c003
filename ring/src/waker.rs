//! Cross-core wake-ups. Another thread calls [`Waker::wake`]; the owning driver's `wait` returns
//! with [`crate::Event::Woken`]. Wakes coalesce: while one is pending, further calls cost one
//! atomic swap and no syscall, so a publisher waking busy cores does not pay per packet.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Wakes one driver from any thread. Cheap to clone.
#[derive(Clone)]
pub struct Waker {
    inner: Arc<Inner>,
}

struct Inner {
    /// Set by `wake`, cleared by the driver when it reports `Woken`.
    notified: AtomicBool,
    signal: Signal,
}

enum Signal {
    Mio(mio::Waker),
    #[cfg(target_os = "linux")]
    EventFd(std::os::fd::OwnedFd),
}

impl Waker {
    pub(crate) fn from_mio(waker: mio::Waker) -> Waker {
        Waker::with(Signal::Mio(waker))
    }

    #[cfg(target_os = "linux")]
    pub(crate) fn from_eventfd(fd: std::os::fd::OwnedFd) -> Waker {
        Waker::with(Signal::EventFd(fd))
    }

    fn with(signal: Signal) -> Waker {
        Waker {
            inner: Arc::new(Inner {
                notified: AtomicBool::new(false),
                signal,
            }),
        }
    }

    /// Wakes the driver. Whatever the caller published before this call (a queue push, a
    /// message) is visible to the driver's thread once it sees `Woken`.
    pub fn wake(&self) {
        if self.inner.notified.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Err(e) = self.signal() {
            tracing::error!(error = %e, "waking a worker failed");
        }
    }

    fn signal(&self) -> io::Result<()> {
        match &self.inner.signal {
            Signal::Mio(waker) => waker.wake(),
            #[cfg(target_os = "linux")]
            Signal::EventFd(fd) => {
                use std::os::fd::AsRawFd;
                let one: u64 = 1;
                // SAFETY: writing 8 bytes from a valid u64 to an eventfd we own.
                let n = unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
                if n < 0 {
                    let e = io::Error::last_os_error();
                    // EAGAIN: the counter is saturated, so the driver is already due to wake.
                    if e.kind() != io::ErrorKind::WouldBlock {
                        return Err(e);
                    }
                }
                Ok(())
            }
        }
    }

    /// Called by the driver just before it reports `Woken`, so a wake that races with the
    /// caller's processing triggers another `Woken` rather than being lost.
    pub(crate) fn reset(&self) {
        self.inner.notified.store(false, Ordering::SeqCst);
    }
}
