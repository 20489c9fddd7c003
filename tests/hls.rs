//! HLS and DASH as players see them, from an ffmpeg (or, for H.265, a test RTMP client)
//! publisher:
//!
//! - MPEG-TS and fMP4 HLS: playlists that m3u8-rs parses, with a target duration that bounds
//!   every `EXTINF`, ~1 s segments (hls_fragment = 1, 1 s GOP), a media sequence that moves
//!   with the window; ffprobe reads the playlist as H.264 320x240 + AAC (`avc1` in fMP4);
//!   every segment starts on a video keyframe, decode timestamps run on from one segment to
//!   the next without gaps or overlaps, and the segments (after the init segment, for fMP4)
//!   decode to the right number of frames with no decoder error;
//! - a republish within `hls_dispose` continues the sequence numbers behind one
//!   `EXT-X-DISCONTINUITY`, counted by `EXT-X-DISCONTINUITY-SEQUENCE` once it leaves the
//!   window; fMP4 and DASH decode times run on across it; after the last publisher leaves
//!   the playlist is served for `hls_dispose`, then 404;
//! - Low-Latency HLS (fMP4 and TS): well-formed `EXT-X-SERVER-CONTROL` / `EXT-X-PART-INF` /
//!   `EXT-X-PART` / `EXT-X-PRELOAD-HINT`, parts that add up to their segment, an independent
//!   first part, blocking playlist reloads (part and segment) and preload-hinted part
//!   requests that wait for the part and then return it, on keep-alive connections too;
//!   400 for an `_HLS_msn` too far ahead, 503 when a part never comes, an answer at once
//!   when the publisher leaves;
//! - DASH: a dynamic MPD with a SegmentTimeline per track that ffprobe reads, and every init
//!   and segment it names, decoding to the frames the timeline promises;
//! - H.265 in fMP4 HLS reads as `hevc` / `hvc1`;
//! - audio-only and video-only streams are segmented too;
//! - bad requests get 404 or 400 at once, never a panic.
//! - a request pipelined behind a parked one is answered after it; part URIs exist only with
//!   LL-HLS.
//!
//! Every test runs on each I/O backend.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::hls::{self as hlsc, LlPlaylist};
use common::http_client::{HttpConn, Response, request_bytes};
use common::{
    FfmpegPublisher, Io, Packet, PublishOpts, Server, ServerConfig, TempDir, assert_av_streams,
    assert_starts_on_keyframe, dts_of, ffprobe_frame_counts, ffprobe_packets, ffprobe_streams,
    wait_until,
};
use m3u8_rs::MediaPlaylist;

const FPS: f64 = 30.0;
/// One video frame, in seconds.
const FRAME: f64 = 1.0 / FPS;
/// One AAC frame at 44.1 kHz, in seconds.
const AAC_FRAME: f64 = 1024.0 / 44_100.0;
const PLAYLIST: &str = "/live/s.m3u8";
const M3U8_TYPE: &str = "application/vnd.apple.mpegurl";

// ---------------------------------------------------------------------------------------------
// Shared checks

fn assert_status(io: Io, path: &str, response: &Response, status: u16) {
    assert_eq!(
        response.status,
        status,
        "[{io}] GET {path}: expected {status}, got:\n{}\n\n{}",
        response.head_text(),
        String::from_utf8_lossy(&response.body[..response.body.len().min(2000)])
    );
}

/// GET that must answer 200; returns the response.
fn get_ok(server: &Server, path: &str) -> Response {
    let response = hlsc::get(server.http_port, path);
    assert_status(server.io, path, &response, 200);
    response
}

fn parse_m3u8(io: Io, body: &[u8]) -> MediaPlaylist {
    m3u8_rs::parse_media_playlist_res(body).unwrap_or_else(|e| {
        panic!(
            "[{io}] m3u8-rs cannot parse the playlist ({e:?}):\n{}",
            String::from_utf8_lossy(body)
        )
    })
}

/// Polls `path` (every 100 ms) until it is a playlist for which `pred` holds.
fn wait_playlist(
    server: &Server,
    path: &str,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&MediaPlaylist) -> bool,
) -> (Response, MediaPlaylist) {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("(no 200 response)");
    loop {
        let response = hlsc::get(server.http_port, path);
        if response.status == 200 {
            let playlist = parse_m3u8(server.io, &response.body);
            if pred(&playlist) {
                return (response, playlist);
            }
            last = response.body_text();
        }
        assert!(
            Instant::now() < deadline,
            "[{}] {what}: not seen on {path} within {timeout:?}; last playlist:\n{last}",
            server.io
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Like [`wait_playlist`], for LL-HLS playlists read with our own parser.
fn wait_ll(
    server: &Server,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&LlPlaylist) -> bool,
) -> LlPlaylist {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("(no 200 response)");
    loop {
        let response = hlsc::get(server.http_port, PLAYLIST);
        if response.status == 200 {
            let playlist = parse_ll_ok(server.io, &response.body_text());
            if pred(&playlist) {
                return playlist;
            }
            last = response.body_text();
        }
        assert!(
            Instant::now() < deadline,
            "[{}] {what}: not seen within {timeout:?}; last playlist:\n{last}",
            server.io
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn parse_ll_ok(io: Io, text: &str) -> LlPlaylist {
    hlsc::parse_ll(text).unwrap_or_else(|e| panic!("[{io}] malformed LL-HLS playlist: {e}\n{text}"))
}

fn assert_playlist_headers(io: Io, response: &Response) {
    assert_eq!(
        response.header("content-type"),
        Some(M3U8_TYPE),
        "[{io}] playlist: {}",
        response.head_text()
    );
    assert_eq!(
        response.header("cache-control"),
        Some("no-cache"),
        "[{io}] playlist: {}",
        response.head_text()
    );
}

/// A media segment, part or init response: 200, its content type, cacheable for good.
fn assert_media_response(io: Io, path: &str, response: &Response, content_type: &str) {
    assert_status(io, path, response, 200);
    assert_eq!(
        response.header("content-type"),
        Some(content_type),
        "[{io}] {path}: {}",
        response.head_text()
    );
    assert!(
        response
            .header("cache-control")
            .is_some_and(|v| v.contains("immutable")),
        "[{io}] {path}: a segment should be immutable: {}",
        response.head_text()
    );
    assert!(!response.body.is_empty(), "[{io}] {path}: empty body");
}

/// The ISO BMFF box type at the start of `data`.
fn first_box(data: &[u8]) -> String {
    String::from_utf8_lossy(data.get(4..8).unwrap_or(b"????")).into_owned()
}

fn check_segment_bytes(io: Io, path: &str, data: &[u8], fmp4: bool) {
    if fmp4 {
        let first = first_box(data);
        assert!(
            first == "moof" || first == "styp",
            "[{io}] {path}: an fMP4 segment starting with box {first:?}"
        );
    } else {
        assert!(
            data.len() % 188 == 0 && data.first() == Some(&0x47),
            "[{io}] {path}: not whole TS packets ({} bytes, first byte {:?})",
            data.len(),
            data.first()
        );
    }
}

/// ffprobe reads `input` as `video_codec` 320x240 (with `video_tag`, if given) and AAC
/// 44.1 kHz.
fn probe_av(io: Io, input: &str, video_codec: &str, video_tag: Option<&str>) {
    let streams = ffprobe_streams(input, Duration::from_secs(30));
    let (video, _) = assert_av_streams(io, input, &streams, video_codec);
    if let Some(tag) = video_tag {
        assert_eq!(video["codec_tag_string"], tag, "[{io}] {input}: {video:#?}");
    }
}

/// One segment's packets: video starts on a keyframe, each track's DTS only increase.
fn check_segment_packets(io: Io, name: &str, packets: &[Packet]) {
    assert_starts_on_keyframe(io, name, packets);
    for kind in ["video", "audio"] {
        let dts = dts_of(packets, kind);
        assert!(!dts.is_empty(), "[{io}] {name}: no {kind} packets");
        if let Some(w) = dts.windows(2).find(|w| w[1] <= w[0]) {
            panic!(
                "[{io}] {name}: {kind} DTS does not increase: {} -> {}",
                w[0], w[1]
            );
        }
    }
}

/// Consecutive segments: each track's first DTS follows the previous segment's last DTS by
/// one frame (within two frames): nothing lost, nothing repeated.
fn check_continuity(io: Io, segments: &[(String, Vec<Packet>)]) {
    for pair in segments.windows(2) {
        let ((prev_name, prev), (next_name, next)) = (&pair[0], &pair[1]);
        for (kind, frame) in [("video", FRAME), ("audio", AAC_FRAME)] {
            let last = *dts_of(prev, kind).last().expect("packets");
            let first = dts_of(next, kind)[0];
            let step = first - last;
            assert!(
                (step - frame).abs() <= 2.0 * frame,
                "[{io}] {kind} DTS jumps by {step:.4} s from {prev_name} (last {last:.4}) to \
                 {next_name} (first {first:.4}); one frame is {frame:.4} s"
            );
        }
    }
}

/// `ffmpeg -i FILE -f null -` reports nothing, and the video decodes to about `seconds` × 30
/// frames.
fn check_decodes(io: Io, file: &Path, seconds: f64, what: &str) {
    let out = hlsc::decode(file);
    assert!(
        out.success() && out.stderr.trim().is_empty(),
        "[{io}] {what} does not decode cleanly: {out:?}"
    );
    let counts = ffprobe_frame_counts(file);
    let frames = counts.get("video").copied().unwrap_or(0) as f64;
    let expected = seconds * FPS;
    assert!(
        (frames - expected).abs() <= 2.0,
        "[{io}] {what}: {frames} video frames decoded, {expected:.0} expected from {seconds:.3} s"
    );
    let audio = counts.get("audio").copied().unwrap_or(0);
    assert!(audio > 0, "[{io}] {what}: no audio frames decoded");
}

fn playlist_uri(path: &str) -> String {
    hlsc::resolve(PLAYLIST, path)
}

// ---------------------------------------------------------------------------------------------
// 1, 2. TS and fMP4 HLS

#[test]
fn ts_hls_segments_play_and_join_up() {
    common::require_ffmpeg();
    common::on_each_backend(|io| segmented(io, false));
}

#[test]
fn fmp4_hls_segments_play_and_join_up() {
    common::require_ffmpeg();
    common::on_each_backend(|io| segmented(io, true));
}

fn segmented(io: Io, fmp4: bool) {
    let config = ServerConfig::new()
        .hls("hls_fragment", 1)
        .hls("hls_window", 4)
        .hls("hls_fmp4", fmp4);
    let server = Server::start(io, &config);
    let _publisher = FfmpegPublisher::start(&server, "s", PublishOpts::default().seconds(30.0));
    let ext = if fmp4 { "m4s" } else { "ts" };
    let segment_type = if fmp4 {
        "video/iso.segment"
    } else {
        "video/MP2T"
    };

    let (_, first) = wait_playlist(
        &server,
        PLAYLIST,
        Duration::from_secs(15),
        "four segments",
        |p| p.segments.len() >= 4,
    );
    let (response, playlist) = wait_playlist(
        &server,
        PLAYLIST,
        Duration::from_secs(5),
        "the media sequence to move on",
        |p| p.media_sequence > first.media_sequence,
    );
    assert_playlist_headers(io, &response);
    let text = response.body_text();

    // The playlist as a client reads it.
    let version = playlist.version.unwrap_or(1);
    assert!(
        version >= if fmp4 { 6 } else { 3 },
        "[{io}] EXT-X-VERSION {version} is too old for this playlist:\n{text}"
    );
    assert!(
        !playlist.end_list,
        "[{io}] a live playlist has ENDLIST:\n{text}"
    );
    for (index, segment) in playlist.segments.iter().enumerate() {
        let seq = playlist.media_sequence + index as u64;
        assert_eq!(
            segment.uri,
            format!("s-{seq}.{ext}"),
            "[{io}] segment {index} of a playlist at media sequence {}:\n{text}",
            playlist.media_sequence
        );
        let duration = f64::from(segment.duration);
        assert!(
            playlist.target_duration >= duration.round() as u64,
            "[{io}] EXTINF {duration} exceeds TARGETDURATION {}:\n{text}",
            playlist.target_duration
        );
        assert!(
            (duration - 1.0).abs() <= 0.1,
            "[{io}] {}: EXTINF {duration} is not within 10 % of hls_fragment = 1 s:\n{text}",
            segment.uri
        );
        assert!(
            !segment.discontinuity,
            "[{io}] a discontinuity in one publish:\n{text}"
        );
    }
    let map = playlist.segments[0].map.as_ref();
    if fmp4 {
        let map = map.unwrap_or_else(|| panic!("[{io}] no EXT-X-MAP:\n{text}"));
        assert_eq!(map.uri, "s-init.mp4", "[{io}]\n{text}");
    } else {
        assert!(map.is_none(), "[{io}] EXT-X-MAP in a TS playlist:\n{text}");
    }

    // Every listed segment (fetched before ffprobe, which takes a while, moves the window on).
    let dir = TempDir::new("hls");
    let init = if fmp4 {
        let path = playlist_uri("s-init.mp4");
        let response = get_ok(&server, &path);
        assert_eq!(
            response.header("content-type"),
            Some("video/mp4"),
            "[{io}] {path}: {}",
            response.head_text()
        );
        assert_eq!(first_box(&response.body), "ftyp", "[{io}] {path}");
        response.body
    } else {
        Vec::new()
    };
    let mut fetched = Vec::new();
    for segment in &playlist.segments {
        let path = playlist_uri(&segment.uri);
        let response = hlsc::get(server.http_port, &path);
        assert_media_response(io, &path, &response, segment_type);
        check_segment_bytes(io, &path, &response.body, fmp4);
        fetched.push((segment.uri.clone(), response.body));
    }

    let mut probed = Vec::new();
    for (name, data) in &fetched {
        let file = dir.join(&format!("{name}.{}", if fmp4 { "mp4" } else { "ts" }));
        hlsc::write_concat(&file, &[&init, data]);
        let packets = ffprobe_packets(&file);
        check_segment_packets(io, name, &packets);
        probed.push((name.clone(), packets));
    }
    check_continuity(io, &probed);
    let whole = dir.join(if fmp4 { "all.mp4" } else { "all.ts" });
    let mut pieces: Vec<&[u8]> = vec![&init];
    pieces.extend(fetched.iter().map(|(_, data)| data.as_slice()));
    hlsc::write_concat(&whole, &pieces);
    let seconds: f64 = playlist
        .segments
        .iter()
        .map(|s| f64::from(s.duration))
        .sum();
    check_decodes(io, &whole, seconds, "the listed segments, concatenated");

    // What a player sees through the playlist.
    probe_av(
        io,
        &server.http_url(PLAYLIST),
        "h264",
        if fmp4 { Some("avc1") } else { None },
    );
    server.assert_no_panic();
}

// ---------------------------------------------------------------------------------------------
// 3. Republish and dispose

#[test]
fn republish_continues_with_a_discontinuity_then_disposes() {
    common::require_ffmpeg();
    common::on_each_backend(|io| republish(io, false));
}

#[test]
fn republish_fmp4_and_dash_timelines_continue() {
    common::require_ffmpeg();
    common::on_each_backend(|io| republish(io, true));
}

/// `hls_dispose` for this test, seconds.
const DISPOSE: u64 = 3;

/// The first DTS of `next` follows the last of `prev` for each track: later, and by at most
/// a frame, the `pause` between the publishes (the output timeline of fMP4 resumes at the
/// wall clock after a republish) and 100 ms.
fn check_timeline_continues(io: Io, prev: &[Packet], next: &[Packet], pause: f64, what: &str) {
    for (kind, frame) in [("video", FRAME), ("audio", AAC_FRAME)] {
        let last = *dts_of(prev, kind).last().expect("packets");
        let first = dts_of(next, kind)[0];
        let step = first - last;
        assert!(
            step > 0.0 && step <= frame + pause + 0.1,
            "[{io}] {what}: {kind} decode time goes from {last:.4} to {first:.4} s"
        );
    }
}

/// The sequence number in a segment URI (`s-12.ts` → 12).
fn seq_of(uri: &str) -> u64 {
    hlsc::uri_numbers(uri)
        .and_then(|(seq, part)| part.is_none().then_some(seq))
        .unwrap_or_else(|| panic!("not a segment URI: {uri}"))
}

fn republish(io: Io, fmp4: bool) {
    // A 3 s window: by the end, the segment after the break has left the playlist.
    let mut config = ServerConfig::new()
        .hls("hls_fragment", 1)
        .hls("hls_window", 3)
        .hls("hls_dispose", DISPOSE)
        .hls("hls_fmp4", fmp4);
    if fmp4 {
        config = config.dash("enabled", true);
    }
    let ext = if fmp4 { "m4s" } else { "ts" };
    let server = Server::start(io, &config);
    let mut first = FfmpegPublisher::start(&server, "s", PublishOpts::default().seconds(3.5));
    assert!(
        first.wait_exit(Duration::from_secs(20)).is_some(),
        "[{io}] the first publisher did not finish"
    );
    server.expect_log(
        "the first publisher's stop",
        |l| l.is("publish stopped") && l.str("stream").as_deref() == Some("live/s"),
        Duration::from_secs(5),
    );
    let stopped = Instant::now();
    let mut second = FfmpegPublisher::start(&server, "s", PublishOpts::default().seconds(5.0));
    // Within hls_dispose the playlist is still there, with the first publish's segments.
    let (_, before) = wait_playlist(
        &server,
        PLAYLIST,
        Duration::from_secs(1),
        "the playlist after the first publisher left",
        |_| true,
    );
    assert!(
        before.segments.len() >= 3,
        "[{io}] only {} segments from 3.5 s of publishing",
        before.segments.len()
    );
    assert!(
        before.segments.iter().all(|s| !s.discontinuity),
        "[{io}] a discontinuity before the republish"
    );
    let old_last = seq_of(&before.segments.last().expect("segments").uri);
    let republished = server.expect_log(
        "the second publish",
        |l| l.is("publish started") && l.at > stopped,
        Duration::from_secs(10),
    );
    // From the first publisher's last frames to the second's first, generously.
    let pause = (republished.at - stopped).as_secs_f64() + 1.5;
    assert!(
        republished.at - stopped < Duration::from_secs(DISPOSE),
        "[{io}] the republish took {:?}, longer than hls_dispose; the test needs it sooner",
        republished.at - stopped
    );

    let (response, after) = wait_playlist(
        &server,
        PLAYLIST,
        Duration::from_secs(10),
        "a discontinuity followed by two new segments",
        |p| {
            p.segments
                .iter()
                .position(|s| s.discontinuity)
                .is_some_and(|at| p.segments.len() >= at + 2)
        },
    );
    let mpd = fmp4.then(|| get_ok(&server, "/live/s.mpd").body_text());
    let text = response.body_text();
    assert!(
        after.media_sequence >= before.media_sequence,
        "[{io}] the media sequence went back from {}:\n{text}",
        before.media_sequence
    );
    for (index, segment) in after.segments.iter().enumerate() {
        let seq = after.media_sequence + index as u64;
        assert_eq!(
            segment.uri,
            format!("s-{seq}.{ext}"),
            "[{io}] sequence numbers are not consecutive:\n{text}"
        );
        if let Some(old) = before.segments.iter().find(|s| s.uri == segment.uri) {
            assert_eq!(
                old.duration, segment.duration,
                "[{io}] {} changed:\n{text}",
                segment.uri
            );
        }
    }
    let breaks: Vec<u64> = after
        .segments
        .iter()
        .filter(|s| s.discontinuity)
        .map(|s| seq_of(&s.uri))
        .collect();
    assert_eq!(
        breaks,
        vec![old_last + 1],
        "[{io}] expected one EXT-X-DISCONTINUITY, before segment {} (the first after the \
         republish):\n{text}",
        old_last + 1
    );
    assert_eq!(
        after.discontinuity_sequence, 0,
        "[{io}] no discontinuity has left the window yet:\n{text}"
    );

    // The segments on either side of the break.
    let init = if fmp4 {
        get_ok(&server, &playlist_uri("s-init.mp4")).body
    } else {
        Vec::new()
    };
    let dir = TempDir::new("hls-re");
    let mut sides = Vec::new();
    for seq in [old_last, old_last + 1] {
        let uri = format!("s-{seq}.{ext}");
        let path = playlist_uri(&uri);
        let response = hlsc::get(server.http_port, &path);
        assert_media_response(
            io,
            &path,
            &response,
            if fmp4 {
                "video/iso.segment"
            } else {
                "video/MP2T"
            },
        );
        let file = dir.join(&format!("{uri}.{}", if fmp4 { "mp4" } else { "ts" }));
        hlsc::write_concat(&file, &[&init, &response.body]);
        let packets = ffprobe_packets(&file);
        check_segment_packets(io, &uri, &packets);
        sides.push(packets);
    }
    if fmp4 {
        check_timeline_continues(
            io,
            &sides[0],
            &sides[1],
            pause,
            "across the republish (fMP4)",
        );
    }
    if let Some(mpd) = &mpd {
        let (_, sets) = parse_mpd(io, mpd);
        assert_eq!(sets.len(), 2, "[{io}] AdaptationSets:\n{mpd}");
        for set in &sets {
            for pair in set.segments.windows(2) {
                let (number, start, duration) = pair[0];
                let gap = pair[1].1 as f64 - (start + duration) as f64;
                // The timeline resumes at the wall clock after the republish.
                let allowed = if number == old_last { pause + 0.1 } else { 0.1 };
                assert!(
                    (0.0..=allowed * set.timescale as f64).contains(&gap),
                    "[{io}] {} timeline: segment {} starts {gap} ticks after segment {number} \
                     ends:\n{mpd}",
                    set.content_type,
                    pair[1].0
                );
            }
            for number in [old_last, old_last + 1] {
                assert!(
                    set.segments.iter().any(|s| s.0 == number),
                    "[{io}] {} timeline lacks segment {number}:\n{mpd}",
                    set.content_type
                );
                let path = hlsc::resolve(
                    "/live/s.mpd",
                    &set.media.replace("$Number$", &number.to_string()),
                );
                let response = hlsc::get(server.http_port, &path);
                assert_media_response(io, &path, &response, "video/iso.segment");
            }
        }
    }

    // After the last publisher leaves: served for hls_dispose, then gone. By then the
    // segment after the break has left the window: EXT-X-DISCONTINUITY-SEQUENCE counts it.
    assert!(
        second.wait_exit(Duration::from_secs(20)).is_some(),
        "[{io}] the second publisher did not finish"
    );
    server.expect_log(
        "the second publisher's stop",
        |l| l.is("publish stopped") && l.at > republished.at,
        Duration::from_secs(5),
    );
    let ended = Instant::now();
    let response = hlsc::get(server.http_port, PLAYLIST);
    assert_status(io, "the playlist right after the last stop", &response, 200);
    let last = parse_m3u8(io, &response.body);
    let text = response.body_text();
    assert!(
        last.media_sequence > old_last + 1,
        "[{io}] with a 3 s window, segment {} should have left:\n{text}",
        old_last + 1
    );
    assert!(
        last.discontinuity_sequence == 1 && last.segments.iter().all(|s| !s.discontinuity),
        "[{io}] the discontinuity left the window: EXT-X-DISCONTINUITY-SEQUENCE should be 1:\n\
         {text}"
    );
    let old_segment = playlist_uri(&last.segments[0].uri);
    let mut gone_after = None;
    wait_until(Duration::from_secs(DISPOSE + 4), || {
        let status = hlsc::get(server.http_port, PLAYLIST).status;
        if status == 404 {
            gone_after = Some(ended.elapsed());
            return true;
        }
        assert_eq!(status, 200, "[{io}] playlist while being disposed");
        false
    });
    let gone_after = gone_after.unwrap_or_else(|| {
        panic!(
            "[{io}] the playlist is still served {} s after the last stop with hls_dispose = \
             {DISPOSE}",
            DISPOSE + 4
        )
    });
    eprintln!("[{io}] playlist disposed {gone_after:.1?} after the stop");
    assert!(
        gone_after >= Duration::from_millis(DISPOSE * 1000 - 500),
        "[{io}] the playlist went away after {gone_after:?}, before hls_dispose = {DISPOSE} s"
    );
    let mut gone = vec![old_segment];
    if fmp4 {
        gone.push(playlist_uri("s-init.mp4"));
        gone.push("/live/s.mpd".into());
    }
    for path in &gone {
        let response = hlsc::get(server.http_port, path);
        assert_status(io, path, &response, 404);
    }
    server.assert_no_panic();
}

// ---------------------------------------------------------------------------------------------
// 4. Low-Latency HLS

/// The LL tags and the parts of every listed segment.
fn check_ll_playlist(io: Io, playlist: &LlPlaylist, fmp4: bool, part_target: f64) {
    let text = &playlist.text;
    assert!(
        playlist.version.is_some_and(|v| v >= 9),
        "[{io}] LL-HLS needs EXT-X-VERSION 9 (blocking reload, preload hints):\n{text}"
    );
    assert!(
        playlist.can_block_reload,
        "[{io}] no CAN-BLOCK-RELOAD=YES:\n{text}"
    );
    let target = playlist
        .part_target
        .unwrap_or_else(|| panic!("[{io}] no EXT-X-PART-INF:\n{text}"));
    assert!(
        (target - part_target).abs() < 1e-6,
        "[{io}] PART-TARGET {target}, configured {part_target}:\n{text}"
    );
    let hold_back = playlist
        .part_hold_back
        .unwrap_or_else(|| panic!("[{io}] no PART-HOLD-BACK:\n{text}"));
    assert!(
        hold_back >= 2.0 * target,
        "[{io}] PART-HOLD-BACK {hold_back} is under twice PART-TARGET:\n{text}"
    );
    let target_duration = playlist
        .target_duration
        .unwrap_or_else(|| panic!("[{io}] no TARGETDURATION:\n{text}"));
    assert_eq!(
        playlist.map_uri.is_some(),
        fmp4,
        "[{io}] EXT-X-MAP presence:\n{text}"
    );
    let ext = if fmp4 { "m4s" } else { "ts" };
    for segment in &playlist.segments {
        assert!(
            target_duration >= segment.duration.round() as u64,
            "[{io}] EXTINF {} exceeds TARGETDURATION {target_duration}:\n{text}",
            segment.duration
        );
        check_parts(io, segment.seq, &segment.parts, target, ext, text);
        if segment.parts.is_empty() {
            continue;
        }
        let sum: f64 = segment.parts.iter().map(|p| p.duration).sum();
        assert!(
            (sum - segment.duration).abs() <= FRAME,
            "[{io}] the parts of {} add up to {sum:.3} s, its EXTINF is {:.3}:\n{text}",
            segment.uri,
            segment.duration
        );
    }
    check_parts(
        io,
        playlist.open_seq(),
        &playlist.open_parts,
        target,
        ext,
        text,
    );
    // The hint names the part after the last listed one.
    let (kind, uri) = playlist
        .preload_hint
        .as_ref()
        .unwrap_or_else(|| panic!("[{io}] no EXT-X-PRELOAD-HINT:\n{text}"));
    assert_eq!(kind, "PART", "[{io}]\n{text}");
    let expected = format!(
        "s-{}.{}.{ext}",
        playlist.open_seq(),
        playlist.open_parts.len()
    );
    assert_eq!(uri, &expected, "[{io}] the preload hint:\n{text}");
    // The parts reach back at least three target durations (RFC 8216bis 4.4.4.9).
    let with_parts: f64 = playlist
        .segments
        .iter()
        .filter(|s| !s.parts.is_empty())
        .map(|s| s.duration)
        .sum();
    let total: f64 = playlist.segments.iter().map(|s| s.duration).sum();
    assert!(
        with_parts + 1e-3 >= total.min(3.0 * target_duration as f64),
        "[{io}] parts are listed for only {with_parts:.3} s of segments:\n{text}"
    );
}

fn check_parts(io: Io, seq: u64, parts: &[hlsc::LlPart], target: f64, ext: &str, text: &str) {
    for (index, part) in parts.iter().enumerate() {
        assert_eq!(
            part.uri,
            format!("s-{seq}.{index}.{ext}"),
            "[{io}] part {index} of segment {seq}:\n{text}"
        );
        // RFC 8216bis wants parts no longer than PART-TARGET; the server allows 2 ms of
        // millisecond-timestamp jitter (33/34 ms frames at 30 fps), and so does this check.
        assert!(
            part.duration > 0.0 && part.duration <= target + 0.0025,
            "[{io}] {} lasts {} s, PART-TARGET is {target}:\n{text}",
            part.uri,
            part.duration
        );
        assert_eq!(
            part.independent,
            index == 0,
            "[{io}] {}: with one keyframe per segment (GOP = hls_fragment), INDEPENDENT=YES \
             should mark exactly each segment's first part:\n{text}",
            part.uri
        );
    }
}

fn blocking_path(msn: u64, part: u32) -> String {
    format!("{PLAYLIST}?_HLS_msn={msn}&_HLS_part={part}")
}

/// A blocking reload for the playlist's preload hint: 200 within three target durations, and
/// the new playlist lists the hinted part. Returns it and how long the server held it.
fn blocking_reload(server: &Server, playlist: &LlPlaylist) -> (LlPlaylist, Duration) {
    let io = server.io;
    let (msn, part) = playlist
        .hint()
        .unwrap_or_else(|| panic!("[{io}] no usable preload hint:\n{}", playlist.text));
    let limit = Duration::from_secs(3 * playlist.target_duration.unwrap_or(1));
    let path = blocking_path(msn, part);
    let (response, waited) =
        hlsc::timed_get(server.http_port, &path, limit + Duration::from_secs(2));
    assert_status(io, &path, &response, 200);
    assert_playlist_headers(io, &response);
    assert!(
        waited < limit,
        "[{io}] {path} took {waited:?}; the part should exist within one part duration"
    );
    let next = parse_ll_ok(io, &response.body_text());
    let (_, hinted) = playlist.preload_hint.clone().expect("hint");
    assert!(
        next.part_uris().contains(&hinted.as_str()),
        "[{io}] {path} answered a playlist without the part it waited for ({hinted}):\n{}",
        next.text
    );
    (next, waited)
}

#[test]
fn ll_hls_fmp4_parts_blocking_reload_and_preload_hints() {
    common::require_ffmpeg();
    common::on_each_backend(ll_fmp4);
}

fn ll_fmp4(io: Io) {
    let config = ServerConfig::new()
        .hls("hls_fragment", 2)
        .hls("hls_part", 0.5)
        .hls("hls_ll", true)
        .hls("hls_fmp4", true);
    let server = Server::start(io, &config);
    let opts = PublishOpts {
        gop: 60,
        ..PublishOpts::default()
    }
    .seconds(30.0);
    let _publisher = FfmpegPublisher::start(&server, "s", opts);

    let playlist = wait_ll(&server, Duration::from_secs(15), "two segments", |p| {
        p.segments.len() >= 2
    });
    check_ll_playlist(io, &playlist, true, 0.5);
    for segment in &playlist.segments {
        assert!(
            (segment.duration - 2.0).abs() <= 0.2,
            "[{io}] {} lasts {} s with hls_fragment = 2 and a 2 s GOP:\n{}",
            segment.uri,
            segment.duration,
            playlist.text
        );
    }

    // Blocking reloads: the first may find the part just made; the second asks for the part
    // after one that was just made, so it waits about a part duration.
    let (next, _) = blocking_reload(&server, &playlist);
    let (next, waited) = blocking_reload(&server, &next);
    eprintln!("[{io}] blocking reload held {waited:?}");
    assert!(
        waited >= Duration::from_millis(150),
        "[{io}] a blocking reload for the next part returned after {waited:?}, before the \
         part could exist"
    );
    check_ll_playlist(io, &next, true, 0.5);

    // `_HLS_msn` alone waits for that whole segment.
    let msn = next.open_seq();
    let path = format!("{PLAYLIST}?_HLS_msn={msn}");
    let (response, waited) = hlsc::timed_get(server.http_port, &path, Duration::from_secs(8));
    assert_status(io, &path, &response, 200);
    let whole = parse_ll_ok(io, &response.body_text());
    assert!(
        whole.segments.iter().any(|s| s.seq == msn) && waited < Duration::from_secs(6),
        "[{io}] {path} answered after {waited:?} without segment {msn}:\n{}",
        whole.text
    );

    // One keep-alive connection, as players use: a request that arrives while a blocking
    // reload is parked is answered after it, in order; the connection then goes on.
    let current = keep_alive_behind_parked(&server, false);

    // Parts that do not exist and are not next: 404 at once.
    for path in [
        playlist_uri(&format!("s-{}.9.m4s", playlist.media_sequence)),
        playlist_uri(&format!("s-{}.0.m4s", current.open_seq() + 5)),
    ] {
        let (response, waited) = hlsc::timed_get(server.http_port, &path, Duration::from_secs(8));
        assert_status(io, &path, &response, 404);
        assert!(
            waited < Duration::from_secs(1),
            "[{io}] {path}: 404 after {waited:?}"
        );
    }

    // A GET of the hinted part is held until it exists. Follow hints (each blocking reload
    // returns as a part appears) to a segment's first part, so the part decodes on its own.
    let mut current = parse_ll_ok(io, &get_ok(&server, PLAYLIST).body_text());
    for _ in 0..10 {
        current = blocking_reload(&server, &current).0;
        if current.hint().is_some_and(|(_, part)| part == 0) {
            break;
        }
    }
    let (msn, part) = current.hint().expect("hint");
    assert_eq!(
        part, 0,
        "[{io}] never hinted at a first part:\n{}",
        current.text
    );
    let (_, hint_uri) = current.preload_hint.clone().expect("hint");
    let path = playlist_uri(&hint_uri);
    let (response, waited) = hlsc::timed_get(server.http_port, &path, Duration::from_secs(8));
    eprintln!("[{io}] GET of the hinted part {hint_uri} held {waited:?}");
    assert_media_response(io, &path, &response, "video/iso.segment");
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_secs(6),
        "[{io}] {path}, the part after one that just appeared, was answered after {waited:?}"
    );
    check_segment_bytes(io, &path, &response.body, true);
    let init = get_ok(&server, &playlist_uri("s-init.mp4")).body;
    let dir = TempDir::new("ll");
    let file = dir.join("part.mp4");
    hlsc::write_concat(&file, &[&init, &response.body]);
    let packets = ffprobe_packets(&file);
    check_segment_packets(io, &hint_uri, &packets);
    let after = wait_ll(
        &server,
        Duration::from_secs(5),
        "the fetched part listed",
        |p| p.part_uris().contains(&hint_uri.as_str()),
    );
    let listed = after
        .segments
        .iter()
        .find(|s| s.seq == msn)
        .map(|s| &s.parts)
        .unwrap_or(&after.open_parts)
        .first()
        .cloned()
        .expect("the part");
    assert!(listed.independent, "[{io}] {hint_uri}:\n{}", after.text);
    check_decodes(io, &file, listed.duration, &format!("init + {hint_uri}"));

    // Every part of a listed segment, concatenated, is that segment.
    let segment = &after.segments[after.segments.len() - 1];
    let whole = get_ok(&server, &playlist_uri(&segment.uri)).body;
    let mut joined = Vec::new();
    for part in &segment.parts {
        let path = playlist_uri(&part.uri);
        let response = hlsc::get(server.http_port, &path);
        assert_media_response(io, &path, &response, "video/iso.segment");
        joined.extend_from_slice(&response.body);
    }
    assert!(
        joined == whole,
        "[{io}] the parts of {} ({} bytes) are not the segment ({} bytes)",
        segment.uri,
        joined.len(),
        whole.len()
    );

    // Too far ahead: 400 at once.
    let ahead = blocking_path(after.open_seq() + 10, 0);
    let (response, waited) = hlsc::timed_get(server.http_port, &ahead, Duration::from_secs(8));
    assert_status(io, &ahead, &response, 400);
    assert!(
        waited < Duration::from_secs(1),
        "[{io}] {ahead}: the 400 took {waited:?}"
    );

    // A player reads it (ffmpeg ignores the LL tags).
    probe_av(io, &server.http_url(PLAYLIST), "h264", Some("avc1"));
    server.assert_no_panic();
}

/// On one keep-alive connection: the playlist, then a blocking reload for its hint and a
/// GET of the init segment, sent in one write (`pipelined`) or the second 100 ms after the
/// first, while the reload is parked. Both are answered, in order, and the connection still
/// serves a request after them. Returns the playlist fetched first.
fn keep_alive_behind_parked(server: &Server, pipelined: bool) -> LlPlaylist {
    let io = server.io;
    let mut conn = HttpConn::connect(server.http_port).expect("connect");
    conn.timeout = Duration::from_secs(8);
    let first = conn.request("GET", PLAYLIST, &[]).expect("GET playlist");
    assert_status(io, PLAYLIST, &first, 200);
    let current = parse_ll_ok(io, &first.body_text());
    let (msn, part) = current.hint().expect("hint");
    let init_path = playlist_uri("s-init.mp4");
    let reload_bytes = request_bytes("GET", &blocking_path(msn, part), &[]);
    let init_bytes = request_bytes("GET", &init_path, &[]);
    if pipelined {
        conn.send(&[reload_bytes, init_bytes].concat())
            .expect("send pipelined requests");
    } else {
        conn.send(&reload_bytes).expect("send the blocking reload");
        std::thread::sleep(Duration::from_millis(100));
        conn.send(&init_bytes).expect("send the init request");
    }
    let reload = conn.read_response(false).expect("the parked reload");
    assert_status(io, "the parked blocking reload", &reload, 200);
    let (_, hinted) = current.preload_hint.clone().expect("hint");
    assert!(
        parse_ll_ok(io, &reload.body_text())
            .part_uris()
            .contains(&hinted.as_str()),
        "[{io}] the blocking reload does not list {hinted}:\n{}",
        reload.body_text()
    );
    let how = if pipelined {
        "in the same write as"
    } else {
        "while parked, behind"
    };
    let init_response = conn.read_response(false).unwrap_or_else(|e| {
        panic!("[{io}] GET {init_path} sent {how} a blocking reload: no response ({e})")
    });
    assert_status(io, &init_path, &init_response, 200);
    assert_eq!(first_box(&init_response.body), "ftyp", "[{io}] {init_path}");
    let again = conn
        .request("GET", PLAYLIST, &[])
        .expect("GET playlist again");
    assert_status(io, PLAYLIST, &again, 200);
    current
}

/// A request pipelined in the same write as one that gets parked should be answered once
/// the parked one is. Today it waits until the client sends more bytes.
#[test]
fn request_pipelined_behind_a_parked_one_is_answered() {
    common::require_ffmpeg();
    common::on_each_backend(|io| {
        let config = ServerConfig::new()
            .hls("hls_fragment", 2)
            .hls("hls_part", 0.5)
            .hls("hls_ll", true)
            .hls("hls_fmp4", true);
        let server = Server::start(io, &config);
        let opts = PublishOpts {
            gop: 60,
            ..PublishOpts::default()
        }
        .seconds(30.0);
        let _publisher = FfmpegPublisher::start(&server, "s", opts);
        wait_ll(&server, Duration::from_secs(15), "a segment", |p| {
            !p.segments.is_empty()
        });
        keep_alive_behind_parked(&server, true);
        server.assert_no_panic();
    });
}

#[test]
fn ll_hls_ts_parts_are_served_and_a_missing_part_times_out() {
    common::require_ffmpeg();
    common::on_each_backend(ll_ts);
}

fn ll_ts(io: Io) {
    let config = ServerConfig::new()
        .hls("hls_fragment", 1)
        .hls("hls_part", 0.5)
        .hls("hls_ll", true);
    let server = Server::start(io, &config);
    let mut publisher = FfmpegPublisher::start(&server, "s", PublishOpts::default().seconds(30.0));

    let playlist = wait_ll(
        &server,
        Duration::from_secs(15),
        "two segments with parts",
        |p| p.segments.iter().filter(|s| !s.parts.is_empty()).count() >= 2,
    );
    check_ll_playlist(io, &playlist, false, 0.5);
    let segment = playlist
        .segments
        .iter()
        .rfind(|s| !s.parts.is_empty())
        .expect("a segment with parts");
    let dir = TempDir::new("ll-ts");
    let mut joined = Vec::new();
    for part in &segment.parts {
        let path = playlist_uri(&part.uri);
        let response = hlsc::get(server.http_port, &path);
        assert_media_response(io, &path, &response, "video/MP2T");
        check_segment_bytes(io, &path, &response.body, false);
        if part.independent {
            // A player can start at an independent part: PAT/PMT, then a keyframe.
            let file = dir.join("independent.ts");
            std::fs::write(&file, &response.body).expect("write part");
            check_segment_packets(io, &part.uri, &ffprobe_packets(&file));
        }
        joined.extend_from_slice(&response.body);
    }
    let file = dir.join("parts.ts");
    std::fs::write(&file, &joined).expect("write parts");
    check_decodes(
        io,
        &file,
        segment.duration,
        &format!("the parts of {}", segment.uri),
    );
    let whole = get_ok(&server, &playlist_uri(&segment.uri)).body;
    assert!(
        joined == whole,
        "[{io}] the parts of {} are not the segment",
        segment.uri
    );

    // The publisher stalls (SIGSTOP: the connection stays, nothing comes): a blocking reload
    // and a GET of the hinted part are answered 503 after three target durations.
    common::send_signal(publisher.pid(), libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(300));
    let stalled = parse_ll_ok(io, &get_ok(&server, PLAYLIST).body_text());
    let (msn, part) = stalled.hint().expect("hint");
    let target = stalled.target_duration.expect("target duration");
    let limit = Duration::from_secs(3 * target);
    let port = server.http_port;
    let (_, hint_uri) = stalled.preload_hint.clone().expect("hint");
    let part_path = playlist_uri(&hint_uri);
    let part_get = std::thread::spawn(move || {
        hlsc::timed_get(port, &part_path, limit + Duration::from_secs(3))
    });
    let reload = blocking_path(msn, part);
    let (response, waited) = hlsc::timed_get(port, &reload, limit + Duration::from_secs(3));
    let (part_response, part_waited) = part_get.join().expect("part GET thread");
    eprintln!("[{io}] stalled: reload 503 after {waited:?}, part after {part_waited:?}");
    for (what, response, waited) in [
        (reload.as_str(), &response, waited),
        (hint_uri.as_str(), &part_response, part_waited),
    ] {
        assert_status(io, what, response, 503);
        assert!(
            waited >= limit - Duration::from_millis(300)
                && waited <= limit + Duration::from_secs(2),
            "[{io}] {what}: 503 after {waited:?}; three target durations is {limit:?}"
        );
    }

    // Requests parked when the publisher goes away are answered then, not at their deadline:
    // a reload for the part after the hint with the final playlist, the hinted part with
    // itself (closed by the stop) or 404.
    let stalled = parse_ll_ok(io, &get_ok(&server, PLAYLIST).body_text());
    let (msn, part) = stalled.hint().expect("hint");
    let (_, hint_uri) = stalled.preload_hint.clone().expect("hint");
    let part_path = playlist_uri(&hint_uri);
    let part_get = std::thread::spawn(move || {
        let response = hlsc::get_within(port, &part_path, limit + Duration::from_secs(3));
        (response, Instant::now())
    });
    let reload = blocking_path(msn, part + 1);
    let reload_path = reload.clone();
    let reload_get = std::thread::spawn(move || {
        let response = hlsc::get_within(port, &reload_path, limit + Duration::from_secs(3));
        (response, Instant::now())
    });
    std::thread::sleep(Duration::from_millis(300));
    let killed = Instant::now();
    publisher.kill();
    let (response, answered) = reload_get.join().expect("reload thread");
    let (part_response, part_answered) = part_get.join().expect("part GET thread");
    let (waited, part_waited) = (
        answered.saturating_duration_since(killed),
        part_answered.saturating_duration_since(killed),
    );
    eprintln!("[{io}] publisher gone: reload answered {waited:?}, part {part_waited:?} later");
    assert_status(io, &reload, &response, 200);
    let last = parse_ll_ok(io, &response.body_text());
    assert!(
        last.preload_hint.is_none(),
        "[{io}] the playlist after the publisher left still hints at a part:\n{}",
        last.text
    );
    assert!(
        matches!(part_response.status, 200 | 404),
        "[{io}] {hint_uri} after the publisher left: {}",
        part_response.head_text()
    );
    for (what, waited) in [(reload.as_str(), waited), (hint_uri.as_str(), part_waited)] {
        assert!(
            waited < Duration::from_millis(1500),
            "[{io}] {what}: parked when the publisher left, answered {waited:?} later"
        );
    }
    server.assert_no_panic();
}

// ---------------------------------------------------------------------------------------------
// 5. DASH

/// One `AdaptationSet` of an MPD.
#[derive(Debug)]
struct DashSet {
    content_type: String,
    timescale: u64,
    init: String,
    media: String,
    /// (number, start, duration) of each segment, in the timescale.
    segments: Vec<(u64, u64, u64)>,
}

fn parse_mpd(io: Io, text: &str) -> (roxmltree::Document<'_>, Vec<DashSet>) {
    let doc = roxmltree::Document::parse(text)
        .unwrap_or_else(|e| panic!("[{io}] the MPD is not XML ({e}):\n{text}"));
    let mut sets = Vec::new();
    for set in doc
        .descendants()
        .filter(|n| n.has_tag_name("AdaptationSet"))
    {
        let template = set
            .descendants()
            .find(|n| n.has_tag_name("SegmentTemplate"))
            .unwrap_or_else(|| panic!("[{io}] an AdaptationSet without SegmentTemplate:\n{text}"));
        let attr = |name: &str| {
            template
                .attribute(name)
                .unwrap_or_else(|| panic!("[{io}] SegmentTemplate without {name}:\n{text}"))
                .to_string()
        };
        let timeline = template
            .children()
            .find(|n| n.has_tag_name("SegmentTimeline"))
            .unwrap_or_else(|| panic!("[{io}] no SegmentTimeline:\n{text}"));
        let mut number: u64 = attr("startNumber").parse().expect("startNumber");
        let mut time = 0u64;
        let mut segments = Vec::new();
        for s in timeline.children().filter(|n| n.has_tag_name("S")) {
            let get = |name: &str| s.attribute(name).map(|v| v.parse::<u64>().expect(name));
            if let Some(t) = get("t") {
                time = t;
            }
            let d = get("d").unwrap_or_else(|| panic!("[{io}] S without d:\n{text}"));
            for _ in 0..=get("r").unwrap_or(0) {
                segments.push((number, time, d));
                number += 1;
                time += d;
            }
        }
        sets.push(DashSet {
            content_type: set
                .attribute("contentType")
                .or_else(|| set.attribute("mimeType"))
                .unwrap_or("")
                .to_string(),
            timescale: attr("timescale").parse().expect("timescale"),
            init: attr("initialization"),
            media: attr("media"),
            segments,
        });
    }
    (doc, sets)
}

#[test]
fn dash_mpd_and_segments() {
    common::require_ffmpeg();
    common::on_each_backend(dash);
}

fn dash(io: Io) {
    let config = ServerConfig::new()
        .hls("hls_fragment", 1)
        .dash("enabled", true);
    let server = Server::start(io, &config);
    let _publisher = FfmpegPublisher::start(&server, "s", PublishOpts::default().seconds(30.0));
    let mpd_path = "/live/s.mpd";
    let mut response = Response::default();
    let ready = wait_until(Duration::from_secs(15), || {
        response = hlsc::get(server.http_port, mpd_path);
        response.status == 200 && response.body_text().matches("<S ").count() >= 6
    });
    assert!(
        ready,
        "[{io}] no MPD with three segments per track: {}\n{}",
        response.head_text(),
        response.body_text()
    );
    assert_eq!(
        response.header("content-type"),
        Some("application/dash+xml"),
        "[{io}] {}",
        response.head_text()
    );
    assert_eq!(response.header("cache-control"), Some("no-cache"));
    let text = response.body_text();
    let (doc, sets) = parse_mpd(io, &text);
    let root = doc.root_element();
    assert!(root.has_tag_name("MPD"), "[{io}]\n{text}");
    assert_eq!(root.attribute("type"), Some("dynamic"), "[{io}]\n{text}");
    assert!(
        root.attribute("availabilityStartTime").is_some(),
        "[{io}] a dynamic MPD needs availabilityStartTime:\n{text}"
    );
    assert_eq!(sets.len(), 2, "[{io}] AdaptationSets:\n{text}");
    let video = sets
        .iter()
        .find(|s| s.content_type.contains("video"))
        .unwrap_or_else(|| panic!("[{io}] no video AdaptationSet:\n{text}"));
    let audio = sets
        .iter()
        .find(|s| s.content_type.contains("audio"))
        .unwrap_or_else(|| panic!("[{io}] no audio AdaptationSet:\n{text}"));

    let dir = TempDir::new("dash");
    let mut spans = Vec::new();
    for (set, kind) in [(video, "video"), (audio, "audio")] {
        assert!(set.segments.len() >= 3, "[{io}] {kind} timeline:\n{text}");
        // Contiguous, ~1 s each (the last one may be cut short by nothing: all complete).
        for pair in set.segments.windows(2) {
            assert_eq!(
                pair[0].1 + pair[0].2,
                pair[1].1,
                "[{io}] {kind} timeline has a gap or overlap:\n{text}"
            );
        }
        for &(number, _, d) in &set.segments {
            let seconds = d as f64 / set.timescale as f64;
            assert!(
                (seconds - 1.0).abs() <= 0.1,
                "[{io}] {kind} segment {number} lasts {seconds:.3} s:\n{text}"
            );
        }
        let init_path = hlsc::resolve(mpd_path, &set.init);
        let init = get_ok(&server, &init_path);
        assert_eq!(
            init.header("content-type"),
            Some("video/mp4"),
            "[{io}] {init_path}"
        );
        assert_eq!(first_box(&init.body), "ftyp", "[{io}] {init_path}");
        let mut pieces = vec![init.body];
        let mut seconds = 0.0;
        for &(number, _, d) in &set.segments {
            let path = hlsc::resolve(
                mpd_path,
                &set.media.replace("$Number$", &number.to_string()),
            );
            let response = hlsc::get(server.http_port, &path);
            assert_media_response(io, &path, &response, "video/iso.segment");
            check_segment_bytes(io, &path, &response.body, true);
            pieces.push(response.body);
            seconds += d as f64 / set.timescale as f64;
        }
        spans.push(seconds);
        let file = dir.join(&format!("{kind}.mp4"));
        let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
        hlsc::write_concat(&file, &refs);
        let out = hlsc::decode(&file);
        assert!(
            out.success() && out.stderr.trim().is_empty(),
            "[{io}] the {kind} init + segments do not decode cleanly: {out:?}"
        );
        let counts = ffprobe_frame_counts(&file);
        let (frames, per_second) = if kind == "video" {
            (counts.get("video").copied().unwrap_or(0), FPS)
        } else {
            (counts.get("audio").copied().unwrap_or(0), 1.0 / AAC_FRAME)
        };
        let expected = seconds * per_second;
        assert!(
            (frames as f64 - expected).abs() <= 2.0,
            "[{io}] {kind}: {frames} frames decoded, {expected:.0} expected from {seconds:.3} s"
        );
    }
    // Both tracks cover the same time, cut at the same points.
    assert!(
        (spans[0] - spans[1]).abs()
            <= 0.05 * (video.segments.len().min(audio.segments.len()) as f64),
        "[{io}] the video timeline covers {:.3} s, the audio one {:.3} s:\n{text}",
        spans[0],
        spans[1]
    );

    probe_av(io, &server.http_url(mpd_path), "h264", None);
    server.assert_no_panic();
}

// ---------------------------------------------------------------------------------------------
// 6. HEVC

#[test]
fn hevc_in_fmp4_hls_reads_as_hvc1() {
    common::require_ffmpeg();
    if !hlsc::have_encoder("libx265") {
        eprintln!("NOTE: skipping the HEVC test: this ffmpeg has no libx265");
        return;
    }
    let dir = TempDir::new("hevc-src");
    let source = hlsc::hevc_aac_source(&dir, 6.0, (320, 240, 30, 30));
    assert!(
        source.keyframes >= 5 && source.video_frames >= 170,
        "the HEVC source: {} frames, {} keyframes",
        source.video_frames,
        source.keyframes
    );
    common::on_each_backend(|io| hevc(io, &source));
}

fn hevc(io: Io, source: &hlsc::FlvSource) {
    let config = ServerConfig::new()
        .hls("hls_fragment", 1)
        .hls("hls_fmp4", true);
    let server = Server::start(io, &config);
    let publisher = hlsc::RtmpSourcePublisher::start(server.port, "s", source.clone())
        .unwrap_or_else(|e| panic!("[{io}] publish HEVC: {e}"));
    let (response, playlist) = wait_playlist(
        &server,
        PLAYLIST,
        Duration::from_secs(15),
        "three segments",
        |p| p.segments.len() >= 3,
    );
    let text = response.body_text();
    for segment in &playlist.segments {
        assert!(
            (f64::from(segment.duration) - 1.0).abs() <= 0.1,
            "[{io}] EXTINF of {}:\n{text}",
            segment.uri
        );
    }
    let init = get_ok(&server, &playlist_uri("s-init.mp4")).body;
    let first = &playlist.segments[0];
    let segment = get_ok(&server, &playlist_uri(&first.uri)).body;
    let dir = TempDir::new("hevc");
    let file = dir.join("first.mp4");
    hlsc::write_concat(&file, &[&init, &segment]);
    probe_av(io, &file.display().to_string(), "hevc", Some("hvc1"));
    check_segment_packets(io, &first.uri, &ffprobe_packets(&file));
    check_decodes(
        io,
        &file,
        f64::from(first.duration),
        "init + the first HEVC segment",
    );
    probe_av(io, &server.http_url(PLAYLIST), "hevc", Some("hvc1"));
    drop(publisher);
    server.assert_no_panic();
}

// ---------------------------------------------------------------------------------------------
// 7. Bad requests

#[test]
fn bad_hls_requests_get_404_or_400() {
    common::require_ffmpeg();
    common::on_each_backend(bad_requests);
}

fn bad_requests(io: Io) {
    let config = ServerConfig::new().hls("hls_fragment", 1);
    let server = Server::start(io, &config);
    let _publisher = FfmpegPublisher::start(&server, "s", PublishOpts::default().seconds(30.0));
    let (_, playlist) = wait_playlist(
        &server,
        PLAYLIST,
        Duration::from_secs(15),
        "a segment",
        |p| !p.segments.is_empty(),
    );
    let next = playlist.media_sequence + playlist.segments.len() as u64;
    let cases: Vec<(String, u16)> = vec![
        // A segment that does not exist yet, and one that never will.
        (format!("/live/s-{}.ts", next + 100), 404),
        ("/live/s-99999999999999999999999.ts".into(), 404),
        ("/live/s-18446744073709551615.ts".into(), 404),
        // The init of a TS stream; an MPD with DASH off.
        ("/live/s-init.mp4".into(), 404),
        ("/live/s.mpd".into(), 404),
        // A stream nobody publishes.
        ("/live/nobody.m3u8".into(), 404),
        ("/live/nobody-0.ts".into(), 404),
        // Malformed blocking-reload parameters.
        (format!("{PLAYLIST}?_HLS_msn=abc"), 400),
        (format!("{PLAYLIST}?_HLS_msn=-1"), 400),
        (format!("{PLAYLIST}?_HLS_msn=1&_HLS_part=x"), 400),
        (format!("{PLAYLIST}?_HLS_part=1"), 400),
        (format!("{PLAYLIST}?_HLS_msn=99999999999999999999999"), 400),
    ];
    for (path, status) in &cases {
        let (response, waited) = hlsc::timed_get(server.http_port, path, Duration::from_secs(5));
        assert_status(io, path, &response, *status);
        assert!(
            waited < Duration::from_secs(1),
            "[{io}] {path}: {status} after {waited:?}"
        );
    }
    // Without LL-HLS, a blocking reload is answered at once with the playlist.
    let path = format!("{PLAYLIST}?_HLS_msn={}&_HLS_part=0", next + 1);
    let (response, waited) = hlsc::timed_get(server.http_port, &path, Duration::from_secs(5));
    assert_status(io, &path, &response, 200);
    assert!(
        waited < Duration::from_secs(1),
        "[{io}] {path} (LL-HLS off) was held {waited:?}"
    );
    parse_m3u8(io, &response.body);
    // Query strings (tokens, cache busters) do not change what a segment is.
    let path = format!("{}?token=abc&_=1", playlist_uri(&playlist.segments[0].uri));
    let response = hlsc::get(server.http_port, &path);
    assert_media_response(io, &path, &response, "video/MP2T");
    // HEAD: the head only.
    let mut conn = HttpConn::connect(server.http_port).expect("connect");
    let head = conn
        .request("HEAD", PLAYLIST, &[("Connection", "close")])
        .expect("HEAD");
    assert_status(io, "HEAD playlist", &head, 200);
    assert!(
        head.content_length().is_some_and(|n| n > 0) && head.body.is_empty(),
        "[{io}] HEAD {PLAYLIST}: {}",
        head.head_text()
    );
    // Still serving.
    get_ok(&server, PLAYLIST);
    server.assert_no_panic();
}

/// Without LL-HLS a playlist names no parts, so a part URI should not resolve; today the
/// server answers `/live/s-N.0.ts` with the whole segment N.
#[test]
fn part_uris_without_ll_hls_are_404() {
    common::require_ffmpeg();
    common::on_each_backend(|io| {
        let config = ServerConfig::new().hls("hls_fragment", 1);
        let server = Server::start(io, &config);
        let _publisher = FfmpegPublisher::start(&server, "s", PublishOpts::default().seconds(30.0));
        wait_playlist(
            &server,
            PLAYLIST,
            Duration::from_secs(15),
            "a segment",
            |p| !p.segments.is_empty(),
        );
        let path = "/live/s-0.0.ts";
        assert_status(io, path, &hlsc::get(server.http_port, path), 404);
        server.assert_no_panic();
    });
}

// ---------------------------------------------------------------------------------------------
// 8. Audio-only and video-only streams

#[test]
fn audio_only_and_video_only_streams_are_segmented() {
    common::require_ffmpeg();
    common::on_each_backend(single_track);
}

/// A child process killed on drop.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        common::kill_child(&mut self.0);
    }
}

/// ffmpeg publishing one track only: the usual sine (AAC) or testsrc2 (H.264) alone.
fn start_single_track(server: &Server, stream: &str, audio: bool) -> KillOnDrop {
    let mut cmd = std::process::Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"]);
    if audio {
        cmd.args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
            .args(["-c:a", "aac"]);
    } else {
        cmd.args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30"])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
            ])
            .args(["-g", "30", "-pix_fmt", "yuv420p"]);
    }
    let child = cmd
        .args(["-t", "30", "-f", "flv", &server.url(stream)])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run ffmpeg");
    KillOnDrop(child)
}

fn single_track(io: Io) {
    let config = ServerConfig::new().hls("hls_fragment", 1);
    let server = Server::start(io, &config);
    let _children = [
        start_single_track(&server, "a", true),
        start_single_track(&server, "v", false),
    ];
    let dir = TempDir::new("single");
    for (stream, kind, codec) in [("a", "audio", "aac"), ("v", "video", "h264")] {
        let path = format!("/live/{stream}.m3u8");
        let (response, playlist) = wait_playlist(
            &server,
            &path,
            Duration::from_secs(15),
            &format!("{kind}-only: three segments"),
            |p| p.segments.len() >= 3,
        );
        let text = response.body_text();
        let mut probed = Vec::new();
        for segment in &playlist.segments {
            let duration = f64::from(segment.duration);
            assert!(
                (duration - 1.0).abs() <= 0.1
                    && playlist.target_duration >= duration.round() as u64,
                "[{io}] {kind}-only: EXTINF {duration}:\n{text}"
            );
            let segment_path = hlsc::resolve(&path, &segment.uri);
            let response = hlsc::get(server.http_port, &segment_path);
            assert_media_response(io, &segment_path, &response, "video/MP2T");
            check_segment_bytes(io, &segment_path, &response.body, false);
            let file = dir.join(&segment.uri);
            std::fs::write(&file, &response.body).expect("write segment");
            let packets = ffprobe_packets(&file);
            assert!(
                !packets.is_empty() && packets.iter().all(|p| p.codec_type == kind),
                "[{io}] {kind}-only segment {} has other packets (or none)",
                segment.uri
            );
            if kind == "video" {
                assert!(
                    packets[0].keyframe,
                    "[{io}] {} starts on a non-keyframe",
                    segment.uri
                );
            }
            probed.push(packets);
        }
        let frame = if kind == "video" { FRAME } else { AAC_FRAME };
        for pair in probed.windows(2) {
            let last = *dts_of(&pair[0], kind).last().expect("packets");
            let first = dts_of(&pair[1], kind)[0];
            assert!(
                ((first - last) - frame).abs() <= 2.0 * frame,
                "[{io}] {kind}-only: DTS jumps from {last:.4} to {first:.4} between segments"
            );
        }
        let streams = ffprobe_streams(&server.http_url(&path), Duration::from_secs(30));
        assert_eq!(streams.len(), 1, "[{io}] {path}: {streams:#?}");
        assert_eq!(
            streams[0]["codec_name"], codec,
            "[{io}] {path}: {streams:#?}"
        );
    }
    server.assert_no_panic();
}
