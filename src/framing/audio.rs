//! Audio-only live streams over HTTP (`.aac`, `.mp3`): each AAC frame with its own ADTS
//! header (built from the stream's AudioSpecificConfig, 7 bytes inline per viewer) in front
//! of the shared raw frame; MP3 frames as they are. Video and metadata are skipped.

use bytes::Bytes;
use sluice_proto::codec::{AdtsHeader, AudioPacket, AudioPacketKind, AudioSpecificConfig};
use sluice_proto::flv::AudioCodec;

use super::{Chunking, Head};
use crate::hub::{Frame, FrameKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioFormat {
    Aac,
    Mp3,
}

pub struct AudioFraming {
    format: AudioFormat,
    chunking: Chunking,
    /// From the stream's AAC sequence header, which the viewer gets at its start.
    config: Option<AudioSpecificConfig>,
}

impl AudioFraming {
    pub fn new(format: AudioFormat, chunked: bool) -> AudioFraming {
        AudioFraming {
            format,
            chunking: Chunking::new(chunked),
            config: None,
        }
    }

    pub fn frame(&mut self, frame: &Frame) -> Option<(Head, Bytes)> {
        if frame.kind != FrameKind::Audio {
            return None;
        }
        let packet = AudioPacket::parse(&frame.payload).ok()?;
        let offset = frame.payload.len() - packet.data.len();
        let raw = frame.payload.slice(offset..);
        let mut head = Head::new();
        match (self.format, packet.codec, packet.kind) {
            (AudioFormat::Aac, AudioCodec::Aac, AudioPacketKind::SequenceHeader) => {
                self.config = AudioSpecificConfig::parse(packet.data).ok();
                None
            }
            (AudioFormat::Aac, AudioCodec::Aac, AudioPacketKind::CodedFrames) => {
                let adts = AdtsHeader::for_config(self.config.as_ref()?)
                    .and_then(|h| h.with_frame_len(raw.len()))
                    .ok()?
                    .encode();
                self.chunking.start(&mut head, adts.len() + raw.len());
                head.push(&adts);
                Some((head, raw))
            }
            (AudioFormat::Mp3, AudioCodec::Mp3, _) if !raw.is_empty() => {
                self.chunking.start(&mut head, raw.len());
                Some((head, raw))
            }
            _ => None,
        }
    }

    pub fn end(&mut self) -> Vec<u8> {
        self.chunking.finish().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audio(body: &'static [u8]) -> Frame {
        Frame::new(FrameKind::Audio, 0, Bytes::from_static(body), 60_000).unwrap()
    }

    #[test]
    fn aac_frames_get_adts_headers_after_the_config() {
        let mut framing = AudioFraming::new(AudioFormat::Aac, false);
        assert!(
            framing.frame(&audio(&[0xaf, 1, 0x21, 0x10])).is_none(),
            "no config yet"
        );
        assert!(framing.frame(&audio(&[0xaf, 0, 0x12, 0x10])).is_none());
        let (head, raw) = framing.frame(&audio(&[0xaf, 1, 0x21, 0x10, 0x05])).unwrap();
        let adts = AdtsHeader::parse(head.as_bytes()).unwrap();
        assert_eq!(adts.audio_specific_config().to_bytes(), [0x12, 0x10]);
        assert_eq!(&raw[..], &[0x21, 0x10, 0x05]);
        let video = Frame::new(
            FrameKind::Video,
            0,
            Bytes::from_static(&[0x17, 1, 0, 0, 0]),
            60_000,
        );
        assert!(framing.frame(&video.unwrap()).is_none());
    }

    #[test]
    fn mp3_frames_pass_through() {
        let mut framing = AudioFraming::new(AudioFormat::Mp3, true);
        let (head, raw) = framing.frame(&audio(&[0x2f, 0xff, 0xfb, 0x90])).unwrap();
        assert_eq!(head.as_bytes(), b"3\r\n");
        assert_eq!(&raw[..], &[0xff, 0xfb, 0x90]);
        assert_eq!(framing.end(), b"\r\n0\r\n\r\n");
    }
}
