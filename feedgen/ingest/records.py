"""Records: turn the DAG-CBOR records of the collections feedgen indexes into validated, typed values.

Owns the rules of what a well-formed post, like, repost, follow and block is (the fields ranking needs,
checked against the `app.bsky.*` lexicons' types and limits). Pure functions: no I/O.
A record that breaks a rule raises `RecordError`; the caller skips it and counts the reason. A post's richer fields
(links, mentions, quote target, images, video) are optional to the index: a malformed one is left out of the post,
which is kept, and its reason is listed in `PostRecord.dropped` for the caller to count.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

POST = 'app.bsky.feed.post'
LIKE = 'app.bsky.feed.like'
REPOST = 'app.bsky.feed.repost'
FOLLOW = 'app.bsky.graph.follow'
BLOCK = 'app.bsky.graph.block'
INDEXED_COLLECTIONS = frozenset({POST, LIKE, REPOST, FOLLOW, BLOCK})

MAX_TEXT_BYTES = 3000  # app.bsky.feed.post#text maxLength
MAX_LANGS = 3
MAXSELF_LABELS = 10  # com.atproto.label.defs#selfLabels values maxLength
MAX_LABEL_BYTES = 128  # com.atproto.label.defs#selfLabel val maxLength
SELF_LABELS = 'com.atproto.label.defs#selfLabels'
_EMBED_KINDS = {
    'app.bsky.embed.images': 'images',
    'app.bsky.embed.video': 'video',
    'app.bsky.embed.external': 'external',
    'app.bsky.embed.record': 'record',
    'app.bsky.embed.recordWithMedia': 'recordWithMedia',
}
_TAG_FEATURE = 'app.bsky.richtext.facet#tag'
_LINK_FEATURE = 'app.bsky.richtext.facet#link'
_MENTION_FEATURE = 'app.bsky.richtext.facet#mention'
MAX_LINKS = 10
"""Links (facets and a link card) indexed per post; more are dropped and counted as `too_many_links`."""
MAX_MENTIONS = 10
"""Mentions indexed per post; more are dropped and counted as `too_many_mentions`."""
MAX_URI_BYTES = 2048
"""The longest link, mentioned DID or quoted at-uri indexed; a longer one is dropped as malformed."""
MAX_IMAGES = 4  # app.bsky.embed.images#images maxLength


class Rejected(ValueError):
    """Input left out of the index; `reason` is a short label the skip counters and metrics use."""

    def __init__(self, reason: str, detail: str = '') -> None:
        super().__init__(f'{reason}: {detail}' if detail else reason)
        self.reason = reason


class RecordError(Rejected):
    """A record does not match its lexicon closely enough to index."""


@dataclass(frozen=True, slots=True)
class PostRecord:
    text: str
    langs: tuple[str, ...]
    tags: tuple[str, ...]
    reply_root: str | None
    reply_parent: str | None
    embed: str | None
    created_at: int
    self_labels: tuple[str, ...] = ()
    """Label values the author put on the post (`porn`, `graphic-media`, ...), in record order, without repeats."""
    links: tuple[str, ...] = ()
    """Full `http(s)` URLs of its link facets and link card (`app.bsky.embed.external`), in record order, once each."""
    mentions: tuple[str, ...] = ()
    """DIDs of the accounts its mention facets name, once each."""
    quote: str | None = None
    """The at-uri of the record it quotes (`app.bsky.embed.record`, or the record of `recordWithMedia`)."""
    images: int = 0
    """How many images it embeds (directly or beside a quote)."""
    alt_texts: int = 0
    """How many of those images have a non-blank alt text."""
    video: bool = False
    """True when it embeds a video (directly or beside a quote)."""
    dropped: tuple[str, ...] = ()
    """Why malformed optional fields were left out (`invalid_link`, `invalid_embed`, ...): one reason per field."""


@dataclass(frozen=True, slots=True)
class SubjectRecord:
    """A like, repost, follow or block: who or what it points at."""

    subject: str


def parse_datetime_ms(value: Any) -> int:
    """Parses an AT Protocol datetime string (RFC 3339 with a time zone) into epoch milliseconds."""
    if not isinstance(value, str) or len(value) > 64:
        raise RecordError('invalid_datetime', repr(value)[:80])
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise RecordError('invalid_datetime', value) from None
    if moment.tzinfo is None:
        raise RecordError('invalid_datetime', f'{value} has no time zone')
    return int(moment.timestamp() * 1000)


def _expect(record: Any, collection: str) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise RecordError('not_a_map')
    if record.get('$type') != collection:
        raise RecordError('wrong_type', f'$type {record.get("$type")!r} in {collection}')
    return record


def _strong_ref_uri(ref: Any, field: str) -> str:
    if not isinstance(ref, dict) or not isinstance(ref.get('uri'), str) or not ref['uri'].startswith('at://'):
        raise RecordError('invalid_ref', field)
    uri: str = ref['uri']
    return uri


def _array(value: Any, reason: str) -> list[Any] | tuple[()]:
    """An optional lexicon array: absent or null is empty; anything but a list raises `RecordError(reason)`."""
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise RecordError(reason)
    return value


def _tags(record: dict[str, Any], rich: _Rich) -> tuple[str, ...]:
    found: list[str] = []
    for facet in _array(record.get('facets'), 'invalid_facet'):
        if not isinstance(facet, dict):
            raise RecordError('invalid_facet')
        features = _array(facet.get('features'), 'invalid_facet')
        rich.add_features(features)
        for feature in features:
            if (
                isinstance(feature, dict)
                and feature.get('$type') == _TAG_FEATURE
                and isinstance(feature.get('tag'), str)
            ):
                found.append(feature['tag'])
    extra = _array(record.get('tags'), 'invalid_tags')
    if not all(isinstance(tag, str) for tag in extra):
        raise RecordError('invalid_tags')
    found.extend(extra)
    return tuple(dict.fromkeys(tag.lower().lstrip('#') for tag in found if tag.strip() and ' ' not in tag))


def _self_labels(labels: Any) -> tuple[str, ...]:
    """The values of a post's `labels` (an open union: a member other than `selfLabels` carries none for us)."""
    if labels is None:
        return ()
    if not isinstance(labels, dict):
        raise RecordError('invalid_labels', 'labels is not a map')
    if labels.get('$type', SELF_LABELS) != SELF_LABELS:
        return ()
    values = _array(labels.get('values'), 'invalid_labels')
    if len(values) > MAXSELF_LABELS:
        raise RecordError('invalid_labels', f'{len(values)} self-labels')
    found: list[str] = []
    for value in values:
        val = value.get('val') if isinstance(value, dict) else None
        if (
            not isinstance(val, str)
            or val.split() != [val]
            or len(val.encode('utf-8', 'surrogatepass')) > MAX_LABEL_BYTES
        ):
            raise RecordError('invalid_labels', repr(value)[:80])
        found.append(val)
    return tuple(dict.fromkeys(found))


def _bounded_uri(value: Any) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value.encode('utf-8', 'surrogatepass')) <= MAX_URI_BYTES
        and value.split() == [value]
    )


def _link(value: Any) -> str | None:
    """`value` when it is an `http(s)` URL with a host, else None."""
    if not _bounded_uri(value) or not value.lower().startswith(('http://', 'https://')):
        return None
    try:
        host = urlsplit(value).hostname
    except ValueError:
        return None
    return value if host else None


class _Rich:
    """Collects a post's richer fields while parsing, and the reasons of the malformed ones it leaves out."""

    def __init__(self) -> None:
        self.links: list[str] = []
        self.mentions: list[str] = []
        self.quote: str | None = None
        self.images = self.alt_texts = 0
        self.video = False
        self.dropped: list[str] = []

    def add_link(self, value: Any) -> None:
        link = _link(value)
        if link is None:
            self.dropped.append('invalid_link')
        elif link not in self.links:
            if len(self.links) < MAX_LINKS:
                self.links.append(link)
            else:
                self.dropped.append('too_many_links')

    def add_mention(self, value: Any) -> None:
        if not _bounded_uri(value) or not value.startswith('did:'):
            self.dropped.append('invalid_mention')
        elif value not in self.mentions:
            if len(self.mentions) < MAX_MENTIONS:
                self.mentions.append(value)
            else:
                self.dropped.append('too_many_mentions')

    def add_features(self, features: list[Any] | tuple[()]) -> None:
        for feature in features:
            kind = feature.get('$type') if isinstance(feature, dict) else None
            if kind == _LINK_FEATURE:
                self.add_link(feature.get('uri'))
            elif kind == _MENTION_FEATURE:
                self.add_mention(feature.get('did'))

    def add_embed(self, embed: dict[str, Any], kind: str | None) -> None:
        if kind == 'images':
            self._images(embed.get('images'))
        elif kind == 'video':
            self.video = True
        elif kind == 'external':
            external = embed.get('external')
            self.add_link(external.get('uri') if isinstance(external, dict) else None)
        elif kind == 'record':
            self._quote(embed.get('record'))
        elif kind == 'recordWithMedia':
            record = embed.get('record')
            self._quote(record.get('record') if isinstance(record, dict) else None)
            media = embed.get('media')
            media_type = media.get('$type') if isinstance(media, dict) else None
            media_kind = _EMBED_KINDS.get(media_type) if isinstance(media_type, str) else None
            if isinstance(media, dict) and media_kind in ('images', 'video', 'external'):
                self.add_embed(media, media_kind)
            else:
                self.dropped.append('invalid_embed')

    def _images(self, images: Any) -> None:
        if (
            not isinstance(images, list)
            or not 0 < len(images) <= MAX_IMAGES
            or not all(isinstance(image, dict) for image in images)
        ):
            self.dropped.append('invalid_embed')
            return
        self.images = len(images)
        self.alt_texts = sum(1 for image in images if isinstance(alt := image.get('alt'), str) and alt.strip())

    def _quote(self, ref: Any) -> None:
        uri = ref.get('uri') if isinstance(ref, dict) else None
        if isinstance(uri, str) and _bounded_uri(uri) and uri.startswith('at://'):
            self.quote = uri
        else:
            self.dropped.append('invalid_embed')


def parse_post(record: Any) -> PostRecord:
    """Validates an `app.bsky.feed.post` record and extracts what feeds filter and rank by."""
    record = _expect(record, POST)
    text = record.get('text', '')
    if not isinstance(text, str):
        raise RecordError('invalid_text', 'text is not a string')
    if len(text.encode('utf-8', 'surrogatepass')) > MAX_TEXT_BYTES:
        raise RecordError('text_too_long', f'{len(text)} characters')
    langs = _array(record.get('langs'), 'invalid_langs')
    if len(langs) > MAX_LANGS or not all(isinstance(x, str) for x in langs):
        raise RecordError('invalid_langs')
    reply = record.get('reply')
    reply_root = reply_parent = None
    if reply is not None:
        if not isinstance(reply, dict):
            raise RecordError('invalid_ref', 'reply')
        reply_root = _strong_ref_uri(reply.get('root'), 'reply.root')
        reply_parent = _strong_ref_uri(reply.get('parent'), 'reply.parent')
    embed = record.get('embed')
    embed_type = embed.get('$type') if isinstance(embed, dict) else None
    embed_kind = _EMBED_KINDS.get(embed_type) if isinstance(embed_type, str) else None
    rich = _Rich()
    tags = _tags(record, rich)
    if isinstance(embed, dict):
        rich.add_embed(embed, embed_kind)
    return PostRecord(
        text=text,
        langs=tuple(lang.lower() for lang in langs if lang),
        tags=tags,
        reply_root=reply_root,
        reply_parent=reply_parent,
        embed=embed_kind,
        created_at=parse_datetime_ms(record.get('createdAt')),
        self_labels=_self_labels(record.get('labels')),
        links=tuple(rich.links),
        mentions=tuple(rich.mentions),
        quote=rich.quote,
        images=rich.images,
        alt_texts=rich.alt_texts,
        video=rich.video,
        dropped=tuple(rich.dropped),
    )


def parse_subject_record(collection: str, record: Any) -> SubjectRecord:
    """Validates a like, repost (subject: a post's strong ref), follow or block (subject: a DID)."""
    record = _expect(record, collection)
    parse_datetime_ms(record.get('createdAt'))
    subject = record.get('subject')
    if collection in (FOLLOW, BLOCK):
        if not isinstance(subject, str) or not subject.startswith('did:'):
            raise RecordError('invalid_subject', f'{collection.rsplit(".", 1)[-1]} subject is not a DID')
        return SubjectRecord(subject)
    return SubjectRecord(_strong_ref_uri(subject, 'subject'))
