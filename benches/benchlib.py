"""Helpers the whole-server benchmark scripts share: logging, ports, process trees, CPU time, apt;
and, for the viewer-capacity benchmarks (benches/fanout, benches/srt_viewers,
benches/webrtc_viewers), the server process on its core, the load step, the ramp, the summary
pieces and the CPU plot; for the UDP ones (SRT, WebRTC) also their sluice configurations,
options, step and tables."""

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Where the release binaries are unless a benchmark says otherwise.
RELEASE = ROOT / "target/release"
# The server under test and the load tool each get a core of their own, so neither one's CPU
# use is charged to the other.
SERVER_CORE = "0"
LOAD_CORE = "1"
# A step passes when this share of the viewers is healthy (>= 95 % of real-time frames, no
# stall, as sluice-load judges it).
PASS_RATIO = 0.99
# Costs are compared where no server is saturated: near 100 % every server's CPU per Gbit
# falls, as each wake-up finds more work to batch.
UNSATURATED = 0.80
# File descriptors both the server and the load tool need beyond one per viewer, with some
# headroom.
FD_HEADROOM = 200


def log(message):
    print(message, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_udp_port():
    """A UDP port on 127.0.0.1 nothing is bound to (for a server's SRT listener)."""
    with socket.socket(type=socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0):
    """True once something accepts on 127.0.0.1:port, False after `timeout` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def process_tree(pid):
    """`pid` and all its descendants (nginx workers, for instance)."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        out = subprocess.run(["pgrep", "-P", str(p)], capture_output=True, text=True).stdout
        todo.extend(int(c) for c in out.split())
    return pids


def apt_install(*packages):
    """Installs Debian packages, through sudo unless already root."""
    log(f"installing {' '.join(packages)} (Debian packages)")
    prefix = [] if os.geteuid() == 0 else ["sudo"]
    env = ["env", "DEBIAN_FRONTEND=noninteractive"]
    subprocess.run(prefix + env + ["apt-get", "update", "-q"], check=True)
    subprocess.run(prefix + env + ["apt-get", "install", "-y", "-q", *packages], check=True)


def cpu_seconds(pids):
    """User + system CPU seconds the processes `pids` have used (Linux /proc/PID/stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / ticks


class PinnedServer:
    """A server under test: a process group pinned to SERVER_CORE, with a temporary work
    directory (its configuration, its log, the load report) removed again by `stop`."""

    def __init__(self, name):
        self.name = name
        self.proc = None
        self.workdir = None

    def make_workdir(self, prefix):
        self.workdir = tempfile.mkdtemp(prefix=f"{prefix}-{self.name}-")

    def launch(self, cmd, port):
        """Runs `cmd` on SERVER_CORE (stderr to server.log in the work directory) and waits
        until it accepts on TCP `port`; a server that never does is stopped and reported."""
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CORE] + cmd,
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.workdir, "server.log"), "w"),
            # A session of its own, so that `stop` ends the server's children (nginx's
            # workers, a shell's command) with it.
            start_new_session=True,
        )
        if not wait_port(port):
            self.stop()
            raise RuntimeError(f"{self.name} did not listen on {port}")

    def pids(self):
        """The processes whose CPU and memory count as the server's (sluice-load --server-pid)."""
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


def run_load(server, viewers, args, load_options, play, bin_dir=RELEASE):
    """Runs sluice-load (from `bin_dir`) once on LOAD_CORE against the started `server`: its
    global `load_options` (after --io), then the `play` subcommand and its URLs, then the
    step's viewers and timing from `args`. Returns the load report (dict) with "server" set to
    the server's name; raises if the tool wrote none."""
    time.sleep(0.3)
    report_path = Path(server.workdir) / "load.json"
    cmd = ["taskset", "-c", LOAD_CORE, str(bin_dir / "sluice-load"),
           "--io", args.load_io, *load_options, "--json", str(report_path)]
    for pid in server.pids():
        cmd += ["--server-pid", str(pid)]
    cmd += play
    cmd += ["--viewers", str(viewers), "--ramp", str(args.ramp),
            "--bitrate", str(args.bitrate), "--fps", str(args.fps),
            "--warmup", str(args.warmup), "--duration", str(args.measure)]
    # The ramp, the warm-up and the measurement, and a minute for connecting (and WHEP
    # viewers' DELETEs) and reporting.
    limit = viewers / args.ramp + args.warmup + args.measure + 60
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=limit)
    if not report_path.exists():
        raise RuntimeError(f"load tool failed: {result.stderr.strip()[-500:]}")
    report = json.loads(report_path.read_text())
    report["server"] = server.name
    return report


def passed(report):
    return report["healthy_ratio"] >= PASS_RATIO


def cpu_pct(report):
    """The server's CPU over the measurement window, in % of one core (None if unmeasured)."""
    cpu = report.get("server_cpu_s")
    return None if cpu is None else cpu / report["window_s"] * 100


def describe_step(report, details=""):
    """One step's log line: viewers, healthy share, server CPU and throughput, then the
    benchmark's own `details` (", ..."), then the load tool's CPU."""
    pct = cpu_pct(report)
    tool = report.get("load_cpu_fraction")
    return (f"{report['viewers']:6d} viewers: healthy {report['healthy_ratio'] * 100:5.1f}%, "
            f"server cpu {'?' if pct is None else f'{pct:.0f}%'}, "
            f"{report['bytes_per_s'] * 8 / 1e9:.2f} Gbit/s{details}"
            + (f", tool {tool * 100:.0f}%" if tool is not None else ""))


def ramp(server, args, all_reports, run_step, describe):
    """Largest passing N: double from --start, then bisect down to --resolution.

    `run_step(server, viewers, args)` measures one N and returns its report; every report is
    appended to `all_reports` and logged with `describe(report)`."""
    def step(n):
        report = run_step(server, n, args)
        all_reports.append(report)
        log(f"  {server.name}: {describe(report)} -> {'pass' if passed(report) else 'FAIL'}")
        return report

    best, failed_at = None, None
    n = args.start
    while n <= args.max_viewers:
        report = step(n)
        if not passed(report):
            failed_at = n
            break
        best = report
        n *= 2
    if failed_at is None:
        return best
    low, high = (best["viewers"] if best else 0), failed_at
    while high - low > max(args.resolution, low // 8):
        mid = (low + high) // 2
        report = step(mid)
        if passed(report):
            best, low = report, mid
        else:
            high = mid
    return best


def ramp_all(servers, args, run_step, describe):
    """Ramps every server in turn; returns every step's report, in the order run."""
    reports = []
    for server in servers:
        log(f"{server.name}:")
        ramp(server, args, reports, run_step, describe)
    return reports


def fmt(value, digits=1, suffix=""):
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def best_per_server(reports):
    """Each server's passing report with the most viewers (None if none passed), in the order
    the servers first appear."""
    best = {}
    for r in reports:
        best.setdefault(r["server"], None)
        if passed(r) and (best[r["server"]] is None or r["viewers"] > best[r["server"]]["viewers"]):
            best[r["server"]] = r
    return best


def capacity_table(best, viewers):
    """The capacity table's lines: per server, the largest passing N and the CPU there.
    `viewers` names what was counted ("viewers", "SRT viewers")."""
    lines = [f"Capacity: the most {viewers} one core carries (>= 99 % of them healthy).", "",
             "| server | viewers/core | server CPU there | load tool CPU there |",
             "|---|---|---|---|"]
    for name, report in best.items():
        if report is None:
            lines.append(f"| {name} | below the first step | - | - |")
            continue
        tool = report.get("load_cpu_fraction")
        lines.append(f"| {name} | {report['viewers']} | {fmt(cpu_pct(report), 0, ' %')} | "
                     f"{fmt(tool * 100 if tool is not None else None, 0, ' %')} |")
    return lines


def cost_cells(report):
    """The cost columns every efficiency table starts with: server CPU, core-seconds per
    Gbit, RSS per viewer, latency p50 / p99."""
    latency = report.get("latency_ms") or {}
    return (f"{fmt(cpu_pct(report), 0, ' %')} | "
            f"{fmt(report.get('server_cpu_s_per_gbit'), 3)} | "
            f"{fmt(report.get('server_rss_per_viewer_kib'), 1, ' KiB')} | "
            f"{fmt(latency.get('p50'), 0)} / {fmt(latency.get('p99'), 0)} ms")


def passing_by_server(reports):
    """{server: {viewers: report}} of the steps that passed."""
    passing = {}
    for r in reports:
        if passed(r):
            passing.setdefault(r["server"], {})[r["viewers"]] = r
    return passing


def comparison_load(best, passing):
    """The N at which to compare costs: the largest every server passed using at most
    UNSATURATED of its core, else the smallest every server passed; None if there is none."""
    if not passing or len(passing) != len(best):
        return None
    common = set.intersection(*(set(v) for v in passing.values()))
    if not common:
        return None
    calm = [n for n in common
            if all((passing[name][n].get("server_cpu_s") or 0) / passing[name][n]["window_s"]
                   <= UNSATURATED for name in best)]
    return max(calm) if calm else min(common)


def svg_cpu_plot(reports, path, title, x_steps):
    """Server CPU (% of one core) against viewers, one line per server: a plain SVG titled
    `title`. The x axis is labelled every `x_steps` entry, the first that gives at most eight
    labels (else the last)."""
    series = {}
    for r in reports:
        pct = cpu_pct(r)
        if pct is not None:
            series.setdefault(r["server"], []).append((r["viewers"], pct, passed(r)))
    if not series:
        return
    width, height, margin = 720, 440, 60
    largest = max(x for points in series.values() for x, _, _ in points)
    x_step = next((step for step in x_steps if largest / step <= 8), x_steps[-1])
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
           f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>']
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


def benchmark_parser(doc):
    """An argument parser whose --help starts with the script's docstring `doc`, as written."""
    return argparse.ArgumentParser(description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_ramp_arguments(parser, start, max_viewers, resolution, ramp_rate, ramp_help):
    """The ramp's and each step's options (--start ... --load-io); defaults per benchmark."""
    parser.add_argument("--start", type=int, default=start, help="first step's viewers")
    parser.add_argument("--max-viewers", type=int, default=max_viewers)
    parser.add_argument("--resolution", type=int, default=resolution)
    parser.add_argument("--ramp", type=float, default=ramp_rate, help=ramp_help)
    parser.add_argument("--bitrate", type=int, default=2_000_000)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--measure", type=float, default=10)
    parser.add_argument("--load-io", default="epoll", help="the load tool's own backend")


def add_output_arguments(parser, out):
    """--no-build, --out (default `out`) and --summarize."""
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--out", default=str(out))
    parser.add_argument("--summarize", metavar="RESULTS_JSON",
                        help="only re-render summary.md and cpu.svg from a saved results.json")


def prepare_run(args):
    """Checks for the two cores, raises the file-descriptor limit (one socket per viewer in
    the load tool, and in the server) and caps --max-viewers to it, then builds sluice and
    sluice-load in release mode unless --no-build."""
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


def run_benchmark(parser, label, make_servers, run_step, describe, write_results):
    """A viewer-capacity benchmark's whole run. Parses the options; with --summarize only
    re-renders that saved results.json with `write_results(out, results, args)`. Otherwise
    prepares the machine (`prepare_run`), ramps every server `make_servers(args)` returns
    (see `ramp`) and writes the results to --out."""
    args = parser.parse_args()
    if args.summarize:
        saved = Path(args.summarize)
        return write_results(saved.parent, json.loads(saved.read_text()), args)
    prepare_run(args)
    servers = make_servers(args)
    machine = machine_info()
    log(f"{label}: {machine}")
    reports = ramp_all(servers, args, run_step, describe)
    write_results(Path(args.out), {"machine": machine, "steps": reports}, args)


def machine_info():
    """What results.json records about the run, so a summary says where it came from."""
    return {
        "cores": os.cpu_count(),
        "kernel": os.uname().release,
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                 capture_output=True, text=True).stdout.strip(),
        "date": time.strftime("%Y-%m-%d"),
        "command": " ".join(sys.argv),
    }


def run_header(machine, args):
    """The summary's first words: when, where, and each viewer's stream."""
    return (f"Date {machine['date']}, commit {machine['commit']}, {machine['cores']} cores, "
            f"Linux {machine['kernel']}; {args.bitrate / 1e6:g} Mbit/s at {args.fps} fps per "
            f"viewer")


def write_outputs(out, results, header, table, plot_title, x_steps):
    """summary.md (`header` and `table`), results.json and cpu.svg in `out`; prints the
    summary."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(header + "\n" + table + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    svg_cpu_plot(results["steps"], out / "cpu.svg", plot_title, x_steps)
    print(header)
    print(table)


# The UDP fan-out benchmarks' configurations: sluice's two data planes, each with GSO on (the
# server's default where the kernel has it) and off (`udp_gso = false`): name -> (io, gso).
UDP_CONFIGS = {
    "sluice-uring": ("uring", True),
    "sluice-epoll": ("epoll", True),
    "sluice-uring-nogso": ("uring", False),
    "sluice-epoll-nogso": ("epoll", False),
}


class UdpSluice(PinnedServer):
    """sluice with one worker on one core, RTMP for the publisher, its viewers on UDP; `io` is
    its data plane, `gso` False turns UDP GSO off. Binaries from `bin_dir`."""

    bin_dir = RELEASE

    def __init__(self, name, io, gso):
        super().__init__(name)
        self.io, self.gso = io, gso
        self.port = None

    def start_sluice(self, prefix, sections):
        """Writes sluice.toml (RTMP on a free port, then the viewers' `sections`, no HLS) in a
        new work directory named after `prefix`, and launches sluice with it; the RTMP port
        answering means the worker (and its UDP socket) is up."""
        self.make_workdir(prefix)
        self.port = free_port()
        conf = Path(self.workdir) / "sluice.toml"
        conf.write_text(
            f"workers = 1\nmax_connections = 100000\nudp_gso = {str(self.gso).lower()}\n"
            f'[rtmp]\nlisten = "127.0.0.1:{self.port}"\n[log]\nlevel = "warn"\n'
            f'[http_server]\nlisten = "127.0.0.1:{free_port()}"\n'
            + sections +
            # Fan-out alone: no HLS segmenting of the stream.
            "[vhost.__defaultVhost__.hls]\nenabled = false\n"
        )
        self.launch([str(self.bin_dir / "sluice"), "-c", str(conf), "--io", self.io], self.port)


def udp_servers(args, server_class):
    """One `server_class` per configuration of UDP_CONFIGS that --servers names."""
    servers = []
    for name in filter(None, args.servers.split(",")):
        if name not in UDP_CONFIGS:
            sys.exit(f"unknown server {name!r}; known: {', '.join(UDP_CONFIGS)}")
        io, gso = UDP_CONFIGS[name]
        servers.append(server_class(name, io, gso))
    return servers


def add_udp_arguments(parser, start, max_viewers, resolution, ramp_rate):
    """A UDP fan-out benchmark's options: --servers (of UDP_CONFIGS), the ramp's
    (`add_ramp_arguments`) and --load-gso."""
    parser.add_argument("--servers", default=",".join(UDP_CONFIGS),
                        help=f"comma-separated, of: {', '.join(UDP_CONFIGS)}")
    add_ramp_arguments(parser, start=start, max_viewers=max_viewers, resolution=resolution,
                       ramp_rate=ramp_rate, ramp_help="new viewers per second")
    parser.add_argument("--load-gso", default="on", choices=["on", "off"],
                        help="GSO on the load tool's sockets")


def run_udp_step(server, viewers, args, play):
    """Starts `server`, runs one load step (sluice-load with --gso --load-gso and the
    `play(server)` arguments), stops it; returns the load report with "server_gso" set."""
    server.start()
    try:
        report = run_load(server, viewers, args, ["--gso", args.load_gso], play(server),
                          server.bin_dir)
        report["server_gso"] = server.gso
        return report
    finally:
        server.stop()


def udp_summary(reports, viewers, latency_note, columns, cells):
    """Capacity per configuration (`viewers` names what was counted), then costs at the
    largest N every configuration passed unsaturated: the cost columns (the latency's header
    followed by `latency_note`), then the `columns` headers filled by `cells(report)`."""
    best = best_per_server(reports)
    lines = capacity_table(best, viewers)
    passing = passing_by_server(reports)
    n = comparison_load(best, passing)
    if n is None:
        return "\n".join(lines)
    lines += ["", f"At {n} viewers (the largest load every configuration passed using at most "
                  f"{UNSATURATED:.0%} of its core):", "",
              f"| server | server CPU | core-s per Gbit | RSS/viewer | latency p50 / p99"
              f"{latency_note} | {' | '.join(columns)} |",
              "|---|" + "---|" * (4 + len(columns))]
    for name in best:
        lines.append(f"| {name} | {cost_cells(passing[name][n])} | "
                     f"{' | '.join(cells(passing[name][n]))} |")
    return "\n".join(lines)


def udp_header(machine, args, over, published=""):
    """The summary's header of a UDP fan-out benchmark: `run_header`, over what, the cores and
    the load tool's options, then `published` (", ..."), and the command."""
    return (f"{run_header(machine, args)} over {over}; server on core {SERVER_CORE}, load tool "
            f"on core {LOAD_CORE} (--io {args.load_io}, --gso {args.load_gso}){published}. GSO "
            f"off on the server = `udp_gso = false`.\nCommand: `{machine['command']}`\n")
