"""The `feedgen` command line: run, ingest, serve, replay, demo, algorithms.

Owns turning settings and options into running parts (ingest process, scheduler, server) and the
one-line errors a person sees when a setting is wrong. Everything it starts lives in other modules.
"""

from __future__ import annotations

import functools
import gc
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
from flask import Flask

from feedgen.authoring.commands import new_algorithm, preview
from feedgen.demo import read_story
from feedgen.ingest.backfill import Backfill
from feedgen.ingest.capture import CaptureError, read_capture
from feedgen.ingest.firehose import Firehose
from feedgen.ingest.indexer import Indexer
from feedgen.ingest.jetstream import Jetstream, SourceSwitchRefused, check_firehose_switch, subscribe_events_url
from feedgen.ingest.labelers import start_labelers
from feedgen.ingest.pipeline import Pipeline, replay
from feedgen.ingest.plugin_indexers import RecordIndexer
from feedgen.ingest.relay import CaptureRelay
from feedgen.ingest.retime import retime
from feedgen.jobs import feed_jobs, run_soon, start_scheduler
from feedgen.logs import setup_logging
from feedgen.publish import PublishError, publish_command, unpublish_command
from feedgen.ranking.plugins import PluginError, discover_algorithms, feed_indexers, load_feeds
from feedgen.serve.app import create_app
from feedgen.serve.auth import StandInAuth, did_resolver
from feedgen.serve.metrics import format_status, status_report
from feedgen.serve.server import serve_forever
from feedgen.settings import Settings, SettingsError
from feedgen.store.database import SqliteDatabase
from feedgen.store.models import Post, open_database
from feedgen.store.plugin_tables import PluginTableError
from feedgen.supervise import STOP_SECONDS, supervise_ingest

log = logging.getLogger('feedgen')
LABELER_STOP_SECONDS = 5.0
"""How long a stopping ingest waits for each labeler's subscription to store what it holds (it is kill-safe anyway)."""
DEMO_CAPTURE = Path(__file__).parent / 'data' / 'demo.atfh.gz'


def _settings(ctx: click.Context) -> Settings:
    settings: Settings = ctx.obj['settings']
    return settings


class _FeedgenGroup(click.Group):
    """Turns configuration errors into one line on stderr and exit status 2, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (SettingsError, PluginError, PluginTableError, CaptureError, PublishError, SourceSwitchRefused) as error:
            click.echo(f'error: {error}', err=True)
            sys.exit(2)


@click.group(cls=_FeedgenGroup)
@click.option('-v', '--verbose', is_flag=True, help='Debug logging (every plugin load, every skipped frame).')
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """feedgen: a Bluesky feed generator with open, explainable algorithms.

    Settings come from FEEDGEN_* environment variables and an optional .env file (see README).
    """
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        click.echo(f'error: {error}', err=True)
        sys.exit(2)
    setup_logging(verbose, settings.log_format)
    ctx.obj = {'settings': settings}


def make_pipeline(settings: Settings, source: str, indexers: Sequence[RecordIndexer] = ()) -> Pipeline:
    db = open_database(settings.database)
    return Pipeline(
        Indexer(db, source, publisher_did=settings.publisher_did, indexers=indexers),
        batch_size=settings.batch_size,
        batch_seconds=settings.batch_seconds,
    )


def ingest_forever(settings: Settings, once: bool = False, stop: threading.Event | None = None) -> Pipeline:
    """Runs the firehose ingest, the labelers' subscriptions (`feedgen.ingest.labelers`, each on its own thread) and
    the scheduled jobs until stopped (or the stream ends, with `once`)."""
    stop = stop or threading.Event()
    feeds = load_feeds(discover_algorithms(settings.plugins_dir), settings.feeds_config)
    source = subscribe_events_url(settings.jetstream) if settings.jetstream else settings.subscribe_url
    pipeline = make_pipeline(settings, source, feed_indexers(feeds.values()))
    pipeline.backfill = Backfill.plan(pipeline.indexer, settings.backfill_window_hours)
    firehose = _source(settings, pipeline, stop)
    scheduler = start_scheduler(
        pipeline.indexer.db, settings.retention_hours, feed_jobs(feeds.values()), pipeline.indexer.plugins.indexers
    )

    def first_batch(written: Pipeline) -> None:
        written.on_batch = None
        run_soon(scheduler)  # the jobs' first runs may have found an empty store

    pipeline.on_batch = first_batch
    # Modules, plugins and settings live as long as the process: frozen, the cyclic collector stops rescanning them
    # at every full collection, which a batch's worth of pending events triggers (docs/design.md, "Ingest").
    gc.freeze()
    db = pipeline.indexer.db
    if isinstance(db, SqliteDatabase):
        db.commit_in_background()  # a batch commits while the next one is decoded (feedgen.store.database)
    labelers = start_labelers(settings.labelers, db, settings.plc_url, stop)
    try:
        firehose.run(once=once)
        if isinstance(db, SqliteDatabase):
            db.wait_for_commit()
    finally:
        scheduler.shutdown(wait=False)
        for labeler in labelers if stop.is_set() else ():  # each stores its last labels, then ends
            labeler.join(timeout=LABELER_STOP_SECONDS)
    return pipeline


def _source(settings: Settings, pipeline: Pipeline, stop: threading.Event) -> Firehose:
    """The stream ingest reads: the Jetstream server when `FEEDGEN_JETSTREAM` is set, else the firehose."""
    if settings.jetstream:
        return Jetstream(settings.jetstream, pipeline, stop=stop, stall_seconds=settings.stall_seconds)
    check_firehose_switch(settings.subscribe_url)
    return Firehose(settings.subscribe_url, pipeline, stop=stop, stall_seconds=settings.stall_seconds)


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, _frame: Any) -> None:
        log.info('received signal %d, stopping after the current batch', signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@main.command()
@click.option('--once', is_flag=True, help='Exit when the relay closes the stream (benchmarks, tests).')
@click.pass_context
def ingest(ctx: click.Context, once: bool) -> None:
    """Subscribe to the firehose and index it, resuming from the saved cursor."""
    settings = _settings(ctx)
    stop = threading.Event()
    _stop_on_signals(stop)
    started = time.monotonic()
    pipeline = ingest_forever(settings, once=once, stop=stop)
    summary = pipeline.stats.as_dict() | {'cursor': pipeline.indexer.cursor, 'seconds': time.monotonic() - started}
    click.echo(json.dumps(summary))


@main.command()
@click.option('--host', default='127.0.0.1', show_default=True)
@click.option('--port', type=int, default=None, help='Default: FEEDGEN_PORT or 8000.')
@click.option('--workers', type=int, default=None, help='Default: FEEDGEN_WORKERS or 2.')
@click.pass_context
def serve(ctx: click.Context, host: str, port: int | None, workers: int | None) -> None:
    """Serve the feeds (getFeedSkeleton, describeFeedGenerator, did.json)."""
    settings = _settings(ctx)
    settings.loopback_only(host)
    _print_feed_urls(settings, host, port or settings.port)
    serve_forever(settings, host, port or settings.port, workers or settings.workers)


@main.command()
@click.option('--host', default='0.0.0.0', show_default=True)
@click.option('--port', type=int, default=None, help='Default: FEEDGEN_PORT or 8000.')
@click.pass_context
def run(ctx: click.Context, host: str, port: int | None) -> None:
    """The main job: ingest the firehose, run scheduled jobs, and serve the feeds."""
    settings = _settings(ctx)
    settings.loopback_only(host)  # before ingest starts
    _print_feed_urls(settings, host, port or settings.port)
    run_main_job(settings, host, port or settings.port)


def run_main_job(settings: Settings, host: str, port: int, app_factory: Callable[[], Flask] | None = None) -> None:
    """Ingest (a supervised child process, with the scheduled jobs) and serving `app_factory()` (default:
    `create_app(settings)`), until stopped.

    SIGTERM or SIGINT stops every process it started, and it returns (exit status 0).
    """
    for signum in (signal.SIGTERM, signal.SIGINT):  # until the server takes the signals over, and after it
        signal.signal(signum, _exit_quietly)
    open_database(settings.database).close()  # brings an older store up to date before its other processes open it
    stopping = threading.Event()
    stop_main = functools.partial(os.kill, os.getpid(), signal.SIGTERM)
    supervisor = threading.Thread(
        target=supervise_ingest, args=(settings, stopping, stop_main), name='supervise-ingest', daemon=True
    )
    supervisor.start()
    try:
        serve_forever(settings, host, port, settings.workers, app_factory)
    finally:
        stopping.set()
        supervisor.join(timeout=2 * STOP_SECONDS)


def _exit_quietly(signum: int, _frame: Any) -> None:
    log.info('received %s; stopping', signal.Signals(signum).name)
    raise SystemExit(0)


@main.command(name='replay')
@click.argument('path', type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def replay_command(ctx: click.Context, path: Path) -> None:
    """Index a recorded capture (ATFH file), then print a summary. Re-running resumes, never doubles."""
    settings = _settings(ctx)
    summary = _replay(settings, path)
    click.echo(json.dumps(summary))


def _replay(settings: Settings, path: Path) -> dict[str, Any]:
    feeds = load_feeds(discover_algorithms(settings.plugins_dir), settings.feeds_config)
    pipeline = make_pipeline(settings, f'capture:{path.resolve()}', feed_indexers(feeds.values()))
    started = time.monotonic()

    def progress(p: Pipeline) -> None:
        if p.stats.batches % 50 == 0:
            click.echo(f'replay: {p.stats.frames} frames, cursor {p.indexer.cursor}', err=True)

    pipeline.on_batch = progress
    stats = replay(path, pipeline)
    return stats.as_dict() | {
        'cursor': pipeline.indexer.cursor,
        'indexed': dict(pipeline.indexer.written),
        'posts_in_store': Post.select().count(),
        'seconds': round(time.monotonic() - started, 3),
    }


def _print_feed_urls(settings: Settings, host: str, port: int, explain: str | None = None) -> None:
    """Prints where each feed, the catalog and (with `explain`, a post URI) an explanation can be read."""
    feeds = load_feeds(discover_algorithms(settings.plugins_dir), settings.feeds_config)
    shown = '127.0.0.1' if host in ('0.0.0.0', '::') else host
    base = f'http://{shown}:{port}'
    lines = [f'serving {len(feeds)} feeds as {settings.service_did} on {base}']
    for feed in feeds.values():
        feed_param = quote(feed.uri(settings.publisher_did), safe='')
        lines.append(f'  {base}/xrpc/app.bsky.feed.getFeedSkeleton?feed={feed_param}&limit=10')
    lines.append(f'  {base}/xrpc/app.bsky.feed.describeFeedGenerator')
    lines.append(f'  {base}/algorithms')
    if explain and feeds:
        feed = next((f for f in feeds.values() if f.algorithm.name == 'hot'), next(iter(feeds.values())))
        feed_param = quote(feed.uri(settings.publisher_did), safe='')
        lines.append(f'  {base}/explain?feed={feed_param}&post={quote(explain, safe="")}')
    if settings.log_format == 'json':  # stderr carries only JSON lines then
        log.info('%s', '\n'.join(lines))
    else:
        click.echo('\n'.join(lines), err=True)


@main.command()
@click.option('--host', default='127.0.0.1', show_default=True, help='0.0.0.0 in a container.')
@click.option('--port', type=int, default=8000, show_default=True)
@click.option('--capture', type=click.Path(exists=True, dir_okay=False, path_type=Path), default=DEMO_CAPTURE)
@click.pass_context
def demo(ctx: click.Context, host: str, port: int, capture: Path) -> None:
    """Offline demo: the main job, ingesting a bundled capture from a loopback relay, served on `host`.

    The capture's times are moved to end now, so the feeds that rank by the clock show it; a request without a
    service JWT reads as the capture's most-following account, so the personalized feeds show theirs.
    """
    frames, shift_ms = retime(list(read_capture(capture)), int(time.time() * 1000))
    story = read_story(frames)
    folder = Path(tempfile.mkdtemp(prefix='feedgen-demo-'))
    relay = CaptureRelay(frames, close_when_done=False).start()
    try:
        settings = Settings(
            hostname=f'localhost:{port}',
            port=port,
            database=str(folder / 'demo.db'),
            firehose=relay.url,
            workers=1,
            backfill_hours=0,  # the loopback relay replays the whole capture to a connection without a cursor
            plc_url=f'http://127.0.0.1:{port}',  # no PLC offline: a DID in a token resolves nowhere public
        )
        say = functools.partial(click.echo, err=True)
        say(f'demo: a loopback relay at {relay.url} replays {capture.name} ({len(frames)} frames); store {folder}')
        say(f"demo: the capture's times are moved {shift_ms / 86_400_000:.1f} days forward to end now")
        app_factory = None
        if story.viewer:
            who = f'{story.viewer_handle} ({story.viewer}), who follows {story.follows} accounts'
            say(f'demo: a request without a service JWT reads as {who}')
            auth = StandInAuth(settings.service_did, did_resolver(settings.plc_url), story.viewer)
            app_factory = functools.partial(create_app, settings, auth=auth)
        _print_feed_urls(settings, host, port, explain=story.example_post)
        run_main_job(settings, host, port, app_factory)
    finally:
        relay.stop()
        shutil.rmtree(folder, ignore_errors=True)


@main.command(name='algorithms')
@click.option('--json', 'as_json', is_flag=True, help='Machine-readable output.')
@click.pass_context
def algorithms_command(ctx: click.Context, as_json: bool) -> None:
    """List the loaded algorithms and the feeds served from them."""
    settings = _settings(ctx)
    algorithms = discover_algorithms(settings.plugins_dir)
    feeds = load_feeds(algorithms, settings.feeds_config)
    rows = [
        {
            'rkey': feed.rkey,
            'uri': feed.uri(settings.publisher_did),
            'algorithm': feed.algorithm.name,
            'version': feed.version,
            'personalized': feed.algorithm.personalized,
            'params': feed.params,
            'source': feed.algorithm.source(),
            'description': feed.description,
        }
        for feed in feeds.values()
    ]
    if as_json:
        click.echo(json.dumps({'algorithms': sorted(algorithms), 'feeds': rows}, indent=2))
        return
    click.echo(f'{len(algorithms)} algorithms: {", ".join(sorted(algorithms))}')
    for row in rows:
        click.echo(f'{row["rkey"]:<16} {row["algorithm"]:<12} v{row["version"]}  {row["uri"]}')
        click.echo(f'{"":<16} {row["description"]}  (source: {row["source"]})')


@main.command()
@click.option('--json', 'as_json', is_flag=True, help='Machine-readable output.')
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """What ingest has done, from the store: cursor, lag, rate, skips by reason, reconnects; and the store's size."""
    report = status_report(open_database(_settings(ctx).database))
    click.echo(json.dumps(report, indent=2) if as_json else format_status(report))


main.add_command(publish_command)
main.add_command(unpublish_command)
main.add_command(new_algorithm)
main.add_command(preview)
