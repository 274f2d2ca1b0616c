"""Catalog: what each served feed says about itself, for people and for programs.

Owns the description of a feed as the transparency page, `describeFeedGenerator`, skeleton responses and
receipts show it: its algorithm, effective parameters, plain-words ranking, source location and version (the
content hash of the code and parameters that decide its pages, `feedgen.ranking.provenance`); the published
record's text is `feedgen.publish`'s. It reads feeds and nothing else: no store, no HTTP.
"""

from __future__ import annotations

from typing import Any

from feedgen.ranking import provenance
from feedgen.ranking.plugins import Feed


def effective_params(feed: Feed) -> dict[str, Any]:
    """Every parameter of the feed's algorithm with the value it runs with (declared or default)."""
    return provenance.effective_params(feed.algorithm)


def algorithm_stamp(feed: Feed) -> dict[str, str]:
    """`{name, version}` of the code and parameters that rank `feed`: what skeleton responses and receipts carry."""
    return {'name': feed.algorithm.name, 'version': feed.version}


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
            'sourceBundle': f'/algorithms/{feed.rkey}/source',
        },
        'params': effective_params(feed),
    }
