"""Process helpers shared by the benchmarks: a free port, a process tree's CPU time and peak memory."""
from __future__ import annotations

import os
import socket
from pathlib import Path


def free_port() -> int:
    """A free local port: any, or one of ``BENCH_PORTS`` ("first-last") when set, for
    machines where each user of the benchmarks keeps to a range of ports."""
    span = os.environ.get("BENCH_PORTS")
    candidates = [0]
    if span:
        first, last = (int(p) for p in span.split("-"))
        candidates = [p for p in range(first, last + 1) if p not in _taken]
        if not candidates:  # every port handed out once: the earliest servers are gone
            _taken.clear()
            candidates = list(range(first, last + 1))
    for port in candidates:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            if port:  # the next call must not hand out the same port before it is used
                _taken.add(port)
            return port or s.getsockname()[1]
    raise OSError(f"no free port in BENCH_PORTS={span}")


_taken: set[int] = set()


def tree_cpu_seconds(pid: int) -> float:
    """utime+stime of ``pid`` and all its descendants, in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for current in tree_pids(pid):
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        except OSError:
            pass
    return total


def tree_pids(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    return found


def tree_peaks_kb(pid: int) -> dict[int, int]:
    """Peak resident memory (VmHWM, kB) of ``pid`` and each descendant still alive."""
    peaks = {}
    for current in tree_pids(pid):
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks[current] = int(line.split()[1])
        except OSError:
            pass
    return peaks


def peak_reset(pid: int) -> None:
    """Start ``pid``'s VmHWM again from its current resident size (Linux clear_refs 5)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass
