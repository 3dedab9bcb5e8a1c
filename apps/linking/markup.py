"""The bracket markup for mentions, shared by the KB editor, the API and the demo KB's data file.

"The probe orbits [Mercury]."              one mention, no label (a KB mention sentence)
"[Mercury|mercury_planet] is hot."         a mention with a label (an entity id, or NIL)

Offsets are computed after the brackets are removed (end exclusive), so nobody counts characters by
hand. Pure Python (no Django): the demo KB generator imports it too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BRACKET_RE = re.compile(r"\[([^\[\]|]+)(?:\|([^\[\]|]+))?\]")


class MarkupError(ValueError):
    """The sentence's [brackets] cannot be read; the message says why."""


@dataclass(frozen=True)
class MarkedSpan:
    start: int
    end: int
    surface: str
    label: str | None  # the part after "|", stripped; None when there is none


def bracketed_parse(sentence: str) -> tuple[str, list[MarkedSpan]]:
    """(the sentence without brackets, its marked spans in order)."""
    pieces: list[str] = []
    spans: list[MarkedSpan] = []
    cursor = offset = 0
    for match in BRACKET_RE.finditer(sentence):
        before = sentence[cursor : match.start()]
        pieces.append(before)
        offset += len(before)
        surface = match.group(1)
        label = match.group(2).strip() if match.group(2) is not None else None
        spans.append(MarkedSpan(offset, offset + len(surface), surface, label))
        pieces.append(surface)
        offset += len(surface)
        cursor = match.end()
    pieces.append(sentence[cursor:])
    text = "".join(pieces)
    if "[" in text or "]" in text:
        raise MarkupError(f"unmatched or nested bracket in: {sentence!r}")
    return text, spans


def bracketed_one(sentence: str) -> tuple[str, MarkedSpan]:
    """A sentence marking exactly one mention (a KB mention sentence)."""
    text, spans = bracketed_parse(sentence)
    if len(spans) != 1:
        raise MarkupError(f"mark exactly one mention with [brackets] in: {sentence!r}")
    return text, spans[0]
