//! Stand-in for `ffmpeg.rs` when the `transcode` feature is off (no FFmpeg on the machine,
//! e.g. macOS/Windows builds): the same public API, but the constructors return
//! [`TranscodeError::Disabled`], so WebRTC ↔ RTMP audio bridging is refused cleanly instead of
//! the server failing to build.

use super::{EncodedAudio, TranscodeError};

/// Cannot be constructed: the uninhabited field makes `push` provably unreachable.
pub struct AacToOpus {
    never: std::convert::Infallible,
}

impl AacToOpus {
    pub fn new(_audio_specific_config: &[u8]) -> Result<AacToOpus, TranscodeError> {
        Err(TranscodeError::Disabled)
    }

    pub fn push(
        &mut self,
        _aac: &[u8],
        _timestamp_ms: u32,
    ) -> Result<Vec<EncodedAudio>, TranscodeError> {
        match self.never {}
    }
}

/// Cannot be constructed: the uninhabited field makes its methods provably unreachable.
pub struct OpusToAac {
    never: std::convert::Infallible,
}

impl OpusToAac {
    pub fn new() -> Result<OpusToAac, TranscodeError> {
        Err(TranscodeError::Disabled)
    }

    pub fn audio_specific_config(&self) -> Vec<u8> {
        match self.never {}
    }

    pub fn push(
        &mut self,
        _opus: &[u8],
        _timestamp_ms: u32,
    ) -> Result<Vec<EncodedAudio>, TranscodeError> {
        match self.never {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_report_disabled() {
        assert!(matches!(
            AacToOpus::new(&[0x11, 0x90]),
            Err(TranscodeError::Disabled)
        ));
        assert!(matches!(OpusToAac::new(), Err(TranscodeError::Disabled)));
    }
}
