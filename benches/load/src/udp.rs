//! What the UDP clients share: the SRT and WHEP viewers ([`UdpViewers`]), each on a socket of
//! its own with one timer heap for all, and the WHIP publisher.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use sluice_ring::{Driver, RecvBuf, UdpId};

use crate::srt::VideoFrame;
use crate::stats::ViewerStats;

/// Runs protocol library code (srt-protocol, str0m): it asserts on some inputs, and a panic
/// must end one client, not the run.
pub(crate) fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).ok()
}

/// Where a client of `server` binds (port 0): loopback for a loopback server, else any
/// address.
pub fn bind_address(server: SocketAddr) -> SocketAddr {
    let ip = server.ip();
    let bind_ip = match ip {
        _ if ip.is_loopback() => ip,
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(bind_ip, 0)
}

/// The size of a receive's datagrams: `segment_size` (GRO), or the whole `len` bytes.
pub fn segment_len(len: usize, segment_size: usize) -> usize {
    if segment_size == 0 {
        len.max(1)
    } else {
        segment_size
    }
}

/// Copies a receive into `data` and gives the buffer back to the driver at once (handling the
/// datagrams needs the driver); returns the datagrams' size ([`segment_len`]).
pub fn copy_receive(
    driver: &mut Driver,
    buf: RecvBuf,
    segment_size: usize,
    data: &mut Vec<u8>,
) -> usize {
    data.clear();
    data.extend_from_slice(driver.recv_data(&buf));
    driver.release(buf);
    segment_len(data.len(), segment_size)
}

/// The viewers' timers on one heap. Each viewer has at most one pending timer (its `wake_at`);
/// heap entries that differ from it are stale.
#[derive(Default)]
pub struct Timers(BinaryHeap<Reverse<(Instant, usize)>>);

impl Timers {
    /// The earliest timer, if any.
    pub fn next(&self) -> Option<Instant> {
        self.0.peek().map(|Reverse((at, _))| *at)
    }

    /// Sets viewer `v`'s timer to `at`. An earlier pending timer stays: when it fires the
    /// viewer names its next one.
    pub fn schedule(&mut self, wake_at: &mut Option<Instant>, v: usize, at: Instant) {
        if wake_at.is_none_or(|w| at < w) {
            *wake_at = Some(at);
            self.0.push(Reverse((at, v)));
        }
    }

    /// The next viewer of `viewers` whose timer is due at `now`, its timer cleared.
    pub fn pop_due<T>(
        &mut self,
        now: Instant,
        viewers: &mut [T],
        wake_at: impl Fn(&mut T) -> &mut Option<Instant>,
    ) -> Option<usize> {
        while let Some(&Reverse((at, v))) = self.0.peek() {
            if at > now {
                return None;
            }
            self.0.pop();
            let pending = wake_at(&mut viewers[v]);
            if *pending != Some(at) {
                continue; // superseded
            }
            *pending = None;
            return Some(v);
        }
        None
    }
}

/// Viewers with a UDP socket each (SRT, WHEP), as the run drives them.
pub trait UdpViewers {
    /// Opens viewer `v` (the next index).
    fn open(&mut self, driver: &mut Driver, v: usize, now: Instant, stats: &mut ViewerStats);

    /// A receive on some viewer's socket: one datagram, or several of `segment_size` bytes
    /// (GRO).
    #[allow(clippy::too_many_arguments)]
    fn datagrams(
        &mut self,
        driver: &mut Driver,
        sock: UdpId,
        peer: SocketAddr,
        buf: RecvBuf,
        segment_size: usize,
        now: Instant,
        stats: &mut [ViewerStats],
        window: (Instant, Instant),
    );

    /// Runs the viewers whose timers are due.
    fn timers(&mut self, driver: &mut Driver, now: Instant, stats: &mut [ViewerStats]);

    /// The earliest timer, if any.
    fn next_wake(&self) -> Option<Instant>;

    /// Frames seen since the caller last drained them: (viewer, frame).
    fn frames(&mut self) -> &mut Vec<(usize, VideoFrame)>;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    /// The backends this machine runs: epoll, and io_uring where the kernel has it.
    pub(crate) fn backends() -> Vec<sluice_ring::Backend> {
        let mut backends = vec![sluice_ring::Backend::Epoll];
        if sluice_ring::uring_support().is_ok() {
            backends.push(sluice_ring::Backend::Uring);
        }
        backends
    }

    /// One turn of a test's event loop: waits until `next_wake` (at most `max`), hands each
    /// event to `handle`, and returns the time after the wait.
    pub(crate) fn turn(
        driver: &mut Driver,
        next_wake: Option<Instant>,
        max: Duration,
        mut handle: impl FnMut(&mut Driver, sluice_ring::Event, Instant),
    ) -> Instant {
        let now = Instant::now();
        let wake = next_wake.map_or(max, |at| at.saturating_duration_since(now));
        driver.wait(Some(wake.min(max))).unwrap();
        let now = Instant::now();
        while let Some(event) = driver.next_event() {
            handle(driver, event, now);
        }
        now
    }

    /// One turn of a single viewer's test: datagrams to `play`, any other event to `other`,
    /// then the due timers.
    pub(crate) fn play_turn<P: UdpViewers>(
        driver: &mut Driver,
        play: &mut P,
        stats: &mut [ViewerStats],
        window: (Instant, Instant),
        mut other: impl FnMut(&mut Driver, &mut P, sluice_ring::Event, Instant, &mut [ViewerStats]),
    ) {
        let now = turn(
            driver,
            play.next_wake(),
            Duration::from_millis(10),
            |driver, event, now| match event {
                sluice_ring::Event::Datagrams {
                    sock,
                    peer,
                    buf,
                    segment_size,
                } => play.datagrams(driver, sock, peer, buf, segment_size, now, stats, window),
                event => other(driver, play, event, now, stats),
            },
        );
        play.timers(driver, now, stats);
    }
}
