"""feedgen.publish: the feed records say how each feed ranks and where its source is; publishing is idempotent."""

from __future__ import annotations

from pathlib import Path

import pytest
from atproto import Client, models

from feedgen.publish import GENERATOR, MAX_DESCRIPTION, Publisher, PublishError, feed_description, wanted_fields
from feedgen.ranking.algorithm import Algorithm
from feedgen.ranking.plugins import Feed, discover_algorithms, load_feeds, make_feed
from feedgen.settings import Settings
from tests.atnet import FEEDS, Account, Feedgen, Network, create_account, free_port

SERVICE = 'did:web:feeds.example.test'
PUBLISHER = 'did:plc:publisher0000000000000000'


@pytest.fixture(scope='module')
def feeds() -> dict[str, Feed]:
    return load_feeds(discover_algorithms())


def offline_publisher(existing: dict[str, tuple[str, dict]]) -> Publisher:
    return Publisher(Client(base_url=f'http://127.0.0.1:{free_port()}/xrpc'), PUBLISHER, 'http://pds.invalid', existing)


class Sample(Algorithm):
    name = 'sample'
    display_name = 'Sample'
    description = 'Sample posts.'
    ranking = 'Newest first.'
    source_url = 'https://example.test/sample.py'


def sample_feed(description: str) -> Feed:
    return Feed(rkey='sample', algorithm=Sample(), display_name='Sample', description=description, params={})


def test_the_description_says_what_how_where_and_which_version() -> None:
    feed = sample_feed('Sample posts.')
    assert (
        feed_description(feed)
        == f'Sample posts. Ranking: Newest first. Source: https://example.test/sample.py (version {feed.version}).'
    )


def test_a_long_description_is_shortened_first_and_never_loses_source_or_version(feeds: dict[str, Feed]) -> None:
    text = feed_description(sample_feed('word ' * 200))
    assert len(text) == MAX_DESCRIPTION
    assert text.startswith('word word')
    assert text.endswith(
        f'… Ranking: Newest first. Source: https://example.test/sample.py (version {sample_feed("").version}).'
    )
    for feed in feeds.values():
        algorithm = type(feed.algorithm)
        text = feed_description(feed)
        assert len(text) <= MAX_DESCRIPTION, feed.rkey
        assert text.endswith(f'Source: {algorithm.source()} (version {feed.version}).')
        assert 'Ranking: ' + algorithm.ranking[:20] in text


def test_feeds_that_use_reader_feedback_publish_accepts_interactions(feeds: dict[str, Feed]) -> None:
    accepting = {rkey for rkey, feed in feeds.items() if wanted_fields(feed, SERVICE)['acceptsInteractions']}
    assert accepting == {'hot', 'catch-up', 'network', 'quiet'}
    published = {'$type': GENERATOR, **wanted_fields(feeds['latest'], SERVICE), 'createdAt': 'x'}
    del published['acceptsInteractions']
    update = offline_publisher({'hot': ('cid', {**published, 'displayName': feeds['hot'].display_name})})
    change = next(change for change in update.plan(feeds, SERVICE) if change.rkey == 'hot')
    assert 'acceptsInteractions' in change.changed
    assert change.record['acceptsInteractions'] is True


def test_a_display_name_longer_than_bluesky_allows_is_refused() -> None:
    feed = make_feed(discover_algorithms(), {'rkey': 'x', 'algorithm': 'latest', 'display_name': 'A' * 25})
    with pytest.raises(PublishError, match='longer than 24'):
        wanted_fields(feed, SERVICE)


def test_the_plan_creates_updates_keeps_and_reports_stale_records(feeds: dict[str, Feed]) -> None:
    latest, topic = feeds['latest'], feeds['topic']
    current = {'$type': GENERATOR, **wanted_fields(latest, SERVICE), 'createdAt': '2026-01-01T00:00:00Z'}
    outdated = {
        '$type': GENERATOR,
        **wanted_fields(topic, SERVICE),
        'displayName': 'Old name',
        'avatar': {'$type': 'blob', 'ref': {'$link': 'bafkrei'}, 'mimeType': 'image/png', 'size': 1},
        'createdAt': '2026-01-02T00:00:00Z',
    }
    retired = {'$type': GENERATOR, 'did': SERVICE, 'displayName': 'Retired', 'createdAt': '2026-01-03T00:00:00Z'}
    elsewhere = {'$type': GENERATOR, 'did': 'did:web:other.test', 'displayName': 'Other', 'createdAt': 'x'}
    publisher = offline_publisher(
        {'latest': ('cid-l', current), 'topic': ('cid-t', outdated), 'old': ('cid-o', retired), 'x': ('c', elsewhere)}
    )
    changes = {change.rkey: change for change in publisher.plan(feeds, SERVICE)}
    assert changes['latest'].action == 'unchanged'
    assert (changes['topic'].action, changes['topic'].changed, changes['topic'].cid) == (
        'update',
        ('displayName',),
        'cid-t',
    )
    assert changes['topic'].record['displayName'] == topic.display_name
    assert changes['topic'].record['avatar'] == outdated['avatar']
    assert changes['topic'].record['createdAt'] == '2026-01-02T00:00:00Z'
    assert changes['following'].action == 'create'
    assert changes['following'].record['did'] == SERVICE
    assert changes['old'].action == 'stale'
    assert 'x' not in changes
    moved = {change.rkey: change for change in publisher.plan(feeds, 'did:web:moved.example.test')}
    assert moved['latest'].changed == ('did',)


def test_an_unreachable_pds_is_one_clear_line(tmp_path: Path) -> None:
    settings = Settings(
        pds_url=f'http://127.0.0.1:{free_port()}', publisher_handle='someone.test', publisher_password='pw'
    )
    with pytest.raises(PublishError, match=r'^cannot log in to http://127\.0\.0\.1:\d+ as someone\.test: the PDS does'):
        Publisher.login(settings)


@pytest.fixture
def publisher(network: Network) -> Account:
    return create_account(network, 'pub')


def records(account: Account) -> dict[str, tuple[str, dict]]:
    params = models.ComAtprotoRepoListRecords.Params(repo=account.did, collection=GENERATOR, limit=100)
    listed = account.client.com.atproto.repo.list_records(params).records
    return {record.uri.rsplit('/', 1)[-1]: (record.cid, record.value) for record in listed}


def publish(feedgen: Feedgen) -> None:
    """What `feedgen publish` does, in this process (a `feedgen` process takes seconds to import its libraries)."""
    feeds = load_feeds(discover_algorithms(), feedgen.settings.feeds_config)
    publisher = Publisher.login(feedgen.settings)
    publisher.apply(publisher.plan(feeds, feedgen.settings.service_did))


@pytest.mark.atnet
def test_the_publisher_must_be_the_account_the_feeds_are_served_under(
    network: Network, publisher: Account, tmp_path: Path
) -> None:
    feedgen = Feedgen(network, publisher, tmp_path)
    feedgen.env['FEEDGEN_PUBLISHER_DID'] = 'did:plc:someoneelse000000000000'
    settings = Settings.from_env(feedgen.env, env_file=None)
    with pytest.raises(PublishError, match=f'is {publisher.did}, but .* set FEEDGEN_PUBLISHER_DID={publisher.did}$'):
        Publisher.login(settings)


@pytest.mark.atnet
def test_publish_writes_each_feed_once_and_then_changes_nothing(
    network: Network, publisher: Account, tmp_path: Path
) -> None:
    feedgen = Feedgen(network, publisher, tmp_path, port=8123)
    first = feedgen.command('publish')
    assert first.returncode == 0, first.stderr
    assert first.stdout.count('create') == len(FEEDS)
    published = records(publisher)
    assert set(published) == set(FEEDS)
    following = published['following'][1]
    assert following.did == 'did:web:localhost%3A8123'
    assert following.display_name == 'Following'
    assert 'Ranking: ' in following.description and 'algorithms/following.py' in following.description

    again = feedgen.command('publish')
    assert again.returncode == 0, again.stderr
    assert again.stdout.count('unchanged') == len(FEEDS)
    assert f'wrote 0 of {len(FEEDS)}' in again.stderr
    assert records(publisher) == published

    moved = Feedgen(network, publisher, tmp_path, port=8124)
    dry = moved.command('publish', '--dry-run')
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count('would update') == len(FEEDS) and '(did changed)' in dry.stdout
    assert records(publisher) == published
    publish(moved)
    assert {record.did for _, record in records(publisher).values()} == {'did:web:localhost%3A8124'}


@pytest.mark.atnet
def test_unpublish_deletes_one_record_and_says_when_there_is_none(
    network: Network, publisher: Account, tmp_path: Path
) -> None:
    feedgen = Feedgen(network, publisher, tmp_path)
    publish(feedgen)
    (tmp_path / 'feeds.toml').write_text("[[feed]]\nrkey = 'latest'\nalgorithm = 'latest'\n")
    stale = feedgen.command('publish', '--dry-run')
    assert stale.stdout.count('stale ') == len(FEEDS) - 1 and 'stale      following' in stale.stdout
    deleted = feedgen.command('unpublish', 'following')
    assert deleted.returncode == 0, deleted.stderr
    assert set(records(publisher)) == set(FEEDS) - {'following'}
    missing = feedgen.command('unpublish', 'following')
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1] == f'error: {feedgen.feed_uri("following")} does not exist'


@pytest.mark.atnet
@pytest.mark.parametrize(
    ('override', 'says'),
    [
        ({'FEEDGEN_PUBLISHER_PASSWORD': 'wrong'}, 'Invalid identifier or password'),
        ({'FEEDGEN_PDS_URL': 'http://127.0.0.1:9'}, 'the PDS does not answer'),
    ],
)
def test_login_problems_are_one_line_without_a_traceback(
    network: Network, publisher: Account, tmp_path: Path, override: dict[str, str], says: str
) -> None:
    feedgen = Feedgen(network, publisher, tmp_path)
    feedgen.env |= override
    result = feedgen.command('publish')
    assert result.returncode == 2
    assert 'Traceback' not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith('error: ')
    assert says in result.stderr
    assert records(publisher) == {}
