"""A synthetic table for the learned-segments tests, and a writer process for the concurrency test:
`python -m tests.warehouse.learned_race --first-id N --answers K` learns K answers (ids N.. of its own)
into SUBSET_LEARNED_DIR, or with --merge runs learned_segments_merge in a loop for a while."""
from __future__ import annotations

import argparse
import json
import random

WORDS = ["amber", "basalt", "cobalt", "dune", "ember", "fjord", "glacier", "harbor", "iris", "jade", "kelp",
         "lagoon", "mesa", "nectar", "onyx", "prairie", "quartz", "reef", "sierra", "tundra"]
LANGS = ["en", "de", "fr", None]


def notes_spec():
    from apps.search.operators import OPERATORS_BY_KIND
    from apps.search.tables import TableSpec, column_kind

    columns = {"id": "BIGINT", "text": "VARCHAR", "lang": "VARCHAR", "n": "INTEGER"}
    return TableSpec(name="notes", key="id", columns=columns,
                     searchable={c: OPERATORS_BY_KIND[column_kind(t)] for c, t in columns.items()},
                     shown=("text", "lang", "n"))


def note(row_id: int) -> dict:
    """The one row with this id (the same in every answer that holds it)."""
    rng = random.Random(row_id)
    weights = [1 + 6 * (i < 3) for i in range(len(WORDS))]  # the first three words are frequent
    words = rng.choices(WORDS, weights=weights, k=rng.randint(2, 6))
    return {"id": row_id, "text": " ".join(words), "lang": rng.choice(LANGS),
            "n": None if rng.random() < 0.15 else rng.randint(0, 40)}


def query(*filters, limit=10, order=None):
    from apps.search.query import Filter, Order, SearchQuery

    return SearchQuery(table="notes", filters=tuple(Filter(*f) for f in filters), limit=limit,
                       order=Order(*order) if order else None)


def learn(*, first_id: int, answers: int, rows_each: int = 20) -> list[int]:
    from apps.warehouse.learned import learned_answer_add

    learned = []
    for i in range(answers):
        ids = list(range(first_id + i * rows_each, first_id + (i + 1) * rows_each))
        stats = learned_answer_add(spec=notes_spec(), query=query(("id", "in", ",".join(map(str, ids))),
                                   limit=rows_each + 1), rows=[note(x) for x in ids])
        learned.append(stats["answer_id"])
    return learned


def main() -> None:
    import django

    django.setup()
    parser = argparse.ArgumentParser()
    parser.add_argument("--first-id", type=int, default=0)
    parser.add_argument("--answers", type=int, default=10)
    parser.add_argument("--merge", type=int, default=0, help="run the merge this many times instead")
    args = parser.parse_args()
    if args.merge:
        from apps.warehouse.learned import learned_segments_merge

        reports = [learned_segments_merge(max_segments=2) for _ in range(args.merge)]
        print("LEARNED_RACE", json.dumps({"merges": sum(r["merges"] for r in reports)}))
        return
    print("LEARNED_RACE", json.dumps({"answers": learn(first_id=args.first_id, answers=args.answers)}))


if __name__ == "__main__":
    main()
