"""Labels: labelers' labels stored by the protocol's rules, and the labels in force on a page of posts.

Owns the rules of `com.atproto.label.defs#label` state: one row per (labeler `src`, subject `uri`, value `val`); a
newer label (by `cts`, then by the labeler's `seq`) replaces the row, a negation (`neg`) included, so an older label
replayed after a newer one changes nothing. Expiry (`exp`) and a label's `cid` (it covers that version of the post
only) are checked when reading. `store_labels` writes a labeler's labels, its stream cursor and its running totals
in one transaction, so a restart, even after kill -9, resumes exactly after what is stored. It never touches a
socket or checks a signature (`feedgen.ingest.labelers` does, before calling it).
"""

from __future__ import annotations

import functools
import json
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import peewee

from feedgen.store.batches import Batches
from feedgen.store.models import Label, LabelerState, Post, write_transaction
from feedgen.store.prepared import Prepared, marker
from feedgen.store.statements import delete_keys

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


def prune_labels(cutoff_ms: int, batches: Batches) -> int:
    """Deletes the labels on posts the store no longer holds, put before `cutoff_ms` (the retention's cutoff): such a
    post is in no feed again, so they would only grow the table. Labels on accounts, and on posts still held or not
    yet indexed (a label may come before its post), are kept. Walks the table once, in `batches`; returns how many
    labels went."""
    after: tuple[str, str, str] = ('', '', '')
    key = peewee.Tuple(Label.src, Label.uri, Label.val)
    removed = 0

    def walk(size: int) -> int:
        nonlocal after, removed
        read = list(
            Label.select(Label.src, Label.uri, Label.val, Label.cts_ms)
            .where(key > peewee.Tuple(*after))
            .order_by(Label.src, Label.uri, Label.val)
            .limit(size)
            .tuples()
        )
        if not read:
            return 0
        after = read[-1][:3]
        old = [row[:3] for row in read if row[3] < cutoff_ms and row[1].startswith('at://')]
        held = {uri for (uri,) in Post.select(Post.uri).where(Post.uri.in_({row[1] for row in old})).tuples()}
        gone = [row for row in old if row[1] not in held]
        delete_keys(batches.db, Label, ('src', 'uri', 'val'), gone)
        removed += len(gone)
        return len(read)

    batches.run(walk)
    return removed


def labeler_totals() -> dict[str, dict[str, dict[str, int]]]:
    """Every labeler's running totals, by DID: `{did: {received: {val: n}, rejected: {reason: n}, ...}}`."""
    return {state.did: json.loads(state.totals) for state in LabelerState.select()}


def labels_in_force(posts: Iterable[str], now_ms: int | None = None) -> dict[str, list[LabelState]]:
    """The labels in force on each of the posts at the at-uris `posts`: on the post (on its stored version, when the
    label names a cid) or on its author's account; neither negated nor expired. Posts without any are left out of
    the answer. One prepared, indexed query for a page; a second only when a label names a cid; none when no
    labeler's label is stored (a deployment without `FEEDGEN_LABELERS`)."""
    if next(_ANY_LABEL.tuples(), None) is None:
        return {}
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    authors = {uri: uri.split('/')[2] for uri in posts if uri.startswith('at://') and uri.count('/') >= 3}
    subjects = list({*authors, *authors.values()})
    by_subject: dict[str, list[LabelState]] = {}
    for start in range(0, len(subjects), _MAX_SUBJECTS):
        chunk = subjects[start : start + _MAX_SUBJECTS]
        size = next(size for size in _SIZES if size >= len(chunk))
        for row in _active_labels(size).run(*chunk, *[''] * (size - len(chunk)), now_ms):
            by_subject.setdefault(row.uri, []).append(LabelState(**row._asdict()))
    if not by_subject:
        return {}
    versioned = [uri for uri in authors if any(label.cid for label in by_subject.get(uri, ()))]
    cids = dict(Post.select(Post.uri, Post.cid).where(Post.uri.in_(versioned)).tuples()) if versioned else {}
    found: dict[str, list[LabelState]] = {}
    for uri, author in authors.items():
        on_post = [label for label in by_subject.get(uri, ()) if label.cid in ('', cids.get(uri))]
        if labels := on_post + by_subject.get(author, []):
            found[uri] = labels
    return found


_SIZES = (8, 64, 128, 256)
"""The lengths of the subject lists the prepared queries take (a shorter list is padded with '', no subject)."""
_MAX_SUBJECTS = _SIZES[-1]
_NOW = -987_654_321


_ANY_LABEL = Prepared(Label.select(Label.uri).limit(1), ())
"""Whether any label is stored: one step of the table."""


@functools.cache
def _active_labels(size: int) -> Prepared:
    """The labels in force on `size` subjects (markers), at a time (a marker): a page's lookup, compiled once."""
    subjects = [marker(f'subject{n}') for n in range(size)]
    columns = (Label.src, Label.uri, Label.val, Label.cts, Label.cts_ms, Label.cid, Label.exp_ms, Label.seq)
    query = Label.select(*columns).where(
        Label.uri.in_(subjects),
        Label.neg == False,  # noqa: E712 (peewee expression)
        Label.exp_ms.is_null() | (Label.exp_ms > _NOW),
    )
    return Prepared(query, (*subjects, _NOW))
