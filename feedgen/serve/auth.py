"""Auth: verifying the service JWT a viewer's PDS mints for a feed request, and resolving issuers' keys.

Owns reading `Authorization: Bearer <jwt>`, checking the token (not expired, `aud` equal to this service's DID,
`lxm` equal to the method called, signed by the issuer's current atproto signing key) and resolving signing keys:
did:plc through the configured PLC directory, did:web through the issuer's host, cached in memory and re-resolved
once when a signature does not verify (the key may have rotated). The atproto SDK does the JWT parsing, signature
check and DID resolution. `StandInAuth` reads an anonymous request as a chosen reader, for local trials only.
It never reads the store and knows nothing of feeds: the server decides what an anonymous
viewer may see. Error names are those of Bluesky's own XRPC servers (`BadJwtAudience`, `JwtExpired`, ...).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import unquote

import httpx
from atproto_core.did_doc import DidDocument
from atproto_core.exceptions import AtProtocolError
from atproto_identity.cache.base_cache import DidBaseCache, GetDocCallback
from atproto_identity.cache.models import CachedDid, CachedDidResult
from atproto_identity.did.resolvers.base_resolver import BaseResolver
from atproto_identity.did.resolvers.plc_resolver import DidPlcResolver
from atproto_identity.exceptions import (
    DidWebResolverError,
    PoorlyFormattedDidError,
    UnsupportedDidMethodError,
    UnsupportedDidWebPathError,
)
from atproto_server.auth.jwt import get_jwt_payload, parse_jwt, verify_jwt
from atproto_server.exceptions import InvalidTokenError, TokenDecodeError, TokenInvalidSignatureError

FEED_SKELETON_LXM = 'app.bsky.feed.getFeedSkeleton'
RESOLVE_TIMEOUT_SECONDS = 2.0
"""Per DID lookup; the AppView gives a feed generator 5 s for the whole request."""
CLOCK_SKEW_SECONDS = 30
"""How far in the future a token's `iat` may be (the issuer's clock runs ahead); `exp` is checked strictly."""
MAX_CACHED_DIDS = 100_000
"""Issuers (readers) whose DID documents a server process keeps; a few KB each."""
MAX_CACHED_TOKENS = 10_000
"""Verified tokens a server process remembers until they expire (a PDS mints them for about a minute, and a reader's
app sends the same one for every page it asks for in that time); under 1 KB each."""
_NOT_SERVICE_TOKENS = frozenset({'at+jwt', 'refresh+jwt', 'dpop+jwt'})
_LOOPBACK_HOSTS = frozenset({'localhost', '127.0.0.1'})


class AuthError(Exception):
    """The request's service JWT is not acceptable; `error` is the XRPC error name, the message says why."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error
        self.message = message


class KeyResolver(Protocol):
    """Finds the atproto signing key (`did:key:...`) of a DID; `force_refresh` bypasses any cache."""

    def resolve_atproto_key(self, did: str, force_refresh: bool = False) -> str: ...


def did_web_url(did: str) -> str:
    """Where a did:web document lives: the port percent-decoded (`did:web:localhost%3A8000`), plain http for loopback
    hosts, as Bluesky's AppView does; a did:web with a path is refused."""
    encoded = did.removeprefix('did:web:')
    if ':' in encoded:
        raise UnsupportedDidWebPathError(f'did:web with a path is not supported: {did}')
    host = unquote(encoded)
    scheme = 'http' if host.rsplit(':', 1)[0] in _LOOPBACK_HOSTS else 'https'
    return f'{scheme}://{host}/.well-known/did.json'


class _DidWebResolver(BaseResolver):
    """Resolves did:web identities at `did_web_url`."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout
        self.client = httpx.Client()

    def resolve_without_validation(self, did: str) -> dict[str, Any]:
        try:
            response = self.client.get(did_web_url(did), timeout=self.timeout)
            response.raise_for_status()
            document: dict[str, Any] = response.json()
        except (httpx.HTTPError, ValueError) as error:
            raise DidWebResolverError(f'Error resolving DID {did}') from error
        return document


class DidResolver(BaseResolver):
    """Resolves did:plc identities through the PLC directory at `plc_url` and did:web ones through their host, the
    documents kept in `cache`."""

    def __init__(self, plc_url: str, timeout: float, cache: DidBaseCache) -> None:
        super().__init__(cache)
        self.methods: dict[str, BaseResolver] = {
            'plc': DidPlcResolver(plc_url, timeout),
            'web': _DidWebResolver(timeout),
        }

    def resolve_without_validation(self, did: str) -> dict[str, Any] | None:
        scheme, _, rest = did.partition(':')
        method, _, identifier = rest.partition(':')
        if scheme != 'did' or not method or not identifier:
            raise PoorlyFormattedDidError(f'Invalid DID {did}')
        resolver = self.methods.get(method)
        if resolver is None:
            raise UnsupportedDidMethodError(f'Unsupported DID method: {did}')
        return resolver.resolve_without_validation(did)


class DidCache(DidBaseCache):
    """DID documents in memory, at most `max_entries` (the longest unresolved go first), stale and expired after the
    SDK's default times. One is shared by a server process's request threads."""

    def __init__(self, max_entries: int = MAX_CACHED_DIDS) -> None:
        super().__init__()
        self.max_entries = max_entries
        self.entries: dict[str, CachedDid] = {}
        self._lock = threading.Lock()

    def get(self, did: str) -> CachedDidResult | None:
        cached = self.entries.get(did)
        if cached is None:
            return None
        age = datetime.now(UTC).timestamp() - cached.updated_at.timestamp()
        return CachedDidResult(did, cached.document, cached.updated_at, age > self.stale_ttl, age > self.max_ttl)

    def set(self, did: str, document: DidDocument) -> None:
        with self._lock:
            self.entries.pop(did, None)
            self.entries[did] = CachedDid(document, datetime.now(UTC))
            while len(self.entries) > self.max_entries:
                del self.entries[next(iter(self.entries))]

    def refresh(self, did: str, get_doc_callback: GetDocCallback) -> None:
        document = get_doc_callback()
        if document is not None:
            self.set(did, document)

    def delete(self, did: str) -> None:
        with self._lock:
            self.entries.pop(did, None)

    def clear(self) -> None:
        with self._lock:
            self.entries.clear()


def did_resolver(plc_url: str, timeout: float = RESOLVE_TIMEOUT_SECONDS, cache: DidCache | None = None) -> DidResolver:
    """A caching resolver of did:plc (at `plc_url`) and did:web identities."""
    return DidResolver(plc_url, timeout, cache or DidCache())


class ServiceAuth:
    """Verifies service JWTs addressed to `service_did` for the method `lxm`.

    Args:
        service_did: this feed generator's DID; a token's `aud` must equal it exactly.
        keys: resolves an issuer's signing key (`did_resolver(...)`, or a fake in tests).
        lxm: the XRPC method a token must be scoped to.
    """

    def __init__(self, service_did: str, keys: KeyResolver, lxm: str = FEED_SKELETON_LXM) -> None:
        self.service_did = service_did
        self.keys = keys
        self.lxm = lxm
        self._verified: dict[str, tuple[str, int]] = {}
        """Tokens that passed every check, exactly as sent (signature included), with their issuer and `exp`."""

    def viewer(self, authorization: str | None) -> str | None:
        """The DID the token in an `Authorization` header speaks for, or None when the header is absent.

        Raises:
            AuthError: the header is not a Bearer token, or the token is malformed, expired, for another service
                or method, or not signed by its issuer.
        """
        if not authorization:
            return None
        scheme, _, token = authorization.partition(' ')
        if scheme.lower() != 'bearer' or not token.strip():
            raise AuthError('BadJwt', 'the Authorization header must be "Bearer <service JWT>"')
        return self.verify(token.strip())

    def verify(self, token: str) -> str:
        """Checks `token` and returns its issuer's DID.

        A token that passed every check is remembered until its `exp`: the same token again (byte for byte, so
        with the same signature) is accepted without checking its signature again, the costliest check.

        Raises:
            AuthError: as for `viewer`.
        """
        known = self._verified.get(token)
        if known is not None:
            issuer, expires = known
            if expires > time.time():
                return issuer
            self._verified.pop(token, None)
        issuer, expires = self._check(token)
        if len(self._verified) >= MAX_CACHED_TOKENS:
            now = time.time()
            self._verified = {key: value for key, value in self._verified.items() if value[1] > now}
            while len(self._verified) >= MAX_CACHED_TOKENS:
                self._verified.pop(next(iter(self._verified)), None)
        self._verified[token] = (issuer, expires)
        return issuer

    def _check(self, token: str) -> tuple[str, int]:
        """Every check of `verify`, for a token not seen before; returns its issuer and `exp`."""
        try:
            _, _, header, _ = parse_jwt(token)
            payload = get_jwt_payload(token)
        except TokenDecodeError as error:
            raise AuthError('BadJwt', f'malformed service JWT: {error}') from None
        if header.get('typ') in _NOT_SERVICE_TOKENS:
            raise AuthError('BadJwtType', f'a {header["typ"]} token is not a service JWT')
        if not isinstance(payload.exp, int) or payload.exp <= time.time():
            raise AuthError('JwtExpired', 'the service JWT has expired (or has no exp)')
        if payload.aud != self.service_did:
            raise AuthError('BadJwtAudience', f'the service JWT is for {payload.aud!r}, not {self.service_did!r}')
        lxm = (payload.model_extra or {}).get('lxm')
        if lxm != self.lxm:
            raise AuthError('BadJwtLexiconMethod', f'the service JWT is for the method {lxm!r}, not {self.lxm!r}')
        if not isinstance(payload.iss, str) or not payload.iss.startswith('did:'):
            raise AuthError('BadJwt', 'the service JWT has no issuer DID')
        try:
            # Tries the cached key, then once more with a freshly resolved one (the issuer may have rotated it).
            verify_jwt(token, self.keys.resolve_atproto_key, self.service_did, leeway=CLOCK_SKEW_SECONDS)
        except TokenInvalidSignatureError:
            raise AuthError('BadJwtSignature', f'the service JWT is not signed by the key of {payload.iss}') from None
        except InvalidTokenError as error:
            raise AuthError('BadJwt', f'invalid service JWT: {error}') from None
        except AtProtocolError as error:
            reason = str(error) or type(error).__name__
            raise AuthError('BadJwtIssuer', f'cannot find the signing key of {payload.iss}: {reason}') from None
        return payload.iss, payload.exp


class StandInAuth(ServiceAuth):
    """`ServiceAuth` that reads a request without an `Authorization` header as `stand_in`; a token is verified.

    For trying personalized feeds locally (`feedgen demo`, `FEEDGEN_DEV_VIEWER` on a loopback address): a browser
    or curl reads the feeds as that reader without minting a service JWT.
    """

    def __init__(self, service_did: str, keys: KeyResolver, stand_in: str) -> None:
        super().__init__(service_did, keys)
        self.stand_in = stand_in

    def viewer(self, authorization: str | None) -> str | None:
        return super().viewer(authorization) if authorization else self.stand_in
