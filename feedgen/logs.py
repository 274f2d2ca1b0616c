"""Logs: where feedgen's log lines go and what they look like, plain text or one JSON object per line.

Owns the log format of every process feedgen starts (the command itself, the ingest child, the
server's processes): `FEEDGEN_LOG_FORMAT=text` (the default) for people, `json` for log collectors. It never decides
what feedgen logs (each module logs through its own `logging.getLogger(__name__)`), only how chatty the libraries
it uses may be.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

LOG_FORMATS = ('text', 'json')
TEXT_FORMAT = '%(asctime)s %(levelname)s %(name)s %(message)s'
QUIET_LIBRARIES = {
    'httpx': logging.WARNING,  # a line per XRPC or DID call
    'apscheduler': logging.WARNING,  # several lines per job run; feedgen.jobs logs one with its outcome
    'websockets.server': logging.WARNING,  # the demo relay's connections; the firehose client logs its own
}
"""Libraries whose INFO lines say nothing an operator needs: shown from this level, or all of them with -v."""


class JsonFormatter(logging.Formatter):
    """One JSON object per line: `time` (UTC, ISO 8601), `level`, `logger`, `pid`, `message`, and `exception`
    (the formatted traceback) when there is one. A message never spans lines: newlines are escaped in JSON."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            'time': datetime.fromtimestamp(record.created, UTC).isoformat(timespec='milliseconds'),
            'level': record.levelname.lower(),
            'logger': record.name,
            'pid': record.process,
            'message': record.getMessage(),
        }
        if record.exc_info:
            entry['exception'] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup_logging(verbose: bool = False, log_format: str = 'text') -> None:
    """Sends every log line of this process to stderr in `log_format`, at DEBUG when `verbose`, else INFO."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == 'json' else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True)
    for name, level in QUIET_LIBRARIES.items():
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else level)
