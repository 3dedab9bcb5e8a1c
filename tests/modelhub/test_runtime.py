"""Both input families end to end, ONNX-vs-scikit-learn parity, caches, truncation, bad input."""
import numpy as np
import pytest
from django.test import override_settings

from apps.modelhub import runtime
from apps.modelhub.runtime import FAMILY_TEXT, FAMILY_TOKENS, PredictionInputError, loaded_model_get, predict


def test_demo_cards_carry_held_out_metrics_and_checksums(demo_models):
    for key in ("tfidf-logreg@1", "tfidf-logreg@2", "minilm-topic@1"):
        card = demo_models[key].card
        assert 0.5 < card["metrics"]["accuracy"] <= 1 and 0.4 < card["metrics"]["macro_f1"] <= 1, card["metrics"]
        assert card["metrics"]["n_test"] > 0 and len(card["files"]["model.onnx"]) == 64
        assert len(card["labels"]) == 10 and card["examples"]
    assert demo_models["minilm-l6@1"].kind == "encoder"


@pytest.mark.parametrize("key", ["tfidf-logreg@1", "tfidf-logreg@2"])
def test_tfidf_onnx_matches_scikit_learn(demo_build, demo_models, key, fresh_caches):
    pipeline = demo_build.source_models[key]
    texts = demo_build.data.test_texts[:300]
    loaded = loaded_model_get(model_version=demo_models[key])
    assert loaded.family == FAMILY_TEXT
    np.testing.assert_allclose(loaded.predict_proba(texts), pipeline.predict_proba(texts), atol=1e-4)
    assert list(loaded.card["labels"]) == list(pipeline.classes_)


def test_minilm_graph_matches_encoder_plus_head(demo_build, demo_models, fresh_caches):
    head = demo_build.source_models["minilm-topic@1"]
    texts = demo_build.data.test_texts[:64]
    loaded = loaded_model_get(model_version=demo_models["minilm-topic@1"])
    assert loaded.family == FAMILY_TOKENS and {"input_ids", "attention_mask", "token_type_ids"} <= loaded.input_names
    expected = head.predict_proba(demo_build.encoder.embed(texts))
    np.testing.assert_allclose(loaded.predict_proba(texts), expected, atol=1e-4)


@pytest.mark.parametrize("key", ["tfidf-logreg@1", "minilm-topic@1"])
def test_predict_batch_labels_and_scores(demo_build, demo_models, key, fresh_caches):
    mv = demo_models[key]
    texts = demo_build.data.test_texts[:20]
    batch = predict(model_version=mv, texts=texts)
    assert (batch.model, batch.version) == (mv.name, mv.version)
    assert len(batch.predictions) == 20 and batch.latency_ms > 0
    for p in batch.predictions:
        assert p.label in mv.labels and set(p.scores) == set(mv.labels)
        assert abs(sum(p.scores.values()) - 1) < 1e-4 and p.scores[p.label] == max(p.scores.values())
    accuracy = np.mean([p.label == y for p, y in zip(batch.predictions, demo_build.data.test_labels[:20])])
    assert accuracy >= 0.5


def test_repeat_inputs_come_from_the_prediction_cache(demo_models, fresh_caches):
    mv = demo_models["tfidf-logreg@1"]
    first = predict(model_version=mv, texts=["stocks market earnings growth"])
    again = predict(model_version=mv, texts=["stocks market earnings growth", "a brand new text about doctors"])
    assert not first.predictions[0].cached
    assert again.predictions[0].cached and not again.predictions[1].cached
    assert again.predictions[0].scores == first.predictions[0].scores
    # Keyed by version: the same text on v2 is computed, not reused.
    assert not predict(model_version=demo_models["tfidf-logreg@2"], texts=["stocks market earnings growth"]).predictions[0].cached


def test_session_cache_is_bounded_lru(demo_models, fresh_caches, monkeypatch):
    monkeypatch.setattr(runtime, "session_cache", runtime.LRU(2))
    for key in ("tfidf-logreg@1", "tfidf-logreg@2", "tfidf-logreg@1", "minilm-topic@1"):
        loaded_model_get(model_version=demo_models[key])
    assert runtime.session_cache.keys() == [("tfidf-logreg", "1"), ("minilm-topic", "1")]


@override_settings(ORT_INTRA_OP_THREADS=2, ORT_INTER_OP_THREADS=1)
def test_sessions_use_thread_settings(demo_models, fresh_caches):
    loaded = loaded_model_get(model_version=demo_models["tfidf-logreg@2"])
    assert loaded.session.get_session_options().intra_op_num_threads == 2


def test_long_texts_are_truncated_and_reported(demo_models, fresh_caches):
    long_text = "doctor vaccine patient " * 400
    minilm = predict(model_version=demo_models["minilm-topic@1"], texts=[long_text, "short doctor text"])
    assert [p.truncated for p in minilm.predictions] == [True, False]
    tfidf = predict(model_version=demo_models["tfidf-logreg@1"], texts=[long_text * 2])
    assert tfidf.predictions[0].truncated


@pytest.mark.parametrize("texts", [[], [""], ["ok", "   \n"]])
def test_empty_input_is_refused_clearly(demo_models, texts):
    with pytest.raises(PredictionInputError, match="empty|at least one"):
        predict(model_version=demo_models["tfidf-logreg@1"], texts=texts)
