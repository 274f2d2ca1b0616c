"""Fields: read the typed fields of a decoded event body, the one rule set both event decoders share.

Owns `FrameError`, the split of an XRPC stream message into its header and body (`split_frame`, for the firehose
and label streams), and the readers of a frame body's fields (`seq`, strings, DIDs) that the firehose decoder
(`feedgen.ingest.events`) and the Jetstream decoder (`feedgen.ingest.jetstream`) apply alike, so a body either
source sends is accepted or refused by the same rules. Pure functions: no socket, no database.
"""

from __future__ import annotations

from typing import Any

import libipld

from feedgen.ingest.records import Rejected

MAX_SEQ = 2**63 - 1
"""The largest `seq` accepted: the store (like the relays' own databases) keeps it as a signed 64-bit integer."""


class FrameError(Rejected):
    """The message is not a decodable frame."""


def split_frame(message: bytes | str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The DAG-CBOR header and body of one binary XRPC stream message (libipld's decoding, as the atproto SDK's).

    Raises:
        FrameError: the message is text, is not DAG-CBOR, or its header or body is not a map.
    """
    if isinstance(message, str):
        raise FrameError('unexpected_text', 'a text message on a binary stream')
    try:
        header, body = libipld.decode_dag_cbor_multi(message)
    except (ValueError, TypeError) as error:
        raise FrameError('bad_cbor', str(error)) from None
    if not isinstance(header, dict) or not isinstance(body, dict):
        raise FrameError('bad_header', 'header or body is not a map')
    return header, body


def read_seq(body: dict[str, Any]) -> int:
    """The body's `seq`, a non-negative 64-bit integer."""
    seq = body.get('seq')
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= MAX_SEQ:
        raise FrameError('bad_body', f'seq {seq!r}')
    return seq


def read_str(body: dict[str, Any], key: str) -> str:
    """The string at `key`."""
    value = body.get(key)
    if not isinstance(value, str):
        raise FrameError('bad_body', f'{key} is not a string')
    return value


def read_optional_str(body: dict[str, Any], key: str) -> str | None:
    """The string at `key`, or None when it is missing or not a string."""
    value = body.get(key)
    return value if isinstance(value, str) else None


def read_did(body: dict[str, Any], key: str) -> str:
    """The DID at `key`."""
    value = read_str(body, key)
    if not value.startswith('did:'):
        raise FrameError('bad_body', f'{key} {value[:40]!r} is not a DID')
    return value
