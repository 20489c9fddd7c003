//! Fuzzes the RTMP server session behind a valid handshake: arbitrary chunk-stream bytes with
//! the server accepting whatever it is asked. The property lives in
//! `proto/tests/rtmp_fuzz_checks/mod.rs`, shared with `proto/tests/rtmp_fuzz_smoke.rs`.

#![no_main]

#[path = "../../tests/rtmp_fuzz_checks/mod.rs"]
mod rtmp_checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rtmp_checks::check_session(data);
});
