//! AAC: the AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1) that an FLV/RTMP AAC sequence header
//! carries, and the 7-byte ADTS header (§1.A.2.2) that MPEG-TS stream type 0x0f needs in front
//! of every raw frame.
//!
//! The ADTS header depends only on the stream's configuration and the frame length, so the hub
//! builds an [`AdtsHeader`] once per sequence header and stamps each frame with
//! [`AdtsHeader::with_frame_len`] + [`AdtsHeader::encode`], a 7-byte array it can put in a
//! gather list beside the shared raw frame.

use super::CodecError;
use super::bits::BitReader;

/// ADTS header length without CRC (protection_absent = 1, as we always write it).
pub const ADTS_HEADER_LEN: usize = 7;
/// The largest frame_length the 13-bit field holds, header included.
const ADTS_MAX_FRAME_LEN: usize = 0x1fff;

/// Table 1.18: sampling frequencies by samplingFrequencyIndex (13 and 14 reserved).
const SAMPLING_FREQUENCIES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// samplingFrequencyIndex for a frequency in the table.
pub fn sampling_frequency_index(frequency: u32) -> Option<u8> {
    SAMPLING_FREQUENCIES
        .iter()
        .position(|&f| f == frequency)
        .map(|index| index as u8)
}

/// Object types (Table 1.17) that the HE-AAC signalling wraps around a core.
const AOT_SBR: u8 = 5;
const AOT_PS: u8 = 29;
/// syncExtensionType of the backward-compatible SBR signalling (§1.6.5.2).
const SYNC_EXTENSION_SBR: u32 = 0x2b7;

/// The decoder configuration of an AAC stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioSpecificConfig {
    /// audioObjectType of the core coder: 2 = AAC LC, 1 = Main, 3 = SSR, 4 = LTP, ...
    /// (for HE-AAC v1/v2 this is the core, usually 2, and [`sbr`](Self::sbr) is set).
    pub object_type: u8,
    /// samplingFrequencyIndex of the core, or 15 when the frequency was given explicitly.
    pub sampling_frequency_index: u8,
    /// Core sampling frequency in Hz.
    pub sampling_frequency: u32,
    /// channelConfiguration: 1..=6 as many channels, 7 = 7.1, 0 = defined in the payload.
    pub channel_configuration: u8,
    /// GASpecificConfig frameLengthFlag: 960-sample frames instead of 1024.
    pub frame_length_960: bool,
    /// Spectral band replication (HE-AAC), explicitly or backward-compatibly signalled.
    pub sbr: bool,
    /// Parametric stereo (HE-AAC v2).
    pub ps: bool,
    /// Output sampling frequency when SBR doubles it.
    pub extension_sampling_frequency: Option<u32>,
}

impl AudioSpecificConfig {
    /// Parses an AudioSpecificConfig (the FLV AAC sequence header after its 2-byte header).
    /// Program config elements and the extension payloads of other object types are not read.
    pub fn parse(data: &[u8]) -> Result<AudioSpecificConfig, CodecError> {
        let mut r = BitReader::new(data, "AudioSpecificConfig");
        let mut object_type = read_object_type(&mut r)?;
        let (mut sampling_frequency_index, mut sampling_frequency) = read_frequency(&mut r)?;
        let channel_configuration = r.u8(4)?;
        let mut sbr = false;
        let mut ps = false;
        let mut extension_sampling_frequency = None;
        if object_type == AOT_SBR || object_type == AOT_PS {
            // Explicit hierarchical signalling: the extension frequency, then the core.
            sbr = true;
            ps = object_type == AOT_PS;
            extension_sampling_frequency = Some(read_frequency(&mut r)?.1);
            object_type = read_object_type(&mut r)?;
        }
        let mut frame_length_960 = false;
        if matches!(object_type, 1..=4 | 6 | 7 | 17 | 19..=23) {
            frame_length_960 = r.bit()?;
        }
        // Backward-compatible signalling, as ffmpeg appends it (`56 e5 00`): skip the rest of
        // GASpecificConfig only when it is the common LC case we can walk past exactly.
        if object_type == 2 && channel_configuration != 0 && !sbr {
            let _depends_on_core_coder = r.bit()?;
            let _extension_flag = r.bit()?;
            if r.bits_remaining() >= 16 && r.bits(11)? == SYNC_EXTENSION_SBR {
                let extension_object_type = read_object_type(&mut r)?;
                if extension_object_type == AOT_SBR && r.bit()? {
                    sbr = true;
                    extension_sampling_frequency = Some(read_frequency(&mut r)?.1);
                }
            }
        }
        if sampling_frequency == 0 {
            return Err(CodecError::OutOfRange {
                what: "AAC sampling frequency",
                value: 0,
            });
        }
        // The explicit form may still name a table frequency; ADTS can then carry it.
        if sampling_frequency_index == 15 {
            if let Some(index) = self::sampling_frequency_index(sampling_frequency) {
                sampling_frequency_index = index;
            }
        } else {
            sampling_frequency = SAMPLING_FREQUENCIES[usize::from(sampling_frequency_index)];
        }
        Ok(AudioSpecificConfig {
            object_type,
            sampling_frequency_index,
            sampling_frequency,
            channel_configuration,
            frame_length_960,
            sbr,
            ps,
            extension_sampling_frequency,
        })
    }

    /// Channel count: channelConfiguration 7 is 7.1 (8 channels); 0 is unknown here.
    pub fn channels(&self) -> u8 {
        match self.channel_configuration {
            7 => 8,
            other => other,
        }
    }

    /// PCM samples per channel in one raw frame at the core rate.
    pub fn samples_per_frame(&self) -> u32 {
        if self.frame_length_960 { 960 } else { 1024 }
    }

    /// Writes the two-byte form `AAAAA FFFF CCCC 0 0 0` for a standard frequency (for tests
    /// and synthetic publishers). Object types above 30 and explicit frequencies are clipped to
    /// the 5- and 4-bit fields.
    pub fn to_bytes(&self) -> [u8; 2] {
        let object_type = self.object_type.min(30);
        let index = self.sampling_frequency_index.min(14);
        let bits: u16 = (u16::from(object_type) << 11)
            | (u16::from(index) << 7)
            | (u16::from(self.channel_configuration & 0x0f) << 3)
            | (u16::from(self.frame_length_960) << 2);
        bits.to_be_bytes()
    }

    /// Profile name for the API (`LC`, `HE`, `HEv2`, `Main`, ...), after SRS.
    pub fn profile_name(&self) -> &'static str {
        match (self.object_type, self.sbr, self.ps) {
            (_, true, true) => "HEv2",
            (_, true, false) => "HE",
            (1, ..) => "Main",
            (2, ..) => "LC",
            (3, ..) => "SSR",
            (4, ..) => "LTP",
            _ => "Other",
        }
    }
}

/// audioObjectType: 5 bits, escaped to 6 more when 31.
fn read_object_type(r: &mut BitReader<'_>) -> Result<u8, CodecError> {
    let object_type = r.u8(5)?;
    if object_type == 31 {
        Ok(32 + r.u8(6)?)
    } else {
        Ok(object_type)
    }
}

/// samplingFrequencyIndex, or index 15 and an explicit 24-bit frequency.
fn read_frequency(r: &mut BitReader<'_>) -> Result<(u8, u32), CodecError> {
    let index = r.u8(4)?;
    match index {
        15 => Ok((15, r.bits(24)?)),
        13 | 14 => Err(CodecError::Reserved("samplingFrequencyIndex")),
        _ => Ok((index, SAMPLING_FREQUENCIES[usize::from(index)])),
    }
}

/// The fields of an ADTS header that we write and read. The CRC form (protection_absent 0)
/// is read but never written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdtsHeader {
    /// The 2-bit profile: audioObjectType - 1.
    pub profile: u8,
    pub sampling_frequency_index: u8,
    pub channel_configuration: u8,
    /// frame_length: header (and CRC) plus raw data.
    pub frame_len: usize,
    /// The header is 9 bytes, with a CRC after it.
    pub has_crc: bool,
}

impl AdtsHeader {
    /// The header for a stream, with frame_len still 0. HE-AAC is signalled implicitly in
    /// ADTS: the core (LC) profile and the core frequency are written, as ffmpeg does.
    pub fn for_config(config: &AudioSpecificConfig) -> Result<AdtsHeader, CodecError> {
        if !(1..=4).contains(&config.object_type) {
            return Err(CodecError::AdtsObjectType(config.object_type));
        }
        if config.sampling_frequency_index > 12 {
            return Err(CodecError::AdtsFrequency(config.sampling_frequency));
        }
        Ok(AdtsHeader {
            profile: config.object_type - 1,
            sampling_frequency_index: config.sampling_frequency_index,
            channel_configuration: config.channel_configuration & 0x07,
            frame_len: ADTS_HEADER_LEN,
            has_crc: false,
        })
    }

    /// The same header for a raw frame of `raw_len` bytes.
    pub fn with_frame_len(mut self, raw_len: usize) -> Result<AdtsHeader, CodecError> {
        if raw_len > ADTS_MAX_FRAME_LEN - ADTS_HEADER_LEN {
            return Err(CodecError::AdtsFrameTooLong(raw_len));
        }
        self.frame_len = raw_len + ADTS_HEADER_LEN;
        self.has_crc = false;
        Ok(self)
    }

    /// The 7 header bytes (MPEG-4, no CRC, buffer fullness 0x7ff = variable rate, one raw data
    /// block), bit for bit what ffmpeg's ADTS muxer writes.
    pub fn encode(&self) -> [u8; ADTS_HEADER_LEN] {
        let len = self.frame_len.min(ADTS_MAX_FRAME_LEN) as u32;
        let channels = self.channel_configuration & 0x07;
        [
            0xff,
            0xf1, // sync, MPEG-4, layer 0, protection_absent
            ((self.profile & 0x03) << 6)
                | ((self.sampling_frequency_index & 0x0f) << 2)
                | (channels >> 2),
            ((channels & 0x03) << 6) | (len >> 11) as u8,
            (len >> 3) as u8,
            ((len & 0x07) << 5) as u8 | 0x1f, // buffer fullness high bits
            0xfc,                             // buffer fullness low bits, 1 raw data block
        ]
    }

    /// Reads a header (7 bytes, or 9 with CRC) from the start of `data`.
    pub fn parse(data: &[u8]) -> Result<AdtsHeader, CodecError> {
        let bytes: &[u8; ADTS_HEADER_LEN] = data
            .get(..ADTS_HEADER_LEN)
            .and_then(|head| head.try_into().ok())
            .ok_or(CodecError::Truncated("ADTS header"))?;
        if bytes[0] != 0xff || bytes[1] & 0xf6 != 0xf0 {
            // Sync word, and layer must be 0.
            return Err(CodecError::NoAdtsSync);
        }
        let has_crc = bytes[1] & 0x01 == 0;
        let sampling_frequency_index = (bytes[2] >> 2) & 0x0f;
        if sampling_frequency_index > 12 {
            return Err(CodecError::Reserved("ADTS sampling_frequency_index"));
        }
        let frame_len = (usize::from(bytes[3] & 0x03) << 11)
            | (usize::from(bytes[4]) << 3)
            | usize::from(bytes[5] >> 5);
        let header_len = if has_crc { 9 } else { ADTS_HEADER_LEN };
        if frame_len < header_len {
            return Err(CodecError::OutOfRange {
                what: "ADTS frame_length",
                value: frame_len as u64,
            });
        }
        Ok(AdtsHeader {
            profile: bytes[2] >> 6,
            sampling_frequency_index,
            channel_configuration: ((bytes[2] & 0x01) << 2) | (bytes[3] >> 6),
            frame_len,
            has_crc,
        })
    }

    /// Header length: 7, or 9 with CRC.
    pub fn header_len(&self) -> usize {
        if self.has_crc { 9 } else { ADTS_HEADER_LEN }
    }

    /// The AudioSpecificConfig this header implies (for an FLV sequence header from TS input).
    pub fn audio_specific_config(&self) -> AudioSpecificConfig {
        let index = self.sampling_frequency_index.min(12);
        AudioSpecificConfig {
            object_type: self.profile + 1,
            sampling_frequency_index: index,
            sampling_frequency: SAMPLING_FREQUENCIES[usize::from(index)],
            channel_configuration: self.channel_configuration,
            frame_length_960: false,
            sbr: false,
            ps: false,
            extension_sampling_frequency: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lc_44100_stereo() {
        let config = AudioSpecificConfig::parse(&[0x12, 0x10]).unwrap();
        assert_eq!(config.object_type, 2);
        assert_eq!(config.sampling_frequency_index, 4);
        assert_eq!(config.sampling_frequency, 44100);
        assert_eq!(config.channels(), 2);
        assert!(!config.sbr && !config.frame_length_960);
        assert_eq!(config.profile_name(), "LC");
        assert_eq!(config.to_bytes(), [0x12, 0x10]);
    }

    #[test]
    fn ffmpeg_backward_compatible_sbr_signalling() {
        // ffmpeg's native AAC encoder writes `12 10 56 e5 00`: LC, then sync extension 0x2b7,
        // SBR object type, sbrPresentFlag 0.
        let config = AudioSpecificConfig::parse(&[0x12, 0x10, 0x56, 0xe5, 0x00]).unwrap();
        assert_eq!(config.object_type, 2);
        assert!(!config.sbr);
        // The same with sbrPresentFlag 1 and extension frequency index 3 (48 kHz).
        let config = AudioSpecificConfig::parse(&[0x13, 0x10, 0x56, 0xe5, 0x98]).unwrap();
        assert_eq!(config.sampling_frequency, 24000);
        assert!(config.sbr);
        assert_eq!(config.extension_sampling_frequency, Some(48000));
        assert_eq!(config.profile_name(), "HE");
    }

    #[test]
    fn explicit_he_aac_v2_and_explicit_frequency() {
        // AOT 29 (PS), 24 kHz core, stereo, extension 48 kHz, core AOT 2.
        // 11101 0110 0010 0011 00010 0 -> e b 1 1 8 8 0 (padded)
        let config = AudioSpecificConfig::parse(&[0xeb, 0x11, 0x88, 0x00]).unwrap();
        assert_eq!(config.object_type, 2);
        assert!(config.sbr && config.ps);
        assert_eq!(config.sampling_frequency, 24000);
        assert_eq!(config.extension_sampling_frequency, Some(48000));
        assert_eq!(config.profile_name(), "HEv2");
        // AOT 2, index 15, explicit 44100 (0x00ac44), mono.
        // 00010 1111 0000 0000 1010 1100 0100 0100 0001 0 000
        let config = AudioSpecificConfig::parse(&[0x17, 0x80, 0x56, 0x22, 0x08, 0x00]).unwrap();
        assert_eq!(config.sampling_frequency, 44100);
        assert_eq!(config.sampling_frequency_index, 4);
        assert_eq!(config.channels(), 1);
        // Reserved frequency index.
        assert!(AudioSpecificConfig::parse(&[0x16, 0x90]).is_err());
        assert!(AudioSpecificConfig::parse(&[0x12]).is_err());
    }

    #[test]
    fn adts_matches_ffmpeg() {
        // The first frame header of `ffmpeg -i in.flv -c copy -f adts`: 44.1 kHz LC stereo,
        // frame_length 0x159 (345 bytes).
        let config = AudioSpecificConfig::parse(&[0x12, 0x10]).unwrap();
        let header = AdtsHeader::for_config(&config)
            .unwrap()
            .with_frame_len(345 - 7)
            .unwrap();
        assert_eq!(header.encode(), [0xff, 0xf1, 0x50, 0x80, 0x2b, 0x3f, 0xfc]);
        let parsed = AdtsHeader::parse(&header.encode()).unwrap();
        assert_eq!(parsed, header);
        assert_eq!(parsed.audio_specific_config().to_bytes(), [0x12, 0x10]);
    }

    #[test]
    fn adts_limits() {
        let config = AudioSpecificConfig::parse(&[0x12, 0x10]).unwrap();
        let header = AdtsHeader::for_config(&config).unwrap();
        assert!(header.with_frame_len(8184).is_ok());
        assert_eq!(
            header.with_frame_len(8185),
            Err(CodecError::AdtsFrameTooLong(8185))
        );
        let mut config = config;
        config.object_type = 42;
        assert_eq!(
            AdtsHeader::for_config(&config),
            Err(CodecError::AdtsObjectType(42))
        );
        assert_eq!(
            AdtsHeader::parse(&[0xff, 0xf1]),
            Err(CodecError::Truncated("ADTS header"))
        );
        assert_eq!(
            AdtsHeader::parse(&[0xff, 0xe1, 0, 0, 0, 0, 0]),
            Err(CodecError::NoAdtsSync)
        );
    }
}
