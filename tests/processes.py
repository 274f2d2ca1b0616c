"""Running `feedgen` commands as real subprocesses in tests: start, wait until serving, read logs, stop.

Each process gets the test's environment without any `FEEDGEN_*` variable of the machine, its own process
group (so stopping it stops the server's workers too), and its output in files, never in pipes that could fill
and block it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

CLEAN_ENV = {key: value for key, value in os.environ.items() if not key.startswith('FEEDGEN_')}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


class FeedgenProcess:
    """`python -m feedgen <args>` with `env` added to a clean environment; output goes to `<folder>/<name>.log`."""

    def __init__(self, args: list[str], env: dict[str, str], folder: Path, name: str = 'feedgen') -> None:
        self.args = args
        self.env = CLEAN_ENV | env
        self.stdout_path = folder / f'{name}.out'
        self.log_path = folder / f'{name}.log'
        self.process: subprocess.Popen | None = None

    def start(self) -> FeedgenProcess:
        with open(self.stdout_path, 'ab') as stdout, open(self.log_path, 'ab') as stderr:
            self.process = subprocess.Popen(
                [sys.executable, '-m', 'feedgen', *self.args],
                env=self.env,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors='replace') if self.log_path.exists() else ''

    def output(self) -> str:
        return self.stdout_path.read_text(errors='replace') if self.stdout_path.exists() else ''

    def wait_http(self, url: str, timeout: float = 60.0) -> None:
        """Blocks until `url` answers (any status), or fails with the process's log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise AssertionError(f'feedgen {self.args} exited:\n{self.log()[-3000:]}')
            try:
                httpx.get(url, timeout=2)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError(f'{url} did not answer in {timeout}s:\n{self.log()[-3000:]}')

    def kill(self) -> None:
        """SIGKILL to the whole process group: no handler, no cleanup, like a crash or an OOM kill."""
        if self.running():
            os.killpg(self.pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=30)

    def send(self, signum: int, group: bool = False) -> None:
        """Sends `signum` to the process, or to its whole group as a terminal's Ctrl-C (or `systemctl stop`) does."""
        (os.killpg if group else os.kill)(self.pid, signum)

    def left_behind(self, timeout: float = 20.0) -> list[str]:
        """Waits (bounded) until no process of its group runs; returns the command lines of those still running."""
        deadline = time.monotonic() + timeout
        while (running := group_processes(self.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        return list(running.values())

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM to the process group, then SIGKILL if it has not exited after `timeout`; returns the exit code."""
        if self.process is None:
            return None
        if self.running():
            os.killpg(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def __enter__(self) -> FeedgenProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def group_processes(pgid: int) -> dict[int, str]:
    """pid -> command line of the processes of group `pgid` that are running (not zombies), read from /proc."""
    found = {}
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            fields = stat.read_text().rsplit(')', 1)[1].split()
            if fields[0] != 'Z' and int(fields[2]) == pgid:
                cmdline = (stat.parent / 'cmdline').read_bytes().replace(b'\0', b' ')
                found[int(stat.parent.name)] = cmdline.decode(errors='replace').strip()
        except (OSError, IndexError, ValueError):
            continue  # the process ended while it was read
    return found
