"""Plugins: finding algorithms and turning them into feeds.

Owns discovery of `Algorithm` subclasses from three places, alike: the built-in `algorithms` package,
installed packages' `feedgen.algorithms` entry points, and an optional folder of modules
(`FEEDGEN_PLUGINS_DIR`); and the feeds (an algorithm with parameters, under a record key) built from
them: one default feed per algorithm, or the feeds a TOML file declares, with the posts each pins to the top of
its first page. Every load is logged.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import logging
import pkgutil
import re
import sys
import tomllib
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

from feedgen.ingest.plugin_indexers import RecordIndexer
from feedgen.ranking.algorithm import Algorithm, FeedRequest, InvalidParams, Item, Page, Pinned
from feedgen.ranking.provenance import bundle_version, source_bundle

ENTRY_POINT_GROUP = 'feedgen.algorithms'
BUILTIN_PACKAGE = 'feedgen_algorithms'
_RKEY = re.compile(r'^[a-zA-Z0-9._:~-]{1,512}$')
_POST_URI = re.compile(r'at://did:[a-z]+:[a-zA-Z0-9._:%-]{1,2048}/app\.bsky\.feed\.post/[a-zA-Z0-9._:~-]{1,512}')
MAX_PINS = 3
"""The most posts a feed may pin to the top of its first page."""
log = logging.getLogger(__name__)


class PluginError(ValueError):
    """An algorithm or feed could not be loaded; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class Feed:
    """A published instance of an algorithm: record key, parameters, and how it presents itself."""

    rkey: str
    algorithm: Algorithm
    display_name: str
    description: str
    params: dict[str, Any]
    pins: tuple[str, ...] = ()
    """Post at-uris shown, in this order, at the top of the feed's first page (at most `MAX_PINS`)."""
    version: str = ''
    """Which code and parameters decide the feed's pages (`feedgen.ranking.provenance`); computed when not given.
    `dataclasses.replace` keeps it: a reader's variant of the feed (`reader_feed`) carries its feed's version."""

    def __post_init__(self) -> None:
        if not self.version:
            object.__setattr__(self, 'version', bundle_version(self.source_bundle()))

    def source_bundle(self) -> bytes:
        """The exact bytes `version` hashes: the feed's algorithm, parameters and code (see `provenance`)."""
        return source_bundle(self.algorithm)

    def uri(self, publisher_did: str) -> str:
        return f'at://{publisher_did}/app.bsky.feed.generator/{self.rkey}'

    def page(self, request: FeedRequest) -> Page:
        """The algorithm's page for `request`, with the pins on top when it is a first page.

        Pins take the first places of the page (up to `limit - 1` of them: the algorithm fills at least one) and are
        left out of the algorithm's items of that page; later pages are the algorithm's alone.
        """
        pins = self.pins[: request.limit - 1] if request.cursor is None else ()
        if not pins:
            return self.algorithm.page(request)
        page = self.algorithm.page(dataclasses.replace(request, limit=request.limit - len(pins)))
        items = [Item(post, reason=Pinned()) for post in pins]
        items += [item for item in page.items if item.post not in pins]
        return dataclasses.replace(page, items=items, trace=page.trace | {'pins': list(pins)})


def algorithms_in(module: ModuleType) -> list[type[Algorithm]]:
    """The concrete `Algorithm` subclasses defined in `module` (not merely imported into it)."""
    return [
        member
        for _, member in inspect.getmembers(module, inspect.isclass)
        if issubclass(member, Algorithm)
        and member is not Algorithm
        and member.__module__ == module.__name__
        and isinstance(getattr(member, 'name', None), str)
    ]


def _builtin_modules() -> Iterable[ModuleType]:
    package = importlib.import_module(BUILTIN_PACKAGE)
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if not info.name.startswith('_'):
            yield importlib.import_module(f'{BUILTIN_PACKAGE}.{info.name}')


def _folder_modules(folder: Path) -> Iterable[ModuleType]:
    if not folder.is_dir():
        raise PluginError(f'plugins folder {folder} does not exist')
    for path in sorted(folder.glob('*.py')):
        if path.name.startswith('_'):
            continue
        name = f'feedgen_plugin_{path.stem}'
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise PluginError(f'cannot load plugin file {path}')
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        yield module


def _entry_point_algorithms() -> Iterable[tuple[str, type[Algorithm]]]:
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry.load()
        except Exception as error:  # a broken third-party plugin must not stop the others
            raise PluginError(f'entry point {entry.name} ({entry.value}) failed to load: {error}') from error
        found = algorithms_in(loaded) if isinstance(loaded, ModuleType) else [loaded]
        for algorithm in found:
            if not (inspect.isclass(algorithm) and issubclass(algorithm, Algorithm)):
                raise PluginError(f'entry point {entry.name} ({entry.value}) is not an Algorithm subclass')
            yield f'entry point {entry.value}', algorithm


def discover_algorithms(plugins_dir: Path | None = None) -> dict[str, type[Algorithm]]:
    """Finds every algorithm: built-in, installed (entry points), and in `plugins_dir`.

    Raises:
        PluginError: two algorithms share a name, or a plugin fails to load.
    """
    found: list[tuple[str, type[Algorithm]]] = []
    for module in _builtin_modules():
        found.extend((f'built-in {module.__name__}', a) for a in algorithms_in(module))
    found.extend(_entry_point_algorithms())
    if plugins_dir is not None:
        for module in _folder_modules(plugins_dir):
            found.extend((f'plugin file {module.__file__}', a) for a in algorithms_in(module))
    algorithms: dict[str, type[Algorithm]] = {}
    origins: dict[str, str] = {}
    for origin, algorithm in found:
        if algorithm.name in algorithms and algorithms[algorithm.name] is not algorithm:
            raise PluginError(f'algorithm name {algorithm.name!r} is used by {origins[algorithm.name]} and {origin}')
        algorithms[algorithm.name] = algorithm
        origins[algorithm.name] = origin
        log.debug('loaded algorithm %s from %s', algorithm.name, origin)
    return algorithms


def make_feed(algorithms: dict[str, type[Algorithm]], spec: dict[str, Any]) -> Feed:
    """Builds one feed from a declaration `{rkey, algorithm, params, display_name, description}`."""
    name = spec.get('algorithm')
    if name not in algorithms:
        raise PluginError(f'feed {spec.get("rkey")!r}: unknown algorithm {name!r}; known: {sorted(algorithms)}')
    algorithm_type = algorithms[name]
    rkey = spec.get('rkey', name)
    if not isinstance(rkey, str) or not _RKEY.match(rkey) or rkey in ('.', '..'):
        raise PluginError(f'feed rkey {rkey!r} is not a valid record key')
    params = spec.get('params', {})
    if not isinstance(params, dict):
        raise PluginError(f'feed {rkey!r}: params must be a table')
    try:
        algorithm = algorithm_type(**params)
    except InvalidParams as error:
        raise PluginError(f'feed {rkey!r}: {error}') from None
    return Feed(
        pins=_pins(rkey, spec.get('pin', [])),
        rkey=rkey,
        algorithm=algorithm,
        display_name=str(spec.get('display_name') or algorithm_type.display_name),
        description=str(spec.get('description') or algorithm_type.description),
        params=params,
    )


def _pins(rkey: str, pins: Any) -> tuple[str, ...]:
    """The validated `pin` list of feed `rkey`: at most `MAX_PINS` distinct post at-uris."""
    if not isinstance(pins, list) or len(pins) > MAX_PINS:
        raise PluginError(f'feed {rkey!r}: pin must be a list of at most {MAX_PINS} post at-uris')
    for pin in pins:
        if not isinstance(pin, str) or not _POST_URI.fullmatch(pin):
            raise PluginError(f'feed {rkey!r}: pin {pin!r} is not a post at-uri (at://did/app.bsky.feed.post/rkey)')
    if len(set(pins)) < len(pins):
        raise PluginError(f'feed {rkey!r}: a post is pinned twice')
    return tuple(pins)


def load_feeds(algorithms: dict[str, type[Algorithm]], config: Path | None = None) -> dict[str, Feed]:
    """The feeds to serve, by record key: those `config` declares, or one default feed per algorithm.

    Raises:
        PluginError: the config file is unreadable, or a feed in it is invalid (the message names it).
    """
    if config is None:
        specs: list[dict[str, Any]] = [{'algorithm': name} for name in sorted(algorithms)]
    else:
        try:
            document = tomllib.loads(Path(config).read_text())
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise PluginError(f'feeds config {config}: {error}') from None
        specs = document.get('feed', [])
        if not isinstance(specs, list) or not specs:
            raise PluginError(f'feeds config {config}: declare feeds as [[feed]] tables')
    feeds: dict[str, Feed] = {}
    for spec in specs:
        feed = make_feed(algorithms, spec)
        if feed.rkey in feeds:
            raise PluginError(f'feed rkey {feed.rkey!r} is declared twice')
        feeds[feed.rkey] = feed
    return feeds


def feed_indexers(feeds: Iterable[Feed]) -> list[RecordIndexer]:
    """The plugin indexers the algorithms of `feeds` declare, each once.

    Raises:
        PluginError: two different indexers share a name, or a table.
    """
    found: dict[str, RecordIndexer] = {}
    tables: dict[str, str] = {}
    for feed in feeds:
        for indexer in type(feed.algorithm).indexers:
            if found.setdefault(indexer.name, indexer) is not indexer:
                raise PluginError(f'two plugin indexers are named {indexer.name!r} (one in {feed.algorithm.name})')
            for table in indexer.tables:
                owner = tables.setdefault(table._meta.table_name, indexer.name)
                if owner != indexer.name:
                    raise PluginError(
                        f'plugin table {table._meta.table_name!r} is declared by {owner} and {indexer.name}'
                    )
    return list(found.values())
