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
    LOAD_CORE, ROOT, SERVER_CORE, UNSATURATED, PinnedServer, add_output_arguments,
    add_ramp_arguments, benchmark_parser, best_per_server, capacity_table, comparison_load,
    cost_cells, describe_step, free_port, free_udp_port, passing_by_server, run_benchmark,
    run_header, run_load, write_outputs)

PLOT_TITLE = "SRT fan-out, 2 Mbit/s per viewer: server CPU vs viewers (one core)"
PLOT_X_STEPS = (50, 100, 250, 500, 1000, 2000, 5000, 10000, 20000)
CONFIGS = {
    "sluice-uring": ("uring", True),
    "sluice-epoll": ("epoll", True),
    "sluice-uring-nogso": ("uring", False),
    "sluice-epoll-nogso": ("epoll", False),
}


class Server(PinnedServer):
    """sluice with one worker on one core: RTMP for the publisher, SRT for the viewers."""

    def __init__(self, name, io, gso):
        super().__init__(name)
        self.io, self.gso = io, gso
        self.port = self.srt_port = None

    def start(self):
        self.make_workdir("srt-viewers")
        self.port, self.srt_port = free_port(), free_udp_port()
        conf = Path(self.workdir) / "sluice.toml"
        conf.write_text(
            f"workers = 1\nmax_connections = 100000\nudp_gso = {str(self.gso).lower()}\n"
            f'[rtmp]\nlisten = "127.0.0.1:{self.port}"\n[log]\nlevel = "warn"\n'
            f'[http_server]\nlisten = "127.0.0.1:{free_port()}"\n'
            "[http_api]\nenabled = false\n"
            f'[srt_server]\nlisten = "127.0.0.1:{self.srt_port}"\n'
            # Fan-out alone: no HLS segmenting of the stream.
            "[vhost.__defaultVhost__.hls]\nenabled = false\n"
        )
        # The RTMP port answering means the worker (and its SRT socket) is up.
        self.launch([str(ROOT / "target/release/sluice"), "-c", str(conf), "--io", self.io],
                    self.port)


def run_step(server, viewers, args):
    """Starts the server, runs one load step, returns the load report (dict)."""
    server.start()
    try:
        play = ["srt-play",
                "--url", f"srt://127.0.0.1:{server.srt_port}?streamid=#!::r=live/bench,m=request",
                "--publish-to", f"rtmp://127.0.0.1:{server.port}/live/bench"]
        report = run_load(server, viewers, args, ["--gso", args.load_gso], play)
        report["server_gso"] = server.gso
        return report
    finally:
        server.stop()


def describe(report):
    """The step's log line, with the SRT connections' losses and retransmissions."""
    srt = report.get("srt") or {}
    return describe_step(report, f", lost {srt.get('lost_packets', '?')}, retransmitted "
                                 f"{srt.get('retransmitted_packets', '?')}")


def summarize(reports):
    """Capacity per configuration, then costs at the largest N every configuration passed
    unsaturated."""
    best = best_per_server(reports)
    lines = capacity_table(best, "SRT viewers")
    passing = passing_by_server(reports)
    n = comparison_load(best, passing)
    if n is None:
        return "\n".join(lines)
    lines += ["", f"At {n} viewers (the largest load every configuration passed using at most "
                  f"{UNSATURATED:.0%} of its core):", "",
              "| server | server CPU | core-s per Gbit | RSS/viewer | latency p50 / p99 "
              "(TSBPD incl.) | lost / retransmitted pkts |",
              "|---|---|---|---|---|---|"]
    for name in best:
        report = passing[name][n]
        srt = report.get("srt") or {}
        lines.append(f"| {name} | {cost_cells(report)} | "
                     f"{srt.get('lost_packets', '-')} / {srt.get('retransmitted_packets', '-')} |")
    return "\n".join(lines)


def write_results(out, results, args):
    """summary.md, results.json and cpu.svg in `out`; prints the summary."""
    machine, reports = results["machine"], results["steps"]
    table = summarize(reports)
    header = (f"{run_header(machine, args)} over SRT; server on core {SERVER_CORE}, load tool "
              f"on core {LOAD_CORE} (--io {args.load_io}, --gso {args.load_gso}). GSO off on the "
              f"server = `udp_gso = false`.\nCommand: `{machine['command']}`\n")
    write_outputs(out, results, header, table, PLOT_TITLE, PLOT_X_STEPS)


def main():
    parser = benchmark_parser(__doc__)
    parser.add_argument("--servers", default=",".join(CONFIGS),
                        help=f"comma-separated, of: {', '.join(CONFIGS)}")
    add_ramp_arguments(parser, start=250, max_viewers=8000, resolution=250, ramp_rate=1000,
                       ramp_help="new viewers per second")
    parser.add_argument("--load-gso", default="on", choices=["on", "off"],
                        help="GSO on the load tool's sockets")
    add_output_arguments(parser, ROOT / "benches/srt_viewers/results")
    run_benchmark(parser, "SRT fan-out benchmark", make_servers, run_step, describe,
                  write_results)


def make_servers(args):
    """One sluice per configuration --servers names."""
    servers = []
    for name in filter(None, args.servers.split(",")):
        if name not in CONFIGS:
            sys.exit(f"unknown server {name!r}; known: {', '.join(CONFIGS)}")
        io, gso = CONFIGS[name]
        servers.append(Server(name, io, gso))
    return servers


if __name__ == "__main__":
    main()
