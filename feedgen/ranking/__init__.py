"""Ranking: the algorithm plugin API, finding plugins and turning them into feeds, and the read-only helpers
algorithms page with (keyset pagination, filters, score snapshots, personal rankings, reader feedback).

Depends on the store (and on ingest for the plugin indexer API); never touches the network.

This package's `__all__` is feedgen's public API for algorithms: the plugin API, the helpers built-in algorithms
page and rank with, and the store's models they read. Algorithms import from here (`from feedgen.ranking import
Algorithm, Page`); every other module of feedgen is private and may change in any release. `tests/test_public_api.py`
fails when a name is added or removed without its list changing, and docs/algorithms.md documents each one.
"""

from feedgen.ingest.plugin_indexers import CreatedRecord, RecordIndexer
from feedgen.ranking.algorithm import (
    MAX_LIMIT,
    Algorithm,
    Exclusion,
    FeedRequest,
    InvalidCursor,
    InvalidParams,
    Item,
    Job,
    NoParams,
    Page,
    Pinned,
    Reposted,
    build_params,
)
from feedgen.ranking.feedback import feedback_note, seen_posts, weigh
from feedgen.ranking.filters import FilterParams, filter_exclusion, filtered_streams, match_filters
from feedgen.ranking.follow_counts import followed_post_counts
from feedgen.ranking.kept_posts import KeptPosts
from feedgen.ranking.kept_votes import KeptVotes, Vote
from feedgen.ranking.keyword_matches import entries_stream, has_entry, index_matches
from feedgen.ranking.pagination import Stream, keyset_page, ranked_page, streams_page
from feedgen.ranking.personal import (
    SESSION_DEPTH,
    Candidate,
    Ordering,
    PersonalAlgorithm,
    Ranking,
    decay,
    rank_score,
    rows,
)
from feedgen.ranking.post_index import term_streams, terms_of
from feedgen.ranking.scores import HOUR_MS, SCORE_SCALE, Counts, SnapshotAlgorithm, SnapshotParams, require_positive
from feedgen.ranking.timelines import Timelines, TimelineSource
from feedgen.store.models import Actor, Follow, Like, Post, Repost, alt_complete, hiding_self_labels, visible_posts
from feedgen.store.plugin_tables import PluginTable
from feedgen.store.prepared import Prepared, Row, marker
from feedgen.store.terms import (
    domain_term,
    lang_term,
    link_term,
    mention_term,
    quote_term,
    reply_to_term,
    tag_term,
    thread_of_term,
)

__all__ = [
    'HOUR_MS',
    'MAX_LIMIT',
    'SCORE_SCALE',
    'SESSION_DEPTH',
    'Actor',
    'Algorithm',
    'Candidate',
    'Counts',
    'CreatedRecord',
    'Exclusion',
    'FeedRequest',
    'FilterParams',
    'Follow',
    'InvalidCursor',
    'InvalidParams',
    'Item',
    'Job',
    'KeptPosts',
    'KeptVotes',
    'Like',
    'NoParams',
    'Ordering',
    'Page',
    'PersonalAlgorithm',
    'Pinned',
    'PluginTable',
    'Post',
    'Prepared',
    'Ranking',
    'RecordIndexer',
    'Repost',
    'Reposted',
    'Row',
    'SnapshotAlgorithm',
    'SnapshotParams',
    'Stream',
    'TimelineSource',
    'Timelines',
    'Vote',
    'alt_complete',
    'build_params',
    'decay',
    'domain_term',
    'entries_stream',
    'feedback_note',
    'filter_exclusion',
    'filtered_streams',
    'followed_post_counts',
    'has_entry',
    'hiding_self_labels',
    'index_matches',
    'keyset_page',
    'lang_term',
    'link_term',
    'marker',
    'match_filters',
    'mention_term',
    'quote_term',
    'rank_score',
    'ranked_page',
    'reply_to_term',
    'require_positive',
    'rows',
    'seen_posts',
    'streams_page',
    'tag_term',
    'term_streams',
    'terms_of',
    'thread_of_term',
    'visible_posts',
    'weigh',
]
