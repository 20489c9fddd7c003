//! What a publisher of any protocol feeds besides the hub: the MPEG-TS remuxer (for HTTP-TS
//! viewers and HLS) and the HLS/DASH packager. Both run on the publisher's worker, once per
//! frame, so every viewer and every HLS request shares their output. Completed segments are
//! announced with `on_hls` and, with `hls_path`, queued for the disk writer.

use std::sync::Arc;

use crate::control::{Hook, HookJob};
use crate::hls::disk::DiskSink;
use crate::hls::segmenter::{Closed, Packager};
use crate::hls::{HlsSettings, Waiter};
use crate::hub::{Frame, Stream};
use crate::remux::TsRemuxer;
use crate::worker::Shared;

pub struct PublishOutputs {
    /// Muxes each frame to MPEG-TS once HTTP-TS viewers or HLS want it.
    ts: Option<Box<TsRemuxer>>,
    hls: Option<Box<Hls>>,
}

struct Hls {
    packager: Packager,
    /// `on_hls`: the publisher's callback body without the segment's fields, and the URLs.
    hook: Option<(serde_json::Value, Vec<String>, std::time::Duration)>,
    disk: Option<DiskSink>,
}

impl PublishOutputs {
    /// Outputs for a publish that just started on `stream`; `hls_hook` is the publisher's
    /// `on_hls` body (client, stream, param) when the vhost has `on_hls` URLs.
    pub fn start(
        stream: &Stream,
        shared: &Shared,
        hls_hook: Option<serde_json::Value>,
    ) -> PublishOutputs {
        let (_, vhost) = shared.config.vhost(&stream.key.vhost);
        let hls = HlsSettings::any(vhost).then(|| {
            let hooks = &vhost.http_hooks;
            let urls = hooks.urls(Hook::OnHls).to_vec();
            let timeout = std::time::Duration::from_millis(hooks.timeout_ms);
            Box::new(Hls {
                packager: Packager::new(shared.hls.open(&stream.key, vhost)),
                hook: hls_hook
                    .filter(|_| !urls.is_empty() && vhost.hls.enabled)
                    .map(|body| (body, urls, timeout)),
                disk: vhost
                    .hls
                    .enabled
                    .then(|| DiskSink::new(&vhost.hls.hls_path))
                    .flatten(),
            })
        });
        PublishOutputs { ts: None, hls }
    }

    /// Adds the frame's other forms (MPEG-TS) before it goes to the hub.
    pub fn prepare(&mut self, stream: &Stream, frame: &mut Frame) {
        let hls_ts = self.hls.as_ref().is_some_and(|h| h.packager.wants_ts());
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
        if let Some(hls) = &mut self.hls {
            let waiters = hls.packager.push(frame);
            wake(waiters, shared);
            hls.after_changes(shared);
        }
    }

    /// The publisher left.
    pub fn finish(&mut self, shared: &Shared) {
        if let Some(hls) = &mut self.hls {
            let waiters = hls.packager.finish();
            wake(waiters, shared);
            hls.after_changes(shared);
        }
    }
}

impl Hls {
    /// Announces completed segments and mirrors them to disk.
    fn after_changes(&mut self, shared: &Shared) {
        let (closed, expired) = self.packager.take_changes();
        if closed.is_empty() && expired.is_empty() {
            return;
        }
        let stream = self.packager.stream().clone();
        let naming = &stream.naming;
        if let Some(disk) = &self.disk {
            let state = stream.state();
            for segment in &closed {
                if let Some(data) = state.segment(segment.seq).map(|s| s.data.clone()) {
                    disk.write(&naming.segment_path(segment.seq), data, false);
                }
            }
            if !closed.is_empty() {
                if !state.init.is_empty() {
                    disk.write(&naming.init, state.init.clone(), true);
                }
                disk.write(&naming.playlist, state.playlist.clone(), true);
            }
            for seq in &expired {
                disk.remove(&naming.segment_path(*seq));
            }
        }
        if let Some((body, urls, timeout)) = &self.hook {
            for segment in &closed {
                let job = HookJob {
                    hook: Hook::OnHls,
                    urls: urls.clone(),
                    timeout: *timeout,
                    body: self.hls_body(body, segment),
                    verdict: None,
                    reply: None,
                };
                if shared.hooks.send(job).is_err() {
                    tracing::error!("the control plane is gone; on_hls dropped");
                }
            }
        }
    }

    /// SRS's `on_hls` body: the publisher's fields plus the segment's.
    fn hls_body(&self, base: &serde_json::Value, segment: &Closed) -> serde_json::Value {
        let naming = &self.packager.stream().naming;
        let url = naming.segment_path(segment.seq);
        let (file, m3u8) = match &self.disk {
            Some(disk) => (
                disk.file(&url).display().to_string(),
                disk.file(&naming.playlist).display().to_string(),
            ),
            // Memory only: the files are the URLs.
            None => (url.clone(), naming.playlist.clone()),
        };
        let cwd = std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        let mut body = base.clone();
        if let Some(fields) = body.as_object_mut() {
            // Rounded like SRS's (two decimals).
            let duration = (segment.duration * 100.0).round() / 100.0;
            fields.insert("duration".into(), duration.into());
            fields.insert("cwd".into(), cwd.into());
            fields.insert("file".into(), file.into());
            fields.insert("url".into(), url.into());
            fields.insert("m3u8".into(), m3u8.into());
            fields.insert("m3u8_url".into(), naming.playlist.clone().into());
            fields.insert("seq_no".into(), segment.seq.into());
        }
        body
    }
}

fn wake(waiters: Vec<Waiter>, shared: &Shared) {
    if !waiters.is_empty() {
        crate::hls::wake_waiters(waiters, shared);
    }
}
