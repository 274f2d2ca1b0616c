"""Moderation: a feed's label policy, which labelers' labels leave a post or an account out of it.

Owns `Moderation` (the `[feed.moderation]` table of the feeds config: the label values hidden whichever subscribed
labeler put them, `hide`, by default `DEFAULT_HIDE`; and values hidden only when a given labeler put them,
`labelers`), `moderate`, which drops from a page the posts that labels in force hide (one indexed lookup of the page's
posts and authors, `feedgen.store.labels`), and `label_exclusion`, which names the label, its labeler and its time
for `/explain`. Algorithms never see labels: every feed's pages pass through `moderate` (`feedgen.ranking.plugins`).
Reads the store, never writes it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from feedgen.ranking.algorithm import Exclusion, Page
from feedgen.store.labels import LabelState, labels_in_force

DEFAULT_HIDE = ('!hide', '!takedown', 'porn', 'sexual', 'nudity', 'graphic-media')
"""What a feed hides unless its config says otherwise: the protocol's global takedown and hide labels, and adult and
graphic content, from every subscribed labeler."""


@dataclass(frozen=True)
class Moderation:
    """Which label values hide a post (or, on an account, all its posts) from a feed."""

    hide: tuple[str, ...] = DEFAULT_HIDE
    """Values hidden whichever subscribed labeler (`FEEDGEN_LABELERS`) put them."""
    labelers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(labeler DID, values) pairs: values hidden only when that labeler put them."""

    def hiding(self, labels: list[LabelState]) -> list[LabelState]:
        """The labels among `labels` that hide their subject from the feed."""
        by_labeler = dict(self.labelers)
        return [label for label in labels if label.val in self.hide or label.val in by_labeler.get(label.src, ())]

    def describe(self) -> dict[str, Any]:
        """The policy as `/algorithms` shows it."""
        return {'hide': list(self.hide), 'labelers': {did: list(values) for did, values in self.labelers}}


def parse_moderation(spec: Any) -> Moderation:
    """The `[feed.moderation]` table `spec` (None: the default policy).

    Raises:
        ValueError: the table has unknown keys, or values that are not lists of label values.
    """
    if spec is None:
        return Moderation()
    if not isinstance(spec, dict) or set(spec) - {'hide', 'labelers'}:
        raise ValueError('moderation must be a table with `hide` (a list of label values) and `labelers`')
    hide = _values('moderation.hide', spec.get('hide', list(DEFAULT_HIDE)))
    labelers = spec.get('labelers', {})
    if not isinstance(labelers, dict) or not all(did.startswith('did:') for did in labelers):
        raise ValueError('moderation.labelers must be a table of labeler DIDs to lists of label values')
    pairs = tuple((did, _values(f'moderation.labelers.{did!r}', values)) for did, values in labelers.items())
    return Moderation(hide, pairs)


def _values(name: str, values: Any) -> tuple[str, ...]:
    if not isinstance(values, list) or not all(isinstance(value, str) and value for value in values):
        raise ValueError(f'{name} must be a list of label values, like ["porn", "!hide"]')
    return tuple(dict.fromkeys(values))


def moderate(moderation: Moderation, page: Page) -> Page:
    """`page` without the posts that labels in force hide from a feed with `moderation`."""
    if not page.items or not (moderation.hide or moderation.labelers):
        return page
    labelled = labels_in_force({item.post for item in page.items})
    hidden = {uri for uri, labels in labelled.items() if moderation.hiding(labels)}
    if not hidden:
        return page
    items = [item for item in page.items if item.post not in hidden]
    return dataclasses.replace(page, items=items, trace=page.trace | {'labelled': len(page.items) - len(items)})


def label_exclusion(moderation: Moderation, uri: str) -> Exclusion | None:
    """The label in force that hides the post at `uri` from a feed with `moderation`, with who put it and when."""
    hiding = moderation.hiding(labels_in_force([uri]).get(uri, []))
    if not hiding:
        return None
    label = min(hiding, key=lambda found: found.cts_ms)
    subject = "its author's account" if label.uri.startswith('did:') else 'it'
    message = f'labeler {label.src} labelled {subject} {label.val} at {label.cts}, and the feed hides {label.val}'
    return Exclusion('labelled', message, label.as_dict())
