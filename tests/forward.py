"""A TCP forwarder, so containers on a podman network reach a service that listens on the host's loopback only.

It listens on every address (a container reaches the host at `host.containers.internal`, an address that exists
only while a container runs) and takes connections from private addresses only.
"""

from __future__ import annotations

import ipaddress
import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any


def _pump(source: socket.socket, target: socket.socket) -> None:
    """Copies `source` to `target` until either side ends, then ends both (a websocket needs no half-close)."""
    with suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    _end(source, target)


def _end(*socks: socket.socket) -> None:
    for sock in socks:
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _Connection(socketserver.BaseRequestHandler):
    server: _Forwarder

    def handle(self) -> None:
        with socket.create_connection(self.server.target, timeout=10) as upstream:
            upstream.settimeout(None)
            self.server.track(upstream, self.request)
            back = threading.Thread(target=_pump, args=(upstream, self.request), daemon=True)
            back.start()
            _pump(self.request, upstream)
            back.join(timeout=10)
            self.server.untrack(upstream, self.request)


class _Forwarder(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__(('0.0.0.0', 0), _Connection)
        self.target = target
        self._open: set[socket.socket] = set()
        """The sockets of the connections being forwarded, ended when the forwarder closes."""
        self._lock = threading.Lock()

    def track(self, *socks: socket.socket) -> None:
        with self._lock:
            self._open.update(socks)

    def untrack(self, *socks: socket.socket) -> None:
        with self._lock:
            self._open.difference_update(socks)

    def server_close(self) -> None:
        super().server_close()
        with self._lock:
            _end(*self._open)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return ipaddress.ip_address(client_address[0]).is_private


@contextmanager
def forwarding(host: str, port: int) -> Iterator[int]:
    """Forwards a free port to `host:port` while the block runs; yields the port."""
    server = _Forwarder((host, port))
    thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.2}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
