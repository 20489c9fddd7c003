//! The CMAF initialisation segment: `ftyp` + `moov` (with `mvex`/`trex`), built with `mp4-atom`.
//!
//! Decoder configuration records arrive as bytes; `mp4-atom` models them as structs, so each
//! record is decoded into its `mp4-atom` form and encoded back. That normalises reserved bits
//! but keeps every parameter set and field. Samples tables (`stts`, `stsc`, `stsz`, `stco`) are
//! empty, as fragmented files require: every sample is described by a `moof`.

use mp4_atom::{
    Atom, Audio, Av01, Av1c, Avc1, Avcc, Codec, Dinf, Dops, Dref, Encode, Esds, FourCC, Ftyp, Hdlr,
    Hvc1, Hvcc, Mdhd, Mdia, Minf, Moov, Mp4a, Mvex, Mvhd, Opus, Smhd, Stbl, Stco, Stsd, Tkhd, Trak,
    Trex, Url, Visual, Vmhd, esds,
};

use super::{Fmp4Error, MAX_RECORD_LEN, MAX_TRACKS, TrackCodec, TrackInfo};

/// MPEG-4 Audio in an ES descriptor (ISO/IEC 14496-1 objectTypeIndication).
const OBJECT_TYPE_MPEG4_AUDIO: u8 = 0x40;
/// AudioStream (ISO/IEC 14496-1 streamType).
const STREAM_TYPE_AUDIO: u8 = 0x05;

/// ftyp (major iso6, compatible iso6, cmfc, mp41 or similar) + moov with mvex/trex for each track.
///
/// Appends to `out`; on error `out` is left as it was.
pub fn write_init(tracks: &[TrackInfo], out: &mut Vec<u8>) -> Result<(), Fmp4Error> {
    validate(tracks)?;

    let ftyp = Ftyp {
        major_brand: FourCC::new(b"iso6"),
        minor_version: 0,
        // iso6: tfdt / trun v1 with signed offsets; cmfc: CMAF; mp41 for older players.
        compatible_brands: vec![
            FourCC::new(b"iso6"),
            FourCC::new(b"cmfc"),
            FourCC::new(b"mp41"),
        ],
    };

    let mut traks = Vec::with_capacity(tracks.len());
    for track in tracks {
        traks.push(trak(track)?);
    }
    let next_track_id = tracks
        .iter()
        .map(|track| track.id)
        .max()
        .and_then(|id| id.checked_add(1))
        // All ids taken up to u32::MAX: 0 is not a valid next id, but 0xffffffff means
        // "search for one" (ISO/IEC 14496-12 §8.2.2.3).
        .unwrap_or(u32::MAX);

    let moov = Moov {
        mvhd: Mvhd {
            // The movie timescale only scales mvhd/tkhd durations, all 0 (unknown) when live.
            timescale: 1000,
            rate: 1.into(),
            volume: 1.into(),
            next_track_id,
            ..Default::default()
        },
        mvex: Some(Mvex {
            mehd: None,
            trex: tracks
                .iter()
                .map(|track| Trex {
                    track_id: track.id,
                    default_sample_description_index: 1,
                    // Every trun carries per-sample duration, size and flags, so the defaults
                    // here are never used.
                    ..Default::default()
                })
                .collect(),
        }),
        trak: traks,
        ..Default::default()
    };

    let start = out.len();
    let result = ftyp
        .encode(out)
        .and_then(|()| moov.encode(out))
        .map_err(|err| Fmp4Error::Encode {
            what: "moov",
            reason: err.to_string(),
        });
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn validate(tracks: &[TrackInfo]) -> Result<(), Fmp4Error> {
    if tracks.is_empty() {
        return Err(Fmp4Error::NoTracks);
    }
    if tracks.len() > MAX_TRACKS {
        return Err(Fmp4Error::TooManyTracks(tracks.len()));
    }
    for (index, track) in tracks.iter().enumerate() {
        if track.id == 0 {
            return Err(Fmp4Error::ZeroTrackId);
        }
        if tracks[..index].iter().any(|other| other.id == track.id) {
            return Err(Fmp4Error::DuplicateTrackId(track.id));
        }
        if track.timescale == 0 {
            return Err(Fmp4Error::ZeroTimescale(track.id));
        }
        let (what, len) = match &track.codec {
            TrackCodec::Avc { record, .. } => ("avcC", record.len()),
            TrackCodec::Hevc { record, .. } => ("hvcC", record.len()),
            TrackCodec::Av1 { record, .. } => ("av1C", record.len()),
            TrackCodec::Aac { config, .. } => ("AudioSpecificConfig", config.len()),
            TrackCodec::Opus { .. } => ("dOps", 0),
        };
        if len > MAX_RECORD_LEN {
            return Err(Fmp4Error::RecordTooLong {
                track_id: track.id,
                what,
                len,
            });
        }
    }
    Ok(())
}

fn trak(track: &TrackInfo) -> Result<Trak, Fmp4Error> {
    let video = track.codec.is_video();
    let (width, height) = match track.codec {
        TrackCodec::Avc { width, height, .. }
        | TrackCodec::Hevc { width, height, .. }
        | TrackCodec::Av1 { width, height, .. } => (width, height),
        TrackCodec::Aac { .. } | TrackCodec::Opus { .. } => (0, 0),
    };
    let minf_header = if video {
        Minf {
            vmhd: Some(Vmhd::default()),
            ..Default::default()
        }
    } else {
        Minf {
            smhd: Some(Smhd::default()),
            ..Default::default()
        }
    };
    Ok(Trak {
        tkhd: Tkhd {
            track_id: track.id,
            enabled: true,
            in_movie: true,
            // Audio tracks play at full volume; video tracks have none.
            volume: if video { 0 } else { 1 }.into(),
            // 16.16 fixed point presentation size.
            width: width.into(),
            height: height.into(),
            ..Default::default()
        },
        mdia: Mdia {
            mdhd: Mdhd {
                timescale: track.timescale,
                language: "und".to_owned(),
                ..Default::default()
            },
            hdlr: Hdlr {
                handler: FourCC::new(if video { b"vide" } else { b"soun" }),
                name: if video {
                    "VideoHandler"
                } else {
                    "SoundHandler"
                }
                .to_owned(),
            },
            minf: Minf {
                dinf: Dinf {
                    // One self-contained data reference: the media is in this file.
                    dref: Dref {
                        urls: vec![Url::default()],
                    },
                },
                stbl: Stbl {
                    stsd: Stsd {
                        codecs: vec![sample_entry(track)?],
                    },
                    stco: Some(Stco::default()),
                    ..Default::default()
                },
                ..minf_header
            },
        },
        ..Default::default()
    })
}

fn sample_entry(track: &TrackInfo) -> Result<Codec, Fmp4Error> {
    let visual = |width: u16, height: u16| Visual {
        data_reference_index: 1,
        width,
        height,
        ..Default::default()
    };
    let audio = |sample_rate: u32, channels: u16| Audio {
        data_reference_index: 1,
        channel_count: channels,
        sample_size: 16,
        // The field is 16.16: rates above 65535 Hz cannot be expressed and are written as 0;
        // decoders take the real rate from the codec configuration and `mdhd`.
        sample_rate: u16::try_from(sample_rate).unwrap_or(0).into(),
    };
    let bad_record = |what: &'static str, err: mp4_atom::Error| Fmp4Error::BadRecord {
        track_id: track.id,
        what,
        reason: err.to_string(),
    };
    Ok(match &track.codec {
        TrackCodec::Avc {
            record,
            width,
            height,
        } => Avc1 {
            visual: visual(*width, *height),
            avcc: decode_record::<Avcc>(record).map_err(|err| bad_record("avcC", err))?,
            ..Default::default()
        }
        .into(),
        TrackCodec::Hevc {
            record,
            width,
            height,
        } => Hvc1 {
            visual: visual(*width, *height),
            hvcc: decode_record::<Hvcc>(record).map_err(|err| bad_record("hvcC", err))?,
            ..Default::default()
        }
        .into(),
        TrackCodec::Av1 {
            record,
            width,
            height,
        } => Av01 {
            visual: visual(*width, *height),
            av1c: decode_record::<Av1c>(record).map_err(|err| bad_record("av1C", err))?,
            ..Default::default()
        }
        .into(),
        TrackCodec::Aac {
            config,
            sample_rate,
            channels,
        } => {
            if config.is_empty() {
                return Err(Fmp4Error::BadRecord {
                    track_id: track.id,
                    what: "AudioSpecificConfig",
                    reason: "empty".to_owned(),
                });
            }
            Mp4a {
                audio: audio(*sample_rate, *channels),
                esds: Esds {
                    es_desc: esds::EsDescriptor {
                        // ES_ID 0 in files: the track id identifies the stream (14496-14 §3.1.2).
                        es_id: 0,
                        dec_config: esds::DecoderConfig {
                            object_type_indication: OBJECT_TYPE_MPEG4_AUDIO,
                            stream_type: STREAM_TYPE_AUDIO,
                            up_stream: 0,
                            buffer_size_db: Default::default(),
                            max_bitrate: 0,
                            avg_bitrate: 0,
                            // With `raw` set, mp4-atom writes the config bytes verbatim.
                            dec_specific: Some(esds::DecoderSpecific {
                                raw: config.clone(),
                                ..Default::default()
                            }),
                        },
                        sl_config: esds::SLConfig::default(),
                    },
                },
                btrt: None,
                taic: None,
            }
            .into()
        }
        TrackCodec::Opus {
            sample_rate,
            channels,
            pre_skip,
        } => {
            // mp4-atom's dOps only has channel mapping family 0, which is mono or stereo;
            // more channels need family 1 and a mapping table it cannot write.
            let output_channel_count = match u8::try_from(*channels) {
                Ok(count @ 1..=2) => count,
                _ => {
                    return Err(Fmp4Error::Unsupported {
                        track_id: track.id,
                        reason: "Opus with other than 1 or 2 channels",
                    });
                }
            };
            Opus {
                // Opus in ISOBMFF always decodes at 48 kHz; the entry says so whatever the
                // input rate was (that goes in dOps).
                audio: audio(48_000, *channels),
                dops: Dops {
                    output_channel_count,
                    pre_skip: *pre_skip,
                    input_sample_rate: *sample_rate,
                    output_gain: 0,
                },
                btrt: None,
            }
            .into()
        }
    })
}

/// Decodes a bare configuration record (the box body, no header) into its `mp4-atom` form.
/// Trailing bytes are an error: they would be dropped silently otherwise.
fn decode_record<T: Atom>(record: &[u8]) -> Result<T, mp4_atom::Error> {
    let mut body = record;
    let atom = T::decode_body(&mut body)?;
    if body.is_empty() {
        Ok(atom)
    } else {
        Err(mp4_atom::Error::UnderDecode(T::KIND))
    }
}
