//! What the proto tests that check real media with ffmpeg share: whether the tools are there,
//! a scratch directory, running a command, encoding test media, reading a file back with
//! ffprobe, and decoding a file to find errors.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

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

/// Whether this ffmpeg has `encoder`; prints why the test is skipped when not (`what` names
/// what it encodes, e.g. "H.265").
pub fn has_encoder(encoder: &str, what: &str) -> bool {
    let encoders = run(Command::new("ffmpeg").args(["-hide_banner", "-encoders"]));
    if encoders.contains(encoder) {
        true
    } else {
        eprintln!("SKIPPED: this ffmpeg cannot encode {what} (no {encoder})");
        false
    }
}

/// Decodes the whole file with ffmpeg and asserts it printed nothing at level `error`; `what`
/// starts the failure message (e.g. "ffmpeg", "late joiner").
pub fn assert_decodes(path: &Path, what: &str) {
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("spawn ffmpeg");
    assert!(output.status.success(), "ffmpeg failed to decode {path:?}");
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(errors.is_empty(), "{what} decode errors:\n{errors}");
}

/// `ffprobe -show_streams -count_frames -of json`: the streams array.
pub fn probe_streams(path: &Path) -> Vec<Value> {
    let json = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_streams",
            "-count_frames",
            "-of",
            "json",
        ])
        .arg(path));
    let value: Value = serde_json::from_str(&json).expect("ffprobe JSON");
    value["streams"].as_array().expect("streams").clone()
}

/// The first stream of `codec_type` ("video", "audio") in `probe_streams`' answer.
pub fn stream<'a>(streams: &'a [Value], codec_type: &str) -> &'a Value {
    streams
        .iter()
        .find(|s| s["codec_type"] == codec_type)
        .unwrap_or_else(|| panic!("no {codec_type} stream in {streams:?}"))
}

/// ffmpeg's video arguments for a quick libx264 encode (4:2:0, `-preset veryfast`); the GOP
/// and B-frame settings are the caller's.
pub const X264_VERYFAST: [&str; 6] = [
    "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "veryfast",
];

/// Encodes `seconds` of 1280x720@25 test pattern (libx264, a keyframe a second, default
/// B-frames) and a 44.1 kHz stereo tone (AAC, 128 kbit/s) to `in.flv` in `dir`, as an RTMP
/// publisher would send it.
pub fn encode_flv(dir: &Path, seconds: u32) -> PathBuf {
    let path = dir.join("in.flv");
    run(Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc=size=1280x720:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-t", &seconds.to_string()])
        .args(X264_VERYFAST)
        .args([
            "-g", "25", "-c:a", "aac", "-ac", "2", "-b:a", "128k", "-f", "flv",
        ])
        .arg(&path));
    path
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

impl HevcStream {
    /// The HEVCDecoderConfigurationRecord for the stream's parameter sets (4-byte lengths).
    pub fn config(&self) -> sluice_proto::codec::HevcDecoderConfig {
        fn slices(sets: &[bytes::Bytes]) -> Vec<&[u8]> {
            sets.iter().map(|set| &set[..]).collect()
        }
        sluice_proto::codec::HevcDecoderConfig::from_parameter_sets(
            &slices(&self.vps),
            &slices(&self.sps),
            &slices(&self.pps),
        )
        .expect("the encoder's parameter sets make a record")
    }
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
    if !has_encoder("libx265", "H.265") {
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
