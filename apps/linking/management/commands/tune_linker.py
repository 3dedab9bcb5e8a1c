"""Choose the linker's settings on the KB itself, never on the held-out set.

Dev set built from the stored mentions (leave-one-out):
- every stored mention whose surface is ambiguous (≥2 candidate entities) is linked against the
  KB without that one mention (its own count is also taken out of the prior);
- NIL: for every entity sharing an alias, its mentions are linked with the whole entity left
  out; the right answer is then NIL.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from django.core.management.base import BaseCommand, CommandError

from apps.linking.detection import AliasMatcher, fold, mention_context
from apps.linking.linker import LinkerParams, embed, typical_similarity
from apps.linking.models import Alias, Entity, Mention
from apps.linking.selectors import kb_get
from apps.linking.services import NotFound


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


class Command(BaseCommand):
    help = (
        "Grid-search the linker's settings (context style, nearest vs top-k mean, k, prior weight, NIL "
        "threshold) by leave-one-out over the KB's own stored mentions; prints JSON (best first)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--model", default=None, help="KB name (default: the serving linker)")
        parser.add_argument(
            "--contexts", default="stored", help="comma list of: stored, sentence, marked, masked, window"
        )
        parser.add_argument(
            "--k", default="0,1,2,3,5,8", help="k values (1 = nearest mention, 0 = the aggregate/centroid)"
        )
        parser.add_argument("--prior-weights", default="0,0.05,0.1,0.2")
        parser.add_argument(
            "--profile-weights", default="0,0.3,0.4,0.5,0.6,0.7", help="weight of the name+description embedding"
        )
        parser.add_argument("--thresholds", default="0,0.15,0.2,0.25,0.3", help="absolute NIL floors")
        parser.add_argument(
            "--relatives", default="0,0.5,0.55,0.6", help="NIL below this share of the entity's typical similarity"
        )
        parser.add_argument("--json", dest="json_path", default=None, help="also write the JSON here")

    def handle(
        self, *args, model, contexts, k, prior_weights, profile_weights, thresholds, relatives, json_path, **options
    ):
        try:
            kb = kb_get(name=model)
        except NotFound as exc:
            raise CommandError(str(exc)) from exc
        mentions = list(
            Mention.objects.filter(entity__kb=kb)
            .order_by("pk")
            .values_list("pk", "entity_id", "text", "start", "end", "embedding")
        )
        if not mentions:
            raise CommandError(f"{kb.label} has no mentions")
        matcher = AliasMatcher.build(Alias.objects.filter(kb=kb).values_list("text", "entity_id"))
        profiles = {
            pk: np.frombuffer(bytes(blob), dtype=np.float32)
            for pk, blob in Entity.objects.filter(kb=kb, profile__isnull=False).values_list("pk", "profile")
        }
        entity_of = np.asarray([m[1] for m in mentions])
        rows_of: dict[int, np.ndarray] = {e: np.flatnonzero(entity_of == e) for e in set(entity_of.tolist())}
        surface_counts: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        for _, e, text, s, t, _ in mentions:
            surface_counts[fold(text[s:t])][e] += 1

        cases = []  # (row, candidates, gold or None, excluded entity or None)
        for row, (_, e, text, s, t, _) in enumerate(mentions):
            candidates = matcher.candidates(text[s:t])
            if len(candidates) >= 2 and e in candidates:
                cases.append((row, candidates, e, None))
                cases.append((row, tuple(c for c in candidates if c != e), None, e))
        self.stdout.write(
            f"{kb.label}: {len(mentions)} mentions, {sum(c[2] is not None for c in cases)} ambiguous in-KB cases, "
            f"{sum(c[2] is None for c in cases)} NIL cases"
        )

        results = []
        for style in [c.strip() for c in contexts.split(",") if c.strip()]:
            started = time.perf_counter()
            if style == "stored":
                vectors = np.stack([np.frombuffer(bytes(m[5]), dtype=np.float32) for m in mentions])
            else:
                vectors = embed(
                    texts=[mention_context(m[2], m[3], m[4], style=style) for m in mentions],
                    encoder_name=kb.encoder_name,
                )
            self.stdout.write(f"  context {style}: {len(vectors)} vectors in {time.perf_counter() - started:.1f}s")
            sims_cache = {}
            for row, candidates, gold, excluded in cases:
                q = vectors[row]
                for c in candidates:
                    if (row, c) not in sims_cache:
                        rows = rows_of.get(c, np.zeros(0, dtype=int))
                        rows = rows[rows != row]
                        sims_cache[(row, c)] = np.sort(vectors[rows] @ q)[::-1]
                        profile = profiles.get(c)
                        sims_cache[(row, c, "profile")] = float(profile @ q) if profile is not None else None
                        if len(rows):
                            centroid = vectors[rows].sum(axis=0)
                            sims_cache[(row, c, "centroid")] = float(
                                centroid @ q / max(np.linalg.norm(centroid), 1e-12)
                            )
            typical_cache = {}
            for kk, w, wp, threshold, relative in itertools.product(
                [int(x) for x in k.split(",")],
                _floats(prior_weights),
                _floats(profile_weights),
                _floats(thresholds),
                _floats(relatives),
            ):
                if (kk, wp) not in typical_cache:
                    typical_cache[(kk, wp)] = typical_similarity(
                        vectors=vectors,
                        entity_ids=entity_of,
                        profiles=profiles,
                        params=LinkerParams(
                            score="nearest" if kk == 1 else "topk", top_k=max(kk, 1), profile_weight=wp
                        ),
                    )
                typical = typical_cache[(kk, wp)]
                correct = in_kb = nil_pred = nil_right = nil_gold = nil_found = 0
                for row, candidates, gold, excluded in cases:
                    _, e, text, s, t, _ = mentions[row]
                    counts = surface_counts[fold(text[s:t])]
                    raw = {c: 1.0 + counts.get(c, 0) - (1 if c == e else 0) for c in candidates}
                    total = sum(raw.values())
                    best, best_score, best_sim = None, -9.0, 0.0
                    for c in candidates:
                        if kk == 0:  # the entity's aggregate (centroid) embedding
                            sim = sims_cache.get((row, c, "centroid"))
                        else:
                            sims = sims_cache[(row, c)][:kk]
                            sim = float(sims.mean()) if len(sims) else None
                        profile_sim = sims_cache[(row, c, "profile")]
                        if sim is not None and profile_sim is not None:
                            sim = (1 - wp) * sim + wp * profile_sim
                        elif sim is None:
                            sim = profile_sim or 0.0
                        score = (1 - w) * sim + w * raw[c] / total
                        if score > best_score:
                            best, best_score, best_sim = c, score, sim
                    bar = max(threshold, relative * typical.get(best, 0.0))
                    predicted = None if best_sim < bar else best
                    if gold is not None:
                        in_kb += 1
                        correct += predicted == gold
                    else:
                        nil_gold += 1
                        nil_found += predicted is None
                    if predicted is None:
                        nil_pred += 1
                        nil_right += gold is None
                accuracy = correct / max(in_kb, 1)
                nil_recall = nil_found / max(nil_gold, 1)
                nil_precision = nil_right / max(nil_pred, 1)
                results.append(
                    {
                        "context": style,
                        "k": kk,
                        "prior_weight": w,
                        "profile_weight": wp,
                        "nil_threshold": threshold,
                        "nil_relative": relative,
                        "accuracy": round(accuracy, 4),
                        "nil_precision": round(nil_precision, 4),
                        "nil_recall": round(nil_recall, 4),
                        # in-KB accuracy first; NIL F1 breaks near-ties
                        "objective": round(
                            accuracy + 0.25 * (2 * nil_precision * nil_recall / max(nil_precision + nil_recall, 1e-9)),
                            4,
                        ),
                    }
                )
        results.sort(key=lambda r: -r["objective"])
        best_per = {}
        for r in results:
            best_per.setdefault((r["context"], r["k"]), r)
        by_threshold = {}
        for r in sorted(results, key=lambda r: -r["accuracy"]):
            by_threshold.setdefault((r["context"], r["nil_threshold"], r["nil_relative"]), r)
        report = {
            "model": kb.label,
            "best": results[0],
            "best_per_context_and_k": list(best_per.values()),
            "best_accuracy_per_context_and_nil_rule": list(by_threshold.values()),
            "top": results[:10],
        }
        text = json.dumps(report, indent=2)
        self.stdout.write(text)
        if json_path:
            Path(json_path).write_text(text)
