"""Run every benchmark and print their markdown tables: `python -m bench` from the repository root.

Runs, in order, the ingest benchmark (feedgen against the template baseline), the freshness benchmark and the
serve benchmark (a million posts, against the minimal ceiling), each with its defaults, after a line naming the
machine and the date. `--quick` runs smaller versions (for checking that the benchmarks work, not for numbers).
Needs `wrk` (`apt-get install -y wrk`) and the `bench` extra (`pip install -e '.[bench]'`); writes only under
bench/out/.
"""

from __future__ import annotations

import argparse
import datetime
import sys

from bench import freshness
from bench.ingest import run as ingest
from bench.measure import load_averages, machine
from bench.serve import run as serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='Small runs: check the benchmarks work.')
    args = parser.parse_args(argv)
    now = datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')
    print(f'## feedgen benchmarks, {now}\n')
    print(f'Machine: {machine()}. Load averages at start: {load_averages()}.')
    print(f'Command: `python -m bench{" --quick" if args.quick else ""}`')
    if args.quick:
        ingest.main(['--frames', '20000', '--accounts', '2000'])
        freshness.main(['--seconds', '5'])
        serve.main(['--posts', '50000', '--seconds', '1', '--connections', '1,16'])
    else:
        ingest.main([])
        freshness.main([])
        serve.main([])
    return 0


if __name__ == '__main__':
    sys.exit(main())
