//! Fuzzes the Annex B → FLV video packer (what WebRTC and SRT ingest hand the hub) and the
//! B-slice check WebRTC players use: any bytes, as H.264 or H.265 access units, must pack or be
//! reported, never panic; a packed frame always follows a sequence header.

#![no_main]

use sluice_proto::codec::flv_video::{FlvVideoPacker, VideoCodecKind};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let codec = if selector & 1 == 0 {
        VideoCodecKind::H264
    } else {
        VideoCodecKind::H265
    };
    let mut packer = FlvVideoPacker::new(codec);
    let mut configured = false;
    // Several access units: split the input at 0xFF bytes.
    for access_unit in rest.split(|b| *b == 0xff) {
        let mut errors = Vec::new();
        let packed = packer.pack(access_unit, 0, &mut errors);
        configured |= packed.sequence_header.is_some();
        assert!(packed.frame.is_none() || configured);
        for nal in sluice_proto::codec::annexb::annexb_nalus(access_unit) {
            let _ = sluice_proto::codec::h264::is_b_slice(nal);
        }
    }
});
