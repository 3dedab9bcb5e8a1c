"""Reads for exports: every local row matching a search (the subset, then the learned rows the subset lacks),
in batches, and the files an export wrote, in chunks. Nothing here writes."""
from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import duckdb
from django.conf import settings

from apps.search.query import SearchQuery, where_compile
from apps.search.sql import quote_identifier
from apps.search.store import table_snapshot
from apps.search.tables import TableSpec

from .backends.export_sql import export_columns
from .learned import learned_segments_serving, learned_snapshot
from .models import Export

logger = logging.getLogger(__name__)
LOCAL_BATCH_ROWS = 5000
CHUNK_BYTES = 256 * 1024


@dataclass(frozen=True)
class LocalBatch:
    source: str  # "subset" or "learned" (apps.samples.pipeline's RowSource values)
    rows: list[tuple]


def local_matches_stream(*, query: SearchQuery, spec: TableSpec, batch_rows: int = LOCAL_BATCH_ROWS) -> Iterator[LocalBatch]:
    """Every row of the local copy matching `query`'s filters, with no limit: the subset's, then the learned rows
    whose key the subset did not return. Columns: export_columns(spec) (the key first). DuckDB hands them over
    `batch_rows` at a time, so a caller streaming them never holds them all (only the subset's keys, to skip the
    learned copies of rows the subset has)."""
    where = where_compile(query=query, spec=spec, dialect="duckdb")
    columns = ", ".join(quote_identifier(c) for c in export_columns(spec=spec))
    sql = f"SELECT {columns} FROM {quote_identifier(spec.name)} WHERE {where.sql}"
    seen: set = set()
    cursor = table_snapshot(table=spec.name).conn.cursor()
    try:
        cursor.execute(sql, where.params)
        while batch := cursor.fetchmany(batch_rows):
            seen.update(row[0] for row in batch)
            yield LocalBatch(source="subset", rows=batch)
    finally:
        cursor.close()
    if not settings.SUBSET_LEARNING_ENABLED:
        return
    try:
        learned = learned_snapshot()
    except (duckdb.Error, OSError) as exc:  # a broken learned store only means no learned rows, as in search
        logger.warning("learned rows unavailable for the export of %s: %s", spec.name, exc)
        return
    if learned is None or spec.name not in learned.tables:
        return
    for segment in learned_segments_serving(segments=learned.segments, spec=spec):  # newest first, as search
        hidden = segment.hidden.get(spec.name, frozenset())  # keys of answers evicted since the segment was built
        cursor = segment.conn.cursor()
        try:
            cursor.execute(sql, where.params)
            while batch := cursor.fetchmany(batch_rows):
                rows = [row for row in batch if row[0] not in seen and row[0] not in hidden]
                seen.update(row[0] for row in rows)
                if rows:
                    yield LocalBatch(source="learned", rows=rows)
        finally:
            cursor.close()


def export_expired(*, export: Export) -> bool:
    """Nothing left to download: retention deleted its files (`expired_at`), or a succeeded local export's file is
    gone all the same (deleted by hand, another DATA_DIR). The download answers 410 rather than fail mid-stream."""
    if export.is_expired:
        return True
    return export.state == Export.State.SUCCEEDED and export.backend != "athena" and not (
        export.location and os.path.exists(export.location))


def export_file_chunks(*, export: Export, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The CSV an export wrote, a chunk at a time: the local file as it is; on Athena the header, then each
    gzipped file the UNLOAD wrote under the export's prefix, decompressed as it is read from S3."""
    if export.backend != "athena":
        with open(export.location, "rb") as handle:
            while chunk := handle.read(chunk_bytes):
                yield chunk
        return
    from .backends.athena import export_objects, s3_client, s3_split

    header = ",".join(f'"{c}"' for c in export_columns(spec=_spec_for(export))) + "\n"
    yield header.encode("utf-8")
    client = s3_client()
    bucket, _ = s3_split(export.location)
    for item in export_objects(export.location, client=client):
        body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"]
        gunzip = zlib.decompressobj(16 + zlib.MAX_WBITS) if item["Key"].endswith(".gz") else None
        while chunk := body.read(chunk_bytes):
            data = gunzip.decompress(chunk) if gunzip else chunk
            if data:
                yield data
        if gunzip:
            tail = gunzip.flush()
            if tail:
                yield tail


def _spec_for(export: Export) -> TableSpec:
    from apps.search.tables import table_spec_get

    return table_spec_get(name=export.table)
