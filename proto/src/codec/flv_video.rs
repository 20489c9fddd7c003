//! Annex B access units in, FLV video bodies out: what an ingest that receives start-code
//! video (MPEG-TS over SRT, RTP over WebRTC) needs to hand the hub the bodies an RTMP
//! publisher would have sent.
//!
//! [`FlvVideoPacker`] takes one access unit at a time. Access unit delimiters and filler are
//! dropped; parameter sets are taken out and become a sequence header, emitted before the
//! frame whenever they first appear or change; the remaining NAL units become one frame with
//! 4-byte length prefixes. H.264 uses the legacy FLV form (codec id 7), as SRS does; H.265 uses
//! Enhanced RTMP (`hvc1` FourCC, `SequenceStart` / `CodedFrames` with a composition time).
//! Frames before the first sequence header are dropped (a player could not decode them) and
//! reported as such. At most [`MAX_PARAMETER_SETS_PER_KIND`] parameter sets of each kind are
//! kept, each at most 64 KiB.

use bytes::{BufMut, Bytes, BytesMut};

use super::annexb::annexb_nalus;
use super::{AvcDecoderConfig, CodecError, HevcDecoderConfig, h264, h265};

/// Most parameter sets of one kind (VPS, SPS or PPS) kept for a sequence header. Encoders send
/// one of each; a few streams switch between two or three PPS.
pub const MAX_PARAMETER_SETS_PER_KIND: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodecKind {
    H264,
    H265,
}

/// What an access unit's NAL unit is to the packer.
enum NalRole {
    /// Access unit delimiter, filler, or too short to have a header.
    Drop,
    /// Index 0 VPS, 1 SPS, 2 PPS.
    ParameterSet(usize),
    /// A coded slice.
    Picture { random_access: bool },
    /// SEI and the rest: kept in the frame.
    Other,
}

/// H.264 nal_unit_type of filler data.
const H264_NAL_FILLER: u8 = 12;
/// H.265 nal_unit_type of filler data.
const H265_NAL_FD: u8 = 38;

impl VideoCodecKind {
    fn classify(self, nal: &[u8]) -> NalRole {
        match self {
            VideoCodecKind::H264 => match h264::nal_type(nal) {
                None => NalRole::Drop,
                Some(h264::NAL_AUD | H264_NAL_FILLER) => NalRole::Drop,
                Some(h264::NAL_SPS) => NalRole::ParameterSet(1),
                Some(h264::NAL_PPS) => NalRole::ParameterSet(2),
                Some(kind @ 1..=5) => NalRole::Picture {
                    random_access: kind == h264::NAL_IDR,
                },
                Some(_) => NalRole::Other,
            },
            VideoCodecKind::H265 => match h265::nal_type(nal) {
                _ if nal.len() < 2 => NalRole::Drop,
                None | Some(h265::NAL_AUD | H265_NAL_FD) => NalRole::Drop,
                Some(h265::NAL_VPS) => NalRole::ParameterSet(0),
                Some(h265::NAL_SPS) => NalRole::ParameterSet(1),
                Some(h265::NAL_PPS) => NalRole::ParameterSet(2),
                Some(kind @ 0..=31) => NalRole::Picture {
                    random_access: h265::is_irap(kind),
                },
                Some(_) => NalRole::Other,
            },
        }
    }

    /// A coded frame body: legacy AVC for H.264, Enhanced RTMP `hvc1` for H.265.
    fn frame_body(self, keyframe: bool, composition_time: i32, nals: &[&[u8]]) -> Bytes {
        let frame_type: u8 = if keyframe { 1 } else { 2 };
        let size: usize = nals.iter().map(|nal| 4 + nal.len()).sum();
        let mut body = BytesMut::with_capacity(8 + size);
        match self {
            VideoCodecKind::H264 => {
                // [FrameType:4][CodecId=7:4][AVCPacketType=1 NALU]
                body.put_slice(&[(frame_type << 4) | 7, 1]);
            }
            VideoCodecKind::H265 => {
                // [IsExHeader=1][FrameType:3][PacketType=1 CodedFrames:4][FourCC]
                body.put_u8(0x80 | (frame_type << 4) | 1);
                body.put_slice(b"hvc1");
            }
        }
        body.put_slice(&composition_time.to_be_bytes()[1..]);
        for nal in nals {
            // Access units come from bounded inputs (a PES, a reassembled RTP frame), far
            // below 4 GiB, so the length always fits.
            body.put_u32(nal.len() as u32);
            body.put_slice(nal);
        }
        body.freeze()
    }
}

/// What one access unit became.
#[derive(Debug, Default)]
pub struct Packed {
    /// A new sequence header, to send before the frame.
    pub sequence_header: Option<Bytes>,
    /// The frame body (none when the access unit held only parameter sets, or before the
    /// first sequence header).
    pub frame: Option<Bytes>,
    /// The frame is a random access point.
    pub keyframe: bool,
    /// A frame was dropped because no sequence header was known yet.
    pub unconfigured: bool,
}

/// One video track's parameter sets and the bodies made from its access units.
#[derive(Debug)]
pub struct FlvVideoPacker {
    codec: VideoCodecKind,
    /// The latest VPS (H.265 only), SPS and PPS lists.
    sets: [Vec<Bytes>; 3],
    /// `sets` differ from what the last sequence header carried.
    changed: bool,
    /// A sequence header has been emitted.
    configured: bool,
}

impl FlvVideoPacker {
    pub fn new(codec: VideoCodecKind) -> FlvVideoPacker {
        FlvVideoPacker {
            codec,
            sets: Default::default(),
            changed: false,
            configured: false,
        }
    }

    pub fn codec(&self) -> VideoCodecKind {
        self.codec
    }

    /// Packs one Annex B access unit. Problems with single NAL units (too many parameter
    /// sets, parameter sets that do not parse) go to `errors` with what they concern; the
    /// rest of the access unit is still packed.
    pub fn pack(
        &mut self,
        access_unit: &[u8],
        composition_time: i32,
        errors: &mut Vec<(&'static str, CodecError)>,
    ) -> Packed {
        let codec = self.codec;
        let mut frame: Vec<&[u8]> = Vec::new();
        // VPS, SPS, PPS found in this access unit.
        let mut sets: [Vec<&[u8]>; 3] = Default::default();
        let mut keyframe = false;
        for nal in annexb_nalus(access_unit) {
            match codec.classify(nal) {
                NalRole::Drop => {}
                NalRole::ParameterSet(kind) => {
                    let list = &mut sets[kind];
                    if list.contains(&nal) {
                        continue;
                    }
                    if list.len() == MAX_PARAMETER_SETS_PER_KIND {
                        errors.push((
                            "access unit",
                            CodecError::TooManyParameterSets {
                                limit: MAX_PARAMETER_SETS_PER_KIND,
                            },
                        ));
                        continue;
                    }
                    if nal.len() > usize::from(u16::MAX) {
                        errors.push((
                            "parameter set",
                            CodecError::OutOfRange {
                                what: "parameter set length",
                                value: nal.len() as u64,
                            },
                        ));
                        continue;
                    }
                    list.push(nal);
                }
                NalRole::Picture { random_access } => {
                    keyframe |= random_access;
                    frame.push(nal);
                }
                NalRole::Other => frame.push(nal),
            }
        }
        for (kept, found) in self.sets.iter_mut().zip(&sets) {
            if !found.is_empty() && !kept.iter().map(|b| &b[..]).eq(found.iter().copied()) {
                *kept = found
                    .iter()
                    .map(|nal| Bytes::copy_from_slice(nal))
                    .collect();
                self.changed = true;
            }
        }
        let mut packed = Packed {
            keyframe,
            ..Packed::default()
        };
        if self.changed && self.has_all_sets() {
            self.changed = false;
            match self.sequence_header() {
                Ok(body) => {
                    self.configured = true;
                    packed.sequence_header = Some(body);
                }
                Err(source) => errors.push(("parameter sets", source)),
            }
        }
        if frame.is_empty() {
            return packed;
        }
        if !self.configured {
            packed.unconfigured = true;
            return packed;
        }
        packed.frame = Some(codec.frame_body(keyframe, composition_time, &frame));
        packed
    }

    fn has_all_sets(&self) -> bool {
        let needs_vps = self.codec == VideoCodecKind::H265;
        (!needs_vps || !self.sets[0].is_empty())
            && !self.sets[1].is_empty()
            && !self.sets[2].is_empty()
    }

    /// The sequence header body for the current parameter sets.
    fn sequence_header(&self) -> Result<Bytes, CodecError> {
        fn refs(sets: &[Bytes]) -> Vec<&[u8]> {
            sets.iter().map(|set| &set[..]).collect()
        }
        let mut body = Vec::new();
        match self.codec {
            VideoCodecKind::H264 => {
                let config = AvcDecoderConfig::from_parameter_sets(
                    &refs(&self.sets[1]),
                    &refs(&self.sets[2]),
                )?;
                // Keyframe, AVC, AVCPacketType 0, composition time 0.
                body.extend_from_slice(&[0x17, 0, 0, 0, 0]);
                config.write(&mut body);
            }
            VideoCodecKind::H265 => {
                let config = HevcDecoderConfig::from_parameter_sets(
                    &refs(&self.sets[0]),
                    &refs(&self.sets[1]),
                    &refs(&self.sets[2]),
                )?;
                // Enhanced RTMP: keyframe, PacketTypeSequenceStart, `hvc1`.
                body.push(0x80 | (1 << 4));
                body.extend_from_slice(b"hvc1");
                config.write(&mut body);
            }
        }
        Ok(Bytes::from(body))
    }
}
