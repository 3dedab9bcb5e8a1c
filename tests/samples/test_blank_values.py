"""Issue 25: a filter value of only whitespace is no value, on the page and in the API alike, as an empty one is
(apps/search/query.py value_is_blank): the page leaves the filter out (as it does the blank rows of its form),
the API answers 422 "Enter a value." for it exactly as for an empty value. Before, the page dropped "  " while
the API searched for two spaces."""
from __future__ import annotations

import re

import pytest
from django.http import QueryDict

from apps.search.errors import SearchValidationError
from apps.search.query import Filter, query_from_params, query_validate
from apps.search.tables import table_spec_get

pytestmark = pytest.mark.django_db

BLANKS = ["", "  ", "\t", " \n "]


@pytest.fixture
def logged_in(client, user, demo_subset):
    client.force_login(user)
    return client


def _summary(html: str) -> str:
    return re.search(r"<strong>(\d+ rows from the subset[^<]*)</strong>", html).group(1)


@pytest.mark.parametrize("blank", BLANKS)
def test_the_api_refuses_a_blank_value_as_it_refuses_an_empty_one(client, api_token, blank, demo_subset):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {api_token}"}
    response = client.get("/api/search", {"text__contains": "match", "url__contains": blank}, **auth)
    assert response.status_code == 422, response.content
    assert response.json()["errors"] == {"url__contains": ["Enter a value."]}


@pytest.mark.parametrize("blank", BLANKS)
def test_the_page_leaves_a_blank_value_out_as_it_does_an_empty_one(logged_in, blank, demo_subset):
    expected = demo_subset.count("contains(text, 'match')")
    without = logged_in.get("/samples/", {"text__contains": "match", "limit": "1000"}).content.decode()
    response = logged_in.get("/samples/", {"text__contains": "match", "url__contains": blank, "limit": "1000"})
    assert response.status_code == 200
    html = response.content.decode()
    assert _summary(html) == _summary(without) and _summary(html).startswith(f"{expected} rows")
    assert html.count('<tr data-source="subset">') == expected


def test_the_no_js_form_drops_a_whitespace_value_from_the_canonical_url(logged_in):
    response = logged_in.get("/samples/", {"table": "samples", "col": ["text", "url"], "op": ["contains", "contains"],
                                           "val": ["match", "   "]})
    assert response.status_code == 302
    assert "url__contains" not in response["Location"] and "text__contains=match" in response["Location"]


def test_one_rule_in_the_query_layer_for_both(demo_subset):
    params = QueryDict(mutable=True)
    for name, value in [("text__contains", " \t "), ("url__contains", " sports "), ("n__isnull", "")]:
        params.appendlist(name, value)
    page = query_from_params(params=params, default_table="samples", default_limit=10, max_limit=100,
                             skip_blank=True, strict=False)
    assert page.filters == (Filter("url", "contains", " sports "), Filter("n", "isnull", ""))  # text keeps its spaces
    api = query_from_params(params=params, default_table="samples", default_limit=10, max_limit=100)
    assert Filter("text", "contains", " \t ") in api.filters
    with pytest.raises(SearchValidationError) as info:
        query_validate(query=api, spec=table_spec_get(name="samples"))
    assert info.value.errors["text__contains"] == ["Enter a value."]
