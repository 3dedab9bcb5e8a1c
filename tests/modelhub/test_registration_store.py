"""Issue 22: registration read any folder of the server or any bucket, not only the configured model store.
Now it reads only inside MODEL_STORE_URI (the S3 bucket and prefix, or the local folder), with `..` and symlinks
resolved, and says why it refused."""
import shutil

import boto3
import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils.html import escape

from apps.audit.models import AuditEvent
from apps.modelhub.models import ModelVersion
from apps.modelhub.services import RegistrationRefused, model_register
from apps.modelhub.store import OutsideStore, local_path, store_uri_inside
from tests.modelhub.test_registry import version_folder

pytestmark = pytest.mark.django_db

REFUSED = "Only the model store is read"


@pytest.fixture
def store(tmp_path, settings):
    """A local model store of this test's own, and a valid version folder outside it."""
    root = tmp_path / "store"
    root.mkdir()
    settings.MODEL_STORE_URI = str(root)
    return root


def _refused(uri: str) -> str:
    with pytest.raises(RegistrationRefused) as caught:
        model_register(uri=uri, aliases=("production",))
    assert str(caught.value).startswith(REFUSED), str(caught.value)
    return str(caught.value)


def test_a_local_store_refuses_every_way_out(tmp_path, store, demo_build, fresh_caches):
    outside = version_folder(tmp_path / "elsewhere", demo_build, name="out-clf", version="1")  # a valid version
    inside = local_path(version_folder(tmp_path, demo_build, name="in-clf", version="1"))
    assert inside.parent.parent == store

    _refused(outside)  # another folder of the server
    _refused("/etc")
    _refused(str(store / ".." / "elsewhere" / "store" / "out-clf" / "1"))  # '..' out of the store
    _refused(f"file://{outside}")
    _refused("out-clf/1")  # relative: resolved against whatever the working folder is
    _refused(str(store))  # the store itself is no version folder
    _refused("s3://models/registry/out-clf/1")  # a bucket, when the store is a folder
    (store / "linked").mkdir()
    (store / "linked" / "1").symlink_to(local_path(outside), target_is_directory=True)
    assert "resolves to" in _refused(str(store / "linked" / "1"))  # a symlink in the store pointing out of it
    # A version folder in the store whose card.json, or model file, is a symlink to a file outside.
    for file_name in ("card.json", "model.onnx"):
        folder = local_path(version_folder(tmp_path, demo_build, name=f"sym-{file_name[:4]}", version="1"))
        (folder / file_name).unlink()
        (folder / file_name).symlink_to(local_path(outside) / file_name)
        _refused(str(folder))

    assert not ModelVersion.objects.exists()
    refusals = AuditEvent.objects.filter(action="model_registration", outcome="refused")
    assert refusals.count() == 10 and all(e.detail["reason"].startswith(REFUSED) for e in refusals)

    # Inside the store it registers, a '..' that stays inside included; the resolved folder is what is kept.
    mv = model_register(uri=str(store / "linked" / ".." / "in-clf" / "1") + "/", aliases=("production",))
    assert (mv.name, mv.uri) == ("in-clf", str(inside.resolve()))


def test_an_s3_store_refuses_other_buckets_and_prefixes(s3_bucket, settings, tmp_path, demo_build, fresh_caches):
    settings.MODEL_STORE_URI = s3_bucket  # s3://models/registry
    local = local_path(version_folder(tmp_path, demo_build, name="s3-clf", version="4"))
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket="other")
    for key in ("registry/s3-clf/4", "elsewhere/s3-clf/4", "registry-evil/s3-clf/4"):
        for item in local.iterdir():  # the same valid version everywhere: only where it lies differs
            client.upload_file(str(item), "models", f"{key}/{item.name}")
            client.upload_file(str(item), "other", f"{key}/{item.name}")

    _refused("s3://other/registry/s3-clf/4")  # another bucket, same prefix
    _refused("s3://models/elsewhere/s3-clf/4")  # the right bucket, another prefix
    _refused("s3://models/registry-evil/s3-clf/4")  # a prefix that only starts like the store's
    _refused("s3://models/registry/../elsewhere/s3-clf/4")
    _refused("s3://models/registry//s3-clf/4")
    _refused("s3://models/registry")
    _refused(str(local))  # a server folder, when the store is a bucket
    assert not ModelVersion.objects.exists()

    mv = model_register(uri="s3://models/registry/s3-clf/4", aliases=("candidate",))
    assert mv.uri == "s3://models/registry/s3-clf/4"


@pytest.mark.parametrize("uri, root, expected", [
    ("s3://b/models/x/1", "s3://b/models", "s3://b/models/x/1"),
    ("s3://b/models/x/1/", "s3://b/models/", "s3://b/models/x/1"),
    ("s3://b/x/1", "s3://b", "s3://b/x/1"),
    ("s3://b/models/x/1", "s3://c/models", None),
    ("s3://b/models2/x/1", "s3://b/models", None),
    ("s3://b/models/./x/1", "s3://b/models", None),
    ("/srv/store/x/1", "/srv/store", "/srv/store/x/1"),
    ("/srv/store/x/../../etc", "/srv/store", None),
    ("/srv/store-2/x/1", "/srv/store", None),
    ("/srv/store/x/1\x00", "/srv/store", None),
    ("http://example.com/x/1", "/srv/store", None),
])
def test_store_uri_inside(uri, root, expected):
    if expected is None:
        with pytest.raises(OutsideStore):
            store_uri_inside(uri=uri, root_uri=root)
    else:
        assert store_uri_inside(uri=uri, root_uri=root) == expected


def test_the_page_and_the_command_say_why(client, staff_user, store, tmp_path, demo_build, fresh_caches):
    outside = version_folder(tmp_path / "elsewhere", demo_build, name="page-clf", version="1")
    client.force_login(staff_user)  # a model manager
    response = client.post(reverse("modelhub:register"), {"uri": outside, "aliases": ""}, follow=True)
    assert escape(f"Not registered: {REFUSED}: {outside!r} is not in the model store {store}") in response.content.decode()
    with pytest.raises(CommandError, match=f"Refused: {REFUSED}"):
        call_command("register_model", "/etc")
    assert not ModelVersion.objects.exists()

    shutil.copytree(local_path(outside), store / "page-clf" / "1")
    response = client.post(reverse("modelhub:register"), {"uri": str(store / "page-clf" / "1"), "aliases": ""})
    assert response.status_code == 302 and ModelVersion.objects.filter(name="page-clf").exists()
