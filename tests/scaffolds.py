"""Running the tests `feedgen new-algorithm` scaffolds, in a fresh interpreter, as their author would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def assert_scaffold_tests_pass(cwd: Path, pythonpath: Path, *args: str) -> None:
    """Runs pytest in `cwd` with `pythonpath` first on the path, and checks the scaffold's two tests pass."""
    result = subprocess.run(
        [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', *args],
        cwd=cwd,
        env=os.environ | {'PYTHONPATH': str(pythonpath)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert '2 passed' in result.stdout
