# peewee read as untyped (every name `Any`), as before peewee 4 bundled stubs: those stubs type every query's rows
# as model instances, whatever `.tuples()`, `.namedtuples()` or `.dicts()` makes them. `mypy_path` in
# pyproject.toml puts this file ahead of the installed stubs.
from typing import Any

def __getattr__(name: str) -> Any: ...
