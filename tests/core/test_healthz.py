import duckdb
import pytest

from apps.search import store
from tests.conftest import RedisServer, _point_app_at


@pytest.fixture
def tiny_subset(settings, tmp_path):
    settings.SEARCH_SUBSET_DIR = tmp_path / "subset"
    files = store.table_files(table="samples")
    path = files.new_path()
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE TABLE samples AS SELECT 1 AS id, 'hello' AS text")
    files.install(path=path)
    return path


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_healthz_all_ok_with_redis_worker_and_subset(client, celery_worker, tiny_subset):
    response = client.get("/healthz?deep=1")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "redis", "worker", "duckdb", "index", "warehouse",
                                  "task_roundtrip"}
    assert all(check["ok"] for check in body["checks"].values())
    assert "samples" in body["checks"]["duckdb"]["reason"]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_healthz_reports_redis_down_and_pages_still_render(client, user, tmp_path, tiny_subset, settings):
    previous = settings.CELERY_BROKER_URL
    own = RedisServer(tmp_path)
    own.start()
    _point_app_at(own.url)
    own.stop()  # Redis goes away
    try:
        response = client.get("/healthz?details=1")  # the test client calls from 127.0.0.1
        body = response.json()
        assert response.status_code == 503
        assert body["status"] == "failing"
        assert body["checks"]["database"]["ok"] is True
        assert body["checks"]["duckdb"]["ok"] is True
        assert body["checks"]["redis"]["ok"] is False
        assert "Connection refused" in body["checks"]["redis"]["reason"] or "Error" in body["checks"]["redis"]["reason"]
        assert body["checks"]["worker"]["ok"] is False

        client.force_login(user)
        assert client.get("/").status_code == 200
        banner = client.get("/status/", HTTP_HX_REQUEST="true")
        assert banner.status_code == 200
        assert "Redis (queue)" in banner.content.decode()
        assert "Local search and model demos still work" in banner.content.decode()
    finally:
        _point_app_at(previous)


@pytest.mark.django_db
def test_healthz_without_subset_says_how_to_build_one(client, settings, tmp_path):
    settings.SEARCH_SUBSET_DIR = tmp_path / "empty"
    body = client.get("/healthz?details=1").json()
    assert body["checks"]["duckdb"]["ok"] is False
    assert "no subset installed" in body["checks"]["duckdb"]["reason"]


@pytest.mark.django_db
def test_healthz_names_a_table_whose_full_data_matches_no_file(client, settings, tmp_path, tiny_subset):
    settings.WAREHOUSE_BACKEND = "local"
    settings.SEARCH_FULL_DATA_DIR = tmp_path / "full"  # the configured table's full data: nothing there
    check = client.get("/healthz?details=1").json()["checks"]["warehouse"]
    assert check["ok"] is True  # searches still work, from the local copy
    assert "no warehouse for samples" in check["reason"] and str(tmp_path / "full") in check["reason"]
    (tmp_path / "full" / "samples").mkdir(parents=True)
    (tmp_path / "full" / "samples" / "part-0.parquet").write_bytes(b"PAR1")
    from apps.search.tables import full_data_checks_forget

    full_data_checks_forget()
    assert client.get("/healthz?details=1").json()["checks"]["warehouse"]["reason"] == (
        "every table's full data is present")


@pytest.mark.django_db
def test_pages_send_a_content_security_policy(client, user):
    client.force_login(user)
    policy = client.get("/")["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    assert "default-src 'self'" in policy


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["", "?details=1", "?deep=1", "?deep=1&details=1"])
def test_public_healthz_is_liveness_only(client, settings, tmp_path, query):
    """From elsewhere (or through the proxy) /healthz says only that the process answers: no checks, no paths."""
    settings.SEARCH_SUBSET_DIR = tmp_path / "empty"  # a failing check must not show or change the answer
    for extra in ({"REMOTE_ADDR": "203.0.113.7"}, {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.7"}):
        response = client.get("/healthz" + query, **extra)
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
        assert str(tmp_path) not in response.content.decode()


@pytest.mark.django_db
def test_healthz_details_for_staff_from_anywhere_and_for_localhost(client, staff_user, user, settings, tmp_path):
    settings.SEARCH_SUBSET_DIR = tmp_path / "empty"
    assert set(client.get("/healthz?details=1", REMOTE_ADDR="127.0.0.1").json()["checks"]) == {
        "database", "redis", "worker", "duckdb", "index", "warehouse"}
    client.force_login(user)  # signed in, not staff: still liveness only from outside
    assert client.get("/healthz?details=1", REMOTE_ADDR="203.0.113.7").json() == {"status": "ok"}
    client.force_login(staff_user)
    response = client.get("/healthz?details=1", REMOTE_ADDR="203.0.113.7")
    assert response.status_code == 503 and "checks" in response.json()
