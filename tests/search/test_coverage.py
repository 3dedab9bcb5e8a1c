"""Coverage rows (apps/search/coverage.py) and the proof they make possible (`VocabularyAnswer.all_here`):

- the statement (DuckDB, and the Trino one through sqlglot) picks every row of each rare word and at least
  min(rows, CELL_ROWS) of each cell, cells first, within its budget;
- randomized: whenever the vocabulary says every matching row is in the subset, a full scan agrees (both
  backends' vocabularies, a random sample plus coverage rows);
- end to end: with coverage on, a rare word and a thin cell are answered complete with no fallback (and a
  confirmed search still asks the warehouse), while without it the same searches need the warehouse.
"""
from __future__ import annotations

import io
import random
import re

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot

from apps.search import coverage
from apps.search.coverage import coverage_budget, coverage_keys_statement
from apps.search.query import Filter, SearchQuery, compile_search
from apps.search.tables import TableSpec
from apps.search.vocabulary import vocabulary_answer, vocabulary_build_local, vocabulary_load
from tests.search.test_vocabulary import _body, _filters, _mutate, _trino_vocabulary

SPEC = TableSpec(
    name="docs",
    key="id",
    columns={"id": "BIGINT", "body": "VARCHAR", "tag": "VARCHAR", "kind": "VARCHAR"},
    searchable={"body": ("contains", "icontains", "startswith", "eq", "in", "not_contains", "regex"),
                "tag": ("eq", "in", "contains"), "kind": ("eq", "in")},
    shown=("body", "tag", "kind"),
    facets=("tag", "kind"),
)
TAGS = ["news", "sports", "science", "food", "Food", "travel"]
KINDS = ["a", "b", "c", "rare"]
SPLIT = "string_split_regex(lower(body), '[^\\p{L}\\p{N}]+')"


def _dataset(tmp_path, seed: int, rows: int = 1500) -> str:
    rng = random.Random(seed)
    bodies = []
    for number in range(rows):
        body = _body(rng)
        if body is not None and rng.random() < 0.2:  # words in a few rows each: the rare words coverage holds
            body += f" zq{rng.randrange(rows // 4)}x"
        if body is not None and rng.random() < 0.15:  # codes: their numbers are rare words, shared by a few codes
            body += f" {_code(rng)}"
        bodies.append(body)
    table = pa.table({"id": pa.array(range(rows), pa.int64()), "body": pa.array(bodies, pa.string()),
                      "tag": pa.array([rng.choice(TAGS) if rng.random() > 0.03 else None for _ in range(rows)]),
                      "kind": pa.array([rng.choices(KINDS, [10, 10, 5, 0.2])[0] for _ in range(rows)])})
    folder = tmp_path / f"full-{seed}"
    folder.mkdir()
    pq.write_table(table, folder / "part-0.parquet")
    return str(folder / "*.parquet")


def _code(rng: random.Random) -> str:
    return f"{rng.choice('KZ')}{rng.choice('XY')}-{rng.randrange(1000, 1040)}"


def _keys(glob: str, budget: int, dialect: str = "duckdb") -> list[int]:
    conn = duckdb.connect()
    conn.execute(f"CREATE TABLE docs AS SELECT * FROM read_parquet('{glob}')")
    sql = coverage_keys_statement(relation="docs", key="id", word_columns=["body"], cell_columns=["tag", "kind"],
                                  budget=budget, order="id % 7", dialect=dialect)
    if dialect == "trino":
        sql = sqlglot.transpile(sql, read="trino", write="duckdb")[0]
    return [row[0] for row in conn.execute(sql).fetchall()]


@pytest.mark.parametrize("dialect", ["duckdb", "trino"])
def test_coverage_holds_every_row_of_rare_words_and_fills_every_cell(tmp_path, dialect):
    glob = _dataset(tmp_path, 5)
    chosen = set(_keys(glob, budget=10**6, dialect=dialect))
    conn = duckdb.connect()
    relation = f"read_parquet('{glob}')"
    rare = conn.execute(
        f"SELECT w, list(id) FROM (SELECT id, unnest(list_distinct({SPLIT})) AS w FROM {relation}) "
        f"WHERE w <> '' AND NOT regexp_full_match(w, '[0-9]+') GROUP BY w HAVING count(*) <= {coverage.WORD_ROWS}"
    ).fetchall()
    assert len(rare) > 100  # the test has rare words to hold
    for word, ids in rare:
        assert set(ids) <= chosen, word
    cells = conn.execute(f"SELECT tag, kind, list(id) FROM {relation} GROUP BY ALL").fetchall()
    assert any(len(ids) < coverage.CELL_ROWS for *_, ids in cells) and any(len(ids) > coverage.CELL_ROWS
                                                                            for *_, ids in cells)
    for tag, kind, ids in cells:
        assert len(set(ids) & chosen) >= min(len(ids), coverage.CELL_ROWS), (tag, kind)
    # Within a budget: exactly that many keys, the cells' rows first (each cell's first rows by `order`).
    few = _keys(glob, budget=200, dialect=dialect)
    assert len(few) == len(set(few)) == 200
    firsts = {min(ids, key=lambda i: (i % 7, i)) for *_, ids in cells}
    assert firsts <= set(few)


def test_the_budget_is_a_share_of_the_full_data():
    assert coverage_budget(sample_rows=100_000, fraction=0.05, share=0.1) == 200_000
    assert coverage_budget(sample_rows=100_000, fraction=0.05, share=0) == 0


@pytest.mark.parametrize("seed", [1, 2])
def test_every_row_here_is_never_contradicted_by_a_full_scan(tmp_path, seed):
    """A 5% sample plus coverage rows (a small budget: some rare words and cells are left out), both backends'
    vocabularies, 400 random searches: `all_here` only where the full data has exactly the subset's rows."""
    glob = _dataset(tmp_path, seed)
    relation = f"read_parquet('{glob}')"
    conn = duckdb.connect()
    keys = _keys(glob, budget=900)
    conn.execute(f"CREATE TABLE subset AS SELECT * FROM {relation} WHERE id % 20 = 3 OR id IN ({','.join(map(str, keys))})")
    built = duckdb.connect()  # the subset as the build holds it: its words say which words are whole here
    built.execute(f"CREATE TABLE docs AS SELECT * FROM {relation} WHERE id % 20 = 3 OR id IN ({','.join(map(str, keys))})")
    vocabulary_build_local(path=tmp_path / "local.duckdb", spec=SPEC, relation=relation, subset_conn=built)
    vocabularies = {"local": vocabulary_load(tmp_path / "local.duckdb", table="docs"),
                    "trino": _trino_vocabulary(tmp_path, glob, "trino", columns=("body", "tag", "kind"),
                                               values=("tag", "kind"), subset_conn=built)}
    assert vocabularies["local"].meta["cells"]["columns"] == ["tag", "kind"]
    assert vocabularies["local"].meta["cells"] == vocabularies["trino"].meta["cells"]
    assert vocabularies["local"].words["body"].digits and vocabularies["trino"].words["body"].digits
    bodies = [r[0] for r in conn.execute(f"SELECT body FROM {relation}").fetchall()]
    rng = random.Random(seed)
    proven = {"local": 0, "trino": 0}
    by_words = {"local": 0, "trino": 0}  # proven by a needle's words whole here, not by counting
    missed = 0  # all matching rows were here, but the bound could not show it
    checked = 0
    while checked < 400:
        filters = _filters(rng, bodies)
        if rng.random() < 0.4:  # rare words, codes, and thin cells
            rare = f"zq{rng.randrange(400)}x" if rng.random() < 0.5 else _code(rng)
            filters = [Filter("body", rng.choice(["contains", "icontains"]), rare if rng.random() < 0.8 else rare[1:-1])]
        if rng.random() < 0.3:
            filters += [Filter("kind", "eq", rng.choice(KINDS + [_mutate(rng, "rare")]))]
        query = SearchQuery("docs", tuple(filters), 100_000)
        try:
            full = compile_search(query=query, spec=SPEC, dialect="duckdb", relation=relation)
            here = compile_search(query=query, spec=SPEC, dialect="duckdb", relation="subset")
            in_full = len(conn.execute(full.sql, full.params).fetchall())
            in_subset = len(conn.execute(here.sql, here.params).fetchall())
        except Exception:  # noqa: BLE001 - a value the compiler refuses: not a search
            continue
        checked += 1
        for name, vocabulary in vocabularies.items():
            answer = vocabulary_answer(query=query, spec=SPEC, vocabulary=vocabulary, subset_rows=in_subset)
            if answer.all_here:
                proven[name] += 1
                by_words[name] += answer.here_reason.startswith("every row")
                assert in_full == in_subset, (name, query.describe(), answer)
            elif name == "local" and in_full == in_subset and in_full and not answer.proof:
                missed += 1
    assert proven["local"] > 25 and proven["trino"] > 25, (proven, missed)
    assert by_words["local"] > 10 and by_words["trino"] > 10, by_words
    assert missed > 5  # the budget left rare rows out, or the bound is loose: both outcomes are exercised


def test_cells_bound_several_value_filters_exactly_and_prove_an_empty_combination(tmp_path):
    glob = _dataset(tmp_path, 9)
    relation = f"read_parquet('{glob}')"
    vocabulary_build_local(path=tmp_path / "v.duckdb", spec=SPEC, relation=relation)
    vocabulary = vocabulary_load(tmp_path / "v.duckdb", table="docs")
    conn = duckdb.connect()
    cells = {(tag, kind): n for tag, kind, n in
             conn.execute(f"SELECT tag, kind, count(*) FROM {relation} GROUP BY ALL").fetchall()}
    for (tag, kind), n in list(cells.items())[:10]:
        if tag is None:
            continue
        answer = vocabulary_answer(query=SearchQuery("docs", (Filter("tag", "eq", tag), Filter("kind", "eq", kind)),
                                                     10), spec=SPEC, vocabulary=vocabulary)
        assert answer.upper_bound == n and not answer.proof
    both = vocabulary_answer(query=SearchQuery("docs", (Filter("tag", "in", "news,food"), Filter("kind", "eq", "rare")),
                                               10), spec=SPEC, vocabulary=vocabulary)
    assert both.upper_bound == cells.get(("news", "rare"), 0) + cells.get(("food", "rare"), 0)
    absent = [(t, k) for t in TAGS for k in KINDS if (t, k) not in cells]
    if absent:  # each value exists alone, never together: a proof of absence
        tag, kind = absent[0]
        answer = vocabulary_answer(query=SearchQuery("docs", (Filter("tag", "eq", tag), Filter("kind", "eq", kind)),
                                                     10), spec=SPEC, vocabulary=vocabulary)
        assert answer.proof and answer.upper_bound == 0 and "kind" in answer.proof


# --- end to end: the demo data built with coverage ------------------------------------------------------

@pytest.fixture(scope="module")
def covered_demo(tmp_path_factory):
    from django.test import override_settings

    from apps.search.demo import demo_data_build

    root = tmp_path_factory.mktemp("covered")
    with override_settings(SEARCH_FULL_DATA_DIR=root / "full", SEARCH_SUBSET_DIR=root / "subset",
                           SUBSET_COVERAGE_SHARE=1.0):
        built = demo_data_build(rows=20_000, subset_fraction=0.05, seed=23, stdout=io.StringIO())
    return root, built


@pytest.fixture
def covered(covered_demo, settings, tmp_path):
    import shutil

    root, built = covered_demo
    shutil.copytree(root / "subset", tmp_path / "subset")
    settings.SEARCH_FULL_DATA_DIR = root / "full"
    settings.SEARCH_SUBSET_DIR = tmp_path / "subset"
    settings.SUBSET_LEARNED_DIR = tmp_path / "learned"
    settings.WAREHOUSE_BACKEND = "local"
    settings.WAREHOUSE_LOCAL_MIN_LATENCY_MS = 0
    return root, built


def _rare_word(root) -> tuple[str, int]:
    """An ASCII word of the demo text that 2-9 full-data rows contain (any case, as part of any word)."""
    conn = duckdb.connect()
    relation = f"read_parquet('{root}/full/samples/*.parquet')"
    words = conn.execute(
        f"SELECT w FROM (SELECT id, unnest(list_distinct(string_split_regex(lower(text), '[^\\p{{L}}\\p{{N}}]+'))) "
        f"AS w FROM {relation}) WHERE regexp_full_match(w, '[a-z]{{6,}}') GROUP BY w HAVING count(*) BETWEEN 2 AND 9 "
        f"ORDER BY w LIMIT 50").fetchall()
    for (word,) in words:
        rows = conn.execute(f"SELECT count(*) FROM {relation} WHERE lower(text) LIKE ?", [f"%{word}%"]).fetchone()[0]
        if 2 <= rows <= 9:
            return word, rows
    raise AssertionError("no rare word")


@pytest.mark.django_db
def test_with_coverage_a_rare_word_and_a_thin_cell_end_in_the_subset(covered, user):
    from apps.samples.pipeline import RowSource, search_answer
    from apps.warehouse.models import Fallback

    root, built = covered
    assert built["subset_rows"] > built["sampled_rows"] >= 900
    word, rows = _rare_word(root)
    answer = search_answer(user=user, query=SearchQuery("samples", (Filter("text", "icontains", word),), 10))
    assert len(answer.rows) == rows and {row.source for row in answer.rows} == {RowSource.SUBSET}
    assert answer.complete and answer.fallback is None and answer.vocabulary.all_here
    assert answer.notice.startswith("Every matching row of the full dataset is here")
    assert "the full dataset has no more" in answer.summary()
    label, lang, domain, thin = duckdb.connect().execute(
        f"SELECT label, lang, domain, count(*) FROM read_parquet('{root}/full/samples/*.parquet') GROUP BY ALL "
        f"HAVING count(*) BETWEEN 5 AND 49 ORDER BY ALL LIMIT 1").fetchone()  # a thin cell: a 5% sample has 0-3
    cell = (Filter("label", "eq", label), Filter("lang", "eq", lang), Filter("domain", "eq", domain))
    facets = search_answer(user=user, query=SearchQuery("samples", cell, 50))
    assert len(facets.rows) == thin and facets.complete and facets.fallback is None
    assert facets.vocabulary.upper_bound == thin  # the cells' exact count
    assert not Fallback.objects.exists()
    forced = search_answer(user=user, query=SearchQuery("samples", (Filter("text", "icontains", word),), 10),
                           confirmed=True)
    assert forced.fallback is not None and not forced.complete and Fallback.objects.count() == 1


@pytest.mark.django_db
def test_the_api_and_the_page_say_every_matching_row_is_here(covered, user, client, api_client):
    root, _ = covered
    word, rows = _rare_word(root)
    body = api_client.get("/api/search", {"text__icontains": word}).json()
    assert body["complete"] is True and body["fallback"] is None and len(body["rows"]) == rows
    assert body["full_dataset"]["all_here"] is True and body["full_dataset"]["upper_bound"] == rows
    assert body["full_dataset"]["all_here_reason"] == f"it has at most {rows:,}"
    assert body["notice"].startswith("Every matching row of the full dataset is here")
    client.defaults.pop("HTTP_AUTHORIZATION", None)
    client.force_login(user)
    page = client.get("/samples/", {"text__icontains": word}).content.decode()
    assert "Every matching row of the full dataset is here" in page and "data-all-here" in page
    assert "confirm=1" in page  # "Search the warehouse anyway"


@pytest.mark.django_db
def test_without_coverage_the_same_searches_need_the_warehouse(user, settings, tmp_path):
    """The plain 5% sample of the same data: the rare word and the thin cell are short, so they need the
    warehouse (the proof above comes from the coverage rows, not from the vocabulary alone)."""
    from apps.samples.pipeline import search_answer
    from apps.search.demo import demo_data_build

    settings.SEARCH_FULL_DATA_DIR = tmp_path / "full"
    settings.SEARCH_SUBSET_DIR = tmp_path / "subset"
    settings.SUBSET_LEARNED_DIR = tmp_path / "learned"
    settings.WAREHOUSE_BACKEND = "local"
    settings.SUBSET_COVERAGE_SHARE = 0.0
    built = demo_data_build(rows=20_000, subset_fraction=0.05, seed=23, stdout=io.StringIO())
    assert built["subset_rows"] == built["sampled_rows"]
    word, rows = _rare_word(tmp_path)
    answer = search_answer(user=user, query=SearchQuery("samples", (Filter("text", "icontains", word),), 10))
    assert len(answer.rows) < rows and not answer.complete and answer.fallback is not None
    assert not answer.vocabulary.all_here


@pytest.mark.django_db
def test_a_local_refresh_adds_the_coverage_rows(covered, settings):
    from apps.search.store import subset_connection
    from apps.subsets.services import subset_refresh

    root, _ = covered
    settings.SUBSET_COVERAGE_SHARE = 1.0
    out = io.StringIO()
    run = subset_refresh(backend="local", fraction=0.05, method="hash", trigger="test", stdout=out)
    assert run.state == "succeeded", run.error
    added = int(re.search(r"coverage: ([\d,]+) rows", out.getvalue()).group(1).replace(",", ""))
    assert added > 500
    word, rows = _rare_word(root)
    cursor = subset_connection().cursor()
    try:
        here = cursor.execute("SELECT count(*) FROM samples WHERE list_contains(string_split_regex(lower(text), "
                              "'[^\\p{L}\\p{N}]+'), ?)", [word]).fetchone()[0]
        total = cursor.execute("SELECT count(*) FROM samples").fetchone()[0]
    finally:
        cursor.close()
    assert here == rows and total == run.rows


@pytest.mark.django_db
def test_a_code_whose_number_is_held_whole_is_answered_here_past_its_bound(covered, user, monkeypatch):
    """A code (`KX-4821`) whose number is in rows of other codes too: the bound (its number's rows) is above the
    code's own rows, so counting proves nothing; but every row holding that number is in the subset (coverage
    holds rare words whole, numbers included), so the answer is complete with no fallback and says why. A subset
    search cut short by its time limit gets no such proof (its rows may not be all the subset holds)."""
    from dataclasses import replace

    from apps.samples import pipeline
    from apps.samples.pipeline import search_answer
    from apps.search.tables import table_spec_get
    from apps.search.vocabulary import table_vocabulary
    from apps.warehouse.models import Fallback

    root, _ = covered
    relation = f"read_parquet('{root}/full/samples/*.parquet')"
    conn = duckdb.connect()
    codes = [code for (code,) in conn.execute(
        f"SELECT DISTINCT unnest(regexp_extract_all(text, '[A-Z]{{2}}-[0-9]{{4}}')) AS code FROM {relation} "
        f"ORDER BY code").fetchall()]
    vocabulary, spec = table_vocabulary(table="samples"), table_spec_get(name="samples")
    assert vocabulary.words["text"].digits
    for code in codes:
        query = SearchQuery("samples", (Filter("text", "contains", code),), 10)
        rows = conn.execute(f"SELECT count(*) FROM {relation} WHERE contains(text, ?)", [code]).fetchone()[0]
        if rows < 10 and vocabulary_answer(query=query, spec=spec, vocabulary=vocabulary).upper_bound > rows:
            break
    else:
        raise AssertionError("no code shares its number with another")
    answer = search_answer(user=user, query=query)
    assert len(answer.rows) == rows and answer.complete and answer.fallback is None
    assert answer.vocabulary.all_here and answer.vocabulary.here_reason.startswith("every row of it whose text")
    assert answer.notice.startswith("Every matching row of the full dataset is here: every row")
    assert not Fallback.objects.exists()

    searched = pipeline.subset_search
    monkeypatch.setattr(pipeline, "subset_search", lambda **kw: replace(searched(**kw), timed_out=True))
    cut = search_answer(user=user, query=query)
    assert not cut.complete and not cut.vocabulary.all_here


@pytest.mark.parametrize("dialect", ["duckdb", "trino"])
def test_coverage_holds_a_codes_number_but_not_ids(dialect):
    """Numbers are rare words where the vocabulary keeps them (a code's `4821` in 10 rows: all held), not in a
    column of ids (each in one row: taking them would spend the budget on random rows)."""
    conn = duckdb.connect()
    conn.execute("CREATE TABLE docs AS SELECT i AS id, CASE WHEN i < 10 THEN 'order KX-4821 shipped' "
                 "ELSE 'order shipped' END AS body, 'ref ' || (1000000 + i) AS ref FROM range(100) t(i)")
    sql = coverage_keys_statement(relation="docs", key="id", word_columns=["body", "ref"], cell_columns=[],
                                  budget=1000, order="id", dialect=dialect)
    if dialect == "trino":
        sql = sqlglot.transpile(sql, read="trino", write="duckdb")[0]
    assert sorted(row[0] for row in conn.execute(sql).fetchall()) == list(range(10))
