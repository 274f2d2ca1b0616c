"""Label frames: one message of `com.atproto.label.subscribeLabels`, decoded, and each label checked and signed.

Owns the mapping from a stream message (a DAG-CBOR header `{op, t}` and body, libipld's decoding, as the atproto
SDK's) to a `LabelsFrame` of raw labels, an `ErrorFrame` or an `Info`; the checks one label must pass before it is
stored (`parse_label`: the fields the lexicon requires, of the right types, from the labeler being read); and its
signature (`signed`: secp256k1 or P-256 over the DAG-CBOR of the label without `sig`, `atproto_crypto`'s check). The
SDK's pydantic label model is not used: it rejects the `sig` bytes of real labels, and re-encoding a model would not
give back the bytes that were signed. Pure functions: no socket, no store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import libipld
from atproto_core.exceptions import AtProtocolError
from atproto_crypto.verify import verify_signature

from feedgen.ingest.events import ErrorFrame, Info
from feedgen.ingest.fields import FrameError, split_frame
from feedgen.store.labels import LabelState

MAX_VALUE_CHARS = 128
"""The lexicon's limit on a label value."""


@dataclass(frozen=True)
class LabelsFrame:
    """A `#labels` message: the labeler's sequence number and its labels, as decoded (not yet checked)."""

    seq: int
    labels: list[dict[str, Any]]


class LabelError(Exception):
    """A label that cannot be stored; `reason` is a short label for the rejection counters."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f'{reason}: {message}')
        self.reason = reason


def decode_labels_frame(message: bytes | str) -> LabelsFrame | ErrorFrame | Info:
    """Decodes one binary websocket message of `subscribeLabels`.

    Raises:
        FrameError: the message is text or not DAG-CBOR, its header is not a known one, or its body lacks `seq`
            or `labels`.
    """
    header, body = split_frame(message)
    op, kind = header.get('op'), header.get('t')
    if op == -1:
        return ErrorFrame(error=str(body.get('error', '')), message=body.get('message'))
    if op != 1:
        raise FrameError('bad_header', f'op {op!r}')
    if kind == '#info':
        return Info(name=str(body.get('name', '')), message=body.get('message'))
    if kind != '#labels':
        raise FrameError('unknown_type', repr(kind)[:40])
    seq, labels = body.get('seq'), body.get('labels')
    if not isinstance(seq, int) or isinstance(seq, bool) or not isinstance(labels, list):
        raise FrameError('bad_body', '#labels without an integer seq and a list of labels')
    return LabelsFrame(seq, labels)


def parse_label(raw: Any, labeler: str, seq: int) -> LabelState:
    """The label `raw` of labeler `labeler`'s frame `seq`, checked.

    Raises:
        LabelError: `malformed` (a field missing or of the wrong type, a subject neither an at-uri nor a DID),
            `wrong_src` (put by another labeler than the stream's), `unsigned` (no `sig`).
    """
    if not isinstance(raw, dict):
        raise LabelError('malformed', 'a label is not a map')
    src, uri, val, cts = (raw.get(name) for name in ('src', 'uri', 'val', 'cts'))
    if not all(isinstance(value, str) and value for value in (src, uri, val, cts)):
        raise LabelError('malformed', 'src, uri, val and cts must be non-empty strings')
    assert isinstance(src, str) and isinstance(uri, str) and isinstance(val, str) and isinstance(cts, str)
    if src != labeler:
        raise LabelError('wrong_src', f'{src} on the stream of {labeler}')
    if not uri.startswith(('at://', 'did:')) or len(val) > MAX_VALUE_CHARS:
        raise LabelError('malformed', f'subject {uri[:80]!r} or value {val[:40]!r}')
    cid, neg, exp = raw.get('cid', ''), raw.get('neg', False), raw.get('exp')
    if not isinstance(cid, str) or not isinstance(neg, bool) or not (exp is None or isinstance(exp, str)):
        raise LabelError('malformed', 'cid, neg or exp of the wrong type')
    if not isinstance(raw.get('sig'), bytes):
        raise LabelError('unsigned', 'no sig bytes')
    return LabelState(src, uri, val, cts, _ms(cts), cid, neg, None if exp is None else _ms(exp), seq)


def signed(raw: dict[str, Any], key: str) -> bool:
    """Whether `raw`'s `sig` is the signature of `key` (a `did:key`) over the rest of the label."""
    unsigned = {name: value for name, value in raw.items() if name != 'sig'}
    try:
        return bool(verify_signature(key, libipld.encode_dag_cbor(unsigned), raw['sig']))
    except (AtProtocolError, ValueError, TypeError):
        return False


def _ms(timestamp: str) -> int:
    try:
        return int(datetime.fromisoformat(timestamp).timestamp() * 1000)
    except ValueError:
        raise LabelError('malformed', f'{timestamp[:40]!r} is not an ISO 8601 time') from None
