"""catch-up: the most engaged posts of the last 24 hours, for a reader coming back after a day away.

    score = likes + reposts + replies      (ties: the post indexed last first)

A job recomputes it every minute for the visible posts made in the last `window_hours` (24) that pass the
feed's filters, and keeps the best 1000 as a snapshot that pages walk by index (`feedgen.ranking.scores`). For a
signed-in reader, posts they have already seen (`interactionSeen` sent through sendInteractions) are left
out, and authors they asked to see less of count 0.25 times their score, more: 2 times (`feedgen.ranking.feedback`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import peewee

from feedgen.ranking import Counts, SnapshotAlgorithm, SnapshotParams, feedback_note, seen_posts


@dataclass(frozen=True)
class CatchUpParams(SnapshotParams):
    window_hours: float = 24.0
    """Only posts made in the last this many hours are ranked."""


class CatchUp(SnapshotAlgorithm):
    name = 'catch-up'
    display_name = 'Catch up'
    description = 'The most liked, reposted and replied-to posts of the last 24 hours, minus what you have seen.'
    ranking = (
        'score = likes + reposts + replies, highest first, for posts of the last 24 hours (window_hours); '
        'recomputed every minute. Posts you have seen are left out; authors you asked to see less of count '
        '0.25 times their score for you, more: 2 times.'
    )
    Params = CatchUpParams
    exclusion = 'not seen by you before'
    incremental = True

    def score_parts(self, counts: Counts, now_ms: int) -> dict[str, Any]:
        return {
            'likes': counts.likes,
            'reposts': counts.reposts,
            'replies': counts.replies,
            'score': counts.likes + counts.reposts + counts.replies,
        }

    def context(self, parts: dict[str, Any], weight: float) -> str:
        window = f'{self.params.window_hours:g}h'
        return f'{parts["score"]} likes, reposts and replies in the last {window}' + feedback_note(weight)

    def excluded(self, viewer: str | None, as_of: int) -> peewee.ModelSelect | None:
        return seen_posts(viewer, as_of) if viewer is not None else None
