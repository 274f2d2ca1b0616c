"""Page cache: which pages of a SQLite store the kernel holds in memory, per table and index.

Owns measuring a store's working set: `evict` drops the store's pages from the kernel's page cache, a benchmark then
serves or ingests, and `cached` reports, per table and index, how many of its pages are in the page cache
(`mincore(2)` over a map of the database file, taken before SQLite's `dbstat` reads every page to say which page
belongs to which table or index; pages still in the WAL are not counted). Linux only.

Usage: `python -m bench.pagecache STORE [--evict]`: prints the store's resident pages per table and index (or drops
them).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import mmap
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from bench.measure import MB, markdown_table

_libc = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]


def evict(store: Path) -> None:
    """Writes the store's files (database, WAL) to disk and drops their pages from the kernel's page cache."""
    for path in (store, Path(f'{store}-wal')):
        if not path.exists():
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def cached_pages(path: Path) -> bytes:
    """One byte per page of the file (the OS page size), odd when the page is in the page cache."""
    size = path.stat().st_size
    pages = -(-size // mmap.PAGESIZE)
    vector = (ctypes.c_ubyte * pages)()
    with path.open('rb') as file, mmap.mmap(file.fileno(), size, access=mmap.ACCESS_COPY) as mapped:
        start = ctypes.c_char.from_buffer(mapped)  # never written: a private map shows the file's cached pages
        failed = _libc.mincore(ctypes.addressof(start), size, vector) != 0
        del start  # the map closes only once nothing points into it
    if failed:
        raise OSError(ctypes.get_errno(), 'mincore failed')
    return bytes(vector)


@dataclass(frozen=True)
class Cached:
    """A table or index: its bytes in the store and those in the page cache."""

    name: str
    bytes: int
    cached_bytes: int


def cached(store: Path) -> list[Cached]:
    """Every table and index of the store with its bytes in the page cache, most cached first."""
    cached = cached_pages(store)
    per_os_page = mmap.PAGESIZE
    totals: dict[str, list[int]] = {}
    with sqlite3.connect(f'file:{store}?mode=ro', uri=True) as conn:
        page_size = conn.execute('PRAGMA page_size').fetchone()[0]
        for name, page in conn.execute('SELECT name, pageno FROM dbstat'):
            offset = (page - 1) * page_size
            first, last = offset // per_os_page, (offset + page_size - 1) // per_os_page
            hit = any(cached[i] & 1 for i in range(first, min(last + 1, len(cached))))
            total = totals.setdefault(name, [0, 0])
            total[0] += page_size
            total[1] += page_size if hit else 0
    items = [Cached(name, size, hit) for name, (size, hit) in totals.items()]
    return sorted(items, key=lambda item: (-item.cached_bytes, item.name))


def cached_table(items: list[Cached]) -> str:
    rows: list[list[object]] = [
        [item.name, round(item.bytes / MB, 1), round(item.cached_bytes / MB, 1),
         f'{100 * item.cached_bytes / item.bytes:.0f}%' if item.bytes else '']
        for item in items if item.cached_bytes
    ]  # fmt: skip
    size, hit = sum(item.bytes for item in items), sum(item.cached_bytes for item in items)
    rows.append(['all', round(size / MB, 1), round(hit / MB, 1), f'{100 * hit / size:.0f}%' if size else ''])
    return markdown_table(['table or index', 'MB', 'in page cache MB', 'share'], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('store', type=Path)
    parser.add_argument('--evict', action='store_true', help="Drop the store's pages from the page cache instead.")
    args = parser.parse_args(argv)
    if args.evict:
        evict(args.store)
    else:
        print(cached_table(cached(args.store)))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
