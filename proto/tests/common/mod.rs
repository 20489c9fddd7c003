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

/// An H.265 Annex B stream split as FLV/MP4 want it: the parameter sets (for the
/// configuration record) and the pictures as length-prefixed access units, each with whether
/// it is a random-access (IRAP) picture. A picture starts at a slice with
/// first_slice_segment_in_pic_flag; other non-VCL units go with the next picture.
pub struct HevcStream {
    pub vps: Vec<bytes::Bytes>,
    pub sps: Vec<bytes::Bytes>,
    pub pps: Vec<bytes::Bytes>,
    pub access_units: Vec<(Vec<u8>, bool)>,
}

pub fn split_hevc(raw: &[u8]) -> HevcStream {
    use sluice_proto::codec::{annexb, h265};
    let mut stream = HevcStream {
        vps: Vec::new(),
        sps: Vec::new(),
        pps: Vec::new(),
        access_units: Vec::new(),
    };
    let mut pending: Vec<&[u8]> = Vec::new();
    for nal in annexb::annexb_nalus(raw).filter(|nal| nal.len() > 2) {
        let nal_type = h265::nal_type(nal).unwrap();
        match nal_type {
            h265::NAL_VPS => stream.vps.push(bytes::Bytes::copy_from_slice(nal)),
            h265::NAL_SPS => stream.sps.push(bytes::Bytes::copy_from_slice(nal)),
            h265::NAL_PPS => stream.pps.push(bytes::Bytes::copy_from_slice(nal)),
            0..=31 if nal[2] & 0x80 != 0 => {
                pending.push(nal);
                let mut unit = Vec::new();
                for nal in pending.drain(..) {
                    unit.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                    unit.extend_from_slice(nal);
                }
                stream.access_units.push((unit, h265::is_irap(nal_type)));
            }
            0..=31 => {
                let (last, _) = stream.access_units.last_mut().expect("a picture first");
                last.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                last.extend_from_slice(nal);
            }
            _ => pending.push(nal),
        }
    }
    stream
}

/// Two seconds of 640x360 25 fps H.265 (x265, no B-frames, a keyframe each second) as an
/// Annex B stream, made in `dir`; `None` (with a printed note) when ffmpeg has no libx265.
pub fn encode_hevc(dir: &Path) -> Option<Vec<u8>> {
    let encoders = run(Command::new("ffmpeg").args(["-hide_banner", "-encoders"]));
    if !encoders.contains("libx265") {
        eprintln!("SKIPPED: this ffmpeg cannot encode H.265 (no libx265)");
        return None;
    }
    let raw_path = dir.join("in.hevc");
    run(Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-y", "-f", "lavfi"])
        .args([
            "-i",
            "testsrc=size=640x360:rate=25",
            "-t",
            "2",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-c:v", "libx265", "-preset", "ultrafast"])
        .args([
            "-x265-params",
            "log-level=error:bframes=0:keyint=25",
            "-f",
            "hevc",
        ])
        .arg(&raw_path));
    Some(std::fs::read(&raw_path).expect("read the encoded H.265"))
}
