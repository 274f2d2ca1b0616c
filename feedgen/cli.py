"""The `feedgen` command line: run, ingest, serve, replay, demo, algorithms.

Owns turning settings and options into running parts (ingest process, scheduler, server) and the
one-line errors a person sees when a setting is wrong. Everything it starts lives in other modules.
"""

from __future__ import annotations

import gc
import json
import logging
import multiprocessing
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

from feedgen.authoring.commands import new_algorithm, preview
from feedgen.ingest.capture import CaptureError, read_capture
from feedgen.ingest.firehose import Backoff, Firehose
from feedgen.ingest.indexer import Indexer
from feedgen.ingest.jetstream import Jetstream, SourceSwitchRefused, check_firehose_switch, subscribe_events_url
from feedgen.ingest.pipeline import Pipeline, replay
from feedgen.ingest.relay import CaptureRelay
from feedgen.jobs import feed_jobs, start_scheduler
from feedgen.logs import setup_logging
from feedgen.publish import PublishError, publish_command, unpublish_command
from feedgen.ranking.plugins import PluginError, discover_algorithms, load_feeds
from feedgen.serve.metrics import format_status, status_report
from feedgen.serve.server import serve_forever
from feedgen.settings import Settings, SettingsError
from feedgen.store.database import SqliteDatabase
from feedgen.store.models import Post, open_database

log = logging.getLogger('feedgen')
DEMO_CAPTURE = Path(__file__).parent / 'data' / 'demo.atfh'


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj['settings']


def _setup_logging(verbose: bool, log_format: str) -> None:
    setup_logging(verbose, log_format)
    logging.getLogger('httpx').setLevel(logging.DEBUG if verbose else logging.WARNING)  # a line per XRPC/DID call


class _FeedgenGroup(click.Group):
    """Turns configuration errors into one line on stderr and exit status 2, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (SettingsError, PluginError, CaptureError, PublishError, SourceSwitchRefused) as error:
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
    _setup_logging(verbose, settings.log_format)
    ctx.obj = {'settings': settings}


def make_pipeline(settings: Settings, source: str) -> Pipeline:
    db = open_database(settings.database)
    return Pipeline(Indexer(db, source), batch_size=settings.batch_size, batch_seconds=settings.batch_seconds)


def ingest_forever(settings: Settings, once: bool = False, stop: threading.Event | None = None) -> Pipeline:
    """Runs the firehose ingest and the scheduled jobs until stopped (or the stream ends, with `once`)."""
    stop = stop or threading.Event()
    pipeline = make_pipeline(
        settings, subscribe_events_url(settings.jetstream) if settings.jetstream else settings.subscribe_url
    )
    firehose = _source(settings, pipeline, stop)
    feeds = load_feeds(discover_algorithms(settings.plugins_dir), settings.feeds_config)
    scheduler = start_scheduler(pipeline.indexer.db, settings.retention_hours, feed_jobs(feeds.values()))
    # Modules, plugins and settings live as long as the process: frozen, the cyclic collector stops rescanning them
    # at every full collection, which a batch's worth of pending events triggers (bench/ingest: 11% of the CPU).
    gc.freeze()
    db = pipeline.indexer.db
    if isinstance(db, SqliteDatabase):
        db.commit_in_background()  # a batch commits while the next one is decoded (feedgen.store.database)
    try:
        firehose.run(once=once)
        if isinstance(db, SqliteDatabase):
            db.wait_for_commit()
    finally:
        scheduler.shutdown(wait=False)
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
    _print_feed_urls(settings, host, port or settings.port)
    serve_forever(settings, host, port or settings.port, workers or settings.workers)


def _ingest_child(settings: Settings) -> None:
    _setup_logging(False, settings.log_format)
    stop = threading.Event()
    _stop_on_signals(stop)
    ingest_forever(settings, stop=stop)


def _supervise_ingest(settings: Settings, stopping: threading.Event) -> None:
    """Keeps one ingest process alive, restarting it with backoff if it dies."""
    backoff = Backoff(base=1.0, cap=60.0)
    context = multiprocessing.get_context('spawn')
    while not stopping.is_set():
        child = context.Process(target=_ingest_child, args=(settings,), name='feedgen-ingest', daemon=True)
        child.start()
        while child.is_alive() and not stopping.is_set():
            child.join(timeout=1.0)
        if stopping.is_set():
            child.terminate()
            child.join(timeout=10)
            return
        delay = backoff.next_delay()
        log.error('ingest process exited with status %s; restarting in %.1fs', child.exitcode, delay)
        stopping.wait(delay)


@main.command()
@click.option('--host', default='0.0.0.0', show_default=True)
@click.option('--port', type=int, default=None, help='Default: FEEDGEN_PORT or 8000.')
@click.pass_context
def run(ctx: click.Context, host: str, port: int | None) -> None:
    """The main job: ingest the firehose, run scheduled jobs, and serve the feeds."""
    settings = _settings(ctx)
    _print_feed_urls(settings, host, port or settings.port)
    run_main_job(settings, host, port or settings.port)


def run_main_job(settings: Settings, host: str, port: int) -> None:
    """Ingest (a supervised child process, with the scheduled jobs) and serving, until stopped."""
    stopping = threading.Event()
    supervisor = threading.Thread(target=_supervise_ingest, args=(settings, stopping), daemon=True)
    supervisor.start()
    try:
        serve_forever(settings, host, port, settings.workers)
    finally:
        stopping.set()
        supervisor.join(timeout=15)


@main.command(name='replay')
@click.argument('path', type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def replay_command(ctx: click.Context, path: Path) -> None:
    """Index a recorded capture (ATFH file), then print a summary. Re-running resumes, never doubles."""
    settings = _settings(ctx)
    summary = _replay(settings, path)
    click.echo(json.dumps(summary))


def _replay(settings: Settings, path: Path) -> dict[str, Any]:
    pipeline = make_pipeline(settings, f'capture:{path.resolve()}')
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


def _print_feed_urls(settings: Settings, host: str, port: int) -> None:
    feeds = load_feeds(discover_algorithms(settings.plugins_dir), settings.feeds_config)
    shown = '127.0.0.1' if host in ('0.0.0.0', '::') else host
    base = f'http://{shown}:{port}'
    lines = [f'serving {len(feeds)} feeds as {settings.service_did} on {base}']
    for feed in feeds.values():
        feed_param = quote(feed.uri(settings.publisher_did), safe='')
        lines.append(f'  {base}/xrpc/app.bsky.feed.getFeedSkeleton?feed={feed_param}&limit=10')
    lines.append(f'  {base}/xrpc/app.bsky.feed.describeFeedGenerator')
    if settings.log_format == 'json':  # stderr carries only JSON lines then
        log.info('%s', '\n'.join(lines))
    else:
        click.echo('\n'.join(lines), err=True)


@main.command()
@click.option('--port', type=int, default=8000, show_default=True)
@click.option('--capture', type=click.Path(exists=True, dir_okay=False, path_type=Path), default=DEMO_CAPTURE)
@click.pass_context
def demo(ctx: click.Context, port: int, capture: Path) -> None:
    """Offline demo: the main job, ingesting a bundled capture from a loopback relay, served on localhost."""
    folder = Path(tempfile.mkdtemp(prefix='feedgen-demo-'))
    with CaptureRelay(list(read_capture(capture)), close_when_done=False) as relay:
        settings = Settings(
            hostname=f'localhost:{port}', port=port, database=str(folder / 'demo.db'), firehose=relay.url, workers=1
        )
        click.echo(f'demo: a loopback relay at {relay.url} replays {capture.name}; store {settings.database}', err=True)
        _print_feed_urls(settings, '127.0.0.1', port)
        run_main_job(settings, '127.0.0.1', port)


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
            'version': feed.algorithm.version(),
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
