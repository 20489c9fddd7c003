#!/usr/bin/env python3
"""Side-by-side RTMP fan-out benchmark: how many 2 Mbit/s viewers one core carries.

Each server under test runs pinned to one core (taskset), the load tool (sluice-load) to
another. For every server the number of RTMP players is ramped (doubling, then bisecting)
to find the largest N at which >= 99 % of the players receive >= 95 % of real-time frames
with no stall. Every server runs in the same invocation, so the ratios printed at the end
compare like with like: sluice on io_uring, sluice on epoll, nginx with the RTMP module
(Debian's libnginx-mod-rtmp, installed here if missing), and any other server given with
--server NAME=COMMAND.

Outputs, in --out (default benches/fanout/results): results.json (every step's load
report), summary.md (the table, also printed) and cpu.svg (server CPU vs viewers).
Everything talks to 127.0.0.1 only; every step is bounded in time.
"""

import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import (  # noqa: E402
    LOAD_CORE, ROOT, SERVER_CORE, UNSATURATED, PinnedServer, add_output_arguments,
    add_ramp_arguments, apt_install, benchmark_parser, best_per_server, capacity_table,
    comparison_load, cost_cells, describe_step, fmt, free_port, passing_by_server, process_tree,
    run_benchmark, run_header, run_load, write_outputs)

PLOT_TITLE = "RTMP fan-out, 2 Mbit/s per viewer: server CPU vs viewers (one core)"
PLOT_X_STEPS = (500, 1000, 2000, 4000, 5000, 10000, 20000)


def ensure_nginx_rtmp():
    module = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
    if shutil.which("nginx") and module.exists():
        return module
    apt_install("nginx-light", "libnginx-mod-rtmp")
    return module


class Server(PinnedServer):
    """A server under test: how to start it on a port, and which pids to measure."""

    def __init__(self, name, start, measured_pids=None, play="rtmp"):
        super().__init__(name)
        self._start = start
        self._measured = measured_pids
        # "rtmp": players play rtmp://; "flv": HTTP-FLV from the server's HTTP port.
        self.play = play
        self.http_port = None

    def start(self, port):
        self.make_workdir("fanout")
        self.http_port = free_port()
        self.launch(self._start(port, self.workdir, self.http_port), port)

    def pids(self):
        if self._measured:
            return self._measured(self.proc.pid)
        return super().pids()


def sluice_server(name, io, mw_latency_ms=None, play="rtmp"):
    binary = ROOT / "target/release/sluice"

    def start(port, workdir, http_port):
        conf = Path(workdir) / "sluice.toml"
        play_conf = ""
        if mw_latency_ms is not None:
            play_conf = f"[vhost.__defaultVhost__.play]\nmw_latency_ms = {mw_latency_ms}\n"
            if mw_latency_ms == 0:
                play_conf += "mw_msgs = 1\n"
        conf.write_text(
            "workers = 1\nmax_connections = 100000\n"
            f'[rtmp]\nlisten = "127.0.0.1:{port}"\n[log]\nlevel = "warn"\n'
            f'[http_server]\nlisten = "127.0.0.1:{http_port}"\n'
            '[http_api]\nenabled = false\n'
            # Fan-out alone, as nginx-rtmp is configured: no HLS segmenting of the stream (its
            # window would also count as memory per viewer).
            "[vhost.__defaultVhost__.hls]\nenabled = false\n" + play_conf
        )
        return [str(binary), "-c", str(conf), "--io", io]

    return Server(name, start, play=play)


def nginx_children(master):
    """nginx's worker process(es): the children of the master."""
    out = subprocess.run(
        ["pgrep", "-P", str(master)], capture_output=True, text=True
    ).stdout.split()
    return [int(pid) for pid in out] or [master]


def nginx_rtmp_server(module):
    def start(port, workdir, _http_port):
        conf = Path(workdir) / "nginx.conf"
        conf.write_text(
            f"load_module {module};\n"
            "worker_processes 1;\ndaemon off;\nmaster_process on;\n"
            f"pid {workdir}/nginx.pid;\nerror_log {workdir}/error.log warn;\n"
            "worker_rlimit_nofile 100000;\n"
            "events { worker_connections 65536; }\n"
            "rtmp {\n  server {\n"
            f"    listen 127.0.0.1:{port};\n"
            "    application live { live on; }\n  }\n}\n"
        )
        return ["nginx", "-p", workdir, "-c", str(conf)]

    return Server("nginx-rtmp", start, nginx_children)


def custom_server(name, template):
    def start(port, workdir, _http_port):
        return ["sh", "-c", template.format(port=port, workdir=workdir)]

    return Server(name, start, process_tree)


def run_step(server, viewers, args):
    """Starts the server, runs one load step, returns the load report (dict)."""
    port = free_port()
    server.start(port)
    try:
        rtmp_url = f"rtmp://127.0.0.1:{port}/live/fanout"
        if server.play == "flv":
            play = ["flv-play", "--url", f"http://127.0.0.1:{server.http_port}/live/fanout.flv",
                    "--publish-to", rtmp_url]
        else:
            play = ["rtmp-play", "--url", rtmp_url, "--publish"]
        return run_load(server, viewers, args, [], play)
    finally:
        server.stop()


def summarize(best, reports, reference):
    """Two tables: capacity (largest passing N per server), and efficiency at the largest N
    every server passed without saturating its core, so costs compare like with like."""
    lines = capacity_table(best, "viewers")
    passing = passing_by_server(reports)
    n = comparison_load(best, passing)
    if n is None:
        return "\n".join(lines)
    at_n = {name: passing[name][n] for name in best}
    lines += ["", f"Efficiency at {n} viewers (the largest load every server passed using at "
                  f"most {UNSATURATED:.0%} of its core):", "",
              "| server | server CPU | core-s per Gbit | RSS/viewer | latency p50 / p99 | startup p50 |",
              "|---|---|---|---|---|---|"]
    for name, report in at_n.items():
        startup = report.get("startup_ms") or {}
        lines.append(f"| {name} | {cost_cells(report)} | {fmt(startup.get('p50'), 1)} ms |")
    ref_best, ref_n = best.get(reference), at_n.get(reference)
    if ref_best and ref_n:
        lines += ["", f"Ratios against {reference} (same run; CPU and RSS at {n} viewers):", "",
                  "| server | viewers/core | core-s per Gbit | RSS/viewer |", "|---|---|---|---|"]
        for name in best:
            if best[name] is None:
                continue

            def ratio(key):
                a, b = at_n[name].get(key), ref_n.get(key)
                return "-" if not a or not b else f"{a / b:.2f}x"

            lines.append(f"| {name} | {best[name]['viewers'] / ref_best['viewers']:.2f}x | "
                         f"{ratio('server_cpu_s_per_gbit')} | {ratio('server_rss_per_viewer_kib')} |")
    return "\n".join(lines)


def main():
    parser = benchmark_parser(__doc__)
    parser.add_argument("--servers", default="sluice-uring,sluice-epoll,nginx-rtmp",
                        help="comma-separated: sluice-uring, sluice-epoll, sluice-uring-mw0, "
                             "sluice-epoll-mw0, sluice-uring-flv, sluice-epoll-flv (HTTP-FLV "
                             "players), nginx-rtmp")
    parser.add_argument("--server", action="append", default=[], metavar="NAME=COMMAND",
                        help="another server: a shell command with {port} and {workdir}, "
                             "serving rtmp://127.0.0.1:{port}/live/STREAM")
    add_ramp_arguments(parser, start=1000, max_viewers=16000, resolution=500, ramp_rate=2000,
                       ramp_help="new players per second")
    parser.add_argument("--reference", default="nginx-rtmp", help="ratios are against this")
    add_output_arguments(parser, ROOT / "benches/fanout/results")
    run_benchmark(parser, "fan-out benchmark", make_servers, run_step, describe_step,
                  write_results)


def make_servers(args):
    """The servers --servers and --server name, in that order."""
    servers = []
    for name in filter(None, args.servers.split(",")):
        if name == "sluice-uring":
            servers.append(sluice_server(name, "uring"))
        elif name == "sluice-epoll":
            servers.append(sluice_server(name, "epoll"))
        elif name == "sluice-uring-mw0":
            servers.append(sluice_server(name, "uring", 0))
        elif name == "sluice-epoll-mw0":
            servers.append(sluice_server(name, "epoll", 0))
        elif name == "sluice-uring-flv":
            servers.append(sluice_server(name, "uring", play="flv"))
        elif name == "sluice-epoll-flv":
            servers.append(sluice_server(name, "epoll", play="flv"))
        elif name == "nginx-rtmp":
            servers.append(nginx_rtmp_server(ensure_nginx_rtmp()))
        else:
            sys.exit(f"unknown server {name!r}")
    for spec in args.server:
        name, _, command = spec.partition("=")
        servers.append(custom_server(name, command))
    return servers


def write_results(out, results, args):
    """summary.md, results.json and cpu.svg in `out`; prints the summary."""
    machine, reports = results["machine"], results["steps"]
    table = summarize(best_per_server(reports), reports, args.reference)
    header = (f"{run_header(machine, args)}; server on core {SERVER_CORE}, load tool on core "
              f"{LOAD_CORE}.\nCommand: `{machine['command']}`\n")
    write_outputs(out, results, header, table, PLOT_TITLE, PLOT_X_STEPS)


if __name__ == "__main__":
    main()
