"""The benchmarks' memory sampler (`bench.measure.resident`): a process's private memory apart from the file pages
it maps."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

from bench.measure import resident

MB = 1024 * 1024


def test_private_memory_counts_the_heap_and_mapped_memory_counts_file_pages(tmp_path: Path) -> None:
    pid = os.getpid()
    before = resident(pid)
    assert before is not None
    heap = b'\x01' * (64 * MB)  # written, so resident
    grown = resident(pid)
    assert grown is not None and grown.private_mb - before.private_mb > 48
    store = tmp_path / 'store'
    store.write_bytes(b'\x02' * (64 * MB))
    with store.open('rb') as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        assert sum(mapped[offset] for offset in range(0, len(mapped), mmap.PAGESIZE)) == 2 * (64 * MB // mmap.PAGESIZE)
        read = resident(pid)
        assert read is not None and read.mapped_mb - grown.mapped_mb > 48
        assert read.private_mb - grown.private_mb < 16  # the store's pages are not the process's own
    del heap


def test_a_gone_process_has_no_memory() -> None:
    assert resident(2**22 + 1) is None  # above the kernel's largest pid
