"""Reading a reader's follows from their PDS: `listRecords` pages (what feedgen does) against the whole repository
(`com.atproto.sync.getRepo`, a CAR file decoded by libipld, the SDK's decoder), on atnet's PDS.

Makes one account with `--follows` follow records, `--likes` likes and `--posts` posts (a reader's repository holds
far more likes and posts than follows), then reads its follows both ways `--repeat` times and prints a markdown
table: time (median), requests and bytes. Needs the local network (`FEEDGEN_ATNET=.../state/network.json`); run it
under `flock /tmp/atnet.lock`. `python -m bench.graph_fetch --follows 2000 --likes 5000 --posts 1000`.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

import httpx
import libipld
from atproto import Client, models

from feedgen.ingest.repo_follows import follow_pages

FOLLOW, LIKE, POST = 'app.bsky.graph.follow', 'app.bsky.feed.like', 'app.bsky.feed.post'
WRITES_PER_CALL = 200


def make_reader(pds: str, follows: int, likes: int, posts: int) -> str:
    """A new account on `pds` holding that many records; returns its DID."""
    handle = f'bench{secrets.token_hex(3)}.test'
    client = Client(base_url=pds + '/xrpc')
    data = models.ComAtprotoServerCreateAccount.Data(handle=handle, password='bench-pw', email=f'{handle}@x.test')
    client.com.atproto.server.create_account(data)
    client.login(handle, 'bench-pw', fetch_bsky_profile=False)
    did = client._session.did
    now = client.get_current_time_iso()
    first = client.app.bsky.feed.post.create(did, models.AppBskyFeedPost.Record(text='first', created_at=now))
    ref = {'uri': first.uri, 'cid': first.cid}
    records = [(FOLLOW, {'subject': f'did:plc:bench{n:020d}', 'createdAt': now}) for n in range(follows)]
    records += [(LIKE, {'subject': ref, 'createdAt': now}) for _ in range(likes)]
    records += [(POST, {'text': f'post {n} ' + 'x' * 100, 'createdAt': now}) for n in range(posts)]
    for start in range(0, len(records), WRITES_PER_CALL):
        writes = [
            models.ComAtprotoRepoApplyWrites.Create(collection=collection, value={'$type': collection, **value})
            for collection, value in records[start : start + WRITES_PER_CALL]
        ]
        client.com.atproto.repo.apply_writes(models.ComAtprotoRepoApplyWrites.Data(repo=did, writes=writes))
    return did


def by_list_records(client: httpx.Client, pds: str, did: str, cap: int) -> tuple[int, int, int]:
    """Follows read, requests and bytes: feedgen's own pager, then the same pages again for their size."""
    found = requests = 0
    for page in follow_pages(client, pds, did, cap, time.monotonic() + 300):
        found += len(page.follows)
        requests += 1
    size, cursor = 0, None
    while True:
        params = {'repo': did, 'collection': FOLLOW, 'limit': '100'} | ({'cursor': cursor} if cursor else {})
        response = client.get(pds + '/xrpc/com.atproto.repo.listRecords', params=params)
        size += len(response.content)
        cursor = response.json().get('cursor')
        if not cursor or not response.json()['records']:
            return found, requests, size


def by_get_repo(client: httpx.Client, pds: str, did: str) -> tuple[int, int, int]:
    """Follow records found in the whole repository, one request, its bytes."""
    response = client.get(pds + '/xrpc/com.atproto.sync.getRepo', params={'did': did})
    _, blocks = libipld.decode_car(response.content)
    found = sum(1 for block in blocks.values() if isinstance(block, dict) and block.get('$type') == FOLLOW)
    return found, 1, len(response.content)


def timed(call: object, repeat: int) -> tuple[float, tuple[int, int, int]]:
    times, result = [], (0, 0, 0)
    for _ in range(repeat):
        started = time.perf_counter()
        result = call()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--follows', type=int, default=2000)
    parser.add_argument('--likes', type=int, default=5000)
    parser.add_argument('--posts', type=int, default=1000)
    parser.add_argument('--repeat', type=int, default=5)
    args = parser.parse_args(argv)
    pds = json.loads(Path(os.environ['FEEDGEN_ATNET']).read_text())['pds']
    did = make_reader(pds, args.follows, args.likes, args.posts)
    with httpx.Client(timeout=60) as client:
        listed = timed(lambda: by_list_records(client, pds, did, 1_000_000), args.repeat)
        whole = timed(lambda: by_get_repo(client, pds, did), args.repeat)
    print(f'{args.follows} follows, {args.likes} likes, {args.posts} posts; median of {args.repeat}\n')
    print('| read | follows found | requests | bytes | seconds |\n| --- | ---: | ---: | ---: | ---: |')
    for name, (seconds, (found, requests, size)) in (('listRecords pages', listed), ('getRepo + CAR', whole)):
        print(f'| {name} | {found:,} | {requests} | {size:,} | {seconds:.3f} |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
