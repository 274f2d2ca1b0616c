"""algorithms/topic: hashtags, keywords, languages, replies and media filters; newest first; index range scans."""

from __future__ import annotations

import peewee
import pytest
from feedgen_algorithms.topic import Topic

from feedgen.authoring.builder import StoreBuilder
from feedgen.authoring.contract import check_contract
from feedgen.ranking.algorithm import FeedRequest, InvalidParams
from tests.captured import read_truth, replay_at
from tests.conftest import CAPTURE_20
from tests.paging import walk, walk_items
from tests.plans import ordered_plans

IMAGES = 'app.bsky.embed.images'


@pytest.fixture
def store(db: peewee.Database) -> StoreBuilder:
    return StoreBuilder(db)


def run_jobs(topic: Topic, db: peewee.Database) -> None:
    for job in topic.jobs():
        job.run(db)


def test_every_filter_must_pass_and_posts_come_newest_first(store: StoreBuilder) -> None:
    both_tags = store.make_post('ana', 'two tags', tags=['python', 'rust'], langs=['pt-BR'], embed=IMAGES)
    store.make_post('ana', 'english', tags=['python'], langs=['en'], embed=IMAGES)
    store.make_post('ana', 'no media', tags=['rust'], langs=['pt'])
    store.make_post('ana', 'a reply', tags=['rust'], langs=['pt'], embed=IMAGES, reply_to=both_tags)
    store.make_post('ana', 'other tag', tags=['go'], langs=['pt'], embed=IMAGES)
    newest = store.make_post('ana', 'video', tags=['Rust'], langs=['pt'], embed='app.bsky.embed.video')
    topic = Topic(tags=['#python', 'rust'], langs=['pt'], no_replies=True, media_only=True)
    items = walk_items(topic, 1)
    assert [item.post for item in items] == [newest, both_tags]
    assert items[0].context == 'has #python or #rust, in pt, no replies, with images or video, newest first'
    explanation = topic.explain(both_tags, FeedRequest(limit=1))
    assert explanation['filters'] == {
        'tags': ['python', 'rust'],
        'langs': ['pt'],
        'no_replies': 'not a reply',
        'media_only': 'images',
    }


def test_a_post_with_several_of_the_hashtags_comes_once(store: StoreBuilder) -> None:
    posts = [store.make_post('ana', f'post {n}', tags=[['a'], ['b'], ['a', 'b']][n % 3]) for n in range(20)]
    for limit in (1, 3, 100):
        assert walk(Topic(tags=['a', 'b']), limit) == posts[::-1]


def test_keywords_match_whole_words_in_any_case_once_the_job_ran(store: StoreBuilder, db: peewee.Database) -> None:
    match = store.make_post('ana', 'I love PYTHON.')
    store.make_post('ana', 'so pythonic')
    phrase = store.make_post('ana', 'a Feed  Generator?'.replace('  ', ' '))
    store.make_post('ana', 'feed, generator')
    topic = Topic(tags=[], keywords=['python', 'feed generator'])
    assert walk(topic, 10) == [], 'keyword matches are indexed by the job'
    run_jobs(topic, db)
    assert walk(topic, 1) == [phrase, match]
    late = store.make_post('ana', 'python again')
    assert walk(topic, 10) == [phrase, match]
    run_jobs(topic, db)
    assert walk(topic, 10) == [late, phrase, match]
    assert topic.explain(match, FeedRequest(limit=1))['filters'] == {'keywords': ['python']}
    assert topic.explain(store.make_post('ana', 'python, not yet tested'), FeedRequest(limit=1)) is None


def test_keywords_combine_with_the_other_filters(store: StoreBuilder, db: peewee.Database) -> None:
    wanted = store.make_post('ana', 'atproto news', tags=['dev'], langs=['en'])
    store.make_post('ana', 'atproto news', tags=['other'], langs=['en'])
    store.make_post('ana', 'atproto notícias', tags=['dev'], langs=['pt'])
    store.make_post('ana', 'nothing to see', tags=['dev'], langs=['en'])
    topic = Topic(tags=['dev'], langs=['en'], keywords=['atproto'])
    run_jobs(topic, db)
    assert walk(topic, 10) == [wanted]
    assert topic.page(FeedRequest(limit=1)).trace['filters'] == ['has #dev', "mentions 'atproto'", 'in en']


def test_every_page_is_an_index_range_scan(store: StoreBuilder, db: peewee.Database) -> None:
    for n in range(30):
        store.make_post(
            f'a{n % 3}', 'python' if n % 2 else 'rust', tags=['x', 'y'][n % 2 :], langs=['en', 'pt'][n % 2 :]
        )
    for topic, table, search in (
        (Topic(tags=['x', 'y'], langs=['pt']), 'post_term', 'PRIMARY KEY (term=? AND (sort_at,post_id)<(?,?))'),
        (Topic(tags=[], langs=['en']), 'post_term', 'PRIMARY KEY (term=? AND (sort_at,post_id)<(?,?))'),
        (Topic(tags=[], keywords=['python']), 'feed_entry', 'PRIMARY KEY (key=? AND (sort_at,post_id)<(?,?))'),
        (Topic(tags=[], no_replies=True), 'post', 'INDEX post_sort_at_id (sort_at<?)'),
    ):
        run_jobs(topic, db)
        cursor = topic.page(FeedRequest(limit=3)).cursor
        plans = ordered_plans(db, lambda t=topic, c=cursor: t.page(FeedRequest(limit=3, cursor=c)), table)
        assert plans, topic.params
        for query_plan in plans:
            assert search in query_plan, query_plan
            assert 'TEMP B-TREE' not in query_plan, query_plan


def test_topic_passes_the_contract(store: StoreBuilder) -> None:
    for n in range(10):
        store.make_post(f'a{n % 3}', f'python post {n}' if n % 3 else 'other', tags=['py'] if n % 2 else ['rs'])
    check_contract(Topic(tags=['py', 'rs']), store)
    check_contract(Topic(tags=[], keywords=['python']), store)


def test_the_capture_s_hashtag_feed_is_its_tagged_posts_newest_first(db: peewee.Database) -> None:
    truth = read_truth(CAPTURE_20)
    replay_at(db, CAPTURE_20, truth.end_ms + 1000)
    order = list(truth.posts)
    tagged = [uri for uri, post in truth.visible().items() if 'science' in post.post.tags]
    expected = sorted(tagged, key=lambda uri: (truth.sort_at[uri], order.index(uri)), reverse=True)
    assert len(expected) > 10
    assert walk(Topic(tags=['science']), 4) == expected


@pytest.mark.parametrize(
    ('params', 'message'),
    [
        ({'tags': ['two words']}, 'topic: tags: a hashtag must be one non-empty word'),
        ({'langs': ['']}, 'topic: langs: a language code must be one non-empty word'),
        ({'keywords': ['  ']}, 'topic: keywords: a keyword must not be empty'),
        ({'keywords': 'python'}, "topic.keywords: expected a list, got 'python'"),
        ({'media_only': 'yes'}, "topic.media_only: expected bool, got 'yes'"),
    ],
)
def test_bad_parameters_are_refused_with_a_clear_message(params: dict, message: str) -> None:
    with pytest.raises(InvalidParams) as error:
        Topic(**params)
    assert message in str(error.value)
