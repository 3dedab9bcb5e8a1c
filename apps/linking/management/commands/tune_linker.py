"""Choose the linker's settings on the KB itself, never on the held-out set.

Dev set built from the stored mentions (leave-one-out, `apps.linking.evaluation.loo_*`, which scores
with the linker's own functions):
- every stored mention whose surface is ambiguous (≥2 candidate entities) is linked against the
  KB without that one mention (its own count is also taken out of the prior);
- NIL: for every entity sharing an alias, its mentions are linked with the whole entity left
  out; the right answer is then NIL.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.linking.detection import mention_context
from apps.linking.evaluation import loo_data, loo_evaluate, loo_similarities, rival_pairs_evaluate
from apps.linking.linker import LinkerParams, embed, typical_similarity
from apps.linking.selectors import kb_get
from apps.linking.services import LinkingError, NotFound


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
        parser.add_argument(
            "--rival-windows", default="", help="also score one-context-per-mention windows (e.g. 0,3,4,6,8) on "
            "sentence pairs joined from the KB's own mentions of different entities with one name",
        )
        parser.add_argument("--json", dest="json_path", default=None, help="also write the JSON here")

    def handle(
        self, *args, model, contexts, k, prior_weights, profile_weights, thresholds, relatives, json_path,
        rival_windows="", **options
    ):
        try:
            kb = kb_get(name=model)
            data = loo_data(kb=kb)
        except (NotFound, LinkingError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"{kb.label}: {len(data.mentions)} mentions, {sum(c[2] is not None for c in data.cases)} ambiguous in-KB "
            f"cases, {sum(c[2] is None for c in data.cases)} NIL cases"
        )
        results = []
        for style in [c.strip() for c in contexts.split(",") if c.strip()]:
            started = time.perf_counter()
            if style == "stored":
                vectors = data.stored_vectors
            else:
                vectors = embed(
                    texts=[mention_context(text, s, t, style=style) for _, _, text, s, t in data.mentions],
                    encoder_name=kb.encoder_name,
                )
            self.stdout.write(f"  context {style}: {len(vectors)} vectors in {time.perf_counter() - started:.1f}s")
            sims = loo_similarities(data=data, vectors=vectors)
            typical_cache = {}
            for kk, w, wp, threshold, relative in itertools.product(
                [int(x) for x in k.split(",")],
                _floats(prior_weights),
                _floats(profile_weights),
                _floats(thresholds),
                _floats(relatives),
            ):
                params = LinkerParams(
                    score="nearest" if kk == 1 else "topk", top_k=max(kk, 1), prior_weight=w, profile_weight=wp,
                    nil_threshold=threshold, nil_relative=relative,
                )
                if (kk, wp) not in typical_cache:
                    typical_cache[(kk, wp)] = typical_similarity(
                        vectors=vectors, entity_ids=data.entity_of, profiles=data.profiles, params=params
                    )
                # k = 0: the entity's aggregate (centroid) embedding instead of its nearest mentions
                scores = loo_evaluate(data=data, sims=sims, params=params, typical=typical_cache[(kk, wp)],
                                      centroid=kk == 0)
                accuracy, nil_precision, nil_recall = scores["accuracy"], scores["nil_precision"], scores["nil_recall"]
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
        if rival_windows.strip():
            windows = [int(x) for x in rival_windows.split(",") if x.strip()]
            report["rival_windows"] = rival_pairs_evaluate(
                kb=kb, data=data, windows=windows, params=LinkerParams.from_settings()
            )
        text = json.dumps(report, indent=2)
        self.stdout.write(text)
        if json_path:
            Path(json_path).write_text(text)
