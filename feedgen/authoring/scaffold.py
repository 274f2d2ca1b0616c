"""Scaffold: the files of a new algorithm plugin, with a test that passes, from templates.

Owns what `feedgen new-algorithm` writes: a module in the project's `algorithms/` folder and its test in
`tests/`, or a standalone installable package (`pyproject.toml` with a `feedgen.algorithms` entry point,
the module, its test, a README). Templates are Jinja files in `feedgen/templates/new_*`. It never
overwrites a file and never imports or runs what it writes.
"""

from __future__ import annotations

import re
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

NAME = re.compile(r'^[a-z][a-z0-9_]{0,39}$')


class ScaffoldError(ValueError):
    """The algorithm name is unusable, or a file to write already exists."""


def _environment() -> Environment:
    return Environment(
        loader=PackageLoader('feedgen.authoring', 'templates'),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def _names(name: str, module: str) -> dict[str, str]:
    if not NAME.match(name):
        raise ScaffoldError(
            f'algorithm name {name!r}: use lower-case letters, digits and _, starting with a letter (max 40)'
        )
    words = name.split('_')
    return {
        'name': name,
        'module': module,
        'class_name': ''.join(word.capitalize() for word in words),
        'display_name': ' '.join(words).capitalize(),
        'distribution': 'feedgen-' + name.replace('_', '-'),
    }


def _write(files: dict[Path, str], names: dict[str, str]) -> list[Path]:
    existing = [path for path in files if path.exists()]
    if existing:
        raise ScaffoldError(f'{existing[0]} already exists; not overwriting anything')
    environment = _environment()
    for path, template in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(environment.get_template(template).render(**names))
    return list(files)


def scaffold_module(name: str, project: Path) -> list[Path]:
    """Writes `algorithms/<name>.py` and `tests/test_algorithm_<name>.py` under `project`; returns their paths.

    Raises:
        ScaffoldError: the name is invalid or a file exists.
    """
    names = _names(name, f'algorithms.{name}')
    files = {
        project / 'algorithms' / f'{name}.py': 'new_algorithm.py.jinja',
        project / 'tests' / f'test_algorithm_{name}.py': 'new_algorithm_test.py.jinja',
    }
    return _write(files, names)


def scaffold_package(name: str, folder: Path) -> list[Path]:
    """Writes an installable plugin package for algorithm `name` into `folder`; returns the paths written.

    The package is one module, `feedgen_<name>`, registered under the `feedgen.algorithms` entry point.

    Raises:
        ScaffoldError: the name is invalid or a file exists.
    """
    module = f'feedgen_{name}'
    names = _names(name, module)
    files = {
        folder / 'pyproject.toml': 'new_package_pyproject.toml.jinja',
        folder / 'README.md': 'new_package_readme.md.jinja',
        folder / f'{module}.py': 'new_algorithm.py.jinja',
        folder / 'tests' / f'test_{module}.py': 'new_algorithm_test.py.jinja',
    }
    return _write(files, names)
