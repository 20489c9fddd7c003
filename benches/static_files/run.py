#!/usr/bin/env python3
"""Static file serving, side by side: sluice (io_uring, splice) vs sluice (epoll, sendfile) vs
nginx (`sendfile on`, one worker), each pinned to core 0, with wrk (Debian) pinned to core 1,
on a 500 KB and a 4 MB file. Reports requests/s, the server's CPU over the run (from
/proc/PID/stat) and requests per CPU-second — "requests/s at equal CPU" — with ratios against
nginx from the same run. Everything on 127.0.0.1; every run bounded by wrk's duration.

Outputs --out/summary.md and --out/results.json (default benches/static_files/results).
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import (  # noqa: E402
    apt_install, cpu_seconds, free_port, log, process_tree, wait_port)

ROOT = Path(__file__).resolve().parents[2]
SERVER_CORE, LOAD_CORE = "0", "1"
FILES = {"500k.bin": 500 * 1000, "4m.bin": 4 * 1000 * 1000}


def sluice_cmd(io):
    def start(port, root, workdir):
        conf = Path(workdir) / "sluice.toml"
        rtmp = free_port()
        conf.write_text(
            "workers = 1\nmax_connections = 100000\n"
            f'[rtmp]\nlisten = "127.0.0.1:{rtmp}"\n'
            f'[http_server]\nlisten = "127.0.0.1:{port}"\ndir = "{root}"\n'
            '[http_api]\nenabled = false\n'
            '[log]\nlevel = "warn"\n')
        return [str(ROOT / "target/release/sluice"), "-c", str(conf), "--io", io]
    return start


def nginx_cmd(port, root, workdir):
    conf = Path(workdir) / "nginx.conf"
    conf.write_text(
        "worker_processes 1;\ndaemon off;\nmaster_process on;\n"
        f"pid {workdir}/nginx.pid;\nerror_log {workdir}/error.log warn;\n"
        "worker_rlimit_nofile 100000;\nevents { worker_connections 65536; }\n"
        "http {\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n"
        "  keepalive_requests 1000000;\n"
        f"  server {{\n    listen 127.0.0.1:{port};\n    root {root};\n  }}\n}}\n")
    return ["nginx", "-p", workdir, "-c", str(conf)]


def run_server(name, start, root, args):
    results = []
    port = free_port()
    workdir = tempfile.mkdtemp(prefix=f"static-{name}-")
    proc = subprocess.Popen(["taskset", "-c", SERVER_CORE] + start(port, root, workdir),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        if not wait_port(port):
            raise RuntimeError(f"{name} did not listen")
        time.sleep(0.3)
        pids = process_tree(proc.pid)
        for file in FILES:
            url = f"http://127.0.0.1:{port}/{file}"
            before = cpu_seconds(pids)
            started = time.time()
            out = subprocess.run(
                ["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{args.connections}",
                 f"-d{args.duration}s", url],
                capture_output=True, text=True, timeout=args.duration + 30).stdout
            elapsed = time.time() - started
            cpu = cpu_seconds(process_tree(proc.pid)) - before
            rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
            errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            if errors:
                raise RuntimeError(f"{name} answered {errors.group(1)} requests with errors")
            results.append({
                "server": name, "file": file, "requests_per_s": rps,
                "server_cpu_fraction": cpu / elapsed,
                "requests_per_cpu_s": rps * elapsed / cpu if cpu > 0 else None,
                "gbit_per_s": rps * FILES[file] * 8 / 1e9,
                "non_2xx": int(errors.group(1)) if errors else 0,
            })
            log(f"  {name} {file}: {rps:.0f} req/s, server {cpu / elapsed * 100:.0f} % of a core")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "benches/static_files/results"))
    args = parser.parse_args()
    missing = [pkg for binary, pkg in (("wrk", "wrk"), ("nginx", "nginx-light")) if not shutil.which(binary)]
    if missing:
        apt_install(*missing)
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "sluice"], cwd=ROOT, check=True)
    root = tempfile.mkdtemp(prefix="static-root-")
    # nginx's workers run as an unprivileged user: the files must be world-readable.
    os.chmod(root, 0o755)
    for name, size in FILES.items():
        Path(root, name).write_bytes(bytes(i % 251 for i in range(size)))
        os.chmod(Path(root, name), 0o644)
    results = []
    try:
        for name, start in [("sluice-uring", sluice_cmd("uring")),
                            ("sluice-epoll", sluice_cmd("epoll")),
                            ("nginx", nginx_cmd)]:
            log(f"{name}:")
            results += run_server(name, start, root, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    lines = [f"Date {time.strftime('%Y-%m-%d')}, commit {commit}, {os.cpu_count()} cores, "
             f"Linux {os.uname().release}; wrk -t1 -c{args.connections} -d{args.duration}s, "
             f"server on core {SERVER_CORE}, wrk on core {LOAD_CORE}.",
             f"Command: `{' '.join(sys.argv)}`", "",
             "| server | file | requests/s | server CPU | requests per CPU-second | vs nginx |",
             "|---|---|---|---|---|---|"]
    nginx = {r["file"]: r for r in results if r["server"] == "nginx"}
    for r in results:
        base = nginx.get(r["file"])
        ratio = (f"{r['requests_per_cpu_s'] / base['requests_per_cpu_s']:.2f}x"
                 if base and r["requests_per_cpu_s"] and base["requests_per_cpu_s"] else "-")
        lines.append(f"| {r['server']} | {r['file']} | {r['requests_per_s']:.0f} | "
                     f"{r['server_cpu_fraction'] * 100:.0f} % | "
                     f"{(r['requests_per_cpu_s'] or 0):.0f} | {ratio} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
