import io
import json

import pytest
from django.core.management import CommandError, call_command


@pytest.mark.django_db
def test_bench_inference_prints_and_writes_json(demo_models, tmp_path, fresh_caches, settings):
    out = io.StringIO()
    path = tmp_path / "bench.json"
    call_command("bench_inference", "--model", "tfidf-logreg", "--n", "40", "--batch-size", "16",
                 "--json", str(path), stdout=out)
    result = json.loads(path.read_text())
    printed = out.getvalue()
    assert json.loads(printed[printed.index("{"):]) == result
    assert result["model"] == "tfidf-logreg@1" and result["n"] == 40 and result["batch_size"] == 16
    assert "single inputs: 40 on tfidf-logreg@1" in printed
    assert "batches: 3 of 16" in printed  # 40 inputs in batches of 16: 16 + 16 + 8
    for key in ("app_single_p50_ms", "raw_single_p50_ms", "app_cached_single_p50_ms", "app_uncached_first_ms",
                "app_batch_per_s", "raw_batch_per_s"):
        assert result[key] > 0, key
    # A cached answer skips onnxruntime entirely: well under half an uncached prediction, typical or first.
    assert result["app_cached_single_p50_ms"] * 2 < result["app_single_p50_ms"]
    assert result["app_cached_single_p50_ms"] < result["app_uncached_first_ms"]
    assert result["ort_threads"] == {"intra": settings.ORT_INTRA_OP_THREADS, "inter": settings.ORT_INTER_OP_THREADS}
    # The verdicts follow from the reported numbers.
    assert result["single_within_target"] == (result["app_single_p50_ms"] <= result["raw_single_p50_ms"] * 1.1 + 1)
    assert result["batch_within_target"] == (result["app_batch_per_s"] >= result["raw_batch_per_s"] * 0.9)


@pytest.mark.django_db
def test_bench_unknown_model(demo_models):
    with pytest.raises(CommandError, match="Unknown model"):
        call_command("bench_inference", "--model", "nope", "--n", "5")


@pytest.mark.django_db
def test_build_demo_models_registers_from_the_store_and_skips_when_present(demo_build):
    from apps.modelhub.demo import build_demo_models
    from apps.modelhub.selectors import model_listing

    out = io.StringIO()
    build_demo_models(stdout=out)  # versions are in the store already: registered, not retrained
    assert "registering them" in out.getvalue()
    assert {(r["name"], r["version"]) for r in model_listing()} == {
        ("tfidf-logreg", "1"), ("tfidf-logreg", "2"), ("minilm-topic", "1"), ("minilm-l6", "1")}
    again = io.StringIO()
    call_command("build_demo_models", stdout=again)
    assert "already registered" in again.getvalue()
    table = io.StringIO()
    call_command("list_models", stdout=table)
    assert "candidate" in table.getvalue()
