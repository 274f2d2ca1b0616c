"""Languages: the reader's languages from `Accept-Language`, and feeds that fall back to them.

Owns reading the header the AppView forwards (quality values, most preferred first; werkzeug parses it),
the fallback of a feed whose algorithm has a `langs` parameter the feed leaves empty (it serves the
reader's languages: the same algorithm with `langs` set to them, for that request), and the
`Content-Language` a feed answers with. It touches neither the store nor the algorithms' code.

A feed whose algorithm has scheduled jobs keeps its own parameters: its jobs rank ahead for the
parameters the feed declares, and there are none for a reader's languages.
"""

from __future__ import annotations

import dataclasses

from werkzeug.datastructures import LanguageAccept
from werkzeug.http import parse_accept_header
from werkzeug.wrappers import Response

from feedgen.ranking.algorithm import FeedRequest, InvalidParams
from feedgen.ranking.plugins import Feed

MAX_LANGS = 8
"""Languages kept from one header; a reader's list is short, and the rest only costs queries."""


def accepted_languages(header: str | None) -> tuple[str, ...]:
    """The languages of an `Accept-Language` header, lower-cased, most preferred first (`q=0` and `*` left out)."""
    if not header:
        return ()
    accepted = parse_accept_header(header, LanguageAccept)
    langs = [lang.lower() for lang, quality in accepted if quality > 0 and lang != '*']
    return tuple(dict.fromkeys(langs))[:MAX_LANGS]


def _own_langs(feed: Feed) -> tuple[str, ...] | None:
    """The feed's `langs` parameter, or None when its algorithm has none."""
    params = feed.algorithm.params
    return tuple(params.langs) if dataclasses.is_dataclass(params) and hasattr(params, 'langs') else None


def reader_feed(feed: Feed, request: FeedRequest) -> Feed:
    """`feed`, or, when it leaves its `langs` parameter empty, the same feed in the reader's languages.

    A reader's regional tag also matches its base language (`pt-br` serves `pt` posts too).
    """
    if _own_langs(feed) != () or not request.langs or feed.algorithm.jobs():
        return feed
    langs = list(dict.fromkeys(part for lang in request.langs for part in (lang, lang.split('-', 1)[0])))
    params = feed.params | {'langs': langs}
    try:
        algorithm = type(feed.algorithm)(**params)
    except InvalidParams:
        return feed
    return dataclasses.replace(feed, algorithm=algorithm, params=params)


def add_content_language(response: Response, feed: Feed) -> None:
    """Sets `Content-Language` to the languages `feed` (as `reader_feed` made it) serves, when it names any."""
    langs = _own_langs(feed)
    if langs:
        response.headers['Content-Language'] = ', '.join(langs)
