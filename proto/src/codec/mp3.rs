//! MPEG-1/2/2.5 audio (MP3 and its layers I/II): the 4-byte frame header (ISO/IEC 11172-3
//! §2.4.2.3, 13818-3 for the low sampling frequencies), read for the API and to choose the TS
//! stream type: 0x03 for MPEG-1, 0x04 for the MPEG-2 low-sampling-frequency extension (2 and 2.5).

use super::CodecError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MpegAudioVersion {
    Mpeg1,
    Mpeg2,
    /// The unofficial MPEG 2.5 extension for 8–12 kHz.
    Mpeg25,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MpegAudioLayer {
    Layer1,
    Layer2,
    Layer3,
}

/// A parsed MPEG audio frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MpegAudioHeader {
    pub version: MpegAudioVersion,
    pub layer: MpegAudioLayer,
    /// A 16-bit CRC follows the header.
    pub has_crc: bool,
    /// Bitrate in kbit/s; `None` for free format.
    pub bitrate_kbps: Option<u32>,
    pub sample_rate: u32,
    pub padding: bool,
    /// channel_mode: 0 stereo, 1 joint stereo, 2 dual channel, 3 mono.
    pub channel_mode: u8,
}

/// Bitrates in kbit/s by bitrate_index 1..=14, per (version class, layer).
const BITRATES_V1: [[u16; 14]; 3] = [
    [
        32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448,
    ],
    [
        32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384,
    ],
    [
        32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
    ],
];
const BITRATES_V2: [[u16; 14]; 2] = [
    [
        32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256,
    ],
    [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
];

impl MpegAudioHeader {
    /// Parses the header at the start of `data`.
    pub fn parse(data: &[u8]) -> Result<MpegAudioHeader, CodecError> {
        let bytes: [u8; 4] = data
            .get(..4)
            .and_then(|head| head.try_into().ok())
            .ok_or(CodecError::Truncated("MPEG audio frame header"))?;
        if bytes[0] != 0xff || bytes[1] & 0xe0 != 0xe0 {
            return Err(CodecError::NoMpegAudioSync);
        }
        let version = match (bytes[1] >> 3) & 0x03 {
            0 => MpegAudioVersion::Mpeg25,
            2 => MpegAudioVersion::Mpeg2,
            3 => MpegAudioVersion::Mpeg1,
            _ => return Err(CodecError::Reserved("MPEG audio version")),
        };
        let layer = match (bytes[1] >> 1) & 0x03 {
            1 => MpegAudioLayer::Layer3,
            2 => MpegAudioLayer::Layer2,
            3 => MpegAudioLayer::Layer1,
            _ => return Err(CodecError::Reserved("MPEG audio layer")),
        };
        let has_crc = bytes[1] & 0x01 == 0;
        let bitrate_index = usize::from(bytes[2] >> 4);
        let bitrate_kbps = match bitrate_index {
            0 => None,
            15 => return Err(CodecError::Reserved("MPEG audio bitrate_index")),
            index => {
                let table = match (version, layer) {
                    (MpegAudioVersion::Mpeg1, MpegAudioLayer::Layer1) => &BITRATES_V1[0],
                    (MpegAudioVersion::Mpeg1, MpegAudioLayer::Layer2) => &BITRATES_V1[1],
                    (MpegAudioVersion::Mpeg1, MpegAudioLayer::Layer3) => &BITRATES_V1[2],
                    (_, MpegAudioLayer::Layer1) => &BITRATES_V2[0],
                    _ => &BITRATES_V2[1],
                };
                Some(u32::from(table[index - 1]))
            }
        };
        let base_rate = match (bytes[2] >> 2) & 0x03 {
            0 => 44100,
            1 => 48000,
            2 => 32000,
            _ => return Err(CodecError::Reserved("MPEG audio sampling_frequency")),
        };
        let sample_rate = match version {
            MpegAudioVersion::Mpeg1 => base_rate,
            MpegAudioVersion::Mpeg2 => base_rate / 2,
            MpegAudioVersion::Mpeg25 => base_rate / 4,
        };
        Ok(MpegAudioHeader {
            version,
            layer,
            has_crc,
            bitrate_kbps,
            sample_rate,
            padding: bytes[2] & 0x02 != 0,
            channel_mode: bytes[3] >> 6,
        })
    }

    pub fn channels(&self) -> u8 {
        if self.channel_mode == 3 { 1 } else { 2 }
    }

    /// PCM samples per channel in one frame.
    pub fn samples_per_frame(&self) -> u32 {
        match (self.layer, self.version) {
            (MpegAudioLayer::Layer1, _) => 384,
            (MpegAudioLayer::Layer2, _) | (MpegAudioLayer::Layer3, MpegAudioVersion::Mpeg1) => 1152,
            (MpegAudioLayer::Layer3, _) => 576,
        }
    }

    /// Frame length in bytes, header included; `None` for free format.
    pub fn frame_len(&self) -> Option<usize> {
        let bitrate = u64::from(self.bitrate_kbps?) * 1000;
        let rate = u64::from(self.sample_rate);
        let padding = u64::from(self.padding);
        let len = match self.layer {
            MpegAudioLayer::Layer1 => (12 * bitrate / rate + padding) * 4,
            _ => u64::from(self.samples_per_frame()) / 8 * bitrate / rate + padding,
        };
        Some(len as usize)
    }

    /// MPEG-TS stream_type: 0x03 (ISO/IEC 11172-3) or 0x04 (ISO/IEC 13818-3).
    pub fn ts_stream_type(&self) -> u8 {
        match self.version {
            MpegAudioVersion::Mpeg1 => 0x03,
            _ => 0x04,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mpeg1_layer3_128k_44100_joint_stereo() {
        // What LAME writes for a 128 kbit/s 44.1 kHz joint-stereo frame.
        let header = MpegAudioHeader::parse(&[0xff, 0xfb, 0x90, 0x64]).unwrap();
        assert_eq!(header.version, MpegAudioVersion::Mpeg1);
        assert_eq!(header.layer, MpegAudioLayer::Layer3);
        assert!(!header.has_crc);
        assert_eq!(header.bitrate_kbps, Some(128));
        assert_eq!(header.sample_rate, 44100);
        assert_eq!(header.channel_mode, 1);
        assert_eq!(header.channels(), 2);
        assert_eq!(header.frame_len(), Some(417));
        assert_eq!(header.samples_per_frame(), 1152);
        assert_eq!(header.ts_stream_type(), 0x03);
    }

    #[test]
    fn mpeg2_layer3_mono_and_layer1() {
        // MPEG-2 layer III, 64 kbit/s, 22.05 kHz, padding, mono.
        let header = MpegAudioHeader::parse(&[0xff, 0xf3, 0x82, 0xc0]).unwrap();
        assert_eq!(header.version, MpegAudioVersion::Mpeg2);
        assert_eq!(header.bitrate_kbps, Some(64));
        assert_eq!(header.sample_rate, 22050);
        assert_eq!(header.channels(), 1);
        assert_eq!(header.samples_per_frame(), 576);
        assert_eq!(header.frame_len(), Some(72 * 64000 / 22050 + 1));
        assert_eq!(header.ts_stream_type(), 0x04);
        // MPEG-1 layer I, 384 kbit/s, 48 kHz.
        let header = MpegAudioHeader::parse(&[0xff, 0xff, 0xc4, 0x00]).unwrap();
        assert_eq!(header.layer, MpegAudioLayer::Layer1);
        assert_eq!(header.frame_len(), Some(384));
    }

    #[test]
    fn rejects_reserved_values() {
        assert_eq!(
            MpegAudioHeader::parse(&[0xff]),
            Err(CodecError::Truncated("MPEG audio frame header"))
        );
        assert_eq!(
            MpegAudioHeader::parse(&[0xff, 0x0b, 0x90, 0x64]),
            Err(CodecError::NoMpegAudioSync)
        );
        assert!(MpegAudioHeader::parse(&[0xff, 0xeb, 0x90, 0x64]).is_err()); // version 01
        assert!(MpegAudioHeader::parse(&[0xff, 0xf9, 0x90, 0x64]).is_err()); // layer 00
        assert!(MpegAudioHeader::parse(&[0xff, 0xfb, 0xf0, 0x64]).is_err()); // bitrate 15
        assert!(MpegAudioHeader::parse(&[0xff, 0xfb, 0x9c, 0x64]).is_err()); // rate 3
        let free = MpegAudioHeader::parse(&[0xff, 0xfb, 0x00, 0x64]).unwrap();
        assert_eq!(free.frame_len(), None);
    }
}
