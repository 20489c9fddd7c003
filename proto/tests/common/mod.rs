//! What the proto tests that check real media with ffmpeg share: whether the tools are there,
//! a scratch directory, running a command, and decoding a file to find errors.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether ffmpeg and ffprobe can run; prints why `what` is skipped when not.
pub fn tools_present(what: &str) -> bool {
    let ok = |tool: &str| {
        Command::new(tool)
            .arg("-version")
            .output()
            .is_ok_and(|output| output.status.success())
    };
    if ok("ffmpeg") && ok("ffprobe") {
        true
    } else {
        eprintln!("SKIPPED: ffmpeg/ffprobe not installed; install ffmpeg to run {what}");
        false
    }
}

/// A fresh directory under the system temp dir for one test.
pub fn work_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-proto-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Runs a command that must succeed; returns its stdout.
pub fn run(command: &mut Command) -> String {
    let output = command.output().expect("spawn");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Decodes the whole file with ffmpeg; returns what it printed at level `error`.
pub fn decode_errors(path: &Path) -> String {
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("spawn ffmpeg");
    assert!(output.status.success(), "ffmpeg failed to decode {path:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}
