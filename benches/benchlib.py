"""Helpers the whole-server benchmark scripts share: logging, ports, process trees, CPU time, apt."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path


def log(message):
    print(message, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
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
