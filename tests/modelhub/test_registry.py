"""Registration: what passes, what is refused and why, and that a refused version changes nothing."""
import hashlib
import json
import shutil

import boto3
import pytest
from django.core.management import CommandError, call_command

from apps.audit.models import AuditEvent
from apps.modelhub.models import ModelAlias, ModelVersion
from apps.modelhub.runtime import predict
from apps.modelhub.selectors import ModelNotFound, encoder_for, model_version_get
from apps.modelhub.services import RegistrationRefused, model_alias_move, model_register
from apps.modelhub.store import local_path, store_read_bytes, uri_join


def version_folder(tmp_path, demo_build, *, source="tfidf-logreg@2", name="clf", version="1", card_changes=None,
                   model_bytes=None):
    """A copy of a demo version folder with its card (and optionally its model bytes) changed."""
    source_uri = demo_build.published[source][0]
    folder = tmp_path / "store" / name / version
    folder.mkdir(parents=True)
    for item in local_path(source_uri).iterdir():
        shutil.copy(item, folder / item.name)
    card = json.loads((folder / "card.json").read_text())
    card.update(name=name, version=version)
    if model_bytes is not None:
        (folder / "model.onnx").write_bytes(model_bytes)
        card["files"]["model.onnx"] = hashlib.sha256(model_bytes).hexdigest()
    for key, value in (card_changes or {}).items():
        card[key] = value
    (folder / "card.json").write_text(json.dumps(card))
    return str(folder)


@pytest.fixture(autouse=True)
def _store_is_tmp_path(tmp_path, settings):
    """Registration reads only inside MODEL_STORE_URI: these tests' version folders lie under tmp_path."""
    settings.MODEL_STORE_URI = str(tmp_path)


@pytest.mark.django_db
def test_register_moves_aliases_and_audits(tmp_path, demo_build, user, fresh_caches):
    uri = version_folder(tmp_path, demo_build)
    mv = model_register(uri=uri, user=user, aliases=("production",))
    assert (mv.name, mv.version, mv.kind, mv.registered_by) == ("clf", "1", "classifier", user)
    assert model_version_get(name="clf") == mv
    assert mv.checksums["model.onnx"] == json.loads(store_read_bytes(uri=uri_join(uri, "card.json")))["files"]["model.onnx"]
    assert AuditEvent.objects.filter(action="model_registration", target="clf@1", outcome="ok").exists()
    with pytest.raises(RegistrationRefused, match="already registered"):
        model_register(uri=uri, user=user)


def _refusal(tmp_path, demo_build, **kwargs):
    uri = version_folder(tmp_path, demo_build, version="9", **kwargs)
    with pytest.raises(RegistrationRefused) as caught:
        model_register(uri=uri, user=None, aliases=("production",))
    return str(caught.value)


@pytest.mark.django_db
def test_refusals_say_why_and_never_replace_the_serving_version(tmp_path, demo_build, fresh_caches):
    serving = model_register(uri=version_folder(tmp_path, demo_build), aliases=("production",))

    assert "Corrupt or unsupported model" in _refusal(tmp_path / "a", demo_build, model_bytes=b"not an onnx file")
    good_card = json.loads((local_path(serving.uri) / "card.json").read_text())
    assert "Wrong checksum" in _refusal(tmp_path / "b", demo_build, card_changes={"files": {**good_card["files"], "model.onnx": "0" * 64}})
    assert "Missing labels" in _refusal(tmp_path / "c", demo_build, card_changes={"labels": good_card["labels"][:-1]})
    assert "has no labels" in _refusal(tmp_path / "d", demo_build, card_changes={"labels": []})
    assert "Wrong input type" in _refusal(tmp_path / "e", demo_build, source="minilm-topic@1",
                                          card_changes={"input": {"kind": "text"}})
    assert "no examples" in _refusal(tmp_path / "f", demo_build, card_changes={"examples": []})
    assert "kind" in _refusal(tmp_path / "g", demo_build, card_changes={"kind": "regressor"})
    with pytest.raises(RegistrationRefused, match="No readable card.json"):
        model_register(uri=str(tmp_path / "nowhere" / "clf" / "3"))

    assert list(ModelVersion.objects.values_list("version", flat=True)) == ["1"]
    assert model_version_get(name="clf") == serving
    assert AuditEvent.objects.filter(action="model_registration", outcome="refused").count() == 8


@pytest.mark.django_db
def test_register_from_s3_and_predict(s3_bucket, tmp_path, demo_build, fresh_caches, settings):
    settings.MODEL_STORE_URI = s3_bucket
    local = local_path(version_folder(tmp_path, demo_build, name="s3-clf", version="4"))
    client = boto3.client("s3", region_name="us-east-1")
    for item in local.iterdir():
        client.upload_file(str(item), "models", f"registry/s3-clf/4/{item.name}")
    mv = model_register(uri=uri_join(s3_bucket, "s3-clf", "4"), aliases=("candidate",))
    assert mv.uri == "s3://models/registry/s3-clf/4"
    batch = predict(model_version=mv, texts=demo_build.data.test_texts[:3])
    assert len(batch.predictions) == 3


@pytest.mark.django_db
def test_alias_move_and_lookups(tmp_path, demo_build, fresh_caches):
    v1 = model_register(uri=version_folder(tmp_path, demo_build, version="1"), aliases=("production",))
    v2 = model_register(uri=version_folder(tmp_path, demo_build, version="2"), aliases=("candidate",))
    assert model_version_get(name="clf") == v1
    assert model_version_get(name="clf", alias="candidate") == v2
    model_alias_move(name="clf", alias="production", version="2")
    assert model_version_get(name="clf") == v2 and ModelAlias.objects.filter(name="clf").count() == 2
    with pytest.raises(ModelNotFound, match="no version '7'"):
        model_version_get(name="clf", version="7")
    with pytest.raises(ModelNotFound, match="Unknown model"):
        model_version_get(name="nope")


@pytest.mark.django_db
def test_encoder_registered_for_linking(demo_models):
    encoder = encoder_for(name="minilm-l6")
    vectors = encoder.embed(["Paris is in France.", "Berlin is in Germany."])
    assert vectors.shape == (2, 384)
    assert encoder_for(name="minilm-l6") is encoder
    with pytest.raises(ModelNotFound, match="not an encoder"):
        encoder_for(name="tfidf-logreg")


@pytest.mark.django_db
def test_register_and_list_commands(tmp_path, demo_build, capsys, fresh_caches):
    uri = version_folder(tmp_path, demo_build, name="cmd-clf")
    call_command("register_model", uri, "--alias", "production")
    call_command("list_models", "--json")
    listing = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert listing == [{"name": "cmd-clf", "version": "1", "kind": "classifier", "aliases": ["production"]}]
    bad = version_folder(tmp_path / "bad", demo_build, name="cmd-clf", version="2", model_bytes=b"garbage")
    with pytest.raises(CommandError, match="Refused: Corrupt"):
        call_command("register_model", bad)


@pytest.mark.django_db
def test_a_corrupted_tokenizer_is_refused_at_registration(tmp_path, demo_build, settings, fresh_caches):
    settings.MODEL_CACHE_DIR = tmp_path / "cache"  # nothing verified earlier in this session can stand in for it
    uri = version_folder(tmp_path, demo_build, source="minilm-topic@1", name="tok-clf", version="1")
    tokenizer_path = local_path(uri) / "tokenizer.json"
    tokenizer = json.loads(tokenizer_path.read_text())
    vocab = tokenizer["model"]["vocab"]
    vocab["paris"], vocab["the"] = vocab["the"], vocab["paris"]  # still a valid tokenizer, just the wrong one
    tokenizer_path.write_text(json.dumps(tokenizer))

    with pytest.raises(RegistrationRefused, match="Wrong checksum: .*tokenizer.json"):
        model_register(uri=uri, aliases=("production",))
    assert not ModelVersion.objects.filter(name="tok-clf").exists()
    assert not ModelAlias.objects.filter(name="tok-clf").exists()
    event = AuditEvent.objects.get(action="model_registration")
    assert event.outcome == "refused" and "tokenizer.json" in event.detail["reason"]


def _scaled_outputs(model_bytes: bytes, factor: float) -> bytes:
    """The same classifier with its `probabilities` output multiplied by `factor`."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    (producer,) = [node for node in graph.node if "probabilities" in node.output]
    producer.output[list(producer.output).index("probabilities")] = "unscaled_probabilities"
    graph.initializer.append(numpy_helper.from_array(np.array(factor, dtype=np.float32), name="scale_factor"))
    graph.node.append(helper.make_node("Mul", ["unscaled_probabilities", "scale_factor"], ["probabilities"]))
    onnx.checker.check_model(model)
    return model.SerializeToString()


@pytest.mark.django_db
def test_a_model_whose_outputs_are_not_probabilities_is_refused(tmp_path, demo_build, fresh_caches):
    source = local_path(demo_build.published["tfidf-logreg@2"][0]) / "model.onnx"
    scaled = _scaled_outputs(source.read_bytes(), 3.0)
    uri = version_folder(tmp_path, demo_build, name="not-probs", version="1", model_bytes=scaled)
    with pytest.raises(RegistrationRefused, match="not probabilities"):
        model_register(uri=uri, aliases=("production",))
    assert not ModelVersion.objects.filter(name="not-probs").exists()

    # The same surgery with a factor of 1 registers: the refusal is about the values, not the graph.
    same = version_folder(tmp_path / "ok", demo_build, name="not-probs", version="2",
                          model_bytes=_scaled_outputs(source.read_bytes(), 1.0))
    assert model_register(uri=same).version == "2"


@pytest.mark.django_db
def test_only_model_managers_may_register_through_the_page(client, plain_user, staff_user, tmp_path, demo_build,
                                                          fresh_caches):
    from django.urls import reverse

    uri = version_folder(tmp_path, demo_build, name="page-clf", version="1")
    client.force_login(plain_user)
    response = client.post(reverse("modelhub:register"), {"uri": uri, "aliases": "production"})
    assert response.status_code == 403
    response = client.post(reverse("modelhub:alias", args=["page-clf"]), {"alias": "production", "version": "1"})
    assert response.status_code == 403
    assert not ModelVersion.objects.filter(name="page-clf").exists()
    assert not AuditEvent.objects.filter(action="model_registration").exists()

    client.force_login(staff_user)
    response = client.post(reverse("modelhub:register"), {"uri": uri, "aliases": "production"})
    assert response.status_code == 302 and response["Location"] == reverse("modelhub:detail", args=["page-clf"])
    assert model_version_get(name="page-clf").registered_by == staff_user


@pytest.mark.django_db
def test_a_traversal_checksum_is_refused_at_registration(tmp_path, demo_build, fresh_caches):
    good = json.loads((local_path(demo_build.published["tfidf-logreg@2"][0]) / "card.json").read_text())
    for bad in ("xx/../../../model-store/sentiment/1", "Z" * 64, 12):
        message = _refusal(tmp_path / str(abs(hash(str(bad)))), demo_build,
                           card_changes={"files": {**good["files"], "model.onnx": bad}})
        assert "is not a sha256" in message
    assert not ModelVersion.objects.exists()
