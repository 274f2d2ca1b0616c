"""Fill a store for the serve benchmark: a million posts with likes, reposts and follows, in bulk.

Owns generating a deterministic, realistic-looking store (Zipf-like authors and popularity, the live mix of
languages, hashtags, replies and embeds, a window of timestamps ending at build time, a few deactivated
accounts; `Shape` sets the window, the ratios and the popularity tail, by default a day of posts) and writing
it with `executemany` straight into the tables `feedgen.store.models` creates, secondary indexes dropped while
loading and rebuilt by `feedgen.store.models.create_tables` after, and the posts counted per author and hour
(`feedgen.store.post_counts`). It never goes through
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
from feedgen.store.likes import insert_likes
from feedgen.store.models import (
    MODELS,
    AccountNumber,
    Actor,
    Follow,
    Post,
    PostTerm,
    Repost,
    create_tables,
    open_database,
)
from feedgen.store.post_counts import fill_post_counts
from feedgen.store.statements import insert_ignore
from feedgen.store.terms import post_terms

FORMAT = 'feedgen-serve-store/2'
DAY_MS = 86_400_000
TAG = 'bench'
"""The hashtag of the filtered feed: about 3% of posts carry it."""
_LANGS = ((('en',), 55), (('ja',), 12), (('pt',), 10), (('de',), 4), (('es',), 4), (('en', 'es'), 3), ((), 12))
_EMBEDS = (('images', 30), ('video', 5), ('external', 10), ('record', 5), (None, 50))
_WORDS = 'the a to of and in is it you that for on are with this my just so be at all have not but new day love'
_CHUNK = 20_000
_CACHE_KIB = 4_000_000
"""The page cache of the loading connection (allocated as used): the URI keys of likes go in at random places."""


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


_BASE32 = 'abcdefghijklmnopqrstuvwxyz234567'
"""The alphabet of `did:plc` identifiers (base32, lower case)."""


def did_of(index: int) -> str:
    """The `did:plc` of account number `index`: 24 base32 digits, a different DID for every number below 32**24."""
    digits = []
    for _ in range(24):
        index, digit = divmod(index, 32)
        digits.append(_BASE32[digit])
    return 'did:plc:' + ''.join(reversed(digits))


@dataclass(frozen=True)
class Shape:
    """How a store's records spread over time and posts; the defaults are the serve benchmark's day of posts."""

    window_ms: int = DAY_MS
    """Posts are spread evenly over this long, ending at the store's "now"."""
    likes_per_post: float = 1.75
    reposts_per_post: float = 0.25
    follows_per_account: float = 15.0
    """Mean follows of an account (exponentially distributed, most to popular accounts); the viewer's are extra."""
    unliked: float = 0.0
    """Share of posts that nobody likes or reposts."""
    tail: float = 1.5
    """Pareto shape of the other posts' popularity: the closer to 1, the more a few posts take."""
    recency: bool = True
    """Newer posts draw up to 6x the likes of the oldest ones (a day whose new posts are still being found)."""
    like_delay_ms: int = 3_600_000
    """Mean time from a post to a like or repost of it (exponentially distributed, never after "now")."""
    steady: bool = False
    """As in a store pruned for a while: a like due after "now" is instead the one the same post got a window earlier,
    indexed near the window's start, of a post since pruned (otherwise it is indexed at "now")."""


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

    def __init__(
        self, posts: int, accounts: int, seed: int = 1, now_ms: int | None = None, shape: Shape = Shape()
    ) -> None:
        self.rng = random.Random(seed)
        self.posts = posts
        self.shape = shape
        self.accounts = [did_of(i) for i in range(accounts)]
        self.now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        self.author_weights = _zipf_cum_weights(accounts, 0.9)
        self.inactive = set(self.rng.sample(self.accounts, accounts // 200))
        self.likes = round(shape.likes_per_post * posts)
        self.reposts = round(shape.reposts_per_post * posts)
        self.viewer = did_of(accounts)
        self.viewer_follows = 500
        self.follows = 0
        self._post_uris: list[str] = []
        self._like_counts: Counter[int] = Counter()
        self._repost_counts: Counter[int] = Counter()
        self._reply_counts: Counter[int] = Counter()
        self._popularity: list[float] | None = None

    def post_rows(self) -> Iterator[tuple]:
        """Rows of `post` (with counters left at 0; `counts` fixes them) in id order, oldest first."""
        rng, n = self.rng, self.posts
        authors = rng.choices(self.accounts, cum_weights=self.author_weights, k=n)
        langs = _weighted(rng, _LANGS, n)
        embeds = _weighted(rng, _EMBEDS, n)
        words = _WORDS.split()
        window = self.shape.window_ms
        start = self.now_ms - window
        roots: list[str] = []
        for i in range(n):
            sort_at = start + i * window // n
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

    def popularity(self) -> list[float]:
        """Cumulative weights of the posts as subjects of likes and reposts (`Shape`: unliked share, tail, recency)."""
        if self._popularity is None:
            rng, n, shape = self.rng, self.posts, self.shape
            weights = (
                0.0
                if rng.random() < shape.unliked
                else rng.paretovariate(shape.tail) * (0.2 + i / n if shape.recency else 1)
                for i in range(n)
            )
            self._popularity = list(accumulate(weights))
        return self._popularity

    def _subject_rows(self, kind: str, count: int, counts: Counter[int]) -> Iterator[tuple]:
        """Likes or reposts: subjects by `popularity`; each comes a while after its post (indexed after it). They are
        made in the order of their posts, so the table is in about the order of time, as the indexer leaves it."""
        rng, n, window = self.rng, self.posts, self.shape.window_ms
        subjects = sorted(rng.choices(range(n), cum_weights=self.popularity(), k=count)) if count and n else []
        authors = rng.choices(self.accounts, k=len(subjects))
        start = self.now_ms - window
        delay = 1 / self.shape.like_delay_ms
        steady = self.shape.steady
        for i, (post, author) in enumerate(zip(subjects, authors, strict=True)):
            posted = start + post * window // n + 2000
            indexed_at = posted + int(rng.expovariate(delay))
            subject = self._post_uris[post]
            if indexed_at <= self.now_ms or not steady:
                indexed_at = min(indexed_at, max(posted, self.now_ms))
                counts[post] += 1
            else:  # the like the same post got one window earlier: its post is pruned by now
                indexed_at -= window
                subject = subject.rsplit('/', 1)[0] + '/' + tid((posted - window) * 1000, post & 1023)
            uri = f'at://{author}/app.bsky.feed.{kind}/{tid(self.now_ms * 1000 - i, 0)}'
            yield uri, author, subject, indexed_at

    def like_rows(self) -> Iterator[tuple]:
        return self._subject_rows('like', self.likes, self._like_counts)

    def repost_rows(self) -> Iterator[tuple]:
        return self._subject_rows('repost', self.reposts, self._repost_counts)

    def follow_rows(self) -> Iterator[tuple]:
        """Each account follows `Shape.follows_per_account` others (popular ones more often); the viewer follows 500.
        Follows are spread over the window."""
        rng, mean, window = self.rng, self.shape.follows_per_account, self.shape.window_ms
        i = 0
        for author in [*self.accounts, self.viewer]:
            k = self.viewer_follows if author == self.viewer else round(rng.expovariate(1 / mean))
            subjects = set(rng.choices(self.accounts, cum_weights=self.author_weights, k=k))
            while author == self.viewer and len(subjects) < k:
                subjects.add(rng.choice(self.accounts))
            for subject in sorted(subjects):
                i += 1
                uri = f'at://{author}/app.bsky.graph.follow/{tid(self.now_ms * 1000 - i, i & 1023)}'
                yield uri, author, subject, self.now_ms - rng.randrange(window)
        self.follows = i

    def write(self, path: Path) -> StoreInfo:
        """Builds the store at `path` (replacing any file there) and returns what it holds."""
        started = time.monotonic()
        for suffix in ('', '-wal', '-shm'):
            Path(f'{path}{suffix}').unlink(missing_ok=True)
        open_database(path).close()
        pragmas = {'journal_mode': 'off', 'synchronous': 'off', 'cache_size': -_CACHE_KIB, 'temp_store': 'memory'}
        db = peewee.SqliteDatabase(path, pragmas=pragmas)
        db.connect()
        numbers = AccountNumber._meta.table_name  # keeps its index: the likes look accounts up by DID
        indexes = db.execute_sql(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND tbl_name != ?", (numbers,)
        ).fetchall()
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
        for chunk in _chunks(self.like_rows()):
            insert_likes(db, chunk)
        for chunk in _chunks(self.repost_rows()):
            insert_ignore(db, Repost, SUBJECT_COLUMNS, chunk)
        for chunk in _chunks(self.follow_rows()):
            insert_ignore(db, Follow, SUBJECT_COLUMNS, chunk)
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
        with db.bind_ctx(MODELS):
            create_tables(db)  # rebuilds the secondary indexes the models declare, with this connection's cache
            fill_post_counts(db, again=True)
        db.close()
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
