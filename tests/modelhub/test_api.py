import pytest

from apps.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_models_list(api_client, demo_models):
    response = api_client.get("/api/models")
    assert response.status_code == 200
    rows = {(r["name"], r["version"]): r for r in response.json()}
    assert rows[("tfidf-logreg", "1")] == {"name": "tfidf-logreg", "version": "1", "kind": "classifier", "aliases": ["production"]}
    assert rows[("tfidf-logreg", "2")]["aliases"] == ["candidate"]
    assert rows[("minilm-l6", "1")]["kind"] == "encoder"


def test_api_needs_auth(client, demo_models):
    assert client.get("/api/models").status_code == 401
    assert client.post("/api/models/tfidf-logreg/predict", {"inputs": ["x"]}, content_type="application/json").status_code == 401


@pytest.mark.parametrize("name", ["tfidf-logreg", "minilm-topic"])
def test_predict_one_batch(api_client, demo_models, demo_build, name, fresh_caches):
    texts = demo_build.data.test_texts[:5]
    response = api_client.post(f"/api/models/{name}/predict", {"inputs": texts}, content_type="application/json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["model"] == name and body["version"] == "1" and body["latency_ms"] > 0
    labels = demo_models[f"{name}@1"].labels
    assert len(body["predictions"]) == 5
    for prediction in body["predictions"]:
        assert prediction["label"] in labels and set(prediction["scores"]) == set(labels)
    assert AuditEvent.objects.filter(action="prediction", target=f"{name}@1").exists()


def test_predict_chosen_version(api_client, demo_models):
    response = api_client.post("/api/models/tfidf-logreg/predict", {"inputs": ["market stocks"], "version": "2"},
                               content_type="application/json")
    assert response.status_code == 200 and response.json()["version"] == "2"


@pytest.mark.parametrize(
    ("url", "payload", "status", "message"),
    [
        ("/api/models/nope/predict", {"inputs": ["x"]}, 404, "Unknown model"),
        ("/api/models/tfidf-logreg/predict", {"inputs": ["x"], "version": "77"}, 404, "no version '77'"),
        ("/api/models/tfidf-logreg/predict", {"inputs": ["  "]}, 400, "empty"),
        ("/api/models/tfidf-logreg/predict", {"inputs": []}, 400, "at least one"),
        ("/api/models/minilm-l6/predict", {"inputs": ["x"]}, 400, "only classifiers"),
    ],
)
def test_predict_bad_input(api_client, demo_models, url, payload, status, message):
    response = api_client.post(url, payload, content_type="application/json")
    assert response.status_code == status, response.content
    assert message in response.json()["detail"]


def test_predict_malformed_body(api_client, demo_models):
    response = api_client.post("/api/models/tfidf-logreg/predict", {"texts": "x"}, content_type="application/json")
    assert response.status_code == 422
