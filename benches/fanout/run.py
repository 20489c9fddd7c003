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

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import apt_install, free_port, log, process_tree, wait_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SERVER_CORE = "0"
LOAD_CORE = "1"
PASS_RATIO = 0.99
# Costs are compared where no server is saturated: near 100 % every server's CPU per Gbit
# falls, as each wake-up finds more work to batch.
UNSATURATED = 0.80
# File descriptors both the server and the load tool need, with some headroom.
FD_HEADROOM = 200


def ensure_nginx_rtmp():
    module = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
    if shutil.which("nginx") and module.exists():
        return module
    apt_install("nginx-light", "libnginx-mod-rtmp")
    return module


class Server:
    """A server under test: how to start it on a port, and which pids to measure."""

    def __init__(self, name, start, measured_pids=None, play="rtmp"):
        self.name = name
        self._start = start
        self._measured = measured_pids
        # "rtmp": players play rtmp://; "flv": HTTP-FLV from the server's HTTP port.
        self.play = play
        self.http_port = None
        self.proc = None
        self.workdir = None

    def start(self, port):
        self.workdir = tempfile.mkdtemp(prefix=f"fanout-{self.name}-")
        self.http_port = free_port()
        cmd = self._start(port, self.workdir, self.http_port)
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CORE] + cmd,
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.workdir, "server.log"), "w"),
            start_new_session=True,
        )
        if not wait_port(port):
            self.stop()
            raise RuntimeError(f"{self.name} did not listen on {port}")

    def pids(self):
        if self._measured:
            return self._measured(self.proc.pid)
        return [self.proc.pid]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


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
        time.sleep(0.3)
        report_path = Path(server.workdir) / "load.json"
        cmd = ["taskset", "-c", LOAD_CORE, str(ROOT / "target/release/sluice-load"),
               "--io", args.load_io, "--json", str(report_path)]
        for pid in server.pids():
            cmd += ["--server-pid", str(pid)]
        rtmp_url = f"rtmp://127.0.0.1:{port}/live/fanout"
        if server.play == "flv":
            cmd += ["flv-play", "--url", f"http://127.0.0.1:{server.http_port}/live/fanout.flv",
                    "--publish-to", rtmp_url]
        else:
            cmd += ["rtmp-play", "--url", rtmp_url, "--publish"]
        cmd += ["--viewers", str(viewers), "--ramp", str(args.ramp),
                "--bitrate", str(args.bitrate), "--fps", str(args.fps),
                "--warmup", str(args.warmup), "--duration", str(args.measure)]
        limit = viewers / args.ramp + args.warmup + args.measure + 60
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=limit)
        if not report_path.exists():
            raise RuntimeError(f"load tool failed: {result.stderr.strip()[-500:]}")
        report = json.loads(report_path.read_text())
        report["server"] = server.name
        return report
    finally:
        server.stop()


def passed(report):
    return report["healthy_ratio"] >= PASS_RATIO


def describe(report):
    cpu = report.get("server_cpu_s")
    pct = f"{cpu / report['window_s'] * 100:.0f}%" if cpu is not None else "?"
    tool = report.get("load_cpu_fraction")
    tool = f", tool {tool * 100:.0f}%" if tool is not None else ""
    return (f"{report['viewers']:6d} viewers: healthy {report['healthy_ratio'] * 100:5.1f}%, "
            f"server cpu {pct}, {report['bytes_per_s'] * 8 / 1e9:.2f} Gbit/s{tool}")


def ramp(server, args, all_reports):
    """Largest passing N: double from --start, then bisect down to --resolution."""
    best, failed_at = None, None
    n = args.start
    while n <= args.max_viewers:
        report = run_step(server, n, args)
        all_reports.append(report)
        log(f"  {server.name}: {describe(report)} -> {'pass' if passed(report) else 'FAIL'}")
        if not passed(report):
            failed_at = n
            break
        best = report
        n *= 2
    if failed_at is None:
        return best
    low = best["viewers"] if best else 0
    high = failed_at
    while high - low > max(args.resolution, low // 8):
        mid = (low + high) // 2
        report = run_step(server, mid, args)
        all_reports.append(report)
        log(f"  {server.name}: {describe(report)} -> {'pass' if passed(report) else 'FAIL'}")
        if passed(report):
            best, low = report, mid
        else:
            high = mid
    return best


def fmt(value, digits=1, suffix=""):
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def summarize(best, reports, reference):
    """Two tables: capacity (largest passing N per server), and efficiency at the largest N
    every server passed without saturating its core, so costs compare like with like."""
    lines = ["Capacity: the most viewers one core carries (>= 99 % of them healthy).", "",
             "| server | viewers/core | server CPU there | load tool CPU there |",
             "|---|---|---|---|"]
    for name, report in best.items():
        if report is None:
            lines.append(f"| {name} | below the first step | - | - |")
            continue
        cpu = report.get("server_cpu_s")
        tool = report.get("load_cpu_fraction")
        lines.append(f"| {name} | {report['viewers']} | "
                     f"{fmt(cpu / report['window_s'] * 100 if cpu is not None else None, 0, ' %')} | "
                     f"{fmt(tool * 100 if tool is not None else None, 0, ' %')} |")
    passing = {}
    for r in reports:
        if passed(r):
            passing.setdefault(r["server"], {})[r["viewers"]] = r
    common = set.intersection(*(set(v) for v in passing.values())) if len(passing) == len(best) \
        else set()
    if not common:
        return "\n".join(lines)

    def unsaturated(n):
        return all((passing[name][n].get("server_cpu_s") or 0) / passing[name][n]["window_s"]
                   <= UNSATURATED for name in best)

    calm = [n for n in common if unsaturated(n)]
    n = max(calm) if calm else min(common)
    at_n = {name: passing[name][n] for name in best}
    lines += ["", f"Efficiency at {n} viewers (the largest load every server passed using at "
                  f"most {UNSATURATED:.0%} of its core):", "",
              "| server | server CPU | core-s per Gbit | RSS/viewer | latency p50 / p99 | startup p50 |",
              "|---|---|---|---|---|---|"]
    for name, report in at_n.items():
        latency = report.get("latency_ms") or {}
        startup = report.get("startup_ms") or {}
        cpu = report.get("server_cpu_s")
        lines.append(
            f"| {name} | {fmt(cpu / report['window_s'] * 100 if cpu is not None else None, 0, ' %')} | "
            f"{fmt(report.get('server_cpu_s_per_gbit'), 3)} | "
            f"{fmt(report.get('server_rss_per_viewer_kib'), 1, ' KiB')} | "
            f"{fmt(latency.get('p50'), 0)} / {fmt(latency.get('p99'), 0)} ms | "
            f"{fmt(startup.get('p50'), 1)} ms |")
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


def svg_plot(reports, path):
    """Server CPU (% of one core) against viewers, one line per server: a plain SVG."""
    series = {}
    for r in reports:
        if r.get("server_cpu_s") is None:
            continue
        series.setdefault(r["server"], []).append(
            (r["viewers"], r["server_cpu_s"] / r["window_s"] * 100, passed(r)))
    if not series:
        return
    width, height, margin = 720, 440, 60
    largest = max(x for points in series.values() for x, _, _ in points)
    x_step = next(step for step in (500, 1000, 2000, 4000, 5000, 10000, 20000)
                  if largest / step <= 8)
    max_x = (largest // x_step + 1) * x_step
    max_y = 100.0

    def sx(x):
        return margin + x / max_x * (width - 2 * margin)

    def sy(y):
        return height - margin - min(y, max_y) / max_y * (height - 2 * margin)

    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">'
           f'RTMP fan-out, 2 Mbit/s per viewer: server CPU vs viewers (one core)</text>']
    for i in range(6):
        y = max_y * i / 5
        out.append(f'<line x1="{margin}" x2="{width - margin}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" '
                   f'stroke="#ddd"/><text x="{margin - 8}" y="{sy(y) + 4:.1f}" '
                   f'text-anchor="end">{y:.0f}%</text>')
    for x in range(0, int(max_x) + 1, x_step):
        out.append(f'<text x="{sx(x):.1f}" y="{height - margin + 18}" '
                   f'text-anchor="middle">{x}</text>')
    out.append(f'<text x="{width / 2}" y="{height - 15}" text-anchor="middle">viewers</text>')
    for i, (name, points) in enumerate(sorted(series.items())):
        color = colors[i % len(colors)]
        points.sort()
        path_d = " ".join(f"{'M' if j == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}"
                          for j, (x, y, _) in enumerate(points))
        out.append(f'<path d="{path_d}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, y, ok in points:
            fill = color if ok else "white"
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" fill="{fill}" '
                       f'stroke="{color}"/>')
        out.append(f'<rect x="{margin + 10}" y="{margin + 10 + 18 * i}" width="12" height="12" '
                   f'fill="{color}"/><text x="{margin + 28}" y="{margin + 21 + 18 * i}">{name}</text>')
    out.append(f'<text x="{width - margin}" y="{margin - 8}" text-anchor="end" fill="#666">'
               f'hollow = step failed (&lt; 99 % healthy viewers)</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default="sluice-uring,sluice-epoll,nginx-rtmp",
                        help="comma-separated: sluice-uring, sluice-epoll, sluice-uring-mw0, "
                             "sluice-epoll-mw0, sluice-uring-flv, sluice-epoll-flv (HTTP-FLV "
                             "players), nginx-rtmp")
    parser.add_argument("--server", action="append", default=[], metavar="NAME=COMMAND",
                        help="another server: a shell command with {port} and {workdir}, "
                             "serving rtmp://127.0.0.1:{port}/live/STREAM")
    parser.add_argument("--start", type=int, default=1000, help="first step's viewers")
    parser.add_argument("--max-viewers", type=int, default=16000)
    parser.add_argument("--resolution", type=int, default=500)
    parser.add_argument("--ramp", type=float, default=2000, help="new players per second")
    parser.add_argument("--bitrate", type=int, default=2_000_000)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--measure", type=float, default=10)
    parser.add_argument("--load-io", default="epoll", help="the load tool's own backend")
    parser.add_argument("--reference", default="nginx-rtmp", help="ratios are against this")
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "benches/fanout/results"))
    parser.add_argument("--summarize", metavar="RESULTS_JSON",
                        help="only re-render summary.md and cpu.svg from a saved results.json")
    args = parser.parse_args()
    if args.summarize:
        return write_outputs(Path(args.summarize).parent,
                             json.loads(Path(args.summarize).read_text()), args)

    if (os.cpu_count() or 1) < 2:
        sys.exit("needs two cores: one for the server, one for the load tool")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fd_cap = hard - FD_HEADROOM
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.max_viewers > fd_cap:
        log(f"capping --max-viewers at {fd_cap} (file descriptor limit {hard})")
        args.max_viewers = fd_cap
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "sluice", "-p", "sluice-load"],
                       cwd=ROOT, check=True)

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

    machine = {
        "cores": os.cpu_count(),
        "kernel": os.uname().release,
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                 capture_output=True, text=True).stdout.strip(),
        "date": time.strftime("%Y-%m-%d"),
        "command": " ".join(sys.argv),
    }
    log(f"fan-out benchmark: {machine}")
    reports, best = [], {}
    for server in servers:
        log(f"{server.name}:")
        best[server.name] = ramp(server, args, reports)
    del best  # recomputed from the reports by write_outputs

    write_outputs(Path(args.out), {"machine": machine, "steps": reports}, args)


def write_outputs(out, results, args):
    """summary.md, results.json and cpu.svg in `out`; prints the summary."""
    machine, reports = results["machine"], results["steps"]
    best = {}
    for r in reports:
        best.setdefault(r["server"], None)
        if passed(r) and (best[r["server"]] is None or r["viewers"] > best[r["server"]]["viewers"]):
            best[r["server"]] = r
    out.mkdir(parents=True, exist_ok=True)
    table = summarize(best, reports, args.reference)
    header = (f"Date {machine['date']}, commit {machine['commit']}, {machine['cores']} cores, "
              f"Linux {machine['kernel']}; {args.bitrate / 1e6:g} Mbit/s at {args.fps} fps per "
              f"viewer; server on core {SERVER_CORE}, load tool on core {LOAD_CORE}.\n"
              f"Command: `{machine['command']}`\n")
    (out / "summary.md").write_text(header + "\n" + table + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    svg_plot(reports, out / "cpu.svg")
    print(header)
    print(table)


if __name__ == "__main__":
    main()
