"""Languages: the reader's languages from `Accept-Language`, and the languages a feed answered in.

Owns reading the header the AppView forwards (quality values, most preferred first; werkzeug parses it)
and deciding which languages a feed with a `langs` parameter serves: its own when it fixes them, the
reader's otherwise. It touches neither the store nor the algorithms' code.
"""

from __future__ import annotations

from werkzeug.datastructures import LanguageAccept
from werkzeug.http import parse_accept_header
from werkzeug.wrappers import Response

from feedgen.algorithm import FeedRequest
from feedgen.plugins import Feed

MAX_LANGS = 8
"""Languages kept from one header; a reader's list is short, and the rest only costs queries."""


def accepted_languages(header: str | None) -> tuple[str, ...]:
    """The languages of an `Accept-Language` header, lower-cased, most preferred first (`q=0` and `*` left out)."""
    if not header:
        return ()
    accepted = parse_accept_header(header, LanguageAccept)
    langs = [lang.lower() for lang, quality in accepted if quality > 0 and lang != '*']
    return tuple(dict.fromkeys(langs))[:MAX_LANGS]


def has_langs_param(feed: Feed) -> bool:
    """True when the feed's algorithm takes a `langs` parameter."""
    return hasattr(feed.algorithm.params, 'langs')


def served_languages(feed: Feed, request: FeedRequest) -> tuple[str, ...]:
    """The languages `feed` answers `request` in: its fixed `langs`, else the reader's; () when it has no `langs`."""
    if not has_langs_param(feed):
        return ()
    return tuple(feed.algorithm.params.langs) or request.langs


def add_content_language(response: Response, feed: Feed, request: FeedRequest) -> None:
    """Sets `Content-Language` on `response` to the languages `feed` served, when it has a `langs` parameter."""
    langs = served_languages(feed, request)
    if langs:
        response.headers['Content-Language'] = ', '.join(langs)
