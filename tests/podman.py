"""The project's container image in tests: building it with `.ci/image.sh`, and podman containers and volumes.

podman runs with `.ci/containers.conf` (runc, cgroupfs). Without a working podman a test skips, except in CI (`CI`
set), where it fails: CI must never pass by skipping. Every container and volume is named by the test that makes it
and removed afterwards.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IMAGE = os.environ.get('FEEDGEN_IMAGE', 'localhost/feedgen:ci')
POSTGRES_IMAGE = os.environ.get('FEEDGEN_POSTGRES_IMAGE', 'localhost/feedgen-postgres:ci')
PODMAN_ENV = os.environ | {'CONTAINERS_CONF': str(ROOT / '.ci' / 'containers.conf')}
STOP_SECONDS = 30
"""The grace period `podman stop` gives a container before it kills it."""


def unavailable(reason: str) -> None:
    if os.environ.get('CI'):
        pytest.fail(f'CI is set but podman cannot run the image: {reason}', pytrace=False)
    pytest.skip(f'needs podman (bash .ci/image.sh installs it and builds the image): {reason}')


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`podman ARGS`, its output captured; a failure (with `check`) raises with podman's stderr."""
    result = subprocess.run(['podman', *args], env=PODMAN_ENV, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f'podman {" ".join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}')
    return result


def build_images() -> None:
    """Builds the images with `.ci/image.sh` (quick when they are current), or skips saying why podman cannot."""
    if shutil.which('podman') is None:
        unavailable('podman is not installed')
    info = podman('info', check=False, timeout=60)
    if info.returncode != 0:
        unavailable(f'`podman info` fails: {info.stderr.strip()[-500:]}')
    built = subprocess.run(
        ['bash', str(ROOT / '.ci' / 'image.sh')], env=PODMAN_ENV, capture_output=True, text=True, timeout=1800
    )
    assert built.returncode == 0, f'.ci/image.sh failed:\n{built.stdout[-2000:]}\n{built.stderr[-3000:]}'


def unique(name: str) -> str:
    return f'feedgen-test-{name}-{secrets.token_hex(3)}'


@dataclass(frozen=True)
class Container:
    name: str

    def logs(self) -> str:
        result = podman('logs', self.name, check=False)
        return result.stdout + result.stderr

    def exec(self, *command: str) -> str:
        """`podman exec NAME COMMAND`; returns its standard output."""
        return podman('exec', self.name, *command).stdout

    def running(self) -> bool:
        return podman('inspect', '--format', '{{.State.Running}}', self.name).stdout.strip() == 'true'

    def healthcheck(self) -> subprocess.CompletedProcess[str]:
        """The image's HEALTHCHECK, run now (`podman healthcheck run`)."""
        return podman('healthcheck', 'run', self.name, check=False, timeout=60)

    def stop(self) -> int:
        """`podman stop` with the grace period; returns the container's exit code."""
        podman('stop', '--time', str(STOP_SECONDS), self.name, timeout=STOP_SECONDS + 60)
        return int(podman('inspect', '--format', '{{.State.ExitCode}}', self.name).stdout)


@contextmanager
def container(name: str, *args: str) -> Iterator[Container]:
    """`podman run -d --name NAME ARGS` (options, image, command); removed afterwards, with its anonymous volumes."""
    podman('run', '-d', '--name', name, *args)
    try:
        yield Container(name)
    finally:
        podman('rm', '--force', '--volumes', '--time', '0', name, check=False, timeout=STOP_SECONDS + 60)


@contextmanager
def volume(name: str) -> Iterator[str]:
    """A named volume, removed afterwards."""
    podman('volume', 'create', name)
    try:
        yield name
    finally:
        podman('volume', 'rm', '--force', name, check=False)


@dataclass(frozen=True)
class Project:
    """A compose project brought up with podman-compose."""

    name: str
    env: dict[str, str]

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, '-m', 'podman_compose', '-f', str(ROOT / 'compose.yaml'), '-p', self.name, *args]
        return subprocess.run(command, env=PODMAN_ENV | self.env, capture_output=True, text=True, timeout=timeout)

    def logs(self, service: str) -> str:
        result = self.compose('logs', service, timeout=60)
        return result.stdout + result.stderr


@contextmanager
def compose(name: str, env: dict[str, str]) -> Iterator[Project]:
    """`compose.yaml` up as project NAME, with `env` for its variables; down, with its volumes, afterwards."""
    project = Project(name, env)
    try:
        up = project.compose('up', '-d')
        assert up.returncode == 0, f'podman-compose up exited {up.returncode}:\n{up.stdout[-2000:]}{up.stderr[-3000:]}'
        yield project
    finally:
        # Its containers go first with their anonymous volumes (the image's /data), which `down` leaves behind.
        listed = podman('ps', '--all', '--quiet', '--filter', f'label=io.podman.compose.project={name}', check=False)
        if ids := listed.stdout.split():
            podman('rm', '--force', '--volumes', '--time', str(STOP_SECONDS), *ids, check=False, timeout=120)
        project.compose('down', '--volumes')
