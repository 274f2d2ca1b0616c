"""Settings: every knob of feedgen, read from `FEEDGEN_*` environment variables and an optional `.env`.

Owns parsing and validating configuration. A missing or invalid setting raises `SettingsError`, whose
message names the variable in one line; nothing here touches the network or the database.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import quote

from dotenv import dotenv_values

from feedgen.logs import LOG_FORMATS

PREFIX = 'FEEDGEN_'
DEFAULT_FIREHOSE = 'wss://bsky.network'
DEFAULT_PLC = 'https://plc.directory'
_DID = re.compile(r'^did:[a-z]+:[a-zA-Z0-9._:%-]+$')
_HOSTNAME = re.compile(r'^[a-zA-Z0-9.-]+(:[0-9]{1,5})?$')


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


def is_did(value: str) -> bool:
    """True when `value` has the form of a DID (`did:<method>:<identifier>`)."""
    return bool(_DID.match(value))


def is_loopback(host: str) -> bool:
    """True when `host` (an address to serve on) can be reached from this machine only."""
    if host == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host.strip('[]')).is_loopback
    except ValueError:
        return False


def _did(name: str, value: str) -> str:
    if not is_did(value):
        raise SettingsError(f'{PREFIX}{name}: {value!r} is not a DID (expected did:plc:... or did:web:...)')
    return value


def _dids(name: str, value: str) -> tuple[str, ...]:
    """DIDs separated by commas or spaces, each checked like `_did`, duplicates dropped."""
    return tuple(dict.fromkeys(_did(name, did) for did in value.replace(',', ' ').split()))


def _positive(kind: type[int] | type[float]) -> Callable[[str, str], Any]:
    def parse(name: str, value: str) -> int | float:
        try:
            number = kind(value)
        except ValueError:
            raise SettingsError(f'{PREFIX}{name}: {value!r} is not a {"whole " if kind is int else ""}number') from None
        if number <= 0:
            raise SettingsError(f'{PREFIX}{name}: must be greater than 0, got {number}')
        return number

    return parse


def _not_negative(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise SettingsError(f'{PREFIX}{name}: {value!r} is not a number') from None
    if not number >= 0:
        raise SettingsError(f'{PREFIX}{name}: must be 0 or more, got {number}')
    return number


def _seconds(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise SettingsError(f'{PREFIX}{name}: {value!r} is not a number of seconds') from None
    if not 0 <= number <= 60:
        raise SettingsError(f'{PREFIX}{name}: must be from 0 to 60 seconds, got {number}')
    return number


def _websocket_url(name: str, value: str) -> str:
    if not value.startswith(('ws://', 'wss://')):
        raise SettingsError(f'{PREFIX}{name}: {value!r} must start with ws:// or wss://')
    return value.rstrip('/')


def _http_url(name: str, value: str) -> str:
    if not value.startswith(('http://', 'https://')):
        raise SettingsError(f'{PREFIX}{name}: {value!r} must start with http:// or https://')
    return value.rstrip('/')


def _hostname(name: str, value: str) -> str:
    if not _HOSTNAME.match(value):
        raise SettingsError(f'{PREFIX}{name}: {value!r} is not a host name (example: feeds.example.com)')
    return value


def _text(_name: str, value: str) -> str:
    return value


@dataclass(frozen=True)
class ReceiptPolicy:
    """Which skeleton requests get a stored receipt: a `share` of them, and at most `per_second` a serving process."""

    share: float = 1.0
    per_second: float | None = None
    """None: no cap."""

    def __str__(self) -> str:
        if self.per_second is not None:
            return f'{self.per_second:g}/s'
        return {1.0: 'on', 0.0: 'off'}.get(self.share, f'{self.share:g}')


DEFAULT_RECEIPTS = ReceiptPolicy(per_second=50.0)


def _receipts(name: str, value: str) -> ReceiptPolicy:
    switch = {'on': 1.0, 'true': 1.0, 'yes': 1.0, 'off': 0.0, 'false': 0.0, 'no': 0.0}
    text = value.strip().lower()
    if text in switch:
        return ReceiptPolicy(share=switch[text])
    if text.endswith('/s'):
        try:
            rate = float(text[:-2])
        except ValueError:
            rate = -1.0
        if rate <= 0:
            raise SettingsError(
                f'{PREFIX}{name}: {value!r}: a rate is a number of receipts a second above 0, like 50/s'
            )
        return ReceiptPolicy(per_second=rate)
    try:
        share = float(text)
    except ValueError:
        raise SettingsError(
            f'{PREFIX}{name}: {value!r} is not on, off, a share from 0 to 1 or a rate like 50/s'
        ) from None
    if not 0.0 <= share <= 1.0:
        raise SettingsError(f'{PREFIX}{name}: a share must be from 0 to 1, got {share}')
    return ReceiptPolicy(share=share)


def _log_format(name: str, value: str) -> str:
    if value not in LOG_FORMATS:
        raise SettingsError(f'{PREFIX}{name}: {value!r} is not one of {", ".join(LOG_FORMATS)}')
    return value


def _path(_name: str, value: str) -> Path:
    return Path(value)


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    'hostname': _hostname,
    'service_did': _did,
    'publisher_did': _did,
    'service_endpoint': _http_url,
    'database': _text,
    'firehose': _websocket_url,
    'jetstream': _websocket_url,
    'plc_url': _http_url,
    'labelers': _dids,
    'retention_hours': _positive(float),
    'backfill_hours': _not_negative,
    'batch_size': _positive(int),
    'batch_seconds': _positive(float),
    'stall_seconds': _positive(float),
    'log_format': _log_format,
    'feeds_config': _path,
    'plugins_dir': _path,
    'pds_url': _http_url,
    'publisher_handle': _text,
    'publisher_password': _text,
    'port': _positive(int),
    'workers': _positive(int),
    'threads': _positive(int),
    'receipts': _receipts,
    'graph_wait_seconds': _seconds,
    'graph_max_follows': _positive(int),
    'graph_retry_seconds': _positive(float),
    'dev_viewer': _did,
}


@dataclass(frozen=True)
class Settings:
    """Validated configuration. Build it with `Settings.from_env()` or directly in tests."""

    hostname: str = 'localhost:8000'
    """Public host name (and port, for local use) the feed generator is reached at."""
    service_did: str = ''
    """DID of this feed generator service; default `did:web:<hostname>`."""
    publisher_did: str = ''
    """DID of the account that publishes the feed records; default: the service DID."""
    service_endpoint: str = ''
    """URL written into the DID document; default `https://<hostname>` (`http://` for localhost)."""
    database: str = 'feedgen.db'
    """SQLite file path, or a database URL (`sqlite:///path`, `postgresql://...`)."""
    firehose: str = DEFAULT_FIREHOSE
    """Relay or PDS to subscribe to (`wss://bsky.network`, `ws://localhost:2583`)."""
    jetstream: str = ''
    """A Jetstream v2 server (`ws://localhost:6008`) to read instead of the firehose; empty: read the firehose."""
    plc_url: str = DEFAULT_PLC
    """PLC directory used to resolve did:plc identities (service auth, readers' PDSes, labelers)."""
    labelers: tuple[str, ...] = ()
    """DIDs of the labelers whose `subscribeLabels` streams ingest follows (comma- or space-separated); their labels
    hide posts and accounts from the feeds as each feed's `moderation` policy says."""
    retention_hours: float = 72.0
    """Posts, likes and reposts older than this (by indexing time) are pruned."""
    backfill_hours: float = 24.0
    """On the first start with an empty store, ingest first this many hours of the source's history (at most
    `retention_hours`); 0 starts at the live stream instead."""
    batch_size: int = 10000
    """Firehose events written per database transaction (at most). Live, `batch_seconds` ends a batch long before;
    catching up, big batches share the pages they dirty (docs/design.md, "Ingest")."""
    batch_seconds: float = 0.25
    """A partial batch is written after this many seconds, so feeds stay fresh."""
    stall_seconds: float = 60.0
    """Firehose silence (no message at all) after which the connection counts as dead and ingest reconnects."""
    log_format: str = 'text'
    """`text` (one line per event, for people) or `json` (one JSON object per line, for log collectors)."""
    feeds_config: Path | None = None
    """Optional TOML file declaring feeds (algorithm + parameters)."""
    plugins_dir: Path | None = None
    """Optional folder of extra algorithm modules."""
    pds_url: str = 'https://bsky.social'
    """PDS of the publisher account, for `feedgen publish`."""
    publisher_handle: str = ''
    """Handle or DID of the publisher account, for `feedgen publish`."""
    publisher_password: str = field(default='', repr=False)
    """App password of the publisher account, for `feedgen publish`."""
    port: int = 8000
    """Port `feedgen serve` and `feedgen run` listen on."""
    workers: int = 2
    """Serving processes for `feedgen serve` / `feedgen run`."""
    threads: int = 4
    """Requests a serving process holds at once. They run one at a time, in turns (`feedgen.serve.turns`); the other
    threads let the process go on answering while a request waits for a new reader's follows."""
    receipts: ReceiptPolicy = DEFAULT_RECEIPTS
    """Which skeleton requests' receipts are kept for a day: `on` (all), `off`, a share like `0.1`, or at most a rate
    per serving process like `50/s` (the default: every request's while a process serves fewer a second)."""
    graph_wait_seconds: float = 3.0
    """How long a reader's first request waits for their follows to be read from their PDS (0 to 60 s)."""
    graph_max_follows: int = 100_000
    """The most follow records read from one reader's repository (the newest are kept)."""
    graph_retry_seconds: float = 60.0
    """After a failed read of a reader's follows, the wait before a request of theirs retries it; it doubles with
    each failure, up to 6 hours."""
    dev_viewer: str = ''
    """A reader's DID that requests without a service JWT are read as, to try personalized feeds locally; empty: off.
    Serving refuses it on an address other than loopback (`loopback_only`)."""

    def __post_init__(self) -> None:
        if not self.service_did:
            object.__setattr__(self, 'service_did', 'did:web:' + quote(self.hostname, safe='.-'))
        if not self.publisher_did:
            object.__setattr__(self, 'publisher_did', self.service_did)
        if not self.service_endpoint:
            host = self.hostname.split(':', 1)[0]
            scheme = 'http' if host in ('localhost', '127.0.0.1') else 'https'
            object.__setattr__(self, 'service_endpoint', f'{scheme}://{self.hostname}')

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, env_file: str | Path | None = '.env') -> Settings:
        """Reads settings from `environ` (default `os.environ`), falling back to `env_file` when it exists.

        Raises:
            SettingsError: a variable is set to an invalid value; the message names it.
        """
        values: dict[str, str | None] = {}
        if env_file is not None and Path(env_file).is_file():
            values.update(dotenv_values(env_file))
        values.update(os.environ if environ is None else environ)
        parsed: dict[str, Any] = {}
        for setting in fields(cls):
            raw = values.get(PREFIX + setting.name.upper())
            if raw is not None and raw.strip() != '':
                parsed[setting.name] = _PARSERS[setting.name](setting.name.upper(), raw.strip())
        return cls(**parsed)

    def loopback_only(self, host: str) -> None:
        """Raises `SettingsError` when `dev_viewer` is set and `host`, the address to serve on, is not loopback."""
        if self.dev_viewer and not is_loopback(host):
            raise SettingsError(
                f'{PREFIX}DEV_VIEWER reads every request without a token as {self.dev_viewer}: it is for trying feeds '
                f'on this machine only, and {host} is not a loopback address (serve on 127.0.0.1, or unset it)'
            )

    def require(self, *names: str) -> None:
        """Raises `SettingsError` naming the first of `names` that is empty."""
        for name in names:
            if not getattr(self, name):
                raise SettingsError(f'{PREFIX}{name.upper()} is required for this command')

    @property
    def backfill_window_hours(self) -> float:
        """The hours a first start backfills: `backfill_hours`, never more than `retention_hours`."""
        return min(self.backfill_hours, self.retention_hours)

    @property
    def subscribe_url(self) -> str:
        """The full `subscribeRepos` websocket URL of the configured firehose."""
        base = self.firehose
        if base.endswith('/xrpc/com.atproto.sync.subscribeRepos'):
            return base
        if base.endswith('/xrpc'):
            base = base[: -len('/xrpc')]
        return base + '/xrpc/com.atproto.sync.subscribeRepos'
