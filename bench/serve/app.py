"""Bench server: `feedgen serve` as it runs in production, except that viewers' keys come from the benchmark.

Personalized feeds need a signed-in viewer: a service JWT that `feedgen.serve.auth.ServiceAuth` verifies against the
issuer's signing key. In production the key is resolved through PLC; here the benchmark signs the viewer's
tokens with a local key (`tests.jwts.SigningKey`) and passes its `did:key` in `FEEDGEN_BENCH_VIEWER_KEYS`
(`did=did:key,...`), so every request still pays for a real signature check, and nothing leaves loopback.
Everything else (settings, gunicorn options, the app) is `feedgen.cli.serve_forever`'s.

`--server` picks what serves the app, for comparing servers in one run: gunicorn with feedgen's worker (`fair`),
gunicorn's own `sync` or `gthread` workers, or `granian` (a Rust HTTP server running the WSGI app).

Usage: `FEEDGEN_BENCH_VIEWER_KEYS=did:plc:x=did:key:z... python -m bench.serve.app --port 8000 --workers 2`
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from dataclasses import dataclass

from flask import Flask
from granian import Granian
from granian.constants import Interfaces
from granian.log import LogLevels

from feedgen.cli import serve_forever
from feedgen.serve.app import create_app
from feedgen.serve.auth import FEED_SKELETON_LXM, ServiceAuth
from feedgen.settings import Settings
from tests.jwts import SigningKey, service_claims


@dataclass(frozen=True)
class StaticKeys:
    """A key resolver that knows the benchmark's viewers and nobody else."""

    keys: dict[str, str]

    def resolve_atproto_key(self, did: str, force_refresh: bool = False) -> str:
        return self.keys[did]


def viewer_token(key: SigningKey, viewer: str, service_did: str, ttl_seconds: int = 3600) -> str:
    """An `Authorization` header value: a service JWT of `viewer` for getFeedSkeleton, valid for `ttl_seconds`."""
    claims = service_claims(viewer, service_did, FEED_SKELETON_LXM, ttl=ttl_seconds)
    claims['jti'] = f'bench-{time.time_ns()}'
    return f'Bearer {key.jwt(claims)}'


GUNICORN_WORKERS = {
    'fair': 'feedgen.serve.workers.FairThreadWorker',
    'sync': 'sync',
    'gthread': 'gthread',
}
SERVERS = (*GUNICORN_WORKERS, 'granian')


def bench_app() -> Flask:
    """The app as `feedgen serve` builds it, with the benchmark's viewer keys (a factory for granian's workers)."""
    settings = Settings.from_env(env_file=None)
    pairs = [pair.split('=', 1) for pair in os.environ.get('FEEDGEN_BENCH_VIEWER_KEYS', '').split(',') if pair]
    app = create_app(settings, auth=ServiceAuth(settings.service_did, StaticKeys(dict(pairs))))
    gc.freeze()  # as feedgen's gunicorn workers do
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, required=True)
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--server', choices=SERVERS, default='fair')
    args = parser.parse_args(argv)
    settings = Settings.from_env(env_file=None)
    if args.server == 'granian':
        Granian(
            'bench.serve.app:bench_app',
            address=args.host,
            port=args.port,
            interface=Interfaces.WSGI,
            workers=args.workers,
            blocking_threads=settings.threads,
            factory=True,
            log_level=LogLevels.warning,
        ).serve()
        return 0
    serve_forever(settings, args.host, args.port, args.workers, bench_app, GUNICORN_WORKERS[args.server])
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
