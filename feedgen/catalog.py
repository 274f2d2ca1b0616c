"""Catalog: what each served feed says about itself, for people and for programs.

Owns the description of a feed as the transparency page, `describeFeedGenerator` and the published
generator record show it: its algorithm, effective parameters, plain-words ranking, source location and
version (the content hash of the algorithm's code). It reads feeds and nothing else: no store, no HTTP.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from feedgen.plugins import Feed

RECORD_DESCRIPTION_MAX = 300
"""`app.bsky.feed.generator#description` holds at most 300 graphemes."""


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
    }


def feed_record_description(feed: Feed, service_endpoint: str = '') -> str:
    """The `description` of the feed's published generator record: what it shows, how it ranks, which code.

    It ends with the algorithm's name, version hash and source (and, with `service_endpoint`, the address of
    the transparency page); those always fit, and the feed's own words are shortened to make room.
    """
    algorithm = type(feed.algorithm)
    tail = f' Algorithm {algorithm.name}, version {algorithm.version()}, source: {algorithm.source()}.'
    if service_endpoint:
        tail += f' Why each post is there: {service_endpoint.rstrip("/")}/algorithms'
    text = feed.description.strip()
    if algorithm.ranking:
        text += f' Ranking: {algorithm.ranking}'
    room = max(RECORD_DESCRIPTION_MAX - len(tail), 1)
    if len(text) > room:
        text = text[: room - 1].rstrip() + '…'
    return text + tail


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value
