"""CPU and memory of running processes, read from /proc (shared by the benchmarks).

``cpu_seconds`` sums each thread's time on a CPU from ``/proc/PID/task/TID/schedstat``
(nanoseconds), so short runs are not rounded to the scheduler's 10 ms ticks as
``utime + stime`` in ``/proc/PID/stat`` are; it falls back to those where schedstat is
missing. A thread that exits between two readings takes its time with it: compare
readings of processes whose threads live through the measurement (servers, workers).
"""

from __future__ import annotations

import os
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes' live threads have used; gone pids count 0."""
    total = 0.0
    for pid in pids:
        try:
            total += _schedstat(pid)
        except FileNotFoundError:
            continue
        except OSError:
            total += tick_seconds([pid])
    return total


def _schedstat(pid: int) -> float:
    return sum(loop_and_threads(pid))


def tick_seconds(pids: list[int]) -> float:
    """CPU seconds from ``/proc/PID/stat`` (utime + stime, in clock ticks)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def children(pid: int) -> list[int]:
    """The direct children of ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def rss_kib(pids: list[int], key: str = "VmRSS") -> int:
    """Resident memory (or ``VmHWM``, the peak) of the processes, KiB."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def loop_and_threads(pid: int) -> tuple[float, float]:
    """CPU seconds so far of ``pid``'s main thread (the event loop) and of its other live
    threads together (Python does not name its threads for the kernel, so they are one sum)."""
    main = other = 0.0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            ns = int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
        except FileNotFoundError:
            continue  # the thread just ended
        if int(task) == pid:
            main += ns / 1e9
        else:
            other += ns / 1e9
    return main, other
