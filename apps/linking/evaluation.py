"""Held-out evaluation of a KB: linking accuracy on gold spans, NIL precision/recall, end-to-end
(detection + linking) precision/recall/F1 and latency per text."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .detection import AliasMatcher, fold
from .linker import (
    LinkerParams,
    alias_prior,
    candidate_score,
    combined_similarity,
    encoder_get,
    kb_state,
    link,
    mention_similarity,
    nil_bar_for,
    typical_similarity,
)
from .linker import (
    embed as embed_texts,
)
from .models import Alias, Entity, EvaluationRun, KnowledgeBase, Mention
from .services import LinkingError


def heldout_load(*, path: Path) -> list[dict]:
    records = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            text = record["text"]
            for m in record["mentions"]:
                if not (0 <= int(m["start"]) < int(m["end"]) <= len(text)):
                    raise ValueError(f"span {m['start']}..{m['end']} outside the text")
        except (KeyError, TypeError, ValueError) as exc:
            raise LinkingError(f"{path}:{number}: needs text and mentions [{{start, end, entity_id}}] ({exc})") from exc
        records.append(record)
    return records


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def linker_evaluate(
    *, kb: KnowledgeBase, path: Path, params: LinkerParams | None = None, save: bool = True, progress=None
) -> dict:
    params = params or LinkerParams.from_settings()
    records = heldout_load(path=path)
    state = kb_state(kb)
    encoder_get(name=state.encoder_name).embed(["warm up the session"])  # load time is not linking time
    known = {info.key for info in state.entities.values()}
    in_kb = correct = gold_nil = nil_found = predicted_nil = predicted_nil_right = unknown_gold = 0
    e2e_predicted = e2e_gold = e2e_correct = 0
    nil_e2e_predicted = nil_e2e_gold = nil_e2e_right = 0
    # End to end the way the page and /api/link run it: names no alias covers are reported as NIL too.
    e2e_params = replace(params, unknown_names=params.scorer != "prior")
    times_ms = []
    for i, record in enumerate(records, start=1):
        text, gold = record["text"], record["mentions"]
        # End to end first, timed with nothing cached; it leaves the sentence vectors in the cache
        # so linking the gold spans of the same text does not encode it again.
        started = time.perf_counter()
        end_to_end = link(state=state, text=text, params=e2e_params, cache="write")
        times_ms.append((time.perf_counter() - started) * 1000)
        gold_links = {(int(m["start"]), int(m["end"]), m["entity_id"]) for m in gold if m.get("entity_id") in known}
        found = {(m.start, m.end, m.entity.key) for m in end_to_end.mentions if m.entity is not None}
        e2e_gold += len(gold_links)
        e2e_predicted += len(found)
        e2e_correct += len(found & gold_links)
        # NIL end to end: every span the linker reports as NIL (an alias below the bar, part of a longer name, a
        # name no alias covers) against the gold NIL spans, exactly ("Yesterday Angela Merkel" is not "Angela Merkel").
        gold_nil_spans = {(int(m["start"]), int(m["end"])) for m in gold if m.get("entity_id") not in known}
        found_nil = {(m.start, m.end) for m in end_to_end.mentions if m.entity is None}
        nil_e2e_gold += len(gold_nil_spans)
        nil_e2e_predicted += len(found_nil)
        nil_e2e_right += len(found_nil & gold_nil_spans)
        spans = [(int(m["start"]), int(m["end"])) for m in gold]
        on_gold = link(state=state, text=text, spans=spans, params=params, cache=True)
        for m, linked in zip(gold, on_gold.mentions):
            predicted = linked.entity.key if linked.entity else None
            expected = m.get("entity_id")
            if expected is not None and expected not in known:
                unknown_gold += 1  # gold names an entity the KB lacks: counts as NIL
                expected = None
            if expected is None:
                gold_nil += 1
                nil_found += predicted is None
            else:
                in_kb += 1
                correct += predicted == expected
            if predicted is None:
                predicted_nil += 1
                predicted_nil_right += expected is None
        if progress and i % 100 == 0:
            progress(f"  {i}/{len(records)} texts, p50 {np.percentile(times_ms, 50):.1f} ms")
    precision, recall = _ratio(e2e_correct, e2e_predicted), _ratio(e2e_correct, e2e_gold)
    f1 = round(2 * precision * recall / (precision + recall), 4) if precision and recall else 0.0
    words = [len(r["text"].split()) for r in records]
    metrics = {
        "model": kb.label,
        "kb_revision": state.revision,
        "scorer": params.scorer,
        "data": str(path),
        "n_texts": len(records),
        "n_mentions": in_kb + gold_nil,
        "n_in_kb": in_kb,
        "n_nil": gold_nil,
        "accuracy": _ratio(correct, in_kb),
        "nil_precision": _ratio(predicted_nil_right, predicted_nil),
        "nil_recall": _ratio(nil_found, gold_nil),
        "end_to_end": {"precision": precision, "recall": recall, "f1": f1},
        "nil_end_to_end": {
            "precision": _ratio(nil_e2e_right, nil_e2e_predicted),
            "recall": _ratio(nil_e2e_right, nil_e2e_gold),
            "predicted": nil_e2e_predicted,
            "gold": nil_e2e_gold,
        },
        "p50_ms_per_text": round(float(np.percentile(times_ms, 50)), 2) if times_ms else None,
        "p95_ms_per_text": round(float(np.percentile(times_ms, 95)), 2) if times_ms else None,
        "mean_words_per_text": round(float(np.mean(words)), 1) if words else None,
        # The prior-only baseline uses none of the similarity settings: argmax P(entity | alias), never NIL
        # unless no alias fits the span.
        "params": {"scorer": "prior"}
        if params.scorer == "prior"
        else {
            "score": params.score,
            "top_k": params.top_k,
            "prior_weight": params.prior_weight,
            "nil_threshold": params.nil_threshold,
            "nil_relative": params.nil_relative,
            "profile_weight": params.profile_weight,
            "context": state.context_style,
            "index": state.index.kind,
        },
    }
    if unknown_gold:
        metrics["gold_entities_missing_from_kb"] = unknown_gold
    if save:
        EvaluationRun.objects.create(
            kb=kb, scorer=params.scorer, data_path=str(path), kb_revision=state.revision, metrics=metrics
        )
    return metrics


# --- Leave-one-out on the KB itself (tune_linker) --------------------------------------------


@dataclass
class LooData:
    """A KB's stored mentions as a dev set. Each ambiguous stored mention is one in-KB case (linked
    against the KB without that mention, its own prior count removed) and one NIL case (its whole
    entity left out, so the right answer is NIL)."""

    label: str
    mentions: list[tuple]  # (pk, entity id, text, start, end)
    entity_of: np.ndarray
    rows_of: dict[int, np.ndarray]
    profiles: dict[int, np.ndarray]
    surface_counts: dict[str, dict[int, int]]
    cases: list[tuple]  # (row, candidates, gold entity or None, excluded entity or None)
    stored_vectors: np.ndarray


def loo_data(*, kb: KnowledgeBase) -> LooData:
    rows = list(
        Mention.objects.filter(entity__kb=kb).order_by("pk").values_list("pk", "entity_id", "text", "start", "end", "embedding")
    )
    if not rows:
        raise LinkingError(f"{kb.label} has no mentions")
    matcher = AliasMatcher.build(Alias.objects.filter(kb=kb).values_list("text", "entity_id"))
    profiles = {
        pk: np.frombuffer(bytes(blob), dtype=np.float32)
        for pk, blob in Entity.objects.filter(kb=kb, profile__isnull=False).values_list("pk", "profile")
    }
    entity_of = np.asarray([m[1] for m in rows])
    surface_counts: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    cases = []
    for row, (_, e, text, s, t, _) in enumerate(rows):
        surface_counts[fold(text[s:t])][e] += 1
        candidates = matcher.candidates(text[s:t])
        if len(candidates) >= 2 and e in candidates:
            cases.append((row, candidates, e, None))
            cases.append((row, tuple(c for c in candidates if c != e), None, e))
    return LooData(
        label=kb.label,
        mentions=[m[:5] for m in rows],
        entity_of=entity_of,
        rows_of={e: np.flatnonzero(entity_of == e) for e in set(entity_of.tolist())},
        profiles=profiles,
        surface_counts=surface_counts,
        cases=cases,
        stored_vectors=np.stack([np.frombuffer(bytes(m[5]), dtype=np.float32) for m in rows]),
    )


def loo_similarities(*, data: LooData, vectors: np.ndarray) -> dict:
    """Per (case row, candidate): its stored mentions' cosines (best first, the case's own mention left
    out), the profile cosine and the centroid cosine. Computed once per context style."""
    sims: dict = {}
    for row, candidates, _, _ in data.cases:
        q = vectors[row]
        for c in candidates:
            if (row, c) in sims:
                continue
            rows = data.rows_of.get(c, np.zeros(0, dtype=int))
            rows = rows[rows != row]
            sims[(row, c)] = np.sort(vectors[rows] @ q)[::-1]
            profile = data.profiles.get(c)
            sims[(row, c, "profile")] = float(profile @ q) if profile is not None else None
            if len(rows):
                centroid = vectors[rows].sum(axis=0)
                sims[(row, c, "centroid")] = float(centroid @ q / max(np.linalg.norm(centroid), 1e-12))
    return sims


def loo_evaluate(
    *, data: LooData, sims: dict, params: LinkerParams, typical: dict[int, float], centroid: bool = False
) -> dict:
    """In-KB accuracy and NIL precision/recall of `params` on the leave-one-out cases, scored with the
    linker's own functions (mention_similarity, combined_similarity, alias_prior, candidate_score,
    nil_bar_for). `centroid`: compare with the entity's aggregate embedding instead of its k nearest."""
    correct = in_kb = nil_pred = nil_right = nil_gold = nil_found = 0
    for row, candidates, gold, excluded in data.cases:
        _, e, text, s, t = data.mentions[row]
        counts = dict(data.surface_counts[fold(text[s:t])])
        counts[e] = counts.get(e, 0) - 1  # the case's own mention does not count towards the prior
        prior = alias_prior(counts=counts, candidates=candidates)
        best, best_score, best_sim = None, -9.0, 0.0
        for c in candidates:
            if centroid:
                mention_sim = sims.get((row, c, "centroid"))
            else:
                mention_sim = mention_similarity(sims=sims[(row, c)], params=params)
            similarity = combined_similarity(mention_sim=mention_sim, profile_sim=sims[(row, c, "profile")], params=params)
            score = candidate_score(similarity=similarity, prior=prior[c], params=params)
            if score > best_score:
                best, best_score, best_sim = c, score, similarity
        predicted = None if best_sim < nil_bar_for(typical=typical.get(best), params=params) else best
        if gold is not None:
            in_kb += 1
            correct += predicted == gold
        else:
            nil_gold += 1
            nil_found += predicted is None
        if predicted is None:
            nil_pred += 1
            nil_right += gold is None
    return {
        "accuracy": correct / max(in_kb, 1),
        "nil_precision": nil_right / max(nil_pred, 1),
        "nil_recall": nil_found / max(nil_gold, 1),
        "n_in_kb": in_kb,
        "n_nil": nil_gold,
    }


def rival_pairs_evaluate(
    *, kb: KnowledgeBase, data: LooData, windows: list[int], params: LinkerParams, limit: int = 300
) -> dict[int, dict]:
    """Dev set for one context per mention, from the KB itself: two stored mentions of *different*
    entities with the same surface, joined into one sentence ("…every year; The small town of Paris…").
    Each mention is linked against the KB without both source mentions (and their prior counts), with
    its context built by `mention_contexts` for every `rival_window` in `windows` (0 = whole sentence).
    Returns {window: {"accuracy", "n"}}."""
    from .detection import DetectedSpan, mention_contexts

    matcher = AliasMatcher.build(Alias.objects.filter(kb=kb).values_list("text", "entity_id"))
    by_surface: dict[str, list[int]] = defaultdict(list)
    for row, (_, _, text, s, t) in enumerate(data.mentions):
        by_surface[text[s:t]].append(row)
    pairs = []
    for rows in by_surface.values():
        for i, a in enumerate(rows):
            partner = next((b for b in rows[i + 1 :] if data.mentions[b][1] != data.mentions[a][1]), None)
            if partner is not None:
                pairs.append((a, partner))
    pairs = pairs[:limit]
    items = []  # (joined text, spans, [(row, gold)], excluded rows)
    for a, b in pairs:
        _, ea, ta, sa, xa = data.mentions[a]
        _, eb, tb, sb, xb = data.mentions[b]
        first = ta.rstrip().rstrip(".!?")
        joined = f"{first}; {tb}"
        offset = len(first) + 2
        spans = [
            DetectedSpan(sa, xa, ta[sa:xa], matcher.candidates(ta[sa:xa]), fold(ta[sa:xa])),
            DetectedSpan(sb + offset, xb + offset, tb[sb:xb], matcher.candidates(tb[sb:xb]), fold(tb[sb:xb])),
        ]
        items.append((joined, spans, [(a, ea), (b, eb)]))
    contexts = {w: [mention_contexts(j, spans, style=kb.context_style, rival_window=w) for j, spans, _ in items]
                for w in windows}
    distinct = list(dict.fromkeys(c for per in contexts.values() for pair in per for c in pair))
    vectors = dict(zip(distinct, embed_texts(texts=distinct, encoder_name=kb.encoder_name)))
    typical = typical_similarity(vectors=data.stored_vectors, entity_ids=data.entity_of, profiles=data.profiles,
                                 params=params)
    out = {}
    for w in windows:
        correct = total = 0
        for (joined, spans, golds), pair_contexts in zip(items, contexts[w]):
            excluded = {row for row, _ in golds}
            for span, (row, gold), context in zip(spans, golds, pair_contexts):
                q = vectors[context]
                _, _, text, s, t = data.mentions[row]
                counts = dict(data.surface_counts[fold(text[s:t])])
                for other, entity in golds:
                    if fold(data.mentions[other][2][data.mentions[other][3] : data.mentions[other][4]]) == fold(text[s:t]):
                        counts[entity] = counts.get(entity, 0) - 1
                prior = alias_prior(counts=counts, candidates=span.entity_ids)
                best, best_score, best_sim = None, -9.0, 0.0
                for c in span.entity_ids:
                    rows = [r for r in data.rows_of.get(c, []) if r not in excluded]
                    sims = np.sort(data.stored_vectors[rows] @ q)[::-1] if rows else []
                    profile = data.profiles.get(c)
                    similarity = combined_similarity(
                        mention_sim=mention_similarity(sims=sims, params=params),
                        profile_sim=float(profile @ q) if profile is not None else None,
                        params=params,
                    )
                    score = candidate_score(similarity=similarity, prior=prior[c], params=params)
                    if score > best_score:
                        best, best_score, best_sim = c, score, similarity
                predicted = None if best_sim < nil_bar_for(typical=typical.get(best), params=params) else best
                correct += predicted == gold
                total += 1
        out[w] = {"accuracy": round(correct / max(total, 1), 4), "n": total}
    return out
