#!/usr/bin/env python3
"""WebRTC fan-out benchmark: how many 2 Mbit/s WHEP viewers one core carries.

Like benches/srt_viewers/run.py, but the viewers play over WebRTC: the server under test runs
pinned to one core (taskset), the load tool (sluice-load whep-play, which also publishes the
synthetic H.264 + AAC stream over RTMP) to another. Each viewer POSTs a recvonly H.264 + Opus
offer to the server's WHEP endpoint (http://127.0.0.1:API/rtc/v1/whep/?app=live&stream=bench),
then runs ICE (the server is ICE-lite), DTLS-SRTP and RTP on a UDP socket of its own, all
viewers being str0m clients driven from the load tool's one thread. For every configuration
the number of viewers is ramped (doubling, then bisecting) to find the largest N at which
>= 99 % of the viewers receive >= 95 % of real-time video frames with no stall. The
configurations compare sluice's two data planes and UDP segmentation offload:

  sluice-uring, sluice-epoll              the server's default (GSO on where the kernel has it)
  sluice-uring-nogso, sluice-epoll-nogso  GSO off on the server (`udp_gso = false`)

With --publish whip the load tool publishes over WHIP instead of RTMP (a str0m client POSTing
a sendonly H.264 + Opus offer to /rtc/v1/whip/?app=live&stream=bench; the AAC is replaced by
Opus silence): the latency columns are then WHIP→WHEP.

The synthetic AAC is not decodable audio: a server that transcodes AAC to Opus (the
`transcode` feature) may send no audio; viewers are judged on video only, and the report's
`whep.viewers_with_audio` says how many got any.

Binaries come from $CARGO_TARGET_DIR/release (default target/release), built there unless
--no-build. Outputs, in --out (default benches/webrtc_viewers/results): results.json (every
step's load report), summary.md (the table, also printed) and cpu.svg (server CPU vs viewers).
Everything talks to 127.0.0.1 only; every step is bounded in time.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import (  # noqa: E402
    ROOT, UdpSluice, add_output_arguments, add_udp_arguments, benchmark_parser, describe_step,
    free_port, free_udp_port, run_benchmark, run_udp_step, udp_header, udp_servers,
    udp_summary, wait_port, write_outputs)

BIN = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "release"
PLOT_TITLE = "WebRTC (WHEP) fan-out, 2 Mbit/s per viewer: server CPU vs viewers (one core)"
PLOT_X_STEPS = (50, 100, 250, 500, 1000, 2000, 5000, 10000)


class Server(UdpSluice):
    """sluice with one worker on one core: RTMP for the publisher, the HTTP API for WHEP
    signalling, one UDP port for every viewer's media."""

    bin_dir = BIN

    def __init__(self, name, io, gso):
        super().__init__(name, io, gso)
        self.api_port = self.rtc_port = None

    def start(self):
        self.api_port, self.rtc_port = free_port(), free_udp_port()
        self.start_sluice("webrtc-viewers",
                          f'[http_api]\nenabled = true\nlisten = "127.0.0.1:{self.api_port}"\n'
                          f'[rtc_server]\nenabled = true\nlisten = "127.0.0.1:{self.rtc_port}"\n'
                          'candidate = "127.0.0.1"\n')
        # The API runs on its own thread: wait for it too.
        if not wait_port(self.api_port):
            self.stop()
            raise RuntimeError(f"{self.name}: the HTTP API did not listen on {self.api_port}")


def play_args(args):
    """whep-play's arguments for a started server: its WHEP endpoint, and how to publish."""
    def play(server):
        api = f"http://127.0.0.1:{server.api_port}/rtc/v1"
        play = ["whep-play", "--url", f"{api}/whep/?app=live&stream=bench"]
        if args.publish == "whip":
            play += ["--publish-whip", f"{api}/whip/?app=live&stream=bench"]
        else:
            play += ["--publish-to", f"rtmp://127.0.0.1:{server.port}/live/bench"]
        return play
    return play


def run_step(server, viewers, args):
    """Starts the server, runs one load step, returns the load report (dict)."""
    report = run_udp_step(server, viewers, args, play_args(args))
    report["publish"] = args.publish
    return report


def describe(report):
    """The step's log line, with the viewers' connect time and RTP losses."""
    whep = report.get("whep") or {}
    connect = (whep.get("connect_ms") or {}).get("p50")
    connect = "-" if connect is None else f"{connect:.0f}"
    return describe_step(report, f", connected {whep.get('connected', '?')} (p50 {connect} ms), "
                                 f"discontinuities {whep.get('discontinuities', '?')}, "
                                 f"NACKs {whep.get('video_nacks_sent', '?')}")


def summarize(reports):
    """Capacity per configuration, then costs at the largest N every configuration passed
    unsaturated."""
    def cells(report):
        whep = report.get("whep") or {}
        connect = whep.get("connect_ms") or {}
        connect_cell = (f"{connect['p50']:.0f} / {connect['p99']:.0f} ms" if connect else "-")
        return [connect_cell,
                f"{whep.get('discontinuities', '-')} / {whep.get('video_nacks_sent', '-')}"]
    return udp_summary(reports, "WebRTC viewers", "",
                       ["connect p50 / p99", "discontinuities / NACKs"], cells)


def write_results(out, results, args):
    """summary.md, results.json and cpu.svg in `out`; prints the summary."""
    header = udp_header(results["machine"], args, "WebRTC (WHEP, str0m clients)",
                        f", published over {args.publish.upper()}")
    write_outputs(out, results, header, summarize(results["steps"]), PLOT_TITLE, PLOT_X_STEPS)


def main():
    parser = benchmark_parser(__doc__)
    # DTLS handshakes cost the server (and the load tool) far more than SRT's: a gentler ramp.
    add_udp_arguments(parser, start=100, max_viewers=4000, resolution=100, ramp_rate=200)
    parser.add_argument("--publish", default="rtmp", choices=["rtmp", "whip"],
                        help="how the load tool publishes the stream (whip: WHIP→WHEP latency)")
    add_output_arguments(parser, ROOT / "benches/webrtc_viewers/results")
    run_benchmark(parser, "WebRTC fan-out benchmark", make_servers, run_step, describe,
                  write_results)


def make_servers(args):
    """One sluice per configuration --servers names."""
    return udp_servers(args, Server)


if __name__ == "__main__":
    main()
