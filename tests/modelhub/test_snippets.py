"""“Use it via the API” snippets: filled with the text on screen, never with a token, and they work."""
import json
import shlex

import pytest
from django.urls import reverse

from apps.modelhub.snippets import api_snippets


def test_snippets_quote_the_text_for_the_shell_and_python():
    text = "It's a \"quoted\" text; rm -rf /"
    snippets = api_snippets(url="http://testserver/api/models/m/predict", payload={"inputs": [text]})
    words = shlex.split(snippets["curl"].replace("\\\n", " "))
    assert json.loads(words[words.index("-d") + 1]) == {"inputs": [text]}
    assert '"Authorization: Bearer $SAMPLESCOPE_TOKEN"' in snippets["curl"]
    compile(snippets["python"], "snippet", "exec")  # valid Python
    assert "os.environ['SAMPLESCOPE_TOKEN']" in snippets["python"] and json.dumps(text) in snippets["python"]


@pytest.mark.django_db
def test_model_page_snippet_has_the_text_on_screen_and_the_api_answers_it(client, user, demo_models, api_token):
    client.force_login(user)
    html = client.post(reverse("modelhub:detail", args=["tfidf-logreg"]),
                       {"text": "stocks market earnings", "version": "2"}, follow=True).content.decode()
    assert 'id="snippet-curl"' in html and "http://testserver/api/models/tfidf-logreg/predict" in html
    assert "{&quot;inputs&quot;: [&quot;stocks market earnings&quot;], &quot;version&quot;: &quot;2&quot;}" in html
    assert api_token not in html
    # the payload in the snippet is what the API takes
    response = client.post("/api/models/tfidf-logreg/predict", {"inputs": ["stocks market earnings"], "version": "2"},
                           content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {api_token}")
    assert response.status_code == 200 and response.json()["version"] == "2"
