"""The demo KB is data: one file with [bracketed] mentions, parsed by the app's own markup parser;
the generated JSONL files must match it."""
import json

import pytest

from apps.linking.demo_kb import source
from apps.linking.markup import MarkupError, bracketed_parse
from apps.linking.services import LinkingError, mention_from_bracketed


def test_generated_files_match_the_data_file():
    files, problems = source.generated_files()
    assert problems == []
    assert set(files) == {source.ENTITIES_OUT, source.HELDOUT_OUT, source.HERE / "heldout_two_senses.jsonl"}
    for path, content in files.items():
        assert path.read_text(encoding="utf-8") == content, f"{path.name} is stale: run python -m apps.linking.demo_kb.source"


def test_kb_mentions_are_parsed_like_the_kb_editor_parses_them():
    rows, heldout = source.source_read()
    committed = {e["id"]: e for e in map(json.loads, source.ENTITIES_OUT.read_text().splitlines())}
    assert len(rows) == len(committed) == 274
    for key, _, _, _, _, _, sentences in rows[:40]:
        for sentence, stored in zip(sentences, committed[key]["mentions"]):
            mention = mention_from_bracketed(sentence)
            assert (mention.text, mention.start, mention.end) == (stored["text"], stored["start"], stored["end"])
    assert len(heldout["heldout"]) == 396 and len(heldout["two_senses"]) >= 30


def test_markup_parser_offsets_labels_and_errors():
    text, spans = bracketed_parse("[Michael Jordan|michael_jordan] visited [Jordan|jordan_country].")
    assert text == "Michael Jordan visited Jordan."
    assert [(s.start, s.end, s.surface, s.label) for s in spans] == [
        (0, 14, "Michael Jordan", "michael_jordan"), (23, 29, "Jordan", "jordan_country")]
    assert [text[s.start:s.end] for s in spans] == ["Michael Jordan", "Jordan"]
    with pytest.raises(MarkupError):
        bracketed_parse("an [unclosed bracket")
    with pytest.raises(LinkingError, match="exactly one"):
        mention_from_bracketed("[Paris] and [Java]")
    with pytest.raises(LinkingError, match="without '|'"):
        mention_from_bracketed("[Paris|paris_france] is big")


def test_validation_reports_a_bad_sentence(tmp_path):
    rows = source.source_read()[0][:1]
    entity = dict(zip(("id", "name", "aliases", "type", "description", "url", "mentions"), rows[0]))
    entity["mentions"] = entity["mentions"][:3] + ["No bracket in this sentence about the city at all, sadly."]
    bad = tmp_path / "source.jsonl"
    bad.write_text(json.dumps(entity) + "\n")
    _, problems = source.generated_files(bad)
    assert any("expected exactly one [alias]" in p for p in problems)
