"""What an answer claims: "complete" (the full dataset has no more) only when it is known, never for a warehouse
result that filled the limit, and "the full dataset has no more" never under a page cut at the limit."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from apps.samples.pipeline import RowSource, search_answer
from apps.search.query import SearchQuery
from apps.search.tables import table_spec_get
from apps.warehouse.learned import LearnedSnapshot, learned_answer_add
from apps.warehouse.services import fallback_execute

from .test_pipeline import _full_rows

pytestmark = pytest.mark.django_db


def test_a_cached_warehouse_result_that_filled_the_limit_is_not_complete(warehouse_data, user):
    query, local, remote = warehouse_data.id_query(in_subset=2, missing=3, offset=400)  # limit 5: all 5 exist
    first = search_answer(user=user, query=query)
    done = fallback_execute(fallback_id=first.fallback.id)
    assert done.state == "succeeded" and done.row_count == query.limit  # it filled the limit: more may exist

    again = search_answer(user=user, query=query)  # merged from the cache at once
    assert again.fallback.from_cache and {r.values["id"] for r in again.rows} == local | remote
    assert not again.complete
    assert "no more" not in again.summary()


def test_a_page_cut_at_the_limit_never_says_the_full_dataset_has_no_more(warehouse_data, user, settings, tmp_path):
    settings.SUBSET_LEARNING_ENABLED = True
    settings.SUBSET_LEARNED_DIR = tmp_path / "learned"
    spec = table_spec_get(name="samples")
    wide, local, remote = warehouse_data.id_query(in_subset=1, missing=3, limit=10, offset=410)
    learned_answer_add(spec=spec, query=wide, rows=_full_rows(spec, local | remote))  # 4 rows of 10: complete
    # The same filters with a limit of 2: one row from the subset and one learned fill the page, two more exist.
    answer = search_answer(user=user, query=SearchQuery(wide.table, wide.filters, 2))
    assert len(answer.rows) == 2 and answer.counts[RowSource.LEARNED] == 1
    assert not answer.complete  # the API's `complete`: two more rows match
    assert "no more" not in answer.summary()
    # With room for every match, the complete learned answer does complete the page.
    roomy = search_answer(user=user, query=SearchQuery(wide.table, wide.filters, 5))
    assert len(roomy.rows) == 4 and roomy.complete and roomy.fallback is None
    assert roomy.summary().endswith("the full dataset has no more")


def test_with_many_filters_only_a_broader_answer_makes_a_query_complete():
    """Past 10 filters, is_complete compares sets instead of probing every subset of the filters: an answer for
    FEWER of the filters (a broader query) covers this one; an answer for MORE (a narrower one) does not."""
    filters = [("text", "contains", f"w{i}", "") for i in range(12)]
    key = frozenset((c, o, v) for c, o, v, _ in filters)
    learned = dt.datetime(2026, 1, 1)

    def snapshot(answer: frozenset) -> LearnedSnapshot:
        return LearnedSnapshot(path=Path("unused"), conn=None, tables=frozenset({"samples"}),
                               complete={"samples": {answer: learned}})

    eleven = frozenset(list(key)[:11])
    assert snapshot(eleven).is_complete(table="samples", wanted=key)  # the answer was broader: complete
    assert not snapshot(key).is_complete(table="samples", wanted=eleven)  # the answer was narrower
