"""Modelhub fixtures: small demo models built once per session into the session's temporary
DATA_DIR (MODEL_STORE_URI defaults to DATA_DIR/model-store, which the Celery worker shares)."""
from __future__ import annotations

import io
import json

import boto3
import pytest
from django.conf import settings
from moto import mock_aws

TFIDF_ROWS = 3000
MINILM_ROWS = 300


@pytest.fixture(scope="session")
def demo_data_dir(tmp_path_factory):
    import pyarrow.parquet as pq

    from apps.search.demo_data import demo_table

    directory = tmp_path_factory.mktemp("modelhub-demo-data")
    pq.write_table(demo_table(rows=TFIDF_ROWS, seed=11), directory / "part-0.parquet")
    return directory


@pytest.fixture(scope="session")
def demo_build(demo_data_dir):
    """Trains and publishes the demo models once (no registry rows: tests' databases come and go)."""
    from apps.modelhub.demo import demo_models_publish

    return demo_models_publish(stdout=io.StringIO(), store_uri=str(settings.MODEL_STORE_URI), tfidf_rows=TFIDF_ROWS,
                               minilm_rows=MINILM_ROWS, seed=5, data_dir=demo_data_dir)


@pytest.fixture
def demo_models(demo_build, db):
    """Registry rows for the published demo versions, created straight from their cards (fast);
    registration itself is tested in test_registry.py."""
    from apps.modelhub.models import ModelAlias, ModelVersion
    from apps.modelhub.store import store_read_bytes, uri_join

    versions = {}
    for key, (uri, aliases) in demo_build.published.items():
        card = json.loads(store_read_bytes(uri=uri_join(uri, "card.json")))
        mv, _ = ModelVersion.objects.get_or_create(
            name=card["name"], version=card["version"],
            defaults={"kind": card["kind"], "uri": uri, "checksums": card["files"], "card": card},
        )
        for alias in aliases:
            ModelAlias.objects.update_or_create(name=mv.name, alias=alias, defaults={"model_version": mv})
        versions[key] = mv
    return versions


@pytest.fixture
def fresh_caches():
    from apps.modelhub.runtime import prediction_cache, session_cache

    session_cache.clear()
    prediction_cache.clear()
    yield
    session_cache.clear()
    prediction_cache.clear()


@pytest.fixture
def s3_bucket(monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(settings, "AWS_S3_ENDPOINT_URL", "")
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="models")
        yield "s3://models/registry"


@pytest.fixture
def samples_subset(settings, tmp_path):
    """A 400-row `samples` table in a subset folder of this test's own: writing it into the session's shared
    subset replaced the demo table that later tests (warehouse_data) read their expectations from."""
    from apps.search.demo_data import demo_table
    from apps.search.services import subset_table_write

    settings.SEARCH_SUBSET_DIR = tmp_path / "subset"
    subset_table_write(name="samples", arrow=demo_table(rows=400, seed=3))
