"""Fill a store for the serve benchmark: a million posts with likes, reposts and follows, in bulk.

Owns generating a deterministic, realistic-looking store (Zipf-like authors and popularity, the live mix of
languages, hashtags, replies and embeds, a day of timestamps ending at build time, a few deactivated
accounts) and writing it with `executemany` straight into the tables `feedgen.store.models` creates, secondary
indexes dropped while loading and rebuilt by `feedgen.store.models.create_tables` after. It never goes through
the firehose or the indexer: that path is the ingest benchmark's. The built file is cached under
`bench/out/` with a JSON description beside it (`X.db` -> `X.json`), rebuilt when missing or stale.

Usage: `python -m bench.serve.fill --posts 1000000 --out bench/out/serve-1000000.db`
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from itertools import accumulate
from pathlib import Path

import peewee

from bench.ingest.synth import tid
from feedgen.ingest.indexer import POST_COLUMNS, SUBJECT_COLUMNS
from feedgen.store.models import Actor, Follow, Like, Post, PostTerm, Repost, open_database
from feedgen.store.terms import post_terms
from feedgen.store.writes import insert_ignore

FORMAT = 'feedgen-serve-store/1'
DAY_MS = 86_400_000
TAG = 'bench'
"""The hashtag of the filtered feed: about 3% of posts carry it."""
_LANGS = ((('en',), 55), (('ja',), 12), (('pt',), 10), (('de',), 4), (('es',), 4), (('en', 'es'), 3), ((), 12))
_EMBEDS = (('images', 30), ('video', 5), ('external', 10), ('record', 5), (None, 50))
_WORDS = 'the a to of and in is it you that for on are with this my just so be at all have not but new day love'
_CHUNK = 20_000


@dataclass(frozen=True)
class StoreInfo:
    """What a filled store holds; written next to it as JSON."""

    format: str
    schema: str
    """Hash of the schema the store was built with (`schema_hash`): a changed model means a rebuild."""
    posts: int
    accounts: int
    likes: int
    reposts: int
    follows: int
    viewer: str
    """An account following `viewer_follows` accounts, for the personalized feeds."""
    viewer_follows: int
    tag: str
    tagged_posts: int
    newest_ms: int
    """The `sort_at` of the newest post: the store's "now"."""
    seconds: float
    """How long the fill took."""


def did_of(index: int) -> str:
    return f'did:plc:{index:024x}'.replace('0', 'a')


def _weighted(rng: random.Random, options: Sequence[tuple[object, int]], k: int) -> list:
    values = [value for value, _ in options]
    return rng.choices(values, cum_weights=list(accumulate(w for _, w in options)), k=k)


def _zipf_cum_weights(n: int, exponent: float) -> list[float]:
    return list(accumulate(1.0 / (rank + 1) ** exponent for rank in range(n)))


def _chunks(rows: Iterator[tuple]) -> Iterator[list[tuple]]:
    chunk: list[tuple] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == _CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class Filler:
    """Generates the rows of one store from a seed; `write` loads them into a SQLite file."""

    def __init__(self, posts: int, accounts: int, seed: int = 1, now_ms: int | None = None) -> None:
        self.rng = random.Random(seed)
        self.posts = posts
        self.accounts = [did_of(i) for i in range(accounts)]
        self.now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        self.author_weights = _zipf_cum_weights(accounts, 0.9)
        self.inactive = set(self.rng.sample(self.accounts, accounts // 200))
        self.likes = 7 * posts // 4
        self.reposts = posts // 4
        self.follows_per_account = 15
        self.viewer = did_of(accounts)
        self.viewer_follows = 500
        self.follows = 0
        self._post_uris: list[str] = []
        self._like_counts: Counter[int] = Counter()
        self._repost_counts: Counter[int] = Counter()
        self._reply_counts: Counter[int] = Counter()

    def post_rows(self) -> Iterator[tuple]:
        """Rows of `post` (with counters left at 0; `counts` fixes them) in id order, oldest first."""
        rng, n = self.rng, self.posts
        authors = rng.choices(self.accounts, cum_weights=self.author_weights, k=n)
        langs = _weighted(rng, _LANGS, n)
        embeds = _weighted(rng, _EMBEDS, n)
        words = _WORDS.split()
        start = self.now_ms - DAY_MS
        roots: list[str] = []
        for i in range(n):
            sort_at = start + i * DAY_MS // n
            created_at = sort_at - rng.randrange(3_600_000) if rng.random() < 0.01 else sort_at
            author = authors[i]
            uri = f'at://{author}/app.bsky.feed.post/{tid(sort_at * 1000, i & 1023)}'
            tags = []
            if rng.random() < 0.03:
                tags.append(TAG)
            if rng.random() < 0.08:
                tags.append(f'tag{int(rng.paretovariate(1.2)) % 2000}')
            reply_root = reply_parent = None
            if i > 100 and rng.random() < 0.35:
                parent = i - 1 - int(rng.expovariate(1 / 2000)) % i
                reply_parent, reply_root = self._post_uris[parent], roots[parent]
                self._reply_counts[parent] += 1
            self._post_uris.append(uri)
            roots.append(reply_root or uri)
            text = ' '.join(rng.choices(words, k=rng.randrange(3, 20)))
            yield (
                uri,
                f'bafyrei{i:052d}',
                author,
                text,
                ' '.join(langs[i]),
                ' '.join(tags),
                reply_root,
                reply_parent,
                embeds[i],
                created_at,
                min(created_at, sort_at),
                sort_at + rng.randrange(50, 2000),
                i + 1,
                author in self.inactive,
                '',
                *('', '', None, 0, 0, False),  # links, mentions, quote, image_count, alt_count, video
            )

    def _subject_rows(self, kind: str, count: int, counts: Counter[int]) -> Iterator[tuple]:
        """Likes or reposts: subjects favour popular and recent posts; times follow the post's."""
        rng, n = self.rng, self.posts
        popularity = list(accumulate(rng.paretovariate(1.5) * (0.2 + i / n) for i in range(n)))
        subjects = rng.choices(range(n), cum_weights=popularity, k=count)
        authors = rng.choices(self.accounts, k=count)
        start = self.now_ms - DAY_MS
        for i, (post, author) in enumerate(zip(subjects, authors, strict=True)):
            counts[post] += 1
            posted = start + post * DAY_MS // n
            indexed_at = min(self.now_ms, posted + int(rng.expovariate(1 / 3_600_000)))
            uri = f'at://{author}/app.bsky.feed.{kind}/{tid(self.now_ms * 1000 - i, 0)}'
            yield uri, author, self._post_uris[post], indexed_at

    def like_rows(self) -> Iterator[tuple]:
        return self._subject_rows('like', self.likes, self._like_counts)

    def repost_rows(self) -> Iterator[tuple]:
        return self._subject_rows('repost', self.reposts, self._repost_counts)

    def follow_rows(self) -> Iterator[tuple]:
        """Each account follows about 15 others (popular ones more often); the viewer follows 500."""
        rng = self.rng
        i = 0
        for author in [*self.accounts, self.viewer]:
            k = self.viewer_follows if author == self.viewer else int(rng.expovariate(1 / self.follows_per_account))
            subjects = set(rng.choices(self.accounts, cum_weights=self.author_weights, k=k))
            while author == self.viewer and len(subjects) < k:
                subjects.add(rng.choice(self.accounts))
            for subject in sorted(subjects):
                i += 1
                yield f'at://{author}/app.bsky.graph.follow/{tid(self.now_ms * 1000 - i, i & 1023)}', author, subject
        self.follows = i

    def write(self, path: Path) -> StoreInfo:
        """Builds the store at `path` (replacing any file there) and returns what it holds."""
        started = time.monotonic()
        for suffix in ('', '-wal', '-shm'):
            Path(f'{path}{suffix}').unlink(missing_ok=True)
        open_database(path).close()
        db = peewee.SqliteDatabase(path, pragmas={'journal_mode': 'off', 'synchronous': 'off'})
        db.connect()
        indexes = db.execute_sql("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL").fetchall()
        for (name,) in indexes:
            db.execute_sql(f'DROP INDEX "{name}"')
        db.execute_sql('BEGIN')
        tagged = 0
        for chunk in _chunks(self.post_rows()):
            insert_ignore(db, Post, POST_COLUMNS, chunk)
            first_id = db.execute_sql('SELECT max(id) FROM post').fetchone()[0] - len(chunk) + 1
            terms = [
                (term, row[10], first_id + offset)
                for offset, row in enumerate(chunk)
                for term in post_terms(row[5].split(), row[4].split(), reply_parent=row[7], reply_root=row[6])
            ]
            tagged += sum(1 for row in chunk if TAG in row[5].split())
            insert_ignore(db, PostTerm, ('term', 'sort_at', 'post_id'), terms)
        for model, rows in ((Like, self.like_rows()), (Repost, self.repost_rows())):
            for chunk in _chunks(rows):
                insert_ignore(db, model, SUBJECT_COLUMNS, chunk)
        for chunk in _chunks(self.follow_rows()):
            insert_ignore(db, Follow, SUBJECT_COLUMNS, [(*row, self.now_ms) for row in chunk])
        for column, counts in (
            ('like_count', self._like_counts),
            ('repost_count', self._repost_counts),
            ('reply_count', self._reply_counts),
        ):
            db.cursor().executemany(
                f'UPDATE post SET {column} = ? WHERE id = ?', [(c, i + 1) for i, c in counts.items()]
            )
        insert_ignore(db, Actor, ('did', 'status'), [(did, 'deactivated') for did in sorted(self.inactive)])
        db.execute_sql('COMMIT')
        db.close()
        open_database(path).close()  # rebuilds the secondary indexes the models declare
        with sqlite3.connect(path) as conn:
            conn.execute('PRAGMA journal_mode=wal')
        return StoreInfo(
            format=FORMAT,
            schema=schema_hash(),
            posts=self.posts,
            accounts=len(self.accounts),
            likes=self.likes,
            reposts=self.reposts,
            follows=self.follows,
            viewer=self.viewer,
            viewer_follows=self.viewer_follows,
            tag=TAG,
            tagged_posts=tagged,
            newest_ms=self.now_ms,
            seconds=round(time.monotonic() - started, 1),
        )


def schema_hash() -> str:
    """A short hash of the tables and indexes `feedgen.store.models` creates."""
    db = open_database(':memory:')
    statements = sorted(sql for (sql,) in db.execute_sql('SELECT sql FROM sqlite_master WHERE sql IS NOT NULL'))
    db.close()
    return hashlib.sha256('\n'.join(statements).encode()).hexdigest()[:12]


def info_path(path: Path) -> Path:
    return path.with_suffix('.json')


def cached_store(path: Path, posts: int, max_age_hours: float = 12.0) -> StoreInfo:
    """The store at `path`, built first when missing, of another size, format or schema, or too old.

    Its times end at build time, so recency-ranked feeds see a live-looking day of posts; after
    `max_age_hours` it is rebuilt.
    """
    info = _read_info(path)
    fresh = info is not None and time.time() * 1000 - info.newest_ms < max_age_hours * 3_600_000
    if info is not None and fresh and info.format == FORMAT and info.schema == schema_hash() and info.posts == posts:
        return info
    path.parent.mkdir(parents=True, exist_ok=True)
    info = Filler(posts=posts, accounts=max(1000, posts // 20)).write(path)
    info_path(path).write_text(json.dumps(asdict(info), indent=2))
    return info


def _read_info(path: Path) -> StoreInfo | None:
    try:
        return StoreInfo(**json.loads(info_path(path).read_text())) if path.exists() else None
    except (OSError, TypeError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--posts', type=int, default=1_000_000)
    parser.add_argument('--out', type=Path, default=Path('bench/out/serve-1000000.db'))
    args = parser.parse_args(argv)
    info = cached_store(args.out, args.posts)
    print(json.dumps(asdict(info), indent=2))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
