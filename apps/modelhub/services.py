from __future__ import annotations

import codecs
import csv
import hashlib
import io
import itertools
import json
import logging
import os
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from apps.audit.services import audit_record
from apps.core.csv import CsvDictWriter, csv_writer

from .fetch import ChecksumMismatch, sha256_is_valid
from .models import BatchJob, ModelAlias, ModelVersion, PredictionFlag, SharedInput
from .runtime import (
    FAMILY_TEXT,
    FAMILY_TOKENS,
    ModelRuntimeError,
    PredictionBatch,
    PredictionInputError,
    loaded_model_from_files,
    predict,
)
from .store import OutsideStore, StoreError, store_read_bytes, store_uri_inside, uri_join

CARD_INPUT_KINDS = {"text": FAMILY_TEXT, "tokens": FAMILY_TOKENS}
logger = logging.getLogger(__name__)
BATCH_SIZE = 256
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,49}$")


class RegistrationRefused(Exception):
    """The version was not registered; the message is the reason, written for the person registering."""


class BatchInputError(ValueError):
    """The uploaded CSV cannot be scored (too big, not UTF-8, no such column): shown to users as is."""


# --- Registration -------------------------------------------------------------------------

def card_validate(*, card: dict) -> None:
    for key in ("name", "version", "kind", "files"):
        if not card.get(key):
            raise RegistrationRefused(f"card.json has no {key!r}.")
    if not SLUG_RE.match(str(card["name"])) or not VERSION_RE.match(str(card["version"])):
        raise RegistrationRefused(
            "card.json name must be lowercase letters, digits and dashes, and version letters, digits, dots or dashes."
        )
    if card["kind"] not in ModelVersion.Kind.values:
        raise RegistrationRefused(
            f"card.json kind {card['kind']!r} is not one of {', '.join(ModelVersion.Kind.values)}."
        )
    if not isinstance(card["files"], dict):
        raise RegistrationRefused("card.json files must map file names to sha256 checksums.")
    if "model.onnx" not in card["files"]:
        raise RegistrationRefused("card.json lists no checksum for model.onnx.")
    for file_name, checksum in card["files"].items():
        if not sha256_is_valid(checksum):
            raise RegistrationRefused(
                f"card.json checksum for {str(file_name)[:80]!r} is not a sha256 (64 lowercase hex digits)."
            )
    input_kind = (card.get("input") or {}).get("kind")
    if input_kind not in CARD_INPUT_KINDS:
        raise RegistrationRefused(f"card.json input.kind must be 'text' or 'tokens', not {input_kind!r}.")
    if input_kind == "tokens" and "tokenizer.json" not in card["files"]:
        raise RegistrationRefused("card.json says the model takes tokens but lists no tokenizer.json.")
    if card["kind"] == ModelVersion.Kind.CLASSIFIER:
        labels = card.get("labels")
        if not labels or not isinstance(labels, list) or not all(isinstance(x, str) and x for x in labels):
            raise RegistrationRefused("card.json has no labels: a classifier needs its list of class labels.")
        if len(set(labels)) != len(labels):
            raise RegistrationRefused("card.json labels are not unique.")
    if not card.get("examples"):
        raise RegistrationRefused("card.json has no examples: registration runs them to check the model.")


def model_version_check(*, uri: str, card: dict) -> None:
    """Loads the files in onnxruntime and runs the card's examples; RegistrationRefused otherwise."""
    try:
        loaded = loaded_model_from_files(name=card["name"], version=card["version"], uri=uri, card=card)
    except ChecksumMismatch as exc:
        raise RegistrationRefused(f"Wrong checksum: {exc}") from exc
    except StoreError as exc:
        raise RegistrationRefused(f"Cannot read the model files: {exc}") from exc
    except ModelRuntimeError as exc:
        raise RegistrationRefused(f"Corrupt or unsupported model: {exc}") from exc
    expected = CARD_INPUT_KINDS[card["input"]["kind"]]
    if loaded.family != expected:
        raise RegistrationRefused(
            f"Wrong input type: the card says {card['input']['kind']!r} but the ONNX graph takes "
            f"{'raw strings' if loaded.family == FAMILY_TEXT else 'token ids'}."
        )
    try:
        output = loaded.predict_proba([str(x) for x in card["examples"]])
    except Exception as exc:  # onnxruntime errors surface here for graphs that load but cannot run
        raise RegistrationRefused(f"The model fails on the card's examples: {exc}") from exc
    if card["kind"] == ModelVersion.Kind.CLASSIFIER:
        labels = card["labels"]
        if output.ndim != 2 or output.shape[1] != len(labels):
            raise RegistrationRefused(
                f"Missing labels: the model outputs {output.shape[-1]} classes but the card lists {len(labels)} labels."
            )
        if not np.all(np.isfinite(output)) or not np.allclose(output.sum(axis=1), 1.0, atol=1e-3):
            raise RegistrationRefused("The model's outputs on the examples are not probabilities.")


def store_uri_for_registration(*, uri: str) -> str:
    """`uri` normalised when it lies inside the configured model store; RegistrationRefused otherwise."""
    try:
        return store_uri_inside(uri=uri)
    except OutsideStore as exc:
        raise RegistrationRefused(f"Only the model store is read: {exc}") from exc


def card_load(*, uri: str) -> dict:
    try:
        card = json.loads(store_read_bytes(uri=uri_join(uri, "card.json")))
    except StoreError as exc:
        raise RegistrationRefused(f"No readable card.json at {uri}: {exc}") from exc
    except ValueError as exc:
        raise RegistrationRefused(f"card.json at {uri} is not valid JSON: {exc}") from exc
    if not isinstance(card, dict):
        raise RegistrationRefused("card.json must be a JSON object.")
    return card


def model_register(*, uri: str, user=None, aliases: tuple[str, ...] = ()) -> ModelVersion:
    """Validates and registers the version folder at `uri`; moves `aliases` to it only when it passed.

    A refused version leaves the registry untouched (only an audit event says it was tried), so a
    bad file never replaces a serving one.
    """
    uri = uri.strip().rstrip("/")
    card: dict = {}
    try:
        uri = store_uri_for_registration(uri=uri)
        store_uri_for_registration(uri=uri_join(uri, "card.json"))  # not a symlink out of the store
        card = card_load(uri=uri)
        card_validate(card=card)
        for file_name in card["files"]:  # what the runtime reads: no symlink or '..' out of the store either
            store_uri_for_registration(uri=uri_join(uri, str(file_name)))
        if ModelVersion.objects.filter(name=str(card["name"]), version=str(card["version"])).exists():
            raise RegistrationRefused(
                f"{card['name']} version {card['version']} is already registered; versions are immutable."
            )
        model_version_check(uri=uri, card=card)
    except RegistrationRefused as exc:
        target = f"{card.get('name', '?')}@{card.get('version', '?')}" if card else uri
        audit_record(user=user, action="model_registration", target=target, outcome="refused",
                     detail={"uri": uri, "reason": str(exc)})
        raise
    with transaction.atomic():
        model_version = ModelVersion.objects.create(
            name=str(card["name"]), version=str(card["version"]), kind=card["kind"], uri=uri,
            checksums=card["files"], card=card,
            registered_by=user if getattr(user, "is_authenticated", False) else None,
        )
        audit_record(user=user, action="model_registration", target=str(model_version), detail={"uri": uri})
        for alias in aliases:
            model_alias_move(name=model_version.name, alias=alias, version=model_version.version, user=user)
    return model_version


@transaction.atomic
def model_alias_move(*, name: str, alias: str, version: str, user=None) -> ModelAlias:
    from .selectors import model_version_get

    alias = alias.strip().lower()
    if not alias or not alias.replace("-", "").replace("_", "").isalnum():
        raise ValueError("An alias is a short word such as production or candidate.")
    model_version = model_version_get(name=name, version=version)
    pointer, _ = ModelAlias.objects.update_or_create(
        name=name, alias=alias,
        defaults={"model_version": model_version, "updated_by": user if getattr(user, "is_authenticated", False) else None},
    )
    audit_record(user=user, action="model_alias", target=f"{name}:{alias}", detail={"version": version})
    return pointer


# --- Predictions and flags ------------------------------------------------------------------

def shared_input_save(*, text: str) -> SharedInput:
    """Stores a demo or compare text for its short URL (`?_in=<key>`); the same text gets the same key."""
    key = hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]
    shared, _ = SharedInput.objects.get_or_create(key=key, defaults={"text": text})
    return shared


def shared_inputs_prune(*, older_than_days: int) -> int:
    """Retention (beat `modelhub-prune-shared-inputs`): stored demo and compare texts first saved more than
    `older_than_days` ago (LOG_RETENTION_DAYS, as the search logs) are deleted; their short URLs then answer 404,
    and the same text typed again gets its URL back."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    deleted, _ = SharedInput.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def prediction_make(*, user, model_version: ModelVersion, texts: list[str], source: str) -> PredictionBatch:
    batch = predict(model_version=model_version, texts=texts)
    audit_record(user=user, action="prediction", target=str(model_version),
                 detail={"n": len(texts), "latency_ms": round(batch.latency_ms, 2), "source": source})
    return batch


def prediction_flag_create(
    *, user, model_version: ModelVersion, input_text: str, predicted_label: str, correct_label: str = "",
    comment: str = "",
) -> PredictionFlag:
    if not input_text.strip():
        raise PredictionInputError("There is no prediction to flag: the text is empty.")
    if correct_label and correct_label not in model_version.labels:
        raise PredictionInputError(f"{correct_label!r} is not one of this model's labels.")
    flag = PredictionFlag.objects.create(
        model_version=model_version, input_text=input_text, predicted_label=predicted_label,
        correct_label=correct_label, comment=comment.strip(), user=user,
    )
    audit_record(user=user, action="flag", target=str(model_version),
                 detail={"flag_id": flag.id, "predicted": predicted_label, "correct": correct_label})
    return flag


def flags_csv(*, flags) -> str:
    out = io.StringIO()
    writer = csv_writer(out)  # defuses formulas (apps/core/csv.py)
    writer.writerow(["created_at", "model", "version", "user", "input_text", "predicted_label", "correct_label", "comment"])
    for flag in flags:
        writer.writerow([flag.created_at.isoformat(), flag.model_version.name, flag.model_version.version,
                         flag.user.get_username() if flag.user else "", flag.input_text, flag.predicted_label,
                         flag.correct_label, flag.comment])
    return out.getvalue()


def labelled_examples_check(*, user, model_version: ModelVersion) -> dict:
    """The card's hand-written labelled examples, scored: a small check a person can read line by line."""
    examples = model_version.labelled_examples
    if not examples:
        return {"rows": [], "n": 0, "correct": 0, "accuracy": None}
    batch = prediction_make(user=user, model_version=model_version, texts=[e["text"] for e in examples], source="check")
    rows = [{"text": e["text"], "expected": e.get("label", ""), "predicted": p.label, "ok": p.label == e.get("label")}
            for e, p in zip(examples, batch.predictions)]
    correct = sum(r["ok"] for r in rows)
    return {"rows": rows, "n": len(rows), "correct": correct, "accuracy": round(correct / len(rows), 4)}


# --- Comparing two classifiers -----------------------------------------------------------------

COMPARE_MAX_TEXTS = 200
METRIC_KEYS = (("accuracy", "held-out accuracy"), ("macro_f1", "held-out macro F1"), ("n_test", "held-out texts"),
               ("n_train", "training texts"))


@dataclass
class ComparedText:
    text: str
    a: object  # Prediction
    b: object
    agree: bool


@dataclass
class Comparison:
    a: ModelVersion
    b: ModelVersion
    rows: list[ComparedText]  # disagreements first, then in input order
    disagreements: int
    latency_ms: tuple[float, float]
    metrics: list[tuple[str, object, object]]  # (label, a's value, b's value) from the cards' held-out metrics


def compare_texts_split(*, text: str) -> list[str]:
    """One text a line (blank lines skipped); PredictionInputError when there is none or too many."""
    texts = [line.strip() for line in text.splitlines() if line.strip()]
    if not texts:
        raise PredictionInputError("Type at least one text: one a line.")
    if len(texts) > COMPARE_MAX_TEXTS:
        raise PredictionInputError(f"At most {COMPARE_MAX_TEXTS} texts (lines) at a time; you gave {len(texts)}.")
    return texts


def texts_compare(*, user, a: ModelVersion, b: ModelVersion, texts: list[str]) -> Comparison:
    """Both classifiers (two versions of one, or two different ones) on every text, one batch each."""
    for mv in (a, b):
        if mv.kind != ModelVersion.Kind.CLASSIFIER:
            raise PredictionInputError(f"{mv} is an {mv.kind}, not a classifier.")
    batch_a = prediction_make(user=user, model_version=a, texts=texts, source="compare")
    batch_b = prediction_make(user=user, model_version=b, texts=texts, source="compare")
    rows = [ComparedText(text, pa, pb, pa.label == pb.label)
            for text, pa, pb in zip(texts, batch_a.predictions, batch_b.predictions)]
    rows.sort(key=lambda r: r.agree)  # stable: disagreements first, each group in input order
    metrics = [(label, a.metrics.get(key), b.metrics.get(key)) for key, label in METRIC_KEYS
               if a.metrics.get(key) is not None or b.metrics.get(key) is not None]
    return Comparison(a=a, b=b, rows=rows, disagreements=sum(not r.agree for r in rows),
                      latency_ms=(batch_a.latency_ms, batch_b.latency_ms), metrics=metrics)


# --- Batch scoring --------------------------------------------------------------------------

def batch_dir() -> Path:
    path = Path(settings.DATA_DIR) / "modelhub" / "batches"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _csv_text_open(*, data: bytes, partial: bool = False) -> io.TextIOWrapper:
    """The CSV's text, checked to be UTF-8 and then read lazily, a few KB at a time, as `batch_job_run` reads
    its file: an `io.StringIO` of a 20 MB upload held the GIL ~70 ms while it copied it (once for the header,
    once for the preview, once for the count), a stall for every other thread of the web worker.
    `partial`: `data` is the start of a larger file, whose last character may be cut in two."""
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        data[bom:].decode("utf-8")  # the check only: one pass in C
    except UnicodeDecodeError as exc:
        if not (partial and exc.start >= len(data) - bom - 3):  # else the browser's slice cut a character in two
            raise BatchInputError(
                f"The file is not UTF-8 text (byte {bom + exc.start} is invalid): save it as UTF-8 CSV.") from exc
        data = data[: bom + exc.start]
    return io.TextIOWrapper(io.BytesIO(data[bom:]), encoding="utf-8", newline="")


def csv_header_read(*, data: bytes) -> list[str]:
    """The CSV's columns; BatchInputError when it is not UTF-8 text with a header row."""
    try:
        header = next(csv.reader(_csv_text_open(data=data)), None)
    except csv.Error as exc:
        raise BatchInputError(f"The file is not a readable CSV: {exc}") from exc
    if not header or not any(h.strip() for h in header):
        raise BatchInputError("The CSV is empty: it needs a header row naming its columns.")
    _csv_columns_check(header=header)
    return header


def _csv_columns_check(*, header: list[str]) -> None:
    # Each column is profiled in Python: a 20 MB header of 2.7 million one-digit names took 12 s to preview.
    if len(header) > BATCH_MAX_COLUMNS:
        raise BatchInputError(f"The CSV has {len(header)} columns; the limit is {BATCH_MAX_COLUMNS}.")


TEXT_COLUMN_NAME_HINT = re.compile(r"text|body|content|review|comment|message|description|sentence|title", re.IGNORECASE)
PREVIEW_SAMPLE_ROWS = 200
BATCH_MAX_COLUMNS = 1000
PREVIEW_SHOWN_ROWS = 5


def value_is_number(value: str) -> bool:
    """Whether a CSV value reads as a number: `12`, `-3.5`, `.5`, `1,234_567.`, `6.02e23`, `12 %`, blanks around
    it allowed. Sign, digit groups, fraction and exponent are cut apart with str methods and each piece is checked
    once (in C): the time is linear in the value's length, whatever the value.

    It replaces a regex whose adjacent quantifiers (digits-or-commas, then an optional dot, then digits; blanks,
    an optional %, blanks) could split one run of digits or blanks in as many ways as it is long: n digits and a
    letter took O(n²) steps, all holding the GIL (8,000 digits: 2.3 s; a 34 KB CSV: 86 s, with every other thread
    of the web worker frozen meanwhile)."""
    text = value.strip()
    if text.endswith("%"):
        text = text[:-1].rstrip()
    if text[:1] in ("+", "-"):
        text = text[1:]
    mantissa, exponent = text, None
    cut = max(text.rfind("e"), text.rfind("E"))
    if cut != -1:
        mantissa, exponent = text[:cut], text[cut + 1:]
        if exponent[:1] in ("+", "-"):
            exponent = exponent[1:]
        if not exponent.isdecimal():
            return False
    if mantissa.startswith("."):
        return mantissa[1:].isdecimal()
    whole, _, fraction = mantissa.partition(".")
    grouped = whole[1:].replace(",", "").replace("_", "")
    return whole[:1].isdecimal() and (not grouped or grouped.isdecimal()) and (not fraction or fraction.isdecimal())


@dataclass(frozen=True)
class ColumnProfile:
    name: str
    filled: int  # non-blank values in the sample
    numeric: int  # of which look like numbers
    mean_chars: float  # mean length of the non-numeric values
    name_hint: bool

    @property
    def numeric_only(self) -> bool:
        return self.filled > 0 and self.numeric == self.filled

    @property
    def text_like(self) -> bool:
        """Mostly values with letters, not numbers: a column a classifier can read."""
        return self.filled > 0 and (self.filled - self.numeric) / self.filled >= 0.5

    @property
    def rank(self) -> float:
        # The longest text-like column; a telling name (body, text, review…) counts as 50% longer.
        return self.mean_chars * (1.5 if self.name_hint else 1.0) if self.text_like else -1.0


@dataclass(frozen=True)
class CsvPreview:
    columns: list[ColumnProfile]
    text_column: str
    chosen_automatically: bool
    reason: str
    texts: list[str]  # the first rows' values of the text column, exactly as the job will read them
    sample_rows: int

    @property
    def chosen(self) -> ColumnProfile:
        return next(c for c in self.columns if c.name == self.text_column)

    @property
    def numeric_only(self) -> bool:
        return self.chosen.numeric_only


def text_column_choose(*, columns: list[ColumnProfile]) -> tuple[str, str]:
    """(column, why): the longest text-like column, a telling name as a tie-breaker; else the first."""
    best = max(columns, key=lambda c: c.rank)
    if best.rank < 0:
        return columns[0].name, "no column holds text: every column is numbers or empty"
    why = f"the longest text column (about {best.mean_chars:.0f} characters a row)"
    if best.name_hint:
        why += ", and its name says text"
    return best.name, why


def batch_csv_preview(*, data: bytes, text_column: str = "", partial: bool = False) -> CsvPreview:
    """Reads the header and the first rows the way `batch_job_run` does; picks the text column when
    `text_column` is blank. `partial`: `data` is the start of a larger file (its last row may be cut)."""
    text = _csv_text_open(data=data, partial=partial)
    try:
        reader = csv.DictReader(text)
        header = list(reader.fieldnames or [])
        rows = []
        for row in reader:
            rows.append(row)
            if len(rows) > PREVIEW_SAMPLE_ROWS:
                break
    except csv.Error as exc:
        raise BatchInputError(f"The file is not a readable CSV: {exc}") from exc
    if not header or not any(h.strip() for h in header):
        raise BatchInputError("The CSV is empty: it needs a header row naming its columns.")
    _csv_columns_check(header=header)
    if partial and len(data) and len(rows) > 1:
        rows = rows[:-1]
    rows = rows[:PREVIEW_SAMPLE_ROWS]
    profiles = []
    for name in dict.fromkeys(header):
        values = [(row.get(name) or "") for row in rows]
        filled = [v for v in values if v.strip()]
        words = [v for v in filled if not value_is_number(v)]  # each value tested once
        profiles.append(ColumnProfile(
            name=name, filled=len(filled), numeric=len(filled) - len(words),
            mean_chars=sum(len(v) for v in words) / len(words) if words else 0.0,
            name_hint=bool(TEXT_COLUMN_NAME_HINT.search(name)),
        ))
    wanted = (text_column or "").strip()
    if wanted:
        if wanted not in header:
            raise BatchInputError(f"The CSV has no column {wanted!r}. Its columns: {', '.join(header)}.")
        chosen, automatic, reason = wanted, False, "your choice"
    else:
        chosen, reason = text_column_choose(columns=profiles)
        automatic = True
    return CsvPreview(
        columns=profiles, text_column=chosen, chosen_automatically=automatic, reason=reason,
        texts=[(row.get(chosen) or "") for row in rows[:PREVIEW_SHOWN_ROWS]], sample_rows=len(rows),
    )


def batch_job_create(
    *, user, model_version: ModelVersion, filename: str, data: bytes, text_column: str = "",
    allow_numeric: bool = False,
) -> BatchJob:
    """Queues the CSV for scoring. A blank `text_column` is chosen as the preview chooses it; a column
    holding only numbers is refused unless `allow_numeric` (scoring ids is never what anyone meant)."""
    limit = settings.BATCH_UPLOAD_MAX_BYTES
    if len(data) > limit:
        raise BatchInputError(f"The file is {len(data) / 2**20:.1f} MB; the limit is {limit / 2**20:.1f} MB.")
    csv_header_read(data=data)
    preview = batch_csv_preview(data=data, text_column=text_column)
    text_column = preview.text_column
    if preview.numeric_only and not allow_numeric:
        raise BatchInputError(
            f"Column {text_column!r} holds only numbers, so the model would score numbers, not text. Choose the "
            f"text column, or tick “score a numbers-only column anyway”."
        )
    try:  # counted up to one past the limit: a file of a million short rows is refused without reading them all
        rows = csv.DictReader(_csv_text_open(data=data))
        total = sum(1 for _ in itertools.islice(rows, settings.BATCH_MAX_ROWS + 1))
    except csv.Error as exc:
        raise BatchInputError(f"The file is not a readable CSV: {exc}") from exc
    if total == 0:
        raise BatchInputError("The CSV has a header but no rows to score.")
    if total > settings.BATCH_MAX_ROWS:
        raise BatchInputError(f"The CSV has more than {settings.BATCH_MAX_ROWS} rows; the limit is {settings.BATCH_MAX_ROWS} per job. Split it.")
    path = batch_dir() / f"{uuid.uuid4().hex}-input.csv"
    path.write_bytes(data)
    job = BatchJob.objects.create(
        model_version=model_version, user=user, original_name=filename[:255], text_column=text_column,
        input_path=str(path), total=total,
    )
    audit_record(user=user, action="batch", target=str(model_version), detail={"job_id": job.id, "rows": total})

    # Outside a transaction this runs at once: with Redis down the job is failed before this returns.
    transaction.on_commit(lambda: batch_job_enqueue(job=job))
    return job


BATCH_QUEUE_UNAVAILABLE = (
    "The job queue is unavailable (Redis does not answer), so the file was not queued for scoring. "
    "Try again in a minute; if it persists, tell whoever runs this server."
)


def batch_job_enqueue(*, job: BatchJob) -> bool:
    """Send the scoring task; with Redis down, fail the job at once (broker timeouts are short, no publish
    retry, no result channel), as apps.warehouse does for fallbacks."""
    from .tasks import batch_job_score

    try:
        batch_job_score.apply_async(args=[job.pk], queue=settings.BATCH_TASK_QUEUE,
                                    soft_time_limit=settings.BATCH_SOFT_TIME_LIMIT,
                                    time_limit=settings.BATCH_TIME_LIMIT, retry=False)
        return True
    except Exception as exc:  # kombu/redis raise several types; all mean "not queued"
        logger.warning("could not enqueue batch job %s: %s", job.pk, exc)
        BatchJob.objects.filter(pk=job.pk, state=BatchJob.State.QUEUED).update(
            state=BatchJob.State.FAILED, error_message=BATCH_QUEUE_UNAVAILABLE, finished_at=timezone.now())
        job.refresh_from_db()
        _batch_input_drop(job=job)
        return False


def batch_job_sweep(*, stale_after_seconds: int | None = None, queued_max_seconds: int | None = None) -> dict:
    """Fail batch jobs whose worker died (running, no progress for `stale_after_seconds`) or that no worker took
    (queued longer than `queued_max_seconds`), so none shows "running" or "queued" forever."""
    now = timezone.now()
    stale_after = settings.BATCH_STALE_AFTER_SECONDS if stale_after_seconds is None else stale_after_seconds
    queued_max = settings.BATCH_QUEUED_MAX_SECONDS if queued_max_seconds is None else queued_max_seconds
    silent = now - timedelta(seconds=stale_after)
    running = BatchJob.objects.filter(state=BatchJob.State.RUNNING).filter(
        models.Q(heartbeat_at__lt=silent) | models.Q(heartbeat_at__isnull=True, started_at__lt=silent))
    stale_ids = list(running.values_list("pk", flat=True))
    failed_running = running.filter(pk__in=stale_ids).update(
        state=BatchJob.State.FAILED, finished_at=now,
        error_message=f"Its worker stopped: no progress for over {stale_after} s. Upload the file again.")
    # The dead worker's half-written output and the upload would stay on disk for good: remove them.
    for job in BatchJob.objects.filter(pk__in=stale_ids, state=BatchJob.State.FAILED):
        _batch_output_paths(job=job)[1].unlink(missing_ok=True)
        _batch_input_drop(job=job)
    never_taken = BatchJob.objects.filter(state=BatchJob.State.QUEUED, created_at__lt=now - timedelta(seconds=queued_max))
    never_taken_ids = list(never_taken.values_list("pk", flat=True))
    failed_queued = never_taken.filter(pk__in=never_taken_ids).update(
        state=BatchJob.State.FAILED, finished_at=now,
        error_message=f"No worker picked it up within {queued_max} s. Upload the file again.")
    for job in BatchJob.objects.filter(pk__in=never_taken_ids, state=BatchJob.State.FAILED):
        _batch_input_drop(job=job)
    return {"failed_running": failed_running, "failed_queued": failed_queued}


def batch_job_run(*, job_id: int) -> BatchJob:
    """Scores the job's CSV in batches, updating progress; a finished job is left alone (idempotent)."""
    job = BatchJob.objects.select_related("model_version").get(pk=job_id)
    if job.is_done:
        return job
    now = timezone.now()
    BatchJob.objects.filter(pk=job.pk).update(state=BatchJob.State.RUNNING, processed=0, started_at=now,
                                              heartbeat_at=now)
    output_path, temporary = _batch_output_paths(job=job)
    try:
        with open(job.input_path, encoding="utf-8-sig", newline="") as source, \
                open(temporary, "w", encoding="utf-8", newline="") as target:
            reader = csv.DictReader(source)
            fields = list(reader.fieldnames or [])
            extra = ["predicted_label", "predicted_score", "prediction_note"]
            writer = CsvDictWriter(target, fieldnames=fields + [f for f in extra if f not in fields],
                                   extrasaction="ignore")  # defuses formulas (apps/core/csv.py)
            writer.writeheader()
            processed = 0
            chunk: list[dict] = []
            for row in reader:
                chunk.append(row)
                if len(chunk) >= BATCH_SIZE:
                    processed += _batch_chunk_score(job=job, rows=chunk, writer=writer)
                    BatchJob.objects.filter(pk=job.pk, state=BatchJob.State.RUNNING).update(
                        processed=processed, heartbeat_at=timezone.now())
                    chunk = []
            if chunk:
                processed += _batch_chunk_score(job=job, rows=chunk, writer=writer)
        os.replace(temporary, output_path)
        BatchJob.objects.filter(pk=job.pk, state=BatchJob.State.RUNNING).update(
            state=BatchJob.State.SUCCEEDED, processed=processed, total=processed, output_path=str(output_path),
            finished_at=timezone.now(),
        )
    except Exception as exc:  # any failure must end the job visibly, not leave it "running"
        temporary.unlink(missing_ok=True)
        # Unless the sweeper has ended it meanwhile (its message says why): a job ends once.
        BatchJob.objects.filter(pk=job.pk, state=BatchJob.State.RUNNING).update(
            state=BatchJob.State.FAILED, error_message=f"{type(exc).__name__}: {exc}", finished_at=timezone.now()
        )
    job.refresh_from_db()
    if job.is_done:  # ended here or by the sweeper: the scored CSV holds every input column, or the user re-uploads
        _batch_input_drop(job=job)
    return job


def _batch_input_drop(*, job: BatchJob) -> None:
    """Delete an ended job's uploaded CSV (nothing reads it again)."""
    if job.input_path:
        Path(job.input_path).unlink(missing_ok=True)


def _batch_output_paths(*, job: BatchJob) -> tuple[Path, Path]:
    """The scored CSV a job writes, and the `.partial` file it writes first (renamed when complete)."""
    output_path = batch_dir() / f"{Path(job.input_path).stem.removesuffix('-input')}-scored.csv"
    return output_path, output_path.with_suffix(".partial")


def _batch_chunk_score(*, job: BatchJob, rows: list[dict], writer: csv.DictWriter) -> int:
    texts = [(row.get(job.text_column) or "") for row in rows]
    scorable = [i for i, text in enumerate(texts) if text.strip()]
    results = {}
    if scorable:
        batch = predict(model_version=job.model_version, texts=[texts[i] for i in scorable])
        results = dict(zip(scorable, batch.predictions))
    for index, row in enumerate(rows):
        prediction = results.get(index)
        if prediction is None:
            row.update(predicted_label="", predicted_score="", prediction_note="empty text")
        else:
            score = prediction.scores[prediction.label]
            row.update(predicted_label=prediction.label, predicted_score=f"{score:.6f}",
                       prediction_note="truncated" if prediction.truncated else "")
        writer.writerow(row)
    return len(rows)


# --- Scoring search results -----------------------------------------------------------------

@dataclass
class ScoredSearch:
    table: str
    text_column: str
    label_column: str | None
    columns: list[str]
    rows: list[dict]  # each: {"row": {...}, "prediction": Prediction | None, "truth": str | None, "agrees": bool | None}
    batch: PredictionBatch | None
    agreement: float | None
    compared: int
    confusion: ConfusionMatrix | None
    query_description: str


@dataclass(frozen=True)
class ConfusionMatrix:
    """Counts of (label column, prediction) pairs, drawn as an HTML table whose cells are shaded by count
    (score_search.html): the numbers are readable at once, and the page needs no chart library."""

    labels: list[str]  # the axis: the model's labels first (in its order), then any others seen
    rows: list[dict]  # per label column value: {"label", "total", "cells": [{"predicted", "count", "shade", "correct"}]}


def confusion_matrix(*, truth: list[str], predicted: list[str], labels: list[str]) -> ConfusionMatrix:
    """Rows are the table's labels, columns the model's predictions; `shade` is count / the largest count."""
    seen = set(truth) | set(predicted)
    axis = [x for x in labels if x in seen] + sorted(seen - set(labels))
    index = {label: i for i, label in enumerate(axis)}
    counts = [[0] * len(axis) for _ in axis]
    for t, p in zip(truth, predicted):
        counts[index[t]][index[p]] += 1
    most = max((max(row) for row in counts), default=0)
    rows = [{"label": label, "total": sum(counts[i]),
             "cells": [{"predicted": other, "count": counts[i][j], "shade": round(counts[i][j] / most, 3) if most else 0,
                        "correct": i == j} for j, other in enumerate(axis)]}
            for i, label in enumerate(axis)]
    return ConfusionMatrix(labels=axis, rows=rows)


def search_results_score(*, user, model_version: ModelVersion, params: list[tuple[str, str]]) -> ScoredSearch:
    """Runs the samples page's query (same URL parameters, same pipeline) and scores its text column as one
    batch. Never starts a warehouse fallback: it scores the rows known now (subset, learned rows, and the
    rows of a finished fallback the URL names with `fallback=<id>`).

    Raises apps.search.errors.SearchError for bad filters, an unknown table or no subset, and
    PredictionInputError when nothing can be scored.
    """
    from apps.samples.pipeline import fallback_id_from, search_answer
    from apps.search.query import query_from_params
    from apps.search.tables import default_table_name

    if model_version.kind != ModelVersion.Kind.CLASSIFIER:
        raise PredictionInputError(f"{model_version} is an {model_version.kind}, not a classifier.")
    query = query_from_params(params=params, default_table=default_table_name(),
                              default_limit=settings.SEARCH_DEFAULT_LIMIT, max_limit=settings.SEARCH_MAX_LIMIT,
                              skip_blank=True, strict=False)
    answer = search_answer(user=user, query=query, allow_fallback=False, log=False,
                           fallback_id=fallback_id_from(params))
    result_rows = [row.values for row in answer.rows]
    spec = answer.spec
    text_column = spec.text_column
    if not text_column:
        raise PredictionInputError(f"Table {spec.name!r} has no text column to score.")
    texts = [str(row.get(text_column) or "") for row in result_rows]
    scorable = [i for i, text in enumerate(texts) if text.strip()]
    batch = None
    predictions: dict[int, object] = {}
    if scorable:
        batch = prediction_make(user=user, model_version=model_version, texts=[texts[i] for i in scorable],
                                source="search")
        predictions = dict(zip(scorable, batch.predictions))
    label_column = spec.label_column if spec.label_column in answer.columns else None
    # A few short identifying columns beside the text; the full row is on the samples page.
    columns = [spec.key] + [c for c in answer.columns
                            if c not in (spec.key, text_column, label_column, "url")][:2]
    rows, truth, predicted = [], [], []
    for index, row in enumerate(result_rows):
        prediction = predictions.get(index)
        label = row.get(label_column) if label_column else None
        agrees = None
        if prediction is not None and label not in (None, ""):
            agrees = str(label) == prediction.label
            truth.append(str(label))
            predicted.append(prediction.label)
        cells = [row.get(c) for c in columns]
        rows.append({"row": row, "cells": cells, "named_cells": list(zip(columns, cells)), "text": texts[index],
                     "prediction": prediction, "truth": label, "agrees": agrees})
    agreement = sum(t == p for t, p in zip(truth, predicted)) / len(truth) if truth else None
    return ScoredSearch(
        table=spec.name, text_column=text_column, label_column=label_column,
        columns=columns,
        rows=rows, batch=batch, agreement=agreement, compared=len(truth),
        confusion=confusion_matrix(truth=truth, predicted=predicted, labels=model_version.labels) if truth else None,
        query_description=query.describe(),
    )


def scored_search_csv(*, scored: ScoredSearch) -> str:
    """The scored rows exactly as the score-search page lists them, with the prediction and its probability
    (formulas defused, apps/core/csv.py); a row whose text was empty has no prediction."""
    out = io.StringIO()
    writer = csv_writer(out)
    label = [scored.label_column] if scored.label_column else []
    writer.writerow([*scored.columns, scored.text_column, *label, "prediction", "probability", "agrees"])
    for item in scored.rows:
        prediction = item["prediction"]
        truth = [item["truth"] if item["truth"] is not None else ""] if scored.label_column else []
        agrees = "" if item["agrees"] is None else ("yes" if item["agrees"] else "no")
        writer.writerow([*("" if v is None else v for v in item["cells"]), item["text"], *truth,
                         prediction.label if prediction else "",
                         f"{prediction.top(1)[0][1]:.6f}" if prediction else "", agrees])
    return out.getvalue()
