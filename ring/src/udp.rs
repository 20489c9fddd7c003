//! UDP pieces both backends share: a flow's queue of outgoing datagrams, cut into the batches
//! one send writes, and (Linux) the raw `msghdr` parts — peer addresses, the `UDP_SEGMENT`
//! control message that asks for GSO, and the `UDP_GRO` one that reports how a receive was
//! coalesced.
//!
//! A batch is what one send call carries: with GSO, consecutive datagrams of one segment size,
//! all full-sized but the last, at most [`GSO_MAX_SEGMENTS`] of them and at most
//! [`GSO_MAX_BYTES`] in all (the kernel refuses more); without GSO, one datagram. Datagrams
//! queued by separate `send_datagrams` calls join one batch when they share a segment size
//! and the earlier ones end on a full-sized datagram: a viewer's packets of one frame, queued
//! one by one, still leave in one `sendmsg`.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;

use bytes::Bytes;

/// Most segments one GSO send may carry (the kernel's `UDP_MAX_SEGMENTS`).
pub(crate) const GSO_MAX_SEGMENTS: usize = 64;

/// Most bytes one GSO send carries: the kernel caps a UDP send at 65,535 bytes less the IP and
/// UDP headers (65,507 for IPv4); this leaves room for IPv6 extension headers too.
pub(crate) const GSO_MAX_BYTES: usize = 65_000;

/// Largest segment sent with GSO: the kernel refuses (`EINVAL`) a segment that does not fit
/// the device's MTU, so larger datagrams go one per send. 1,452 fits a 1,500-byte MTU under
/// IPv6 and UDP headers.
pub(crate) const GSO_MAX_SEGMENT: usize = 1452;

/// Payload room of a UDP receive buffer: enough for the largest datagram, or for a GRO batch
/// (the kernel coalesces at most 64 KiB).
pub(crate) const UDP_RECV_PAYLOAD: usize = 64 * 1024;

/// Receive buffers lent as UDP datagrams carry this bit in their id; TCP buffer ids stay below
/// it (io_uring's buffer ring has at most 2^15 buffers).
pub(crate) const UDP_BUFFER_BIT: u16 = 0x8000;

/// Most datagrams one `sendmmsg` carries on the epoll backend when GSO is off.
#[cfg(target_os = "linux")]
pub(crate) const SENDMMSG_MAX: usize = 64;

/// A run of whole datagrams of one segment size (the last may be shorter): a `send_datagrams`
/// call, or the unsent part of one.
pub(crate) struct Part {
    pub(crate) data: Bytes,
    pub(crate) segment: usize,
}

/// What one send call carries: `datagrams` datagrams of `segment` bytes (the last may be
/// shorter), `bytes` in all, gathered from one or more parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Batch {
    pub(crate) segment: usize,
    pub(crate) datagrams: usize,
    pub(crate) bytes: usize,
}

/// A flow's datagrams not yet handed to the kernel, in order.
#[derive(Default)]
pub(crate) struct DatagramQueue {
    parts: VecDeque<Part>,
    /// Bytes in `parts`.
    bytes: usize,
}

impl DatagramQueue {
    /// Queues `data` as datagrams of `segment_size` bytes each (the last may be shorter). A
    /// segment size of 0 makes `data` one datagram. Empty data queues nothing.
    pub(crate) fn push(&mut self, data: Bytes, segment_size: u16) {
        if data.is_empty() {
            return;
        }
        let segment = match segment_size {
            0 => data.len(),
            s => usize::from(s),
        };
        self.bytes += data.len();
        self.parts.push_back(Part { data, segment });
    }

    /// Bytes queued.
    pub(crate) fn len(&self) -> usize {
        self.bytes
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Datagrams queued (for counting what a close drops).
    pub(crate) fn datagrams(&self) -> usize {
        self.parts
            .iter()
            .map(|p| p.data.len().div_ceil(p.segment))
            .sum()
    }

    pub(crate) fn clear(&mut self) {
        self.parts.clear();
        self.bytes = 0;
    }

    /// Takes the next batch off the front: with `gso`, as many datagrams as one GSO send may
    /// carry; without, one. Its pieces are appended to `into` in order. `None` when empty.
    pub(crate) fn take(&mut self, gso: bool, into: &mut Vec<Part>) -> Option<Batch> {
        let (max_segments, max_bytes) = if gso {
            (GSO_MAX_SEGMENTS, GSO_MAX_BYTES)
        } else {
            (1, usize::MAX)
        };
        let segment = self.parts.front()?.segment;
        let max_segments = if segment > GSO_MAX_SEGMENT {
            1
        } else {
            max_segments
        };
        let mut batch = Batch {
            segment,
            datagrams: 0,
            bytes: 0,
        };
        while let Some(front) = self.parts.front_mut() {
            if front.segment != segment {
                // One datagram shorter than the batch's may end it, as GSO's last segment may
                // be short: a frame's packets and its shorter last one leave in one send.
                let len = front.data.len();
                let joins = batch.datagrams > 0
                    && len == front.segment
                    && len < segment
                    && batch.datagrams < max_segments
                    && batch.bytes + len <= max_bytes;
                if joins {
                    let part = self.parts.pop_front().expect("front exists");
                    into.push(part);
                    batch.datagrams += 1;
                    batch.bytes += len;
                    self.bytes -= len;
                }
                break;
            }
            let len = front.data.len();
            let (full, tail) = (len / segment, len % segment);
            let segment_room = max_segments - batch.datagrams;
            let byte_room = max_bytes.saturating_sub(batch.bytes);
            let mut take_full = full.min(segment_room).min(byte_room / segment);
            if batch.datagrams == 0 && full > 0 {
                // Always at least one datagram, however large.
                take_full = take_full.max(1);
            }
            let take_tail = take_full == full
                && tail > 0
                && segment_room > take_full
                && (batch.bytes + take_full * segment + tail <= max_bytes
                    || batch.datagrams + take_full == 0);
            let take = take_full * segment + if take_tail { tail } else { 0 };
            if take == 0 {
                break;
            }
            let data = if take == len {
                self.parts.pop_front().expect("front exists").data
            } else {
                front.data.split_to(take)
            };
            into.push(Part { data, segment });
            batch.datagrams += take_full + usize::from(take_tail);
            batch.bytes += take;
            self.bytes -= take;
            // Stop at a limit (part left behind) or after a short datagram (it must be last).
            if take < len || take_tail {
                break;
            }
        }
        Some(batch)
    }

    /// Puts parts taken by [`DatagramQueue::take`] and not sent back at the front, in their
    /// order.
    pub(crate) fn put_back(&mut self, parts: impl DoubleEndedIterator<Item = Part>) {
        for part in parts.rev() {
            self.bytes += part.data.len();
            self.parts.push_front(part);
        }
    }
}

/// Datagrams in `len` bytes cut at `segment`.
pub(crate) fn datagram_count(len: usize, segment: usize) -> usize {
    len.div_ceil(segment.max(1))
}

/// A flow's peer, with its `sockaddr` form ready for `msg_name` (Linux).
pub(crate) struct Dest {
    #[cfg(not(target_os = "linux"))]
    pub(crate) addr: SocketAddr,
    #[cfg(target_os = "linux")]
    pub(crate) raw: socket2::SockAddr,
}

impl Dest {
    pub(crate) fn new(addr: SocketAddr) -> Dest {
        Dest {
            #[cfg(not(target_os = "linux"))]
            addr,
            #[cfg(target_os = "linux")]
            raw: socket2::SockAddr::from(addr),
        }
    }
}

/// Whether a driver's UDP sends use GSO.
pub(crate) struct Gso {
    on: bool,
    /// The kernel refused a GSO send once already (said in the log).
    refused: bool,
}

impl Gso {
    pub(crate) fn new() -> Gso {
        Gso {
            on: crate::socket::udp_gso_supported(),
            refused: false,
        }
    }

    pub(crate) fn on(&self) -> bool {
        self.on
    }

    /// `on` is already false where the kernel lacks `UDP_SEGMENT` (see `Driver::set_udp_gso`).
    pub(crate) fn set(&mut self, on: bool) {
        self.on = on;
    }

    /// A GSO send failed with `error`. When it means the kernel or the device will not do GSO
    /// (`EIO`, `ENOBUFS`), turns GSO off (said once in the log) and returns true: the caller
    /// sends the same datagrams again, one per send.
    pub(crate) fn refused(&mut self, error: &io::Error) -> bool {
        #[cfg(target_os = "linux")]
        let refusal = matches!(error.raw_os_error(), Some(libc::EIO | libc::ENOBUFS));
        #[cfg(not(target_os = "linux"))]
        let refusal = {
            let _ = error;
            false
        };
        if refusal {
            self.on = false;
            if !self.refused {
                self.refused = true;
                tracing::warn!(
                    error = %error,
                    "the kernel refused a UDP GSO send; this worker sends one datagram per call from now on"
                );
            }
        }
        refusal
    }
}

#[cfg(target_os = "linux")]
pub(crate) use linux::*;

#[cfg(target_os = "linux")]
mod linux {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

    /// `SOL_UDP` options (linux/udp.h; not in the libc crate for every target env).
    pub(crate) const SOL_UDP: libc::c_int = 17;
    pub(crate) const UDP_SEGMENT: libc::c_int = 103;
    pub(crate) const UDP_GRO: libc::c_int = 104;

    /// Room for the control messages of one send or receive (`UDP_SEGMENT`'s u16, `UDP_GRO`'s
    /// int, with space to spare), aligned as `cmsghdr` requires.
    #[repr(C, align(8))]
    pub(crate) struct ControlBuf(pub(crate) [u8; CONTROL_LEN]);

    pub(crate) const CONTROL_LEN: usize = 64;

    impl ControlBuf {
        pub(crate) fn new() -> ControlBuf {
            ControlBuf([0; CONTROL_LEN])
        }

        /// Writes one `UDP_SEGMENT` control message asking the kernel to cut the send into
        /// datagrams of `segment` bytes; returns the control length to put in the `msghdr`.
        pub(crate) fn set_segment(&mut self, segment: u16) -> usize {
            // SAFETY: CMSG_SPACE and CMSG_LEN are arithmetic on constants.
            let (space, len) = unsafe {
                (
                    libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) as usize,
                    libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as usize,
                )
            };
            debug_assert!(space <= CONTROL_LEN);
            self.0[..space].fill(0);
            // SAFETY: the buffer is 8-aligned and holds `space` bytes: a cmsghdr followed by
            // the aligned u16 payload (CMSG_LEN(0) bytes in).
            unsafe {
                let header = self.0.as_mut_ptr().cast::<libc::cmsghdr>();
                (*header).cmsg_len = len as _;
                (*header).cmsg_level = SOL_UDP;
                (*header).cmsg_type = UDP_SEGMENT;
                let data = self.0.as_mut_ptr().add(libc::CMSG_LEN(0) as usize);
                data.cast::<u16>().write_unaligned(segment);
            }
            space
        }
    }

    /// The segment size a receive's `UDP_GRO` control message reports, if there is one:
    /// the datagrams of a coalesced receive are that long, the last maybe shorter.
    pub(crate) fn gro_segment(control: &[u8]) -> Option<usize> {
        let header_len = std::mem::size_of::<libc::cmsghdr>();
        // SAFETY: arithmetic on constants.
        let data_offset = unsafe { libc::CMSG_LEN(0) } as usize;
        let align = std::mem::size_of::<usize>();
        let mut at = 0;
        while control.len().saturating_sub(at) >= header_len {
            // SAFETY: `header_len` bytes are in bounds at `at`; read_unaligned has no alignment
            // requirement.
            let header: libc::cmsghdr = unsafe {
                control
                    .as_ptr()
                    .add(at)
                    .cast::<libc::cmsghdr>()
                    .read_unaligned()
            };
            // usize on glibc, u32 on musl.
            #[allow(clippy::unnecessary_cast)]
            let len = header.cmsg_len as usize;
            if len < data_offset || at + len > control.len() {
                return None;
            }
            if header.cmsg_level == SOL_UDP
                && header.cmsg_type == UDP_GRO
                && len >= data_offset + std::mem::size_of::<libc::c_int>()
            {
                // SAFETY: the int lies within this message, checked above.
                let segment = unsafe {
                    control
                        .as_ptr()
                        .add(at + data_offset)
                        .cast::<libc::c_int>()
                        .read_unaligned()
                };
                return usize::try_from(segment).ok().filter(|&s| s > 0);
            }
            at += (len + align - 1) & !(align - 1);
        }
        None
    }

    /// Reads a socket address the kernel wrote (`msg_name`): IPv4 or IPv6, else `None`.
    pub(crate) fn sockaddr_from_bytes(name: &[u8]) -> Option<SocketAddr> {
        if name.len() < std::mem::size_of::<libc::sa_family_t>() {
            return None;
        }
        // SAFETY: each read is of a plain-data struct whose size was checked against `name`.
        unsafe {
            let family = name.as_ptr().cast::<libc::sa_family_t>().read_unaligned();
            match libc::c_int::from(family) {
                libc::AF_INET if name.len() >= std::mem::size_of::<libc::sockaddr_in>() => {
                    let a = name.as_ptr().cast::<libc::sockaddr_in>().read_unaligned();
                    Some(SocketAddr::V4(SocketAddrV4::new(
                        Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                        u16::from_be(a.sin_port),
                    )))
                }
                libc::AF_INET6 if name.len() >= std::mem::size_of::<libc::sockaddr_in6>() => {
                    let a = name.as_ptr().cast::<libc::sockaddr_in6>().read_unaligned();
                    Some(SocketAddr::V6(SocketAddrV6::new(
                        Ipv6Addr::from(a.sin6_addr.s6_addr),
                        u16::from_be(a.sin6_port),
                        u32::from_be(a.sin6_flowinfo),
                        a.sin6_scope_id,
                    )))
                }
                _ => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(parts: &[(&[u8], u16)]) -> DatagramQueue {
        let mut q = DatagramQueue::default();
        for (data, segment) in parts {
            q.push(Bytes::copy_from_slice(data), *segment);
        }
        q
    }

    fn take_all(q: &mut DatagramQueue, gso: bool) -> Vec<(Batch, Vec<u8>)> {
        let mut out = Vec::new();
        let mut parts = Vec::new();
        while let Some(batch) = q.take(gso, &mut parts) {
            let bytes: Vec<u8> = parts.iter().flat_map(|p| p.data.to_vec()).collect();
            assert_eq!(bytes.len(), batch.bytes);
            // Every part but a short last datagram is cut at the batch's segment size.
            let (last, rest) = parts.split_last().expect("a batch has parts");
            assert!(rest.iter().all(|p| p.segment == batch.segment));
            assert!(last.segment == batch.segment || last.data.len() < batch.segment);
            out.push((batch, bytes));
            parts.clear();
        }
        assert!(q.is_empty());
        assert_eq!(q.len(), 0);
        out
    }

    fn batch(segment: usize, datagrams: usize, bytes: usize) -> Batch {
        Batch {
            segment,
            datagrams,
            bytes,
        }
    }

    #[test]
    fn gso_batches_join_parts_of_one_segment_size_until_a_short_datagram() {
        let mut q = queue(&[
            (&[1; 10], 5),
            (&[2; 5], 5),
            (&[3; 7], 5), // 5 + a short 2: ends the batch
            (&[4; 5], 5),
            (&[5; 6], 6), // another, larger size
            (&[6; 3], 0), // one shorter datagram of 3: ends that batch
            (&[7; 3], 0), // and starts the next
        ]);
        assert_eq!(q.len(), 39);
        assert_eq!(q.datagrams(), 9);
        let batches = take_all(&mut q, true);
        let shapes: Vec<Batch> = batches.iter().map(|(b, _)| *b).collect();
        assert_eq!(
            shapes,
            [
                batch(5, 5, 22),
                batch(5, 1, 5),
                batch(6, 2, 9),
                batch(3, 1, 3)
            ]
        );
        let mut expected = vec![1; 10];
        expected.extend([2; 5]);
        expected.extend([3; 7]);
        assert_eq!(batches[0].1, expected);
    }

    #[test]
    fn gso_batches_respect_segment_and_byte_limits() {
        // 100 datagrams of 200 bytes: 64 + 36.
        let mut q = queue(&[(&[7; 20_000], 200)]);
        let shapes: Vec<Batch> = take_all(&mut q, true).iter().map(|(b, _)| *b).collect();
        assert_eq!(shapes, [batch(200, 64, 12_800), batch(200, 36, 7_200)]);
        // 1,400-byte datagrams: 46 fit in 65,000 bytes.
        let mut q = queue(&[(&[7; 1400 * 50 + 10], 1400)]);
        let shapes: Vec<Batch> = take_all(&mut q, true).iter().map(|(b, _)| *b).collect();
        assert_eq!(
            shapes,
            [batch(1400, 46, 64_400), batch(1400, 5, 4 * 1400 + 10)]
        );
        // One datagram larger than the limit still goes (the kernel decides).
        let mut q = queue(&[(&[7; 65_500], 0), (&[8; 10], 0)]);
        let shapes: Vec<Batch> = take_all(&mut q, true).iter().map(|(b, _)| *b).collect();
        assert_eq!(shapes, [batch(65_500, 1, 65_500), batch(10, 1, 10)]);
        // Segments above an MTU go one per send, even of one size.
        let mut q = queue(&[(&[7; 4000], 2000), (&[8; 2000], 0), (&[9; 10], 0)]);
        let shapes: Vec<Batch> = take_all(&mut q, true).iter().map(|(b, _)| *b).collect();
        assert_eq!(
            shapes,
            [
                batch(2000, 1, 2000),
                batch(2000, 1, 2000),
                batch(2000, 1, 2000),
                batch(10, 1, 10)
            ]
        );
    }

    #[test]
    fn without_gso_every_batch_is_one_datagram() {
        let mut q = queue(&[(&[1; 12], 5), (&[2; 3], 5)]);
        let batches = take_all(&mut q, false);
        let lens: Vec<usize> = batches.iter().map(|(b, _)| b.bytes).collect();
        assert_eq!(lens, [5, 5, 2, 3]);
        assert!(batches.iter().all(|(b, _)| b.datagrams == 1));
    }

    #[test]
    fn parts_put_back_keep_their_order() {
        let mut q = queue(&[(&[1; 10], 5), (&[2; 10], 5), (&[3; 4], 4)]);
        let mut parts = Vec::new();
        let first = q.take(true, &mut parts).unwrap();
        // The shorter datagram of 4 ends the batch.
        assert_eq!(first, batch(5, 5, 24));
        assert_eq!(q.len(), 0);
        q.put_back(parts.drain(1..));
        assert_eq!(q.len(), 14);
        let rest = take_all(&mut q, true);
        assert_eq!(rest.len(), 1);
        let mut expected = vec![2; 10];
        expected.extend([3; 4]);
        assert_eq!(rest[0].1, expected);
    }

    #[test]
    fn empty_data_queues_nothing() {
        let mut q = DatagramQueue::default();
        q.push(Bytes::new(), 100);
        assert!(q.is_empty());
        assert!(q.take(true, &mut Vec::new()).is_none());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn gso_turns_off_only_when_the_kernel_refuses_it() {
        let mut gso = Gso {
            on: true,
            refused: false,
        };
        assert!(!gso.refused(&io::Error::from_raw_os_error(libc::EMSGSIZE)));
        assert!(gso.on());
        assert!(gso.refused(&io::Error::from_raw_os_error(libc::EIO)));
        assert!(!gso.on());
        gso.set(true);
        assert!(gso.refused(&io::Error::from_raw_os_error(libc::ENOBUFS)));
        assert!(!gso.on());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn segment_control_message_reads_back() {
        let mut control = ControlBuf::new();
        let len = control.set_segment(1200);
        assert!(len > 0 && len <= CONTROL_LEN);
        // A UDP_GRO message has the same shape with an int payload.
        let mut gro = ControlBuf::new();
        let space = unsafe { libc::CMSG_SPACE(4) } as usize;
        unsafe {
            let header = gro.0.as_mut_ptr().cast::<libc::cmsghdr>();
            (*header).cmsg_len = libc::CMSG_LEN(4) as _;
            (*header).cmsg_level = SOL_UDP;
            (*header).cmsg_type = UDP_GRO;
            gro.0
                .as_mut_ptr()
                .add(libc::CMSG_LEN(0) as usize)
                .cast::<i32>()
                .write_unaligned(1200);
        }
        assert_eq!(gro_segment(&gro.0[..space]), Some(1200));
        assert_eq!(gro_segment(&control.0[..len]), None);
        assert_eq!(gro_segment(&[]), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn socket_addresses_read_back() {
        for addr in ["127.0.0.1:5000", "[::1]:6000", "[fe80::1%3]:7"] {
            let addr: std::net::SocketAddr = addr.parse().unwrap();
            let raw = socket2::SockAddr::from(addr);
            // SAFETY: `raw` holds `len` initialized bytes.
            let bytes = unsafe {
                std::slice::from_raw_parts(raw.as_ptr().cast::<u8>(), raw.len() as usize)
            };
            assert_eq!(sockaddr_from_bytes(bytes), Some(addr));
        }
        assert_eq!(sockaddr_from_bytes(&[0; 1]), None);
    }
}
