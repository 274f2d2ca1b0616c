#!/usr/bin/env bash
# Builds the container images tests/test_image.py runs, on a machine that reaches Debian's mirror and PyPI but no
# container registry:
#   - installs Debian's podman (with runc; settings in .ci/containers.conf) and podman-compose from PyPI;
#   - makes the Dockerfile's base image (its PYTHON_IMAGE, Python 3.11 as in python:3.11-slim) from Debian's mirror
#     with debootstrap: a venv first on PATH, the host's CA certificates so pip trusts what the host trusts. Made
#     once: its root tar is kept under ~/.cache/feedgen-image, keyed by PYTHON_IMAGE and this recipe;
#   - builds a PostgreSQL image on that base (.ci/postgres.Containerfile, saved beside it) for the compose test;
#   - builds the project's image from the unchanged Dockerfile (podman's layer cache makes a rebuild quick).
# Safe to run again: each step is skipped when done. Prints the images' sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF="$PWD/.ci/containers.conf"
CACHE="${FEEDGEN_IMAGE_CACHE:-$HOME/.cache/feedgen-image}"
MIRROR="${FEEDGEN_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
IMAGE="${FEEDGEN_IMAGE:-localhost/feedgen:ci}"
POSTGRES_IMAGE="${FEEDGEN_POSTGRES_IMAGE:-localhost/feedgen-postgres:ci}"

apt_install() { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; }
command -v podman >/dev/null || apt_install podman runc debootstrap
python -c 'import podman_compose' 2>/dev/null || python -m pip install -q 'podman-compose>=1.2,<2'

# The base: the Dockerfile's PYTHON_IMAGE made locally, tagged under a name no registry serves.
python_image="$(sed -n 's/^ARG PYTHON_IMAGE=//p' Dockerfile)"
[ "$python_image" = python:3.11-slim ] || { echo "image.sh makes python:3.11-slim, not $python_image" >&2; exit 1; }
recipe="$(sed -n '/^make_base()/,/^}/p' "$0" | sha256sum | cut -c1-12)"
key="${python_image//[:\/]/-}-$recipe"
BASE="localhost/feedgen-base:$key"

make_base() {
    local root="$1"
    command -v debootstrap >/dev/null || apt_install debootstrap
    debootstrap --variant=minbase --include=python3.11,python3.11-venv,python3-distutils,ca-certificates \
        bookworm "$root" "$MIRROR" >"$root.log" 2>&1 || { tail -20 "$root.log" >&2; rm -rf "$root" "$root.log"; return 1; }
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$root/etc/pip.conf"
    chroot "$root" python3.11 -m venv /usr/local/python
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
}

if ! podman image exists "$BASE"; then
    mkdir -p "$CACHE"
    if [ ! -f "$CACHE/$key.tar" ]; then
        root="$(mktemp -d /tmp/feedgen-base.XXXXXX)"
        make_base "$root"
        tar -C "$root" --numeric-owner -cf "$CACHE/$key.tar.part" . && mv "$CACHE/$key.tar.part" "$CACHE/$key.tar"
        rm -rf "$root" "$root.log"
    fi
    podman import -q --change 'ENV=PATH=/usr/local/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV=LANG=C.UTF-8' --change 'CMD=["python3"]' "$CACHE/$key.tar" "$BASE" >/dev/null
fi

# PostgreSQL on the same base, saved beside it: on a clean machine it is loaded, not built again.
pg_key="$key-$(sha256sum .ci/postgres.Containerfile .ci/postgres-entrypoint.sh | sha256sum | cut -c1-12)"
if ! podman image exists "$POSTGRES_IMAGE-$pg_key"; then
    if [ -f "$CACHE/postgres-$pg_key.tar" ]; then
        podman load -q -i "$CACHE/postgres-$pg_key.tar" >/dev/null
    else
        podman build -q --pull=never --build-arg "BASE=$BASE" -t "$POSTGRES_IMAGE-$pg_key" \
            -f .ci/postgres.Containerfile .ci >/dev/null
        podman save -q -o "$CACHE/postgres-$pg_key.tar.part" "$POSTGRES_IMAGE-$pg_key"
        mv "$CACHE/postgres-$pg_key.tar.part" "$CACHE/postgres-$pg_key.tar"
    fi
fi
podman tag "$POSTGRES_IMAGE-$pg_key" "$POSTGRES_IMAGE"
# What earlier recipes made goes: their tars and their images.
find "$CACHE" -maxdepth 1 -name '*.tar' ! -name "$key.tar" ! -name "postgres-$pg_key.tar" -delete
podman images --format '{{.Repository}}:{{.Tag}}' | grep -E "^(${BASE%:*}|$POSTGRES_IMAGE-)" |
    grep -vxF -e "$BASE" -e "$POSTGRES_IMAGE-$pg_key" | xargs -r podman rmi -f >/dev/null || true

# The build stage is tagged too, so that pruning what earlier builds left keeps its layers for the next build.
for target in build ''; do
    podman build -q --format docker --pull=never --build-arg "PYTHON_IMAGE=$BASE" ${target:+--target "$target"} \
        -t "$IMAGE${target:+-$target}" . >/dev/null
done
podman image prune -f >/dev/null
podman image inspect --format "{{index .RepoTags 0}} {{.Size}}" "$IMAGE" "$BASE" "$POSTGRES_IMAGE"
