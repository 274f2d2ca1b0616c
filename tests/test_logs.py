"""feedgen.logs: FEEDGEN_LOG_FORMAT=json gives one JSON object per line, tracebacks included."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from feedgen.logs import JsonFormatter, setup_logging
from tests.processes import FeedgenProcess, free_port


def test_a_record_is_one_json_line_even_with_newlines_and_a_traceback() -> None:
    try:
        raise ValueError('bad\nthing')
    except ValueError:
        failure = sys.exc_info()
    record = logging.LogRecord('feedgen.x', logging.ERROR, __file__, 1, 'failed: %s', ('two\nlines',), failure)
    line = JsonFormatter().format(record)
    assert '\n' not in line
    entry = json.loads(line)
    assert entry['level'] == 'error'
    assert entry['logger'] == 'feedgen.x'
    assert entry['message'] == 'failed: two\nlines'
    assert entry['exception'].endswith('ValueError: bad\nthing')
    assert entry['time'].endswith('+00:00')


def test_setup_logging_writes_json_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging(log_format='json')
        logging.getLogger('feedgen.test').warning('hello %s', 'there')
    finally:
        root.handlers[:], root.level = saved  # give pytest its own handlers back
    (line,) = capsys.readouterr().err.splitlines()
    assert json.loads(line)['message'] == 'hello there'


@pytest.mark.timeout(120)
def test_the_server_s_own_lines_follow_the_format(tmp_path: Path) -> None:
    port = free_port()
    env = {
        'FEEDGEN_DATABASE': str(tmp_path / 'f.db'),
        'FEEDGEN_HOSTNAME': f'localhost:{port}',
        'FEEDGEN_LOG_FORMAT': 'json',
    }
    with FeedgenProcess(['serve', '--port', str(port), '--workers', '2'], env, tmp_path) as serve:
        serve.wait_http(f'http://127.0.0.1:{port}/xrpc/_health')
        serve.stop()
    lines = serve.log().splitlines()
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert sum('worker' in entry['message'].lower() for entry in entries) >= 2, lines
