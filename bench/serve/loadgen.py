"""Load generator: bounded HTTP load on a loopback server with wrk, one JSON result per run.

Owns running `wrk` (Debian's `wrk` package) with `paths.lua`, which cycles every connection through a file
of request paths (varied feeds and cursors), and reading its totals and latency percentiles. Every run is
bounded by a duration and only ever targets 127.0.0.1.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).with_name('paths.lua')


class LoadgenError(RuntimeError):
    """wrk is missing or did not report a result."""


@dataclass(frozen=True)
class Load:
    """What one wrk run measured."""

    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int
    """Failed connections, reads, writes, timeouts, and responses that are not 2xx or 3xx."""

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def require_wrk() -> str:
    path = shutil.which('wrk')
    if path is None:
        raise LoadgenError('wrk is not installed: apt-get install -y wrk')
    return path


def run_wrk(port: int, requests: Sequence[str], connections: int, seconds: float) -> Load:
    """Sends `requests` (paths, or `path<TAB>authorization`) round-robin to 127.0.0.1:`port` for `seconds`.

    Args:
        port: the loopback port of the server under test.
        requests: the request lines; each connection starts at a random one.
        connections: concurrent keep-alive connections (wrk threads: at most 2, the cores of this machine).
        seconds: how long the run lasts.
    """
    wrk = require_wrk()
    threads = min(2, connections)
    with tempfile.NamedTemporaryFile('w', suffix='.paths', delete=False) as listing:
        listing.write('\n'.join(requests) + '\n')
    try:
        completed = subprocess.run(
            [wrk, f'-t{threads}', f'-c{connections}', f'-d{max(1, round(seconds))}s', '--timeout', '5s',
             '-s', str(SCRIPT), f'http://127.0.0.1:{port}', '--', listing.name],
            capture_output=True, text=True, timeout=seconds + 30, check=False,
        )  # fmt: skip
    finally:
        Path(listing.name).unlink()
    line = next((line for line in completed.stdout.splitlines() if line.startswith('{"requests"')), None)
    if line is None:
        raise LoadgenError(f'wrk reported nothing (exit {completed.returncode}): {completed.stderr.strip()[:300]}')
    result = json.loads(line)
    return Load(
        requests=result['requests'],
        seconds=result['duration_us'] / 1e6,
        p50_ms=result['p50_us'] / 1000,
        p90_ms=result['p90_us'] / 1000,
        p99_ms=result['p99_us'] / 1000,
        errors=sum(result[key] for key in ('connect', 'read', 'write', 'status', 'timeout')),
    )
