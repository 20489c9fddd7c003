//! Fuzzes the RTMP chunk reader and message decoders: arbitrary bytes must never panic, what
//! reads must re-encode and re-chunk to the same thing. The property lives in
//! `proto/tests/rtmp_fuzz_checks/mod.rs`, shared with `proto/tests/rtmp_fuzz_smoke.rs`.

#![no_main]

#[path = "../../tests/rtmp_fuzz_checks/mod.rs"]
mod rtmp_checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rtmp_checks::check_chunk(data);
});
