import io
import json

import pytest
from django.conf import settings
from django.core.management import call_command

from apps.search.models import SearchLog


@pytest.mark.django_db
def test_bench_search_small_run(tmp_path, user):
    subset_dir = settings.SEARCH_SUBSET_DIR
    out = tmp_path / "bench.json"
    call_command("bench_search", subset_rows=3000, queries=8, json_path=str(out), stdout=io.StringIO())
    result = json.loads(out.read_text())
    assert result["rows"] == 3000 and result["queries"] == 8
    for engine in ("app", "duckdb_raw", "sqlite_raw"):
        assert set(result[engine]) >= {"p50_ms", "p95_ms", "max_ms"}
        assert 0 < result[engine]["p50_ms"] <= result[engine]["p95_ms"] <= result[engine]["max_ms"]
    assert result["row_count_mismatches"] == 0  # the three engines agree on every query
    assert settings.SEARCH_SUBSET_DIR == subset_dir  # the benchmark's subset was only borrowed
    assert not SearchLog.objects.exists()  # and its searches do not pollute the log
    again = io.StringIO()
    call_command("bench_search", subset_rows=3000, queries=2, stdout=again)
    assert "Reusing the benchmark subset" in again.getvalue()
