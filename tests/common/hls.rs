//! HLS and DASH helpers for the end-to-end tests: GETs of playlist-relative URIs, a parser for
//! the Low-Latency HLS tags (`EXT-X-PART`, `EXT-X-PRELOAD-HINT`, `EXT-X-SERVER-CONTROL`,
//! `EXT-X-PART-INF`) that general playlist parsers do not read, ffmpeg/ffprobe runs on
//! fetched segments, and [`FlvSource`]: H.265 + AAC encoded by ffmpeg to Annex B and ADTS,
//! rewrapped as legacy FLV tags (HEVC = codec id 12) and published in real time through the
//! test RTMP client (Debian's ffmpeg cannot publish HEVC over RTMP itself).

use std::io;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sluice_proto::codec::annexb::annexb_nalus;
use sluice_proto::codec::h265::{self, HevcDecoderConfig, HevcSps};
use sluice_proto::codec::{AdtsHeader, AudioSpecificConfig};

use super::http_client::{HttpConn, Response};
use super::rtmp_client::{ClientOpts, RtmpClient, TYPE_AUDIO, TYPE_VIDEO};
use super::{Output, TempDir, run_with_timeout};

// ---------------------------------------------------------------------------------------------
// HTTP

/// `GET path` on a new connection (`Connection: close`), waiting at most `timeout` for the
/// whole response; panics on an I/O error.
pub fn get_within(port: u16, path: &str, timeout: Duration) -> Response {
    let mut conn = HttpConn::connect(port).unwrap_or_else(|e| panic!("connect for {path}: {e}"));
    conn.timeout = timeout;
    conn.request("GET", path, &[("Connection", "close")])
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// `GET path` (10 s limit).
pub fn get(port: u16, path: &str) -> Response {
    get_within(port, path, Duration::from_secs(10))
}

/// `GET path` and how long the response took.
pub fn timed_get(port: u16, path: &str, timeout: Duration) -> (Response, Duration) {
    let started = Instant::now();
    let response = get_within(port, path, timeout);
    (response, started.elapsed())
}

/// A URI from a playlist or MPD at `base` (a path such as `/live/s.m3u8`) as a path on the
/// same server.
pub fn resolve(base: &str, uri: &str) -> String {
    if uri.starts_with('/') {
        return uri.to_string();
    }
    if let Some(rest) = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"))
    {
        return rest.find('/').map_or("/".into(), |i| rest[i..].to_string());
    }
    let dir = base.rsplit_once('/').map_or("", |(dir, _)| dir);
    format!("{dir}/{uri}")
}

/// `(seq, part)` from a part URI such as `s-12.3.m4s`, or `(seq, None)` from `s-12.ts`.
pub fn uri_numbers(uri: &str) -> Option<(u64, Option<u32>)> {
    let name = uri.rsplit('/').next()?;
    let (stem, _ext) = name.rsplit_once('.')?;
    let numbers = stem.rsplit_once('-')?.1;
    match numbers.split_once('.') {
        Some((seq, part)) => Some((seq.parse().ok()?, Some(part.parse().ok()?))),
        None => Some((numbers.parse().ok()?, None)),
    }
}

// ---------------------------------------------------------------------------------------------
// Low-Latency HLS playlists

/// One `EXT-X-PART`.
#[derive(Debug, Clone, PartialEq)]
pub struct LlPart {
    pub duration: f64,
    pub uri: String,
    pub independent: bool,
}

/// A complete segment with the parts listed before its `EXTINF` (none when it is older than
/// the part horizon).
#[derive(Debug, Clone, PartialEq)]
pub struct LlSegment {
    pub seq: u64,
    pub duration: f64,
    pub uri: String,
    pub discontinuity: bool,
    pub parts: Vec<LlPart>,
}

/// A media playlist as an LL-HLS client reads it.
#[derive(Debug, Clone, Default)]
pub struct LlPlaylist {
    pub text: String,
    pub version: Option<u32>,
    pub target_duration: Option<u64>,
    pub media_sequence: u64,
    pub map_uri: Option<String>,
    pub can_block_reload: bool,
    pub part_hold_back: Option<f64>,
    pub part_target: Option<f64>,
    pub segments: Vec<LlSegment>,
    /// Parts of the segment still being built (after the last `EXTINF`).
    pub open_parts: Vec<LlPart>,
    /// `EXT-X-PRELOAD-HINT`: TYPE and URI.
    pub preload_hint: Option<(String, String)>,
}

impl LlPlaylist {
    /// The sequence number of the open segment (the one after the last complete one).
    pub fn open_seq(&self) -> u64 {
        self.media_sequence + self.segments.len() as u64
    }

    /// Every part URI the playlist lists.
    pub fn part_uris(&self) -> Vec<&str> {
        self.segments
            .iter()
            .flat_map(|s| s.parts.iter())
            .chain(self.open_parts.iter())
            .map(|p| p.uri.as_str())
            .collect()
    }

    /// `(msn, part)` of the preload hint.
    pub fn hint(&self) -> Option<(u64, u32)> {
        let (_, uri) = self.preload_hint.as_ref()?;
        match uri_numbers(uri)? {
            (seq, Some(part)) => Some((seq, part)),
            _ => None,
        }
    }
}

/// An attribute list (`A=1,B="x,y",C=Z`) as name/value pairs, quotes removed.
pub fn attributes(list: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut rest = list.trim();
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once('=')
            .ok_or_else(|| format!("attribute without '=' in {list:?}"))?;
        let name = name.trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(format!("bad attribute name {name:?} in {list:?}"));
        }
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted
                .find('"')
                .ok_or_else(|| format!("unterminated quoted string in {list:?}"))?;
            (quoted[..end].to_string(), &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        out.push((name.to_string(), value));
        rest = match after.strip_prefix(',') {
            Some(next) => next,
            None if after.is_empty() => "",
            None => return Err(format!("junk after {name} in {list:?}")),
        };
    }
    Ok(out)
}

fn attribute<'a>(attrs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn number<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{what}: not a number: {text:?}"))
}

/// Parses a media playlist with the LL-HLS tags; strict about the syntax of the tags it reads.
pub fn parse_ll(text: &str) -> Result<LlPlaylist, String> {
    let mut lines = text.lines();
    if lines.next() != Some("#EXTM3U") {
        return Err("the playlist does not start with #EXTM3U".into());
    }
    let mut playlist = LlPlaylist {
        text: text.to_string(),
        ..LlPlaylist::default()
    };
    let mut parts = Vec::new();
    let mut discontinuity = false;
    let mut extinf: Option<f64> = None;
    let mut seq = None;
    for line in lines {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        let (tag, value) = line.split_once(':').unwrap_or((line, ""));
        match tag {
            "#EXT-X-VERSION" => playlist.version = Some(number(value, tag)?),
            "#EXT-X-TARGETDURATION" => playlist.target_duration = Some(number(value, tag)?),
            "#EXT-X-MEDIA-SEQUENCE" => {
                playlist.media_sequence = number(value, tag)?;
                seq = Some(playlist.media_sequence);
            }
            "#EXT-X-MAP" => {
                let attrs = attributes(value)?;
                playlist.map_uri = Some(
                    attribute(&attrs, "URI")
                        .ok_or("EXT-X-MAP without URI")?
                        .to_string(),
                );
            }
            "#EXT-X-SERVER-CONTROL" => {
                let attrs = attributes(value)?;
                playlist.can_block_reload = attribute(&attrs, "CAN-BLOCK-RELOAD") == Some("YES");
                if let Some(v) = attribute(&attrs, "PART-HOLD-BACK") {
                    playlist.part_hold_back = Some(number(v, "PART-HOLD-BACK")?);
                }
            }
            "#EXT-X-PART-INF" => {
                let attrs = attributes(value)?;
                let v =
                    attribute(&attrs, "PART-TARGET").ok_or("EXT-X-PART-INF without PART-TARGET")?;
                playlist.part_target = Some(number(v, "PART-TARGET")?);
            }
            "#EXT-X-PART" => {
                let attrs = attributes(value)?;
                let duration =
                    attribute(&attrs, "DURATION").ok_or("EXT-X-PART without DURATION")?;
                let uri = attribute(&attrs, "URI").ok_or("EXT-X-PART without URI")?;
                let independent = match attribute(&attrs, "INDEPENDENT") {
                    None => false,
                    Some("YES") => true,
                    Some(other) => return Err(format!("INDEPENDENT={other}")),
                };
                parts.push(LlPart {
                    duration: number(duration, "PART DURATION")?,
                    uri: uri.to_string(),
                    independent,
                });
            }
            "#EXT-X-PRELOAD-HINT" => {
                let attrs = attributes(value)?;
                let kind = attribute(&attrs, "TYPE").ok_or("EXT-X-PRELOAD-HINT without TYPE")?;
                let uri = attribute(&attrs, "URI").ok_or("EXT-X-PRELOAD-HINT without URI")?;
                playlist.preload_hint = Some((kind.to_string(), uri.to_string()));
            }
            "#EXT-X-DISCONTINUITY" => discontinuity = true,
            "#EXTINF" => {
                let duration = value.split_once(',').map_or(value, |(d, _)| d);
                extinf = Some(number(duration, "EXTINF")?);
            }
            _ if tag.starts_with('#') => {}
            uri => {
                let duration = extinf
                    .take()
                    .ok_or_else(|| format!("URI line {uri:?} without EXTINF"))?;
                let this = seq.ok_or("a segment before EXT-X-MEDIA-SEQUENCE")?;
                seq = Some(this + 1);
                playlist.segments.push(LlSegment {
                    seq: this,
                    duration,
                    uri: uri.to_string(),
                    discontinuity: std::mem::take(&mut discontinuity),
                    parts: std::mem::take(&mut parts),
                });
            }
        }
    }
    if extinf.is_some() {
        return Err("EXTINF without a URI".into());
    }
    playlist.open_parts = parts;
    Ok(playlist)
}

// ---------------------------------------------------------------------------------------------
// ffmpeg on fetched media

/// Writes the concatenation of `pieces` to `path`.
pub fn write_concat(path: &Path, pieces: &[&[u8]]) {
    std::fs::write(path, pieces.concat()).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
}

/// `ffmpeg -v error -i FILE -f null -`: decodes everything; errors end up in `stderr`.
pub fn decode(file: &Path) -> Output {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(file)
        .args(["-f", "null", "-"]);
    run_with_timeout(cmd, Duration::from_secs(30))
}

/// Whether this ffmpeg can encode with `encoder`.
pub fn have_encoder(encoder: &str) -> bool {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-encoders"]);
    let out = run_with_timeout(cmd, Duration::from_secs(10));
    out.success()
        && out
            .stdout
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(encoder))
}

// ---------------------------------------------------------------------------------------------
// An HEVC + AAC source published with the test RTMP client

/// One FLV media message.
#[derive(Debug, Clone)]
pub struct FlvMessage {
    pub timestamp: u32,
    pub type_id: u8,
    pub body: Vec<u8>,
}

/// A stream ready to publish: sequence headers, then media in timestamp order.
#[derive(Debug, Clone)]
pub struct FlvSource {
    pub headers: Vec<FlvMessage>,
    pub media: Vec<FlvMessage>,
    pub video_frames: usize,
    pub keyframes: usize,
}

/// Splits an H.265 Annex B stream into access units (NAL units without start codes). A new
/// access unit starts at an AUD, VPS, SPS, PPS or prefix SEI after a picture, or at a slice
/// whose `first_slice_segment_in_pic_flag` is set.
pub fn hevc_access_units(stream: &[u8]) -> Vec<Vec<&[u8]>> {
    let mut units: Vec<Vec<&[u8]>> = Vec::new();
    let mut current: Vec<&[u8]> = Vec::new();
    let mut has_picture = false;
    for nal in annexb_nalus(stream).filter(|n| n.len() > 2) {
        let Some(kind) = h265::nal_type(nal) else {
            continue;
        };
        let vcl = kind < 32;
        let starts = if vcl {
            nal[2] & 0x80 != 0
        } else {
            matches!(kind, 32..=35 | 39 | 41..=44 | 48..=55)
        };
        if starts && has_picture {
            units.push(std::mem::take(&mut current));
            has_picture = false;
        }
        has_picture |= vcl;
        current.push(nal);
    }
    if has_picture {
        units.push(current);
    }
    units
}

/// Encodes `seconds` of `testsrc2` (`width`x`height` at `fps`, an IDR every `gop` frames, no
/// B-frames) with libx265 and a 44.1 kHz sine with AAC, and rewraps both as FLV tags: HEVC as
/// legacy codec id 12 (`AVCPacketType` 0 with an HEVCDecoderConfigurationRecord, then 1 with
/// 4-byte length-prefixed NAL units), AAC as sound format 10.
pub fn hevc_aac_source(
    dir: &TempDir,
    seconds: f64,
    (width, height, fps, gop): (u32, u32, u32, u32),
) -> FlvSource {
    let video_path = dir.join("video.hevc");
    let audio_path = dir.join("audio.aac");
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-v", "error", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size={width}x{height}:rate={fps}"),
        ])
        .args(["-t", &seconds.to_string(), "-pix_fmt", "yuv420p"])
        .args(["-c:v", "libx265", "-preset", "ultrafast"])
        .args([
            "-x265-params",
            &format!(
                "keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0:open-gop=0:log-level=error"
            ),
        ])
        .args(["-f", "hevc"])
        .arg(&video_path);
    let out = run_with_timeout(cmd, Duration::from_secs(60));
    assert!(out.success(), "libx265 encode failed: {out:?}");
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-v", "error", "-y"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-t", &seconds.to_string(), "-c:a", "aac", "-f", "adts"])
        .arg(&audio_path);
    let out = run_with_timeout(cmd, Duration::from_secs(60));
    assert!(out.success(), "AAC encode failed: {out:?}");

    let video = std::fs::read(&video_path).expect("read the HEVC stream");
    let units = hevc_access_units(&video);
    assert!(!units.is_empty(), "libx265 produced no access units");
    let find = |kind: u8| -> Vec<bytes::Bytes> {
        units[0]
            .iter()
            .filter(|n| h265::nal_type(n) == Some(kind))
            .map(|n| bytes::Bytes::copy_from_slice(n))
            .collect()
    };
    let (vps, sps, pps) = (
        find(h265::NAL_VPS),
        find(h265::NAL_SPS),
        find(h265::NAL_PPS),
    );
    assert!(
        !vps.is_empty() && !sps.is_empty() && !pps.is_empty(),
        "the first access unit lacks VPS/SPS/PPS"
    );
    let parsed = HevcSps::parse(&sps[0]).expect("parse the SPS libx265 wrote");
    assert_eq!(
        (parsed.width, parsed.height),
        (width, height),
        "SPS picture size"
    );
    let config = HevcDecoderConfig {
        general: parsed.general,
        chroma_format_idc: parsed.chroma_format_idc,
        bit_depth_luma: parsed.bit_depth_luma,
        bit_depth_chroma: parsed.bit_depth_chroma,
        nalu_length_size: 4,
        vps,
        sps,
        pps,
    };
    let mut record = Vec::new();
    config.write(&mut record);
    // Keyframe (1) << 4 | HEVC (12), AVCPacketType 0 (sequence header), composition time 0.
    let mut video_header = vec![0x1c, 0, 0, 0, 0];
    video_header.extend_from_slice(&record);

    let mut media = Vec::new();
    let mut keyframes = 0;
    for (index, unit) in units.iter().enumerate() {
        let key = unit
            .iter()
            .any(|n| h265::nal_type(n).is_some_and(h265::is_irap));
        keyframes += usize::from(key);
        let frame_type = if key { 1 } else { 2 };
        let mut body = vec![(frame_type << 4) | 12, 1, 0, 0, 0];
        for nal in unit {
            if matches!(
                h265::nal_type(nal),
                Some(h265::NAL_VPS | h265::NAL_SPS | h265::NAL_PPS | h265::NAL_AUD)
            ) {
                continue;
            }
            body.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            body.extend_from_slice(nal);
        }
        media.push(FlvMessage {
            timestamp: (index as u64 * 1000 / u64::from(fps)) as u32,
            type_id: TYPE_VIDEO,
            body,
        });
    }

    let audio = std::fs::read(&audio_path).expect("read the ADTS stream");
    let mut offset = 0;
    let mut asc: Option<AudioSpecificConfig> = None;
    let mut samples = 0u64;
    while offset < audio.len() {
        let header = AdtsHeader::parse(&audio[offset..]).expect("ADTS header");
        let end = offset + header.frame_len;
        assert!(end <= audio.len(), "truncated ADTS frame");
        let config = asc.get_or_insert_with(|| header.audio_specific_config());
        media.push(FlvMessage {
            timestamp: (samples * 1000 / u64::from(config.sampling_frequency)) as u32,
            type_id: TYPE_AUDIO,
            // AAC (10) << 4 | 44 kHz | 16-bit | stereo, AACPacketType 1 (raw).
            body: [&[0xaf, 1][..], &audio[offset + header.header_len()..end]].concat(),
        });
        samples += 1024;
        offset = end;
    }
    let asc = asc.expect("no AAC frames");
    let audio_header = [&[0xaf, 0][..], &asc.to_bytes()[..]].concat();
    media.sort_by_key(|m| (m.timestamp, m.type_id));
    FlvSource {
        headers: vec![
            FlvMessage {
                timestamp: 0,
                type_id: TYPE_VIDEO,
                body: video_header,
            },
            FlvMessage {
                timestamp: 0,
                type_id: TYPE_AUDIO,
                body: audio_header,
            },
        ],
        media,
        video_frames: units.len(),
        keyframes,
    }
}

/// Publishes an [`FlvSource`] in real time from a thread (as `ffmpeg -re` would).
pub struct RtmpSourcePublisher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl RtmpSourcePublisher {
    /// Connects, publishes `live/{stream}` (waiting for `NetStream.Publish.Start`), then sends
    /// the source from a thread.
    pub fn start(port: u16, stream: &str, source: FlvSource) -> io::Result<RtmpSourcePublisher> {
        const CSID_VIDEO: u32 = 6;
        const CSID_AUDIO: u32 = 4;
        let mut client = RtmpClient::connect(port, ClientOpts::default())?;
        client.set_chunk_size(60_000)?;
        let stream_id = client.create_stream()?;
        let status = client.publish(stream_id, stream)?;
        if status != "NetStream.Publish.Start" {
            return Err(io::Error::other(format!("publish refused: {status}")));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || -> io::Result<()> {
            let send = |client: &mut RtmpClient, m: &FlvMessage| {
                let csid = if m.type_id == TYPE_VIDEO {
                    CSID_VIDEO
                } else {
                    CSID_AUDIO
                };
                client.send(csid, m.type_id, stream_id, m.timestamp, &m.body)
            };
            for header in &source.headers {
                send(&mut client, header)?;
            }
            let started = Instant::now();
            for message in &source.media {
                let due = started + Duration::from_millis(u64::from(message.timestamp));
                while Instant::now() < due {
                    if flag.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    std::thread::sleep((due - Instant::now()).min(Duration::from_millis(20)));
                }
                send(&mut client, message)?;
            }
            client.shutdown();
            Ok(())
        });
        Ok(RtmpSourcePublisher {
            stop,
            thread: Some(thread),
        })
    }

    /// Waits for the whole source to be sent (or the connection to fail).
    pub fn join(mut self) -> io::Result<()> {
        self.thread
            .take()
            .map_or(Ok(()), |t| t.join().expect("publisher thread panicked"))
    }
}

impl Drop for RtmpSourcePublisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
