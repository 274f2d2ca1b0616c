"""Post parts: the pieces of a raw `app.bsky.feed.post` record that tests write by hand, shaped as the lexicons say.

Owns facets (links, mentions, hashtags: their UTF-8 byte ranges are computed from the text, the part people get
wrong) and embeds (images with alt text, a video, a link card, a quote, a quote with media). Each returns a plain
dict to put in a record for `StoreBuilder.make_post` or `StoreBuilder.make_record`. Pure functions: no store.
"""

from __future__ import annotations

from typing import Any

LINK = 'app.bsky.richtext.facet#link'
MENTION = 'app.bsky.richtext.facet#mention'
TAG = 'app.bsky.richtext.facet#tag'
IMAGES = 'app.bsky.embed.images'
VIDEO = 'app.bsky.embed.video'
EXTERNAL = 'app.bsky.embed.external'
RECORD = 'app.bsky.embed.record'
RECORD_WITH_MEDIA = 'app.bsky.embed.recordWithMedia'
BLOB_CID = 'bafkreibme22gw2h7y2h7tg2fhqotaqjucnbc24deqo72b6mkl2egezxhvy'
"""The CID every test blob points at: feedgen indexes no blob, only that there is one."""
STAND_IN_CID = 'bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm'
"""The CID a quote's strong ref carries when the test does not give one."""


def _facet(text: str, fragment: str, feature: dict[str, Any]) -> dict[str, Any]:
    encoded, part = text.encode(), fragment.encode()
    start = encoded.find(part) if part else -1
    if start < 0:
        raise ValueError(f'{fragment!r} is not in the text {text[:80]!r}')
    return {
        '$type': 'app.bsky.richtext.facet',
        'index': {'byteStart': start, 'byteEnd': start + len(part)},
        'features': [feature],
    }


def link_facet(text: str, fragment: str, uri: str) -> dict[str, Any]:
    """A facet making the first `fragment` of `text` a link to `uri`."""
    return _facet(text, fragment, {'$type': LINK, 'uri': uri})


def mention_facet(text: str, fragment: str, did: str) -> dict[str, Any]:
    """A facet making the first `fragment` of `text` (`@alice.test`) a mention of the account `did`."""
    return _facet(text, fragment, {'$type': MENTION, 'did': did})


def tag_facet(text: str, fragment: str) -> dict[str, Any]:
    """A facet making the first `fragment` of `text` (`#cats`) the hashtag it spells, without its `#`."""
    return _facet(text, fragment, {'$type': TAG, 'tag': fragment.lstrip('#')})


def _blob(mime_type: str) -> dict[str, Any]:
    return {'$type': 'blob', 'ref': {'$link': BLOB_CID}, 'mimeType': mime_type, 'size': 1000}


def images_embed(*alts: str) -> dict[str, Any]:
    """An images embed of one image per alt text (`''`: an image without alt text)."""
    images = [{'image': _blob('image/jpeg'), 'alt': alt, 'aspectRatio': {'width': 4, 'height': 3}} for alt in alts]
    return {'$type': IMAGES, 'images': images}


def video_embed(alt: str | None = None) -> dict[str, Any]:
    """A video embed, with alt text when given."""
    embed = {'$type': VIDEO, 'video': _blob('video/mp4')}
    return embed | ({'alt': alt} if alt is not None else {})


def link_card(uri: str, title: str = '', description: str = '') -> dict[str, Any]:
    """An external embed: the link card a post shows for `uri`."""
    return {'$type': EXTERNAL, 'external': {'uri': uri, 'title': title, 'description': description}}


def quote_embed(post: str, cid: str = STAND_IN_CID) -> dict[str, Any]:
    """A record embed quoting the post at the at-uri `post`."""
    return {'$type': RECORD, 'record': {'uri': post, 'cid': cid}}


def quote_with_media(post: str, media: dict[str, Any], cid: str = STAND_IN_CID) -> dict[str, Any]:
    """A post quoting `post` with media (`images_embed(...)`, `video_embed(...)` or `link_card(...)`)."""
    return {'$type': RECORD_WITH_MEDIA, 'record': quote_embed(post, cid), 'media': media}
