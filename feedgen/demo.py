"""The demo: what `feedgen demo` serves beyond `feedgen run`, chosen from the capture it replays.

Owns reading a capture's story (who follows whom, which posts survive and how much they were liked) to pick the
demo's viewer and its `/explain` example (the demo serves with `feedgen.serve.auth.StandInAuth`, reading a request
without a service JWT as that viewer, so the personalized feeds answer in a browser).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from feedgen.ingest.events import (
    Account,
    Commit,
    Identity,
    PostCreate,
    RecordDelete,
    SubjectCreate,
    decode_frame,
)
from feedgen.ingest.fields import FrameError
from feedgen.ingest.records import FOLLOW, LIKE, POST, REPOST


@dataclass(frozen=True)
class DemoStory:
    """What a capture leaves behind, as far as the demo's choices need.

    Attributes:
        viewer: The account that follows the most others at the end (ties: the first to appear), or None.
        viewer_handle: Its last handle, or its DID when the capture names none.
        follows: How many accounts the viewer follows.
        example_post: The surviving post liked and reposted the most (ties: the latest), or None.
    """

    viewer: str | None
    viewer_handle: str
    follows: int
    example_post: str | None


def read_story(frames: Iterable[bytes]) -> DemoStory:
    """Replays `frames` in memory (frames that do not decode are passed over) and returns the demo's choices."""
    handles: dict[str, str] = {}
    gone: set[str] = set()
    follows: dict[str, str] = {}
    """Follow record URI -> the DID it follows; the follower is the URI's repository."""
    posts: dict[str, str] = {}
    """Post URI -> author."""
    engagement: Counter[str] = Counter()
    for message in frames:
        try:
            event = decode_frame(message)
        except FrameError:
            continue
        if isinstance(event, Identity) and event.handle:
            handles[event.did] = event.handle
        elif isinstance(event, Account) and event.status == 'deleted':
            gone.add(event.did)
        elif isinstance(event, Commit):
            for op in event.ops:
                if isinstance(op, PostCreate):
                    posts[op.uri] = op.author
                elif isinstance(op, SubjectCreate) and op.collection == FOLLOW:
                    follows[op.uri] = op.subject
                elif isinstance(op, SubjectCreate) and op.collection in (LIKE, REPOST):
                    engagement[op.subject] += 1
                elif isinstance(op, RecordDelete) and op.collection in (POST, FOLLOW):
                    posts.pop(op.uri, None)
                    follows.pop(op.uri, None)
    followed = Counter(_repo(uri) for uri, subject in follows.items() if subject not in gone)
    viewer = next((did for did, _ in followed.most_common() if did not in gone), None)
    alive = [uri for uri, author in posts.items() if author not in gone]
    example = max(reversed(alive), key=lambda uri: engagement[uri], default=None)
    return DemoStory(
        viewer=viewer,
        viewer_handle=handles.get(viewer, viewer) if viewer else '',
        follows=followed[viewer] if viewer else 0,
        example_post=example,
    )


def _repo(uri: str) -> str:
    return uri.removeprefix('at://').split('/', 1)[0]
