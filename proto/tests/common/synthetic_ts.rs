//! Small transport streams made with our own muxer from real parameter sets and placeholder
//! slices, for the ingest tests that need no ffmpeg (behaviour, totality, fuzz smoke). Included
//! with `#[path]` by the tests that use it, so that the other test crates sharing
//! `common/mod.rs` do not see it as dead code.

use sluice_proto::codec::{AdtsHeader, AudioSpecificConfig, HevcDecoderConfig};
use sluice_proto::ts::{AudioStreamType, Frame, Track, TsMuxer, VideoStreamType};

/// The SPS libx264 wrote for 1280x720 High profile level 3.1.
pub const H264_SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
    0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x83, 0x19, 0x60,
];
/// Its PPS.
pub const H264_PPS: &[u8] = &[0x68, 0xef, 0x8f, 0xcb];

/// The `hvcC` record ffmpeg wrote for a libx265 1280x720 Main level 3.1 encode: the source of
/// the VPS/SPS/PPS below.
const X265_RECORD: &[u8] = &[
    0x01, 0x01, 0x60, 0x00, 0x00, 0x00, 0x90, 0x00, 0x00, 0x00, 0x00, 0x00, 0x5d, 0xf0, 0x00, 0xfc,
    0xfd, 0xf8, 0xf8, 0x00, 0x00, 0x0f, 0x03, 0xa0, 0x00, 0x01, 0x00, 0x18, 0x40, 0x01, 0x0c, 0x01,
    0xff, 0xff, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00,
    0x5d, 0x95, 0x94, 0x09, 0xa1, 0x00, 0x01, 0x00, 0x2b, 0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00,
    0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x5d, 0xa0, 0x02, 0x80, 0x80, 0x2d,
    0x16, 0x59, 0x59, 0x52, 0x93, 0x0b, 0xc0, 0x5a, 0x02, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00, 0x00,
    0x03, 0x00, 0x32, 0x10, 0xa2, 0x00, 0x01, 0x00, 0x06, 0x44, 0x01, 0xc0, 0x73, 0xc1, 0x89,
];

/// (VPS, SPS, PPS) of a real x265 stream.
pub fn hevc_parameter_sets() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let config = HevcDecoderConfig::parse(X265_RECORD).unwrap();
    (
        config.vps[0].to_vec(),
        config.sps[0].to_vec(),
        config.pps[0].to_vec(),
    )
}

/// Appends a start code and `nal`.
pub fn put_nal(out: &mut Vec<u8>, nal: &[u8]) {
    out.extend_from_slice(&[0, 0, 0, 1]);
    out.extend_from_slice(nal);
}

/// An H.264 access unit in Annex B: AUD, then for a keyframe SPS + PPS + an IDR slice, else a
/// non-IDR slice; the slice is `slice_len` placeholder bytes after its header, tagged with
/// `tag` so tests can tell frames apart.
pub fn h264_access_unit(keyframe: bool, slice_len: usize, tag: u8) -> Vec<u8> {
    let mut au = Vec::new();
    put_nal(&mut au, &[0x09, 0xf0]);
    if keyframe {
        put_nal(&mut au, H264_SPS);
        put_nal(&mut au, H264_PPS);
    }
    let mut slice = vec![if keyframe { 0x65 } else { 0x41 }, tag];
    slice.resize(slice_len.max(2), 0x5a);
    put_nal(&mut au, &slice);
    au
}

/// An H.265 access unit in Annex B: AUD, for an IRAP picture VPS/SPS/PPS + an IDR_W_RADL
/// slice, else a TRAIL_R slice.
pub fn h265_access_unit(keyframe: bool, slice_len: usize, tag: u8) -> Vec<u8> {
    let (vps, sps, pps) = hevc_parameter_sets();
    let mut au = Vec::new();
    put_nal(&mut au, &[0x46, 0x01, 0x50]);
    if keyframe {
        put_nal(&mut au, &vps);
        put_nal(&mut au, &sps);
        put_nal(&mut au, &pps);
    }
    let header: [u8; 2] = if keyframe { [0x26, 0x01] } else { [0x02, 0x01] };
    let mut slice = vec![header[0], header[1], tag];
    slice.resize(slice_len.max(3), 0x5a);
    put_nal(&mut au, &slice);
    au
}

/// AAC LC, 44.1 kHz, stereo.
pub fn aac_config() -> AudioSpecificConfig {
    AudioSpecificConfig::parse(&[0x12, 0x10]).unwrap()
}

/// `count` ADTS frames of `raw_len` bytes each, the first raw byte of frame `i` being
/// `first_tag + i`.
pub fn adts_frames(
    config: &AudioSpecificConfig,
    count: usize,
    raw_len: usize,
    first_tag: u8,
) -> Vec<u8> {
    let mut out = Vec::new();
    for index in 0..count {
        let header = AdtsHeader::for_config(config)
            .unwrap()
            .with_frame_len(raw_len)
            .unwrap();
        out.extend_from_slice(&header.encode());
        let mut raw = vec![0x21; raw_len];
        if let Some(first) = raw.first_mut() {
            *first = first_tag.wrapping_add(index as u8);
        }
        out.extend_from_slice(&raw);
    }
    out
}

/// A muxer for H.264 or H.265 video plus AAC, with the PAT/PMT before every keyframe.
pub fn muxer(video: Option<VideoStreamType>, audio: Option<AudioStreamType>) -> TsMuxer {
    TsMuxer::new(video, audio)
}

/// Writes one frame at the given 90 kHz times.
pub fn write(
    muxer: &mut TsMuxer,
    out: &mut Vec<u8>,
    track: Track,
    pts: u64,
    dts: u64,
    keyframe: bool,
    data: &[u8],
) {
    muxer
        .write_frame(
            out,
            &Frame {
                track,
                pts,
                dts,
                keyframe,
                data: &[data],
            },
        )
        .unwrap();
}

/// Writes one frame whose PTS is its DTS (no reordering), at `ticks` (90 kHz).
pub fn write_at(
    muxer: &mut TsMuxer,
    out: &mut Vec<u8>,
    track: Track,
    ticks: u64,
    keyframe: bool,
    data: &[u8],
) {
    write(muxer, out, track, ticks, ticks, keyframe, data);
}

/// `frames` H.264 frames at 25 fps with a keyframe every 10 and one B-frame-like composition
/// offset, and after each video frame a PES of two AAC frames; timestamps start at `start`
/// (90 kHz). Returns the stream.
pub fn h264_aac_stream(frames: usize, start: u64) -> Vec<u8> {
    let mut muxer = muxer(Some(VideoStreamType::H264), Some(AudioStreamType::AacAdts));
    let mut out = Vec::new();
    let config = aac_config();
    for index in 0..frames {
        let dts = start + index as u64 * 3600;
        let keyframe = index % 10 == 0;
        let au = h264_access_unit(keyframe, 300 + index * 7, index as u8);
        write(
            &mut muxer,
            &mut out,
            Track::Video,
            dts + 3600,
            dts,
            keyframe,
            &au,
        );
        let audio_pts = start + index as u64 * 2 * 2090;
        let adts = adts_frames(&config, 2, 50, (index * 2) as u8);
        write_at(&mut muxer, &mut out, Track::Audio, audio_pts, false, &adts);
    }
    out
}
