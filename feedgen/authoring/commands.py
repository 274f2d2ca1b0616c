"""The author's commands: `feedgen new-algorithm` and `feedgen preview`, registered on `feedgen.cli.main`.

Owns turning their options into calls of `scaffold` and `preview`, and printing the result
for a person (or as JSON). Errors are one line on stderr and exit status 2, as for every feedgen command.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from feedgen.authoring.preview import Preview, choose_feed, parse_param, preview_feed
from feedgen.authoring.scaffold import ScaffoldError, scaffold_module, scaffold_package
from feedgen.ranking.plugins import discover_algorithms


@click.command(name='new-algorithm')
@click.argument('name')
@click.option(
    '--package',
    'package',
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help='Write a standalone installable package (feedgen.algorithms entry point) into this folder, '
    'or add the algorithm to the package it holds.',
)
@click.option(
    '--project',
    type=click.Path(file_okay=False, path_type=Path),
    default=Path('.'),
    show_default=True,
    help='Without --package: the project whose algorithms/ and tests/ get the new files.',
)
def new_algorithm(name: str, package: Path | None, project: Path) -> None:
    """Scaffold the algorithm NAME: a plugin module and a test that passes."""
    try:
        written = scaffold_package(name, package) if package else scaffold_module(name, project)
    except ScaffoldError as error:
        click.echo(f'error: {error}', err=True)
        sys.exit(2)
    for path in written:
        click.echo(f'wrote {path}')
    where = package or project
    if package:
        click.echo(f'next: pip install -e {where} && (cd {where} && python -m pytest)')
    else:
        click.echo(f'next: python -m pytest {written[-1]}')


@click.command()
@click.argument('feed')
@click.option(
    '--capture', type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True, help='ATFH file.'
)
@click.option('--param', 'params', multiple=True, help='Set a parameter: k=v (v as TOML: 3, true, ["a","b"]).')
@click.option('--viewer', default=None, help='DID of the reader, for personalized algorithms.')
@click.option('--limit', type=click.IntRange(1, 100), default=10, show_default=True)
@click.option('--json', 'as_json', is_flag=True, help='Machine-readable output.')
@click.pass_context
def preview(
    ctx: click.Context, feed: str, capture: Path, params: tuple[str, ...], viewer: str | None, limit: int, as_json: bool
) -> None:
    """Show the top of FEED (a record key of the feeds config, or an algorithm name) on a capture, explained."""
    settings = ctx.obj['settings']
    chosen = choose_feed(
        discover_algorithms(settings.plugins_dir), settings.feeds_config, feed, dict(map(parse_param, params))
    )
    result = preview_feed(chosen, capture, limit=limit, viewer=viewer)
    if as_json:
        click.echo(json.dumps(result.__dict__, indent=2, default=str))
        return
    _print_preview(result)


def _print_preview(result: Preview) -> None:
    feed = result.feed
    click.echo(
        f'feed {feed["rkey"]}: algorithm {feed["algorithm"]["name"]} {feed["algorithm"]["version"]}, '
        f'params {json.dumps(feed["params"])}, viewer {feed["viewer"]}; {result.posts_indexed} posts indexed'
    )
    if not result.items:
        click.echo('the feed is empty on this capture')
    for rank, item in enumerate(result.items, 1):
        click.echo(f'{rank:>3}. {item["post"]}  [{item["feedContext"]}]')
        if item['text']:
            click.echo(f'     "{item["text"]}"')
        click.echo(f'     why: {json.dumps(item["explanation"], default=str)}')
    if result.trace:
        click.echo(f'how the page was made: {json.dumps(result.trace, default=str)}')
