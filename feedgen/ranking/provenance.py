"""Provenance: the exact code and parameters that decide a feed's pages, as one bundle, and its version.

Owns the static import graph of an algorithm's module (read with `ast` from the installed source: every `import`
and `from ... import`, at any depth, outside `if TYPE_CHECKING:` blocks, followed transitively), restricted to
feedgen's own package and the algorithm's own top-level package (built-ins: `feedgen_algorithms`; a plugin: its
package, or its file in a plugins folder). The graph starts at the algorithm's module and at `SERVING_MODULES`,
the ranking-stage code every feed's pages pass through. Third-party libraries are left out: they are pinned by the
distribution's dependencies, not by this hash.

The bundle is canonical JSON (sorted keys, no spaces, UTF-8) of `{algorithm, class, params, files: [{path,
source}]}`, files sorted by path; the version is the first 12 hex digits of its SHA-256. Whoever fetches the bundle
(`GET /algorithms/<rkey>/source`) recomputes the version with `sha256sum` and compares each file with the
published package. It reads source files and nothing else.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import importlib.util
import json
import sys
import weakref
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from feedgen.ranking.algorithm import Algorithm

PROJECT_PACKAGE = 'feedgen'
SERVING_MODULES = ('feedgen.ranking.plugins', 'feedgen.ranking.languages')
"""Modules that shape every feed's pages around its algorithm: pins (`Feed.page`), the reader-language fallback."""
VERSION_DIGITS = 12

Locate = Callable[[str], Path | None]
"""Finds the source file of a dotted module name, or None when it is outside the hashed packages."""


def package_locator(roots: dict[str, Path]) -> Locate:
    """A `Locate` over source trees: `roots` maps a top-level name to its package folder or single-file module."""

    def locate(module: str) -> Path | None:
        top, *rest = module.split('.')
        root = roots.get(top)
        if root is None:
            return None
        if root.is_file():
            return root if not rest else None
        base = root.joinpath(*rest)
        for candidate in (base.with_name(base.name + '.py'), base / '__init__.py') if rest else (root / '__init__.py',):
            if candidate.is_file():
                return candidate
        return None

    return locate


def module_files(roots: Iterable[str], locate: Locate) -> dict[str, Path]:
    """Every module reachable by static imports from `roots` that `locate` finds, by dotted name, with its file."""
    found: dict[str, Path] = {}
    pending = [name for root in roots for name in _with_parents(root)]
    while pending:
        module = pending.pop()
        if module in found:
            continue
        path = locate(module)
        if path is None:
            continue
        found[module] = path
        tree = ast.parse(path.read_bytes(), filename=str(path))
        pending.extend(_imports(tree, module, path.name == '__init__.py'))
    return found


def bundle_path(module: str, path: Path) -> str:
    """The path a module has in a bundle: from its top-level package, never from the serving machine's root."""
    return '/'.join(module.split('.')) + ('/__init__.py' if path.name == '__init__.py' else '.py')


def code_files(module: str, roots: dict[str, Path]) -> tuple[tuple[str, str], ...]:
    """`(bundle path, source)` of every module that decides the pages of an algorithm in `module`, sorted by path.

    `roots` maps each hashed top-level name (`feedgen`, the algorithm's package) to its folder or file.
    """
    modules = module_files([module, *SERVING_MODULES], package_locator(roots))
    return tuple(sorted((bundle_path(name, path), path.read_text('utf-8')) for name, path in modules.items()))


def algorithm_files(algorithm: type[Algorithm]) -> tuple[tuple[str, str], ...]:
    """`code_files` of `algorithm` as installed here (read once a class)."""
    files = _files.get(algorithm)
    if files is None:
        tops = {PROJECT_PACKAGE, algorithm.__module__.split('.', 1)[0]}
        roots = {top: root for top in tops if (root := _source_root(top)) is not None}
        files = _files.setdefault(algorithm, code_files(algorithm.__module__, roots))
    return files


_files: weakref.WeakKeyDictionary[type[Algorithm], tuple[tuple[str, str], ...]] = weakref.WeakKeyDictionary()


def effective_params(algorithm: Algorithm) -> dict[str, Any]:
    """Every parameter of `algorithm` with the value it runs with (declared or default), as JSON-able data."""
    params = algorithm.params
    if not dataclasses.is_dataclass(params):
        return {}
    return {f.name: _jsonable(getattr(params, f.name)) for f in dataclasses.fields(params)}


def source_bundle(algorithm: Algorithm) -> bytes:
    """The canonical bundle of the code and parameters that decide `algorithm`'s pages (see the module docstring)."""
    kind = type(algorithm)
    document = {
        'algorithm': kind.name,
        'class': f'{kind.__module__}.{kind.__qualname__}',
        'params': effective_params(algorithm),
        'files': [{'path': path, 'source': source} for path, source in algorithm_files(kind)],
    }
    return json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(',', ':')).encode()


def bundle_version(bundle: bytes) -> str:
    """The version a bundle proves: the first 12 hex digits of its SHA-256."""
    return hashlib.sha256(bundle).hexdigest()[:VERSION_DIGITS]


def _source_root(top: str) -> Path | None:
    """The folder (or single file) a top-level module is loaded from, or None when it has no source."""
    module = sys.modules.get(top)
    spec = module.__spec__ if module is not None else importlib.util.find_spec(top)
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(spec.origin) if spec.origin and spec.origin.endswith('.py') else None


def _imports(tree: ast.Module, module: str, is_package: bool) -> Iterator[str]:
    """The modules `tree` may import at run time: each imported name, its parent packages and `from` targets."""
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield from _with_parents(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, is_package)
            yield from _with_parents(base)
            yield from (f'{base}.{alias.name}' for alias in node.names if alias.name != '*')


def _runtime_nodes(node: ast.AST) -> Iterator[ast.AST]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for branch in child.orelse:
                yield branch
                yield from _runtime_nodes(branch)
            continue
        yield child
        yield from _runtime_nodes(child)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == 'TYPE_CHECKING') or (
        isinstance(test, ast.Attribute) and test.attr == 'TYPE_CHECKING'
    )


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ''
    parts = module.split('.') if is_package else module.split('.')[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return '.'.join([*parts, node.module] if node.module else parts)


def _with_parents(name: str) -> Iterator[str]:
    parts = name.split('.')
    for end in range(1, len(parts) + 1):
        yield '.'.join(parts[:end])


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value
