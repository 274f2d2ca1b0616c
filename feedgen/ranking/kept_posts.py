"""Kept posts: the posts a serving worker looked up by URI, kept until a writer changes them.

`network` looks its voted posts up by URI (whether each is indexed, by whom, hidden or self-labelled): a first page
looks up hundreds, the most of its store reads once the votes are kept (`feedgen.ranking.kept_votes`). A worker keeps
each row it read, and a URI it found no post at, until the post changes: before a lookup it reads the posts writers
changed since (`PostChange`, which notes every post created, deleted, hidden or shown, counted again; through
`feedgen.ranking.arrivals`, on SQLite only when something was written) and forgets them. So a lookup gives the rows
the store holds. Memory is bounded: `POSTS` posts a worker, the least recently looked up going first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from feedgen.ranking.arrivals import POST_CHANGES, Follower
from feedgen.store.prepared import Prepared

POSTS = 100_000
"""How many posts (or URIs with no post) a worker keeps, about 300 bytes each."""


class KeptPosts(Follower):
    """The rows `lookup` read, by URI (None: no row), kept until their post changes; safe to share between a server's
    threads. `lookup` selects the URI first, then the columns kept, of the posts whose URI is one of its `size`
    markers (unused places hold '', no post's URI); it must read the `Post` table only (a change of another table is
    not noted)."""

    def __init__(self, lookup: Prepared, size: int) -> None:
        super().__init__((), POST_CHANGES)
        self.lookup = lookup
        self.size = size
        self._posts: OrderedDict[str, tuple[Any, ...] | None] = OrderedDict()
        self._uris: dict[int, str] = {}
        """The URIs of the posts kept, by id (the first column kept), for the changes of deleted posts."""

    def rows(self, uris: Sequence[str]) -> list[tuple[Any, ...] | None]:
        """The columns kept of the post at each of `uris` (None: no post there), in their order."""
        with self._lock:
            self._up_to_date()
            posts = self._posts
            missing = [uri for uri in dict.fromkeys(uris) if uri not in posts]
            for start in range(0, len(missing), self.size):
                chunk = missing[start : start + self.size]
                found = {row[0]: row[1:] for row in self.lookup.tuples(*chunk, *[''] * (self.size - len(chunk)))}
                for uri in chunk:
                    row = posts[uri] = found.get(uri)
                    if row is not None:
                        self._uris[row[0]] = uri
            rows = []
            for uri in uris:
                posts.move_to_end(uri)
                rows.append(posts[uri])
            while len(posts) > POSTS:
                self._drop(next(iter(posts)))
            return rows

    def _drop(self, uri: str) -> None:
        row = self._posts.pop(uri, None)
        if row is not None:
            self._uris.pop(row[0], None)

    def _changed(self, changes: list[tuple[Any, ...]]) -> None:
        """Forgets the posts changed: the row kept for the post's id, and what is kept at its URI when it still exists
        (a URI kept with no post, where a post was created since)."""
        for _, post_id, uri in changes:
            self._drop(self._uris.get(post_id, ''))
            if uri is not None:
                self._drop(uri)

    def _forget(self) -> None:
        self._posts.clear()
        self._uris.clear()
