//! What the API reports about a stream's codecs, read from its sequence headers once, when
//! they arrive (never per frame).

use sluice_proto::codec::{
    AudioPacket, AudioPacketKind, AudioSpecificConfig, AvcDecoderConfig, HevcDecoderConfig,
    MpegAudioHeader, VideoPacket, VideoPacketKind,
};
use sluice_proto::flv::{AudioCodec, VideoCodec};

use super::Frame;
use crate::control::views::{AudioView, VideoView};

/// Codec, profile, level and size from a video sequence header.
pub fn video_view(frame: &Frame) -> Option<VideoView> {
    let packet = VideoPacket::parse(&frame.payload).ok()?;
    if packet.kind != VideoPacketKind::SequenceHeader {
        return None;
    }
    match packet.codec {
        VideoCodec::Avc => {
            let sps = AvcDecoderConfig::parse(packet.data)
                .ok()?
                .first_sps()
                .ok()?;
            Some(VideoView {
                codec: "H264",
                profile: sps.profile_name().to_string(),
                level: sps.level_name().to_string(),
                width: sps.width,
                height: sps.height,
            })
        }
        VideoCodec::Hevc => {
            let config = HevcDecoderConfig::parse(packet.data).ok()?;
            let sps = config.first_sps().ok()?;
            Some(VideoView {
                codec: "H265",
                profile: sps.general.profile_name().to_string(),
                level: sps.general.level_name(),
                width: sps.width,
                height: sps.height,
            })
        }
        other => Some(VideoView {
            codec: other.name(),
            profile: String::new(),
            level: String::new(),
            width: 0,
            height: 0,
        }),
    }
}

/// Codec, rate, channels and profile from an audio sequence header (AAC) or any frame (MP3).
pub fn audio_view(frame: &Frame) -> Option<AudioView> {
    let packet = AudioPacket::parse(&frame.payload).ok()?;
    match (packet.codec, packet.kind) {
        (AudioCodec::Aac, AudioPacketKind::SequenceHeader) => {
            let config = AudioSpecificConfig::parse(packet.data).ok()?;
            Some(AudioView {
                codec: "AAC",
                sample_rate: config.sampling_frequency,
                channels: config.channels(),
                profile: config.profile_name().to_string(),
            })
        }
        (AudioCodec::Mp3, _) => {
            let header = MpegAudioHeader::parse(packet.data).ok()?;
            Some(AudioView {
                codec: "MP3",
                sample_rate: header.sample_rate,
                channels: header.channels(),
                profile: String::new(),
            })
        }
        _ => None,
    }
}
