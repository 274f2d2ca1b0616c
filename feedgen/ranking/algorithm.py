"""The algorithm plugin API: what an author subclasses, what a page request carries, what a page returns.

Owns `Algorithm` (the base class every plugin extends), `FeedRequest`, `Item`, `Page` and `Exclusion`, parameter
validation. An algorithm reads the store
(`feedgen.store.models` models) and nothing else: no network, no firehose, no writes.
See docs/algorithms.md for the author's guide.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import time
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import packages_distributions
from importlib.metadata import version as distribution_version
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from feedgen.ingest.plugin_indexers import RecordIndexer

if TYPE_CHECKING:
    import peewee

    from feedgen.store.models import Post


MAX_LIMIT = 100
"""The most items a page request may ask for (the lexicon of getFeedSkeleton says so)."""


class InvalidCursor(ValueError):
    """The cursor given to `Algorithm.page` is malformed or was not made by this algorithm."""


class InvalidParams(ValueError):
    """A feed's parameters do not fit its algorithm's `Params`."""


@dataclass(frozen=True)
class FeedRequest:
    """One page request, as the server hands it to an algorithm."""

    limit: int
    """How many items to return at most (1..`MAX_LIMIT`)."""
    cursor: str | None = None
    """The cursor of the previous page, exactly as this algorithm returned it, or None for the first page."""
    viewer: str | None = None
    """DID of the reader, from a verified service JWT; None for anonymous requests."""
    langs: tuple[str, ...] = ()
    """Languages the reader accepts (from `Accept-Language`), most preferred first."""
    at_ms: int | None = None
    """Rank as of this moment (epoch milliseconds); None: now. Tests and previews of old captures pin it."""

    def time_ms(self) -> int:
        """The moment to rank as of: `at_ms`, or the current time, in epoch milliseconds."""
        return int(time.time() * 1000) if self.at_ms is None else self.at_ms


class Reposted(NamedTuple):
    """An item's post is here because an account reposted it: the app shows "Reposted by" that account."""

    repost: str
    """The at-uri of the `app.bsky.feed.repost` record."""


class Pinned(NamedTuple):
    """An item's post is pinned at the top of the feed: the app shows it as pinned."""


class Item(NamedTuple):
    """One skeleton entry: a post URI and a short, human-readable reason it is in the feed.

    A named tuple (immutable, and made ten times faster than a frozen dataclass: a page makes up to a hundred).
    """

    post: str
    context: str | None = None
    """Why this post is here (sent as the skeleton's `feedContext`)."""
    reason: Reposted | Pinned | None = None
    """How the app presents the post (sent as the skeleton's `reason`): a repost or a pin; None: a plain post."""


@dataclass(frozen=True)
class Page:
    items: list[Item]
    cursor: str | None = None
    """Cursor for the next page; None when this page is the last."""
    trace: dict[str, Any] = field(default_factory=dict)
    """How the page was made, for its receipt: candidates considered, what each filter removed, score parts."""


@dataclass(frozen=True)
class Exclusion:
    """Why a post is not in a feed: the rule that left it out, the post's value for it, and both in words."""

    rule: str
    """A short name: `langs`, `tags`, `replies`, `window`, `below_cutoff`, `opted_out`, `not_indexed`, ..."""
    message: str
    value: Any = None
    """What the post had that failed the rule (its languages, its age in hours, its score), JSON-able."""

    def as_dict(self) -> dict[str, Any]:
        return {'rule': self.rule, 'value': self.value, 'message': self.message}


@dataclass(frozen=True)
class Job:
    """Scheduled work an algorithm needs, such as refreshing a table of scores (see `Algorithm.jobs`)."""

    name: str
    """Unique in the service: feeds whose jobs have the same name (same algorithm and parameters) share one."""
    run: Callable[[peewee.Database], object]
    """Called with the open store every `seconds`, in the ingest process; it writes only its own tables."""
    seconds: float


class NoParams:
    """The `Params` of an algorithm that takes none."""


class Algorithm:
    """Base class of every ranking algorithm plugin.

    Subclasses set the class attributes and implement `page` and `explain`. Parameters a feed may set are
    the fields of a dataclass assigned to `Params`; the validated instance is `self.params`.

    `Page.trace` says how a page was made, for its receipt. Keys the built-in algorithms use:
    `candidates` (how many posts were considered), `filters` (the filters applied, in words),
    `removed` (`{filter: how many candidates it removed}`, where counted), `scores` (`{post uri: score
    parts}` for the page's items), and `as_of` / `snapshot` (the moment or score snapshot ranked).

    Scheduled work: an algorithm that cannot rank at request time (scores over many posts, refreshed
    every minute) returns `Job`s from `jobs()`. `feedgen.jobs.start_scheduler` runs them with apscheduler
    in the ingest process, first right away, then every `Job.seconds`. A job writes only its own tables
    (add models to `feedgen.store.models`); `page` then reads them, staying fast and read-only.

    Data of its own from records: an algorithm that needs what the built-in index does not keep declares
    `RecordIndexer`s in `indexers`; ingest fills their tables in its batches.
    """

    name: ClassVar[str]
    """Identifier of the algorithm; also the record key of its default feed."""
    display_name: ClassVar[str]
    description: ClassVar[str]
    """What the feed shows, in one or two sentences."""
    ranking: ClassVar[str] = ''
    """How the feed orders posts, in plain words."""
    source_url: ClassVar[str] = ''
    """Where the source code can be read; default: the module's file path."""
    personalized: ClassVar[bool] = False
    """True when `page` needs `request.viewer` (the reader's DID) to answer."""
    accepts_interactions: ClassVar[bool] = False
    """True when the algorithm uses reader feedback (`app.bsky.feed.sendInteractions`): published as the
    feed's `acceptsInteractions`, so Bluesky offers "show more / show less like this"."""
    Params: ClassVar[type] = NoParams
    indexers: ClassVar[tuple[RecordIndexer, ...]] = ()
    """Plugin indexers the algorithm's pages read (their tables, filled from records as ingest writes them); ingest
    runs those of every served feed, each once (see docs/algorithms.md, "Plugin indexers")."""

    def __init__(self, **params: Any) -> None:
        self.params = build_params(self.Params, params, self.name)

    def page(self, request: FeedRequest) -> Page:
        """Returns one page of the feed for `request`."""
        raise NotImplementedError

    def explain(self, post: str, request: FeedRequest) -> dict[str, Any] | None:
        """Why `post` has its place in this feed for `request.viewer`, as JSON-able data, or None if it is not in it.

        Say which filters it matched and the parts of its score, with the inputs they came from.
        """
        raise NotImplementedError

    def why_not(self, post: Post, request: FeedRequest) -> Exclusion | None:
        """Which of this algorithm's rules leaves `post` out of the feed for `request` (`explain` said it is not in).

        `post` is indexed and visible (the rules every feed shares, checked before: indexed, author's account active,
        author not opted out). Return the first rule it fails, or None when the algorithm does not say. A personalized
        algorithm is asked only with `request.viewer` set (`feedgen.ranking.exclusions.feed_exclusion`).
        """
        return None

    def jobs(self) -> list[Job]:
        """The scheduled work this feed needs (see the class docstring); none by default."""
        return []

    def state_key(self) -> str:
        """Names this algorithm with these parameters (`hot:1a2b3c4d5e6f`): the key of the rows its jobs write.

        Two feeds with the same algorithm and parameters share a key, hence their jobs and rows.
        """
        described = repr(self.params) if dataclasses.is_dataclass(self.params) else ''
        return f'{self.name}:{hashlib.sha256(described.encode()).hexdigest()[:12]}'

    @classmethod
    def source(cls) -> str:
        """Where the algorithm's source lives, readable by anyone the feed is published to.

        `source_url` when the author set one; for an installed algorithm (built-in or from a package), its
        distribution, version and module path (`open-feedgen 0.1.0: algorithms/hot.py`), never a path on the
        serving machine; for a file in a plugins folder, that file's path.
        """
        if cls.source_url:
            return cls.source_url
        top = cls.__module__.split('.', 1)[0]
        distributions = packages_distributions().get(top)
        if distributions:
            name = distributions[0]
            return f'{name} {distribution_version(name)}: {cls.__module__.replace(".", "/")}.py'
        return inspect.getsourcefile(cls) or cls.__module__


def build_params(params_type: type, values: dict[str, Any], owner: str) -> Any:
    """Validates `values` against the dataclass `params_type` and returns an instance of it.

    Raises:
        InvalidParams: an unknown key, a missing required key, or a value of the wrong type.
    """
    if params_type is NoParams:
        if values:
            raise InvalidParams(f'{owner} takes no parameters, got {sorted(values)}')
        return NoParams()
    known = {f.name: f for f in dataclasses.fields(params_type)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise InvalidParams(f'{owner}: unknown parameter(s) {unknown}; known: {sorted(known)}')
    hints = typing.get_type_hints(params_type)
    converted = {name: _check_type(f'{owner}.{name}', hints[name], value) for name, value in values.items()}
    try:
        return params_type(**converted)
    except (TypeError, ValueError) as error:
        raise InvalidParams(f'{owner}: {error}') from None


def _check_type(label: str, hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _check_type(label, option, value)
            except InvalidParams:
                continue
        raise InvalidParams(f'{label}: {value!r} is not {hint}')
    if hint is type(None):
        if value is None:
            return None
        raise InvalidParams(f'{label}: expected nothing, got {value!r}')
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise InvalidParams(f'{label}: expected a list, got {value!r}')
        (item,) = typing.get_args(hint)[:1] or (Any,)
        return tuple(_check_type(label, item, v) for v in value)
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise InvalidParams(f'{label}: expected {hint.__name__}, got {value!r}')
    return value
