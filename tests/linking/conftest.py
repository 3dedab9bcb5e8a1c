"""A small ambiguous KB for the linking tests: Paris ×2 (+ Paris, Texas held back to be added
live), Java ×2, Apple ×2, Amazon ×2. Sentences mark their mention with [brackets]."""

from __future__ import annotations

import json

import pytest

from apps.linking.services import mention_from_bracketed

ENTITIES = [
    (
        "paris_france",
        "Paris",
        ["Paris", "City of Light"],
        "place",
        "Capital of France, on the river Seine.",
        [
            "The Eiffel Tower and the Louvre draw millions of tourists to [Paris] every year.",
            "She rented a small flat in [Paris] near the Seine and practised her French.",
            "The French government announced the new policy from its ministries in [Paris].",
            "Cafés along the boulevards of the [City of Light] fill with tourists each spring.",
        ],
    ),
    (
        "paris_trojan",
        "Paris (mythology)",
        ["Paris", "Paris of Troy"],
        "person",
        "Trojan prince in Greek mythology whose abduction of Helen caused the Trojan War.",
        [
            "In Greek mythology, [Paris] judged a beauty contest between Hera, Athena and Aphrodite.",
            "The abduction of Helen by [Paris] sparked the Trojan War described in the Iliad.",
            "Prince [Paris of Troy] fired the arrow that struck Achilles in the heel.",
            "Homer portrays [Paris] as a skilled archer but a reluctant warrior scolded by Hector.",
        ],
    ),
    (
        "java_island",
        "Java",
        ["Java"],
        "place",
        "Indonesian island between Sumatra and Bali.",
        [
            "[Java] is the most populous island in Indonesia and home to Jakarta.",
            "Active volcanoes such as Mount Merapi dominate the landscape of [Java].",
            "Rice terraces cover the fertile volcanic slopes of [Java].",
        ],
    ),
    (
        "java_language",
        "Java (programming language)",
        ["Java"],
        "other",
        "Object-oriented programming language released by Sun Microsystems in 1995.",
        [
            "Programs written in [Java] compile to bytecode that runs on the JVM.",
            "Our backend uses Spring Boot, the most popular web framework for [Java].",
            "Maven and Gradle are the standard build tools for [Java] projects.",
        ],
    ),
    (
        "apple_fruit",
        "Apple",
        ["apple", "apples"],
        "other",
        "Edible fruit of the apple tree.",
        [
            "She packed an [apple] and a sandwich for the long walk.",
            "The orchard harvests crisp red [apples] every autumn for cider.",
            "Slice the [apple] thinly and bake it in a pie with cinnamon.",
        ],
    ),
    (
        "apple_inc",
        "Apple Inc.",
        ["Apple", "Apple Inc."],
        "organization",
        "American technology company that designs the iPhone and the Mac.",
        [
            "[Apple] unveiled a new iPhone with a faster chip at its September event.",
            "Shares of [Apple Inc.] rose after record services revenue from the App Store.",
            "Tim Cook has led [Apple] as chief executive since 2011.",
        ],
    ),
    (
        "amazon_river",
        "Amazon River",
        ["Amazon", "Amazon River"],
        "place",
        "River in South America.",
        [
            "The [Amazon] carries more water to the ocean than any other river.",
            "Riverboats travel up the [Amazon River] from Belém to Manaus.",
            "Pink river dolphins live in the murky brown waters of the [Amazon].",
        ],
    ),
    (
        "amazon_company",
        "Amazon",
        ["Amazon", "Amazon.com"],
        "organization",
        "American e-commerce and cloud computing company founded by Jeff Bezos.",
        [
            "She ordered a phone case on [Amazon] and it arrived the next morning.",
            "Jeff Bezos founded [Amazon.com] in 1994 as an online bookstore.",
            "Cloud revenue from AWS makes up most of the profit at [Amazon].",
        ],
    ),
]

PARIS_TEXAS = {
    "id": "paris_texas",
    "name": "Paris, Texas",
    "aliases": ["Paris", "Paris, Texas"],
    "type": "place",
    "description": "Small city in Lamar County in northeast Texas, United States.",
    "mentions": [
        "The small town of [Paris] sits in Lamar County in northeast Texas, near the Oklahoma border.",
        "Ranchers from Lamar County drive into [Paris] on Saturdays to shop at the feed stores.",
        "The county courthouse in [Paris] was rebuilt after a fire swept through the Texas town.",
        "[Paris, Texas] has its own Eiffel Tower replica topped with a giant red cowboy hat.",
    ],
}

TEXAS_SENTENCE = "Cattle ranchers from Lamar County met at the feed store in Paris, deep in northeast Texas."


def entity_record(key, name, aliases, etype, description, sentences) -> dict:
    mentions = []
    for sentence in sentences:
        m = mention_from_bracketed(sentence)
        mentions.append({"text": m.text, "start": m.start, "end": m.end})
    return {
        "id": key,
        "name": name,
        "aliases": aliases,
        "type": etype,
        "description": description,
        "url": f"https://en.wikipedia.org/wiki/{key}",
        "mentions": mentions,
    }


def paris_texas_record() -> dict:
    r = PARIS_TEXAS
    return entity_record(r["id"], r["name"], r["aliases"], r["type"], r["description"], r["mentions"])


@pytest.fixture(scope="session")
def kb_lines() -> list[str]:
    return [json.dumps(entity_record(*row)) for row in ENTITIES]


@pytest.fixture
def kb(db, kb_lines):
    """The small KB, imported (and embedded by the real encoder) for each test; the serving one."""
    from apps.linking.services import kb_get_or_create, kb_import_jsonl

    kb = kb_get_or_create(name="test-kb", version="1", serving=True)
    kb_import_jsonl(user=None, kb=kb, lines=kb_lines)
    kb.refresh_from_db()
    return kb
