"""feedgen.logs: FEEDGEN_LOG_FORMAT=json gives one JSON object per line, tracebacks included."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from feedgen.logs import JsonFormatter, gunicorn_log_options, setup_logging


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


def test_gunicorn_follows_the_format() -> None:
    assert gunicorn_log_options('text') == {}
    config = gunicorn_log_options('json')['logconfig_dict']
    assert config['formatters']['generic'] == {'()': 'feedgen.logs.JsonFormatter'}
