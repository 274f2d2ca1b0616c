"""feedgen.serve.auth: service JWTs checked for signature, audience, method and expiry; issuers resolved and cached."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import peewee
import pytest
from atproto_crypto.consts import P256_JWT_ALG, SECP256K1_JWT_ALG
from atproto_identity.cache.models import CachedDidResult
from flask import Flask, jsonify
from werkzeug.serving import make_server

import feedgen.serve.auth
from feedgen.serve.app import create_app
from feedgen.serve.auth import AuthError, DidCache, ServiceAuth, did_resolver
from feedgen.settings import Settings
from tests.conftest import feed_uri
from tests.jwts import FakeKeys, SigningKey, did_document, service_claims

SERVICE = 'did:web:feeds.example.test'
ALICE = 'did:plc:alice00000000000000000000'
SKELETON = '/xrpc/app.bsky.feed.getFeedSkeleton'


@pytest.fixture
def key() -> SigningKey:
    return SigningKey()


@pytest.fixture
def keys(key: SigningKey) -> FakeKeys:
    return FakeKeys(published={ALICE: key.did_key})


@pytest.fixture
def auth(keys: FakeKeys) -> ServiceAuth:
    return ServiceAuth(SERVICE, keys)


def rejection(auth: ServiceAuth, token: str) -> AuthError:
    with pytest.raises(AuthError) as caught:
        auth.verify(token)
    return caught.value


@pytest.mark.parametrize('alg', [SECP256K1_JWT_ALG, P256_JWT_ALG])
def test_a_valid_token_names_its_issuer(alg: str) -> None:
    key = SigningKey(alg)
    auth = ServiceAuth(SERVICE, FakeKeys(published={ALICE: key.did_key}))
    assert auth.viewer('Bearer ' + key.jwt(service_claims(ALICE, SERVICE))) == ALICE


def test_no_authorization_header_is_an_anonymous_viewer(auth: ServiceAuth, keys: FakeKeys) -> None:
    assert auth.viewer(None) is None
    assert auth.viewer('') is None
    assert keys.resolutions == []


@pytest.mark.parametrize('header', ['Basic YWxpY2U6cHc=', 'Bearer', 'Bearer  ', 'token-without-scheme'])
def test_a_header_that_is_not_a_bearer_token_is_refused(auth: ServiceAuth, header: str) -> None:
    with pytest.raises(AuthError) as caught:
        auth.viewer(header)
    assert caught.value.error == 'BadJwt'


@pytest.mark.parametrize('token', ['garbage', 'a.b.c', 'e30.e30', 'e30.bm90IGpzb24.c2ln'])
def test_a_malformed_token_is_refused(auth: ServiceAuth, token: str) -> None:
    assert rejection(auth, token).error == 'BadJwt'


@pytest.mark.parametrize(
    ('claims', 'error', 'says'),
    [
        ({'aud': 'did:web:someone.else.test'}, 'BadJwtAudience', 'did:web:someone.else.test'),
        ({'lxm': 'app.bsky.feed.getTimeline'}, 'BadJwtLexiconMethod', 'app.bsky.feed.getTimeline'),
        ({'lxm': None}, 'BadJwtLexiconMethod', 'None'),
        ({'exp': 1_600_000_000}, 'JwtExpired', 'expired'),
        ({'exp': None}, 'JwtExpired', 'no exp'),
        ({'iss': None}, 'BadJwt', 'issuer'),
    ],
)
def test_claims_that_do_not_fit_are_refused_with_the_reason(
    auth: ServiceAuth, key: SigningKey, claims: dict[str, Any], error: str, says: str
) -> None:
    token = key.jwt(service_claims(ALICE, SERVICE) | claims)
    refused = rejection(auth, token)
    assert refused.error == error
    assert says in refused.message


def test_an_access_token_is_not_a_service_token(auth: ServiceAuth, key: SigningKey) -> None:
    assert rejection(auth, key.jwt(service_claims(ALICE, SERVICE), typ='at+jwt')).error == 'BadJwtType'


def test_a_token_signed_by_another_key_is_refused_after_one_fresh_resolution(auth: ServiceAuth, keys: FakeKeys) -> None:
    forged = SigningKey().jwt(service_claims(ALICE, SERVICE))
    refused = rejection(auth, forged)
    assert refused.error == 'BadJwtSignature'
    assert ALICE in refused.message
    assert keys.resolutions == [(ALICE, False), (ALICE, True)]


def test_a_tampered_payload_is_refused(auth: ServiceAuth, key: SigningKey) -> None:
    header, _, signature = key.jwt(service_claims(ALICE, SERVICE)).split('.')
    _, tampered, _ = key.jwt(service_claims(ALICE, SERVICE) | {'jti': 'another'}).split('.')
    assert rejection(auth, f'{header}.{tampered}.{signature}').error == 'BadJwtSignature'


def test_a_rotated_key_is_picked_up_by_re_resolving_once(auth: ServiceAuth, keys: FakeKeys, key: SigningKey) -> None:
    assert auth.verify(key.jwt(service_claims(ALICE, SERVICE))) == ALICE
    rotated = SigningKey()
    keys.published[ALICE] = rotated.did_key
    keys.resolutions.clear()
    assert auth.verify(rotated.jwt(service_claims(ALICE, SERVICE))) == ALICE
    assert keys.resolutions == [(ALICE, False), (ALICE, True)]
    keys.resolutions.clear()
    assert auth.verify(rotated.jwt(service_claims(ALICE, SERVICE))) == ALICE
    assert keys.resolutions == [(ALICE, False)]


def test_a_verified_token_is_accepted_again_without_a_signature_check_until_it_expires(
    auth: ServiceAuth, keys: FakeKeys, key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = key.jwt(service_claims(ALICE, SERVICE, ttl=60))
    assert auth.verify(token) == ALICE
    keys.published[ALICE] = SigningKey().did_key  # would fail a fresh check: the second answer is remembered
    keys.resolutions.clear()
    assert auth.verify(token) == ALICE
    assert keys.resolutions == []
    header, payload, signature = token.split('.')
    assert rejection(auth, f'{header}.{payload}.{signature[:-4]}AAAA').error == 'BadJwtSignature'
    clock = time.time() + 61
    monkeypatch.setattr(time, 'time', lambda: clock)
    assert rejection(auth, token).error == 'JwtExpired'


def test_remembered_tokens_are_bounded(auth: ServiceAuth, key: SigningKey, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feedgen.serve.auth, 'MAX_CACHED_TOKENS', 3)
    tokens = [key.jwt(service_claims(ALICE, SERVICE) | {'jti': f'token-{n}'}) for n in range(5)]
    for token in tokens:
        assert auth.verify(token) == ALICE
    assert len(auth._verified) == 3
    assert list(auth._verified) == tokens[2:]


def test_an_issuer_that_cannot_be_resolved_is_refused(auth: ServiceAuth) -> None:
    stranger = 'did:plc:stranger0000000000000000'
    refused = rejection(auth, SigningKey().jwt(service_claims(stranger, SERVICE)))
    assert refused.error == 'BadJwtIssuer'
    assert stranger in refused.message


class Directory:
    """A loopback HTTP server that is a PLC directory (`/<did>`) and a did:web host (`/.well-known/did.json`)."""

    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Any]] = {}
        self.requests: list[str] = []
        app = Flask('directory')

        @app.get('/<path:did>')
        def document(did: str) -> Any:
            self.requests.append(did)
            wanted = self.web_did if did == '.well-known/did.json' else did
            if wanted not in self.documents:
                return jsonify({'message': 'DID not registered'}), 404
            return jsonify(self.documents[wanted])

        self.server = make_server('127.0.0.1', 0, app, threaded=True)
        self.url = f'http://localhost:{self.server.port}'
        self.web_did = f'did:web:localhost%3A{self.server.port}'
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()


@pytest.fixture
def directory() -> Iterator[Directory]:
    served = Directory()
    yield served
    served.server.shutdown()
    served.thread.join()


@pytest.mark.parametrize('method', ['plc', 'web'])
def test_the_resolver_finds_did_plc_and_did_web_issuers_caches_them_and_follows_rotation(
    directory: Directory, method: str
) -> None:
    issuer = ALICE if method == 'plc' else directory.web_did
    key = SigningKey()
    directory.documents[issuer] = did_document(issuer, key)
    auth = ServiceAuth(SERVICE, did_resolver(directory.url))
    assert auth.verify(key.jwt(service_claims(issuer, SERVICE))) == issuer
    assert auth.verify(key.jwt(service_claims(issuer, SERVICE))) == issuer
    assert len(directory.requests) == 1
    rotated = SigningKey(P256_JWT_ALG)
    directory.documents[issuer] = did_document(issuer, rotated)
    assert auth.verify(rotated.jwt(service_claims(issuer, SERVICE))) == issuer
    assert len(directory.requests) == 2
    assert rejection(auth, key.jwt(service_claims(issuer, SERVICE))).error == 'BadJwtSignature'


def test_the_cache_keeps_the_most_recently_resolved_issuers(directory: Directory) -> None:
    issuers = [f'did:plc:reader{n}000000000000000000' for n in range(3)]
    keys = {did: SigningKey() for did in issuers}
    for did, key in keys.items():
        directory.documents[did] = did_document(did, key)
    auth = ServiceAuth(SERVICE, did_resolver(directory.url, cache=DidCache(max_entries=2)))

    def verify(did: str) -> None:
        assert auth.verify(keys[did].jwt(service_claims(did, SERVICE))) == did

    for did in issuers:
        verify(did)
    assert directory.requests == issuers
    verify(issuers[2])
    verify(issuers[0])
    assert directory.requests == [*issuers, issuers[0]]


def test_the_resolver_reports_an_unknown_did(directory: Directory) -> None:
    auth = ServiceAuth(SERVICE, did_resolver(directory.url))
    refused = rejection(auth, SigningKey().jwt(service_claims(ALICE, SERVICE)))
    assert refused.error == 'BadJwtIssuer'
    assert 'Unable to resolve' in refused.message


@pytest.fixture
def served(settings: Settings, db: peewee.Database, keys: FakeKeys) -> Flask:
    return create_app(settings, db=db, auth=ServiceAuth(settings.service_did, keys))


def test_a_personalized_feed_needs_a_viewer(served: Flask) -> None:
    response = served.test_client().get(SKELETON, query_string={'feed': feed_uri('following')})
    assert response.status_code == 401
    assert response.json['error'] == 'AuthRequired'


def test_a_bad_token_is_refused_by_every_feed(served: Flask, key: SigningKey, settings: Settings) -> None:
    wrong_audience = 'Bearer ' + key.jwt(service_claims(ALICE, 'did:web:elsewhere.test'))
    feeds = served.extensions['feedgen']['feeds']
    for rkey in feeds:
        response = served.test_client().get(
            SKELETON, query_string={'feed': feed_uri(rkey)}, headers={'Authorization': wrong_audience}
        )
        assert response.status_code == 401, rkey
        assert response.json['error'] == 'BadJwtAudience'
        assert 'did:web:elsewhere.test' in response.json['message']


def test_a_public_feed_serves_anonymous_and_signed_in_viewers(
    served: Flask, key: SigningKey, settings: Settings
) -> None:
    client = served.test_client()
    token = 'Bearer ' + key.jwt(service_claims(ALICE, settings.service_did))
    assert client.get(SKELETON, query_string={'feed': feed_uri('latest')}).status_code == 200
    signed_in = client.get(SKELETON, query_string={'feed': feed_uri('latest')}, headers={'Authorization': token})
    assert signed_in.status_code == 200
    expired = key.jwt(service_claims(ALICE, settings.service_did, ttl=-5))
    response = client.get(
        SKELETON, query_string={'feed': feed_uri('latest')}, headers={'Authorization': f'Bearer {expired}'}
    )
    assert (response.status_code, response.json['error']) == (401, 'JwtExpired')


def test_a_cached_document_past_its_lifetime_is_resolved_again(directory: Directory) -> None:
    key = SigningKey()
    directory.documents[ALICE] = did_document(ALICE, key)
    cache = DidCache()
    resolver = did_resolver(directory.url, cache=cache)
    auth = ServiceAuth(SERVICE, resolver)
    assert auth.verify(key.jwt(service_claims(ALICE, SERVICE))) == ALICE
    cached = cache.entries[ALICE]
    assert cache.get(ALICE) == CachedDidResult(ALICE, cached.document, cached.updated_at, stale=False, expired=False)
    cached.updated_at -= timedelta(seconds=cache.max_ttl + 1)
    assert cache.get(ALICE).expired  # type: ignore[union-attr]
    auth = ServiceAuth(SERVICE, resolver)  # one that has not verified the token before, with the same cache
    assert auth.verify(key.jwt(service_claims(ALICE, SERVICE))) == ALICE
    assert directory.requests == [ALICE, ALICE]


@pytest.mark.parametrize(
    ('issuer', 'error'), [('did:example:alice', 'BadJwtIssuer'), ('did:plc', 'BadJwtIssuer'), ('alice', 'BadJwt')]
)
def test_an_issuer_of_another_did_method_or_no_did_is_refused_unasked(
    directory: Directory, issuer: str, error: str
) -> None:
    auth = ServiceAuth(SERVICE, did_resolver(directory.url))
    assert rejection(auth, SigningKey().jwt(service_claims(issuer, SERVICE))).error == error
    assert directory.requests == []
