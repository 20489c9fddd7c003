//! What a publisher of any protocol feeds besides the hub: the MPEG-TS remuxer (for HTTP-TS
//! viewers and HLS) and the HLS/DASH packager. Both run on the publisher's worker, once per
//! frame, so every viewer and every HLS request shares their output.

use std::sync::Arc;

use crate::hls::segmenter::Packager;
use crate::hls::{HlsSettings, Waiter};
use crate::hub::{Frame, Stream};
use crate::remux::TsRemuxer;
use crate::worker::Shared;

pub struct PublishOutputs {
    /// Muxes each frame to MPEG-TS once HTTP-TS viewers or HLS want it.
    ts: Option<Box<TsRemuxer>>,
    hls: Option<Box<Packager>>,
}

impl PublishOutputs {
    /// Outputs for a publish that just started on `stream`.
    pub fn start(stream: &Stream, shared: &Shared) -> PublishOutputs {
        let (_, vhost) = shared.config.vhost(&stream.key.vhost);
        let hls = HlsSettings::any(vhost)
            .then(|| Box::new(Packager::new(shared.hls.open(&stream.key, vhost))));
        PublishOutputs { ts: None, hls }
    }

    /// Adds the frame's other forms (MPEG-TS) before it goes to the hub.
    pub fn prepare(&mut self, stream: &Stream, frame: &mut Frame) {
        let hls_ts = self.hls.as_ref().is_some_and(|p| p.wants_ts());
        if !(hls_ts || stream.wants_ts()) {
            return;
        }
        let remuxer = self.ts.get_or_insert_with(|| {
            // Started mid-stream: it needs the codecs the stream announced earlier.
            let mut remuxer = Box::new(TsRemuxer::new());
            for header in stream.sequence_headers().into_iter().flatten() {
                remuxer.remux(header.kind, header.timestamp, &header.payload);
            }
            remuxer
        });
        frame.ts = remuxer.remux(frame.kind, frame.timestamp, &frame.payload);
    }

    /// Packages the frame for HLS/DASH (after it went to the hub).
    pub fn package(&mut self, frame: &Arc<Frame>, shared: &Shared) {
        if let Some(packager) = &mut self.hls {
            wake(packager.push(frame), shared);
        }
    }

    /// The publisher left.
    pub fn finish(&mut self, shared: &Shared) {
        if let Some(packager) = &mut self.hls {
            wake(packager.finish(), shared);
        }
    }
}

fn wake(waiters: Vec<Waiter>, shared: &Shared) {
    if !waiters.is_empty() {
        crate::hls::wake_waiters(waiters, shared);
    }
}
