"""Measure: what every benchmark reports about the machine and the processes it runs, and how it prints tables.

Owns sampling a process tree's CPU time and resident memory while a benchmark runs (psutil, `/proc/<pid>/status`),
describing the machine (CPU, cores, memory, load averages: the 2 cores may be shared), and formatting markdown
tables. It never starts or stops the processes it measures.

Resident memory is reported two ways: the tree's summed RSS, and per process its private memory (`RssAnon`: the
Python heap, SQLite's page cache) apart from its mapped file pages (`RssFile` + `RssShmem`: SQLite's memory map of
the store and its WAL index, the libraries). Mapped file pages are the kernel's page cache: shared by every process
mapping the same file, counted again in each one's RSS (and once per mapping), and reclaimable under memory
pressure; private memory is what a process itself costs.
"""

from __future__ import annotations

import os
import platform
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

import psutil

MB = 1024 * 1024


def written_bytes(pid: int) -> int | None:
    """Bytes process `pid` has caused to be written to storage so far (`write_bytes` of `/proc/<pid>/io`), or None
    once it has been reaped (an exited, unreaped process reads as its whole life's account)."""
    try:
        with open(f'/proc/{pid}/io') as io:
            return next((int(line.split()[1]) for line in io if line.startswith('write_bytes:')), None)
    except OSError:
        return None


def load_averages() -> str:
    """The 1, 5 and 15 minute load averages, as `uptime` prints them."""
    return ' '.join(f'{load:.2f}' for load in os.getloadavg())


def machine() -> str:
    """One line saying what the numbers were measured on."""
    model = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as cpuinfo:
            model = next(line.split(':', 1)[1].strip() for line in cpuinfo if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    memory = psutil.virtual_memory().total / 1024**3
    return (
        f'{model}, {os.cpu_count()} cores, {memory:.0f} GiB RAM; {platform.system()} {platform.release()}; '
        f'Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}'
    )


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table; numbers are right-aligned."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return f'{value:,.1f}' if abs(value) < 100 else f'{value:,.0f}'
        if isinstance(value, int):
            return f'{value:,}'
        return str(value)

    lines = ['| ' + ' | '.join(headers) + ' |']
    numeric = [all(isinstance(row[i], int | float) for row in rows) if rows else False for i in range(len(headers))]
    lines.append('|' + '|'.join('---:' if right else '---' for right in numeric) + '|')
    lines.extend('| ' + ' | '.join(cell(value) for value in row) + ' |' for row in rows)
    return '\n'.join(lines)


@dataclass(frozen=True)
class Resident:
    """One process's resident memory by kind, in MB (`/proc/<pid>/status`)."""

    private_mb: float
    """Anonymous pages (`RssAnon`): the process's own heap."""
    mapped_mb: float
    """File-backed and shared pages (`RssFile` + `RssShmem`): page-cache pages it maps."""


def resident(pid: int) -> Resident | None:
    """Process `pid`'s resident memory by kind, or None once it has exited."""
    fields: dict[str, int] = {}
    try:
        with open(f'/proc/{pid}/status') as status:
            for line in status:
                name, _, value = line.partition(':')
                if name in ('RssAnon', 'RssFile', 'RssShmem'):
                    fields[name] = int(value.split()[0])  # kB
    except OSError:
        return None
    if 'RssAnon' not in fields:  # a zombie: its memory is gone
        return None
    return Resident(fields['RssAnon'] / 1024, (fields.get('RssFile', 0) + fields.get('RssShmem', 0)) / 1024)


@dataclass
class Usage:
    """CPU and memory a process tree used over a measured interval."""

    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    """Peak of the tree's summed resident memory, as sampled."""
    write_bytes: int = 0
    """Bytes the process caused to be written to disk (`/proc/<pid>/io`), where measured."""
    peak_private_mb: float = 0.0
    """The largest process's peak private memory (`Resident.private_mb`), where sampled per process."""
    peak_mapped_mb: float = 0.0
    """The largest process's peak of mapped file pages (`Resident.mapped_mb`), where sampled per process."""

    @property
    def cpu_percent(self) -> float:
        """CPU time over wall time, in percent of one core (200% = both cores of this machine)."""
        return 100 * self.cpu_seconds / self.seconds if self.seconds else 0.0


class TreeSampler:
    """Samples a process and its descendants (the server's workers) while in a `with` block.

    CPU time is exact (read at start and end; processes that exit in between lose their share). Memory is
    sampled every `interval` seconds: the peak of the tree's summed RSS, and the peaks of any one process's private
    memory and mapped file pages (a serving worker's cost, apart from the page cache it maps).
    """

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.root = psutil.Process(pid)
        self.interval = interval
        self.usage = Usage(0.0, 0.0, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._cpu: dict[int, float] = {}
        self._started = 0.0

    def _tree(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def _cpu_times(self) -> dict[int, float]:
        times = {}
        for process in self._tree():
            try:
                cpu = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            times[process.pid] = cpu.user + cpu.system
        return times

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            total = 0.0
            for process in self._tree():
                memory = resident(process.pid)
                if memory is None:
                    continue
                total += memory.private_mb + memory.mapped_mb
                self.usage.peak_private_mb = max(self.usage.peak_private_mb, memory.private_mb)
                self.usage.peak_mapped_mb = max(self.usage.peak_mapped_mb, memory.mapped_mb)
            self.usage.peak_rss_mb = max(self.usage.peak_rss_mb, total)

    def __enter__(self) -> TreeSampler:
        self._cpu = self._cpu_times()
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        ended = self._cpu_times()
        self.usage.seconds = time.monotonic() - self._started
        self.usage.cpu_seconds = sum(cpu - self._cpu.get(pid, 0.0) for pid, cpu in ended.items())
