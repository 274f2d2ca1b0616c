"""Ceiling: the least a feed server can do per request, to measure the serve benchmark against.

A minimal Flask app answering one indexed keyset page query (`latest`'s, on the same store file) with a raw
`sqlite3` connection per thread, and nothing else: no feed lookup, no cursor checks, no algorithm objects.
Run under granian by `bench.serve.run` with the same worker settings as `feedgen serve` (`app_from_env` reads
the store's path from `BENCH_CEILING_DATABASE`); it reads the store and never writes.
"""

from __future__ import annotations

import os
import sqlite3
import threading

from flask import Flask, jsonify, request

PAGE = (
    'SELECT uri, sort_at, id FROM post WHERE hidden = 0 AND (sort_at, id) < (?, ?) '
    'ORDER BY sort_at DESC, id DESC LIMIT ?'
)


def create_app(database: str) -> Flask:
    """The ceiling app over the store at `database`: `GET /page?limit=&cursor=<sort_at>:<id>`."""
    app = Flask('ceiling')
    local = threading.local()

    @app.get('/page')
    def page() -> object:
        if not hasattr(local, 'conn'):
            local.conn = sqlite3.connect(f'file:{database}?mode=ro', uri=True, check_same_thread=False)
        limit = int(request.args.get('limit', 50))
        sort_at, item_id = (int(x) for x in request.args.get('cursor', f'{2**62}:0').split(':'))
        rows = local.conn.execute(PAGE, (sort_at, item_id, limit)).fetchall()
        body: dict[str, object] = {'feed': [{'post': uri} for uri, _, _ in rows]}
        if len(rows) == limit:
            body['cursor'] = f'{rows[-1][1]}:{rows[-1][2]}'
        return jsonify(body)

    return app


def app_from_env() -> Flask:
    """The ceiling app over the store at `$BENCH_CEILING_DATABASE`, for a server that imports a factory by name."""
    return create_app(os.environ['BENCH_CEILING_DATABASE'])
