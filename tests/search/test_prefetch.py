"""A large index file is read into the page cache in the background when it is mapped (word_index.file_prefetch):
the first searches after a start or a swap do not wait on the disk. One WILLNEED over the whole file would read
only the kernel's read-ahead size of it."""
from __future__ import annotations

import os
import subprocess

import pytest

from apps.search import word_index
from tests.conftest import wait_until

def _resident(path) -> int:
    """Bytes of `path` in the page cache (util-linux fincore)."""
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)], check=True,
                         capture_output=True, text=True).stdout
    return int(out.split()[0])


@pytest.fixture
def cold_file(tmp_path):
    path = tmp_path / "rows.bin"
    size = 48 * 1024 * 1024  # well over the read-ahead size (8 MB here, 128 KB by default)
    with open(path, "wb") as handle:
        handle.write(os.urandom(size))
        handle.flush()
        os.fsync(handle.fileno())
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # clean pages: dropped from the page cache
    os.close(fd)
    assert _resident(path) < size // 10
    word_index._forget_prefetched()
    yield path, size
    word_index._forget_prefetched()


def test_a_mapped_file_is_read_into_the_page_cache_whole_once(cold_file):
    path, size = cold_file
    thread = word_index.file_prefetch(path, wait=True)
    assert thread is not None
    # WILLNEED starts the reads and returns: the pages arrive as the disk serves them (slower on a busy machine)
    wait_until(lambda: _resident(path) == size, timeout=30, what="the whole file in the page cache")
    assert word_index.file_prefetch(path) is None  # once per process


def test_a_file_that_would_not_fit_in_memory_is_not_prefetched(cold_file, monkeypatch):
    path, size = cold_file
    monkeypatch.setattr(word_index, "_available_memory", lambda: size)  # half of it is less than the file
    assert word_index.file_prefetch(path, wait=True) is None
    assert _resident(path) < size // 10
