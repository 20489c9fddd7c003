//! Real MPEG-TS, as ffmpeg sends it over SRT, through `ts::TsIngest`: libx264 with B-frames +
//! AAC, libx265 with B-frames + AAC, and MP3, pushed in odd chunk sizes. The messages must
//! match what ffprobe reads from the TS packet for packet (frame counts, keyframes, DTS and
//! composition times), the sequence headers must come first and parse, and — end to end — the
//! messages written as an FLV file (H.264/AAC, MP3) or rewrapped to Annex B (H.265, which this
//! ffmpeg's FLV reader predates in its Enhanced RTMP form) must be read back by ffprobe with the
//! right codecs and frame counts, and decode without an error.
//!
//! Skips (with a message) when ffmpeg or ffprobe is not installed.

#[allow(dead_code)]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{
    X264_VERYFAST, assert_decodes, has_encoder, probe_streams, run, stream, tools_present, work_dir,
};
use serde_json::Value;
use sluice_proto::codec::{
    AnnexBWriter, AudioPacket, AudioPacketKind, AudioSpecificConfig, AvcDecoderConfig,
    HevcDecoderConfig, VideoPacket, VideoPacketKind,
};
use sluice_proto::flv::{self, AudioCodec, VideoCodec};
use sluice_proto::ts::{FlvMessage, FlvMessageKind, TsIngest};

/// Chunk sizes to push in: byte by byte, one short of a packet, an SRT payload, all at once.
const CHUNKS: [usize; 4] = [1, 187, 1316, usize::MAX];

/// A scratch directory for test `name`, or `None` (with a printed note) when ffmpeg, ffprobe
/// or one of `encoders` (the encoder, what it encodes) is missing.
fn prepare(name: &str, encoders: &[(&str, &str)]) -> Option<PathBuf> {
    if !tools_present("the TS ingest tests") {
        return None;
    }
    if !encoders
        .iter()
        .all(|(encoder, what)| has_encoder(encoder, what))
    {
        return None;
    }
    Some(work_dir(name))
}

/// Encodes two seconds of test pattern and tone to `in.ts` in `dir` with the given codec
/// arguments; returns its path and bytes.
fn encode_ts(dir: &Path, inputs: &[&str], codecs: &[&str]) -> (PathBuf, Vec<u8>) {
    let path = dir.join("in.ts");
    run(Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-y"])
        .args(inputs)
        .args(["-t", "2"])
        .args(codecs)
        .args(["-f", "mpegts"])
        .arg(&path));
    let ts = std::fs::read(&path).expect("read the TS");
    (path, ts)
}

fn video_and_audio_inputs() -> Vec<&'static str> {
    vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=30",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=44100",
    ]
}

/// A packet as ffprobe reads it from the TS (90 kHz times).
#[derive(Debug)]
struct ProbePacket {
    video: bool,
    pts: i64,
    dts: i64,
    keyframe: bool,
}

fn probe_packets(path: &Path) -> Vec<ProbePacket> {
    let output = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "packet=codec_type,pts,dts,flags",
        ])
        .args(["-of", "json"])
        .arg(path));
    let json: Value = serde_json::from_str(&output).expect("ffprobe JSON");
    json["packets"]
        .as_array()
        .expect("packets")
        .iter()
        .map(|packet| ProbePacket {
            video: packet["codec_type"] == "video",
            pts: packet["pts"].as_i64().expect("pts"),
            dts: packet["dts"].as_i64().expect("dts"),
            keyframe: packet["flags"].as_str().unwrap_or("").starts_with('K'),
        })
        .collect()
}

/// Pushes `ts` in chunks of `chunk` bytes, polling after each push; a clean stream must give
/// no error.
fn ingest(ts: &[u8], chunk: usize) -> Vec<FlvMessage> {
    let mut ingest = TsIngest::new();
    let mut messages = Vec::new();
    for piece in ts.chunks(chunk.min(ts.len()).max(1)) {
        ingest.push(piece).expect("clean input");
        messages.extend(std::iter::from_fn(|| ingest.poll()));
    }
    ingest.finish().expect("clean end");
    messages.extend(std::iter::from_fn(|| ingest.poll()));
    let stats = ingest.stats();
    assert_eq!(
        (
            stats.errors,
            stats.skipped_bytes,
            stats.frames_before_config
        ),
        (0, 0, 0)
    );
    messages
}

/// Pushes in every chunking; all must agree. Returns the messages, which must be in time order
/// across the tracks although ffmpeg's muxer sends each audio PES after later video.
fn ingest_every_way(ts: &[u8]) -> Vec<FlvMessage> {
    let reference = ingest(ts, CHUNKS[0]);
    for chunk in &CHUNKS[1..] {
        assert!(ingest(ts, *chunk) == reference, "chunk {chunk} differs");
    }
    let out_of_order: Vec<(u32, u32)> = reference
        .windows(2)
        .filter(|w| w[0].timestamp > w[1].timestamp)
        .map(|w| (w[0].timestamp, w[1].timestamp))
        .collect();
    assert!(
        out_of_order.is_empty(),
        "timestamps step back: {out_of_order:?}"
    );
    reference
}

/// The video messages against ffprobe's video packets: one frame per packet, the sequence
/// header first, keyframes where the encoder put them, DTS and composition time to the
/// millisecond. Returns the sequence header's payload (the decoder configuration record).
fn check_video(messages: &[FlvMessage], packets: &[ProbePacket], codec: VideoCodec) -> Vec<u8> {
    let video: Vec<VideoPacket<'_>> = messages
        .iter()
        .filter(|m| m.kind == FlvMessageKind::Video)
        .map(|m| VideoPacket::parse(&m.body).expect("video body"))
        .collect();
    let times: Vec<u32> = messages
        .iter()
        .filter(|m| m.kind == FlvMessageKind::Video)
        .map(|m| m.timestamp)
        .collect();
    let expected: Vec<&ProbePacket> = packets.iter().filter(|p| p.video).collect();
    assert_eq!(video[0].kind, VideoPacketKind::SequenceHeader);
    assert!(video[0].keyframe);
    assert_eq!(video.len(), expected.len() + 1, "one message per frame");
    assert!(video.iter().all(|p| p.codec == codec));
    let mut composition_times = Vec::new();
    for (index, (packet, probe)) in video[1..].iter().zip(&expected).enumerate() {
        assert_eq!(packet.kind, VideoPacketKind::CodedFrames, "frame {index}");
        assert_eq!(packet.keyframe, probe.keyframe, "frame {index}");
        let timestamp = times[index + 1];
        assert_eq!(i64::from(timestamp), probe.dts / 90, "frame {index}");
        assert_eq!(
            i64::from(packet.composition_time),
            probe.pts / 90 - probe.dts / 90,
            "frame {index}"
        );
        assert!(packet.composition_time >= 0);
        composition_times.push(packet.composition_time);
    }
    assert!(
        composition_times.iter().any(|&cts| cts > 0),
        "B-frames give composition times"
    );
    assert!(times[1..].windows(2).all(|w| w[0] < w[1]), "DTS increases");
    let keyframes: Vec<usize> = video[1..]
        .iter()
        .enumerate()
        .filter(|(_, p)| p.keyframe)
        .map(|(index, _)| index)
        .collect();
    assert_eq!(keyframes, [0, 30], "a keyframe every 30 frames");
    video[0].data.to_vec()
}

/// The AAC messages against ffprobe's audio packets: the sequence header first, then one
/// message per ADTS frame at the frame's time.
fn check_aac(messages: &[FlvMessage], packets: &[ProbePacket]) -> AudioSpecificConfig {
    let audio: Vec<&FlvMessage> = messages
        .iter()
        .filter(|m| m.kind == FlvMessageKind::Audio)
        .collect();
    let expected: Vec<&ProbePacket> = packets.iter().filter(|p| !p.video).collect();
    assert_eq!(audio.len(), expected.len() + 1, "one message per AAC frame");
    let header = AudioPacket::parse(&audio[0].body).unwrap();
    assert_eq!(
        (header.codec, header.kind),
        (AudioCodec::Aac, AudioPacketKind::SequenceHeader)
    );
    let config = AudioSpecificConfig::parse(header.data).unwrap();
    for (index, (message, probe)) in audio[1..].iter().zip(&expected).enumerate() {
        assert_eq!(message.body[..2], [0xaf, 0x01], "frame {index}");
        // ffprobe times the frames of a PES the same way, give or take the rounding.
        let ours = i64::from(message.timestamp);
        assert!(
            (ours - probe.pts / 90).abs() <= 1,
            "frame {index}: {ours} vs {}",
            probe.pts / 90
        );
    }
    assert!(audio.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    config
}

/// The messages as an FLV file, as HTTP-FLV or a DVR would write them.
fn write_flv(path: &Path, messages: &[FlvMessage], has_audio: bool, has_video: bool) {
    let mut out = Vec::new();
    flv::write_file_header(&mut out, has_audio, has_video);
    for message in messages {
        flv::write_tag(
            &mut out,
            message.kind.tag_type(),
            message.timestamp,
            &message.body,
        )
        .unwrap();
    }
    std::fs::write(path, out).unwrap();
}

#[test]
fn h264_aac_ts_becomes_an_flv_ffprobe_reads() {
    let Some(dir) = prepare("ingest-h264", &[]) else {
        return;
    };
    let codecs = [
        &X264_VERYFAST[..],
        &["-g", "30", "-bf", "2", "-sc_threshold", "0"],
        &["-c:a", "aac", "-ac", "2", "-b:a", "96k"],
    ]
    .concat();
    let (ts_path, ts) = encode_ts(&dir, &video_and_audio_inputs(), &codecs);
    let packets = probe_packets(&ts_path);
    assert_eq!(packets.iter().filter(|p| p.video).count(), 60);
    let messages = ingest_every_way(&ts);

    let record = check_video(&messages, &packets, VideoCodec::Avc);
    let config = AvcDecoderConfig::parse(&record).unwrap();
    let sps = config.first_sps().unwrap();
    assert_eq!((sps.width, sps.height), (320, 240));
    let audio_config = check_aac(&messages, &packets);
    assert_eq!(
        (audio_config.sampling_frequency, audio_config.channels()),
        (44_100, 2)
    );

    let flv_path = dir.join("out.flv");
    write_flv(&flv_path, &messages, true, true);
    let streams = probe_streams(&flv_path);
    let video = stream(&streams, "video");
    assert_eq!(video["codec_name"], "h264");
    assert_eq!(
        (video["width"].as_i64(), video["height"].as_i64()),
        (Some(320), Some(240))
    );
    assert_eq!(video["nb_read_frames"], "60");
    let audio = stream(&streams, "audio");
    assert_eq!(audio["codec_name"], "aac");
    assert_eq!(audio["sample_rate"], "44100");
    assert_eq!(audio["channels"], 2);
    let aac_frames = packets.iter().filter(|p| !p.video).count();
    assert_eq!(audio["nb_read_frames"], aac_frames.to_string());
    assert_decodes(&flv_path, "ffmpeg");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn h265_aac_ts_becomes_enhanced_rtmp_hevc() {
    let Some(dir) = prepare("ingest-h265", &[("libx265", "H.265")]) else {
        return;
    };
    let (ts_path, ts) = encode_ts(
        &dir,
        &video_and_audio_inputs(),
        &[
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-x265-params",
            "log-level=error:keyint=30:min-keyint=30:scenecut=0:bframes=2:open-gop=0",
            "-c:a",
            "aac",
            "-ac",
            "2",
        ],
    );
    let packets = probe_packets(&ts_path);
    assert_eq!(packets.iter().filter(|p| p.video).count(), 60);
    let messages = ingest_every_way(&ts);
    let first_video = messages
        .iter()
        .find(|m| m.kind == FlvMessageKind::Video)
        .unwrap();
    assert_eq!(
        &first_video.body[..5],
        b"\x90hvc1",
        "Enhanced RTMP SequenceStart"
    );
    let record = check_video(&messages, &packets, VideoCodec::Hevc);
    let config = HevcDecoderConfig::parse(&record).unwrap();
    let sps = config.first_sps().unwrap();
    assert_eq!((sps.width, sps.height), (320, 240));
    assert!(config.codec_string().starts_with("hvc1.1."));
    check_aac(&messages, &packets);

    // Back to Annex B the way the hub's TS/HLS remuxer does it, for ffprobe to count.
    let writer = AnnexBWriter::h265(&config);
    let mut annexb = Vec::new();
    for message in messages.iter().filter(|m| m.kind == FlvMessageKind::Video) {
        let packet = VideoPacket::parse(&message.body).unwrap();
        if packet.kind == VideoPacketKind::CodedFrames {
            writer
                .write(packet.data, packet.keyframe, &mut annexb)
                .unwrap();
        }
    }
    let hevc_path = dir.join("out.hevc");
    std::fs::write(&hevc_path, &annexb).unwrap();
    let streams = probe_streams(&hevc_path);
    let video = stream(&streams, "video");
    assert_eq!(video["codec_name"], "hevc");
    assert_eq!(video["nb_read_frames"], "60");
    assert_decodes(&hevc_path, "ffmpeg");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mp3_ts_becomes_flv_mp3() {
    let Some(dir) = prepare("ingest-mp3", &[("libmp3lame", "MP3")]) else {
        return;
    };
    let (ts_path, ts) = encode_ts(
        &dir,
        &["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"],
        &["-c:a", "libmp3lame", "-b:a", "128k", "-ac", "2"],
    );
    let packets = probe_packets(&ts_path);
    let messages = ingest_every_way(&ts);
    assert_eq!(messages.len(), packets.len(), "one message per MP3 frame");
    for (message, probe) in messages.iter().zip(&packets) {
        assert_eq!(message.kind, FlvMessageKind::Audio);
        assert_eq!(message.body[0], 0x2f, "MP3, 44 kHz, 16-bit, stereo");
        assert!((i64::from(message.timestamp) - probe.pts / 90).abs() <= 1);
    }
    let flv_path = dir.join("out.flv");
    write_flv(&flv_path, &messages, true, false);
    let streams = probe_streams(&flv_path);
    let audio = stream(&streams, "audio");
    assert_eq!(audio["codec_name"], "mp3");
    assert_eq!(audio["sample_rate"], "44100");
    assert_eq!(audio["nb_read_frames"], packets.len().to_string());
    assert_decodes(&flv_path, "ffmpeg");
    let _ = std::fs::remove_dir_all(&dir);
}
