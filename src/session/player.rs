//! A viewer of a hub stream, whatever its protocol: its cursor into the worker's mirror, its
//! framing, and the flow control every protocol shares — a high-water mark on its socket
//! queue, a skip to the newest keyframe when it falls too far behind, and a send timeout when
//! its socket takes nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_ring::{ConnId, Driver};

use super::Ctx;
use crate::config::PlayConfig;
use crate::framing::Framing;
use crate::hub::local::Cursor;
use crate::hub::{Frame, JoinStart, Stream};
use crate::request::StreamRequest;

/// A player gets more frames only while less than this is queued on its socket: enough for a
/// merged write of a few hundred ms at high bitrates, small enough that a stuck player holds
/// little memory.
pub const PLAYER_HIGH_WATER: usize = 512 * 1024;

/// Where a player's framed bytes go: the driver connection's send queue, or a protocol that
/// wraps them in packets of its own (SRT).
pub trait PlayerOutput {
    /// Bytes written and not yet on the wire: the back-pressure signal.
    fn pending(&self, driver: &Driver, conn: ConnId) -> usize;
    /// Writes one frame at `timestamp`; returns the bytes written.
    fn write(
        &mut self,
        driver: &mut Driver,
        conn: ConnId,
        framing: &mut Framing,
        frame: &Frame,
        timestamp: u32,
    ) -> usize;
}

/// The usual output: the connection's own send queue.
pub struct ToDriver;

impl PlayerOutput for ToDriver {
    fn pending(&self, driver: &Driver, conn: ConnId) -> usize {
        driver.pending_bytes(conn)
    }

    fn write(
        &mut self,
        driver: &mut Driver,
        conn: ConnId,
        framing: &mut Framing,
        frame: &Frame,
        timestamp: u32,
    ) -> usize {
        framing.write(driver, conn, frame, timestamp)
    }
}

pub struct Player {
    pub stream: Arc<Stream>,
    pub request: StreamRequest,
    pub cursor: Cursor,
    pub config: PlayConfig,
    pub framing: Framing,
    /// Last time the socket took data (queue drained below the high-water mark).
    last_progress: Instant,
    /// The last write stopped at the high-water mark with frames left: a `Drained` should
    /// resume it. (Otherwise `Drained` needs no work: the next flush writes new frames.)
    throttled: bool,
    reported_skips: u64,
    reported_skipped_frames: u64,
}

impl Player {
    pub fn new(
        stream: Arc<Stream>,
        request: StreamRequest,
        cursor: Cursor,
        config: PlayConfig,
        framing: Framing,
        now: Instant,
    ) -> Player {
        Player {
            stream,
            request,
            cursor,
            config,
            framing,
            last_progress: now,
            throttled: false,
            reported_skips: 0,
            reported_skipped_frames: 0,
        }
    }

    /// Writes what a new viewer starts with (metadata, sequence headers, GOP cache). Returns
    /// the bytes queued.
    pub fn start(&mut self, ctx: &mut Ctx<'_>, start: &JoinStart) -> u64 {
        self.start_to(ctx, start, &mut ToDriver)
    }

    /// [`Player::start`] into another output.
    pub fn start_to(
        &mut self,
        ctx: &mut Ctx<'_>,
        start: &JoinStart,
        output: &mut impl PlayerOutput,
    ) -> u64 {
        let mut written = 0;
        for frame in &start.frames {
            if let Some(out) = self.cursor.admit(frame) {
                written += output.write(
                    ctx.driver,
                    ctx.conn,
                    &mut self.framing,
                    out.frame,
                    out.timestamp,
                ) as u64;
            }
        }
        written
    }

    /// Writes the frames this viewer has not had yet, as far as its socket keeps up. Returns
    /// the bytes queued and its cursor (the oldest frame it still needs, `None` while paused)
    /// so the mirror can drop older ones.
    pub fn write_pending(&mut self, ctx: &mut Ctx<'_>, client: &str) -> (u64, Option<u64>) {
        self.write_pending_to(ctx, client, &mut ToDriver)
    }

    /// [`Player::write_pending`] into another output.
    pub fn write_pending_to(
        &mut self,
        ctx: &mut Ctx<'_>,
        client: &str,
        output: &mut impl PlayerOutput,
    ) -> (u64, Option<u64>) {
        let Ctx {
            conn,
            now,
            driver,
            locals,
            counters,
            ..
        } = ctx;
        let Some(local) = locals.get(&self.stream.id) else {
            return (0, None);
        };
        if self.cursor.paused {
            // A paused player resumes at a new keyframe: it holds no frames meanwhile.
            return (0, None);
        }
        // Applied even when the socket is full, so a stuck player cannot pin old frames.
        self.cursor.enforce_lag(local, self.config.queue_length_ms);
        let mut pending = output.pending(driver, *conn);
        if pending < PLAYER_HIGH_WATER {
            self.last_progress = *now;
        }
        let mut written = 0;
        self.throttled = false;
        loop {
            if pending >= PLAYER_HIGH_WATER {
                self.throttled = true;
                break;
            }
            let Some(out) = self.cursor.next(local, self.config.queue_length_ms) else {
                break;
            };
            let bytes = output.write(driver, *conn, &mut self.framing, out.frame, out.timestamp);
            pending += bytes;
            written += bytes as u64;
        }
        if self.cursor.skips > self.reported_skips {
            counters.viewer_skips += self.cursor.skips - self.reported_skips;
            counters.viewer_skipped_frames +=
                self.cursor.skipped_frames - self.reported_skipped_frames;
            self.reported_skips = self.cursor.skips;
            self.reported_skipped_frames = self.cursor.skipped_frames;
            tracing::debug!(
                client,
                skipped_frames = self.cursor.skipped_frames,
                "player too slow: skipped to the newest keyframe"
            );
        }
        (written, Some(self.cursor.next))
    }

    /// Whether a `Drained` event should resume writing.
    pub fn throttled(&self) -> bool {
        self.throttled
    }

    /// Why this viewer should be closed now, if its socket has taken nothing for too long.
    pub fn stalled(&self, ctx: &Ctx<'_>) -> Option<String> {
        let stalled = ctx.driver.pending_bytes(ctx.conn) >= PLAYER_HIGH_WATER
            && ctx.now >= self.last_progress + Duration::from_millis(self.config.send_timeout_ms);
        stalled.then(|| "player stopped reading (send_timeout)".to_string())
    }

    /// Leaves the stream (on this worker's mirror and in the hub).
    pub fn leave(&self, ctx: &mut Ctx<'_>, client: &str) {
        ctx.leave(&self.stream);
        if self.cursor.skips > 0 {
            tracing::info!(
                client,
                skipped_frames = self.cursor.skipped_frames,
                skips = self.cursor.skips,
                "player fell behind during play"
            );
        }
    }

    /// `vhost/app/stream`, for logs.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.stream.key.vhost, self.request.path())
    }
}
