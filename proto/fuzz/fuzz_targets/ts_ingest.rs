//! Fuzzes the MPEG-TS ingest (SRT publish): arbitrary bytes in arbitrary chunking must never
//! panic, stay bounded, and yield only messages an RTMP reader accepts. The property lives in
//! `checks/ts_ingest.rs`, shared with the stable smoke test `proto/tests/ts_ingest_fuzz_smoke.rs`.

#![no_main]

#[path = "../checks/ts_ingest.rs"]
mod ts_ingest_check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ts_ingest_check::check_ts_ingest(data);
});
