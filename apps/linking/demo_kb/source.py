"""Generate and validate the demo entity-linking knowledge base from its one data file.

The content lives in ``source.jsonl`` next to this file, one JSON object a line:

    {"id": "paris_france", "name": "Paris", "aliases": [...], "type": "place",
     "description": "...", "url": "https://...", "mentions": ["... tourists to [Paris] every year.", ...]}
    {"heldout": "heldout", "text": "The mayor of [Paris|paris_france] wants to ban cars ..."}
    {"heldout": "two_senses", "text": "[Michael Jordan|michael_jordan] visited [Jordan|jordan_country] ..."}

Running

    python -m apps.linking.demo_kb.source

validates everything and writes ``entities.jsonl``, ``heldout.jsonl`` and ``heldout_two_senses.jsonl``
next to it (``--check`` only compares them with what they should be). It exits non-zero with a
message listing every problem found. ``tests/linking/test_demo_kb.py`` checks that the committed files
match the data file.

Notation (``apps.linking.markup``, the same parser the KB editor and the API use)
--------
KB mention sentence:  "The probe entered orbit around [Mercury] in 2011."
    exactly one bracketed alias per sentence; the alias must be one of the
    entity's aliases (case-insensitive).
Held-out sentence:    "[Mercury|mercury_planet] is close to the Sun."
    one to three bracketed mentions, each "surface|entity_id", where
    entity_id "NIL" means the alias is in the KB but the meaning is not.
    A "two_senses" sentence names two different things with one name.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

from apps.linking.markup import MarkupError, bracketed_parse

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "source.jsonl"

ENTITIES_OUT = HERE / "entities.jsonl"
HELDOUT_OUT = HERE / "heldout.jsonl"
HELDOUT_SETS = {"heldout": HELDOUT_OUT, "two_senses": HERE / "heldout_two_senses.jsonl"}

VALID_TYPES = {"person", "place", "organization", "product", "other"}
ID_RE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
WORD_RE = re.compile(r"[\w']+")

MENTIONS_PER_ENTITY = (4, 8)
KB_WORDS = (10, 30)
HELDOUT_WORDS = (8, 40)
HELDOUT_MENTIONS = (1, 3)
MIN_ALIAS_LEN = 3
MAX_WORD_OVERLAP = 0.70
NIL = "NIL"


class Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, msg: str) -> None:
        self.items.append(msg)

    def __bool__(self) -> bool:
        return bool(self.items)


def word_set(text: str) -> set[str]:
    return set(WORD_RE.findall(text.lower()))


def alias_regex(alias: str) -> re.Pattern[str]:
    """Case-insensitive match of an alias as a whole word/phrase."""
    return re.compile(r"(?<![\w])" + re.escape(alias) + r"(?![\w])", re.IGNORECASE)


def parse_kb_sentence(raw: str) -> tuple[str, int, int, str]:
    """Return (clean_text, start, end, alias) or raise ValueError."""
    try:
        clean, spans = bracketed_parse(raw)
    except MarkupError as exc:
        raise ValueError(str(exc)) from exc
    if len(spans) != 1:
        raise ValueError(f"expected exactly one [alias], found {len(spans)}")
    span = spans[0]
    if span.label is not None or "|" in clean:
        raise ValueError("stray '|': a KB mention is written [alias]")
    return clean, span.start, span.end, span.surface


def parse_heldout_sentence(raw: str) -> tuple[str, list[tuple[int, int, str, str]]]:
    """Return (clean_text, [(start, end, surface, entity_id_or_NIL), ...])."""
    try:
        clean, spans = bracketed_parse(raw)
    except MarkupError as exc:
        raise ValueError(str(exc)) from exc
    if "|" in clean or any(span.label is None for span in spans):
        raise ValueError("unparsed bracket or '|' (use [surface|entity_id])")
    return clean, [(span.start, span.end, span.surface, span.label) for span in spans]


def source_read(path: Path = SOURCE) -> tuple[list[tuple], dict[str, list[str]]]:
    """(entity rows as 7-tuples, {held-out set: [bracketed sentences]}) from the data file."""
    rows: list[tuple] = []
    heldout: dict[str, list[str]] = defaultdict(list)
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        if "heldout" in record:
            heldout[record["heldout"]].append(record["text"])
        else:
            rows.append((record["id"], record["name"], record["aliases"], record["type"], record["description"],
                         record.get("url"), record["mentions"]))
    return rows, dict(heldout)


def load_entities(problems: Problems, rows: list[tuple]) -> list[dict]:
    entities: list[dict] = []
    for module in [SOURCE.name]:
        for row in rows:
            where = f"{module}"
            if not (isinstance(row, tuple) and len(row) == 7):
                problems.add(f"{where}: malformed entity row {row!r:.80}")
                continue
            eid, name, aliases, etype, desc, url, sentences = row
            where = f"{module}:{eid}"
            if not isinstance(eid, str) or not ID_RE.match(eid):
                problems.add(f"{where}: id is not lowercase snake_case")
            if etype not in VALID_TYPES:
                problems.add(f"{where}: invalid type {etype!r}")
            if not name or not isinstance(name, str):
                problems.add(f"{where}: empty name")
            if not desc or not desc.strip().endswith("."):
                problems.add(f"{where}: description missing or not a sentence")
            if url is not None and not (isinstance(url, str) and url.startswith("https://")):
                problems.add(f"{where}: url must be None or an https URL")
            if not aliases:
                problems.add(f"{where}: no aliases")
            seen_alias: set[str] = set()
            for a in aliases:
                if len(a) < MIN_ALIAS_LEN:
                    problems.add(f"{where}: alias {a!r} shorter than {MIN_ALIAS_LEN}")
                if a != a.strip():
                    problems.add(f"{where}: alias {a!r} has surrounding whitespace")
                if a.lower() in seen_alias:
                    problems.add(f"{where}: duplicate alias {a!r}")
                seen_alias.add(a.lower())
            lo, hi = MENTIONS_PER_ENTITY
            if not lo <= len(sentences) <= hi:
                problems.add(f"{where}: has {len(sentences)} mention sentences (want {lo}-{hi})")
            mentions = []
            for raw in sentences:
                try:
                    clean, start, end, alias = parse_kb_sentence(raw)
                except ValueError as exc:
                    problems.add(f"{where}: {exc}: {raw!r}")
                    continue
                if alias.lower() not in seen_alias:
                    problems.add(f"{where}: bracketed {alias!r} is not an alias of this entity: {raw!r}")
                n_occ = len(alias_regex(alias).findall(clean))
                if n_occ != 1:
                    problems.add(f"{where}: alias {alias!r} occurs {n_occ} times (want once): {raw!r}")
                n_words = len(clean.split())
                if not KB_WORDS[0] <= n_words <= KB_WORDS[1]:
                    problems.add(f"{where}: sentence has {n_words} words (want {KB_WORDS[0]}-{KB_WORDS[1]}): {raw!r}")
                mentions.append({"text": clean, "start": start, "end": end})
            entities.append({
                "id": eid, "name": name, "aliases": list(aliases), "type": etype,
                "description": desc, "url": url, "mentions": mentions,
            })
    ids = Counter(e["id"] for e in entities)
    for eid, n in ids.items():
        if n > 1:
            problems.add(f"duplicate entity id {eid!r} ({n} times)")
    texts = Counter(m["text"] for e in entities for m in e["mentions"])
    for t, n in texts.items():
        if n > 1:
            problems.add(f"duplicate KB mention sentence ({n} times): {t!r}")
    return entities


def load_heldout(problems: Problems, entities: list[dict], sentences: list[str], name: str = "heldout") -> list[dict]:
    by_id = {e["id"]: e for e in entities}
    alias_owners: dict[str, set[str]] = defaultdict(set)
    for e in entities:
        for a in e["aliases"]:
            alias_owners[a.lower()].add(e["id"])
    all_alias_res = [(a, alias_regex(a)) for a in alias_owners]

    records: list[dict] = []
    for module in [name]:
        for i, raw in enumerate(sentences):
            where = f"{module}[{i}]"
            try:
                clean, spans = parse_heldout_sentence(raw)
            except ValueError as exc:
                problems.add(f"{where}: {exc}: {raw!r}")
                continue
            lo, hi = HELDOUT_MENTIONS
            if not lo <= len(spans) <= hi:
                problems.add(f"{where}: {len(spans)} gold mentions (want {lo}-{hi}): {raw!r}")
            n_words = len(clean.split())
            if not HELDOUT_WORDS[0] <= n_words <= HELDOUT_WORDS[1]:
                problems.add(f"{where}: {n_words} words (want {HELDOUT_WORDS[0]}-{HELDOUT_WORDS[1]}): {raw!r}")
            mentions = []
            for start, end, surface, eid in spans:
                owners = alias_owners.get(surface.lower())
                if not owners:
                    problems.add(f"{where}: surface {surface!r} is not an alias of any KB entity: {raw!r}")
                if eid == NIL:
                    gold = None
                else:
                    gold = eid
                    if eid not in by_id:
                        problems.add(f"{where}: unknown entity id {eid!r}: {raw!r}")
                    elif owners is not None and eid not in owners:
                        problems.add(f"{where}: {surface!r} is not an alias of {eid!r}: {raw!r}")
                mentions.append({"start": start, "end": end, "text": surface, "entity_id": gold})
            # every occurrence of any KB alias must be covered by a gold span
            for alias, rx in all_alias_res:
                for m in rx.finditer(clean):
                    if not any(m.start() < e and s < m.end() for s, e, _, _ in spans):
                        problems.add(f"{where}: KB alias {alias!r} at {m.start()} is not annotated: {raw!r}")
            records.append({"text": clean, "mentions": mentions})

    # duplicates / leakage against the KB
    counts = Counter(r["text"] for r in records)
    for t, n in counts.items():
        if n > 1:
            problems.add(f"duplicate held-out sentence ({n} times): {t!r}")
    kb_sentences = [(m["text"], word_set(m["text"]), e["id"]) for e in entities for m in e["mentions"]]
    kb_texts = {t for t, _, _ in kb_sentences}
    for r in records:
        if r["text"] in kb_texts:
            problems.add(f"held-out sentence identical to a KB mention sentence: {r['text']!r}")
            continue
        hw = word_set(r["text"])
        if not hw:
            continue
        for kt, kw, keid in kb_sentences:
            share = len(hw & kw) / len(hw)
            if share > MAX_WORD_OVERLAP:
                problems.add(
                    f"held-out sentence shares {share:.0%} of its words with a KB mention of {keid}:\n"
                    f"    held-out: {r['text']!r}\n    KB:       {kt!r}")
    return records


def ambiguity_groups(entities: list[dict]) -> dict[str, list[str]]:
    owners: dict[str, list[str]] = defaultdict(list)
    for e in entities:
        for a in e["aliases"]:
            owners[a.lower()].append(e["id"])
    return {a: ids for a, ids in owners.items() if len(ids) >= 2}


def check_coverage(problems: Problems, entities: list[dict], records: list[dict]) -> None:
    groups = ambiguity_groups(entities)
    ambiguous_ids = {i for ids in groups.values() for i in ids}
    gold_ids = Counter(m["entity_id"] for r in records for m in r["mentions"] if m["entity_id"])
    for e in entities:
        if e["id"] in ambiguous_ids and gold_ids[e["id"]] == 0:
            problems.add(f"coverage: ambiguous entity {e['id']!r} has no held-out gold mention")


def check_two_senses(problems: Problems, records: list[dict]) -> None:
    """Each sentence names two different things (or one thing and NIL) with words of one name."""
    for r in records:
        words = [({w.removesuffix("s") for w in WORD_RE.findall(m["text"].lower())}, m["entity_id"])
                 for m in r["mentions"]]
        if not any(a & b and ea != eb for i, (a, ea) in enumerate(words) for b, eb in words[i + 1:]):
            problems.add(f"two_senses: no two mentions share a name with different senses: {r['text']!r}")


def jsonl_text(rows: list[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def generated_files(path: Path = SOURCE) -> tuple[dict[Path, str], list[str]]:
    """({output file: its content}, problems) from the data file; nothing is written."""
    problems = Problems()
    rows, heldout = source_read(path)
    entities = load_entities(problems, rows)
    files = {ENTITIES_OUT: jsonl_text(entities)}
    sets = {}
    for name, out in HELDOUT_SETS.items():
        sets[name] = load_heldout(problems, entities, heldout.get(name, []), name)
        files[out] = jsonl_text(sets[name])
    check_coverage(problems, entities, sets["heldout"])
    check_two_senses(problems, sets["two_senses"])
    return files, problems.items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare the generated files with the committed ones")
    args = parser.parse_args(argv)
    files, problems = generated_files()
    if problems:
        print(f"VALIDATION FAILED: {len(problems)} problem(s)", file=sys.stderr)
        for p in problems:
            print("  - " + p, file=sys.stderr)
        return 1
    if args.check:
        stale = [p.name for p, content in files.items() if not p.exists() or p.read_text(encoding="utf-8") != content]
        print("stale: " + ", ".join(stale) if stale else "the generated files match source.jsonl")
        return 1 if stale else 0
    for out, content in files.items():
        out.write_text(content, encoding="utf-8", newline="\n")

    entities = [json.loads(line) for line in files[ENTITIES_OUT].splitlines()]
    records = [json.loads(line) for line in files[HELDOUT_OUT].splitlines()]
    groups = ambiguity_groups(entities)
    n_mentions = sum(len(e["mentions"]) for e in entities)
    gold = [m for r in records for m in r["mentions"]]
    n_nil = sum(1 for m in gold if m["entity_id"] is None)
    types = Counter(e["type"] for e in entities)
    ambiguous_ids = {i for ids in groups.values() for i in ids}
    print("Demo KB validation passed.")
    print(f"  entities:            {len(entities)}  ({', '.join(f'{t} {n}' for t, n in sorted(types.items()))})")
    print(f"  ambiguous entities:  {len(ambiguous_ids)}  (unambiguous {len(entities) - len(ambiguous_ids)})")
    print(f"  KB mentions:         {n_mentions}  (avg {n_mentions / len(entities):.2f} per entity)")
    print(f"  groups:              {len(groups)}  (aliases shared by >=2 entities; "
          f"max {max(len(v) for v in groups.values())} entities per alias)")
    print(f"  held-out sentences:  {len(records)}")
    print(f"  gold mentions:       {len(gold)}  (linked {len(gold) - n_nil}, NIL {n_nil})")
    print(f"  NIL share:           {n_nil / len(gold):.1%}")
    print(f"  wrote {', '.join(p.name for p in files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
