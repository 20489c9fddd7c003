//! Fuzzes the RTMP client session behind a valid handshake: arbitrary server chunk-stream bytes
//! for a player or publisher. The property lives in `proto/tests/rtmp_fuzz_checks/client.rs`,
//! shared with `proto/tests/rtmp_client_fuzz_smoke.rs`.

#![no_main]

#[path = "../../tests/rtmp_fuzz_checks/client.rs"]
mod client_check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    client_check::check_client(data);
});
