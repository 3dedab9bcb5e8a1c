"""The learned-rows store: fed by succeeded fallbacks, unioned into local search, bounded by LRU eviction."""
from __future__ import annotations

import datetime as dt

import pytest

from tests.subsets.conftest import subset_count


def _query(*filters, limit=10):
    from apps.search.query import Filter, SearchQuery

    return SearchQuery(table="samples", filters=tuple(Filter(*f) for f in filters), limit=limit)


def _spec():
    from apps.search.tables import table_spec_get

    return table_spec_get(name="samples")


def _subset_rows(query) -> list[dict]:
    from apps.search.query import compile_search
    from apps.search.selectors import subset_query_run

    outcome = subset_query_run(compiled=compile_search(query=query, spec=_spec()), timeout_ms=5000)
    return [dict(zip(outcome.columns, row)) for row in outcome.rows]


def _warehouse_rows(query) -> list[dict]:
    from apps.warehouse.backends.base import NullControl
    from apps.warehouse.backends.local import LocalBackend

    result = LocalBackend().run(query=query, spec=_spec(), request_token="t", control=NullControl())
    assert result.state == "succeeded"
    return result.rows


def _ids_missing_from_subset(count: int, start: int = 0) -> list[int]:
    from apps.search.store import subset_connection

    cursor = subset_connection().cursor()
    present = {r[0] for r in cursor.execute("SELECT id FROM samples").fetchall()}
    cursor.close()
    return [i for i in range(start, start + 10 * count) if i not in present][:count]


@pytest.mark.django_db
def test_a_fallback_answer_with_fewer_rows_than_asked_is_complete_for_the_same_and_narrower_queries(dataset):
    from apps.warehouse.learned import learned_answer_add, learned_rows_for_search

    word = "Okafor"  # a surname: in a few rows of the full data, few or none in the subset
    query = _query(("text", "contains", word), limit=200)
    local = _subset_rows(query)
    full = _warehouse_rows(query)
    assert len(local) < len(full) < 200
    before = learned_rows_for_search(query=query, spec=_spec(), local_rows=local)
    assert before.rows == [] and not before.complete

    stats = learned_answer_add(spec=_spec(), query=query, rows=full, fallback_id=None)
    assert stats["complete"] and stats["rows_in_table"] == len(full)

    lookup = learned_rows_for_search(query=query, spec=_spec(), local_rows=local)
    assert lookup.complete
    local_ids = {r["id"] for r in local}
    assert {r["id"] for r in lookup.rows} == {r["id"] for r in full} - local_ids, "key-dedup against the subset"
    assert all(isinstance(r["crawled_at"], dt.datetime) for r in lookup.rows), "typed like the subset's rows"

    narrower = _query(("text", "contains", word), ("lang", "eq", "en"), limit=50)
    assert learned_rows_for_search(query=narrower, spec=_spec(), local_rows=_subset_rows(narrower)).complete
    broader = _query(("text", "contains", word[:4]), limit=200)
    assert not learned_rows_for_search(query=broader, spec=_spec(), local_rows=[]).complete
    # An absent word: the empty answer is complete too, so it is not asked again.
    absent = _query(("text", "contains", "xqnotawordzv"))
    learned_answer_add(spec=_spec(), query=absent, rows=[], fallback_id=None)
    assert learned_rows_for_search(query=absent, spec=_spec(), local_rows=[]).complete


@pytest.mark.django_db
def test_eviction_drops_the_least_recently_used_answers_first(dataset, settings):
    from apps.search.models import SearchLog
    from apps.subsets.selectors import learned_status_get
    from apps.warehouse.learned import learned_answer_add, learned_rows_for_search

    settings.SUBSET_LEARNED_MAX_ROWS = 12
    ids = _ids_missing_from_subset(18)
    queries = [_query(("id", "in", ",".join(map(str, ids[i:i + 6]))), limit=6) for i in (0, 6, 12)]
    first, second, third = queries
    learned_answer_add(spec=_spec(), query=first, rows=_warehouse_rows(first))
    learned_answer_add(spec=_spec(), query=second, rows=_warehouse_rows(second))
    # Someone runs the first search again: it becomes the most recently used.
    SearchLog.objects.create(table="samples", query=first.to_dict(), fingerprint=first.fingerprint(), limit=6)
    stats = learned_answer_add(spec=_spec(), query=third, rows=_warehouse_rows(third))

    assert stats["evicted_answers"] == 1
    status = learned_status_get()
    assert status.rows == 12 and status.answers == 2 and status.rows <= settings.SUBSET_LEARNED_MAX_ROWS

    def learned_ids(query):
        return {r["id"] for r in learned_rows_for_search(query=query, spec=_spec(), local_rows=[]).rows}

    assert learned_ids(first) == set(ids[0:6]) and learned_ids(third) == set(ids[12:18])
    assert learned_ids(second) == set(), "the least recently used answer went"


@pytest.mark.django_db
def test_a_newer_answer_for_the_same_filters_replaces_the_older_one(dataset):
    from apps.subsets.selectors import learned_status_get
    from apps.warehouse.learned import learned_answer_add

    ids = _ids_missing_from_subset(8)
    small = _query(("id", "in", ",".join(map(str, ids))), limit=3)
    big = _query(("id", "in", ",".join(map(str, ids))), limit=8)
    learned_answer_add(spec=_spec(), query=small, rows=_warehouse_rows(small))
    learned_answer_add(spec=_spec(), query=big, rows=_warehouse_rows(big))
    status = learned_status_get()
    assert status.answers == 1 and status.rows == 8


@pytest.mark.django_db
def test_a_succeeded_fallback_feeds_the_learned_store(dataset, user, settings):
    from apps.subsets.selectors import learned_status_get
    from apps.warehouse.learned import learned_rows_for_search
    from apps.warehouse.services import fallback_execute, fallback_request

    ids = _ids_missing_from_subset(5, start=1000)
    query = _query(("id", "in", ",".join(map(str, ids))), limit=5)
    handle = fallback_request(user=user, query=query, spec=_spec())
    done = fallback_execute(fallback_id=handle.id)
    assert done.state == "succeeded" and done.row_count == 5
    assert {r["id"] for r in learned_rows_for_search(query=query, spec=_spec(), local_rows=[]).rows} == set(ids)
    assert subset_count() > 0

    settings.SUBSET_LEARNING_ENABLED = False  # off: nothing learned, nothing unioned
    other = _query(("id", "in", ",".join(map(str, _ids_missing_from_subset(3, start=3000)))), limit=3)
    fallback_execute(fallback_id=fallback_request(user=user, query=other, spec=_spec()).id)
    settings.SUBSET_LEARNING_ENABLED = True
    assert learned_status_get().answers == 1


@pytest.mark.django_db
def test_a_repeated_search_is_answered_locally_after_its_fallback(dataset, user, client):
    from apps.samples.pipeline import search_answer
    from apps.search.models import SearchLog
    from apps.warehouse.models import Fallback
    from apps.warehouse.services import fallback_execute

    word = "Lindqvist"
    query = _query(("text", "contains", word), limit=5)
    first = search_answer(user=user, query=query)
    assert first.local_count < 5 and first.fallback is not None
    done = fallback_execute(fallback_id=first.fallback.id)  # what the Celery worker does
    assert done.state == "succeeded" and done.row_count == 5

    again = search_answer(user=user, query=query)
    assert again.local_count == 5 and again.fallback is None
    assert Fallback.objects.count() == 1
    assert SearchLog.objects.get(pk=again.log_id).needed_fallback is False
    sources = [r.source.value for r in again.rows]
    assert sources == ["subset"] * first.local_count + ["learned"] * (5 - first.local_count)
    assert again.counts == {"subset": first.local_count, "learned": 5 - first.local_count, "warehouse": 0}

    # The page shows which rows came from where.
    client.force_login(user)
    html = client.get("/samples/", {"text__contains": word, "limit": 5}).content.decode()
    assert html.count('<tr data-source="learned">') == 5 - first.local_count
    assert f"{5 - first.local_count} learned from earlier fallbacks" in html


@pytest.mark.django_db
def test_a_search_with_no_match_anywhere_is_sent_to_the_warehouse_only_once(dataset, user, settings):
    settings.SEARCH_VOCABULARY_ENABLED = False  # learned answers alone (the vocabulary would prove it absent first)
    from apps.samples.pipeline import search_answer
    from apps.warehouse.models import Fallback
    from apps.warehouse.services import fallback_execute

    query = _query(("text", "contains", "xqnowherezv"), limit=10)
    first = search_answer(user=user, query=query)
    fallback_execute(fallback_id=first.fallback.id)
    narrower = search_answer(user=user, query=_query(("text", "contains", "xqnowherezv"), ("lang", "eq", "de"), limit=3))
    again = search_answer(user=user, query=query)
    assert again.fallback is None and narrower.fallback is None and again.rows == []
    assert Fallback.objects.count() == 1


@pytest.mark.django_db
def test_a_complete_answer_older_than_the_max_age_no_longer_counts_as_complete(dataset, settings):
    import time

    from apps.warehouse.learned import learned_answer_add, learned_rows_for_search

    settings.SUBSET_LEARNED_COMPLETE_MAX_AGE_SECONDS = 2
    query = _query(("text", "contains", "Okafor"), limit=200)
    local, full = _subset_rows(query), _warehouse_rows(query)
    assert learned_answer_add(spec=_spec(), query=query, rows=full, fallback_id=None)["complete"]
    fresh = learned_rows_for_search(query=query, spec=_spec(), local_rows=local)
    assert fresh.complete
    time.sleep(2.2)
    stale = learned_rows_for_search(query=query, spec=_spec(), local_rows=local)
    assert not stale.complete, "a stale complete answer would keep new warehouse rows out forever"
    assert {r["id"] for r in stale.rows} == {r["id"] for r in fresh.rows}  # its rows are still served
    narrower = _query(("text", "contains", "Okafor"), ("lang", "eq", "en"), limit=50)
    assert not learned_rows_for_search(query=narrower, spec=_spec(), local_rows=_subset_rows(narrower)).complete
    settings.SUBSET_LEARNED_COMPLETE_MAX_AGE_SECONDS = 0  # no limit
    assert learned_rows_for_search(query=query, spec=_spec(), local_rows=local).complete
