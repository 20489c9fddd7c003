//! RTMP output of hub frames: the bytes every viewer shares (the chunked body, built once per
//! frame) and the few bytes each viewer writes itself (the first chunk header, which carries
//! its own timestamp and message stream id).

use bytes::{Bytes, BytesMut};
use sluice_proto::rtmp::chunk::{EXTENDED_TIMESTAMP, MAX_CHUNK_HEADER_LEN};
use sluice_proto::rtmp::{
    CSID_AUDIO, CSID_DATA, CSID_VIDEO, MessageHeader, chunked_body_len, write_chunked_body,
    write_fmt0_header,
};

use sluice_ring::{ConnId, Driver};

use crate::hub::{Frame, FrameKind};

/// An RTMP player: the message stream id its `play` used and the chunk size announced to it.
pub struct RtmpFraming {
    pub message_stream_id: u32,
    pub chunk_size: u32,
}

impl RtmpFraming {
    /// Queues the frame as one RTMP message: this player's type-0 chunk header, then the
    /// frame's shared chunked body.
    pub fn write(
        &mut self,
        driver: &mut Driver,
        conn: ConnId,
        frame: &Frame,
        timestamp: u32,
    ) -> usize {
        let header = ViewerHeader::new(frame, timestamp, self.message_stream_id);
        let body = viewer_body(frame, timestamp, self.chunk_size);
        let len = header.as_bytes().len() + body.len();
        driver.send_with_header(conn, header.as_bytes(), body);
        len
    }
}

const TYPE_AUDIO: u8 = 8;
const TYPE_VIDEO: u8 = 9;
const TYPE_DATA_AMF0: u8 = 18;

fn csid_and_type(kind: FrameKind) -> (u32, u8) {
    match kind {
        // Opus frames never go out over RTMP (`Framing::write` skips them).
        FrameKind::Audio | FrameKind::Opus => (CSID_AUDIO, TYPE_AUDIO),
        FrameKind::Video => (CSID_VIDEO, TYPE_VIDEO),
        FrameKind::Metadata => (CSID_DATA, TYPE_DATA_AMF0),
    }
}

/// The payload chunked at `chunk_size` without its first header. A payload that fits in one
/// chunk is its own body: no copy.
pub fn shared_body(kind: FrameKind, payload: &Bytes, chunk_size: u32) -> Bytes {
    if payload.len() <= chunk_size as usize {
        return payload.clone();
    }
    let (csid, _) = csid_and_type(kind);
    let mut body = BytesMut::with_capacity(chunked_body_len(payload.len(), chunk_size, csid, None));
    write_chunked_body(&mut body, payload, chunk_size, csid, None);
    body.freeze()
}

/// A viewer's first chunk header for a frame, on the stack.
pub struct ViewerHeader {
    bytes: [u8; MAX_CHUNK_HEADER_LEN],
    len: usize,
}

impl ViewerHeader {
    pub fn new(frame: &Frame, timestamp: u32, message_stream_id: u32) -> ViewerHeader {
        let (csid, type_id) = csid_and_type(frame.kind);
        let header = MessageHeader {
            timestamp,
            length: frame.payload.len() as u32,
            type_id,
            stream_id: message_stream_id,
        };
        let mut bytes = [0u8; MAX_CHUNK_HEADER_LEN];
        let mut out = &mut bytes[..];
        write_fmt0_header(&mut out, csid, &header);
        let len = MAX_CHUNK_HEADER_LEN - out.len();
        ViewerHeader { bytes, len }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The body this viewer must send after its header: the shared one, unless the frame has
/// continuation chunks and either the viewer's chunk size differs from the stream's (a
/// `?vhost=` in the stream name naming a vhost with another chunk size) or its timestamp needs
/// the extended field repeated in every continuation chunk (after ~4.6 hours of play).
pub fn viewer_body(frame: &Frame, timestamp: u32, chunk_size: u32) -> Bytes {
    let single_chunk = frame.payload.len() <= chunk_size as usize;
    let extended = timestamp >= EXTENDED_TIMESTAMP;
    if single_chunk || (!extended && chunk_size == frame.rtmp_chunk_size) {
        return frame.rtmp_body.clone();
    }
    let (csid, _) = csid_and_type(frame.kind);
    let extended = extended.then_some(timestamp);
    let mut body = BytesMut::with_capacity(chunked_body_len(
        frame.payload.len(),
        chunk_size,
        csid,
        extended,
    ));
    write_chunked_body(&mut body, &frame.payload, chunk_size, csid, extended);
    body.freeze()
}

#[cfg(test)]
mod tests {
    use sluice_proto::rtmp::{ChunkReader, ChunkReaderConfig};

    use super::*;

    fn read_back(wire: &[u8], chunk_size: u32) -> Vec<(MessageHeader, Bytes)> {
        let mut reader = ChunkReader::new(ChunkReaderConfig::default());
        reader.set_chunk_size(chunk_size).unwrap();
        reader
            .read_all(wire)
            .unwrap()
            .into_iter()
            .map(|m| (m.header, m.payload))
            .collect()
    }

    #[test]
    fn header_plus_shared_body_is_a_valid_message() {
        let payload: Vec<u8> = std::iter::once(0x17)
            .chain((0..300_000u32).map(|i| i as u8))
            .collect();
        for (stream_chunk_size, chunk_size) in
            [(128, 128), (4096, 4096), (60_000, 60_000), (60_000, 4096)]
        {
            for timestamp in [0, 1234, EXTENDED_TIMESTAMP + 5] {
                let frame = Frame::new(
                    FrameKind::Video,
                    99,
                    Bytes::from(payload.clone()),
                    stream_chunk_size,
                )
                .unwrap();
                let mut wire = ViewerHeader::new(&frame, timestamp, 1).as_bytes().to_vec();
                wire.extend_from_slice(&viewer_body(&frame, timestamp, chunk_size));
                let messages = read_back(&wire, chunk_size);
                assert_eq!(messages.len(), 1);
                assert_eq!(messages[0].0.timestamp, timestamp);
                assert_eq!(messages[0].0.type_id, TYPE_VIDEO);
                assert_eq!(messages[0].0.stream_id, 1);
                assert_eq!(messages[0].1, frame.payload);
            }
        }
    }
}
