//! A publisher of a hub stream, whatever its protocol: the stream it holds, its request, its
//! outputs (MPEG-TS remux, HLS/DASH packaging), and the timeouts every protocol shares — the
//! first media must come within `firstpkt_timeout`, then never pause longer than
//! `normal_timeout`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::Ctx;
use super::outputs::PublishOutputs;
use crate::config::PublishConfig;
use crate::hub::{Frame, FrameKind, Stream};
use crate::request::StreamRequest;

pub struct Publishing {
    pub stream: Arc<Stream>,
    pub request: StreamRequest,
    timeouts: PublishConfig,
    started: Instant,
    last_media: Option<Instant>,
    /// MPEG-TS for HTTP-TS viewers and HLS, the HLS/DASH packager.
    outputs: PublishOutputs,
}

impl Publishing {
    /// A publish that the hub just accepted; `hls_hook` is the publisher's `on_hls` body.
    pub fn start(
        stream: Arc<Stream>,
        request: StreamRequest,
        ctx: &Ctx<'_>,
        hls_hook: Option<serde_json::Value>,
    ) -> Publishing {
        let (_, vhost) = ctx.shared.config.vhost(&request.vhost);
        let outputs = PublishOutputs::start(&stream, ctx.shared, hls_hook);
        Publishing {
            stream,
            request,
            timeouts: vhost.publish.clone(),
            started: ctx.now,
            last_media: None,
            outputs,
        }
    }

    /// One media message (an FLV tag body) from the publisher: into the hub and the outputs.
    pub fn push(&mut self, kind: FrameKind, timestamp: u32, payload: Bytes, ctx: &mut Ctx<'_>) {
        self.last_media = Some(ctx.now);
        let chunk_size = self.stream.settings.chunk_size;
        if let Some(mut frame) = Frame::new(kind, timestamp, payload, chunk_size) {
            self.outputs.prepare(&self.stream, &mut frame);
            let frame = Arc::new(frame);
            ctx.publish_frame(&self.stream, frame.clone());
            self.outputs.package(&frame, ctx.shared);
        }
    }

    /// Why the publisher should be closed now, if it sends no media.
    pub fn expired(&self, now: Instant) -> Option<String> {
        match self.last_media {
            None if now
                >= self.started + Duration::from_millis(self.timeouts.firstpkt_timeout_ms) =>
            {
                Some("publisher sent no media (firstpkt_timeout)".into())
            }
            Some(last) if now >= last + Duration::from_millis(self.timeouts.normal_timeout_ms) => {
                Some("publisher idle (normal_timeout)".into())
            }
            _ => None,
        }
    }

    /// Frees the stream: the outputs finish, the hub forgets the publisher.
    pub fn finish(mut self, ctx: &Ctx<'_>, serial: u64, client: &str, why: &str) {
        self.outputs.finish(ctx.shared);
        ctx.shared.hub.unpublish(&self.stream, serial);
        tracing::info!(client, stream = %self.request.path(), reason = why, "publish stopped");
    }

    /// `vhost/app/stream`, for logs.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.stream.key.vhost, self.request.path())
    }
}
