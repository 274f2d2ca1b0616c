"""Scaffold: the files of a new algorithm plugin, with a test that passes, from templates.

Owns what `feedgen new-algorithm` writes: a module in the project's `algorithms/` folder and its test in
`tests/`, or a standalone installable package (`pyproject.toml` with a `feedgen.algorithms` entry point and a
`test` extra, the module, its test, a README), or one more algorithm in such a package. Templates are Jinja files in
`feedgen/authoring/templates/new_*`. It never overwrites a file (but the pyproject it extends) and never imports or
runs what it writes."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

NAME = re.compile(r'^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$')
MAX_NAME = 40
ENTRY_POINTS = "[project.entry-points.'feedgen.algorithms']"
_PY_MODULES = re.compile(r'^py-modules\s*=\s*\[[^\]\n]*\]\s*$', re.MULTILINE)


class ScaffoldError(ValueError):
    """The algorithm name is unusable, a file to write already exists, or a package cannot take another algorithm."""


def _environment() -> Environment:
    return Environment(
        loader=PackageLoader('feedgen.authoring', 'templates'),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def module_name(name: str) -> str:
    """The Python module name of algorithm `name` (`catch-up` lives in `catch_up`).

    Raises:
        ScaffoldError: the name is not lower-case words of letters and digits joined by `-` or `_`.
    """
    if not NAME.match(name) or len(name) > MAX_NAME:
        raise ScaffoldError(
            f'algorithm name {name!r}: use lower-case letters and digits, words joined by - or _, starting with a '
            f'letter (max {MAX_NAME})'
        )
    return name.replace('-', '_')


def _names(name: str, module: str) -> dict[str, str]:
    words = re.split('[-_]', name)
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


def algorithms_import_name(project: Path) -> str:
    """The name `project`'s `algorithms/` folder is imported as: the package its pyproject maps onto that folder
    (`feedgen_algorithms` in feedgen's own repository), else `algorithms`."""
    try:
        document = tomllib.loads((project / 'pyproject.toml').read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return 'algorithms'
    package_dir = document.get('tool', {}).get('setuptools', {}).get('package-dir', {})
    mapped = [package for package, folder in package_dir.items() if str(folder).rstrip('/') == 'algorithms']
    return mapped[0] if mapped else 'algorithms'


def scaffold_module(name: str, project: Path) -> list[Path]:
    """Writes `algorithms/<module>.py` and `tests/test_algorithm_<module>.py` under `project`; returns their paths.

    Raises:
        ScaffoldError: the name is invalid or a file exists.
    """
    module = module_name(name)
    names = _names(name, f'{algorithms_import_name(project)}.{module}')
    files = {
        project / 'algorithms' / f'{module}.py': 'new_algorithm.py.jinja',
        project / 'tests' / f'test_algorithm_{module}.py': 'new_algorithm_test.py.jinja',
    }
    return _write(files, names)


def scaffold_package(name: str, folder: Path) -> list[Path]:
    """Writes an installable plugin package for algorithm `name` into `folder`, or adds `name` to the package
    `folder` already holds; returns the paths written.

    A new package is one module, `feedgen_<module>`, registered under the `feedgen.algorithms` entry point. Adding to
    an existing package writes another module and its test, and adds the module to the pyproject's `py-modules` and
    its entry point.

    Raises:
        ScaffoldError: the name is invalid, a file exists, or the existing pyproject cannot be extended.
    """
    module = f'feedgen_{module_name(name)}'
    names = _names(name, module)
    code = {
        folder / f'{module}.py': 'new_algorithm.py.jinja',
        folder / 'tests' / f'test_{module}.py': 'new_algorithm_test.py.jinja',
    }
    pyproject = folder / 'pyproject.toml'
    if pyproject.exists():
        extended = _with_algorithm(pyproject, name, module)
        written = _write(code, names)
        pyproject.write_text(extended)
        return [*written, pyproject]
    files = {pyproject: 'new_package_pyproject.toml.jinja', folder / 'README.md': 'new_package_readme.md.jinja'}
    return _write(files | code, names)


def _with_algorithm(pyproject: Path, name: str, module: str) -> str:
    """The text of `pyproject` with `module` added to `py-modules` and `name = module` to the entry points.

    Raises:
        ScaffoldError: the file is not TOML, declares `name` already, or lacks a one-line `py-modules` list or the
            entry-points table, which the scaffold writes; the message says what to add by hand.
    """
    text = pyproject.read_text()
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ScaffoldError(f'{pyproject} is not valid TOML: {error}') from None
    declared = document.get('project', {}).get('entry-points', {}).get('feedgen.algorithms', {})
    if name in declared:
        raise ScaffoldError(f'{pyproject} already declares the algorithm {name!r}; not overwriting anything')
    modules = document.get('tool', {}).get('setuptools', {}).get('py-modules')
    by_hand = f"add {module!r} to [tool.setuptools] py-modules and {name} = '{module}' under {ENTRY_POINTS} by hand"
    if not isinstance(modules, list) or len(_PY_MODULES.findall(text)) != 1 or text.count(ENTRY_POINTS + '\n') != 1:
        raise ScaffoldError(f'{pyproject} is not laid out as new-algorithm writes it: {by_hand}')
    listed = ', '.join(repr(m) for m in [*modules, module])
    text = _PY_MODULES.sub(lambda _: f'py-modules = [{listed}]', text)
    text = text.replace(ENTRY_POINTS + '\n', f"{ENTRY_POINTS}\n{name} = '{module}'\n")
    if tomllib.loads(text)['project']['entry-points']['feedgen.algorithms'].get(name) != module:
        raise ScaffoldError(f'{pyproject}: could not add the entry point: {by_hand}')
    return text
