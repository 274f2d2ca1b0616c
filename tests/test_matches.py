"""keyword matches: a job tests each post once, records the matches by key, and pages walk them by index."""

from __future__ import annotations

import peewee
import pytest

from feedgen.authoring.builder import StoreBuilder
from feedgen.ranking.algorithm import FeedRequest
from feedgen.ranking.keyword_matches import entries_stream, has_entry, index_matches
from feedgen.ranking.pagination import streams_page
from feedgen.store.models import FeedEntry, JobState, Post


@pytest.fixture
def store(db: peewee.Database) -> StoreBuilder:
    return StoreBuilder(db)


def wanted(post: Post) -> bool:
    return 'wanted' in post.text


def served(key: str) -> list[str]:
    page = streams_page([entries_stream(key, Post.uri)], FeedRequest(limit=100), context=lambda row: 'x')
    return [item.post for item in page.items]


def test_each_run_tests_the_new_posts_and_records_the_matches(store: StoreBuilder, db: peewee.Database) -> None:
    first = store.make_post('ana', 'wanted one')
    store.make_post('ana', 'not this')
    assert index_matches(db, 'k', wanted) == 2
    second = store.make_post('ana', 'wanted two')
    index_matches(db, 'k', wanted)
    assert served('k') == [second, first]
    assert served('other') == []
    assert JobState.get(JobState.name == 'k').position == Post.get(Post.uri == second).id
    assert has_entry('k', Post.get(Post.uri == first))
    assert not has_entry('other', Post.get(Post.uri == first))


def test_a_reused_post_id_is_tested_again_and_a_replaced_post_is_not_served(
    store: StoreBuilder, db: peewee.Database
) -> None:
    keep = store.make_post('ana', 'wanted, kept')
    newest = store.make_post('ana', 'wanted, then deleted')
    index_matches(db, 'k', wanted)
    store.delete(newest)
    reused = store.make_post('bob', 'wanted, with the deleted post id')
    assert Post.get(Post.uri == reused).id == JobState.get(JobState.name == 'k').position, 'SQLite reused the id'
    assert served('k') == [keep], 'the stale entry does not serve the new post at the old time'
    index_matches(db, 'k', wanted)
    assert served('k') == [reused, keep]


def test_entries_of_pruned_posts_are_dropped(store: StoreBuilder, db: peewee.Database) -> None:
    old = store.make_post('ana', 'wanted, old', at=1_000_000)
    store.make_post('ana', 'wanted, new', at=2_000_000)
    index_matches(db, 'k', wanted)
    Post.delete().where(Post.uri == old).execute()
    index_matches(db, 'k', wanted)
    assert FeedEntry.select().where(FeedEntry.key == 'k').count() == 1
