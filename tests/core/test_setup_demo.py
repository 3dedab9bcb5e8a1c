"""`make run`'s setup on a fresh DATA_DIR, as separate processes: migrate, then setup_demo twice.
The first run builds the demo login, data, models and KB; the second reuses them."""
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _manage(env, *args, timeout=600):
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.mark.integration
def test_setup_demo_builds_everything_once_then_reuses_it(tmp_path):
    env = dict(os.environ)
    for key in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "STATIC_ROOT"):
        env.pop(key, None)
    env.update(DJANGO_SETTINGS_MODULE="apps.samplescope.settings.local", DATA_DIR=str(tmp_path / "data"),
               DEMO_DATA_ROWS="20000", DEMO_TFIDF_TRAIN_ROWS="3000", DEMO_MINILM_TRAIN_ROWS="120")
    _manage(env, "migrate", "--noinput")

    first = _manage(env, "setup_demo")
    assert "Created the demo login: demo / samplescope-demo" in first
    aliases = {}
    for version in json.loads(_manage(env, "list_models", "--json")):
        aliases.setdefault(version["name"], set()).update(version["aliases"])
    assert {"tfidf-logreg", "minilm-topic", "minilm-l6"} <= set(aliases)
    assert {"production", "candidate"} <= aliases["tfidf-logreg"]
    assert list((tmp_path / "data" / "subset" / "tables" / "samples").glob("samples-*.duckdb"))  # a file per table
    assert list((tmp_path / "data").rglob("*.parquet"))

    started = time.monotonic()
    second = _manage(env, "setup_demo")
    assert "Demo login: demo / samplescope-demo" in second
    assert "already registered" in second  # models
    assert "Demo data exists" in second
    assert "Demo KB" in second and "274 entities" in second
    assert time.monotonic() - started < 60  # nothing rebuilt

    token = _manage(env, "create_api_token", "smoke").strip().splitlines()[-1]
    assert token.startswith("ssk_")


@pytest.mark.django_db
def test_setup_demo_creates_no_demo_superuser_where_demo_users_are_off(settings):
    from django.contrib.auth import get_user_model
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import CommandError, call_command

    from apps.accounts.demo import ensure_demo_user

    settings.DEMO_USERS_ALLOWED = False  # as production settings (tests/deploy checks they say so)
    with pytest.raises(CommandError, match="DEMO_USERS_ALLOWED"):
        call_command("setup_demo", stdout=io.StringIO())
    with pytest.raises(ImproperlyConfigured):
        ensure_demo_user(stdout=io.StringIO())
    assert not get_user_model().objects.filter(username=settings.DEMO_USERNAME).exists()
