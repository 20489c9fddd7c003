//! Fuzzes the AMF0 decoder: arbitrary bytes must never panic, and whatever decodes must
//! survive a re-encode. The property itself lives in `checks/amf0.rs`, shared with the stable
//! smoke test `proto/tests/amf0_fuzz_smoke.rs` that CI runs.

#![no_main]

#[path = "../checks/amf0.rs"]
mod amf0_check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    amf0_check::check_amf0(data);
});
