"""Publish: the `app.bsky.feed.generator` records that make the served feeds visible to Bluesky clients.

Owns logging in to the publisher's PDS, the record each served feed should have (this service's DID, its display
name, and a description that says how it ranks, where its source is and which version of it runs), comparing that
with what the publisher's repository holds, and creating, updating or deleting records; plus the `feedgen publish`
and `feedgen unpublish` commands. Only the fields it manages are compared and written: an avatar or other fields
set in a Bluesky client are kept. It never touches the store or the firehose.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click
from atproto import Client, Session, models
from atproto_client.exceptions import NetworkError, RequestErrorBase
from atproto_client.models.utils import get_model_as_dict

from feedgen.ranking.plugins import Feed, discover_algorithms, load_feeds
from feedgen.settings import Settings

GENERATOR = 'app.bsky.feed.generator'
MANAGED_FIELDS = ('did', 'displayName', 'description', 'acceptsInteractions')
"""The record fields `publish` owns; any other field of an existing record is left as it is."""
MAX_DISPLAY_NAME = 24
MAX_DESCRIPTION = 300
"""Grapheme limits of the lexicon; counted here in code points, which is never fewer."""
MIN_SHOWN = 40
"""A feed's own description shortened below this many characters is left out of the record's description."""


class PublishError(Exception):
    """Publishing failed; the message says why in one line."""


def feed_description(feed: Feed) -> str:
    """What a reader sees: how the feed ranks, where its source is and the version that runs, after what it shows.

    Within Bluesky's 300 characters, what the feed shows is shortened first, then how it ranks; never the source.
    """
    algorithm = type(feed.algorithm)
    tail = f'Source: {algorithm.source()} (version {feed.version}).'
    ranking = _shorten(f'Ranking: {algorithm.ranking}', MAX_DESCRIPTION - len(tail) - 1) if algorithm.ranking else ''
    room = MAX_DESCRIPTION - len(tail) - len(ranking) - 2
    shown = _shorten(feed.description, room) if room >= MIN_SHOWN else ''
    return ' '.join(part for part in (shown, ranking, tail) if part)


def _shorten(text: str, room: int) -> str:
    return text if len(text) <= room else text[: room - 1].rstrip() + '…'


def wanted_fields(feed: Feed, service_did: str) -> dict[str, str | bool]:
    """The managed fields of the record `feed` should have.

    Raises:
        PublishError: the display name is longer than Bluesky allows.
    """
    if len(feed.display_name) > MAX_DISPLAY_NAME:
        raise PublishError(
            f'feed {feed.rkey!r}: display name {feed.display_name!r} is longer than {MAX_DISPLAY_NAME} characters'
        )
    return {
        'did': service_did,
        'displayName': feed.display_name,
        'description': feed_description(feed),
        'acceptsInteractions': feed.algorithm.accepts_interactions,
    }


@dataclass(frozen=True)
class Change:
    """What publishing does to one record: `create`, `update`, `unchanged`, or `stale` (published, not served)."""

    rkey: str
    action: str
    record: dict[str, Any]
    """The whole record as it should be (for `stale`: as it is)."""
    changed: tuple[str, ...] = ()
    """For `update`: the managed fields that differ."""
    cid: str | None = None
    """The CID of the existing record, so an update fails rather than overwrite a concurrent change."""


@dataclass
class Publisher:
    """A logged-in publisher account and its generator records."""

    client: Client
    did: str
    pds_url: str
    existing: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    """rkey -> (cid, record) of every `app.bsky.feed.generator` record in the repository."""

    @classmethod
    def login(cls, settings: Settings) -> Publisher:
        """Logs in with `FEEDGEN_PUBLISHER_HANDLE` / `_PASSWORD` and reads the existing generator records.

        Raises:
            PublishError: the PDS is unreachable, refuses the password, or the account is not
                `settings.publisher_did` (the DID the served feed URIs are under).
        """
        settings.require('publisher_handle', 'publisher_password')
        client = Client(base_url=settings.pds_url + '/xrpc')
        _call(
            f'log in to {settings.pds_url} as {settings.publisher_handle}',
            client.login,
            settings.publisher_handle,
            settings.publisher_password,
            fetch_bsky_profile=False,
        )
        did = Session.decode(client.export_session_string()).did  # `client.me` would need an AppView
        if did != settings.publisher_did:
            raise PublishError(
                f'{settings.publisher_handle} is {did}, but the feeds are served under FEEDGEN_PUBLISHER_DID='
                f'{settings.publisher_did}; set FEEDGEN_PUBLISHER_DID={did}'
            )
        publisher = cls(client, did, settings.pds_url)
        publisher.existing = publisher._read_records()
        return publisher

    def _read_records(self) -> dict[str, tuple[str, dict[str, Any]]]:
        records: dict[str, tuple[str, dict[str, Any]]] = {}
        cursor = None
        while True:
            params = models.ComAtprotoRepoListRecords.Params(
                repo=self.did, collection=GENERATOR, limit=100, cursor=cursor
            )
            page = _call(f'list the feed records of {self.did}', self.client.com.atproto.repo.list_records, params)
            for record in page.records:
                records[record.uri.rsplit('/', 1)[-1]] = (record.cid, get_model_as_dict(record.value))
            cursor = page.cursor
            if not cursor or not page.records:
                return records

    def plan(self, feeds: dict[str, Feed], service_did: str) -> list[Change]:
        """What publishing `feeds` would change, feed by feed, then the records of this service no feed serves."""
        changes = []
        for feed in feeds.values():
            wanted = wanted_fields(feed, service_did)
            if feed.rkey not in self.existing:
                record = {'$type': GENERATOR, **wanted, 'createdAt': self.client.get_current_time_iso()}
                changes.append(Change(feed.rkey, 'create', record))
                continue
            cid, record = self.existing[feed.rkey]
            changed = tuple(name for name in MANAGED_FIELDS if record.get(name) != wanted[name])
            action = 'update' if changed else 'unchanged'
            changes.append(Change(feed.rkey, action, record | wanted, changed, cid))
        for rkey, (cid, record) in sorted(self.existing.items()):
            if rkey not in feeds and record.get('did') == service_did:
                changes.append(Change(rkey, 'stale', record, cid=cid))
        return changes

    def apply(self, changes: list[Change]) -> None:
        """Writes the `create` and `update` changes."""
        for change in changes:
            if change.action not in ('create', 'update'):
                continue
            data = models.ComAtprotoRepoPutRecord.Data(
                repo=self.did, collection=GENERATOR, rkey=change.rkey, record=change.record, swap_record=change.cid
            )
            _call(f'write the feed record {change.rkey}', self.client.com.atproto.repo.put_record, data)

    def unpublish(self, rkey: str) -> bool:
        """Deletes the generator record `rkey`; False when there was none."""
        if rkey not in self.existing:
            return False
        data = models.ComAtprotoRepoDeleteRecord.Data(
            repo=self.did, collection=GENERATOR, rkey=rkey, swap_record=self.existing[rkey][0]
        )
        _call(f'delete the feed record {rkey}', self.client.com.atproto.repo.delete_record, data)
        del self.existing[rkey]
        return True

    def uri(self, rkey: str) -> str:
        return f'at://{self.did}/{GENERATOR}/{rkey}'


def _call(doing: str, request: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Runs an XRPC call, turning the SDK's errors into a one-line `PublishError` saying what failed."""
    try:
        return request(*args, **kwargs)
    except NetworkError as error:
        if error.response is not None:
            raise PublishError(f'cannot {doing}: {error}') from None
        cause = error.__cause__
        reason = f'{type(cause).__name__}: {cause}' if cause else 'no response'
        raise PublishError(f'cannot {doing}: the PDS does not answer ({reason})') from None
    except RequestErrorBase as error:
        raise PublishError(f'cannot {doing}: {error}') from None


def _describe(change: Change, uri: str) -> str:
    if change.action == 'update':
        return f'update     {change.rkey}  {uri}  ({", ".join(change.changed)} changed)'
    if change.action == 'stale':
        return f'stale      {change.rkey}  {uri}  (points at this service but no feed serves it; see unpublish)'
    return f'{change.action:<10} {change.rkey}  {uri}'


@click.command(name='publish')
@click.option('--dry-run', is_flag=True, help='Show what would change and change nothing.')
@click.pass_context
def publish_command(ctx: click.Context, dry_run: bool) -> None:
    """Create or update the app.bsky.feed.generator record of every served feed (idempotent)."""
    settings: Settings = ctx.obj['settings']
    feeds = load_feeds(discover_algorithms(settings.plugins_dir), settings.feeds_config)
    publisher = Publisher.login(settings)
    changes = publisher.plan(feeds, settings.service_did)
    for change in changes:
        line = _describe(change, publisher.uri(change.rkey))
        click.echo(f'would {line}' if dry_run and change.action in ('create', 'update') else line)
    if not dry_run:
        publisher.apply(changes)
    written = sum(change.action in ('create', 'update') for change in changes)
    verb = 'would write' if dry_run else 'wrote'
    click.echo(f'{verb} {written} of {len(feeds)} feed records for {settings.service_did}', err=True)


@click.command(name='unpublish')
@click.argument('rkey')
@click.pass_context
def unpublish_command(ctx: click.Context, rkey: str) -> None:
    """Delete the app.bsky.feed.generator record RKEY of the publisher account."""
    publisher = Publisher.login(ctx.obj['settings'])
    if not publisher.unpublish(rkey):
        raise PublishError(f'{publisher.uri(rkey)} does not exist')
    click.echo(f'deleted {publisher.uri(rkey)}')
