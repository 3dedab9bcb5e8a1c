"""Names no alias covers: capitalised runs, with common words learnt from the KB's own text."""
from apps.linking.detection import NameModel, longer_name, name_runs, sentence_bounds, unknown_names

MODEL = NameModel.from_texts([
    "The tourists walked along the river in the evening after the long seven hour flight.",
    "In the east of the country the king met the president of the club.",
    "She met Paris at the party where Achilles and Hector argued.",
])


def runs(text):
    return [r.text for r in name_runs(text, model=MODEL)]


def test_capitalised_runs_are_names_and_common_words_are_not():
    assert runs("Angela Merkel met Emmanuel Macron in Berlin to discuss Airbus.") == [
        "Angela Merkel", "Emmanuel Macron", "Berlin", "Airbus"]
    # a first word is a name only when the KB knows it as one, or a name follows it
    assert runs("Investigators traced the money. After that they left.") == []
    assert runs("Achilles fought.") == ["Achilles"]
    assert runs("Samuel L. Jackson starred. Disney's Hercules sang.") == ["Samuel L. Jackson", "Hercules"]


def test_an_alias_inside_a_longer_name_is_flagged():
    text = "Comedian Jordan Peele and Tom Ford met Paris Hilton in East Java."
    assert longer_name(text, text.index("Jordan"), text.index("Jordan") + 6, model=MODEL).text == "Jordan Peele"
    assert longer_name(text, text.index("Ford"), text.index("Ford") + 4, model=MODEL).text == "Tom Ford"
    # qualifiers before a name do not make a new one; neither do acronyms after it
    assert longer_name(text, text.index("Java"), text.index("Java") + 4, model=MODEL) is None
    other = "King Paris smiled. Apple CEO Tim Cook spoke. She ate a Granny Smith apple."
    assert longer_name(other, 5, 10, model=MODEL) is None
    assert longer_name(other, other.index("Apple"), other.index("Apple") + 5, model=MODEL) is None
    assert longer_name(other, other.index("apple"), other.index("apple") + 5, model=MODEL) is None


def test_unknown_names_skip_covered_spans_and_initials_do_not_end_sentences():
    text = "Paris Hilton met Angela Merkel."
    assert [r.text for r in unknown_names(text, covered=[(0, 12)], model=MODEL)] == ["Angela Merkel"]
    assert len(sentence_bounds("George H. W. Bush led the coalition. Then it ended.")) == 2


# A KB written like an encyclopedia: "We" is only ever seen capitalised (after a quote), never in lower case.
QUOTING = NameModel.from_texts([
    'The coach said: "We will win the cup." The tourists walked along the river in the evening.',
    "In the east of the country the king met the president of the club.",
])


def test_sentence_initial_pronouns_and_common_words_are_not_names():
    quoting = lambda text: [r.text for r in name_runs(text, model=QUOTING)]  # noqa: E731
    assert quoting("We visited Berlin last spring.") == ["Berlin"]
    assert quoting("They met Angela Merkel. Our team flew to Tokyo.") == ["Angela Merkel", "Tokyo"]
    assert quoting("Sadly the museum was closed. Thanks, Isabel!") == ["Isabel"]


def test_leading_time_words_are_trimmed_off_the_name():
    assert runs("Yesterday Angela Merkel spoke.") == ["Angela Merkel"]
    assert runs("Last night Manchester United lost. This morning Sundar Pichai spoke.") == [
        "Manchester United", "Sundar Pichai"]
    assert runs("Meanwhile Elon Musk posted. Tonight Taylor Swift plays.") == ["Elon Musk", "Taylor Swift"]
    # a name that starts the sentence is still one when a name follows it
    assert runs("Angela Merkel met Tim Cook yesterday.") == ["Angela Merkel", "Tim Cook"]
