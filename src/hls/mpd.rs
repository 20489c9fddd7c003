//! The MPEG-DASH manifest: a dynamic MPD (ISO/IEC 23009-1, live profile) with one adaptation
//! set per track, `SegmentTemplate` with `$Number$` and a `SegmentTimeline`, over the same cut
//! points as HLS. Rendered once per segment.

use std::fmt::Write;

use super::playlist::iso8601;
use super::{DashTrack, HlsState, Naming};

pub fn render(state: &HlsState, naming: &Naming, now_unix_ms: u64) -> String {
    let settings = &state.settings;
    // The segments inside the time-shift window, newest last.
    let mut kept = 0.0;
    let mut count = 0;
    for segment in state.segments.iter().rev() {
        if kept >= settings.dash_timeshift && count > 0 {
            break;
        }
        kept += segment.duration;
        count += 1;
    }
    let listed: Vec<_> = state
        .segments
        .iter()
        .skip(state.segments.len() - count)
        .collect();
    let max_duration = listed.iter().map(|s| s.duration).fold(0.0, f64::max);
    let mut out = String::with_capacity(1024 + 64 * listed.len());
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" \
         profiles=\"urn:mpeg:dash:profile:isoff-live:2011\" type=\"dynamic\" \
         availabilityStartTime=\"{}\" publishTime=\"{}\" \
         minimumUpdatePeriod=\"PT{:.3}S\" minBufferTime=\"PT{:.3}S\" \
         timeShiftBufferDepth=\"PT{:.3}S\" suggestedPresentationDelay=\"PT{:.3}S\" \
         maxSegmentDuration=\"PT{:.3}S\">\n\
         <Period id=\"0\" start=\"PT0S\">\n",
        iso8601(state.dash_epoch_unix_ms),
        iso8601(now_unix_ms),
        settings.dash_update_period,
        settings.fragment,
        settings.dash_timeshift,
        // Players learn of new segments only by reloading the MPD: stay an update period
        // plus a segment behind the edge, and never less than two segments.
        (max_duration * 2.0).max(settings.dash_update_period + max_duration.max(settings.fragment)),
        max_duration.max(settings.fragment),
    );
    let uri = |path: &str| Naming::relative(&naming.mpd, path);
    for track in [DashTrack::Video, DashTrack::Audio] {
        let Some(info) = &state.dash_tracks[track.index()] else {
            continue;
        };
        let pieces: Vec<_> = listed
            .iter()
            .filter_map(|s| s.dash[track.index()].as_ref().map(|p| (s.seq, p)))
            .collect();
        let Some(&(first_seq, _)) = pieces.first() else {
            continue;
        };
        let bandwidth = {
            let bytes: usize = pieces.iter().map(|(_, p)| p.data.len()).sum();
            let ticks: u64 = pieces.iter().map(|(_, p)| p.duration).sum();
            (bytes as u64 * 8 * u64::from(info.timescale))
                .checked_div(ticks)
                .unwrap_or(0)
        };
        match track {
            DashTrack::Video => {
                let _ = writeln!(
                    out,
                    "<AdaptationSet id=\"0\" contentType=\"video\" mimeType=\"video/mp4\" \
                     segmentAlignment=\"true\" startWithSAP=\"1\">\n\
                     <Representation id=\"video\" codecs=\"{}\" width=\"{}\" height=\"{}\" \
                     bandwidth=\"{bandwidth}\">",
                    info.codecs, info.width, info.height
                );
            }
            DashTrack::Audio => {
                let _ = writeln!(
                    out,
                    "<AdaptationSet id=\"1\" contentType=\"audio\" mimeType=\"audio/mp4\" \
                     segmentAlignment=\"true\" startWithSAP=\"1\">\n\
                     <Representation id=\"audio\" codecs=\"{}\" audioSamplingRate=\"{}\" \
                     bandwidth=\"{bandwidth}\">\n\
                     <AudioChannelConfiguration \
                     schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" \
                     value=\"{}\"/>",
                    info.codecs, info.sample_rate, info.channels
                );
            }
        }
        let media = uri(&naming.dash_segment[track.index()]).replace("[seq]", "$Number$");
        let _ = writeln!(
            out,
            "<SegmentTemplate timescale=\"{}\" initialization=\"{}\" media=\"{media}\" \
             startNumber=\"{first_seq}\">\n<SegmentTimeline>",
            info.timescale,
            uri(&naming.dash_init[track.index()]),
        );
        let mut expected = None;
        for (_, piece) in &pieces {
            // `t` only where the timeline does not simply continue.
            if expected == Some(piece.start) {
                let _ = writeln!(out, "<S d=\"{}\"/>", piece.duration);
            } else {
                let _ = writeln!(out, "<S t=\"{}\" d=\"{}\"/>", piece.start, piece.duration);
            }
            expected = Some(piece.start + piece.duration);
        }
        out.push_str(
            "</SegmentTimeline>\n</SegmentTemplate>\n</Representation>\n</AdaptationSet>\n",
        );
    }
    out.push_str("</Period>\n");
    // Where players read the server's clock (the `Date` of a HEAD of the MPD), rather than a
    // public time server they may not reach.
    let _ = writeln!(
        out,
        "<UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:http-head:2014\" value=\"/{}\"/>",
        naming.mpd
    );
    out.push_str("</MPD>\n");
    out
}
