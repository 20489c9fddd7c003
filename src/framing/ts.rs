//! HTTP-TS: the stream's MPEG-TS, muxed once per frame by the publisher's remuxer and shared
//! as is. A viewer starts at a join point (PAT/PMT then a keyframe) and then takes every frame
//! that has TS bytes. Timestamps are the muxer's (PTS/DTS in the packets), not per viewer.

use bytes::Bytes;

use super::{Chunking, Head};
use crate::hub::Frame;

pub struct TsFraming {
    chunking: Chunking,
    started: bool,
}

impl TsFraming {
    pub fn new(chunked: bool) -> TsFraming {
        TsFraming {
            chunking: Chunking::new(chunked),
            started: false,
        }
    }

    pub fn frame(&mut self, frame: &Frame) -> Option<(Head, Bytes)> {
        let ts = frame.ts.as_ref()?;
        if !self.started {
            if !ts.join_point {
                return None;
            }
            self.started = true;
        }
        let mut head = Head::new();
        self.chunking.start(&mut head, ts.bytes.len());
        Some((head, ts.bytes.clone()))
    }

    pub fn end(&mut self) -> Vec<u8> {
        self.chunking.finish().to_vec()
    }
}
