"""Coverage rows: what a random sample misses, added to the subset when it is built from the full data.

A 5% random sample holds ~5% of a word's rows: a word in 30 rows of the full data is in one or two of the
subset's, so a search for it needs the warehouse (~$0.05, 10+ s) for rows that were one refresh away. The
same holds for thin facet cells (`label = travel AND lang = it AND domain = dagblad.nl`: 80 rows, 4 in the
sample). So the build adds, within a budget, the rows of:

1. every **cell** of the low-cardinality columns (each combination of their values) up to CELL_ROWS rows, in
   the order of the sample's own hash (for a hash sample, a cell's sampled rows come first: a large cell needs
   no more rows);
2. every **rare word**: each word of a text column held by at most WORD_ROWS rows of the full data (split the
   way the index splits; digits-only words too where the vocabulary keeps them: a code's number, not an id), all
   its rows, rarest words first.

The budget is `SUBSET_COVERAGE_SHARE` of the full data's rows; what does not fit is left to the sample and the
warehouse. With the full data's vocabulary (built by the same refresh), a search whose subset rows are as many as
the vocabulary says the full data holds (`VocabularyAnswer.all_here`) is complete without the warehouse. Which
rows are added never decides an answer: the vocabulary's counts do. The subset is then no longer a uniform
sample: counts of subset rows are not scaled to the full data anywhere (the vocabulary's estimates are).

One statement per engine: `coverage_keys_statement` (DuckDB over the full Parquet on the local backend, Trino
on Athena, UNLOADed like the sample).
"""
from __future__ import annotations

from .sql import quote_identifier, quote_string
from .vocabulary import DIGIT_WORD_LEN, DIGIT_WORDS_MAX
from .word_index import SEPARATOR

CELL_ROWS = 50  # each cell keeps at least this many rows (a facet search's page; all of a smaller cell)
WORD_ROWS = 30  # a word in at most this many full-data rows is held whole (the default of SUBSET_COVERAGE_WORD_ROWS)


def coverage_budget(*, sample_rows: int, fraction: float, share: float) -> int:
    """Coverage rows allowed: `share` of the full data's rows (the sample's rows / its fraction)."""
    if share <= 0 or fraction <= 0:
        return 0
    return int(round(sample_rows / fraction * share))


def coverage_keys_statement(*, relation: str, key: str, word_columns: list[str], cell_columns: list[str],
                            budget: int, order: str, dialect: str, word_rows: int = WORD_ROWS) -> str:
    """SQL: the keys of at most `budget` coverage rows of `relation`, cells first (every cell's first row, then every
    cell's second, ...), then by their rarest word.

    `order`: an SQL expression of the row, the order within a cell (the sample's hash, so a hash sample's rows
    come first). `dialect`: "duckdb" or "trino" (word splitting and the digits test differ in spelling only)."""
    k = quote_identifier(key)
    separator = quote_string(SEPARATOR)
    parts = []
    for number, column in enumerate(word_columns):
        col = quote_identifier(column)
        if dialect == "duckdb":
            split = f"unnest(list_distinct(string_split_regex(lower({col}), {separator})))"
            parts.append(f"SELECT {k} AS k, {number} AS c, w FROM (SELECT {k}, {split} AS w FROM {relation})")
        else:
            parts.append(f"SELECT {k} AS k, {number} AS c, w FROM {relation} "
                         f"CROSS JOIN UNNEST(array_distinct(regexp_split(lower({col}), {separator}))) AS t (w)")
    digits = "regexp_full_match(w, '[0-9]+')" if dialect == "duckdb" else "regexp_like(w, '^[0-9]+$')"
    chosen = []
    ctes = []
    if parts:
        ctes.append("tokens AS (" + " UNION ALL ".join(parts) + ")")
        # A column's digits-only words are rare words only where the vocabulary keeps them (digit_words_kept: none
        # longer than DIGIT_WORD_LEN, at most DIGIT_WORDS_MAX): a code's number, not ids in URLs.
        ctes.append(f"counted AS (SELECT c, w, count(*) AS n, {digits} AS d, "
                    f"max(CASE WHEN {digits} THEN length(w) ELSE 0 END) OVER (PARTITION BY c) AS longest, "
                    f"sum(CASE WHEN {digits} THEN 1 ELSE 0 END) OVER (PARTITION BY c) AS numbers "
                    f"FROM tokens WHERE w <> '' GROUP BY c, w)")
        ctes.append(f"rare AS (SELECT c, w, n FROM counted WHERE n <= {word_rows} AND (NOT d OR "
                    f"(longest <= {DIGIT_WORD_LEN} AND numbers <= {DIGIT_WORDS_MAX})))")
        chosen.append("SELECT tokens.k, rare.n AS rarity, CAST(NULL AS BIGINT) AS r FROM tokens JOIN rare ON tokens.c = rare.c AND tokens.w = rare.w")
    if cell_columns:
        cells = ", ".join(quote_identifier(c) for c in cell_columns)
        ctes.append(f"cells AS (SELECT {k} AS k, row_number() OVER (PARTITION BY {cells} ORDER BY {order}, {k}) AS r "
                    f"FROM {relation})")
        chosen.append(f"SELECT k, 0 AS rarity, r FROM cells WHERE r <= {CELL_ROWS}")
    if not chosen or budget <= 0:
        return f"SELECT {k} AS k FROM {relation} WHERE false"
    return (f"WITH {', '.join(ctes)}, chosen AS ({' UNION ALL '.join(chosen)}) "
            f"SELECT k FROM chosen GROUP BY k ORDER BY min(rarity), min(r), k LIMIT {int(budget)}")


def coverage_keys(*, spec, relation: str, sample_rows: int, fraction: float, order: str, dialect: str) -> str | None:
    """coverage_keys_statement for `spec`'s table over `relation`, within the budget SUBSET_COVERAGE_SHARE gives a
    sample of `sample_rows` rows drawn at `fraction`; None when there is nothing to add (no budget, no columns)."""
    from django.conf import settings

    budget = coverage_budget(sample_rows=sample_rows, fraction=fraction, share=settings.SUBSET_COVERAGE_SHARE)
    words, cells = coverage_columns(spec=spec)
    if budget <= 0 or not (words or cells):
        return None
    return coverage_keys_statement(relation=relation, key=spec.key, word_columns=words, cell_columns=cells,
                                   budget=budget, order=order, dialect=dialect,
                                   word_rows=settings.SUBSET_COVERAGE_WORD_ROWS)


def coverage_insert(*, conn, table: str, key: str, relation: str, keys: str, columns: str) -> int:
    """Add to `table` (being built: it holds the sample) the rows of `relation` whose key `keys` selects and the
    table lacks, as `columns` (the build's SELECT list); returns how many were added."""
    t, k = quote_identifier(table), quote_identifier(key)
    before = conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
    conn.execute(f"INSERT INTO {t} SELECT {columns} FROM {relation} "
                 f"WHERE {k} IN ({keys}) AND {k} NOT IN (SELECT {k} FROM {t} WHERE {k} IS NOT NULL)")
    return conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] - before


def coverage_columns(*, spec) -> tuple[list[str], list[str]]:
    """(word columns, cell columns) of a table: its facets that an eq / in filter may name are the cells'
    columns; its other vocabulary columns (text a word operator searches) give the rare words."""
    from .vocabulary import value_columns, vocabulary_columns

    words = vocabulary_columns(spec=spec)
    cells = [c for c in value_columns(spec=spec, columns=words) if c in spec.facets]
    return [c for c in words if c not in cells], cells
