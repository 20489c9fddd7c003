//! Writing HLS segments and playlists under `hls_path` (SRS's on-disk layout), off the data
//! plane: the packager's worker queues writes to one writer thread and never waits for the
//! disk. A full queue drops the write (counted in the log), and a failed write — disk full,
//! permissions — is logged while delivery from memory goes on. Playlists are written to a
//! temporary name and renamed, so a reader never sees half of one.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use bytes::Bytes;

/// Writes waiting for the disk before new ones are dropped (a few minutes of segments).
const QUEUE: usize = 1024;

enum Job {
    Write {
        path: PathBuf,
        data: Bytes,
        atomic: bool,
    },
    Remove(PathBuf),
}

/// The process's disk writer, started on first use.
fn writer() -> &'static SyncSender<Job> {
    static WRITER: OnceLock<SyncSender<Job>> = OnceLock::new();
    WRITER.get_or_init(|| {
        let (tx, rx) = sync_channel(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("sluice-hls-disk".into())
            .spawn(move || run(rx));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the hls disk writer; hls_path writes are dropped");
        }
        tx
    })
}

fn run(jobs: Receiver<Job>) {
    for job in jobs {
        match job {
            Job::Write { path, data, atomic } => {
                if let Err(e) = write(&path, &data, atomic) {
                    tracing::warn!(path = %path.display(), error = %e, "hls: cannot write file; serving from memory continues");
                }
            }
            Job::Remove(path) => {
                if let Err(e) = std::fs::remove_file(&path)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(path = %path.display(), error = %e, "hls: cannot remove file");
                }
            }
        }
    }
}

fn write(path: &Path, data: &[u8], atomic: bool) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if !atomic {
        return std::fs::write(path, data);
    }
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    std::fs::write(&temp, data)?;
    std::fs::rename(&temp, path)
}

/// Where one stream's files go.
#[derive(Debug, Clone)]
pub struct DiskSink {
    root: PathBuf,
}

impl DiskSink {
    pub fn new(root: &str) -> Option<DiskSink> {
        (!root.is_empty()).then(|| DiskSink {
            root: PathBuf::from(root),
        })
    }

    /// The file a resource path (relative to the HTTP root) is written to.
    pub fn file(&self, path: &str) -> PathBuf {
        self.root.join(path)
    }

    /// Queues a write; `atomic` for files rewritten in place (playlists).
    pub fn write(&self, path: &str, data: Bytes, atomic: bool) {
        self.send(Job::Write {
            path: self.file(path),
            data,
            atomic,
        });
    }

    pub fn remove(&self, path: &str) {
        self.send(Job::Remove(self.file(path)));
    }

    fn send(&self, job: Job) {
        match writer().try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                tracing::warn!(root = %self.root.display(), "hls: disk writes are behind; a write was dropped");
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}
