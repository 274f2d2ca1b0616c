"""Labels: labelers' labels stored by the protocol's rules, and the labels in force on a page of posts.

Owns the rules of `com.atproto.label.defs#label` state: one row per (labeler `src`, subject `uri`, value `val`); a
newer label (by `cts`, then by the labeler's `seq`) replaces the row, a negation (`neg`) included, so an older label
replayed after a newer one changes nothing. Expiry (`exp`) and a label's `cid` (it covers that version of the post
only) are checked when reading. `store_labels` writes a labeler's labels, its stream cursor and its running totals
in one transaction, so a restart, even after kill -9, resumes exactly after what is stored. It never touches a
socket or checks a signature (`feedgen.ingest.labelers` does, before calling it).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import peewee

from feedgen.store.models import Label, LabelerState, Post, write_transaction

TOTALS = ('received', 'applied', 'negated', 'rejected')
"""The running totals kept per labeler: labels received, applied and negated by value, rejected by reason."""


@dataclass(frozen=True)
class LabelState:
    """One label as stored: who put which value on what, when, and whether it is a negation."""

    src: str
    uri: str
    val: str
    cts: str
    cts_ms: int
    cid: str = ''
    neg: bool = False
    exp_ms: int | None = None
    seq: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The label as `/explain` shows it (the protocol's field names)."""
        shown: dict[str, Any] = {'src': self.src, 'uri': self.uri, 'val': self.val, 'cts': self.cts}
        return shown | ({'cid': self.cid} if self.cid else {})


def labeler_cursor(did: str) -> int | None:
    """The saved stream cursor of labeler `did`: the seq of the last frame stored, or None before any."""
    state = LabelerState.get_or_none(LabelerState.did == did)
    return state.cursor if state is not None else None


def store_labels(
    db: peewee.Database, did: str, cursor: int | None, labels: Sequence[LabelState], counts: Mapping[str, Counter[str]]
) -> None:
    """Stores `labels` of labeler `did` by the replacement rule, with `cursor` and the totals' increase `counts`
    (keys of `TOTALS`), in one transaction."""
    newer = (peewee.EXCLUDED.cts_ms > Label.cts_ms) | (
        (peewee.EXCLUDED.cts_ms == Label.cts_ms) & (peewee.EXCLUDED.seq >= Label.seq)
    )
    replaced = {field: getattr(peewee.EXCLUDED, field.name) for field in (Label.cid, Label.neg, Label.cts)}
    replaced |= {field: getattr(peewee.EXCLUDED, field.name) for field in (Label.cts_ms, Label.exp_ms, Label.seq)}
    with write_transaction(db):
        for label in labels:
            Label.insert(
                src=label.src,
                uri=label.uri,
                val=label.val,
                cid=label.cid,
                neg=label.neg,
                cts=label.cts,
                cts_ms=label.cts_ms,
                exp_ms=label.exp_ms,
                seq=label.seq,
            ).on_conflict(conflict_target=[Label.src, Label.uri, Label.val], update=replaced, where=newer).execute()
        state = LabelerState.get_or_none(LabelerState.did == did)
        totals = json.loads(state.totals) if state is not None else {}
        for name, counter in counts.items():
            merged = Counter(totals.get(name, {}))
            merged.update(counter)
            totals[name] = dict(merged)
        values = {
            LabelerState.cursor: cursor if cursor is not None else (state.cursor if state is not None else None),
            LabelerState.totals: json.dumps(totals, sort_keys=True),
            LabelerState.updated_at: int(time.time() * 1000),
        }
        LabelerState.insert({LabelerState.did: did, **values}).on_conflict(
            conflict_target=[LabelerState.did], update=values
        ).execute()


def forget_labelers(db: peewee.Database, keep: Iterable[str]) -> int:
    """Deletes the labels, cursors and totals of every labeler not in `keep` (no longer subscribed: its labels would
    otherwise hide posts for good); returns how many labels went."""
    keep = list(keep)
    with write_transaction(db):
        deleted: int = Label.delete().where(Label.src.not_in(keep)).execute()
        LabelerState.delete().where(LabelerState.did.not_in(keep)).execute()
    return deleted


def labeler_totals() -> dict[str, dict[str, dict[str, int]]]:
    """Every labeler's running totals, by DID: `{did: {received: {val: n}, rejected: {reason: n}, ...}}`."""
    return {state.did: json.loads(state.totals) for state in LabelerState.select()}


def labels_in_force(posts: Iterable[str], now_ms: int | None = None) -> dict[str, list[LabelState]]:
    """The labels in force on each of the posts at the at-uris `posts` that are in the store: on the post (its
    version, when the label names a cid) or on its author's account; neither negated nor expired. Posts without
    any are left out of the answer."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    rows = list(Post.select(Post.uri, Post.cid, Post.author).where(Post.uri.in_(list(posts))).tuples())
    if not rows:
        return {}
    subjects = {uri for uri, _, _ in rows} | {author for _, _, author in rows}
    active = Label.select().where(
        Label.uri.in_(list(subjects)),
        Label.neg == False,  # noqa: E712 (peewee expression)
        Label.exp_ms.is_null() | (Label.exp_ms > now_ms),
    )
    by_subject: dict[str, list[LabelState]] = {}
    for label in active:
        state = LabelState(
            label.src, label.uri, label.val, label.cts, label.cts_ms, label.cid, label.neg, label.exp_ms, label.seq
        )
        by_subject.setdefault(label.uri, []).append(state)
    found: dict[str, list[LabelState]] = {}
    for uri, cid, author in rows:
        labels = [label for label in by_subject.get(uri, ()) if label.cid in ('', cid)] + by_subject.get(author, [])
        if labels:
            found[uri] = labels
    return found
