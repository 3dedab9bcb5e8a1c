#!/usr/bin/env python3
"""Generate and validate the demo entity-linking knowledge base.

Content lives in the sibling modules ``source_groups_*.py`` (KB entities) and
``source_heldout*.py`` (held-out labelled sentences).  Running this script

    python apps/linking/demo_kb/source.py

validates everything and writes ``entities.jsonl`` and ``heldout.jsonl`` next
to this file.  It exits non-zero with a message listing every problem found.

Notation
--------
KB mention sentence:  "The probe entered orbit around [Mercury] in 2011."
    exactly one bracketed alias per sentence; the alias must be one of the
    entity's aliases (case-insensitive).
Held-out sentence:    "[Mercury|mercury_planet] is close to the Sun."
    one to three bracketed mentions, each "surface|entity_id", where
    entity_id "NIL" means the alias is in the KB but the meaning is not.

Spans are computed here after removing the brackets (end is exclusive), so
no offset is ever counted by hand.  Standard library only.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import source_groups_1  # noqa: E402
import source_groups_2  # noqa: E402
import source_groups_3  # noqa: E402
import source_groups_4  # noqa: E402
import source_groups_5  # noqa: E402
import source_heldout_1  # noqa: E402
import source_heldout_2  # noqa: E402

ENTITY_MODULES = [source_groups_1, source_groups_2, source_groups_3, source_groups_4, source_groups_5]
HELDOUT_MODULES = [source_heldout_1, source_heldout_2]

ENTITIES_OUT = HERE / "entities.jsonl"
HELDOUT_OUT = HERE / "heldout.jsonl"

VALID_TYPES = {"person", "place", "organization", "product", "other"}
ID_RE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
KB_BRACKET_RE = re.compile(r"\[([^\[\]|]+)\]")
HO_BRACKET_RE = re.compile(r"\[([^\[\]|]+)\|([^\[\]|]+)\]")
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
    matches = list(KB_BRACKET_RE.finditer(raw))
    if len(matches) != 1:
        raise ValueError(f"expected exactly one [alias], found {len(matches)}")
    m = matches[0]
    alias = m.group(1)
    clean = raw[: m.start()] + alias + raw[m.end():]
    if "[" in clean or "]" in clean or "|" in clean:
        raise ValueError("stray bracket or '|' outside the mention")
    start = m.start()
    end = start + len(alias)
    if clean[start:end] != alias:
        raise ValueError("internal span error")
    return clean, start, end, alias


def parse_heldout_sentence(raw: str) -> tuple[str, list[tuple[int, int, str, str]]]:
    """Return (clean_text, [(start, end, surface, entity_id_or_NIL), ...])."""
    out: list[tuple[int, int, str, str]] = []
    pieces: list[str] = []
    pos = 0
    offset = 0  # length of the clean text built so far
    for m in HO_BRACKET_RE.finditer(raw):
        before = raw[pos: m.start()]
        pieces.append(before)
        offset += len(before)
        surface, eid = m.group(1), m.group(2).strip()
        out.append((offset, offset + len(surface), surface, eid))
        pieces.append(surface)
        offset += len(surface)
        pos = m.end()
    pieces.append(raw[pos:])
    clean = "".join(pieces)
    if "[" in clean or "]" in clean or "|" in clean:
        raise ValueError("unparsed bracket or '|' (use [surface|entity_id])")
    for start, end, surface, _ in out:
        if clean[start:end] != surface:
            raise ValueError("internal span error")
    return clean, out


def load_entities(problems: Problems) -> list[dict]:
    entities: list[dict] = []
    for module in ENTITY_MODULES:
        for row in module.ENTITIES:
            where = f"{module.__name__}"
            if not (isinstance(row, tuple) and len(row) == 7):
                problems.add(f"{where}: malformed entity row {row!r:.80}")
                continue
            eid, name, aliases, etype, desc, url, sentences = row
            where = f"{module.__name__}:{eid}"
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


def load_heldout(problems: Problems, entities: list[dict]) -> list[dict]:
    by_id = {e["id"]: e for e in entities}
    alias_owners: dict[str, set[str]] = defaultdict(set)
    for e in entities:
        for a in e["aliases"]:
            alias_owners[a.lower()].add(e["id"])
    all_alias_res = [(a, alias_regex(a)) for a in alias_owners]

    records: list[dict] = []
    for module in HELDOUT_MODULES:
        for i, raw in enumerate(module.HELDOUT):
            where = f"{module.__name__}[{i}]"
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


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> int:
    problems = Problems()
    entities = load_entities(problems)
    records = load_heldout(problems, entities)
    check_coverage(problems, entities, records)
    if problems:
        print(f"VALIDATION FAILED: {len(problems.items)} problem(s)", file=sys.stderr)
        for p in problems.items:
            print("  - " + p, file=sys.stderr)
        return 1

    write_jsonl(ENTITIES_OUT, entities)
    write_jsonl(HELDOUT_OUT, records)

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
    print(f"  wrote {ENTITIES_OUT.relative_to(HERE.parents[2])} and {HELDOUT_OUT.relative_to(HERE.parents[2])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
