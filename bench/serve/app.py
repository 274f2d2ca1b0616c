"""Bench server: `feedgen serve` as it runs in production, except that viewers' keys come from the benchmark.

Personalized feeds need a signed-in viewer: a service JWT that `feedgen.serve.auth.ServiceAuth` verifies against the
issuer's signing key. In production the key is resolved through PLC; here the benchmark signs the viewer's
tokens with a local key (`tests.jwts.SigningKey`) and passes its `did:key` in `FEEDGEN_BENCH_VIEWER_KEYS`
(`did=did:key,...`), so every request still pays for a real signature check, and nothing leaves loopback.
Everything else (settings, gunicorn options, the app) is `feedgen.cli.serve_forever`'s.

Usage: `FEEDGEN_BENCH_VIEWER_KEYS=did:plc:x=did:key:z... python -m bench.serve.app --port 8000 --workers 2`
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, required=True)
    parser.add_argument('--workers', type=int, default=2)
    args = parser.parse_args(argv)
    settings = Settings.from_env(env_file=None)
    pairs = [pair.split('=', 1) for pair in os.environ.get('FEEDGEN_BENCH_VIEWER_KEYS', '').split(',') if pair]
    auth = ServiceAuth(settings.service_did, StaticKeys(dict(pairs)))
    serve_forever(settings, args.host, args.port, args.workers, app_factory=lambda: create_app(settings, auth=auth))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
