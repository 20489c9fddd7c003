//! The hub's per-frame remux cost for HTTP-TS/HLS and HTTP-FLV/WS-FLV, on the frame sizes of a
//! 2 Mbps stream (8 KB P-frames, 100 KB keyframes, 370-byte AAC frames): AVCC → Annex B
//! conversion, TS muxing into a reused buffer, and the per-viewer framing pieces (FLV tag
//! header + trailer, chunk header, WebSocket frame header) that wrap a shared body. Throughput
//! is payload bytes per second.
//!
//! `cargo bench --bench ts_mux -- --quick`

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sluice_proto::codec::{AdtsHeader, AnnexBWriter, AudioSpecificConfig, AvcDecoderConfig};
use sluice_proto::flv::{self, TagType};
use sluice_proto::http::{ChunkHeader, ws};
use sluice_proto::ts::{AudioStreamType, Frame, Track, TsMuxer, VideoStreamType};

const FRAMES: [(&str, usize, bool); 2] = [
    ("p_frame_8k", 8 * 1024, false),
    ("keyframe_100k", 100 * 1024, true),
];

fn config() -> AvcDecoderConfig {
    AvcDecoderConfig {
        profile_indication: 100,
        profile_compatibility: 0,
        level_indication: 31,
        nalu_length_size: 4,
        sps: vec![Bytes::from_static(&[
            0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb,
        ])],
        pps: vec![Bytes::from_static(&[0x68, 0xef, 0x8f, 0xcb])],
    }
}

/// An access unit as x264 sends one: an SEI and one slice, length-prefixed.
fn access_unit(len: usize, keyframe: bool) -> Vec<u8> {
    let mut au = vec![0, 0, 0, 4, 0x06, 0x05, 0x01, 0x80];
    let slice_len = len - au.len() - 4;
    au.extend_from_slice(&(slice_len as u32).to_be_bytes());
    au.push(if keyframe { 0x65 } else { 0x41 });
    au.extend((1..slice_len).map(|i| (i * 31) as u8 | 1));
    au
}

fn video(c: &mut Criterion) {
    let writer = AnnexBWriter::h264(&config());
    let mut group = c.benchmark_group("ts_video");
    for (name, len, keyframe) in FRAMES {
        let au = access_unit(len, keyframe);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new("annexb", name), &au, |b, au| {
            let mut scratch = Vec::with_capacity(len + 256);
            b.iter(|| {
                scratch.clear();
                writer.write(black_box(au), keyframe, &mut scratch).unwrap();
                black_box(&scratch);
            });
        });
        group.bench_with_input(BenchmarkId::new("annexb+mux", name), &au, |b, au| {
            let mut muxer =
                TsMuxer::new(Some(VideoStreamType::H264), Some(AudioStreamType::AacAdts));
            let mut scratch = Vec::with_capacity(len + 256);
            let mut out = BytesMut::with_capacity(2 * len);
            let mut dts = 0u64;
            b.iter(|| {
                scratch.clear();
                writer.write(black_box(au), keyframe, &mut scratch).unwrap();
                let data = [&scratch[..]];
                let frame = Frame {
                    track: Track::Video,
                    pts: dts + 3600,
                    dts,
                    keyframe,
                    data: &data,
                };
                out.clear();
                muxer.write_frame(&mut out, &frame).unwrap();
                dts += 3600;
                black_box(&out);
            });
        });
    }
    group.finish();
}

fn audio(c: &mut Criterion) {
    let raw = vec![0x21u8; 370];
    let adts = AdtsHeader::for_config(&AudioSpecificConfig::parse(&[0x12, 0x10]).unwrap()).unwrap();
    let mut group = c.benchmark_group("ts_audio");
    group.throughput(Throughput::Bytes(raw.len() as u64));
    group.bench_function("adts+mux_370", |b| {
        let mut muxer = TsMuxer::new(Some(VideoStreamType::H264), Some(AudioStreamType::AacAdts));
        let mut out = BytesMut::with_capacity(1024);
        let mut dts = 0u64;
        b.iter(|| {
            let header = adts.with_frame_len(raw.len()).unwrap().encode();
            let data = [&header[..], black_box(&raw[..])];
            out.clear();
            muxer
                .write_frame(
                    &mut out,
                    &Frame {
                        track: Track::Audio,
                        pts: dts,
                        dts,
                        keyframe: true,
                        data: &data,
                    },
                )
                .unwrap();
            dts += 2090;
            black_box(&out);
        });
    });
    group.finish();
}

/// What each viewer writes around a shared body: cost per viewer per frame.
fn per_viewer(c: &mut Criterion) {
    let mut group = c.benchmark_group("per_viewer_framing");
    group.bench_function("flv_tag_header+trailer", |b| {
        let mut timestamp = 0u32;
        b.iter(|| {
            let header = flv::tag_header(TagType::Video, black_box(8192), timestamp).unwrap();
            let trailer = flv::previous_tag_size(8192);
            timestamp = timestamp.wrapping_add(40);
            black_box((header, trailer));
        });
    });
    group.bench_function("http_chunk_header", |b| {
        b.iter(|| black_box(ChunkHeader::new(black_box(8192 + 15))));
    });
    group.bench_function("ws_frame_header", |b| {
        b.iter(|| {
            black_box(ws::frame_header(
                ws::Opcode::Binary,
                true,
                black_box(8192 + 15),
            ))
        });
    });
    group.finish();
}

criterion_group!(benches, video, audio, per_viewer);
criterion_main!(benches);
