from apps.linking.detection import AliasMatcher, fold, mention_context, sentence_around

ALIASES = [
    ("Paris", 1),
    ("Paris Hilton", 2),
    ("Paris", 2),
    ("Paris, Texas", 3),
    ("Paris", 3),
    ("apple", 4),
    ("Apple", 5),
    ("Apple Inc.", 5),
    ("Amazon", 6),
    ("Amazon rainforest", 7),
    ("C++", 8),
    ("New York", 9),
    ("York", 10),
]


def spans(text):
    return [(s.text, s.entity_ids) for s in AliasMatcher.build(ALIASES).find(text)]


def test_longest_match_wins_over_its_parts():
    assert spans("Paris Hilton landed in Paris, Texas.") == [("Paris Hilton", (2,)), ("Paris, Texas", (3,))]
    assert spans("Fires in the Amazon rainforest spread.") == [("Amazon rainforest", (7,))]
    assert spans("She moved to New York last year.") == [("New York", (9,))]


def test_overlapping_matches_keep_one_span():
    found = AliasMatcher.build(ALIASES).find("Paris Hilton, Texas")
    # "Paris Hilton" and "Paris" overlap: one span, the longest.
    assert [(s.start, s.end) for s in found] == [(0, 12)]


def test_word_boundaries_and_punctuation():
    assert spans("Parisian cafés and Parisville") == []
    assert spans("(Paris), Paris's streets; Paris!")[0][0] == "Paris"
    assert len(spans("(Paris), Paris's streets; Paris!")) == 3
    assert spans("pineapple and applesauce") == []
    assert spans("I code in C++ daily") == [("C++", (8,))]
    assert spans("Apple Inc. shares") == [("Apple Inc.", (5,))]


def test_case_rules():
    # lower-case alias (the fruit) matches any casing; capitalised alias (the company) needs a capital
    assert spans("an apple a day") == [("apple", (4,))]
    assert spans("Apple unveiled a phone") == [("Apple", (4, 5))]
    assert spans("APPLE SHARES FALL") == [("APPLE", (4, 5))]
    assert spans("walked through paris at night") == []  # all lower case: not the name


def test_candidates_are_every_entity_sharing_the_alias():
    matcher = AliasMatcher.build(ALIASES)
    assert set(matcher.candidates("Paris")) == {1, 2, 3}
    assert matcher.candidates("Lyon") == ()


def test_fold_keeps_offsets_for_odd_unicode():
    text = "İstanbul and Paris"
    assert len(fold(text)) == len(text)
    found = AliasMatcher.build(ALIASES).find(text)
    assert [(s.start, s.end, text[s.start : s.end]) for s in found] == [(13, 18, "Paris")]


def test_empty_inputs():
    assert AliasMatcher.build([]).find("Paris") == []
    assert AliasMatcher.build(ALIASES).find("") == []


def test_sentence_and_context():
    text = "I live in Lyon. Paris is far away! Apple Inc. rose today."
    start = text.index("Paris")
    assert sentence_around(text, start, start + 5) == ("Paris is far away!", 0, 5)
    start = text.index("Apple")
    sentence, s, e = sentence_around(text, start, start + 5)
    assert sentence == "Apple Inc. rose today." and sentence[s:e] == "Apple"
    assert mention_context(text, start, start + 5) == "Apple Inc. rose today."
    assert mention_context(text, start, start + 5, style="marked") == "[Apple] Inc. rose today."
    long_text = " ".join(["word"] * 100) + " Paris " + " ".join(["end"] * 100)
    p = long_text.index("Paris")
    assert len(mention_context(long_text, p, p + 5).split()) == 81
