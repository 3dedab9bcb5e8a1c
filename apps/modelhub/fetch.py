"""Fetch once, verify, cache: any store URI → a verified local path under MODEL_CACHE_DIR.

Concurrent callers for the same file wait for a single download: a threading lock serialises
threads of this process, and `fcntl.flock` on a lock file serialises processes (web workers,
Celery workers). A download goes to a temporary file in the target's folder and is renamed
into place only after its sha256 matched, so a partial or corrupt file is never visible.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import tempfile
import threading
from pathlib import Path

from django.conf import settings

from .store import StoreError, store_download

_locks_guard = threading.Lock()
_thread_locks: dict[Path, threading.Lock] = {}
# Files already hashed by this process (path → (sha256, mtime_ns, size)): skip re-hashing big files.
_verified: dict[Path, tuple[str, int, int]] = {}
fetch_stats = {"downloads": 0}


SHA256_RE = re.compile(r"\A[0-9a-f]{64}\Z")


class ChecksumMismatch(StoreError):
    """The downloaded bytes do not match the checksum in the card: nothing was cached."""


class UnsafeCachePath(StoreError):
    """A checksum or file name that would put a cache path outside MODEL_CACHE_DIR: nothing was touched."""


def sha256_is_valid(value) -> bool:
    return isinstance(value, str) and bool(SHA256_RE.match(value))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_path_for(*, uri: str, sha256: str | None) -> Path:
    # Keyed by content when the checksum is known, so a re-uploaded file at the same URI
    # never reuses a stale copy; otherwise by URI.
    # The checksum comes from a card.json anyone with store access wrote: it must be 64 hex digits
    # before it becomes a path, and the result must stay inside the cache (no "..", no absolute parts).
    if sha256 is not None and not sha256_is_valid(sha256):
        raise UnsafeCachePath(f"refusing checksum {str(sha256)[:80]!r}: a sha256 is 64 lowercase hex digits")
    key = sha256 or "uri-" + hashlib.sha256(uri.encode()).hexdigest()[:32]
    file_name = uri.rstrip("/").rsplit("/", 1)[-1]
    if file_name in ("", ".", "..") or "\x00" in file_name:
        raise UnsafeCachePath(f"refusing file name {file_name[:80]!r} for the model cache")
    target = Path(settings.MODEL_CACHE_DIR) / key[:2] / key / file_name
    root = Path(settings.MODEL_CACHE_DIR).resolve()
    resolved = target.resolve()
    if not resolved.is_relative_to(root) or resolved == root:
        raise UnsafeCachePath(f"refusing cache path {str(resolved)[:200]!r}: outside MODEL_CACHE_DIR")
    return target


def _thread_lock(target: Path) -> threading.Lock:
    with _locks_guard:
        return _thread_locks.setdefault(target, threading.Lock())


@contextlib.contextmanager
def _process_lock(target: Path):
    lock_path = target.with_name(f".{target.name}.lock")
    with lock_path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _already_verified(target: Path, sha256: str | None) -> bool:
    if not target.is_file():
        return False
    if sha256 is None:
        return True
    stat = target.stat()
    if _verified.get(target) == (sha256, stat.st_mtime_ns, stat.st_size):
        return True
    if file_sha256(target) == sha256:
        _verified[target] = (sha256, stat.st_mtime_ns, stat.st_size)
        return True
    target.unlink()  # a corrupted cache entry: fetch it again
    return False


def model_file_fetch(*, uri: str, sha256: str | None = None) -> Path:
    """The local, verified copy of the file at `uri`; downloads it at most once.

    Raises `ChecksumMismatch` when the bytes differ from `sha256`, `StoreError` when the store
    cannot be read.
    """
    target = cache_path_for(uri=uri, sha256=sha256)
    if sha256 is not None:  # verified by this process, and not rewritten since (one stat, no hashing)
        try:
            stat = target.stat()
        except FileNotFoundError:
            stat = None
        if stat is not None and _verified.get(target) == (sha256, stat.st_mtime_ns, stat.st_size):
            return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _thread_lock(target), _process_lock(target):
        if _already_verified(target, sha256):
            return target
        handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".partial", delete=False)
        temporary = Path(handle.name)
        try:
            with handle:
                store_download(uri=uri, fileobj=handle)
                handle.flush()
                os.fsync(handle.fileno())
            fetch_stats["downloads"] += 1
            actual = file_sha256(temporary)
            if sha256 is not None and actual != sha256:
                raise ChecksumMismatch(
                    f"checksum mismatch for {uri}: the card says sha256 {sha256[:12]}…, the file has {actual[:12]}…"
                )
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        stat = target.stat()
        _verified[target] = (actual, stat.st_mtime_ns, stat.st_size)
        return target
