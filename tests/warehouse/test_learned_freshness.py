"""The learned store's bounds are inclusive: it keeps exactly SUBSET_LEARNED_MAX_ANSWERS answers and exactly
SUBSET_LEARNED_MAX_ROWS rows, and evicts only past them."""
from __future__ import annotations

import pytest

from .test_learned import _ids_missing_from_subset, _query, _spec, _warehouse_rows


@pytest.mark.django_db
def test_the_store_keeps_exactly_its_maximum_of_answers_and_rows(dataset, settings):
    from apps.subsets.selectors import learned_status_get
    from apps.warehouse.learned import learned_answer_add

    settings.SUBSET_LEARNED_MAX_ROWS = 12
    settings.SUBSET_LEARNED_MAX_ANSWERS = 2
    ids = _ids_missing_from_subset(18)
    first, second, third = (_query(("id", "in", ",".join(map(str, ids[i:i + 6]))), limit=6) for i in (0, 6, 12))
    learned_answer_add(spec=_spec(), query=first, rows=_warehouse_rows(first))
    stats = learned_answer_add(spec=_spec(), query=second, rows=_warehouse_rows(second))
    assert stats["evicted_answers"] == 0  # 2 answers, 12 rows: exactly the bounds
    status = learned_status_get()
    assert (status.answers, status.rows) == (2, 12)

    settings.SUBSET_LEARNED_MAX_ROWS = 1000
    stats = learned_answer_add(spec=_spec(), query=third, rows=_warehouse_rows(third))
    assert stats["evicted_answers"] == 1 and learned_status_get().answers == 2  # one answer past: one goes


@pytest.mark.django_db
def test_an_answer_that_filled_its_limit_is_not_complete(dataset):
    """A fallback that returned exactly `limit` rows may have stopped short of more: neither the same search nor a
    narrower one may then be called complete (no warehouse query for rows it never saw)."""
    from apps.warehouse.learned import learned_answer_add, learned_rows_for_search

    ids = _ids_missing_from_subset(7)
    query = _query(("id", "in", ",".join(map(str, ids))), limit=6)  # 7 match, 6 come back
    rows = _warehouse_rows(query)
    assert len(rows) == 6
    learned_answer_add(spec=_spec(), query=query, rows=rows)
    assert not learned_rows_for_search(query=query, spec=_spec(), local_rows=[]).complete
    narrower = _query(("id", "in", ",".join(map(str, ids))), ("lang", "eq", "en"), limit=6)
    assert not learned_rows_for_search(query=narrower, spec=_spec(), local_rows=[]).complete
