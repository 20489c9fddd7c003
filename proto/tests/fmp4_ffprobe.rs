//! Real media through the fMP4 writer: ffmpeg encodes H.264 + AAC into FLV (as an RTMP
//! publisher would send it); our FLV reader and codec helpers turn the tags into samples,
//! `sluice_proto::fmp4` writes an init segment and one fragment per GOP, and ffprobe / ffmpeg
//! must read the result back with the right codecs, size and frame counts and decode it without
//! an error. H.265 likewise (from a raw x265 stream), checking the `hvc1` sample entry.
//!
//! Skips (with a message) when ffmpeg or ffprobe is not installed, or lacks libx265.

mod common;

use common::{
    HevcStream, assert_decodes, encode_flv, encode_hevc, probe_streams, split_hevc, stream,
    tools_present, work_dir,
};
use sluice_proto::codec::{
    AudioPacket, AudioPacketKind, AudioSpecificConfig, AvcDecoderConfig, VideoPacket,
    VideoPacketKind,
};
use sluice_proto::flv::{FileHeader, Tag};
use sluice_proto::fmp4::{
    Sample, TrackCodec, TrackInfo, TrackRun, codec_string, write_fragment, write_init,
};

const VIDEO_TIMESCALE: u32 = 90_000;

/// One sample of a track, with its decode time in the track's timescale.
struct Media {
    dts: u64,
    composition_offset: i32,
    keyframe: bool,
    data: Vec<u8>,
}

/// Turns timed media into fMP4 samples: each duration is the distance to the next decode
/// time, the last repeats the one before (`last_duration` when there is only one).
fn samples(media: &[Media], last_duration: u32) -> Vec<Sample> {
    media
        .iter()
        .enumerate()
        .map(|(i, m)| Sample {
            duration: media
                .get(i + 1)
                .map(|next| u32::try_from(next.dts - m.dts).unwrap())
                .or_else(|| {
                    i.checked_sub(1)
                        .map(|prev| u32::try_from(m.dts - media[prev].dts).unwrap())
                })
                .unwrap_or(last_duration),
            size: m.data.len() as u32,
            keyframe: m.keyframe,
            composition_offset: m.composition_offset,
        })
        .collect()
}

/// One track's share of the stream, and which of its samples go into which fragment.
struct TrackMedia {
    id: u32,
    media: Vec<Media>,
    samples: Vec<Sample>,
}

/// Writes one fragment per range of `cuts` (sample index ranges per track, same length) as
/// a live server would: fMP4 header from `write_fragment`, then the sample bytes appended
/// run by run. Returns where each fragment starts in `out`.
fn write_fragments(
    tracks: &[TrackMedia],
    cuts: &[Vec<std::ops::Range<usize>>],
    out: &mut Vec<u8>,
) -> Vec<usize> {
    let fragments = cuts[0].len();
    let mut starts = Vec::with_capacity(fragments);
    for fragment in 0..fragments {
        let runs: Vec<TrackRun<'_>> = tracks
            .iter()
            .zip(cuts)
            .filter(|(_, ranges)| !ranges[fragment].is_empty())
            .map(|(track, ranges)| TrackRun {
                track_id: track.id,
                base_decode_time: track.media[ranges[fragment].start].dts,
                samples: &track.samples[ranges[fragment].clone()],
            })
            .collect();
        let start = out.len();
        starts.push(start);
        let payload = write_fragment(fragment as u32 + 1, &runs, out).unwrap();
        let header_len = out.len() - start;
        let mut appended = 0u64;
        for (track, ranges) in tracks.iter().zip(cuts) {
            for m in &track.media[ranges[fragment].clone()] {
                out.extend_from_slice(&m.data);
                appended += m.data.len() as u64;
            }
        }
        assert_eq!(appended, payload);
        // The mdat header is the last 8 bytes `write_fragment` wrote.
        let mdat_at = start + header_len - 8;
        assert_eq!(&out[mdat_at + 4..mdat_at + 8], b"mdat");
        assert_eq!(
            u64::from(u32::from_be_bytes(
                out[mdat_at..mdat_at + 4].try_into().unwrap()
            )),
            8 + payload
        );
    }
    starts
}

/// Index ranges that start a new range at every keyframe.
fn gops(media: &[Media]) -> Vec<std::ops::Range<usize>> {
    let mut starts: Vec<usize> = media
        .iter()
        .enumerate()
        .filter(|(i, m)| m.keyframe || *i == 0)
        .map(|(i, _)| i)
        .collect();
    starts.push(media.len());
    starts.windows(2).map(|w| w[0]..w[1]).collect()
}

#[test]
fn h264_aac_from_flv_to_fmp4_is_valid() {
    if !tools_present("the fMP4 validity tests") {
        return;
    }
    let dir = work_dir("fmp4-h264");
    // Default x264 settings use B-frames, so composition offsets are exercised.
    let flv_path = encode_flv(&dir, 3);
    let flv = std::fs::read(&flv_path).unwrap();

    let (header, mut offset) = FileHeader::parse(&flv).unwrap();
    assert!(header.has_audio && header.has_video);
    let mut avc_record = None;
    let mut aac_config = None;
    let mut video = Vec::new();
    let mut audio_ms = Vec::new();
    while offset < flv.len() {
        let (tag, consumed) = Tag::parse(&flv[offset..]).unwrap();
        offset += consumed;
        let dts_ms = i64::from(tag.timestamp);
        match tag.tag_type {
            9 => {
                let packet = VideoPacket::parse(tag.body).unwrap();
                match packet.kind {
                    VideoPacketKind::SequenceHeader => avc_record = Some(packet.data.to_vec()),
                    VideoPacketKind::CodedFrames => video.push(Media {
                        dts: u64::try_from(dts_ms).unwrap() * 90,
                        composition_offset: (packet.pts_ms(dts_ms) - dts_ms) as i32 * 90,
                        keyframe: packet.keyframe,
                        // Length-prefixed NAL units: exactly an MP4 sample.
                        data: packet.data.to_vec(),
                    }),
                    _ => {}
                }
            }
            8 => {
                let packet = AudioPacket::parse(tag.body).unwrap();
                match packet.kind {
                    AudioPacketKind::SequenceHeader => aac_config = Some(packet.data.to_vec()),
                    AudioPacketKind::CodedFrames => audio_ms.push((dts_ms, packet.data.to_vec())),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    let avc_record = avc_record.expect("AVC sequence header");
    let aac_config = aac_config.expect("AAC sequence header");
    let asc = AudioSpecificConfig::parse(&aac_config).unwrap();
    let sample_rate = asc.sampling_frequency;
    assert_eq!(sample_rate, 44_100);
    let frame_samples = asc.samples_per_frame();
    // FLV keeps audio time in whole milliseconds; an AAC frame is exactly 1024 samples, so
    // decode times count frames from the first timestamp instead of rounding each one.
    let first_audio = u64::try_from(audio_ms[0].0).unwrap() * u64::from(sample_rate) / 1000;
    let audio: Vec<Media> = audio_ms
        .into_iter()
        .enumerate()
        .map(|(i, (_, data))| Media {
            dts: first_audio + i as u64 * u64::from(frame_samples),
            composition_offset: 0,
            keyframe: true,
            data,
        })
        .collect();
    let config = AvcDecoderConfig::parse(&avc_record).unwrap();
    assert_eq!(config.nalu_length_size, 4);

    let tracks = [
        TrackInfo {
            id: 1,
            timescale: VIDEO_TIMESCALE,
            codec: TrackCodec::Avc {
                record: avc_record.clone(),
                width: 1280,
                height: 720,
            },
        },
        TrackInfo {
            id: 2,
            timescale: sample_rate,
            codec: TrackCodec::Aac {
                config: aac_config.clone(),
                sample_rate,
                channels: 2,
            },
        },
    ];
    assert_eq!(codec_string(&tracks[0].codec), config.codec_string());
    assert_eq!(codec_string(&tracks[1].codec), "mp4a.40.2");
    let mut out = Vec::new();
    write_init(&tracks, &mut out).unwrap();
    let init_len = out.len();

    // One fragment per GOP; audio up to the next GOP's start goes with it.
    let video_cuts = gops(&video);
    assert_eq!(video_cuts.len(), 3, "a keyframe per second");
    let audio_cuts: Vec<_> = video_cuts
        .iter()
        .enumerate()
        .map(|(i, gop)| {
            let time_of = |index: usize| {
                video.get(index).map_or(u64::MAX, |m| {
                    m.dts * u64::from(sample_rate) / u64::from(VIDEO_TIMESCALE)
                })
            };
            let from = if i == 0 { 0 } else { time_of(gop.start) };
            let to = time_of(gop.end);
            let start = audio
                .iter()
                .position(|a| a.dts >= from)
                .unwrap_or(audio.len());
            let end = audio
                .iter()
                .position(|a| a.dts >= to)
                .unwrap_or(audio.len());
            start..end
        })
        .collect();
    assert_eq!(audio_cuts.last().unwrap().end, audio.len());
    let media = [
        TrackMedia {
            id: 1,
            samples: samples(&video, VIDEO_TIMESCALE / 25),
            media: video,
        },
        TrackMedia {
            id: 2,
            samples: samples(&audio, frame_samples),
            media: audio,
        },
    ];
    let starts = write_fragments(&media, &[video_cuts.clone(), audio_cuts], &mut out);
    let mp4_path = dir.join("out.mp4");
    std::fs::write(&mp4_path, &out).unwrap();

    let streams = probe_streams(&mp4_path);
    assert_eq!(streams.len(), 2);
    let v = stream(&streams, "video");
    assert_eq!(v["codec_name"], "h264");
    assert_eq!(v["codec_tag_string"], "avc1");
    assert_eq!(v["profile"], "High");
    assert_eq!(v["width"], 1280);
    assert_eq!(v["height"], 720);
    assert_eq!(v["r_frame_rate"], "25/1");
    assert_eq!(
        v["nb_read_frames"],
        media[0].media.len().to_string().as_str()
    );
    assert_eq!(media[0].media.len(), 75);
    let a = stream(&streams, "audio");
    assert_eq!(a["codec_name"], "aac");
    assert_eq!(a["codec_tag_string"], "mp4a");
    assert_eq!(a["sample_rate"], "44100");
    assert_eq!(a["channels"], 2);
    assert_eq!(
        a["nb_read_frames"],
        media[1].media.len().to_string().as_str()
    );
    assert_decodes(&mp4_path, "ffmpeg");

    // A late joiner: the init segment and only the last fragment still decode cleanly, since
    // each fragment starts with a keyframe and carries its own decode times.
    let last = *starts.last().unwrap();
    let late: Vec<u8> = [&out[..init_len], &out[last..]].concat();
    let late_path = dir.join("late.mp4");
    std::fs::write(&late_path, &late).unwrap();
    let streams = probe_streams(&late_path);
    let v = stream(&streams, "video");
    let last_gop = video_cuts.last().unwrap().len();
    assert_eq!(v["nb_read_frames"], last_gop.to_string().as_str());
    assert_decodes(&late_path, "late joiner");
    if std::env::var_os("SLUICE_KEEP_FMP4").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn h265_access_units_to_fmp4_are_valid_hvc1() {
    if !tools_present("the fMP4 validity tests") {
        return;
    }
    let dir = work_dir("fmp4-h265");
    let Some(raw) = encode_hevc(&dir) else {
        return;
    };
    let hevc = split_hevc(&raw);
    let config = hevc.config();
    let HevcStream { access_units, .. } = hevc;
    assert_eq!(access_units.len(), 50);
    let parsed_sps = config.first_sps().unwrap();
    assert_eq!((parsed_sps.width, parsed_sps.height), (640, 360));
    let mut record = Vec::new();
    config.write(&mut record);

    let track = TrackInfo {
        id: 1,
        timescale: VIDEO_TIMESCALE,
        codec: TrackCodec::Hevc {
            record,
            width: 640,
            height: 360,
        },
    };
    assert!(codec_string(&track.codec).starts_with("hvc1.1."));
    let mut out = Vec::new();
    write_init(std::slice::from_ref(&track), &mut out).unwrap();
    let frame = u64::from(VIDEO_TIMESCALE / 25);
    let video: Vec<Media> = access_units
        .into_iter()
        .enumerate()
        .map(|(i, (data, irap))| Media {
            dts: i as u64 * frame,
            composition_offset: 0,
            keyframe: irap,
            data,
        })
        .collect();
    let cuts = gops(&video);
    assert_eq!(cuts.len(), 2);
    let media = [TrackMedia {
        id: 1,
        samples: samples(&video, frame as u32),
        media: video,
    }];
    write_fragments(&media, &[cuts], &mut out);
    let mp4_path = dir.join("out.mp4");
    std::fs::write(&mp4_path, &out).unwrap();

    let streams = probe_streams(&mp4_path);
    assert_eq!(streams.len(), 1);
    let v = stream(&streams, "video");
    assert_eq!(v["codec_name"], "hevc");
    assert_eq!(v["codec_tag_string"], "hvc1");
    assert_eq!(v["width"], 640);
    assert_eq!(v["height"], 360);
    assert_eq!(v["nb_read_frames"], "50");
    assert_decodes(&mp4_path, "ffmpeg");
    let _ = std::fs::remove_dir_all(&dir);
}
