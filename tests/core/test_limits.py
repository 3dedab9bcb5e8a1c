"""Issue 13: unbounded work. Per-item and per-call caps on the predict and link APIs, a prediction cache keyed
by a hash of the text, a KB rebuild that is not quadratic, and per-user rate limits (429 + Retry-After)."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from apps.core.ratelimit import RateLimited, rate_limit_hit, rate_limits_reset
from tests.conftest import free_port

pytestmark = pytest.mark.django_db


def test_predict_refuses_too_many_or_too_long_inputs_before_running_anything(api_client, settings, monkeypatch):
    from apps.modelhub import api as modelhub_api

    monkeypatch.setattr(modelhub_api, "model_version_get",
                        lambda **kw: pytest.fail("limits are checked before the model is looked up"))
    settings.PREDICT_MAX_TEXT_CHARS = 100
    settings.PREDICT_MAX_INPUTS = 3
    url = "/api/models/anything/predict"
    response = api_client.post(url, {"inputs": ["ok", "x" * 101]}, content_type="application/json")
    assert response.status_code == 422
    assert "Input #2 has 101 characters; the limit is 100" in response.json()["detail"]
    response = api_client.post(url, {"inputs": ["a"] * 4}, content_type="application/json")
    assert response.status_code == 400 and "At most 3 inputs per call; got 4" in response.json()["detail"]


def test_entity_create_caps_mentions_and_aliases_per_call(api_client, settings):
    settings.LINKING_MAX_MENTIONS_PER_CALL = 2
    settings.LINKING_MAX_ALIASES_PER_CALL = 2
    body = {"id": "x", "name": "X", "mentions": [{"text": "A [X].", "start": 3, "end": 4}] * 3}
    response = api_client.post("/api/kb/any/entities", body, content_type="application/json")
    assert response.status_code == 400 and "At most 2 mentions per call; got 3" in response.json()["detail"]
    body = {"id": "x", "name": "X", "aliases": ["a", "b", "c"]}
    response = api_client.post("/api/kb/any/entities", body, content_type="application/json")
    assert response.status_code == 400 and "At most 2 aliases per call" in response.json()["detail"]


def test_the_prediction_cache_is_keyed_by_a_hash_of_the_text():
    from apps.modelhub.runtime import text_digest

    long_text = "word " * 4000
    key = text_digest(long_text)
    assert isinstance(key, bytes) and len(key) == 32 and key == text_digest(long_text) != text_digest("word")


def test_predict_stores_digests_not_texts_in_the_cache(monkeypatch):
    from apps.modelhub import runtime

    class Loaded:
        name, version = "m", "1"

        def feeds(self, texts):
            return texts, [False] * len(texts)

        def run(self, feeds):
            return np.tile([0.25, 0.75], (len(feeds), 1))

    class MV:
        labels = ["a", "b"]

    cache = runtime.LRU(16)
    monkeypatch.setattr(runtime, "prediction_cache", cache)
    monkeypatch.setattr(runtime, "loaded_model_get", lambda **kw: Loaded())
    text = "a long review " * 500
    first = runtime.predict(model_version=MV(), texts=[text])
    again = runtime.predict(model_version=MV(), texts=[text])
    assert not first.predictions[0].cached and again.predictions[0].cached
    keys = list(cache._items)
    assert keys and all(text not in map(str, key) for key in keys)
    assert all(len(key[2]) == 32 for key in keys)


def test_a_kb_rebuild_scores_a_sample_of_a_popular_entitys_mentions(monkeypatch, settings):
    from apps.linking import linker

    calls = []
    real = linker.mention_similarity
    monkeypatch.setattr(linker, "mention_similarity", lambda **kw: calls.append(1) or real(**kw))
    settings.LINKING_TYPICAL_MAX_MENTIONS = 50
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(1000, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    entity_ids = np.asarray([1] * 990 + [2] * 10)
    typical = linker.typical_similarity(vectors=vectors, entity_ids=entity_ids, profiles={},
                                        params=linker.LinkerParams())
    assert len(calls) == 50 + 10  # not 990 + 10: the popular entity is sampled
    assert set(typical) == {1, 2}
    again = linker.typical_similarity(vectors=vectors, entity_ids=entity_ids, profiles={},
                                      params=linker.LinkerParams())
    assert again == typical  # a fixed sample: the same KB gives the same NIL bars


def test_the_fixed_window_counts_per_user_and_scope(user, staff_user, settings):
    settings.RATE_LIMIT_PREDICT_PER_MINUTE = 2
    now = 600.0 + 15  # 15 s into a window
    rate_limit_hit(user=user, scope="predict", now=now)
    rate_limit_hit(user=user, scope="predict", now=now)
    with pytest.raises(RateLimited) as caught:
        rate_limit_hit(user=user, scope="predict", now=now)
    assert caught.value.retry_after == 45
    rate_limit_hit(user=staff_user, scope="predict", now=now)  # someone else's window
    rate_limit_hit(user=user, scope="link", now=now)  # another scope
    rate_limit_hit(user=user, scope="predict", now=now + 45)  # the next window


@pytest.mark.parametrize("scope,method,url,body", [
    ("predict", "post", "/api/models/anything/predict", {"inputs": ["x"]}),
    ("link", "post", "/api/link", {"text": "Paris"}),
    ("search", "get", "/api/search", None),
])
def test_expensive_api_endpoints_answer_429_with_retry_after(api_client, settings, scope, method, url, body):
    setattr(settings, f"RATE_LIMIT_{scope.upper()}_PER_MINUTE", 2)
    send = (lambda: api_client.post(url, body, content_type="application/json")) if method == "post" \
        else (lambda: api_client.get(url, {"text__contains": "x"}))
    statuses = [send().status_code for _ in range(3)]
    assert all(s != 429 for s in statuses[:2]) and statuses[2] == 429
    response = send()
    assert response.status_code == 429 and 1 <= int(response["Retry-After"]) <= 60
    assert "limit is 2 per minute" in response.json()["detail"]


def test_batch_upload_answers_429_with_retry_after(client, user, settings):
    settings.RATE_LIMIT_BATCH_PER_MINUTE = 1
    client.force_login(user)
    client.post("/models/nope/batch/")
    response = client.post("/models/nope/batch/")
    assert response.status_code == 429 and int(response["Retry-After"]) >= 1


_OTHER_PROCESS = """
import os, sys, types
import django
django.setup()
from apps.core.ratelimit import RateLimited, rate_limit_hit, rate_limits_reset
from tests.conftest import free_port
try:
    rate_limit_hit(user=types.SimpleNamespace(pk=int(sys.argv[1]), is_authenticated=True), scope="search",
                   now=float(sys.argv[2]))
except RateLimited:
    print("limited")
else:
    print("allowed")
"""


def test_the_limit_holds_across_web_processes_through_redis(redis_server, settings, user):
    """gunicorn runs several processes: the counter is in Redis, so another process's requests count too."""
    settings.RATE_LIMIT_REDIS_URL = redis_server.url
    settings.RATE_LIMIT_SEARCH_PER_MINUTE = 3
    rate_limits_reset()
    now = time.time() // 60 * 60 + 5
    rate_limit_hit(user=user, scope="search", now=now)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "apps.samplescope.settings.test",
           "RATE_LIMIT_REDIS_URL": redis_server.url, "RATE_LIMIT_SEARCH_PER_MINUTE": "3"}

    def other_process() -> str:
        return subprocess.run([sys.executable, "-c", _OTHER_PROCESS, str(user.pk), str(now)], env=env,
                              capture_output=True, text=True, timeout=60, check=True).stdout.strip()

    assert other_process() == "allowed"  # 2nd
    assert other_process() == "allowed"  # 3rd
    with pytest.raises(RateLimited):  # the 4th, here: the other process's requests were counted
        rate_limit_hit(user=user, scope="search", now=now)
    assert other_process() == "limited"


def test_with_redis_down_each_process_still_counts_and_nothing_stalls(settings, user, caplog):
    settings.RATE_LIMIT_REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens
    settings.RATE_LIMIT_SEARCH_PER_MINUTE = 2
    rate_limits_reset()
    now = time.time() // 60 * 60 + 5
    started = time.perf_counter()
    rate_limit_hit(user=user, scope="search", now=now)
    rate_limit_hit(user=user, scope="search", now=now)
    with pytest.raises(RateLimited):
        rate_limit_hit(user=user, scope="search", now=now)
    assert time.perf_counter() - started < 1.0
    assert "Redis is unreachable" in caplog.text
