"""Setup step (`manage.py setup_demo`): the demo knowledge base `demo-kb`, serving.

Imports apps/linking/demo_kb/entities.jsonl (generated from demo_kb/source.jsonl by `python -m apps.linking.demo_kb.source`) and embeds every
mention once; the embeddings live in the database, so later starts do not embed again.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict

from django.conf import settings

from .evaluation import linker_evaluate
from .linker import LinkerParams
from .models import KnowledgeBase
from .services import kb_get_or_create, kb_import_jsonl

DEMO_KB_DIR = settings.BASE_DIR / "apps" / "linking" / "demo_kb"
DEMO_KB_NAME = "demo-kb"
EXAMPLE_COUNT = 8


def demo_examples(*, path=None, count: int = EXAMPLE_COUNT) -> list[str]:
    """Example sentences for the page: held-out sentences, each name at most twice and then in two
    different senses (that is the point of the demo), sentences with more mentions first."""
    path = path or DEMO_KB_DIR / "heldout.jsonl"
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    records.sort(key=lambda r: (-len(r.get("mentions", [])), len(r["text"])))
    chosen, senses = [], defaultdict(set)
    for record in records:
        pairs = {(m["text"].lower(), m.get("entity_id")) for m in record.get("mentions", [])}
        if any(entity in senses[surface] or len(senses[surface]) >= 2 for surface, entity in pairs):
            continue
        for surface, entity in pairs:
            senses[surface].add(entity)
        chosen.append(record["text"])
        if len(chosen) == count:
            break
    return chosen


def build_demo_kb(*, stdout, force: bool = False) -> None:
    source = DEMO_KB_DIR / "entities.jsonl"
    if not source.exists():
        stdout.write(
            f"No {source.relative_to(settings.BASE_DIR)}: run `python -m apps.linking.demo_kb.source`; skipped"
        )
        return
    existing = KnowledgeBase.objects.filter(name=DEMO_KB_NAME, version="1").first()
    if existing is not None and existing.entities.exists() and not force:
        stdout.write(f"Demo KB {existing.label} exists ({existing.entities.count()} entities); --force rebuilds")
        return
    started = time.perf_counter()
    kb = kb_get_or_create(
        name=DEMO_KB_NAME,
        version="1",
        serving=True,
        description="Ambiguous names: cities and celebrities, fruit and companies, islands and languages…",
    )
    lines = source.read_text().splitlines()
    count = kb_import_jsonl(user=None, kb=kb, lines=lines, replace=True, stdout=stdout, source=str(source.name))
    KnowledgeBase.objects.filter(pk=kb.pk).update(examples=demo_examples())
    mentions = sum(len(json.loads(line).get("mentions", [])) for line in lines if line.strip())
    elapsed = time.perf_counter() - started
    stdout.write(
        f"Demo KB {kb.label}: {count} entities, {mentions} mentions embedded in {elapsed:.1f}s "
        f"({mentions / max(elapsed, 1e-9):.0f} mentions/s)"
    )
    heldout = DEMO_KB_DIR / "heldout.jsonl"
    if heldout.exists():
        # So the demo page shows an evaluation from the start (linker and prior-only baseline).
        started = time.perf_counter()
        for scorer in ("prior", "linker"):
            metrics = linker_evaluate(kb=kb, path=heldout, params=LinkerParams.from_settings(scorer=scorer))
            stdout.write(
                f"  held-out {scorer}: accuracy {metrics['accuracy']}, NIL recall {metrics['nil_recall']}, "
                f"p50 {metrics['p50_ms_per_text']} ms/text"
            )
        stdout.write(f"  evaluated in {time.perf_counter() - started:.1f}s")
