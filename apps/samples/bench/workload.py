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


# --- Realistic text at scale (bench_search) ------------------------------------------------------
# Words come from wordfreq's English list (in the wheel, works offline), drawn by their real frequency,
# so trigram statistics look like real text. The table has the demo table's schema (apps.search.demo_data),
# so tables.json's `samples` description serves it unchanged.

WORDFREQ_WORDS = 200_000
SEARCH_CLASSES = ("frequent", "rare", "absent", "two_frequent")
BENCH_DOMAINS = ("dailyherald.com", "worldwire.net", "metrotimes.com", "newsroom.io", "globalobserver.net",
                 "sundaystar.co.uk", "techpulse.dev", "sciencefeed.org", "healthwatch.net", "marketbeat.biz",
                 "screenscene.tv", "wanderlog.travel", "tastebuds.kitchen", "campusvoice.edu", "forumhub.org")
BENCH_LABELS = ("sports", "politics", "technology", "science", "health", "business", "entertainment", "travel")
BENCH_LANGS = ("en", "de", "fr", "es", "it", "nl")


def english_words() -> tuple[list[str], np.ndarray]:
    """wordfreq's 200k most frequent English words and their frequencies (normalised to sum 1)."""
    import wordfreq  # bench-only dependency (requirements/local.txt)

    words = wordfreq.top_n_list("en", WORDFREQ_WORDS)
    freqs = np.array([wordfreq.word_frequency(w, "en") for w in words], dtype=np.float64)
    return words, freqs / freqs.sum()


def realistic_table(*, rows: int, seed: int, start_id: int, words: list[str], probs: np.ndarray,
                    typo_share: float = 0.0, code_share: float = 0.0):
    """`rows` rows of the demo schema whose text/title/url are drawn from real word frequencies.

    The long tail of distinct words real text has and a fixed word list lacks: `typo_share` of the text's words
    misspelt (misspelling(): one random edit; misspellings of frequent words repeat), `code_share` of them
    replaced by a code (5-10 random letters and digits, such as ids, product codes and user names: nearly each
    one new). 0 and 0 (the default) draw exactly the rows they always drew."""
    import pyarrow as pa
    import pyarrow.compute as pc

    rng = np.random.default_rng([seed, start_id])
    vocab = pa.array(words)

    def join(counts, p=probs, typos=0.0, codes=0.0):
        ids = rng.choice(len(words), int(counts.sum()), p=p)
        offsets = np.zeros(len(counts) + 1, dtype=np.int32)
        np.cumsum(counts, out=offsets[1:])
        tokens = pc.take(vocab, pa.array(ids))
        if typos > 0:
            where = np.flatnonzero(rng.random(len(ids)) < typos)
            edits = rng.integers(0, 1 << 30, size=(len(where), 3))
            misspelt = pa.array([misspelling(words[w], *e) for w, e in zip(ids[where].tolist(), edits.tolist())])
            index = np.arange(len(ids), dtype=np.int64)
            index[where] = len(ids) + np.arange(len(where))
            tokens = pc.take(pa.concat_arrays([tokens, misspelt]), pa.array(index))
        if codes > 0:
            where = np.flatnonzero(rng.random(len(ids)) < codes)
            lengths = rng.integers(5, 11, len(where))
            alphabet = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz0123456789", dtype=np.uint8)
            letters = alphabet[rng.integers(0, 36, int(lengths.sum()))]
            letters[np.cumsum(lengths) - lengths] = alphabet[rng.integers(0, 26, len(where))]  # never digits only
            bounds = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
            made = pa.StringArray.from_buffers(len(where), pa.py_buffer(bounds.tobytes()), pa.py_buffer(letters.tobytes()))
            index = np.arange(len(ids), dtype=np.int64)
            index[where] = len(ids) + np.arange(len(where))
            tokens = pc.take(pa.concat_arrays([tokens.cast(pa.string()), made]), pa.array(index))
        return pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), tokens), " "), ids

    ids = np.arange(start_id, start_id + rows, dtype=np.int64)
    text, _ = join(rng.integers(12, 30, rows), typos=typo_share, codes=code_share)  # ~115 characters on average
    title, _ = join(rng.integers(3, 8, rows))
    slug_counts = rng.integers(2, 5, rows)
    slug_offsets = np.zeros(rows + 1, dtype=np.int32)
    np.cumsum(slug_counts, out=slug_offsets[1:])
    slug_ids = rng.choice(len(words), int(slug_counts.sum()), p=probs)
    slug = pc.binary_join(pa.ListArray.from_arrays(pa.array(slug_offsets), pc.take(vocab, pa.array(slug_ids))), "-")
    domain = pc.take(pa.array(BENCH_DOMAINS), pa.array(rng.integers(0, len(BENCH_DOMAINS), rows)))
    label = pc.take(pa.array(BENCH_LABELS), pa.array(rng.integers(0, len(BENCH_LABELS), rows)))
    url = pc.binary_join_element_wise("https://", domain, "/", label, "/", slug, "-",
                                      pc.cast(pa.array(ids), pa.string()), "")
    lang = pc.take(pa.array(BENCH_LANGS), pa.array(rng.choice(len(BENCH_LANGS), rows,
                                                              p=(0.8, 0.06, 0.05, 0.05, 0.02, 0.02))))
    start_s = 1_672_531_200  # 2023-01-01
    crawled = pa.array(rng.integers(start_s, start_s + 3 * 365 * 86400, rows) * 1_000_000, type=pa.timestamp("us"))
    return pa.table({"id": pa.array(ids), "url": url, "domain": domain, "title": title, "text": text,
                     "label": label, "lang": lang, "crawled_at": crawled,
                     "length": pc.cast(pc.utf8_length(text), pa.int32())})


LETTERS = "abcdefghijklmnopqrstuvwxyz"


def misspelling(word: str, kind: int, at: int, letter: int) -> str:
    """`word` with one edit, chosen by the three numbers: drop, double, swap with the next, or replace a
    letter (the way people mistype)."""
    if len(word) < 2:
        return word + LETTERS[letter % 26]
    i = at % len(word)
    kind %= 4
    if kind == 0:
        return word[:i] + word[i + 1:]
    if kind == 1:
        return word[:i] + word[i] + word[i:]
    if kind == 2 and i < len(word) - 1 and word[i] != word[i + 1]:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    other = LETTERS[letter % 26] if LETTERS[letter % 26] != word[i] else LETTERS[(letter + 1) % 26]
    return word[:i] + other + word[i + 1:]


def search_workload(*, count: int, seed: int, words: list[str], limits=(10, 100)) -> list[dict]:
    """bench_search's queries over a `realistic_table`: a text needle of a term class (frequent: the 300
    most frequent words; rare: words ranked 30k-200k; absent: a word of 7+ letters with two inner letters
    swapped, not itself a word; two_frequent: two of the 3,000 most frequent words ANDed), an operator (contains, icontains, or startswith on the title), 0-2
    more filters (title contains a common word, label =, lang in, crawled_at >), a limit.
    Each item: {"class", "op", "filters": [(column, op, value)], "limit"}."""
    rng = random.Random(seed)
    known = set(words)
    frequent = [w for w in words[:300] if len(w) >= 3]
    rare = words[30_000:200_000]
    long_words = [w for w in words[2_000:60_000] if len(w) >= 7 and w.isalpha()]
    absent = []
    while len(absent) < 500:
        w = rng.choice(long_words)
        i = rng.randrange(1, len(w) - 2)
        swapped = w[:i] + w[i + 1] + w[i] + w[i + 2:]
        if swapped not in known and swapped != w:
            absent.append(swapped)
    common = [w for w in words[:3000] if len(w) >= 3]
    pools = {"frequent": frequent, "rare": rare, "absent": absent, "two_frequent": common}
    workload = []
    for index in range(count):
        term_class = SEARCH_CLASSES[index % len(SEARCH_CLASSES)]
        word = rng.choice(pools[term_class])
        op = rng.choice(("contains", "icontains", "startswith"))
        if term_class == "two_frequent":  # two common words ANDed: a conjunction of frequent postings
            op = rng.choice(("contains", "icontains"))
            filters = [("text", op, word), ("text", op, rng.choice([w for w in common if w != word]))]
        elif op == "startswith":
            filters = [("title", "startswith", word)]
        else:
            filters = [("text", op, word.capitalize() if op == "icontains" and rng.random() < 0.5 else word)]
        extras = [("title", "contains", rng.choice(frequent[:60])), ("label", "eq", rng.choice(BENCH_LABELS)),
                  ("lang", "in", "en,de"), ("crawled_at", "gt", "2024-06-01")]
        filters += rng.sample(extras, rng.randint(0, 2))
        workload.append({"class": term_class, "op": op, "filters": filters, "limit": limits[index % len(limits)]})
    return workload
