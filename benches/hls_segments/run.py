#!/usr/bin/env python3
"""Live HLS segment serving, side by side: sluice --io uring and --io epoll serving the
segments of a live stream from memory vs nginx (`sendfile on`, one worker) serving the very
same segment files from disk (sluice's `hls_path` copy). Each server is pinned to core 0, wrk
(Debian) to core 1 with 100 connections cycling over the stream's listed segments.

For each sluice backend: start sluice (TS HLS, 2 s fragments), publish a synthetic 2 Mbps
H.264+AAC stream with sluice-load for ~16 s, stop the publisher (segments stay served until
hls_dispose), then run wrk on the segment URLs. nginx then serves the files sluice wrote.
Reports requests/s, the server's CPU (from /proc/PID/stat), requests per CPU-second and ratios
against nginx in the same run. Everything on 127.0.0.1; every step bounded in time.

Outputs --out/summary.md and --out/results.json (default benches/hls_segments/results).
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import (  # noqa: E402
    apt_install, cpu_seconds, free_port, log, process_tree, wait_port)

ROOT = Path(__file__).resolve().parents[2]
SERVER_CORE, LOAD_CORE = "0", "1"
STREAM = "bench"


def start(cmd, name):
    return subprocess.Popen(["taskset", "-c", SERVER_CORE] + cmd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def stop(proc):
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def wrk(port, paths, args, workdir):
    script = Path(workdir) / "segments.lua"
    # Each connection walks the segment list from its own offset.
    listed = ", ".join(f'"{p}"' for p in paths)
    script.write_text(
        f"local paths = {{{listed}}}\nlocal i = 0\n"
        "function setup(thread) end\n"
        "request = function()\n  i = i + 1\n"
        "  return wrk.format('GET', paths[(i % #paths) + 1])\nend\n")
    out = subprocess.run(
        ["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{args.connections}",
         f"-d{args.duration}s", "-s", str(script), f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, timeout=args.duration + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{errors.group(1)} requests answered with errors:\n{out}")
    return rps


def measure(name, proc, port, paths, sizes, args, workdir):
    pids = process_tree(proc.pid)
    before = cpu_seconds(pids)
    started = time.time()
    rps = wrk(port, paths, args, workdir)
    elapsed = time.time() - started
    cpu = cpu_seconds(process_tree(proc.pid)) - before
    mean_size = sum(sizes) / len(sizes)
    result = {
        "server": name, "requests_per_s": rps, "server_cpu_fraction": cpu / elapsed,
        "requests_per_cpu_s": rps * elapsed / cpu if cpu > 0 else None,
        "gbit_per_s": rps * mean_size * 8 / 1e9, "segments": len(paths),
        "mean_segment_bytes": mean_size,
    }
    log(f"  {name}: {rps:.0f} req/s ({result['gbit_per_s']:.1f} Gbit/s), "
        f"server {cpu / elapsed * 100:.0f} % of a core")
    return result


def run_sluice(io, hls_root, args):
    workdir = tempfile.mkdtemp(prefix=f"hls-{io}-")
    port, rtmp = free_port(), free_port()
    conf = Path(workdir) / "sluice.toml"
    conf.write_text(
        "workers = 1\nmax_connections = 100000\n"
        f'[rtmp]\nlisten = "127.0.0.1:{rtmp}"\n'
        f'[http_server]\nlisten = "127.0.0.1:{port}"\n'
        '[http_api]\nenabled = false\n[log]\nlevel = "warn"\n'
        "[vhost.__defaultVhost__.hls]\nhls_fragment = 2\nhls_window = 60\nhls_dispose = 600\n"
        f'hls_path = "{hls_root}"\n')
    proc = start([str(ROOT / "target/release/sluice"), "-c", str(conf), "--io", io], io)
    try:
        if not wait_port(port):
            raise RuntimeError(f"sluice {io} did not listen")
        subprocess.run(
            ["taskset", "-c", LOAD_CORE, str(ROOT / "target/release/sluice-load"), "publish",
             "--url", f"rtmp://127.0.0.1:{rtmp}/live/{STREAM}", "--duration",
             str(args.publish_seconds), "--bitrate", "2000000", "--gop", "60"],
            check=True, capture_output=True, timeout=args.publish_seconds + 30)
        playlist = urllib.request.urlopen(
            f"http://127.0.0.1:{port}/live/{STREAM}.m3u8", timeout=5).read().decode()
        paths = [f"/live/{line}" for line in playlist.splitlines()
                 if line and not line.startswith("#")]
        sizes = [len(urllib.request.urlopen(f"http://127.0.0.1:{port}{p}", timeout=5).read())
                 for p in paths]
        return measure(f"sluice-{io}", proc, port, paths, sizes, args, workdir), paths, sizes
    finally:
        stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def run_nginx(root, paths, sizes, args):
    workdir = tempfile.mkdtemp(prefix="hls-nginx-")
    port = free_port()
    conf = Path(workdir) / "nginx.conf"
    conf.write_text(
        "worker_processes 1;\ndaemon off;\nmaster_process on;\n"
        f"pid {workdir}/nginx.pid;\nerror_log {workdir}/error.log warn;\n"
        "worker_rlimit_nofile 100000;\nevents { worker_connections 65536; }\n"
        "http {\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n"
        "  keepalive_requests 1000000;\n"
        f"  server {{\n    listen 127.0.0.1:{port};\n    root {root};\n  }}\n}}\n")
    proc = start(["nginx", "-p", workdir, "-c", str(conf)], "nginx")
    try:
        if not wait_port(port):
            raise RuntimeError("nginx did not listen")
        time.sleep(0.3)
        return measure("nginx", proc, port, paths, sizes, args, workdir)
    finally:
        stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--publish-seconds", type=int, default=16)
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "benches/hls_segments/results"))
    args = parser.parse_args()
    missing = [pkg for binary, pkg in (("wrk", "wrk"), ("nginx", "nginx-light"))
               if not shutil.which(binary)]
    if missing:
        apt_install(*missing)
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "sluice", "-p", "sluice-load"],
                       cwd=ROOT, check=True)
    hls_root = tempfile.mkdtemp(prefix="hls-root-")
    os.chmod(hls_root, 0o755)
    results = []
    try:
        for io in ("uring", "epoll"):
            log(f"sluice {io}:")
            result, paths, sizes = run_sluice(io, hls_root, args)
            results.append(result)
        # nginx's workers run as an unprivileged user: the files must be world-readable.
        for dirpath, dirs, files in os.walk(hls_root):
            os.chmod(dirpath, 0o755)
            for f in files:
                os.chmod(Path(dirpath, f), 0o644)
        log("nginx:")
        results.append(run_nginx(hls_root, paths, sizes, args))
    finally:
        shutil.rmtree(hls_root, ignore_errors=True)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    lines = [f"Date {time.strftime('%Y-%m-%d')}, commit {commit}, {os.cpu_count()} cores, "
             f"Linux {os.uname().release}; wrk -t1 -c{args.connections} -d{args.duration}s "
             f"over {len(paths)} live 2 s TS segments (mean {sum(sizes) / len(sizes) / 1000:.0f} KB), "
             f"server on core {SERVER_CORE}, wrk on core {LOAD_CORE}.",
             f"Command: `{' '.join(sys.argv)}`", "",
             "| server | requests/s | Gbit/s | server CPU | requests per CPU-second | vs nginx |",
             "|---|---|---|---|---|---|"]
    nginx = next(r for r in results if r["server"] == "nginx")
    for r in results:
        ratio = (f"{r['requests_per_cpu_s'] / nginx['requests_per_cpu_s']:.2f}x"
                 if r["requests_per_cpu_s"] and nginx["requests_per_cpu_s"] else "-")
        lines.append(f"| {r['server']} | {r['requests_per_s']:.0f} | {r['gbit_per_s']:.1f} | "
                     f"{r['server_cpu_fraction'] * 100:.0f} % | "
                     f"{(r['requests_per_cpu_s'] or 0):.0f} | {ratio} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
