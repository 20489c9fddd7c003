//! The HLS media playlist (RFC 8216, and the Low-Latency additions of RFC 8216bis), rendered
//! once per change from a stream's segments and parts.

use std::fmt::Write;

use super::{HlsState, Naming};

/// How many target durations from the live edge keep their `EXT-X-PART` lines (the spec asks
/// for at least three).
const PART_HORIZON_TARGETS: f64 = 3.0;

/// Renders the media playlist.
pub fn render(state: &HlsState, naming: &Naming) -> String {
    let settings = &state.settings;
    let uri = |path: &str| Naming::relative(&naming.playlist, path);
    let mut out = String::with_capacity(512 + 96 * state.segments.len());
    let version = if settings.low_latency {
        9
    } else if settings.fmp4 {
        7
    } else {
        3
    };
    let _ = writeln!(out, "#EXTM3U\n#EXT-X-VERSION:{version}");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{}", state.target_duration);
    if settings.low_latency {
        let part_target = settings.part_target;
        let _ = writeln!(
            out,
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3}",
            part_target * 3.0
        );
        let _ = writeln!(out, "#EXT-X-PART-INF:PART-TARGET={part_target:.3}");
    }
    let listed: Vec<_> = listed_segments(state).collect();
    let first_seq = listed
        .first()
        .map(|s| s.seq)
        .or(state.open.as_ref().map(|s| s.seq))
        .unwrap_or(state.next_seq);
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{first_seq}");
    // Discontinuities before the first listed segment: forgotten ones and kept-unlisted ones.
    let unlisted = state.segments.len() - listed.len();
    let discontinuity_seq = state.discontinuity_seq
        + state
            .segments
            .iter()
            .take(unlisted)
            .filter(|s| s.discontinuity)
            .count() as u64;
    if discontinuity_seq > 0 {
        let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_seq}");
    }
    if settings.fmp4 {
        let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", uri(&naming.init));
    }
    // Parts are listed for the segments within the last few target durations.
    let total: f64 = listed.iter().map(|s| s.duration).sum();
    let horizon = total - PART_HORIZON_TARGETS * state.target_duration as f64;
    let mut elapsed = 0.0;
    for segment in &listed {
        if segment.discontinuity {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        write_program_date_time(&mut out, segment.started_unix_ms);
        if settings.low_latency && elapsed + segment.duration >= horizon {
            write_parts(&mut out, naming, segment.seq, &segment.parts, &uri);
        }
        elapsed += segment.duration;
        let _ = writeln!(
            out,
            "#EXTINF:{:.3},\n{}",
            segment.duration,
            uri(&naming.segment_path(segment.seq))
        );
    }
    if settings.low_latency && state.publishing {
        let (next_seq, next_part) = match &state.open {
            Some(open) => {
                if open.discontinuity {
                    out.push_str("#EXT-X-DISCONTINUITY\n");
                }
                if !open.parts.is_empty() {
                    write_program_date_time(&mut out, open.started_unix_ms);
                }
                write_parts(&mut out, naming, open.seq, &open.parts, &uri);
                (open.seq, open.parts.len() as u32)
            }
            None => (state.next_seq, 0),
        };
        let _ = writeln!(
            out,
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"",
            uri(&naming.part_path(next_seq, next_part))
        );
    }
    out
}

/// The complete segments the playlist lists: those inside the window.
pub fn listed_segments(state: &HlsState) -> impl Iterator<Item = &super::Segment> {
    let mut kept = 0.0;
    let mut count = 0;
    for segment in state.segments.iter().rev() {
        if kept >= state.settings.window && count > 0 {
            break;
        }
        kept += segment.duration;
        count += 1;
    }
    state.segments.iter().skip(state.segments.len() - count)
}

fn write_parts(
    out: &mut String,
    naming: &Naming,
    seq: u64,
    parts: &[super::Part],
    uri: &dyn Fn(&str) -> String,
) {
    for (index, part) in parts.iter().enumerate() {
        let _ = write!(
            out,
            "#EXT-X-PART:DURATION={:.3},URI=\"{}\"",
            part.duration,
            uri(&naming.part_path(seq, index as u32))
        );
        if part.independent {
            out.push_str(",INDEPENDENT=YES");
        }
        out.push('\n');
    }
}

fn write_program_date_time(out: &mut String, unix_ms: u64) {
    if unix_ms == 0 {
        return;
    }
    let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", iso8601(unix_ms));
}

/// `2026-11-25T17:34:59.123Z` from Unix milliseconds.
pub fn iso8601(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = crate::static_files::civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        unix_ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_795_628_099_123), "2026-11-25T17:34:59.123Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
