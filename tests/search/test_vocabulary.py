"""The full data's vocabulary (apps/search/vocabulary.py): never a wrong proof of absence (randomized, the
local build and the Trino statements run through sqlglot on DuckDB), upper bounds that hold, "did you
mean", a damaged file giving no proof at all."""
from __future__ import annotations

import random
import time

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot

from apps.search.query import Filter, SearchQuery, compile_search
from apps.search.tables import TableSpec
from apps.search.vocabulary import (
    cells_from_rows,
    cells_statement,
    edit_distance,
    subset_word_counts,
    total_statement,
    values_statement,
    vocabulary_answer,
    vocabulary_build_local,
    vocabulary_dir_for,
    vocabulary_load,
    vocabulary_write,
    words_statement,
)

SPEC = TableSpec(
    name="docs",
    key="id",
    columns={"id": "BIGINT", "body": "VARCHAR", "tag": "VARCHAR"},
    searchable={"body": ("contains", "icontains", "startswith", "eq", "in", "not_contains", "regex"),
                "tag": ("eq", "in", "contains")},
    shown=("body", "tag"),
)
WORDS = ["alpha", "beta", "gamma", "delta", "don", "it", "india", "russia", "foo", "food", "fool", "bar", "café",
         "naïve", "straße", "Σίσυφος", "東京", "x1", "42", "007", "abc123", "snake", "case",
         "İstanbul", "\u212aelvin", "STRAẞE", "ǅemal", "ﬁsh"]  # case folding that differs between engines
ODD = ["İ", "K", "ß", "ﬁ", "ς", "😀", "é", "E\u0301", "%", "_", "\\", "'", "’", "-", " ", ".", "/", "  "]
SEPARATORS = [" ", " ", " ", "-", "'", ", ", "_", ".", "/", "%"]
TAGS = ["news", "sports", "science", "food", "Food", "travel"]


def _body(rng: random.Random) -> str | None:
    if rng.random() < 0.05:
        return None
    pieces = []
    for _ in range(rng.randint(0, 7)):
        word = rng.choice(WORDS) if rng.random() < 0.8 else rng.choice(ODD)
        if rng.random() < 0.25:
            word = word.upper() if rng.random() < 0.5 else word.capitalize()
        pieces.append(word)
        pieces.append(rng.choice(SEPARATORS))
    return "".join(pieces[:-1]) if pieces else ""


def _dataset(tmp_path, seed: int, rows: int = 1500) -> str:
    rng = random.Random(seed)
    table = pa.table({"id": pa.array(range(rows), pa.int64()),
                      "body": pa.array([_body(rng) for _ in range(rows)], pa.string()),
                      "tag": pa.array([rng.choice(TAGS) if rng.random() > 0.03 else None for _ in range(rows)])})
    folder = tmp_path / f"full-{seed}"
    folder.mkdir()
    pq.write_table(table.slice(0, rows // 2), folder / "part-0.parquet")
    pq.write_table(table.slice(rows // 2), folder / "part-1.parquet")
    return str(folder / "*.parquet")


def _trino_vocabulary(tmp_path, glob: str, name: str, columns=("body", "tag"), values=("tag",), subset_conn=None):
    """The vocabulary the Athena path would build: its Trino statements, run by DuckDB through sqlglot (and the
    subset's words, from `subset_conn`'s table docs, counted locally as the Athena refresh counts them)."""
    conn = duckdb.connect()
    conn.execute(f"CREATE TABLE docs AS SELECT * FROM read_parquet('{glob}')")

    def run(sql: str) -> pa.Table:
        return conn.sql(sqlglot.transpile(sql, read="trino", write="duckdb")[0]).to_arrow_table()

    words = {column: run(words_statement(relation="docs", column=column)) for column in columns}
    counted = {column: {r["value"]: r["n"] for r in run(values_statement(relation="docs", column=column)).to_pylist()}
               for column in values}
    cells = cells_from_rows(columns=list(values), rows=[[*row.values()] for row in run(
        cells_statement(relation="docs", columns=list(values))).to_pylist()]) if len(values) > 1 else None
    total = run(total_statement(relation="docs")).column(0)[0].as_py()
    path = tmp_path / f"{name}.duckdb"
    vocabulary_write(path=path, table="docs", total_rows=total, words=words, values=counted, cells=cells,
                     source="athena", started=time.perf_counter(),
                     subset_words=subset_word_counts(conn=subset_conn, spec=SPEC, columns=list(columns)))
    conn.close()
    return vocabulary_load(path, table="docs")


def _mutate(rng: random.Random, text: str) -> str:
    if not text:
        return rng.choice(WORDS)
    chars = list(text)
    at = rng.randrange(len(chars))
    action = rng.random()
    if action < 0.4:
        chars[at] = rng.choice("abcdefghijklmnopqrstuvwxyz0123456789 '-%_İKé")
    elif action < 0.7:
        chars.insert(at, rng.choice("qxzjk "))
    else:
        del chars[at]
    return "".join(chars)


def _needle(rng: random.Random, bodies: list[str]) -> str:
    body = rng.choice(bodies) or "alpha beta"
    start = rng.randrange(len(body) + 1) if body else 0
    piece = body[start: start + rng.randint(1, 12)] or "a"
    roll = rng.random()
    if roll < 0.35:
        return piece  # present (unless the case differs for contains)
    if roll < 0.7:
        return _mutate(rng, piece)
    if roll < 0.85:
        return rng.choice(WORDS) + rng.choice(["", " ", "-", "'"]) + rng.choice(WORDS + ["zz", "qq"])
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz '-_%") for _ in range(rng.randint(1, 6)))


def _filters(rng: random.Random, bodies: list[str]) -> list[Filter]:
    roll = rng.random()
    if roll < 0.55:
        return [Filter("body", rng.choice(["contains", "icontains", "startswith"]), _needle(rng, bodies))]
    if roll < 0.7:
        value = rng.choice([b for b in bodies if b] or ["x"])
        return [Filter("body", "eq", value if rng.random() < 0.5 else _mutate(rng, value))]
    if roll < 0.8:
        values = [_needle(rng, bodies).replace(",", " ") or "x" for _ in range(rng.randint(1, 3))]
        return [Filter("body", "in", ",".join(v for v in values if v.strip()) or "x")]
    if roll < 0.92:
        tags = [rng.choice(TAGS) if rng.random() < 0.5 else _mutate(rng, rng.choice(TAGS))
                for _ in range(rng.randint(1, 2))]
        op = "eq" if len(tags) == 1 else "in"
        flt = [Filter("tag", op, ",".join(tags) if op == "in" else tags[0])]
        return flt + ([Filter("body", "contains", _needle(rng, bodies))] if rng.random() < 0.5 else [])
    return [Filter("body", "icontains", _needle(rng, bodies)), Filter("body", "not_contains", rng.choice(WORDS))]


def _truths(conn, query: SearchQuery, glob: str) -> tuple[int, int]:
    """Matching rows of the full data by a full scan: DuckDB's SQL, and the Trino SQL through sqlglot."""
    relation = f"read_parquet('{glob}')"
    duck = compile_search(query=query, spec=SPEC, dialect="duckdb", relation=relation)
    trino = compile_search(query=query, spec=SPEC, dialect="trino", relation=relation)
    by_duck = len(conn.execute(duck.sql, duck.params).fetchall())
    by_trino = len(conn.execute(sqlglot.transpile(trino.sql, read="trino", write="duckdb")[0], trino.params).fetchall())
    return by_duck, by_trino


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_proof_of_absence_is_ever_contradicted_by_a_full_scan(tmp_path, seed):
    glob = _dataset(tmp_path, seed)
    local = vocabulary_build_local(path=tmp_path / "local.duckdb", spec=SPEC, relation=f"read_parquet('{glob}')")
    assert local["rows"] == 1500
    vocabularies = {"local": vocabulary_load(tmp_path / "local.duckdb", table="docs"),
                    "trino": _trino_vocabulary(tmp_path, glob, "trino")}
    assert all(v is not None for v in vocabularies.values())
    conn = duckdb.connect()
    bodies = [r[0] for r in conn.execute(f"SELECT body FROM read_parquet('{glob}')").fetchall()]
    rng = random.Random(seed * 1000)
    proofs = {"local": 0, "trino": 0}
    absent_unproven = 0
    checked = 0
    while checked < 400:
        query = SearchQuery("docs", tuple(_filters(rng, bodies)), 100_000)
        try:
            by_duck, by_trino = _truths(conn, query, glob)
        except Exception:  # noqa: BLE001 - a value the compiler refuses (e.g. an invalid list): not a search
            continue
        checked += 1
        assert by_duck == by_trino, query.describe()
        for name, vocabulary in vocabularies.items():
            answer = vocabulary_answer(query=query, spec=SPEC, vocabulary=vocabulary)
            assert answer.upper_bound >= by_duck, (name, query.describe(), answer)
            assert 0 <= answer.estimate <= answer.upper_bound <= answer.total_rows
            if answer.proof:
                proofs[name] += 1
                assert by_duck == 0, (name, query.describe(), answer.proof)
            elif by_duck == 0 and name == "local":
                absent_unproven += 1
    # The test exercises both outcomes: many proofs, and absent matches left to the warehouse (non-ASCII,
    # not_contains, case-sensitive contains of a word present in another case...).
    assert proofs["local"] > 40 and proofs["trino"] > 40, proofs
    assert absent_unproven > 5


def test_upper_bound_is_exact_for_values_and_estimates_multiply_shares(tmp_path):
    glob = _dataset(tmp_path, 7)
    vocabulary_build_local(path=tmp_path / "v.duckdb", spec=SPEC, relation=f"read_parquet('{glob}')")
    vocabulary = vocabulary_load(tmp_path / "v.duckdb", table="docs")
    conn = duckdb.connect()
    news = conn.execute(f"SELECT count(*) FROM read_parquet('{glob}') WHERE tag = 'news'").fetchone()[0]
    alpha_words = conn.execute(f"SELECT count(*) FROM read_parquet('{glob}') WHERE list_contains("
                               "string_split_regex(lower(body), '[^\\p{L}\\p{N}]+'), 'alpha')").fetchone()[0]
    one = vocabulary_answer(query=SearchQuery("docs", (Filter("tag", "eq", "news"),), 10), spec=SPEC,
                            vocabulary=vocabulary)
    assert one.upper_bound == one.estimate == news and one.total_rows == 1500 and not one.proof
    both = vocabulary_answer(query=SearchQuery("docs", (Filter("tag", "in", "news"),
                                                        Filter("body", "eq", "alpha")), 10), spec=SPEC,
                             vocabulary=vocabulary)
    assert both.upper_bound == min(news, alpha_words)
    assert both.estimate == min(both.upper_bound, round(1500 * (news / 1500) * (alpha_words / 1500)))
    assert "About" in one.expected_text() and "1,500" in one.expected_text()


def test_did_you_mean_proposes_near_values_and_words_most_frequent_first(tmp_path):
    rows = (["the food was good"] * 30 + ["a fool and his money"] * 10 + ["foot"] * 3 + ["rare word"])
    table = pa.table({"id": pa.array(range(len(rows)), pa.int64()), "body": rows,
                      "tag": ["food"] * 20 + ["Food"] * 3 + ["travel"] * (len(rows) - 23)})
    (tmp_path / "full").mkdir()
    pq.write_table(table, tmp_path / "full" / "part-0.parquet")
    vocabulary_build_local(path=tmp_path / "v.duckdb", spec=SPEC,
                           relation=f"read_parquet('{tmp_path}/full/*.parquet')")
    vocabulary = vocabulary_load(tmp_path / "v.duckdb", table="docs")
    typo = vocabulary_answer(query=SearchQuery("docs", (Filter("tag", "eq", "fod"),), 10), spec=SPEC,
                             vocabulary=vocabulary)
    assert typo.proof and [s.suggestion for s in typo.suggestions] == ["food", "Food"]  # 20 rows before 3
    assert typo.suggestions[0].as_dict()["query"] == "table=docs&tag__eq=food&limit=10"
    word = vocabulary_answer(query=SearchQuery("docs", (Filter("body", "contains", "the fopd was"),), 10),
                             spec=SPEC, vocabulary=vocabulary)
    assert word.proof
    # distance 1 first, then distance 2 by rows (good 30, fool 10, foot 3)
    assert [s.suggestion for s in word.suggestions][:4] == ["food", "good", "fool", "foot"]
    assert word.suggestions[0].value == "the food was"
    listed = vocabulary_answer(query=SearchQuery("docs", (Filter("tag", "in", "travel,fod"),), 10), spec=SPEC,
                               vocabulary=vocabulary)
    assert not listed.proof and listed.suggestions[0].value == "travel,food"  # travel exists: no proof
    present = vocabulary_answer(query=SearchQuery("docs", (Filter("body", "contains", "money"),), 10), spec=SPEC,
                                vocabulary=vocabulary)
    assert not present.proof and present.suggestions == [] and present.upper_bound == 10
    assert edit_distance("food", "fodo") == 1 and edit_distance("food", "fo") == 2 and edit_distance("a", "xyz") == 3


@pytest.mark.parametrize("damage", ["words", "counts", "meta", "magic", "missing", "postings", "postings-missing"])
def test_a_damaged_vocabulary_gives_no_proof_at_all(tmp_path, damage):
    glob = _dataset(tmp_path, 5)
    path = tmp_path / "v.duckdb"
    vocabulary_build_local(path=path, spec=SPEC, relation=f"read_parquet('{glob}')")
    query = SearchQuery("docs", (Filter("body", "contains", "xqzv"),), 10)
    assert vocabulary_answer(query=query, spec=SPEC, vocabulary=vocabulary_load(path, table="docs")).proof
    folder = vocabulary_dir_for(path)
    target = {"words": "docs.c0.words.bin", "counts": "docs.c0.cum.npy", "meta": "docs.json",
              "magic": "docs.c0.words.bin", "missing": "docs.c0.grams.npy", "postings": "docs.c0.gwords.npy",
              "postings-missing": "docs.c0.gstarts.npy"}[damage]
    raw = bytearray((folder / target).read_bytes())
    if damage in ("missing", "postings-missing"):
        (folder / target).unlink()
    elif damage == "magic":
        raw[0] ^= 0xFF
        (folder / target).write_bytes(bytes(raw))
    elif damage == "meta":
        (folder / target).write_text((folder / target).read_text().replace('"rows": 1500', '"rows": 1499'))
    else:
        raw[len(raw) // 2] ^= 0x01
        (folder / target).write_bytes(bytes(raw))
    assert vocabulary_load(path, table="docs") is None
    assert vocabulary_answer(query=query, spec=SPEC, vocabulary=None) is None


def test_trigrams_taken_in_slices_are_those_of_every_word(tmp_path, monkeypatch):
    """Built in slices (a few bytes here, 16 MB in production), no trigram of a word cut by a slice is lost:
    a lost one would make a present part look absent — a wrong proof."""
    import numpy as np

    from apps.search import vocabulary as module

    glob = _dataset(tmp_path, 4)
    module.vocabulary_build_local(path=tmp_path / "whole.duckdb", spec=SPEC, relation=f"read_parquet('{glob}')")
    monkeypatch.setattr(module, "GRAMS_SLICE", 7)
    module.vocabulary_build_local(path=tmp_path / "sliced.duckdb", spec=SPEC, relation=f"read_parquet('{glob}')")
    for name in ("grams", "gstarts", "gwords"):  # the trigrams and which words hold each
        whole = np.load(vocabulary_dir_for(tmp_path / "whole.duckdb") / f"docs.c0.{name}.npy")
        sliced = np.load(vocabulary_dir_for(tmp_path / "sliced.duckdb") / f"docs.c0.{name}.npy")
        assert len(whole) > 30 and np.array_equal(whole, sliced)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_trigram_postings_find_exactly_the_words_a_scan_finds(tmp_path, seed):
    """_inner_hits (a needle's words from its trigrams' lists, intersected and checked) against a scan of the word
    list, for parts of words, whole words, suffixes, misspellings and random strings: the same answer and the
    same bound, every time (a word missed would be a wrong proof)."""
    glob = _dataset(tmp_path, seed, rows=800)
    path = tmp_path / "v.duckdb"
    vocabulary_build_local(path=path, spec=SPEC, relation=f"read_parquet('{glob}')")
    words = vocabulary_load(path, table="docs").words["body"]
    assert words.gram_words is not None and len(words) > 20
    rng = random.Random(seed)
    known = [words.word(i) for i in range(len(words))]
    parts = set()
    for _ in range(400):
        word = rng.choice(known)
        start = rng.randrange(len(word))
        part = word[start: start + rng.randint(3, 8)]
        parts.update({part, _mutate(rng, part).lower(), "".join(rng.choice("abcdefghijklmnoprst") for _ in range(4))})
    checked = 0
    for part in sorted(p for p in parts if len(p) >= 3):
        for suffix in (False, True):
            decided, by_postings = words._hits_by_postings(part, suffix=suffix)
            if not decided:
                continue
            by_scan = words._hits_by_scan(part, suffix=suffix)
            assert (by_postings is None) == (by_scan is None), (part, suffix)
            assert by_scan is None or by_postings.tolist() == by_scan.tolist(), (part, suffix)
            checked += 1
    assert checked > 300


def test_a_version_1_vocabulary_is_still_read_and_scans_its_words(tmp_path):
    """The oldest readable version: a vocabulary built before the trigram postings answers the same."""
    import json

    from apps.search import vocabulary as module

    glob = _dataset(tmp_path, 6)
    path = tmp_path / "v.duckdb"
    vocabulary_build_local(path=path, spec=SPEC, relation=f"read_parquet('{glob}')")
    query = SearchQuery("docs", (Filter("body", "contains", "amm"),), 10)
    now = vocabulary_answer(query=query, spec=SPEC, vocabulary=vocabulary_load(path, table="docs"))
    folder = vocabulary_dir_for(path)
    meta = json.loads((folder / "docs.json").read_text())
    for number in range(len(meta["columns"])):
        for name in (f"docs.c{number}.gstarts.npy", f"docs.c{number}.gwords.npy"):
            (folder / name).unlink()
            meta["files"].pop(name)
    meta["version"] = 1
    meta["meta_sha256"] = module._meta_checksum(meta)
    (folder / "docs.json").write_text(json.dumps(meta))
    old = vocabulary_load(path, table="docs")
    assert old is not None and old.words["body"].gram_words is None
    assert vocabulary_answer(query=query, spec=SPEC, vocabulary=old) == now and now.upper_bound > 0
    meta["version"] = 0
    meta["meta_sha256"] = module._meta_checksum(meta)
    (folder / "docs.json").write_text(json.dumps(meta))
    assert vocabulary_load(path, table="docs") is None  # older than the oldest readable


def _numbers_dataset(tmp_path, name: str, extra: list[str]) -> str:
    bodies = [f"order KX-{1000 + i % 50} shipped" for i in range(400)] + extra  # each number in 8 rows
    folder = tmp_path / name
    folder.mkdir()
    pq.write_table(pa.table({"id": pa.array(range(len(bodies)), pa.int64()), "body": bodies,
                             "tag": ["news"] * len(bodies)}), folder / "part-0.parquet")
    return str(folder / "*.parquet")


def _said(vocabulary, needle: str):
    return vocabulary_answer(query=SearchQuery("docs", (Filter("body", "contains", needle),), 10), spec=SPEC,
                             vocabulary=vocabulary)


def test_a_column_keeps_its_numbers_unless_they_are_ids(tmp_path, monkeypatch):
    """Digits-only words: a column of codes keeps them (a number no row has is a proof; a code is bounded by its
    number's rows), in both backends alike; a column holding a number longer than DIGIT_WORD_LEN (an id), or more
    than DIGIT_WORDS_MAX distinct ones, keeps none, so a number proves nothing there. Counted in small chunks (the
    digits dropped as soon as a merge sees an id) it is the same vocabulary."""
    from apps.search import vocabulary as module

    codes = _numbers_dataset(tmp_path, "codes", [])
    vocabulary_build_local(path=tmp_path / "codes.duckdb", spec=SPEC, relation=f"read_parquet('{codes}')")
    kept = vocabulary_load(tmp_path / "codes.duckdb", table="docs")
    trino = _trino_vocabulary(tmp_path, codes, "codes-trino")
    assert kept.words["body"].digits and trino.words["body"].digits
    assert kept.words["body"].blob[:] == trino.words["body"].blob[:]
    for vocabulary in (kept, trino):
        assert _said(vocabulary, "KX-1003").upper_bound == 8 and not _said(vocabulary, "KX-1003").proof
        assert _said(vocabulary, "KX-1003 shipped").upper_bound == 8
        assert _said(vocabulary, "KX-9999").proof and _said(vocabulary, "order 1003").proof == ""
        assert _said(vocabulary, "x-1099").proof  # as a prefix: no number starts with 1099

    ids = _numbers_dataset(tmp_path, "ids", [f"ref {12_345_678 + i}" for i in range(3)])
    vocabulary_build_local(path=tmp_path / "ids.duckdb", spec=SPEC, relation=f"read_parquet('{ids}')")
    dropped = vocabulary_load(tmp_path / "ids.duckdb", table="docs")
    trino = _trino_vocabulary(tmp_path, ids, "ids-trino")
    for vocabulary in (dropped, trino):
        assert not vocabulary.words["body"].digits and vocabulary.words["body"].exact("1003") == 0
        assert not _said(vocabulary, "KX-9999").proof and not _said(vocabulary, "12345699").proof
        assert _said(vocabulary, "KX-1003").upper_bound == 400  # bounded by `kx` only
    monkeypatch.setattr(module, "CHUNK_ROWS", 40)
    monkeypatch.setattr(module, "MERGE_EVERY", 2)
    vocabulary_build_local(path=tmp_path / "chunks.duckdb", spec=SPEC, relation=f"read_parquet('{ids}')")
    chunked = vocabulary_load(tmp_path / "chunks.duckdb", table="docs")
    assert chunked.words["body"].blob[:] == dropped.words["body"].blob[:]
    assert (chunked.words["body"].cum == dropped.words["body"].cum).all()

    monkeypatch.setattr(module, "DIGIT_WORDS_MAX", 49)  # 50 distinct numbers: one too many
    vocabulary_build_local(path=tmp_path / "many.duckdb", spec=SPEC, relation=f"read_parquet('{codes}')")
    many = vocabulary_load(tmp_path / "many.duckdb", table="docs")
    assert not many.words["body"].digits and not _said(many, "KX-9999").proof
