//! Fuzzes the SRT stream id parser: any bytes (as lossy UTF-8) must parse or be refused, never
//! panic, and what parses must name a sane app and stream.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(id) = sluice_proto::srt::SrtStreamId::parse(&text, "live") {
        assert!(!id.app.is_empty() && !id.stream.is_empty() && !id.stream.contains('/'));
        assert!(!id.app.split('/').any(|segment| segment.is_empty() || segment == ".."));
        let _ = id.param();
    }
});
