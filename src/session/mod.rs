//! Protocol sessions: each glues a `sluice_proto` state machine to a driver connection and to
//! the hub. [`Ctx`] is what a session may touch while it handles an event.

pub mod http;
pub mod player;
pub mod rtmp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use sluice_ring::{ConnId, Driver};

use crate::hub::local::{Cursor, LocalStream};
use crate::hub::{Frame, JoinStart, Stream, StreamKey, StreamSettings};
use crate::worker::Shared;

/// What a connection is speaking.
pub enum Session {
    Rtmp(Box<rtmp::RtmpSession>),
    Http(Box<http::HttpSession>),
}

/// What `Session::handle_input` took in, for `Session::after_input` to act on.
pub enum Input {
    Rtmp(Result<(), sluice_proto::rtmp::SessionError>),
    Http,
}

impl Session {
    pub fn conn(&self) -> ConnId {
        match self {
            Session::Rtmp(s) => s.conn_hint(),
            Session::Http(s) => s.conn_hint(),
        }
    }

    /// Takes received bytes (while the driver still lends them).
    pub fn handle_input(
        &mut self,
        now: Instant,
        data: &[u8],
        config: &crate::config::Config,
    ) -> Input {
        match self {
            Session::Rtmp(s) => Input::Rtmp(s.handle_input(now, data)),
            Session::Http(s) => {
                s.handle_input(now, data, config);
                Input::Http
            }
        }
    }

    pub fn after_input(&mut self, input: Input, ctx: &mut Ctx<'_>) {
        match (self, input) {
            (Session::Rtmp(s), Input::Rtmp(result)) => s.after_input(result, ctx),
            (Session::Http(s), Input::Http) => s.after_input(ctx),
            _ => unreachable!("input comes from the same session"),
        }
    }

    pub fn drained(&mut self, ctx: &mut Ctx<'_>) {
        match self {
            Session::Rtmp(s) => s.drained(ctx),
            Session::Http(s) => s.drained(ctx),
        }
    }

    /// A viewer writes its pending frames; returns its cursor.
    pub fn write_pending(&mut self, ctx: &mut Ctx<'_>) -> Option<u64> {
        match self {
            Session::Rtmp(s) => s.write_pending(ctx),
            Session::Http(s) => s.write_pending(ctx),
        }
    }

    pub fn check_timeouts(&mut self, ctx: &mut Ctx<'_>) {
        match self {
            Session::Rtmp(s) => s.check_timeouts(ctx),
            Session::Http(s) => s.check_timeouts(ctx),
        }
    }

    /// The server is stopping: end this connection.
    pub fn shut_down(&mut self, ctx: &mut Ctx<'_>) {
        const REASON: &str = "server shutting down";
        match self {
            Session::Rtmp(s) => {
                s.set_close_reason(REASON);
                ctx.driver.close(ctx.conn);
            }
            Session::Http(s) => s.end_stream(ctx, REASON),
        }
    }

    pub fn closed(&mut self, reason: sluice_ring::CloseReason, ctx: &mut Ctx<'_>) {
        match self {
            Session::Rtmp(s) => s.closed(reason, ctx),
            Session::Http(s) => s.closed(reason, ctx),
        }
    }
}

/// Who a connection is, for logs and (later) the API.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// Process-unique serial number.
    pub serial: u64,
    /// Short id shown in logs and the API, SRS-style.
    pub id: String,
    pub peer: SocketAddr,
    pub conn: ConnId,
    pub started: Instant,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl ClientInfo {
    pub fn new(serial: u64, conn: ConnId, peer: SocketAddr, now: Instant) -> ClientInfo {
        ClientInfo {
            serial,
            id: client_id(serial),
            peer,
            conn,
            started: now,
            bytes_in: 0,
            bytes_out: 0,
        }
    }
}

/// An 8-character id from a serial number: distinct for distinct serials, not sequential to
/// the eye (a bijective mix of the serial, in base 36).
fn client_id(serial: u64) -> String {
    let mut x = serial.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 32;
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    (0..8)
        .map(|_| {
            let digit = DIGITS[(x % 36) as usize] as char;
            x /= 36;
            digit
        })
        .collect()
}

/// What a session may use while handling one event.
pub struct Ctx<'a> {
    pub conn: ConnId,
    pub now: Instant,
    pub worker: usize,
    pub driver: &'a mut Driver,
    pub shared: &'a Shared,
    pub locals: &'a mut HashMap<u64, LocalStream>,
    pub wake: &'a mut Vec<usize>,
    pub pending_wakes: &'a mut Vec<(usize, Arc<Stream>)>,
    pub dirty: &'a mut Vec<u64>,
}

impl Ctx<'_> {
    /// Appends a publisher's frame to its stream and notes which workers to wake at the end of
    /// this batch.
    pub fn publish_frame(&mut self, stream: &Arc<Stream>, frame: Arc<Frame>) {
        stream.push(frame, self.wake);
        for worker in self.wake.drain(..) {
            if !self
                .pending_wakes
                .iter()
                .any(|(w, s)| *w == worker && Arc::ptr_eq(s, stream))
            {
                self.pending_wakes.push((worker, stream.clone()));
            }
        }
    }

    /// Makes this connection a viewer of a stream on this worker: returns the stream, what to
    /// send first, and the cursor for live frames.
    pub fn join(
        &mut self,
        key: StreamKey,
        settings: &StreamSettings,
    ) -> (Arc<Stream>, JoinStart, Cursor) {
        let stream = self.shared.hub.join(key, settings, self.worker);
        let local = self
            .locals
            .entry(stream.id)
            .or_insert_with(|| LocalStream::new(stream.clone(), stream.head_seq(), self.now));
        let start = local.attach(self.worker);
        local.viewers.push(self.conn);
        let cursor = Cursor::new(local.end(), !start.has_keyframe);
        if local.unflushed > 0 && !self.dirty.contains(&stream.id) {
            // Frames the attach copied for the other viewers: write them at the batch end.
            self.dirty.push(stream.id);
        }
        (stream, start, cursor)
    }

    pub fn leave(&mut self, stream: &Arc<Stream>) {
        if let Some(local) = self.locals.get_mut(&stream.id) {
            local.viewers.retain(|c| *c != self.conn);
            if local.viewers.is_empty() {
                self.locals.remove(&stream.id);
            }
        }
        self.shared.hub.leave(stream, self.worker);
    }
}

#[cfg(test)]
mod tests {
    use super::client_id;

    #[test]
    fn client_ids_are_short_and_distinct() {
        let ids: std::collections::HashSet<String> = (1..10_000).map(client_id).collect();
        assert_eq!(ids.len(), 9_999);
        assert!(ids.iter().all(|id| id.len() == 8));
    }
}
