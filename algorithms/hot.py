"""hot: what is gaining likes, reposts and replies fastest, by a published formula.

The formula (also the algorithm's `ranking` text, and what `/explain` shows part by part):

    engagement = likes + 2 x reposts + replies
    score      = engagement / (age_hours + 2) ^ 1.5

`age_hours` counts from when the post was made (its createdAt, capped at the moment the network saw it) to
when the scores were computed. A repost counts double: it shows the post to a whole new audience. The `+ 2`
keeps a post a minute old with one like from beating everything; the exponent 1.5 (Hacker News' gravity)
lets a post a day old stay up only with many times the engagement of a new one.

Scores are not computed per request: a job recomputes them every minute for the visible posts of the last
`window_hours` (48) that pass the feed's filters and have any engagement, and keeps the best 1000 as a
snapshot that pages walk by index (`feedgen.ranking.scores`). A reader's "show less like this" multiplies the
author's scores by 0.25 in their pages, "show more" by 2 (`feedgen.ranking.feedback`).
"""

from __future__ import annotations

from typing import Any

from feedgen.ranking import HOUR_MS, Counts, SnapshotAlgorithm, SnapshotParams, feedback_note

REPOST_WEIGHT = 2
AGE_OFFSET_HOURS = 2.0
GRAVITY = 1.5


class Hot(SnapshotAlgorithm):
    name = 'hot'
    display_name = 'Hot'
    description = 'Posts gaining likes, reposts and replies fastest right now.'
    ranking = (
        'score = (likes + 2 x reposts + replies) / (age in hours + 2) ^ 1.5, highest first; recomputed every '
        'minute for posts of the last 48 hours (window_hours) with any engagement. Authors you asked to see '
        'less of count 0.25 times their score for you, more: 2 times.'
    )
    Params = SnapshotParams
    incremental = True

    def score_parts(self, counts: Counts, now_ms: int) -> dict[str, Any]:
        engagement = counts.likes + REPOST_WEIGHT * counts.reposts + counts.replies
        age_hours = max(0, now_ms - counts.sort_at) / HOUR_MS
        decay = (age_hours + AGE_OFFSET_HOURS) ** GRAVITY
        return {
            'likes': counts.likes,
            'reposts': counts.reposts,
            'replies': counts.replies,
            'engagement': engagement,
            'age_hours': round(age_hours, 3),
            'decay': round(decay, 3),
            'score': engagement / decay,
        }

    def context(self, parts: dict[str, Any], weight: float) -> str:
        reason = (
            f'hot: {parts["likes"]} likes, {parts["reposts"]} reposts, {parts["replies"]} replies '
            f'in {parts["age_hours"]:.0f}h'
        )
        return reason + feedback_note(weight)
