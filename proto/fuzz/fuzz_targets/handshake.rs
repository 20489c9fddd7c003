//! Fuzzes the RTMP server (and client) handshake over arbitrary bytes in arbitrary fragments.
//! The property lives in `proto/tests/rtmp_fuzz_checks/mod.rs`, shared with the stable smoke
//! test `proto/tests/rtmp_fuzz_smoke.rs` that CI runs.

#![no_main]

#[path = "../../tests/rtmp_fuzz_checks/mod.rs"]
mod rtmp_checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rtmp_checks::check_handshake(data);
});
