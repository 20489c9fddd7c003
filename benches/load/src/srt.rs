//! `srt-play`: SRT viewers (callers) of one stream, each on its own UDP socket — a server tells
//! SRT callers apart by their source address — driven by srt-protocol's sans-IO state machines:
//! [`Connect`] for the caller handshake, then a [`DuplexConnection`] (ACK/ACK2, NAK, TSBPD
//! release, keepalive). Their timers live in one heap, as the HLS viewers' do.
//!
//! What a viewer gets released is MPEG-TS. [`TsCounter`] counts video frames without
//! reassembling them: a frame starts at a packet of the PMT's video PID with
//! payload_unit_start_indicator set; only its first bytes are kept, enough to see whether it
//! is a random access point and to read the synthetic frame number
//! ([`crate::source::find_marker`]) that an H.264 NAL unit keeps from FLV to Annex B.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sluice_ring::{CloseReason, ConnId, Driver, RecvBuf, UdpId};
use srt_protocol::connection::{Action, DuplexConnection, Input};
use srt_protocol::packet::{Packet, SeqNumber};
use srt_protocol::protocol::pending_connection::ConnectionResult;
use srt_protocol::protocol::pending_connection::connect::Connect;
use srt_protocol::settings::ConnInitSettings;

use crate::source::find_marker;
use crate::stats::{SrtStats, ViewerStats};
use crate::udp::{Timers, UdpViewers, bind_address, guarded, segment_len};

/// Handshake packets are resent this often until answered (libsrt: 250 ms).
const HANDSHAKE_RETRY: Duration = Duration::from_millis(250);
/// The shortest timer: a connection that asks for "now" again is not spun on.
const MIN_WAKE: Duration = Duration::from_micros(500);
/// Bytes of a video PES kept to classify it (PES header ≤ 19 bytes, AUD, SPS/PPS, the NAL
/// header and the synthetic marker fit with room to spare).
const PES_PREFIX: usize = 192;
const TS_PACKET: usize = 188;

/// Splits `srt://host:port?streamid=...` (or `srt://host:port/app/stream`, played as
/// `#!::r=app/stream,m=request`) into the server's address and the stream id.
pub fn parse_url(url: &str) -> Result<(SocketAddr, String), String> {
    let rest = url
        .strip_prefix("srt://")
        .ok_or_else(|| format!("{url}: not an srt:// URL"))?;
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = before_query.split_once('/').unwrap_or((before_query, ""));
    let addr = std::net::ToSocketAddrs::to_socket_addrs(authority)
        .map_err(|e| format!("{url}: {authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url}: no address"))?;
    let from_query = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("streamid="))
        .map(percent_decode);
    let stream_id = match from_query {
        Some(id) if !id.is_empty() => id,
        _ if !path.is_empty() => format!("#!::r={path},m=request"),
        _ => {
            return Err(format!(
                "{url}: no stream: give ?streamid=#!::r=app/stream,m=request or a path"
            ));
        }
    };
    Ok((addr, stream_id))
}

/// `%XX` escapes decoded (ffmpeg writes stream ids that way); anything else kept as is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A video frame seen by a viewer: when its first TS packet was released to the player.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoFrame {
    pub at: Instant,
    pub keyframe: bool,
    /// The synthetic frame number, if the frame carries one.
    pub marker: Option<u64>,
}

/// The start of a video PES being collected.
struct PendingFrame {
    at: Instant,
    random_access: bool,
    prefix: [u8; PES_PREFIX],
    len: usize,
}

/// Counts video frames in an MPEG-TS byte stream (see the module docs). Total: garbage
/// costs a resync, never a panic.
#[derive(Default)]
pub struct TsCounter {
    /// A TS packet cut by the end of a payload.
    carry: Vec<u8>,
    pmt_pid: Option<u16>,
    video_pid: Option<u16>,
    h265: bool,
    pending: Option<Box<PendingFrame>>,
    last_cc: Option<u8>,
    /// Continuity counter jumps on the video PID: TS packets the player never got.
    pub cc_errors: u64,
    /// Bytes skipped to find the next sync byte.
    pub sync_errors: u64,
}

impl TsCounter {
    /// Feeds released bytes; frames whose start is complete go to `out`.
    pub fn push(&mut self, mut data: &[u8], now: Instant, out: &mut Vec<VideoFrame>) {
        if !self.carry.is_empty() {
            let need = TS_PACKET - self.carry.len();
            let take = need.min(data.len());
            self.carry.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.carry.len() < TS_PACKET {
                return;
            }
            let packet = std::mem::take(&mut self.carry);
            self.packet(&packet, now, out);
            self.carry = packet;
            self.carry.clear();
        }
        while !data.is_empty() {
            if data[0] != 0x47 {
                let skip = data.iter().position(|&b| b == 0x47).unwrap_or(data.len());
                self.sync_errors += skip as u64;
                data = &data[skip..];
                continue;
            }
            if data.len() < TS_PACKET {
                self.carry.extend_from_slice(data);
                return;
            }
            self.packet(&data[..TS_PACKET], now, out);
            data = &data[TS_PACKET..];
        }
    }

    fn packet(&mut self, p: &[u8], now: Instant, out: &mut Vec<VideoFrame>) {
        let pusi = p[1] & 0x40 != 0;
        let pid = u16::from(p[1] & 0x1f) << 8 | u16::from(p[2]);
        let control = (p[3] >> 4) & 3;
        let cc = p[3] & 0x0f;
        let mut start = 4;
        let mut random_access = false;
        if control & 2 != 0 {
            let length = usize::from(p[4]);
            random_access = length > 0 && p[5] & 0x40 != 0;
            start = 5 + length;
        }
        let payload = if control & 1 != 0 && start < TS_PACKET {
            &p[start..]
        } else {
            &[][..]
        };
        if pid == 0 && pusi {
            self.pat(payload);
        } else if Some(pid) == self.pmt_pid && pusi {
            self.pmt(payload);
        } else if Some(pid) == self.video_pid {
            if control & 1 != 0 {
                if let Some(last) = self.last_cc
                    && cc != (last + 1) & 0x0f
                    && cc != last
                {
                    self.cc_errors += 1;
                }
                self.last_cc = Some(cc);
            }
            if pusi {
                self.emit(out);
                self.pending = Some(Box::new(PendingFrame {
                    at: now,
                    random_access,
                    prefix: [0; PES_PREFIX],
                    len: 0,
                }));
            }
            if let Some(pending) = &mut self.pending {
                let take = payload.len().min(PES_PREFIX - pending.len);
                pending.prefix[pending.len..pending.len + take].copy_from_slice(&payload[..take]);
                pending.len += take;
                if pending.len == PES_PREFIX {
                    self.emit(out);
                }
            }
        }
    }

    /// The section a PSI payload starts (after the pointer field), if it fits.
    fn section(payload: &[u8]) -> Option<&[u8]> {
        let pointer = usize::from(*payload.first()?);
        let section = payload.get(1 + pointer..)?;
        let length = usize::from(u16::from_be_bytes([*section.get(1)?, *section.get(2)?]) & 0xfff);
        // Without the CRC.
        section.get(..(3 + length).checked_sub(4)?)
    }

    fn pat(&mut self, payload: &[u8]) {
        let Some(section) = Self::section(payload) else {
            return;
        };
        if section.first() != Some(&0x00) {
            return;
        }
        for entry in section.get(8..).unwrap_or(&[]).chunks_exact(4) {
            let program = u16::from_be_bytes([entry[0], entry[1]]);
            if program != 0 {
                self.pmt_pid = Some(u16::from_be_bytes([entry[2], entry[3]]) & 0x1fff);
                return;
            }
        }
    }

    fn pmt(&mut self, payload: &[u8]) {
        let Some(section) = Self::section(payload) else {
            return;
        };
        if section.first() != Some(&0x02) || section.len() < 12 {
            return;
        }
        let info_len = usize::from(u16::from_be_bytes([section[10], section[11]]) & 0xfff);
        let mut rest = section.get(12 + info_len..).unwrap_or(&[]);
        while rest.len() >= 5 {
            let stream_type = rest[0];
            let pid = u16::from_be_bytes([rest[1], rest[2]]) & 0x1fff;
            let es_info = usize::from(u16::from_be_bytes([rest[3], rest[4]]) & 0xfff);
            // MPEG-1/2 video, MPEG-4 part 2, H.264, H.265.
            if matches!(stream_type, 0x01 | 0x02 | 0x10 | 0x1b | 0x24) {
                if self.video_pid != Some(pid) {
                    self.video_pid = Some(pid);
                    self.last_cc = None;
                    self.pending = None;
                }
                self.h265 = stream_type == 0x24;
                return;
            }
            rest = rest.get(5 + es_info..).unwrap_or(&[]);
        }
    }

    /// The frame being collected is as complete as it needs to be.
    fn emit(&mut self, out: &mut Vec<VideoFrame>) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let pes = &pending.prefix[..pending.len];
        // 00 00 01 stream_id length(2) flags(2) header_data_length(1) header data.
        let es = match pes {
            [0, 0, 1, _, _, _, _, _, header_len, ..] => {
                pes.get(9 + usize::from(*header_len)..).unwrap_or(&[])
            }
            _ => &[][..],
        };
        out.push(VideoFrame {
            at: pending.at,
            keyframe: pending.random_access || has_random_access_nal(es, self.h265),
            marker: find_marker(es),
        });
    }
}

/// An IDR (H.264) or IRAP (H.265) NAL unit behind a start code in `es`.
pub(crate) fn has_random_access_nal(es: &[u8], h265: bool) -> bool {
    es.windows(4).any(|w| {
        w[..3] == [0, 0, 1]
            && if h265 {
                (16..=21).contains(&((w[3] >> 1) & 0x3f))
            } else {
                w[3] & 0x1f == 5
            }
    })
}

enum State {
    Connecting(Box<Connect>),
    Connected(Box<DuplexConnection>),
    Done,
}

/// One SRT viewer.
pub struct Viewer {
    flow: Option<ConnId>,
    state: State,
    ts: TsCounter,
    /// The pending timer; heap entries that differ are stale.
    wake_at: Option<Instant>,
    started: Instant,
    stats: SrtStats,
}

/// Packets serialized back to back into runs of equal-size datagrams (the last of a run may be
/// shorter), each run sent with one `send_datagrams` so the driver can use GSO.
#[derive(Default)]
struct DatagramBatch {
    buf: BytesMut,
    segment: usize,
    sealed: bool,
}

impl DatagramBatch {
    fn push(&mut self, packet: &Packet, driver: &mut Driver, flow: ConnId) {
        let size = packet.wire_size();
        if !self.buf.is_empty() && (self.sealed || size > self.segment) {
            self.flush(driver, flow);
        }
        if self.buf.is_empty() {
            self.segment = size;
        }
        let before = self.buf.len();
        packet.serialize(&mut self.buf);
        if self.buf.len() - before < self.segment {
            self.sealed = true;
        }
    }

    fn flush(&mut self, driver: &mut Driver, flow: ConnId) {
        if self.buf.is_empty() {
            return;
        }
        let segment = u16::try_from(self.segment).unwrap_or(u16::MAX);
        driver.send_datagrams(flow, self.buf.split().freeze(), segment);
        self.sealed = false;
    }
}

/// What one call into a connection asked for, owned (the crate's `Action` borrows it). Lives
/// on the stack for one step.
#[allow(clippy::large_enum_variant)]
enum Step {
    Send(Packet),
    Release(Bytes),
    Statistics,
    Wait(Duration),
    Close,
}

/// All SRT viewers of a run.
pub struct SrtPlay {
    server: SocketAddr,
    stream_id: String,
    /// Where viewers bind (port 0) and the address their handshake names.
    bind: SocketAddr,
    settings: ConnInitSettings,
    viewers: Vec<Viewer>,
    /// Which viewer a socket's datagrams are for.
    by_sock: HashMap<UdpId, usize>,
    by_flow: HashMap<ConnId, usize>,
    timers: Timers,
    batch: DatagramBatch,
    /// Scratch: a receive's parsed packets, a step's released payloads.
    packets: Vec<Packet>,
    released: Vec<Bytes>,
    /// Frames seen since the caller last drained them: (viewer, frame).
    pub frames: Vec<(usize, VideoFrame)>,
    scratch_frames: Vec<VideoFrame>,
    random: RandomState,
    /// Ending the run: a closing connection is not a failure.
    shutting_down: bool,
    /// How long a handshake may take.
    timeout: Duration,
}

impl SrtPlay {
    pub fn new(
        server: SocketAddr,
        stream_id: String,
        latency: Duration,
        timeout: Duration,
    ) -> SrtPlay {
        SrtPlay {
            server,
            stream_id,
            bind: bind_address(server),
            settings: ConnInitSettings {
                send_latency: latency,
                recv_latency: latency,
                ..ConnInitSettings::default()
            },
            viewers: Vec::new(),
            by_sock: HashMap::new(),
            by_flow: HashMap::new(),
            timers: Timers::default(),
            batch: DatagramBatch::default(),
            packets: Vec::new(),
            released: Vec::new(),
            frames: Vec::new(),
            scratch_frames: Vec::new(),
            random: RandomState::new(),
            shutting_down: false,
            timeout,
        }
    }

    fn fail(&mut self, driver: &mut Driver, v: usize, stats: &mut ViewerStats, why: String) {
        stats.failure.get_or_insert(why);
        let viewer = &mut self.viewers[v];
        viewer.state = State::Done;
        viewer.wake_at = None;
        if let Some(flow) = viewer.flow.take() {
            self.by_flow.remove(&flow);
            driver.close(flow);
        }
    }

    fn schedule(&mut self, v: usize, at: Instant) {
        // An earlier pending timer stays: when it fires the connection names its next one.
        self.timers.schedule(&mut self.viewers[v].wake_at, v, at);
    }

    /// (Re)sends the handshake's current packet, or gives up.
    fn tick_handshake(
        &mut self,
        driver: &mut Driver,
        v: usize,
        now: Instant,
        stats: &mut ViewerStats,
    ) {
        if now > self.viewers[v].started + self.timeout {
            let why = format!("timeout: no SRT handshake in {} s", self.timeout.as_secs());
            return self.fail(driver, v, stats, why);
        }
        let State::Connecting(connect) = &mut self.viewers[v].state else {
            return;
        };
        let Some(result) = guarded(|| connect.handle_tick(now)) else {
            return self.fail(driver, v, stats, "srt-protocol panicked".into());
        };
        self.handshake_result(driver, v, now, result, stats);
        if matches!(self.viewers[v].state, State::Connecting(_)) {
            self.viewers[v].wake_at = None;
            self.schedule(v, now + HANDSHAKE_RETRY);
        }
    }

    fn handshake_result(
        &mut self,
        driver: &mut Driver,
        v: usize,
        now: Instant,
        result: ConnectionResult,
        stats: &mut ViewerStats,
    ) {
        let Some(flow) = self.viewers[v].flow else {
            return;
        };
        match result {
            ConnectionResult::SendPacket((packet, _)) => {
                self.batch.push(&packet, driver, flow);
                self.batch.flush(driver, flow);
            }
            ConnectionResult::Connected(reply, connection) => {
                if let Some((packet, _)) = reply {
                    self.batch.push(&packet, driver, flow);
                    self.batch.flush(driver, flow);
                }
                stats.playing = Some(now);
                let viewer = &mut self.viewers[v];
                viewer.stats.handshake = Some(now - viewer.started);
                viewer.stats.tsbpd_latency = Some(connection.settings.recv_tsbpd_latency);
                viewer.state = State::Connected(Box::new(DuplexConnection::new(connection)));
                viewer.wake_at = None;
                self.drive(driver, v, now, Input::Timer, stats);
            }
            ConnectionResult::Reject(reply, reason) => {
                if let Some((packet, _)) = reply {
                    self.batch.push(&packet, driver, flow);
                    self.batch.flush(driver, flow);
                }
                self.fail(driver, v, stats, format!("rejected: {reason}"));
            }
            ConnectionResult::Failure(e) => {
                self.fail(driver, v, stats, format!("handshake: {e}"));
            }
            ConnectionResult::NotHandled(_)
            | ConnectionResult::NoAction
            | ConnectionResult::RequestAccess(_) => {}
        }
    }

    /// Feeds one input to a connected viewer and carries out what it asks.
    fn drive(
        &mut self,
        driver: &mut Driver,
        v: usize,
        now: Instant,
        input: Input,
        stats: &mut ViewerStats,
    ) {
        let viewer = &mut self.viewers[v];
        let (State::Connected(connection), Some(flow)) = (&mut viewer.state, viewer.flow) else {
            return;
        };
        let mut input = input;
        let mut wake = None;
        let mut close = None;
        loop {
            let step = guarded(|| match connection.handle_input(now, input) {
                Action::SendPacket((packet, _)) => Step::Send(packet),
                Action::ReleaseData((_, data)) => Step::Release(data),
                Action::UpdateStatistics(_) => Step::Statistics,
                Action::WaitForData(wait) => Step::Wait(wait),
                Action::Close => Step::Close,
            });
            input = match step {
                Some(Step::Send(packet)) => {
                    self.batch.push(&packet, driver, flow);
                    Input::PacketSent
                }
                Some(Step::Release(data)) => {
                    self.released.push(data);
                    Input::DataReleased
                }
                Some(Step::Statistics) => Input::StatisticsUpdated,
                Some(Step::Wait(wait)) => {
                    wake = Some(now + wait.max(MIN_WAKE));
                    break;
                }
                Some(Step::Close) => {
                    close = Some("the server closed the SRT connection");
                    break;
                }
                None => {
                    close = Some("srt-protocol panicked");
                    break;
                }
            };
        }
        self.batch.flush(driver, flow);
        let viewer = &mut self.viewers[v];
        if !self.released.is_empty() {
            for data in self.released.drain(..) {
                viewer.stats.counters.ts_bytes += data.len() as u64;
                viewer.ts.push(&data, now, &mut self.scratch_frames);
            }
            for frame in self.scratch_frames.drain(..) {
                viewer.stats.counters.frames += 1;
                viewer.stats.counters.marker_frames += u64::from(frame.marker.is_some());
                self.frames.push((v, frame));
            }
        }
        if let Some(why) = close {
            self.collect(v);
            if self.shutting_down {
                self.viewers[v].state = State::Done;
            } else {
                self.fail(driver, v, stats, why.into());
            }
            return;
        }
        if let Some(at) = wake {
            self.schedule(v, at);
        }
    }

    /// A flow ended. Returns whether it was one of ours.
    pub fn closed(
        &mut self,
        driver: &mut Driver,
        conn: ConnId,
        reason: CloseReason,
        stats: &mut [ViewerStats],
    ) -> bool {
        let Some(v) = self.by_flow.remove(&conn) else {
            return false;
        };
        self.viewers[v].flow = None;
        if reason != CloseReason::Local && !self.shutting_down {
            let why = match reason {
                CloseReason::Error(kind) => format!("socket: {kind}"),
                other => other.to_string(),
            };
            self.collect(v);
            self.fail(driver, v, &mut stats[v], why);
        }
        true
    }

    /// Ends the run: every connected viewer tells the server it leaves (SRT shutdown).
    pub fn shut_down(&mut self, driver: &mut Driver, now: Instant, stats: &mut [ViewerStats]) {
        self.shutting_down = true;
        for (v, stats) in stats.iter_mut().enumerate().take(self.viewers.len()) {
            self.collect(v);
            if matches!(self.viewers[v].state, State::Connected(_)) {
                self.drive(driver, v, now, Input::Data(None), stats);
            }
        }
        self.frames.clear();
    }

    /// Copies a viewer's connection and TS counters into its stats.
    fn collect(&mut self, v: usize) {
        let viewer = &mut self.viewers[v];
        if let State::Connected(connection) = &viewer.state {
            let s = connection.statistics();
            viewer.stats.counters.lost_packets = s.rx_loss_data;
            viewer.stats.counters.retransmitted_packets = s.rx_retransmit_data;
            viewer.stats.counters.dropped_packets = s.rx_dropped_data;
            viewer.stats.counters.naks_sent = s.tx_nak;
        }
        viewer.stats.counters.ts_cc_errors = viewer.ts.cc_errors;
        viewer.stats.counters.ts_sync_errors = viewer.ts.sync_errors;
    }

    /// Hands each viewer's SRT counters to its stats (after [`shut_down`](Self::shut_down)).
    pub fn finish(&mut self, stats: &mut [ViewerStats]) {
        for (v, viewer) in self.viewers.iter_mut().enumerate() {
            if let Some(s) = stats.get_mut(v) {
                s.srt = Some(std::mem::take(&mut viewer.stats));
            }
        }
    }
}

impl UdpViewers for SrtPlay {
    /// Opens viewer `v` (the next index): a socket, a flow to the server, the first handshake
    /// packet.
    fn open(&mut self, driver: &mut Driver, v: usize, now: Instant, stats: &mut ViewerStats) {
        debug_assert_eq!(v, self.viewers.len());
        let seed = self.random.hash_one(v);
        let connect = Connect::new(
            self.server,
            self.bind.ip(),
            self.settings.copy_randomize(),
            Some(self.stream_id.clone()),
            SeqNumber::new_truncate(seed as u32),
        );
        self.viewers.push(Viewer {
            flow: None,
            state: State::Connecting(Box::new(connect)),
            ts: TsCounter::default(),
            wake_at: None,
            started: now,
            stats: SrtStats::default(),
        });
        // A port-0 bind gets a port of its own (the driver sets no `SO_REUSEPORT` for it).
        let sock = match driver.bind_udp(self.bind) {
            Ok(sock) => sock,
            Err(e) => return self.fail(driver, v, stats, format!("bind: {e}")),
        };
        self.by_sock.insert(sock, v);
        let flow = driver.open_flow(sock, self.server);
        self.by_flow.insert(flow, v);
        self.viewers[v].flow = Some(flow);
        self.tick_handshake(driver, v, now, stats);
    }

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
    ) {
        let Some(&v) = self.by_sock.get(&sock) else {
            driver.release(buf);
            return;
        };
        let data = driver.recv_data(&buf);
        let segment = segment_len(data.len(), segment_size);
        let viewer = &mut self.viewers[v];
        let in_window = now >= window.0 && now <= window.1;
        let mut packets = std::mem::take(&mut self.packets);
        for datagram in data.chunks(segment) {
            viewer.stats.counters.datagrams += 1;
            viewer.stats.counters.wire_bytes += datagram.len() as u64;
            if in_window {
                stats[v].window_bytes += datagram.len() as u64;
            }
            let mut bytes = datagram;
            match guarded(|| Packet::parse(&mut bytes, peer.is_ipv6())) {
                Some(Ok(packet)) => packets.push(packet),
                _ => viewer.stats.counters.bad_datagrams += 1,
            }
        }
        driver.release(buf);
        if peer != self.server {
            packets.clear();
        }
        for packet in packets.drain(..) {
            match &mut self.viewers[v].state {
                State::Connecting(connect) => {
                    let Some(result) = guarded(|| connect.handle_packet(Ok((packet, peer)), now))
                    else {
                        self.fail(driver, v, &mut stats[v], "srt-protocol panicked".into());
                        break;
                    };
                    self.handshake_result(driver, v, now, result, &mut stats[v]);
                }
                State::Connected(_) => self.drive(
                    driver,
                    v,
                    now,
                    Input::Packet(Ok((packet, peer))),
                    &mut stats[v],
                ),
                State::Done => break,
            }
        }
        self.packets = packets;
    }

    fn timers(&mut self, driver: &mut Driver, now: Instant, stats: &mut [ViewerStats]) {
        while let Some(v) = self
            .timers
            .pop_due(now, &mut self.viewers, |v| &mut v.wake_at)
        {
            match self.viewers[v].state {
                State::Connecting(_) => self.tick_handshake(driver, v, now, &mut stats[v]),
                State::Connected(_) => self.drive(driver, v, now, Input::Timer, &mut stats[v]),
                State::Done => {}
            }
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        self.timers.next()
    }

    fn frames(&mut self) -> &mut Vec<(usize, VideoFrame)> {
        &mut self.frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{Synthetic, SyntheticConfig};
    use crate::udp::tests::{backends, play_turn};
    use sluice_proto::codec::{AnnexBWriter, AvcDecoderConfig};
    use sluice_proto::rtmp::MediaKind;
    use sluice_proto::ts::{AudioStreamType, Frame, Track, TsMuxer, VideoStreamType};

    /// The synthetic stream as MPEG-TS the way sluice muxes it (AVCC → Annex B → TS), video
    /// only or, with `audio`, with its AAC too: (keyframe, frame number, TS bytes) per video
    /// frame, tables in front of keyframes. Audio's TS bytes lead the next video frame's, so
    /// the chunks end to end are the whole stream up to the last video frame.
    fn synthetic_ts(frames: usize, audio: bool) -> Vec<(bool, Option<u64>, Vec<u8>)> {
        let mut source = Synthetic::new(SyntheticConfig {
            bitrate: 2_000_000,
            fps: 30,
            gop: 30,
        });
        let audio_type = audio.then_some(AudioStreamType::AacAdts);
        let mut muxer = TsMuxer::new(Some(VideoStreamType::H264), audio_type);
        let mut writer = None;
        let mut out = Vec::new();
        let mut ts = Vec::new();
        while out.len() < frames {
            let next = source.next();
            let ms = next.timestamp as i64;
            match next.kind {
                // The AVC sequence header: how to turn what follows into Annex B.
                MediaKind::Video if next.payload[1] == 0 => {
                    writer = Some(AnnexBWriter::h264(
                        &AvcDecoderConfig::parse(&next.payload[5..]).unwrap(),
                    ));
                }
                MediaKind::Video => {
                    let keyframe = next.payload[0] >> 4 == 1;
                    let mut annexb = Vec::new();
                    writer
                        .as_ref()
                        .unwrap()
                        .write(&next.payload[5..], keyframe, &mut annexb)
                        .unwrap();
                    let data: &[&[u8]] = &[&annexb];
                    let frame = Frame::from_ms(Track::Video, ms, ms, keyframe, data);
                    muxer.write_frame(&mut ts, &frame).unwrap();
                    out.push((keyframe, next.frame, std::mem::take(&mut ts)));
                }
                // Raw AAC frames (payload[1] == 0 is the AAC sequence header).
                MediaKind::Audio if audio && next.payload[1] == 1 => {
                    let data: &[&[u8]] = &[&next.payload[2..]];
                    let frame = Frame::from_ms(Track::Audio, ms, ms, false, data);
                    muxer.write_frame(&mut ts, &frame).unwrap();
                }
                _ => {}
            }
        }
        out
    }

    /// A minimal SRT listener on a std socket (srt-protocol's `Listen`, then a
    /// `DuplexConnection`) that sends `frames` at 30 fps in 1316-byte payloads.
    fn serve(socket: std::net::UdpSocket, frames: Vec<(bool, Option<u64>, Vec<u8>)>) {
        use srt_protocol::protocol::pending_connection::listen::Listen;
        socket
            .set_read_timeout(Some(Duration::from_millis(2)))
            .unwrap();
        let send = |socket: &std::net::UdpSocket, packet: &Packet, to: SocketAddr| {
            let mut out = BytesMut::new();
            packet.serialize(&mut out);
            let _ = socket.send_to(&out, to);
        };
        // srt-protocol's default send buffer is 32 packets (46,592 bytes): a keyframe overflows
        // it, and a sender whose buffer overflowed before it sent anything sends nothing more.
        let settings = ConnInitSettings {
            send_buffer_size: srt_protocol::options::PacketCount(8192),
            ..ConnInitSettings::default()
        };
        let mut listen = Listen::new(settings, false);
        let mut buf = vec![0u8; 2048];
        let started = Instant::now();
        let (mut connection, peer) = loop {
            assert!(started.elapsed() < Duration::from_secs(5), "no handshake");
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                continue;
            };
            let Ok(packet) = Packet::parse(&mut &buf[..n], false) else {
                continue;
            };
            match listen.handle_packet(Instant::now(), Ok((packet, from))) {
                ConnectionResult::SendPacket((reply, to)) => send(&socket, &reply, to),
                ConnectionResult::Connected(reply, connection) => {
                    if let Some((reply, to)) = reply {
                        send(&socket, &reply, to);
                    }
                    break (DuplexConnection::new(connection), from);
                }
                _ => {}
            }
        };
        let start = Instant::now();
        let mut next_frame = 0;
        let mut input = Input::Timer;
        loop {
            let now = Instant::now();
            if next_frame < frames.len()
                && now >= start + Duration::from_millis(33 * next_frame as u64)
            {
                for payload in frames[next_frame].2.chunks(1316) {
                    let mut action = connection.handle_input(
                        now,
                        Input::Data(Some((now, Bytes::copy_from_slice(payload)))),
                    );
                    while let Action::SendPacket((packet, to)) = action {
                        send(&socket, &packet, to);
                        action = connection.handle_input(now, Input::PacketSent);
                    }
                }
                next_frame += 1;
            }
            if next_frame == frames.len()
                && now > start + Duration::from_millis(33 * frames.len() as u64 + 500)
            {
                return;
            }
            loop {
                input = match connection.handle_input(now, input) {
                    Action::SendPacket((packet, to)) => {
                        send(&socket, &packet, to);
                        Input::PacketSent
                    }
                    Action::ReleaseData(_) => Input::DataReleased,
                    Action::UpdateStatistics(_) => Input::StatisticsUpdated,
                    Action::WaitForData(_) | Action::Close => break,
                };
            }
            input = match socket.recv_from(&mut buf) {
                Ok((n, from)) if from == peer => match Packet::parse(&mut &buf[..n], false) {
                    Ok(packet) => Input::Packet(Ok((packet, from))),
                    Err(_) => Input::Timer,
                },
                _ => Input::Timer,
            };
        }
    }

    /// One viewer against a real SRT listener, on each backend this machine runs: handshake,
    /// ACKs, TSBPD release, and every frame counted with its number.
    #[test]
    fn plays_from_an_srt_listener() {
        for backend in backends() {
            let frames = synthetic_ts(45, false);
            let expected: Vec<Option<u64>> = frames.iter().map(|f| f.1).collect();
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let server = socket.local_addr().unwrap();
            let thread = std::thread::spawn(move || serve(socket, frames));
            let mut driver = Driver::new(backend, &sluice_ring::DriverConfig::default()).unwrap();
            let mut play = SrtPlay::new(
                server,
                "#!::r=live/s,m=request".into(),
                Duration::from_millis(40),
                Duration::from_secs(5),
            );
            let t0 = Instant::now();
            let window = (t0, t0 + Duration::from_secs(60));
            let mut stats = vec![ViewerStats::default()];
            play.open(&mut driver, 0, t0, &mut stats[0]);
            let mut seen = Vec::new();
            while t0.elapsed() < Duration::from_secs(3) && seen.len() < expected.len() {
                play_turn(
                    &mut driver,
                    &mut play,
                    &mut stats,
                    window,
                    |driver, _, event, _, _| {
                        if let sluice_ring::Event::Received { buf, .. } = event {
                            driver.release(buf);
                        }
                    },
                );
                seen.extend(play.frames.drain(..).map(|(_, f)| f.marker));
            }
            play.shut_down(&mut driver, Instant::now(), &mut stats);
            play.finish(&mut stats);
            thread.join().unwrap();
            assert_eq!(stats[0].failure, None, "{backend}");
            assert!(stats[0].playing.is_some(), "{backend}");
            assert_eq!(seen, expected, "{backend}: {:?}", stats[0].srt);
            let srt = stats[0].srt.as_ref().unwrap();
            assert_eq!(
                srt.tsbpd_latency,
                Some(Duration::from_millis(120)),
                "{backend}"
            );
            assert_eq!(srt.counters.marker_frames, expected.len() as u64);
            assert_eq!(srt.counters.ts_cc_errors, 0);
        }
    }

    /// Every viewer is a peer of its own to the server: a port of its own.
    #[test]
    fn viewers_get_ports_of_their_own() {
        let mut driver = Driver::new(
            sluice_ring::Backend::Epoll,
            &sluice_ring::DriverConfig::default(),
        )
        .unwrap();
        // Nothing listens there; the handshakes go nowhere.
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut play = SrtPlay::new(
            server.local_addr().unwrap(),
            "#!::r=live/s,m=request".into(),
            Duration::from_millis(120),
            Duration::from_secs(5),
        );
        let viewers = 400;
        let mut stats: Vec<ViewerStats> = (0..viewers).map(|_| ViewerStats::default()).collect();
        let now = Instant::now();
        for (v, stats) in stats.iter_mut().enumerate() {
            play.open(&mut driver, v, now, stats);
            assert_eq!(stats.failure, None);
        }
        let ports: std::collections::HashSet<u16> = play
            .by_sock
            .keys()
            .map(|sock| driver.udp_local_addr(*sock).unwrap().port())
            .collect();
        assert_eq!(ports.len(), viewers);
    }

    #[test]
    fn urls() {
        let (addr, id) =
            parse_url("srt://127.0.0.1:10080?streamid=#!::r=live/s,m=request").expect("parses");
        assert_eq!(addr, "127.0.0.1:10080".parse().unwrap());
        assert_eq!(id, "#!::r=live/s,m=request");
        let (_, id) = parse_url("srt://127.0.0.1:10080/live/s").unwrap();
        assert_eq!(id, "#!::r=live/s,m=request");
        let (_, id) =
            parse_url("srt://127.0.0.1:9?latency=200&streamid=%23!%3A%3Ar%3Da%2Fb").unwrap();
        assert_eq!(id, "#!::r=a/b");
        assert!(parse_url("srt://127.0.0.1:10080").is_err());
        assert!(parse_url("rtmp://127.0.0.1/live/s").is_err());
    }

    /// The synthetic stream through the server's path (AVCC → Annex B → TS), fed in SRT-sized
    /// payloads that cut packets anywhere: every frame counted once, keyframes known, and the
    /// frame numbers intact.
    #[test]
    fn counts_frames_and_reads_markers_through_ts() {
        let stream = synthetic_ts(65, true);
        let sent: Vec<(bool, Option<u64>)> = stream
            .iter()
            .map(|(keyframe, number, _)| (*keyframe, *number))
            .collect();
        let ts: Vec<u8> = stream.into_iter().flat_map(|(_, _, ts)| ts).collect();
        let now = Instant::now();
        let mut counter = TsCounter::default();
        let mut frames = Vec::new();
        // 7 packets per payload, shifted by an odd amount so packets straddle payloads.
        let (head, rest) = ts.split_at(101);
        counter.push(head, now, &mut frames);
        for payload in rest.chunks(7 * 188) {
            counter.push(payload, now, &mut frames);
        }
        // The last frame is still collecting only if shorter than the prefix; ours are not.
        assert_eq!(frames.len(), sent.len());
        for (frame, (keyframe, number)) in frames.iter().zip(&sent) {
            assert_eq!(frame.keyframe, *keyframe);
            assert_eq!(frame.marker, *number);
        }
        assert_eq!(counter.cc_errors, 0);
        assert_eq!(counter.sync_errors, 0);

        // A lost payload shows as a continuity jump; garbage costs a resync.
        let mut counter = TsCounter::default();
        let mut frames = Vec::new();
        let payloads: Vec<&[u8]> = ts.chunks(7 * 188).collect();
        for (i, payload) in payloads.iter().enumerate() {
            if i == 20 {
                counter.push(&[1, 2, 3], now, &mut frames);
                continue;
            }
            counter.push(payload, now, &mut frames);
        }
        assert!(counter.cc_errors >= 1);
        assert_eq!(counter.sync_errors, 3);
        assert!(frames.len() <= sent.len());
    }
}
