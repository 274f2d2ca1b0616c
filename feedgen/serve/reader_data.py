"""Reader data: the endpoints where a reader reads, and erases, everything the service keeps about them.

Owns a Flask blueprint of two XRPC methods of this service's own, each answering only the reader whose service JWT
the request carries (verified as for skeletons: this service's DID as `aud`, the method's NSID as `lxm`, signed by
the reader's key; a PDS mints one with `com.atproto.server.getServiceAuth`):

- `GET /xrpc/org.openfeedgen.reader.getData` (lxm `READ_LXM`): their feedback and seen posts, the receipts of their
  personalized pages, their follow graph and its sync state, and counts of their public records indexed;
- `POST /xrpc/org.openfeedgen.reader.deleteData` (lxm `ERASE_LXM`, a scope of its own, so a token minted to read
  cannot erase): deletes all but the public records, and forgets in this process that their follows are synced, so
  their next personalized page reads them again from their repository.

A `did` parameter, when given, must be the token's own. What is kept and erased is `feedgen.store.reader_data`'s.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify, request

from feedgen.serve.receipts import flush_requests
from feedgen.serve.xrpc import XrpcError, signed_in_reader
from feedgen.store.reader_data import erase_reader, reader_data

READ_LXM = 'org.openfeedgen.reader.getData'
ERASE_LXM = 'org.openfeedgen.reader.deleteData'
log = logging.getLogger(__name__)

reader_endpoints = Blueprint('reader_data', __name__)


def own_reader(lxm: str, what: str) -> str:
    """The reader the request's service JWT (scoped to `lxm`) speaks for, who must be the `did` asked about, if any.

    Raises:
        XrpcError: no token (401 AuthRequired), or a `did` parameter naming someone else (403 NotYourData).
        AuthError: the token is forged, expired, for another service or method (401, saying which check failed).
    """
    auth = current_app.extensions['feedgen']['auth']
    reader = signed_in_reader(auth, lxm, request.headers.get('Authorization'), what)
    asked = request.args.get('did') or reader
    if asked != reader:
        message = f'the service JWT speaks for {reader}: only {asked[:300]} can read or erase their own data'
        raise XrpcError(403, 'NotYourData', message)
    return reader


@reader_endpoints.get(f'/xrpc/{READ_LXM}')
def get_data() -> Response:
    reader = own_reader(READ_LXM, 'reading your data')
    flush_requests()  # the receipts of the pages this process just served
    return jsonify(reader_data(reader))


@reader_endpoints.post(f'/xrpc/{ERASE_LXM}')
def delete_data() -> Response:
    reader = own_reader(ERASE_LXM, 'erasing your data')
    state = current_app.extensions['feedgen']
    flush_requests()
    erased = erase_reader(state['db'], reader)
    if state['graphs'] is not None:
        state['graphs'].forget(reader)
    log.info('erased the data of a reader: %s', erased)
    return jsonify({'did': reader, 'erased': erased})
