//! AMF0 decode/encode throughput on the two payloads every RTMP publish carries: the `connect`
//! command and the `@setDataFrame`/`onMetaData` data message (as OBS sends them).
//!
//! Run: `cargo bench --bench amf0` (add `-- --quick` for a fast pass).

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use sluice_proto::amf0::{self, Amf0Value};

fn connect_command() -> Vec<Amf0Value> {
    vec![
        "connect".into(),
        1.0.into(),
        Amf0Value::object([
            ("app", "live".into()),
            ("type", "nonprivate".into()),
            ("flashVer", "FMLE/3.0 (compatible; FMSc/1.0)".into()),
            ("swfUrl", "rtmp://localhost:1935/live".into()),
            ("tcUrl", "rtmp://localhost:1935/live".into()),
        ]),
    ]
}

fn on_metadata() -> Vec<Amf0Value> {
    let properties: Vec<(String, Amf0Value)> = [
        ("duration", 0.0.into()),
        ("fileSize", 0.0.into()),
        ("width", 1920.0.into()),
        ("height", 1080.0.into()),
        ("videocodecid", 7.0.into()),
        ("videodatarate", 6000.0.into()),
        ("framerate", 60.0.into()),
        ("audiocodecid", 10.0.into()),
        ("audiodatarate", 160.0.into()),
        ("audiosamplerate", 48000.0.into()),
        ("audiosamplesize", 16.0.into()),
        ("audiochannels", 2.0.into()),
        ("stereo", true.into()),
        ("2.1", false.into()),
        ("3.1", false.into()),
        ("4.0", false.into()),
        ("4.1", false.into()),
        ("5.1", false.into()),
        ("7.1", false.into()),
        (
            "encoder",
            "obs-output module (libobs version 30.0.2)".into(),
        ),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect();
    vec![
        "@setDataFrame".into(),
        "onMetaData".into(),
        Amf0Value::EcmaArray(properties),
    ]
}

fn bench_amf0(c: &mut Criterion) {
    let mut group = c.benchmark_group("amf0");
    for (name, values) in [
        ("connect", connect_command()),
        ("onMetaData", on_metadata()),
    ] {
        let mut bytes = Vec::new();
        amf0::encode_all(&values, &mut bytes);
        group.throughput(Throughput::Bytes(bytes.len() as u64));

        group.bench_with_input(BenchmarkId::new("decode", name), &bytes, |b, bytes| {
            b.iter(|| amf0::decode_all(black_box(bytes)).unwrap())
        });

        // Reuse one buffer, as the RTMP writer does, so this measures encoding, not malloc.
        let mut out = Vec::with_capacity(bytes.len());
        group.bench_with_input(BenchmarkId::new("encode", name), &values, |b, values| {
            b.iter(|| {
                out.clear();
                amf0::encode_all(black_box(values), &mut out);
                black_box(out.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_amf0);
criterion_main!(benches);
