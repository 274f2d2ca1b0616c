"""Bluesky's own Jetstream server (built by tests/jetstream.sh) on loopback, reading the local PDS of atnet.

It reads the PDS through `PdsRelay` (the relay's `listHosts` a PDS lacks) and resolves DIDs through `PlcFront`
(the current DID document format), both from `tests/pds_relay.py`; both fronts stay up across a restart of the
server, which keeps its data folder and so resumes where it stopped, as a deployed Jetstream does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import libipld
import pytest
from websockets.exceptions import InvalidHandshake
from websockets.sync.client import connect

from feedgen.ingest.jetstream import METHOD
from tests.atnet import Account, Network, create_account, eventually, free_port
from tests.pds_relay import PdsRelay, PlcFront

BINARY = Path(os.environ.get('FEEDGEN_JETSTREAM_BIN', '~/.cache/feedgen-jetstream/bin/jetstream')).expanduser()
SESSION_SCRIPT = Path(__file__).resolve().parents[2] / 'shared' / 'atnet' / 'py' / 'atnet_session.py'


def require_binary() -> Path:
    """The server's binary, or a skip (a failure in CI, where tests/run.sh builds it) saying how to build it."""
    if not BINARY.exists():
        reason = f'no Jetstream binary at {BINARY}: run tests/jetstream.sh (see its build.log)'
        if os.environ.get('CI'):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return BINARY


class JetstreamServer:
    """Runs the server against `network`'s PDS from the PDS seq `since` on; `start`, `stop`, `kill`, `start` again."""

    def __init__(self, network: Network, folder: Path, since: int) -> None:
        self.binary = require_binary()
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._fronts = ExitStack()
        self.relay = self._fronts.enter_context(PdsRelay(network.pds, since=since))
        self.plc = self._fronts.enter_context(PlcFront(network.plc))

    @property
    def url(self) -> str:
        return f'ws://127.0.0.1:{self.port}'

    def start(self) -> JetstreamServer:
        args = [str(self.binary), '--log-format', 'text', '--log-level', 'warn', 'serve']
        args += ['--addr', f'127.0.0.1:{self.port}', '--relay-url', self.relay.url, '--plc-url', self.plc.url]
        args += ['--data-dir', str(self.folder / 'data'), '--failed-repo-retry-interval', '0']
        with (self.folder / 'jetstream.log').open('ab') as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)

        def serving() -> None:
            """Subscriptions are accepted (the server answers 503 until it has caught up with its relay)."""
            assert self.process is not None and self.process.poll() is None, self.log()[-3000:]
            with connect(f'{self.url}/xrpc/{METHOD}', open_timeout=5):
                pass

        eventually(serving, timeout=60, retry=(OSError, InvalidHandshake, TimeoutError))
        return self

    def log(self) -> str:
        path = self.folder / 'jetstream.log'
        return path.read_text(errors='replace') if path.exists() else ''

    def stop(self) -> None:
        """SIGTERM, as a deployment restarts it: subscribers get a close frame."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: subscribers' connections just drop."""
        self._end(signal.SIGKILL)

    def _end(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> JetstreamServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
        self._fronts.close()


def pds_seq(network: Network) -> tuple[int, Account]:
    """The PDS's latest seq, read as the seq of an event made now (a new account); returns it and the account."""
    with connect(f'{network.firehose}/xrpc/com.atproto.sync.subscribeRepos', max_size=None, open_timeout=30) as live:
        account = create_account(network, 'mark')
        _, body = libipld.decode_dag_cbor_multi(live.recv(timeout=30))
    return body['seq'], account


def run_session(network: Network, prefix: str, accounts: int = 4, posts: int = 4) -> None:
    """atnet's seeded session on the PDS: accounts, posts of every kind, likes, reposts, follows, every kind of
    delete, a handle change, an account deactivated and reactivated, and one deleted by the admin."""
    if not SESSION_SCRIPT.exists():
        pytest.skip(f'no atnet session script at {SESSION_SCRIPT}')
    args = [sys.executable, str(SESSION_SCRIPT), '--pds', network.pds, '--prefix', prefix]
    args += ['--accounts', str(accounts), '--posts', str(posts), '--seed', '14']
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
