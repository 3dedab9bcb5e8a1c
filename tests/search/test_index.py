"""The substring index (apps/search/word_index.py) and the planner in subset_search return exactly the rows the
DuckDB scan returns: same rows, same order, on randomized data with Unicode, case folding, LIKE wildcard
characters in values and needles, short needles, regexes and non-substring filters; and a new subset
installed while searches run swaps the index with it."""
from __future__ import annotations

import io
import random
import threading
import time
from datetime import datetime, timedelta

import pyarrow as pa
import pytest

from apps.search import selectors, word_index
from apps.search.query import Filter, SearchQuery, compile_search
from apps.search.selectors import search_plan, subset_query_run, subset_search
from apps.search.services import subset_table_write
from apps.search.store import table_current_path, table_files, table_snapshot
from apps.search.tables import table_spec_get

TABLE = "rand"
# Letters that fold interestingly (É/é, ß, Σ/σ/ς, the Kelvin sign, dotted İ, Turkish ı), CJK, emoji,
# LIKE's wildcard and escape characters, separators, apostrophes (joined words) and digits.
ALPHABET = list("abcdeéÉxyzXYZßΣσςKİıö日本語🙂%_\\-/. ''0123456789")
WORDS = ["alpha", "Beta", "gamma", "ÉCOLE", "école", "straße", "ΣΟΦΙΑ", "σοφία", "50%", "a_b", "c\\d", "100%_off",
         "İstanbul", "kelvin", "Kelvin", "日本語", "🙂smile", "x_y%z", "under_score", "back\\slash",
         "India's", "rock'n'roll", "'quoted'", "don't", "a''b", "O'Neil's", "90's", "'tis"]


def _value(rng: random.Random) -> str | None:
    if rng.random() < 0.05:
        return None
    parts = []
    for _ in range(rng.randint(0, 6)):
        if rng.random() < 0.6:
            parts.append(rng.choice(WORDS))
        else:
            parts.append("".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 6))))
    return rng.choice([" ", "-", "", "/"]).join(parts)


def _table(rows: int, seed: int, marker: str = "") -> pa.Table:
    rng = random.Random(seed)
    start = datetime(2024, 1, 1)
    return pa.table({
        "id": pa.array(range(rows), type=pa.int64()),
        "body": pa.array([(_value(rng) or "") + marker if i % 7 else _value(rng) for i in range(rows)]),
        "title": pa.array([_value(rng) for _ in range(rows)]),
        "kind": pa.array([rng.choice(["a", "b", "c"]) for _ in range(rows)]),
        "score": pa.array([rng.randint(0, 100) for _ in range(rows)], type=pa.int32()),
        "seen_at": pa.array([start + timedelta(hours=rng.randint(0, 5000)) for _ in range(rows)],
                            type=pa.timestamp("us")),
    })


DESCRIPTION = {"key": "id", "searchable": "*", "shown": ["id", "body", "title", "kind", "score", "seen_at"]}


def _install(rows: int = 3000, seed: int = 1, marker: str = ""):
    return subset_table_write(name=TABLE, arrow=_table(rows, seed, marker), description=DESCRIPTION,
                              keep_other_tables=False, stdout=io.StringIO())


@pytest.fixture
def subset(settings, tmp_path):
    settings.SEARCH_SUBSET_DIR = tmp_path / "subset"
    _install()
    return table_spec_get(name=TABLE)


def _needle(rng: random.Random, values: list[str | None]) -> str:
    """Mostly a real substring of some value (so rows match), sometimes a made-up one."""
    value = rng.choice([v for v in values if v]) if rng.random() < 0.75 else None
    if value:
        start = rng.randrange(len(value))
        return value[start: start + rng.randint(1, 9)]
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 7)))


def _random_query(rng: random.Random, table: pa.Table) -> SearchQuery:
    filters = []
    for column in rng.sample(["body", "title"], rng.randint(1, 2)):
        op = rng.choice(["contains", "icontains", "startswith", "contains", "icontains", "regex"])
        needle = _needle(rng, table.column(column).to_pylist())
        if op == "startswith":
            value = rng.choice([v for v in table.column(column).to_pylist() if v] or ["x"])[: rng.randint(1, 8)]
        elif op == "regex":
            escaped = "".join("\\" + c if c.isascii() and not c.isalnum() else c for c in needle)
            value = rng.choice([escaped, escaped + ".*a", "^" + escaped, "(" + escaped + ")", escaped + "|zz",
                                "(?i)" + escaped])
        else:
            value = needle
        if value.strip() == "":
            value = "alpha"
        filters.append(Filter(column, op, value))
    extra = rng.choice([None, ("kind", "eq", rng.choice("abc")), ("kind", "in", "a,c"),
                        ("score", "gt", str(rng.randint(0, 100))), ("seen_at", "lt", "2024-04-01"),
                        ("body", "not_contains", "alpha")])
    if extra:
        filters.append(Filter(*extra))
    return SearchQuery(TABLE, tuple(filters), rng.choice([1, 10, 100, 1000]))


def _both(query: SearchQuery, spec):
    compiled = compile_search(query=query, spec=spec)
    indexed = subset_search(query=query, spec=spec, compiled=compiled, timeout_ms=60_000)
    scanned = subset_query_run(compiled=compiled, timeout_ms=60_000)
    assert not indexed.timed_out and not scanned.timed_out
    return indexed, scanned


def _plan(query, spec):
    path = table_snapshot(table=TABLE).path
    return search_plan(query=query, spec=spec, index=word_index.file_index(path).table(spec.name)).kind


@pytest.mark.parametrize("dense_share", [selectors.DENSE_SHARE, 1.0])
def test_index_returns_the_scans_rows_on_random_queries(subset, monkeypatch, dense_share):
    """Same rows in the same order as the LIMIT scan; with dense_share=1.0 every narrowable query takes
    the index path, and a small VERIFY_MAX_ROWS sends some through the scan that continues after it."""
    monkeypatch.setattr(selectors, "DENSE_SHARE", dense_share)
    monkeypatch.setattr(selectors, "VERIFY_MAX_ROWS", 40)
    monkeypatch.setattr(selectors, "FIRST_ROUND_ROWS", 4)
    table = _table(3000, 1)
    rng = random.Random(dense_share)
    plans = {"index": 0, "scan": 0, "empty": 0}
    for _ in range(250):
        query = _random_query(rng, table)
        plans[_plan(query, subset)] += 1
        indexed, scanned = _both(query, subset)
        assert indexed.rows == scanned.rows, query.describe()
        assert len(indexed.rows) <= query.limit
    assert plans["index"] >= 40 and plans["empty"] >= 3 and plans["scan"] >= 10, plans


@pytest.mark.parametrize(("op", "value", "expected"), [
    ("contains", "50%", {"50%"}),
    ("contains", "a_b", {"a_b"}),
    ("contains", "c\\d", {"c\\d"}),
    ("icontains", "%_o", {"100%_OFF"}),
    ("icontains", "X_Y%", {"x_y%z"}),
    ("icontains", "école", {"ÉCOLE", "école"}),
    ("contains", "école", {"école"}),
    ("icontains", "straSSe", set()),  # utf8_lower does not fold ß to ss, nor does DuckDB
    ("icontains", "σοφ", {"ΣΟΦΙΑ", "σοφία"}),
    ("icontains", "σοφία", {"σοφία"}),  # ΣΟΦΙΑ lowercases to σοφια, without the accent
    ("icontains", "KELVIN", {"Kelvin", "kelvin", "\u212aelvin"}),
    ("startswith", "日本", {"日本語 x"}),
    ("contains", "ab", {"ab%"}),  # under 3 characters: the scan answers; "a_b" is not "ab"
    ("contains", "%", {"50%", "100%_OFF", "x_y%z", "xay%z", "ab%"}),
    ("regex", "o bi.*st", {"go bist"}),  # the literal "o bi" narrows: a word ending in o, one starting bi
])
def test_literal_unicode_and_short_needles(settings, tmp_path, op, value, expected):
    settings.SEARCH_SUBSET_DIR = tmp_path / "subset"
    values = ["50%", "50x", "a_b", "axb", "c\\d", "cxd", "100%_OFF", "x_y%z", "xay%z", "ÉCOLE", "école", "ecole",
              "straße", "ΣΟΦΙΑ", "σοφία", "Kelvin", "kelvin", "\u212aelvin", "日本語 x", "x 日本語", "ab%", "go bist"]
    filler = [f"filler {i} words" for i in range(300)]
    all_values = values + filler
    subset_table_write(name=TABLE, arrow=pa.table({"id": list(range(len(all_values))), "body": all_values}),
                       description={"key": "id", "searchable": "*", "shown": ["id", "body"]},
                       keep_other_tables=False, stdout=io.StringIO())
    spec = table_spec_get(name=TABLE)
    query = SearchQuery(TABLE, (Filter("body", op, value),), 100)
    indexed, scanned = _both(query, spec)
    assert indexed.rows == scanned.rows
    assert {row[1] for row in indexed.rows} == expected
    if len(value) < 3:
        assert _plan(query, spec) == "scan"


def test_needle_words_split_like_rows():
    assert word_index.needle_parts("Hello, World") == ["hello", "world"]
    assert word_index.needle_parts(" wor") == ["", "wor"]
    assert word_index.needle_parts("50%") == ["50", ""]
    assert word_index.regex_required_literal("foo.*barbaz") == "barbaz"
    assert word_index.regex_required_literal("ab|cdef") is None
    assert word_index.regex_required_literal("(?i)abcdef") is None
    assert word_index.regex_required_literal("a[bc]d") is None


def test_index_folder_is_built_installed_and_removed_with_its_file(subset):
    first = table_current_path(table=TABLE)
    assert word_index.index_dir_for(first).is_dir()
    second = _install(seed=2)
    third = _install(seed=3)
    assert table_current_path(table=TABLE) == third
    assert not first.exists() and not word_index.index_dir_for(first).exists()  # keep=2: the oldest went
    assert second.exists() and word_index.index_dir_for(second).is_dir()


def test_a_failed_build_leaves_neither_file_nor_index(settings, tmp_path):
    settings.SEARCH_SUBSET_DIR = tmp_path / "subset"
    with pytest.raises(RuntimeError), table_files(table=TABLE).build() as (path, conn):
        conn.execute("CREATE TABLE t AS SELECT 'abc' AS s")
        raise RuntimeError("boom")
    assert not path.exists() and not word_index.index_dir_for(path).exists()


def test_new_subset_installed_while_searching(subset):
    """Threads search while another installs new subsets: every answer is the old file's or the new one's."""
    old_path = table_current_path(table=TABLE)
    queries = [SearchQuery(TABLE, (Filter("body", "icontains", needle),), 10)
               for needle in ("alpha", "école", "gamma", "oldmark", "newmark", "σοφία")]
    expected = {q: [] for q in queries}

    def truth():
        return {q: subset_query_run(compiled=compile_search(query=q, spec=subset), timeout_ms=60_000).rows
                for q in queries}

    for q, rows in truth().items():
        expected[q].append(rows)
    new_path = _install(seed=5, marker=" newmark")
    for q, rows in truth().items():
        expected[q].append(rows)
    table_files(table=TABLE).install(path=old_path)  # serve the old one again; both files stay (keep=2)
    assert all(expected[q][0] != expected[q][1] for q in queries if q.filters[0].value == "newmark")

    errors: list[BaseException] = []
    answers = []
    stop = threading.Event()

    def search():
        try:
            while not stop.is_set():
                for q in queries:
                    answers.append((q, subset_search(query=q, spec=subset, timeout_ms=60_000).rows))
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    threads = [threading.Thread(target=search) for _ in range(3)]
    for t in threads:
        t.start()
    swaps = 0
    deadline = time.monotonic() + 60
    while (swaps < 12 or len(answers) < 60) and time.monotonic() < deadline and not errors:
        table_files(table=TABLE).install(path=new_path if swaps % 2 == 0 else old_path)
        swaps += 1
        time.sleep(0.02)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len(answers) >= 60 and swaps >= 12
    for q, rows in answers:
        assert rows in expected[q], q.describe()


def _narrowed(query, spec):
    path = table_snapshot(table=TABLE).path
    return search_plan(query=query, spec=spec, index=word_index.file_index(path).table(spec.name))


def test_eq_and_in_on_text_narrow_through_each_values_words(subset, monkeypatch):
    """eq / in on an indexed text column narrow to the rows holding every word of a value (short values
    included), and the rows are still exactly the scan's."""
    monkeypatch.setattr(selectors, "DENSE_SHARE", 1.0)
    table = _table(3000, 1)
    bodies = [v for v in table.column("body").to_pylist() if v and "," not in v]
    rng = random.Random(5)
    kinds = {"index": 0, "empty": 0, "scan": 0}
    for _ in range(80):
        picked = rng.sample(bodies, 2)
        flt = rng.choice([Filter("body", "eq", picked[0]), Filter("body", "in", ",".join(picked)),
                          Filter("body", "eq", picked[0] + "zz"), Filter("title", "eq", "a")])
        query = SearchQuery(TABLE, (flt,), rng.choice([1, 10, 1000]))
        plan = _narrowed(query, subset)
        kinds[plan.kind] += 1
        if plan.kind != "scan":
            truth = {i for i, v in enumerate(table.column(flt.column).to_pylist())
                     if v is not None and v in (flt.value.split(",") if flt.op == "in" else [flt.value])}
            assert truth <= set(plan.candidates), query.describe()
        indexed, scanned = _both(query, subset)
        assert indexed.rows == scanned.rows, query.describe()
    assert kinds["index"] >= 20 and kinds["empty"] >= 5, kinds


def test_startswith_looks_up_first_words_only(subset, monkeypatch):
    """A one-word startswith needle narrows to the rows whose value BEGINS with it (the FIRST-marked
    words), not to every row holding such a word somewhere."""
    monkeypatch.setattr(selectors, "DENSE_SHARE", 1.0)
    lowered = [(v or "").lower() for v in _table(3000, 1).column("body").to_pylist()]
    for needle in ("gam", "Alph", "ÉCO", "stra", "ga"):  # 2 characters too: first words are few
        plan = _narrowed(SearchQuery(TABLE, (Filter("body", "startswith", needle),), 10), subset)
        starting = {i for i, v in enumerate(lowered) if v.startswith(needle.lower())}
        anywhere = {i for i, v in enumerate(lowered) if needle.lower() in v}
        assert set(plan.candidates) == starting, needle
        assert len(anywhere) > len(starting), needle  # the data has the word later in other values too


def test_common_words_keep_postings_so_conjunctions_intersect(settings, tmp_path, monkeypatch):
    """Only words in more than FREQUENT_SHARE of the rows go without postings; a conjunction of common
    words (each under that share: here 3.3% and 3.6%) is an intersection, answered from the index, and so is
    one of a rare word and a word in 5-25% of the rows (here 20%): its postings are read, not its rows."""
    settings.SEARCH_SUBSET_DIR = tmp_path / "subset"
    monkeypatch.setattr(word_index, "FREQUENT_MIN_ROWS", 0)
    monkeypatch.setattr(selectors, "DENSE_SHARE", 0.01)  # 10 candidates of 4200 rows: the index verifies them
    rows = 4200
    body = [("apple " if i % 30 == 0 else "") + ("pear " if i % 28 == 0 else "") + ("often " if i % 5 == 0 else "")
            + "the end" for i in range(rows)]
    arrow = pa.table({"id": pa.array(range(rows), type=pa.int64()), "body": body, "title": body,
                      "kind": ["a"] * rows, "score": pa.array([1] * rows, type=pa.int32()),
                      "seen_at": pa.array([datetime(2024, 1, 1)] * rows, type=pa.timestamp("us"))})
    subset_table_write(name=TABLE, arrow=arrow, description=DESCRIPTION, keep_other_tables=False, stdout=io.StringIO())
    spec = table_spec_get(name=TABLE)
    index = word_index.file_index(table_current_path(table=TABLE)).table(TABLE)
    assert index.needle_rows("body", "the") is None  # in every row: more than FREQUENT_SHARE, no postings
    both = _narrowed(SearchQuery(TABLE, (Filter("body", "contains", "apple"), Filter("title", "contains", "pear")), 10),
                     spec)
    assert set(both.candidates) == {i for i in range(rows) if i % 420 == 0}
    assert both.kind == "index"
    assert len(index.needle_rows("body", "often")) == rows // 5  # in 20% of the rows: postings kept
    with_often = _narrowed(SearchQuery(TABLE, (Filter("body", "contains", "pear"), Filter("body", "contains", "often")),
                                       10), spec)
    assert set(with_often.candidates) == {i for i in range(rows) if i % 140 == 0}  # not pear's 150 rows
    assert with_often.kind == "index"


def test_rare_words_postings_are_arrays_and_read_back_exactly(settings, tmp_path, monkeypatch):
    """A word in a few rows spread over many roaring containers is stored as a uint32 array (4 bytes a row
    instead of ~10); a word in many rows as roaring. Both read back as exactly their rows."""
    settings.SEARCH_SUBSET_DIR = tmp_path / "subset"
    monkeypatch.setattr(word_index, "FREQUENT_MIN_ROWS", 10**9)
    rows = 300_000
    spread = {i for i in range(0, rows, 70_001)}  # 5 rows, each in a container of its own
    body = pa.array(["rare" if i in spread else ("dense" if i % 2 else "other") for i in range(rows)])
    subset_table_write(name=TABLE, arrow=pa.table({"id": pa.array(range(rows), type=pa.int64()), "body": body}),
                       description={"key": "id", "searchable": "*", "shown": ["id", "body"]},
                       keep_other_tables=False, stdout=io.StringIO())
    index = word_index.file_index(table_current_path(table=TABLE)).table(TABLE)
    words = index._words["body"]
    rare, dense = (int(words.matching(w, "exact", 10)[0]) for w in ("rare", "dense"))
    assert words.kinds[rare] == word_index.ARRAY and words.offsets[rare + 1] - words.offsets[rare] == 4 * len(spread)
    assert words.kinds[dense] == word_index.ROARING
    assert set(index.needle_rows("body", "rare")) == spread
    assert set(index.needle_rows("body", "dense")) == set(range(1, rows, 2)) - spread


def test_low_cardinality_columns_keep_a_code_per_row_that_drops_candidates(subset, monkeypatch):
    """A text column of at most 15 values (kind: a, b, c) gets a 4-bit code per row; an eq / in filter on it
    keeps exactly the candidates holding one of its values, and the rows are still the scan's."""
    monkeypatch.setattr(selectors, "DENSE_SHARE", 1.0)
    path = table_snapshot(table=TABLE).path
    index = word_index.file_index(path).table(TABLE)
    assert set(index.coded) == {"kind"} and index.coded["kind"][0] == ["a", "b", "c"]
    table = _table(3000, 1)
    kinds, bodies = table.column("kind").to_pylist(), [(v or "").lower() for v in table.column("body").to_pylist()]
    for kind_filter, wanted in ((Filter("kind", "in", "a,c"), {"a", "c"}), (Filter("kind", "eq", "b"), {"b"}),
                                (Filter("kind", "eq", "zz"), set())):
        query = SearchQuery(TABLE, (Filter("body", "icontains", "gamma"), kind_filter), 1000)
        plan = search_plan(query=query, spec=subset, index=index)
        expected = {i for i, (body, kind) in enumerate(zip(bodies, kinds)) if "gamma" in body and kind in wanted}
        assert set(plan.candidates) == expected and (plan.kind == "empty") == (not expected)
        indexed, scanned = _both(query, subset)
        assert indexed.rows == scanned.rows


def test_a_single_lookup_too_large_to_narrow_reads_no_postings(subset, monkeypatch):
    """One filter whose words hold more than DENSE_SHARE of the rows goes to the LIMIT scan before its
    postings are read; an absent word is an empty answer at once."""
    path = table_snapshot(table=TABLE).path
    index = word_index.file_index(path).table(TABLE)
    read = []
    monkeypatch.setattr(index, "_union", lambda column, words: read.extend(words.tolist()) or word_index.BitMap())
    monkeypatch.setattr(selectors, "DENSE_SHARE", 0.0001)
    plan = search_plan(query=SearchQuery(TABLE, (Filter("body", "icontains", "alpha"),), 10), spec=subset, index=index)
    assert (plan.kind, plan.candidates, read) == ("scan", None, [])
    plan = search_plan(query=SearchQuery(TABLE, (Filter("body", "contains", "qqqzzzq"),), 10), spec=subset, index=index)
    assert (plan.kind, read) == ("empty", [])


def test_non_ascii_values_are_verified_as_duckdb_lowers_them(settings, tmp_path, monkeypatch):
    """Candidates are verified in Python where that is exact: an ASCII needle against str.lower(), except in
    values holding one of the characters whose lowercase is ASCII (İ, the Kelvin sign), which DuckDB and
    Python lower differently; those rounds go to DuckDB."""
    settings.SEARCH_SUBSET_DIR = tmp_path / "subset"
    monkeypatch.setattr(selectors, "DENSE_SHARE", 1.0)
    values = ["İstanbul café", "istanbul café", "ıstanbul café", "\u212aelvin café", "kelvin café", "Über café"]
    values = values + [f"filler {i} café" for i in range(200)]
    subset_table_write(name=TABLE, arrow=pa.table({"id": list(range(len(values))), "body": values}),
                       description={"key": "id", "searchable": "*", "shown": ["id", "body"]},
                       keep_other_tables=False, stdout=io.StringIO())
    spec = table_spec_get(name=TABLE)
    for needle, expected in (("istanbul", {0, 1}), ("kelvin", {3, 4}), ("über", {5}), ("ber caf", {5})):
        query = SearchQuery(TABLE, (Filter("body", "icontains", needle),), 100)
        indexed, scanned = _both(query, spec)
        assert _plan(query, spec) == "index"
        assert indexed.rows == scanned.rows and {row[0] for row in indexed.rows} == expected, needle


def test_the_characters_lowering_to_ascii_are_all_known():
    """LOWERS_TO_ASCII must hold every non-ASCII character whose lowercase (DuckDB's or Python's) has an
    ASCII character: re-derived here over all of Unicode, so an upgrade that adds one fails this test."""
    import duckdb

    chars = [chr(c) for c in range(0x80, 0x110000) if not 0xD800 <= c <= 0xDFFF]
    conn = duckdb.connect()
    conn.register("t", pa.table({"c": chars}))
    lowered = [row[0] for row in conn.execute("SELECT lower(c) FROM t").fetchall()]
    found = {c for c, low in zip(chars, lowered) if any(x.isascii() for x in low + c.lower())}
    assert found == {c for c in chars if selectors.LOWERS_TO_ASCII.search(c)}


def _vm_flags(path) -> set[str]:
    """The VmFlags of this process's mapping of `path` (/proc/self/smaps): `rr` is MADV_RANDOM."""
    lines = open("/proc/self/smaps").read().splitlines()
    for number, line in enumerate(lines):
        if line.endswith(" " + str(path)):
            for following in lines[number + 1:]:
                if following.startswith("VmFlags:"):
                    return set(following.split()[1:])
    raise AssertionError(f"{path} is not mapped")


def test_large_files_are_mapped_for_random_reads_and_small_arrays_are_read_into_memory(subset):
    """The row file and the postings are read at random places: mapped MADV_RANDOM, a cold page fault
    reads that page and not the disk's read-ahead window (8 MB on some disks: ~9 ms a candidate row). The
    arrays every lookup indexes at random (word offsets, sizes, kinds, row codes, frame offsets) are in
    memory, so a lookup waits for no disk read."""
    import numpy as np

    path = table_snapshot(table=TABLE).path
    index = word_index.file_index(path).table(TABLE)
    folder = word_index.index_dir_for(path)
    for name in (f"{TABLE}.rows.bin", f"{TABLE}.postings.bin"):
        assert "rr" in _vm_flags(folder / name), name
    words = index._words["body"]
    arrays = [words.offsets, words.sizes, words.kinds, index.row_offsets, index.coded["kind"][1]]
    assert not any(isinstance(array, np.memmap) for array in arrays)


class _Recording(word_index.mmap.mmap):
    def madvise(self, option, start=0, length=None):
        self.asked.append((option, start, length))


def test_prefetch_asks_for_each_run_of_ranges_once(tmp_path, monkeypatch):
    """Reads of several candidate rows (or postings) are first asked for together (MADV_WILLNEED), one call
    per run of ranges closer than PREFETCH_GAP, from a page boundary; a lone range and, for postings, too
    many scattered ranges are not."""
    import numpy as np

    page, gap = word_index.mmap.PAGESIZE, word_index.PREFETCH_GAP
    data = tmp_path / "data"
    data.write_bytes(b"x" * (10 * gap))
    with open(data, "rb") as handle:
        mapping = _Recording(handle.fileno(), 0, access=word_index.mmap.ACCESS_READ)
    mapping.asked = []
    starts = np.array([3 * gap + 10, 100, 5 * page + 300, 3 * gap + 7 * page, 9 * gap], dtype=np.int64)
    ends = starts + 50
    word_index.prefetch(mapping, starts, ends)
    assert mapping.asked == [(word_index.mmap.MADV_WILLNEED, 0, 5 * page + 350),
                             (word_index.mmap.MADV_WILLNEED, 3 * gap, 7 * page + 50),
                             (word_index.mmap.MADV_WILLNEED, 9 * gap, 50)]
    assert all(start % page == 0 for _, start, _ in mapping.asked)
    mapping.asked = []
    word_index.prefetch(mapping, starts[:1], ends[:1])
    word_index.prefetch(mapping, starts, ends, most=2)
    assert mapping.asked == []
    mapping.close()


def test_candidate_rows_and_postings_are_prefetched_before_they_are_read(subset, monkeypatch):
    monkeypatch.setattr(selectors, "DENSE_SHARE", 1.0)
    path = table_snapshot(table=TABLE).path
    index = word_index.file_index(path).table(TABLE)
    asked = []
    monkeypatch.setattr(word_index, "prefetch", lambda mapping, starts, ends, most=None: asked.append((mapping, len(starts))))
    query = SearchQuery(TABLE, (Filter("body", "icontains", "amm"),), 1000)  # gamma, …: several words, many rows
    indexed, scanned = _both(query, subset)
    assert indexed.rows == scanned.rows and _plan(query, subset) == "index"
    assert {mapping for mapping, count in asked if count > 1} == {index._postings, index._rows}


APOSTROPHE_WORDS = ["india's", "India's", "russia's", "asia", "media", "it's", "don't", "rock'n'roll", "'quoted'",
                    "a''b", "o'neil's", "90's", "'tis", "s", "x'", "'", "''", "ia", "ia's'", "ma'am", "n'", "İa's"]


def test_needles_with_apostrophes_narrow_through_joined_words_and_match_the_scan(settings, tmp_path, monkeypatch):
    """Words joined by apostrophes (india's, rock'n'roll) are indexed too, so a needle like "ia's", whose
    parts `ia` and `s` are in too many words to narrow, finds the few joined words holding it. Random
    needles cut anywhere in apostrophe-rich values (at, before and after apostrophes, across separators)
    return exactly the scan's rows."""
    import numpy as np

    settings.SEARCH_SUBSET_DIR = tmp_path / "subset"
    monkeypatch.setattr(selectors, "DENSE_SHARE", 1.0)
    rng = random.Random(5)
    values = [rng.choice([" ", "-", "/", ", ", "'", " '"]).join(rng.choice(APOSTROPHE_WORDS) for _ in range(rng.randint(1, 5)))
              for _ in range(2000)]
    subset_table_write(name=TABLE, arrow=pa.table({"id": list(range(len(values))), "body": values}),
                       description={"key": "id", "searchable": "*", "shown": ["id", "body"]},
                       keep_other_tables=False, stdout=io.StringIO())
    spec = table_spec_get(name=TABLE)
    path = table_snapshot(table=TABLE).path
    index = word_index.file_index(path).table(TABLE)
    joined = []
    original = index.part_words
    monkeypatch.setattr(index, "part_words", lambda column, part, how, mark="": (
        joined.append(part) if mark == word_index.JOINED else None) or original(column, part, how, mark=mark))
    for _ in range(300):
        value = rng.choice(values)
        start = rng.randrange(len(value))
        needle = value[start: start + rng.randint(2, 12)]
        op = rng.choice(["contains", "icontains", "startswith", "eq"])
        if op == "startswith":
            needle = value[: rng.randint(1, 12)]
        elif op == "eq":
            needle = value if rng.random() < 0.7 else needle
        query = SearchQuery(TABLE, (Filter("body", op, needle),), rng.choice([1, 10, 1000]))
        indexed, scanned = _both(query, spec)
        assert indexed.rows == scanned.rows, query.describe()
    assert len(joined) >= 50

    query = SearchQuery(TABLE, (Filter("body", "contains", "ia's"),), 1000)
    found = original("body", "ia's", "contains", mark=word_index.JOINED)
    words = index._words["body"]
    # The build splits values with pyarrow's RE2, a needle is split in Python: both give the same words.
    pieces = {piece.strip("'") for value in values for piece in word_index.joined_segments(value)}
    assert {words.blob[words.starts[w]: words.ends[w]].decode() for w in found} == {
        word_index.JOINED + piece for piece in pieces if "ia's" in piece}
    # Its plain parts (`ia` ending words, `s` starting them) are not looked up: the joined words say more.
    parts = index.lookup("body", "ia's").parts
    assert len(parts) == 1 and np.array_equal(parts[0], found)
    assert len(index.lookup("body", "ia's", at_start=True).parts) > 1  # the value's first word, too
    indexed, scanned = _both(query, spec)
    assert indexed.rows == scanned.rows and _plan(query, spec) == "index"


def test_a_coded_filter_counts_before_a_single_lookup_is_left_to_the_scan(settings, tmp_path, monkeypatch):
    """A single lookup too large to read alone is read when an eq / in filter on a coded column keeps few
    enough of its rows: the share of rows per value is counted from the codes."""
    settings.SEARCH_SUBSET_DIR = tmp_path / "subset"
    monkeypatch.setattr(word_index, "FREQUENT_MIN_ROWS", 1)  # kind's values are then too frequent to narrow
    _install()
    spec = table_spec_get(name=TABLE)
    path = table_snapshot(table=TABLE).path
    index = word_index.file_index(path).table(TABLE)
    kinds = _table(3000, 1).column("kind").to_pylist()
    assert index.codes_share("kind", ["a", "c"]) == pytest.approx((kinds.count("a") + kinds.count("c")) / 3000)
    assert index.codes_share("kind", ["zz"]) == 0 and index.lookup("kind", "b", whole=True) is None
    estimate = index.lookup("body", "gamma").estimate
    monkeypatch.setattr(selectors, "DENSE_SHARE", estimate * 0.5 / index.rows)
    alone = SearchQuery(TABLE, (Filter("body", "icontains", "gamma"),), 10)
    with_kind = SearchQuery(TABLE, (Filter("body", "icontains", "gamma"), Filter("kind", "eq", "b")), 10)
    assert _plan(alone, spec) == "scan" and _plan(with_kind, spec) == "index"
    indexed, scanned = _both(with_kind, spec)
    assert indexed.rows == scanned.rows


def test_few_candidates_are_verified_rather_than_narrowed_by_a_lookup_of_many_words(settings, tmp_path, monkeypatch):
    """Once the candidates are few, a further lookup matching many words (`title contains she`: 811 words at
    10M rows) is not read: verifying the candidates costs less. The rows are still the scan's."""
    settings.SEARCH_SUBSET_DIR = tmp_path / "subset"
    monkeypatch.setattr(selectors, "DENSE_SHARE", 1.0)
    titles = [f"she{i % 50} title" for i in range(400)]  # `she` is in 50 distinct words
    bodies = [f"unique needle she{i % 50}" if i in (7, 300) else f"filler she{i % 50}" for i in range(400)]
    subset_table_write(name=TABLE, arrow=pa.table({"id": list(range(400)), "body": bodies, "title": titles}),
                       description={"key": "id", "searchable": "*", "shown": ["id", "body", "title"]},
                       keep_other_tables=False, stdout=io.StringIO())
    spec = table_spec_get(name=TABLE)
    index = word_index.file_index(table_current_path(table=TABLE)).table(TABLE)
    assert len(index.lookup("title", "she").parts[0]) >= 50 > 2 * word_index.CANDIDATE_WORDS
    read = []
    original = index._union  # every word's postings are read through it (one by one the first time, then together)
    monkeypatch.setattr(index, "_union", lambda column, words: read.extend([column] * len(words)) or original(column, words))
    for title_needle, expected in (("she7", [7]), ("she", [7, 300])):
        read.clear()
        query = SearchQuery(TABLE, (Filter("body", "contains", "unique needle"), Filter("title", "contains", title_needle)), 10)
        indexed, scanned = _both(query, spec)
        assert [row[0] for row in indexed.rows] == [row[0] for row in scanned.rows] == expected
        # `she7` is 1 word (she7): read; `she` is 50 words for 2 candidates: left to the verification
        assert ("title" in read) == (title_needle == "she7"), title_needle
    # The same within one needle: "needle she" is a word ending in `needle` (2 rows), then one starting
    # with `she` (50 words): that part is not read either.
    read.clear()
    query = SearchQuery(TABLE, (Filter("body", "contains", "needle she"),), 10)
    indexed, scanned = _both(query, spec)
    assert [row[0] for row in indexed.rows] == [row[0] for row in scanned.rows] == [7, 300]
    assert len(read) == 1 and _plan(query, spec) == "index"


def test_many_frames_are_read_with_a_helper_thread_and_come_back_in_order(subset, monkeypatch):
    """Reading 32 frames or more, a helper thread decompresses the second half meanwhile; the rows are the
    same, in order, as reading them one frame at a time — and when every helper is busy, the reader reads
    them all itself instead of waiting."""
    import numpy as np

    index = word_index.file_index(table_snapshot(table=TABLE).path).table(TABLE)
    positions = np.arange(0, 3000, 7, dtype=np.int64)  # ~430 rows in ~94 frames of 32
    expected = pa.Table.from_batches([index.batch(i) for i in range(index.rows // index.batch_rows + 1)]
                                     ).take(pa.array(positions))
    submitted = []
    pool = word_index._frame_pool()
    monkeypatch.setattr(word_index, "_frame_pool", lambda: submitted.append(1) or pool)
    monkeypatch.setattr(word_index, "core_idle", lambda: True)
    assert index.rows_at(positions).equals(expected) and submitted == [1]
    assert index.rows_at(positions[:20]).equals(expected.slice(0, 20)) and submitted == [1]  # 5 frames: alone
    held = [word_index._helpers.acquire(blocking=False) for _ in range(word_index.FRAME_HELPERS)]
    try:
        assert all(held) and index.rows_at(positions).equals(expected) and submitted == [1]
    finally:
        for _ in held:
            word_index._helpers.release()


def test_with_no_idle_core_the_reader_reads_every_frame_itself(subset, monkeypatch):
    """Under load (every core running requests) a helper thread would only queue behind them: the frames are
    read by the request's own thread, the same rows in the same order."""
    import numpy as np

    index = word_index.file_index(table_snapshot(table=TABLE).path).table(TABLE)
    positions = np.arange(0, 3000, 7, dtype=np.int64)
    submitted = []
    pool = word_index._frame_pool()
    monkeypatch.setattr(word_index, "_frame_pool", lambda: submitted.append(1) or pool)
    monkeypatch.setattr(word_index, "core_idle", lambda: True)
    expected = index.rows_at(positions)
    assert submitted == [1]
    monkeypatch.setattr(word_index, "core_idle", lambda: False)
    assert index.rows_at(positions).equals(expected) and submitted == [1]


@pytest.mark.parametrize(("loadavg", "cores", "idle"), [
    ("0.52 0.61 0.70 1/312 4242\n", 2, True),  # only the reader runs
    ("1.90 1.80 1.70 2/312 4242\n", 2, False),  # the reader and one more: both cores busy
    ("3.10 2.90 2.50 9/540 4242\n", 2, False),
    ("3.10 2.90 2.50 9/540 4242\n", 16, True),
    ("garbled", 2, True),  # not known: as before, a helper when one is free
])
def test_a_core_is_idle_when_fewer_threads_are_runnable_than_cores(loadavg, cores, idle, monkeypatch):
    monkeypatch.setattr(word_index, "CORES", cores)
    assert word_index.core_idle(loadavg) is idle


def test_a_forked_child_starts_its_own_frame_helpers(subset):
    """The parent's helper threads do not survive a fork: a child (a Celery or gunicorn worker) that read
    many frames through the parent's pool would wait forever."""
    import os

    import numpy as np

    index = word_index.file_index(table_snapshot(table=TABLE).path).table(TABLE)
    positions = np.arange(0, 3000, 7, dtype=np.int64)
    expected = index.rows_at(positions).num_rows  # the parent's pool now has threads
    child = os.fork()
    if child == 0:
        code = 1
        try:
            code = 0 if index.rows_at(positions).num_rows == expected else 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(child, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(child, 9)
    raise AssertionError("the child hung reading frames")


def test_ne_and_in_on_nullable_columns_treat_null_as_duckdb_does(settings, tmp_path, monkeypatch):
    """On the index path candidates are verified in Python (selectors._python_check). A NULL is DISTINCT FROM
    every value, so it matches `ne`; `NULL IN (...)` is NULL, so it never matches `in`. Checked on a text column
    with too many values to be coded and on an integer column, both a third NULL, against the scan and against
    the rows counted by hand."""
    settings.SEARCH_SUBSET_DIR = tmp_path / "subset"
    monkeypatch.setattr(selectors, "DENSE_SHARE", 1.0)  # every narrowable query takes the index path
    rows = 600
    body = [f"rare{i % 4} filler words" for i in range(rows)]
    title = [None if i % 3 == 0 else f"t{i % 40}" for i in range(rows)]  # 40 values: not a coded column
    score = [None if i % 3 == 1 else i % 10 for i in range(rows)]
    subset_table_write(name=TABLE, arrow=pa.table({"id": pa.array(range(rows), type=pa.int64()), "body": body,
                                                   "title": title, "score": pa.array(score, type=pa.int32())}),
                       description={"key": "id", "searchable": "*", "shown": ["id", "body", "title", "score"]},
                       keep_other_tables=False, stdout=io.StringIO())
    spec = table_spec_get(name=TABLE)
    assert "title" not in word_index.file_index(table_current_path(table=TABLE)).table(TABLE).coded
    assert selectors._python_filter(SearchQuery(TABLE, (Filter("score", "ne", "3"),), 1), spec) is not None
    cases = [
        (Filter("title", "ne", "t1"), lambda i: title[i] != "t1"),  # None != "t1": kept
        (Filter("score", "ne", "3"), lambda i: score[i] != 3),
        (Filter("title", "in", "t1,t2,t5,t10"), lambda i: title[i] in {"t1", "t2", "t5", "t10"}),
        (Filter("score", "in", "1,2,5"), lambda i: score[i] in {1, 2, 5}),
    ]
    for flt, keep in cases:
        query = SearchQuery(TABLE, (Filter("body", "contains", "rare1"), flt), 1000)
        assert _plan(query, spec) == "index", flt
        indexed, scanned = _both(query, spec)
        expected = [i for i in range(rows) if i % 4 == 1 and keep(i)]
        assert [row[0] for row in scanned.rows] == expected, flt
        assert indexed.rows == scanned.rows, flt
        nulls = {row[0] for row in indexed.rows if row[2 if flt.column == "title" else 3] is None}
        assert bool(nulls) == (flt.op == "ne"), flt  # the NULL rows are in the ne answers, never in the in ones


def test_repeated_lookups_and_unions_are_remembered_and_cannot_be_changed(settings, tmp_path, monkeypatch):
    """The index never changes, so a process remembers a needle's words and the union of a part's many words'
    postings (`she` in 50 words): the second search reads no postings. A remembered union is frozen: a caller
    cannot change what the next search gets. Both memories are bounded (entries, bytes)."""
    settings.SEARCH_SUBSET_DIR = tmp_path / "subset"
    titles = [f"she{i % 50} title" for i in range(400)]
    subset_table_write(name=TABLE, arrow=pa.table({"id": list(range(400)), "title": titles}),
                       description={"key": "id", "searchable": "*", "shown": ["id", "title"]},
                       keep_other_tables=False, stdout=io.StringIO())
    index = word_index.file_index(table_current_path(table=TABLE)).table(TABLE)
    first = index.lookup("title", "she")
    assert index.lookup("title", "she") is first and len(first.parts[0]) == 50
    assert index.lookup("title", "42") is None and index.lookup("title", "42") is None  # digits: no narrowing
    rows = index.lookup_rows(first)
    assert set(rows) == set(range(400))
    read = []
    original = index._posting
    monkeypatch.setattr(index, "_posting", lambda column, word: read.append(word) or original(column, word))
    again = index.lookup_rows(first)
    assert set(again) == set(range(400)) and read == []  # remembered: no postings read
    with pytest.raises(AttributeError):
        again.add(1000)  # frozen
    few = word_index._Remembered(entries=2)
    for key in "abc":
        few.put(key, key.upper())
    assert (few.get("a"), few.get("b"), few.get("c")) == (None, "B", "C")
    small = word_index._Remembered(entries=100, most_bytes=100)
    small.put("x", 1, 20)
    small.put("y", 2, 20)
    small.get("x")  # used: "y" is now the oldest
    for key in "zuvw":
        small.put(key, 3, 20)
    assert small.get("y") is None and small.get("x") == 1
    small.put("huge", 4, 60)  # over a quarter of the bytes: not kept
    assert small.get("huge") is None
