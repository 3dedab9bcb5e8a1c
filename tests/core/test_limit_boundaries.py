"""Rate limits at their edges: a limit of N lets exactly N requests through in a minute, and 0 turns the scope
off (every request goes through) rather than refusing everything."""
from __future__ import annotations

import pytest

from apps.core.ratelimit import RateLimited, rate_limit_hit

pytestmark = pytest.mark.django_db


def test_a_limit_of_one_lets_one_request_through_per_minute(user, settings):
    settings.RATE_LIMIT_SEARCH_PER_MINUTE = 1
    now = 1200.0 + 5
    rate_limit_hit(user=user, scope="search", now=now)
    with pytest.raises(RateLimited):
        rate_limit_hit(user=user, scope="search", now=now)


def test_a_limit_of_zero_turns_the_scope_off(user, settings):
    settings.RATE_LIMIT_SEARCH_PER_MINUTE = 0
    for _ in range(5):
        rate_limit_hit(user=user, scope="search", now=1800.0 + 5)  # never RateLimited
