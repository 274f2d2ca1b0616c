"""Algorithms: what each built-in algorithm's scheduled job and pages cost on a filled store, and feedback writes.

Uses the serve benchmark's store (`bench.serve.fill`: a day of posts ending at build time, Zipf authors and
popularity, likes, reposts, follows, a viewer following 500 accounts), cached under `bench/out/`, minus what
earlier runs' jobs wrote. For every built-in algorithm with its default parameters (topic with the store's
hashtag, and with a keyword) it times the jobs once (what the scheduler does every minute or ten seconds;
keyword matching's first run tests every post, later ones only new posts), then `Algorithm.page` in-process
as the viewer: the first page (limit 30) and the tenth, `--repeat` times each, and prints a table of medians
and 95th percentiles. Last, the cost of validating and storing a `sendInteractions` body of 20 interactions
(one write transaction).

Usage: `python -m bench.algorithms --posts 200000 --repeat 20`
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import peewee

from bench.measure import load_averages, machine, markdown_table
from bench.serve.fill import cached_store
from feedgen.ranking.algorithm import Algorithm, FeedRequest
from feedgen.ranking.plugins import discover_algorithms
from feedgen.serve.interactions import feedback_rows, parse_interactions, record_feedback
from feedgen.store.models import FeedEntry, Interaction, JobState, Post, ScoredPost, ScoreSnapshot, open_database

LIMIT = 30
DEEP_PAGE = 10


def percentile(values: list[float], share: float) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * share))]


def page_times(algorithm: Algorithm, viewer: str, repeat: int) -> tuple[list[float], list[float], int]:
    """Milliseconds of the first and of the tenth page, and how many items the first page had."""
    first, deep, items = [], [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        page = algorithm.page(FeedRequest(limit=LIMIT, viewer=viewer))
        first.append((time.perf_counter() - started) * 1000)
        items = len(page.items)
        cursor = page.cursor
        for _ in range(DEEP_PAGE - 2):
            cursor = cursor and algorithm.page(FeedRequest(limit=LIMIT, cursor=cursor, viewer=viewer)).cursor
        if cursor:
            started = time.perf_counter()
            algorithm.page(FeedRequest(limit=LIMIT, cursor=cursor, viewer=viewer))
            deep.append((time.perf_counter() - started) * 1000)
    return first, deep, items


def interaction_times(db: peewee.Database, viewer: str, repeat: int) -> list[float]:
    """Milliseconds to validate and store a sendInteractions body of 20 interactions (the endpoint minus its JWT)."""
    posts = [uri for (uri,) in Post.select(Post.uri).limit(20 * repeat).tuples()]
    times = []
    for n in range(repeat):
        body = {
            'interactions': [
                {'item': uri, 'event': 'app.bsky.feed.defs#interactionSeen', 'feedContext': 'bench'}
                for uri in posts[20 * n : 20 * n + 20]
            ]
        }
        started = time.perf_counter()
        record_feedback(db, feedback_rows(viewer, parse_interactions(body), int(time.time() * 1000)))
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--posts', type=int, default=200_000)
    parser.add_argument('--repeat', type=int, default=20)
    args = parser.parse_args()
    path = Path(f'bench/out/serve-{args.posts}.db')
    info = cached_store(path, args.posts)
    db = open_database(path)
    for model in (Interaction, FeedEntry, JobState, ScoredPost, ScoreSnapshot):  # what earlier runs left
        model.delete().execute()
    algorithms = discover_algorithms()
    instances = [(name, cls()) for name, cls in sorted(algorithms.items()) if name != 'topic']
    instances.append((f'topic tags=[{info.tag}]', algorithms['topic'](tags=[info.tag])))
    instances.append(('topic keywords=[love]', algorithms['topic'](tags=[], keywords=['love'])))
    rows = []
    for label, algorithm in instances:
        started = time.perf_counter()
        for job in algorithm.jobs():
            job.run(db)
        job_seconds = time.perf_counter() - started if algorithm.jobs() else 0.0
        first, deep, items = page_times(algorithm, info.viewer, args.repeat)
        deep_p50 = statistics.median(deep) if deep else 0.0
        rows.append((label, job_seconds, items, statistics.median(first), percentile(first, 0.95), deep_p50))
    print(f'{machine()}; load {load_averages()}')
    print(
        f'store: {info.posts:,} posts over a day, {info.likes:,} likes, {info.reposts:,} reposts, '
        f'{info.follows:,} follows; viewer follows {info.viewer_follows}; pages of {LIMIT}, {args.repeat} times\n'
    )
    headers = ('algorithm', 'job run (s)', 'items', 'first page p50 (ms)', 'first page p95 (ms)', 'page 10 p50 (ms)')
    print(markdown_table(headers, rows))
    writes = interaction_times(db, info.viewer, args.repeat)
    print(
        f'\nsendInteractions, 20 interactions a request: p50 {statistics.median(writes):.1f} ms, '
        f'p95 {percentile(writes, 0.95):.1f} ms'
    )
    Interaction.delete().execute()


if __name__ == '__main__':
    main()
