//! Audio transcoding between AAC (the RTMP/SRT/HLS side) and Opus (the WebRTC side).
//!
//! Owns: the FFmpeg decoder → swresample → sample FIFO → encoder pipeline, and the output
//! timeline. Callers hand in one compressed frame with its millisecond timestamp and get back
//! the encoded frames completed so far, stamped from a running sample count anchored at the
//! first input timestamp, so 20 ms Opus frames step by exactly 20 ms and 1024-sample AAC frames
//! alternate 21/22 ms without drift. A timestamp jump of more than `MAX_JUMP_MS` (either way)
//! drains the encoder and re-anchors; input later than expected by more than `GAP_FILL_MS`
//! (Opus DTX, packet loss) is padded with silence so the output keeps pace with the input clock.
//! Whatever the input rate and layout, output is 48 kHz stereo (mono is spread at -3 dB to both
//! channels, swresample's default).
//!
//! Compiled only with the `transcode` feature (it links FFmpeg); `disabled.rs` is the stand-in
//! with the same API whose constructors return [`TranscodeError::Disabled`].

use bytes::Bytes;

use super::{EncodedAudio, TranscodeError};
use ffmpeg::codec::encoder::audio::Encoder as AudioEncoder;
use ffmpeg::format::Sample;
use ffmpeg::{ChannelLayout, Packet, codec, decoder, encoder, frame, software::resampling};
use ffmpeg_next as ffmpeg;

/// Output rate of both directions: Opus is always 48 kHz, and keeping AAC at 48 kHz avoids a
/// second resampling step for WebRTC-published audio.
const OUT_RATE: u32 = 48_000;
/// A timestamp further than this from where the sample count says it should be is a
/// discontinuity (publisher restart, clock jump), not jitter.
const MAX_JUMP_MS: i64 = 500;
/// Input arriving this much later than the sample count expects (Opus DTX, packet loss) gets
/// the hole filled with silence so output stays aligned; smaller offsets are treated as jitter
/// and, if they pile up, corrected in one step once they pass this.
const GAP_FILL_MS: i64 = 100;
/// FIFO cap: one second at the output rate. Only reachable on pathological input, since every
/// push drains whole frames; the oldest samples are dropped so memory stays bounded.
const FIFO_CAP_SAMPLES: usize = OUT_RATE as usize;
/// Longest packet either codec produces (Opus allows 120 ms); bounds a bogus packet duration.
const MAX_PACKET_SAMPLES: i64 = 5760;
const OPUS_BITRATE: usize = 64_000;
const AAC_BITRATE: usize = 128_000;
/// AudioSpecificConfig for AAC-LC (object type 2), 48 kHz (index 3), 2 channels:
/// `00010 0011 0010 000`.
const AAC_LC_48K_STEREO_ASC: [u8; 2] = [0x11, 0x90];

/// FFmpeg logs straight to stderr, bypassing the server's logger, and a publisher sending junk
/// would make it print a line per packet; errors reach the caller as `TranscodeError` instead.
fn quiet_ffmpeg_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Fatal));
}

fn codec_err(what: &str, e: ffmpeg::Error) -> TranscodeError {
    TranscodeError::Codec(format!("{what}: {e}"))
}

/// AAC (raw frames, as in FLV/RTMP, no ADTS) → Opus 48 kHz stereo, 20 ms frames (960 samples).
pub struct AacToOpus {
    pipe: Pipeline,
}

impl AacToOpus {
    /// `audio_specific_config`: the AAC sequence header payload (ASC bytes, 2+ bytes).
    pub fn new(audio_specific_config: &[u8]) -> Result<AacToOpus, TranscodeError> {
        if audio_specific_config.len() < 2 {
            return Err(TranscodeError::InvalidConfig(
                "AAC AudioSpecificConfig shorter than 2 bytes",
            ));
        }
        let decoder = open_decoder(&["aac"], codec::Id::AAC, Some(audio_specific_config))?;
        Ok(AacToOpus {
            pipe: Pipeline::new(decoder, open_opus_encoder)?,
        })
    }

    /// One raw AAC frame with its timestamp (ms). Returns the Opus packets completed so far.
    pub fn push(
        &mut self,
        aac: &[u8],
        timestamp_ms: u32,
    ) -> Result<Vec<EncodedAudio>, TranscodeError> {
        self.pipe.push(aac, timestamp_ms)
    }
}

/// Opus packets (from WebRTC, 48 kHz) → AAC-LC 48 kHz stereo, 1024-sample frames.
pub struct OpusToAac {
    pipe: Pipeline,
}

impl OpusToAac {
    pub fn new() -> Result<OpusToAac, TranscodeError> {
        // WebRTC Opus carries no OpusHead; without one FFmpeg's decoder assumes 48 kHz stereo,
        // and whatever layout it does output, the resampler maps to stereo.
        let decoder = open_decoder(&["opus", "libopus"], codec::Id::OPUS, None)?;
        Ok(OpusToAac {
            pipe: Pipeline::new(decoder, open_aac_encoder)?,
        })
    }

    /// The AudioSpecificConfig of the AAC it produces (for the FLV AAC sequence header).
    pub fn audio_specific_config(&self) -> Vec<u8> {
        AAC_LC_48K_STEREO_ASC.to_vec()
    }

    pub fn push(
        &mut self,
        opus: &[u8],
        timestamp_ms: u32,
    ) -> Result<Vec<EncodedAudio>, TranscodeError> {
        self.pipe.push(opus, timestamp_ms)
    }
}

fn open_decoder(
    names: &[&'static str],
    id: codec::Id,
    extradata: Option<&[u8]>,
) -> Result<decoder::Audio, TranscodeError> {
    let codec = names
        .iter()
        .find_map(|n| decoder::find_by_name(n))
        .or_else(|| decoder::find(id))
        .ok_or(TranscodeError::CodecNotFound(names[0]))?;
    let mut ctx = codec::Context::new_with_codec(codec);
    if let Some(extra) = extradata {
        set_extradata(&mut ctx, extra)?;
    }
    let dec = ctx.decoder();
    dec.open_as(codec)
        .and_then(|o| o.audio())
        .map_err(|e| codec_err("opening audio decoder", e))
}

/// Copies `data` into the context's extradata (the AAC ASC). ffmpeg-next has no safe setter, so
/// this is the one unavoidable `unsafe` block: the buffer must come from av_malloc (the context
/// frees it with av_free) and carry AV_INPUT_BUFFER_PADDING_SIZE zeroed bytes for the bit reader.
fn set_extradata(ctx: &mut codec::Context, data: &[u8]) -> Result<(), TranscodeError> {
    use ffmpeg::ffi;
    let len = i32::try_from(data.len())
        .map_err(|_| TranscodeError::InvalidConfig("extradata too large"))?;
    // SAFETY: `buf` is a fresh zeroed allocation of len + padding bytes; we copy exactly `len`
    // bytes into it and hand ownership to the (unopened, exclusively owned) context.
    unsafe {
        let buf =
            ffi::av_mallocz(data.len() + ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize) as *mut u8;
        if buf.is_null() {
            return Err(TranscodeError::Codec("out of memory for extradata".into()));
        }
        std::ptr::copy_nonoverlapping(data.as_ptr(), buf, data.len());
        let p = ctx.as_mut_ptr();
        ffi::av_freep(&mut (*p).extradata as *mut *mut u8 as *mut std::ffi::c_void);
        (*p).extradata = buf;
        (*p).extradata_size = len;
    }
    Ok(())
}

fn open_encoder(
    codec: ffmpeg::Codec,
    rate: u32,
    layout: ChannelLayout,
    bitrate: usize,
    experimental: bool,
    options: &[(&str, &str)],
) -> Result<AudioEncoder, ffmpeg::Error> {
    let mut ctx = codec::Context::new_with_codec(codec);
    if experimental {
        ctx.compliance(codec::Compliance::Experimental);
    }
    let mut enc = ctx.encoder().audio()?;
    // Prefer float (planar or packed) so no precision is lost; else whatever the codec takes.
    let formats: Vec<Sample> = codec
        .audio()?
        .formats()
        .map(|f| f.collect())
        .unwrap_or_default();
    let format = [
        Sample::F32(ffmpeg::format::sample::Type::Planar),
        Sample::F32(ffmpeg::format::sample::Type::Packed),
    ]
    .into_iter()
    .find(|f| formats.contains(f))
    .or_else(|| formats.first().copied())
    .unwrap_or(Sample::F32(ffmpeg::format::sample::Type::Planar));
    enc.set_rate(rate as i32);
    enc.set_format(format);
    enc.set_channel_layout(layout);
    enc.set_bit_rate(bitrate);
    enc.set_time_base((1, rate as i32));
    let mut opts = ffmpeg::Dictionary::new();
    for (k, v) in options {
        opts.set(k, v);
    }
    enc.open_as_with(codec, opts)
}

fn open_opus_encoder() -> Result<AudioEncoder, TranscodeError> {
    // libopus is the better encoder; FFmpeg's native one is experimental and is the fallback.
    if let Some(c) = encoder::find_by_name("libopus") {
        if let Ok(enc) = open_encoder(c, OUT_RATE, ChannelLayout::STEREO, OPUS_BITRATE, false, &[])
        {
            return Ok(enc);
        }
    }
    let c = encoder::find_by_name("opus").ok_or(TranscodeError::CodecNotFound("libopus"))?;
    open_encoder(
        c,
        OUT_RATE,
        ChannelLayout::STEREO,
        OPUS_BITRATE,
        true,
        &[("opus_delay", "20")],
    )
    .map_err(|e| codec_err("opening opus encoder", e))
}

fn open_aac_encoder() -> Result<AudioEncoder, TranscodeError> {
    let c = encoder::find_by_name("aac").ok_or(TranscodeError::CodecNotFound("aac"))?;
    open_encoder(c, OUT_RATE, ChannelLayout::STEREO, AAC_BITRATE, false, &[])
        .map_err(|e| codec_err("opening aac encoder", e))
}

/// Decoder → resampler → byte FIFO (in the encoder's sample format) → encoder, plus timeline.
struct Pipeline {
    decoder: decoder::Audio,
    /// Built lazily from the first decoded frame, rebuilt if the decoded format changes
    /// (e.g. an AAC stream switching SBR on).
    resampler: Option<resampling::Context>,
    encoder: AudioEncoder,
    open_encoder: fn() -> Result<AudioEncoder, TranscodeError>,
    format: Sample,
    frame_size: usize,
    /// One byte queue per plane of `format` (1 if packed, 2 if planar).
    fifo: Vec<Vec<u8>>,
    /// Bytes per sample per plane.
    bytes_per_sample: usize,
    /// Input timestamp of sample 0 of the current segment; None until the first decoded audio.
    anchor_ms: Option<u32>,
    /// Samples (at OUT_RATE) decoded+resampled since the anchor: where the next input should be.
    in_pos: u64,
    /// Output-timeline position (samples) of the next frame fed to the encoder.
    enc_pos: u64,
    /// Output-timeline position (samples) of the next packet out of the encoder.
    out_pos: u64,
}

impl Pipeline {
    fn new(
        decoder: decoder::Audio,
        open_encoder: fn() -> Result<AudioEncoder, TranscodeError>,
    ) -> Result<Self, TranscodeError> {
        quiet_ffmpeg_logs();
        let encoder = open_encoder()?;
        let format = encoder.format();
        let frame_size = match encoder.frame_size() {
            0 => 1024,
            n => n as usize,
        };
        let channels = ChannelLayout::STEREO.channels() as usize;
        let (planes, bytes_per_sample) = if format.is_planar() {
            (channels, format.bytes())
        } else {
            (1, format.bytes() * channels)
        };
        Ok(Pipeline {
            decoder,
            resampler: None,
            encoder,
            open_encoder,
            format,
            frame_size,
            fifo: vec![Vec::new(); planes],
            bytes_per_sample,
            anchor_ms: None,
            in_pos: 0,
            enc_pos: 0,
            out_pos: 0,
        })
    }

    fn push(&mut self, data: &[u8], ts: u32) -> Result<Vec<EncodedAudio>, TranscodeError> {
        let mut out = Vec::new();
        if data.is_empty() {
            return Ok(out);
        }
        // Decode first: a corrupt packet returns Err without touching the timeline.
        let frames = self.decode(data)?;
        if frames.is_empty() {
            return Ok(out);
        }
        if let Some(anchor) = self.anchor_ms {
            let expected = anchor.wrapping_add(samples_to_ms(self.in_pos));
            // Wrapping difference: RTMP timestamps are u32 ms and may wrap.
            let delta = i64::from(ts.wrapping_sub(expected) as i32);
            if delta.abs() > MAX_JUMP_MS {
                // Best effort: losing the encoder's lookahead at a discontinuity is harmless,
                // while bailing out before reset() would leave an encoder that saw EOF.
                self.drain(&mut out).ok();
                self.reset()?;
            } else if delta > GAP_FILL_MS {
                self.push_silence(delta as usize * OUT_RATE as usize / 1000);
            }
        }
        let anchor = *self.anchor_ms.get_or_insert(ts);
        for f in &frames {
            self.resample_into_fifo(f)?;
        }
        self.encode_full_frames(anchor, &mut out)?;
        Ok(out)
    }

    fn decode(&mut self, data: &[u8]) -> Result<Vec<frame::Audio>, TranscodeError> {
        let packet = Packet::copy(data);
        self.decoder
            .send_packet(&packet)
            .map_err(|e| TranscodeError::Decode(e.to_string()))?;
        let mut frames = Vec::new();
        loop {
            let mut f = frame::Audio::empty();
            match self.decoder.receive_frame(&mut f) {
                Ok(()) if f.samples() > 0 => frames.push(f),
                Ok(()) => {}
                Err(ffmpeg::Error::Other {
                    errno: ffmpeg::error::EAGAIN,
                })
                | Err(ffmpeg::Error::Eof) => break,
                Err(e) => return Err(TranscodeError::Decode(e.to_string())),
            }
        }
        Ok(frames)
    }

    fn resample_into_fifo(&mut self, input: &frame::Audio) -> Result<(), TranscodeError> {
        // The ASC comes from the publisher and may spell any rate (even 1 Hz); refuse absurd
        // ones rather than allocate an upsampling buffer thousands of times the input.
        if !(7_350..=96_000).contains(&input.rate()) || !(1..=8).contains(&input.channels()) {
            return Err(TranscodeError::Decode(format!(
                "unsupported decoded audio: {} Hz, {} channels",
                input.rate(),
                input.channels()
            )));
        }
        let mut layout = input.channel_layout();
        if layout.is_empty() || layout.channels() != i32::from(input.channels()) {
            layout = ChannelLayout::default(i32::from(input.channels()));
        }
        let def = resampling::context::Definition {
            format: input.format(),
            channel_layout: layout,
            rate: input.rate(),
        };
        if self.resampler.as_ref().map(|r| *r.input()) != Some(def) {
            let r = resampling::Context::get(
                def.format,
                layout,
                def.rate,
                self.format,
                ChannelLayout::STEREO,
                OUT_RATE,
            )
            .map_err(|e| codec_err("creating resampler", e))?;
            self.resampler = Some(r);
        }
        let Some(resampler) = self.resampler.as_mut() else {
            return Ok(());
        };
        // Room for every sample this input can produce plus what the filter holds back;
        // ffmpeg-next would otherwise size the output like the input and truncate upsampling.
        let cap = input.samples() * OUT_RATE as usize / def.rate as usize + 256;
        let mut converted = frame::Audio::new(self.format, cap, ChannelLayout::STEREO);
        resampler
            .run(input, &mut converted)
            .map_err(|e| codec_err("resampling", e))?;
        let n = converted.samples();
        for (p, q) in self.fifo.iter_mut().enumerate() {
            q.extend_from_slice(&converted.data(p)[..n * self.bytes_per_sample]);
        }
        self.in_pos += n as u64;
        self.enforce_cap();
        Ok(())
    }

    /// All encoder formats we pick are float or signed, where all-zero bytes are silence.
    fn push_silence(&mut self, samples: usize) {
        for q in &mut self.fifo {
            q.resize(q.len() + samples * self.bytes_per_sample, 0);
        }
        self.in_pos += samples as u64;
        self.enforce_cap();
    }

    fn enforce_cap(&mut self) {
        let queued = self.fifo[0].len() / self.bytes_per_sample;
        if queued > FIFO_CAP_SAMPLES {
            let drop = queued - FIFO_CAP_SAMPLES;
            for q in &mut self.fifo {
                q.drain(..drop * self.bytes_per_sample);
            }
            // Dropped audio still took time: keep later frames at their true position.
            self.enc_pos += drop as u64;
            self.out_pos += drop as u64;
        }
    }

    fn encode_full_frames(
        &mut self,
        anchor: u32,
        out: &mut Vec<EncodedAudio>,
    ) -> Result<(), TranscodeError> {
        let bytes = self.frame_size * self.bytes_per_sample;
        while self.fifo[0].len() >= bytes {
            let mut f = frame::Audio::new(self.format, self.frame_size, ChannelLayout::STEREO);
            f.set_rate(OUT_RATE);
            for (p, q) in self.fifo.iter_mut().enumerate() {
                f.data_mut(p)[..bytes].copy_from_slice(&q[..bytes]);
                q.drain(..bytes);
            }
            f.set_pts(i64::try_from(self.enc_pos).ok());
            self.enc_pos += self.frame_size as u64;
            self.encoder
                .send_frame(&f)
                .map_err(|e| codec_err("encoding", e))?;
            self.receive_packets(anchor, out)?;
        }
        Ok(())
    }

    fn receive_packets(
        &mut self,
        anchor: u32,
        out: &mut Vec<EncodedAudio>,
    ) -> Result<(), TranscodeError> {
        let mut pkt = Packet::empty();
        loop {
            match self.encoder.receive_packet(&mut pkt) {
                Ok(()) => {
                    // Stamp from our own count rather than the packet pts, which starts negative
                    // by the encoder's priming delay (a u32 clock at 0 would underflow). The
                    // duration is the packet's own: FFmpeg's native Opus encoder takes 120-sample
                    // input frames but emits 960-sample packets.
                    let samples = match pkt.duration() {
                        d if d > 0 && d <= MAX_PACKET_SAMPLES => d as u64,
                        _ => self.frame_size as u64,
                    };
                    out.push(EncodedAudio {
                        data: Bytes::copy_from_slice(pkt.data().unwrap_or(&[])),
                        timestamp_ms: anchor.wrapping_add(samples_to_ms(self.out_pos)),
                        samples: samples as u32,
                    });
                    self.out_pos += samples;
                }
                Err(ffmpeg::Error::Other {
                    errno: ffmpeg::error::EAGAIN,
                })
                | Err(ffmpeg::Error::Eof) => return Ok(()),
                Err(e) => return Err(codec_err("encoding", e)),
            }
        }
    }

    /// Flushes what the encoder holds (its lookahead) on the old timeline. A partial frame in
    /// the FIFO (< one frame) is dropped.
    fn drain(&mut self, out: &mut Vec<EncodedAudio>) -> Result<(), TranscodeError> {
        let Some(anchor) = self.anchor_ms else {
            return Ok(());
        };
        self.encoder
            .send_eof()
            .map_err(|e| codec_err("flushing encoder", e))?;
        self.receive_packets(anchor, out)
    }

    /// Starts a new segment: fresh encoder (one that saw EOF takes no more input), empty FIFO,
    /// resampler rebuilt on the next frame, anchor taken from the next timestamp.
    fn reset(&mut self) -> Result<(), TranscodeError> {
        self.encoder = (self.open_encoder)()?;
        self.resampler = None;
        self.fifo.iter_mut().for_each(Vec::clear);
        self.anchor_ms = None;
        (self.in_pos, self.enc_pos, self.out_pos) = (0, 0, 0);
        Ok(())
    }
}

/// Samples at OUT_RATE → ms, rounded to nearest; computed from the total so it never drifts.
/// Truncation to u32 is the intended wrap of a u32 ms clock.
fn samples_to_ms(samples: u64) -> u32 {
    ((samples * 1000 + u64::from(OUT_RATE) / 2) / u64::from(OUT_RATE)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use ffmpeg::format::sample::Type;

    const FLTP: Sample = Sample::F32(Type::Planar);

    /// `secs` of a 1 kHz sine (amplitude 0.5) per channel.
    fn sine(rate: u32, channels: usize, secs: f32) -> Vec<Vec<f32>> {
        let n = (rate as f32 * secs) as usize;
        let tone: Vec<f32> = (0..n)
            .map(|i| 0.5 * (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / rate as f32).sin())
            .collect();
        vec![tone; channels]
    }

    /// Raw AAC frames from FFmpeg's encoder, as an RTMP publisher would send them.
    fn encode_aac(rate: u32, layout: ChannelLayout, pcm: &[Vec<f32>]) -> Vec<Vec<u8>> {
        let codec = encoder::find_by_name("aac").unwrap();
        let mut enc = open_encoder(codec, rate, layout, 128_000, false, &[]).unwrap();
        assert_eq!(enc.format(), FLTP);
        let n = enc.frame_size() as usize;
        let mut out = Vec::new();
        let mut collect = |enc: &mut AudioEncoder| {
            let mut pkt = Packet::empty();
            while enc.receive_packet(&mut pkt).is_ok() {
                out.push(pkt.data().unwrap().to_vec());
            }
        };
        for start in (0..pcm[0].len()).step_by(n) {
            let mut f = frame::Audio::new(FLTP, n, layout);
            f.set_rate(rate);
            for (ch, samples) in pcm.iter().enumerate() {
                let chunk = &samples[start..(start + n).min(samples.len())];
                let plane = f.plane_mut::<f32>(ch);
                plane.fill(0.0);
                plane[..chunk.len()].copy_from_slice(chunk);
            }
            f.set_pts(Some(start as i64));
            enc.send_frame(&f).unwrap();
            collect(&mut enc);
        }
        enc.send_eof().unwrap();
        collect(&mut enc);
        out
    }

    /// Decodes packets; returns (rate, channels, channel-0 samples).
    fn decode_all(dec: &mut decoder::Audio, packets: &[EncodedAudio]) -> (u32, u16, Vec<f32>) {
        let (mut rate, mut channels, mut pcm) = (0, 0, Vec::new());
        for p in packets {
            dec.send_packet(&Packet::copy(&p.data)).unwrap();
            let mut f = frame::Audio::empty();
            while dec.receive_frame(&mut f).is_ok() {
                assert_eq!(f.format(), FLTP);
                (rate, channels) = (f.rate(), f.channels());
                pcm.extend_from_slice(&f.plane::<f32>(0)[..f.samples()]);
            }
        }
        (rate, channels, pcm)
    }

    /// Tone frequency by zero crossings over the middle 80% (skips codec start-up/tail).
    fn tone_hz(x: &[f32], rate: u32) -> f32 {
        let mid = &x[x.len() / 10..x.len() * 9 / 10];
        let crossings = mid
            .windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count();
        crossings as f32 / 2.0 / (mid.len() as f32 / rate as f32)
    }

    fn rms(x: &[f32]) -> f32 {
        (x.iter().map(|v| v * v).sum::<f32>() / x.len().max(1) as f32).sqrt()
    }

    /// AAC frames stamped as an RTMP publisher would, starting at `start_ms`.
    fn aac_ts(start_ms: u32, i: usize, rate: u32) -> u32 {
        start_ms + ((i as u64 * 1024 * 1000 + u64::from(rate) / 2) / u64::from(rate)) as u32
    }

    fn aac_to_opus(
        rate: u32,
        layout: ChannelLayout,
        asc: &[u8],
        start_ms: u32,
    ) -> Vec<EncodedAudio> {
        let aac = encode_aac(rate, layout, &sine(rate, layout.channels() as usize, 2.0));
        let mut t = AacToOpus::new(asc).unwrap();
        let mut out = Vec::new();
        for (i, f) in aac.iter().enumerate() {
            out.extend(t.push(f, aac_ts(start_ms, i, rate)).unwrap());
        }
        let in_ms = aac.len() as u64 * 1024 * 1000 / u64::from(rate);
        let expected = in_ms / 20;
        assert!(
            out.len() as u64 + 2 >= expected && out.len() as u64 <= expected + 1,
            "{} opus frames for {in_ms} ms",
            out.len()
        );
        for (i, p) in out.iter().enumerate() {
            assert_eq!(p.timestamp_ms, start_ms + 20 * i as u32, "frame {i}");
            assert_eq!(p.samples, 960);
        }
        let mut dec = open_decoder(&["opus"], codec::Id::OPUS, None).unwrap();
        let (out_rate, _, pcm) = decode_all(&mut dec, &out);
        assert_eq!(out_rate, 48_000);
        assert!(
            (pcm.len() as i64 - out.len() as i64 * 960).abs() <= 960,
            "{} samples",
            pcm.len()
        );
        assert!(rms(&pcm) > 0.2, "rms {}", rms(&pcm));
        let hz = tone_hz(&pcm, 48_000);
        assert!((hz - 1000.0).abs() < 20.0, "tone at {hz} Hz");
        out
    }

    #[test]
    fn aac_48k_stereo_to_opus() {
        aac_to_opus(48_000, ChannelLayout::STEREO, &AAC_LC_48K_STEREO_ASC, 1000);
    }

    #[test]
    fn aac_44k1_mono_to_opus() {
        // AAC-LC, 44.1 kHz (index 4), mono: 00010 0100 0001 000.
        aac_to_opus(44_100, ChannelLayout::MONO, &[0x12, 0x08], 0);
    }

    #[test]
    fn opus_to_aac_round_trip() {
        let opus = aac_to_opus(48_000, ChannelLayout::STEREO, &AAC_LC_48K_STEREO_ASC, 5000);
        let mut t = OpusToAac::new().unwrap();
        let asc = t.audio_specific_config();
        assert_eq!(asc, [0x11, 0x90]);
        let mut out = Vec::new();
        for p in &opus {
            out.extend(t.push(&p.data, p.timestamp_ms).unwrap());
        }
        let expected = opus.len() * 960 / 1024;
        assert!(
            out.len() + 2 >= expected && out.len() <= expected + 1,
            "{} aac frames",
            out.len()
        );
        for (i, p) in out.iter().enumerate() {
            assert_eq!(p.samples, 1024);
            assert_eq!(
                p.timestamp_ms,
                5000 + samples_to_ms(i as u64 * 1024),
                "frame {i}"
            );
            if i > 0 {
                assert!(matches!(p.timestamp_ms - out[i - 1].timestamp_ms, 21 | 22));
            }
        }
        // The ASC we advertise must be what a player's decoder needs for these frames.
        let mut dec = open_decoder(&["aac"], codec::Id::AAC, Some(&asc)).unwrap();
        let (rate, channels, pcm) = decode_all(&mut dec, &out);
        assert_eq!((rate, channels), (48_000, 2));
        assert!(
            (pcm.len() as i64 - out.len() as i64 * 1024).abs() <= 1024,
            "{} samples",
            pcm.len()
        );
        assert!(rms(&pcm) > 0.2, "rms {}", rms(&pcm));
        let hz = tone_hz(&pcm, 48_000);
        assert!((hz - 1000.0).abs() < 20.0, "tone at {hz} Hz");
    }

    #[test]
    fn timestamp_jumps_reanchor() {
        let aac = encode_aac(48_000, ChannelLayout::STEREO, &sine(48_000, 2, 2.0));
        for jump in [10_000i64, -3_000] {
            let mut t = AacToOpus::new(&AAC_LC_48K_STEREO_ASC).unwrap();
            let mut out = Vec::new();
            for (i, f) in aac.iter().enumerate() {
                let ts = i64::from(aac_ts(5_000, i, 48_000)) + if i >= 40 { jump } else { 0 };
                out.extend(t.push(f, ts as u32).unwrap());
            }
            let jumps: Vec<usize> = (1..out.len())
                .filter(|&i| out[i].timestamp_ms != out[i - 1].timestamp_ms + 20)
                .collect();
            assert_eq!(jumps.len(), 1, "exactly one discontinuity for jump {jump}");
            let at = jumps[0];
            // The new segment starts at the timestamp of the packet that jumped.
            assert_eq!(
                i64::from(out[at].timestamp_ms),
                i64::from(aac_ts(5_000, 40, 48_000)) + jump
            );
            assert!(out.len() >= 95, "{} frames", out.len());
        }
    }

    #[test]
    fn short_gaps_are_filled_with_silence() {
        // 300 ms of packets lost (as with Opus DTX or loss): below the re-anchor threshold, so
        // the timeline must stay continuous and catch up with the input clock.
        let aac = encode_aac(48_000, ChannelLayout::STEREO, &sine(48_000, 2, 2.0));
        let mut t = AacToOpus::new(&AAC_LC_48K_STEREO_ASC).unwrap();
        let mut out = Vec::new();
        for (i, f) in aac
            .iter()
            .enumerate()
            .filter(|(i, _)| !(40..54).contains(i))
        {
            out.extend(t.push(f, aac_ts(0, i, 48_000)).unwrap());
        }
        for (i, p) in out.iter().enumerate() {
            assert_eq!(p.timestamp_ms, 20 * i as u32);
        }
        let last_in = aac_ts(0, aac.len() - 1, 48_000);
        let last_out = out.last().unwrap().timestamp_ms;
        assert!(
            last_out + 60 >= last_in && last_out <= last_in + 20,
            "out {last_out} in {last_in}"
        );
    }

    #[test]
    fn corrupt_input_is_an_error_not_a_panic() {
        assert!(matches!(
            AacToOpus::new(&[0x12]),
            Err(TranscodeError::InvalidConfig(_))
        ));
        let _ = AacToOpus::new(&[0xff, 0xff, 0xff]);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut a = AacToOpus::new(&AAC_LC_48K_STEREO_ASC).unwrap();
        let mut o = OpusToAac::new().unwrap();
        for i in 0..300u32 {
            let len = (rnd() % 1500) as usize;
            let junk: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
            let _ = a.push(&junk, i * 21);
            let _ = o.push(&junk, i * 20);
        }
        // Still usable afterwards (the huge jump from the junk timeline just re-anchors).
        let aac = encode_aac(48_000, ChannelLayout::STEREO, &sine(48_000, 2, 0.5));
        let mut n = 0;
        for (i, f) in aac.iter().enumerate() {
            n += a.push(f, 100_000 + aac_ts(0, i, 48_000)).unwrap().len();
        }
        assert!(n >= 20, "{n} opus frames after junk");
    }

    #[test]
    fn transcoders_are_send() {
        fn send<T: Send>() {}
        send::<AacToOpus>();
        send::<OpusToAac>();
    }
}
