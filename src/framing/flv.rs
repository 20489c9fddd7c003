//! HTTP-FLV and WebSocket-FLV: the FLV file header once, then one tag per frame. Each tag's
//! head is this viewer's: the previous tag's PreviousTagSize, then an 11-byte tag header with
//! this viewer's timestamp — so the body is the frame's payload, shared, with nothing after
//! it. Over HTTP/1.1 each tag is one chunk; over WebSocket, one binary message.

use bytes::Bytes;
use sluice_proto::flv::{TagType, file_header, previous_tag_size, tag_header};
use sluice_proto::http::ws::{self, Opcode};

use super::{Chunking, Head};
use crate::hub::{Frame, FrameKind};

pub struct FlvFraming {
    chunking: Chunking,
    websocket: bool,
    /// Body size of the last tag written: its PreviousTagSize leads the next head.
    last_data_size: Option<usize>,
}

impl FlvFraming {
    pub fn http(chunked: bool) -> FlvFraming {
        FlvFraming {
            chunking: Chunking::new(chunked),
            websocket: false,
            last_data_size: None,
        }
    }

    pub fn websocket() -> FlvFraming {
        FlvFraming {
            chunking: Chunking::new(false),
            websocket: true,
            last_data_size: None,
        }
    }

    /// The FLV file header (with PreviousTagSize0), before any tag.
    pub fn begin(&mut self) -> Head {
        let header = file_header(true, true);
        let mut head = Head::new();
        self.open(&mut head, header.len());
        head.push(&header);
        head
    }

    /// Opens the HTTP chunk or WebSocket message that will carry `size` bytes.
    fn open(&mut self, head: &mut Head, size: usize) {
        if self.websocket {
            head.push(ws::frame_header(Opcode::Binary, true, size).as_bytes());
        } else {
            self.chunking.start(head, size);
        }
    }

    /// This viewer's head for `frame` and the shared body.
    pub fn frame(&mut self, frame: &Frame, timestamp: u32) -> Option<(Head, Bytes)> {
        let tag_type = match frame.kind {
            FrameKind::Audio => TagType::Audio,
            FrameKind::Video => TagType::Video,
            FrameKind::Metadata => TagType::Script,
            // WebRTC viewers only.
            FrameKind::Opus => return None,
        };
        let data_size = frame.payload.len();
        // Larger than FLV can describe: never from RTMP, whose lengths are 24-bit too.
        let tag = tag_header(tag_type, data_size, timestamp).ok()?;
        let trailer = self.last_data_size.map(previous_tag_size);
        let size = trailer.map_or(0, |t| t.len()) + tag.len() + data_size;
        let mut head = Head::new();
        self.open(&mut head, size);
        if let Some(trailer) = trailer {
            head.push(&trailer);
        }
        head.push(&tag);
        self.last_data_size = Some(data_size);
        Some((head, frame.payload.clone()))
    }

    /// What ends the body: the last tag's PreviousTagSize, then the chunked terminator (or a
    /// WebSocket close frame).
    pub fn end(&mut self) -> Vec<u8> {
        let mut end = Vec::new();
        if let Some(last) = self.last_data_size.take() {
            let trailer = previous_tag_size(last);
            let mut head = Head::new();
            self.open(&mut head, trailer.len());
            end.extend_from_slice(head.as_bytes());
            end.extend_from_slice(&trailer);
        }
        if self.websocket {
            ws::write_close(&mut end, Some((1001, "stream ended")));
        } else {
            end.extend_from_slice(self.chunking.finish());
        }
        end
    }
}

#[cfg(test)]
mod tests {
    use sluice_proto::flv::{FileHeader, Tag};
    use sluice_proto::http::ChunkedDecoder;

    use super::*;

    const FRAMES: [(FrameKind, u32, &[u8]); 3] = [
        (FrameKind::Video, 0, &[0x17, 0, 0, 0, 0, 1, 2]),
        (FrameKind::Audio, 10, &[0xaf, 1, 9]),
        (FrameKind::Video, 33, &[0x27, 1, 0, 0, 0, 5]),
    ];

    fn stream(framing: &mut FlvFraming) -> Vec<u8> {
        let mut wire = framing.begin().as_bytes().to_vec();
        for (kind, ts, body) in FRAMES {
            let frame = Frame::new(kind, 5000 + ts, Bytes::from_static(body), 60_000).unwrap();
            let (head, body) = framing.frame(&frame, ts).unwrap();
            wire.extend_from_slice(head.as_bytes());
            wire.extend_from_slice(&body);
        }
        wire.extend_from_slice(&framing.end());
        wire
    }

    fn check_flv(flv: &[u8]) {
        let (_, mut at) = FileHeader::parse(flv).unwrap();
        let mut seen = Vec::new();
        while at < flv.len() {
            let (tag, used) = Tag::parse(&flv[at..]).unwrap();
            assert_eq!(tag.previous_tag_size as usize, 11 + tag.body.len());
            seen.push((tag.tag_type, tag.timestamp, tag.body.to_vec()));
            at += used;
        }
        let expected: Vec<_> = FRAMES
            .iter()
            .map(|(kind, ts, body)| {
                (
                    if *kind == FrameKind::Audio { 8 } else { 9 },
                    *ts,
                    body.to_vec(),
                )
            })
            .collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn plain_http_is_a_valid_flv_file() {
        check_flv(&stream(&mut FlvFraming::http(false)));
    }

    #[test]
    fn chunked_http_decodes_to_a_valid_flv_file() {
        let wire = stream(&mut FlvFraming::http(true));
        let mut decoder = ChunkedDecoder::new();
        let mut flv = Vec::new();
        let used = decoder.decode(&wire, &mut flv).unwrap();
        assert_eq!(used, wire.len());
        assert!(decoder.is_done());
        check_flv(&flv);
    }

    #[test]
    fn websocket_messages_concatenate_to_a_valid_flv_file() {
        let wire = stream(&mut FlvFraming::websocket());
        // Server frames are unmasked: [0x82, len] (all lengths here < 126), then the payload.
        let mut flv = Vec::new();
        let mut at = 0;
        loop {
            let (opcode, len) = (wire[at] & 0x0f, wire[at + 1] as usize);
            if opcode == 0x8 {
                break; // close
            }
            assert_eq!(opcode, 0x2, "binary messages");
            flv.extend_from_slice(&wire[at + 2..at + 2 + len]);
            at += 2 + len;
        }
        check_flv(&flv);
    }
}
