//! A big-endian bit reader for codec headers: fixed-width fields, exp-Golomb codes, and (for
//! NAL units) transparent removal of emulation-prevention bytes, so an SPS is read straight from
//! the bytes on the wire without first copying it into an RBSP buffer.
//!
//! Total by construction: every read that would run past the input is
//! [`CodecError::Truncated`], and exp-Golomb prefixes longer than 31 zeros are rejected instead
//! of overflowing.

use super::CodecError;

pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    /// Next byte of `data` to load.
    position: usize,
    /// Consecutive zero bytes just loaded, for spotting `00 00 03`.
    zeros: u8,
    /// Whether `00 00 03` means "drop the 03" (NAL unit payloads) or is plain data.
    unescape: bool,
    current: u8,
    bits_left: u8,
    /// Names the structure in truncation errors.
    what: &'static str,
}

impl<'a> BitReader<'a> {
    /// Reads plain bytes (AudioSpecificConfig, ADTS, ...).
    pub(crate) fn new(data: &'a [u8], what: &'static str) -> Self {
        BitReader {
            data,
            position: 0,
            zeros: 0,
            unescape: false,
            current: 0,
            bits_left: 0,
            what,
        }
    }

    /// Reads a NAL unit payload (after its header), skipping emulation-prevention bytes.
    pub(crate) fn new_rbsp(data: &'a [u8], what: &'static str) -> Self {
        BitReader {
            unescape: true,
            ..BitReader::new(data, what)
        }
    }

    fn load_byte(&mut self) -> Result<u8, CodecError> {
        let mut byte = *self
            .data
            .get(self.position)
            .ok_or(CodecError::Truncated(self.what))?;
        self.position += 1;
        if self.unescape && self.zeros >= 2 && byte == 0x03 {
            // An emulation-prevention byte: not part of the RBSP. The zero run restarts.
            self.zeros = 0;
            byte = *self
                .data
                .get(self.position)
                .ok_or(CodecError::Truncated(self.what))?;
            self.position += 1;
        }
        self.zeros = if byte == 0 {
            self.zeros.saturating_add(1)
        } else {
            0
        };
        Ok(byte)
    }

    pub(crate) fn bit(&mut self) -> Result<bool, CodecError> {
        if self.bits_left == 0 {
            self.current = self.load_byte()?;
            self.bits_left = 8;
        }
        self.bits_left -= 1;
        Ok((self.current >> self.bits_left) & 1 == 1)
    }

    /// Reads `count` (at most 32) bits as an unsigned number.
    pub(crate) fn bits(&mut self, count: u32) -> Result<u32, CodecError> {
        debug_assert!(count <= 32);
        let mut value: u64 = 0;
        for _ in 0..count.min(32) {
            value = (value << 1) | u64::from(self.bit()?);
        }
        Ok(value as u32)
    }

    pub(crate) fn u8(&mut self, count: u32) -> Result<u8, CodecError> {
        Ok(self.bits(count.min(8))? as u8)
    }

    pub(crate) fn skip(&mut self, count: u32) -> Result<(), CodecError> {
        for _ in 0..count {
            self.bit()?;
        }
        Ok(())
    }

    /// ue(v): unsigned exp-Golomb. The largest value 31 leading zeros can code is 2^32 - 2.
    pub(crate) fn ue(&mut self) -> Result<u32, CodecError> {
        let mut leading_zeros = 0u32;
        while !self.bit()? {
            leading_zeros += 1;
            if leading_zeros > 31 {
                return Err(CodecError::ExpGolombOverflow);
            }
        }
        let suffix = self.bits(leading_zeros)?;
        Ok(((1u64 << leading_zeros) - 1 + u64::from(suffix)) as u32)
    }

    /// ue(v) that must not exceed `max`: the syntax element's range from the spec.
    pub(crate) fn ue_max(&mut self, max: u32, what: &'static str) -> Result<u32, CodecError> {
        let value = self.ue()?;
        if value > max {
            return Err(CodecError::OutOfRange {
                what,
                value: value.into(),
            });
        }
        Ok(value)
    }

    /// se(v): signed exp-Golomb, mapped 0, 1, -1, 2, -2, ...
    pub(crate) fn se(&mut self) -> Result<i64, CodecError> {
        let code = i64::from(self.ue()?);
        Ok(if code % 2 == 1 {
            (code + 1) / 2
        } else {
            -(code / 2)
        })
    }

    /// Bits not yet read (exact for plain readers; an upper bound when unescaping).
    pub(crate) fn bits_remaining(&self) -> usize {
        (self.data.len() - self.position) * 8 + usize::from(self.bits_left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb_values() {
        // 1 | 010 | 011 | 00100 | 00101 -> 0, 1, 2, 3, 4
        let mut reader = BitReader::new(&[0b1010_0110, 0b0100_0010, 0b1000_0000], "test");
        assert_eq!(reader.ue().unwrap(), 0);
        assert_eq!(reader.ue().unwrap(), 1);
        assert_eq!(reader.ue().unwrap(), 2);
        assert_eq!(reader.ue().unwrap(), 3);
        assert_eq!(reader.ue().unwrap(), 4);
        let mut reader = BitReader::new(&[0b0100_1100, 0b1000_0000], "test");
        assert_eq!(reader.se().unwrap(), 1);
        assert_eq!(reader.se().unwrap(), -1);
        assert_eq!(reader.se().unwrap(), 2);
    }

    #[test]
    fn exp_golomb_limits() {
        // 31 zeros, a one, 31 ones: the largest codable value.
        let mut max = vec![0u8; 3];
        max.extend_from_slice(&[0x01, 0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(BitReader::new(&max, "t").ue().unwrap(), u32::MAX - 1);
        assert_eq!(
            BitReader::new(&[0; 5], "t").ue(),
            Err(CodecError::ExpGolombOverflow)
        );
        assert_eq!(
            BitReader::new(&[0, 0], "t").ue(),
            Err(CodecError::Truncated("t"))
        );
    }

    #[test]
    fn emulation_prevention_is_skipped() {
        let mut reader = BitReader::new_rbsp(&[0x00, 0x00, 0x03, 0x01, 0x00, 0x00, 0x03], "t");
        assert_eq!(reader.bits(24).unwrap(), 0x000001);
        assert_eq!(reader.bits(16).unwrap(), 0);
        assert!(reader.bit().is_err());
        // Without unescaping the 03 is data.
        let mut reader = BitReader::new(&[0x00, 0x00, 0x03], "t");
        assert_eq!(reader.bits(24).unwrap(), 3);
    }
}
