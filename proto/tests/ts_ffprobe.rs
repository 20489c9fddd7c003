//! Real media through the remux path the hub will use: ffmpeg encodes a few seconds of H.264 +
//! AAC into FLV (as an RTMP publisher would send it); our FLV reader, codec helpers and TS
//! muxer turn it into MPEG-TS; ffprobe and ffmpeg must read that back with the right codecs,
//! size, frame count and duration, and decode it without a single error. H.265 likewise, from
//! a raw x265 stream rewrapped as length-prefixed access units.
//!
//! Also checks our ADTS headers byte for byte against ffmpeg's ADTS muxer, and our FLV writer
//! byte for byte against ffmpeg's FLV muxer.
//!
//! Skips (with a message) when ffmpeg or ffprobe is not installed.

// Reads ffprobe's `key=value` output, not the JSON of `common::probe_streams`.
#[allow(dead_code)]
mod common;

use std::path::Path;
use std::process::Command;

use common::{
    HevcStream, assert_decodes, encode_flv, encode_hevc, run, split_hevc, tools_present, work_dir,
};
use sluice_proto::codec::{
    AdtsHeader, AnnexBWriter, AudioPacket, AudioPacketKind, AudioSpecificConfig, AvcDecoderConfig,
    HevcDecoderConfig, VideoPacket, VideoPacketKind,
};
use sluice_proto::flv::{self, FileHeader, Tag, TagType};
use sluice_proto::ts::{
    AudioStreamType, DemuxEvent, Frame, PACKET_SIZE, Track, TsDemuxer, TsMuxer, VideoStreamType,
};

/// `key=value` lines of `ffprobe -show_entries` for a stream or the format.
fn probe(path: &Path, args: &[&str]) -> Vec<(String, String)> {
    let output = run(Command::new("ffprobe")
        .args(["-v", "error", "-of", "default=noprint_wrappers=1"])
        .args(args)
        .arg(path));
    output
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn value<'a>(pairs: &'a [(String, String)], key: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key} in {pairs:?}"))
}

/// One muxed frame: its bytes and whether a viewer may start there.
struct Muxed {
    bytes: Vec<u8>,
    join_point: bool,
    track: Track,
}

/// The hub's remux path, FLV tags in, one shared TS buffer per frame out.
fn remux_flv(flv_bytes: &[u8]) -> (Vec<Muxed>, usize, usize) {
    let (header, mut offset) = FileHeader::parse(flv_bytes).unwrap();
    assert!(header.has_audio && header.has_video);
    let mut muxer = TsMuxer::new(Some(VideoStreamType::H264), Some(AudioStreamType::AacAdts));
    let mut annexb_writer: Option<AnnexBWriter> = None;
    let mut adts: Option<AdtsHeader> = None;
    let mut scratch = Vec::new();
    let mut frames = Vec::new();
    let (mut video_frames, mut audio_frames) = (0, 0);
    while offset < flv_bytes.len() {
        let (tag, consumed) = Tag::parse(&flv_bytes[offset..]).unwrap();
        offset += consumed;
        let dts = i64::from(tag.timestamp);
        let mut out = Vec::new();
        let written = match tag.tag_type {
            9 => {
                let packet = VideoPacket::parse(tag.body).unwrap();
                match packet.kind {
                    VideoPacketKind::SequenceHeader => {
                        let config = AvcDecoderConfig::parse(packet.data).unwrap();
                        let sps = config.first_sps().unwrap();
                        assert_eq!((sps.width, sps.height), (1280, 720));
                        annexb_writer = Some(AnnexBWriter::h264(&config));
                        continue;
                    }
                    VideoPacketKind::CodedFrames => {
                        scratch.clear();
                        let writer = annexb_writer.as_ref().expect("sequence header first");
                        let info = writer
                            .write(packet.data, packet.keyframe, &mut scratch)
                            .unwrap();
                        assert_eq!(info.random_access, packet.keyframe);
                        video_frames += 1;
                        let data = [&scratch[..]];
                        let frame = Frame::from_ms(
                            Track::Video,
                            packet.pts_ms(dts),
                            dts,
                            packet.keyframe,
                            &data,
                        );
                        out.reserve(muxer.frame_len(&frame));
                        (muxer.write_frame(&mut out, &frame).unwrap(), Track::Video)
                    }
                    _ => continue,
                }
            }
            8 => {
                let packet = AudioPacket::parse(tag.body).unwrap();
                match packet.kind {
                    AudioPacketKind::SequenceHeader => {
                        let config = AudioSpecificConfig::parse(packet.data).unwrap();
                        assert_eq!(config.sampling_frequency, 44100);
                        adts = Some(AdtsHeader::for_config(&config).unwrap());
                        continue;
                    }
                    AudioPacketKind::CodedFrames => {
                        let header = adts
                            .expect("sequence header first")
                            .with_frame_len(packet.data.len())
                            .unwrap()
                            .encode();
                        audio_frames += 1;
                        // The ADTS header and the (shared) raw frame as a gather list.
                        let data = [&header[..], packet.data];
                        let frame = Frame::from_ms(Track::Audio, dts, dts, true, &data);
                        (muxer.write_frame(&mut out, &frame).unwrap(), Track::Audio)
                    }
                    _ => continue,
                }
            }
            _ => continue,
        };
        let (written, track) = written;
        assert_eq!(out.len(), written.packets * PACKET_SIZE);
        frames.push(Muxed {
            bytes: out,
            join_point: written.join_point,
            track,
        });
    }
    (frames, video_frames, audio_frames)
}

#[test]
fn h264_aac_flv_remuxed_to_ts_is_valid() {
    if !tools_present("the TS validity tests") {
        return;
    }
    let dir = work_dir("h264");
    let flv_path = encode_flv(&dir, 3);
    let flv_bytes = std::fs::read(&flv_path).unwrap();
    let (frames, video_frames, audio_frames) = remux_flv(&flv_bytes);
    assert_eq!(video_frames, 75);
    let ts: Vec<u8> = frames
        .iter()
        .flat_map(|f| f.bytes.iter().copied())
        .collect();
    let ts_path = dir.join("out.ts");
    std::fs::write(&ts_path, &ts).unwrap();

    let video = probe(
        &ts_path,
        &[
            "-select_streams",
            "v:0",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,profile,width,height,nb_read_frames,r_frame_rate",
        ],
    );
    assert_eq!(value(&video, "codec_name"), "h264");
    assert_eq!(value(&video, "profile"), "High");
    assert_eq!(value(&video, "width"), "1280");
    assert_eq!(value(&video, "height"), "720");
    assert_eq!(value(&video, "r_frame_rate"), "25/1");
    assert_eq!(value(&video, "nb_read_frames"), video_frames.to_string());
    let audio = probe(
        &ts_path,
        &[
            "-select_streams",
            "a:0",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,sample_rate,channels,nb_read_frames",
        ],
    );
    assert_eq!(value(&audio, "codec_name"), "aac");
    assert_eq!(value(&audio, "sample_rate"), "44100");
    assert_eq!(value(&audio, "channels"), "2");
    assert_eq!(value(&audio, "nb_read_frames"), audio_frames.to_string());
    let format = probe(&ts_path, &["-show_entries", "format=format_name,duration"]);
    assert_eq!(value(&format, "format_name"), "mpegts");
    let duration: f64 = value(&format, "duration").parse().unwrap();
    assert!((duration - 3.0).abs() < 0.15, "duration {duration}");
    assert_decodes(&ts_path, "ffmpeg");

    // Our demuxer agrees: one PES per frame, continuity intact.
    let mut demuxer = TsDemuxer::new();
    let mut pes = 0;
    for packet in ts.chunks_exact(PACKET_SIZE) {
        demuxer.push_packet(packet).unwrap();
        while let Some(event) = demuxer.poll_event() {
            if let DemuxEvent::Pes(p) = event {
                assert!(!p.discontinuity);
                pes += 1;
            }
        }
    }
    demuxer.finish().unwrap();
    pes += std::iter::from_fn(|| demuxer.poll_event()).count();
    assert_eq!(pes, video_frames + audio_frames);

    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn viewer_joining_at_a_later_join_point_gets_a_valid_stream() {
    if !tools_present("the TS validity tests") {
        return;
    }
    let dir = work_dir("join");
    let flv_bytes = std::fs::read(encode_flv(&dir, 3)).unwrap();
    let (frames, ..) = remux_flv(&flv_bytes);
    // A viewer arriving during the second GOP starts at the next join point (the GOP cache).
    let joins: Vec<usize> = frames
        .iter()
        .enumerate()
        .filter(|(_, f)| f.join_point)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(joins.len(), 3, "a keyframe per second");
    assert!(frames[joins[1]].track == Track::Video);
    let late: Vec<u8> = frames[joins[1]..]
        .iter()
        .flat_map(|f| f.bytes.iter().copied())
        .collect();
    let late_path = dir.join("late.ts");
    std::fs::write(&late_path, &late).unwrap();
    assert_decodes(&late_path, "late joiner");
    let video = probe(
        &late_path,
        &[
            "-select_streams",
            "v:0",
            "-count_frames",
            "-show_entries",
            "stream=nb_read_frames",
        ],
    );
    assert_eq!(value(&video, "nb_read_frames"), "50");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn adts_headers_match_ffmpeg_and_flv_writer_matches_ffmpeg() {
    if !tools_present("the TS validity tests") {
        return;
    }
    let dir = work_dir("adts");
    let flv_path = encode_flv(&dir, 1);
    let adts_path = dir.join("ffmpeg.aac");
    run(Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-y", "-i"])
        .arg(&flv_path)
        .args(["-vn", "-c", "copy", "-f", "adts"])
        .arg(&adts_path));
    let flv_bytes = std::fs::read(&flv_path).unwrap();
    let ffmpeg_adts = std::fs::read(&adts_path).unwrap();

    let (header, mut offset) = FileHeader::parse(&flv_bytes).unwrap();
    let mut ours_adts = Vec::new();
    let mut rewritten = flv::file_header(header.has_audio, header.has_video).to_vec();
    let mut adts = None;
    while offset < flv_bytes.len() {
        let (tag, consumed) = Tag::parse(&flv_bytes[offset..]).unwrap();
        offset += consumed;
        // The FLV writer, piece by piece as a viewer would: own header, shared body, trailer.
        let tag_type = match tag.tag_type {
            8 => TagType::Audio,
            9 => TagType::Video,
            _ => TagType::Script,
        };
        flv::write_tag_header(&mut rewritten, tag_type, tag.body.len(), tag.timestamp).unwrap();
        rewritten.extend_from_slice(tag.body);
        flv::write_previous_tag_size(&mut rewritten, tag.body.len());
        if tag.tag_type != 8 {
            continue;
        }
        let packet = AudioPacket::parse(tag.body).unwrap();
        match packet.kind {
            AudioPacketKind::SequenceHeader => {
                adts = Some(
                    AdtsHeader::for_config(&AudioSpecificConfig::parse(packet.data).unwrap())
                        .unwrap(),
                );
            }
            _ => {
                let header = adts.unwrap().with_frame_len(packet.data.len()).unwrap();
                ours_adts.extend_from_slice(&header.encode());
                ours_adts.extend_from_slice(packet.data);
            }
        }
    }
    assert_eq!(ours_adts.len(), ffmpeg_adts.len());
    assert!(
        ours_adts == ffmpeg_adts,
        "ADTS stream differs from ffmpeg's"
    );
    assert!(
        rewritten == flv_bytes,
        "rewritten FLV differs from ffmpeg's"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn h265_access_units_remuxed_to_ts_are_valid() {
    if !tools_present("the TS validity tests") {
        return;
    }
    let dir = work_dir("h265");
    let Some(raw) = encode_hevc(&dir) else {
        return;
    };
    let hevc = split_hevc(&raw);
    let config = hevc.config();
    let HevcStream { access_units, .. } = hevc;
    assert_eq!(access_units.len(), 50);
    let parsed_sps = config.first_sps().unwrap();
    assert_eq!((parsed_sps.width, parsed_sps.height), (640, 360));
    // Through the record's wire form, as it would arrive in an FLV sequence header.
    let mut record = Vec::new();
    config.write(&mut record);
    let config = HevcDecoderConfig::parse(&record).unwrap();
    let writer = AnnexBWriter::h265(&config);

    let mut muxer = TsMuxer::new(Some(VideoStreamType::H265), None);
    let mut ts = Vec::new();
    let mut scratch = Vec::new();
    for (index, (avcc, irap)) in access_units.iter().enumerate() {
        scratch.clear();
        let info = writer.write(avcc, *irap, &mut scratch).unwrap();
        assert_eq!(info.random_access, *irap);
        let time = index as i64 * 40;
        let data = [&scratch[..]];
        muxer
            .write_frame(
                &mut ts,
                &Frame::from_ms(Track::Video, time, time, *irap, &data),
            )
            .unwrap();
    }
    let ts_path = dir.join("out.ts");
    std::fs::write(&ts_path, &ts).unwrap();
    let video = probe(
        &ts_path,
        &[
            "-select_streams",
            "v:0",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
        ],
    );
    assert_eq!(value(&video, "codec_name"), "hevc");
    assert_eq!(value(&video, "width"), "640");
    assert_eq!(value(&video, "height"), "360");
    assert_eq!(value(&video, "nb_read_frames"), "50");
    assert_decodes(&ts_path, "ffmpeg");
    let _ = std::fs::remove_dir_all(&dir);
}
