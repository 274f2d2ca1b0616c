"""Signing keys and service JWTs made locally, the way a PDS makes them, for auth tests without a network."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

from atproto_crypto.consts import P256_CURVE_ORDER, P256_JWT_ALG, SECP256K1_CURVE_ORDER, SECP256K1_JWT_ALG
from atproto_crypto.did import format_did_key, format_multikey
from atproto_identity.exceptions import DidNotFoundError
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from feedgen.serve.auth import FEED_SKELETON_LXM

CURVES = {SECP256K1_JWT_ALG: (ec.SECP256K1(), SECP256K1_CURVE_ORDER), P256_JWT_ALG: (ec.SECP256R1(), P256_CURVE_ORDER)}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b'=').decode()


class SigningKey:
    """A fresh secp256k1 (`ES256K`, what a PDS uses) or P-256 (`ES256`) key pair."""

    def __init__(self, alg: str = SECP256K1_JWT_ALG) -> None:
        curve, self.order = CURVES[alg]
        self.alg = alg
        self.private = ec.generate_private_key(curve)
        self.public = self.private.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    @property
    def did_key(self) -> str:
        return format_did_key(self.alg, self.public)

    @property
    def multikey(self) -> str:
        return format_multikey(self.alg, self.public)

    def sign(self, data: bytes) -> bytes:
        """A compact `r||s` signature in low-S form, as atproto requires."""
        r, s = decode_dss_signature(self.private.sign(data, ec.ECDSA(hashes.SHA256())))
        s = min(s, self.order - s)
        return r.to_bytes(32, 'big') + s.to_bytes(32, 'big')

    def jwt(self, payload: dict[str, Any], typ: str = 'JWT') -> str:
        header = _b64(json.dumps({'typ': typ, 'alg': self.alg}).encode())
        body = _b64(json.dumps(payload).encode())
        signing_input = f'{header}.{body}'.encode()
        return f'{header}.{body}.{_b64(self.sign(signing_input))}'


def service_claims(iss: str, aud: str, lxm: str | None = FEED_SKELETON_LXM, ttl: int = 60) -> dict[str, Any]:
    """The claims a PDS puts in a service JWT (`getServiceAuth`)."""
    now = int(time.time())
    claims: dict[str, Any] = {'iat': now, 'iss': iss, 'aud': aud, 'exp': now + ttl, 'jti': f'{iss}-{now}'}
    if lxm is not None:
        claims['lxm'] = lxm
    return claims


def did_document(did: str, key: SigningKey) -> dict[str, Any]:
    """An atproto DID document whose `#atproto` verification method is `key`."""
    return {
        '@context': ['https://www.w3.org/ns/did/v1', 'https://w3id.org/security/multikey/v1'],
        'id': did,
        'alsoKnownAs': [],
        'verificationMethod': [
            {'id': f'{did}#atproto', 'type': 'Multikey', 'controller': did, 'publicKeyMultibase': key.multikey}
        ],
        'service': [],
    }


@dataclass
class FakeKeys:
    """A key resolver with a cache: `published` is what a fresh resolution finds, `cached` what was seen last."""

    published: dict[str, str] = field(default_factory=dict)
    cached: dict[str, str] = field(default_factory=dict)
    resolutions: list[tuple[str, bool]] = field(default_factory=list)

    def resolve_atproto_key(self, did: str, force_refresh: bool = False) -> str:
        self.resolutions.append((did, force_refresh))
        if force_refresh or did not in self.cached:
            if did not in self.published:
                raise DidNotFoundError(f'Unable to resolve DID {did}')
            self.cached[did] = self.published[did]
        return self.cached[did]
