"""Scores: rankings a scheduled job computes into snapshots, and pages over them that never repeat or skip.

Owns `SnapshotAlgorithm`, the base of algorithms whose order is a score over many posts (hot, catch-up).
Its job (`refresh`, every `REFRESH_SECONDS` in the ingest process) scores the feed's candidates (visible
posts of the last `window_hours` that pass its filters and have at least one like, repost or reply) and
writes the best `SNAPSHOT_POSTS` as a new `ScoreSnapshot`. For an `incremental` algorithm a run reads only the posts
that changed (`PostChange`), entered or left the window since the last run (`feedgen.ranking.score_pool`); the
snapshot is the one a scan of the whole window makes. Its pages walk a snapshot down the index
`(snapshot, score, post_id)`: a range scan, never a sort. Subclasses give the score formula. Reads posts;
writes only `ScoreSnapshot` and `ScoredPost`, in one short transaction per refresh.

Scores change every minute while a reader pages, so a cursor names its snapshot and one paging session
walks one fixed order. Snapshots are kept `SNAPSHOT_KEEP_SECONDS`; a session longer than that goes on in
the newest snapshot below the post it stopped at (or, if that post left the ranking, below its score), and
may then see a post twice or miss one whose score moved past it: the tradeoff for bounded storage.

Reader feedback (`feedgen.ranking.feedback`): in a reader's pages, the scores of authors they asked to see less
(more) of are multiplied by `LESS_WEIGHT` (`MORE_WEIGHT`). The page reads those few authors' posts in the
snapshot apart, reweighs them and merges them into the index walk of everyone else's: still one total
order on `(weighted score, post_id)`, whose position the cursor keeps with the moment the session started
(feedback sent after it counts from the next session).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property
from operator import itemgetter
from typing import Any, ClassVar, NamedTuple

import peewee

from feedgen.ranking.algorithm import Algorithm, Exclusion, FeedRequest, InvalidParams, Item, Job, Page
from feedgen.ranking.feedback import author_weights, feedback_summary, weigh
from feedgen.ranking.filters import FilterParams, filter_exclusion, filtered_streams, match_filters
from feedgen.ranking.pagination import Stream, decode_cursor, encode_session_cursor
from feedgen.ranking.score_pool import ScorePool
from feedgen.store.models import (
    CHANGES_PRUNED,
    Post,
    PostChange,
    ScoredPost,
    ScoreSnapshot,
    job_position,
    write_transaction,
)
from feedgen.store.prepared import Prepared, Row, marker
from feedgen.store.statements import chunks

REFRESH_SECONDS = 60.0
SNAPSHOT_POSTS = 1000
"""Posts kept per snapshot: the feed's depth."""
SNAPSHOT_KEEP_SECONDS = 900
"""How long a snapshot stays pageable after a newer one is made."""
ORPHAN_SECONDS = 86_400
"""Snapshots older than this are dropped whatever their feed (feeds no longer served)."""
SCORE_SCALE = 1_000_000
"""Scores are stored as integers: the formula's value times this, rounded."""
HOUR_MS = 3_600_000
_INSERT_CHUNK = 500


@dataclass(frozen=True)
class SnapshotParams(FilterParams):
    window_hours: float = 48.0
    """Only posts made in the last this many hours are ranked."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive(self, 'window_hours')


def require_positive(params: object, *names: str) -> None:
    """Raises `InvalidParams` naming the first of the fields `names` of `params` that is not greater than 0."""
    for name in names:
        value = getattr(params, name)
        if not value > 0:
            raise InvalidParams(f'{name}: must be greater than 0, got {value}')


class Counts(NamedTuple):
    """The inputs of a post's score: its counters when the snapshot was made, and when it was made."""

    likes: int
    reposts: int
    replies: int
    sort_at: int


@dataclass(frozen=True)
class _Session:
    """What one reader's paging session ranks: a snapshot, as of a moment, with the reader's author weights."""

    snapshot: Row | None
    """The snapshot's `id`, `made_at` and `candidates`."""
    as_of: int
    weights: dict[str, float]
    after: tuple[int, int] | None
    """The `(weighted score, post_id)` of the last item served; None on the first page."""
    expired: bool = False


class SnapshotAlgorithm(Algorithm):
    """An algorithm ranked by a scheduled job into score snapshots; subclasses implement `score_parts`."""

    accepts_interactions = True
    Params: ClassVar[type] = SnapshotParams
    exclusion: ClassVar[str] = ''
    """What `excluded` leaves out, in words, for the trace (`'not seen by you before'`)."""
    incremental: ClassVar[bool] = False
    """True when a post's score never rises while its counters stay the same (`score_parts` does not grow with
    `now_ms`): the job then reads only what changed since its last run (`feedgen.ranking.score_pool`)."""
    _pool: ScorePool[Counts] | None = None
    _shown_by_snapshot: dict[tuple[int, int], dict[tuple[int, float], tuple[Item, dict[str, Any]]]] | None = None
    """The items made from the newest snapshots paged, by snapshot `(id, made_at)`: see `_shown`."""

    def score_parts(self, counts: Counts, now_ms: int) -> dict[str, Any]:
        """The score of a post with `counts` at `now_ms` and the parts it is made of; `score` is the result."""
        raise NotImplementedError

    @cached_property
    def _key(self) -> str:
        return self.state_key()

    def context(self, parts: dict[str, Any], weight: float) -> str:
        """The short reason (feedContext) of an item with score `parts` and the reader's `weight` of its author."""
        raise NotImplementedError

    def excluded(self, viewer: str | None, as_of: int) -> peewee.ModelSelect | None:
        """A subquery of post URIs to leave out of `viewer`'s pages; None to keep every post."""
        return None

    def jobs(self) -> list[Job]:
        return [Job(name=f'scores {self.state_key()}', run=self.refresh, seconds=REFRESH_SECONDS)]

    def refresh(self, db: peewee.Database, now_ms: int | None = None) -> ScoreSnapshot:
        """Scores the candidates as of `now_ms` (default: now) into a new snapshot; drops expired ones."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        with db.atomic():  # one read snapshot: the changes read are those the counts include
            pool = self._advance(db, now)
        rows = [
            (score, post_id, *pool.counts(post_id)[:3])  # likes, reposts, replies
            for score, post_id in pool.best
        ]
        fields = [ScoredPost.score, ScoredPost.post_id, ScoredPost.likes, ScoredPost.reposts, ScoredPost.replies]
        with write_transaction(db):
            snapshot: ScoreSnapshot = ScoreSnapshot.create(key=self.state_key(), made_at=now, candidates=pool.count)
            for start in range(0, len(rows), _INSERT_CHUNK):
                chunk = [(snapshot.id, *row) for row in rows[start : start + _INSERT_CHUNK]]
                ScoredPost.insert_many(chunk, fields=[ScoredPost.snapshot, *fields]).execute()
            _drop_expired(self.state_key(), snapshot.id, now)
        return snapshot

    def _advance(self, db: peewee.Database, now: int) -> ScorePool[Counts]:
        """The pool as of `now`: moved forward by what changed since the last run when it can be, else rescanned."""
        params: SnapshotParams = self.params
        since = now - int(params.window_hours * HOUR_MS)
        last_change = PostChange.select(peewee.fn.MAX(PostChange.id)).scalar() or 0
        pool = self._pool
        if self.incremental and pool is not None and pool.state[0] is db and pool.now <= now:
            pruned = job_position(CHANGES_PRUNED) or 0
            if pruned <= pool.state[1] <= last_change and self._moved(pool, since, now, last_change):
                pool.state = (db, last_change)
                return pool
        self._pool = ScorePool((db, last_change), since, now, self._candidates(since, now), self._score, SNAPSHOT_POSTS)
        return self._pool

    def _moved(self, pool: ScorePool[Counts], since: int, now: int, last_change: int) -> bool:
        """Moves `pool` to the window `(since, now]` by the changes up to `last_change`; False: scan again."""
        changes = PostChange.select(PostChange.post_id).where(
            PostChange.id > pool.state[1], PostChange.id <= last_change
        )
        changed = {post_id for (post_id,) in changes.tuples()}
        found = self._candidates(max(since, pool.now), now)  # entered the window
        for chunk in chunks(sorted(changed)):
            found.update(self._candidates(since, now, Post.id.in_(list(chunk))))
        changed.update(found)
        old = Post.select(Post.id).where(Post.sort_at > pool.since, Post.sort_at <= since)
        left = [post_id for (post_id,) in old.tuples()]
        return pool.advance(since, now, left, changed, found) is not None

    def _candidates(self, since: int, now: int, *where: peewee.Expression) -> dict[int, Counts]:
        """The counts of the candidates in the window `(since, now]` matching `where`, by post id."""
        engagement = Post.like_count + Post.repost_count + Post.reply_count
        columns = (Post.id, Post.sort_at, Post.like_count, Post.repost_count, Post.reply_count)
        candidates: dict[int, Counts] = {}
        for stream in filtered_streams(self.params, *columns):
            query = stream.query.where(stream.key > since, stream.key <= now, engagement > 0, *where)
            for post_id, sort_at, likes, reposts, replies in Post._meta.database.execute(query):  # plain rows
                candidates[post_id] = Counts(likes, reposts, replies, sort_at)
        return candidates

    def page(self, request: FeedRequest) -> Page:
        session = self._session(request)
        trace = self._trace(session)
        if session.snapshot is None:
            return Page(items=[], trace=trace | {'note': 'no scores yet: the scoring job has not run'})
        excluded = self.excluded(request.viewer, session.as_of)
        if excluded is not None:
            trace['filters'].append(self.exclusion)
        ranked = _ranked(session.snapshot.id, excluded, session.weights, session.after, request.limit + 1)
        rows = ranked[: request.limit]
        shown = self._shown(session.snapshot)
        items, scores = [], {}
        for entry in rows:
            item, scored = shown.get((entry.post_id, entry.weight)) or self._show(entry, session.snapshot, shown)
            items.append(item)
            scores[item.post] = scored
        cursor = None
        if len(ranked) > request.limit:
            last = (rows[-1].rank, rows[-1].post_id)
            cursor = encode_session_cursor((session.snapshot.id, session.as_of), last)
        trace.update(feedback=feedback_summary(session.weights), scores=scores)
        return Page(items=items, cursor=cursor, trace=trace)

    def explain(self, post: str, request: FeedRequest) -> dict[str, Any] | None:
        session = self._session(request)
        if session.snapshot is None:
            return None
        excluded = self.excluded(request.viewer, session.as_of)
        query = _snapshot_rows(session.snapshot.id, excluded).where(Post.uri == post)
        row = query.namedtuples().first()
        if row is None:
            return None
        weight = session.weights.get(row.author, 1.0)
        parts = self._parts(row, session.snapshot)
        return {
            'filters': match_filters(self.params, Post.get_by_id(row.post_id)) or {},
            'window_hours': self.params.window_hours,
            'formula': self.ranking,
            'score': parts,
            'viewer_weight': weight,
            'rank_score': weigh(row.score, weight),
            'snapshot': {'id': session.snapshot.id, 'made_at': session.snapshot.made_at},
        }

    def why_not(self, post: Post, request: FeedRequest) -> Exclusion | None:
        params: SnapshotParams = self.params
        session = self._session(request)
        snapshot = session.snapshot
        ranked_at = snapshot.made_at if snapshot is not None else request.time_ms()
        age_hours = round(max(0, ranked_at - post.sort_at) / HOUR_MS, 3)
        if excluded := filter_exclusion(params, post):
            return excluded
        if age_hours >= params.window_hours:
            window = f'{params.window_hours:g}-hour window'
            return Exclusion(
                'window', f'it was made {age_hours:.1f} hours before the ranking, outside the {window}', age_hours
            )
        if post.like_count + post.repost_count + post.reply_count == 0:
            return Exclusion(
                'no_engagement', 'nobody has liked, reposted or replied to it: only such posts are ranked', 0
            )
        if snapshot is None:
            return Exclusion('no_snapshot', 'the scoring job has not ranked this feed yet')
        if ScoredPost.get_or_none(ScoredPost.snapshot == snapshot.id, ScoredPost.post_id == post.id) is not None:
            if request.viewer is None:  # ranked, and no reader to leave it out for: `explain` and this disagree
                return None
            return Exclusion(
                'viewer', f'it is ranked, but left out for you: {self.exclusion or "excluded"}', request.viewer
            )
        score = self._score(Counts(post.like_count, post.repost_count, post.reply_count, post.sort_at), ranked_at)
        cutoff = ScoredPost.select(peewee.fn.MIN(ScoredPost.score)).where(ScoredPost.snapshot == snapshot.id).scalar()
        if snapshot.candidates < SNAPSHOT_POSTS or cutoff is None or score > cutoff:
            made = 'indexed' if post.indexed_at > snapshot.made_at else 'liked, reposted or replied to'
            message = f'it was {made} after the current ranking was made (rankings are remade every minute)'
            return Exclusion('after_snapshot', message, snapshot.made_at)
        value = {'score': score / SCORE_SCALE, 'cutoff': cutoff / SCORE_SCALE}
        best = f'the {SNAPSHOT_POSTS}th best, {value["cutoff"]:g}'
        message = f'its score {value["score"]:g} is below {best}: only the best {SNAPSHOT_POSTS} are kept'
        return Exclusion('below_cutoff', message, value)

    def _score(self, counts: Counts, now: int) -> int:
        score: float = self.score_parts(counts, now)['score']
        return round(score * SCORE_SCALE)

    def _parts(self, row: Row, snapshot: Row) -> dict[str, Any]:
        """The score parts of a snapshot `row` (its `likes`, `reposts`, `replies` and `sort_at`)."""
        return self.score_parts(Counts(row.likes, row.reposts, row.replies, row.sort_at), snapshot.made_at)

    def _shown(self, snapshot: Row) -> dict[tuple[int, float], tuple[Item, dict[str, Any]]]:
        """The items of `snapshot`'s posts made so far and their score parts (as the trace shows them), by post id
        and the reader's weight of its author. A snapshot's rows never change, so an item is made once per process,
        snapshot and weight (1 for most readers), not once per page; the two newest snapshots paged are kept
        (readers still paging the one before the newest)."""
        key = (snapshot.id, snapshot.made_at)
        seen = self._shown_by_snapshot or {}
        shown = seen.get(key)
        if shown is None:
            shown = {}
            self._shown_by_snapshot = dict(sorted([*seen.items(), (key, shown)])[-2:])
        return shown

    def _show(
        self, entry: _Ranked, snapshot: Row, shown: dict[tuple[int, float], tuple[Item, dict[str, Any]]]
    ) -> tuple[Item, dict[str, Any]]:
        """`entry`'s item and its score parts in the trace, kept in `shown` for the pages after."""
        parts = self._parts(entry.row, snapshot)
        item = Item(post=entry.row.uri, context=self.context(parts, entry.weight))
        made = shown[(entry.post_id, entry.weight)] = (
            item,
            parts | {'viewer_weight': entry.weight, 'rank_score': entry.rank},
        )
        return made

    def _session(self, request: FeedRequest) -> _Session:
        newest = next(_NEWEST_SNAPSHOT.run(self._key), None)
        if request.cursor is None:
            as_of = request.time_ms()
            return _Session(newest, as_of, author_weights(request.viewer, as_of), None)
        snapshot_id, as_of, rank, post_id = decode_cursor(request.cursor, 4)
        weights = author_weights(request.viewer, as_of)
        snapshot = next(_SNAPSHOT_OF.run(snapshot_id, self._key), None)
        if snapshot is not None or newest is None:
            return _Session(snapshot, as_of, weights, (rank, post_id))
        # The session's snapshot expired: go on below the same post in the newest one, if it is ranked there.
        moved = _snapshot_rows(newest.id, None).where(ScoredPost.post_id == post_id).dicts().first()
        if moved is not None:
            rank = weigh(moved['score'], weights.get(moved['author'], 1.0))
        return _Session(newest, as_of, weights, (rank, post_id), expired=True)

    def _trace(self, session: _Session) -> dict[str, Any]:
        params: SnapshotParams = self.params
        trace: dict[str, Any] = {
            'order': 'score, highest first (ties: the post indexed last first)',
            'filters': [
                f'made in the last {params.window_hours:g} hours',
                *params.describe(),
                'liked, reposted or replied',
            ],
            'as_of': session.as_of,
            'snapshot': None,
        }
        if session.snapshot is not None:
            snapshot = session.snapshot
            trace['snapshot'] = {'id': snapshot.id, 'made_at': snapshot.made_at, 'expired_cursor': session.expired}
            trace['candidates'] = snapshot.candidates
            trace['removed'] = {f'not in the best {SNAPSHOT_POSTS}': max(0, snapshot.candidates - SNAPSHOT_POSTS)}
        return trace


def _snapshot_rows(snapshot_id: int, excluded: peewee.ModelSelect | None) -> peewee.ModelSelect:
    """The visible posts of a snapshot with their score inputs, minus `excluded` URIs."""
    query = (
        ScoredPost.select(
            ScoredPost.score,
            ScoredPost.post_id,
            ScoredPost.likes,
            ScoredPost.reposts,
            ScoredPost.replies,
            Post.uri,
            Post.author,
            Post.sort_at,
        )
        .join(Post, on=Post.id == ScoredPost.post_id)
        .where(ScoredPost.snapshot == snapshot_id, Post.hidden == False)  # noqa: E712 (peewee expression)
    )
    return query.where(Post.uri.not_in(excluded)) if excluded is not None else query


class _Ranked(NamedTuple):
    """A snapshot row in a reader's order: its weighted score, post id, the reader's weight of its author, the row."""

    rank: int
    post_id: int
    weight: float
    row: Row
    """`score`, `post_id`, `likes`, `reposts`, `replies`, `uri`, `author`, `sort_at` (`_snapshot_rows`)."""


def _ranked(
    snapshot_id: int,
    excluded: peewee.ModelSelect | None,
    weights: dict[str, float],
    after: tuple[int, int] | None,
    count: int,
) -> list[_Ranked]:
    """The first `count` rows of a snapshot below `after`, by (weighted score, post_id) descending.

    The authors in `weights` are read apart (all their posts in the snapshot: a few rows) and reweighed;
    everyone else's posts come from one walk down the index, at most `count` rows.
    """
    if not weights and excluded is None:  # every anonymous reader's page, and most signed-in readers'
        return [_Ranked(row.score, row.post_id, 1.0, row) for row in _WALK.rows(after, count, (snapshot_id,))]
    base = _snapshot_rows(snapshot_id, excluded)
    others = base.where(Post.author.not_in(list(weights))) if weights else base
    if after is not None:
        others = others.where(peewee.Tuple(ScoredPost.score, ScoredPost.post_id) < peewee.Tuple(*after))
    ordered = others.order_by(ScoredPost.score.desc(), ScoredPost.post_id.desc()).limit(count)
    ranked = [_Ranked(row.score, row.post_id, 1.0, row) for row in ordered.namedtuples()]
    if weights:
        for row in base.where(Post.author.in_(list(weights))).namedtuples():
            weight = weights[row.author]
            rank = weigh(row.score, weight)
            if after is None or (rank, row.post_id) < after:
                ranked.append(_Ranked(rank, row.post_id, weight, row))
    ranked.sort(key=itemgetter(0, 1), reverse=True)
    return ranked[:count]


_SNAPSHOT = -(2**62) - 101
_KEY = marker('state key')
_WALK = Stream(_snapshot_rows(_SNAPSHOT, None), ScoredPost.score, ScoredPost.post_id, markers=(_SNAPSHOT,))
"""A snapshot's visible posts down its `(snapshot, score, post_id)` index, prepared once."""
_SNAPSHOT_COLUMNS = (ScoreSnapshot.id, ScoreSnapshot.made_at, ScoreSnapshot.candidates)
_NEWEST_SNAPSHOT = Prepared(
    ScoreSnapshot.select(*_SNAPSHOT_COLUMNS)
    .where(ScoreSnapshot.key == _KEY)
    .order_by(ScoreSnapshot.id.desc())
    .limit(1),
    (_KEY,),
)
_SNAPSHOT_OF = Prepared(
    ScoreSnapshot.select(*_SNAPSHOT_COLUMNS).where(ScoreSnapshot.id == _SNAPSHOT, ScoreSnapshot.key == _KEY),
    (_SNAPSHOT, _KEY),
)


def _drop_expired(key: str, current: int, now: int) -> None:
    expired = ScoreSnapshot.select(ScoreSnapshot.id).where(
        ScoreSnapshot.id != current,
        ((ScoreSnapshot.key == key) & (ScoreSnapshot.made_at < now - SNAPSHOT_KEEP_SECONDS * 1000))
        | (ScoreSnapshot.made_at < now - ORPHAN_SECONDS * 1000),
    )
    ids = [snapshot_id for (snapshot_id,) in expired.tuples()]
    if ids:
        ScoredPost.delete().where(ScoredPost.snapshot.in_(ids)).execute()
        ScoreSnapshot.delete().where(ScoreSnapshot.id.in_(ids)).execute()
