"""The learned store on disk: small immutable segments and a manifest naming the live ones.

Layout under settings.SUBSET_LEARNED_DIR:
- `MANIFEST`: JSON, the one source of truth. `segments` (each: its file, per table its key column, columns,
  row count, and the ids of every answer whose rows were written into it) and `answers` (the live ones: table,
  filters, limit, rows, complete, learned_at, last_used_at, and the segment holding their rows), plus
  counters. Written whole to a temporary file, fsynced, `os.replace`d, the folder fsynced: a reader sees
  the old or the new one, never half of one.
- `segments/<name>/segment-<stamp>.duckdb` and its word index `<file>.words/` (SwappedFiles.build of
  apps/search/store.py, so a segment is indexed exactly as the subset is). One folder per segment: the
  word index cache (apps/search/word_index.file_index) keeps one file per folder open, and every segment
  must stay open. Inside a segment: one table per searched table, same columns and types as the subset's,
  rows unique by key and stored in key order (so "the first N rows in table order" of a segment are its
  first N in key order), and `_answer_keys` (answer_id, table_name, key as text): which answer brought
  which row, so rows of answers dropped since are hidden (learned.py) and left out by the next merge.
- `.writer.lock`: the flock of one writer at a time (SwappedFiles.writer_lock).

Segment files never change once listed; a segment that is no longer listed is deleted (open readers keep
their handles: unlink is fine on Linux).

The single-file layout before segments (`CURRENT` naming `learned-<stamp>.duckdb`, with `_answers` and
`_answer_keys`, as written since commit 61edc4c) is read as one unsorted segment until a writer (a learned
answer or the merge) converts it once into a segment and deletes it.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import threading
import time
from pathlib import Path

import duckdb
from django.conf import settings

from apps.search.store import SwappedFiles

MANIFEST = "MANIFEST"
FORMAT = 1
SEGMENTS = "segments"
ANSWERS = "_answers"  # the single-file layout's answers table (read when converting it)
ANSWER_KEYS = "_answer_keys"

LEGACY = SwappedFiles(dir_setting="SUBSET_LEARNED_DIR", prefix="learned")
WRITER = SwappedFiles(dir_setting="SUBSET_LEARNED_DIR", prefix="segment")  # its writer_lock only


class SegmentFiles(SwappedFiles):
    """SwappedFiles.build in one segment's own folder (nothing is installed: the manifest lists it)."""

    def __init__(self, folder: Path):
        super().__init__(dir_setting="SUBSET_LEARNED_DIR", prefix="segment")
        self.folder = folder

    def directory(self) -> Path:
        return self.folder


def store_dir() -> Path:
    return Path(settings.SUBSET_LEARNED_DIR)


def manifest_path() -> Path:
    return store_dir() / MANIFEST


def segments_dir() -> Path:
    return store_dir() / SEGMENTS


def manifest_empty() -> dict:
    return {"format": FORMAT, "generation": 0, "next_id": 1, "recency_checked_at": None, "segments": [], "answers": []}


def manifest_parse(text: str) -> dict:
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"learned MANIFEST format {data.get('format') if isinstance(data, dict) else '?'} "
                         f"is not {FORMAT}")
    return data


def manifest_read() -> dict | None:
    """The manifest as written last, or None when there is none (nothing learned, or the old layout)."""
    try:
        text = manifest_path().read_text()
    except FileNotFoundError:
        return None
    return manifest_parse(text)


def manifest_write(manifest: dict) -> None:
    """Replace the manifest atomically and durably (the caller holds the writer lock)."""
    folder = store_dir()
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {**manifest, "generation": int(manifest.get("generation", 0)) + 1}
    tmp = folder / f".{MANIFEST}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(tmp, "w") as handle:
        json.dump(manifest, handle, separators=(",", ":"), default=str)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, folder / MANIFEST)
    fsync_dir(folder)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """fsync every file and folder under `folder` (a segment, before a manifest lists it)."""
    for root, _dirs, files in os.walk(folder):
        for name in files:
            fd = os.open(Path(root) / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(root))
    fsync_dir(folder.parent)


def segment_path(entry: dict) -> Path:
    return store_dir() / entry["file"]


def segment_folder_new(name: str) -> Path:
    folder = segments_dir() / name
    folder.mkdir(parents=True, exist_ok=False)
    return folder


def segment_build(*, name: str, fill) -> tuple[Path, dict]:
    """Build a segment in its own new folder: `fill(conn)` writes its tables and returns their description
    ({table: {"key": ..., "columns": [[name, type], ...], "rows": n}}); the word index is built, the files are
    fsynced. Returns (path, tables). On any failure the folder goes."""
    folder = segment_folder_new(name)
    try:
        with SegmentFiles(folder).build(threads=1) as (path, conn):
            tables = fill(conn)
        fsync_tree(folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return path, tables


def segment_delete(entry: dict) -> None:
    """Delete a segment that no manifest lists any more (its folder, or the old layout's file and index)."""
    path = segment_path(entry)
    if path.parent.parent == segments_dir():
        shutil.rmtree(path.parent, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
        shutil.rmtree(path.with_name(path.name + ".words"), ignore_errors=True)


def orphans_delete(*, manifest: dict, older_than_seconds: float = 3600.0) -> int:
    """Segment folders no manifest lists and untouched for a while: left by a killed writer or merge.
    (A merge builds its segment before listing it, so a recent unlisted folder may be one in progress.)"""
    listed = {segment_path(s).parent.name for s in manifest["segments"]}
    removed = 0
    cutoff = time.time() - older_than_seconds
    for folder in segments_dir().glob("*") if segments_dir().exists() else []:
        try:
            if folder.name not in listed and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        except FileNotFoundError:
            continue
    return removed


def legacy_path() -> Path | None:
    """The old single-file layout's current file, if the store still has one."""
    return LEGACY.current_path()


def legacy_manifest(path: Path) -> dict:
    """The old single file as a manifest with one unsorted segment (its rows in insertion order)."""
    conn = duckdb.connect(str(path), read_only=True, config={"threads": 1})
    try:
        names = {r[0] for r in conn.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' AND database_name = current_database()"
        ).fetchall()}
        answers = []
        if ANSWERS in names:
            for (answer_id, table, key_column, fingerprint, filters, key_text, limit_rows, row_count, complete,
                 fallback_id, learned_at, last_used_at) in conn.execute(
                    f"SELECT id, table_name, key_column, fingerprint, filters, filters_key, limit_rows, row_count, "
                    f"complete, fallback_id, learned_at, last_used_at FROM {ANSWERS} ORDER BY id").fetchall():
                answers.append({"id": int(answer_id), "segment": 0, "table": table, "key_column": key_column,
                                "fingerprint": fingerprint, "filters": json.loads(filters), "filters_key": key_text,
                                "limit": int(limit_rows), "rows": int(row_count), "complete": bool(complete),
                                "fallback_id": fallback_id, "learned_at": time_text(learned_at),
                                "last_used_at": time_text(last_used_at)})
        keys = {a["table"]: a["key_column"] for a in answers}
        tables = {}
        for table in sorted(names - {ANSWERS, ANSWER_KEYS}):
            if table not in keys:
                continue
            columns = [list(r) for r in conn.execute(
                "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() "
                "AND schema_name = 'main' AND table_name = ? ORDER BY column_index", [table]).fetchall()]
            rows = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
            tables[table] = {"key": keys[table], "columns": columns, "rows": int(rows)}
    finally:
        conn.close()
    segment = {"id": 0, "file": path.name, "sorted": False, "tables": tables,
               "built_answers": [a["id"] for a in answers]}
    manifest = manifest_empty()
    manifest.update(next_id=max([a["id"] for a in answers], default=0) + 1, segments=[segment] if answers else [],
                    answers=answers, legacy=path.name)
    manifest["recency_checked_at"] = max((a["last_used_at"] for a in answers), default=None)
    return manifest


def legacy_delete() -> None:
    """The old layout's files, once a manifest replaced them."""
    folder = store_dir()
    (folder / "CURRENT").unlink(missing_ok=True)
    for path in folder.glob("learned-*.duckdb*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def time_text(value: dt.datetime | None) -> str | None:
    """Times in the manifest: naive UTC, ISO text (sortable as text)."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds")


def time_parse(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text)
