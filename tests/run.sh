#!/usr/bin/env bash
# The whole test run, on a fresh machine: checks the code with ruff and mypy, installs and starts what the tests
# need, runs pytest, stops it all.
#   - the local AT Protocol network (../shared/atnet: PLC, PDS, AppView, and Bluesky's Ozone labeler) for the
#     end-to-end tests;
#   - a throwaway PostgreSQL on loopback (the store, indexer and server suites also run on it);
#   - Debian's chromium (the /algorithms page is rendered in a real headless browser).
#   - podman and the project's container image (.ci/image.sh; tests/test_image.py runs it).
#   - Bluesky's Jetstream server, built from its Go module (tests/jetstream.sh; tests/test_e2e_jetstream.py runs it).
# .ci/run calls exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."
export ATNET_HOME="${ATNET_HOME:-$HOME/.cache/atnet}"
ATNET=../shared/atnet

python -m pip install -q -e '.[dev]'
ruff check .
ruff format --check .
mypy  # --strict over feedgen/ and algorithms/, as configured in pyproject.toml
bash tests/jetstream.sh || echo 'no Jetstream server: the end-to-end Jetstream tests fail under CI, skip elsewhere' >&2
command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
bash .ci/image.sh

bash "$ATNET/install.sh" "$ATNET_HOME" --ozone --python
# What this run starts, it stops; a network or PostgreSQL already running (a developer's) is used and left running.
STATE="${ATNET_STATE_DIR:-$ATNET_HOME/state}"
stops=()
trap 'for stop in "${stops[@]}"; do eval "$stop"; done' EXIT
if [ -f "$STATE/network.pid" ] && kill -0 "$(cat "$STATE/network.pid")" 2>/dev/null; then
    echo "tests/run.sh: using the AT Protocol network already running (pid $(cat "$STATE/network.pid"))" >&2
else
    stops+=('bash "$ATNET/stop.sh" "$ATNET_HOME" || true')
    bash "$ATNET/start.sh" "$ATNET_HOME" --ozone  # --ozone implies --appview
fi
if bash .ci/postgres.sh status; then
    echo 'tests/run.sh: using the PostgreSQL already running' >&2
else
    stops+=('bash .ci/postgres.sh stop || true')
fi
export FEEDGEN_ATNET="$STATE/network.json"  # where start.sh writes it
FEEDGEN_TEST_DATABASE_URL="$(bash .ci/postgres.sh start)"
export FEEDGEN_TEST_DATABASE_URL

python -m pytest -q "$@"
