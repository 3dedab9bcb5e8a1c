"""Issue 25, item 3: the "why" of a link adds up, and near ties are flagged (page and API)."""
import random
import re

import pytest
from django.urls import reverse

from apps.linking.linker import (
    Candidate,
    EntityInfo,
    LinkerParams,
    ScoreTerm,
    kb_state,
    link,
    near_tie_find,
    rounded_to_total,
    score_terms,
)

TEXTS = [
    "Programmers love Java because of its huge library of frameworks.",
    "Volcanoes and rice fields cover the island of Java in Indonesia.",
    "Apple unveiled a new phone, and I ate an apple.",
    "Paris judged the goddesses before the Trojan War, long before tourists came to Paris.",
    "We paddled up the Amazon for a week; my parcel from Amazon never came.",
]


def test_rounded_terms_add_up_to_the_rounded_total():
    rng = random.Random(7)
    for _ in range(2000):
        values = [rng.uniform(-0.2, 1.0) * rng.choice([0.3, 0.7, 0.15, 1.0]) for _ in range(rng.randint(1, 3))]
        shown = rounded_to_total(values)
        assert round(sum(shown), 3) == round(sum(values), 3)
        assert all(abs(s - v) < 0.001 for s, v in zip(shown, values))
    # plain rounding would show 0.131 + 0.342 = 0.473 for a score of 0.472
    assert rounded_to_total([0.1305, 0.3415]) in ([0.13, 0.342], [0.131, 0.341])


def test_score_terms_mirror_the_score_formula():
    params = LinkerParams(prior_weight=0.15, profile_weight=0.7)
    terms = score_terms(mention_sim=0.434, profile_sim=0.489, prior=0.5, params=params)
    assert [(t.name, round(t.weight, 3)) for t in terms] == [
        ("mentions", 0.255), ("description", 0.595), ("prior", 0.15)]
    # a missing description hands its weight to the mentions; the prior is listed at weight 0 too
    only = score_terms(mention_sim=0.4, profile_sim=None, prior=0.5, params=LinkerParams(prior_weight=0.0))
    assert [(t.name, t.weight) for t in only] == [("mentions", 1.0), ("prior", 0.0)]


@pytest.mark.parametrize("prior_weight", [0.0, 0.15])
def test_every_candidates_terms_sum_to_its_score(kb, prior_weight):
    state = kb_state(kb)
    params = LinkerParams.from_settings(prior_weight=prior_weight)
    checked = 0
    for text in TEXTS:
        for mention in link(state=state, text=text, params=params).mentions:
            for c in mention.candidates:
                assert sum(t.contribution for t in c.terms) == pytest.approx(c.score, abs=1e-6)
                assert round(sum(shown for _, shown in c.terms_shown), 3) == round(c.score, 3)
                weights = {t.name: t.weight for t in c.terms}
                assert weights["description"] == pytest.approx((1 - prior_weight) * params.profile_weight)
                assert weights["prior"] == prior_weight
                # the mentions term is the mean of exactly the k cosines listed as evidence
                assert len(c.evidence) == min(params.top_k, c.entity.mention_count)
                assert c.mention_sim == pytest.approx(sum(s for _, s in c.evidence) / len(c.evidence), abs=1e-6)
                checked += 1
    assert checked >= 10


def _numbers(pattern, html):
    return [float(x) for x in re.findall(pattern, html)]


def test_the_page_shows_each_term_and_their_sum_equal_to_the_score(client, user, kb):
    client.force_login(user)
    for text, index in [(TEXTS[0], 0), (TEXTS[1], 0), (TEXTS[2], 0), (TEXTS[4], 0), (TEXTS[4], 1)]:
        html = client.get(reverse("linking:page"), {"text": text, "m": index}).content.decode()
        rows = re.findall(r'<tr class="why-row".*?</tr>', html, re.S)
        assert len(rows) >= 2
        for row in rows:
            score = float(re.search(r'data-score="([0-9.\-]+)"', row).group(1))
            shown = _numbers(r'<span class="term-shown">([0-9.\-]+)</span>', row)
            assert round(sum(shown), 3) == score, row
            assert "mean cosine of the" in row and "cosine to its description" in row and "alias prior" in row
        # the k cosines listed average to the mentions term's value shown (to rounding)
        for cell in re.findall(r'<ul class="evidence">.*?</td>', html, re.S):
            cosines = _numbers(r'<span class="num cosine">([0-9.\-]+)</span>', cell)
            mean = _numbers(r'<span class="num mention-sim">([0-9.\-]+)</span>', cell)
            assert cosines and len(mean) == 1
            assert abs(sum(cosines) / len(cosines) - mean[0]) <= 0.001  # each number rounded to 3 places


def _candidate(key, score):
    return Candidate(EntityInfo(hash(key) % 1000, key, key.title(), "person", "", "", 3), score, score, 0.5,
                     terms=[ScoreTerm("mentions", 1.0, score)])


def test_near_tie_only_within_the_margin():
    close = [_candidate("michael_jordan", 0.472), _candidate("michael_b_jordan", 0.469)]
    far = [_candidate("michael_jordan", 0.472), _candidate("michael_b_jordan", 0.45)]
    assert near_tie_find(ranked=close, margin=0.01) == (close[0], close[1])
    assert near_tie_find(ranked=far, margin=0.01) is None
    assert near_tie_find(ranked=close[:1], margin=0.01) is None


@pytest.mark.parametrize("margin, shown", [(1.0, True), (0.0, False)])
def test_near_tie_on_the_page_and_in_the_api(client, user, kb, settings, margin, shown):
    settings.LINKING_NEAR_TIE = margin
    client.force_login(user)
    text = TEXTS[0]
    html = client.get(reverse("linking:page"), {"text": text, "m": 0}).content.decode()
    assert ('id="near-tie"' in html) is shown
    assert ("near tie: " in html) is shown
    body = client.post("/api/link", {"text": text}, content_type="application/json").json()
    tie = body["mentions"][0]["near_tie"]
    if shown:
        first, second = body["mentions"][0]["candidates"][:2]
        assert tie["entity_id"] == first["entity_id"] and tie["runner_up_id"] == second["entity_id"]
        assert tie["text"].startswith("near tie: ") and f"{second['score']:.3f}"[:4] in tie["text"]
    else:
        assert tie is None
    terms = body["mentions"][0]["candidates"][0]["terms"]
    assert round(sum(t["contribution"] for t in terms), 3) == round(body["mentions"][0]["candidates"][0]["score"], 3)
