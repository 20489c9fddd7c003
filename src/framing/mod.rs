//! How one viewer's connection frames the hub's frames: RTMP chunks, FLV tags (over HTTP,
//! chunked or not, or in WebSocket messages), MPEG-TS, or raw AAC/MP3.
//!
//! Every framing writes "a few bytes of my own + a body every viewer shares": the per-viewer
//! part (an RTMP chunk header or FLV tag header with this viewer's timestamp, a chunk-size
//! line, a WebSocket frame header) goes inline in the send queue, the body is a refcount of
//! the frame's bytes.

pub mod audio;
pub mod flv;
pub mod rtmp;
pub mod ts;

use sluice_ring::{ConnId, Driver};

use crate::hub::{Frame, FrameKind};

/// A viewer's output format and its per-connection state.
pub enum Framing {
    Rtmp(rtmp::RtmpFraming),
    Flv(flv::FlvFraming),
    Ts(ts::TsFraming),
    Audio(audio::AudioFraming),
    /// No byte framing: the player's output takes the frames as they are (WebRTC packetizes
    /// them into RTP itself).
    Frames,
}

impl Framing {
    /// Queues `frame` at this viewer's `timestamp`. Returns the bytes queued (0 when this
    /// format carries nothing for the frame).
    pub fn write(
        &mut self,
        driver: &mut Driver,
        conn: ConnId,
        frame: &Frame,
        timestamp: u32,
    ) -> usize {
        if frame.kind == FrameKind::Opus || matches!(self, Framing::Frames) {
            // Opus is for WebRTC viewers only; every format here carries the stream's AAC.
            return 0;
        }
        if let Framing::Rtmp(f) = self {
            return f.write(driver, conn, frame, timestamp);
        }
        let Some((head, body)) = self.frame(frame, timestamp) else {
            return 0;
        };
        let len = head.as_bytes().len() + body.len();
        driver.send_with_header(conn, head.as_bytes(), body);
        len
    }

    /// The frame as this viewer's head and the shared body, for outputs that don't write to
    /// a driver connection themselves (SRT carries the bytes in its own packets). `None` for
    /// RTMP (see [`Framing::write`]) and when the format carries nothing for the frame.
    pub fn frame(&mut self, frame: &Frame, timestamp: u32) -> Option<(Head, bytes::Bytes)> {
        match self {
            Framing::Rtmp(_) | Framing::Frames => None,
            Framing::Flv(f) => f.frame(frame, timestamp),
            Framing::Ts(f) => f.frame(frame),
            Framing::Audio(f) => f.frame(frame),
        }
    }

    /// What ends this viewer's body when the server ends it (chunked terminator, WebSocket
    /// close); nothing for RTMP.
    pub fn end(&mut self) -> Vec<u8> {
        match self {
            Framing::Rtmp(_) | Framing::Frames => Vec::new(),
            Framing::Flv(f) => f.end(),
            Framing::Ts(f) => f.end(),
            Framing::Audio(f) => f.end(),
        }
    }
}

/// Longest per-viewer head any framing writes (fits the ring's inline head).
pub const MAX_HEAD: usize = 32;

/// A per-viewer head being assembled on the stack.
pub struct Head {
    bytes: [u8; MAX_HEAD],
    len: usize,
}

impl Head {
    pub fn new() -> Head {
        Head {
            bytes: [0; MAX_HEAD],
            len: 0,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.bytes[self.len..self.len + data.len()].copy_from_slice(data);
        self.len += data.len();
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// HTTP/1.1 chunked transfer coding for a stream of writes, with each chunk's closing CRLF
/// carried at the front of the next head so a write is one head plus one shared body.
#[derive(Debug, Clone, Copy)]
pub struct Chunking {
    pub chunked: bool,
    /// A chunk was started and its closing CRLF is still owed.
    open: bool,
}

impl Chunking {
    pub fn new(chunked: bool) -> Chunking {
        Chunking {
            chunked,
            open: false,
        }
    }

    /// Starts a chunk of `size` bytes in `head` (after closing the previous one).
    pub fn start(&mut self, head: &mut Head, size: usize) {
        if !self.chunked || size == 0 {
            return;
        }
        if self.open {
            head.push(b"\r\n");
        }
        head.push(sluice_proto::http::ChunkHeader::new(size).as_bytes());
        self.open = true;
    }

    /// The bytes that end the body: the owed CRLF and the last chunk.
    pub fn finish(&mut self) -> &'static [u8] {
        if !self.chunked {
            return b"";
        }
        let open = std::mem::replace(&mut self.open, false);
        if open { b"\r\n0\r\n\r\n" } else { b"0\r\n\r\n" }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_close_at_the_next_head() {
        let mut chunking = Chunking::new(true);
        let mut wire = Vec::new();
        for body in [&b"hello"[..], b"", b"world!"] {
            let mut head = Head::new();
            chunking.start(&mut head, body.len());
            wire.extend_from_slice(head.as_bytes());
            wire.extend_from_slice(body);
        }
        wire.extend_from_slice(chunking.finish());
        assert_eq!(wire, b"5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n");
        let mut plain = Chunking::new(false);
        let mut head = Head::new();
        plain.start(&mut head, 5);
        assert!(head.as_bytes().is_empty());
        assert!(plain.finish().is_empty());
    }
}
