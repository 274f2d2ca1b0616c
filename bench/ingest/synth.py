"""Deterministic synthetic `subscribeRepos` captures with the live network's mix, plus their ground truth.

Owns generating frames as a PDS sends them (real DAG-CBOR, CARv1 blocks with correct CIDs, signed-looking
commits, fake MST nodes so decoding costs what it does live) from a seed, writing them as an ATFH capture
with `feedgen.ingest.capture.write_capture`, and writing `X.truth.json` next to capture `X.atfh` so tests can
check an indexer. It never reads captures and never touches the network.

The mix, per frame, follows the live Bluesky firehose: likes 57%, follows 12%, posts 8.5%, reposts 6.5%,
blocks 5%, list items 3%, profiles 2%, deletes of earlier posts/likes/reposts/follows 4%, multi-op commits
1.5% (a PDS replacing a duplicate like: delete old + create new; an applyWrites batch of posts; a post and
its own deletion), and about 0.5% `#identity` (handle changes), `#account` (deactivated then active
again, deleted) and `#sync` frames. Accounts exist before the capture starts (it is a mid-stream
recording): some likes and reposts point at posts outside it, and list items at lists made before it.

Truth rules (what an indexer that keeps the repos' current state should end with):
- `posts`: posts created in the capture and not deleted, whose author is neither deleted nor
  deactivated at the end (accounts deactivated and later reactivated keep their posts).
- `likes` / `reposts` of a post: its like/repost records that are not deleted and whose author is not
  deleted. Likes of posts outside the capture are in no count.
- `follows`: `[follower, subject]` of follow records not deleted whose follower is not deleted.

Truth JSON (`TRUTH_FORMAT`), written in a fixed order so equal seeds give equal bytes:
    format, params {frames, accounts, seed}, seq {first, last},
    frame_counts {'#commit': n, ...}, op_counts {'create app.bsky.feed.like': n, ...},
    accounts {deleted: [did], deactivated: [did], reactivated: [did]}, handles {did: handle} (changed ones),
    posts {uri: {author, cid, text, tags, langs, created_at, reply_parent, reply_root, embed, likes, reposts}},
    follows [[follower did, subject did], ...]

Usage: `python bench/ingest/synth.py --frames 200000 --accounts 20000 --seed 1 --out bench/out/synth.atfh`
(about 13 s and 340 MB for those numbers; `bench/out/` is git-ignored).
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import heapq
import itertools
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import libipld

from feedgen.ingest.capture import write_capture

TRUTH_FORMAT = 'feedgen-synth-truth/1'

# Frame kinds of #commit frames and their weights (percent of all frames).
COMMIT_MIX: dict[str, float] = {
    'like': 57.0,
    'follow': 12.0,
    'post': 8.5,
    'repost': 6.5,
    'block': 5.0,
    'listitem': 3.0,
    'profile': 2.0,
    'delete': 4.0,
    'multi': 1.5,
}
_DELETE_MIX = {'like': 45, 'post': 25, 'follow': 18, 'repost': 12}
_MULTI_MIX = {'replace_like': 50, 'post_batch': 30, 'post_and_delete': 20}

POST = 'app.bsky.feed.post'
LIKE = 'app.bsky.feed.like'
REPOST = 'app.bsky.feed.repost'
FOLLOW = 'app.bsky.graph.follow'
BLOCK = 'app.bsky.graph.block'
LISTITEM = 'app.bsky.graph.listitem'
PROFILE = 'app.bsky.actor.profile'
LIST = 'app.bsky.graph.list'

_START_MICROS = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
_FRAME_GAP_MICROS = (200, 800)  # uniform gap between frames: 2,000 frames per second on average
_EXTERNAL_POSTS = 1_000  # posts made before the capture, liked and reposted in it
_RECENT_POSTS = 500  # likes, reposts and replies favour this many most recent posts
_HOT_POSTS = 20  # and a few hot ones
_TID_CHARS = '234567abcdefghijklmnopqrstuvwxyz'
_TID_PAIRS = [a + b for a in _TID_CHARS for b in _TID_CHARS]  # 10 bits -> 2 characters
_DAG_CBOR_SHA256 = b'\x01\x71\x12\x20'  # CIDv1, dag-cbor codec, sha2-256 multihash of 32 bytes
_RAW_SHA256 = b'\x01\x55\x12\x20'  # CIDv1, raw codec: blob references
_HEADERS = {t: libipld.encode_dag_cbor({'op': 1, 't': t}) for t in ('#commit', '#identity', '#account', '#sync')}

_EN_TEXT = (
    'the a of and to in is it you that was for on are with as be at this have from or one had by word but '
    'not what all were we when your can said there use an each which she do how their if will up other '
    'about out many then them these so some her would make like him into time has look two more write go '
    'see number no way could people my than first water been call who oil its now find long down day did '
    'get come made may part coffee garden river morning music photo sunset city train rain book movie '
    'game team weekend friend dinner project code release update thread today tonight finally really '
    'love great new little big old best happy sad beautiful weird honestly'
)
_JA_TEXT = 'こんにちは 今日 天気 写真 音楽 本 私 とても 楽しい コーヒー 駅 雨 ✨'
_PT_TEXT = 'hoje muito bom dia obrigado cidade praia música foto amigos café chuva noite'
_TAGS_TEXT = (
    'atproto bluesky art photography music science books cats dogs gaming python rust news politics '
    'football nba anime food travel nature sky'
)
_WORDS = _EN_TEXT.split()
_WORDS_JA = _JA_TEXT.split()
_WORDS_PT = _PT_TEXT.split()
_TAGS = _TAGS_TEXT.split()
_LANGS: tuple[tuple[list[str], float], ...] = (
    (['en'], 60),
    (['ja'], 12),
    (['pt'], 10),
    (['de'], 4),
    (['es'], 4),
    (['en', 'pt'], 3),
    ([], 7),
)
_LINKS = ('https://example.com/article', 'https://news.example.org/story/42', 'https://blog.example.net/p/7')


def tid(micros: int, clock_id: int) -> str:
    """Returns the 13-character TID (record key / rev) for a timestamp in microseconds and a clock id."""
    n = (micros << 10) | clock_id
    pairs = _TID_PAIRS
    return (
        _TID_CHARS[n >> 60]
        + pairs[(n >> 50) & 1023]
        + pairs[(n >> 40) & 1023]
        + pairs[(n >> 30) & 1023]
        + pairs[(n >> 20) & 1023]
        + pairs[(n >> 10) & 1023]
        + pairs[n & 1023]
    )


def cid_for(block: bytes) -> bytes:
    """Returns the binary CIDv1 (dag-cbor, sha2-256) of an encoded block."""
    return _DAG_CBOR_SHA256 + hashlib.sha256(block).digest()


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def car(root: bytes, blocks: list[tuple[bytes, bytes]]) -> bytes:
    """Returns a CARv1: a header naming `root`, then each `(cid, block)` as a length-prefixed section."""
    header = libipld.encode_dag_cbor({'version': 1, 'roots': [root]})
    parts = [_varint(len(header)), header]
    for cid, block in blocks:
        parts += (_varint(len(cid) + len(block)), cid, block)
    return b''.join(parts)


def truth_path(capture: str | Path) -> Path:
    """Returns where the truth JSON of a capture goes: `X.atfh` -> `X.truth.json`."""
    capture = Path(capture)
    return capture.with_name(capture.stem + '.truth.json')


class _Keyed(Protocol):
    uri: str


K = TypeVar('K', bound=_Keyed)


class _Pool(Generic[K]):
    """Records that can still be picked: O(1) add, remove and random pick (order is not kept)."""

    def __init__(self) -> None:
        self.items: list[K] = []
        self._index: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, uri: str) -> bool:
        return uri in self._index

    def add(self, item: K) -> None:
        self._index[item.uri] = len(self.items)
        self.items.append(item)

    def remove(self, item: K) -> None:
        index = self._index.pop(item.uri)
        last = self.items.pop()
        if last is not item:
            self.items[index] = last
            self._index[last.uri] = index

    def pick(self, rng: random.Random, recent: int = 0) -> K:
        """Picks uniformly, or among the last `recent` added (roughly: removals reorder) when given."""
        low = max(0, len(self.items) - recent) if recent else 0
        return self.items[rng.randrange(low, len(self.items))]


@dataclass(slots=True)
class _Account:
    did: str
    handle: str
    clock_id: int
    rev: str
    data: bytes  # MST root of the latest commit
    commit: tuple[bytes, bytes] | None = None  # (cid, block) of the latest commit made in the capture
    status: str = 'active'  # 'active', 'deactivated' or 'deleted'
    profile: bytes | None = None  # CID of the current profile record
    reactivated: bool = False
    handle_changed: bool = False


@dataclass(slots=True)
class _Post:
    uri: str
    cid: bytes
    cid_str: str
    author: int  # index of the author, or -1 for posts made before the capture by someone else
    path: str = ''
    root: dict[str, str] | None = None  # strongRef of the thread's root when the post is a reply
    info: dict[str, Any] = field(default_factory=dict)  # what the truth keeps


@dataclass(slots=True)
class _Edge:
    """A like, repost or follow record: `subject` is a post URI (with `subject_cid`) or, for follows, a DID."""

    uri: str
    cid: bytes
    author: int
    path: str
    subject: str
    subject_cid: str = ''


class Synthesizer:
    """Generates one synthetic capture: iterate `messages()` once, then read `truth()` and the counters.

    Attributes:
        frame_count: How many frames `messages()` yields (seq 1 to frame_count).
        frame_counts: Frames per type (`#commit`, `#identity`, ...), filled while generating.
        op_counts: Repo ops per `'<action> <collection>'`, filled while generating.
    """

    def __init__(self, frames: int, accounts: int, seed: int) -> None:
        """Prepares the accounts and the schedule of account events; generates nothing yet.

        Args:
            frames: Number of frames to generate.
            accounts: Number of accounts (repos); at least 2.
            seed: Seed of the only random source: the same arguments give the same bytes.

        Raises:
            ValueError: If `frames` < 1 or `accounts` < 2.
        """
        if frames < 1 or accounts < 2:
            raise ValueError(f'need at least 1 frame and 2 accounts, got {frames} and {accounts}')
        self.frame_count = frames
        self.frame_counts: Counter[str] = Counter()
        self.op_counts: Counter[str] = Counter()
        self._seed = seed
        self._rng = rng = random.Random(seed)
        self._micros = _START_MICROS
        self._seq = 0
        self._second: tuple[int, str] = (-1, '')
        self._accounts = [self._new_account(index) for index in range(accounts)]
        # Activity and popularity are skewed, as live: a few accounts act, and are followed, a lot.
        self._author_weights = list(itertools.accumulate(1 / (rank + 1) ** 0.7 for rank in range(accounts)))
        self._subject_weights = list(itertools.accumulate(1 / (rank + 1) for rank in range(accounts)))
        self._subject_order = rng.sample(range(accounts), accounts)
        self._external_posts = [self._external_post() for _ in range(_EXTERNAL_POSTS)]
        collections = (POST, LIKE, REPOST, FOLLOW)
        self._mst_keys = [
            f'{rng.choice(collections)}/{tid(_START_MICROS - rng.randrange(10**12), 0)}'.encode() for _ in range(4096)
        ]  # keys of records made before the capture, to fill the fake MST nodes
        self._hot: list[_Post] = []  # a few posts that draw a large share of likes and reposts, as viral ones do
        self._posts: _Pool[_Post] = _Pool()
        self._likes: _Pool[_Edge] = _Pool()
        self._reposts: _Pool[_Edge] = _Pool()
        self._follows: _Pool[_Edge] = _Pool()
        self._edge_keys: dict[tuple[str, int, str], _Edge] = {}  # (collection, author, subject) -> record
        self._kinds = list(COMMIT_MIX)
        self._kind_weights = list(itertools.accumulate(COMMIT_MIX.values()))
        self._schedule: list[tuple[int, int, str, int]] = []  # heap of (frame index, order, event, account)
        self._order = itertools.count()
        self._plan_account_events()

    def messages(self) -> Iterator[bytes]:
        """Yields every frame, seq 1 to `frame_count`, as raw websocket messages."""
        makers: dict[str, Callable[[], bytes]] = {
            'like': lambda: self._like_or_repost(LIKE, self._likes),
            'follow': self._follow,
            'post': self._post,
            'repost': lambda: self._like_or_repost(REPOST, self._reposts),
            'block': lambda: self._about_account(BLOCK),
            'listitem': lambda: self._about_account(LISTITEM),
            'profile': self._profile,
            'delete': self._delete,
            'multi': self._multi,
        }
        for index in range(self.frame_count):
            self._seq = index + 1
            self._micros += self._rng.randint(*_FRAME_GAP_MICROS)
            if self._schedule and self._schedule[0][0] <= index:
                _, _, event, account = heapq.heappop(self._schedule)
                yield self._account_event(index, event, account)
            else:
                kind = self._kinds[bisect.bisect(self._kind_weights, self._rng.random() * self._kind_weights[-1])]
                yield makers[kind]()

    def truth(self) -> dict[str, Any]:
        """Returns the ground truth of the generated stream (the rules are in the module docstring)."""
        accounts = self._accounts
        counts: dict[str, Counter[str]] = {'likes': Counter(), 'reposts': Counter()}
        for name, pool in (('likes', self._likes), ('reposts', self._reposts)):
            for edge in pool.items:
                if accounts[edge.author].status != 'deleted':
                    counts[name][edge.subject] += 1
        posts = {
            post.uri: {**post.info, 'likes': counts['likes'][post.uri], 'reposts': counts['reposts'][post.uri]}
            for post in self._posts.items
            if accounts[post.author].status == 'active'
        }
        follows = sorted(
            [accounts[edge.author].did, edge.subject]
            for edge in self._follows.items
            if accounts[edge.author].status != 'deleted'
        )
        return {
            'format': TRUTH_FORMAT,
            'params': {'frames': self.frame_count, 'accounts': len(accounts), 'seed': self._seed},
            'seq': {'first': 1, 'last': self.frame_count},
            'frame_counts': dict(sorted(self.frame_counts.items())),
            'op_counts': dict(sorted(self.op_counts.items())),
            'accounts': {
                'deleted': sorted(a.did for a in accounts if a.status == 'deleted'),
                'deactivated': sorted(a.did for a in accounts if a.status == 'deactivated'),
                'reactivated': sorted(a.did for a in accounts if a.reactivated and a.status == 'active'),
            },
            'handles': dict(sorted((a.did, a.handle) for a in accounts if a.handle_changed)),
            'posts': dict(sorted(posts.items())),
            'follows': follows,
        }

    # Accounts and their events.

    def _new_account(self, index: int) -> _Account:
        rng = self._rng
        return _Account(
            did='did:plc:' + ''.join(rng.choices(_TID_CHARS, k=24)),
            handle=f'user{index}.bsky.social',
            clock_id=rng.randrange(1024),
            rev=tid(_START_MICROS - rng.randrange(1, 10**12), rng.randrange(1024)),
            data=_random_cid(rng),
        )

    def _external_post(self) -> _Post:
        rng = self._rng
        did = 'did:plc:' + ''.join(rng.choices(_TID_CHARS, k=24))
        uri = f'at://{did}/{POST}/{tid(_START_MICROS - rng.randrange(1, 10**11), rng.randrange(1024))}'
        cid = _random_cid(rng)
        return _Post(uri=uri, cid=cid, cid_str=libipld.encode_cid(cid), author=-1)

    def _plan_account_events(self) -> None:
        """Schedules handle changes, #sync frames, deactivations and account deletions at random frames."""
        frames = self.frame_count
        low, high = frames // 20, max(frames // 20 + 1, frames * 17 // 20)
        wanted = {
            'identity': max(2, frames // 500),
            'sync': max(1, frames // 1000),
            'deactivate': max(1, frames // 2000),
            'delete_account': max(1, frames // 4000),
        }
        slots = iter(self._rng.sample(range(low, high), min(sum(wanted.values()), high - low)))
        for event, count in wanted.items():
            for index in itertools.islice(slots, count):
                self._at(index, event)

    def _at(self, index: int, event: str, account: int = -1) -> None:
        heapq.heappush(self._schedule, (index, next(self._order), event, account))

    def _account_event(self, index: int, event: str, target: int) -> bytes:
        """One scheduled non-commit frame; a deactivation schedules its account's reactivation."""
        if event in ('deactivate', 'delete_account'):
            target = self._author_of_some_post()
            account = self._accounts[target]
            account.status = 'deactivated' if event == 'deactivate' else 'deleted'
            if event == 'deactivate':
                back = index + self._rng.randint(max(1, self.frame_count // 50), max(1, self.frame_count // 10))
                for step in ('reactivate', 'reactivated_identity', 'reactivated_sync'):
                    self._at(back, step, target)
            return self._frame('#account', {'did': account.did, 'active': False, 'status': account.status})
        if target < 0:
            target = self._author()
        account = self._accounts[target]
        if event == 'reactivate':
            account.status = 'active'
            account.reactivated = True
            return self._frame('#account', {'did': account.did, 'active': True})
        if event == 'identity':
            account.handle = f'renamed{self._seq}.bsky.social'
            account.handle_changed = True
        if event in ('identity', 'reactivated_identity'):
            return self._frame('#identity', {'did': account.did, 'handle': account.handle})
        if account.commit is None:
            account.commit = self._sign(account, account.rev, account.data)
        blocks = car(account.commit[0], [account.commit])
        return self._frame('#sync', {'did': account.did, 'rev': account.rev, 'blocks': blocks})

    def _author_of_some_post(self) -> int:
        """An active account, preferably the author of a live post so that the event matters to a feed."""
        for _ in range(20):
            if not self._posts:
                break
            author = self._posts.pick(self._rng).author
            if self._accounts[author].status == 'active':
                return author
        return self._author()

    def _author(self) -> int:
        """Index of an active account, favouring the most active ones."""
        weights, rng = self._author_weights, self._rng
        while True:
            index = bisect.bisect(weights, rng.random() * weights[-1])
            if self._accounts[index].status == 'active':
                return index

    def _subject(self, besides: int) -> str:
        """DID of an account that is not deleted and not `besides`, favouring popular ones."""
        weights, rng = self._subject_weights, self._rng
        while True:
            index = self._subject_order[bisect.bisect(weights, rng.random() * weights[-1])]
            if index != besides and self._accounts[index].status != 'deleted':
                return self._accounts[index].did

    # Frames.

    def _now(self) -> str:
        """The current frame's time, ISO 8601 in UTC with milliseconds, as the PDS writes it."""
        seconds, micros = divmod(self._micros, 1_000_000)
        if self._second[0] != seconds:
            self._second = (seconds, time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds)))
        return f'{self._second[1]}.{micros // 1000:03d}Z'

    def _frame(self, frame_type: str, body: dict[str, Any]) -> bytes:
        self.frame_counts[frame_type] += 1
        body['seq'] = self._seq
        body['time'] = self._now()
        return _HEADERS[frame_type] + libipld.encode_dag_cbor(body)

    def _sign(self, account: _Account, rev: str, data: bytes) -> tuple[bytes, bytes]:
        """A commit block `(cid, block)` with a random 64-byte signature."""
        # libipld encodes any bytes that parse as a CID (first byte 0x01) as a CID link: keep clear of it.
        sig = bytes([self._rng.randrange(2, 256)]) + self._rng.randbytes(63)
        block = libipld.encode_dag_cbor(
            {'did': account.did, 'rev': rev, 'sig': sig, 'data': data, 'prev': None, 'version': 3}
        )
        return cid_for(block), block

    def _commit(self, author: int, ops: list[dict[str, Any]], records: list[tuple[bytes, bytes]]) -> bytes:
        """A #commit frame of `author` with repo `ops`; `records` are the created/updated record blocks."""
        account = self._accounts[author]
        rev = tid(self._micros, account.clock_id)
        nodes = self._mst_nodes([(op['path'], op['cid']) for op in ops if op['cid'] is not None])
        data = nodes[-1][0]
        commit = self._sign(account, rev, data)
        body = {
            'rebase': False,
            'tooBig': False,
            'repo': account.did,
            'commit': commit[0],
            'rev': rev,
            'since': account.rev,
            'blocks': car(commit[0], [*nodes, *records, commit]),
            'ops': ops,
            'blobs': [],
            'prevData': account.data,
        }
        for op in ops:
            self.op_counts[f'{op["action"]} {op["path"].split("/", 1)[0]}'] += 1
        account.rev, account.data, account.commit = rev, data, commit
        return self._frame('#commit', body)

    def _mst_nodes(self, entries: list[tuple[str, bytes]]) -> list[tuple[bytes, bytes]]:
        """1-3 MST-shaped node blocks, leaf first: the leaf holds `entries`, each node links the one below."""
        rng = self._rng
        nodes: list[tuple[bytes, bytes]] = []
        below: bytes | None = None
        for level in range(rng.randint(1, 3)):
            keys = [(rng.choice(self._mst_keys), _random_cid(rng)) for _ in range(3)]
            if level == 0:
                keys += [(path.encode(), cid) for path, cid in entries]
            keys.sort()
            node_entries = []
            previous = b''
            for key, value in keys:
                shared = _shared_prefix(previous, key)
                subtree = _random_cid(rng) if rng.random() < 0.4 else None
                node_entries.append({'k': key[shared:], 'p': shared, 't': subtree, 'v': value})
                previous = key
            block = libipld.encode_dag_cbor({'e': node_entries, 'l': below})
            below = cid_for(block)
            nodes.append((below, block))
        return nodes

    # Records.

    def _create(
        self, author: int, collection: str, record: dict[str, Any], offset: int = 0
    ) -> tuple[dict[str, Any], tuple[bytes, bytes]]:
        """Encodes a new record; returns its create op and its `(cid, block)`."""
        block = libipld.encode_dag_cbor(record)
        cid = cid_for(block)
        path = f'{collection}/{tid(self._micros - offset, self._accounts[author].clock_id)}'
        return {'action': 'create', 'path': path, 'cid': cid}, (cid, block)

    def _uri(self, author: int, path: str) -> str:
        return f'at://{self._accounts[author].did}/{path}'

    def _pick_post(self) -> _Post:
        """A post to like, repost, quote or reply to: mostly recent ones, some from before the capture."""
        rng = self._rng
        for _ in range(10):
            roll = rng.random()
            if not self._posts or roll < 0.15:
                break
            if roll < 0.35 and self._hot:
                post = rng.choice(self._hot)
            else:
                post = self._posts.pick(rng, recent=_RECENT_POSTS if rng.random() < 0.7 else 0)
            if post.uri in self._posts and self._accounts[post.author].status == 'active':
                return post
        return rng.choice(self._external_posts)

    def _publish(self, post: _Post) -> None:
        """Makes a new post pickable; one in a hundred becomes one of the hot posts."""
        self._posts.add(post)
        if self._rng.random() < 0.01:
            self._hot.append(post)
            if len(self._hot) > _HOT_POSTS:
                self._hot.pop(0)

    def _post_record(self, author: int) -> tuple[dict[str, Any], dict[str, Any], dict[str, str] | None]:
        """A realistic post record, what the truth keeps of it, and the thread root's strongRef for replies."""
        rng = self._rng
        langs = rng.choices([langs for langs, _ in _LANGS], [weight for _, weight in _LANGS])[0]
        words = _WORDS_JA if langs == ['ja'] else _WORDS_PT if langs == ['pt'] else _WORDS
        text = ' '.join(rng.choices(words, k=rng.randint(3, 25)))
        facets: list[dict[str, Any]] = []
        tags: list[str] = []
        for tag in dict.fromkeys(rng.choices(_TAGS, k=rng.choices((0, 1, 2), (65, 25, 10))[0])):
            tags.append(tag)
            text = _add_facet(text, f'#{tag}', {'$type': 'app.bsky.richtext.facet#tag', 'tag': tag}, facets)
        if rng.random() < 0.05:
            did = self._subject(author)
            handle = f'{did.removeprefix("did:plc:")[:8]}.bsky.social'
            text = _add_facet(text, f'@{handle}', {'$type': 'app.bsky.richtext.facet#mention', 'did': did}, facets)
        if rng.random() < 0.05:
            link = rng.choice(_LINKS)
            feature = {'$type': 'app.bsky.richtext.facet#link', 'uri': link}
            text = _add_facet(text, link.removeprefix('https://'), feature, facets)
        record: dict[str, Any] = {'$type': POST, 'text': text, 'createdAt': self._now()}
        if langs:
            record['langs'] = langs
        if facets:
            record['facets'] = facets
        info: dict[str, Any] = {
            'author': self._accounts[author].did,
            'text': text,
            'tags': tags,
            'langs': langs,
            'created_at': record['createdAt'],
            'reply_parent': None,
            'reply_root': None,
            'embed': None,
        }
        root = None
        if rng.random() < 0.25:
            parent = self._pick_post()
            root = parent.root or _ref(parent)
            record['reply'] = {'$type': 'app.bsky.feed.post#replyRef', 'root': root, 'parent': _ref(parent)}
            info['reply_parent'], info['reply_root'] = parent.uri, root['uri']
        embed = rng.choices((None, 'images', 'external', 'record', 'recordWithMedia'), (75, 12, 6, 5, 2))[0]
        if embed is not None:
            record['embed'] = self._embed(embed)
            info['embed'] = record['embed']['$type']
        return record, info, root

    def _embed(self, kind: str) -> dict[str, Any]:
        rng = self._rng
        if kind == 'external':
            external = {
                '$type': 'app.bsky.embed.external#external',
                'uri': rng.choice(_LINKS),
                'title': ' '.join(rng.choices(_WORDS, k=5)),
                'description': ' '.join(rng.choices(_WORDS, k=12)),
            }
            return {'$type': 'app.bsky.embed.external', 'external': external}
        quote = {'$type': 'app.bsky.embed.record', 'record': _ref(self._pick_post())}
        if kind == 'record':
            return quote
        images = {
            '$type': 'app.bsky.embed.images',
            'images': [
                {
                    '$type': 'app.bsky.embed.images#image',
                    'alt': ' '.join(rng.choices(_WORDS, k=rng.randint(0, 8))),
                    'image': {
                        '$type': 'blob',
                        'ref': _RAW_SHA256 + rng.randbytes(32),
                        'mimeType': 'image/jpeg',
                        'size': rng.randint(20_000, 900_000),
                    },
                    'aspectRatio': {'$type': 'app.bsky.embed.defs#aspectRatio', 'width': 2000, 'height': 1500},
                }
                for _ in range(rng.randint(1, 4))
            ],
        }
        if kind == 'images':
            return images
        return {'$type': 'app.bsky.embed.recordWithMedia', 'media': images, 'record': quote}

    def _new_post(self, author: int, offset: int = 0) -> tuple[dict[str, Any], tuple[bytes, bytes], _Post]:
        """A post's create op, its block, and the post (not yet in the live pool)."""
        record, info, root = self._post_record(author)
        op, block = self._create(author, POST, record, offset)
        cid_str = libipld.encode_cid(block[0])
        post = _Post(
            self._uri(author, op['path']), block[0], cid_str, author, op['path'], root, {**info, 'cid': cid_str}
        )
        return op, block, post

    def _post(self) -> bytes:
        author = self._author()
        op, block, post = self._new_post(author)
        self._publish(post)
        return self._commit(author, [op], [block])

    def _add_edge(self, collection: str, author: int, op: dict[str, Any], subject: str, subject_cid: str = '') -> None:
        edge = _Edge(self._uri(author, op['path']), op['cid'], author, op['path'], subject, subject_cid)
        self._pool(collection).add(edge)
        self._edge_keys[(collection, author, subject)] = edge

    def _pool(self, collection: str) -> _Pool[_Edge]:
        return {LIKE: self._likes, REPOST: self._reposts, FOLLOW: self._follows}[collection]

    def _like_or_repost(self, collection: str, pool: _Pool[_Edge]) -> bytes:
        author = self._author()
        for _ in range(20):
            post = self._pick_post()
            if (collection, author, post.uri) not in self._edge_keys:
                record = {'$type': collection, 'subject': _ref(post), 'createdAt': self._now()}
                op, block = self._create(author, collection, record)
                self._add_edge(collection, author, op, post.uri, post.cid_str)
                return self._commit(author, [op], [block])
        return self._replace_like()  # the account liked everything offered: do what a PDS does with a duplicate

    def _follow(self) -> bytes:
        author = self._author()
        for _ in range(20):
            subject = self._subject(author)
            if (FOLLOW, author, subject) not in self._edge_keys:
                op, block = self._create(
                    author, FOLLOW, {'$type': FOLLOW, 'subject': subject, 'createdAt': self._now()}
                )
                self._add_edge(FOLLOW, author, op, subject)
                return self._commit(author, [op], [block])
        return self._like_or_repost(LIKE, self._likes)

    def _about_account(self, collection: str) -> bytes:
        """A block, or a list item on a list the author made before the capture."""
        author = self._author()
        record = {'$type': collection, 'subject': self._subject(author), 'createdAt': self._now()}
        if collection == LISTITEM:
            account = self._accounts[author]
            record['list'] = f'at://{account.did}/{LIST}/{tid(_START_MICROS - 10**9, account.clock_id)}'
        op, block = self._create(author, collection, record)
        return self._commit(author, [op], [block])

    def _profile(self) -> bytes:
        author = self._author()
        account = self._accounts[author]
        rng = self._rng
        record = {
            '$type': PROFILE,
            'displayName': f'{rng.choice(_WORDS).title()} {rng.choice(_WORDS).title()}',
            'description': ' '.join(rng.choices(_WORDS, k=rng.randint(3, 30))),
            'createdAt': self._now(),
        }
        block = libipld.encode_dag_cbor(record)
        cid = cid_for(block)
        op: dict[str, Any] = {'action': 'create', 'path': f'{PROFILE}/self', 'cid': cid}
        if account.profile is not None:
            op = {**op, 'action': 'update', 'prev': account.profile}
        account.profile = cid
        return self._commit(author, [op], [(cid, block)])

    # Deletes and multi-op commits.

    def _delete(self) -> bytes:
        """Deletes an earlier post, like, repost or follow of an active account."""
        rng = self._rng
        pools: dict[str, _Pool[Any]] = {'like': self._likes, 'post': self._posts}
        pools |= {'follow': self._follows, 'repost': self._reposts}
        for _ in range(20):
            pool = pools[rng.choices(list(_DELETE_MIX), list(_DELETE_MIX.values()))[0]]
            if not pool:
                continue
            record = pool.pick(rng)
            status = self._accounts[record.author].status
            if status == 'deleted':
                pool.remove(record)  # the repo is gone: nothing of it will be deleted any more
            elif status == 'active':
                self._forget(record)
                return self._commit(record.author, [_delete_op(record.path, record.cid)], [])
        return self._like_or_repost(LIKE, self._likes)

    def _forget(self, record: _Post | _Edge) -> None:
        if isinstance(record, _Post):
            self._posts.remove(record)
            return
        collection = record.path.split('/', 1)[0]
        self._pool(collection).remove(record)
        del self._edge_keys[(collection, record.author, record.subject)]

    def _multi(self) -> bytes:
        kind = self._rng.choices(list(_MULTI_MIX), list(_MULTI_MIX.values()))[0]
        if kind == 'replace_like':
            return self._replace_like()
        author = self._author()
        if kind == 'post_batch':  # applyWrites
            ops, blocks = [], []
            for offset in range(self._rng.randint(2, 4)):
                op, block, post = self._new_post(author, offset=offset)
                ops.append(op)
                blocks.append(block)
                self._publish(post)
            return self._commit(author, ops, blocks)
        # A post and its own deletion in one commit: a real PDS would not emit this, but an indexer must cope.
        op, block, post = self._new_post(author)
        return self._commit(author, [op, _delete_op(post.path, post.cid)], [block])

    def _replace_like(self) -> bytes:
        """What a PDS does with a duplicate like: delete the old record and create a new one, in one commit."""
        for _ in range(20):
            if not self._likes:
                break
            old = self._likes.pick(self._rng)
            if self._accounts[old.author].status != 'active':
                continue
            self._forget(old)
            subject = {'$type': 'com.atproto.repo.strongRef', 'uri': old.subject, 'cid': old.subject_cid}
            op, block = self._create(old.author, LIKE, {'$type': LIKE, 'subject': subject, 'createdAt': self._now()})
            self._add_edge(LIKE, old.author, op, old.subject, old.subject_cid)
            return self._commit(old.author, [_delete_op(old.path, old.cid), op], [block])
        return self._post()


def _shared_prefix(a: bytes, b: bytes) -> int:
    """Length of the common prefix of two byte strings (an XOR of both as big integers, for speed)."""
    size = max(len(a), len(b))
    differ = int.from_bytes(a.ljust(size, b'\0')) ^ int.from_bytes(b.ljust(size, b'\0'))
    return min(size - (differ.bit_length() + 7) // 8, len(a), len(b))


def _random_cid(rng: random.Random) -> bytes:
    return _DAG_CBOR_SHA256 + rng.randbytes(32)


def _ref(post: _Post) -> dict[str, str]:
    return {'$type': 'com.atproto.repo.strongRef', 'uri': post.uri, 'cid': post.cid_str}


def _delete_op(path: str, prev: bytes) -> dict[str, Any]:
    return {'action': 'delete', 'path': path, 'cid': None, 'prev': prev}


def _add_facet(text: str, token: str, feature: dict[str, str], facets: list[dict[str, Any]]) -> str:
    """Appends ` token` to `text` and a facet with `feature` over the token's UTF-8 byte range."""
    start = len(text.encode()) + 1
    index = {'$type': 'app.bsky.richtext.facet#byteSlice', 'byteStart': start, 'byteEnd': start + len(token.encode())}
    facets.append({'$type': 'app.bsky.richtext.facet', 'index': index, 'features': [feature]})
    return f'{text} {token}'


def write_synthetic(out: str | Path, frames: int, accounts: int, seed: int) -> Synthesizer:
    """Writes a synthetic capture to `out` and its truth to `truth_path(out)`.

    Args:
        out: Path of the ATFH capture to write.
        frames: Number of frames.
        accounts: Number of accounts.
        seed: Random seed.

    Returns:
        The synthesizer, with its counters filled.
    """
    synthesizer = Synthesizer(frames, accounts, seed)
    write_capture(out, synthesizer.messages())
    with open(truth_path(out), 'w', encoding='utf-8') as stream:
        json.dump(synthesizer.truth(), stream, ensure_ascii=False, indent=1)
    return synthesizer


def main(argv: list[str] | None = None) -> int:
    """Command line: writes a capture and its truth, then prints a summary."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', 1)[0])
    parser.add_argument('--frames', type=int, default=200_000, help='number of frames (default 200000)')
    parser.add_argument('--accounts', type=int, default=20_000, help='number of accounts (default 20000)')
    parser.add_argument('--seed', type=int, default=1, help='random seed (default 1)')
    parser.add_argument('--out', type=Path, required=True, help='capture to write; the truth goes to X.truth.json')
    args = parser.parse_args(argv)
    started = time.perf_counter()
    synthesizer = write_synthetic(args.out, args.frames, args.accounts, args.seed)
    elapsed = time.perf_counter() - started
    truth_file = truth_path(args.out)
    print(f'{args.out}: {synthesizer.frame_count:,} frames, {args.out.stat().st_size:,} bytes in {elapsed:.1f} s')
    print(f'{truth_file}: {truth_file.stat().st_size:,} bytes')
    for title, counts in (('frames', synthesizer.frame_counts), ('ops', synthesizer.op_counts)):
        print(f'{title}:')
        for name, count in counts.most_common():
            print(f'  {name:34} {count:>9,} {100 * count / synthesizer.frame_count:6.2f}%')
    return 0


if __name__ == '__main__':
    sys.exit(main())
