//! One media message as the hub keeps it: classified once on arrival, and serialized once per
//! output format so every viewer shares the same bytes.

use bytes::Bytes;
use sluice_proto::flv::{AudioTag, VideoTag};

use crate::framing::rtmp as rtmp_wire;
use crate::remux::TsFrame;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Audio,
    Video,
    /// `onMetaData` (with `@setDataFrame` already stripped).
    Metadata,
    /// One Opus packet (48 kHz), for WebRTC viewers only: a WebRTC publisher's own audio, or
    /// the stream's AAC transcoded once by its publisher. Every other output skips it; they
    /// get the stream's `Audio` frames.
    Opus,
}

#[derive(Debug)]
pub struct Frame {
    pub kind: FrameKind,
    /// The publisher's timestamp (ms, wrapping u32 as on the RTMP wire).
    pub timestamp: u32,
    /// A video random-access point.
    pub keyframe: bool,
    /// Decoder configuration (AVC/HEVC/AV1 sequence header, AAC AudioSpecificConfig).
    pub sequence_header: bool,
    /// The FLV tag body (RTMP message payload).
    pub payload: Bytes,
    /// The payload split into RTMP chunks at `rtmp_chunk_size`, without the first chunk
    /// header: every RTMP viewer sends its own header, then these shared bytes.
    pub rtmp_body: Bytes,
    /// The stream's (vhost's) chunk size, which `rtmp_body` is chunked at.
    pub rtmp_chunk_size: u32,
    /// The frame as MPEG-TS, when the stream has HTTP-TS viewers (see `Stream::want_ts`).
    pub ts: Option<TsFrame>,
}

impl Frame {
    /// Classifies a message from a publisher; `None` for bodies too short to be media, which
    /// publishers sometimes send (empty audio frames) and viewers don't need.
    pub fn new(kind: FrameKind, timestamp: u32, payload: Bytes, chunk_size: u32) -> Option<Frame> {
        let (keyframe, sequence_header) = match kind {
            FrameKind::Video => {
                let tag = VideoTag::parse(&payload)?;
                (tag.keyframe && !tag.info_frame, tag.sequence_header)
            }
            FrameKind::Audio => (false, AudioTag::parse(&payload)?.sequence_header),
            FrameKind::Metadata | FrameKind::Opus => (false, false),
        };
        let rtmp_body = rtmp_wire::shared_body(kind, &payload, chunk_size);
        Some(Frame {
            kind,
            timestamp,
            keyframe,
            sequence_header,
            payload,
            rtmp_body,
            rtmp_chunk_size: chunk_size,
            ts: None,
        })
    }

    /// Bytes this frame costs in memory (for cache bounds).
    pub fn size(&self) -> usize {
        // rtmp_body shares the payload's memory when the message fits in one chunk.
        self.payload.len().max(self.rtmp_body.len())
    }
}
