"""JSON I/O: the Flask JSON provider every feedgen app answers with, backed by orjson.

Owns how responses (skeletons, errors, receipts, the transparency pages' data) are encoded, with orjson because
encoding is a noticeable share of a cheap request's CPU (docs/design.md, "Serving"). Output is compact UTF-8 with
keys in insertion order; values orjson cannot encode natively are written with `str`. Decoding stays the standard
library's (requests carry no JSON body but sendInteractions', and that is small).
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response, current_app
from flask.json.provider import DefaultJSONProvider

OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps_bytes(value: Any) -> bytes:
    """`value` as compact UTF-8 JSON; what orjson cannot encode natively is written with `str`."""
    return orjson.dumps(value, default=str, option=OPTIONS)


class OrjsonProvider(DefaultJSONProvider):
    """Flask's default provider (`loads`, `response` and its mimetype) with orjson encoding."""

    sort_keys = False

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return dumps_bytes(obj).decode()

    def response(self, *args: Any, **kwargs: Any) -> Response:
        """`jsonify`'s response: one value as itself, several as a list, keywords as an object, none as null."""
        if args and kwargs:
            raise TypeError('response() takes either args or kwargs, not both')
        obj = args[0] if len(args) == 1 else (args or kwargs or None)
        return current_app.response_class(dumps_bytes(obj) + b'\n', mimetype=self.mimetype)
