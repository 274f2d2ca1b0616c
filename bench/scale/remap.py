"""Remapping a recorded firehose session onto a filled store's own accounts and posts.

Owns turning the frames of a real ATFH capture (a PDS session: accounts posting, liking, reposting, following,
deleting, a handle change, a deactivation and an account deletion) into as many frames as a benchmark asks for,
replaying the session round after round. Each round plays the capture's accounts as other accounts of the store;
its likes and reposts land on the store's posts (70% on a post an existing like was drawn for, so popular posts
get more, 30% on the newest tenth of the posts), its follows on accounts an existing follow was drawn for, its
post deletes on existing posts of the store, and its other deletes on the records the round created. Records get
fresh keys and `createdAt`, and frames fresh `seq` (increasing across rounds) and `time`; record blocks are
re-encoded with their new CIDs. Everything else of a frame (commit, MST blocks, signatures) is left as recorded:
feedgen does not verify them. It reads the store and never writes it.
"""

from __future__ import annotations

import datetime
import random
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import libipld

from bench.ingest.synth import car, cid_for, tid
from feedgen.ingest.records import FOLLOW, LIKE, POST, REPOST

POPULAR_SHARE = 0.7


_LIKED = (
    "SELECT 'at://' || s.did || '/app.bsky.feed.post/' || l.subject_rkey FROM like_record AS l"
    ' JOIN account_number AS s ON s.id = l.subject_author WHERE l.id IN ({})'
)
"""The subjects of likes by number (`_sample`'s rowids)."""


def _sample(conn: sqlite3.Connection, sql: str, top: int, low: int, count: int, rng: random.Random) -> list[tuple]:
    """Rows of `sql` (a select ending in `IN` over rowids) for `count` random rowids in [low, top]."""
    if top < low or count <= 0:
        return []
    rows: list[tuple] = []
    while len(rows) < count:
        ids = [rng.randint(low, top) for _ in range(min(500, count - len(rows)))]
        found = conn.execute(sql.format(', '.join('?' * len(ids))), ids).fetchall()
        if not found:
            break
        rows.extend(found)
    rng.shuffle(rows)
    return rows


class Remapper:
    """Makes frames from a capture's messages whose events land on the store at `store` (see the module docstring)."""

    def __init__(self, store: Path, accounts: Sequence[str], seed: int = 1, now: float | None = None) -> None:
        self.store = store
        self.accounts = accounts
        self.rng = random.Random(seed)
        self.now = time.time() if now is None else now
        self.micros = int(self.now * 1_000_000)
        self.time = datetime.datetime.fromtimestamp(self.now, datetime.UTC).isoformat(timespec='milliseconds')
        self._pools: dict[str, Iterator[tuple]] = {}

    def frames(self, messages: Sequence[bytes], count: int, first_seq: int = 1) -> list[bytes]:
        """`count` frames: the capture's `messages` replayed round after round, remapped, numbered from `first_seq`."""
        rounds = -(-count // len(messages))
        self._fill_pools(rounds, Counts.of(messages))
        dids = _dids(messages)
        out: list[bytes] = []
        for _ in range(rounds):
            accounts = dict(zip(dids, self.rng.sample(self.accounts, len(dids)), strict=True))
            uris: dict[str, str] = {}
            for message in messages:
                if len(out) == count:
                    return out
                out.append(self._frame(message, first_seq + len(out), accounts, uris))
        return out

    def _fill_pools(self, rounds: int, counts: Counts) -> None:
        rng = self.rng
        with sqlite3.connect(f'file:{self.store}?mode=ro', uri=True) as conn:
            top_like = conn.execute('SELECT max(id) FROM like_record').fetchone()[0] or 0
            top_post = conn.execute('SELECT max(id) FROM post').fetchone()[0] or 0
            top_follow = conn.execute('SELECT max(rowid) FROM follow').fetchone()[0] or 0
            subjects = rounds * (counts.likes + counts.reposts)
            popular = _sample(conn, _LIKED, top_like, 1, subjects, rng)
            recent = _sample(conn, 'SELECT uri FROM post WHERE id IN ({})', top_post, top_post * 9 // 10, subjects, rng)
            followed = _sample(conn, 'SELECT subject FROM follow WHERE rowid IN ({})', top_follow, 1,
                               rounds * counts.follows, rng)  # fmt: skip
            deleted = _sample(conn, 'SELECT uri, author FROM post WHERE id IN ({})', top_post, 1,
                              rounds * counts.post_deletes, rng)  # fmt: skip
        self._pools = {'popular': iter(popular), 'recent': iter(recent), 'followed': iter(followed)}
        self._pools['deleted'] = iter(deleted)

    def _pick(self, pool: str) -> tuple | None:
        return next(self._pools[pool], None)

    def _frame(self, message: bytes, seq: int, accounts: dict[str, str], uris: dict[str, str]) -> bytes:
        header, body = libipld.decode_dag_cbor_multi(message)
        body = body | {'seq': seq, 'time': self.time}
        if 'did' in body:
            body['did'] = accounts.get(body['did'], body['did'])
        if header.get('t') == '#commit':
            self._commit(body, accounts, uris)
        return libipld.encode_dag_cbor(header) + libipld.encode_dag_cbor(body)

    def _commit(self, body: dict[str, Any], accounts: dict[str, str], uris: dict[str, str]) -> None:
        repo = body['repo']
        body['repo'] = accounts.get(repo, repo)
        ops = body['ops']
        if len(ops) == 1 and ops[0]['action'] == 'delete' and ops[0]['path'].startswith(f'{POST}/'):
            target = self._pick('deleted')
            if target is not None:
                uri, author = target
                body['repo'], body['ops'] = author, [ops[0] | {'path': uri.split('/', 3)[3]}]
                return
        if not ops:
            return
        root, blocks = libipld.decode_car(body['blocks'])
        encoded = {cid: libipld.encode_dag_cbor(block) for cid, block in blocks.items()}
        new_ops = []
        for op in ops:
            collection = op['path'].split('/', 1)[0]
            old_uri = f'at://{repo}/{op["path"]}'
            if op['action'] == 'create':
                self.micros += 1
                path = f'{collection}/{tid(self.micros, 0)}'
                uris[old_uri] = f'at://{body["repo"]}/{path}'
            else:
                path = uris.get(old_uri, f'at://{body["repo"]}/{op["path"]}').split('/', 3)[3]
            op = op | {'path': path}
            cid = op.get('cid')
            if cid is not None and cid in blocks and op['action'] in ('create', 'update'):
                record = self._record(collection, blocks[cid], uris)
                block = libipld.encode_dag_cbor(record)
                del encoded[cid]
                op['cid'] = cid_for(block)
                encoded[op['cid']] = block
            new_ops.append(op)
        body['ops'] = new_ops
        body['blocks'] = car(root['roots'][0], list(encoded.items()))

    def _record(self, collection: str, record: dict[str, Any], uris: dict[str, str]) -> dict[str, Any]:
        record = record | {'createdAt': self.time} if 'createdAt' in record else dict(record)
        if collection in (LIKE, REPOST):
            subject = self._subject_post()
            if subject is not None:
                record['subject'] = record['subject'] | {'uri': subject}
        elif collection == FOLLOW:
            followed = self._pick('followed')
            if followed is not None:
                record['subject'] = followed[0]
        elif collection == POST and isinstance(reply := record.get('reply'), dict):
            record['reply'] = {
                key: ref | {'uri': uris.get(ref['uri'], ref['uri'])} if isinstance(ref, dict) else ref
                for key, ref in reply.items()
            }
        return record

    def _subject_post(self) -> str | None:
        first, second = ('popular', 'recent') if self.rng.random() < POPULAR_SHARE else ('recent', 'popular')
        picked = self._pick(first) or self._pick(second)
        return picked[0] if picked else None


class Counts(NamedTuple):
    """How many records of each kind one round of a capture needs from the store."""

    likes: int
    reposts: int
    follows: int
    post_deletes: int

    @classmethod
    def of(cls, messages: Sequence[bytes]) -> Counts:
        ops: dict[str, int] = {}
        for message in messages:
            header, body = libipld.decode_dag_cbor_multi(message)
            if header.get('t') != '#commit':
                continue
            for op in body.get('ops') or ():
                key = f'{op["action"]} {op["path"].split("/", 1)[0]}'
                ops[key] = ops.get(key, 0) + 1
        return cls(ops.get(f'create {LIKE}', 0), ops.get(f'create {REPOST}', 0), ops.get(f'create {FOLLOW}', 0),
                   ops.get(f'delete {POST}', 0))  # fmt: skip


def _dids(messages: Sequence[bytes]) -> list[str]:
    """The accounts of the capture, in order of appearance."""
    dids: dict[str, None] = {}
    for message in messages:
        _, body = libipld.decode_dag_cbor_multi(message)
        did = body.get('repo') or body.get('did')
        if isinstance(did, str):
            dids.setdefault(did)
    return list(dids)
