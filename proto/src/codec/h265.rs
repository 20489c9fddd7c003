//! H.265/HEVC: the HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 §8.3.3) that an FLV/RTMP
//! sequence header carries (legacy codec id 12 and Enhanced RTMP `hvc1` alike), and the
//! sequence parameter set (ITU-T H.265 §7.3.2.2) read as far as the picture size and bit depth.

use bytes::Bytes;

use super::bits::BitReader;
use super::h264::{ByteReader, parameter_set_list_with};
use super::{CodecError, MAX_PARAMETER_SETS};

/// First IRAP (random access) nal_unit_type: BLA_W_LP. IRAP pictures are types 16..=23.
pub const NAL_BLA_W_LP: u8 = 16;
/// Last IRAP nal_unit_type (RSV_IRAP_VCL23).
pub const NAL_IRAP_LAST: u8 = 23;
/// nal_unit_type of an IDR picture that may have decodable leading pictures.
pub const NAL_IDR_W_RADL: u8 = 19;
/// nal_unit_type of an IDR picture without leading pictures.
pub const NAL_IDR_N_LP: u8 = 20;
/// nal_unit_type of a clean random access picture.
pub const NAL_CRA: u8 = 21;
pub const NAL_VPS: u8 = 32;
pub const NAL_SPS: u8 = 33;
pub const NAL_PPS: u8 = 34;
pub const NAL_AUD: u8 = 35;
pub const NAL_PREFIX_SEI: u8 = 39;

/// nal_unit_type: bits 1..6 of the first header byte.
pub fn nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|header| (header >> 1) & 0x3f)
}

/// Whether a nal_unit_type is an intra random access point (BLA, IDR, CRA).
pub fn is_irap(nal_type: u8) -> bool {
    (NAL_BLA_W_LP..=NAL_IRAP_LAST).contains(&nal_type)
}

/// The general profile/tier/level fields both the record and the SPS carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HevcProfileTierLevel {
    pub profile_space: u8,
    /// false = Main tier, true = High tier.
    pub tier_flag: bool,
    pub profile_idc: u8,
    pub profile_compatibility_flags: u32,
    /// The 48 bits of progressive/interlaced/non-packed/frame-only and constraint flags.
    pub constraint_indicator_flags: u64,
    /// 30 × the level number: 93 is level 3.1, 120 is level 4.
    pub level_idc: u8,
}

impl HevcProfileTierLevel {
    /// Profile name (`Main`, `Main10`, ...).
    pub fn profile_name(&self) -> &'static str {
        match self.profile_idc {
            1 => "Main",
            2 => "Main10",
            3 => "MainStillPicture",
            4 => "RExt",
            5 => "HighThroughput",
            9 => "SCC",
            _ => "Other",
        }
    }

    /// Level as written in the API: `3.1`, `4`, `5.1`, ...
    pub fn level_name(&self) -> String {
        let major = self.level_idc / 30;
        let minor = (self.level_idc % 30) / 3;
        if minor == 0 {
            major.to_string()
        } else {
            format!("{major}.{minor}")
        }
    }

    /// The RFC 6381 codec string (ISO/IEC 14496-15 Annex E), e.g. `hvc1.1.6.L93.90`.
    pub fn codec_string(&self) -> String {
        let space = match self.profile_space {
            1 => "A",
            2 => "B",
            3 => "C",
            _ => "",
        };
        let tier = if self.tier_flag { 'H' } else { 'L' };
        let mut text = format!(
            "hvc1.{space}{}.{:X}.{tier}{}",
            self.profile_idc,
            self.profile_compatibility_flags.reverse_bits(),
            self.level_idc
        );
        let constraint = self.constraint_indicator_flags.to_be_bytes();
        let significant = constraint[2..]
            .iter()
            .rposition(|&byte| byte != 0)
            .map_or(0, |last| last + 1);
        for byte in &constraint[2..2 + significant] {
            text.push_str(&format!(".{byte:X}"));
        }
        text
    }
}

/// The HEVCDecoderConfigurationRecord.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HevcDecoderConfig {
    pub general: HevcProfileTierLevel,
    pub chroma_format_idc: u8,
    pub bit_depth_luma: u8,
    pub bit_depth_chroma: u8,
    /// Bytes in each NAL unit's length prefix in the access units that follow: 1, 2 or 4.
    pub nalu_length_size: u8,
    /// Parameter sets, two-byte NAL header included.
    pub vps: Vec<Bytes>,
    pub sps: Vec<Bytes>,
    pub pps: Vec<Bytes>,
}

impl HevcDecoderConfig {
    /// Parses a record. Arrays of other NAL types (SEI) are skipped.
    pub fn parse(record: &[u8]) -> Result<HevcDecoderConfig, CodecError> {
        const WHAT: &str = "HEVCDecoderConfigurationRecord";
        let mut reader = ByteReader::new(record, WHAT);
        let version = reader.u8()?;
        if version != 1 {
            return Err(CodecError::UnsupportedVersion {
                what: WHAT,
                version,
            });
        }
        let fixed = reader.take(21)?;
        let profile_byte = fixed[0];
        let general = HevcProfileTierLevel {
            profile_space: profile_byte >> 6,
            tier_flag: profile_byte & 0x20 != 0,
            profile_idc: profile_byte & 0x1f,
            profile_compatibility_flags: u32::from_be_bytes([
                fixed[1], fixed[2], fixed[3], fixed[4],
            ]),
            constraint_indicator_flags: u64::from_be_bytes([
                0, 0, fixed[5], fixed[6], fixed[7], fixed[8], fixed[9], fixed[10],
            ]),
            level_idc: fixed[11],
        };
        // fixed[12..14]: min_spatial_segmentation_idc; fixed[14]: parallelismType.
        let chroma_format_idc = fixed[15] & 0x03;
        let bit_depth_luma = (fixed[16] & 0x07) + 8;
        let bit_depth_chroma = (fixed[17] & 0x07) + 8;
        // fixed[18..20]: avgFrameRate; fixed[20]: constantFrameRate, numTemporalLayers,
        // temporalIdNested, lengthSizeMinusOne.
        let nalu_length_size = (fixed[20] & 0x03) + 1;
        if nalu_length_size == 3 {
            return Err(CodecError::BadNaluLengthSize(3));
        }
        let mut config = HevcDecoderConfig {
            general,
            chroma_format_idc,
            bit_depth_luma,
            bit_depth_chroma,
            nalu_length_size,
            vps: Vec::new(),
            sps: Vec::new(),
            pps: Vec::new(),
        };
        let array_count = reader.u8()?;
        for _ in 0..array_count {
            let nal_type = reader.u8()? & 0x3f;
            let count = usize::from(reader.u16()?);
            let list = match nal_type {
                NAL_VPS => Some(&mut config.vps),
                NAL_SPS => Some(&mut config.sps),
                NAL_PPS => Some(&mut config.pps),
                _ => None,
            };
            match list {
                Some(list) => {
                    if list.len() + count > MAX_PARAMETER_SETS {
                        return Err(CodecError::TooManyParameterSets {
                            limit: MAX_PARAMETER_SETS,
                        });
                    }
                    list.extend(reader.parameter_sets(count)?);
                }
                None => {
                    for _ in 0..count {
                        let length = usize::from(reader.u16()?);
                        reader.take(length)?;
                    }
                }
            }
        }
        Ok(config)
    }

    /// Builds the record a publisher would send for these parameter sets (two-byte NAL header
    /// included, no start codes), with 4-byte NAL unit lengths: how a sequence header is made
    /// from the in-band VPS/SPS/PPS of an Annex B stream (MPEG-TS, SRT). The general
    /// profile/tier/level, chroma format and bit depths come from the first SPS, which must
    /// parse.
    pub fn from_parameter_sets(
        vps: &[&[u8]],
        sps: &[&[u8]],
        pps: &[&[u8]],
    ) -> Result<HevcDecoderConfig, CodecError> {
        let list = |sets, expected, what| {
            parameter_set_list_with(sets, expected, what, MAX_PARAMETER_SETS, nal_type)
        };
        let vps = list(vps, NAL_VPS, "VPS")?;
        let sps = list(sps, NAL_SPS, "SPS")?;
        let pps = list(pps, NAL_PPS, "PPS")?;
        if vps.is_empty() {
            return Err(CodecError::MissingParameterSet("VPS"));
        }
        if pps.is_empty() {
            return Err(CodecError::MissingParameterSet("PPS"));
        }
        let parsed = HevcSps::parse(sps.first().ok_or(CodecError::MissingParameterSet("SPS"))?)?;
        Ok(HevcDecoderConfig {
            general: parsed.general,
            chroma_format_idc: parsed.chroma_format_idc,
            bit_depth_luma: parsed.bit_depth_luma,
            bit_depth_chroma: parsed.bit_depth_chroma,
            nalu_length_size: 4,
            vps,
            sps,
            pps,
        })
    }

    /// Serialises the record with VPS, SPS and PPS arrays, as a publisher would send it.
    pub fn write(&self, out: &mut Vec<u8>) {
        let g = &self.general;
        out.push(1);
        out.push((g.profile_space << 6) | (u8::from(g.tier_flag) << 5) | (g.profile_idc & 0x1f));
        out.extend_from_slice(&g.profile_compatibility_flags.to_be_bytes());
        out.extend_from_slice(&g.constraint_indicator_flags.to_be_bytes()[2..]);
        out.push(g.level_idc);
        out.extend_from_slice(&[0xf0, 0x00, 0xfc]);
        out.push(0xfc | (self.chroma_format_idc & 0x03));
        out.push(0xf8 | (self.bit_depth_luma.saturating_sub(8) & 0x07));
        out.push(0xf8 | (self.bit_depth_chroma.saturating_sub(8) & 0x07));
        out.extend_from_slice(&[0, 0]);
        // constantFrameRate 0, numTemporalLayers 1, temporalIdNested 1, lengthSizeMinusOne.
        out.push(0x0c | (self.nalu_length_size.clamp(1, 4) - 1));
        let arrays = [
            (NAL_VPS, &self.vps),
            (NAL_SPS, &self.sps),
            (NAL_PPS, &self.pps),
        ];
        out.push(arrays.iter().filter(|(_, sets)| !sets.is_empty()).count() as u8);
        for (nal_type, sets) in arrays {
            if sets.is_empty() {
                continue;
            }
            // array_completeness 1: every parameter set of this type is in the record.
            out.push(0x80 | nal_type);
            let sets = &sets[..sets.len().min(usize::from(u16::MAX))];
            out.extend_from_slice(&(sets.len() as u16).to_be_bytes());
            for set in sets {
                let set = &set[..set.len().min(usize::from(u16::MAX))];
                out.extend_from_slice(&(set.len() as u16).to_be_bytes());
                out.extend_from_slice(set);
            }
        }
    }

    /// Parses the first SPS.
    pub fn first_sps(&self) -> Result<HevcSps, CodecError> {
        HevcSps::parse(
            self.sps
                .first()
                .ok_or(CodecError::MissingParameterSet("SPS"))?,
        )
    }

    /// The RFC 6381 codec string, e.g. `hvc1.1.6.L93.90`.
    pub fn codec_string(&self) -> String {
        self.general.codec_string()
    }
}

/// What a media server wants from an H.265 sequence parameter set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HevcSps {
    pub general: HevcProfileTierLevel,
    pub seq_parameter_set_id: u32,
    pub chroma_format_idc: u8,
    /// Displayed size: the coded size minus the conformance window.
    pub width: u32,
    pub height: u32,
    pub bit_depth_luma: u8,
    pub bit_depth_chroma: u8,
}

/// Largest luma dimension we accept. Level 6.2 allows 8444 × 8444; the limit only has to keep
/// the arithmetic small.
const MAX_DIMENSION: u32 = 65536;

impl HevcSps {
    /// Parses an SPS NAL unit, two-byte header included.
    pub fn parse(nal: &[u8]) -> Result<HevcSps, CodecError> {
        let found = nal_type(nal).ok_or(CodecError::Truncated("SPS"))?;
        if found != NAL_SPS {
            return Err(CodecError::WrongNalType {
                expected: "SPS",
                found,
            });
        }
        let payload = nal.get(2..).ok_or(CodecError::Truncated("SPS"))?;
        let mut r = BitReader::new_rbsp(payload, "SPS");
        let _vps_id = r.bits(4)?;
        let max_sub_layers_minus1 = r.bits(3)?;
        let _temporal_id_nesting = r.bit()?;
        let general = profile_tier_level(&mut r, max_sub_layers_minus1)?;
        let seq_parameter_set_id = r.ue_max(15, "sps_seq_parameter_set_id")?;
        let chroma_format_idc = r.ue_max(3, "chroma_format_idc")? as u8;
        let separate_colour_plane = chroma_format_idc == 3 && r.bit()?;
        let coded_width = r.ue_max(MAX_DIMENSION, "pic_width_in_luma_samples")?;
        let coded_height = r.ue_max(MAX_DIMENSION, "pic_height_in_luma_samples")?;
        let (mut width, mut height) = (coded_width, coded_height);
        if r.bit()? {
            // conformance_window_flag: offsets are in chroma sample units (eq. 7-2 / Table 6-1).
            let (sub_width, sub_height): (u64, u64) =
                match (separate_colour_plane, chroma_format_idc) {
                    (false, 1) => (2, 2),
                    (false, 2) => (2, 1),
                    _ => (1, 1),
                };
            let left = u64::from(r.ue()?);
            let right = u64::from(r.ue()?);
            let top = u64::from(r.ue()?);
            let bottom = u64::from(r.ue()?);
            let crop_x = (left + right) * sub_width;
            let crop_y = (top + bottom) * sub_height;
            if crop_x >= u64::from(coded_width) || crop_y >= u64::from(coded_height) {
                return Err(CodecError::OutOfRange {
                    what: "conformance window",
                    value: crop_x.max(crop_y),
                });
            }
            width = coded_width - crop_x as u32;
            height = coded_height - crop_y as u32;
        }
        let bit_depth_luma = 8 + r.ue_max(8, "bit_depth_luma_minus8")? as u8;
        let bit_depth_chroma = 8 + r.ue_max(8, "bit_depth_chroma_minus8")? as u8;
        Ok(HevcSps {
            general,
            seq_parameter_set_id,
            chroma_format_idc,
            width,
            height,
            bit_depth_luma,
            bit_depth_chroma,
        })
    }
}

/// §7.3.3 profile_tier_level(1, maxNumSubLayersMinus1): the general part, sub-layers skipped.
fn profile_tier_level(
    r: &mut BitReader<'_>,
    max_sub_layers_minus1: u32,
) -> Result<HevcProfileTierLevel, CodecError> {
    let profile_space = r.u8(2)?;
    let tier_flag = r.bit()?;
    let profile_idc = r.u8(5)?;
    let profile_compatibility_flags = r.bits(32)?;
    let constraint_high = u64::from(r.bits(16)?);
    let constraint_low = u64::from(r.bits(32)?);
    let level_idc = r.u8(8)?;
    let mut sub_layer_flags = [(false, false); 8];
    for flags in sub_layer_flags
        .iter_mut()
        .take(max_sub_layers_minus1 as usize)
    {
        *flags = (r.bit()?, r.bit()?);
    }
    if max_sub_layers_minus1 > 0 {
        r.skip(2 * (8 - max_sub_layers_minus1))?;
    }
    for &(profile_present, level_present) in
        sub_layer_flags.iter().take(max_sub_layers_minus1 as usize)
    {
        if profile_present {
            r.skip(88)?;
        }
        if level_present {
            r.skip(8)?;
        }
    }
    Ok(HevcProfileTierLevel {
        profile_space,
        tier_flag,
        profile_idc,
        profile_compatibility_flags,
        constraint_indicator_flags: (constraint_high << 32) | constraint_low,
        level_idc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `hvcC` box body ffmpeg wrote for a libx265 (`-preset ultrafast`) encode of
    /// `testsrc=size=1280x720:rate=25`, yuv420p: Main profile, level 3.1.
    pub(crate) const X265_720P_RECORD: &[u8] = &[
        0x01, 0x01, 0x60, 0x00, 0x00, 0x00, 0x90, 0x00, 0x00, 0x00, 0x00, 0x00, 0x5d, 0xf0, 0x00,
        0xfc, 0xfd, 0xf8, 0xf8, 0x00, 0x00, 0x0f, 0x03, 0xa0, 0x00, 0x01, 0x00, 0x18, 0x40, 0x01,
        0x0c, 0x01, 0xff, 0xff, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00,
        0x00, 0x03, 0x00, 0x5d, 0x95, 0x94, 0x09, 0xa1, 0x00, 0x01, 0x00, 0x2b, 0x42, 0x01, 0x01,
        0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x5d,
        0xa0, 0x02, 0x80, 0x80, 0x2d, 0x16, 0x59, 0x59, 0x52, 0x93, 0x0b, 0xc0, 0x5a, 0x02, 0x00,
        0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x32, 0x10, 0xa2, 0x00, 0x01, 0x00, 0x06,
        0x44, 0x01, 0xc0, 0x73, 0xc1, 0x89,
    ];

    /// The SPS libx265 wrote for `testsrc=size=1920x1080`: 1088 coded lines with a conformance
    /// window, level 4.
    const X265_1080P_SPS: &[u8] = &[
        0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00,
        0x03, 0x00, 0x78, 0xa0, 0x03, 0xc0, 0x80, 0x11, 0x07, 0xcb, 0x96, 0x56, 0x54, 0xa4, 0xc2,
        0xf0, 0x16, 0x80, 0x80, 0x00, 0x00, 0x03, 0x00, 0x80, 0x00, 0x00, 0x0c, 0x84,
    ];

    #[test]
    fn x265_720p_record_and_sps() {
        let config = HevcDecoderConfig::parse(X265_720P_RECORD).unwrap();
        assert_eq!(config.nalu_length_size, 4);
        assert_eq!(
            (config.vps.len(), config.sps.len(), config.pps.len()),
            (1, 1, 1)
        );
        assert_eq!(config.general.profile_idc, 1);
        assert_eq!(config.general.level_idc, 93);
        assert_eq!(config.codec_string(), "hvc1.1.6.L93.90");
        let sps = config.first_sps().unwrap();
        assert_eq!((sps.width, sps.height), (1280, 720));
        assert_eq!(sps.general, config.general);
        assert_eq!(sps.general.profile_name(), "Main");
        assert_eq!(sps.general.level_name(), "3.1");
        assert_eq!(sps.chroma_format_idc, 1);
        assert_eq!(sps.bit_depth_luma, 8);
    }

    #[test]
    fn x265_1080p_conformance_window() {
        let sps = HevcSps::parse(X265_1080P_SPS).unwrap();
        assert_eq!((sps.width, sps.height), (1920, 1080));
        assert_eq!(sps.general.level_name(), "4");
    }

    #[test]
    fn record_round_trip() {
        let config = HevcDecoderConfig::parse(X265_720P_RECORD).unwrap();
        let mut out = Vec::new();
        config.write(&mut out);
        assert_eq!(HevcDecoderConfig::parse(&out).unwrap(), config);
    }

    #[test]
    fn record_from_parameter_sets() {
        let parsed = HevcDecoderConfig::parse(X265_720P_RECORD).unwrap();
        let (vps, sps, pps): (&[u8], &[u8], &[u8]) =
            (&parsed.vps[0], &parsed.sps[0], &parsed.pps[0]);
        let built = HevcDecoderConfig::from_parameter_sets(&[vps], &[sps], &[pps]).unwrap();
        assert_eq!(built, parsed);
        let mut record = Vec::new();
        built.write(&mut record);
        assert_eq!(HevcDecoderConfig::parse(&record).unwrap(), parsed);
        assert_eq!(
            HevcDecoderConfig::from_parameter_sets(&[], &[sps], &[pps]),
            Err(CodecError::MissingParameterSet("VPS"))
        );
        assert_eq!(
            HevcDecoderConfig::from_parameter_sets(&[vps], &[], &[pps]),
            Err(CodecError::MissingParameterSet("SPS"))
        );
        assert_eq!(
            HevcDecoderConfig::from_parameter_sets(&[vps], &[sps], &[]),
            Err(CodecError::MissingParameterSet("PPS"))
        );
        assert!(matches!(
            HevcDecoderConfig::from_parameter_sets(&[sps], &[sps], &[pps]),
            Err(CodecError::WrongNalType { found: 33, .. })
        ));
        // The SPS must parse: the record's profile/tier/level come from it.
        assert!(HevcDecoderConfig::from_parameter_sets(&[vps], &[&sps[..10]], &[pps]).is_err());
    }

    #[test]
    fn truncations_fail_cleanly() {
        for cut in 0..X265_720P_RECORD.len() {
            assert!(
                HevcDecoderConfig::parse(&X265_720P_RECORD[..cut]).is_err(),
                "{cut}"
            );
        }
        for cut in 0..X265_1080P_SPS.len() {
            let _ = HevcSps::parse(&X265_1080P_SPS[..cut]);
        }
    }
}
