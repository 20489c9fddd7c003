//! RTMP chunk stream throughput: muxing with `ChunkWriter` and with the hub's per-viewer
//! header + shared body, and demuxing with `ChunkReader`, at chunk sizes 128 (the RTMP default)
//! and 60000 (what SRS and sluice announce), for the message sizes of a 2 Mbps stream: 8 KB
//! P-frames and 100 KB keyframes. Throughput is payload bytes per second.
//!
//! `cargo bench --bench rtmp_chunk -- --quick`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sluice_proto::rtmp::chunk::{
    ChunkReader, ChunkWriter, MessageHeader, chunked_body_len, write_chunked_body,
    write_fmt0_header,
};

const CHUNK_SIZES: [u32; 2] = [128, 60000];
const FRAMES: [(&str, usize); 2] = [("p_frame_8k", 8 * 1024), ("keyframe_100k", 100 * 1024)];
/// Messages per demux iteration, so a batch is a realistic socket's worth of traffic.
const BATCH: usize = 16;
/// Bytes handed to the reader per call, like one socket read.
const READ_SIZE: usize = 64 * 1024;
const CSID_VIDEO: u32 = 6;

fn frame(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31) as u8).collect()
}

fn header(timestamp: u32, length: usize) -> MessageHeader {
    MessageHeader {
        timestamp,
        length: length as u32,
        type_id: 9,
        stream_id: 1,
    }
}

fn mux(c: &mut Criterion) {
    let mut group = c.benchmark_group("rtmp_mux");
    for chunk_size in CHUNK_SIZES {
        for (name, len) in FRAMES {
            let payload = frame(len);
            group.throughput(Throughput::Bytes(len as u64));
            let id = format!("{name}/chunk_{chunk_size}");

            let mut out = Vec::with_capacity(len * 2);
            let mut writer = ChunkWriter::new(chunk_size);
            let mut timestamp = 0u32;
            group.bench_function(BenchmarkId::new("chunk_writer", &id), |b| {
                b.iter(|| {
                    out.clear();
                    timestamp = timestamp.wrapping_add(33);
                    writer.write(&mut out, CSID_VIDEO, &header(timestamp, len), &payload);
                    black_box(out.len())
                })
            });

            // The hub's path: the shared body is built once per message for all viewers; per
            // viewer only an 12-byte header is written. Measured here: one body + one header.
            let mut body = Vec::with_capacity(chunked_body_len(len, chunk_size, CSID_VIDEO, None));
            let mut viewer_header = Vec::with_capacity(18);
            group.bench_function(BenchmarkId::new("header_plus_shared_body", &id), |b| {
                b.iter(|| {
                    body.clear();
                    viewer_header.clear();
                    timestamp = timestamp.wrapping_add(33);
                    write_chunked_body(&mut body, &payload, chunk_size, CSID_VIDEO, None);
                    write_fmt0_header(&mut viewer_header, CSID_VIDEO, &header(timestamp, len));
                    black_box((body.len(), viewer_header.len()))
                })
            });
        }
    }
    group.finish();
}

fn demux(c: &mut Criterion) {
    let mut group = c.benchmark_group("rtmp_demux");
    for chunk_size in CHUNK_SIZES {
        for (name, len) in FRAMES {
            let payload = frame(len);
            let mut writer = ChunkWriter::new(chunk_size);
            let mut wire = Vec::new();
            for i in 0..BATCH {
                writer.write(&mut wire, CSID_VIDEO, &header(i as u32 * 33, len), &payload);
            }
            group.throughput(Throughput::Bytes((len * BATCH) as u64));
            let mut reader = ChunkReader::default();
            reader.set_chunk_size(chunk_size).unwrap();
            group.bench_function(
                BenchmarkId::new("chunk_reader", format!("{name}/chunk_{chunk_size}")),
                |b| {
                    b.iter(|| {
                        let mut messages = 0;
                        for mut read in wire.chunks(READ_SIZE) {
                            while let Some(message) = reader.read_message(&mut read).unwrap() {
                                black_box(&message.payload);
                                messages += 1;
                            }
                        }
                        assert_eq!(messages, BATCH);
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, mux, demux);
criterion_main!(benches);
