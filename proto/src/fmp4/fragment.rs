//! Media fragments: `moof` (`mfhd`, then per track run a `traf` with `tfhd`, `tfdt`, `trun`)
//! and the 8-byte `mdat` header, written by hand.
//!
//! Every box here has a size fixed by the number of samples, so the whole `moof` size — and
//! with it each run's `data_offset` — is known before the first byte is written: one pass,
//! one reservation, no intermediate structures. The sample bytes themselves are not copied;
//! the caller appends them after the `mdat` header, run by run in order.

use super::{Fmp4Error, MAX_FRAGMENT_RUNS, MAX_FRAGMENT_SAMPLES, TrackRun};

/// `tfhd` flag: offsets are relative to the first byte of the enclosing `moof` (CMAF
/// requires it; it also makes each fragment self-contained).
const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;

/// `trun` flags: data-offset, then per-sample duration, size, flags and composition offset.
const TRUN_DATA_OFFSET: u32 = 0x00_0001;
const TRUN_SAMPLE_DURATION: u32 = 0x00_0100;
const TRUN_SAMPLE_SIZE: u32 = 0x00_0200;
const TRUN_SAMPLE_FLAGS: u32 = 0x00_0400;
const TRUN_SAMPLE_CTO: u32 = 0x00_0800;
const TRUN_FLAGS: u32 = TRUN_DATA_OFFSET
    | TRUN_SAMPLE_DURATION
    | TRUN_SAMPLE_SIZE
    | TRUN_SAMPLE_FLAGS
    | TRUN_SAMPLE_CTO;

/// Sample flags (ISO/IEC 14496-12 §8.8.3.1) of a sync sample: sample_depends_on = 2 (does
/// not depend on others), sample_is_non_sync_sample = 0.
pub const SYNC_SAMPLE_FLAGS: u32 = 2 << 24;
/// Sample flags of any other sample: sample_depends_on = 1, sample_is_non_sync_sample = 1.
pub const NON_SYNC_SAMPLE_FLAGS: u32 = (1 << 24) | (1 << 16);

/// Box sizes, header included.
const MDAT_HEADER_LEN: usize = 8;
const MFHD_LEN: usize = 8 + 4 + 4;
const TFHD_LEN: usize = 8 + 4 + 4;
const TFDT_LEN: usize = 8 + 4 + 8;
/// `trun` without entries: header, version/flags, sample_count, data_offset.
const TRUN_FIXED_LEN: usize = 8 + 4 + 4 + 4;
/// duration, size, flags, composition offset.
const TRUN_ENTRY_LEN: usize = 16;
const TRAF_FIXED_LEN: usize = 8 + TFHD_LEN + TFDT_LEN + TRUN_FIXED_LEN;

/// Writes `moof` (mfhd with `sequence`, one traf per run: tfhd default-base-is-moof, tfdt v1, trun with
/// data-offset, per-sample duration/size/flags/composition offset (version 1, signed)) followed by the
/// 8-byte `mdat` header only. The caller then appends the sample bytes itself, run by run in order, so
/// media can be sent from shared buffers without copying. Data offsets must point into that mdat.
/// Returns the number of payload bytes the mdat header announces (sum of sizes).
///
/// Appends to `out`; on error nothing is written. Audio callers mark every sample `keyframe`.
pub fn write_fragment(
    sequence: u32,
    runs: &[TrackRun<'_>],
    out: &mut Vec<u8>,
) -> Result<u64, Fmp4Error> {
    let layout = Layout::of(runs)?;
    out.reserve(layout.moof_len + MDAT_HEADER_LEN);

    // Checked in `Layout::of`: the moof is at most a few MiB, the payload fits u32.
    let moof_len = layout.moof_len as u32;
    let mut w = BoxWriter(out);

    w.header(moof_len, b"moof");
    w.header(MFHD_LEN as u32, b"mfhd");
    w.full(0, 0);
    w.u32(sequence);

    // The first sample of run i sits after the moof, the mdat header and runs 0..i.
    let mut data_offset = u64::from(moof_len) + MDAT_HEADER_LEN as u64;
    for run in runs {
        let entries_len = run.samples.len() * TRUN_ENTRY_LEN;
        w.header((TRAF_FIXED_LEN + entries_len) as u32, b"traf");

        w.header(TFHD_LEN as u32, b"tfhd");
        w.full(0, TFHD_DEFAULT_BASE_IS_MOOF);
        w.u32(run.track_id);

        w.header(TFDT_LEN as u32, b"tfdt");
        w.full(1, 0);
        w.u64(run.base_decode_time);

        w.header((TRUN_FIXED_LEN + entries_len) as u32, b"trun");
        // Version 1: composition offsets are signed, so B-frames need no edit list.
        w.full(1, TRUN_FLAGS);
        w.u32(run.samples.len() as u32);
        // `Layout::of` checked that moof + mdat header + payload fits i32, so this does too.
        w.u32(data_offset as u32);
        let mut run_bytes = 0u64;
        for sample in run.samples {
            w.u32(sample.duration);
            w.u32(sample.size);
            w.u32(if sample.keyframe {
                SYNC_SAMPLE_FLAGS
            } else {
                NON_SYNC_SAMPLE_FLAGS
            });
            w.u32(sample.composition_offset as u32);
            run_bytes += u64::from(sample.size);
        }
        data_offset += run_bytes;
    }

    w.header(
        (MDAT_HEADER_LEN as u64 + layout.payload_len) as u32,
        b"mdat",
    );
    Ok(layout.payload_len)
}

/// Sizes of one fragment, validated before anything is written.
struct Layout {
    moof_len: usize,
    payload_len: u64,
}

impl Layout {
    fn of(runs: &[TrackRun<'_>]) -> Result<Layout, Fmp4Error> {
        if runs.is_empty() {
            return Err(Fmp4Error::NoRuns);
        }
        if runs.len() > MAX_FRAGMENT_RUNS {
            return Err(Fmp4Error::TooManyRuns(runs.len()));
        }
        let mut samples = 0usize;
        let mut payload_len = 0u64;
        for run in runs {
            if run.track_id == 0 {
                return Err(Fmp4Error::ZeroTrackId);
            }
            if run.samples.is_empty() {
                return Err(Fmp4Error::EmptyRun(run.track_id));
            }
            samples = samples.saturating_add(run.samples.len());
            if samples > MAX_FRAGMENT_SAMPLES {
                return Err(Fmp4Error::TooManySamples(samples));
            }
            // At most MAX_FRAGMENT_SAMPLES * u32::MAX: no u64 overflow.
            payload_len += run
                .samples
                .iter()
                .map(|sample| u64::from(sample.size))
                .sum::<u64>();
        }
        // Bounded by the limits: 8 + 16 + 64 runs * 64 + 65536 * 16 ≈ 1 MiB.
        let moof_len = 8 + MFHD_LEN + runs.len() * TRAF_FIXED_LEN + samples * TRUN_ENTRY_LEN;
        // The mdat size field is 32 bits, and data_offset (moof + mdat header + earlier runs)
        // is a signed 32-bit field.
        let end = moof_len as u64 + MDAT_HEADER_LEN as u64 + payload_len;
        if end > i32::MAX as u64 {
            return Err(Fmp4Error::MdatTooLarge(payload_len));
        }
        Ok(Layout {
            moof_len,
            payload_len,
        })
    }
}

/// Big-endian box writer over a `Vec`: just enough for fixed-size boxes whose sizes are known
/// before they are opened.
struct BoxWriter<'a>(&'a mut Vec<u8>);

impl BoxWriter<'_> {
    fn header(&mut self, size: u32, kind: &[u8; 4]) {
        self.u32(size);
        self.0.extend_from_slice(kind);
    }

    /// FullBox version and 24-bit flags.
    fn full(&mut self, version: u8, flags: u32) {
        self.u32((u32::from(version) << 24) | (flags & 0x00ff_ffff));
    }

    fn u32(&mut self, value: u32) {
        self.0.extend_from_slice(&value.to_be_bytes());
    }

    fn u64(&mut self, value: u64) {
        self.0.extend_from_slice(&value.to_be_bytes());
    }
}
