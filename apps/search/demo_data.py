"""Demo data that looks like a web-crawl sample table, generated with NumPy and pyarrow.

Each row has a hidden topic; its text mixes that topic's words, words shared by all topics,
words of another topic and a long Zipf-distributed tail of rarer words, and ~10% of rows
carry a wrong label. A TF-IDF + logistic regression classifier therefore learns the labels
well but not perfectly. The shared words and the tail are real English (issue 25: the
text read as word salad): wordfreq's most frequent words drawn by their real frequency, and its rarer
words of 7+ letters (ranks past 3,000) as the tail; without wordfreq (it is in requirements/local.txt, not
the production image) the old fixed list and syllable pseudo-words stand in. Substring searches find
frequent words (shared and topic words), rare ones (tail words, product codes and names in a handful of rows) and absent ones
(`demo_vocabulary()["absent"]`). No Python loop runs per row: words are drawn as index arrays
and joined by pyarrow.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

TOPICS: dict[str, str] = {
    "sports": "match team league season coach player goal score championship tournament stadium fans "
              "striker defender keeper referee transfer injury victory defeat playoff medal athlete "
              "sprint marathon racket court pitch innings wicket dribble penalty halftime trophy derby "
              "squad captain fixture qualifier",
    "politics": "election parliament minister senate vote campaign policy government party coalition "
                "opposition candidate ballot referendum legislation reform cabinet governor mayor "
                "diplomat treaty sanctions constitution lobby debate poll congress bill veto "
                "democracy amendment embassy summit delegate",
    "technology": "software startup cloud server algorithm smartphone app developer chip processor "
                  "network encryption database browser update platform laptop robot automation "
                  "silicon bandwidth firmware compiler kernel gadget download interface cybersecurity "
                  "datacenter opensource api backend frontend",
    "science": "research experiment laboratory physics chemistry biology telescope molecule particle "
               "genome hypothesis evolution astronomer quantum fossil climate species galaxy microscope "
               "neutron enzyme theorem specimen orbit spectrum isotope catalyst protein planet "
               "researchers peerreview dataset",
    "health": "doctor patient hospital vaccine treatment therapy symptoms diet nutrition clinic nurse "
              "surgery disease infection medicine wellness fitness pharmacy diagnosis prescription "
              "cholesterol diabetes cardiology immunity outbreak virus mental sleep exercise calories "
              "allergy screening recovery",
    "business": "market stocks investor revenue profit startup merger acquisition earnings shares "
                "economy inflation bank interest loan retail supply quarterly ceo dividend growth "
                "shareholder budget forecast export tariff commodity valuation ipo portfolio "
                "bankruptcy invoice",
    "entertainment": "movie film actor actress director album concert singer band premiere festival "
                     "celebrity television series episode streaming soundtrack oscar comedy drama "
                     "trailer boxoffice studio audience tour musical sitcom documentary casting "
                     "podcast playlist",
    "travel": "flight airport hotel beach resort passport luggage itinerary destination tourist cruise "
              "backpacking island museum sightseeing booking hostel journey airline visa landmark "
              "excursion vacation coastline mountain trail guidebook souvenir train ferry roadtrip "
              "campsite",
    "food": "recipe kitchen chef restaurant flavor dessert bake ingredients spicy vegetarian pasta "
            "soup salad grill cuisine menu dinner breakfast bakery chocolate cheese wine sauce "
            "noodles dumpling oven seasoning brunch espresso harvest organic",
    "education": "school student teacher university classroom curriculum exam lecture homework "
                 "scholarship campus degree tuition graduate professor literacy kindergarten syllabus "
                 "semester textbook enrollment tutoring diploma thesis library learning academy "
                 "principal grades workshop",
}
SHARED_WORDS = (
    "the of and to in a is that for on with as was by at from it this be are have has new said "
    "year people time first more about after also over two many most other some into than only "
    "report week local city public major according while during since three world national state "
    "day could would just during like well still because between under night part end high place "
    "long today story news early group former recent back around").split()
DOMAINS = (
    "dailyherald.com", "worldwire.net", "metrotimes.com", "thepostgazette.org", "cityledger.com",
    "newsroom.io", "globalobserver.net", "sundaystar.co.uk", "evening-courier.com", "tribuneonline.com",
    "regionalnews.de", "lemonde-digest.fr", "elcorreo-web.es", "dagblad.nl", "gazzetta-web.it",
    "techpulse.dev", "sciencefeed.org", "healthwatch.net", "marketbeat.biz", "screenscene.tv",
    "wanderlog.travel", "tastebuds.kitchen", "campusvoice.edu", "blogspace.net", "forumhub.org",
)
LANGS = ("en", "de", "fr", "es", "it", "nl")
LANG_WEIGHTS = (0.80, 0.06, 0.05, 0.05, 0.02, 0.02)
FIRST_NAMES = ("Amara Boris Chen Dalia Emeka Farah Gustav Hana Ivo Jelena Kofi Lena Mateo Nadia Omar Priya "
               "Quentin Rosa Sven Tariq Ulla Viktor Wen Ximena Yusuf Zora").split()
LAST_NAMES = ("Okafor Lindqvist Moreau Tanaka Kowalski Haddad Novak Ferreira Castellanos Brennan Ivanova "
              "Achterberg Mbeki Rossi Nakamura Petrov").split()
_SYLLABLES = ("ka lo mi ra te su vo ne pa di ro ma li to ga be fu so ne ki ru ta ve ko ni la me do sa "
              "bri cla dre fro gla pla tri sto vel mon tar pek lun dor fin gar mis hol").split()
TAIL_SIZE = 20000
VOCAB_SEED = 20240607  # the vocabulary is the same for every --seed; only the rows differ


ENGLISH_SHARED = 400  # wordfreq's most frequent English words used as the shared words
ENGLISH_TAIL_FROM = 3000  # the tail: wordfreq's words from this rank on, of at least ENGLISH_TAIL_MIN_LENGTH letters
ENGLISH_TAIL_MIN_LENGTH = 7  # (shorter rare words would hide inside common ones: "arte" in "cartel")


def _english_words(known: set[str]) -> tuple[list[str], np.ndarray, list[str]] | None:
    """(shared words, their real frequencies normalised, tail words in frequency order) from wordfreq's
    English list (in its wheel: works offline), or None without wordfreq."""
    try:
        import wordfreq
    except ImportError:
        return None
    fragments = {"ll", "ve", "re", "st", "nd", "th", "im", "dont", "didnt", "doesnt", "isnt", "thats", "ive"}
    words = [w for w in wordfreq.top_n_list("en", 60_000) if w.isascii() and w.isalpha() and w not in known
             and (len(w) >= 2 or w == "a") and w not in fragments]  # no "i", "s", "t", "ll" alone
    shared = words[:ENGLISH_SHARED]
    freqs = np.array([wordfreq.word_frequency(w, "en") for w in shared], dtype=np.float64)
    tail = [w for w in words[ENGLISH_TAIL_FROM:] if len(w) >= ENGLISH_TAIL_MIN_LENGTH][:TAIL_SIZE]
    if len(tail) < TAIL_SIZE:
        return None
    return shared, freqs / freqs.sum(), tail


@dataclass(frozen=True)
class _Vocabulary:
    words: list[str]          # plain tokens: topics, shared, tail, codes, names
    topic_ranges: list[tuple[int, int]]
    shared_range: tuple[int, int]
    tail_range: tuple[int, int]
    code_range: tuple[int, int]
    name_range: tuple[int, int]
    shared_weights: np.ndarray  # how often each shared word is drawn


_VOCAB: _Vocabulary | None = None


def _vocabulary() -> _Vocabulary:
    global _VOCAB
    if _VOCAB is not None:
        return _VOCAB
    rng = np.random.default_rng(VOCAB_SEED)
    words: list[str] = []
    topic_ranges = []
    for topic_words in TOPICS.values():
        start = len(words)
        words.extend(topic_words.split())
        topic_ranges.append((start, len(words)))
    english = _english_words(set(words))
    if english is not None:
        shared, shared_weights, tail = english
    else:
        shared, shared_weights = list(SHARED_WORDS), _zipf_weights(len(SHARED_WORDS), 0.9)
        known = set(words) | set(shared)
        tail = []
        while len(tail) < TAIL_SIZE:  # pseudo-words from syllables: plausible, searchable, no "xq"
            n = int(rng.integers(2, 5))
            word = "".join(_SYLLABLES[i] for i in rng.integers(0, len(_SYLLABLES), n))
            if word not in known:
                known.add(word)
                tail.append(word)
    shared_range = (len(words), len(words) + len(shared))
    words.extend(shared)
    tail_range = (len(words), len(words) + len(tail))
    words.extend(tail)
    letters = np.array(list("ABCDEFGHJKLMNPRSTUVWYZ"))
    codes = sorted({f"{''.join(rng.choice(letters, 2))}-{int(rng.integers(1000, 9999))}" for _ in range(6000)})
    code_range = (len(words), len(words) + len(codes))
    words.extend(codes)
    names = [f"{first} {last}" for first in FIRST_NAMES for last in LAST_NAMES]
    name_range = (len(words), len(words) + len(names))
    words.extend(names)
    _VOCAB = _Vocabulary(words, topic_ranges, shared_range, tail_range, code_range, name_range, shared_weights)
    return _VOCAB


def demo_vocabulary() -> dict[str, list[str]]:
    """Search terms by expected frequency, for tests and the benchmark workload."""
    v = _vocabulary()
    tail = v.words[v.tail_range[0]:v.tail_range[1]]
    frequent = v.words[v.shared_range[0]:v.shared_range[0] + 40] + [w for a, b in v.topic_ranges for w in v.words[a:a + 6]]
    return {
        "frequent": [w for w in frequent if len(w) >= 3],
        "topic": [w for a, b in v.topic_ranges for w in v.words[a:b]],
        "rare": tail[-3000:] + v.words[v.code_range[0]:v.code_range[1]][:2000],
        "absent": [f"xq{w}zv" for w in tail[:2000]],
        "domains": list(DOMAINS),
        "labels": list(TOPICS),
    }


def _zipf_weights(n: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return weights / weights.sum()


def _join_tokens(tokens: pa.Array, counts: np.ndarray) -> pa.Array:
    offsets = np.zeros(len(counts) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    return pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), tokens), " ")


def demo_table(*, rows: int, seed: int, start_id: int = 0) -> pa.Table:
    """`rows` demo rows with ids start_id.. ; the same (rows, seed, start_id) gives the same table."""
    v = _vocabulary()
    rng = np.random.default_rng([seed, start_id])
    n = rows
    n_topics = len(v.topic_ranges)
    topic = rng.integers(0, n_topics, n)
    # Some texts wander into a second topic: the reason the labels are not trivially learnable.
    other_topic = (topic + rng.integers(1, n_topics, n)) % n_topics
    other_share = np.where(rng.random(n) < 0.3, rng.uniform(0.15, 0.45, n), rng.uniform(0.0, 0.08, n))

    # --- text: 2-5 sentences of 6-14 words ------------------------------------------------
    sentences = rng.integers(2, 6, n)
    sentence_row = np.repeat(np.arange(n), sentences)
    sentence_len = rng.integers(6, 15, len(sentence_row))
    words_per_row = np.bincount(sentence_row, weights=sentence_len, minlength=n).astype(np.int64)
    total = int(words_per_row.sum())
    word_row = np.repeat(np.arange(n), words_per_row)
    draw = rng.random(total)
    is_topical = draw < 0.25
    is_other = is_topical & (rng.random(total) < other_share[word_row])
    is_tail = draw > 0.89
    ids = np.empty(total, dtype=np.int64)
    shared_lo, shared_hi = v.shared_range
    ids[:] = shared_lo + rng.choice(shared_hi - shared_lo, total, p=v.shared_weights)
    starts = np.array([a for a, _ in v.topic_ranges])
    sizes = np.array([b - a for a, b in v.topic_ranges])
    row_topic = np.where(is_other, other_topic[word_row], topic[word_row])[is_topical]
    rank = rng.zipf(1.3, int(is_topical.sum())) - 1  # topic words: a few very common, the rest rarer
    ids[is_topical] = starts[row_topic] + rank % sizes[row_topic]
    tail_lo, tail_hi = v.tail_range
    ids[is_tail] = tail_lo + rng.choice(tail_hi - tail_lo, int(is_tail.sum()), p=_zipf_weights(tail_hi - tail_lo, 1.05))
    # Rare tokens: ~2% of rows mention a product code, ~1% a person's name.
    row_first_word = np.concatenate([[0], np.cumsum(words_per_row)[:-1]])
    code_rows = np.flatnonzero(rng.random(n) < 0.02)
    ids[row_first_word[code_rows] + rng.integers(1, 5, len(code_rows))] = rng.integers(*v.code_range, len(code_rows))
    name_rows = np.flatnonzero(rng.random(n) < 0.01)
    ids[row_first_word[name_rows] + 1] = rng.integers(*v.name_range, len(name_rows))

    # Sentence shape: capitalised first word, period after the last word.
    vocab = v.words
    size = len(vocab)
    tokens_vocab = pa.array(vocab + [w[:1].upper() + w[1:] for w in vocab] + [w + "." for w in vocab])
    sentence_start = np.concatenate([[0], np.cumsum(sentence_len)[:-1]])
    sentence_end = np.cumsum(sentence_len) - 1
    variant = np.zeros(total, dtype=np.int64)
    variant[sentence_start] = 1
    variant[sentence_end] = 2
    tokens = pc.take(tokens_vocab, pa.array(ids + variant * size))
    text = _join_tokens(tokens, words_per_row)

    # --- title: 3-7 capitalised topic and shared words --------------------------------------
    title_len = rng.integers(3, 8, n)
    title_total = int(title_len.sum())
    title_row = np.repeat(np.arange(n), title_len)
    title_is_topic = rng.random(title_total) < 0.6
    title_ids = shared_lo + rng.integers(0, shared_hi - shared_lo, title_total)
    t_topic = topic[title_row][title_is_topic]
    title_ids[title_is_topic] = starts[t_topic] + (rng.zipf(1.3, int(title_is_topic.sum())) - 1) % sizes[t_topic]
    title = _join_tokens(pc.take(tokens_vocab, pa.array(title_ids + size)), title_len)

    # --- the rest -------------------------------------------------------------------------
    domain_idx = rng.choice(len(DOMAINS), n, p=_zipf_weights(len(DOMAINS), 0.8))
    domain = pc.take(pa.array(DOMAINS), pa.array(domain_idx))
    topic_names = pa.array(list(TOPICS))
    slug = _join_tokens(pc.take(pa.array(vocab), pa.array(title_ids)), title_len)
    slug = pc.replace_substring(slug, " ", "-")
    id_array = np.arange(start_id, start_id + n, dtype=np.int64)
    url = pc.binary_join_element_wise(
        "https://", domain, "/", pc.take(topic_names, pa.array(topic)), "/", slug, "-",
        pc.cast(pa.array(id_array), pa.string()), "",
    )
    noisy = rng.random(n) < 0.10
    label_idx = np.where(noisy, rng.integers(0, n_topics, n), topic)
    label = pc.take(topic_names, pa.array(label_idx))
    lang = pc.take(pa.array(LANGS), pa.array(rng.choice(len(LANGS), n, p=LANG_WEIGHTS)))
    start_s = int(datetime(2023, 1, 1).timestamp())
    end_s = int(datetime(2025, 6, 30).timestamp())
    crawled = pa.array(rng.integers(start_s, end_s, n) * 1_000_000, type=pa.timestamp("us"))
    length = pc.cast(pc.utf8_length(text), pa.int32())
    return pa.table({
        "id": pa.array(id_array), "url": url, "domain": domain, "title": title, "text": text,
        "label": label, "lang": lang, "crawled_at": crawled, "length": length,
    })


@dataclass(frozen=True)
class DemoDatasetInfo:
    rows: int
    subset_rows: int
    files: list[Path]
    subset: pa.Table
    seconds: float


def demo_dataset_write(
    *, rows: int, subset_fraction: float, seed: int, full_dir: Path, stdout=None, chunk_rows: int = 250_000
) -> DemoDatasetInfo:
    """Write `rows` demo rows as Parquet files under full_dir/samples/ and return a random
    ~subset_fraction of them (as an Arrow table) for the local subset."""
    out = stdout or sys.stdout
    target = Path(full_dir) / "samples"
    target.mkdir(parents=True, exist_ok=True)
    for stale in target.glob("part-*.parquet"):
        stale.unlink()
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    files: list[Path] = []
    subset_parts: list[pa.Table] = []
    done = 0
    while done < rows:
        n = min(chunk_rows, rows - done)
        table = demo_table(rows=n, seed=seed, start_id=done)
        path = target / f"part-{len(files):05d}.parquet"
        tmp = path.with_suffix(".parquet.tmp")
        pq.write_table(table, tmp, compression="zstd", row_group_size=128_000)
        tmp.rename(path)
        files.append(path)
        mask = rng.random(n) < subset_fraction
        subset_parts.append(table.filter(pa.array(mask)))
        done += n
        elapsed = time.perf_counter() - started
        out.write(f"  demo data: {done:,}/{rows:,} rows in {elapsed:.1f}s ({done / max(elapsed, 1e-9):,.0f} rows/s)\n")
    subset = pa.concat_tables(subset_parts) if subset_parts else demo_table(rows=0, seed=seed)
    return DemoDatasetInfo(rows=rows, subset_rows=subset.num_rows, files=files, subset=subset,
                           seconds=time.perf_counter() - started)
