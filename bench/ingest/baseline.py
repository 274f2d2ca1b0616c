"""Baseline: the common Python feed-generator template's firehose pipeline, for the ingest benchmark to beat.

A faithful copy of what MarshalX's `bluesky-feed-generator` template does per message, changed only to
index every post (the template keeps posts mentioning "alf") and to stop at a given seq: the atproto SDK's
`FirehoseSubscribeReposClient`, `parse_subscribe_repos_message` on every frame, `CAR.from_bytes` of every
commit's blocks, `models.get_or_create` of every created record, the subscription cursor saved every 20th
seq, and one peewee `Post.create` per post in a transaction per message, on a plain SQLite file. Likes,
reposts and follows are decoded (as the template does) but not stored. It never imports feedgen.

Usage: `python -m bench.ingest.baseline --firehose ws://127.0.0.1:PORT --database X.db --last-seq N`
(prints a JSON summary when the message with seq N has been handled).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import defaultdict
from datetime import datetime

import peewee
from atproto import CAR, AtUri, FirehoseSubscribeReposClient, firehose_models, models, parse_subscribe_repos_message

logger = logging.getLogger(__name__)
db = peewee.SqliteDatabase(None)


class BaseModel(peewee.Model):
    class Meta:
        database = db


class Post(BaseModel):
    uri = peewee.CharField(index=True)
    cid = peewee.CharField()
    reply_parent = peewee.CharField(null=True, default=None)
    reply_root = peewee.CharField(null=True, default=None)
    indexed_at = peewee.DateTimeField(default=datetime.utcnow)


class SubscriptionState(BaseModel):
    service = peewee.CharField(unique=True)
    cursor = peewee.BigIntegerField()


_INTERESTED_RECORDS = {
    models.AppBskyFeedLike: models.ids.AppBskyFeedLike,
    models.AppBskyFeedPost: models.ids.AppBskyFeedPost,
    models.AppBskyGraphFollow: models.ids.AppBskyGraphFollow,
}


def _get_ops_by_type(commit: models.ComAtprotoSyncSubscribeRepos.Commit) -> defaultdict:
    operation_by_type: defaultdict = defaultdict(lambda: {'created': [], 'deleted': []})
    car = CAR.from_bytes(commit.blocks)
    for op in commit.ops:
        if op.action == 'update':
            continue
        uri = AtUri.from_str(f'at://{commit.repo}/{op.path}')
        if op.action == 'create':
            if not op.cid:
                continue
            create_info = {'uri': str(uri), 'cid': str(op.cid), 'author': commit.repo}
            record_raw_data = car.blocks.get(op.cid)
            if not record_raw_data:
                continue
            record = models.get_or_create(record_raw_data, strict=False)
            if record is None:
                continue
            for record_type, record_nsid in _INTERESTED_RECORDS.items():
                if uri.collection == record_nsid and models.is_record_type(record, record_type):
                    operation_by_type[record_nsid]['created'].append({'record': record, **create_info})
                    break
        if op.action == 'delete':
            operation_by_type[uri.collection]['deleted'].append({'uri': str(uri)})
    return operation_by_type


def operations_callback(ops: defaultdict, stats: dict[str, int]) -> None:
    posts_to_create = []
    for created_post in ops[models.ids.AppBskyFeedPost]['created']:
        record = created_post['record']
        post_with_images = isinstance(record.embed, models.AppBskyEmbedImages.Main)
        inlined_text = record.text.replace('\n', ' ')
        logger.debug(
            f'NEW POST [CREATED_AT={record.created_at}][AUTHOR={created_post["author"]}]'
            f'[WITH_IMAGE={post_with_images}]: {inlined_text}'
        )
        reply_root = reply_parent = None
        if record.reply:
            reply_root = record.reply.root.uri
            reply_parent = record.reply.parent.uri
        posts_to_create.append(
            {'uri': created_post['uri'], 'cid': created_post['cid'], 'reply_parent': reply_parent,
             'reply_root': reply_root}
        )  # fmt: skip
    posts_to_delete = ops[models.ids.AppBskyFeedPost]['deleted']
    if posts_to_delete:
        post_uris_to_delete = [post['uri'] for post in posts_to_delete]
        Post.delete().where(Post.uri.in_(post_uris_to_delete)).execute()
    if posts_to_create:
        with db.atomic():
            for post_dict in posts_to_create:
                Post.create(**post_dict)
    stats['posts'] += len(posts_to_create)
    stats['deletes'] += len(posts_to_delete)


def run(firehose: str, last_seq: int, name: str = 'baseline') -> dict[str, float]:
    """Consumes `firehose` from the start until the message with seq `last_seq`; returns counts and seconds."""
    stats = {'frames': 0, 'commits': 0, 'posts': 0, 'deletes': 0}
    SubscriptionState.create(service=name, cursor=0)
    client = FirehoseSubscribeReposClient(base_uri=f'{firehose}/xrpc')
    started = time.monotonic()

    def on_message_handler(message: firehose_models.MessageFrame) -> None:
        stats['frames'] += 1
        commit = parse_subscribe_repos_message(message)
        seq = getattr(commit, 'seq', None)
        if seq is not None and seq >= last_seq:
            client.stop()
        if not isinstance(commit, models.ComAtprotoSyncSubscribeRepos.Commit):
            return
        stats['commits'] += 1
        if commit.seq % 20 == 0:
            client.update_params(models.ComAtprotoSyncSubscribeRepos.Params(cursor=commit.seq))
            SubscriptionState.update(cursor=commit.seq).where(SubscriptionState.service == name).execute()
        if not commit.blocks:
            return
        operations_callback(_get_ops_by_type(commit), stats)

    client.start(on_message_handler)
    return stats | {'seconds': round(time.monotonic() - started, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--firehose', required=True, help='ws://host:port of a relay (loopback)')
    parser.add_argument('--database', required=True)
    parser.add_argument('--last-seq', type=int, required=True)
    args = parser.parse_args(argv)
    db.init(args.database)
    db.connect()
    db.create_tables([Post, SubscriptionState])
    print(json.dumps(run(args.firehose, args.last_seq)))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
