"""Bench server: `feedgen serve` as it runs in production, except that viewers' keys come from the benchmark.

Personalized feeds need a signed-in viewer: a service JWT that `feedgen.serve.auth.ServiceAuth` verifies against the
issuer's signing key. In production the key is resolved through PLC; here the benchmark signs the viewer's
tokens with a local key (`tests.jwts.SigningKey`) and passes its `did:key` in `FEEDGEN_BENCH_VIEWER_KEYS`
(`did=did:key,...`), so every request still pays for a real signature check, and nothing leaves loopback.
Everything else (settings, server options, the app) is `feedgen.serve.server.serve_forever`'s.

`--server` picks what serves the app, for comparing servers in one run: feedgen's own (`granian`, the default) or
gunicorn's `sync` or `gthread` workers (gunicorn is a benchmark dependency only).

Usage: `FEEDGEN_BENCH_VIEWER_KEYS=did:plc:x=did:key:z... python -m bench.serve.app --port 8000 --workers 2`
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from dataclasses import dataclass

from flask import Flask
from gunicorn.app.base import BaseApplication

from feedgen.serve.app import create_app
from feedgen.serve.auth import FEED_SKELETON_LXM, ServiceAuth
from feedgen.serve.server import serve_forever
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


GUNICORN_WORKERS = ('sync', 'gthread')
SERVERS = ('granian', *GUNICORN_WORKERS)


def bench_app() -> Flask:
    """The app as `feedgen serve` builds it, with the benchmark's viewer keys."""
    settings = Settings.from_env(env_file=None)
    pairs = [pair.split('=', 1) for pair in os.environ.get('FEEDGEN_BENCH_VIEWER_KEYS', '').split(',') if pair]
    return create_app(settings, auth=ServiceAuth(settings.service_did, StaticKeys(dict(pairs))))


class _Gunicorn(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type hints
    """Gunicorn embedded with one of its own worker classes, for comparison with feedgen's server."""

    def __init__(self, options: dict[str, object]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        app = bench_app()
        gc.freeze()  # as feedgen's server does in each worker
        return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, required=True)
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--server', choices=SERVERS, default='granian')
    args = parser.parse_args(argv)
    settings = Settings.from_env(env_file=None)
    if args.server == 'granian':
        serve_forever(settings, args.host, args.port, args.workers, bench_app)
        return 0
    options = {'bind': f'{args.host}:{args.port}', 'workers': args.workers, 'worker_class': args.server}
    _Gunicorn(options | {'threads': settings.threads, 'accesslog': None, 'loglevel': 'warning'}).run()
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
