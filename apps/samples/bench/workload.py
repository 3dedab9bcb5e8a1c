"""The one search workload generator every benchmark draws from.

A pool of distinct queries over the demo table, each of a *kind* (common words, topic words, words
narrowed by a label or language, facet combinations, rare words, product codes or names, absent
words, id lookups), and two ways to replay it: every query once (`bench_fallback`), or with Zipf-like
popularity, so a few queries repeat very often and most are a long tail (`bench_hit_rate`).
"""
from __future__ import annotations

import random

import numpy as np

from apps.search.demo_data import demo_vocabulary
from apps.search.query import SearchQuery

TABLE = "samples"
# (kind, share of the distinct queries in the pool). Most searches are for words the subset has plenty
# of; ~8% look for rare words, codes, names, absent words or id lists, and some facet or word+facet
# combinations are too thin for a 5% subset. Which of them land on the popular ranks is chance (the seed).
POOL_MIX = (
    ("common_word", 0.34),
    ("topic_word", 0.25),
    ("word_and_facet", 0.27),
    ("facets", 0.06),
    ("rare_word", 0.03),
    ("code_or_name", 0.02),
    ("absent_word", 0.01),
    ("id_lookup", 0.02),
)
# bench_fallback's mix: the kinds that probe the subset's limits, each seen once.
FALLBACK_MIX = (
    ("common_word", 0.30),
    ("topic_word", 0.20),
    ("rare_word", 0.25),
    ("facets", 0.15),
    ("absent_word", 0.05),
    ("id_lookup", 0.05),
)


def _filters_for(kind: str, rng: random.Random, vocabulary: dict, rare: list[str], codes_and_names: list[str]):
    limit = rng.choice((10, 10, 10, 20, 50))
    if kind == "common_word":
        filters = [("text", "contains", rng.choice(vocabulary["frequent"]))]
    elif kind == "topic_word":
        filters = [("text", "contains", rng.choice(vocabulary["topic"]))]
    elif kind == "word_and_facet":
        word = rng.choice(vocabulary["frequent"] + vocabulary["topic"])
        extra = rng.choice([("label", "eq", rng.choice(vocabulary["labels"])), ("lang", "eq", "en"),
                            ("lang", "eq", rng.choice(["de", "fr", "es"]))])
        filters = [("text", "contains", word), extra]
    elif kind == "facets":
        filters = [("label", "eq", rng.choice(vocabulary["labels"])),
                   ("lang", "eq", rng.choice(["en", "en", "de", "fr", "es", "it", "nl"])),
                   ("domain", "eq", rng.choice(vocabulary["domains"]))]
    elif kind == "rare_word":
        filters = [("text", "contains", rng.choice(rare))]
    elif kind == "code_or_name":
        filters = [("text", "contains", rng.choice(codes_and_names or rare))]
    elif kind == "absent_word":
        filters = [("text", "contains", rng.choice(vocabulary["absent"]))]
    elif kind == "id_lookup":
        ids = sorted(rng.sample(range(0, 2_000_000), rng.randint(3, 10)))
        filters = [("id", "in", ",".join(map(str, ids)))]
        limit = len(ids)
    else:
        raise ValueError(f"unknown workload kind {kind!r}")
    return filters, limit


def workload_pool(*, size: int, seed: int, mix=POOL_MIX) -> list[dict]:
    """`size` distinct queries (SearchQuery.to_dict() plus their "kind"), in popularity-rank order."""
    vocabulary = demo_vocabulary()
    codes_and_names = [w for w in vocabulary["rare"] if "-" in w or " " in w]
    rare = [w for w in vocabulary["rare"] if w not in set(codes_and_names)]
    rng = random.Random(seed)
    kinds = [k for k, _ in mix]
    weights = [w for _, w in mix]
    pool: list[dict] = []
    seen: set[str] = set()
    attempts = 0
    while len(pool) < size and attempts < size * 20:
        attempts += 1
        kind = rng.choices(kinds, weights)[0]
        filters, limit = _filters_for(kind, rng, vocabulary, rare, codes_and_names)
        query = {"table": TABLE, "limit": limit, "kind": kind,
                 "filters": [{"column": c, "op": o, "value": v} for c, o, v in filters]}
        fingerprint = SearchQuery.from_dict(query).fingerprint()
        if fingerprint in seen:
            continue
        seen.add(fingerprint)
        pool.append(query)
    return pool


def workload_draw(*, pool: list[dict], count: int, exponent: float, seed: int) -> list[dict]:
    """`count` queries drawn from the pool with Zipf-like popularity (rank r ∝ 1/r^exponent)."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, len(pool) + 1) ** exponent
    ranks = rng.choice(len(pool), size=count, p=weights / weights.sum())
    return [pool[int(r)] for r in ranks]
