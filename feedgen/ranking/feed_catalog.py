"""Catalog: what each served feed says about itself, for people and for programs.

Owns the description of a feed as the transparency page, `describeFeedGenerator`, skeleton responses and
receipts show it: its algorithm, effective parameters, label policy, plain-words ranking, source location and version
(the content hash of the algorithm's code); the published record's text is `feedgen.publish`'s. It reads
feeds and nothing else: no store, no HTTP.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from feedgen.ranking.plugins import Feed


def effective_params(feed: Feed) -> dict[str, Any]:
    """Every parameter of the feed's algorithm with the value it runs with (declared or default)."""
    params = feed.algorithm.params
    if not dataclasses.is_dataclass(params):
        return {}
    return {f.name: _jsonable(getattr(params, f.name)) for f in dataclasses.fields(params)}


def algorithm_stamp(feed: Feed) -> dict[str, str]:
    """`{name, version}` of the code that ranks `feed`: what skeleton responses and receipts carry."""
    algorithm = type(feed.algorithm)
    return {'name': algorithm.name, 'version': algorithm.version()}


def feed_info(feed: Feed, publisher_did: str) -> dict[str, Any]:
    """Everything the transparency page lists about one feed, as JSON-able data."""
    algorithm = type(feed.algorithm)
    return {
        'rkey': feed.rkey,
        'uri': feed.uri(publisher_did),
        'displayName': feed.display_name,
        'description': feed.description,
        'algorithm': algorithm_stamp(feed)
        | {
            'displayName': algorithm.display_name,
            'description': algorithm.description,
            'ranking': algorithm.ranking,
            'source': algorithm.source(),
            'personalized': algorithm.personalized,
        },
        'params': effective_params(feed),
        'moderation': feed.moderation.describe(),
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value
