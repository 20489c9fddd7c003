#!/usr/bin/env python3
"""SRT fan-out benchmark: how many 2 Mbit/s SRT viewers one core carries.

Like benches/fanout/run.py, but the viewers play over SRT (MPEG-TS payloads, one UDP socket
per viewer): the server under test runs pinned to one core (taskset), the load tool
(sluice-load srt-play, which also publishes the synthetic stream over RTMP) to another. For
every configuration the number of viewers is ramped (doubling, then bisecting) to find the
largest N at which >= 99 % of the viewers receive >= 95 % of real-time frames with no stall.
The configurations compare sluice's two data planes and UDP segmentation offload:

  sluice-uring, sluice-epoll              the server's default (GSO on where the kernel has it)
  sluice-uring-nogso, sluice-epoll-nogso  GSO off on the server

GSO is turned off on the server with `udp_gso = false` at the top level of its sluice.toml
(every worker calls Driver::set_udp_gso(false)); the server's log says which it runs with.

The load tool's own GSO is set with --load-gso on|off (passed as sluice-load --gso); its
sends are mostly ACKs, so it matters less there.

Outputs, in --out (default benches/srt_viewers/results): results.json (every step's load
report), summary.md (the table, also printed) and cpu.svg (server CPU vs viewers).
Everything talks to 127.0.0.1 only; every step is bounded in time.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import (  # noqa: E402
    ROOT, UdpSluice, add_output_arguments, add_udp_arguments, benchmark_parser, describe_step,
    free_udp_port, run_benchmark, run_udp_step, udp_header, udp_servers, udp_summary,
    write_outputs)

PLOT_TITLE = "SRT fan-out, 2 Mbit/s per viewer: server CPU vs viewers (one core)"
PLOT_X_STEPS = (50, 100, 250, 500, 1000, 2000, 5000, 10000, 20000)


class Server(UdpSluice):
    """sluice with one worker on one core: RTMP for the publisher, SRT for the viewers."""

    def __init__(self, name, io, gso):
        super().__init__(name, io, gso)
        self.srt_port = None

    def start(self):
        self.srt_port = free_udp_port()
        self.start_sluice("srt-viewers",
                          "[http_api]\nenabled = false\n"
                          f'[srt_server]\nlisten = "127.0.0.1:{self.srt_port}"\n')


def run_step(server, viewers, args):
    """Starts the server, runs one load step, returns the load report (dict)."""
    return run_udp_step(server, viewers, args, lambda server: [
        "srt-play",
        "--url", f"srt://127.0.0.1:{server.srt_port}?streamid=#!::r=live/bench,m=request",
        "--publish-to", f"rtmp://127.0.0.1:{server.port}/live/bench"])


def describe(report):
    """The step's log line, with the SRT connections' losses and retransmissions."""
    srt = report.get("srt") or {}
    return describe_step(report, f", lost {srt.get('lost_packets', '?')}, retransmitted "
                                 f"{srt.get('retransmitted_packets', '?')}")


def summarize(reports):
    """Capacity per configuration, then costs at the largest N every configuration passed
    unsaturated."""
    def cells(report):
        srt = report.get("srt") or {}
        return [f"{srt.get('lost_packets', '-')} / {srt.get('retransmitted_packets', '-')}"]
    return udp_summary(reports, "SRT viewers", " (TSBPD incl.)", ["lost / retransmitted pkts"],
                       cells)


def write_results(out, results, args):
    """summary.md, results.json and cpu.svg in `out`; prints the summary."""
    header = udp_header(results["machine"], args, "SRT")
    write_outputs(out, results, header, summarize(results["steps"]), PLOT_TITLE, PLOT_X_STEPS)


def main():
    parser = benchmark_parser(__doc__)
    add_udp_arguments(parser, start=250, max_viewers=8000, resolution=250, ramp_rate=1000)
    add_output_arguments(parser, ROOT / "benches/srt_viewers/results")
    run_benchmark(parser, "SRT fan-out benchmark", make_servers, run_step, describe,
                  write_results)


def make_servers(args):
    """One sluice per configuration --servers names."""
    return udp_servers(args, Server)


if __name__ == "__main__":
    main()
