//! From the length-prefixed NAL units of FLV/RTMP/MP4 ("AVCC", ISO/IEC 14496-15) to the
//! start-code form of H.264/H.265 Annex B that MPEG-TS carries.
//!
//! TS/HLS players need more than start codes: each access unit should open with an access unit
//! delimiter (Apple's HLS spec and many hardware decoders insist), and a player that joins at a
//! random access point has only that access unit to start from, so the parameter sets
//! (SPS/PPS, and VPS for H.265) from the sequence header go in front of every IDR/IRAP picture
//! unless the access unit already carries them in band. [`AnnexBWriter`] does both, the way
//! ffmpeg's `h264_mp4toannexb`/`hevc_mp4toannexb` filters and SRS's TS muxer do.

use bytes::BufMut;

use super::CodecError;
use super::h264::{self, AvcDecoderConfig};
use super::h265::{self, HevcDecoderConfig};

/// The four-byte Annex B start code.
pub const START_CODE: [u8; 4] = [0, 0, 0, 1];
/// H.264 access unit delimiter with primary_pic_type 7 ("any slice type"), as ffmpeg writes it.
const H264_AUD: [u8; 6] = [0, 0, 0, 1, 0x09, 0xf0];
/// H.265 access unit delimiter (type 35, layer 0, temporal id 1) with pic_type 2 ("any").
const H265_AUD: [u8; 7] = [0, 0, 0, 1, 0x46, 0x01, 0x50];

/// Which NAL unit syntax an access unit uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NalCodec {
    H264,
    H265,
}

impl NalCodec {
    fn nal_type(self, nal: &[u8]) -> Option<u8> {
        match self {
            NalCodec::H264 => h264::nal_type(nal),
            NalCodec::H265 => h265::nal_type(nal),
        }
    }

    fn is_random_access(self, nal_type: u8) -> bool {
        match self {
            NalCodec::H264 => nal_type == h264::NAL_IDR,
            NalCodec::H265 => h265::is_irap(nal_type),
        }
    }

    fn is_sps(self, nal_type: u8) -> bool {
        match self {
            NalCodec::H264 => nal_type == h264::NAL_SPS,
            NalCodec::H265 => nal_type == h265::NAL_SPS,
        }
    }

    fn is_aud(self, nal_type: u8) -> bool {
        match self {
            NalCodec::H264 => nal_type == h264::NAL_AUD,
            NalCodec::H265 => nal_type == h265::NAL_AUD,
        }
    }

    fn aud(self) -> &'static [u8] {
        match self {
            NalCodec::H264 => &H264_AUD,
            NalCodec::H265 => &H265_AUD,
        }
    }
}

/// The NAL units of a length-prefixed access unit. Yields an error (once, then ends) when a
/// length runs past the end of the input; zero-length units are yielded as empty slices.
#[derive(Debug, Clone)]
pub struct AvccNalus<'a> {
    rest: &'a [u8],
    length_size: usize,
    failed: bool,
}

impl<'a> AvccNalus<'a> {
    /// `length_size` is the record's NALU length size: 1, 2 or 4.
    pub fn new(access_unit: &'a [u8], length_size: u8) -> Result<AvccNalus<'a>, CodecError> {
        if !matches!(length_size, 1 | 2 | 4) {
            return Err(CodecError::BadNaluLengthSize(length_size));
        }
        Ok(AvccNalus {
            rest: access_unit,
            length_size: usize::from(length_size),
            failed: false,
        })
    }
}

impl<'a> Iterator for AvccNalus<'a> {
    type Item = Result<&'a [u8], CodecError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        let Some((prefix, after)) = self.rest.split_at_checked(self.length_size) else {
            self.failed = true;
            return Some(Err(CodecError::Truncated("NAL unit length prefix")));
        };
        let length = prefix
            .iter()
            .fold(0usize, |acc, &byte| (acc << 8) | usize::from(byte));
        let Some((nal, rest)) = after.split_at_checked(length) else {
            self.failed = true;
            return Some(Err(CodecError::NaluOverrun {
                length,
                remaining: after.len(),
            }));
        };
        self.rest = rest;
        Some(Ok(nal))
    }
}

/// What [`AnnexBWriter::write`] found in and did to one access unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessUnitInfo {
    /// The access unit holds an IDR (H.264) or IRAP (H.265) picture.
    pub random_access: bool,
    /// The sequence header's parameter sets were written in front of it.
    pub parameter_sets_inserted: bool,
    /// Bytes written.
    pub len: usize,
}

/// Converts access units of one stream to Annex B. Built once per sequence header; holds the
/// parameter sets already in start-code form so that each keyframe costs one copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnexBWriter {
    codec: NalCodec,
    nalu_length_size: u8,
    /// Start code + parameter set, for each VPS, SPS, PPS in the record.
    parameter_sets: Vec<u8>,
}

impl AnnexBWriter {
    pub fn h264(config: &AvcDecoderConfig) -> AnnexBWriter {
        AnnexBWriter::new(
            NalCodec::H264,
            config.nalu_length_size,
            config.sps.iter().chain(&config.pps),
        )
    }

    pub fn h265(config: &HevcDecoderConfig) -> AnnexBWriter {
        AnnexBWriter::new(
            NalCodec::H265,
            config.nalu_length_size,
            config.vps.iter().chain(&config.sps).chain(&config.pps),
        )
    }

    fn new<'a>(
        codec: NalCodec,
        nalu_length_size: u8,
        sets: impl Iterator<Item = &'a bytes::Bytes>,
    ) -> AnnexBWriter {
        let mut parameter_sets = Vec::new();
        for set in sets.filter(|set| !set.is_empty()) {
            parameter_sets.extend_from_slice(&START_CODE);
            parameter_sets.extend_from_slice(set);
        }
        AnnexBWriter {
            codec,
            nalu_length_size,
            parameter_sets,
        }
    }

    pub fn codec(&self) -> NalCodec {
        self.codec
    }

    /// Bytes of each NAL unit's length prefix in the access units it reads.
    pub fn nalu_length_size(&self) -> u8 {
        self.nalu_length_size
    }

    /// The parameter sets in Annex B form, as written before random access pictures.
    pub fn parameter_sets(&self) -> &[u8] {
        &self.parameter_sets
    }

    /// Scans an access unit without writing: what [`write`](Self::write) would do and how many
    /// bytes it would write. Fails exactly when `write` would.
    pub fn inspect(
        &self,
        access_unit: &[u8],
        keyframe: bool,
    ) -> Result<AccessUnitInfo, CodecError> {
        let mut random_access = false;
        let mut has_sps = false;
        let mut body_len = 0;
        for nal in AvccNalus::new(access_unit, self.nalu_length_size)? {
            let nal = nal?;
            let Some(nal_type) = self.codec.nal_type(nal) else {
                continue;
            };
            if self.codec.is_aud(nal_type) {
                continue;
            }
            random_access |= self.codec.is_random_access(nal_type);
            has_sps |= self.codec.is_sps(nal_type);
            body_len += START_CODE.len() + nal.len();
        }
        let parameter_sets_inserted = (random_access || keyframe) && !has_sps;
        let len = self.codec.aud().len()
            + body_len
            + if parameter_sets_inserted {
                self.parameter_sets.len()
            } else {
                0
            };
        Ok(AccessUnitInfo {
            random_access,
            parameter_sets_inserted,
            len,
        })
    }

    /// Appends the access unit in Annex B form: an access unit delimiter, then — for a random
    /// access picture, or any access unit the container flagged as a `keyframe`, that does not
    /// carry its own SPS — the parameter sets, then each NAL unit behind a start code. Access
    /// unit delimiters already present and empty NAL units are dropped. On error nothing is
    /// written.
    pub fn write<B: BufMut + ?Sized>(
        &self,
        access_unit: &[u8],
        keyframe: bool,
        out: &mut B,
    ) -> Result<AccessUnitInfo, CodecError> {
        let info = self.inspect(access_unit, keyframe)?;
        out.put_slice(self.codec.aud());
        if info.parameter_sets_inserted {
            out.put_slice(&self.parameter_sets);
        }
        // Validated by `inspect`: the iterator yields no errors now.
        for nal in AvccNalus::new(access_unit, self.nalu_length_size)?.flatten() {
            match self.codec.nal_type(nal) {
                Some(nal_type) if !self.codec.is_aud(nal_type) => {
                    out.put_slice(&START_CODE);
                    out.put_slice(nal);
                }
                _ => {}
            }
        }
        Ok(info)
    }
}

/// Splits an Annex B byte stream into NAL units (without start codes). Accepts three- and
/// four-byte start codes; bytes before the first start code are skipped. Total: any input
/// yields some sequence of (possibly empty) slices.
pub fn annexb_nalus(stream: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = match find_start_code(stream) {
        Some((_, after)) => &stream[after..],
        None => &stream[stream.len()..],
    };
    let mut done = stream.is_empty() || find_start_code(stream).is_none();
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        match find_start_code(rest) {
            Some((start, after)) => {
                let mut nal = &rest[..start];
                // A four-byte start code's leading zero belongs to the start code, not the NAL.
                while let Some((&0, head)) = nal.split_last() {
                    nal = head;
                }
                rest = &rest[after..];
                Some(nal)
            }
            None => {
                done = true;
                Some(rest)
            }
        }
    })
}

/// Position of the next `00 00 01` and the index just past it.
fn find_start_code(data: &[u8]) -> Option<(usize, usize)> {
    data.windows(3)
        .position(|window| window == [0, 0, 1])
        .map(|position| (position, position + 3))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn config() -> AvcDecoderConfig {
        AvcDecoderConfig {
            profile_indication: 100,
            profile_compatibility: 0,
            level_indication: 31,
            nalu_length_size: 4,
            sps: vec![Bytes::from_static(&[0x67, 0x64, 0x00, 0x1f])],
            pps: vec![Bytes::from_static(&[0x68, 0xef])],
        }
    }

    #[test]
    fn idr_gets_aud_and_parameter_sets() {
        let writer = AnnexBWriter::h264(&config());
        let au = [0, 0, 0, 2, 0x06, 0x05, 0, 0, 0, 3, 0x65, 0x88, 0x84];
        let mut out = Vec::new();
        let info = writer.write(&au, true, &mut out).unwrap();
        assert!(info.random_access && info.parameter_sets_inserted);
        assert_eq!(info.len, out.len());
        let expected: &[u8] = &[
            0, 0, 0, 1, 0x09, 0xf0, // AUD
            0, 0, 0, 1, 0x67, 0x64, 0x00, 0x1f, // SPS
            0, 0, 0, 1, 0x68, 0xef, // PPS
            0, 0, 0, 1, 0x06, 0x05, // SEI
            0, 0, 0, 1, 0x65, 0x88, 0x84, // IDR slice
        ];
        assert_eq!(out, expected);
        let nalus: Vec<&[u8]> = annexb_nalus(&out).collect();
        assert_eq!(nalus.len(), 5);
        assert_eq!(nalus[4], &[0x65, 0x88, 0x84]);
    }

    #[test]
    fn non_idr_and_inband_parameter_sets() {
        let writer = AnnexBWriter::h264(&config());
        let mut out = Vec::new();
        // A P slice with an existing AUD: the AUD is replaced, nothing inserted.
        let au = [0, 0, 0, 2, 0x09, 0x30, 0, 0, 0, 2, 0x41, 0x9a];
        let info = writer.write(&au, false, &mut out).unwrap();
        assert!(!info.random_access && !info.parameter_sets_inserted);
        assert_eq!(out, [0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x41, 0x9a]);
        // An IDR that carries its own SPS/PPS gets no second copy.
        out.clear();
        let au = [0, 0, 0, 1, 0x67, 0, 0, 0, 1, 0x68, 0, 0, 0, 1, 0x65];
        let info = writer.write(&au, true, &mut out).unwrap();
        assert!(info.random_access && !info.parameter_sets_inserted);
    }

    #[test]
    fn overrun_writes_nothing() {
        let writer = AnnexBWriter::h264(&config());
        let mut out = Vec::new();
        assert_eq!(
            writer.write(&[0, 0, 0, 9, 0x65], true, &mut out),
            Err(CodecError::NaluOverrun {
                length: 9,
                remaining: 1
            })
        );
        assert!(out.is_empty());
        assert!(writer.write(&[0, 0], true, &mut out).is_err());
        assert!(AvccNalus::new(&[], 3).is_err());
    }

    #[test]
    fn short_length_prefixes() {
        let nalus: Vec<_> = AvccNalus::new(&[2, 0x65, 0x88, 0, 1, 0x41], 1)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(nalus, [&[0x65u8, 0x88][..], &[], &[0x41]]);
    }

    #[test]
    fn annexb_split_edge_cases() {
        assert_eq!(annexb_nalus(&[]).count(), 0);
        assert_eq!(annexb_nalus(&[1, 2, 3]).count(), 0);
        let nalus: Vec<&[u8]> = annexb_nalus(&[0, 0, 1, 0x09, 0, 0, 0, 1, 0x41, 0, 0, 1]).collect();
        assert_eq!(nalus, [&[0x09u8][..], &[0x41], &[]]);
    }
}
