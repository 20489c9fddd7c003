// Placeholder: the RTMP engineer replaces this with the real target.
#![no_main]
libfuzzer_sys::fuzz_target!(|_data: &[u8]| {});
