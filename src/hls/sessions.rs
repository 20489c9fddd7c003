//! HLS viewers as clients, SRS's `hls_ctx` way: HTTP requests are stateless, so a playlist
//! request without `hls_ctx` is redirected (302) to the same URL with a new, unguessable
//! `hls_ctx`, and the playlist it then gets names every segment with that context. Requests
//! carrying a context belong to one viewer: admitted once (security rules, `on_play`), counted
//! in the API's clients and the stream's, and forgotten — with `on_stop` — when it has made no
//! request for a while.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::control::views::ClientView;
use crate::hub::StreamKey;
use crate::session::ClientInfo;

/// One HLS viewer.
pub struct HlsViewer {
    pub client: ClientInfo,
    pub key: StreamKey,
    pub stream_id: u64,
    /// The playlist path as requested (the API's `name`).
    pub name: String,
    pub app: String,
    pub stream: String,
    pub last_seen: Instant,
    /// The `on_play` body it was admitted with (turned into its `on_stop`).
    pub hook_body: Option<serde_json::Value>,
}

/// Most HLS viewers tracked at once; past it, new ones are served but not tracked.
pub const MAX_VIEWERS: usize = 100_000;

#[derive(Default)]
pub struct HlsSessions {
    viewers: Mutex<HashMap<String, HlsViewer>>,
    ids: std::hash::RandomState,
}

impl HlsSessions {
    fn viewers(&self) -> MutexGuard<'_, HashMap<String, HlsViewer>> {
        self.viewers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new context: 8 random characters and 8 that sign them with this process's secret,
    /// so a client cannot make up contexts (each would be a tracked viewer) — only use the
    /// ones it was given.
    pub fn new_context(&self, serial: u64) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let id = crate::session::base36_id(self.ids.hash_one((serial, nanos)));
        let signature = self.signature(&id);
        id + &signature
    }

    fn signature(&self, id: &str) -> String {
        crate::session::base36_id(self.ids.hash_one(("hls_ctx", id)))
    }

    /// Whether `context` is one this process handed out.
    pub fn is_genuine(&self, context: &str) -> bool {
        context.len() == 16
            && context.is_char_boundary(8)
            && self.signature(&context[..8]) == context[8..]
    }

    /// Counts a request of a known viewer (`bytes` sent); `false` for an unknown context.
    pub fn touch(&self, context: &str, bytes: u64, now: Instant) -> bool {
        match self.viewers().get_mut(context) {
            Some(viewer) => {
                viewer.last_seen = now;
                viewer.client.bytes_out += bytes;
                true
            }
            None => false,
        }
    }

    /// Tracks a new viewer; `false` (and not tracked) when [`MAX_VIEWERS`] already are.
    pub fn admit(&self, context: String, viewer: HlsViewer) -> bool {
        let mut viewers = self.viewers();
        if viewers.len() >= MAX_VIEWERS {
            return false;
        }
        viewers.insert(context, viewer);
        true
    }

    /// Viewers not seen for `timeout`, removed.
    pub fn expire(&self, now: Instant, timeout: impl Fn(&HlsViewer) -> Duration) -> Vec<HlsViewer> {
        let mut viewers = self.viewers();
        let gone: Vec<String> = viewers
            .iter()
            .filter(|(_, v)| now >= v.last_seen + timeout(v))
            .map(|(context, _)| context.clone())
            .collect();
        let mut out: Vec<HlsViewer> = gone.iter().filter_map(|c| viewers.remove(c)).collect();
        for viewer in viewers.values_mut() {
            let (bytes_in, bytes_out) = (viewer.client.bytes_in, viewer.client.bytes_out);
            viewer.client.rate.sample(now, bytes_in, bytes_out);
        }
        out.sort_by_key(|v| v.client.serial);
        out
    }

    /// The API's kick: forgets the viewer (its next request is a new viewer, admitted again).
    pub fn kick(&self, id: &str) -> Option<HlsViewer> {
        let mut viewers = self.viewers();
        let context = viewers
            .iter()
            .find(|(_, v)| v.client.id == id)
            .map(|(c, _)| c.clone())?;
        viewers.remove(&context)
    }

    /// Every HLS viewer as an API client.
    pub fn views(&self, now: Instant) -> Vec<ClientView> {
        self.viewers()
            .values()
            .map(|v| ClientView {
                vhost: v.key.vhost.clone(),
                app: v.app.clone(),
                stream: v.stream.clone(),
                stream_id: Some(v.stream_id),
                name: v.name.clone(),
                tc_url: format!("http://{}/{}", v.key.vhost, v.app),
                kind: "hls-play",
                ..v.client.view(now, 0)
            })
            .collect()
    }
}

/// `path?query` with `hls_ctx=context` added to the query.
pub fn with_context(path: &str, query: &str, context: &str) -> String {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("hls_ctx="))
        .collect();
    if kept.is_empty() {
        format!("{path}?hls_ctx={context}")
    } else {
        format!("{path}?{}&hls_ctx={context}", kept.join("&"))
    }
}

/// The playlist with `hls_ctx` on every URI it names (segment lines and `URI="..."`
/// attributes), so the viewer's segment requests are counted as its own.
pub fn tag_playlist(playlist: &[u8], context: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(playlist);
    let mut out = String::with_capacity(text.len() + 32 * text.lines().count());
    for line in text.lines() {
        if line.is_empty() {
            out.push('\n');
            continue;
        }
        if !line.starts_with('#') {
            let join = if line.contains('?') { '&' } else { '?' };
            out.push_str(line);
            out.push(join);
            out.push_str("hls_ctx=");
            out.push_str(context);
        } else if let Some(start) = line.find("URI=\"") {
            let value_start = start + 5;
            match line[value_start..].find('"') {
                Some(len) => {
                    let uri = &line[value_start..value_start + len];
                    let join = if uri.contains('?') { '&' } else { '?' };
                    out.push_str(&line[..value_start + len]);
                    out.push(join);
                    out.push_str("hls_ctx=");
                    out.push_str(context);
                    out.push_str(&line[value_start + len..]);
                }
                None => out.push_str(line),
            }
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out.into_bytes()
}

/// The `hls_ctx` of a query, if any.
pub fn context_of(query: &str) -> Option<&str> {
    query
        .split('&')
        .find_map(|p| p.strip_prefix("hls_ctx="))
        .filter(|c| !c.is_empty() && c.len() <= 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playlists_are_tagged_with_the_context() {
        let playlist = b"#EXTM3U\n#EXT-X-MAP:URI=\"cam-init.mp4\"\n#EXTINF:2.000,\ncam-0.m4s\n\
#EXT-X-PART:DURATION=0.500,URI=\"cam-1.0.m4s\",INDEPENDENT=YES\n\
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"cam-1.1.m4s\"\n";
        let tagged = String::from_utf8(tag_playlist(playlist, "abc")).unwrap();
        assert_eq!(
            tagged,
            "#EXTM3U\n#EXT-X-MAP:URI=\"cam-init.mp4?hls_ctx=abc\"\n#EXTINF:2.000,\n\
cam-0.m4s?hls_ctx=abc\n#EXT-X-PART:DURATION=0.500,URI=\"cam-1.0.m4s?hls_ctx=abc\",INDEPENDENT=YES\n\
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"cam-1.1.m4s?hls_ctx=abc\"\n"
        );
    }

    #[test]
    fn redirect_keeps_the_query() {
        assert_eq!(
            with_context("/live/s.m3u8", "", "x"),
            "/live/s.m3u8?hls_ctx=x"
        );
        assert_eq!(
            with_context("/live/s.m3u8", "token=1&hls_ctx=old", "x"),
            "/live/s.m3u8?token=1&hls_ctx=x"
        );
        assert_eq!(context_of("a=1&hls_ctx=q"), Some("q"));
        assert_eq!(context_of("hls_ctx="), None);
    }

    #[test]
    fn contexts_differ_and_only_given_ones_are_genuine() {
        let sessions = HlsSessions::default();
        let a = sessions.new_context(1);
        let b = sessions.new_context(1);
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
        assert!(sessions.is_genuine(&a) && sessions.is_genuine(&b));
        let mut forged = a.clone();
        forged.replace_range(0..1, if a.starts_with('x') { "y" } else { "x" });
        assert!(!sessions.is_genuine(&forged));
        assert!(!sessions.is_genuine("short"));
        assert!(!sessions.is_genuine("ééééééééééééé"));
        assert!(
            !HlsSessions::default().is_genuine(&a),
            "another process's secret"
        );
    }
}
