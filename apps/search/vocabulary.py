"""The vocabulary of a table's FULL dataset, built with each refresh and kept beside the subset file.

What the subset cannot know (is this word anywhere in the 200M rows? how many rows hold it?), the
vocabulary says without scanning: for each text column, every distinct word of the full data with the
number of rows holding it, split exactly as the word index splits (apps/search/word_index.py: the
value lowercased by pyarrow's `utf8_lower`, split at every character that is not a letter or digit;
words of ASCII digits only, which the index leaves out, are kept where they are numbers and not ids:
digit_words_kept); for each low-cardinality text
column (at most VALUES_MAX distinct values), every distinct value with its row count, and the rows of
every combination of those columns' values (a *cell*: label x lang x domain; at most CELLS_MAX of them).

It gives, before any paid query (apps.search.selectors.vocabulary_answer):

- **proofs of absence**: a filter that cannot match any row of the full data (a needle whose parts
  cannot be placed in the column's words as the index places them; eq / in values absent from a
  low-cardinality column; eq / in filters on several such columns whose values never occur together). Only where exact: an ASCII needle (lowercasing and letter classes of ASCII
  are the same in every engine; a non-ASCII one may fold differently in the warehouse), and only the
  operators contains / icontains / startswith / eq / in. Anything else gives no proof;
- **did you mean**: known words or values within edit distance 2 of a missing one, most frequent first
  (a deletion-neighbourhood index, SymSpell-like, over the SUGGEST_WORDS most frequent words of each
  column and every value: bounded in size whatever the dataset);
- **estimates**: an upper bound of the matching rows (the smallest of the filters' bounds; a filter's
  bound is the smallest of its parts' summed word counts; the eq / in filters on low-cardinality columns
  together are bounded by their cells' rows, exactly) and an estimate (independence: total rows x
  the product of the filters' shares);
- **proofs that every matching row is here** (`all_here`): when the subset's matching rows found (distinct rows
  of the full data) are as many as the upper bound, the full data has no other; or when a needle has a part
  whose every word has all its rows in the subset (`.whole.npy`, from the subset's words counted by the same
  build). The subset is a sample of
  the data the vocabulary counted (one refresh builds both) and holds, beyond its random rows, every row of the
  rarest words and of thin cells (apps.search.coverage), so rare-word and facet searches end here for free.

On disk, beside subset file `<table>-<stamp>.duckdb`, the folder `<table>-<stamp>.duckdb.vocab/`,
built inside the same SwappedFiles.build as the file and installed (fsynced, swapped, deleted) with it:

- `<table>.json`: magic, version, table, built_at, source (local / athena), total rows, per column its
  kind and sizes, the sha256 of every other file, and its own checksum (`meta_sha256`);
- per word column n: `<table>.c<n>.words.bin` (MAGIC, then the sorted words NUL-joined: `\\0w\\0w\\0`),
  `.starts.npy` (int64, where word i begins in the blob), `.cum.npy` (int64, cumulative row counts:
  word i holds cum[i+1]-cum[i] rows, any range sums in O(1)), `.grams.npy` (sorted uint64: every
  trigram of every word, packed: a part with a trigram no word has is in no word, found by a binary
  search instead of a scan of the words), `.gstarts.npy` / `.gwords.npy` (version 2: the words holding
  each trigram, uint32, sorted; a needle's words are the intersection of its trigrams' lists, each
  checked: at tens of millions of words a scan of the word list took ~60 ms a needle), `.del.bin` /
  `.delw.npy` (the deletion neighbourhood of the
  most frequent ASCII words, sorted and NUL-joined, and the word each string came from), `.whole.npy` (version
  3, int32: how many of the first i words have every row in the subset; a range of words is asked in O(1));
- low-cardinality columns' values and counts in the meta, and their cells (`cells`: the columns, and one
  [value, value, ..., rows] a combination; null for NULL).

A file that fails its checksum (or any other check) is not used: no proof, no suggestion, no
estimate; searches fall back to the warehouse as without a vocabulary.
"""
from __future__ import annotations

import glob as globmodule
import hashlib
import json
import logging
import mmap
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .sql import quote_identifier, quote_string
from .word_index import DIGITS, SEPARATOR, _split, lowered, words_before

logger = logging.getLogger(__name__)

SUFFIX = ".vocab"
VERSION = 3  # 3: digits-only words, and which words have every row in the subset; 2: trigram postings (which
# words hold each trigram); 1 had the trigram set only
OLDEST_VERSION = 1  # read still: a version-1 vocabulary finds a needle's words by scanning its word list
MAGIC = b"SSVOCAB1"
VALUES_MAX = 1000  # a text column with at most this many distinct values keeps every value with its count
CELLS_MAX = 20_000  # the low-cardinality columns' value combinations kept with their rows (more: no cells)
SUGGEST_WORDS = 50_000  # the most frequent words of each column that "did you mean" can propose
SUGGEST_MAX_LEN = 24  # longer words get no deletion neighbourhood (it grows as the square of the length)
MAX_DISTANCE = 2
SUGGESTIONS = 5  # at most this many per missing word or value
DIGIT_WORD_LEN = 6  # a digits-only word longer than this (an id) is counted as LONG_DIGITS
LONG_DIGITS = "#"  # stands for every long digits-only word while counting (no word holds a "#")
DIGIT_WORDS_MAX = 200_000  # a column keeps its digits-only words (codes, years, counts) when it has at most this
# many distinct ones and none longer than DIGIT_WORD_LEN; a column of ids keeps none (a digits-only part of a
# needle then proves and bounds nothing there)
BOUND_HITS = 10_000  # a part in more words than this bounds nothing (the total rows are its bound)
POSTINGS_ENOUGH = 64  # candidate words few enough to check one by one rather than intersect another list
CHUNK_ROWS = 131_072
GRAMS_SLICE = 1 << 24  # bytes of words whose trigrams are taken at once while building
MERGE_EVERY = 16  # per-chunk word counts merged every this many chunks
WORD_OPS = ("contains", "icontains", "startswith", "eq", "in")  # operators a word column can prove / bound
VALUE_OPS = ("eq", "in")
TEXT_TYPES = ("VARCHAR",)


def vocabulary_dir_for(path: Path) -> Path:
    """The vocabulary folder that belongs to a subset file."""
    return path.with_name(path.name + SUFFIX)


def vocabulary_remove(path: Path) -> None:
    shutil.rmtree(vocabulary_dir_for(path), ignore_errors=True)


def vocabulary_copy(*, source: Path, target: Path) -> bool:
    """Give the new file `target` (a reindex of `source`: the same rows) the vocabulary of `source`,
    hard-linked (copied across file systems). False when `source` has none."""
    src, dst = vocabulary_dir_for(source), vocabulary_dir_for(target)
    if not src.is_dir():
        return False
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    for entry in src.iterdir():
        try:
            os.link(entry, dst / entry.name)
        except OSError:
            shutil.copy2(entry, dst / entry.name)
    return True


# --- building ----------------------------------------------------------------------------------

def vocabulary_columns(*, spec, types: dict[str, str] | None = None) -> list[str]:
    """The text columns of `spec` that some search can filter with a word or value operator."""
    types = types or dict(spec.columns)
    return [c for c, ops in spec.searchable.items()
            if types.get(c) in TEXT_TYPES and any(op in WORD_OPS for op in ops)]


def value_columns(*, spec, columns: list[str]) -> list[str]:
    """Of the vocabulary's columns, those an eq / in filter may name: their values may be counted."""
    return [c for c in columns if any(op in VALUE_OPS for op in spec.searchable.get(c, ()))]


def chunk_words(values: pa.Array | pa.ChunkedArray) -> pa.Table:
    """(p: the value's position in the chunk, w: a word of it) for a chunk of values, split exactly as the
    word index splits them (word_index.lowered, SEPARATOR); a digits-only word longer than DIGIT_WORD_LEN becomes
    LONG_DIGITS (its column then keeps no digits-only word: digit_words_kept)."""
    low = lowered(values)
    words = pc.split_pattern(pc.replace_substring_regex(low, SEPARATOR, " "), " ")
    flat = pc.list_flatten(words)
    parents = pc.list_parent_indices(words)
    keep = pc.greater(pc.binary_length(flat), 0)
    flat, parents = flat.filter(keep), parents.filter(keep)
    long = pc.and_(pc.ascii_is_decimal(flat), pc.greater(pc.binary_length(flat), DIGIT_WORD_LEN))
    return pa.table({"p": parents, "w": pc.if_else(long, LONG_DIGITS, flat)})


def digit_words_kept(words: pa.Table) -> tuple[pa.Table, bool]:
    """One column's counted words (w, n), without LONG_DIGITS, and without its digits-only words unless the column
    keeps them (none longer than DIGIT_WORD_LEN, at most DIGIT_WORDS_MAX distinct); whether it keeps them."""
    w = words.column("w")
    digits = pc.ascii_is_decimal(w)
    kept = (not pc.any(pc.equal(w, LONG_DIGITS)).as_py()
            and (pc.sum(digits).as_py() or 0) <= DIGIT_WORDS_MAX)
    drop = pc.or_(pc.equal(w, LONG_DIGITS), pc.and_(digits, pa.scalar(not kept)))
    return words.filter(pc.invert(drop)), kept


def word_counts(*, conn, relation: str, columns: list[str], started: float, label: str,
                stdout=None) -> dict[str, pa.Table]:
    """Each of `columns`' words (chunk_words) in `relation` (read through `conn`) with the rows holding it: one
    read, each chunk split in Arrow, each word counted once per row by DuckDB. A column's digits-only words stop
    being counted once it cannot keep them (digit_words_kept), so ids in URLs cost no memory."""
    counter = duckdb.connect(":memory:")
    counting_digits = dict.fromkeys(columns, True)
    try:
        for number in range(len(columns)):
            counter.execute(f"CREATE TABLE counts_{number} (w VARCHAR, n BIGINT)")
        if columns:
            select = ", ".join(quote_identifier(c) for c in columns)
            reader = conn.sql(f"SELECT {select} FROM {relation}").to_arrow_reader(CHUNK_ROWS)
            done = 0
            for chunk, batch in enumerate(reader, 1):
                for number, column in enumerate(columns):
                    pairs = chunk_words(batch.column(column))
                    if not counting_digits[column]:
                        pairs = pairs.filter(pc.invert(pc.ascii_is_decimal(pairs.column("w"))))  # noqa: F841
                    counter.execute(f"INSERT INTO counts_{number} SELECT w, count(DISTINCT p) FROM pairs GROUP BY w")
                    if chunk % MERGE_EVERY == 0:  # memory: the distinct words so far, not a row per chunk and word
                        counter.execute(f"CREATE OR REPLACE TABLE counts_{number} AS "
                                        f"SELECT w, sum(n)::BIGINT AS n FROM counts_{number} GROUP BY w")
                        if counting_digits[column]:
                            digits, long = counter.execute(
                                f"SELECT count(*) FILTER (regexp_full_match(w, '[0-9]+')), bool_or(w = '{LONG_DIGITS}') "
                                f"FROM counts_{number}").fetchall()[0]
                            if long or digits > DIGIT_WORDS_MAX:  # it keeps none: LONG_DIGITS stays to say so
                                counting_digits[column] = False
                                counter.execute(f"DELETE FROM counts_{number} WHERE regexp_full_match(w, '[0-9]+')")
                                counter.execute(f"INSERT INTO counts_{number} VALUES ('{LONG_DIGITS}', 1)")
                done += batch.num_rows
                if stdout is not None and chunk % 16 == 0:  # batches need not hold exactly CHUNK_ROWS rows
                    stdout.write(f"  vocabulary {label}: {done:,} rows, {time.perf_counter() - started:.1f}s\n")
        return {column: counter.sql(f"SELECT w, sum(n)::BIGINT AS n FROM counts_{number} GROUP BY w").to_arrow_table()
                for number, column in enumerate(columns)}
    finally:
        counter.close()


def vocabulary_build_local(*, path: Path, spec, relation: str, stdout=None, subset_conn=None) -> dict:
    """Build the vocabulary of `path` (a subset file being built) from the full data `relation`
    (DuckDB SQL, e.g. read_parquet('…/*.parquet')): one read of the text columns (word_counts); low-cardinality
    columns and their cells counted by DuckDB. `subset_conn`: a connection holding the subset's rows as table
    `spec.name` (the build's): its words are counted too, to know which words have every row in the subset."""
    started = time.perf_counter()
    conn = duckdb.connect(":memory:")
    try:
        types = {r[0]: r[1] for r in conn.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()}
        columns = vocabulary_columns(spec=spec, types=types)
        total = conn.execute(f"SELECT count(*) FROM {relation}").fetchone()[0]
        values = _local_values(conn=conn, relation=relation, columns=value_columns(spec=spec, columns=columns))
        cells = cells_from_rows(columns=list(values), rows=conn.execute(
            cells_statement(relation=relation, columns=list(values))).fetchall()) if len(values) > 1 else None
        words = word_counts(conn=conn, relation=relation, columns=columns, started=started, label=spec.name,
                            stdout=stdout)
    finally:
        conn.close()
    return vocabulary_write(path=path, table=spec.name, total_rows=int(total), words=words, values=values,
                            source="local", started=started, stdout=stdout, cells=cells,
                            subset_words=subset_word_counts(conn=subset_conn, spec=spec, columns=list(words)))


def subset_word_counts(*, conn, spec, columns: list[str]) -> dict[str, pa.Table] | None:
    """word_counts of the subset's rows (table `spec.name` of `conn`, the file being built), or None without one."""
    if conn is None:
        return None
    cursor = conn.cursor()  # its own: the build's connection may hold an unfinished result
    try:
        return word_counts(conn=cursor, relation=quote_identifier(spec.name), columns=columns,
                           started=time.perf_counter(), label=f"{spec.name} (subset)")
    finally:
        cursor.close()


def vocabulary_builder(*, spec, stdout=None):
    """The `vocabulary=` step of subset_table_build for a table whose full data is local Parquet
    (`spec.full_data_glob`); None for a table without it, or whose glob matches no file."""
    if not spec.full_data_glob:
        return None
    if "://" not in spec.full_data_glob and not globmodule.glob(spec.full_data_glob):
        logger.warning("No vocabulary for %s: its full data glob %s matches no file (and it has no warehouse).",
                       spec.name, spec.full_data_glob)
        return None
    relation = f"read_parquet({quote_string(spec.full_data_glob)})"

    def build(path: Path, conn) -> dict:
        return vocabulary_build_local(path=path, spec=spec, relation=relation, stdout=stdout, subset_conn=conn)

    return build


def _local_values(*, conn, relation: str, columns: list[str]) -> dict[str, dict[str, int]]:
    """column -> {value: rows} for the columns with at most VALUES_MAX distinct values."""
    if not columns:
        return {}
    approx = conn.execute("SELECT " + ", ".join(f"approx_count_distinct({quote_identifier(c)})" for c in columns)
                          + f" FROM {relation}").fetchone()
    values = {}
    for column, estimate in zip(columns, approx):
        if estimate > VALUES_MAX * 2:
            continue
        col = quote_identifier(column)
        found = conn.execute(f"SELECT {col}, count(*) FROM {relation} WHERE {col} IS NOT NULL GROUP BY {col} "
                             f"LIMIT {VALUES_MAX + 1}").fetchall()
        if len(found) <= VALUES_MAX:
            values[column] = {value: int(n) for value, n in found}
    return values


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _meta_checksum(meta: dict) -> str:
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def deletion_neighbourhood(*, words: pa.Array, owners: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Every string made by deleting up to MAX_DISTANCE characters of each ASCII word of at most
    SUGGEST_MAX_LEN characters (the word itself included), sorted, NUL-joined (`\\0d\\0d\\0`), and the
    word (its number in `owners`) each came from. Made by DuckDB (a Python loop took ~4 s per 50k words)."""
    conn = duckdb.connect(":memory:")
    try:
        top = pa.table({"i": pa.array(owners, type=pa.int64()), "w": words.cast(pa.large_string())})  # noqa: F841
        rows = conn.sql(f"""
            WITH d0 AS (SELECT i, w AS d FROM top WHERE length(w) <= {SUGGEST_MAX_LEN}
                        AND regexp_full_match(w, '[\\x01-\\x7f]*')),
                 d1 AS (SELECT i, d FROM d0 UNION
                        SELECT i, substr(d, 1, k - 1) || substr(d, k + 1) FROM d0, range(1, {SUGGEST_MAX_LEN + 1}) r(k)
                        WHERE k <= length(d)),
                 d2 AS (SELECT i, d FROM d1 UNION
                        SELECT i, substr(d, 1, k - 1) || substr(d, k + 1) FROM d1, range(1, {SUGGEST_MAX_LEN + 1}) r(k)
                        WHERE k <= length(d))
            SELECT d, i FROM d2 ORDER BY d, i""").to_arrow_table()
    finally:
        conn.close()
    texts = rows.column("d").to_pylist()
    blob = b"\0" + "\0".join(texts).encode("ascii") + b"\0" if texts else b"\0"
    return blob, rows.column("i").to_numpy().astype(np.uint32)


def deletes(word: str, distance: int = MAX_DISTANCE) -> set[str]:
    """`word` and every string made by deleting up to `distance` of its characters."""
    found = {word}
    frontier = {word}
    for _ in range(distance):
        frontier = {w[:i] + w[i + 1:] for w in frontier for i in range(len(w))}
        found |= frontier
    return found


def _trigram_owners(codes: np.ndarray, *, nuls_before: int) -> tuple[np.ndarray, np.ndarray]:
    """(packed trigram, number of the word holding it) for every trigram of a UTF-32 slice of the NUL-joined
    sorted words; `nuls_before`: the NULs of the blob before the slice (the blob starts with one, so the word
    at a position is the NULs before it, minus one)."""
    if len(codes) < 3:
        return np.zeros(0, np.uint64), np.zeros(0, np.uint32)
    a, b, c = (codes[:-2].astype(np.uint64), codes[1:-1].astype(np.uint64), codes[2:].astype(np.uint64))
    keep = np.flatnonzero((a != 0) & (b != 0) & (c != 0))
    word = nuls_before + np.cumsum(codes == 0) - 1  # at each position: the word it belongs to
    return ((a[keep] << np.uint64(42)) | (b[keep] << np.uint64(21)) | c[keep]), word[keep].astype(np.uint32)


def _postings(keys: list[np.ndarray], owners: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sorted distinct trigrams, where each one's words start in the third array, and the words (sorted,
    each once per trigram): the words holding trigram i are words[starts[i]:starts[i + 1]]."""
    if not keys:
        return np.zeros(0, np.uint64), np.zeros(1, np.int64), np.zeros(0, np.uint32)
    key = np.concatenate(keys)
    word = np.concatenate(owners)
    order = np.argsort(key, kind="stable")  # stable: each trigram's words stay in word order
    key, word = key[order], word[order]
    del order
    fresh = np.ones(len(key), dtype=bool)
    fresh[1:] = (key[1:] != key[:-1]) | (word[1:] != word[:-1])  # a trigram twice in one word: once
    key, word = key[fresh], word[fresh]
    firsts = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]])) if len(key) else np.zeros(0, np.int64)
    return key[firsts], np.append(firsts, len(key)).astype(np.int64), word


def trigram_keys(part: str) -> np.ndarray:
    codes = np.frombuffer(part.encode("utf-32-le"), dtype=np.uint32)
    if len(codes) < 3:
        return np.zeros(0, np.uint64)
    a, b, c = (codes[:-2].astype(np.uint64), codes[1:-1].astype(np.uint64), codes[2:].astype(np.uint64))
    return (a << np.uint64(42)) | (b << np.uint64(21)) | c


def _word_table(words: pa.Table | None) -> pa.Table:
    """(w, n) from either backend's counted words (the Trino statements name them word, n)."""
    if words is not None and "word" in words.column_names:
        words = pa.table({"w": words.column("word"), "n": words.column("n")})
    if words is None or not words.num_rows:
        return pa.table({"w": pa.array([], pa.large_string()), "n": pa.array([], pa.int64())})
    return pa.table({"w": words.column("w").cast(pa.large_string()), "n": words.column("n").cast(pa.int64())})


def _column_write(*, folder: Path, table: str, number: int, words: pa.Table | None,
                  subset: pa.Table | None = None) -> dict:
    """Write one word column's files; returns its sizes and whether it keeps digits-only words. `subset`: the
    subset's words counted the same way: a word whose every full-data row the subset holds is marked whole."""
    words, digits = digit_words_kept(_word_table(words))
    order = pc.sort_indices(words.column("w"))  # byte order: UTF-8 sorts as code points
    sorted_words = words.column("w").take(order).combine_chunks().cast(pa.large_string())
    counts = words.column("n").take(order).to_numpy().astype(np.int64)
    prefix = f"{table}.c{number}"
    whole = None
    if subset is not None:  # which words have all their rows here: cumulative, so a range of words is asked in O(1)
        subset = _word_table(subset)
        at = pc.index_in(sorted_words, value_set=subset.column("w").combine_chunks())
        here = np.zeros(len(counts), dtype=np.int64)
        found = at.is_valid().to_numpy(zero_copy_only=False)
        here[found] = subset.column("n").to_numpy()[at.drop_null().to_numpy()]
        flags = here == counts
        np.save(folder / f"{prefix}.whole.npy", np.concatenate([[0], np.cumsum(flags)]).astype(np.int32))
        whole = int(flags.sum())
    # The blob: NUL, then each word followed by NUL.
    encoded = [w.encode("utf-8") for w in sorted_words.to_pylist()]
    blob = b"\0" + b"\0".join(encoded) + b"\0" if encoded else b"\0"
    lengths = np.fromiter((len(w) + 1 for w in encoded), dtype=np.int64, count=len(encoded))
    starts = (np.concatenate([[1], 1 + np.cumsum(lengths)[:-1]]).astype(np.int64) if len(encoded)
              else np.zeros(0, np.int64))
    del encoded
    (folder / f"{prefix}.words.bin").write_bytes(MAGIC + blob)
    np.save(folder / f"{prefix}.starts.npy", starts)
    np.save(folder / f"{prefix}.cum.npy", np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
    keys, owners = [], []
    low, nuls_before = 0, 0
    while low < len(blob):  # in slices of whole words: a UTF-32 copy of the whole blob would be 4x its size
        high = min(len(blob), low + GRAMS_SLICE)
        if high < len(blob):
            cut = blob.rfind(b"\0", low + 1, high + 1)
            high = (cut if cut > low else blob.find(b"\0", high)) + 1
        codes = np.frombuffer(blob[low:high].decode("utf-8").encode("utf-32-le"), np.uint32)
        slice_keys, slice_owners = _trigram_owners(codes, nuls_before=nuls_before)
        keys.append(slice_keys)
        owners.append(slice_owners)
        nuls_before += int(np.count_nonzero(codes == 0))
        low = high
    grams, gram_starts, gram_words = _postings(keys, owners)
    del keys, owners
    np.save(folder / f"{prefix}.grams.npy", grams)
    np.save(folder / f"{prefix}.gstarts.npy", gram_starts)
    np.save(folder / f"{prefix}.gwords.npy", gram_words)
    # The deletion neighbourhood of the most frequent words ("did you mean").
    top = np.argsort(-counts, kind="stable")[:SUGGEST_WORDS]
    deleted, owners = deletion_neighbourhood(words=sorted_words.take(pa.array(top, type=pa.int64())), owners=top)
    (folder / f"{prefix}.del.bin").write_bytes(MAGIC + deleted)
    np.save(folder / f"{prefix}.delw.npy", owners)
    return {"words": int(len(sorted_words)), "suggestable": int(len(top)), "digits": digits,
            **({"whole_words": whole} if whole is not None else {})}


def cells_statement(*, relation: str, columns: list[str]) -> str:
    """SQL (DuckDB and Trino alike): the rows of each combination of `columns`' values, at most CELLS_MAX + 1
    combinations (more: no cells are kept)."""
    cols = ", ".join(quote_identifier(c) for c in columns)
    return f"SELECT {cols}, count(*) AS n FROM {relation} GROUP BY {cols} LIMIT {CELLS_MAX + 1}"


def cells_from_rows(*, columns: list[str], rows: list) -> dict | None:
    """The meta's `cells` from cells_statement's rows (values..., n), or None when there are too many."""
    if len(columns) < 2 or len(rows) > CELLS_MAX:
        return None
    counts = [[*map(_json_value, row[:-1]), int(row[-1])] for row in rows]
    return {"columns": columns, "counts": sorted(counts, key=lambda cell: [(v is None, v or "") for v in cell[:-1]])}


def _json_value(value):
    return None if value is None else str(value)


def vocabulary_write(*, path: Path, table: str, total_rows: int, words: dict[str, pa.Table | None],
                     values: dict[str, dict[str, int]], source: str, started: float, stdout=None,
                     extra: dict | None = None, cells: dict | None = None,
                     subset_words: dict[str, pa.Table] | None = None) -> dict:
    """Write the vocabulary folder of `path` from counted words, values and cells (any backend's). `subset_words`:
    the subset's words counted the same way (subset_word_counts), to mark the words whose every row is here."""
    folder = vocabulary_dir_for(path)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    columns = {}
    for number, (column, table_words) in enumerate(words.items()):
        columns[column] = {"number": number, **_column_write(
            folder=folder, table=table, number=number, words=table_words,
            subset=None if subset_words is None else subset_words.get(column))}
    files = {entry.name: _sha256(entry) for entry in sorted(folder.iterdir())}
    meta = {"magic": MAGIC.decode(), "version": VERSION, "table": table, "source": source,
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"), "rows": int(total_rows),
            "columns": columns, "values": {c: dict(sorted(v.items())) for c, v in values.items()},
            "cells": cells, "files": files, "build_seconds": round(time.perf_counter() - started, 2), **(extra or {})}
    meta["bytes"] = sum((folder / name).stat().st_size for name in files)
    meta["meta_sha256"] = _meta_checksum(meta)
    (folder / f"{table}.json").write_text(json.dumps(meta, indent=1))
    if stdout is not None:
        stdout.write(f"  vocabulary {table}: {total_rows:,} rows of full data, "
                     + ", ".join(f"{c} {m['words']:,} words" for c, m in columns.items())
                     + (", values of " + ", ".join(values) if values else "")
                     + (f", {len(cells['counts']):,} cells" if cells else "")
                     + f", {meta['bytes'] / 1e6:,.1f} MB in {meta['build_seconds']:.1f}s\n")
    return meta


# --- the Athena (Trino) statements -----------------------------------------------------------------

TRINO_SEPARATOR = SEPARATOR  # the same class: Trino's regexp_split (Joni) knows \p{L} and \p{N}


def words_statement(*, relation: str, column: str) -> str:
    """Trino SQL: each word of `column` (lowercased, split as the index splits) with the rows holding it; digits-only
    words longer than DIGIT_WORD_LEN counted as one, LONG_DIGITS (so ids add one row, not one a row: the column
    then keeps no digits-only word, digit_words_kept)."""
    col = quote_identifier(column)
    word = f"CASE WHEN regexp_like(w, '^[0-9]{{{DIGIT_WORD_LEN + 1},}}$') THEN '{LONG_DIGITS}' ELSE w END"
    return (f"SELECT {word} AS word, count(*) AS n FROM {relation} "
            f"CROSS JOIN UNNEST(array_distinct(regexp_split(lower({col}), {quote_string(TRINO_SEPARATOR)}))) AS t (w) "
            f"WHERE w <> '' GROUP BY 1")


def values_statement(*, relation: str, column: str) -> str:
    """Trino SQL: `column`'s distinct values with their rows, at most VALUES_MAX + 1 of them (more: not a
    low-cardinality column)."""
    col = quote_identifier(column)
    return (f"SELECT {col} AS value, count(*) AS n FROM {relation} WHERE {col} IS NOT NULL GROUP BY {col} "
            f"LIMIT {VALUES_MAX + 1}")


def total_statement(*, relation: str) -> str:
    return f"SELECT count(*) AS n FROM {relation}"


# --- reading ---------------------------------------------------------------------------------------

class VocabularyDamaged(ValueError):
    pass


class ColumnWords:
    """One column's words: the sorted NUL-joined blob (memory-mapped), cumulative counts, trigrams and
    the deletion neighbourhood."""

    def __init__(self, folder: Path, table: str, number: int, *, digits: bool = False):
        prefix = f"{table}.c{number}"
        self.digits = digits  # its digits-only words are kept (version 3), so a digits-only part is bounded too
        # The words memory-mapped (every web worker shares one page cache); positions count from the file's
        # start, past the magic.
        with open(folder / f"{prefix}.words.bin", "rb") as handle:
            self.blob = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        if self.blob[: len(MAGIC)] != MAGIC:
            raise VocabularyDamaged(f"{prefix}.words.bin lacks its magic")
        self.base = len(MAGIC)
        self.starts = np.load(folder / f"{prefix}.starts.npy") + self.base
        self.cum = np.load(folder / f"{prefix}.cum.npy")
        self.grams = np.load(folder / f"{prefix}.grams.npy")
        # Which words hold each trigram (version 2; memory-mapped: every web worker shares the pages). Without
        # them (version 1) a needle's words are found by scanning the word list.
        postings = folder / f"{prefix}.gwords.npy"
        self.gram_starts = np.load(folder / f"{prefix}.gstarts.npy") if postings.exists() else None
        self.gram_words = np.load(postings, mmap_mode="r") if postings.exists() else None
        if self.gram_starts is not None and (len(self.gram_starts) != len(self.grams) + 1
                                             or self.gram_starts[-1] != len(self.gram_words)):
            raise VocabularyDamaged(f"{prefix}: its trigram postings disagree with its trigrams")
        with open(folder / f"{prefix}.del.bin", "rb") as handle:
            deleted = handle.read()
        if not deleted.startswith(MAGIC):
            raise VocabularyDamaged(f"{prefix}.del.bin lacks its magic")
        self.deleted = deleted[len(MAGIC):]
        self.owners = np.load(folder / f"{prefix}.delw.npy")
        if len(self.cum) != len(self.starts) + 1 or self.deleted.count(b"\0") - 1 != len(self.owners):
            raise VocabularyDamaged(f"{prefix}: its arrays disagree")
        # Version 3: how many of the first i words have every row in the subset (none known without it).
        whole = folder / f"{prefix}.whole.npy"
        self.whole = np.load(whole, mmap_mode="r") if whole.exists() else None  # shared by every worker, as gwords
        if self.whole is not None and len(self.whole) != len(self.cum):
            raise VocabularyDamaged(f"{prefix}.whole.npy disagrees with its words")
        self.deleted_starts = _starts(self.deleted)
        self.ends = (np.append(self.starts[1:] - 1, len(self.blob) - 1) if len(self.starts)
                     else np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.starts)

    def word(self, index: int) -> str:
        return self.blob[int(self.starts[index]): int(self.ends[index])].decode("utf-8")

    def count(self, index: int) -> int:
        return int(self.cum[index + 1] - self.cum[index])

    def _before(self, key: bytes) -> int:
        return words_before(self.blob, self.starts, self.ends, key)

    def exact(self, part: str) -> int:
        """Rows holding the word `part` (0: no row)."""
        return self.placed(part, "exact")[1]

    def _grams_missing(self, part: str) -> bool:
        keys = trigram_keys(part)
        if not len(keys):
            return False
        at = np.searchsorted(self.grams, keys)
        return bool(np.any(at >= len(self.grams)) or np.any(self.grams[np.minimum(at, len(self.grams) - 1)] != keys))

    def _all_whole(self, low: int, high: int) -> bool:
        """Every row of words low..high-1 is in the subset."""
        return self.whole is not None and int(self.whole[high] - self.whole[low]) == high - low

    def placed(self, part: str, how: str) -> tuple[bool, int | None, bool]:
        """For the words equal to / starting with / ending with / containing `part` (`how`: exact, prefix, suffix,
        contains): (some word is one, the rows holding them summed or None: too many words to sum, every row of
        them is in the subset)."""
        key = part.encode("utf-8")
        if how in ("exact", "prefix"):
            low = self._before(key)
            if how == "exact":
                high = low + int(low < len(self.starts) and self.blob[self.starts[low]: self.ends[low]] == key)
            else:
                high = self._before(key + b"\xff")
            return high > low, int(self.cum[high] - self.cum[low]), self._all_whole(low, high)
        hits = self._inner_hits(part, suffix=how == "suffix")
        if hits is None:
            return True, None, False
        if not len(hits):
            return False, 0, True
        whole = self.whole is not None and bool(np.all(self.whole[hits + 1] - self.whole[hits] == 1))
        return True, int((self.cum[hits + 1] - self.cum[hits]).sum()), whole

    def _inner_hits(self, part: str, *, suffix: bool) -> np.ndarray | None:
        """The words containing / ending with `part` (their numbers, int64), or None: more than BOUND_HITS."""
        if self._grams_missing(part):
            return np.zeros(0, np.int64)
        if self.gram_words is not None and len(part) >= 3:
            decided, hits = self._hits_by_postings(part, suffix=suffix)
            if decided:
                return hits
        return self._hits_by_scan(part, suffix=suffix)

    def _hits_by_postings(self, part: str, *, suffix: bool) -> tuple[bool, np.ndarray | None]:
        """_inner_hits from the words holding every trigram of `part` (the shortest lists intersected first), each
        checked to hold `part` itself; (False, None) when too many candidates hold none of it to tell cheaply."""
        keys = np.unique(trigram_keys(part))
        at = np.searchsorted(self.grams, keys)
        if np.any(at >= len(self.grams)) or np.any(self.grams[np.minimum(at, len(self.grams) - 1)] != keys):
            return True, np.zeros(0, np.int64)  # a trigram no word has
        lists = sorted((self.gram_words[self.gram_starts[i]: self.gram_starts[i + 1]] for i in at.tolist()), key=len)
        candidates = np.asarray(lists[0])
        for more in lists[1:]:
            if len(candidates) <= POSTINGS_ENOUGH:
                break  # few enough to check one by one
            candidates = np.intersect1d(candidates, more, assume_unique=True)
        key = part.encode("utf-8")
        check = (lambda w: w.endswith(key)) if suffix else (lambda w: key in w)
        if len(part) == 3 and not suffix:  # a three-letter part is in a word exactly when its trigram is
            hits = np.asarray(candidates, dtype=np.int64)
        else:
            starts, ends, blob = self.starts, self.ends, self.blob
            checked = candidates[: BOUND_HITS * 4].tolist()
            found = [w for w in checked if check(blob[starts[w]: ends[w]])]
            if len(checked) < len(candidates):  # more than we check: found, the bound unknown
                return (True, None) if found else (False, None)
            hits = np.array(found, dtype=np.int64)
        return True, (None if len(hits) > BOUND_HITS else hits)

    def _hits_by_scan(self, part: str, *, suffix: bool) -> np.ndarray | None:
        pattern = part.encode("utf-8") + (b"\0" if suffix else b"")
        find = self.blob.find
        position = find(pattern, self.base)
        hits = []
        while position != -1:
            hits.append(position)
            if len(hits) > BOUND_HITS:
                return None
            position = find(pattern, position + 1)
        return np.unique(np.searchsorted(self.starts, np.array(hits, dtype=np.int64), side="right") - 1)

    def near(self, word: str, *, distance: int = MAX_DISTANCE) -> list[tuple[int, str, int]]:
        """Known words within `distance` edits of `word`: (distance, word, rows), nearest then most frequent."""
        if not len(self.owners) or len(word) > SUGGEST_MAX_LEN + distance or not word.isascii():
            return []
        owners = set()
        for variant in deletes(word, distance):
            key = variant.encode("ascii")
            low = _before(self.deleted, self.deleted_starts, key)
            high = _before(self.deleted, self.deleted_starts, key + b"\0")
            owners.update(self.owners[low:high].tolist())
        found = []
        for owner in owners:
            text = self.word(owner)
            d = edit_distance(word, text)
            if 0 < d <= distance:
                found.append((d, text, self.count(owner)))
        return sorted(found, key=lambda f: (f[0], -f[2], f[1]))


def _starts(blob: bytes) -> np.ndarray:
    """Where each NUL-joined string of `blob` (`\\0s\\0s\\0`) begins."""
    nuls = np.flatnonzero(np.frombuffer(blob, dtype=np.uint8) == 0)
    return (nuls[:-1] + 1).astype(np.int64)


def _before(blob: bytes, starts: np.ndarray, key: bytes) -> int:
    """How many of the sorted NUL-joined strings of `blob` sort before `key`."""
    low, high = 0, len(starts)
    while low < high:
        middle = (low + high) // 2
        begin = starts[middle]
        if blob[begin: blob.index(b"\0", begin)] < key:
            low = middle + 1
        else:
            high = middle
    return low


def edit_distance(a: str, b: str) -> int:
    """Damerau-Levenshtein distance (optimal string alignment: a swap of neighbours is one edit)."""
    if a == b:
        return 0
    previous2, previous = None, list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = ca != cb
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if previous2 is not None and i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[-1]


@dataclass
class Vocabulary:
    path: Path
    meta: dict
    words: dict[str, ColumnWords] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return int(self.meta["rows"])

    @property
    def built_at(self) -> str:
        return self.meta["built_at"]

    def values(self, column: str) -> dict[str, int] | None:
        return self.meta["values"].get(column)

    def cell_rows(self, wanted: dict[str, list[str]]) -> int | None:
        """The full data's rows whose value of each column in `wanted` is one of its values (summed over the
        cells: exact), or None: no cells, or a column not among them."""
        cells = self._cells
        if cells is None or not wanted or any(column not in cells[0] for column in wanted):
            return None
        columns, codes, counts = cells
        keep = np.ones(len(counts), dtype=bool)
        for column, values in wanted.items():
            names = columns[column]
            keep &= np.isin(codes[:, names[0]], [names[1].get(v, -1) for v in values])
        return int(counts[keep].sum())

    @cached_property
    def _cells(self):
        """({column: (its position, {value: code})}, codes per cell and column, rows per cell), or None."""
        meta = self.meta.get("cells")
        if not meta or not meta.get("counts"):
            return None
        names, table = meta["columns"], meta["counts"]
        lookup = {c: {} for c in names}
        codes = np.array([[lookup[c].setdefault(v, len(lookup[c])) if v is not None else -2
                           for c, v in zip(names, row[:-1])] for row in table], dtype=np.int64)
        return ({c: (i, lookup[c]) for i, c in enumerate(names)}, codes,
                np.array([row[-1] for row in table], dtype=np.int64))


def vocabulary_load(path: Path, *, table: str) -> Vocabulary | None:
    """The vocabulary of subset file `path` for `table`, checked (magic, version, checksums); None when
    it has none or it fails a check (logged: searches then fall back as without one)."""
    folder = vocabulary_dir_for(path)
    meta_path = folder / f"{table}.json"
    if not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if (meta.get("magic") != MAGIC.decode() or not OLDEST_VERSION <= meta.get("version", 0) <= VERSION
                or meta.get("table") != table):
            raise VocabularyDamaged(
                f"magic/version/table {meta.get('magic')}/{meta.get('version')}/{meta.get('table')}")
        if meta.get("meta_sha256") != _meta_checksum(meta):
            raise VocabularyDamaged("its meta fails its checksum")
        for name, digest in meta["files"].items():
            if _sha256(folder / name) != digest:
                raise VocabularyDamaged(f"{name} fails its checksum")
        vocabulary = Vocabulary(path=path, meta=meta)
        for column, info in meta["columns"].items():
            vocabulary.words[column] = ColumnWords(folder, table, int(info["number"]), digits=bool(info.get("digits")))
        return vocabulary
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        logger.warning("Vocabulary of %s/%s not used (%s): no proofs of absence, suggestions or estimates "
                       "until the next refresh rebuilds it.", path.name, table, exc)
        return None


_open: dict[tuple[Path, str], Vocabulary | None] = {}
_open_lock = threading.Lock()


def vocabulary_for(path: Path, *, table: str) -> Vocabulary | None:
    """The (process-wide, cached) vocabulary of subset file `path`; an older file's leaves the cache once
    a newer one of the same folder is asked for."""
    key = (path, table)
    with _open_lock:
        if key in _open:
            return _open[key]
    loaded = vocabulary_load(path, table=table)
    with _open_lock:
        for stale in [k for k in _open if k[0].parent == path.parent and k[0] != path]:
            _open.pop(stale)
        _open[key] = loaded
    return loaded


def table_vocabulary(*, table: str) -> Vocabulary | None:
    """The vocabulary of the file serving `table` now (the search's snapshot of it), or None."""
    from .errors import SubsetMissing
    from .store import table_snapshot

    try:
        path = table_snapshot(table=table).path
    except SubsetMissing:
        return None
    return vocabulary_for(path, table=table)


def vocabulary_forget() -> None:
    """Drop every cached vocabulary (tests that damage a file on disk)."""
    with _open_lock:
        _open.clear()


def split_parts(text: str) -> list[str]:
    """A needle or value split as the index splits (lowercased: ASCII only reaches here)."""
    return _split(text.lower())


def digits_only(part: str) -> bool:
    return bool(DIGITS.fullmatch(part))


# --- what the vocabulary says about a search (a read: the pipeline's one call) ----------------------

@dataclass
class Suggestion:
    column: str
    op: str
    missing: str  # the word or value the full data lacks
    suggestion: str  # a known one within MAX_DISTANCE edits
    rows: int  # full-data rows holding the suggestion
    value: str  # the filter's whole value with the missing word replaced: the corrected search's value
    params: list[tuple[str, str]] = field(default_factory=list)  # the corrected search's URL parameters

    @property
    def querystring(self) -> str:
        from urllib.parse import urlencode

        return urlencode(self.params)

    def as_dict(self) -> dict:
        return {"column": self.column, "op": self.op, "missing": self.missing, "suggestion": self.suggestion,
                "rows": self.rows, "value": self.value, "query": self.querystring}


@dataclass
class VocabularyAnswer:
    """What the full data's vocabulary says about a search: `proof` (why it has no matching row, or
    ""), suggestions for missing words / values, and how many full-data rows may match."""

    built_at: str
    total_rows: int
    upper_bound: int  # no more full-data rows can match (exact where every filter's bound is)
    estimate: int  # about this many, assuming the filters independent
    proof: str = ""
    suggestions: list[Suggestion] = field(default_factory=list)
    here_reason: str = ""  # why every matching row of the full data is in the subset, or "": e.g. "it has at most
    # 7", "every row of it whose text holds 'kx-4821' is in the subset"

    @property
    def proven_empty(self) -> bool:
        return bool(self.proof)

    @property
    def all_here(self) -> bool:
        """Every matching row of the full data is in the subset (`here_reason` says why)."""
        return bool(self.here_reason)

    def as_dict(self) -> dict:
        return {"built_at": self.built_at, "total_rows": self.total_rows, "upper_bound": self.upper_bound,
                "estimate": self.estimate, "proof": self.proof or None, "all_here": self.all_here,
                "all_here_reason": self.here_reason or None}

    def expected_text(self) -> str:
        """E.g. About 1,200 of the full dataset's 2,000,000 rows match (at most 3,400)."""
        if self.proof:
            return f"None of the full dataset's {self.total_rows:,} rows match."
        bound = f" (at most {self.upper_bound:,})" if self.upper_bound < self.total_rows else ""
        return f"About {self.estimate:,} of the full dataset's {self.total_rows:,} rows match{bound}."


def _list_values(flt) -> list[str]:
    if flt.op == "in":
        return [p.strip() for p in (flt.value or "").split(",") if p.strip()]
    return [flt.value or ""]


def _needle_bound(words: ColumnWords, needle: str, *, whole: bool) -> tuple[bool, int | None, bool]:
    """(can a value of this column hold `needle` (any case) — equal it when `whole` —, an upper bound of the
    rows that do, or None: unknown, is every row that does in the subset: some part's words all are). Only for
    ASCII needles (the caller checks)."""
    parts = split_parts(needle)
    placed: list[tuple[str, str]]
    if whole:
        placed = [(p, "exact") for p in parts]
    elif len(parts) == 1:
        placed = [(parts[0], "contains")]
    else:
        placed = [(parts[0], "suffix")] + [(p, "exact") for p in parts[1:-1]] + [(parts[-1], "prefix")]
    bound: int | None = None
    here = False
    for part, how in placed:
        if not part or (digits_only(part) and not words.digits):
            continue  # an empty end matches anything; this column's digits-only words are not kept
        found, rows, all_here = words.placed(part, how)
        if not found:
            return False, 0, True
        if rows is not None:
            bound = rows if bound is None else min(bound, rows)
        here = here or all_here
    return True, bound, here


def _corrected(flt, missing: str, suggestion: str) -> str:
    if flt.op == "in":
        return ",".join(suggestion if v == missing else v for v in _list_values(flt))
    if flt.op == "eq" and missing == (flt.value or ""):
        return suggestion
    return _replace_word(flt.value or "", missing, suggestion)


def _replace_word(value: str, missing: str, suggestion: str) -> str:
    """`value` with its word `missing` (matched case-insensitively, as a whole piece) replaced."""
    low = value.lower()
    at = low.find(missing)
    while at != -1:
        before_ok = at == 0 or not (low[at - 1].isalnum())
        after = at + len(missing)
        after_ok = after == len(low) or not low[after].isalnum()
        if before_ok and after_ok:
            return value[:at] + suggestion + value[after:]
        at = low.find(missing, at + 1)
    return value


def search_vocabulary_answer(*, query, spec, path: Path | None = None,
                             subset_rows: int | None = None) -> VocabularyAnswer | None:
    """vocabulary_answer with the vocabulary of `path` (the file the request's context searched), else of the
    file serving the query's table now (None when SEARCH_VOCABULARY_ENABLED is off)."""
    from django.conf import settings

    if not settings.SEARCH_VOCABULARY_ENABLED:
        return None
    try:
        vocabulary = table_vocabulary(table=spec.name) if path is None else vocabulary_for(path, table=spec.name)
        return vocabulary_answer(query=query, spec=spec, vocabulary=vocabulary, subset_rows=subset_rows)
    except Exception:  # a vocabulary is an optimisation: never the reason a search fails
        logger.exception("the vocabulary of %s could not answer %s", spec.name, query.describe())
        return None


def vocabulary_answer(*, query, spec, vocabulary: Vocabulary | None,
                      subset_rows: int | None = None) -> VocabularyAnswer | None:
    """What `vocabulary` (the full data's, of the file serving `spec`'s table) says about `query`: a
    proof that no full-data row matches (only where exact: see the module docstring), suggestions for
    words / values the full data lacks, an upper bound and an estimate of the matching rows. None
    without a vocabulary.

    `subset_rows`: how many distinct rows of the subset file (a sample of the data this vocabulary counted) the
    caller found matching, searching it to the end or to the page's limit (None: it did not, e.g. a timeout or a
    later page). Every matching row of the full data is then in the subset (`all_here`) when they are as many as
    the upper bound, or when a filter's needle has a part whose every word has all its rows in the subset (the
    coverage rows hold rare words whole: a code `KX-4821` whose `4821` is in 12 rows, all here)."""
    if vocabulary is None:
        return None
    total = vocabulary.rows
    bounds: list[int] = []
    value_bounds: list[int] = []  # eq / in on low-cardinality columns, each alone; their cells bound them together
    cell_wanted: dict[str, list[str]] = {}
    proof = ""
    held = ""  # a filter all of whose full-data rows are in the subset
    suggestions: list[Suggestion] = []
    for flt in query.filters:
        if flt.op not in WORD_OPS or not flt.value:
            continue
        known = vocabulary.values(flt.column)
        words = vocabulary.words.get(flt.column)
        if known is not None and flt.op in VALUE_OPS:
            wanted = _list_values(flt)
            bound = sum(known.get(v, 0) for v in wanted)
            value_bounds.append(bound)
            cell_wanted[flt.column] = [v for v in wanted if v in cell_wanted.get(flt.column, wanted)]
            missing = [v for v in wanted if v not in known]
            if bound == 0 and not proof:
                proof = (f"the full dataset has no row with {flt.column} " +
                         (f"= {wanted[0]!r}" if len(wanted) == 1 else f"in ({', '.join(map(repr, wanted))})"))
            for value in missing:
                near = sorted(((edit_distance(value, k), k, n) for k, n in known.items()
                               if abs(len(k) - len(value)) <= MAX_DISTANCE), key=lambda f: (f[0], -f[2], f[1]))
                for d, text, n in [f for f in near if 0 < f[0] <= MAX_DISTANCE][:SUGGESTIONS]:
                    suggestions.append(Suggestion(flt.column, flt.op, value, text, n, _corrected(flt, value, text)))
            continue
        if words is None:
            continue
        whole = flt.op in VALUE_OPS
        needles = _list_values(flt)
        if not all(n.isascii() for n in needles):
            continue  # non-ASCII case folding may differ between engines: no proof, no bound
        found_any, bound_sum, here = False, 0, True
        for needle in needles:
            found, bound, all_here = _needle_bound(words, needle, whole=whole)
            found_any = found_any or found
            here = here and all_here
            bound_sum = None if (bound_sum is None or (found and bound is None)) else bound_sum + (bound or 0)
            if not found:
                for part in split_parts(needle):
                    if part and not digits_only(part) and words.exact(part) == 0:
                        for d, text, n in words.near(part)[:SUGGESTIONS]:
                            suggestions.append(Suggestion(flt.column, flt.op, part, text, n,
                                                          _corrected(flt, part, text)))
        if not found_any and not proof:
            proof = f"no word of the full dataset's {flt.column} can hold {flt.value!r}"
        if here and needles and not held:
            held = f"every row of it whose {flt.column} {'holds' if not whole else 'is'} {flt.value!r} is in the subset"
        if bound_sum is not None:
            bounds.append(bound_sum)
    cell_bound = vocabulary.cell_rows(cell_wanted) if len(cell_wanted) > 1 else None
    if cell_bound is None:
        bounds += value_bounds
    else:  # exact for these filters together, and at most each one's own
        bounds.append(cell_bound)
        if cell_bound == 0 and not proof:
            proof = "the full dataset has no row with " + " and ".join(
                f"{column} = {values[0]!r}" if len(values) == 1 else f"{column} in ({', '.join(map(repr, values))})"
                for column, values in cell_wanted.items())
    for suggestion in suggestions:
        param = f"{suggestion.column}__{suggestion.op}"
        suggestion.params = [(name, suggestion.value if name == param else value)
                             for name, value in query.to_params(page=False)]
    upper = 0 if proof else min([total, *bounds])
    estimate = total
    for bound in bounds:
        estimate = estimate * bound / max(total, 1)
    estimate = 0 if proof else min(upper, int(round(estimate)))
    here_reason = ""
    if not proof and subset_rows is not None:
        here_reason = f"it has at most {upper:,}" if subset_rows >= upper else held
    return VocabularyAnswer(built_at=vocabulary.built_at, total_rows=total, upper_bound=int(upper),
                            estimate=int(estimate), proof=proof, suggestions=suggestions, here_reason=here_reason)
