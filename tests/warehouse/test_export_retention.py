"""Export retention: `prune_logs` deletes the files of exports finished more than EXPORT_KEEP_DAYS ago (local CSV,
S3 objects), marks them expired, and their page and download say so (410) rather than fail on a missing file."""
from __future__ import annotations

from datetime import timedelta
from io import StringIO

import boto3
import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from moto import mock_aws

from apps.warehouse.export_services import exports_prune
from apps.warehouse.models import Export

pytestmark = pytest.mark.django_db


def _export(*, user, location: str, finished_days_ago: float, backend: str = "local",
            state: str = "succeeded") -> Export:
    return Export.objects.create(user=user, user_name=user.username, table="samples", query={}, fingerprint="f",
                                 backend=backend, state=state, location=location, row_count=1,
                                 finished_at=timezone.now() - timedelta(days=finished_days_ago))


def _local(tmp_path, user, name: str, days: float, **kwargs) -> Export:
    path = tmp_path / f"{name}.csv"
    path.write_text('"id"\n1\n')
    return _export(user=user, location=str(path), finished_days_ago=days, **kwargs)


def test_prune_logs_deletes_old_export_files_and_marks_them_expired(user, settings, tmp_path):
    settings.EXPORT_KEEP_DAYS = 14
    old, recent = _local(tmp_path, user, "old", 15), _local(tmp_path, user, "recent", 13)
    old_failed = _local(tmp_path, user, "failed", 20, state="failed")  # a partial file of a failed one goes too
    running = Export.objects.create(user=user, table="samples", query={}, fingerprint="r", backend="local",
                                    state="running", location=str(tmp_path / "running.csv"))
    out = StringIO()
    call_command("prune_logs", stdout=out)
    assert "exports_expired: 2" in out.getvalue()
    for export in (old, recent, old_failed, running):
        export.refresh_from_db()
    assert old.is_expired and old_failed.is_expired and not recent.is_expired and not running.is_expired
    assert not (tmp_path / "old.csv").exists() and not (tmp_path / "failed.csv").exists()
    assert (tmp_path / "recent.csv").exists() and old.row_count == 1  # what it was stays on record
    assert exports_prune(older_than_days=14) == 0  # a second run: nothing newly old


def test_an_expired_export_page_and_download_say_so(client, user, settings, tmp_path):
    settings.EXPORT_KEEP_DAYS = 14
    old = _local(tmp_path, user, "old", 15)
    client.force_login(user)
    download = reverse("warehouse:export-download", args=[old.pk])
    assert client.get(download).status_code == 200  # before: the file
    exports_prune(older_than_days=14)
    response = client.get(download)
    assert response.status_code == 410 and b"has expired" in response.content
    detail = client.get(reverse("warehouse:export-detail", args=[old.pk])).content.decode()
    assert "data-export-expired" in detail and "data-export-download" not in detail
    listing = client.get(reverse("warehouse:exports")).content.decode()
    assert "data-export-expired" in listing and download not in listing


def test_a_download_whose_file_is_gone_is_410_not_a_broken_stream(client, user, tmp_path):
    gone = _local(tmp_path, user, "gone", 1)
    (tmp_path / "gone.csv").unlink()
    client.force_login(user)
    assert client.get(reverse("warehouse:export-download", args=[gone.pk])).status_code == 410


def test_an_athena_exports_objects_are_deleted_under_its_prefix_only(user, settings):
    settings.AWS_REGION, settings.AWS_S3_ENDPOINT_URL = "us-east-1", ""
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="exports-bucket")
        for key in ("exports/000000000001/a.gz", "exports/000000000001/b.gz", "exports/000000000002/c.gz"):
            s3.put_object(Bucket="exports-bucket", Key=key, Body=b"x")
        old = _export(user=user, location="s3://exports-bucket/exports/000000000001/", finished_days_ago=30,
                      backend="athena")
        assert exports_prune(older_than_days=14) == 1
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="exports-bucket").get("Contents", [])]
    assert keys == ["exports/000000000002/c.gz"]
    old.refresh_from_db()
    assert old.is_expired
