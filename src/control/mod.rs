//! The control plane: the SRS-compatible HTTP API and `/metrics` on port 1985, and the HTTP
//! callbacks (hooks). It runs on its own thread with a tokio runtime, apart from the data
//! plane, which never waits for it:
//!
//! - state flows to it as snapshots: an API request posts `WorkerMsg::Snapshot` to every
//!   worker and awaits their replies (each worker answers at its next wake-up); the hub's
//!   streams are read directly; counters are what each worker last published (every 500 ms);
//! - commands flow back as messages: a kick is `WorkerMsg::Kick` to the worker that owns the
//!   client, a hook's verdict is `WorkerMsg::HookVerdict` to the worker whose session waits.

pub mod api;
pub mod hooks;
pub mod metrics;
pub mod rtc_api;
pub mod views;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use crate::worker::{Shared, WorkerMsg};
use views::{Snapshot, WorkerCounters};

/// How long an API request waits for the workers' snapshots.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(2);

/// Which callback (named as SRS's config keys are).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)]
pub enum Hook {
    OnConnect,
    OnClose,
    OnPublish,
    OnUnpublish,
    OnPlay,
    OnStop,
    OnHls,
}

impl Hook {
    /// The `action` field and config key.
    pub fn name(self) -> &'static str {
        match self {
            Hook::OnConnect => "on_connect",
            Hook::OnClose => "on_close",
            Hook::OnPublish => "on_publish",
            Hook::OnUnpublish => "on_unpublish",
            Hook::OnPlay => "on_play",
            Hook::OnStop => "on_stop",
            Hook::OnHls => "on_hls",
        }
    }

    /// Whether the client waits for the verdict (the others are notifications).
    pub fn decides(self) -> bool {
        matches!(self, Hook::OnConnect | Hook::OnPublish | Hook::OnPlay)
    }
}

/// Where a hook's verdict goes: the worker and session waiting for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerdictTarget {
    pub worker: usize,
    pub conn: sluice_ring::ConnId,
    /// The client's serial, so a verdict for a connection that has gone (its id reused) is
    /// not applied to another.
    pub serial: u64,
    pub hook: Hook,
}

/// A callback to make: POST `body` to each of `urls` in turn.
#[derive(Debug)]
pub struct HookJob {
    pub hook: Hook,
    pub urls: Vec<String>,
    pub timeout: Duration,
    pub body: serde_json::Value,
    /// For deciding hooks: who waits for the verdict.
    pub verdict: Option<VerdictTarget>,
    /// For hooks asked by signalling (WebRTC): where the verdict goes instead.
    pub reply: Option<oneshot::Sender<Result<(), String>>>,
}

/// A hook's outcome, delivered to the waiting session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub target: VerdictTarget,
    /// `Ok` when every URL allowed it; else which URL refused and why.
    pub result: Result<(), String>,
}

/// This server's identity in API replies and hook bodies, SRS-style.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `server` / `server_id`: stable for the process (`vid-...`).
    pub server_id: String,
    /// `service` / `service_id`: random per start.
    pub service_id: String,
    pub pid: u32,
    /// When the process started (Unix ms).
    pub started_ms: u64,
}

impl Identity {
    pub fn new() -> Identity {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let pid = std::process::id();
        let seed = now.as_nanos() as u64 ^ (u64::from(pid) << 32);
        Identity {
            server_id: format!("vid-{}", short_id(seed.rotate_left(17), 7)),
            service_id: short_id(seed, 8),
            pid,
            started_ms: now.as_millis() as u64,
        }
    }
}

impl Default for Identity {
    fn default() -> Self {
        Identity::new()
    }
}

/// A lowercase base-36 id of `len` characters from a mixed seed.
pub fn short_id(seed: u64, len: usize) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    (0..len)
        .map(|_| {
            let digit = DIGITS[(x % 36) as usize] as char;
            x /= 36;
            digit
        })
        .collect()
}

/// The control plane's view of the server, shared by its tasks.
pub struct ControlPlane {
    pub shared: Arc<Shared>,
}

impl ControlPlane {
    pub fn identity(&self) -> &Identity {
        &self.shared.identity
    }
    /// Collects every worker's clients (and each stream from the hub).
    pub async fn snapshot(&self) -> Snapshot {
        let mut replies = Vec::new();
        for link in &self.shared.links {
            let (tx, rx) = oneshot::channel();
            link.post(WorkerMsg::Snapshot(tx));
            replies.push(rx);
        }
        let mut snapshot = Snapshot {
            clients: Vec::new(),
            streams: self.shared.hub.stream_views(),
        };
        for reply in replies {
            if let Ok(Ok(clients)) = tokio::time::timeout(SNAPSHOT_TIMEOUT, reply).await {
                snapshot.clients.extend(clients);
            }
        }
        snapshot
            .clients
            .extend(self.shared.hls.sessions.views(std::time::Instant::now()));
        snapshot.clients.sort_by(|a, b| a.id.cmp(&b.id));
        snapshot
    }

    /// Closes a client wherever it is. Returns whether it existed.
    pub async fn kick(&self, client_id: &str) -> bool {
        if let Some(viewer) = self.shared.hls.sessions.kick(client_id) {
            tracing::info!(client = %viewer.client.id, "hls viewer kicked by the API");
            return true;
        }
        let snapshot = self.snapshot().await;
        let Some(client) = snapshot.clients.iter().find(|c| c.id == client_id) else {
            return false;
        };
        self.shared.links[client.worker].post(WorkerMsg::Kick(client.id.clone()));
        true
    }

    /// Every worker's last published counters.
    pub fn counters(&self) -> Vec<WorkerCounters> {
        self.shared
            .counters
            .iter()
            .map(|c| *c.lock().unwrap_or_else(|e| e.into_inner()))
            .collect()
    }

    /// Hands a hook's verdict to the worker whose session waits for it.
    pub fn deliver(&self, verdict: Verdict) {
        let worker = verdict.target.worker;
        if let Some(link) = self.shared.links.get(worker) {
            link.post(WorkerMsg::HookVerdict(verdict));
        }
    }
}

/// Where workers publish their counters for `/metrics`: one cell per worker, written every
/// housekeeping tick by its worker only.
pub type CounterCells = Vec<Mutex<WorkerCounters>>;

/// Starts the control plane thread: the API server (when enabled) and the hook runner.
/// Returns when both are bound; errors if the API port cannot be bound.
pub fn start(
    shared: Arc<Shared>,
    hooks: mpsc::UnboundedReceiver<HookJob>,
) -> Result<std::thread::JoinHandle<()>, String> {
    let api_listen = shared.config.api_listen();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("sluice-control".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("cannot start the control plane: {e}")));
                    return;
                }
            };
            runtime.block_on(async move {
                let plane = Arc::new(ControlPlane { shared });
                let listener = match api_listen {
                    Some(addr) => match tokio::net::TcpListener::bind(addr).await {
                        Ok(listener) => Some(listener),
                        Err(e) => {
                            let _ = ready_tx
                                .send(Err(format!("cannot listen on http_api {addr}: {e}")));
                            return;
                        }
                    },
                    None => None,
                };
                let _ = ready_tx.send(Ok(()));
                let hook_runner = tokio::spawn(hooks::run(hooks, plane.clone()));
                if let Some(listener) = listener {
                    api::serve(listener, plane.clone()).await;
                }
                let _ = hook_runner.await;
            });
        })
        .map_err(|e| format!("cannot start the control plane thread: {e}"))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(thread),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("the control plane thread died during start-up".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_look_like_srs() {
        let identity = Identity::new();
        assert!(identity.server_id.starts_with("vid-") && identity.server_id.len() == 11);
        assert_eq!(identity.service_id.len(), 8);
        assert_ne!(short_id(1, 8), short_id(2, 8));
    }
}
