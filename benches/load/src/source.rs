//! What a load publisher sends: a synthetic H.264 + AAC stream of a chosen bitrate (no file
//! needed), or an FLV file played in a loop with timestamps continuing across loops.
//!
//! Synthetic video frames carry a marker — a frame number — at a fixed offset, so players in
//! the same process can match each frame they receive to the moment it was sent and measure
//! publish→receive latency. The bodies are not decodable pictures; servers never decode.

use std::path::Path;

use bytes::{BufMut, Bytes, BytesMut};
use sluice_proto::rtmp::MediaKind;

/// A real AVCDecoderConfigurationRecord (x264, High profile, 1280x720) as an FLV video body.
const AVC_SEQUENCE_HEADER: &[u8] = &[
    0x17, 0x00, 0x00, 0x00, 0x00, 0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x1a, 0x67, 0x64, 0x00,
    0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00,
    0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60, 0x01, 0x00, 0x04, 0x68, 0xef, 0x8f, 0xcb,
];
/// AAC-LC, 44.1 kHz, stereo AudioSpecificConfig as an FLV audio body.
const AAC_SEQUENCE_HEADER: &[u8] = &[0xaf, 0x00, 0x12, 0x10];
const AAC_FRAME_SAMPLES: u64 = 1024;
const AAC_SAMPLE_RATE: u64 = 44_100;
const AUDIO_BITRATE: u64 = 128_000;

/// Where the frame number sits in a synthetic video body: after the 5-byte FLV/AVC header,
/// the 4-byte NALU length and the 1-byte NAL header.
pub const MARKER_OFFSET: usize = 10;
/// The 8 bytes before the frame number, so a body from some other source is not mistaken
/// for ours.
const MARKER_MAGIC: [u8; 8] = *b"sluiceLD";

/// One message to publish.
pub struct Outgoing {
    pub kind: MediaKind,
    /// Milliseconds since the stream started.
    pub timestamp: u64,
    pub payload: Bytes,
    /// Synthetic video: the frame number the body carries.
    pub frame: Option<u64>,
}

/// A frame number as the 8 bytes after the magic: 7 bits per byte, most significant first, the
/// top bit always set. No byte is zero, so the NAL unit never holds a start code (`00 00 01`):
/// a server that turns the frame into Annex B and packetizes it by start codes (RTP) keeps
/// it whole. 56 bits: 76 years of frames at 30 fps.
pub fn marker_bytes(number: u64) -> [u8; 8] {
    std::array::from_fn(|i| 0x80 | ((number >> (7 * (7 - i))) & 0x7f) as u8)
}

fn decode_marker(bytes: &[u8]) -> Option<u64> {
    let bytes = bytes.get(..8)?;
    bytes.iter().try_fold(0u64, |number, &b| {
        (b & 0x80 != 0).then_some(number << 7 | u64::from(b & 0x7f))
    })
}

/// Reads the frame number from a synthetic video body (or the first bytes of one).
pub fn read_marker(body: &[u8]) -> Option<u64> {
    let magic = body.get(MARKER_OFFSET..MARKER_OFFSET + 8)?;
    if magic != MARKER_MAGIC {
        return None;
    }
    decode_marker(body.get(MARKER_OFFSET + 8..)?)
}

/// Finds a synthetic frame number anywhere in `data` (say, a frame's first bytes in Annex B
/// form, where the NAL unit sits behind start codes and parameter sets rather than at
/// [`MARKER_OFFSET`]).
pub fn find_marker(data: &[u8]) -> Option<u64> {
    let at = data
        .windows(MARKER_MAGIC.len())
        .position(|w| w == MARKER_MAGIC)?;
    decode_marker(data.get(at + MARKER_MAGIC.len()..)?)
}

#[derive(Debug, Clone, Copy)]
pub struct SyntheticConfig {
    /// Total bits per second, audio (128 kbps) included.
    pub bitrate: u64,
    pub fps: u32,
    /// Frames per GOP (keyframe interval).
    pub gop: u32,
}

/// An endless synthetic stream; `next` returns messages in timestamp order.
pub struct Synthetic {
    config: SyntheticConfig,
    inter_size: usize,
    key_size: usize,
    audio_size: usize,
    video_frame: u64,
    audio_frame: u64,
    headers_sent: bool,
    filler: Bytes,
    /// The next video frame is a keyframe whatever the GOP says.
    force_keyframe: bool,
}

impl Synthetic {
    pub fn new(config: SyntheticConfig) -> Synthetic {
        let video_bps = config.bitrate.saturating_sub(AUDIO_BITRATE).max(8_000);
        let per_frame = video_bps / 8 / config.fps.max(1) as u64;
        // A keyframe is about 8 inter frames, as in typical x264 live encodes.
        let gop = config.gop.max(1) as u64;
        let inter = (per_frame * gop / (gop + 7)).max(64);
        let audio = AUDIO_BITRATE / 8 * AAC_FRAME_SAMPLES / AAC_SAMPLE_RATE;
        let key = inter * 8;
        Synthetic {
            config,
            inter_size: inter as usize,
            key_size: key as usize,
            audio_size: audio as usize,
            video_frame: 0,
            audio_frame: 0,
            headers_sent: false,
            filler: Bytes::from(vec![0x5a; key as usize]),
            force_keyframe: false,
        }
    }

    fn video_ts(&self) -> u64 {
        self.video_frame * 1000 / self.config.fps.max(1) as u64
    }

    pub fn next(&mut self) -> Outgoing {
        if !self.headers_sent {
            self.headers_sent = true;
            self.audio_frame = 0;
            return Outgoing {
                kind: MediaKind::Video,
                timestamp: 0,
                payload: Bytes::from_static(AVC_SEQUENCE_HEADER),
                frame: None,
            };
        }
        if self.audio_frame == 0 {
            self.audio_frame = 1;
            return Outgoing {
                kind: MediaKind::Audio,
                timestamp: 0,
                payload: Bytes::from_static(AAC_SEQUENCE_HEADER),
                frame: None,
            };
        }
        // Audio frame n (n ≥ 1 here) has timestamp of frame n-1.
        let audio_ts = (self.audio_frame - 1) * AAC_FRAME_SAMPLES * 1000 / AAC_SAMPLE_RATE;
        if audio_ts < self.video_ts() {
            self.audio_frame += 1;
            let mut body = BytesMut::with_capacity(self.audio_size);
            body.put_slice(&[0xaf, 0x01]);
            body.put_slice(&self.filler[..self.audio_size.saturating_sub(2)]);
            return Outgoing {
                kind: MediaKind::Audio,
                timestamp: audio_ts,
                payload: body.freeze(),
                frame: None,
            };
        }
        let number = self.video_frame;
        let key = number % self.config.gop.max(1) as u64 == 0 || self.force_keyframe;
        self.force_keyframe = false;
        let timestamp = self.video_ts();
        self.video_frame += 1;
        Outgoing {
            kind: MediaKind::Video,
            timestamp,
            payload: self.video_body(number, key),
            frame: Some(number),
        }
    }

    /// Video frame `number`'s FLV body: a keyframe (IDR slice) or an inter frame.
    fn video_body(&self, number: u64, key: bool) -> Bytes {
        let size = if key { self.key_size } else { self.inter_size };
        let mut body = BytesMut::with_capacity(size.max(32));
        body.put_slice(&[if key { 0x17 } else { 0x27 }, 0x01, 0, 0, 0]);
        let nalu_len = size.max(32) as u32 - 9;
        body.put_u32(nalu_len);
        body.put_u8(if key { 0x65 } else { 0x41 });
        body.put_slice(&MARKER_MAGIC);
        body.put_slice(&marker_bytes(number));
        let rest = size.max(32) - body.len();
        body.put_slice(&self.filler[..rest]);
        body.freeze()
    }

    /// A keyframe was asked for (a WebRTC server's PLI): the next video frame is one, out of
    /// GOP. `pending`, a message already taken from [`Self::next`] but not sent yet, becomes
    /// a keyframe itself if it is an inter frame of ours (same number and timestamp).
    pub fn force_keyframe(&mut self, pending: Option<&mut Outgoing>) {
        if let Some(out) = pending
            && out.kind == MediaKind::Video
            && let Some(number) = out.frame
        {
            if !is_keyframe_body(&out.payload) {
                out.payload = self.video_body(number, true);
            }
            return;
        }
        self.force_keyframe = true;
    }
}

/// An FLV video body's frame type is "keyframe".
pub fn is_keyframe_body(body: &[u8]) -> bool {
    body.first().is_some_and(|b| b >> 4 == 1)
}

#[derive(Debug, thiserror::Error)]
pub enum FlvError {
    #[error("{0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0}: not an FLV file")]
    NotFlv(String),
    #[error("{0}: no audio or video tags")]
    Empty(String),
}

/// An FLV file's audio/video/metadata tags, replayed forever; each loop continues the
/// timestamps where the last one ended.
pub struct FlvLoop {
    tags: Vec<(MediaKind, u64, Bytes)>,
    position: usize,
    offset: u64,
    span: u64,
    /// Sequence headers and metadata are sent once, not at every loop.
    first_loop: bool,
}

impl FlvLoop {
    pub fn open(path: &Path) -> Result<FlvLoop, FlvError> {
        let name = path.display().to_string();
        let data = std::fs::read(path).map_err(|e| FlvError::Read(name.clone(), e))?;
        if data.len() < 13 || &data[..3] != b"FLV" {
            return Err(FlvError::NotFlv(name));
        }
        let header_len = u32::from_be_bytes([data[5], data[6], data[7], data[8]]) as usize;
        let mut pos = header_len.max(9) + 4;
        let mut tags = Vec::new();
        let data = Bytes::from(data);
        while pos + 11 <= data.len() {
            let tag_type = data[pos] & 0x1f;
            let size =
                u32::from_be_bytes([0, data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
            let timestamp =
                u32::from_be_bytes([data[pos + 7], data[pos + 4], data[pos + 5], data[pos + 6]])
                    as u64;
            let body_end = pos + 11 + size;
            if body_end > data.len() {
                break;
            }
            let kind = match tag_type {
                8 => Some(MediaKind::Audio),
                9 => Some(MediaKind::Video),
                18 => Some(MediaKind::Data),
                _ => None,
            };
            if let Some(kind) = kind
                && size > 0
            {
                tags.push((kind, timestamp, data.slice(pos + 11..body_end)));
            }
            pos = body_end + 4;
        }
        if !tags.iter().any(|(k, _, _)| *k != MediaKind::Data) {
            return Err(FlvError::Empty(name));
        }
        let first = tags.iter().map(|t| t.1).min().unwrap_or(0);
        let last = tags.iter().map(|t| t.1).max().unwrap_or(0);
        // One frame's worth past the last tag, so loops don't overlap.
        let span = last - first + 33;
        for tag in &mut tags {
            tag.1 -= first;
        }
        Ok(FlvLoop {
            tags,
            position: 0,
            offset: 0,
            span,
            first_loop: true,
        })
    }

    fn is_header(kind: MediaKind, body: &[u8]) -> bool {
        match kind {
            MediaKind::Data => true,
            MediaKind::Video => body.len() > 1 && (body[0] & 0x80 == 0 && body[1] == 0),
            MediaKind::Audio => body.len() > 1 && body[0] >> 4 == 10 && body[1] == 0,
        }
    }

    pub fn next(&mut self) -> Outgoing {
        loop {
            if self.position == self.tags.len() {
                self.position = 0;
                self.offset += self.span;
                self.first_loop = false;
            }
            let (kind, timestamp, body) = &self.tags[self.position];
            self.position += 1;
            if !self.first_loop && Self::is_header(*kind, body) {
                continue;
            }
            return Outgoing {
                kind: *kind,
                timestamp: timestamp + self.offset,
                payload: body.clone(),
                frame: None,
            };
        }
    }
}

/// Either source behind one `next`.
pub enum Source {
    Synthetic(Synthetic),
    File(FlvLoop),
}

impl Source {
    pub fn next(&mut self) -> Outgoing {
        match self {
            Source::Synthetic(s) => s.next(),
            Source::File(f) => f.next(),
        }
    }

    /// Makes the next video frame a keyframe (see [`Synthetic::force_keyframe`]); returns
    /// whether it could. An FLV file keeps its own GOP.
    pub fn force_keyframe(&mut self, pending: Option<&mut Outgoing>) -> bool {
        match self {
            Source::Synthetic(s) => {
                s.force_keyframe(pending);
                true
            }
            Source::File(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flv_file_loops_with_continuing_timestamps_and_headers_once() {
        use sluice_proto::flv::{TagType, write_file_header, write_tag};
        let mut file = Vec::new();
        write_file_header(&mut file, true, true);
        write_tag(&mut file, TagType::Script, 0, b"\x02\x00\x0aonMetaData").unwrap();
        write_tag(&mut file, TagType::Video, 0, &[0x17, 0, 0, 0, 0, 1]).unwrap();
        write_tag(&mut file, TagType::Audio, 0, &[0xaf, 0, 0x12, 0x10]).unwrap();
        write_tag(&mut file, TagType::Video, 0, &[0x17, 1, 0, 0, 0, 9]).unwrap();
        write_tag(&mut file, TagType::Video, 33, &[0x27, 1, 0, 0, 0, 9]).unwrap();
        let path = std::env::temp_dir().join(format!("sluice-load-{}.flv", std::process::id()));
        std::fs::write(&path, &file).unwrap();
        let mut source = FlvLoop::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let first: Vec<(MediaKind, u64)> = (0..5)
            .map(|_| source.next())
            .map(|o| (o.kind, o.timestamp))
            .collect();
        assert_eq!(first[0], (MediaKind::Data, 0));
        assert_eq!(first[3], (MediaKind::Video, 0));
        assert_eq!(first[4], (MediaKind::Video, 33));
        // The second loop: no metadata or sequence headers again, timestamps carry on one
        // frame after the last.
        let again = source.next();
        assert_eq!((again.kind, again.timestamp), (MediaKind::Video, 66));
        assert_eq!(
            again.payload[..2],
            [0x17, 1],
            "the keyframe, not the sequence header"
        );
        assert!(FlvLoop::open(Path::new("/nonexistent.flv")).is_err());
    }

    fn next_video(s: &mut Synthetic) -> Outgoing {
        loop {
            let out = s.next();
            if out.frame.is_some() {
                return out;
            }
        }
    }

    #[test]
    fn keyframes_on_request() {
        let mut s = Synthetic::new(SyntheticConfig {
            bitrate: 1_000_000,
            fps: 30,
            gop: 30,
        });
        assert!(is_keyframe_body(&next_video(&mut s).payload), "frame 0");
        let mut pending = next_video(&mut s);
        assert!(!is_keyframe_body(&pending.payload));
        let inter_len = pending.payload.len();
        // A frame taken but not sent yet becomes the keyframe, keeping its number.
        s.force_keyframe(Some(&mut pending));
        assert!(is_keyframe_body(&pending.payload) && pending.payload.len() > inter_len);
        assert_eq!(read_marker(&pending.payload), Some(1));
        assert!(
            !is_keyframe_body(&next_video(&mut s).payload),
            "frame 2: GOP again"
        );
        // Nothing pending: the next frame is the keyframe.
        let mut source = Source::Synthetic(s);
        assert!(source.force_keyframe(None));
        let Source::Synthetic(s) = &mut source else {
            unreachable!()
        };
        let forced = next_video(s);
        assert_eq!(
            (forced.frame, is_keyframe_body(&forced.payload)),
            (Some(3), true)
        );
        assert!(!is_keyframe_body(&next_video(s).payload));
    }

    #[test]
    fn synthetic_stream_has_the_asked_bitrate_and_order() {
        let mut s = Synthetic::new(SyntheticConfig {
            bitrate: 2_000_000,
            fps: 30,
            gop: 30,
        });
        let mut bytes = 0u64;
        let mut last_ts = 0;
        let mut frames = 0;
        let mut keyframes = 0;
        loop {
            let out = s.next();
            assert!(out.timestamp >= last_ts, "timestamps in order");
            last_ts = out.timestamp;
            if out.timestamp >= 10_000 {
                break;
            }
            bytes += out.payload.len() as u64;
            if let Some(n) = out.frame {
                assert_eq!(read_marker(&out.payload), Some(n));
                frames += 1;
                keyframes += u64::from(out.payload[0] == 0x17);
            }
        }
        assert_eq!(frames, 300);
        for number in [0, 1, 256, 65_536, 1 << 55, (1 << 56) - 1] {
            let bytes = marker_bytes(number);
            assert!(
                !bytes.contains(&0),
                "{number}: no zero byte, so no start code"
            );
            let mut data = b"..sluiceLD".to_vec();
            data.extend_from_slice(&bytes);
            assert_eq!(find_marker(&data), Some(number));
        }
        assert_eq!(keyframes, 10);
        let bitrate = bytes * 8 / 10;
        assert!((1_900_000..=2_100_000).contains(&bitrate), "{bitrate}");
    }
}
