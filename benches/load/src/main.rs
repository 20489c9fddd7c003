//! sluice-load: a load generator for RTMP servers (sluice, SRS, nginx-rtmp, ...).
//!
//! `publish` sends a synthetic H.264+AAC stream (or an FLV file, looped) in real time;
//! `rtmp-play` opens N players of a stream — optionally publishing it from the same process,
//! which lets it measure publish→receive latency — and reports what the players saw as JSON
//! (plus a one-line summary on stderr). `flv-play` and `hls-play` do the same for HTTP-FLV and
//! HLS viewers, `srt-play` for SRT viewers (MPEG-TS over SRT) and `whep-play` for WebRTC
//! viewers (WHEP signalling, str0m clients). Runs on io_uring or epoll, like the server.

mod flv;
mod hls;
mod http;
mod procstat;
mod rtc_client;
mod run;
mod source;
mod srt;
mod stats;
mod udp;
mod whep;
mod whip;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use sluice_proto::rtmp::RtmpUrl;
use sluice_ring::Backend;

use run::{Plan, PlayProtocol, Runner};
use source::{FlvLoop, Source, Synthetic, SyntheticConfig};

#[derive(Parser)]
#[command(
    name = "sluice-load",
    version,
    about = "Load generator for RTMP servers"
)]
struct Cli {
    /// I/O backend: uring or epoll (default: uring where available).
    #[arg(long, global = true)]
    io: Option<Backend>,
    /// Write the JSON report here instead of stdout.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// Server process ids whose CPU and memory to report (Linux /proc); repeatable.
    #[arg(long = "server-pid", global = true)]
    server_pids: Vec<u32>,
    /// Exit with status 2 unless every player was healthy (≥ 95 % of real-time frames, no
    /// stall, no failure): for CI smoke runs.
    #[arg(long, global = true)]
    require_healthy: bool,
    /// UDP segmentation offload (GSO) for this tool's UDP sends: on or off; default: the
    /// driver's (on where the kernel has it). Matters for `srt-play`; receives use GRO either
    /// way.
    #[arg(long, global = true, value_parser = parse_on_off, value_name = "on|off")]
    gso: Option<bool>,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Print the I/O backends this machine can run (e.g. "uring epoll") and exit.
    Backends,
    /// Publish a stream in real time.
    Publish {
        #[arg(long)]
        url: String,
        #[command(flatten)]
        source: SourceArgs,
        /// Seconds to publish.
        #[arg(long, default_value_t = 30.0)]
        duration: f64,
    },
    /// Open N RTMP players of a stream and measure what they receive.
    RtmpPlay {
        #[arg(long)]
        url: String,
        /// Also publish the stream from this process (needed for latency).
        #[arg(long)]
        publish: bool,
        /// Use the complex (digest) handshake like ffmpeg, instead of the simple one.
        #[arg(long)]
        complex_handshake: bool,
        #[command(flatten)]
        play: PlayArgs,
    },
    /// Open N HTTP-FLV players (http://host:port/app/stream.flv) and measure what they receive.
    FlvPlay {
        #[arg(long)]
        url: String,
        /// Also publish the stream from this process to this RTMP URL (needed for latency).
        #[arg(long)]
        publish_to: Option<String>,
        #[command(flatten)]
        play: PlayArgs,
    },
    /// Open N HLS viewers of a media playlist (http://host:port/app/stream.m3u8): each fetches
    /// the playlist and every new segment from the live edge on one keep-alive connection, and
    /// is judged on media seconds received per wall second and on whether its buffer would
    /// have run dry. Viewers start once the playlist lists three segments.
    HlsPlay {
        #[arg(long)]
        url: String,
        /// Also publish the stream from this process to this RTMP URL.
        #[arg(long)]
        publish_to: Option<String>,
        #[command(flatten)]
        play: PlayArgs,
    },
    /// Open N SRT viewers (callers, one UDP socket each) of a stream:
    /// srt://host:port?streamid=#!::r=app/stream,m=request (or srt://host:port/app/stream).
    /// Video frames are counted in the MPEG-TS they receive; with --publish-to, the synthetic
    /// frame numbers give publish→receive latency (TSBPD latency included).
    SrtPlay {
        #[arg(long)]
        url: String,
        /// Also publish the stream from this process to this RTMP URL (needed for latency).
        #[arg(long)]
        publish_to: Option<String>,
        /// TSBPD latency to ask for (ms); a connection uses the larger of ours and the
        /// server's.
        #[arg(long, default_value_t = 120)]
        latency_ms: u64,
        #[command(flatten)]
        play: PlayArgs,
    },
    /// Open N WebRTC viewers of a stream over WHEP: each POSTs an offer (recvonly H.264 +
    /// Opus, a host candidate on a UDP socket of its own) to
    /// http://host:port/rtc/v1/whep/?app=APP&stream=STREAM, then runs ICE, DTLS-SRTP and
    /// RTP in a str0m client. Video access units are counted; with --publish-to or
    /// --publish-whip, the synthetic frame numbers give publish→receive latency. At the end
    /// each viewer DELETEs its session.
    WhepPlay {
        #[arg(long)]
        url: String,
        /// Also publish the stream from this process to this RTMP URL (needed for latency).
        #[arg(long, conflicts_with = "publish_whip")]
        publish_to: Option<String>,
        /// Also publish the stream from this process over WHIP to this endpoint,
        /// http://host:port/rtc/v1/whip/?app=APP&stream=STREAM: a str0m client sending the
        /// source's H.264 (sendonly, parameter sets before keyframes; a keyframe request makes
        /// the synthetic source's next frame a keyframe) and Opus silence; the AAC audio is
        /// not sent. Gives WHIP→WHEP latency.
        #[arg(long, value_name = "URL")]
        publish_whip: Option<String>,
        #[command(flatten)]
        play: PlayArgs,
    },
}

fn parse_on_off(text: &str) -> Result<bool, String> {
    match text {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(format!("{other:?}: expected on or off")),
    }
}

/// Splits `http://host:port/path` into the socket address, Host header and path.
fn parse_http_url(url: &str) -> Result<(std::net::SocketAddr, String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: not an http:// URL"))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()));
    let with_port = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&with_port)
        .map_err(|e| format!("{url}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url}: no address"))?;
    Ok((addr, authority.to_string(), format!("/{path}")))
}

/// What every player mode shares: how many, how fast they arrive, how long to measure.
#[derive(Args)]
struct PlayArgs {
    #[arg(long, default_value_t = 100)]
    viewers: usize,
    /// New players per second (0 = all at once).
    #[arg(long, default_value_t = 1000.0)]
    ramp: f64,
    /// Seconds after the last player connected before measuring.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    #[command(flatten)]
    source: SourceArgs,
    /// Frame rate a healthy player must see (95 % of it); default: the source's fps.
    #[arg(long)]
    expect_fps: Option<f64>,
}

impl PlayArgs {
    fn expected_fps(&self) -> f64 {
        self.expect_fps.unwrap_or(f64::from(self.source.fps))
    }
}

#[derive(Args)]
struct SourceArgs {
    /// Publish this FLV file, looped, instead of a synthetic stream.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Synthetic stream bitrate in bits/s (audio included).
    #[arg(long, default_value_t = 2_000_000)]
    bitrate: u64,
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Frames per GOP.
    #[arg(long, default_value_t = 30)]
    gop: u32,
}

impl SourceArgs {
    fn open(&self) -> Result<Source, String> {
        match &self.file {
            Some(path) => FlvLoop::open(path)
                .map(Source::File)
                .map_err(|e| e.to_string()),
            None => Ok(Source::Synthetic(Synthetic::new(SyntheticConfig {
                bitrate: self.bitrate,
                fps: self.fps,
                gop: self.gop,
            }))),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Mode::Backends = cli.mode {
        let uring = sluice_ring::uring_support().is_ok();
        println!("{}", if uring { "uring epoll" } else { "epoll" });
        return ExitCode::SUCCESS;
    }
    let backend = cli.io.unwrap_or_else(|| Backend::detect().0);
    match run(
        cli.mode,
        backend,
        cli.json,
        cli.server_pids,
        cli.require_healthy,
        cli.gso,
    ) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("sluice-load: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The plan of an HTTP player mode (`url` is `http://host:port/path`), publishing to
/// `publish_to` from this process if given.
fn http_plan(
    backend: Backend,
    url: &str,
    publish_to: Option<String>,
    play: &PlayArgs,
    server_pids: &[u32],
    protocol: impl FnOnce(String, String) -> PlayProtocol,
) -> Result<Plan, String> {
    let (play_addr, host, path) = parse_http_url(url)?;
    let protocol = protocol(host, path);
    player_plan(backend, play_addr, protocol, publish_to, play, server_pids)
}

/// The plan of a non-RTMP player mode: players of `play_addr`, the stream published to
/// `publish_to` from this process if given.
fn player_plan(
    backend: Backend,
    play_addr: std::net::SocketAddr,
    protocol: PlayProtocol,
    publish_to: Option<String>,
    play: &PlayArgs,
    server_pids: &[u32],
) -> Result<Plan, String> {
    // Without a publisher URL the RTMP side is unused; any valid URL fills it.
    let rtmp = publish_to
        .clone()
        .unwrap_or_else(|| "rtmp://127.0.0.1/live/unused".into());
    let parsed = RtmpUrl::parse(&rtmp).map_err(|e| format!("{rtmp}: {e}"))?;
    Ok(Plan {
        backend,
        addr: if publish_to.is_some() {
            run::resolve(&parsed)?
        } else {
            play_addr
        },
        url: parsed,
        protocol,
        play_addr,
        viewers: play.viewers,
        ramp_per_s: play.ramp,
        publish: match publish_to {
            Some(_) => Some(play.source.open()?),
            None => None,
        },
        warmup: Duration::from_secs_f64(play.warmup),
        measure: Duration::from_secs_f64(play.duration),
        complex_handshake: false,
        server_pids: server_pids.to_vec(),
        udp_gso: None,
        publish_whip: None,
    })
}

/// Runs the load; `Ok(false)` when `require_healthy` and some player was not.
fn run(
    mode: Mode,
    backend: Backend,
    json: Option<PathBuf>,
    server_pids: Vec<u32>,
    require_healthy: bool,
    udp_gso: Option<bool>,
) -> Result<bool, String> {
    let (url_text, plan, expected_fps, mode_name) = match mode {
        Mode::Backends => unreachable!("handled in main"),
        Mode::Publish {
            url,
            source,
            duration,
        } => {
            let parsed = RtmpUrl::parse(&url).map_err(|e| format!("{url}: {e}"))?;
            let addr = run::resolve(&parsed)?;
            let plan = Plan {
                backend,
                addr,
                url: parsed,
                protocol: PlayProtocol::Rtmp,
                play_addr: addr,
                viewers: 0,
                ramp_per_s: 0.0,
                publish: Some(source.open()?),
                warmup: Duration::ZERO,
                measure: Duration::from_secs_f64(duration),
                complex_handshake: false,
                server_pids: server_pids.clone(),
                udp_gso: None,
                publish_whip: None,
            };
            (url, plan, Some(f64::from(source.fps)), "publish")
        }
        Mode::RtmpPlay {
            url,
            publish,
            complex_handshake,
            play,
        } => {
            let parsed = RtmpUrl::parse(&url).map_err(|e| format!("{url}: {e}"))?;
            let addr = run::resolve(&parsed)?;
            let plan = Plan {
                backend,
                addr,
                url: parsed,
                protocol: PlayProtocol::Rtmp,
                play_addr: addr,
                viewers: play.viewers,
                ramp_per_s: play.ramp,
                publish: if publish {
                    Some(play.source.open()?)
                } else {
                    None
                },
                warmup: Duration::from_secs_f64(play.warmup),
                measure: Duration::from_secs_f64(play.duration),
                complex_handshake,
                server_pids: server_pids.clone(),
                udp_gso: None,
                publish_whip: None,
            };
            (url, plan, Some(play.expected_fps()), "rtmp-play")
        }
        Mode::FlvPlay {
            url,
            publish_to,
            play,
        } => {
            let plan = http_plan(
                backend,
                &url,
                publish_to,
                &play,
                &server_pids,
                |host, path| PlayProtocol::Flv { host, path },
            )?;
            (url, plan, Some(play.expected_fps()), "flv-play")
        }
        Mode::HlsPlay {
            url,
            publish_to,
            play,
        } => {
            let plan = http_plan(
                backend,
                &url,
                publish_to,
                &play,
                &server_pids,
                |host, path| PlayProtocol::Hls { host, path },
            )?;
            (url, plan, None, "hls-play")
        }
        Mode::SrtPlay {
            url,
            publish_to,
            latency_ms,
            play,
        } => {
            let (play_addr, stream_id) = srt::parse_url(&url)?;
            let protocol = PlayProtocol::Srt {
                stream_id,
                latency: Duration::from_millis(latency_ms),
            };
            let plan = player_plan(
                backend,
                play_addr,
                protocol,
                publish_to,
                &play,
                &server_pids,
            )?;
            (url, plan, Some(play.expected_fps()), "srt-play")
        }
        Mode::WhepPlay {
            url,
            publish_to,
            publish_whip,
            play,
        } => {
            let (play_addr, host, path) = whep::parse_url(&url)?;
            let mut plan = player_plan(
                backend,
                play_addr,
                PlayProtocol::Whep { host, path },
                publish_to,
                &play,
                &server_pids,
            )?;
            if let Some(whip_url) = publish_whip {
                plan.publish_whip = Some(whip::WhipTarget::parse(&whip_url)?);
                plan.publish = Some(play.source.open()?);
            }
            (url, plan, Some(play.expected_fps()), "whep-play")
        }
    };
    let mut plan = plan;
    plan.udp_gso = udp_gso;
    let udp_mode = matches!(
        plan.protocol,
        PlayProtocol::Srt { .. } | PlayProtocol::Whep { .. }
    );
    let outcome = Runner::new(plan)?.run();
    if let Some(why) = &outcome.publisher_failure {
        eprintln!("sluice-load: publisher: {why}");
    }
    let report = stats::report(stats::ReportInput {
        mode: mode_name,
        url: &url_text,
        io: backend.name(),
        viewers: &outcome.viewers,
        window: outcome.window,
        expected_fps,
        latency: &outcome.latency,
        server: outcome.server,
        own: outcome.own,
        udp_gso: (udp_mode || udp_gso.is_some()).then_some(outcome.udp_gso),
        whep_deletes: outcome.whep_deletes,
        whip: outcome.whip,
    });
    eprintln!("sluice-load: {}", report.summary());
    let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    match json {
        Some(path) => {
            std::fs::write(&path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => println!("{text}"),
    }
    if outcome.publisher_failure.is_some() {
        return Err("the publisher failed".into());
    }
    Ok(!require_healthy || report.healthy_viewers == report.viewers)
}
