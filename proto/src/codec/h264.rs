//! H.264/AVC: the AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3) that an FLV/RTMP
//! sequence header carries, and the sequence parameter set (ITU-T H.264 §7.3.2.1.1) read as far
//! as the VUI timing info — enough for the API (profile, level, size, frame rate) and for HLS
//! `CODECS` strings.
//!
//! NAL unit types used elsewhere are the `NAL_*` constants here.

use bytes::Bytes;

use super::bits::BitReader;
use super::{CodecError, MAX_PARAMETER_SETS};

/// nal_unit_type of a coded slice of an IDR picture.
pub const NAL_IDR: u8 = 5;
/// nal_unit_type of supplemental enhancement information.
pub const NAL_SEI: u8 = 6;
/// nal_unit_type of a sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// nal_unit_type of a picture parameter set.
pub const NAL_PPS: u8 = 8;
/// nal_unit_type of an access unit delimiter.
pub const NAL_AUD: u8 = 9;

/// nal_unit_type: the low five bits of the first byte.
pub fn nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|header| header & 0x1f)
}

/// Whether a NAL unit is a coded slice of a B picture (`slice_type` 1 or 6): what WebRTC
/// players cannot take, so a bridge drops such frames as SRS does. `None` when the NAL unit is
/// not a slice or its header does not parse.
pub fn is_b_slice(nal: &[u8]) -> Option<bool> {
    if !matches!(nal_type(nal)?, 1 | NAL_IDR) {
        return None;
    }
    let mut bits = super::bits::BitReader::new_rbsp(nal.get(1..)?, "slice header");
    let _first_mb_in_slice = bits.ue().ok()?;
    let slice_type = bits.ue().ok()?;
    Some(slice_type % 5 == 1)
}

/// The AVCDecoderConfigurationRecord: decoder setup for everything that follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcDecoderConfig {
    /// AVCProfileIndication (the SPS profile_idc).
    pub profile_indication: u8,
    /// profile_compatibility (the SPS constraint_set flags byte).
    pub profile_compatibility: u8,
    /// AVCLevelIndication (the SPS level_idc).
    pub level_indication: u8,
    /// Bytes in each NAL unit's length prefix in the access units that follow: 1, 2 or 4.
    pub nalu_length_size: u8,
    /// Sequence parameter sets, NAL header byte included.
    pub sps: Vec<Bytes>,
    /// Picture parameter sets, NAL header byte included.
    pub pps: Vec<Bytes>,
}

impl AvcDecoderConfig {
    /// Parses a record (the FLV video body after its 5-byte header). The High-profile extension
    /// (chroma format, bit depths, SPS extensions) and anything after it are not needed to
    /// remux and are ignored.
    pub fn parse(record: &[u8]) -> Result<AvcDecoderConfig, CodecError> {
        const WHAT: &str = "AVCDecoderConfigurationRecord";
        let mut reader = ByteReader::new(record, WHAT);
        let version = reader.u8()?;
        if version != 1 {
            return Err(CodecError::UnsupportedVersion {
                what: WHAT,
                version,
            });
        }
        let profile_indication = reader.u8()?;
        let profile_compatibility = reader.u8()?;
        let level_indication = reader.u8()?;
        let nalu_length_size = (reader.u8()? & 0x03) + 1;
        if nalu_length_size == 3 {
            return Err(CodecError::BadNaluLengthSize(3));
        }
        let sps_count = usize::from(reader.u8()? & 0x1f);
        let sps = reader.parameter_sets(sps_count)?;
        let pps_count = usize::from(reader.u8()?);
        let pps = reader.parameter_sets(pps_count)?;
        Ok(AvcDecoderConfig {
            profile_indication,
            profile_compatibility,
            level_indication,
            nalu_length_size,
            sps,
            pps,
        })
    }

    /// Builds the record a publisher would send for these parameter sets (NAL header byte
    /// included, no start codes), with 4-byte NAL unit lengths: how a sequence header is made
    /// from the in-band SPS/PPS of an Annex B stream (MPEG-TS, SRT). Profile, compatibility and
    /// level are the first SPS's `profile_idc`, constraint flags and `level_idc`, read directly
    /// as ffmpeg's `avcC` writer does, so an SPS whose later fields we cannot parse still works.
    pub fn from_parameter_sets(
        sps: &[&[u8]],
        pps: &[&[u8]],
    ) -> Result<AvcDecoderConfig, CodecError> {
        let sps = parameter_set_list(sps, NAL_SPS, "SPS", MAX_RECORD_SPS)?;
        let pps = parameter_set_list(pps, NAL_PPS, "PPS", MAX_PARAMETER_SETS)?;
        let first = sps.first().ok_or(CodecError::MissingParameterSet("SPS"))?;
        if pps.is_empty() {
            return Err(CodecError::MissingParameterSet("PPS"));
        }
        let mut r = BitReader::new_rbsp(&first[1..], "SPS");
        let profile_indication = r.u8(8)?;
        let profile_compatibility = r.u8(8)?;
        let level_indication = r.u8(8)?;
        Ok(AvcDecoderConfig {
            profile_indication,
            profile_compatibility,
            level_indication,
            nalu_length_size: 4,
            sps,
            pps,
        })
    }

    /// Serialises the record (without the High-profile extension), as a publisher would send it.
    /// Lists longer than the record's count fields can express are cut at 31 SPS / 255 PPS.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[
            1,
            self.profile_indication,
            self.profile_compatibility,
            self.level_indication,
            0xfc | (self.nalu_length_size.clamp(1, 4) - 1),
        ]);
        let sps = &self.sps[..self.sps.len().min(31)];
        out.push(0xe0 | sps.len() as u8);
        write_parameter_sets(sps, out);
        let pps = &self.pps[..self.pps.len().min(255)];
        out.push(pps.len() as u8);
        write_parameter_sets(pps, out);
    }

    /// Parses the first SPS.
    pub fn first_sps(&self) -> Result<H264Sps, CodecError> {
        H264Sps::parse(
            self.sps
                .first()
                .ok_or(CodecError::MissingParameterSet("SPS"))?,
        )
    }

    /// The RFC 6381 codec string for HLS playlists and MIME types, e.g. `avc1.64001f`.
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile_indication, self.profile_compatibility, self.level_indication
        )
    }
}

/// The record's 5-bit numOfSequenceParameterSets holds at most 31.
const MAX_RECORD_SPS: usize = 31;

/// Checks and copies parameter sets for a record: each has the expected NAL type and fits the
/// record's 16-bit length, and there are at most `limit` of them.
fn parameter_set_list(
    sets: &[&[u8]],
    expected_type: u8,
    what: &'static str,
    limit: usize,
) -> Result<Vec<Bytes>, CodecError> {
    parameter_set_list_with(sets, expected_type, what, limit, nal_type)
}

/// [`parameter_set_list`] with the codec's NAL type reader.
pub(crate) fn parameter_set_list_with(
    sets: &[&[u8]],
    expected_type: u8,
    what: &'static str,
    limit: usize,
    nal_type: fn(&[u8]) -> Option<u8>,
) -> Result<Vec<Bytes>, CodecError> {
    if sets.len() > limit {
        return Err(CodecError::TooManyParameterSets { limit });
    }
    sets.iter()
        .map(|set| {
            let found = nal_type(set).ok_or(CodecError::Truncated(what))?;
            if found != expected_type {
                return Err(CodecError::WrongNalType {
                    expected: what,
                    found,
                });
            }
            if set.len() > usize::from(u16::MAX) {
                return Err(CodecError::OutOfRange {
                    what: "parameter set length",
                    value: set.len() as u64,
                });
            }
            Ok(Bytes::copy_from_slice(set))
        })
        .collect()
}

fn write_parameter_sets(sets: &[Bytes], out: &mut Vec<u8>) {
    for set in sets {
        // A parameter set never approaches 64 KiB; clip rather than write a lying length.
        let set = &set[..set.len().min(usize::from(u16::MAX))];
        out.extend_from_slice(&(set.len() as u16).to_be_bytes());
        out.extend_from_slice(set);
    }
}

/// Sequential big-endian reads over a decoder configuration record.
pub(crate) struct ByteReader<'a> {
    data: &'a [u8],
    what: &'static str,
}

impl<'a> ByteReader<'a> {
    pub(crate) fn new(data: &'a [u8], what: &'static str) -> Self {
        ByteReader { data, what }
    }

    pub(crate) fn take(&mut self, count: usize) -> Result<&'a [u8], CodecError> {
        if count > self.data.len() {
            return Err(CodecError::Truncated(self.what));
        }
        let (head, rest) = self.data.split_at(count);
        self.data = rest;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, CodecError> {
        let bytes = self.take(2)?;
        Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    /// `count` entries of u16 length + bytes.
    pub(crate) fn parameter_sets(&mut self, count: usize) -> Result<Vec<Bytes>, CodecError> {
        if count > MAX_PARAMETER_SETS {
            return Err(CodecError::TooManyParameterSets {
                limit: MAX_PARAMETER_SETS,
            });
        }
        let mut sets = Vec::with_capacity(count);
        for _ in 0..count {
            let length = usize::from(self.u16()?);
            sets.push(Bytes::copy_from_slice(self.take(length)?));
        }
        Ok(sets)
    }
}

/// Frame timing from the VUI: `time_scale / (2 * num_units_in_tick)` frames per second for
/// progressive video as x264, ffmpeg and hardware encoders write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VuiTiming {
    pub num_units_in_tick: u32,
    pub time_scale: u32,
    pub fixed_frame_rate: bool,
}

impl VuiTiming {
    /// Frames per second, when the VUI says (ticks are fields, two per frame).
    pub fn frame_rate(&self) -> Option<f64> {
        (self.num_units_in_tick != 0)
            .then(|| f64::from(self.time_scale) / (2.0 * f64::from(self.num_units_in_tick)))
    }
}

/// What a media server wants from an H.264 sequence parameter set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H264Sps {
    pub profile_idc: u8,
    /// constraint_set0..5 flags and the two reserved bits, as one byte.
    pub constraint_flags: u8,
    pub level_idc: u8,
    pub seq_parameter_set_id: u32,
    /// 0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4.
    pub chroma_format_idc: u8,
    pub bit_depth_luma: u8,
    pub bit_depth_chroma: u8,
    /// Displayed size: coded size minus the cropping window.
    pub width: u32,
    pub height: u32,
    pub frame_mbs_only: bool,
    pub max_num_ref_frames: u32,
    /// Sample aspect ratio from the VUI (`aspect_ratio_idc` resolved through Table E-1).
    pub sample_aspect_ratio: Option<(u16, u16)>,
    pub timing: Option<VuiTiming>,
}

/// Profiles whose SPS carries chroma format, bit depth and scaling matrices (§7.3.2.1.1).
fn has_high_profile_fields(profile_idc: u8) -> bool {
    matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    )
}

/// Widest picture we accept, in macroblocks (65536 pixels): far past any level's limit, small
/// enough that no size arithmetic can overflow.
const MAX_DIMENSION_IN_MBS: u32 = 4096;

impl H264Sps {
    /// Parses an SPS NAL unit, header byte included (as stored in the configuration record).
    pub fn parse(nal: &[u8]) -> Result<H264Sps, CodecError> {
        let header = *nal.first().ok_or(CodecError::Truncated("SPS"))?;
        if header & 0x1f != NAL_SPS {
            return Err(CodecError::WrongNalType {
                expected: "SPS",
                found: header & 0x1f,
            });
        }
        let mut r = BitReader::new_rbsp(&nal[1..], "SPS");
        let profile_idc = r.u8(8)?;
        let constraint_flags = r.u8(8)?;
        let level_idc = r.u8(8)?;
        let seq_parameter_set_id = r.ue_max(31, "seq_parameter_set_id")?;

        let mut chroma_format_idc = 1;
        let mut separate_colour_plane = false;
        let mut bit_depth_luma = 8;
        let mut bit_depth_chroma = 8;
        if has_high_profile_fields(profile_idc) {
            chroma_format_idc = r.ue_max(3, "chroma_format_idc")? as u8;
            if chroma_format_idc == 3 {
                separate_colour_plane = r.bit()?;
            }
            bit_depth_luma = 8 + r.ue_max(6, "bit_depth_luma_minus8")? as u8;
            bit_depth_chroma = 8 + r.ue_max(6, "bit_depth_chroma_minus8")? as u8;
            let _qpprime_y_zero_transform_bypass = r.bit()?;
            if r.bit()? {
                // seq_scaling_matrix_present_flag: skip the lists, we only need what follows.
                let lists = if chroma_format_idc == 3 { 12 } else { 8 };
                for index in 0..lists {
                    if r.bit()? {
                        skip_scaling_list(&mut r, if index < 6 { 16 } else { 64 })?;
                    }
                }
            }
        }

        let _log2_max_frame_num_minus4 = r.ue_max(12, "log2_max_frame_num_minus4")?;
        match r.ue_max(2, "pic_order_cnt_type")? {
            0 => {
                r.ue_max(12, "log2_max_pic_order_cnt_lsb_minus4")?;
            }
            1 => {
                let _delta_pic_order_always_zero = r.bit()?;
                r.se()?; // offset_for_non_ref_pic
                r.se()?; // offset_for_top_to_bottom_field
                let cycle = r.ue_max(255, "num_ref_frames_in_pic_order_cnt_cycle")?;
                for _ in 0..cycle {
                    r.se()?;
                }
            }
            _ => {}
        }
        let max_num_ref_frames = r.ue_max(16, "max_num_ref_frames")?;
        let _gaps_in_frame_num_allowed = r.bit()?;
        let width_in_mbs = r.ue_max(MAX_DIMENSION_IN_MBS - 1, "pic_width_in_mbs_minus1")? + 1;
        let height_in_map_units =
            r.ue_max(MAX_DIMENSION_IN_MBS - 1, "pic_height_in_map_units_minus1")? + 1;
        let frame_mbs_only = r.bit()?;
        if !frame_mbs_only {
            let _mb_adaptive_frame_field = r.bit()?;
        }
        let _direct_8x8_inference = r.bit()?;

        let coded_width = width_in_mbs * 16;
        let coded_height = height_in_map_units * 16 * if frame_mbs_only { 1 } else { 2 };
        let (mut width, mut height) = (coded_width, coded_height);
        if r.bit()? {
            // frame_cropping_flag: offsets are in chroma sample units (Table 6-1, eq. 7-19..7-22).
            let chroma_array_type = if separate_colour_plane {
                0
            } else {
                chroma_format_idc
            };
            let (sub_width, sub_height) = match chroma_array_type {
                0 => (1, 1),
                1 => (2, 2),
                2 => (2, 1),
                _ => (1, 1),
            };
            let unit_x = sub_width;
            let unit_y = sub_height * if frame_mbs_only { 1 } else { 2 };
            let left = r.ue()?;
            let right = r.ue()?;
            let top = r.ue()?;
            let bottom = r.ue()?;
            let crop_x = (u64::from(left) + u64::from(right)) * unit_x;
            let crop_y = (u64::from(top) + u64::from(bottom)) * unit_y;
            if crop_x >= u64::from(coded_width) || crop_y >= u64::from(coded_height) {
                return Err(CodecError::OutOfRange {
                    what: "frame cropping",
                    value: crop_x.max(crop_y),
                });
            }
            width = coded_width - crop_x as u32;
            height = coded_height - crop_y as u32;
        }

        let mut sample_aspect_ratio = None;
        let mut timing = None;
        if r.bit()? {
            // vui_parameters_present_flag: read up to the timing info (Annex E.1.1).
            if r.bit()? {
                let aspect_ratio_idc = r.u8(8)?;
                sample_aspect_ratio = if aspect_ratio_idc == 255 {
                    Some((r.bits(16)? as u16, r.bits(16)? as u16))
                } else {
                    sample_aspect_ratio_from_idc(aspect_ratio_idc)
                };
            }
            if r.bit()? {
                let _overscan_appropriate = r.bit()?;
            }
            if r.bit()? {
                r.skip(3 + 1)?; // video_format, video_full_range_flag
                if r.bit()? {
                    r.skip(24)?; // colour_primaries, transfer_characteristics, matrix_coefficients
                }
            }
            if r.bit()? {
                r.ue()?; // chroma_sample_loc_type_top_field
                r.ue()?; // chroma_sample_loc_type_bottom_field
            }
            if r.bit()? {
                timing = Some(VuiTiming {
                    num_units_in_tick: r.bits(32)?,
                    time_scale: r.bits(32)?,
                    fixed_frame_rate: r.bit()?,
                });
            }
        }

        Ok(H264Sps {
            profile_idc,
            constraint_flags,
            level_idc,
            seq_parameter_set_id,
            chroma_format_idc,
            bit_depth_luma,
            bit_depth_chroma,
            width,
            height,
            frame_mbs_only,
            max_num_ref_frames,
            sample_aspect_ratio,
            timing,
        })
    }

    /// Profile name as SRS's API spells it (`Baseline`, `Main`, `High`, ...).
    pub fn profile_name(&self) -> &'static str {
        // By profile_idc alone, as SRS's API reports it (constrained baseline is "Baseline").
        match self.profile_idc {
            66 => "Baseline",
            77 => "Main",
            88 => "Extended",
            100 => "High",
            110 => "High10",
            122 => "High422",
            144 => "High444",
            244 => "High444Predictive",
            44 => "CAVLC444",
            _ => "Other",
        }
    }

    /// Level as written in the API and by players: `3.1`, `4`, `1b`, ...
    pub fn level_name(&self) -> &'static str {
        level_name(self.level_idc, self.constraint_flags)
    }
}

/// Maps level_idc (with the constraint_set3 flag that turns 11 into 1b for Baseline/Main) to
/// its name.
pub fn level_name(level_idc: u8, constraint_flags: u8) -> &'static str {
    match level_idc {
        9 => "1b",
        10 => "1",
        11 if constraint_flags & 0x10 != 0 => "1b",
        11 => "1.1",
        12 => "1.2",
        13 => "1.3",
        20 => "2",
        21 => "2.1",
        22 => "2.2",
        30 => "3",
        31 => "3.1",
        32 => "3.2",
        40 => "4",
        41 => "4.1",
        42 => "4.2",
        50 => "5",
        51 => "5.1",
        52 => "5.2",
        60 => "6",
        61 => "6.1",
        62 => "6.2",
        _ => "Other",
    }
}

/// §7.3.2.1.1.1 scaling_list(): reads and discards the deltas.
fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Result<(), CodecError> {
    let mut last_scale: i64 = 8;
    let mut next_scale: i64 = 8;
    for _ in 0..size {
        if next_scale != 0 {
            let delta = r.se()?;
            next_scale = (last_scale + delta).rem_euclid(256);
        }
        if next_scale != 0 {
            last_scale = next_scale;
        }
    }
    Ok(())
}

/// Table E-1: the predefined sample aspect ratios.
fn sample_aspect_ratio_from_idc(idc: u8) -> Option<(u16, u16)> {
    const TABLE: [(u16, u16); 17] = [
        (0, 0),
        (1, 1),
        (12, 11),
        (10, 11),
        (16, 11),
        (40, 33),
        (24, 11),
        (20, 11),
        (32, 11),
        (80, 33),
        (18, 11),
        (15, 11),
        (64, 33),
        (160, 99),
        (4, 3),
        (3, 2),
        (2, 1),
    ];
    TABLE
        .get(usize::from(idc))
        .copied()
        .filter(|&(w, h)| w != 0 && h != 0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn b_slices_are_recognised() {
        // nal header 0x01 (non-IDR, nal_ref_idc 0); first_mb 0 = "1", slice_type 1 (B) = "010".
        assert_eq!(super::is_b_slice(&[0x01, 0b1010_0000]), Some(true));
        // slice_type 0 (P) = "1".
        assert_eq!(super::is_b_slice(&[0x41, 0b1100_0000]), Some(false));
        // slice_type 6 (B, all slices) = "00111".
        assert_eq!(super::is_b_slice(&[0x01, 0b1001_1100]), Some(true));
        assert_eq!(super::is_b_slice(&[0x67, 0x42]), None);
        assert_eq!(super::is_b_slice(&[0x01]), None);
    }

    use super::*;

    /// The sequence header ffmpeg's FLV muxer wrote for a libx264 (`-preset veryfast`) encode of
    /// `testsrc=size=1280x720:rate=25`, yuv420p: High profile, level 3.1.
    pub(crate) const X264_720P_RECORD: &[u8] = &[
        0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x1a, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40,
        0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20,
        0xf1, 0x83, 0x19, 0x60, 0x01, 0x00, 0x04, 0x68, 0xef, 0x8f, 0xcb, 0xfd, 0xf8, 0xf8, 0x00,
    ];

    /// The SPS libx264 wrote for `testsrc=size=1920x1080:rate=30`: 1088 coded lines, cropped to
    /// 1080, level 4.0.
    const X264_1080P_SPS: &[u8] = &[
        0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78, 0x02, 0x27, 0xe5, 0xc0, 0x44, 0x00, 0x00,
        0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x60, 0xc6, 0x58,
    ];

    #[test]
    fn x264_720p_record_and_sps() {
        let config = AvcDecoderConfig::parse(X264_720P_RECORD).unwrap();
        assert_eq!(config.profile_indication, 100);
        assert_eq!(config.level_indication, 31);
        assert_eq!(config.nalu_length_size, 4);
        assert_eq!(config.sps.len(), 1);
        assert_eq!(config.pps.len(), 1);
        assert_eq!(&config.pps[0][..], &[0x68, 0xef, 0x8f, 0xcb]);
        assert_eq!(config.codec_string(), "avc1.64001f");
        let sps = config.first_sps().unwrap();
        assert_eq!((sps.width, sps.height), (1280, 720));
        assert_eq!(sps.profile_name(), "High");
        assert_eq!(sps.level_name(), "3.1");
        assert_eq!(sps.chroma_format_idc, 1);
        assert_eq!(sps.bit_depth_luma, 8);
        assert!(sps.frame_mbs_only);
        assert_eq!(sps.sample_aspect_ratio, Some((1, 1)));
        assert_eq!(sps.timing.unwrap().frame_rate(), Some(25.0));
    }

    #[test]
    fn x264_1080p_cropping() {
        let sps = H264Sps::parse(X264_1080P_SPS).unwrap();
        assert_eq!((sps.width, sps.height), (1920, 1080));
        assert_eq!(sps.level_name(), "4");
        assert_eq!(sps.timing.unwrap().frame_rate(), Some(30.0));
    }

    #[test]
    fn record_round_trip() {
        let config = AvcDecoderConfig::parse(X264_720P_RECORD).unwrap();
        let mut out = Vec::new();
        config.write(&mut out);
        assert_eq!(AvcDecoderConfig::parse(&out).unwrap(), config);
        assert_eq!(&out[..], &X264_720P_RECORD[..X264_720P_RECORD.len() - 4]);
    }

    #[test]
    fn record_from_parameter_sets() {
        let parsed = AvcDecoderConfig::parse(X264_720P_RECORD).unwrap();
        let built =
            AvcDecoderConfig::from_parameter_sets(&[&parsed.sps[0]], &[&parsed.pps[0]]).unwrap();
        assert_eq!(built, parsed);
        let sps: &[u8] = &parsed.sps[0];
        let pps: &[u8] = &parsed.pps[0];
        assert_eq!(
            AvcDecoderConfig::from_parameter_sets(&[], &[pps]),
            Err(CodecError::MissingParameterSet("SPS"))
        );
        assert_eq!(
            AvcDecoderConfig::from_parameter_sets(&[sps], &[]),
            Err(CodecError::MissingParameterSet("PPS"))
        );
        assert!(matches!(
            AvcDecoderConfig::from_parameter_sets(&[pps], &[pps]),
            Err(CodecError::WrongNalType { found: 8, .. })
        ));
        assert_eq!(
            AvcDecoderConfig::from_parameter_sets(&[&sps[..2]], &[pps]),
            Err(CodecError::Truncated("SPS"))
        );
        assert!(matches!(
            AvcDecoderConfig::from_parameter_sets(&[sps; 32], &[pps]),
            Err(CodecError::TooManyParameterSets { limit: 31 })
        ));
        let huge = vec![0x67; 70_000];
        assert!(matches!(
            AvcDecoderConfig::from_parameter_sets(&[&huge], &[pps]),
            Err(CodecError::OutOfRange { .. })
        ));
    }

    #[test]
    fn malformed_records() {
        assert_eq!(
            AvcDecoderConfig::parse(&[]),
            Err(CodecError::Truncated("AVCDecoderConfigurationRecord"))
        );
        assert!(matches!(
            AvcDecoderConfig::parse(&[0, 0x64, 0, 0x1f, 0xff, 0xe0, 0]),
            Err(CodecError::UnsupportedVersion { version: 0, .. })
        ));
        assert_eq!(
            AvcDecoderConfig::parse(&[1, 0x64, 0, 0x1f, 0xfe, 0xe0, 0]),
            Err(CodecError::BadNaluLengthSize(3))
        );
        // An SPS length past the end.
        assert!(
            AvcDecoderConfig::parse(&[1, 0x64, 0, 0x1f, 0xff, 0xe1, 0xff, 0xff, 0x67]).is_err()
        );
        // Every truncation of a real record fails cleanly (only the tail extension is optional).
        for cut in 0..X264_720P_RECORD.len() - 4 {
            assert!(
                AvcDecoderConfig::parse(&X264_720P_RECORD[..cut]).is_err(),
                "{cut}"
            );
        }
        for cut in 0..X264_1080P_SPS.len() {
            let _ = H264Sps::parse(&X264_1080P_SPS[..cut]);
        }
        assert!(matches!(
            H264Sps::parse(&[0x68, 0x64]),
            Err(CodecError::WrongNalType { found: 8, .. })
        ));
    }
}
