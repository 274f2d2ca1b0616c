#!/usr/bin/env bash
# Builds Bluesky's Jetstream (the v2 server, network.bsky.jetstream.subscribeEvents) from its Go module at a pinned
# release into a cache folder, once; its code is never committed. tests/run.sh calls it; the Jetstream tests use the
# binary when it is there (tests/jetstreams.py) and say why they skip when it is not.
# v0.2.1 is the newest release whose dependencies the Go module proxy serves: v0.2.2 to v0.2.4 need
# github.com/jcalabro/atmos v0.4.0 and github.com/bluesky-social/gttp v0.1.0, which it refuses (403); docs/jetstream.md.
#   usage: tests/jetstream.sh [cache dir]   (default ~/.cache/feedgen-jetstream; the binary is <cache>/bin/jetstream)
set -euo pipefail
VERSION=v0.2.1
CACHE="${1:-$HOME/.cache/feedgen-jetstream}"
BIN="$CACHE/bin/jetstream"
if [[ -x "$BIN" && "$(cat "$CACHE/bin/VERSION" 2>/dev/null)" == "$VERSION" ]]; then
    exit 0
fi
mkdir -p "$CACHE/bin"
# `go install module@version` would also ask the proxy for the module's version list (to check for a deprecation),
# which the proxy may refuse; downloading the pinned version and building it from the module cache does not.
dir="$(go mod download -json "github.com/bluesky-social/jetstream@$VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
if (cd "$dir" && CGO_ENABLED=0 go build -trimpath -o "$BIN.new" ./cmd/jetstream) >"$CACHE/build.log" 2>&1; then
    mv "$BIN.new" "$BIN"
    echo "$VERSION" >"$CACHE/bin/VERSION"
else
    echo "jetstream.sh: cannot build jetstream $VERSION (see $CACHE/build.log):" >&2
    grep -m3 -E 'Forbidden|error|cannot' "$CACHE/build.log" >&2 || tail -3 "$CACHE/build.log" >&2
    exit 1
fi
