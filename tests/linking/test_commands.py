import io
import json

import pytest
from django.core.management import CommandError, call_command

from apps.linking import demo
from apps.linking.models import EvaluationRun, KnowledgeBase
from apps.linking.services import text_link

from .conftest import TEXAS_SENTENCE

HELDOUT = [
    {
        "text": "Programmers love Java because of its huge library of frameworks.",
        "mentions": [{"start": 17, "end": 21, "text": "Java", "entity_id": "java_language"}],
    },
    {
        "text": "Volcanoes and rice fields cover the island of Java in Indonesia.",
        "mentions": [{"start": 46, "end": 50, "text": "Java", "entity_id": "java_island"}],
    },
    {
        "text": TEXAS_SENTENCE,
        "mentions": [
            {
                "start": TEXAS_SENTENCE.index("Paris"),
                "end": TEXAS_SENTENCE.index("Paris") + 5,
                "text": "Paris",
                "entity_id": None,
            }
        ],
    },
]


@pytest.fixture
def heldout_path(tmp_path):
    path = tmp_path / "heldout.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in HELDOUT))
    return path


def test_eval_linker_and_prior_baseline(kb, heldout_path, tmp_path):
    out = tmp_path / "eval.json"
    call_command("eval_linker", data=str(heldout_path), json_path=str(out), stdout=io.StringIO())
    metrics = json.loads(out.read_text())
    for key in ["n_mentions", "accuracy", "nil_precision", "nil_recall", "p50_ms_per_text", "p95_ms_per_text"]:
        assert key in metrics
    assert metrics["n_mentions"] == 3 and metrics["n_in_kb"] == 2 and metrics["accuracy"] == 1.0
    assert set(metrics["end_to_end"]) == {"precision", "recall", "f1"}
    call_command("eval_linker", data=str(heldout_path), scorer="prior", json_path=str(out), stdout=io.StringIO())
    baseline = json.loads(out.read_text())
    assert baseline["scorer"] == "prior" and baseline["nil_recall"] == 0.0
    assert {r.scorer for r in EvaluationRun.objects.filter(kb=kb)} == {"linker", "prior"}


def test_eval_linker_counts_nil_end_to_end_with_unknown_names(kb, tmp_path):
    """NIL end to end: the spans the page reports as NIL, names no alias covers included, against gold NIL spans."""
    records = [
        {"text": "Yesterday Angela Merkel spoke in Berlin.",
         "mentions": [{"start": 10, "end": 23, "text": "Angela Merkel", "entity_id": None},
                      {"start": 33, "end": 39, "text": "Berlin", "entity_id": None}]},
        {"text": "Programmers love Java because of its huge library of frameworks.",
         "mentions": [{"start": 17, "end": 21, "text": "Java", "entity_id": "java_language"}]},
    ]
    path, out = tmp_path / "everyday.jsonl", tmp_path / "eval.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    call_command("eval_linker", data=str(path), json_path=str(out), no_save=True, stdout=io.StringIO())
    nil = json.loads(out.read_text())["nil_end_to_end"]
    # "Yesterday Angela Merkel" as one name would be a false NIL and a missed one
    assert nil == {"precision": 1.0, "recall": 1.0, "predicted": 2, "gold": 2}


def test_eval_linker_bad_input(kb, tmp_path):
    with pytest.raises(CommandError, match="is not a file"):
        call_command("eval_linker", data=str(tmp_path / "missing.jsonl"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "Java", "mentions": [{"start": 0, "end": 40}]}) + "\n")
    with pytest.raises(CommandError, match="outside the text"):
        call_command("eval_linker", data=str(bad))
    with pytest.raises(CommandError, match="no entity-linking model"):
        call_command("eval_linker", data=str(bad), model="nope")


def test_import_kb_refuses_bad_files(db, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "alpha", "name": "Alpha"}\n{"id": "Bad Id", "name": "Beta"}\n')
    with pytest.raises(CommandError, match="nothing imported: line 2"):
        call_command("import_kb", str(bad), model="x")
    assert not KnowledgeBase.objects.get(name="x").entities.exists()


def test_bench_linker_small(kb, tmp_path):
    from apps.linking.models import Alias, Mention

    # Enough example sentences on the serving KB for the 50-word end-to-end part to run too.
    kb.examples = [
        "Volcanoes and rice fields cover the island of Java in Indonesia.",
        "Programmers love Java because of its huge library of frameworks.",
        "Amazon delivered my parcel and charged my credit card.",
        "We walked along the Seine in Paris after visiting the Louvre.",
        "Achilles died from the arrow Paris shot during the siege of Troy.",
        "Apple unveiled a new phone, and she ate an apple while watching.",
    ]
    kb.save(update_fields=["examples"])
    out = tmp_path / "bench.json"
    printed = io.StringIO()
    call_command(
        "bench_linker",
        entities=10,
        mentions=3,
        queries=3,
        repeat=2,
        indexes="numpy",
        json_path=str(out),
        stdout=printed,
    )
    report = json.loads(out.read_text())
    assert report == json.loads(printed.getvalue()[printed.getvalue().index("{"):])

    # The counts describe the KB it really built: 10 entities sharing the alias "Paris", 3 mentions each.
    bench_kb = KnowledgeBase.objects.get(name="bench-paris-10x3")
    assert report["kb"] == bench_kb.label and bench_kb.entities.count() == 10
    assert Mention.objects.filter(entity__kb=bench_kb).count() == report["stored_mentions"] == 30
    assert Alias.objects.filter(kb=bench_kb, text="Paris").count() == report["candidates_per_mention"] == 10
    assert report["queries"] == 3 and report["repeat"] == 2

    numpy_times = report["resolution_ms"]["numpy"]
    assert set(numpy_times) == {"index_build_ms", "exact_all_mentions", "with_aggregates", "same_answer_rate"}
    assert numpy_times["index_build_ms"] > 0
    for label in ("exact_all_mentions", "with_aggregates"):
        timing = numpy_times[label]
        assert 0 < timing["p50"] <= timing["p95"] <= timing["max"] and 0 < timing["mean"] <= timing["max"]
    # The shortlist keeps the best candidate on these queries: the same answer every time.
    assert numpy_times["same_answer_rate"] == 1.0

    end_to_end = report["end_to_end_50_words"]
    assert end_to_end["kb"] == kb.label and end_to_end["words"] == 50
    words = " ".join(kb.examples).split()[:50]
    expected = text_link(user=None, kb=kb, text=" ".join(words), audit=False)
    assert end_to_end["mentions"] == len(expected.mentions) > 0
    assert 0 < end_to_end["latency_ms"]["p50"] <= end_to_end["latency_ms"]["max"]
    assert end_to_end["cpu_ms"]["p50"] > 0


def test_demo_step_builds_once(db, kb_lines, tmp_path, monkeypatch):
    (tmp_path / "entities.jsonl").write_text("\n".join(kb_lines) + "\n")
    (tmp_path / "heldout.jsonl").write_text("".join(json.dumps(r) + "\n" for r in HELDOUT))
    monkeypatch.setattr(demo, "DEMO_KB_DIR", tmp_path)
    out = io.StringIO()
    demo.build_demo_kb(stdout=out)
    kb = KnowledgeBase.objects.get(name=demo.DEMO_KB_NAME)
    assert kb.is_serving and kb.entities.count() == 8 and len(kb.examples) == 3
    assert {r.scorer for r in kb.evaluations.all()} == {"linker", "prior"}
    demo.build_demo_kb(stdout=out)
    assert "exists" in out.getvalue() and KnowledgeBase.objects.get(pk=kb.pk).revision == kb.revision


def test_reembed_changes_context_style_and_keeps_aggregates(kb):
    import numpy as np

    from apps.linking.models import Entity

    before = {m.pk: bytes(m.embedding) for m in kb.entities.get(key="java_island").mentions.all()}
    call_command("reembed_kb", model="test-kb", context_style="marked", stdout=io.StringIO())
    kb.refresh_from_db()
    assert kb.context_style == "marked" and kb.revision == 2
    entity = Entity.objects.get(kb=kb, key="java_island")
    after = {m.pk: bytes(m.embedding) for m in entity.mentions.all()}
    assert before.keys() == after.keys() and before != after
    total = np.sum([np.frombuffer(v, dtype=np.float32) for v in after.values()], axis=0)
    np.testing.assert_allclose(entity.aggregate_vector(), total, atol=1e-5)


def test_tune_linker_scores_leave_one_out_with_the_linkers_functions(kb, tmp_path):
    from apps.linking.evaluation import loo_data, loo_evaluate, loo_similarities
    from apps.linking.linker import LinkerParams, typical_similarity

    out = tmp_path / "tune.json"
    call_command("tune_linker", k="1,3", prior_weights="0", profile_weights="0.5", thresholds="0", relatives="0,0.9",
                 json_path=str(out), stdout=io.StringIO())
    report = json.loads(out.read_text())
    assert report["model"] == kb.label and len(report["top"]) == 4
    # the same figures straight from apps.linking.evaluation
    data = loo_data(kb=kb)
    params = LinkerParams(score="topk", top_k=3, prior_weight=0, profile_weight=0.5, nil_threshold=0, nil_relative=0)
    scores = loo_evaluate(data=data, sims=loo_similarities(data=data, vectors=data.stored_vectors), params=params,
                          typical=typical_similarity(vectors=data.stored_vectors, entity_ids=data.entity_of,
                                                     profiles=data.profiles, params=params))
    row = next(r for r in report["top"] if r["k"] == 3 and r["nil_relative"] == 0)
    assert row["accuracy"] == round(scores["accuracy"], 4) and scores["n_in_kb"] == len(data.cases) // 2
    # no NIL rule → nothing is NIL; a high relative bar → NIL recall goes up
    assert scores["nil_recall"] == 0.0
    strict = next(r for r in report["top"] if r["k"] == 3 and r["nil_relative"] == 0.9)
    assert strict["nil_recall"] > 0
