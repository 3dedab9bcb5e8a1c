"""The linking engine: detect → candidates with alias priors → similarity to stored mentions → NIL.

Each process keeps one `KBState` per KB (aliases automaton, priors, mention index, aggregate
embeddings). Before answering, `kb_state()` reads the KB's `revision` (one indexed query) and
rebuilds the state when an edit bumped it, so edits made by any process show on the next request.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings

from .detection import (
    AliasMatcher,
    DetectedSpan,
    NameModel,
    PlainContext,
    context_styled,
    fold,
    longer_name,
    mention_contexts_plain,
    unknown_names,
)
from .index import MentionIndex, mention_index_build
from .models import Alias, Entity, KnowledgeBase, Mention

logger = logging.getLogger(__name__)


# --- Encoder ------------------------------------------------------------------------------

_fallback_encoders: dict[str, object] = {}
_encoder_lock = threading.Lock()


def encoder_get(*, name: str | None = None):
    """The KB's sentence encoder from the model registry (apps.modelhub), cached per process.

    When the registry has no such encoder yet (a fresh test database, before `setup_demo`),
    the same all-MiniLM-L6-v2 int8 files are loaded straight from their package, so stored
    embeddings stay comparable either way.
    """
    name = name or settings.LINKING_ENCODER
    try:
        from apps.modelhub.selectors import encoder_for

        return encoder_for(name=name)
    except LookupError as exc:  # ModelNotFound: not registered (yet)
        with _encoder_lock:
            if name not in _fallback_encoders:
                from apps.modelhub.encoders import SentenceEncoder, minilm_package_files

                logger.info("encoder %r not in the registry (%s): using the packaged MiniLM files", name, exc)
                onnx_path, tokenizer_path = minilm_package_files()
                _fallback_encoders[name] = SentenceEncoder(onnx_path, tokenizer_path, max_length=128)
            return _fallback_encoders[name]


def embed(*, texts: list[str], encoder_name: str | None = None, batch_size: int = 64) -> np.ndarray:
    encoder = encoder_get(name=encoder_name)
    parts = [encoder.embed(texts[lo : lo + batch_size]) for lo in range(0, len(texts), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, 384), dtype=np.float32)


# --- Parameters -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkerParams:
    score: str = "topk"  # "topk": mean of the k most similar stored mentions; "nearest": the single best
    top_k: int = 3
    prior_weight: float = 0.15
    profile_weight: float = 0.5  # similarity = (1 - w)·mentions + w·profile ("name: description")
    nil_threshold: float = 0.15
    nil_relative: float = 0.5  # NIL below this share of the entity's typical similarity (see typical_similarity)
    aggregate_cutoff: int = 200
    shortlist: int = 8
    use_aggregates: bool = True
    scorer: str = "linker"  # "linker" or "prior" (the prior-only baseline)
    unknown_names: bool = False  # also report capitalised names no alias covers as NIL mentions (text_link: on)
    longer_names: bool = True  # an alias continued by a longer name ("Jordan Peele") is NIL
    rival_window: int = 6  # words each side of a mention whose sentence names a rival (detection.mention_contexts)
    near_tie: float = 0.01  # a runner-up this close to the best score is flagged ("near tie")

    @classmethod
    def from_settings(cls, **overrides) -> LinkerParams:
        values = dict(
            score=settings.LINKING_SCORE,
            top_k=settings.LINKING_TOP_K,
            prior_weight=settings.LINKING_PRIOR_WEIGHT,
            profile_weight=settings.LINKING_PROFILE_WEIGHT,
            nil_threshold=settings.LINKING_NIL_THRESHOLD,
            nil_relative=settings.LINKING_NIL_RELATIVE,
            aggregate_cutoff=settings.LINKING_AGGREGATE_CUTOFF,
            shortlist=settings.LINKING_SHORTLIST,
            rival_window=getattr(settings, "LINKING_RIVAL_WINDOW", cls.rival_window),
            near_tie=settings.LINKING_NEAR_TIE,
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


# --- In-memory state per KB -------------------------------------------------------------------


# The scoring, as small functions: the linker, `typical_similarity` and the leave-one-out tuning
# (evaluation.loo_evaluate, used by `tune_linker`) all call these, so they cannot drift apart.


def neighbours_k(*, params: LinkerParams) -> int:
    return 1 if params.score == "nearest" else params.top_k


def mention_similarity(*, sims, params: LinkerParams) -> float | None:
    """Mean cosine of the k most similar stored mentions (`sims` sorted best first); None when there are none."""
    best = list(sims)[: neighbours_k(params=params)]
    return float(np.mean(best)) if best else None


def combined_similarity(*, mention_sim: float | None, profile_sim: float | None, params: LinkerParams) -> float:
    """(1 − w)·mentions + w·profile ("name: description"); whichever exists when one is missing."""
    if mention_sim is not None and profile_sim is not None:
        return (1 - params.profile_weight) * mention_sim + params.profile_weight * profile_sim
    if mention_sim is not None:
        return mention_sim
    return profile_sim if profile_sim is not None else 0.0


def candidate_score(*, similarity: float, prior: float, params: LinkerParams) -> float:
    """score = (1 − w)·similarity + w·prior."""
    return (1 - params.prior_weight) * similarity + params.prior_weight * prior


@dataclass(frozen=True)
class ScoreTerm:
    """One term of a candidate's score: weight × value. The terms of `score_terms` add up to the score."""

    name: str  # "mentions", "description", "prior"
    weight: float
    value: float

    @property
    def contribution(self) -> float:
        return self.weight * self.value


def score_terms(
    *, mention_sim: float | None, profile_sim: float | None, prior: float, params: LinkerParams
) -> list[ScoreTerm]:
    """The score as a sum of terms, the same arithmetic as `combined_similarity` then `candidate_score`:
    (1 − w_prior)(1 − w_profile)·mentions + (1 − w_prior)·w_profile·description + w_prior·prior.
    A missing part (no stored mentions, no description) hands its weight to the other, as `combined_similarity`
    does."""
    if params.scorer == "prior":
        return [ScoreTerm("prior", 1.0, prior)]
    similarity_weight = 1 - params.prior_weight
    terms = []
    if mention_sim is not None and profile_sim is not None:
        terms.append(ScoreTerm("mentions", similarity_weight * (1 - params.profile_weight), mention_sim))
        terms.append(ScoreTerm("description", similarity_weight * params.profile_weight, profile_sim))
    elif mention_sim is not None:
        terms.append(ScoreTerm("mentions", similarity_weight, mention_sim))
    elif profile_sim is not None:
        terms.append(ScoreTerm("description", similarity_weight, profile_sim))
    terms.append(ScoreTerm("prior", params.prior_weight, prior))  # listed at weight 0 too: it is in the formula
    return terms


def rounded_to_total(values: list[float], *, digits: int = 3) -> list[float]:
    """Round each value so that the rounded values add up to the rounded total (largest remainder), so an
    explanation's shown terms sum to its shown score."""
    unit = 10**digits
    total = round(sum(values) * unit)
    floors = [int(np.floor(v * unit)) for v in values]
    order = sorted(range(len(values)), key=lambda i: -(values[i] * unit - floors[i]))
    for i in order[: max(0, total - sum(floors))]:
        floors[i] += 1
    return [f / unit for f in floors]


def alias_prior(*, counts: dict[int, float], candidates) -> dict[int, float]:
    """P(entity | alias) = (1 + stored mentions of the entity with that surface) / sum over the candidates."""
    raw = {c: 1.0 + counts.get(c, 0) for c in candidates}
    total = sum(raw.values()) or 1.0
    return {c: v / total for c, v in raw.items()}


def nil_bar_for(*, typical: float | None, params: LinkerParams) -> float:
    """Below this similarity the best candidate is not trusted: max(absolute floor, relative × typical)."""
    relative = params.nil_relative * typical if typical is not None else 0.0
    return max(params.nil_threshold, relative)


def typical_similarity(
    *, vectors: np.ndarray, entity_ids: np.ndarray, profiles: dict[int, np.ndarray], params: LinkerParams,
    max_mentions: int | None = None,
) -> dict[int, float]:
    """Per entity: the similarity its own stored mentions get, each scored against the others.

    Some entities are described by looser contexts than others; the NIL bar is set relative to
    this (leave-one-out on the demo KB: 32% NIL recall vs 10% for one absolute threshold at the
    same in-KB accuracy). Computed at every rebuild, so it follows each edit.

    A rebuild must not be quadratic in an entity's mentions: past `max_mentions` (settings
    LINKING_TYPICAL_MAX_MENTIONS) a fixed sample of them (seeded by the entity id, so the same KB gives
    the same bar) stands for the rest.
    """
    cap = settings.LINKING_TYPICAL_MAX_MENTIONS if max_mentions is None else max_mentions
    typical: dict[int, float] = {}
    for entity in np.unique(entity_ids):
        own = vectors[entity_ids == entity]
        if len(own) > cap:
            rows = np.random.default_rng(int(entity)).choice(len(own), size=cap, replace=False)
            own = own[np.sort(rows)]
        sims = own @ own.T
        profile = profiles.get(int(entity))
        values = []
        for i in range(len(own)):
            others = np.delete(sims[i], i)
            mention_sim = mention_similarity(sims=np.sort(others)[::-1], params=params)
            profile_sim = float(profile @ own[i]) if profile is not None else None
            if mention_sim is None and profile_sim is None:
                continue
            values.append(combined_similarity(mention_sim=mention_sim, profile_sim=profile_sim, params=params))
        if values:
            typical[int(entity)] = float(np.mean(values))
    return typical


def nil_bar(*, state: KBState, entity_id: int, params: LinkerParams) -> float:
    """Below this similarity the best candidate is not trusted: max(absolute floor, relative × typical)."""
    return nil_bar_for(typical=state.typical.get(entity_id), params=params)


@dataclass(frozen=True)
class EntityInfo:
    id: int
    key: str
    name: str
    type: str
    description: str
    url: str
    mention_count: int


@dataclass
class KBState:
    kb_id: int
    revision: int
    label: str
    encoder_name: str
    context_style: str
    entities: dict[int, EntityInfo]
    matcher: AliasMatcher
    priors: dict[str, dict[int, float]]  # folded alias → {entity id: P(entity | alias)}
    index: MentionIndex
    aggregates: np.ndarray  # (n entities with mentions, dim), L2-normalised
    aggregate_rows: dict[int, int]
    profiles: dict[int, np.ndarray]
    typical: dict[int, float] = field(default_factory=dict)
    names: NameModel | None = None  # which capitalised words are names, learnt from the KB's text
    pinned: np.ndarray | None = None  # (n pinned mentions, dim)
    pinned_rows: list[tuple[int, int]] = field(default_factory=list)  # (mention id, entity id) per pinned row
    encoder: object = None  # resolved from the registry once per build, not on every request
    created_at: object = None
    built_ms: float = 0.0

    @property
    def version(self) -> tuple:
        return (self.revision, self.created_at)

    @classmethod
    def build(cls, kb: KnowledgeBase, *, index_kind: str | None = None) -> KBState:
        started = time.perf_counter()
        entities_raw = list(
            Entity.objects.filter(kb=kb).values_list("pk", "key", "name", "type", "description", "url", "aggregate")
        )
        profiles = {
            pk: np.frombuffer(bytes(blob), dtype=np.float32)
            for pk, blob in Entity.objects.filter(kb=kb, profile__isnull=False).values_list("pk", "profile")
        }
        aliases = list(Alias.objects.filter(kb=kb).values_list("text", "entity_id"))
        mentions = list(
            Mention.objects.filter(entity__kb=kb).values_list(
                "pk", "entity_id", "embedding", "text", "start", "end", "pinned"
            )
        )
        counts: dict[int, int] = defaultdict(int)
        surface_counts: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        for _, entity_id, _, text, start, end, _ in mentions:
            counts[entity_id] += 1
            surface_counts[fold(text[start:end])][entity_id] += 1
        entities = {
            pk: EntityInfo(pk, key, name, etype, description, url, counts.get(pk, 0))
            for pk, key, name, etype, description, url, _ in entities_raw
        }
        matcher = AliasMatcher.build(aliases)
        # P(entity | alias) from how often each surface names each entity in the stored
        # mentions, plus one for being listed as an alias at all (so new entities get a share).
        priors: dict[str, dict[int, float]] = {
            norm: alias_prior(counts=surface_counts[norm], candidates=dict.fromkeys(e for _, e in entries))
            for norm, entries in matcher.entries.items()
        }
        dim = 384
        if mentions:
            vectors = np.stack([np.frombuffer(bytes(m[2]), dtype=np.float32) for m in mentions])
            dim = vectors.shape[1]
        else:
            vectors = np.zeros((0, dim), dtype=np.float32)
        index = mention_index_build(
            name=f"kb{kb.pk}_r{kb.revision}_{uuid.uuid4().hex[:8]}",
            vectors=vectors,
            mention_ids=np.asarray([m[0] for m in mentions], dtype=np.int64),
            entity_ids=np.asarray([m[1] for m in mentions], dtype=np.int64),
            kind=index_kind,
        )
        typical = typical_similarity(
            vectors=vectors,
            entity_ids=np.asarray([m[1] for m in mentions], dtype=np.int64),
            profiles=profiles,
            params=LinkerParams.from_settings(),
        )
        names = NameModel.from_texts([m[3] for m in mentions] + [e[4] for e in entities_raw])
        pinned_rows = [(m[0], m[1]) for m in mentions if m[6]]
        pinned = vectors[[i for i, m in enumerate(mentions) if m[6]]] if pinned_rows else None
        aggregate_rows, rows = {}, []
        for pk, *_, aggregate in entities_raw:
            if aggregate is not None and counts.get(pk):
                vector = np.frombuffer(bytes(aggregate), dtype=np.float32)
                aggregate_rows[pk] = len(rows)
                rows.append(vector / max(float(np.linalg.norm(vector)), 1e-12))
        aggregates = np.stack(rows).astype(np.float32) if rows else np.zeros((0, dim), dtype=np.float32)
        return cls(
            kb_id=kb.pk,
            revision=kb.revision,
            label=kb.label,
            encoder_name=kb.encoder_name,
            context_style=kb.context_style,
            entities=entities,
            matcher=matcher,
            priors=priors,
            index=index,
            aggregates=aggregates,
            aggregate_rows=aggregate_rows,
            profiles=profiles,
            typical=typical,
            names=names,
            pinned=pinned,
            pinned_rows=pinned_rows,
            created_at=kb.created_at,
            encoder=encoder_get(name=kb.encoder_name),
            built_ms=(time.perf_counter() - started) * 1000,
        )

    def prior(self, surface: str, candidates: tuple[int, ...]) -> dict[int, float]:
        table = self.priors.get(fold(surface), {})
        raw = {c: table.get(c, 0.0) for c in candidates}
        total = sum(raw.values()) or 1.0
        return {c: v / total for c, v in raw.items()}


_states: dict[tuple[int, str], KBState] = {}
_states_lock = threading.Lock()


def kb_state(kb: KnowledgeBase, *, index_kind: str | None = None) -> KBState:
    """The up-to-date state of this KB for this process (rebuilt when its revision moved)."""
    kind = index_kind or settings.LINKING_VECTOR_INDEX
    row = KnowledgeBase.objects.filter(pk=kb.pk).values_list("revision", "created_at").first()
    if row is None:
        raise KnowledgeBase.DoesNotExist(f"knowledge base {kb} was deleted")
    # created_at too: a KB deleted and made again may get the same id (SQLite after a rollback).
    version = (row[0], row[1])
    key = (kb.pk, kind)
    state = _states.get(key)
    if state is not None and state.version == version:
        return state
    with _states_lock:
        state = _states.get(key)
        if state is None or state.version != version:
            kb.refresh_from_db()
            old, state = state, KBState.build(kb, index_kind=kind)
            _states[key] = state
            if old is not None:
                old.index.close()
            logger.info("linking: built %s revision %s in %.0f ms", state.label, state.revision, state.built_ms)
    return state


def kb_state_forget_all() -> None:
    """Drop every cached state (tests, benchmarks)."""
    with _states_lock:
        for state in _states.values():
            state.index.close()
        _states.clear()


# --- Linking ----------------------------------------------------------------------------------


@dataclass
class Candidate:
    entity: EntityInfo
    score: float
    similarity: float | None
    prior: float
    evidence: list[tuple[int, float]] = field(default_factory=list)  # (mention id, cosine), best first
    approximate: bool = False  # scored by its aggregate embedding only (popular-alias shortlist)
    terms: list[ScoreTerm] = field(default_factory=list)  # the score as a sum (score_terms)
    mention_sim: float | None = None  # mean cosine of the k nearest stored mentions (or the aggregate's)

    @property
    def terms_shown(self) -> list[tuple[ScoreTerm, float]]:
        """(term, contribution rounded to 3 places); the rounded contributions add up to the score rounded."""
        return list(zip(self.terms, rounded_to_total([t.contribution for t in self.terms])))


@dataclass
class LinkedMention:
    start: int
    end: int
    text: str
    entity: EntityInfo | None  # None = NIL
    score: float
    similarity: float | None
    candidates: list[Candidate]
    context: PlainContext | None = None  # what the encoder read for this mention (a correction stores exactly this)
    pinned_by: int | None = None  # id of the pinned stored mention that decided it
    nil_bar: float | None = None  # the similarity the best candidate needed
    unknown: bool = False  # a name no alias covers (no candidates at all)
    longer_name: str = ""  # NIL because the alias is part of this longer name ("Jordan Peele")
    near_tie: tuple[Candidate, Candidate] | None = None  # (best, runner-up) when their scores are within near_tie

    @property
    def near_tie_text(self) -> str:
        if self.near_tie is None:
            return ""
        best, second = self.near_tie
        return f"near tie: {best.entity.name} {best.score:.3f} vs {second.entity.name} {second.score:.3f}"

    @property
    def nil_reason(self) -> str:
        if self.entity is not None:
            return ""
        if self.unknown:
            return "a name that no alias in the KB covers"
        if self.longer_name:
            return f"part of the longer name “{self.longer_name}”, which is not in the KB"
        if not self.candidates:
            return "no alias of the KB fits this span"
        return "no candidate is similar enough"


PIN_MATCH = 0.97  # cosine between a mention's context and a pinned mention's context that counts as "the same"


def pinned_match(*, state: KBState, query: np.ndarray | None, candidates: tuple[int, ...]) -> tuple[int, int] | None:
    """(mention id, entity id) of the pinned mention read in (nearly) this very context, among the candidates."""
    if query is None or state.pinned is None:
        return None
    sims = state.pinned @ query
    allowed = set(candidates)
    best = None
    for row in np.argsort(-sims):
        if sims[row] < PIN_MATCH:
            break
        if state.pinned_rows[row][1] in allowed:
            best = state.pinned_rows[row]
            break
    return best


@dataclass
class LinkResult:
    mentions: list[LinkedMention]
    latency_ms: float
    encode_ms: float
    kb_label: str
    kb_revision: int


def candidates_score(
    *,
    state: KBState,
    query: np.ndarray | None,
    candidates: tuple[int, ...],
    prior: dict[int, float],
    params: LinkerParams,
) -> list[Candidate]:
    entities = state.entities
    if query is None or params.scorer == "prior":
        ranked = [
            Candidate(entities[c], prior[c], None, prior[c], terms=[ScoreTerm("prior", 1.0, prior[c])])
            for c in candidates
        ]
        return sorted(ranked, key=lambda c: -c.score)
    exact = list(candidates)
    approximate: dict[int, float] = {}
    stored = sum(entities[c].mention_count for c in candidates)
    if params.use_aggregates and stored > params.aggregate_cutoff and len(candidates) > params.shortlist:
        # Popular alias: one dot product per candidate against its aggregate embedding, then the
        # exact per-mention comparison for the shortlist only.
        with_rows = [c for c in candidates if c in state.aggregate_rows]
        sims = state.aggregates[[state.aggregate_rows[c] for c in with_rows]] @ query
        order = np.argsort(-sims)
        exact = [with_rows[i] for i in order[: params.shortlist]]
        approximate = {with_rows[i]: float(sims[i]) for i in order[params.shortlist :]}
    hits = state.index.top_per_entity(query, entities=exact, k=neighbours_k(params=params))
    ranked = []
    for c in candidates:
        evidence = hits.get(c, [])
        is_approx = c in approximate
        if is_approx:
            mention_sim = approximate[c]
        else:  # None without stored mentions: the profile (or the prior) decides
            mention_sim = mention_similarity(sims=[s for _, s in evidence], params=params)
        profile = state.profiles.get(c)
        profile_sim = float(profile @ query) if profile is not None else None
        similarity = combined_similarity(mention_sim=mention_sim, profile_sim=profile_sim, params=params)
        score = candidate_score(similarity=similarity, prior=prior[c], params=params)
        terms = score_terms(mention_sim=mention_sim, profile_sim=profile_sim, prior=prior[c], params=params)
        ranked.append(Candidate(entities[c], score, similarity, prior[c], evidence, is_approx, terms, mention_sim))
    return sorted(ranked, key=lambda c: -c.score)


def near_tie_find(*, ranked: list[Candidate], margin: float) -> tuple[Candidate, Candidate] | None:
    """(best, runner-up) when the runner-up's score is within `margin` of the best one (ranked best first)."""
    if len(ranked) < 2 or ranked[0].score - ranked[1].score > margin:
        return None
    return ranked[0], ranked[1]


def spans_detect(*, state: KBState, text: str, spans: list[tuple[int, int]] | None) -> list[DetectedSpan]:
    if spans is None:
        return state.matcher.find(text)
    out = []
    for start, end in spans:
        surface = text[start:end]
        out.append(DetectedSpan(start, end, surface, state.matcher.candidates(surface), fold(surface)))
    return out


_context_cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
_context_cache_lock = threading.Lock()
CONTEXT_CACHE_SIZE = 4096


def _contexts_embed(*, encoder, encoder_name: str, contexts: list[str], cache: bool | str) -> dict[str, np.ndarray]:
    """One encoder call for the distinct contexts not cached yet (a text's mentions often share a sentence).

    cache: True reads and fills the per-process cache, "write" only fills it (timed evaluation runs).
    """
    found: dict[str, np.ndarray] = {}
    if cache is True:
        with _context_cache_lock:
            for context in contexts:
                vector = _context_cache.get((encoder_name, context))
                if vector is not None:
                    found[context] = vector
    missing = [c for c in dict.fromkeys(contexts) if c not in found]
    if missing:
        embedded = encoder.embed(missing)
        found.update(zip(missing, embedded))
        if cache:
            with _context_cache_lock:
                for context, vector in zip(missing, embedded):
                    _context_cache[(encoder_name, context)] = vector
                while len(_context_cache) > CONTEXT_CACHE_SIZE:
                    _context_cache.popitem(last=False)
    return found


def link(
    *,
    state: KBState,
    text: str,
    spans: list[tuple[int, int]] | None = None,
    params: LinkerParams | None = None,
    cache: bool | str = False,
) -> LinkResult:
    """Link `text`: detected mentions, or the given gold/hand-marked spans. All contexts go to the encoder at once."""
    params = params or LinkerParams.from_settings()
    started = time.perf_counter()
    detected = spans_detect(state=state, text=text, spans=spans)
    needs_vector = [i for i, d in enumerate(detected) if d.entity_ids and params.scorer != "prior"]
    plain = mention_contexts_plain(text, detected, style=state.context_style, rival_window=params.rival_window)
    encode_started = time.perf_counter()
    vectors: dict[int, np.ndarray] = {}
    if needs_vector:
        # One context per mention (other mentions that could name the same entity taken out), all in one batch.
        contexts = {i: context_styled(plain[i], style=state.context_style) for i in needs_vector}
        by_context = _contexts_embed(
            encoder=state.encoder, encoder_name=state.encoder_name, contexts=list(contexts.values()), cache=cache
        )
        vectors = {i: by_context[c] for i, c in contexts.items()}
    encode_ms = (time.perf_counter() - encode_started) * 1000
    mentions = []
    for i, span in enumerate(detected):
        if not span.entity_ids:
            mentions.append(LinkedMention(span.start, span.end, span.text, None, 0.0, None, [], plain[i]))
            continue
        prior = state.prior(span.text, span.entity_ids)
        ranked = candidates_score(
            state=state, query=vectors.get(i), candidates=span.entity_ids, prior=prior, params=params
        )
        best = ranked[0]
        bar = nil_bar(state=state, entity_id=best.entity.id, params=params)
        is_nil = params.scorer != "prior" and (best.similarity or 0.0) < bar
        longer = None
        if params.scorer != "prior" and params.longer_names and state.names is not None:
            longer = longer_name(text, span.start, span.end, model=state.names)
            is_nil = is_nil or longer is not None
        pin = pinned_match(state=state, query=vectors.get(i), candidates=span.entity_ids) if params.scorer != "prior" else None
        if pin is not None:  # a correction pinned for this very context wins over the scores, the NIL bar and names
            best = next(c for c in ranked if c.entity.id == pin[1])
            is_nil = False
        mentions.append(
            LinkedMention(
                span.start, span.end, span.text, None if is_nil else best.entity, best.score, best.similarity, ranked,
                context=plain[i], pinned_by=pin[0] if pin else None, nil_bar=bar,
                longer_name=longer.text if longer is not None and pin is None else "",
                near_tie=near_tie_find(ranked=ranked, margin=params.near_tie),
            )
        )
    if spans is None and params.unknown_names and params.scorer != "prior" and state.names is not None:
        covered = [(m.start, m.end) for m in mentions]
        for run in unknown_names(text, covered=covered, model=state.names):
            mentions.append(LinkedMention(run.start, run.end, run.text, None, 0.0, None, [], unknown=True))
        mentions.sort(key=lambda m: m.start)
    return LinkResult(
        mentions=mentions,
        latency_ms=(time.perf_counter() - started) * 1000,
        encode_ms=encode_ms,
        kb_label=state.label,
        kb_revision=state.revision,
    )
