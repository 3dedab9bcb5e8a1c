"""The full data's vocabulary in the search: proofs answer at once without a fallback (and a confirmed
search still goes to the warehouse), rare words that exist still get their fallback, the page and the
API show proofs, suggestions and estimates, a refresh rebuilds the vocabulary, a reindex keeps it, and a
damaged vocabulary means fallbacks as before."""
from __future__ import annotations

import io

import pytest

from tests.subsets.conftest import built_dataset, dataset  # noqa: F401

ABSENT = "xqnowherezv"


def _query(*filters, limit=10):
    from apps.search.query import Filter, SearchQuery

    return SearchQuery(table="samples", filters=tuple(Filter(*f) for f in filters), limit=limit)


def _current(dataset):
    name = (dataset.subset_dir / "tables" / "samples" / "CURRENT").read_text().strip()
    return dataset.subset_dir / "tables" / "samples" / name


def _rare_full_word() -> str:
    """A word in one row of the full data (so in at most one row of the subset: short of the limit)."""
    from apps.search.vocabulary import table_vocabulary

    words = table_vocabulary(table="samples").words["text"]
    for index in range(len(words)):
        word = words.word(index)
        if words.count(index) == 1 and word.isascii() and word.isalpha() and len(word) > 4:
            return word
    raise AssertionError("no rare word")


@pytest.mark.django_db
def test_an_absent_word_is_complete_at_once_and_confirm_still_asks_the_warehouse(dataset, user):
    from apps.samples.pipeline import search_answer
    from apps.search.models import SearchLog
    from apps.warehouse.models import Fallback

    answer = search_answer(user=user, query=_query(("text", "contains", ABSENT)))
    assert answer.complete and answer.fallback is None and answer.rows == []
    assert answer.vocabulary.proof and answer.vocabulary.upper_bound == 0
    assert answer.notice.startswith("The full dataset has none") and answer.vocabulary.built_at in answer.notice
    assert "A warehouse query would scan about" in answer.notice and "($0.0" in answer.notice  # before paying
    assert "the full dataset has no more" in answer.summary()
    assert not Fallback.objects.exists() and SearchLog.objects.get().needed_fallback is False
    forced = search_answer(user=user, query=_query(("text", "contains", ABSENT)), confirmed=True)
    assert forced.fallback is not None and not forced.complete and Fallback.objects.count() == 1


@pytest.mark.django_db
def test_rows_learned_since_the_vocabulary_was_built_win_over_its_proof(dataset, user, settings, tmp_path):
    """The vocabulary knows the full data as it was at its build; a fallback since may have brought rows of a
    word it never saw. Those learned rows are shown and the answer is not "the full dataset has none"."""
    from apps.samples.pipeline import RowSource, search_answer
    from apps.search.tables import table_spec_get
    from apps.warehouse.learned import learned_answer_add

    settings.SUBSET_LEARNED_DIR = tmp_path / "learned"
    spec = table_spec_get(name="samples")
    template = search_answer(user=user, query=_query(("text", "contains", "the"), limit=1)).rows[0].values
    rows = [{**template, "id": 10**9 + i, "text": f"new {ABSENT} row {i}"} for i in range(2)]
    learned_answer_add(spec=spec, query=_query(("text", "contains", ABSENT), limit=50), rows=rows)
    answer = search_answer(user=user, query=_query(("text", "contains", ABSENT)))
    assert [row.source for row in answer.rows] == [RowSource.LEARNED, RowSource.LEARNED]
    assert answer.vocabulary.proof  # the vocabulary alone would have proved it empty
    assert not answer.notice.startswith("The full dataset has none")


@pytest.mark.django_db
def test_a_rare_word_the_full_data_holds_still_gets_its_fallback(dataset, user):
    from apps.samples.pipeline import search_answer

    word = _rare_full_word()
    answer = search_answer(user=user, query=_query(("text", "contains", word)))
    assert not answer.vocabulary.proof and answer.vocabulary.upper_bound >= 1
    assert answer.fallback is not None and not answer.complete


@pytest.mark.django_db
def test_the_api_and_the_page_show_proofs_suggestions_and_estimates(dataset, user, client, api_client):
    body = api_client.get("/api/search", {"label__eq": "sprots"}).json()
    assert body["complete"] is True and body["fallback"] is None
    assert body["full_dataset"]["proof"] and body["full_dataset"]["upper_bound"] == 0
    assert body["suggestions"][0]["suggestion"] == "sports"
    assert body["suggestions"][0]["query"] == "table=samples&label__eq=sports&limit=10"
    known = api_client.get("/api/search", {"label__eq": "sports", "lang__eq": "en"}).json()
    assert known["full_dataset"]["proof"] is None and known["suggestions"] == []
    full = known["full_dataset"]
    assert 0 < full["estimate"] <= full["upper_bound"] < full["total_rows"]
    client.defaults.pop("HTTP_AUTHORIZATION", None)
    client.force_login(user)
    page = client.get("/samples/", {"text__contains": f"the {ABSENT}"}).content.decode()
    assert "The full dataset has none" in page and "data-force-warehouse" in page and "confirm=1" in page
    typo = client.get("/samples/", {"label__eq": "sprots"}).content.decode()
    assert 'data-suggestion="sports"' in typo and "label__eq=sports" in typo
    plain = client.get("/samples/", {"text__contains": "the", "limit": "5"}).content.decode()
    assert "data-estimate" in plain and "data-force-warehouse" not in plain


@pytest.mark.django_db
def test_a_refresh_rebuilds_the_vocabulary_and_a_reindex_keeps_it(dataset):
    from apps.search.services import subset_reindex
    from apps.search.vocabulary import table_vocabulary, vocabulary_dir_for
    from apps.subsets.services import subset_refresh

    before = _current(dataset)
    assert vocabulary_dir_for(before).is_dir()
    run = subset_refresh(table="samples", stdout=io.StringIO())
    assert run.state == "succeeded"
    after = _current(dataset)
    assert after != before and vocabulary_dir_for(after).is_dir()
    vocabulary = table_vocabulary(table="samples")
    assert vocabulary.path == after and vocabulary.rows == 20_000
    subset_reindex(table="samples")
    again = _current(dataset)
    assert again != after and table_vocabulary(table="samples").built_at == vocabulary.built_at
    assert not vocabulary_dir_for(before).exists()  # deleted with its file (two kept: after, again)


@pytest.mark.django_db
def test_a_failed_vocabulary_build_installs_nothing(dataset, monkeypatch):
    from apps.search import vocabulary as vocabulary_module
    from apps.subsets.services import subset_refresh

    before = _current(dataset)

    def broken(**kwargs):
        raise RuntimeError("vocabulary build failed")

    monkeypatch.setattr(vocabulary_module, "vocabulary_build_local", broken)
    run = subset_refresh(table="samples", stdout=io.StringIO())
    assert run.state == "failed" and "vocabulary build failed" in run.error
    assert _current(dataset) == before and vocabulary_module.vocabulary_dir_for(before).is_dir()
    assert [p.name for p in before.parent.glob("*.vocab")] == [before.name + ".vocab"]  # the new one went


@pytest.mark.django_db
def test_a_damaged_vocabulary_means_a_fallback_as_before(dataset, user):
    from apps.samples.pipeline import search_answer
    from apps.search.vocabulary import vocabulary_dir_for, vocabulary_forget

    from apps.search.vocabulary import table_vocabulary

    number = table_vocabulary(table="samples").meta["columns"]["text"]["number"]
    words = vocabulary_dir_for(_current(dataset)) / f"samples.c{number}.words.bin"
    raw = bytearray(words.read_bytes())
    raw[len(raw) // 3] ^= 0x20
    words.write_bytes(bytes(raw))
    vocabulary_forget()
    answer = search_answer(user=user, query=_query(("text", "contains", ABSENT)))
    assert answer.vocabulary is None and answer.fallback is not None and not answer.complete


@pytest.mark.django_db
def test_setup_demo_gives_demo_data_built_without_a_vocabulary_one(dataset):
    import shutil

    from apps.search.demo import build_demo_data
    from apps.search.vocabulary import table_vocabulary, vocabulary_dir_for, vocabulary_forget

    shutil.rmtree(vocabulary_dir_for(_current(dataset)))  # as an older version built it
    vocabulary_forget()
    assert table_vocabulary(table="samples") is None
    out = io.StringIO()
    build_demo_data(stdout=out)
    assert "building the full data's vocabulary" in out.getvalue()
    assert table_vocabulary(table="samples").rows == 20_000
    again = io.StringIO()
    build_demo_data(stdout=again)
    assert "vocabulary" not in again.getvalue()  # present: left alone
