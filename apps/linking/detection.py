"""Mention detection (alias matching) and the context each mention is embedded in.

Rules, chosen so that common words do not light up as names:
- matching is case-insensitive through one Aho-Corasick automaton over every alias of a KB;
- case: an alias written in lower case ("java", the coffee) matches any casing; an alias with
  capitals ("Apple") does not match an all-lower-case surface ("apple"), so the fruit is not
  offered the company, while "APPLE" in a headline still matches;
- word boundaries: a match may not start or end inside a word ("Parisian" is not "Paris");
  punctuation around a name ("(Paris),", "Paris's") is fine;
- overlaps: the longest match wins ("Amazon rainforest" over "Amazon"); among equally long
  ones, the leftmost.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import ahocorasick

# Sentence ends: . ! ? (optionally followed by quotes/brackets), then space, then something that
# can start a sentence. "Apple Inc. rose" does not split: "rose" starts lower-case.
SENTENCE_END = re.compile(r"(?<=[.!?])(?<!\b[A-Z]\.)[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])|\n\s*\n|\n")
CONTEXT_MAX_WORDS = 40
CONTEXT_STYLES = ("sentence", "marked", "masked", "window")
CONTEXT_WINDOW_WORDS = 12


def fold(text: str) -> str:
    """Lower case, one character for one character, so offsets stay valid ("İ".lower() has two)."""
    return "".join(ch if len(low := ch.lower()) != 1 else low for ch in text)


def is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def case_compatible(*, surface: str, alias: str) -> bool:
    if surface == alias:
        return True
    if fold(surface) != fold(alias):
        return False
    if not any(ch.isupper() for ch in alias):
        return True
    return any(ch.isupper() for ch in surface)


@dataclass(frozen=True)
class DetectedSpan:
    start: int
    end: int
    text: str
    entity_ids: tuple[int, ...]  # candidate entities whose alias matches this surface
    alias_norm: str


@dataclass
class AliasMatcher:
    """All aliases of one KB in one automaton. `entries` maps folded alias → [(alias text, entity id)]."""

    entries: dict[str, list[tuple[str, int]]] = field(default_factory=lambda: defaultdict(list))
    automaton: ahocorasick.Automaton | None = None

    @classmethod
    def build(cls, aliases: Iterable[tuple[str, int]]) -> AliasMatcher:
        matcher = cls()
        for text, entity_id in aliases:
            text = text.strip()
            if text:
                matcher.entries[fold(text)].append((text, entity_id))
        automaton = ahocorasick.Automaton()
        for key in matcher.entries:
            automaton.add_word(key, key)
        if matcher.entries:
            automaton.make_automaton()
            matcher.automaton = automaton
        return matcher

    def candidates(self, surface: str) -> tuple[int, ...]:
        """Entities one of whose aliases this exact surface (case rules applied) can be."""
        seen: dict[int, None] = {}
        for alias, entity_id in self.entries.get(fold(surface), ()):
            if case_compatible(surface=surface, alias=alias):
                seen.setdefault(entity_id)
        return tuple(seen)

    def find(self, text: str) -> list[DetectedSpan]:
        if self.automaton is None or not text:
            return []
        folded = fold(text)
        found: list[DetectedSpan] = []
        for last, key in self.automaton.iter(folded):
            start, end = last - len(key) + 1, last + 1
            # Boundaries matter only where the alias itself starts/ends with a word character.
            if is_word_char(key[0]) and start > 0 and is_word_char(text[start - 1]):
                continue
            if is_word_char(key[-1]) and end < len(text) and is_word_char(text[end]):
                continue
            surface = text[start:end]
            entity_ids = self.candidates(surface)
            if entity_ids:
                found.append(DetectedSpan(start, end, surface, entity_ids, key))
        return longest_non_overlapping(found)


def longest_non_overlapping(spans: list[DetectedSpan]) -> list[DetectedSpan]:
    chosen: list[DetectedSpan] = []
    taken: list[tuple[int, int]] = []
    for span in sorted(spans, key=lambda s: (-(s.end - s.start), s.start)):
        if all(span.end <= lo or span.start >= hi for lo, hi in taken):
            chosen.append(span)
            taken.append((span.start, span.end))
    return sorted(chosen, key=lambda s: s.start)


def sentence_bounds(text: str) -> list[tuple[int, int]]:
    bounds, start = [], 0
    for match in SENTENCE_END.finditer(text):
        bounds.append((start, match.start()))
        start = match.end()
    bounds.append((start, len(text)))
    return [(lo, hi) for lo, hi in bounds if hi > lo]


def sentence_around(text: str, start: int, end: int) -> tuple[str, int, int]:
    """The sentence holding text[start:end], and the span's offsets inside it."""
    for lo, hi in sentence_bounds(text):
        if lo <= start < hi:
            hi = max(hi, end)
            sentence = text[lo:hi]
            stripped = sentence.lstrip()
            lo += len(sentence) - len(stripped)
            sentence = text[lo:hi].rstrip()
            return sentence, start - lo, end - lo
    return text, start, end


@dataclass(frozen=True)
class PlainContext:
    """The words a mention is read in (no marks) and the mention's span inside them."""

    text: str
    start: int
    end: int


def _slice_words(sentence: str, s_start: int, s_end: int, *, width: int) -> PlainContext:
    # Slice the original string (no split/join) so the context reads exactly like the text.
    before_words = [m.start() for m in re.finditer(r"\S+", sentence[:s_start])]
    lo = before_words[-width] if len(before_words) >= width else 0
    after_words = [m.end() for m in re.finditer(r"\S+", sentence[s_end:])]
    hi = s_end + after_words[width - 1] if len(after_words) >= width else len(sentence)
    piece = sentence[lo:hi]
    lead = len(piece) - len(piece.lstrip())
    return PlainContext(piece.strip(), s_start - lo - lead, s_end - lo - lead)


def mention_context_plain(text: str, start: int, end: int, *, style: str = "sentence") -> PlainContext:
    width = CONTEXT_WINDOW_WORDS if style == "window" else CONTEXT_MAX_WORDS
    if style == "window":
        sentence, s_start, s_end = text, start, end
    else:
        sentence, s_start, s_end = sentence_around(text, start, end)
    return _slice_words(sentence, s_start, s_end, width=width)


def context_styled(context: PlainContext, *, style: str) -> str:
    """The string the encoder reads: "marked" puts brackets around the mention, "masked" replaces it with [MASK]."""
    mention = context.text[context.start : context.end]
    if style == "marked":
        mention = f"[{mention}]"
    elif style == "masked":
        mention = "[MASK]"
    return (context.text[: context.start] + mention + context.text[context.end :]).strip()


def mention_context(text: str, start: int, end: int, *, style: str = "sentence") -> str:
    """The string embedded for a mention: its sentence, cut to CONTEXT_MAX_WORDS words each side.

    style "marked" puts brackets around the mention, "masked" replaces it with [MASK], "window"
    takes CONTEXT_WINDOW_WORDS words each side ignoring sentence ends (measured by `tune_linker`).
    A stored mention whose sentence is exactly a query's plain context gets the same string, so a
    correction stored from the linker's context (`LinkedMention.context`) reproduces its vector.
    """
    return context_styled(mention_context_plain(text, start, end, style=style), style=style)


def mention_contexts(
    text: str, spans: list[DetectedSpan], *, style: str = "sentence", rival_window: int = 6,
    replacement: str = "",
) -> list[str]:
    """One context per mention, as the encoder reads it (see `mention_contexts_plain`)."""
    return [context_styled(c, style=style)
            for c in mention_contexts_plain(text, spans, style=style, rival_window=rival_window,
                                            replacement=replacement)]


def mention_contexts_plain(
    text: str, spans: list[DetectedSpan], *, style: str = "sentence", rival_window: int = 6,
    replacement: str = "",
) -> list[PlainContext]:
    """One context per mention: `mention_context`, with the other mentions of its sentence that could name
    the same entity taken out ("Michael Jordan visited Jordan": the country's "Jordan" is read as
    "visited Jordan", not pulled towards the player by his full name). Mentions with nothing in common
    keep each other as context (Apple next to "The Beatles" helps). A sentence with one mention gets
    exactly the context it always had, the one stored mentions are embedded with.

    rival_window: when rivals were taken out, keep at most this many words each side of the mention (0 = the
    whole sentence): the words right around a name decide its sense ("write Java all day"). Chosen by
    `tune_linker --rival-windows` on sentence pairs made from the KB's own mentions (evaluation.rival_pairs_evaluate).
    """
    bounds = sentence_bounds(text)

    def sentence_of(position: int) -> int:
        return next((i for i, (lo, hi) in enumerate(bounds) if lo <= position < hi), -1)

    sentences = [sentence_of(span.start) for span in spans]
    contexts = []
    for i, span in enumerate(spans):
        rivals = [
            other
            for j, other in enumerate(spans)
            if j != i and sentences[j] == sentences[i] and set(other.entity_ids) & set(span.entity_ids)
        ]
        if not rivals:
            contexts.append(mention_context_plain(text, span.start, span.end, style=style))
            continue
        pieces, cursor, start = [], 0, span.start
        for other in sorted(rivals, key=lambda o: o.start):
            pieces.append(text[cursor : other.start])
            pieces.append(replacement)
            if other.end <= span.start:
                start -= (other.end - other.start) - len(replacement)
            cursor = other.end
        pieces.append(text[cursor:])
        masked = re.sub(r"[ \t]{2,}", " ", "".join(pieces))
        # collapsing doubled spaces may shift the mention: find it again at (or just before) its old place
        surface = span.text
        places = [m.start() for m in re.finditer(re.escape(surface), masked)]
        start = min(places, key=lambda c: abs(c - start)) if places else max(0, start)
        if rival_window:
            sentence, s_start, s_end = sentence_around(masked, start, start + len(surface))
            contexts.append(_slice_words(sentence, s_start, s_end, width=rival_window))
        else:
            contexts.append(mention_context_plain(masked, start, start + len(surface), style=style))
    return contexts


# --- Names no alias covers ------------------------------------------------------------------
#
# A name is a run of capitalised words ("Emmanuel Macron", "Paris Saint-Germain", "L.L. Bean"). Two uses:
# - a run that no alias touches is an *unknown name*: shown as a NIL mention ("not in the KB");
# - an alias that a longer name continues ("Paris" in "Paris Saint-Germain", "Jordan" in "Jordan Peele",
#   "Ford" in "Tom Ford") names something else: NIL (when the longer name were an alias, the longest
#   match would have taken it).
# Which capitalised words are just words is learnt from the KB's own text (`NameModel.from_texts`): a word
# seen more often in lower case than capitalised inside a sentence is a common word ("The", "After",
# "Seven"). Titles, directions and nationality words before a name qualify it rather than extend it
# ("President Washington", "East Java", "Brazilian Ronaldo").

TOKEN_RE = re.compile(
    r"(?:[^\W\d_]\.)+(?!\w)"  # initials: L.L. / H.
    r"|[^\W_](?:[\w\-]|\.(?=\w)|['’](?=\w)(?![sS]\b))*"  # words, with inner dots, hyphens, apostrophes
    r"|['’][sS]\b"  # a possessive, which ends a name
)
ALWAYS_COMMON = {
    "i", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "january", "february",
    "march", "april", "may", "june", "july", "august", "september", "october", "november", "december",
}
# Words that are never (part of) a name, whatever their case, and whatever the KB's text says: the KB is written
# like an encyclopedia, so "we", "yesterday" or "honestly" are rare in it, and a capital "We" at the start of a
# sentence (or after a quote) was read as a name ("We visited Berlin" → "We"; "Yesterday Angela Merkel").
# Closed classes (pronouns, determiners, quantifiers, prepositions, conjunctions, auxiliaries, wh-words), time
# words (so a leading "Yesterday", "Last night", "This morning" is trimmed off the name after it), sentence
# adverbs and discourse words ("Meanwhile", "Sadly", "Thanks", "Sorry").
EVERYDAY_COMMON = frozenset("""
i me my mine myself we us our ours ourselves you your yours yourself yourselves he him his himself she her hers
herself it its itself they them their theirs themselves one someone somebody anyone anybody everyone everybody
no nobody nothing something anything everything
a an the this that these those some any each every both either neither all most many much more few several
other another such own same enough half
in on at by for from to of with without about above below after before during since until till between among
through across against around along beside besides near off over under into onto upon via per within
and or but nor so yet if unless because although though while whereas whether than as once
is am are was were be been being have has had do does did can could shall should would must might ought
what which who whom whose when where why how whatever whenever wherever however
not yes ok okay oh hey hi hello dear please thanks thank sorry congratulations congrats welcome cheers well
yesterday today tomorrow tonight now then soon later earlier ago lately recently meanwhile already still again
morning afternoon evening night noon midnight day days week weeks weekend month months year years season
last next past coming previous following early late
also even just only maybe perhaps instead anyway otherwise therefore moreover furthermore nevertheless
nonetheless likewise indeed actually apparently basically certainly clearly eventually finally fortunately
unfortunately generally hopefully honestly ideally interestingly luckily unluckily naturally obviously
originally personally possibly presumably probably really sadly seriously similarly surely surprisingly
thankfully typically ultimately usually currently previously initially importantly additionally frankly
happily briefly sometimes often always never usually here there
two three four five six seven eight nine ten eleven twelve twenty hundred thousand first second third
""".split())
QUALIFIERS = {
    "mr", "mrs", "ms", "dr", "sir", "lady", "lord", "saint", "st", "president", "king", "queen", "prince",
    "princess", "emperor", "empress", "pope", "general", "captain", "senator", "governor", "mayor", "chancellor",
    "north", "south", "east", "west", "central", "northern", "southern", "eastern", "western", "upper", "lower",
    "greater", "greek", "french", "dutch", "roman", "american", "german", "mexican", "korean", "thai", "swiss",
    "irish", "british", "english", "scottish", "welsh", "italian", "spanish", "chinese", "japanese",
}
NATIONALITY_SUFFIXES = ("ian", "ean", "ese", "ish")


@dataclass(frozen=True)
class NameRun:
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class NameModel:
    """Which capitalised words are ordinary words, learnt from a KB's stored mentions and descriptions."""

    common: frozenset[str]
    names: frozenset[str]  # words seen capitalised inside a sentence more often than in lower case

    @classmethod
    def from_texts(cls, texts) -> NameModel:
        low: dict[str, int] = defaultdict(int)
        cap: dict[str, int] = defaultdict(int)
        for text in texts:
            for i, token in enumerate(re.findall(r"[^\W\d_][\w'’\-]*", text)):
                if token.islower():
                    low[token] += 1
                elif token[0].isupper() and i > 0:
                    cap[token.lower()] += 1
        common = {w for w, n in low.items() if n > cap.get(w, 0)} | ALWAYS_COMMON
        names = {w for w, n in cap.items() if n >= low.get(w, 0)} - ALWAYS_COMMON
        return cls(frozenset(common), frozenset(names))

    def is_name_token(self, token: str, *, sentence_start: bool) -> bool:
        """Capitalised and not a common word; a sentence's first word only when the KB knows it as a name
        ("Investigators traced…" is not a name, "Berlin is…" is not recognised either: too ambiguous)."""
        if not token[0].isupper() or token[0] in "'’":
            return False
        word = token.lower().strip(".'’")
        if word in self.common or word in EVERYDAY_COMMON:
            return False
        return not sentence_start or word in self.names or "." in token


def _tokens(sentence: str, offset: int) -> list[tuple[int, int, str]]:
    return [(offset + m.start(), offset + m.end(), m.group(0)) for m in TOKEN_RE.finditer(sentence)]


def _is_qualifier(token: str) -> bool:
    word = token.lower().strip(".")
    return word in QUALIFIERS or word.endswith(NATIONALITY_SUFFIXES)


def name_runs(text: str, *, model: NameModel) -> list[NameRun]:
    """Maximal runs of adjacent name-like tokens (one space apart), per sentence."""
    runs: list[NameRun] = []
    for lo, hi in sentence_bounds(text):
        current: list[tuple[int, int]] = []
        tentative = False  # the run started with an unknown first word: kept only if a name follows
        for index, (start, end, token) in enumerate(_tokens(text[lo:hi], lo)):
            name_like = model.is_name_token(token, sentence_start=index == 0)
            if index == 0 and not name_like and model.is_name_token(token, sentence_start=False):
                current, tentative = [(start, end)], True  # "Angela Merkel met…"
                continue
            joined = current and text[current[-1][1] : start] == " "
            if name_like and (not current or joined):
                current.append((start, end))
                continue
            if current and not (tentative and len(current) == 1):
                runs.append(NameRun(current[0][0], current[-1][1], text[current[0][0] : current[-1][1]]))
            current, tentative = ([(start, end)] if name_like else []), False
        if current and not (tentative and len(current) == 1):
            runs.append(NameRun(current[0][0], current[-1][1], text[current[0][0] : current[-1][1]]))
    return [run for run in runs if any(ch.isalpha() for ch in run.text)]


def longer_name(text: str, start: int, end: int, *, model: NameModel) -> NameRun | None:
    """The longer name that text[start:end] is part of ("Jordan" → "Jordan Peele"), or None."""
    if not text[start:end][:1].isupper():
        return None  # a lower-case mention is a common noun: "Granny Smith apple", "Bengal tiger"
    sentence, s_start, _ = sentence_around(text, start, end)
    base = start - s_start
    tokens = _tokens(sentence, base)
    before = [t for t in tokens if t[1] <= start]
    after = [t for t in tokens if t[0] >= end]
    lo, hi = start, end
    while before and text[before[-1][1] : lo] == " ":
        b_start, _, token = before[-1]
        # next to the alias, a sentence's first word counts like any other ("Pedro Pascal starred…")
        if _is_qualifier(token) or not model.is_name_token(token, sentence_start=False):
            break
        lo = b_start
        before.pop()
    while after and text[hi : after[0][0]] in (" ", "-"):
        _, a_end, token = after[0]
        if token.isupper() and len(token.strip(".")) > 1:
            break  # an acronym after a name qualifies it: "Apple CEO"
        if not model.is_name_token(token, sentence_start=False):
            break
        hi = a_end
        after.pop(0)
    if (lo, hi) == (start, end):
        return None
    return NameRun(lo, hi, text[lo:hi])


def unknown_names(text: str, *, covered: list[tuple[int, int]], model: NameModel) -> list[NameRun]:
    """Name runs that no detected alias span touches."""
    return [run for run in name_runs(text, model=model)
            if all(run.end <= lo or run.start >= hi for lo, hi in covered)]
