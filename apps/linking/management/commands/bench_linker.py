"""The popular-alias case: many entities share one alias ("Paris"), so one mention has many candidates
with many stored mentions between them. Measures resolution time with and without the per-entity
aggregate embeddings (shortlist), on the NumPy and Qdrant indexes, and the end-to-end latency of a
50-word text on the serving KB."""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from django.core.management.base import BaseCommand
from django.db import transaction

from apps.core.stats import latency_summary
from apps.linking.detection import mention_context
from apps.linking.linker import LinkerParams, candidates_score, encoder_get, kb_state, link
from apps.linking.models import KnowledgeBase
from apps.linking.selectors import kb_get
from apps.linking.services import NotFound, kb_get_or_create, kb_import_jsonl

TOPICS = [
    "fashion",
    "football",
    "mythology",
    "cinema",
    "opera",
    "banking",
    "aviation",
    "rugby",
    "chess",
    "wine",
    "poetry",
    "railways",
    "perfume",
    "jazz",
    "astronomy",
    "sailing",
    "cooking",
    "boxing",
    "painting",
    "hotels",
    "software",
    "medicine",
    "farming",
    "tennis",
    "ballet",
    "architecture",
    "politics",
    "cycling",
    "theatre",
    "photography",
    "robotics",
    "fishing",
    "gardening",
    "law",
    "chemistry",
    "podcasts",
    "surfing",
    "comics",
    "mining",
    "skiing",
    "pottery",
    "circus",
    "trucking",
    "baking",
    "golf",
    "radio",
    "forestry",
    "knitting",
    "volcanology",
    "origami",
]
FRAMES = [
    "Everyone in the {t} world knows Paris for its work on {t} and {u}.",
    "Paris gave a long interview about {t}, {u} and the future of {t}.",
    "The {t} magazine put Paris on its cover after a remarkable year in {t}.",
    "Fans of {t} travelled far to meet Paris at the {u} festival.",
    "Critics say Paris changed {t} forever, much as others changed {u}.",
    "A documentary about {t} follows Paris through a season of {t} and {u}.",
    "Paris announced a new {t} project with partners from {u}.",
    "Students of {t} still read what Paris wrote about {t} and {u}.",
    "At the {t} awards, Paris thanked colleagues from {t} and {u}.",
    "The history of {t} would look different without Paris and the {u} scene.",
]


def _summary(values: list[float]) -> dict:
    return latency_summary(values, digits=3, suffix="")


class Command(BaseCommand):
    help = (
        "Benchmark the popular-alias case (--entities entities sharing the alias 'Paris', --mentions stored "
        "mentions each): resolution time per mention with and without aggregate embeddings, NumPy and Qdrant "
        "indexes; plus end-to-end latency of a 50-word text on the serving KB. Prints JSON (--json PATH)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--entities", type=int, default=50)
        parser.add_argument("--mentions", type=int, default=10, help="stored mentions per entity")
        parser.add_argument("--queries", type=int, default=50)
        parser.add_argument("--repeat", type=int, default=20, help="timed repetitions per query")
        parser.add_argument("--indexes", default="numpy,qdrant")
        parser.add_argument("--json", dest="json_path", default=None)

    def _bench_kb(self, *, entities: int, mentions: int) -> KnowledgeBase:
        name = f"bench-paris-{entities}x{mentions}"
        kb = KnowledgeBase.objects.filter(name=name).first()
        if kb is not None and kb.entities.count() == entities:
            self.stdout.write(f"reusing {kb.label}")
            return kb
        rng = random.Random(7)
        lines = []
        for i in range(entities):
            topic = TOPICS[i % len(TOPICS)]
            others = [t for t in TOPICS if t != topic]
            sentences = [FRAMES[j % len(FRAMES)].format(t=topic, u=rng.choice(others)) for j in range(mentions)]
            lines.append(
                json.dumps(
                    {
                        "id": f"paris_{topic}_{i}",
                        "name": f"Paris ({topic} {i})",
                        "aliases": ["Paris"],
                        "type": "person",
                        "description": f"A person called Paris, known in {topic}.",
                        "mentions": [
                            {"text": s, "start": s.index("Paris"), "end": s.index("Paris") + 5} for s in sentences
                        ],
                    }
                )
            )
        started = time.perf_counter()
        with transaction.atomic():
            kb = kb_get_or_create(name=name, version="1")
        kb_import_jsonl(user=None, kb=kb, lines=lines, replace=True, stdout=self.stdout, source="bench_linker")
        self.stdout.write(f"built {kb.label}: {entities * mentions} mentions in {time.perf_counter() - started:.1f}s")
        kb.refresh_from_db()
        return kb

    def handle(self, *args, entities, mentions, queries, repeat, indexes, json_path, **options):
        kb = self._bench_kb(entities=entities, mentions=mentions)
        rng = random.Random(11)
        texts = [
            FRAMES[rng.randrange(len(FRAMES))].format(t=rng.choice(TOPICS), u=rng.choice(TOPICS))
            for _ in range(queries)
        ]
        spans = [(t.index("Paris"), t.index("Paris") + 5) for t in texts]
        encoder = encoder_get(name=kb.encoder_name)
        vectors = encoder.embed([mention_context(t, s, e, style=kb.context_style) for t, (s, e) in zip(texts, spans)])
        report = {
            "kb": kb.label,
            "candidates_per_mention": entities,
            "stored_mentions": entities * mentions,
            "queries": queries,
            "repeat": repeat,
            "resolution_ms": {},
        }
        for kind in [k.strip() for k in indexes.split(",") if k.strip()]:
            started = time.perf_counter()
            state = kb_state(kb, index_kind=kind)
            build_ms = (time.perf_counter() - started) * 1000
            candidates = tuple(state.matcher.candidates("Paris"))
            prior = state.prior("Paris", candidates)
            answers = {}
            for use_aggregates in (False, True):
                params = LinkerParams.from_settings(use_aggregates=use_aggregates, aggregate_cutoff=0)
                timings, top = [], []
                for q in vectors:
                    for _ in range(repeat if kind == "numpy" else max(1, repeat // 4)):
                        t0 = time.perf_counter()
                        ranked = candidates_score(
                            state=state, query=q, candidates=candidates, prior=prior, params=params
                        )
                        timings.append((time.perf_counter() - t0) * 1000)
                    top.append(ranked[0].entity.key)
                answers[use_aggregates] = top
                label = "with_aggregates" if use_aggregates else "exact_all_mentions"
                report["resolution_ms"].setdefault(kind, {"index_build_ms": round(build_ms, 1)})[label] = _summary(
                    timings
                )
                self.stdout.write(f"  {kind:6} {label:20} p50 {np.percentile(timings, 50):.3f} ms")
            agree = np.mean([a == b for a, b in zip(answers[False], answers[True])])
            report["resolution_ms"][kind]["same_answer_rate"] = round(float(agree), 3)
        report["end_to_end_50_words"] = self._bench_text(repeat=repeat)
        text = json.dumps(report, indent=2)
        self.stdout.write(text)
        if json_path:
            Path(json_path).write_text(text + "\n")

    def _bench_text(self, *, repeat: int) -> dict | None:
        """p50/p95 of linking a 50-word text made of the serving KB's example sentences."""
        try:
            kb = kb_get()
        except NotFound:
            return None
        words = " ".join(kb.examples or []).split()
        if len(words) < 50:
            return None
        text = " ".join(words[:50])
        state = kb_state(kb)
        # What the page and /api/link run (services.text_link), unknown names included, without its cache.
        params = replace(LinkerParams.from_settings(), unknown_names=True)
        link(state=state, text=text, params=params)  # warm-up
        timings, cpu, result = [], [], None
        for _ in range(max(repeat, 30)):
            cpu_started = time.process_time()
            result = link(state=state, text=text, params=params)
            cpu.append((time.process_time() - cpu_started) * 1000)
            timings.append(result.latency_ms)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        return {
            "kb": kb.label,
            "words": 50,
            "mentions": len(result.mentions),
            "latency_ms": _summary(timings),
            # CPU time of this process (onnxruntime runs on 1 thread): what the wall time is on an idle
            # core; wall time grows when other processes compete for the 2 cores (see load_average_1m).
            "cpu_ms": _summary(cpu),
            "load_average_1m": round(load, 2) if load is not None else None,
            "cpu_count": os.cpu_count(),
        }
