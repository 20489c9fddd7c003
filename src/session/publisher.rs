//! A publisher of a hub stream, whatever its protocol: the stream it holds, its request, its
//! outputs (MPEG-TS remux, HLS/DASH packaging), and the timeouts every protocol shares — the
//! first media must come within `firstpkt_timeout`, then never pause longer than
//! `normal_timeout`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::outputs::PublishOutputs;
use super::{ClientInfo, Ctx, HookSubject};
use crate::config::PublishConfig;
use crate::control::Hook;
use crate::hub::{Frame, FrameKind, Stream};
use crate::hub::{PublishError, Publisher as HubPublisher, StreamKey, StreamSettings};
use crate::request::StreamRequest;
use crate::transcode::AacToOpus;
use sluice_proto::codec::{AudioPacket, AudioPacketKind};
use sluice_proto::flv::AudioCodec;

pub struct Publishing {
    pub stream: Arc<Stream>,
    pub request: StreamRequest,
    timeouts: PublishConfig,
    started: Instant,
    last_media: Option<Instant>,
    /// MPEG-TS for HTTP-TS viewers and HLS, the HLS/DASH packager.
    outputs: PublishOutputs,
    /// The stream's AAC as Opus for WebRTC viewers (made once here, not per viewer).
    opus: Box<OpusBridge>,
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
            opus: Box::new(OpusBridge::new(ctx.shared.config.rtc_server.rtmp_to_rtc)),
        }
    }

    /// Publishes `key` for a client its hooks allowed: the hub takes the stream (or another
    /// client has it: the reason to close), the outputs start. `proto` is for the log.
    pub fn begin(
        ctx: &mut Ctx<'_>,
        client: &ClientInfo,
        proto: &'static str,
        key: &StreamKey,
        request: &StreamRequest,
    ) -> Result<Publishing, String> {
        let vhost = ctx.shared.config.vhost(&key.vhost).1;
        let settings = StreamSettings::for_vhost(vhost);
        let who = HubPublisher {
            serial: client.serial,
            id: client.id.clone(),
            tc_url: request.tc_url.clone(),
        };
        match ctx.shared.hub.publish(key.clone(), &settings, who) {
            Ok(stream) => {
                tracing::info!(client = %client.id, peer = %client.peer, proto, vhost = %stream.key.vhost, stream = %request.path(), param = %request.param, "publish started");
                let hls_hook = (!vhost.http_hooks.urls(Hook::OnHls).is_empty()).then(|| {
                    let subject = HookSubject::stream(Hook::OnHls, key, request);
                    ctx.hook_body(Hook::OnHls, client, subject)
                });
                Ok(Publishing::start(stream, request.clone(), ctx, hls_hook))
            }
            Err(PublishError::Busy(name)) => {
                tracing::warn!(client = %client.id, peer = %client.peer, stream = %name, "publish refused: stream is busy");
                Err(format!("stream {name} busy"))
            }
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
            if frame.kind == FrameKind::Audio && self.stream.wants_opus() {
                for opus in self.opus.transcode(&frame, &self.stream, &self.request) {
                    ctx.publish_frame(&self.stream, Arc::new(opus));
                }
            }
        }
    }

    /// The publisher sends Opus of its own (WebRTC): its AAC is not transcoded back.
    pub fn has_own_opus(&mut self) {
        self.opus.enabled = false;
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

/// AAC → Opus for a stream's WebRTC viewers, started when the first one joins
/// (`Stream::want_opus`) and fed every AAC frame from then on.
struct OpusBridge {
    enabled: bool,
    config: Option<Vec<u8>>,
    transcoder: Option<AacToOpus>,
    /// The transcoder failed to start for this config (logged once); retried on a new one.
    failed: bool,
}

impl OpusBridge {
    fn new(enabled: bool) -> OpusBridge {
        OpusBridge {
            enabled,
            config: None,
            transcoder: None,
            failed: false,
        }
    }

    /// The Opus frames for one audio frame of the publisher.
    fn transcode(&mut self, frame: &Frame, stream: &Stream, request: &StreamRequest) -> Vec<Frame> {
        if !self.enabled {
            return Vec::new();
        }
        if self.config.is_none() {
            // The first WebRTC viewer came after the sequence header: the stream has it.
            let [_, audio_header] = stream.sequence_headers();
            if let Some(header) = audio_header
                && let Ok(packet) = AudioPacket::parse(&header.payload)
                && packet.codec == AudioCodec::Aac
                && packet.kind == AudioPacketKind::SequenceHeader
            {
                self.config = Some(packet.data.to_vec());
            }
        }
        let Ok(packet) = AudioPacket::parse(&frame.payload) else {
            return Vec::new();
        };
        if packet.codec != AudioCodec::Aac {
            return Vec::new();
        }
        if packet.kind == AudioPacketKind::SequenceHeader {
            if self.config.as_deref() != Some(packet.data) {
                self.config = Some(packet.data.to_vec());
                self.transcoder = None;
                self.failed = false;
            }
            return Vec::new();
        }
        if packet.kind != AudioPacketKind::CodedFrames || self.failed {
            return Vec::new();
        }
        if self.transcoder.is_none() {
            let Some(config) = &self.config else {
                return Vec::new();
            };
            match AacToOpus::new(config) {
                Ok(t) => self.transcoder = Some(t),
                Err(e) => {
                    self.failed = true;
                    tracing::warn!(stream = %request.path(), error = %e, "no AAC → Opus for WebRTC viewers: they get video only");
                    return Vec::new();
                }
            }
        }
        let Some(transcoder) = &mut self.transcoder else {
            return Vec::new();
        };
        match transcoder.push(packet.data, frame.timestamp) {
            Ok(packets) => packets
                .into_iter()
                .filter_map(|p| {
                    Frame::new(
                        FrameKind::Opus,
                        p.timestamp_ms,
                        p.data,
                        frame.rtmp_chunk_size,
                    )
                })
                .collect(),
            Err(e) => {
                tracing::debug!(stream = %request.path(), error = %e, "AAC frame not transcoded to Opus");
                Vec::new()
            }
        }
    }
}
