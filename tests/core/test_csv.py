"""Issue 22: every CSV the app writes defuses spreadsheet formulas the same way (apps/core/csv.py): the search
export did, the flags CSV and the batch scoring output did not."""
import csv
import io
import types

import pytest

from apps.core.csv import CsvDictWriter, csv_safe, csv_writer

pytestmark = pytest.mark.django_db

HOSTILE = ["=HYPERLINK(\"http://evil\",\"x\")", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)", "\tTAB=1",
           "\r=1", "\uff1d1+1"]
PLAIN = ["plain text", "a = b", "-1.5", "+3", "-2e10", "", "x-1"]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_cell_that_would_start_a_formula_gets_a_quote(value):
    assert csv_safe(value) == "'" + value


@pytest.mark.parametrize("value", PLAIN + [-1.5, 3, None])
def test_text_and_numbers_that_start_no_formula_are_kept(value):
    assert csv_safe(value) == value


def test_both_writers_defuse_every_cell_and_the_header():
    out = io.StringIO()
    csv_writer(out).writerow(["=head", "-1.5", -2, "@x"])
    writer = CsvDictWriter(out, fieldnames=["=a", "b"])
    writer.writeheader()
    writer.writerows([{"=a": "+x", "b": "-3"}])
    assert list(csv.reader(io.StringIO(out.getvalue()))) == [
        ["'=head", "-1.5", "-2", "'@x"], ["'=a", "b"], ["'+x", "-3"]]


def test_the_flags_csv_defuses_formulas(client, user):
    from apps.modelhub.models import ModelVersion, PredictionFlag

    mv = ModelVersion.objects.create(name="clf", version="1", kind="classifier", uri="/nowhere", checksums={},
                                     card={})
    PredictionFlag.objects.create(model_version=mv, input_text="=HYPERLINK(\"http://evil\")", predicted_label="a",
                                  correct_label="b", comment="@SUM(1)", user=user)
    client.force_login(user)
    response = client.get("/models/clf/flags/", {"format": "csv"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert rows[0]["input_text"] == "'=HYPERLINK(\"http://evil\")" and rows[0]["comment"] == "'@SUM(1)"
    assert rows[0]["predicted_label"] == "a"


def test_the_batch_output_defuses_formulas_and_keeps_numbers(user, settings, tmp_path, monkeypatch):
    from apps.modelhub import services
    from apps.modelhub.models import BatchJob, ModelVersion

    def fake_predict(*, model_version, texts):
        return types.SimpleNamespace(predictions=[
            types.SimpleNamespace(label="pos", scores={"pos": 0.75}, truncated=False) for _ in texts])

    monkeypatch.setattr(services, "predict", fake_predict)
    mv = ModelVersion.objects.create(name="clf", version="1", kind="classifier", uri="/nowhere", checksums={},
                                     card={})
    upload = tmp_path / "job-input.csv"
    upload.write_text("id,body,=cmd\n-1.5,=HYPERLINK(\"http://evil\"),@SUM(A1)\n2,+1+1 is two,-3\n", encoding="utf-8")
    job = BatchJob.objects.create(model_version=mv, user=user, original_name="x.csv", text_column="body",
                                  input_path=str(upload), total=2, state="queued")
    job = services.batch_job_run(job_id=job.id)
    assert job.state == BatchJob.State.SUCCEEDED, job.error_message
    with open(job.output_path, encoding="utf-8", newline="") as scored:
        rows = list(csv.reader(scored))
    assert rows[0] == ["id", "body", "'=cmd", "predicted_label", "predicted_score", "prediction_note"]
    assert rows[1][:3] == ["-1.5", "'=HYPERLINK(\"http://evil\")", "'@SUM(A1)"]
    assert rows[2][:3] == ["2", "'+1+1 is two", "-3"] and rows[2][3:5] == ["pos", "0.750000"]
